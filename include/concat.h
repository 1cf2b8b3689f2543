/*
 * concat.h — reassembly of concatenated MO messages (UDH 8-/16-bit
 * references, with other IEs present, or SAR TLVs), parts in any order,
 * duplicates ignored, a timeout after which what arrived is delivered marked
 * partial. Nothing is acknowledged to the SMSC until the whole message has
 * been committed (the acks of every part travel in msg_mo.acks), so a crash
 * loses nothing: the SMSC resends the unacknowledged parts.
 */
#ifndef SG_CONCAT_H
#define SG_CONCAT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "msg.h"

struct concat;

struct concat_part {
	const char *link;
	const char *from; /* normalised MSISDN */
	const char *to;
	const char *smsc_id; /* "" when none */
	uint16_t ref;
	uint8_t total, seq;  /* seq is 1-based */
	uint8_t dcs;         /* data_coding of this part */
	const uint8_t *data; /* user data WITHOUT the UDH */
	size_t len;
	struct msg_ack ack;
};

/* Called with an assembled (or timed-out partial) message; all borrowed. */
typedef void (*concat_done_cb)(void *arg, const struct msg_mo *mo);

/* timeout: seconds before a partial message is delivered; max_pending:
 * messages being assembled at once (the oldest is delivered partial when a
 * new one would exceed it). */
struct concat *concat_new(int timeout, int max_pending);
void concat_free(struct concat *c);

/*
 * Adds a part (copied). When it completes its message, done() is called
 * before concat_add returns. Returns 0, or -1 for an invalid part (seq 0,
 * seq > total, total 0).
 */
int concat_add(struct concat *c, const struct concat_part *p, enum dc0_meaning dc0, int64_t now,
               concat_done_cb done, void *arg);

/* Delivers every message whose first part is older than the timeout. */
void concat_expire(struct concat *c, int64_t now, enum dc0_meaning dc0, concat_done_cb done,
                   void *arg);

/* Messages currently being assembled. */
int concat_pending(const struct concat *c);

/*
 * Looks for a concatenation IE (0x00 8-bit or 0x08 16-bit reference) in the
 * UDH at the start of sm (len octets, UDHI set). Returns 1 and fills the
 * fields when found, 0 when the UDH has none, -1 when the UDH is malformed.
 * *udh_len receives the UDH length including its length octet.
 */
int concat_parse_udh(const uint8_t *sm, size_t len, uint16_t *ref, uint8_t *total, uint8_t *seq,
                     size_t *udh_len);

#endif

/*
 * dlr.h — delivery receipts: the SMPP 3.4 appendix-B text parser and the
 * message-id normalisation that lets submit_sm_resp ids and receipt ids meet.
 */
#ifndef SG_DLR_H
#define SG_DLR_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h" /* enum id_base */
#include "msg.h"    /* enum msg_dlr_state */

struct dlr_text {
	char id[MSG_SMSC_ID_MAX];            /* raw id: field */
	enum msg_dlr_state state;            /* from stat: (MSG_DLR_UNKNOWN if absent) */
	int err;                             /* err: field, -1 when absent */
	int sub, dlvrd;                      /* -1 when absent */
	char submit_date[16], done_date[16]; /* digits as given, "" absent */
};

/*
 * Parses receipt text ("id:... sub:... dlvrd:... submit date:... done
 * date:... stat:... err:... text:..."), tolerating missing sub/dlvrd,
 * 10- or 12-digit dates, unknown states, extra fields, any field order.
 * Returns 0 when the text has at least id: and stat:, -1 otherwise.
 */
int dlr_parse_text(const char *text, size_t n, struct dlr_text *out);

/* Maps a stat: word (DELIVRD, UNDELIV, ...) to a state. */
enum msg_dlr_state dlr_state_from_word(const char *word);

/* True for DELIVERED, EXPIRED, DELETED, UNDELIVERABLE, REJECTED. */
bool dlr_state_final(enum msg_dlr_state s);

/*
 * Canonical form of an SMSC message id given in base: numeric ids (hex or
 * decimal as the link says) become decimal without leading zeros, so hex
 * "0001A2" and decimal "418" meet; ID_BASE_STRING keeps the id, lower-cased.
 * An id that does not parse in its base is kept lower-cased.
 * Returns 0, or -1 when out is too small or in is empty.
 */
int dlr_normalise_id(const char *in, enum id_base base, char *out, size_t cap);

#endif

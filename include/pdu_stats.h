/*
 * pdu_stats.h — counters of SMPP PDUs sent and received, by link,
 * direction, command and (for responses) command_status, rendered as the
 * Prometheus counter skillgate_smpp_pdus_total on /metrics.
 *
 * State is process-global (one event loop, one thread) and lives in a
 * fixed table of PDU_STATS_SLOTS entries: counting never allocates. When
 * the table is full, further new combinations are added to a per-direction
 * overflow series (command="overflow") instead.
 */
#ifndef SG_PDU_STATS_H
#define SG_PDU_STATS_H

#include <stddef.h>
#include <stdint.h>

struct strbuf;

#define PDU_STATS_SLOTS 512
#define PDU_STATS_LINK_MAX 48 /* longer link names are truncated */

/* Direction of a PDU, seen from skillgate. */
enum pdu_stats_dir { PDU_STATS_IN = 0, PDU_STATS_OUT = 1 };

/*
 * Counts one PDU on link (borrowed, copied; NULL counts as "") in direction
 * dir (PDU_STATS_IN or PDU_STATS_OUT). command_id is the header's; ids we
 * do not know are counted as command "unknown". status is only kept for
 * responses (command_id with bit 31 set, generic_nack included) and is
 * ignored for requests.
 */
void pdu_stats_count(const char *link, int dir, uint32_t command_id, uint32_t status);

/*
 * Counts the encoded PDU at pdu (len bytes, header first) from its header's
 * command_id and command_status; fewer than 16 bytes count as "invalid".
 */
void pdu_stats_count_pdu(const char *link, int dir, const uint8_t *pdu, size_t len);

/*
 * Counts one PDU whose header could not be trusted (command_length out of
 * bounds) as command "invalid", without status.
 */
void pdu_stats_count_invalid(const char *link, int dir);

/*
 * Appends the counter family to b: "# HELP"/"# TYPE" lines, then one line
 * per combination seen, in the order they were first seen:
 *   skillgate_smpp_pdus_total{link="l1",direction="in",command="submit_sm_resp",status="ESME_ROK"}
 * 42 Requests carry no status label. status is the ESME_* name for the standard SMPP 3.4 codes,
 * else "0x" and 8 hex digits. Link names are escaped for the exposition format. The overflow
 * series, when non-zero, reads {link="",direction="in",command="overflow"}.
 */
void pdu_stats_render(struct strbuf *b);

/* Forgets every counter (tests). */
void pdu_stats_reset(void);

/* Value of one series (tests): 0 when never counted. */
uint64_t pdu_stats_get(const char *link, int dir, uint32_t command_id, uint32_t status);

#endif

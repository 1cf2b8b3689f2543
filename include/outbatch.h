/*
 * outbatch.h — one batch of submit results and delivery receipts on its way
 * to sg_mt_outcomes (sql/012_outcomes.sql, sql/018_fast_in_daemon.sql).
 *
 * The pipeline collects the rows as the links report them, splits off the
 * messages that are not whole yet (outbatch_split) and sends the rest as the
 * sixteen array parameters of sg_mt_outcomes (outbatch_params): the messages
 * whole and delivered in the batch as one row each (written once, final),
 * the other results and receipts row by row. Pure data: no I/O, no event
 * loop. Allocation failure is fatal.
 */
#ifndef SG_OUTBATCH_H
#define SG_OUTBATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "msg.h"
#include "strbuf.h"

/* sg_mt_outcomes' parameters: 7 result columns, 4 receipt columns, then 5
 * for the messages whole and delivered (id, parts, link, and per part in
 * order the SMSC id and the receipt's error). */
#define OUTBATCH_PARAMS 16

struct outbatch;

struct outbatch *outbatch_new(void);
void outbatch_free(struct outbatch *b);

/* Appends a copy of a submit result (arrived at now_ms, any monotonic clock)
 * or a receipt, in arrival order. */
void outbatch_add_result(struct outbatch *b, const struct msg_mt_result *r, int64_t now_ms);
void outbatch_add_receipt(struct outbatch *b, const struct msg_dlr *d);

int outbatch_results(const struct outbatch *b);
int outbatch_receipts(const struct outbatch *b);

/* The i-th receipt's PDU, to answer once the batch committed (or failed). */
const struct msg_ack *outbatch_receipt_ack(const struct outbatch *b, int i);

/* Forgets the receipts (answered already: a retry carries the results only). */
void outbatch_drop_receipts(struct outbatch *b);

/*
 * Moves into a new batch, returned (NULL when nothing moves), the rows of the
 * messages that are not whole in b and whose oldest result in b arrived less
 * than wait_ms before now_ms: a message whose submit results are not all in
 * b, or whose accepted segments do not all have a final receipt in b. The
 * receipts that refer to a moved result move with it, so results still
 * precede their receipts. A message waits wait_ms at most.
 */
struct outbatch *outbatch_split(struct outbatch *b, int64_t now_ms, int wait_ms);

/*
 * Writes b's rows as PostgreSQL array literals into p[0..OUTBATCH_PARAMS-1]
 * (initialised here; the caller frees them with strbuf_free). A message
 * goes in the last five when b holds no refused result of it, an accepted
 * result for each of its parts (the last one counts) and, for each of
 * those, a first final receipt that says delivered; its results, and every
 * receipt for one of them, are then left out of the first eleven.
 */
void outbatch_params(const struct outbatch *b, struct strbuf p[OUTBATCH_PARAMS]);

#endif

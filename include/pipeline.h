/*
 * pipeline.h — the durable path of every message between the gateway and
 * PostgreSQL (§6):
 *
 *   MO:  gateway -> batch -> sg_mo_prepare (read: duplicates, loop guard,
 *        subscriber snapshots) -> flow engine -> COMMIT (sg_mo_commit: the MO
 *        rows, state, events, replies in the outbox) -> deliver_sm_resp and
 *        submit_sm of the replies
 *   MT:  outbox rows claimed in bounded batches (sg_mt_claim), interactive
 *        before bulk -> gateway; submit_sm_resp outcomes and receipts are
 *        committed in batches (sg_mt_results, sg_dlr_apply), receipts acked
 *        after commit.
 *
 * One subscriber's messages are handled one at a time (a later MO waits,
 * unacknowledged, until the earlier one is committed), so the flow engine
 * always sees committed state. Nothing that matters lives only in memory:
 * after a crash, sg_mo_pending and sg_mt_recover bring back what was left.
 */
#ifndef SG_PIPELINE_H
#define SG_PIPELINE_H

#include <stdint.h>

#include "config.h"
#include "msg.h"

struct event_base;
struct store;
struct content;
struct pipeline;

struct pipeline_stats {
	uint64_t mo_received, mo_committed, mo_duplicates, mo_looping, mo_refused;
	uint64_t mt_queued, mt_submitted, mt_failed, dlr_received;
	uint64_t dlr_parked; /* receipts committed before their submit_sm_resp was recorded */
	int mo_waiting;      /* held behind an earlier MO of the same number */
	int mt_pending;      /* claimed, waiting for room on a link */
	int batches_in_flight;
};

/*
 * cfg, st and gw are borrowed. *content is read at every message, so the
 * daemon can swap it on SIGHUP (pipeline_set_content).
 */
struct pipeline *pipeline_new(struct event_base *base, const struct sg_config *cfg,
                              struct store *st, const struct gw_ops *gw, void *gwarg);
void pipeline_free(struct pipeline *p);

/* The gateway argument of gw_ops, when it exists only after the pipeline. */
void pipeline_set_gateway(struct pipeline *p, void *gwarg);

/*
 * USSD dialog steps from the gateway go to fn(arg, u) (core/ussd.c's
 * ussd_handle), which acknowledges them itself. Unset: acknowledged and
 * ignored.
 */
void pipeline_set_ussd(struct pipeline *p, void (*fn)(void *arg, const struct msg_ussd *u),
                       void *arg);

/* Swaps the content (borrowed; the caller frees the old one afterwards). */
void pipeline_set_content(struct pipeline *p, const struct content *c);

/* The table the gateway calls (first argument: the pipeline). */
const struct core_ops *pipeline_core_ops(void);

/*
 * standby: this instance holds no SMPP link (another instance binds them,
 * see linklock.h), so the outbox is left to the others: no queued MT is
 * claimed until it is cleared. Replies and work already claimed still go to
 * the gateway.
 */
void pipeline_set_standby(struct pipeline *p, bool standby);

/*
 * Bulk MTs (broadcasts, reminders) are claimed only once this is set: the
 * claim re-checks quiet hours and the daily cap against campaign_settings,
 * which the scheduler rewrites from the configuration at start-up
 * (sched_on_configured). Interactive replies never wait for it.
 */
void pipeline_set_bulk_ready(struct pipeline *p);

/* Re-reads pending work from the database; called whenever the store comes up. */
void pipeline_recover(struct pipeline *p);

/* Flushes open batches and calls done(arg) once nothing is in flight. */
void pipeline_stop(struct pipeline *p, void (*done)(void *arg), void *arg);

void pipeline_get_stats(const struct pipeline *p, struct pipeline_stats *out);

/* The clock the pipeline uses (unix seconds); tests may override it. */
int64_t pipeline_now(void);

#endif

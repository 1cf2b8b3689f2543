/*
 * scheduler.h — (named so as not to shadow the system <sched.h>) the campaign scheduler (§3.4,
 * §4.2, §8): skill reminders and scheduled broadcasts, driven by the database. Due work is claimed
 * with FOR UPDATE SKIP LOCKED in bounded batches and turned into outbox rows (mt_messages, priority
 * bulk, with next_attempt_at spacing that honours the broadcast's rate and quiet hours); the
 * pipeline sends them. Several skillgated instances on one database never send the same item twice.
 * "Now" comes from one place (sched_now) so tests can move the clock.
 */
#ifndef SG_SCHEDULER_H
#define SG_SCHEDULER_H

#include <stdint.h>

struct event_base;
struct sg_config;
struct store;
struct sched;

struct sched *sched_new(struct event_base *base, const struct sg_config *cfg, struct store *st);
void sched_start(struct sched *s);
void sched_stop(struct sched *s);
void sched_free(struct sched *s);

/*
 * fn(arg) is called each time the [campaign] settings have been written to
 * the database (at start-up, and again after a failure made the scheduler
 * configure anew). Bulk sending waits for the first call: until then the
 * database holds whatever settings the previous run left behind.
 */
void sched_on_configured(struct sched *s, void (*fn)(void *arg), void *arg);

#endif

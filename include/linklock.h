/*
 * linklock.h — one SMPP link, one instance (§8).
 *
 * Several skillgated instances may share one database. Each [smsc NAME] link
 * is bound by the one instance holding its PostgreSQL session advisory lock
 * (key hashtextextended('skillgate-link:' || NAME, 0)). The locks live on a
 * connection of their own (a one-connection struct store). When the holder
 * dies, PostgreSQL ends its session and another instance takes the lock at
 * its next attempt. When the connection is lost (a PostgreSQL restart), the
 * links stay bound while it is re-established: their locks are taken again
 * at once, and a link whose lock another instance took meanwhile, or not
 * re-taken within 3 intervals, is reported not held.
 *
 * Every [gateway] link_lock_interval seconds the module tries the lock of
 * each link it does not hold and writes this instance's heartbeat
 * (sg_instance_beat, sql/007_instances.sql), which also re-queues the MTs
 * that an instance silent for 3 intervals left 'submitting'.
 *
 * With link_lock = no, every link is reported held at start (no database
 * needed to bind) and only the heartbeat runs.
 */
#ifndef SG_LINKLOCK_H
#define SG_LINKLOCK_H

#include <stdbool.h>

#include "config.h"

struct event_base;
struct linklock;

/*
 * A link became held (bind it) or not held (unbind it). Called from the
 * event loop; link is borrowed for the call.
 */
typedef void (*linklock_cb)(void *arg, const char *link, bool held);

/*
 * Creates the module for cfg's links (cfg borrowed, must outlive it) and its
 * own database connection (not connected yet). Never NULL.
 */
struct linklock *linklock_new(struct event_base *base, const struct sg_config *cfg,
                              linklock_cb on_change, void *arg);

/* Connects and starts trying the locks (reports held at once with
 * link_lock = no). */
void linklock_start(struct linklock *ll);

/*
 * Releases every lock by closing the connection, without calling on_change;
 * nothing more is attempted. For shutdown, once the links are unbound.
 */
void linklock_stop(struct linklock *ll);

/* Links currently held by this instance. */
int linklock_held(const struct linklock *ll);

/* Stops (see linklock_stop) and frees. NULL is a no-op. */
void linklock_free(struct linklock *ll);

#endif

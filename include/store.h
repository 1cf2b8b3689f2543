/*
 * store.h — PostgreSQL on the event loop.
 *
 * A small pool of non-blocking libpq connections (PQconnectStart /
 * PQconnectPoll, PQsendQueryParams, PQconsumeInput) driven by libevent. One
 * query in flight per connection; a bounded FIFO of waiting queries; lost
 * connections are re-established with backoff while the daemon runs.
 *
 * Completions are matched by request id: store_cancel(id) guarantees the
 * callback is never called, so a requester that goes away first cancels and
 * is never called back (STYLE.md §9). No synchronous libpq call is made after
 * store_new() returns.
 */
#ifndef SG_STORE_H
#define SG_STORE_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct store;

/*
 * Query completion. res is the result of the statement (PGRES_TUPLES_OK or
 * PGRES_COMMAND_OK) or NULL when it failed; err then says why (also for SQL
 * errors, with the SQLSTATE). res is freed when the callback returns.
 * Called from the event loop only, never from inside store_query().
 */
typedef void (*store_cb)(void *arg, PGresult *res, const char *err);

struct store *store_new(struct event_base *base, const char *conninfo, int pool, int queue_max,
                        int reconnect_max_s);
void store_free(struct store *st);

/* Starts connecting every connection of the pool. */
void store_start(struct store *st);

/*
 * Logs (warning) every statement whose round trip, from sending it to its
 * last result, commit included, takes ms or more; 0 (the default) logs none.
 * Only the statement's text is logged, never its parameters.
 */
void store_set_slow_ms(struct store *st, int ms);

/*
 * Queues a statement with text parameters (values may be NULL for SQL NULL).
 * The strings are copied. Returns a request id > 0, or 0 when the store has
 * no live connection or its queue is full (nothing queued, cb not called).
 */
uint64_t store_query(struct store *st, const char *sql, int nparams, const char *const *values,
                     store_cb cb, void *arg) __attribute__((warn_unused_result));

/* The callback of request id will not be called. Unknown ids are ignored. */
void store_cancel(struct store *st, uint64_t id);

/* Connections currently up. */
int store_up(const struct store *st);

/* Called (from the loop) each time the store goes from no live connection
 * to at least one: the place to re-read pending work. */
void store_on_up(struct store *st, void (*fn)(void *arg), void *arg);

/* Called (from the loop) each time the store goes from at least one live
 * connection to none, after the in-flight requests of the lost connection
 * were failed: the place to forget state tied to a session (e.g. advisory
 * locks, see linklock.h). */
void store_on_down(struct store *st, void (*fn)(void *arg), void *arg);

/* Queries waiting plus in flight. */
int store_pending(const struct store *st);

/* Calls done(arg) once nothing is waiting or in flight (maybe at once). */
void store_drain(struct store *st, void (*done)(void *arg), void *arg);

struct store_stats {
	uint64_t queries, failed, refused;
	uint64_t
	    latency_buckets[12]; /* round trip <= 0.5,1,2,5,10,20,50,100,200,500,1000 ms, +Inf */
	double latency_sum_ms;
};
extern const double store_latency_bounds_ms[11];
void store_get_stats(const struct store *st, struct store_stats *out);

#endif

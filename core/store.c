/*
 * store.c — the asynchronous PostgreSQL pool (see store.h).
 *
 * Each connection is a tiny state machine: DOWN -> CONNECTING -> IDLE <->
 * BUSY, back to DOWN when the server goes away (then a backoff timer starts
 * CONNECTING again). Waiting requests sit in one FIFO shared by the pool;
 * whenever a connection becomes IDLE it takes the head. A cancelled request
 * stays in place (its query still runs) but its callback is cleared.
 *
 * Statements are prepared, by name, per connection: the first request of a
 * given text on a session sends its Prepare first (one more round trip, once)
 * and every later one only its name and parameters, so PostgreSQL does not
 * parse, analyse and plan the call again for each batch (about 0.1 ms of its
 * CPU per call; a batch at 1,000 MO/s makes three calls for about 5 MOs).
 * PREP_MAX texts per session at most (the daemon has about 20); past that,
 * unnamed statements. A prepared call whose plan the server will not reuse
 * because a migration changed what the statement returns ("cached plan must
 * not change result type", SQLSTATE 0A000: the statement did not run) is
 * prepared again under a new name and sent once more, as is one whose
 * statement the session lost (26000). Named statements need a connection of
 * our own per session, as the link locks' advisory locks already do (a
 * PgBouncer in front: session pooling).
 */
#include "store.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

enum conn_state { PC_DOWN, PC_CONNECTING, PC_IDLE, PC_BUSY };

/* What the command in flight sends of its request: its text, its Prepare, or its name. */
enum conn_cmd { CMD_UNNAMED, CMD_PREPARE, CMD_NAMED };

enum { PREP_MAX = 64, PREP_NAMES_MAX = 4 * PREP_MAX };

struct prep {
	char *sql;
	char name[16];
};

struct req {
	struct req *next;
	uint64_t id;
	char *sql;
	int nparams;
	char **values;
	store_cb cb;
	void *arg;
	struct timespec sent;
	bool reprepared; /* sent again after its prepared plan went stale */
};

struct pgconn {
	struct store *st;
	int idx;
	enum conn_state state;
	PGconn *pg;
	struct event *ev;    /* socket readiness */
	short watching;      /* what ev waits for */
	struct event *retry; /* reconnect timer */
	int backoff_ms;
	struct req *cur;            /* in flight */
	PGresult *last;             /* result being collected */
	struct prep prep[PREP_MAX]; /* this session's prepared statements */
	int nprep;
	unsigned prep_seq;  /* names given on this session: sg1, sg2, ... */
	enum conn_cmd cmd;  /* of the command in flight */
	char prep_name[16]; /* of cur's Prepare (CMD_PREPARE) */
};

struct store {
	struct event_base *base;
	char *conninfo;
	int npool, queue_max, reconnect_max_ms;
	int slow_ms; /* store_set_slow_ms() */
	struct pgconn *conns;
	struct req *head, *tail;
	int queued;
	int inflight;
	uint64_t next_id;
	int up;
	void (*on_up)(void *);
	void *on_up_arg;
	void (*on_down)(void *);
	void *on_down_arg;
	void (*drain_cb)(void *);
	void *drain_arg;
	struct event *failer; /* fails queued requests after the last connection is lost */
	struct store_stats stats;
};

const double store_latency_bounds_ms[11] = {0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};

static void conn_connect(struct pgconn *c);
static void conn_issue(struct pgconn *c);
static void conn_event_cb(evutil_socket_t fd, short what, void *arg);
static void store_dispatch(struct store *st);

static void
req_free(struct req *r)
{
	if (r == NULL)
		return;
	for (int i = 0; i < r->nparams; i++)
		free(r->values[i]);
	free(r->values);
	free(r->sql);
	free(r);
}

static void
req_finish(struct store *st, struct req *r, PGresult *res, const char *err)
{
	if (r->cb != NULL)
		r->cb(r->arg, res, err);
	req_free(r);
}

static void
store_check_drain(struct store *st)
{
	if (st->drain_cb != NULL && st->queued == 0 && st->inflight == 0) {
		void (*fn)(void *) = st->drain_cb;
		st->drain_cb = NULL;
		fn(st->drain_arg);
	}
}

static struct prep *
prep_find(struct pgconn *c, const char *sql)
{
	for (int i = 0; i < c->nprep; i++)
		if (strcmp(c->prep[i].sql, sql) == 0)
			return &c->prep[i];
	return NULL;
}

static void
prep_forget(struct pgconn *c, const char *sql)
{
	struct prep *p = prep_find(c, sql);
	if (p == NULL)
		return;
	free(p->sql);
	*p = c->prep[--c->nprep];
}

static void
prep_clear(struct pgconn *c)
{
	for (int i = 0; i < c->nprep; i++)
		free(c->prep[i].sql);
	c->nprep = 0;
	c->prep_seq = 0;
	c->cmd = CMD_UNNAMED;
}

/* Moves c to DOWN, fails its in-flight request and schedules a reconnect. */
static void
conn_down(struct pgconn *c, const char *reason)
{
	struct store *st = c->st;
	bool was_up = c->state == PC_IDLE || c->state == PC_BUSY;
	/* reason often points into c->pg (PQerrorMessage), which is freed below */
	char why[256];
	snprintf(why, sizeof why, "%s", reason);
	why[strcspn(why, "\n")] = '\0';

	if (c->ev) {
		event_free(c->ev);
		c->ev = NULL;
	}
	if (c->last) {
		PQclear(c->last);
		c->last = NULL;
	}
	if (c->pg) {
		PQfinish(c->pg);
		c->pg = NULL;
	}
	prep_clear(c); /* gone with the session */
	c->state = PC_DOWN;
	if (was_up) {
		st->up--;
		log_warn("store", "connection %d lost: %s", c->idx, why);
	}
	struct req *r = c->cur;
	c->cur = NULL;
	if (r != NULL) {
		st->inflight--;
		st->stats.failed++;
		req_finish(st, r, NULL, why);
	}
	if (st->up == 0 && st->queued > 0)
		event_active(st->failer, 0, 0);
	if (was_up && st->up == 0 && st->on_down != NULL)
		st->on_down(st->on_down_arg);
	if (c->backoff_ms == 0)
		c->backoff_ms = 250;
	else if ((c->backoff_ms *= 2) > st->reconnect_max_ms)
		c->backoff_ms = st->reconnect_max_ms;
	struct timeval tv = {c->backoff_ms / 1000, (c->backoff_ms % 1000) * 1000};
	evtimer_add(c->retry, &tv);
	store_check_drain(st);
}

/* (Re)arms the socket event; kept when it already waits for the same. */
static void
conn_watch(struct pgconn *c, short what)
{
	if (c->ev != NULL && c->watching == what && (what & EV_PERSIST))
		return;
	if (c->ev)
		event_free(c->ev);
	c->ev = event_new(c->st->base, PQsocket(c->pg), what, conn_event_cb, c);
	c->watching = what;
	event_add(c->ev, NULL);
}

static void
conn_up(struct pgconn *c)
{
	struct store *st = c->st;
	c->state = PC_IDLE;
	c->backoff_ms = 0;
	st->up++;
	log_info("store", "connection %d up (%d/%d)", c->idx, st->up, st->npool);
	conn_watch(c, EV_READ | EV_PERSIST); /* notices and server-side closes */
	if (st->up == 1 && st->on_up)
		st->on_up(st->on_up_arg);
	store_dispatch(st);
}

static void
conn_poll_connect(struct pgconn *c)
{
	switch (PQconnectPoll(c->pg)) {
	case PGRES_POLLING_READING:
		conn_watch(c, EV_READ);
		break;
	case PGRES_POLLING_WRITING:
		conn_watch(c, EV_WRITE);
		break;
	case PGRES_POLLING_OK:
		if (PQsetnonblocking(c->pg, 1) != 0) {
			conn_down(c, "cannot set non-blocking");
			break;
		}
		conn_up(c);
		break;
	default: {
		char why[256];
		snprintf(why, sizeof why, "%s", PQerrorMessage(c->pg));
		why[strcspn(why, "\n")] = '\0';
		log_debug("store", "connection %d: connect failed: %s", c->idx, why);
		conn_down(c, why);
		break;
	}
	}
}

/*
 * Session settings of every connection, given ahead of the configured
 * conninfo (whose own "options" replace them): no JIT. Our statements work on
 * batches of at most a few thousand rows; LLVM compiled the larger ones for
 * tens of milliseconds each (a fifth of PostgreSQL's CPU in the MO bench)
 * and never paid it back.
 */
static const char *const conn_keys[] = {"options", "dbname", NULL};

static void
conn_connect(struct pgconn *c)
{
	const char *const vals[] = {"-c jit=off", c->st->conninfo, NULL};
	c->pg = PQconnectStartParams(conn_keys, vals, 1);
	if (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD) {
		conn_down(c, "PQconnectStart failed");
		return;
	}
	c->state = PC_CONNECTING;
	conn_poll_connect(c);
}

static void
conn_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pgconn *c = arg;
	if (c->state == PC_DOWN)
		conn_connect(c);
}

static double
elapsed_ms(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static void
store_record_latency(struct store *st, double ms)
{
	int b = 0;
	while (b < 11 && ms > store_latency_bounds_ms[b])
		b++;
	st->stats.latency_buckets[b]++;
	st->stats.latency_sum_ms += ms;
}

/*
 * The Prepare of c->cur succeeded (the statement is kept, and c->cur sent by
 * name), or a call by name failed because its plan is stale (the statement is
 * forgotten, and c->cur prepared again). Returns false when neither happened.
 */
static bool
conn_prepared_step(struct pgconn *c, PGresult *res)
{
	struct req *r = c->cur;
	ExecStatusType s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (c->cmd == CMD_PREPARE) {
		if (s != PGRES_COMMAND_OK)
			return false; /* the statement's error is the request's */
		struct prep *p = &c->prep[c->nprep];
		if ((p->sql = strdup(r->sql)) == NULL)
			fatal("out of memory");
		memcpy(p->name, c->prep_name, sizeof p->name);
		c->nprep++;
	} else {
		const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
		/* 0A000: the plan would change the result type (a migration changed
		 * it); 26000: the session has lost the statement (DISCARD ALL) */
		if (r->reprepared || state == NULL ||
		    (strcmp(state, "0A000") != 0 && strcmp(state, "26000") != 0))
			return false;
		log_info("store",
		         "connection %d: prepared statement went stale, preparing it again: %.80s",
		         c->idx, r->sql);
		prep_forget(c, r->sql);
		r->reprepared = true;
	}
	if (res)
		PQclear(res);
	c->last = NULL;
	conn_issue(c);
	return true;
}

/* The in-flight query of c has produced all its results. */
static void
conn_complete(struct pgconn *c)
{
	struct store *st = c->st;
	if (c->cmd != CMD_UNNAMED && conn_prepared_step(c, c->last))
		return; /* c->cur is on its way again */
	struct req *r = c->cur;
	PGresult *res = c->last;
	c->cmd = CMD_UNNAMED;
	c->cur = NULL;
	c->last = NULL;
	c->state = PC_IDLE;
	st->inflight--;
	double ms = elapsed_ms(&r->sent);
	store_record_latency(st, ms);
	if (st->slow_ms > 0 && ms >= st->slow_ms)
		log_warn("store", "slow statement: %.0f ms, commit included: %.80s", ms, r->sql);

	ExecStatusType s = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK) {
		req_finish(st, r, res, NULL);
	} else {
		char why[512];
		const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
		snprintf(why, sizeof why, "%s%s%s", state ? state : "", state ? ": " : "",
		         res ? PQresultErrorMessage(res) : "no result");
		why[strcspn(why, "\n")] = '\0';
		st->stats.failed++;
		log_warn("store", "query failed: %s", why);
		req_finish(st, r, NULL, why);
	}
	if (res)
		PQclear(res);
	store_dispatch(st);
	store_check_drain(st);
}

static void
conn_read(struct pgconn *c)
{
	if (!PQconsumeInput(c->pg)) {
		conn_down(c, PQerrorMessage(c->pg));
		return;
	}
	while (c->state == PC_BUSY && !PQisBusy(c->pg)) {
		PGresult *res = PQgetResult(c->pg);
		if (res == NULL) {
			conn_complete(c);
			return;
		}
		if (c->last)
			PQclear(c->last); /* keep the last result of the statement */
		c->last = res;
	}
	if (c->state == PC_IDLE) {
		/* nothing in flight: drain notices, detect closed connections */
		PGnotify *n;
		while ((n = PQnotifies(c->pg)) != NULL)
			PQfreemem(n);
		if (PQstatus(c->pg) == CONNECTION_BAD)
			conn_down(c, "server closed the connection");
	}
}

static void
conn_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pgconn *c = arg;

	switch (c->state) {
	case PC_CONNECTING:
		conn_poll_connect(c);
		break;
	case PC_BUSY:
		if (what & EV_WRITE) {
			int f = PQflush(c->pg);
			if (f < 0) {
				conn_down(c, PQerrorMessage(c->pg));
				return;
			}
			if (f == 0)
				conn_watch(c, EV_READ | EV_PERSIST);
		}
		if (what & EV_READ)
			conn_read(c);
		break;
	case PC_IDLE:
		conn_read(c);
		break;
	case PC_DOWN:
		break;
	}
}

/*
 * Sends c->cur: by name when this session has prepared its text; else its
 * Prepare (conn_complete then sends it by name); unnamed when the session
 * has prepared as many statements as it may.
 */
static void
conn_issue(struct pgconn *c)
{
	struct req *r = c->cur;
	const char *const *values = (const char *const *)r->values;
	const struct prep *p = prep_find(c, r->sql);
	int ok;
	if (p != NULL) {
		c->cmd = CMD_NAMED;
		ok = PQsendQueryPrepared(c->pg, p->name, r->nparams, values, NULL, NULL, 0);
	} else if (c->nprep < PREP_MAX && c->prep_seq < PREP_NAMES_MAX) {
		snprintf(c->prep_name, sizeof c->prep_name, "sg%u", ++c->prep_seq);
		c->cmd = CMD_PREPARE;
		ok = PQsendPrepare(c->pg, c->prep_name, r->sql, r->nparams, NULL);
	} else {
		c->cmd = CMD_UNNAMED;
		ok = PQsendQueryParams(c->pg, r->sql, r->nparams, NULL, values, NULL, NULL, 0);
	}
	if (!ok) {
		conn_down(c, PQerrorMessage(c->pg));
		return;
	}
	int f = PQflush(c->pg);
	if (f < 0)
		conn_down(c, PQerrorMessage(c->pg));
	else
		conn_watch(c, f == 1 ? (EV_READ | EV_WRITE | EV_PERSIST) : (EV_READ | EV_PERSIST));
}

static void
conn_send(struct pgconn *c, struct req *r)
{
	struct store *st = c->st;
	c->cur = r;
	c->state = PC_BUSY;
	st->inflight++;
	st->stats.queries++;
	clock_gettime(CLOCK_MONOTONIC, &r->sent);
	conn_issue(c);
}

static void
store_dispatch(struct store *st)
{
	for (int i = 0; i < st->npool && st->head != NULL; i++) {
		struct pgconn *c = &st->conns[i];
		if (c->state != PC_IDLE)
			continue;
		struct req *r = st->head;
		st->head = r->next;
		if (st->head == NULL)
			st->tail = NULL;
		st->queued--;
		r->next = NULL;
		conn_send(c, r);
	}
}

/* Fails every waiting request once no connection is left to run them. */
static void
store_fail_cb(evutil_socket_t fd, short what, void *arg)
{
	struct store *st = arg;
	if (st->up > 0)
		return;
	while (st->head != NULL) {
		struct req *r = st->head;
		st->head = r->next;
		st->queued--;
		st->stats.failed++;
		req_finish(st, r, NULL, "database unavailable");
	}
	st->tail = NULL;
	store_check_drain(st);
}

struct store *
store_new(struct event_base *base, const char *conninfo, int pool, int queue_max,
          int reconnect_max_s)
{
	struct store *st = calloc(1, sizeof *st);
	if (st == NULL)
		fatal("out of memory");
	st->base = base;
	st->conninfo = strdup(conninfo);
	st->npool = pool;
	st->queue_max = queue_max;
	st->reconnect_max_ms = reconnect_max_s * 1000;
	st->next_id = 1;
	st->conns = calloc((size_t)pool, sizeof *st->conns);
	if (st->conninfo == NULL || st->conns == NULL)
		fatal("out of memory");
	st->failer = event_new(base, -1, 0, store_fail_cb, st);
	for (int i = 0; i < pool; i++) {
		st->conns[i].st = st;
		st->conns[i].idx = i;
		st->conns[i].retry = evtimer_new(base, conn_retry_cb, &st->conns[i]);
	}
	return st;
}

void
store_set_slow_ms(struct store *st, int ms)
{
	st->slow_ms = ms;
}

void
store_start(struct store *st)
{
	for (int i = 0; i < st->npool; i++)
		if (st->conns[i].state == PC_DOWN)
			conn_connect(&st->conns[i]);
}

void
store_free(struct store *st)
{
	if (st == NULL)
		return;
	for (int i = 0; i < st->npool; i++) {
		struct pgconn *c = &st->conns[i];
		if (c->ev)
			event_free(c->ev);
		event_free(c->retry);
		if (c->last)
			PQclear(c->last);
		if (c->pg)
			PQfinish(c->pg);
		prep_clear(c);
		req_free(c->cur);
	}
	while (st->head) {
		struct req *r = st->head;
		st->head = r->next;
		req_free(r);
	}
	event_free(st->failer);
	free(st->conns);
	free(st->conninfo);
	free(st);
}

uint64_t
store_query(struct store *st, const char *sql, int nparams, const char *const *values, store_cb cb,
            void *arg)
{
	if (st->up == 0 || st->queued >= st->queue_max) {
		st->stats.refused++;
		return 0;
	}
	struct req *r = calloc(1, sizeof *r);
	if (r == NULL)
		fatal("out of memory");
	r->id = st->next_id++;
	r->sql = strdup(sql);
	r->nparams = nparams;
	r->values = calloc((size_t)(nparams > 0 ? nparams : 1), sizeof *r->values);
	if (r->sql == NULL || r->values == NULL)
		fatal("out of memory");
	for (int i = 0; i < nparams; i++) {
		if (values[i] != NULL && (r->values[i] = strdup(values[i])) == NULL)
			fatal("out of memory");
	}
	r->cb = cb;
	r->arg = arg;
	if (st->tail)
		st->tail->next = r;
	else
		st->head = r;
	st->tail = r;
	st->queued++;
	store_dispatch(st);
	return r->id;
}

void
store_cancel(struct store *st, uint64_t id)
{
	for (struct req *r = st->head; r; r = r->next)
		if (r->id == id)
			r->cb = NULL;
	for (int i = 0; i < st->npool; i++)
		if (st->conns[i].cur && st->conns[i].cur->id == id)
			st->conns[i].cur->cb = NULL;
}

int
store_up(const struct store *st)
{
	return st->up;
}

void
store_on_up(struct store *st, void (*fn)(void *arg), void *arg)
{
	st->on_up = fn;
	st->on_up_arg = arg;
}

void
store_on_down(struct store *st, void (*fn)(void *arg), void *arg)
{
	st->on_down = fn;
	st->on_down_arg = arg;
}

int
store_pending(const struct store *st)
{
	return st->queued + st->inflight;
}

void
store_drain(struct store *st, void (*done)(void *arg), void *arg)
{
	st->drain_cb = done;
	st->drain_arg = arg;
	store_check_drain(st);
}

void
store_get_stats(const struct store *st, struct store_stats *out)
{
	*out = st->stats;
}

/*
 * sched.c — the campaign scheduler (§3.4, §4.2, §8), driven by the
 * database. The work itself is done by the SQL functions of
 * sql/004_campaigns.sql; this module only paces them on the event loop:
 *
 *   configure  sg_campaign_configure(settings)   once, and again after errors
 *   broadcast  sg_broadcast_step(now, chunk)     one chunk of one due broadcast
 *   plan       sg_reminders_plan(now, limit, h)  every SCHED_PLAN_EVERY seconds
 *   dispatch   sg_reminders_dispatch(now, limit)
 *
 * One statement in flight at a time (store_query), each bounded (a chunk of
 * recipients, a batch of reminders). A round runs the steps in order; the
 * next round starts after SCHED_BUSY_MS when a step found more work, else
 * after SCHED_IDLE_MS. Everything is claimed in the database with FOR UPDATE
 * SKIP LOCKED, so several instances can run this side by side, and nothing
 * lives only here: a restart simply carries on from the tables.
 *
 * The clock: every step passes "now" to SQL. Normally that is NULL (the
 * database clock, now()). When the environment variable SKILLGATE_FAKE_NOW
 * is set at start-up to an ISO timestamp (e.g. "2026-10-01T22:00:00+07:00")
 * that time is used instead, frozen; with a trailing '~'
 * ("2026-10-01T22:00:00+07:00~") it advances at real speed from start-up.
 * Tests use it to put the scheduler in quiet hours or days ahead. The
 * pipeline still sends on the database clock.
 */
#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "config.h"
#include "content.h"
#include "log.h"
#include "scheduler.h"
#include "store.h"

#define SCHED_BUSY_MS 200         /* next round when a step found more work */
#define SCHED_IDLE_MS 5000        /* next round otherwise */
#define SCHED_RETRY_MS 10000      /* after an error or with no database */
#define SCHED_CHUNK 5000          /* broadcast recipients per statement */
#define SCHED_PLAN_LIMIT 5000     /* reminders planned per statement */
#define SCHED_PLAN_HORIZON 3600   /* seconds ahead a reminder is planned */
#define SCHED_PLAN_EVERY 30       /* seconds between planning rounds */
#define SCHED_DISPATCH_LIMIT 1000 /* reminders sent per statement */
#define SCHED_FAKE_MAX 64

enum sched_step { SCHED_CONFIGURE = 0, SCHED_BROADCAST, SCHED_PLAN, SCHED_DISPATCH, SCHED_DONE };

struct sched {
	struct event_base *base;     /* borrowed */
	const struct sg_config *cfg; /* borrowed */
	struct store *st;            /* borrowed */
	struct event *timer;
	uint64_t req;         /* store request in flight, 0 none */
	enum sched_step step; /* step running or next to run */
	bool running;
	bool configured;
	void (*on_configured)(void *arg);
	void *on_configured_arg;
	bool more;                 /* a step of this round found more work */
	time_t last_plan;          /* monotonic seconds of the last plan */
	char *settings;            /* JSON for sg_campaign_configure */
	char fake[SCHED_FAKE_MAX]; /* SKILLGATE_FAKE_NOW without '~', "" = real time */
	bool fake_advance;
	time_t started; /* monotonic seconds at sched_new */
	uint64_t broadcast_msgs, reminders_sent;
};

static void sched_round(struct sched *s);
static void sched_next(struct sched *s);

static time_t
mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static void
arm(struct sched *s, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	if (s->running)
		evtimer_add(s->timer, &tv);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched *s = arg;
	(void)fd;
	(void)what;
	if (s->req == 0)
		sched_round(s);
}

/* Sum of the link rates (msg/s) for broadcasts without a rate; 0 when any
 * link is unlimited (then the pipeline's per-link rate does the pacing). */
static int
default_rate(const struct sg_config *cfg)
{
	int sum = 0;
	for (int i = 0; i < cfg->n_links; i++) {
		if (cfg->links[i].rate <= 0)
			return 0;
		sum += cfg->links[i].rate;
	}
	return sum;
}

/* Reminder templates from the content files when they define them. */
static void
add_texts(json_t *root, const char *content_dir)
{
	static const char *const kinds[] = {"unfinished", "failed", "next"};
	static const char *const langs[CONTENT_LANGS] = {"vi", "en"};
	struct content *c = content_load(content_dir, NULL, NULL);
	if (c == NULL)
		return;
	json_t *texts = json_object();
	for (int l = 0; l < CONTENT_LANGS; l++) {
		json_t *one = json_object();
		for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
			char key[32];
			snprintf(key, sizeof key, "reminder_%s", kinds[k]);
			const char *t = content_msg(c, l, key);
			if (t[0] != '\0')
				json_object_set_new(one, kinds[k], json_string(t));
		}
		json_object_set_new(texts, langs[l], one);
	}
	json_object_set_new(root, "reminder_texts", texts);
	content_free(c);
}

static char *
build_settings(const struct sg_config *cfg)
{
	json_t *o = json_object();
	json_object_set_new(o, "timezone", json_string(cfg->timezone));
	json_object_set_new(o, "quiet_hours", json_string(cfg->quiet_hours));
	json_object_set_new(o, "daily_cap", json_integer(cfg->daily_cap));
	json_object_set_new(o, "mt_validity", json_integer(cfg->mt_validity));
	json_object_set_new(o, "default_rate", json_integer(default_rate(cfg)));
	json_object_set_new(o, "reminder_max_per_skill", json_integer(cfg->reminder_max_per_skill));
	json_object_set_new(o, "reminder_unfinished_delay",
	                    json_integer(cfg->reminder_unfinished_delay));
	json_object_set_new(o, "reminder_failed_delay", json_integer(cfg->reminder_failed_delay));
	json_object_set_new(o, "reminder_next_delay", json_integer(cfg->reminder_next_delay));
	json_object_set_new(o, "flow_idle_timeout", json_integer(cfg->flow_idle_timeout));
	if (cfg->content_dir[0] != '\0')
		add_texts(o, cfg->content_dir);
	char *txt = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return txt;
}

/*
 * A scheduler on base, pacing the campaign work of cfg through st (all
 * borrowed; they must outlive it). Reads SKILLGATE_FAKE_NOW here. Nothing
 * runs before sched_start(). The caller owns the result (sched_free); NULL
 * when out of memory.
 */
struct sched *
sched_new(struct event_base *base, const struct sg_config *cfg, struct store *st)
{
	struct sched *s = calloc(1, sizeof *s);
	if (s == NULL)
		return NULL;
	s->base = base;
	s->cfg = cfg;
	s->st = st;
	s->timer = evtimer_new(base, timer_cb, s);
	s->started = mono_now();
	s->last_plan = 0;
	const char *fake = getenv("SKILLGATE_FAKE_NOW");
	if (fake != NULL && fake[0] != '\0') {
		size_t n = strlen(fake);
		if (n >= sizeof s->fake) {
			log_error("sched", "SKILLGATE_FAKE_NOW is too long; using the real clock");
		} else {
			memcpy(s->fake, fake, n + 1);
			if (n > 0 && s->fake[n - 1] == '~') {
				s->fake[n - 1] = '\0';
				s->fake_advance = true;
			}
			log_warn("sched", "fake clock: now = %s%s", s->fake,
			         s->fake_advance ? " (advancing)" : " (frozen)");
		}
	}
	if (s->timer == NULL) {
		free(s);
		return NULL;
	}
	return s;
}

/*
 * Starts the rounds (the first one at once). Reads the [campaign] settings
 * and the optional reminder texts of the content files (reminder_unfinished,
 * reminder_failed, reminder_next) once, here.
 */
void
sched_start(struct sched *s)
{
	if (s == NULL || s->running)
		return;
	free(s->settings);
	s->settings = build_settings(s->cfg);
	s->running = true;
	s->configured = false;
	arm(s, 0);
}

void
sched_on_configured(struct sched *s, void (*fn)(void *arg), void *arg)
{
	s->on_configured = fn;
	s->on_configured_arg = arg;
}

/* Stops the rounds; a statement in flight is forgotten (its transaction
 * commits or not on its own; all its effects are idempotent). */
void
sched_stop(struct sched *s)
{
	if (s == NULL)
		return;
	s->running = false;
	evtimer_del(s->timer);
	if (s->req != 0) {
		store_cancel(s->st, s->req);
		s->req = 0;
	}
}

/* Stops and frees s. NULL is a no-op. */
void
sched_free(struct sched *s)
{
	if (s == NULL)
		return;
	sched_stop(s);
	event_free(s->timer);
	free(s->settings);
	free(s);
}

/* "now" as two SQL parameters: a timestamp (NULL = database clock) and the
 * seconds to add to it. */
static void
sched_now(const struct sched *s, const char **ts, char *secs, size_t cap)
{
	*ts = s->fake[0] != '\0' ? s->fake : NULL;
	snprintf(secs, cap, "%lld", s->fake_advance ? (long long)(mono_now() - s->started) : 0LL);
}

static void
step_cb(void *arg, PGresult *res, const char *err)
{
	struct sched *s = arg;
	s->req = 0;
	if (res == NULL) {
		log_warn("sched", "campaign step %d failed: %s", (int)s->step, err ? err : "?");
		s->configured = false; /* maybe a fresh database: configure again */
		s->step = SCHED_DONE;
		arm(s, SCHED_RETRY_MS);
		return;
	}
	switch (s->step) {
	case SCHED_CONFIGURE:
		s->configured = true;
		log_info("sched", "campaign settings written");
		if (s->on_configured)
			s->on_configured(s->on_configured_arg);
		break;
	case SCHED_BROADCAST:
		if (PQntuples(res) == 1) {
			long added = strtol(PQgetvalue(res, 0, 1), NULL, 10);
			const char *state = PQgetvalue(res, 0, 2);
			s->broadcast_msgs += (uint64_t)(added > 0 ? added : 0);
			log_info("sched", "broadcast %s: %ld recipient(s) resolved, now %s",
			         PQgetvalue(res, 0, 0), added, state);
			s->more = true; /* maybe another chunk or another broadcast */
		}
		break;
	case SCHED_PLAN:
		if (PQntuples(res) == 1) {
			long n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
			if (n > 0)
				log_info("sched", "%ld reminder(s) planned", n);
			if (n >= SCHED_PLAN_LIMIT)
				s->last_plan = 0; /* plan again next round */
		}
		break;
	case SCHED_DISPATCH:
		if (PQntuples(res) == 1) {
			long n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
			if (n > 0) {
				s->reminders_sent += (uint64_t)n;
				log_info("sched", "%ld reminder(s) queued", n);
				s->more = true;
			}
		}
		break;
	case SCHED_DONE:
	default:
		break;
	}
	s->step++;
	sched_next(s);
}

/* Runs the current step, or skips it; ends the round after the last one. */
static void
sched_next(struct sched *s)
{
	char secs[24], lim[16], hor[16];
	const char *ts;
	const char *sql = NULL;
	const char *params[4];
	int n = 0;

	if (!s->running)
		return;
	for (;;) {
		if (s->step >= SCHED_DONE) {
			arm(s, s->more ? SCHED_BUSY_MS : SCHED_IDLE_MS);
			return;
		}
		if (s->step == SCHED_CONFIGURE && s->configured) {
			s->step++;
			continue;
		}
		if (s->step == SCHED_PLAN && s->last_plan != 0 &&
		    mono_now() - s->last_plan < SCHED_PLAN_EVERY) {
			s->step++;
			continue;
		}
		break;
	}
	sched_now(s, &ts, secs, sizeof secs);
	switch (s->step) {
	case SCHED_CONFIGURE:
		sql = "SELECT sg_campaign_configure($1::jsonb, 'skillgated')";
		params[n++] = s->settings ? s->settings : "{}";
		break;
	case SCHED_BROADCAST:
		snprintf(lim, sizeof lim, "%d", SCHED_CHUNK);
		sql = "SELECT * FROM sg_broadcast_step($1::timestamptz + make_interval(secs => "
		      "$2::int), "
		      "$3::int)";
		params[n++] = ts;
		params[n++] = secs;
		params[n++] = lim;
		break;
	case SCHED_PLAN:
		s->last_plan = mono_now();
		snprintf(lim, sizeof lim, "%d", SCHED_PLAN_LIMIT);
		snprintf(hor, sizeof hor, "%d", SCHED_PLAN_HORIZON);
		sql = "SELECT sg_reminders_plan($1::timestamptz + make_interval(secs => $2::int), "
		      "$3::int, $4::int)";
		params[n++] = ts;
		params[n++] = secs;
		params[n++] = lim;
		params[n++] = hor;
		break;
	case SCHED_DISPATCH:
		snprintf(lim, sizeof lim, "%d", SCHED_DISPATCH_LIMIT);
		sql = "SELECT sg_reminders_dispatch($1::timestamptz + make_interval(secs => "
		      "$2::int), "
		      "$3::int)";
		params[n++] = ts;
		params[n++] = secs;
		params[n++] = lim;
		break;
	case SCHED_DONE:
	default:
		return;
	}
	s->req = store_query(s->st, sql, n, params, step_cb, s);
	if (s->req == 0) {
		/* no live connection or queue full: try the whole round later */
		s->step = SCHED_DONE;
		arm(s, SCHED_RETRY_MS);
	}
}

static void
sched_round(struct sched *s)
{
	if (!s->running)
		return;
	if (store_up(s->st) == 0) {
		arm(s, 1000);
		return;
	}
	s->more = false;
	s->step = SCHED_CONFIGURE;
	sched_next(s);
}

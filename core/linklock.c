/*
 * linklock.c — advisory locks on the SMPP links and the instance heartbeat
 * (see linklock.h).
 *
 * State per link: held (we own its lock on our connection), unsure (held
 * when our connection was lost: to be taken again) and busy (a
 * pg_try_advisory_lock is in flight). A timer runs every link_lock_interval
 * seconds, and once as soon as the connection comes up: one attempt per link
 * not held or unsure and not busy, and one heartbeat.
 *
 * Losing the connection (store on_down) does not unbind at once: a
 * PostgreSQL restart must not take the links down (MOs keep getting
 * temporary errors, §6), and while the database is unreachable no other
 * instance can take a lock either. The held links become unsure: when the
 * connection is back their locks are taken again at once and a link whose
 * lock another instance took meanwhile is reported not held; a link still
 * unsure after LINKLOCK_STALE_BEATS intervals is reported not held too.
 */
#include "linklock.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "store.h"

#define MOD "linklock"
#define LINKLOCK_STALE_BEATS 3 /* silent intervals before an instance counts as dead */

struct ll_link {
	struct linklock *ll;
	const char *name; /* cfg->links[i].name */
	bool held, unsure, busy;
	uint64_t req;
};

struct linklock {
	struct event_base *base;
	const struct sg_config *cfg;
	struct store *st; /* NULL once stopped */
	struct event *timer;
	struct event *grace; /* unsure links give up */
	linklock_cb on_change;
	void *arg;
	char owner[64];
	struct ll_link links[CONFIG_MAX_LINKS];
	int nlinks;
	uint64_t beat_req;
	bool started;
};

static void
ll_set(struct ll_link *k, bool held)
{
	if (k->held == held)
		return;
	k->held = held;
	log_info(MOD, "link %s: lock %s", k->name, held ? "held: binding" : "lost: standby");
	k->ll->on_change(k->ll->arg, k->name, held);
}

static void
lock_cb(void *arg, PGresult *res, const char *err)
{
	struct ll_link *k = arg;

	k->busy = false;
	k->req = 0;
	if (res == NULL) {
		log_warn(MOD, "link %s: lock attempt failed: %s", k->name, err);
		return;
	}
	bool got = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	k->unsure = false;
	if (!got)
		log_debug(MOD, "link %s: held by another instance", k->name);
	ll_set(k, got);
}

static void
beat_cb(void *arg, PGresult *res, const char *err)
{
	struct linklock *ll = arg;

	ll->beat_req = 0;
	if (res == NULL) {
		log_warn(MOD, "heartbeat failed: %s", err);
		return;
	}
	long n = PQntuples(res) == 1 ? strtol(PQgetvalue(res, 0, 0), NULL, 10) : 0;
	if (n > 0)
		log_warn(MOD, "%ld MT left in flight by a dead instance queued again", n);
}

/* One round: a lock attempt per free link, one heartbeat. */
static void
ll_round(struct linklock *ll)
{
	if (ll->st == NULL || store_up(ll->st) == 0)
		return;
	if (ll->cfg->link_lock) {
		for (int i = 0; i < ll->nlinks; i++) {
			struct ll_link *k = &ll->links[i];
			const char *params[] = {k->name};
			if ((k->held && !k->unsure) || k->busy)
				continue;
			k->req = store_query(ll->st,
			                     "SELECT pg_try_advisory_lock("
			                     "hashtextextended('skillgate-link:' || $1, 0))",
			                     1, params, lock_cb, k);
			k->busy = k->req != 0;
		}
	}
	if (ll->beat_req == 0) {
		char stale[16];
		snprintf(stale, sizeof stale, "%d",
		         ll->cfg->link_lock_interval * LINKLOCK_STALE_BEATS);
		const char *params[] = {ll->owner, stale};
		ll->beat_req = store_query(ll->st, "SELECT sg_instance_beat($1, $2::int)", 2,
		                           params, beat_cb, ll);
	}
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	ll_round(arg);
}

static void
up_cb(void *arg)
{
	ll_round(arg);
}

/* The connection is gone, and every session lock with it: see the top. */
static void
down_cb(void *arg)
{
	struct linklock *ll = arg;
	struct timeval tv = {ll->cfg->link_lock_interval * LINKLOCK_STALE_BEATS, 0};
	bool any = false;

	if (!ll->cfg->link_lock)
		return;
	for (int i = 0; i < ll->nlinks; i++)
		if (ll->links[i].held) {
			ll->links[i].unsure = true;
			any = true;
		}
	if (any) {
		log_warn(MOD, "lock connection lost: links stay bound for %ld s unless taken again",
		         (long)tv.tv_sec);
		evtimer_add(ll->grace, &tv);
	}
}

static void
grace_cb(evutil_socket_t fd, short what, void *arg)
{
	struct linklock *ll = arg;

	for (int i = 0; i < ll->nlinks; i++) {
		struct ll_link *k = &ll->links[i];
		if (k->unsure) {
			k->unsure = false;
			ll_set(k, false);
		}
	}
}

struct linklock *
linklock_new(struct event_base *base, const struct sg_config *cfg, linklock_cb on_change, void *arg)
{
	struct linklock *ll = calloc(1, sizeof *ll);

	if (ll == NULL)
		fatal("out of memory");
	ll->base = base;
	ll->cfg = cfg;
	ll->on_change = on_change;
	ll->arg = arg;
	/* the owner name the pipeline writes in mt_messages.owner */
	snprintf(ll->owner, sizeof ll->owner, "%s",
	         cfg->instance_name); /* never empty: config_load */
	ll->nlinks = cfg->n_links;
	for (int i = 0; i < cfg->n_links; i++) {
		ll->links[i].ll = ll;
		ll->links[i].name = cfg->links[i].name;
	}
	ll->st = store_new(base, cfg->db_conninfo, 1, CONFIG_MAX_LINKS + 4, cfg->db_reconnect_max);
	store_set_slow_ms(ll->st, cfg->db_slow_ms);
	ll->timer = event_new(base, -1, EV_PERSIST, timer_cb, ll);
	ll->grace = evtimer_new(base, grace_cb, ll);
	if (ll->timer == NULL || ll->grace == NULL)
		fatal("out of memory");
	store_on_up(ll->st, up_cb, ll);
	store_on_down(ll->st, down_cb, ll);
	return ll;
}

void
linklock_start(struct linklock *ll)
{
	struct timeval tv = {ll->cfg->link_lock_interval, 0};

	if (ll->started || ll->st == NULL)
		return;
	ll->started = true;
	if (!ll->cfg->link_lock)
		for (int i = 0; i < ll->nlinks; i++)
			ll_set(&ll->links[i], true);
	evtimer_add(ll->timer, &tv);
	store_start(ll->st);
}

void
linklock_stop(struct linklock *ll)
{
	if (ll->st == NULL)
		return;
	evtimer_del(ll->timer);
	evtimer_del(ll->grace);
	store_free(ll->st); /* closes the session: PostgreSQL releases its locks */
	ll->st = NULL;
	for (int i = 0; i < ll->nlinks; i++) {
		ll->links[i].held = false;
		ll->links[i].unsure = false;
		ll->links[i].busy = false;
	}
	if (ll->cfg->link_lock && ll->nlinks > 0)
		log_info(MOD, "link locks released");
}

int
linklock_held(const struct linklock *ll)
{
	int n = 0;

	for (int i = 0; i < ll->nlinks; i++)
		n += ll->links[i].held;
	return n;
}

void
linklock_free(struct linklock *ll)
{
	if (ll == NULL)
		return;
	linklock_stop(ll);
	event_free(ll->timer);
	event_free(ll->grace);
	free(ll);
}

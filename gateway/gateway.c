/*
 * gateway.c — the SMPP links (see gateway.h).
 *
 * Each [smsc NAME] link owns one transceiver session or a transmitter and a
 * receiver session, two bounded lanes of queued MT (interactive always
 * drained before bulk), a retry list that goes before both lanes (kept in
 * original dispatch order, so a throttled segment is resent before anything
 * sent after it), a token bucket counting segments, and a throttle pause.
 *
 * Routing of a new MT: msg_mt.link if set, else the longest prefix of
 * msg_mt.to among the links' prefixes, else the default_route link; when
 * that link has no bound transmitter the MT fails over to the first other
 * link that has one; when none has, it is queued on its own link to wait
 * for a bind (-2 only when no link serves the number). A message already
 * queued on a link that then goes down stays queued there, in order, until
 * it rebinds or another link comes up (segments in flight when it dropped
 * are retried, counting as one try). A message has at most one segment in
 * flight, so its segments reach the SMSC in order even across throttling.
 *
 * Inbound deliver_sm/data_sm become receipts (esm_class 0x04, or
 * receipted_message_id / message_state TLVs, or receipt text), USSD steps
 * (ussd_service_op TLV), concatenated parts (UDH or SAR, reassembled by
 * concat.c) or plain MO. None is acknowledged here: core acks through
 * gw_ops.ack once it has committed, keyed by the connection id, so an ack
 * decided after a reconnect is dropped (the SMSC redelivers).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "concat.h"
#include "dlr.h"
#include "gateway.h"
#include "log.h"
#include "msisdn.h"
#include "smpp_session.h"
#include "text.h"
#include "strbuf.h"

#define MOD "gateway"
#define MAX_SEG TEXT_MAX_SEGMENTS

struct link;

struct mt_item {
	struct link *link;
	uint64_t serial;
	int64_t id;
	enum msg_prio prio;
	char to[MSG_MSISDN_MAX], from[MSG_ADDR_MAX];
	bool ussd, ussd_end;
	char key[40];
	int nparts;     /* submit_sm to send */
	int next;       /* next part to take from the lane */
	int unresolved; /* parts without a final outcome */
	bool in_lane;
	bool busy; /* a part is in flight or waiting for its retry */
	uint8_t tries[MAX_SEG];
	uint64_t order[MAX_SEG]; /* dispatch order, for retries */
	struct text_out out;
	bool use_payload; /* one submit_sm with message_payload */
	uint16_t payload_len;
	uint8_t payload[TEXT_PAYLOAD_MAX];
};

struct retry {
	struct mt_item *it;
	int part;
	uint64_t order;
};

struct lane {
	struct mt_item **v;
	int cap, head, n;
	bool want_ready; /* core was told "full": call ready() when room appears */
};

struct link {
	struct gateway *gw;
	const struct smsc_conf *conf;
	struct smpp_session *sess[2]; /* [0] trx or tx, [1] rx */
	int nsess;
	struct lane lane[MSG_PRIO_COUNT];
	struct retry *retry;
	int nretry, retry_cap;
	/* items not finished yet, by serial (a response's cookie names one):
	 * open addressing, linear probing, at most half full */
	struct mt_item **live;
	size_t live_cap, nlive;
	uint64_t serial, order;
	uint16_t ref;
	double tokens;
	struct timespec refill_at;
	struct event *pump_timer, *pause_timer;
	bool paused, in_pump, pump_again, tx_up;
	bool enabled; /* may bind (its lock is held, see linklock.h) */
	int throttle_n;
	struct concat *concat;
	uint64_t submitted, submit_failed, received, dlrs;
};

struct gateway {
	struct event_base *base;
	const struct sg_config *cfg;
	const struct core_ops *ops;
	void *core;
	struct link links[CONFIG_MAX_LINKS];
	int nlinks;
	struct event *tick;
	bool started, stopping;
	void (*stop_done)(void *);
	void *stop_arg;
	struct event *stop_ev;
};

static void pump(struct link *l);
static void reroute_queued(struct link *l);

/* Bounded copy that truncates silently (addresses from the peer). */
static void
scopy(char *dst, size_t cap, const char *src)
{
	size_t n = strnlen(src, cap - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* ---------------------------------------------------------------------- */
/* Lanes and items                                                         */

static void item_free_if_done(struct mt_item *it);

/*
 * Pops the lane's head items whose parts have all been taken (an item in
 * the middle of the lane may be fully taken before the head is: it leaves
 * when it reaches the head).
 */
static void
lane_trim(struct link *l, enum msg_prio prio)
{
	struct lane *ln = &l->lane[prio];
	bool popped = false;

	while (ln->n > 0 && ln->v[ln->head]->next == ln->v[ln->head]->nparts) {
		struct mt_item *it = ln->v[ln->head];
		it->in_lane = false;
		ln->head = (ln->head + 1) % ln->cap;
		ln->n--;
		popped = true;
		item_free_if_done(it);
	}
	if (popped && ln->want_ready) {
		ln->want_ready = false;
		l->gw->ops->ready(l->gw->core, l->conf->name, prio);
	}
}

/* ---------------------------------------------------------------------- */
/* Live items by serial                                                    */

static size_t
live_slot(const struct link *l, uint64_t serial)
{
	return (size_t)((serial * 0x9E3779B97F4A7C15ull) >> 32) & (l->live_cap - 1);
}

static void
live_place(struct link *l, struct mt_item *it)
{
	size_t i = live_slot(l, it->serial);

	while (l->live[i] != NULL)
		i = (i + 1) & (l->live_cap - 1);
	l->live[i] = it;
}

/* Room for one more item in l's table (grown when half full). 0, or -1
 * when out of memory. */
static int
live_reserve(struct link *l)
{
	if ((l->nlive + 1) * 2 <= l->live_cap)
		return 0;
	size_t cap = l->live_cap ? l->live_cap * 2 : 64;
	struct mt_item **old = l->live;
	size_t ocap = l->live_cap;
	l->live = calloc(cap, sizeof *l->live);
	if (l->live == NULL) {
		l->live = old;
		return -1;
	}
	l->live_cap = cap;
	for (size_t i = 0; i < ocap; i++)
		if (old[i] != NULL)
			live_place(l, old[i]);
	free(old);
	return 0;
}

/* Adds it (its serial set) after live_reserve(l) succeeded. */
static void
live_put(struct link *l, struct mt_item *it)
{
	live_place(l, it);
	l->nlive++;
}

/* Removes it, shifting back the entries of its probe run. */
static void
live_del(struct link *l, struct mt_item *it)
{
	size_t mask = l->live_cap - 1, i;

	if (l->live_cap == 0)
		return;
	for (i = live_slot(l, it->serial); l->live[i] != it; i = (i + 1) & mask)
		if (l->live[i] == NULL)
			return;
	l->live[i] = NULL;
	l->nlive--;
	for (size_t j = (i + 1) & mask; l->live[j] != NULL; j = (j + 1) & mask) {
		size_t home = live_slot(l, l->live[j]->serial);
		/* move j back to the hole unless its home lies cyclically in (i, j] */
		if (((j - home) & mask) >= ((j - i) & mask)) {
			l->live[i] = l->live[j];
			l->live[j] = NULL;
			i = j;
		}
	}
}

static void
item_free_if_done(struct mt_item *it)
{
	if (it->unresolved > 0 || it->in_lane)
		return;
	live_del(it->link, it);
	free(it);
}

static struct mt_item *
item_find(struct link *l, uint64_t serial)
{
	if (l->live_cap == 0)
		return NULL;
	for (size_t i = live_slot(l, serial);; i = (i + 1) & (l->live_cap - 1)) {
		if (l->live[i] == NULL || l->live[i]->serial == serial)
			return l->live[i];
	}
}

/* Inserts a part into the retry list, sorted by original dispatch order. */
static int
retry_add(struct link *l, struct mt_item *it, int part)
{
	if (l->nretry == l->retry_cap) {
		int cap = l->retry_cap ? l->retry_cap * 2 : 16;
		struct retry *r = realloc(l->retry, (size_t)cap * sizeof *r);
		if (r == NULL)
			return -1;
		l->retry = r;
		l->retry_cap = cap;
	}
	int i = l->nretry;
	while (i > 0 && l->retry[i - 1].order > it->order[part]) {
		l->retry[i] = l->retry[i - 1];
		i--;
	}
	l->retry[i] = (struct retry){it, part, it->order[part]};
	l->nretry++;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Outcomes                                                                */

static void
report(struct link *l, struct mt_item *it, int part, uint32_t status, bool temporary,
       const char *smsc_id)
{
	struct msg_mt_result r;

	memset(&r, 0, sizeof r);
	r.mt_id = it->id;
	str_copy(r.link, sizeof r.link, l->conf->name);
	r.part = part + 1;
	r.nparts = it->nparts;
	r.status = status;
	r.temporary = temporary;
	if (status == SMPP_ROK && smsc_id != NULL && smsc_id[0] != '\0' &&
	    dlr_normalise_id(smsc_id, l->conf->submit_id_base, r.smsc_id, sizeof r.smsc_id) != 0)
		str_copy(r.smsc_id, sizeof r.smsc_id, smsc_id);
	if (status == SMPP_ROK)
		l->submitted++;
	else
		l->submit_failed++;
	it->unresolved--;
	it->busy = false; /* the next part of this message may go */
	l->gw->ops->mt_result(l->gw->core, &r);
	item_free_if_done(it);
}

static void
pause_cb(evutil_socket_t fd, short what, void *arg)
{
	struct link *l = arg;

	l->paused = false;
	log_info(MOD, "link %s: throttle pause over", l->conf->name);
	pump(l);
}

static void
throttle(struct link *l, uint32_t status)
{
	int shift = l->throttle_n < 6 ? l->throttle_n : 6;
	long ms = (long)l->conf->throttle_pause_ms << shift;

	if (ms > 60000)
		ms = 60000;
	l->throttle_n++;
	if (!l->paused)
		log_warn(MOD, "link %s: status 0x%02x, pausing %ld ms", l->conf->name, status, ms);
	l->paused = true;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(l->pause_timer, &tv);
}

static bool
status_temporary(uint32_t st)
{
	return st == SMPP_RSYSERR || st == SMPP_RX_T_APPN || st == SMPP_STATUS_NORESP ||
	       st == SMPP_RTHROTTLED || st == SMPP_RMSGQFUL;
}

static void
on_resp(void *arg, struct smpp_session *s, uint64_t cookie, uint32_t status, const char *mid)
{
	struct link *l = arg;
	struct mt_item *it = item_find(l, cookie >> 5);
	int part = (int)(cookie & 31);

	if (it == NULL || part >= it->nparts) {
		log_warn(MOD, "link %s: response for an unknown message", l->conf->name);
		return;
	}
	if (status == SMPP_ROK) {
		l->throttle_n = 0;
		report(l, it, part, status, false, mid);
	} else if (l->gw->stopping) {
		report(l, it, part, status, true, NULL); /* core resends after restart */
	} else if (status == SMPP_RTHROTTLED || status == SMPP_RMSGQFUL) {
		throttle(l, status);
		if (retry_add(l, it, part) != 0)
			report(l, it, part, status, true, NULL);
	} else if (status_temporary(status) && it->tries[part] < l->conf->max_retries) {
		it->tries[part]++;
		log_info(MOD, "link %s: mt %lld part %d: status 0x%02x, retry %d", l->conf->name,
		         (long long)it->id, part + 1, status, it->tries[part]);
		if (retry_add(l, it, part) != 0)
			report(l, it, part, status, true, NULL);
	} else {
		log_warn(MOD, "link %s: mt %lld part %d failed, status 0x%02x", l->conf->name,
		         (long long)it->id, part + 1, status);
		report(l, it, part, status, status_temporary(status), NULL);
	}
	pump(l);
}

/* ---------------------------------------------------------------------- */
/* Sending                                                                 */

static struct smpp_session *
tx_session(struct link *l)
{
	struct smpp_session *s = l->sess[0];
	return s != NULL && smpp_session_can_submit(s) ? s : NULL;
}

/* Token bucket: refills at rate per second, burst of rate/10 (>= 1). */
static bool
take_token(struct link *l)
{
	struct timespec now;
	double cap = l->conf->rate / 10.0 < 1 ? 1 : l->conf->rate / 10.0;

	if (l->conf->rate <= 0)
		return true;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double dt = (double)(now.tv_sec - l->refill_at.tv_sec) +
	            (double)(now.tv_nsec - l->refill_at.tv_nsec) / 1e9;
	l->refill_at = now;
	l->tokens += dt * l->conf->rate;
	if (l->tokens > cap)
		l->tokens = cap;
	if (l->tokens >= 1) {
		l->tokens -= 1;
		return true;
	}
	long us = (long)((1 - l->tokens) / l->conf->rate * 1e6) + 1;
	struct timeval tv = {us / 1000000, us % 1000000};
	evtimer_add(l->pump_timer, &tv);
	return false;
}

/* Its_session_info / user_message_reference for a USSD reply from its key. */
static void
ussd_fields(struct link *l, const struct mt_item *it, struct smpp_submit *sm)
{
	const char *slash = strrchr(it->key, '/');
	unsigned long v = slash != NULL ? strtoul(slash + 1, NULL, 10) : 0;

	sm->has_ussd_op = true;
	sm->ussd_op = (uint8_t)(it->ussd_end ? l->conf->ussd_op_end : l->conf->ussd_op_request);
	sm->registered_delivery = 0;
	if (l->conf->ussd_session_key == USSD_KEY_UMR) {
		sm->has_umr = true;
		sm->umr = (uint16_t)v;
	} else {
		sm->has_its_session = true;
		sm->its_session = (uint16_t)(((v & 0xFF) << 8) | (it->ussd_end ? 1 : 0));
	}
}

static void
build_submit(struct link *l, const struct mt_item *it, int part, struct smpp_submit *sm)
{
	const struct smsc_conf *c = l->conf;
	const struct text_out *o = &it->out;

	memset(sm, 0, sizeof *sm);
	sm->service_type = c->service_type;
	sm->src_ton = (uint8_t)c->source_ton;
	sm->src_npi = (uint8_t)c->source_npi;
	sm->dst_ton = (uint8_t)c->dest_ton;
	sm->dst_npi = (uint8_t)c->dest_npi;
	sm->src = it->from[0] ? it->from : c->source_addr;
	sm->dst = it->to;
	sm->registered_delivery = (uint8_t)c->registered_delivery;
	sm->data_coding = o->data_coding;
	if (it->use_payload) {
		sm->payload = it->payload;
		sm->payload_len = it->payload_len;
	} else {
		sm->sm = o->seg[part].sm;
		sm->sm_len = o->seg[part].sm_len;
		sm->esm_class = o->udhi ? 0x40 : 0;
		if (o->sar && it->nparts > 1) {
			sm->sar = true;
			sm->sar_ref = o->seg[part].sar_ref;
			sm->sar_total = o->seg[part].sar_total;
			sm->sar_seq = o->seg[part].sar_seq;
		}
	}
	if (it->ussd)
		ussd_fields(l, it, sm);
}

/*
 * Picks the next part to send: retries first, then interactive, then bulk.
 * A message has at most one part in flight (or waiting for its retry), so
 * its parts reach the SMSC in order even when one is throttled or lost;
 * other messages fill the window meanwhile.
 */
static bool
next_part(struct link *l, struct mt_item **it, int *part, int *from)
{
	if (l->nretry > 0) {
		*it = l->retry[0].it;
		*part = l->retry[0].part;
		*from = -1;
		return true;
	}
	for (int p = 0; p < MSG_PRIO_COUNT; p++) {
		struct lane *ln = &l->lane[p];
		for (int k = 0, i = ln->head; k < ln->n; k++, i = i + 1 == ln->cap ? 0 : i + 1) {
			struct mt_item *c = ln->v[i];
			if (c->next < c->nparts && !c->busy) {
				*it = c;
				*part = c->next;
				*from = p;
				return true;
			}
		}
	}
	return false;
}

static void
consume(struct link *l, struct mt_item *it, int from)
{
	if (from < 0) {
		l->nretry--;
		memmove(l->retry, l->retry + 1, (size_t)l->nretry * sizeof *l->retry);
		return;
	}
	it->order[it->next] = ++l->order;
	it->next++;
	it->busy = true;
	lane_trim(l, (enum msg_prio)from);
}

/* Sends one part; returns false when nothing more can be sent now. */
static bool
send_one(struct link *l)
{
	struct smpp_session *s = tx_session(l);
	struct mt_item *it;
	struct smpp_submit sm;
	int part, from;

	if (s == NULL || !next_part(l, &it, &part, &from) || !take_token(l))
		return false;
	build_submit(l, it, part, &sm);
	int rc = smpp_session_submit(s, &sm, it->serial << 5 | (uint64_t)part);
	if (rc == -1) {
		l->tokens += 1;
		return false;
	}
	consume(l, it, from);
	if (rc == -2) {
		log_warn(MOD, "link %s: mt %lld part %d cannot be encoded", l->conf->name,
		         (long long)it->id, part + 1);
		report(l, it, part, SMPP_RINVMSGLEN, false, NULL);
	}
	return true;
}

/* Sends as much as window, rate and pause allow. Reentrancy-safe. */
static void
pump(struct link *l)
{
	if (l->in_pump) {
		l->pump_again = true;
		return;
	}
	l->in_pump = true;
	do {
		l->pump_again = false;
		while (!l->paused && !l->gw->stopping && send_one(l))
			;
	} while (l->pump_again);
	l->in_pump = false;
}

static void
pump_cb(evutil_socket_t fd, short what, void *arg)
{
	pump(arg);
}

/* ---------------------------------------------------------------------- */
/* Routing and gw_ops.submit                                               */

static bool
link_tx_bound(const struct link *l)
{
	return l->sess[0] != NULL && smpp_session_state(l->sess[0]) == SMPP_ST_BOUND;
}

static struct link *
route(struct gateway *gw, const struct msg_mt *mt)
{
	struct link *best = NULL, *dflt = NULL;
	size_t best_len = 0;

	for (int i = 0; i < gw->nlinks; i++) {
		struct link *l = &gw->links[i];
		if (mt->link[0] != '\0' && strcmp(mt->link, l->conf->name) == 0)
			return l;
		if (l->conf->default_route && dflt == NULL)
			dflt = l;
		for (int k = 0; k < l->conf->prefixes.n; k++) {
			const char *p = l->conf->prefixes.v[k];
			size_t n = strlen(p);
			if (n > best_len && strncmp(mt->to, p, n) == 0) {
				best = l;
				best_len = n;
			}
		}
	}
	return best != NULL ? best : dflt;
}

/*
 * The routed link when it can transmit, else the first other bound link,
 * else the routed link anyway: the MT waits in its queue for the rebind
 * (or for another link to come up, see tick_cb) instead of failing while a
 * link is merely reconnecting. NULL only when no link serves the number.
 */
static struct link *
route_bound(struct gateway *gw, const struct msg_mt *mt)
{
	struct link *l = route(gw, mt);

	if (l != NULL && link_tx_bound(l))
		return l;
	for (int i = 0; i < gw->nlinks; i++)
		if (&gw->links[i] != l && link_tx_bound(&gw->links[i])) {
			if (l != NULL)
				log_info(MOD, "mt %lld: link %s not bound, failing over to %s",
				         (long long)mt->id, l->conf->name, gw->links[i].conf->name);
			return &gw->links[i];
		}
	if (l != NULL && !l->enabled) {
		/* held by another instance: wait on a link of ours, if any */
		for (int i = 0; i < gw->nlinks; i++)
			if (gw->links[i].enabled)
				return &gw->links[i];
		return NULL;
	}
	return l;
}

/*
 * message_payload mode: the text is encoded as SAR segments (user data
 * without UDH, never splitting an escape or a surrogate pair) and the
 * segments are joined into one payload of at most TEXT_PAYLOAD_MAX octets.
 */
static int
flatten(struct mt_item *it)
{
	size_t n = 0;

	for (int i = 0; i < it->out.nseg; i++) {
		const struct text_segment *g = &it->out.seg[i];
		if (n + g->sm_len > sizeof it->payload)
			return -1;
		memcpy(it->payload + n, g->sm, g->sm_len);
		n += g->sm_len;
	}
	it->payload_len = (uint16_t)n;
	it->use_payload = true;
	return 0;
}

static int
encode_mt(struct link *l, const struct msg_mt *mt, struct mt_item *it)
{
	const struct smsc_conf *c = l->conf;
	enum text_mode tm = mt->fold ? TEXT_FOLD : c->text_mode;
	const char *text = mt->text != NULL ? mt->text : "";
	bool want_payload = c->long_mode == LONG_PAYLOAD || mt->ussd;
	enum long_mode lm = want_payload ? LONG_SAR : c->long_mode;

	l->ref++;
	if (text_encode(text, tm, lm, want_payload ? TEXT_MAX_SEGMENTS : c->max_segments, l->ref,
	                &it->out) != 0)
		return -1;
	if (it->out.nseg < 1 || it->out.nseg > MAX_SEG)
		return -1;
	it->nparts = it->out.nseg;
	if (want_payload && it->out.nseg > 1) {
		if (flatten(it) != 0)
			return -1;
		it->nparts = 1;
	}
	return 0;
}

static struct mt_item *
item_new(struct link *l, const struct msg_mt *mt)
{
	struct mt_item *it = calloc(1, sizeof *it);

	if (it == NULL)
		return NULL;
	it->link = l;
	it->serial = ++l->serial;
	it->id = mt->id;
	it->prio = mt->prio == MSG_PRIO_INTERACTIVE ? MSG_PRIO_INTERACTIVE : MSG_PRIO_BULK;
	str_copy(it->to, sizeof it->to, mt->to);
	str_copy(it->from, sizeof it->from, mt->from);
	it->ussd = mt->ussd;
	it->ussd_end = mt->ussd_end;
	str_copy(it->key, sizeof it->key, mt->ussd_session_key);
	return it;
}

/* An MT whose text cannot be encoded: reported failed after the call. */
struct fail_later {
	struct gateway *gw;
	struct msg_mt_result r;
};

static void
fail_later_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fail_later *f = arg;
	f->gw->ops->mt_result(f->gw->core, &f->r);
	free(f);
}

static void
fail_async(struct link *l, const struct msg_mt *mt)
{
	struct fail_later *f = calloc(1, sizeof *f);
	struct timeval tv = {0, 0};

	if (f == NULL)
		return;
	f->gw = l->gw;
	f->r.mt_id = mt->id;
	str_copy(f->r.link, sizeof f->r.link, l->conf->name);
	f->r.part = f->r.nparts = 1;
	f->r.status = SMPP_RINVMSGLEN;
	if (event_base_once(l->gw->base, -1, EV_TIMEOUT, fail_later_cb, f, &tv) != 0)
		free(f);
}

static int
gw_submit(void *arg, const struct msg_mt *mt)
{
	struct gateway *gw = arg;
	struct link *l = gw->stopping ? NULL : route_bound(gw, mt);

	if (l == NULL)
		return -2;
	enum msg_prio p = mt->prio == MSG_PRIO_INTERACTIVE ? MSG_PRIO_INTERACTIVE : MSG_PRIO_BULK;
	struct lane *ln = &l->lane[p];
	if (ln->n == ln->cap) {
		ln->want_ready = true;
		return -1;
	}
	struct mt_item *it = item_new(l, mt);
	if (it == NULL)
		return -1;
	if (encode_mt(l, mt, it) != 0) {
		log_warn(MOD, "mt %lld: text cannot be encoded in %d segments", (long long)mt->id,
		         l->conf->max_segments);
		free(it);
		fail_async(l, mt);
		return 0;
	}
	if (live_reserve(l) != 0) {
		free(it);
		return -1;
	}
	live_put(l, it);
	it->unresolved = it->nparts;
	it->in_lane = true;
	ln->v[(ln->head + ln->n) % ln->cap] = it;
	ln->n++;
	pump(l);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Inbound                                                                 */

static void
make_ack(struct smpp_session *s, const struct smpp_inbound *in, struct msg_ack *a)
{
	a->sess_id = smpp_session_conn_id(s);
	a->seq = in->seq;
	a->cmd = in->cmd;
}

static void
norm_from(const char *raw, char *out, size_t cap)
{
	if (msisdn_normalise(raw, out, cap) != 0)
		scopy(out, cap, raw);
}

static bool
is_receipt(const struct smpp_inbound *in, const char *text, size_t n, struct dlr_text *dt)
{
	bool parsed = dlr_parse_text(text, n, dt) == 0;
	return (in->esm_class & 0x3C) == 0x04 || in->has_receipted_id || in->has_message_state ||
	       parsed;
}

static void
on_receipt(struct link *l, struct smpp_session *s, const struct smpp_inbound *in,
           const struct dlr_text *dt, bool parsed)
{
	struct msg_dlr d;
	const char *raw = in->has_receipted_id ? in->receipted_id : parsed ? dt->id : "";
	char a[MSG_SMSC_ID_MAX], b[MSG_SMSC_ID_MAX];

	memset(&d, 0, sizeof d);
	str_copy(d.link, sizeof d.link, l->conf->name);
	if (raw[0] != '\0' &&
	    dlr_normalise_id(raw, l->conf->dlr_id_base, d.smsc_id, sizeof d.smsc_id) != 0)
		str_copy(d.smsc_id, sizeof d.smsc_id, raw);
	/*
	 * Some SMSCs echo the submit_sm_resp id (e.g. hex) in receipted_message_id
	 * and write the text "id:" in the receipt base (e.g. decimal): when the
	 * TLV read in submit_id_base agrees with the text id, that is the id.
	 */
	if (in->has_receipted_id && parsed && dt->id[0] != '\0' &&
	    l->conf->submit_id_base != l->conf->dlr_id_base &&
	    dlr_normalise_id(in->receipted_id, l->conf->submit_id_base, a, sizeof a) == 0 &&
	    dlr_normalise_id(dt->id, l->conf->dlr_id_base, b, sizeof b) == 0 && strcmp(a, b) == 0)
		str_copy(d.smsc_id, sizeof d.smsc_id, a);
	d.state = in->has_message_state ? (enum msg_dlr_state)in->message_state
	          : parsed              ? dt->state
	                                : MSG_DLR_UNKNOWN;
	d.err = in->has_network_error ? (in->network_error[1] << 8 | in->network_error[2])
	        : parsed              ? dt->err
	                              : -1;
	make_ack(s, in, &d.ack);
	l->dlrs++;
	l->gw->ops->dlr(l->gw->core, &d);
}

static bool
in_abort_list(const struct smsc_conf *c, int op)
{
	for (int i = 0; i < c->ussd_op_abort.n; i++)
		if ((int)strtol(c->ussd_op_abort.v[i], NULL, 0) == op)
			return true;
	return false;
}

static void
on_ussd(struct link *l, struct smpp_session *s, const struct smpp_inbound *in, const char *text)
{
	const struct smsc_conf *c = l->conf;
	struct msg_ussd u;
	unsigned key;

	memset(&u, 0, sizeof u);
	str_copy(u.link, sizeof u.link, c->name);
	norm_from(in->src, u.from, sizeof u.from);
	scopy(u.service_code, sizeof u.service_code, in->dst);
	if (c->ussd_session_key == USSD_KEY_UMR)
		key = in->has_umr ? in->umr : 0;
	else
		key = in->has_its_session ? (unsigned)(in->its_session >> 8) : 0;
	snprintf(u.session_key, sizeof u.session_key, "%s/%u", u.from, key);
	if (in->ussd_op == c->ussd_op_begin)
		u.op = MSG_USSD_BEGIN;
	else if (in_abort_list(c, in->ussd_op) || (in->has_its_session && (in->its_session & 1) &&
	                                           in->ussd_op != c->ussd_op_continue))
		u.op = MSG_USSD_ABORT;
	else
		u.op = MSG_USSD_CONTINUE;
	u.text = text;
	make_ack(s, in, &u.ack);
	l->received++;
	l->gw->ops->ussd(l->gw->core, &u);
}

static void
concat_done(void *arg, const struct msg_mo *mo)
{
	struct link *l = arg;
	l->gw->ops->mo(l->gw->core, mo);
}

/* A part of a concatenated MO: 1 when taken by concat, 0 when not a part. */
static int
try_concat(struct link *l, struct smpp_session *s, const struct smpp_inbound *in, const char *from,
           const uint8_t *ud, size_t udlen, uint16_t ref, uint8_t total, uint8_t seq)
{
	struct concat_part p;

	if (total < 2)
		return 0;
	memset(&p, 0, sizeof p);
	p.link = l->conf->name;
	p.from = from;
	p.to = in->dst;
	p.smsc_id = "";
	p.ref = ref;
	p.total = total;
	p.seq = seq;
	p.dcs = in->data_coding;
	p.data = ud;
	p.len = udlen;
	make_ack(s, in, &p.ack);
	return concat_add(l->concat, &p, l->conf->dc0, (int64_t)time(NULL), concat_done, l) == 0;
}

static void
on_mo(struct link *l, struct smpp_session *s, const struct smpp_inbound *in, const char *text,
      size_t tlen)
{
	struct msg_mo mo;
	struct msg_ack a;

	memset(&mo, 0, sizeof mo);
	str_copy(mo.link, sizeof mo.link, l->conf->name);
	norm_from(in->src, mo.from, sizeof mo.from);
	scopy(mo.to, sizeof mo.to, in->dst);
	mo.text = text;
	mo.text_len = tlen;
	make_ack(s, in, &a);
	mo.acks = &a;
	mo.n_acks = 1;
	l->gw->ops->mo(l->gw->core, &mo);
}

/* Splits off the UDH; returns 1 with concat info, 0 without, data adjusted. */
static int
split_udh(const struct smpp_inbound *in, const uint8_t **ud, size_t *len, uint16_t *ref,
          uint8_t *total, uint8_t *seq)
{
	size_t hl = 0;

	if (!(in->esm_class & 0x40) || *len == 0)
		return 0;
	int rc = concat_parse_udh(*ud, *len, ref, total, seq, &hl);
	if (rc < 0 || hl > *len)
		return 0; /* malformed UDH: keep the octets as text */
	*ud += hl;
	*len -= hl;
	return rc;
}

static void
on_inbound(void *arg, struct smpp_session *s, const struct smpp_inbound *in)
{
	struct link *l = arg;
	const uint8_t *ud = in->sm;
	size_t len = in->sm_len;
	uint16_t ref = in->sar_ref;
	uint8_t total = in->sar_total, seq = in->sar_seq;
	static char text[TEXT_PAYLOAD_MAX * 4 + 1];
	struct dlr_text dt;
	char from[MSG_MSISDN_MAX];

	bool udh = split_udh(in, &ud, &len, &ref, &total, &seq) == 1;
	size_t tlen = text_decode(in->data_coding, l->conf->dc0, ud, len, text, sizeof text);
	if (!in->has_ussd_op && is_receipt(in, text, tlen, &dt)) {
		on_receipt(l, s, in, &dt, dlr_parse_text(text, tlen, &dt) == 0);
		return;
	}
	if (in->has_ussd_op) {
		on_ussd(l, s, in, text);
		return;
	}
	l->received++;
	norm_from(in->src, from, sizeof from);
	if ((udh || in->has_sar) && try_concat(l, s, in, from, ud, len, ref, total, seq))
		return;
	on_mo(l, s, in, text, tlen);
}

/* gw_ops.ack: answers every PDU on the connection that carried it. */
static void
gw_ack(void *arg, const struct msg_ack *acks, int n, uint32_t status)
{
	struct gateway *gw = arg;

	for (int i = 0; i < n; i++) {
		bool sent = false;
		for (int k = 0; k < gw->nlinks && !sent; k++)
			for (int j = 0; j < gw->links[k].nsess && !sent; j++) {
				struct smpp_session *s = gw->links[k].sess[j];
				if (smpp_session_conn_id(s) == acks[i].sess_id)
					sent = smpp_session_respond(s, acks[i].sess_id, acks[i].cmd,
					                            acks[i].seq, status) == 0;
			}
		if (!sent)
			log_debug(MOD, "ack seq %u: connection %llu gone, dropped", acks[i].seq,
			          (unsigned long long)acks[i].sess_id);
	}
}

const struct gw_ops *
gateway_ops(void)
{
	static const struct gw_ops ops = {gw_ack, gw_submit};
	return &ops;
}

/* ---------------------------------------------------------------------- */
/* Session events                                                          */

static void
stop_check(struct gateway *gw)
{
	struct timeval tv = {0, 0};

	if (!gw->stopping || gw->stop_done == NULL)
		return;
	for (int k = 0; k < gw->nlinks; k++)
		for (int j = 0; j < gw->links[k].nsess; j++)
			if (smpp_session_state(gw->links[k].sess[j]) != SMPP_ST_CLOSED)
				return;
	evtimer_add(gw->stop_ev, &tv); /* done() from the loop, not from a callback */
}

/* Moves it (nothing of it sent yet) to the tail of to's lane, if room. */
static bool
item_move(struct mt_item *it, struct link *to)
{
	struct lane *dst = &to->lane[it->prio];

	if (dst->n == dst->cap || live_reserve(to) != 0)
		return false;
	live_del(it->link, it);
	it->link = to;
	it->serial = ++to->serial;
	live_put(to, it);
	dst->v[(dst->head + dst->n) % dst->cap] = it;
	dst->n++;
	return true;
}

/*
 * The link lost its transmitter: queued MT not started yet (and not USSD,
 * which belongs to its link) fail over to the first other bound link with
 * room, keeping their order. The rest waits for the rebind.
 */
static void
reroute_queued(struct link *l)
{
	struct link *to = NULL;

	for (int i = 0; i < l->gw->nlinks && to == NULL; i++)
		if (&l->gw->links[i] != l && link_tx_bound(&l->gw->links[i]))
			to = &l->gw->links[i];
	for (int p = 0; p < MSG_PRIO_COUNT && to != NULL; p++) {
		struct lane *ln = &l->lane[p];
		int n = ln->n, kept = 0, moved = 0;
		for (int k = 0; k < n; k++) {
			struct mt_item *it = ln->v[(ln->head + k) % ln->cap];
			if (it->next == 0 && !it->ussd && item_move(it, to))
				moved++;
			else
				ln->v[(ln->head + kept++) % ln->cap] = it;
		}
		ln->n = kept;
		if (moved > 0) {
			log_info(MOD, "link %s down: %d queued MT moved to %s", l->conf->name,
			         moved, to->conf->name);
			pump(to);
		}
		if (moved > 0 && ln->want_ready) {
			ln->want_ready = false;
			l->gw->ops->ready(l->gw->core, l->conf->name, (enum msg_prio)p);
		}
	}
}

static void
on_state(void *arg, struct smpp_session *s, enum smpp_state st)
{
	struct link *l = arg;
	bool up = link_tx_bound(l);

	if (up && !l->tx_up) {
		log_info(MOD, "link %s can transmit", l->conf->name);
		l->tx_up = true;
		for (int p = 0; p < MSG_PRIO_COUNT; p++)
			l->gw->ops->ready(l->gw->core, l->conf->name, (enum msg_prio)p);
	} else if (!up && l->tx_up) {
		log_info(MOD, "link %s cannot transmit", l->conf->name);
		l->tx_up = false;
		if (!l->gw->stopping)
			reroute_queued(l);
	}
	if (st == SMPP_ST_CLOSED)
		stop_check(l->gw);
}

static void
on_room(void *arg, struct smpp_session *s)
{
	pump(arg);
}

static void
stop_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct gateway *gw = arg;
	void (*done)(void *) = gw->stop_done;

	gw->stop_done = NULL;
	if (done != NULL)
		done(gw->stop_arg);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct gateway *gw = arg;

	for (int i = 0; i < gw->nlinks; i++) {
		struct link *l = &gw->links[i];
		concat_expire(l->concat, (int64_t)time(NULL), l->conf->dc0, concat_done, l);
		if (!l->tx_up && (l->lane[0].n > 0 || l->lane[1].n > 0))
			reroute_queued(l); /* room may have appeared elsewhere */
		if (l->enabled)            /* enabled again while it was unbinding */
			for (int j = 0; j < l->nsess; j++)
				if (smpp_session_state(l->sess[j]) == SMPP_ST_CLOSED)
					smpp_session_start(l->sess[j]);
	}
}

/* ---------------------------------------------------------------------- */
/* Life cycle                                                              */

static int
link_init(struct gateway *gw, struct link *l, const struct smsc_conf *c)
{
	static const struct smpp_session_cbs cbs = {on_state, on_inbound, on_resp, on_room};
	int cap = c->window * 4 < 4 ? 4 : c->window * 4;

	l->gw = gw;
	l->conf = c;
	l->enabled = !gw->cfg->link_lock;
	for (int p = 0; p < MSG_PRIO_COUNT; p++) {
		l->lane[p].cap = cap;
		l->lane[p].v = calloc((size_t)cap, sizeof *l->lane[p].v);
		if (l->lane[p].v == NULL)
			return -1;
	}
	clock_gettime(CLOCK_MONOTONIC, &l->refill_at);
	l->tokens = 1;
	l->pump_timer = evtimer_new(gw->base, pump_cb, l);
	l->pause_timer = evtimer_new(gw->base, pause_cb, l);
	l->concat = concat_new(c->reassembly_timeout, 256);
	if (l->pump_timer == NULL || l->pause_timer == NULL || l->concat == NULL)
		return -1;
	l->sess[0] = smpp_session_new(
	    gw->base, c, c->bind == BIND_TX_RX ? SMPP_ROLE_TX : SMPP_ROLE_TRX, &cbs, l);
	l->nsess = l->sess[0] != NULL;
	if (l->sess[0] == NULL)
		return -1;
	if (c->bind == BIND_TX_RX) {
		l->sess[1] = smpp_session_new(gw->base, c, SMPP_ROLE_RX, &cbs, l);
		if (l->sess[1] == NULL)
			return -1;
		l->nsess = 2;
	}
	return 0;
}

static void
link_free(struct link *l)
{
	for (int j = 0; j < 2; j++)
		smpp_session_free(l->sess[j]);
	for (size_t i = 0; i < l->live_cap; i++)
		free(l->live[i]);
	free(l->live);
	for (int p = 0; p < MSG_PRIO_COUNT; p++)
		free(l->lane[p].v);
	free(l->retry);
	if (l->pump_timer)
		event_free(l->pump_timer);
	if (l->pause_timer)
		event_free(l->pause_timer);
	concat_free(l->concat);
}

struct gateway *
gateway_new(struct event_base *base, const struct sg_config *cfg, const struct core_ops *ops,
            void *core)
{
	struct gateway *gw = calloc(1, sizeof *gw);

	if (gw == NULL)
		return NULL;
	gw->base = base;
	gw->cfg = cfg;
	gw->ops = ops;
	gw->core = core;
	gw->tick = event_new(base, -1, EV_PERSIST, tick_cb, gw);
	gw->stop_ev = evtimer_new(base, stop_done_cb, gw);
	if (gw->tick == NULL || gw->stop_ev == NULL)
		goto fail;
	for (int i = 0; i < cfg->n_links; i++) {
		gw->nlinks++;
		if (link_init(gw, &gw->links[i], &cfg->links[i]) != 0) {
			log_error(MOD, "link %s: cannot be set up", cfg->links[i].name);
			goto fail;
		}
	}
	return gw;
fail:
	gateway_free(gw);
	return NULL;
}

void
gateway_free(struct gateway *gw)
{
	if (gw == NULL)
		return;
	for (int i = 0; i < gw->nlinks; i++)
		link_free(&gw->links[i]);
	if (gw->tick)
		event_free(gw->tick);
	if (gw->stop_ev)
		event_free(gw->stop_ev);
	free(gw);
}

void
gateway_start(struct gateway *gw)
{
	struct timeval sec = {1, 0};

	evtimer_add(gw->tick, &sec);
	gw->started = true;
	for (int i = 0; i < gw->nlinks; i++)
		if (gw->links[i].enabled)
			for (int j = 0; j < gw->links[i].nsess; j++)
				smpp_session_start(gw->links[i].sess[j]);
}

void
gateway_link_enable(struct gateway *gw, const char *name, bool on)
{
	struct link *l = NULL;

	for (int i = 0; i < gw->nlinks && l == NULL; i++)
		if (strcmp(gw->links[i].conf->name, name) == 0)
			l = &gw->links[i];
	if (l == NULL || l->enabled == on)
		return;
	l->enabled = on;
	log_info(MOD, "link %s: %s", name, on ? "enabled" : "disabled (standby)");
	if (!gw->started || gw->stopping)
		return;
	for (int j = 0; j < l->nsess; j++) {
		if (on)
			smpp_session_start(l->sess[j]); /* or tick_cb, once it has closed */
		else
			smpp_session_stop(l->sess[j], l->conf->response_timeout * 1000);
	}
}

void
gateway_stop(struct gateway *gw, int deadline_ms, void (*done)(void *arg), void *arg)
{
	gw->stopping = true;
	gw->stop_done = done;
	gw->stop_arg = arg;
	evtimer_del(gw->tick);
	for (int i = 0; i < gw->nlinks; i++)
		for (int j = 0; j < gw->links[i].nsess; j++)
			smpp_session_stop(gw->links[i].sess[j], deadline_ms);
	stop_check(gw);
}

static const char *
link_state(const struct link *l, int *up)
{
	*up = 0;
	for (int j = 0; j < l->nsess; j++)
		*up += smpp_session_state(l->sess[j]) == SMPP_ST_BOUND;
	if (*up == l->nsess)
		return "bound";
	if (*up > 0)
		return "partial";
	enum smpp_state st = smpp_session_state(l->sess[0]);
	if (!l->enabled && !l->gw->stopping && (st == SMPP_ST_IDLE || st == SMPP_ST_CLOSED))
		return "standby";
	return smpp_session_strstate(st);
}

int
gateway_link_status(struct gateway *gw, struct gateway_link_status *out, int max)
{
	for (int i = 0; i < gw->nlinks && i < max; i++) {
		const struct link *l = &gw->links[i];
		struct gateway_link_status *o = &out[i];
		memset(o, 0, sizeof *o);
		str_copy(o->name, sizeof o->name, l->conf->name);
		o->state = link_state(l, &o->binds_up);
		o->window_used = smpp_session_window_used(l->sess[0]);
		o->window = l->conf->window;
		o->rate = l->conf->rate;
		for (int p = 0; p < MSG_PRIO_COUNT; p++)
			o->queued[p] = l->lane[p].n;
		o->submitted = l->submitted;
		o->submit_failed = l->submit_failed;
		o->received = l->received;
		o->dlrs = l->dlrs;
		o->paused = l->paused;
	}
	return gw->nlinks;
}

/*
 * pipeline.c — the durable message path (see pipeline.h for the picture).
 *
 * Batches: MOs, submit outcomes and receipts each collect in an open batch
 * that commits when it reaches [database] batch_max or after batch_wait_ms,
 * whichever comes first: one round trip and one commit for many messages.
 *
 * Per-subscriber order: `busy` maps a number to the MOs of that number that
 * are in flight or waiting. Only the head is in flight; the others wait,
 * unacknowledged, and enter the next batch once the head is committed.
 */
#include "pipeline.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "content.h"
#include "flow.h"
#include "log.h"
#include "outbatch.h"
#include "store.h"
#include "strbuf.h"

#define BUSY_BUCKETS 65536
#define MT_CLAIM_BATCH 512
#define MT_PENDING_LOW 256 /* claim more bulk once fewer than this wait */
#define RECOVER_BATCH 1000 /* unprocessed MOs read at once */
#define SWEEP_INTERVAL_S 30
#define REMATCH_INTERVAL_S 5

struct mo_item {
	struct mo_item *next; /* in a batch, or in its subscriber's queue */
	struct mo_item *sub_next;
	char link[MSG_LINK_MAX];
	char smsc_id[MSG_SMSC_ID_MAX];
	char from[MSG_MSISDN_MAX];
	char to[MSG_ADDR_MAX];
	char *text;
	bool partial;
	int n_acks;
	struct msg_ack *acks;
	int64_t mo_id; /* its row's id: reserved by sg_mo_prepare, or stored (recovery) */
};

/* MOs of one number: head in flight, the rest waiting. */
struct busy {
	struct busy *next;
	char msisdn[MSG_MSISDN_MAX];
	struct mo_item *head, *tail;
};

struct mo_batch {
	struct pipeline *p;
	struct mo_item *head, *tail;
	int n;
};

struct mt_item {
	struct mt_item *next;
	struct msg_mt mt;
	char *text;
};

struct mt_queue {
	struct mt_item *head, *tail;
	int n;
};

#define OUT_RETRY_MAX 200000 /* result rows held for a retry while the database refuses them */
#define OUT_RETRY_MS 1000
#define OUT_BACKLOG_MAX 8192 /* results and receipts waiting to commit: then no new submits */
#define OUT_WAIT_MS 250 /* longest a message's results wait for the rest of it (outbatch_split) */
#define OUT_HOLD_MS 50  /* an open batch that is all waiting is looked at again after this */

/* Submit results and receipts on their way to the database (sg_mt_outcomes).
 * A batch whose commit fails keeps its results for a retry (its messages are
 * on the SMSC already); its receipts are refused so the SMSC sends them again. */
struct out_batch {
	struct out_batch *next; /* retry list */
	struct pipeline *p;
	struct outbatch *rows;
};

struct pipeline {
	struct event_base *base;
	const struct sg_config *cfg;
	struct store *st;
	const struct gw_ops *gw;
	void *gwarg;
	const struct content *content;
	struct flow_cfg fcfg;
	char owner[64];
	uint32_t rng;
	struct strbuf batch_json; /* the MO batch being written, reused */

	struct busy *busy[BUSY_BUCKETS];
	struct mo_batch *open_mo; /* collecting */
	struct event *mo_timer;

	struct mt_queue pending[MSG_PRIO_COUNT]; /* claimed or replied, not yet taken by a link */
	bool claiming[MSG_PRIO_COUNT];
	struct event *pump_timer;
	bool recovering;
	bool standby;              /* no link held (linklock.h): claim nothing */
	bool bulk_ready;           /* campaign settings written: bulk may be claimed */
	struct event *sweep_timer; /* re-reads MOs left unprocessed */
	bool sweeping;
	struct event *rematch_timer; /* receipts parked while their part committed */
	bool rematching;
	bool sweep_soon; /* next sweep takes MOs of any age */

	/*
	 * At most one batch of each kind is committing at a time (more only when
	 * the open one is full): while one commits the next grows, so under load
	 * batches get big and commits (fsyncs) few, and at low load nothing waits.
	 */
	int mo_committing;
	bool out_committing;
	bool out_holding; /* the open batch is all waiting (outbatch_split): its timer sends it */

	struct out_batch *out; /* results and receipts collecting */
	struct event *out_timer;
	struct out_batch *out_retry, *out_retry_tail; /* failed batches, oldest first */
	int out_retry_rows;
	struct event *out_retry_timer;

	int in_flight;                                        /* batches sent to the store */
	void (*ussd_fn)(void *arg, const struct msg_ussd *u); /* pipeline_set_ussd */
	void *ussd_arg;
	void (*stop_cb)(void *);
	void *stop_arg;
	bool stopping;
	struct pipeline_stats stats;
};

static void mo_batch_flush(struct pipeline *p);
static bool out_full(const struct pipeline *p);
static void mt_push_pending(struct pipeline *p, enum msg_prio prio);
static void mt_claim(struct pipeline *p, enum msg_prio prio);
static void pipeline_check_stop(struct pipeline *p);
static void out_flush(struct pipeline *p);
static void sweep_later(struct pipeline *p, int ms);

/* Milliseconds on a monotonic clock. */
static int64_t
mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
pipeline_now(void)
{
	return (int64_t)time(NULL);
}

static uint32_t
pipeline_rand(struct pipeline *p)
{
	uint32_t x = p->rng; /* xorshift32 */
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return p->rng = x;
}

static void
arm_timer(struct event *ev, int ms)
{
	if (evtimer_pending(ev, NULL))
		return;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(ev, &tv);
}

/* ------------------------------------------------------------------ */
/* Subscribers in flight                                              */

static unsigned
busy_hash(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % BUSY_BUCKETS;
}

static struct busy **
busy_find(struct pipeline *p, const char *msisdn)
{
	struct busy **b = &p->busy[busy_hash(msisdn)];
	while (*b && strcmp((*b)->msisdn, msisdn) != 0)
		b = &(*b)->next;
	return b;
}

/* Queues m behind its number's earlier MOs; true when it may go now. */
static bool
busy_enter(struct pipeline *p, struct mo_item *m)
{
	struct busy **slot = busy_find(p, m->from);
	if (*slot == NULL) {
		struct busy *b = calloc(1, sizeof *b);
		if (b == NULL)
			fatal("out of memory");
		str_copy(b->msisdn, sizeof b->msisdn, m->from);
		b->head = b->tail = m;
		*slot = b;
		return true;
	}
	(*slot)->tail->sub_next = m;
	(*slot)->tail = m;
	p->stats.mo_waiting++;
	return false;
}

/* The head MO of its number is done: returns the next one to run, if any. */
static struct mo_item *
busy_leave(struct pipeline *p, const char *msisdn)
{
	struct busy **slot = busy_find(p, msisdn);
	struct busy *b = *slot;
	if (b == NULL)
		return NULL;
	struct mo_item *next = b->head->sub_next;
	if (next == NULL) {
		*slot = b->next;
		free(b);
		return NULL;
	}
	b->head = next;
	p->stats.mo_waiting--;
	return next;
}

/* ------------------------------------------------------------------ */
/* MO items                                                           */

static void
mo_item_free(struct mo_item *m)
{
	if (m == NULL)
		return;
	free(m->text);
	free(m->acks);
	free(m);
}

static struct mo_item *
mo_item_new(const struct msg_mo *mo)
{
	struct mo_item *m = calloc(1, sizeof *m);
	if (m == NULL)
		fatal("out of memory");
	str_copy(m->link, sizeof m->link, mo->link);
	str_copy(m->smsc_id, sizeof m->smsc_id, mo->smsc_id);
	str_copy(m->from, sizeof m->from, mo->from);
	str_copy(m->to, sizeof m->to, mo->to);
	m->text = strndup(mo->text ? mo->text : "", mo->text ? mo->text_len : 0);
	m->partial = mo->partial;
	m->n_acks = mo->n_acks;
	m->acks = calloc((size_t)(mo->n_acks > 0 ? mo->n_acks : 1), sizeof *m->acks);
	if (m->text == NULL || m->acks == NULL)
		fatal("out of memory");
	if (mo->n_acks > 0)
		memcpy(m->acks, mo->acks, (size_t)mo->n_acks * sizeof *m->acks);
	return m;
}

static void
mo_ack(struct pipeline *p, struct mo_item *m, uint32_t status)
{
	if (m->n_acks > 0)
		p->gw->ack(p->gwarg, m->acks, m->n_acks, status);
	m->n_acks = 0; /* acknowledged once */
}

/* m is finished (applied, refused or failed): release its number. */
static void
mo_done(struct pipeline *p, struct mo_item *m)
{
	struct mo_item *next = busy_leave(p, m->from);
	mo_item_free(m);
	if (next == NULL)
		return;
	struct mo_batch *b = p->open_mo;
	if (b == NULL) {
		b = p->open_mo = calloc(1, sizeof *b);
		if (b == NULL)
			fatal("out of memory");
		b->p = p;
	}
	next->next = NULL;
	if (b->tail)
		b->tail->next = next;
	else
		b->head = next;
	b->tail = next;
	b->n++;
	arm_timer(p->mo_timer, p->cfg->db_batch_wait_ms);
}

/* ------------------------------------------------------------------ */
/* Inbound: prepare -> flow -> commit -> ack and replies              */

static void
mo_core_cb(void *core, const struct msg_mo *mo)
{
	struct pipeline *p = core;
	struct mo_item *m = mo_item_new(mo);

	p->stats.mo_received++;
	if (p->stopping || store_up(p->st) == 0) {
		/* nothing committed: a temporary error makes the SMSC retry */
		p->stats.mo_refused++;
		mo_ack(p, m, (uint32_t)p->cfg->mo_temp_error);
		mo_item_free(m);
		return;
	}
	if (!busy_enter(p, m))
		return; /* waits behind an earlier MO of the same number */
	struct mo_batch *b = p->open_mo;
	if (b == NULL) {
		b = p->open_mo = calloc(1, sizeof *b);
		if (b == NULL)
			fatal("out of memory");
		b->p = p;
	}
	if (b->tail)
		b->tail->next = m;
	else
		b->head = m;
	b->tail = m;
	if (++b->n >= p->cfg->db_batch_max)
		mo_batch_flush(p);
	else
		arm_timer(p->mo_timer, p->cfg->db_batch_wait_ms);
}

static void
mo_batch_fail(struct pipeline *p, struct mo_batch *b, const char *why)
{
	log_warn("pipeline", "%d MO not committed (%s): temporary error to the SMSC", b->n, why);
	struct mo_item *m = b->head;
	while (m) {
		struct mo_item *next = m->next;
		p->stats.mo_refused++;
		mo_ack(p, m, (uint32_t)p->cfg->mo_temp_error);
		mo_done(p, m);
		m = next;
	}
	free(b);
}

static void
parse_int_list(const char *s, int *out, int n)
{
	for (int i = 0; i < n; i++)
		out[i] = -1;
	for (int i = 0; s && *s && i < n; i++) {
		out[i] = atoi(s);
		s = strchr(s, ',');
		if (s == NULL)
			break;
		s++;
	}
}

/* Fills a flow snapshot from columns off.. of row r (sg_sub_snapshot order). */
static void
snapshot_from_row(PGresult *res, int r, int off, const char *msisdn, bool is_new,
                  struct flow_sub *s)
{
	int passed[FLOW_SKILLS];
	memset(s, 0, sizeof *s);
	str_copy(s->msisdn, sizeof s->msisdn, msisdn);
	str_copy(s->lang, sizeof s->lang, PQgetvalue(res, r, off + 0));
	s->opted_out = PQgetvalue(res, r, off + 1)[0] == 't';
	s->is_new = is_new;
	str_copy(s->state, sizeof s->state, PQgetvalue(res, r, off + 2));
	s->state_at = atoll(PQgetvalue(res, r, off + 3));
	s->help_at = atoll(PQgetvalue(res, r, off + 4));
	str_copy(s->household, sizeof s->household, PQgetvalue(res, r, off + 5));
	s->household_covered = PQgetvalue(res, r, off + 6)[0] == 't';
	s->household_members = atoi(PQgetvalue(res, r, off + 7));
	s->household_skills = (uint8_t)atoi(PQgetvalue(res, r, off + 8));
	parse_int_list(PQgetvalue(res, r, off + 9), s->self_level, FLOW_SKILLS);
	parse_int_list(PQgetvalue(res, r, off + 10), s->best_quiz, FLOW_SKILLS);
	parse_int_list(PQgetvalue(res, r, off + 11), passed, FLOW_SKILLS);
	for (int i = 0; i < FLOW_SKILLS; i++)
		s->quiz_passed[i] = passed[i] == 1;
}

/* One key and its value in the MO batch's JSON. */
static void
kv_str(struct strbuf *b, const char *key, const char *v)
{
	strbuf_json_key(b, key);
	strbuf_json_str(b, v);
}

static void
kv_int(struct strbuf *b, const char *key, long long v)
{
	strbuf_json_key(b, key);
	strbuf_json_int(b, v);
}

static void
kv_bool(struct strbuf *b, const char *key, bool v)
{
	strbuf_json_key(b, key);
	strbuf_json_bool(b, v);
}

/* What the flow engine decided for one MO, as keys of its element of sg_mo_apply's input. */
static void
flow_to_json(struct strbuf *b, const struct mo_item *m, const struct flow_result *fr,
             const char *src)
{
	kv_str(b, "src", src);
	kv_str(b, "dest", m->to);
	kv_str(b, "state", fr->state);
	kv_bool(b, "sc", fr->state_changed);
	kv_str(b, "lang", fr->lang);
	kv_int(b, "opt", fr->opt);
	kv_bool(b, "help", fr->help_sent);
	kv_str(b, "join", fr->join_code);
	kv_str(b, "rok", fr->reply_join_ok);
	kv_str(b, "runk", fr->reply_join_unknown);
	strbuf_json_key(b, "replies");
	strbuf_json_open(b, '[');
	for (int i = 0; i < fr->n_replies; i++)
		strbuf_json_str(b, fr->reply[i]);
	strbuf_json_close(b, ']');
	strbuf_json_key(b, "ev");
	strbuf_json_open(b, '[');
	for (int i = 0; i < fr->n_events; i++) {
		const struct flow_event *e = &fr->events[i];
		strbuf_json_open(b, '[');
		strbuf_json_int(b, e->skill);
		strbuf_json_str(b, e->kind == FLOW_EV_SELF ? "self" : "quiz");
		strbuf_json_int(b, e->value);
		strbuf_json_bool(b, e->passed);
		strbuf_json_close(b, ']');
	}
	strbuf_json_close(b, ']');
	kv_str(b, "link", m->link);
}

struct apply_ctx {
	struct pipeline *p;
	struct mo_item *items; /* list via next; released when applied */
	int n;                 /* MOs stored by sg_mo_commit (fresh batches) */
};

static void
mt_enqueue(struct pipeline *p, const struct msg_mt *mt)
{
	struct mt_item *it = calloc(1, sizeof *it);
	if (it == NULL)
		fatal("out of memory");
	it->mt = *mt;
	it->text = strdup(mt->text);
	if (it->text == NULL)
		fatal("out of memory");
	it->mt.text = it->text;
	struct mt_queue *q = &p->pending[mt->prio];
	if (q->tail)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	q->n++;
}

/* Rows first.. of (id, msisdn, text, ..., link, ussd_session, ussd_end) -> gateway. */
static void
mt_from_rows(struct pipeline *p, PGresult *res, int first, enum msg_prio prio, int c_id, int c_to,
             int c_text, int c_link, int c_from, int c_fold)
{
	for (int r = first; r < PQntuples(res); r++) {
		struct msg_mt mt;
		memset(&mt, 0, sizeof mt);
		mt.id = atoll(PQgetvalue(res, r, c_id));
		str_copy(mt.to, sizeof mt.to, PQgetvalue(res, r, c_to));
		mt.text = PQgetvalue(res, r, c_text);
		mt.prio = prio;
		if (c_link >= 0)
			str_copy(mt.link, sizeof mt.link, PQgetvalue(res, r, c_link));
		if (c_from >= 0)
			str_copy(mt.from, sizeof mt.from, PQgetvalue(res, r, c_from));
		if (c_fold >= 0)
			mt.fold = PQgetvalue(res, r, c_fold)[0] == 't';
		mt_enqueue(p, &mt);
		p->stats.mt_queued++;
	}
	mt_push_pending(p, prio);
}

static void
apply_cb(void *arg, PGresult *res, const char *err)
{
	struct apply_ctx *a = arg;
	struct pipeline *p = a->p;
	p->in_flight--;
	if (res == NULL) {
		log_warn("pipeline", "apply failed (%s): MOs stay pending, swept again in 1 s",
		         err);
		if (!p->stopping)
			sweep_later(p, 1000);
	} else
		mt_from_rows(p, res, 0, MSG_PRIO_INTERACTIVE, 0, 1, 2, 4, -1, -1);
	struct mo_item *m = a->items;
	while (m) {
		struct mo_item *next = m->next;
		mo_done(p, m);
		m = next;
	}
	free(a);
	mo_batch_flush(p);
	pipeline_check_stop(p);
}

/* One MO as the database returned it: status and subscriber snapshot. */
struct mo_row {
	const char *status; /* "new", "duplicate", "looping" */
	struct flow_sub sub;
};

/*
 * A fresh batch (sg_mo_commit) is committed: its MOs are acknowledged (the
 * duplicates with them) and the replies go to the gateway. On failure nothing
 * of the batch is stored and every MO gets the temporary error.
 */
static void
commit_cb(void *arg, PGresult *res, const char *err)
{
	struct apply_ctx *a = arg;
	struct pipeline *p = a->p;
	p->in_flight--;
	p->mo_committing--;
	bool ok = a->n == 0 || (res != NULL && PQntuples(res) >= a->n);
	if (!ok)
		log_warn("pipeline", "MO batch not committed (%s): temporary error to the SMSC",
		         res == NULL ? err : "short result");
	for (struct mo_item *m = a->items; m; m = m->next) {
		if (!ok)
			p->stats.mo_refused++;
		mo_ack(p, m, ok ? 0 : (uint32_t)p->cfg->mo_temp_error);
	}
	if (ok) {
		p->stats.mo_committed += (uint64_t)a->n;
		/* kind, ord, mo_id, mt_id, msisdn, text, link, ...: the a->n 'mo' rows, then
		 * replies */
		mt_from_rows(p, res, a->n, MSG_PRIO_INTERACTIVE, 3, 4, 5, 6, -1, -1);
	}
	struct mo_item *m = a->items;
	while (m) {
		struct mo_item *next = m->next;
		mo_done(p, m);
		m = next;
	}
	free(a);
	mo_batch_flush(p); /* what arrived meanwhile */
	pipeline_check_stop(p);
}

/*
 * Runs the flow engine on each new MO of items (rows[i] for the i-th) and
 * stores the outcome. fresh: the batch comes from sg_mo_prepare and nothing
 * of it is stored yet: MO rows, outcome and replies commit together
 * (sg_mo_commit; looping MOs are stored, duplicates not). Otherwise the MOs
 * were committed earlier (recovery) and only the outcome is applied.
 */
static void
mo_run_flows(struct pipeline *p, struct mo_item *items, const struct mo_row *rows, bool fresh)
{
	struct apply_ctx *a = calloc(1, sizeof *a);
	struct flow_result *fr = malloc(sizeof *fr);
	struct strbuf *b = &p->batch_json;
	if (a == NULL || fr == NULL)
		fatal("out of memory");
	a->p = p;
	a->items = items;
	int64_t now = pipeline_now();
	int r = 0;
	strbuf_reset(b);
	strbuf_json_open(b, '[');
	for (struct mo_item *m = items; m; m = m->next, r++) {
		if (strcmp(rows[r].status, "duplicate") == 0) {
			p->stats.mo_duplicates++;
			continue;
		}
		bool looping = strcmp(rows[r].status, "looping") == 0;
		if (looping) {
			char mb[32];
			p->stats.mo_looping++;
			log_warn("pipeline", "loop guard: no reply to %s (same text too often)",
			         log_msisdn(m->from, mb, sizeof mb));
			if (!fresh)
				continue;
		}
		strbuf_json_open(b, '{');
		kv_int(b, "mo", m->mo_id);
		kv_str(b, "msisdn", m->from);
		if (!looping) {
			flow_handle_sms(p->content, &p->fcfg, &rows[r].sub, m->text, now,
			                pipeline_rand(p), fr);
			flow_to_json(b, m, fr, "sms");
		}
		if (fresh) {
			/* sg_mo_commit stores the MO ("in") under the id sg_mo_prepare
			 * reserved ("mo"); sg_mo_apply then stamps the number's last_mo_at
			 * ("seen") and leaves the row's state as stored ("fresh"). "known":
			 * the snapshot found the number, so sg_mo_commit does not try to
			 * insert it (026) */
			kv_bool(b, "fresh", true);
			kv_bool(b, "seen", true);
			if (!looping && !rows[r].sub.is_new)
				kv_bool(b, "known", true);
			strbuf_json_key(b, "in");
			strbuf_json_open(b, '{');
			kv_str(b, "link", m->link);
			kv_str(b, "smsc_id", m->smsc_id);
			kv_str(b, "dest", m->to);
			kv_str(b, "text", m->text);
			kv_bool(b, "partial", m->partial);
			kv_str(b, "state", looping ? "looping" : "processed");
			strbuf_json_close(b, '}');
			a->n++;
		}
		strbuf_json_close(b, '}');
	}
	strbuf_json_close(b, ']');
	free(fr);
	if (fresh && a->n == 0) { /* only duplicates: their originals are stored */
		p->in_flight++;
		commit_cb(a, NULL, NULL);
		return;
	}
	const char *rule = flow_rule_name(p->fcfg.rule);
	const char *params[] = {b->s, rule, p->owner};
	p->in_flight++;
	uint64_t id = fresh ? store_query(p->st, "SELECT * FROM sg_mo_commit($1::jsonb, $2, $3)", 3,
	                                  params, commit_cb, a)
	                    : store_query(p->st, "SELECT * FROM sg_mo_apply($1::jsonb, $2, $3)", 3,
	                                  params, apply_cb, a);
	if (id == 0)
		(fresh ? commit_cb : apply_cb)(a, NULL, "store refused");
}

/* sg_mo_prepare answered: run the flows and commit everything at once. */
static void
prepare_cb(void *arg, PGresult *res, const char *err)
{
	struct mo_batch *b = arg;
	struct pipeline *p = b->p;
	p->in_flight--;
	/* columns: idx, dup_of, status, is_new, the snapshot from 4, then mo_id (16) */
	if (res == NULL || PQntuples(res) != b->n || PQnfields(res) < 17) {
		p->mo_committing--;
		mo_batch_fail(p, b,
		              res == NULL              ? err
		              : PQntuples(res) != b->n ? "short result"
		                                       : "no mo_id column (run skillctl migrate)");
		mo_batch_flush(p);
		pipeline_check_stop(p);
		return;
	}
	struct mo_row *rows = calloc((size_t)b->n, sizeof *rows);
	if (rows == NULL)
		fatal("out of memory");
	int r = 0;
	for (struct mo_item *m = b->head; m; m = m->next, r++) {
		rows[r].status = PQgetvalue(res, r, 2);
		m->mo_id = atoll(PQgetvalue(res, r, 16));
		if (strcmp(rows[r].status, "new") == 0)
			snapshot_from_row(res, r, 4, m->from, PQgetvalue(res, r, 3)[0] == 't',
			                  &rows[r].sub);
	}
	mo_run_flows(p, b->head, rows, true);
	free(rows);
	free(b);
}

/*
 * Sends the open MO batch on its way: sg_mo_prepare (read-only), then the
 * flows, then sg_mo_commit. One batch at a time (more only when the open one
 * is full): while one is on its way the next grows.
 */
static void
mo_batch_flush(struct pipeline *p)
{
	struct mo_batch *b = p->open_mo;
	if (b == NULL || b->n == 0)
		return;
	if (p->mo_committing > 0 && b->n < p->cfg->db_batch_max && !p->stopping)
		return; /* commit_cb flushes it when the one on its way is done */
	p->open_mo = NULL;
	evtimer_del(p->mo_timer);

	struct strbuf a[4];
	for (int i = 0; i < 4; i++) {
		strbuf_init(&a[i]);
		strbuf_pgarr_begin(&a[i]);
	}
	for (struct mo_item *m = b->head; m; m = m->next) {
		strbuf_pgarr_elem(&a[0], m->link);
		strbuf_pgarr_elem(&a[1], m->smsc_id);
		strbuf_pgarr_elem(&a[2], m->from);
		strbuf_pgarr_elem(&a[3], m->text);
	}
	char dd[16], lm[16], lw[16];
	snprintf(dd, sizeof dd, "%d", p->cfg->dedupe_window);
	snprintf(lm, sizeof lm, "%d", p->cfg->loop_max);
	snprintf(lw, sizeof lw, "%d", p->cfg->loop_window);
	const char *params[7];
	for (int i = 0; i < 4; i++) {
		strbuf_pgarr_end(&a[i]);
		params[i] = a[i].s;
	}
	params[4] = dd;
	params[5] = lm;
	params[6] = lw;
	uint64_t id = store_query(p->st,
	                          "SELECT * FROM sg_mo_prepare($1::text[], $2::text[], $3::text[], "
	                          "$4::text[], $5, $6, $7)",
	                          7, params, prepare_cb, b);
	for (int i = 0; i < 4; i++)
		strbuf_free(&a[i]);
	if (id == 0) {
		mo_batch_fail(p, b, "database unavailable");
		return;
	}
	p->in_flight++;
	p->mo_committing++;
}

static void
mo_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	mo_batch_flush(arg);
}

/* ------------------------------------------------------------------ */
/* Recovery                                                           */

/* Sweeps again in ms milliseconds, for MOs of any age. */
static void
sweep_later(struct pipeline *p, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	p->sweep_soon = true;
	evtimer_add(p->sweep_timer, &tv); /* reschedules a pending timer */
}

/*
 * MOs committed but never processed (a crash, or the database lost between
 * ingest and apply). Numbers already in flight are skipped: their rows stay
 * 'received' and the next recovery takes them.
 */
static void
recover_mo_cb(void *arg, PGresult *res, const char *err)
{
	struct pipeline *p = arg;
	p->in_flight--;
	p->sweeping = false;
	if (res == NULL) {
		log_warn("pipeline", "recovery of pending MOs failed: %s", err);
		sweep_later(p, 1000);
		pipeline_check_stop(p);
		return;
	}
	int n = PQntuples(res);
	if (n == RECOVER_BATCH)
		sweep_later(p, 0); /* more to read */
	struct mo_row *rows = calloc((size_t)(n > 0 ? n : 1), sizeof *rows);
	if (rows == NULL)
		fatal("out of memory");
	struct mo_item *head = NULL, *tail = NULL;
	int k = 0;
	for (int r = 0; r < n; r++) {
		/* sg_mo_pending: mo_id, link, msisdn, dest, text, partial, snapshot from 6 */
		if (*busy_find(p, PQgetvalue(res, r, 2)) != NULL) {
			/* its number is in flight: look again once that is done */
			sweep_later(p, 500);
			continue;
		}
		struct mo_item *m = calloc(1, sizeof *m);
		if (m == NULL || (m->text = strdup(PQgetvalue(res, r, 4))) == NULL)
			fatal("out of memory");
		m->mo_id = atoll(PQgetvalue(res, r, 0));
		str_copy(m->link, sizeof m->link, PQgetvalue(res, r, 1));
		str_copy(m->from, sizeof m->from, PQgetvalue(res, r, 2));
		str_copy(m->to, sizeof m->to, PQgetvalue(res, r, 3));
		m->partial = PQgetvalue(res, r, 5)[0] == 't';
		busy_enter(p, m);
		rows[k].status = "new";
		snapshot_from_row(res, r, 6, m->from, false, &rows[k].sub);
		k++;
		if (tail)
			tail->next = m;
		else
			head = m;
		tail = m;
	}
	if (k > 0) {
		log_info("pipeline", "recovering %d committed but unprocessed MO", k);
		mo_run_flows(p, head, rows, false);
	}
	free(rows);
	pipeline_check_stop(p);
}

static void
recover_mt_cb(void *arg, PGresult *res, const char *err)
{
	struct pipeline *p = arg;
	p->in_flight--;
	p->recovering = false;
	if (res == NULL)
		log_warn("pipeline", "recovery of in-flight MTs failed: %s", err);
	else if (atoll(PQgetvalue(res, 0, 0)) > 0)
		log_warn("pipeline",
		         "%s MT were in flight at a crash: sent again, marked maybe_duplicate",
		         PQgetvalue(res, 0, 0));
	arm_timer(p->pump_timer, 0);
	pipeline_check_stop(p);
}

/* Reads MOs committed but not processed that are at least min_age s old. */
static void
recover_mo(struct pipeline *p, int min_age)
{
	char lim[16], age[16];
	if (p->sweeping || p->stopping || store_up(p->st) == 0)
		return;
	snprintf(lim, sizeof lim, "%d", RECOVER_BATCH);
	snprintf(age, sizeof age, "%d", min_age);
	const char *params[] = {lim, age};
	p->sweeping = true;
	p->in_flight++;
	if (store_query(p->st, "SELECT * FROM sg_mo_pending($1, $2)", 2, params, recover_mo_cb,
	                p) == 0) {
		p->in_flight--;
		p->sweeping = false;
	}
}

/*
 * The sweep: soon after a recovery that had to skip numbers in flight, and
 * every SWEEP_INTERVAL_S anyway for MOs whose apply was lost (database gone
 * between ingest and apply). Periodic sweeps only take MOs older than the
 * interval, so another instance's MOs in flight are left to it.
 */
static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pipeline *p = arg;
	if (p->sweeping) {
		sweep_later(p, 200); /* one is in flight: look again after it */
		return;
	}
	recover_mo(p, p->sweep_soon ? 0 : SWEEP_INTERVAL_S);
	p->sweep_soon = false;
	struct timeval tv = {SWEEP_INTERVAL_S, 0};
	if (!evtimer_pending(p->sweep_timer, NULL))
		evtimer_add(p->sweep_timer, &tv);
}

/*
 * A receipt and its submit result committing at the same moment leave the
 * receipt parked in dlr_early (neither transaction sees the other's row);
 * sg_dlr_rematch applies such receipts. Rare, so a few seconds late is fine.
 * The same call drops what has been parked over a day (sg_dlr_early_expire).
 */
static void
rematch_done_cb(void *arg, PGresult *res, const char *err)
{
	struct pipeline *p = arg;
	p->in_flight--;
	p->rematching = false;
	if (res == NULL)
		log_warn("pipeline", "matching parked receipts failed: %s", err);
	else if (PQntuples(res) == 1 && PQnfields(res) == 2) {
		if (atoi(PQgetvalue(res, 0, 0)) > 0)
			log_info("pipeline", "%s parked receipt(s) matched", PQgetvalue(res, 0, 0));
		if (atoi(PQgetvalue(res, 0, 1)) > 0)
			log_info("pipeline", "%s receipt(s) parked over a day dropped",
			         PQgetvalue(res, 0, 1));
	}
	pipeline_check_stop(p);
}

static void
rematch_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pipeline *p = arg;
	struct timeval tv = {REMATCH_INTERVAL_S, 0};
	evtimer_add(p->rematch_timer, &tv);
	if (p->rematching || p->stopping || store_up(p->st) == 0)
		return;
	p->rematching = true;
	p->in_flight++;
	if (store_query(p->st, "SELECT sg_dlr_rematch(), sg_dlr_early_expire()", 0, NULL,
	                rematch_done_cb, p) == 0) {
		p->in_flight--;
		p->rematching = false;
	}
}

void
pipeline_set_standby(struct pipeline *p, bool standby)
{
	p->standby = standby;
}

void
pipeline_set_bulk_ready(struct pipeline *p)
{
	if (!p->bulk_ready)
		log_info("pipeline", "campaign settings in place: bulk sending starts");
	p->bulk_ready = true;
}

void
pipeline_recover(struct pipeline *p)
{
	const char *owner[] = {p->owner};
	p->recovering = true;
	p->in_flight++;
	if (store_query(p->st, "SELECT sg_mt_recover($1)", 1, owner, recover_mt_cb, p) == 0) {
		p->in_flight--;
		p->recovering = false;
	}
	recover_mo(p, 0);
}

/* ------------------------------------------------------------------ */
/* Outbound: pending queues -> gateway, claims from the outbox          */

/* Hands pending MTs of prio to the gateway until a link says "full". */
static void
mt_push_pending(struct pipeline *p, enum msg_prio prio)
{
	struct mt_queue *q = &p->pending[prio];
	while (q->head) {
		if (out_full(p))
			return; /* outcomes not yet recorded: out_done_cb brings us back */
		struct mt_item *it = q->head;
		int rc = p->gw->submit(p->gwarg, &it->mt);
		log_debug("pipeline", "mt %lld prio %d -> gateway: %d (%d pending)",
		          (long long)it->mt.id, (int)prio, rc, q->n);
		if (rc == -1)
			return; /* link full: core_ops.ready brings us back */
		if (rc == -2)
			return; /* no link bound yet (start-up, outage): the pump retries */
		p->stats.mt_submitted++;
		q->head = it->next;
		if (q->head == NULL)
			q->tail = NULL;
		q->n--;
		free(it->text);
		free(it);
	}
}

struct claim_ctx {
	struct pipeline *p;
	enum msg_prio prio;
};

static void
claim_cb(void *arg, PGresult *res, const char *err)
{
	struct claim_ctx *c = arg;
	struct pipeline *p = c->p;
	enum msg_prio prio = c->prio;
	free(c);
	p->in_flight--;
	p->claiming[prio] = false;
	if (res == NULL) {
		log_warn("pipeline", "claiming queued MTs failed: %s", err);
	} else {
		/* id, msisdn, source, text, priority, fold, link, ussd_session, ussd_end */
		mt_from_rows(p, res, 0, prio, 0, 1, 3, 6, 2, 5);
		/* more where that came from: claim again now if the links took these
		 * (the pump timer is always pending, so it cannot be armed sooner) */
		if (PQntuples(res) == MT_CLAIM_BATCH)
			mt_claim(p, prio);
	}
	pipeline_check_stop(p);
}

/* Claims queued MTs of prio when few are pending (bounded memory). */
static void
mt_claim(struct pipeline *p, enum msg_prio prio)
{
	if (p->claiming[prio] || p->recovering || p->stopping || p->standby ||
	    (prio == MSG_PRIO_BULK && !p->bulk_ready) || store_up(p->st) == 0 ||
	    p->pending[prio].n >= MT_PENDING_LOW)
		return;
	struct claim_ctx *c = malloc(sizeof *c);
	if (c == NULL)
		fatal("out of memory");
	c->p = p;
	c->prio = prio;
	char pr[4], lim[16];
	snprintf(pr, sizeof pr, "%d", (int)prio);
	snprintf(lim, sizeof lim, "%d", MT_CLAIM_BATCH);
	const char *params[] = {p->owner, pr, lim};
	p->claiming[prio] = true;
	p->in_flight++;
	if (store_query(p->st, "SELECT * FROM sg_mt_claim($1, $2, $3)", 3, params, claim_cb, c) ==
	    0) {
		p->in_flight--;
		p->claiming[prio] = false;
		free(c);
	}
}

static void
pump_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pipeline *p = arg;
	for (int prio = 0; prio < MSG_PRIO_COUNT; prio++) {
		mt_push_pending(p, (enum msg_prio)prio);
		mt_claim(p, (enum msg_prio)prio);
	}
	struct timeval tv = {0, 200 * 1000};
	evtimer_add(p->pump_timer, &tv);
}

static void
ready_core_cb(void *core, const char *link, enum msg_prio prio)
{
	struct pipeline *p = core;
	mt_push_pending(p, prio);
	if (prio == MSG_PRIO_BULK)
		mt_claim(p, prio);
}

/* ------------------------------------------------------------------ */
/* submit_sm outcomes and receipts: one stream, committed in batches    */

/*
 * Results (submit_sm_resp) and receipts (deliver_sm receipts) go to the
 * database in one stream, one batch committing at a time, results before
 * receipts within a batch (sg_mt_outcomes). A receipt therefore always finds
 * the part its submit_sm_resp recorded when that response arrived first, even
 * when both arrive within the same millisecond — the usual case, since SMSCs
 * send the receipt right after the response. Receipts that truly overtake
 * their response wait in dlr_early and are matched when it is recorded.
 */
/* A batch of rows (NULL: a new, empty one). */
static struct out_batch *
out_new(struct pipeline *p, struct outbatch *rows)
{
	struct out_batch *b = calloc(1, sizeof *b);
	if (b == NULL)
		fatal("out of memory");
	b->p = p;
	b->rows = rows != NULL ? rows : outbatch_new();
	return b;
}

static void
out_free(struct out_batch *b)
{
	if (b == NULL)
		return;
	outbatch_free(b->rows);
	free(b);
}

/* Results and receipts in b. */
static int
out_rows(const struct out_batch *b)
{
	return outbatch_results(b->rows) + outbatch_receipts(b->rows);
}

/* The open batch, created when the first row arrives. */
static struct out_batch *
out_open(struct pipeline *p)
{
	if (p->out == NULL)
		p->out = out_new(p, NULL);
	return p->out;
}

/* Submit results and receipts waiting for the batch in flight: past
 * OUT_BACKLOG_MAX no more MTs go to the links until it commits (the SMSC's
 * window bounds its receipts the same way, since they are answered after the
 * commit). Keeps memory bounded when the database falls behind. */
static bool
out_full(const struct pipeline *p)
{
	return p->out != NULL && out_rows(p->out) >= OUT_BACKLOG_MAX;
}

/* Answers the batch's receipts: 0 = committed, else the temporary error that
 * makes the SMSC deliver them again. */
static void
out_ack_receipts(struct pipeline *p, struct out_batch *b, uint32_t status)
{
	for (int i = 0; i < outbatch_receipts(b->rows); i++)
		p->gw->ack(p->gwarg, outbatch_receipt_ack(b->rows, i), 1, status);
	outbatch_drop_receipts(b->rows);
}

static void out_send(struct pipeline *p, struct out_batch *b);

/* A batch did not commit: its receipts are refused with a temporary error (the
 * SMSC delivers them again); its results are kept for a retry unless stopping
 * or the retry backlog is full (then those messages stay 'submitting' and are
 * resent, marked maybe_duplicate, by sg_mt_recover at the next start: dropping
 * them silently would strand them and their receipts). */
static void
out_failed(struct pipeline *p, struct out_batch *b, const char *why)
{
	if (outbatch_receipts(b->rows) > 0)
		log_warn("pipeline", "%d receipts not committed (%s): temporary error",
		         outbatch_receipts(b->rows), why);
	out_ack_receipts(p, b, (uint32_t)p->cfg->mo_temp_error);
	if (outbatch_results(b->rows) == 0) { /* (a retry carries the results only) */
		out_free(b);
		return;
	}
	if (p->stopping || p->out_retry_rows + outbatch_results(b->rows) > OUT_RETRY_MAX) {
		log_error(
		    "pipeline",
		    "%d submit results not recorded (%s): those messages stay 'submitting' and are "
		    "resent, marked maybe_duplicate, after a restart",
		    outbatch_results(b->rows), why);
		out_free(b);
		if (p->stopping) { /* the backlog too: nothing will retry it */
			while (p->out_retry) {
				struct out_batch *next = p->out_retry->next;
				log_error("pipeline", "%d submit results not recorded at stop",
				          outbatch_results(p->out_retry->rows));
				out_free(p->out_retry);
				p->out_retry = next;
			}
			p->out_retry_tail = NULL;
			p->out_retry_rows = 0;
		}
		return;
	}
	log_warn("pipeline", "%d submit results not recorded (%s): retrying in %d ms",
	         outbatch_results(b->rows), why, OUT_RETRY_MS);
	b->next = NULL;
	if (p->out_retry_tail)
		p->out_retry_tail->next = b;
	else
		p->out_retry = b;
	p->out_retry_tail = b;
	p->out_retry_rows += outbatch_results(b->rows);
	arm_timer(p->out_retry_timer, OUT_RETRY_MS);
}

static void
out_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pipeline *p = arg;
	struct out_batch *b = p->out_retry;
	if (b == NULL)
		return;
	if (p->out_committing) {
		arm_timer(p->out_retry_timer, OUT_RETRY_MS);
		return;
	}
	p->out_retry = b->next;
	if (p->out_retry == NULL)
		p->out_retry_tail = NULL;
	p->out_retry_rows -= outbatch_results(b->rows);
	out_send(p, b);
}

static void out_flush(struct pipeline *p);

static void
out_done_cb(void *arg, PGresult *res, const char *err)
{
	struct out_batch *b = arg;
	struct pipeline *p = b->p;
	p->in_flight--;
	p->out_committing = false;
	if (res == NULL) {
		out_failed(p, b, err);
	} else {
		if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
			p->stats.dlr_parked += (uint64_t)strtoull(PQgetvalue(res, 0, 0), NULL, 10);
		out_ack_receipts(p, b, 0);
		out_free(b);
		if (p->out_retry != NULL) { /* the database is back: drain the retries */
			evtimer_del(p->out_retry_timer);
			if (p->stopping)
				out_retry_cb(-1, 0, p);
			else
				arm_timer(p->out_retry_timer, 0);
		}
	}
	bool was_full = out_full(p);
	out_flush(p); /* what arrived meanwhile */
	if (was_full)
		for (int prio = 0; prio < MSG_PRIO_COUNT; prio++)
			mt_push_pending(p, (enum msg_prio)prio);
	pipeline_check_stop(p);
}

static void
out_send(struct pipeline *p, struct out_batch *b)
{
	struct strbuf f[OUTBATCH_PARAMS];
	const char *params[OUTBATCH_PARAMS];
	outbatch_params(b->rows, f);
	for (int i = 0; i < OUTBATCH_PARAMS; i++)
		params[i] = f[i].s;
	p->in_flight++;
	p->out_committing = true;
	uint64_t id = store_query(p->st,
	                          "SELECT sg_mt_outcomes($1::bigint[], $2::int[], $3::int[], "
	                          "$4::text[], $5::int[], $6::text[], $7::boolean[], $8::text[], "
	                          "$9::text[], $10::int[], $11::int[], $12::bigint[], $13::int[], "
	                          "$14::text[], $15::text[], $16::int[])",
	                          OUTBATCH_PARAMS, params, out_done_cb, b);
	for (int i = 0; i < OUTBATCH_PARAMS; i++)
		strbuf_free(&f[i]);
	if (id == 0) {
		p->in_flight--;
		p->out_committing = false;
		out_failed(p, b, "database unavailable");
	}
}

/*
 * Sends the open batch unless one is committing (then it keeps growing and
 * goes when that one is done: one at a time keeps results before receipts).
 * The messages not whole in it wait for the next batch (outbatch_split), up
 * to OUT_WAIT_MS, so that they take sg_mt_outcomes' fast path.
 */
static void
out_flush(struct pipeline *p)
{
	struct out_batch *b = p->out;
	if (b == NULL || out_rows(b) == 0 || p->out_committing)
		return;
	evtimer_del(p->out_timer);
	p->out = NULL;
	p->out_holding = false;
	struct outbatch *rest =
	    p->stopping ? NULL : outbatch_split(b->rows, mono_ms(), OUT_WAIT_MS);
	if (rest != NULL)
		p->out = out_new(p, rest);
	if (out_rows(b) == 0) { /* all of it waits for the rest of its messages */
		out_free(b);
		p->out_holding = true; /* no new split for every row that arrives meanwhile */
		arm_timer(p->out_timer, OUT_HOLD_MS);
		return;
	}
	out_send(p, b);
}

static void
out_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	out_flush(arg);
}

/* A row was added: send now when the batch is full, else within batch_wait_ms. */
static void
out_added(struct pipeline *p, const struct out_batch *b)
{
	if ((out_rows(b) >= p->cfg->db_batch_max && !p->out_holding) || p->stopping)
		out_flush(p);
	else if (!p->out_committing)
		arm_timer(p->out_timer, p->cfg->db_batch_wait_ms);
}

static void
mt_result_core_cb(void *core, const struct msg_mt_result *r)
{
	struct pipeline *p = core;
	struct out_batch *b = out_open(p);
	/* temporary: the gateway retried up to max_retries and gave up for now;
	 * the message goes back to the outbox for a later attempt */
	if (r->status != 0 && !r->temporary) {
		p->stats.mt_failed++;
		log_info("pipeline", "MT %lld part %d/%d failed with status 0x%x",
		         (long long)r->mt_id, r->part, r->nparts, r->status);
	}
	outbatch_add_result(b->rows, r, mono_ms());
	out_added(p, b);
}

static void
dlr_core_cb(void *core, const struct msg_dlr *d)
{
	struct pipeline *p = core;
	p->stats.dlr_received++;
	if (p->stopping || store_up(p->st) == 0) {
		p->gw->ack(p->gwarg, &d->ack, 1, (uint32_t)p->cfg->mo_temp_error);
		return;
	}
	struct out_batch *b = out_open(p);
	outbatch_add_receipt(b->rows, d);
	out_added(p, b);
}

static void
ussd_core_cb(void *core, const struct msg_ussd *u)
{
	struct pipeline *p = core;
	if (p->ussd_fn != NULL) { /* core/ussd.c: commits, then acknowledges */
		p->ussd_fn(p->ussd_arg, u);
		return;
	}
	/* no USSD module: acknowledge, answer nothing. */
	log_info("pipeline", "USSD dialog step on %s ignored: USSD menus are not implemented yet",
	         u->link);
	p->gw->ack(p->gwarg, &u->ack, 1, 0);
}

static const struct core_ops pipeline_ops = {
    .mo = mo_core_cb,
    .dlr = dlr_core_cb,
    .ussd = ussd_core_cb,
    .mt_result = mt_result_core_cb,
    .ready = ready_core_cb,
};

const struct core_ops *
pipeline_core_ops(void)
{
	return &pipeline_ops;
}

/* ------------------------------------------------------------------ */
/* Life cycle                                                         */

static void
pipeline_check_stop(struct pipeline *p)
{
	if (!p->stopping || p->stop_cb == NULL)
		return;
	if (p->in_flight > 0 || (p->open_mo && p->open_mo->n > 0) ||
	    (p->out && out_rows(p->out) > 0) || p->out_retry != NULL)
		return;
	void (*fn)(void *) = p->stop_cb;
	p->stop_cb = NULL;
	fn(p->stop_arg);
}

void
pipeline_stop(struct pipeline *p, void (*done)(void *arg), void *arg)
{
	p->stopping = true;
	p->stop_cb = done;
	p->stop_arg = arg;
	evtimer_del(p->pump_timer);
	evtimer_del(p->sweep_timer);
	evtimer_del(p->rematch_timer);
	mo_batch_flush(p);
	out_flush(p);
	if (p->out_retry && !p->out_committing) {
		evtimer_del(p->out_retry_timer);
		out_retry_cb(-1, 0, p);
	}
	pipeline_check_stop(p);
}

struct pipeline *
pipeline_new(struct event_base *base, const struct sg_config *cfg, struct store *st,
             const struct gw_ops *gw, void *gwarg)
{
	struct pipeline *p = calloc(1, sizeof *p);
	if (p == NULL)
		fatal("out of memory");
	p->base = base;
	p->cfg = cfg;
	p->st = st;
	p->gw = gw;
	p->gwarg = gwarg;
	p->fcfg.pass_mark = cfg->pass_mark;
	p->fcfg.quiz_length = cfg->quiz_length;
	p->fcfg.rule = (enum flow_rule)cfg->proficiency_rule;
	p->fcfg.idle_timeout = cfg->flow_idle_timeout;
	p->fcfg.help_interval = cfg->help_interval;
	p->fcfg.join_segments = config_reply_segments(cfg); /* a joined reply fits every link */
	snprintf(p->owner, sizeof p->owner, "%s",
	         cfg->instance_name); /* never empty: config_load */
	p->rng = (uint32_t)time(NULL) ^ (uint32_t)getpid() ^ 0x9e3779b9u;
	if (p->rng == 0)
		p->rng = 1;
	p->mo_timer = evtimer_new(base, mo_timer_cb, p);
	p->pump_timer = evtimer_new(base, pump_cb, p);
	p->sweep_timer = evtimer_new(base, sweep_cb, p);
	p->rematch_timer = evtimer_new(base, rematch_cb, p);
	p->out_timer = evtimer_new(base, out_timer_cb, p);
	p->out_retry_timer = evtimer_new(base, out_retry_cb, p);
	struct timeval tv = {0, 200 * 1000};
	evtimer_add(p->pump_timer, &tv);
	struct timeval sw = {SWEEP_INTERVAL_S, 0};
	evtimer_add(p->sweep_timer, &sw);
	struct timeval rm = {REMATCH_INTERVAL_S, 0};
	evtimer_add(p->rematch_timer, &rm);
	return p;
}

void
pipeline_set_gateway(struct pipeline *p, void *gwarg)
{
	p->gwarg = gwarg;
}

void
pipeline_set_ussd(struct pipeline *p, void (*fn)(void *arg, const struct msg_ussd *u), void *arg)
{
	p->ussd_fn = fn;
	p->ussd_arg = arg;
}

void
pipeline_set_content(struct pipeline *p, const struct content *c)
{
	p->content = c;
}

void
pipeline_free(struct pipeline *p)
{
	if (p == NULL)
		return;
	strbuf_free(&p->batch_json);
	event_free(p->mo_timer);
	event_free(p->pump_timer);
	event_free(p->sweep_timer);
	event_free(p->rematch_timer);
	event_free(p->out_timer);
	event_free(p->out_retry_timer);
	while (p->out_retry) {
		struct out_batch *next = p->out_retry->next;
		out_free(p->out_retry);
		p->out_retry = next;
	}
	out_free(p->out);
	for (int prio = 0; prio < MSG_PRIO_COUNT; prio++) {
		struct mt_item *it = p->pending[prio].head;
		while (it) {
			struct mt_item *next = it->next;
			free(it->text);
			free(it);
			it = next;
		}
	}
	if (p->open_mo) {
		struct mo_item *m = p->open_mo->head;
		while (m) {
			struct mo_item *next = m->next;
			mo_item_free(m);
			m = next;
		}
		free(p->open_mo);
	}
	for (int i = 0; i < BUSY_BUCKETS; i++) {
		struct busy *b = p->busy[i];
		while (b) {
			struct busy *next = b->next;
			struct mo_item *m = b->head ? b->head->sub_next : NULL;
			while (m) { /* waiting, never batched */
				struct mo_item *n2 = m->sub_next;
				mo_item_free(m);
				m = n2;
			}
			free(b);
			b = next;
		}
	}
	free(p);
}

void
pipeline_get_stats(const struct pipeline *p, struct pipeline_stats *out)
{
	*out = p->stats;
	out->mt_pending = p->pending[0].n + p->pending[1].n;
	out->batches_in_flight = p->in_flight;
}

/*
 * outbatch.c — submit results and receipts batched for sg_mt_outcomes (see
 * outbatch.h).
 *
 * Why split: sg_mt_outcomes writes a message whose every segment was accepted
 * and delivered within one batch once, final (one update of the message),
 * where anything else costs a part row per segment written as submitted and
 * again as delivered, and the message updated twice. SMSCs report the
 * segments of a message, and their receipts, within milliseconds, yet a batch
 * boundary falls inside many messages (a third of the segments in the MO
 * bench); letting them wait a little joins nearly all of them.
 */
#include "outbatch.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "text.h"

struct out_res {
	struct msg_mt_result r;
	int64_t since; /* when it arrived (caller's clock, ms) */
};

struct outbatch {
	struct out_res *res;
	struct msg_dlr *dlr;
	int n_res, n_dlr, cap_res, cap_dlr;
};

/* One message's rows in the batch being split. */
struct out_msg {
	int64_t mt; /* 0: free slot (message ids start at 1) */
	int nparts, nres, nok, nfinal;
	int64_t since; /* its oldest result's arrival */
	bool move;
};

struct outbatch *
outbatch_new(void)
{
	struct outbatch *b = calloc(1, sizeof *b);
	if (b == NULL)
		fatal("out of memory");
	return b;
}

void
outbatch_free(struct outbatch *b)
{
	if (b == NULL)
		return;
	free(b->res);
	free(b->dlr);
	free(b);
}

/* Room for one more of *cap elements of size bytes in a, which holds n. */
static void *
grow(void *a, int n, int *cap, size_t size)
{
	if (n < *cap)
		return a;
	*cap = *cap ? *cap * 2 : 64;
	a = realloc(a, (size_t)*cap * size);
	if (a == NULL)
		fatal("out of memory");
	return a;
}

void
outbatch_add_result(struct outbatch *b, const struct msg_mt_result *r, int64_t now_ms)
{
	b->res = grow(b->res, b->n_res, &b->cap_res, sizeof *b->res);
	b->res[b->n_res].r = *r;
	b->res[b->n_res++].since = now_ms;
}

void
outbatch_add_receipt(struct outbatch *b, const struct msg_dlr *d)
{
	b->dlr = grow(b->dlr, b->n_dlr, &b->cap_dlr, sizeof *b->dlr);
	b->dlr[b->n_dlr++] = *d;
}

int
outbatch_results(const struct outbatch *b)
{
	return b->n_res;
}

int
outbatch_receipts(const struct outbatch *b)
{
	return b->n_dlr;
}

const struct msg_ack *
outbatch_receipt_ack(const struct outbatch *b, int i)
{
	return &b->dlr[i].ack;
}

void
outbatch_drop_receipts(struct outbatch *b)
{
	b->n_dlr = 0;
}

static size_t
hash_id(uint64_t x)
{
	x ^= x >> 33; /* murmur3's finaliser */
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return (size_t)x;
}

static size_t
hash_ref(const char *link, const char *smsc_id)
{
	uint32_t h = 2166136261u; /* FNV-1a over link, a separator, the id */
	for (const char *s = link; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	h = (h ^ 0xffu) * 16777619u;
	for (const char *s = smsc_id; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* The states sg_dlr_apply takes as final. */
static bool
dlr_final(enum msg_dlr_state s)
{
	return s == MSG_DLR_DELIVERED || s == MSG_DLR_EXPIRED || s == MSG_DLR_DELETED ||
	       s == MSG_DLR_UNDELIVERABLE || s == MSG_DLR_REJECTED;
}

struct outbatch *
outbatch_split(struct outbatch *b, int64_t now_ms, int wait_ms)
{
	if (b->n_res == 0)
		return NULL;
	size_t cap = 16; /* both tables at most half full */
	while (cap < (size_t)b->n_res * 2)
		cap <<= 1;
	struct out_msg *msg = calloc(cap, sizeof *msg);
	int *by_ref = malloc(cap * sizeof *by_ref); /* (link, SMSC id) -> result */
	int *res_msg = malloc((size_t)b->n_res * sizeof *res_msg);
	int *dlr_msg = malloc((size_t)(b->n_dlr + 1) * sizeof *dlr_msg);
	if (msg == NULL || by_ref == NULL || res_msg == NULL || dlr_msg == NULL)
		fatal("out of memory");
	for (size_t k = 0; k < cap; k++)
		by_ref[k] = -1;

	for (int i = 0; i < b->n_res; i++) {
		const struct msg_mt_result *r = &b->res[i].r;
		size_t h = hash_id((uint64_t)r->mt_id) & (cap - 1);
		while (msg[h].mt != 0 && msg[h].mt != r->mt_id)
			h = (h + 1) & (cap - 1);
		struct out_msg *m = &msg[h];
		if (m->mt == 0 || b->res[i].since < m->since)
			m->since = b->res[i].since;
		m->mt = r->mt_id;
		m->nparts = r->nparts;
		m->nres++;
		m->nok += r->status == 0;
		res_msg[i] = (int)h;
		if (r->status == 0 && r->smsc_id[0] != '\0') {
			size_t k = hash_ref(r->link, r->smsc_id) & (cap - 1);
			while (by_ref[k] >= 0)
				k = (k + 1) & (cap - 1);
			by_ref[k] = i;
		}
	}
	for (int j = 0; j < b->n_dlr; j++) {
		const struct msg_dlr *d = &b->dlr[j];
		dlr_msg[j] = -1;
		for (size_t k = hash_ref(d->link, d->smsc_id) & (cap - 1); by_ref[k] >= 0;
		     k = (k + 1) & (cap - 1)) {
			const struct msg_mt_result *r = &b->res[by_ref[k]].r;
			if (strcmp(r->smsc_id, d->smsc_id) == 0 && strcmp(r->link, d->link) == 0) {
				dlr_msg[j] = res_msg[by_ref[k]];
				msg[dlr_msg[j]].nfinal += dlr_final(d->state);
				break;
			}
		}
	}
	bool any = false;
	for (size_t h = 0; h < cap; h++) {
		struct out_msg *m = &msg[h];
		m->move = m->mt != 0 && now_ms - m->since < wait_ms &&
		          (m->nres < m->nparts || (m->nok == m->nres && m->nfinal < m->nok));
		any |= m->move;
	}

	struct outbatch *nb = NULL;
	if (any) {
		nb = outbatch_new();
		int k = 0;
		for (int i = 0; i < b->n_res; i++) {
			if (msg[res_msg[i]].move)
				outbatch_add_result(nb, &b->res[i].r, b->res[i].since);
			else
				b->res[k++] = b->res[i];
		}
		b->n_res = k;
		k = 0;
		for (int j = 0; j < b->n_dlr; j++) {
			if (dlr_msg[j] >= 0 && msg[dlr_msg[j]].move)
				outbatch_add_receipt(nb, &b->dlr[j]);
			else
				b->dlr[k++] = b->dlr[j];
		}
		b->n_dlr = k;
	}
	free(msg);
	free(by_ref);
	free(res_msg);
	free(dlr_msg);
	return nb;
}

/* The parameters' order (sg_mt_outcomes, 018). */
enum {
	P_MT,
	P_PART,
	P_NPARTS,
	P_LINK,
	P_STATUS,
	P_SMSC,
	P_TEMP,
	P_DLINK,
	P_DSMSC,
	P_DSTATE,
	P_DERR,
	P_FMT,
	P_FNPARTS,
	P_FLINK,
	P_FSMSC,
	P_FERR,
};

/* One message's results while the batch is classified. */
struct fast_msg {
	int64_t mt; /* 0: free slot */
	int nparts;
	bool bad;                    /* refused, inconsistent, or not whole */
	bool fast, emitted;          /* written once, final; its arrays written */
	int last[TEXT_MAX_SEGMENTS]; /* each part's last accepted result + 1 */
	int dlr[TEXT_MAX_SEGMENTS];  /* that result's first final receipt + 1 */
};

/* (link, SMSC id) -> row index, open addressing over cap (a power of two). */
struct ref_map {
	int *v;
	size_t cap;
};

static void
ref_map_init(struct ref_map *m, int n)
{
	m->cap = 16;
	while (m->cap < (size_t)n * 2)
		m->cap <<= 1;
	m->v = malloc(m->cap * sizeof *m->v);
	if (m->v == NULL)
		fatal("out of memory");
	for (size_t k = 0; k < m->cap; k++)
		m->v[k] = -1;
}

/* The slot holding key (link, id) among rows named by key_of, or the free
 * slot where it would go. */
static size_t
ref_slot(const struct ref_map *m, const char *link, const char *id,
         void (*key_of)(const void *ctx, int i, const char **link, const char **id),
         const void *ctx)
{
	size_t k = hash_ref(link, id) & (m->cap - 1);
	for (; m->v[k] >= 0; k = (k + 1) & (m->cap - 1)) {
		const char *l2, *i2;
		key_of(ctx, m->v[k], &l2, &i2);
		if (strcmp(i2, id) == 0 && strcmp(l2, link) == 0)
			break;
	}
	return k;
}

static void
dlr_key(const void *ctx, int i, const char **link, const char **id)
{
	const struct msg_dlr *d = &((const struct outbatch *)ctx)->dlr[i];
	*link = d->link;
	*id = d->smsc_id;
}

static void
res_key(const void *ctx, int i, const char **link, const char **id)
{
	const struct msg_mt_result *r = &((const struct outbatch *)ctx)->res[i].r;
	*link = r->link;
	*id = r->smsc_id;
}

/*
 * Which messages are whole and delivered in b (the rule of 013's fast path,
 * now decided here): no refused result, a result accepted for each of its
 * parts (the last one counts), and for each of those the first final
 * receipt in b says delivered. Sets fast_res[i] for the results of those
 * messages and skip_dlr[j] for every receipt that refers to one of their
 * results (the database never needs to see them); res_msg[i] is the
 * message of result i in msgs.
 */
static void
classify(const struct outbatch *b, struct fast_msg *msgs, size_t cap, int *res_msg, bool *fast_res,
         bool *skip_dlr)
{
	struct ref_map first, done;

	for (int i = 0; i < b->n_res; i++) {
		const struct msg_mt_result *r = &b->res[i].r;
		size_t h = hash_id((uint64_t)r->mt_id) & (cap - 1);
		while (msgs[h].mt != 0 && msgs[h].mt != r->mt_id)
			h = (h + 1) & (cap - 1);
		struct fast_msg *m = &msgs[h];
		if (m->mt == 0) {
			m->mt = r->mt_id;
			m->nparts = r->nparts;
			m->bad = r->nparts < 1 || r->nparts > TEXT_MAX_SEGMENTS;
		}
		res_msg[i] = (int)h;
		if (m->bad || r->nparts != m->nparts || r->status != 0 || r->part < 1 ||
		    r->part > m->nparts || r->smsc_id[0] == '\0')
			m->bad = true;
		else
			m->last[r->part - 1] = i + 1;
	}
	/* the first final receipt of each (link, SMSC id) */
	ref_map_init(&first, b->n_dlr);
	for (int j = 0; j < b->n_dlr; j++) {
		if (!dlr_final(b->dlr[j].state))
			continue;
		size_t k = ref_slot(&first, b->dlr[j].link, b->dlr[j].smsc_id, dlr_key, b);
		if (first.v[k] < 0)
			first.v[k] = j;
	}
	for (size_t h = 0; h < cap; h++) {
		struct fast_msg *m = &msgs[h];
		if (m->mt == 0 || m->bad)
			continue;
		m->fast = true;
		for (int k = 0; k < m->nparts && m->fast; k++) {
			if (m->last[k] == 0) {
				m->fast = false;
				break;
			}
			const struct msg_mt_result *r = &b->res[m->last[k] - 1].r;
			int j = first.v[ref_slot(&first, r->link, r->smsc_id, dlr_key, b)];
			m->fast = j >= 0 && b->dlr[j].state == MSG_DLR_DELIVERED;
			m->dlr[k] = j + 1;
		}
	}
	/* every receipt for a result of a fast message is done with */
	ref_map_init(&done, b->n_res);
	for (int i = 0; i < b->n_res; i++) {
		fast_res[i] = msgs[res_msg[i]].fast;
		if (fast_res[i]) {
			size_t k =
			    ref_slot(&done, b->res[i].r.link, b->res[i].r.smsc_id, res_key, b);
			done.v[k] = i;
		}
	}
	for (int j = 0; j < b->n_dlr; j++)
		skip_dlr[j] =
		    done.v[ref_slot(&done, b->dlr[j].link, b->dlr[j].smsc_id, res_key, b)] >= 0;
	free(first.v);
	free(done.v);
}

void
outbatch_params(const struct outbatch *b, struct strbuf p[OUTBATCH_PARAMS])
{
	/* without receipts no message is delivered: nothing to classify (a
	 * retried batch carries results only, up to OUT_RETRY_MAX of them) */
	size_t cap = b->n_dlr > 0 ? 16 : 1;
	while (b->n_dlr > 0 && cap < (size_t)b->n_res * 2)
		cap <<= 1;
	struct fast_msg *msgs = calloc(cap, sizeof *msgs);
	int *res_msg = calloc((size_t)b->n_res + 1, sizeof *res_msg);
	bool *fast_res = calloc((size_t)b->n_res + 1, sizeof *fast_res);
	bool *skip_dlr = calloc((size_t)b->n_dlr + 1, sizeof *skip_dlr);
	if (msgs == NULL || res_msg == NULL || fast_res == NULL || skip_dlr == NULL)
		fatal("out of memory");
	if (b->n_dlr > 0)
		classify(b, msgs, cap, res_msg, fast_res, skip_dlr);

	for (int i = 0; i < OUTBATCH_PARAMS; i++) {
		strbuf_init(&p[i]);
		strbuf_pgarr_begin(&p[i]);
	}
	for (int i = 0; i < b->n_res; i++) {
		const struct msg_mt_result *r = &b->res[i].r;
		struct fast_msg *m = &msgs[res_msg[i]];
		if (fast_res[i]) {
			if (m->emitted)
				continue;
			m->emitted = true; /* the message, its parts in order */
			strbuf_pgarr_int(&p[P_FMT], m->mt);
			strbuf_pgarr_int(&p[P_FNPARTS], m->nparts);
			strbuf_pgarr_elem(&p[P_FLINK], b->res[m->last[0] - 1].r.link);
			for (int k = 0; k < m->nparts; k++) {
				const struct msg_dlr *d = &b->dlr[m->dlr[k] - 1];
				strbuf_pgarr_elem(&p[P_FSMSC], b->res[m->last[k] - 1].r.smsc_id);
				if (d->err >= 0)
					strbuf_pgarr_int(&p[P_FERR], d->err);
				else
					strbuf_pgarr_elem(&p[P_FERR], NULL);
			}
			continue;
		}
		strbuf_pgarr_int(&p[P_MT], r->mt_id);
		strbuf_pgarr_int(&p[P_PART], r->part);
		strbuf_pgarr_int(&p[P_NPARTS], r->nparts);
		strbuf_pgarr_elem(&p[P_LINK], r->link);
		strbuf_pgarr_int(&p[P_STATUS], (int)r->status);
		strbuf_pgarr_elem(&p[P_SMSC], r->smsc_id);
		strbuf_pgarr_elem(&p[P_TEMP], r->status != 0 && r->temporary ? "t" : "f");
	}
	for (int i = 0; i < b->n_dlr; i++) {
		const struct msg_dlr *d = &b->dlr[i];
		if (skip_dlr[i])
			continue;
		strbuf_pgarr_elem(&p[P_DLINK], d->link);
		strbuf_pgarr_elem(&p[P_DSMSC], d->smsc_id);
		strbuf_pgarr_int(&p[P_DSTATE], (int)d->state);
		if (d->err >= 0)
			strbuf_pgarr_int(&p[P_DERR], d->err);
		else
			strbuf_pgarr_elem(&p[P_DERR], NULL);
	}
	for (int i = 0; i < OUTBATCH_PARAMS; i++)
		strbuf_pgarr_end(&p[i]);
	free(msgs);
	free(res_msg);
	free(fast_res);
	free(skip_dlr);
}

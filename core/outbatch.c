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

/* The parameters' order (sg_mt_outcomes). */
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
};

void
outbatch_params(const struct outbatch *b, struct strbuf p[OUTBATCH_PARAMS])
{
	char num[32];
	for (int i = 0; i < OUTBATCH_PARAMS; i++) {
		strbuf_init(&p[i]);
		strbuf_pgarr_begin(&p[i]);
	}
	for (int i = 0; i < b->n_res; i++) {
		const struct msg_mt_result *r = &b->res[i].r;
		snprintf(num, sizeof num, "%lld", (long long)r->mt_id);
		strbuf_pgarr_elem(&p[P_MT], num);
		snprintf(num, sizeof num, "%d", r->part);
		strbuf_pgarr_elem(&p[P_PART], num);
		snprintf(num, sizeof num, "%d", r->nparts);
		strbuf_pgarr_elem(&p[P_NPARTS], num);
		strbuf_pgarr_elem(&p[P_LINK], r->link);
		snprintf(num, sizeof num, "%d", (int)r->status);
		strbuf_pgarr_elem(&p[P_STATUS], num);
		strbuf_pgarr_elem(&p[P_SMSC], r->smsc_id);
		strbuf_pgarr_elem(&p[P_TEMP], r->status != 0 && r->temporary ? "t" : "f");
	}
	for (int i = 0; i < b->n_dlr; i++) {
		const struct msg_dlr *d = &b->dlr[i];
		strbuf_pgarr_elem(&p[P_DLINK], d->link);
		strbuf_pgarr_elem(&p[P_DSMSC], d->smsc_id);
		snprintf(num, sizeof num, "%d", (int)d->state);
		strbuf_pgarr_elem(&p[P_DSTATE], num);
		if (d->err >= 0)
			snprintf(num, sizeof num, "%d", d->err);
		strbuf_pgarr_elem(&p[P_DERR], d->err >= 0 ? num : NULL);
	}
	for (int i = 0; i < OUTBATCH_PARAMS; i++)
		strbuf_pgarr_end(&p[i]);
}

/*
 * concat.c — reassembly of concatenated MO messages.
 *
 * A bounded table (max_pending slots) of messages being assembled, keyed by
 * (link, from, ref, total). Each part's user data is copied (one allocation
 * per part, none per character). When the last missing part arrives, the
 * parts are concatenated in seq order and decoded ONCE with text_decode, so
 * a UCS-2 surrogate pair or a GSM escape split across two parts still
 * decodes. Duplicates add nothing but their ack, so every PDU that carried
 * a part is answered once the message is committed.
 *
 * Readings of include/concat.h chosen here:
 *  - "The first part" (dcs and smsc_id of the message) is part seq 1 when
 *    it arrived, else the lowest seq that did. A part with an empty smsc_id
 *    lends none: the lowest-seq non-empty one is used.
 *  - A message of total 1 is delivered at once, without a slot.
 *  - A part whose data is not the same as the first copy of that seq is
 *    still a duplicate (first copy wins).
 *  - Timeout counts from the arrival of the message's first part;
 *    concat_expire delivers when now - first >= timeout.
 *  - The acks kept per message are bounded (CONCAT_MAX_ACKS); acks of
 *    duplicates beyond that are dropped and logged (the SMSC resends).
 *  - done() must not call back into the same struct concat.
 *  - A part longer than CONCAT_PART_MAX octets is invalid (-1).
 */
#include "concat.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "text.h"

#define CONCAT_MAX_ACKS 512
#define CONCAT_PART_MAX 65536

struct concat_slot_part {
	uint8_t *data; /* NULL when not arrived (or arrived empty: see have) */
	size_t len;
	uint8_t dcs;
	bool have;
	char smsc_id[MSG_SMSC_ID_MAX];
};

struct concat_msg {
	bool used;
	char link[MSG_LINK_MAX];
	char from[MSG_MSISDN_MAX];
	char to[MSG_ADDR_MAX];
	uint16_t ref;
	uint8_t total;
	int have;                       /* distinct parts arrived */
	int64_t first;                  /* arrival of the first part */
	uint64_t serial;                /* insertion order, for eviction ties */
	struct concat_slot_part *parts; /* [total], index seq - 1 */
	struct msg_ack *acks;
	int n_acks, cap_acks;
};

struct concat {
	int timeout;
	int max_pending;
	int pending;
	uint64_t serial;
	struct concat_msg *slots; /* [max_pending] */
};

static void
copy_str(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

/*
 * Creates an empty table. timeout in seconds; max_pending messages at once
 * (values < 1 are taken as 1). Returns NULL on allocation failure; the
 * caller owns the result and releases it with concat_free.
 */
struct concat *
concat_new(int timeout, int max_pending)
{
	struct concat *c;

	if (max_pending < 1)
		max_pending = 1;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->slots = calloc((size_t)max_pending, sizeof(*c->slots));
	if (c->slots == NULL) {
		free(c);
		return NULL;
	}
	c->timeout = timeout;
	c->max_pending = max_pending;
	return c;
}

static void
msg_clear(struct concat_msg *m)
{
	int i;

	if (m->parts != NULL)
		for (i = 0; i < m->total; i++)
			free(m->parts[i].data);
	free(m->parts);
	free(m->acks);
	memset(m, 0, sizeof(*m));
}

/* Frees the table and every message still being assembled (undelivered:
 * their parts are unacknowledged, so the SMSC will resend them). */
void
concat_free(struct concat *c)
{
	int i;

	if (c == NULL)
		return;
	for (i = 0; i < c->max_pending; i++)
		if (c->slots[i].used)
			msg_clear(&c->slots[i]);
	free(c->slots);
	free(c);
}

int
concat_pending(const struct concat *c)
{
	return c ? c->pending : 0;
}

static int
add_ack(struct concat_msg *m, const struct msg_ack *a)
{
	if (m->n_acks == m->cap_acks) {
		int ncap = m->cap_acks ? m->cap_acks * 2 : 4;
		struct msg_ack *na;

		if (ncap > CONCAT_MAX_ACKS)
			ncap = CONCAT_MAX_ACKS;
		if (m->n_acks >= ncap)
			return -1;
		if ((na = realloc(m->acks, (size_t)ncap * sizeof(*na))) == NULL)
			return -1;
		m->acks = na;
		m->cap_acks = ncap;
	}
	m->acks[m->n_acks++] = *a;
	return 0;
}

/*
 * Concatenates the parts present, decodes them once and calls done().
 * Parts are borrowed by the callback only for its duration.
 */
static void
deliver(struct concat_msg *m, bool partial, enum dc0_meaning dc0, concat_done_cb done, void *arg)
{
	struct msg_mo mo;
	size_t total_len = 0, pos = 0, outcap;
	uint8_t *raw;
	char *text;
	int i, firsti = -1;
	const char *smsc_id = "";

	for (i = 0; i < m->total; i++) {
		if (!m->parts[i].have)
			continue;
		if (firsti < 0)
			firsti = i;
		if (smsc_id[0] == '\0')
			smsc_id = m->parts[i].smsc_id;
		total_len += m->parts[i].len;
	}
	outcap = total_len * 3 + 4; /* worst case: every octet -> U+FFFD */
	raw = malloc(total_len ? total_len : 1);
	text = malloc(outcap);
	memset(&mo, 0, sizeof(mo));
	copy_str(mo.link, sizeof(mo.link), m->link);
	copy_str(mo.from, sizeof(mo.from), m->from);
	copy_str(mo.to, sizeof(mo.to), m->to);
	copy_str(mo.smsc_id, sizeof(mo.smsc_id), smsc_id);
	mo.partial = partial;
	mo.acks = m->acks;
	mo.n_acks = m->n_acks;
	if (raw == NULL || text == NULL) {
		/* out of memory: deliver what we can say (nothing), marked partial */
		log_error("concat", "out of memory assembling a %d-part message", m->total);
		mo.text = "";
		mo.partial = true;
	} else {
		for (i = 0; i < m->total; i++) {
			if (!m->parts[i].have || m->parts[i].len == 0)
				continue;
			memcpy(raw + pos, m->parts[i].data, m->parts[i].len);
			pos += m->parts[i].len;
		}
		mo.text_len = text_decode(firsti >= 0 ? m->parts[firsti].dcs : 0, dc0, raw, pos,
		                          text, outcap);
		mo.text = text;
	}
	if (partial) {
		char mb[32];

		log_warn("concat", "link %s from %s ref %u: delivering %d of %d parts (partial)",
		         m->link, log_msisdn(m->from, mb, sizeof(mb)), m->ref, m->have, m->total);
	}
	if (done != NULL)
		done(arg, &mo);
	free(raw);
	free(text);
}

static void
release(struct concat *c, struct concat_msg *m)
{
	msg_clear(m);
	c->pending--;
}

/* Stores p into m (a duplicate keeps only its ack). */
static int
store_part(struct concat_msg *m, const struct concat_part *p)
{
	struct concat_slot_part *sp = &m->parts[p->seq - 1];

	if (add_ack(m, &p->ack) != 0)
		log_warn("concat", "link %s ref %u: too many copies of parts, ack dropped", m->link,
		         m->ref);
	if (sp->have)
		return 0; /* duplicate */
	if (p->len > 0) {
		if ((sp->data = malloc(p->len)) == NULL)
			return -1;
		memcpy(sp->data, p->data, p->len);
	}
	sp->len = p->len;
	sp->dcs = p->dcs;
	copy_str(sp->smsc_id, sizeof(sp->smsc_id), p->smsc_id);
	sp->have = true;
	m->have++;
	return 0;
}

static bool
same_key(const struct concat_msg *m, const struct concat_part *p)
{
	return m->used && m->ref == p->ref && m->total == p->total &&
	       strncmp(m->link, p->link ? p->link : "", sizeof(m->link) - 1) == 0 &&
	       strncmp(m->from, p->from ? p->from : "", sizeof(m->from) - 1) == 0;
}

/*
 * Adds a part (its data copied). Invalid parts (seq 0, seq > total, total
 * 0, data NULL with len > 0, len > CONCAT_PART_MAX) return -1 and are not
 * kept. When the part completes its message, done() runs before return.
 * When a new message would exceed max_pending, the oldest one is first
 * delivered partial. Returns -1 also when memory runs out (nothing kept).
 */
int
concat_add(struct concat *c, const struct concat_part *p, enum dc0_meaning dc0, int64_t now,
           concat_done_cb done, void *arg)
{
	struct concat_msg *m = NULL, *free_slot = NULL, *oldest = NULL;
	int i;

	if (c == NULL || p == NULL || p->total == 0 || p->seq == 0 || p->seq > p->total ||
	    (p->data == NULL && p->len > 0) || p->len > CONCAT_PART_MAX)
		return -1;

	if (p->total == 1) {
		/* nothing to wait for: build a one-part message on the stack */
		struct concat_slot_part sp;
		struct concat_msg one;
		int rc = 0;

		memset(&one, 0, sizeof(one));
		memset(&sp, 0, sizeof(sp));
		one.used = true;
		one.total = 1;
		one.ref = p->ref;
		one.parts = &sp;
		copy_str(one.link, sizeof(one.link), p->link);
		copy_str(one.from, sizeof(one.from), p->from);
		copy_str(one.to, sizeof(one.to), p->to);
		one.acks = (struct msg_ack *)&p->ack;
		one.n_acks = 1;
		sp.data = (uint8_t *)p->data; /* borrowed for the call only */
		sp.len = p->len;
		sp.dcs = p->dcs;
		sp.have = true;
		one.have = 1;
		copy_str(sp.smsc_id, sizeof(sp.smsc_id), p->smsc_id);
		deliver(&one, false, dc0, done, arg);
		return rc;
	}

	for (i = 0; i < c->max_pending; i++) {
		struct concat_msg *s = &c->slots[i];

		if (!s->used) {
			if (free_slot == NULL)
				free_slot = s;
			continue;
		}
		if (same_key(s, p)) {
			m = s;
			break;
		}
		if (oldest == NULL || s->first < oldest->first ||
		    (s->first == oldest->first && s->serial < oldest->serial))
			oldest = s;
	}

	if (m == NULL) {
		if (free_slot == NULL) {
			/* table full: the oldest message goes out partial */
			deliver(oldest, true, dc0, done, arg);
			release(c, oldest);
			free_slot = oldest;
		}
		m = free_slot;
		m->parts = calloc(p->total, sizeof(*m->parts));
		if (m->parts == NULL)
			return -1;
		m->used = true;
		copy_str(m->link, sizeof(m->link), p->link);
		copy_str(m->from, sizeof(m->from), p->from);
		copy_str(m->to, sizeof(m->to), p->to);
		m->ref = p->ref;
		m->total = p->total;
		m->first = now;
		m->serial = ++c->serial;
		c->pending++;
	}

	if (store_part(m, p) != 0) {
		if (m->have == 0)
			release(c, m);
		return -1;
	}
	if (m->have == m->total) {
		deliver(m, false, dc0, done, arg);
		release(c, m);
	}
	return 0;
}

/*
 * Delivers, marked partial, every message whose first part arrived at
 * least timeout seconds before now.
 */
void
concat_expire(struct concat *c, int64_t now, enum dc0_meaning dc0, concat_done_cb done, void *arg)
{
	int i;

	if (c == NULL)
		return;
	for (i = 0; i < c->max_pending && c->pending > 0; i++) {
		struct concat_msg *m = &c->slots[i];

		if (m->used && now - m->first >= c->timeout) {
			deliver(m, true, dc0, done, arg);
			release(c, m);
		}
	}
}

/*
 * Finds the concatenation IE in the UDH at the start of sm (see concat.h).
 * Every IE is walked with bounds checks, so other IEs (national language
 * shifts 0x24/0x25, port addressing, ...) may come before or after. The
 * first 0x00 or 0x08 IE wins. Returns -1 when the UDH length exceeds the
 * data, an IE overruns the UDH, or a concatenation IE has the wrong length;
 * 0 when there is none, or when its values are unusable (total 0, seq 0 or
 * seq > total): such a message is better handled as a single part.
 */
int
concat_parse_udh(const uint8_t *sm, size_t len, uint16_t *ref, uint8_t *total, uint8_t *seq,
                 size_t *udh_len)
{
	size_t end, i;
	int found = 0;
	uint16_t r = 0;
	uint8_t t = 0, s = 0;

	if (udh_len != NULL)
		*udh_len = 0;
	if (sm == NULL || len < 1)
		return -1;
	end = 1 + (size_t)sm[0];
	if (end > len)
		return -1;
	for (i = 1; i < end;) {
		uint8_t iei, iel;

		if (i + 2 > end)
			return -1;
		iei = sm[i];
		iel = sm[i + 1];
		if (i + 2 + iel > end)
			return -1;
		if (iei == 0x00 || iei == 0x08) {
			if ((iei == 0x00 && iel != 3) || (iei == 0x08 && iel != 4))
				return -1;
			if (!found) {
				const uint8_t *v = sm + i + 2;

				if (iei == 0x00) {
					r = v[0];
					t = v[1];
					s = v[2];
				} else {
					r = (uint16_t)(v[0] << 8 | v[1]);
					t = v[2];
					s = v[3];
				}
				found = 1;
			}
		}
		i += 2 + (size_t)iel;
	}
	if (udh_len != NULL)
		*udh_len = end;
	if (!found || t == 0 || s == 0 || s > t)
		return 0;
	if (ref != NULL)
		*ref = r;
	if (total != NULL)
		*total = t;
	if (seq != NULL)
		*seq = s;
	return 1;
}

/*
 * smscsim.c — a lean SMSC simulator process for `make bench` (build/bench/smscsim).
 *
 * PRODUCT §7: "the simulator must not be the bottleneck". The Node simulators (tests/bench/
 * simproc.js hosting tests/sim/smsc.js) took ~45 % of the bench box's two cores during the MO runs,
 * CPU that PostgreSQL needs. This is the same process in C: the SMSC side as smsc.js has it with
 * {recordSubmits:false, reassemble:false, rawReceipts:true} (counters only, receipts as raw bytes)
 * and simproc.js's resident model and load loops, driven by tests/bench/lib.js (class Sim).
 *
 * Control: one JSON request per line on stdin {"id":N,"cmd":"...",...}, one reply per line on
 * stdout {"id":N,"ok":true,...} or {"id":N,"ok":false,"error":"..."}; diagnostics on stderr. EOF
 * on stdin (the parent is gone) exits. Commands and reply fields are simproc.js's: start, bound,
 * closed (with `total`: fill), open, counters, stop. One loop (closed/open) runs at a time; other
 * requests are served meanwhile.
 *
 * Differences from smsc.js: frames up to 64 KiB (not 16 KiB); submit_sm addresses are read up to
 * 20 characters (data_sm: 64); data_sm is answered like submit_sm (data_sm_resp, receipt);
 * receipts are always written as raw bytes (without rawReceipts their deliver_sm_resp count as
 * `delivered`); only the options port, host, systemId, password, receipts, rawReceipts, idStart,
 * throttleEvery/throttleStatus, rejectEvery/rejectStatus are known. loopP99/loopMax are how late
 * the 1 ms pump timer fired versus its schedule (Node's histogram includes the 1 ms itself).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h> /* struct event embedded in each conversation */
#include <event2/listener.h>
#include <jansson.h>

/* ------------------------------------------------------------------ SMPP constants */

#define GENERIC_NACK 0x80000000u
#define DELIVER_SM_RESP 0x80000005u

enum {
	BIND_RECEIVER = 0x01,
	BIND_TRANSMITTER = 0x02,
	SUBMIT_SM = 0x04,
	DELIVER_SM = 0x05,
	UNBIND = 0x06,
	BIND_TRANSCEIVER = 0x09,
	ENQUIRE_LINK = 0x15,
	DATA_SM = 0x103,
};

enum {
	ST_RINVCMDLEN = 0x02,
	ST_RINVCMDID = 0x03,
	ST_RINVBNDSTS = 0x04,
	ST_RALYBND = 0x05,
	ST_RINVPASWD = 0x0e,
	ST_RINVSYSID = 0x0f,
	ST_RSUBMITFAIL = 0x45,
	ST_RTHROTTLED = 0x58,
};

enum {
	TLV_RECEIPTED_MESSAGE_ID = 0x001e,
	TLV_MESSAGE_PAYLOAD = 0x0424,
	TLV_MESSAGE_STATE = 0x0427,
};

#define FRAME_MAX 65536
#define OUT_PAUSE (16u << 20) /* stop reading a session while its output is above this */
#define OUT_LIMIT (64u << 20) /* a peer this far behind is dropped */
#define MAX_PENDING_RECEIPTS 200000
#define PDU_BUF 640        /* the largest deliver_sm built here, with margin */
#define MO_RING (1u << 18) /* outstanding MO deliver_sm matched by sequence number */
#define CLOSED_MAX_SAMPLES 200000
#define CONV_CHUNK 1024
#define SCRIPT_MAX 64

/* ------------------------------------------------------------------ state */

enum mode { MODE_NONE, MODE_TX, MODE_RX, MODE_TRX };

struct session {
	struct session *prev, *next; /* live sessions, in accept order */
	struct bufferevent *bev;
	enum mode mode;
	bool bound, closing, shut, paused, dead;
	char system_id[66];
};

struct receipt_q { /* a receipt waiting for a receiver bind: its bytes, sequence number unset */
	struct receipt_q *next;
	size_t len;
	uint8_t buf[];
};

struct counters {
	uint64_t submits, accepted, throttled, rejected, malformed, delivered, receipts, binds,
	    bind_failures, unbinds, enquire_links, generic_nacks, generic_nacks_received,
	    session_errors;
};

struct opts {
	char host[64];
	int port;
	char *system_id, *password; /* NULL: any */
	bool receipts, raw_receipts;
	uint64_t throttle_every, reject_every;
	uint32_t throttle_status, reject_status;
};

struct cpusnap {
	double cpu_ms, t;
};

static struct event_base *base;
static struct evconnlistener *listener;
static struct opts O;
static struct counters C;
static struct session *sess_head, *sess_tail, *dead_list;
static struct event *reaper;
static struct receipt_q *rq_head, *rq_tail;
static size_t rq_len;
static uint64_t next_id, submit_n;
static uint32_t rcpt_seq, mo_seq = 0x40000000u;
static unsigned rr_rcpt, rr_mo;
static struct cpusnap last_cpu;

static struct {
	uint32_t seq, gen;
} mo_ring[MO_RING];

/* ------------------------------------------------------------------ small helpers */

static double
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static struct cpusnap
cpu_snap(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double us = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
	            (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
	return (struct cpusnap){us / 1000, now_ms()};
}

/* Fraction of one core since s, as simproc.js's cpuSince. */
static double
cpu_since(struct cpusnap s)
{
	struct cpusnap n = cpu_snap();
	return (n.cpu_ms - s.cpu_ms) / fmax(1, n.t - s.t);
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void
put16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Decimal / lowercase hex of v at out, NUL-terminated; returns the length. */
static size_t
fmt_u64(char *out, uint64_t v, unsigned radix)
{
	char tmp[24];
	size_t n = 0;
	do {
		tmp[n++] = "0123456789abcdef"[v % radix];
		v /= radix;
	} while (v);
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	out[n] = 0;
	return n;
}

/* Digits only, no leading zero, fits: the number a resident was given. */
static bool
parse_num(const char *s, size_t len, uint64_t *out)
{
	if (len == 0 || len > 19 || (s[0] == '0' && len > 1))
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

/* YYMMDDhhmm of the (cached) wall clock, local time as smsc.js's smppDate. */
static const char *
smpp_date(void)
{
	static time_t cached = -1;
	static char buf[11];
	struct timeval tv;
	event_base_gettimeofday_cached(base, &tv);
	if (tv.tv_sec != cached) {
		struct tm tm;
		localtime_r(&tv.tv_sec, &tm);
		int v[5] = {tm.tm_year % 100, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min};
		for (int i = 0; i < 5; i++) {
			buf[2 * i] = (char)('0' + v[i] / 10);
			buf[2 * i + 1] = (char)('0' + v[i] % 10);
		}
		buf[10] = 0;
		cached = tv.tv_sec;
	}
	return buf;
}

/* ------------------------------------------------------------------ control replies */

static void
write_line(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	if (!s) {
		fprintf(stderr, "smscsim: cannot encode a reply\n");
		return;
	}
	size_t len = strlen(s);
	s[len] = '\n'; /* json_dumps leaves room for the NUL: it becomes the newline */
	for (size_t off = 0; off <= len;) {
		ssize_t w = write(STDOUT_FILENO, s + off, len + 1 - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			exit(0); /* the parent is gone */
		off += (size_t)w;
	}
	free(s);
}

/* Sends {"id":id,"ok":true,...body}; takes body (may be NULL) and id. */
static void
reply_ok(json_t *id, json_t *body)
{
	json_t *o = json_pack("{s:O,s:b}", "id", id ? id : json_null(), "ok", 1);
	if (body)
		json_object_update(o, body);
	write_line(o);
	json_decref(o);
	json_decref(body);
}

static void
reply_err(json_t *id, const char *msg)
{
	json_t *o = json_pack("{s:O,s:b,s:s}", "id", id ? id : json_null(), "ok", 0, "error", msg);
	write_line(o);
	json_decref(o);
}

/* A real, or null when not finite (as JSON.stringify does). */
static json_t *
jreal(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

static double
arg_num(json_t *m, const char *key, double dflt)
{
	json_t *v = json_object_get(m, key);
	return json_is_number(v) ? json_number_value(v) : dflt;
}

static uint64_t
arg_u64(json_t *m, const char *key, uint64_t dflt)
{
	json_t *v = json_object_get(m, key);
	if (json_is_integer(v))
		return json_integer_value(v) < 0 ? 0 : (uint64_t)json_integer_value(v);
	if (json_is_real(v))
		return json_real_value(v) < 0 ? 0 : (uint64_t)llround(json_real_value(v));
	return dflt;
}

/* ------------------------------------------------------------------ sessions */

static void
sess_close(struct session *s)
{
	if (s->dead)
		return;
	s->dead = true;
	s->bound = false;
	bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	if (s->prev)
		s->prev->next = s->next;
	else
		sess_head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		sess_tail = s->prev;
	s->next = dead_list; /* freed by the reaper, outside any callback of its own */
	dead_list = s;
	event_active(reaper, 0, 0);
}

static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
	while (dead_list) {
		struct session *s = dead_list;
		dead_list = s->next;
		bufferevent_free(s->bev);
		free(s);
	}
}

static void
sess_write(struct session *s, const uint8_t *buf, size_t len)
{
	if (s->dead)
		return;
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) > OUT_LIMIT) {
		fprintf(stderr, "smscsim: a session's peer is %u MiB behind: dropped\n",
		        OUT_LIMIT >> 20);
		C.session_errors++;
		sess_close(s);
		return;
	}
	bufferevent_write(s->bev, buf, len);
}

/* A response: header only unless status is 0 and body is given. */
static void
sess_resp(struct session *s, uint32_t cmd, uint32_t status, uint32_t seq, const void *body,
          size_t blen)
{
	uint8_t b[16 + 80];
	if (status || !body || blen > sizeof b - 16)
		blen = 0;
	put32(b, (uint32_t)(16 + blen));
	put32(b + 4, cmd);
	put32(b + 8, status);
	put32(b + 12, seq);
	if (blen)
		memcpy(b + 16, body, blen);
	sess_write(s, b, 16 + blen);
}

static unsigned
bound_count(void)
{
	unsigned n = 0;
	for (struct session *s = sess_head; s; s = s->next)
		n += s->bound;
	return n;
}

/* Round robin over bound receiver/transceiver sessions: of system_id if it has any, else all. */
static struct session *
pick_rx(const char *system_id, unsigned *rr)
{
	unsigned n = 0;
	for (struct session *s = sess_head; s; s = s->next)
		n += s->bound && s->mode != MODE_TX &&
		     (!system_id || !strcmp(s->system_id, system_id));
	if (!n)
		return system_id ? pick_rx(NULL, rr) : NULL;
	unsigned k = (*rr)++ % n;
	for (struct session *s = sess_head; s; s = s->next)
		if (s->bound && s->mode != MODE_TX &&
		    (!system_id || !strcmp(s->system_id, system_id)) && k-- == 0)
			return s;
	return NULL;
}

/* ------------------------------------------------------------------ receipts */

static void
receipt_write(struct session *s, uint8_t *buf, size_t len)
{
	rcpt_seq = rcpt_seq >= 0x2fffffffu ? 0x20000000u : (rcpt_seq ? rcpt_seq : 0x20000000u) + 1;
	put32(buf + 12, rcpt_seq);
	C.receipts++;
	sess_write(s, buf, len);
}

/* smsc.js's _sendReceipt: the submitting transceiver, else a receiver, else the queue. */
static void
receipt_send(struct session *from, uint8_t *buf, size_t len)
{
	struct session *s = from;
	if (!s || !s->bound || s->mode != MODE_TRX)
		s = pick_rx(from ? from->system_id : NULL, &rr_rcpt);
	if (s) {
		receipt_write(s, buf, len);
		return;
	}
	if (rq_len >= MAX_PENDING_RECEIPTS)
		return;
	struct receipt_q *q = malloc(sizeof *q + len);
	if (!q)
		return;
	q->next = NULL;
	q->len = len;
	memcpy(q->buf, buf, len);
	if (rq_tail)
		rq_tail->next = q;
	else
		rq_head = q;
	rq_tail = q;
	rq_len++;
}

static void
receipts_flush(void)
{
	struct session *s;
	while (rq_head && (s = pick_rx(NULL, &rr_rcpt))) {
		struct receipt_q *q = rq_head;
		rq_head = q->next;
		if (!rq_head)
			rq_tail = NULL;
		rq_len--;
		receipt_write(s, q->buf, q->len);
		free(q);
	}
}

static bool
keep_char(unsigned u)
{
	return (u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') ||
	       u == ' ';
}

enum alphabet { AL_GSM, AL_BYTES, AL_UCS2 };

/* smsc.js's alphabetOf, reduced to how the text decodes. */
static enum alphabet
alphabet_of(unsigned dc)
{
	if (dc == 0)
		return AL_GSM;
	if (dc == 8)
		return AL_UCS2;
	if (dc < 0x10)
		return AL_BYTES;
	if ((dc & 0xf0) == 0xf0)
		return dc & 0x04 ? AL_BYTES : AL_GSM;
	if ((dc & 0xc0) == 0) {
		unsigned a = (dc >> 2) & 3;
		return a == 0 ? AL_GSM : a == 2 ? AL_UCS2 : AL_BYTES;
	}
	if ((dc & 0xf0) == 0xe0)
		return AL_UCS2;
	if ((dc & 0xf0) == 0xc0 || (dc & 0xf0) == 0xd0)
		return AL_GSM;
	return AL_BYTES;
}

static bool
gsm_ext_known(unsigned e)
{
	static const uint8_t ext[] = {0x0a, 0x14, 0x28, 0x29, 0x2f, 0x3c, 0x3d, 0x3e, 0x40, 0x65};
	for (size_t i = 0; i < sizeof ext; i++)
		if (ext[i] == e)
			return true;
	return false;
}

/*
 * The receipt's "text:": the first 20 characters of the decoded text, every one not
 * [A-Za-z0-9 ] replaced by '.'. GSM 03.38 has letters, digits and space where ASCII has them;
 * an escape is one character (an unknown one decodes to a space); UCS-2 counts 16-bit units.
 */
static size_t
snippet(char *out, const uint8_t *sm, size_t n, unsigned dc)
{
	size_t k = 0;
	switch (alphabet_of(dc)) {
	case AL_UCS2:
		for (size_t i = 0; i + 1 < n && k < 20; i += 2) {
			unsigned u = (unsigned)sm[i] << 8 | sm[i + 1];
			out[k++] = keep_char(u) ? (char)u : '.';
		}
		break;
	case AL_GSM:
		for (size_t i = 0; i < n && k < 20; i++) {
			if (sm[i] == 0x1b) {
				if (i + 1 < n)
					out[k++] = gsm_ext_known(sm[++i]) ? '.' : ' ';
			} else {
				out[k++] = keep_char(sm[i]) ? (char)sm[i] : '.';
			}
		}
		break;
	case AL_BYTES:
		for (size_t i = 0; i < n && k < 20; i++)
			out[k++] = keep_char(sm[i]) ? (char)sm[i] : '.';
		break;
	}
	return k;
}

/* ------------------------------------------------------------------ submit_sm / data_sm */

struct reader {
	const uint8_t *p;
	size_t o, n;
	bool bad;
};

static unsigned
rd_u8(struct reader *r)
{
	if (r->o >= r->n) {
		r->bad = true;
		return 0;
	}
	return r->p[r->o++];
}

/* A C string of at most max characters (its NUL follows); sets bad otherwise. */
static const char *
rd_cstr(struct reader *r, size_t max, size_t *len)
{
	const uint8_t *s = r->p + r->o;
	const uint8_t *nul = r->o < r->n ? memchr(s, 0, r->n - r->o) : NULL;
	if (!nul || (size_t)(nul - s) > max) {
		r->bad = true;
		r->o = r->n;
		*len = 0;
		return "";
	}
	*len = (size_t)(nul - s);
	r->o += *len + 1;
	return (const char *)s;
}

struct submit {
	unsigned src_ton, src_npi, dst_ton, dst_npi, esm, rd, dc;
	const char *src, *dst;
	size_t src_len, dst_len, sm_len;
	const uint8_t *sm;
};

/* smsc.js's parseSubmit + the part of _decodeSubmit a receipt needs; false when malformed. */
static bool
parse_submit(const uint8_t *pdu, size_t len, uint32_t cmd, struct submit *p)
{
	struct reader r = {pdu, 16, len, false};
	size_t l, addr_max = cmd == SUBMIT_SM ? 20 : 64;
	rd_cstr(&r, 5, &l); /* service_type */
	p->src_ton = rd_u8(&r);
	p->src_npi = rd_u8(&r);
	p->src = rd_cstr(&r, addr_max, &p->src_len);
	p->dst_ton = rd_u8(&r);
	p->dst_npi = rd_u8(&r);
	p->dst = rd_cstr(&r, addr_max, &p->dst_len);
	p->esm = rd_u8(&r);
	p->sm = NULL;
	p->sm_len = 0;
	if (cmd == SUBMIT_SM) {
		rd_u8(&r); /* protocol_id */
		rd_u8(&r); /* priority_flag */
		rd_cstr(&r, 16, &l);
		rd_cstr(&r, 16, &l);
		p->rd = rd_u8(&r);
		rd_u8(&r); /* replace_if_present_flag */
		p->dc = rd_u8(&r);
		rd_u8(&r); /* sm_default_msg_id */
		size_t n = rd_u8(&r);
		if (r.o + n > r.n)
			r.bad = true;
		else if (!r.bad) {
			p->sm = pdu + r.o;
			p->sm_len = n;
			r.o += n;
		}
	} else {
		p->rd = rd_u8(&r);
		p->dc = rd_u8(&r);
	}
	if (r.bad)
		return false;
	const uint8_t *payload = NULL;
	size_t payload_len = 0;
	while (r.o + 4 <= r.n) {
		unsigned tag = (unsigned)pdu[r.o] << 8 | pdu[r.o + 1];
		size_t tl = (size_t)pdu[r.o + 2] << 8 | pdu[r.o + 3];
		r.o += 4;
		if (r.o + tl > r.n)
			return false;
		if (tag == TLV_MESSAGE_PAYLOAD) {
			payload = pdu + r.o;
			payload_len = tl;
		}
		r.o += tl;
	}
	if (r.o != r.n)
		return false;
	if (payload && !p->sm_len) {
		p->sm = payload;
		p->sm_len = payload_len;
	}
	return true;
}

/* smsc.js's receiptBuf(_buildReceipt(sub, 'DELIVRD')); the sequence number is set when sent. */
static size_t
build_receipt(uint8_t *b, const struct submit *p, uint64_t idn, const char *hex, size_t hexlen)
{
	const uint8_t *sm = p->sm;
	size_t smn = p->sm_len;
	if ((p->esm & 0x40) && smn) {
		size_t skip = (size_t)sm[0] + 1 < smn ? (size_t)sm[0] + 1 : smn;
		sm += skip;
		smn -= skip;
	}
	size_t o = 16;
	b[o++] = 0; /* service_type "" */
	b[o++] = (uint8_t)p->dst_ton;
	b[o++] = (uint8_t)p->dst_npi;
	memcpy(b + o, p->dst, p->dst_len + 1);
	o += p->dst_len + 1;
	b[o++] = (uint8_t)p->src_ton;
	b[o++] = (uint8_t)p->src_npi;
	memcpy(b + o, p->src, p->src_len + 1);
	o += p->src_len + 1;
	b[o++] = 0x04;       /* esm_class: receipt */
	memset(b + o, 0, 7); /* protocol_id, priority, schedule, validity, rd, replace, dc 0 */
	o += 7;
	b[o++] = 0; /* sm_default_msg_id */
	size_t lenpos = o++;
	const char *date = smpp_date();
	size_t t = o;
	memcpy(b + o, "id:", 3);
	o += 3;
	o += fmt_u64((char *)b + o, idn, 10);
	memcpy(b + o, " sub:001 dlvrd:001 submit date:", 31);
	memcpy(b + o + 31, date, 10);
	memcpy(b + o + 41, " done date:", 11);
	memcpy(b + o + 52, date, 10);
	o += 62;
	memcpy(b + o, " stat:DELIVRD err:000 text:", 27);
	o += 27;
	o += snippet((char *)b + o, sm, smn, p->dc);
	b[lenpos] = (uint8_t)(o - t);
	put16(b + o, TLV_RECEIPTED_MESSAGE_ID);
	put16(b + o + 2, (unsigned)hexlen + 1);
	memcpy(b + o + 4, hex, hexlen + 1);
	o += 4 + hexlen + 1;
	put16(b + o, TLV_MESSAGE_STATE);
	put16(b + o + 2, 1);
	b[o + 4] = 2; /* DELIVERED */
	o += 5;
	put32(b, (uint32_t)o);
	put32(b + 4, DELIVER_SM);
	put32(b + 8, 0);
	return o;
}

static void residents_submit(const char *to, size_t len);

static void
on_submit(struct session *s, const uint8_t *pdu, size_t len, uint32_t cmd, uint32_t seq)
{
	uint32_t resp = cmd | 0x80000000u;
	C.submits++;
	uint64_t n = ++submit_n;
	if (!s->bound || s->mode == MODE_RX) {
		sess_resp(s, resp, ST_RINVBNDSTS, seq, NULL, 0);
		return;
	}
	struct submit p;
	if (!parse_submit(pdu, len, cmd, &p)) {
		C.malformed++;
		sess_resp(s, resp, ST_RINVCMDLEN, seq, NULL, 0);
		return;
	}
	if (O.throttle_every && n % O.throttle_every == 0) {
		C.throttled++;
		sess_resp(s, resp, O.throttle_status, seq, NULL, 0);
		return;
	}
	if (O.reject_every && n % O.reject_every == 0) {
		C.rejected++;
		sess_resp(s, resp, O.reject_status, seq, NULL, 0);
		return;
	}
	C.accepted++;
	uint64_t idn = next_id++;
	char hex[24];
	size_t hexlen = fmt_u64(hex, idn, 16);
	sess_resp(s, resp, 0, seq, hex, hexlen + 1);
	if (O.receipts && (p.rd & 3) == 1) {
		uint8_t b[PDU_BUF];
		receipt_send(s, b, build_receipt(b, &p, idn, hex, hexlen));
	}
	residents_submit(p.dst, p.dst_len);
}

/* ------------------------------------------------------------------ other PDUs */

static void
on_bind(struct session *s, const uint8_t *pdu, size_t len, uint32_t cmd, uint32_t seq)
{
	struct reader r = {pdu, 16, len, false};
	size_t idl, pwl;
	const char *id = rd_cstr(&r, 64, &idl);
	const char *pw = rd_cstr(&r, 64, &pwl);
	if (r.bad) {
		C.generic_nacks++;
		sess_resp(s, GENERIC_NACK, ST_RINVCMDLEN, seq, NULL, 0);
		return;
	}
	uint32_t st = 0;
	if (s->bound)
		st = ST_RALYBND;
	else if (O.system_id && strcmp(id, O.system_id))
		st = ST_RINVSYSID;
	else if (O.password && strcmp(pw, O.password))
		st = ST_RINVPASWD;
	if (st) {
		C.bind_failures++;
		sess_resp(s, cmd | 0x80000000u, st, seq, NULL, 0);
		return;
	}
	C.binds++;
	s->bound = true;
	s->mode = cmd == BIND_TRANSCEIVER ? MODE_TRX : cmd == BIND_RECEIVER ? MODE_RX : MODE_TX;
	memcpy(s->system_id, id, idl + 1);
	sess_resp(s, cmd | 0x80000000u, 0, seq, "SMSCSIM", 8);
	if (s->mode != MODE_TX)
		receipts_flush();
}

static void mo_resp(uint32_t seq, uint32_t status);

/* A request smsc.js (node-smpp) knows but does not serve: answered with its _resp, RINVCMDID. */
static bool
known_request(uint32_t cmd)
{
	static const uint32_t known[] = {0x03, 0x05, 0x07, 0x08, 0x21, 0x111, 0x112, 0x113};
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
		if (known[i] == cmd)
			return true;
	return false;
}

static void
on_pdu(struct session *s, const uint8_t *pdu, size_t len)
{
	uint32_t cmd = get32(pdu + 4), status = get32(pdu + 8), seq = get32(pdu + 12);
	if (cmd & 0x80000000u) {
		if (cmd == DELIVER_SM_RESP) {
			if (seq >= 0x40000000u)
				mo_resp(seq, status);
			else if (!O.raw_receipts && seq >= 0x20000000u && seq <= 0x2fffffffu)
				C.delivered++;
		} else if (cmd == GENERIC_NACK) {
			C.generic_nacks_received++;
		}
		return;
	}
	switch (cmd) {
	case SUBMIT_SM:
	case DATA_SM:
		on_submit(s, pdu, len, cmd, seq);
		return;
	case ENQUIRE_LINK:
		C.enquire_links++;
		sess_resp(s, cmd | 0x80000000u, 0, seq, NULL, 0);
		return;
	case BIND_RECEIVER:
	case BIND_TRANSMITTER:
	case BIND_TRANSCEIVER:
		on_bind(s, pdu, len, cmd, seq);
		return;
	case UNBIND:
		C.unbinds++;
		sess_resp(s, cmd | 0x80000000u, 0, seq, NULL, 0);
		s->bound = false;
		s->closing = true; /* closed once the response is written (sess_drained) */
		return;
	default:
		if (known_request(cmd)) {
			sess_resp(s, cmd | 0x80000000u, ST_RINVCMDID, seq, NULL, 0);
		} else {
			C.generic_nacks++;
			sess_resp(s, GENERIC_NACK, ST_RINVCMDID, seq, NULL, 0);
		}
	}
}

static void
sess_read(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t avail;
	while (!s->dead && (avail = evbuffer_get_length(in)) >= 4) {
		if (s->closing) { /* after unbind: the rest is not read */
			evbuffer_drain(in, avail);
			return;
		}
		uint8_t h[4];
		evbuffer_copyout(in, h, 4);
		uint32_t len = get32(h);
		if (len < 16 || len > FRAME_MAX) {
			fprintf(stderr, "smscsim: command_length %" PRIu32 ": session closed\n",
			        len);
			C.session_errors++;
			sess_close(s);
			return;
		}
		if (avail < len)
			break;
		on_pdu(s, evbuffer_pullup(in, len), len);
		evbuffer_drain(in, len);
	}
	if (!s->dead && evbuffer_get_length(bufferevent_get_output(bev)) > OUT_PAUSE) {
		s->paused = true;
		bufferevent_disable(bev, EV_READ);
	}
}

/* The output is empty: resume reading, or finish an unbind (FIN, then wait for the peer's). */
static void
sess_drained(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;
	if (s->closing && !s->shut) {
		s->shut = true;
		shutdown(bufferevent_getfd(bev), SHUT_WR);
		struct timeval tv = {5, 0};
		bufferevent_set_timeouts(bev, &tv, NULL);
	}
	if (s->paused) {
		s->paused = false;
		bufferevent_enable(bev, EV_READ);
		sess_read(bev, s);
	}
}

static void
sess_event(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;
	if ((what & BEV_EVENT_ERROR) && !s->shut)
		C.session_errors++;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		sess_close(s);
}

static void
on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct session *s = calloc(1, sizeof *s);
	struct bufferevent *bev =
	    s ? bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE) : NULL;
	if (!bev) {
		fprintf(stderr, "smscsim: out of memory for a session\n");
		free(s);
		evutil_closesocket(fd);
		return;
	}
	s->bev = bev;
	s->prev = sess_tail;
	if (sess_tail)
		sess_tail->next = s;
	else
		sess_head = s;
	sess_tail = s;
	bufferevent_set_max_single_read(bev, 256 << 10);
	bufferevent_set_max_single_write(bev, 256 << 10);
	bufferevent_setcb(bev, sess_read, sess_drained, sess_event, s);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void
on_accept_error(struct evconnlistener *l, void *arg)
{
	fprintf(stderr, "smscsim: accept: %s\n", strerror(errno));
}

/* ------------------------------------------------------------------ MO deliver_sm */

/* simproc.js's deliverBuf: text (GSM-7/ASCII) from `from` to 8079, on a receiver/transceiver. */
static bool
send_mo(uint64_t from, const char *text, size_t tlen, uint32_t gen)
{
	struct session *s = pick_rx(NULL, &rr_mo);
	if (!s)
		return false;
	uint32_t seq = mo_seq;
	mo_seq = mo_seq >= 0x7ffffff0u ? 0x40000000u : mo_seq + 1;
	mo_ring[seq & (MO_RING - 1)].seq = seq;
	mo_ring[seq & (MO_RING - 1)].gen = gen;
	uint8_t b[PDU_BUF];
	size_t o = 16;
	b[o++] = 0;
	b[o++] = 1;
	b[o++] = 1;
	o += fmt_u64((char *)b + o, from, 10) + 1;
	b[o++] = 0;
	b[o++] = 0;
	memcpy(b + o, "8079", 5);
	o += 5;
	memset(b + o, 0, 9); /* esm_class .. sm_default_msg_id */
	o += 9;
	b[o++] = (uint8_t)tlen;
	memcpy(b + o, text, tlen);
	o += tlen;
	put32(b, (uint32_t)o);
	put32(b + 4, DELIVER_SM);
	put32(b + 8, 0);
	put32(b + 12, seq);
	sess_write(s, b, o);
	return true;
}

/* ------------------------------------------------------------------ residents */

enum conv_state { CV_READY, CV_SENT, CV_READING };

/* One conversation: a number sending the script. In the map while waiting (sent or reading). */
struct conv {
	uint64_t num;
	struct conv *hnext;       /* map chain */
	struct conv *prev, *next; /* the sent FIFO, or the ready stack, or the free list */
	double sent_at;
	uint32_t step;
	uint8_t state;
	bool in_map;
	struct event timer; /* quietMs after the last segment: ready again */
};

enum loop_kind { LOOP_CLOSED, LOOP_FILL, LOOP_OPEN };

struct residents {
	enum loop_kind kind;
	json_t *id; /* the request answered when the loop ends */
	uint32_t gen;
	uint64_t next;
	struct {
		char *s;
		size_t len;
	} script[SCRIPT_MAX];
	uint32_t nscript;
	double quiet_ms, timeout_ms, duration_ms, warmup_ms, rate;
	const struct timeval *quiet_tv;
	struct timeval quiet_plain;
	uint64_t timeouts, nacks, submits, extra_segments;
	struct conv *sent_head, *sent_tail; /* state CV_SENT, oldest first */
	struct conv *ready;                 /* open loop: LIFO */
	struct event *sweep, *ramp, *warm, *end, *drain, *pump, *fin;
	/* results */
	double *lat;
	size_t nlat, caplat;
	double *eld;
	size_t neld, capeld;
	uint64_t done, started, active, total, conc, sent, answered, max_lag;
	bool measuring, stopped;
	double t0, pump_due;
	struct cpusnap cpu0;
	json_t *result; /* closed/open: computed at the end, sent after the drain */
};

static struct residents *R;
static uint32_t res_gen;
static struct conv *conv_free_list;
static struct conv **map;
static size_t map_mask, map_count;

static size_t
map_slot(uint64_t num)
{
	return (size_t)((num * 0x9E3779B97F4A7C15ull) >> 20) & map_mask;
}

static void
map_grow(void)
{
	size_t n = map ? (map_mask + 1) * 2 : 4096;
	struct conv **t = calloc(n, sizeof *t);
	if (!t)
		return; /* longer chains, still correct */
	struct conv **old = map;
	size_t oldn = map ? map_mask + 1 : 0;
	map = t;
	map_mask = n - 1;
	for (size_t i = 0; i < oldn; i++)
		for (struct conv *c = old[i], *nx; c; c = nx) {
			nx = c->hnext;
			size_t k = map_slot(c->num);
			c->hnext = map[k];
			map[k] = c;
		}
	free(old);
}

static struct conv *
map_get(uint64_t num)
{
	for (struct conv *c = map[map_slot(num)]; c; c = c->hnext)
		if (c->num == num)
			return c;
	return NULL;
}

static void
map_put(struct conv *c)
{
	if (map_count >= map_mask + 1)
		map_grow();
	size_t k = map_slot(c->num);
	c->hnext = map[k];
	map[k] = c;
	c->in_map = true;
	map_count++;
}

static void
map_del(struct conv *c)
{
	if (!c->in_map)
		return;
	for (struct conv **pp = &map[map_slot(c->num)]; *pp; pp = &(*pp)->hnext)
		if (*pp == c) {
			*pp = c->hnext;
			break;
		}
	c->in_map = false;
	map_count--;
}

static void
fifo_del(struct conv *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		R->sent_head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		R->sent_tail = c->prev;
	c->prev = c->next = NULL;
}

static void quiet_cb(evutil_socket_t fd, short what, void *arg);

static struct conv *
conv_new(void)
{
	if (!conv_free_list) {
		struct conv *chunk = calloc(CONV_CHUNK, sizeof *chunk);
		if (!chunk) {
			fprintf(stderr, "smscsim: out of memory for conversations\n");
			exit(1);
		}
		for (size_t i = 0; i < CONV_CHUNK; i++) {
			evtimer_assign(&chunk[i].timer, base, quiet_cb, &chunk[i]);
			chunk[i].next = conv_free_list;
			conv_free_list = &chunk[i];
		}
	}
	struct conv *c = conv_free_list;
	conv_free_list = c->next;
	c->next = c->prev = c->hnext = NULL;
	c->num = R->next++;
	c->step = 0;
	c->state = CV_READY;
	c->in_map = false;
	return c;
}

/* c is in no map, list or timer. */
static void
conv_free(struct conv *c)
{
	c->next = conv_free_list;
	conv_free_list = c;
}

static void
res_send(struct conv *c)
{
	const char *text = R->script[c->step % R->nscript].s;
	size_t len = R->script[c->step % R->nscript].len;
	c->step++;
	c->state = CV_SENT;
	c->sent_at = now_ms();
	if (!c->in_map)
		map_put(c);
	c->next = NULL;
	c->prev = R->sent_tail;
	if (R->sent_tail)
		R->sent_tail->next = c;
	else
		R->sent_head = c;
	R->sent_tail = c;
	send_mo(c->num, text, len, R->gen);
}

static void
mo_resp(uint32_t seq, uint32_t status)
{
	uint32_t k = seq & (MO_RING - 1);
	if (mo_ring[k].seq != seq)
		return;
	mo_ring[k].seq = 0;
	if (status && R && mo_ring[k].gen == R->gen)
		R->nacks++;
}

static void
lat_push(double **a, size_t *n, size_t *cap, double v)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 4096;
		double *t = realloc(*a, nc * sizeof *t);
		if (!t)
			return;
		*a = t;
		*cap = nc;
	}
	(*a)[(*n)++] = v;
}

/* The per-loop reactions (simproc.js's onAnswered / onReady / onLost). */
static void fill_again(struct conv *c);

static void
closed_again(struct conv *c)
{
	if (c->step >= R->nscript) {
		conv_free(c);
		c = conv_new();
	}
	res_send(c);
}

static void
on_answered(struct conv *c, double ms)
{
	if (R->kind == LOOP_CLOSED && R->measuring) {
		R->done++;
		if (R->nlat < CLOSED_MAX_SAMPLES)
			lat_push(&R->lat, &R->nlat, &R->caplat, ms);
	} else if (R->kind == LOOP_OPEN) {
		R->answered++;
		lat_push(&R->lat, &R->nlat, &R->caplat, ms);
	}
}

static void
on_ready(struct conv *c)
{
	switch (R->kind) {
	case LOOP_CLOSED:
		if (R->stopped)
			conv_free(c);
		else
			closed_again(c);
		break;
	case LOOP_FILL:
		fill_again(c);
		break;
	case LOOP_OPEN:
		if (c->step < R->nscript) {
			c->state = CV_READY;
			c->next = R->ready;
			R->ready = c;
		} else {
			conv_free(c);
		}
		break;
	}
}

static void
on_lost(struct conv *c)
{
	conv_free(c);
	if (R->kind == LOOP_CLOSED && !R->stopped)
		res_send(conv_new());
	else if (R->kind == LOOP_FILL)
		fill_again(NULL);
}

/* A submit_sm to `to`: the first one answers the resident's message, later ones are segments. */
static void
residents_submit(const char *to, size_t len)
{
	uint64_t num;
	struct conv *c;
	if (!R)
		return;
	R->submits++;
	if (!parse_num(to, len, &num) || !(c = map_get(num)))
		return;
	if (c->state == CV_SENT) {
		c->state = CV_READING;
		fifo_del(c);
		on_answered(c, now_ms() - c->sent_at);
	} else {
		R->extra_segments++;
	}
	evtimer_add(&c->timer, R->quiet_tv);
}

static void
quiet_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conv *c = arg;
	map_del(c);
	on_ready(c);
}

/* Every 250 ms: conversations unanswered after timeoutMs are retired. */
static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	double t = now_ms();
	struct conv *c;
	while ((c = R->sent_head) && t - c->sent_at > R->timeout_ms) {
		fifo_del(c);
		map_del(c);
		R->timeouts++;
		on_lost(c);
	}
}

static struct event *
res_timer(event_callback_fn cb, bool persist, double ms)
{
	struct event *ev = event_new(base, -1, persist ? EV_PERSIST : 0, cb, NULL);
	if (ms >= 0) {
		struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(fmod(ms, 1000) * 1000)};
		event_add(ev, &tv);
	}
	return ev;
}

/* The loop's state, made current (R); NULL when the request is refused, and answered. */
static struct residents *
res_new(json_t *id, json_t *m, enum loop_kind kind)
{
	json_t *script = json_object_get(m, "script");
	if (!json_is_array(script) || !json_array_size(script) ||
	    json_array_size(script) > SCRIPT_MAX) {
		reply_err(id, "script: an array of 1..64 strings");
		return NULL;
	}
	for (size_t i = 0; i < json_array_size(script); i++) {
		json_t *t = json_array_get(script, i);
		if (!json_is_string(t) || json_string_length(t) > 254) {
			reply_err(id, "script: strings of at most 254 bytes");
			return NULL;
		}
	}
	struct residents *r = calloc(1, sizeof *r);
	if (!r) {
		reply_err(id, "out of memory");
		return NULL;
	}
	r->kind = kind;
	r->id = json_incref(id);
	r->gen = ++res_gen ? res_gen : ++res_gen;
	r->next = arg_u64(m, "base", 84900000000ull);
	r->nscript = (uint32_t)json_array_size(script);
	for (uint32_t i = 0; i < r->nscript; i++) {
		json_t *t = json_array_get(script, i);
		r->script[i].len = json_string_length(t);
		r->script[i].s = strdup(json_string_value(t));
	}
	r->quiet_ms = arg_num(m, "quietMs", 30);
	r->timeout_ms = arg_num(m, "timeoutMs", 10000);
	r->duration_ms = arg_num(m, "durationMs", 10000);
	r->warmup_ms = arg_num(m, "warmupMs", 0);
	r->rate = arg_num(m, "rate", 0);
	r->conc = arg_u64(m, "concurrency", 1);
	r->total = arg_u64(m, "total", 0);
	r->quiet_plain.tv_sec = (time_t)(r->quiet_ms / 1000);
	r->quiet_plain.tv_usec = (suseconds_t)(fmod(r->quiet_ms, 1000) * 1000);
	r->quiet_tv = event_base_init_common_timeout(base, &r->quiet_plain);
	if (!r->quiet_tv)
		r->quiet_tv = &r->quiet_plain;
	if (!map)
		map_grow();
	R = r;
	r->sweep = res_timer(sweep_cb, true, 250);
	return r;
}

static void
res_close(void)
{
	struct residents *r = R;
	struct event *evs[] = {r->sweep, r->ramp, r->warm, r->end, r->drain, r->pump, r->fin};
	for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
		if (evs[i])
			event_free(evs[i]);
	for (size_t i = 0; map && i <= map_mask; i++) {
		while (map[i]) {
			struct conv *c = map[i];
			map[i] = c->hnext;
			evtimer_del(&c->timer);
			c->in_map = false;
			conv_free(c);
		}
	}
	map_count = 0;
	while (r->ready) {
		struct conv *c = r->ready;
		r->ready = c->next;
		conv_free(c);
	}
	for (uint32_t i = 0; i < r->nscript; i++)
		free(r->script[i].s);
	free(r->lat);
	free(r->eld);
	json_decref(r->id);
	json_decref(r->result);
	free(r);
	R = NULL;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* JS: lat[Math.min(n - 1, Math.floor(q * n))], null when empty; a must be sorted. */
static json_t *
pct(const double *a, size_t n, double q)
{
	if (!n)
		return json_null();
	size_t k = (size_t)floor(q * (double)n);
	return json_real(a[k < n - 1 ? k : n - 1]);
}

/* Sends the stored result and ends the loop. */
static void
res_finish_cb(evutil_socket_t fd, short what, void *arg)
{
	json_t *id = json_incref(R->id), *result = json_incref(R->result);
	res_close();
	reply_ok(id, result);
	json_decref(id);
}

/* ------------------------------------------------------------------ closed loop */

static void
ramp_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t step = (R->conc + 49) / 50;
	uint64_t k = R->conc - R->started < step ? R->conc - R->started : step;
	for (uint64_t i = 0; i < k; i++)
		res_send(conv_new());
	R->started += k;
	if (R->started >= R->conc)
		event_del(R->ramp);
}

static void
warm_cb(evutil_socket_t fd, short what, void *arg)
{
	R->measuring = true;
	R->t0 = now_ms();
	R->cpu0 = cpu_snap();
}

static void
closed_end_cb(evutil_socket_t fd, short what, void *arg)
{
	R->measuring = false;
	R->stopped = true;
	double secs = (now_ms() - R->t0) / 1000;
	double cpu = cpu_since(R->cpu0);
	event_del(R->ramp);
	qsort(R->lat, R->nlat, sizeof *R->lat, cmp_double);
	size_t n = R->nlat;
	R->result =
	    json_pack("{s:I,s:o,s:o,s:I,s:I,s:I,s:o,s:o,s:o,s:o}", "done", (json_int_t)R->done,
	              "secs", jreal(secs), "rate", jreal((double)R->done / secs), "timeouts",
	              (json_int_t)R->timeouts, "nacks", (json_int_t)R->nacks, "submits",
	              (json_int_t)R->submits, "cpu", jreal(cpu), "p50", pct(R->lat, n, 0.5), "p99",
	              pct(R->lat, n, 0.99), "max", n ? json_real(R->lat[n - 1]) : json_null());
	R->drain = res_timer(res_finish_cb, false, 1500); /* the last answers drain */
}

static void
start_closed(json_t *id, json_t *m)
{
	if (!res_new(id, m, LOOP_CLOSED))
		return;
	R->ramp = res_timer(ramp_cb, true, 20);
	R->warm = res_timer(warm_cb, false, R->warmup_ms);
	R->end = res_timer(closed_end_cb, false, R->warmup_ms + R->duration_ms);
}

/* ------------------------------------------------------------------ fill */

static void
fill_again(struct conv *c)
{
	if (!c || c->step >= R->nscript) {
		if (c)
			conv_free(c);
		R->active--;
		if (R->started >= R->total) {
			if (R->active == 0) {
				double secs = (now_ms() - R->t0) / 1000;
				R->result = json_pack("{s:I,s:I,s:I,s:o,s:o}", "started",
				                      (json_int_t)R->started, "timeouts",
				                      (json_int_t)R->timeouts, "nacks",
				                      (json_int_t)R->nacks, "secs", jreal(secs),
				                      "cpu", jreal(cpu_since(R->cpu0)));
				/* answered from its own event, not inside the sweep */
				event_active(R->fin, 0, 0);
			}
			return;
		}
		c = conv_new();
		R->started++;
		R->active++;
	}
	res_send(c);
}

static void
start_fill(json_t *id, json_t *m)
{
	if (!res_new(id, m, LOOP_FILL))
		return;
	R->cpu0 = cpu_snap();
	R->t0 = now_ms();
	R->fin = res_timer(res_finish_cb, false, -1);
	uint64_t k = R->conc < R->total ? R->conc : R->total;
	if (!k) { /* simproc.js would never answer */
		R->result = json_pack("{s:i,s:i,s:i,s:f,s:f}", "started", 0, "timeouts", 0, "nacks",
		                      0, "secs", 0.0, "cpu", 0.0);
		event_active(R->fin, 0, 0);
	}
	for (uint64_t i = 0; i < k; i++) {
		R->started++;
		R->active++;
		res_send(conv_new());
	}
}

/* ------------------------------------------------------------------ open loop */

static void
pump_arm(void)
{
	struct timeval tv = {0, 1000};
	R->pump_due = now_ms() + 1;
	event_add(R->pump, &tv);
}

static void
pump_cb(evutil_socket_t fd, short what, void *arg)
{
	double t = now_ms();
	lat_push(&R->eld, &R->neld, &R->capeld, fmax(0, t - R->pump_due));
	uint64_t due = (uint64_t)floor((t - R->t0) * R->rate / 1000);
	if (due > R->sent && due - R->sent > R->max_lag)
		R->max_lag = due - R->sent;
	while (R->sent < due) {
		struct conv *c = R->ready;
		if (c)
			R->ready = c->next;
		else
			c = conv_new();
		res_send(c);
		R->sent++;
	}
	pump_arm();
}

/* The answers still in flight are waited for: then answered, timeouts and latencies. */
static void
open_finish_cb(evutil_socket_t fd, short what, void *arg)
{
	size_t n = R->nlat;
	qsort(R->lat, n, sizeof *R->lat, cmp_double);
	json_object_update_new(
	    R->result,
	    json_pack("{s:I,s:I,s:I,s:o,s:o,s:o,s:o}", "answered", (json_int_t)R->answered,
	              "timeouts", (json_int_t)R->timeouts, "nacks", (json_int_t)R->nacks, "p50",
	              pct(R->lat, n, 0.5), "p90", pct(R->lat, n, 0.9), "p99", pct(R->lat, n, 0.99),
	              "max", n ? json_real(R->lat[n - 1]) : json_null()));
	res_finish_cb(fd, what, arg);
}

static void
open_end_cb(evutil_socket_t fd, short what, void *arg)
{
	R->stopped = true;
	event_del(R->pump);
	double secs = (now_ms() - R->t0) / 1000;
	double cpu = cpu_since(R->cpu0);
	qsort(R->eld, R->neld, sizeof *R->eld, cmp_double);
	R->result = json_pack("{s:I,s:o,s:o,s:I,s:o,s:f}", "sent", (json_int_t)R->sent, "offered",
	                      jreal((double)R->sent / secs), "cpu", jreal(cpu), "maxLag",
	                      (json_int_t)R->max_lag, "loopP99",
	                      R->neld ? pct(R->eld, R->neld, 0.99) : json_real(0), "loopMax",
	                      R->neld ? R->eld[R->neld - 1] : 0.0);
	R->drain = res_timer(open_finish_cb, false, R->timeout_ms < 3000 ? R->timeout_ms : 3000);
}

static void
start_open(json_t *id, json_t *m)
{
	if (!res_new(id, m, LOOP_OPEN))
		return;
	R->t0 = now_ms();
	R->cpu0 = cpu_snap();
	R->pump = res_timer(pump_cb, false, -1);
	pump_arm();
	R->end = res_timer(open_end_cb, false, R->duration_ms);
}

/* ------------------------------------------------------------------ commands */

struct bound_wait {
	json_t *id;
	unsigned n;
	double deadline;
	struct event *ev;
};

/* bound {n, ms}: polled every 20 ms as simproc.js does. */
static void
bound_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bound_wait *w = arg;
	unsigned b = bound_count();
	if (b < w->n && now_ms() < w->deadline)
		return;
	reply_ok(w->id, json_pack("{s:i}", "bound", (int)b));
	event_free(w->ev);
	json_decref(w->id);
	free(w);
}

static void
cmd_bound(json_t *id, json_t *m)
{
	struct bound_wait *w = calloc(1, sizeof *w);
	if (!w) {
		reply_err(id, "out of memory");
		return;
	}
	double n = arg_num(m, "n", 0), ms = arg_num(m, "ms", 0);
	w->id = json_incref(id);
	w->n = n > 0 ? (unsigned)n : 1;
	w->deadline = now_ms() + (ms > 0 ? ms : 20000);
	w->ev = event_new(base, -1, EV_PERSIST, bound_cb, w);
	struct timeval tv = {0, 20000};
	event_add(w->ev, &tv);
	bound_cb(-1, 0, w);
}

/* A string option; null (or not a string) accepts anything. */
static void
opt_str(char **dst, json_t *v)
{
	free(*dst);
	*dst = json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

/* start {sim: options}: the options of smsc.js this simulator knows; the rest is reported. */
static const char *
set_opts(json_t *sim)
{
	snprintf(O.host, sizeof O.host, "127.0.0.1");
	O.system_id = strdup("skillgate");
	O.password = strdup("secret");
	O.receipts = true;
	O.throttle_status = ST_RTHROTTLED;
	O.reject_status = ST_RSUBMITFAIL;
	struct timeval tv;
	evutil_gettimeofday(&tv, NULL);
	uint64_t ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
	next_id = 1000000000ull + ms % 1000000000ull;
	for (void *it = json_object_iter(sim); it; it = json_object_iter_next(sim, it)) {
		const char *key = json_object_iter_key(it);
		json_t *v = json_object_iter_value(it);
		if (!strcmp(key, "port"))
			O.port = (int)arg_num(sim, key, 0);
		else if (!strcmp(key, "host") && json_is_string(v))
			snprintf(O.host, sizeof O.host, "%s", json_string_value(v));
		else if (!strcmp(key, "systemId"))
			opt_str(&O.system_id, v);
		else if (!strcmp(key, "password"))
			opt_str(&O.password, v);
		else if (!strcmp(key, "receipts"))
			O.receipts = json_is_true(v);
		else if (!strcmp(key, "rawReceipts"))
			O.raw_receipts = json_is_true(v);
		else if (!strcmp(key, "idStart") && json_is_number(v))
			next_id = arg_u64(sim, key, next_id);
		else if (!strcmp(key, "throttleEvery"))
			O.throttle_every = arg_u64(sim, key, 0);
		else if (!strcmp(key, "throttleStatus"))
			O.throttle_status = (uint32_t)arg_u64(sim, key, ST_RTHROTTLED);
		else if (!strcmp(key, "rejectEvery"))
			O.reject_every = arg_u64(sim, key, 0);
		else if (!strcmp(key, "rejectStatus"))
			O.reject_status = (uint32_t)arg_u64(sim, key, ST_RSUBMITFAIL);
		else if (!json_is_null(v) && !json_is_false(v))
			fprintf(stderr, "smscsim: option %s is not supported: ignored\n", key);
	}
	if (O.port < 0 || O.port > 65535)
		return "port out of range";
	return NULL;
}

static void
cmd_start(json_t *id, json_t *m)
{
	if (listener) {
		reply_err(id, "already started");
		return;
	}
	const char *err = set_opts(json_object_get(m, "sim"));
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)O.port)};
	if (!err && inet_pton(AF_INET, O.host, &sa.sin_addr) != 1)
		err = "host: an IPv4 address";
	if (!err) {
		listener = evconnlistener_new_bind(base, on_accept, NULL,
		                                   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 511,
		                                   (struct sockaddr *)&sa, sizeof sa);
		if (!listener)
			err = strerror(errno);
	}
	if (err) {
		reply_err(id, err);
		return;
	}
	evconnlistener_set_error_cb(listener, on_accept_error);
	socklen_t len = sizeof sa;
	getsockname(evconnlistener_get_fd(listener), (struct sockaddr *)&sa, &len);
	reply_ok(id, json_pack("{s:i}", "port", ntohs(sa.sin_port)));
}

static void
cmd_counters(json_t *id)
{
	double cpu = cpu_since(last_cpu);
	last_cpu = cpu_snap();
	json_t *c =
	    json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "submits",
	              (json_int_t)C.submits, "accepted", (json_int_t)C.accepted, "throttled",
	              (json_int_t)C.throttled, "rejected", (json_int_t)C.rejected, "malformed",
	              (json_int_t)C.malformed, "delivered", (json_int_t)C.delivered, "receipts",
	              (json_int_t)C.receipts, "binds", (json_int_t)C.binds, "bindFailures",
	              (json_int_t)C.bind_failures, "unbinds", (json_int_t)C.unbinds, "enquireLinks",
	              (json_int_t)C.enquire_links, "genericNacks", (json_int_t)C.generic_nacks,
	              "genericNacksReceived", (json_int_t)C.generic_nacks_received, "sessionErrors",
	              (json_int_t)C.session_errors);
	reply_ok(id, json_pack("{s:o,s:o,s:I,s:i}", "counters", c, "cpu", jreal(cpu),
	                       "pendingReceipts", (json_int_t)rq_len, "bound", (int)bound_count()));
}

static void
cmd_stop(json_t *id)
{
	while (sess_head)
		sess_close(sess_head);
	reap_cb(-1, 0, NULL);
	if (listener)
		evconnlistener_free(listener);
	reply_ok(id, NULL);
	exit(0);
}

static void
on_request(const char *line, size_t len)
{
	json_error_t e;
	json_t *m = json_loadb(line, len, 0, &e);
	if (!json_is_object(m)) {
		fprintf(stderr, "smscsim: bad request (%s): %.200s\n", e.text, line);
		reply_err(NULL, "bad request: not a JSON object");
		json_decref(m);
		return;
	}
	json_t *id = json_object_get(m, "id");
	const char *cmd = json_string_value(json_object_get(m, "cmd"));
	if (!cmd)
		cmd = "";
	bool loop = !strcmp(cmd, "closed") || !strcmp(cmd, "open");
	if (!strcmp(cmd, "start"))
		cmd_start(id, m);
	else if (!strcmp(cmd, "stop"))
		cmd_stop(id);
	else if (!listener && (loop || !strcmp(cmd, "bound") || !strcmp(cmd, "counters")))
		reply_err(id, "not started");
	else if (!strcmp(cmd, "bound"))
		cmd_bound(id, m);
	else if (!strcmp(cmd, "counters"))
		cmd_counters(id);
	else if (loop && R)
		reply_err(id, "a loop is already running");
	else if (!strcmp(cmd, "open"))
		start_open(id, m);
	else if (arg_num(m, "total", 0) > 0)
		start_fill(id, m);
	else if (loop)
		start_closed(id, m);
	else
		reply_err(id, "unknown command");
	json_decref(m);
}

static void
stdin_cb(evutil_socket_t fd, short what, void *arg)
{
	struct evbuffer *in = arg;
	int n = evbuffer_read(in, fd, 1 << 16);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	char *line;
	size_t len;
	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF))) {
		on_request(line, len);
		free(line);
	}
	if (evbuffer_get_length(in) > (1u << 20)) {
		fprintf(stderr, "smscsim: a request line over 1 MiB: dropped\n");
		evbuffer_drain(in, evbuffer_get_length(in));
	}
	if (n <= 0)
		exit(0); /* EOF: the parent is gone */
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	/* poll, not epoll: with a handful of fds it needs no epoll_ctl each time a session's output
	 * fills and drains, nor the timerfd_settime per iteration that precise timers cost on epoll
	 * (8 -> 5 % of a core per simulator in the MO runs). Precise: libevent's default clock is
	 * CLOCK_MONOTONIC_COARSE, 4 ms steps here, too coarse for the 1 ms pump and 30 ms timers.
	 */
	struct event_config *cfg = event_config_new();
	event_config_avoid_method(cfg, "epoll");
	event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (!base) {
		fprintf(stderr, "smscsim: no event base\n");
		return 1;
	}
	reaper = event_new(base, -1, 0, reap_cb, NULL);
	fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
	struct evbuffer *in = evbuffer_new();
	struct event *ev = event_new(base, STDIN_FILENO, EV_READ | EV_PERSIST, stdin_cb, in);
	event_add(ev, NULL);
	last_cpu = cpu_snap();
	event_base_dispatch(base);
	return 0;
}

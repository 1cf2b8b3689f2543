/*
 * smpp_session.c — one SMPP bind as a state machine (see smpp_session.h).
 *
 *   IDLE -> CONNECTING -> BINDING -> BOUND -> UNBINDING -> CLOSED
 *                ^            |         |
 *                +- WAITING <-+---------+  (error, silence, peer unbind)
 *
 * enter_state() is the only writer of s->state. Every connection gets a new
 * 64-bit id so that acknowledgements decided after a reconnect are dropped
 * instead of being sent on the wrong connection (the SMSC resends them).
 *
 * Timers: one state timer (connect/bind timeout, reconnect delay, stop
 * deadline), one periodic enquire_link timer, one response timer per window
 * slot and one for the outstanding enquire_link: a link that stays silent
 * is detected within enquire_link + response_timeout seconds.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "pdu_stats.h"
#include "smpp_session.h"

#define MOD "smpp"
#define OUT_HIGH (256 * 1024) /* bytes queued for the socket before we refuse submits */

struct slot {
	struct smpp_session *s;
	bool used;
	uint32_t seq, cmd;
	uint64_t cookie;
	struct event *timer;
};

/* Connections closing that still flush their output (see linger()). */
#define LINGER_MAX 4

struct smpp_session {
	struct event_base *base;
	const struct smsc_conf *conf;
	enum smpp_role role;
	struct smpp_session_cbs cbs;
	void *arg;
	char name[48];

	struct sockaddr_storage addr;
	socklen_t addrlen;
	SSL_CTX *ssl_ctx;

	enum smpp_state state;
	struct bufferevent *bev;
	uint64_t conn_id;
	uint32_t next_seq;
	uint32_t bind_seq, unbind_seq;

	struct slot *win;
	int win_size, win_used;
	struct slot enq; /* outstanding enquire_link */
	struct event *state_timer;
	struct event *enq_timer;
	struct event *reap;

	/* connections left with output still to flush (a last resp); each is
	 * freed when that is written, fails or times out, or with the session */
	struct bufferevent *lingering[LINGER_MAX];
	int nlingering;

	int backoff; /* next reconnect delay, seconds */
	bool stopping;
	int in_cb; /* depth of libevent callbacks running */
	bool free_pending;
	uint32_t rnd;
};

static uint64_t next_conn_id = 1;

static void start_connect(struct smpp_session *s);
static void disconnect(struct smpp_session *s, const char *why);

/* ---------------------------------------------------------------------- */
/* State                                                                   */

const char *
smpp_session_strstate(enum smpp_state st)
{
	switch (st) {
	case SMPP_ST_IDLE:
		return "idle";
	case SMPP_ST_CONNECTING:
		return "connecting";
	case SMPP_ST_BINDING:
		return "binding";
	case SMPP_ST_BOUND:
		return "bound";
	case SMPP_ST_UNBINDING:
		return "unbinding";
	case SMPP_ST_WAITING:
		return "waiting";
	case SMPP_ST_CLOSED:
		return "closed";
	}
	return "?";
}

static void
arm(struct event *ev, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(ev, &tv);
}

/* The only writer of s->state. */
static void
enter_state(struct smpp_session *s, enum smpp_state st)
{
	if (s->state == st)
		return;
	log_info(MOD, "%s: %s -> %s", s->name, smpp_session_strstate(s->state),
	         smpp_session_strstate(st));
	s->state = st;
	if (s->cbs.state != NULL)
		s->cbs.state(s->arg, s, st);
}

static uint32_t
next_seq(struct smpp_session *s)
{
	uint32_t q = s->next_seq;
	s->next_seq = q >= SMPP_SEQ_MAX ? 1 : q + 1;
	return q;
}

static uint32_t
rnd(struct smpp_session *s)
{
	uint32_t x = s->rnd; /* xorshift32: jitter only */
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return s->rnd = x;
}

/* ---------------------------------------------------------------------- */
/* Output                                                                  */

static int
send_raw(struct smpp_session *s, const uint8_t *buf, int len)
{
	if (s->bev == NULL || len <= 0)
		return -1;
	pdu_stats_count_pdu(s->conf->name, PDU_STATS_OUT, buf, (size_t)len);
	return bufferevent_write(s->bev, buf, (size_t)len);
}

static void
send_resp(struct smpp_session *s, uint32_t cmd, uint32_t seq, uint32_t status)
{
	uint8_t b[32];
	send_raw(s, b, smpp_codec_encode_resp(b, sizeof b, cmd, seq, status));
}

static void
send_unbind(struct smpp_session *s)
{
	uint8_t b[32];
	s->unbind_seq = next_seq(s);
	send_raw(s, b, smpp_codec_encode_unbind(b, sizeof b, s->unbind_seq));
}

/* ---------------------------------------------------------------------- */
/* Window                                                                  */

static struct slot *
slot_find(struct smpp_session *s, uint32_t seq)
{
	for (int i = 0; i < s->win_size; i++)
		if (s->win[i].used && s->win[i].seq == seq)
			return &s->win[i];
	return NULL;
}

/* Releases a slot and reports its outcome. */
static void
slot_done(struct smpp_session *s, struct slot *sl, uint32_t status, const char *id)
{
	uint64_t cookie = sl->cookie;

	evtimer_del(sl->timer);
	sl->used = false;
	s->win_used--;
	if (s->cbs.resp != NULL)
		s->cbs.resp(s->arg, s, cookie, status, id);
	if (s->state == SMPP_ST_UNBINDING && s->win_used == 0 && s->unbind_seq == 0 &&
	    s->bev != NULL)
		send_unbind(s);
	else if (s->state == SMPP_ST_BOUND && s->cbs.room != NULL)
		s->cbs.room(s->arg, s);
}

static void
slot_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct slot *sl = arg;
	struct smpp_session *s = sl->s;

	s->in_cb++;
	log_warn(MOD, "%s: no response to %s seq %u within %d s", s->name,
	         smpp_codec_cmd_name(sl->cmd), sl->seq, s->conf->response_timeout);
	slot_done(s, sl, SMPP_STATUS_NORESP, "");
	s->in_cb--;
}

/* Fails every outstanding request (connection lost). */
static void
window_fail_all(struct smpp_session *s)
{
	for (int i = 0; i < s->win_size; i++)
		if (s->win[i].used)
			slot_done(s, &s->win[i], SMPP_STATUS_NORESP, "");
	evtimer_del(s->enq.timer);
	s->enq.used = false;
}

bool
smpp_session_can_submit(const struct smpp_session *s)
{
	return s->state == SMPP_ST_BOUND && s->role != SMPP_ROLE_RX && s->win_used < s->win_size &&
	       s->bev != NULL && evbuffer_get_length(bufferevent_get_output(s->bev)) < OUT_HIGH;
}

int
smpp_session_submit(struct smpp_session *s, const struct smpp_submit *sm, uint64_t cookie)
{
	uint8_t buf[SMPP_OUT_MAX];

	if (!smpp_session_can_submit(s))
		return -1;
	uint32_t seq = next_seq(s);
	int len = smpp_codec_encode_submit(buf, sizeof buf, seq, sm);
	if (len < 0)
		return -2;
	struct slot *sl = NULL;
	for (int i = 0; i < s->win_size && sl == NULL; i++)
		if (!s->win[i].used)
			sl = &s->win[i];
	if (sl == NULL || send_raw(s, buf, len) != 0)
		return -1;
	sl->used = true;
	sl->seq = seq;
	sl->cmd = SMPP_SUBMIT_SM;
	sl->cookie = cookie;
	s->win_used++;
	arm(sl->timer, s->conf->response_timeout * 1000);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Timers                                                                  */

static void
enq_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smpp_session *s = arg;

	s->in_cb++;
	s->enq.used = false;
	disconnect(s, "silent link: no enquire_link_resp");
	s->in_cb--;
}

static void
enq_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smpp_session *s = arg;
	uint8_t b[32];

	if (s->state != SMPP_ST_BOUND || s->enq.used)
		return;
	s->enq.seq = next_seq(s);
	s->enq.used = true;
	send_raw(s, b, smpp_codec_encode_enquire_link(b, sizeof b, s->enq.seq));
	arm(s->enq.timer, s->conf->response_timeout * 1000);
}

static void
state_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smpp_session *s = arg;

	s->in_cb++;
	switch (s->state) {
	case SMPP_ST_CONNECTING:
		disconnect(s, "connect timeout");
		break;
	case SMPP_ST_BINDING:
		disconnect(s, "no bind_resp");
		break;
	case SMPP_ST_UNBINDING:
		disconnect(s, "stop deadline reached");
		break;
	case SMPP_ST_WAITING:
		start_connect(s);
		break;
	default:
		break;
	}
	s->in_cb--;
}

static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smpp_session *s = arg;

	if (s->free_pending && s->in_cb == 0) {
		s->free_pending = false;
		smpp_session_free(s);
	}
}

/* ---------------------------------------------------------------------- */
/* Connection                                                              */

/* Next reconnect delay in ms: exponential, capped, with jitter (50-100 %). */
static int
backoff_ms(struct smpp_session *s)
{
	int d = s->backoff;
	int ms = d * 500 + (int)(rnd(s) % (uint32_t)(d * 500 + 1));

	s->backoff = d * 2 > s->conf->reconnect_max ? s->conf->reconnect_max : d * 2;
	return ms;
}

/* A lingering connection is done (flushed, failed or timed out): freed. */
static void
linger_end(struct smpp_session *s, struct bufferevent *bev)
{
	for (int i = 0; i < s->nlingering; i++) {
		if (s->lingering[i] == bev) {
			s->lingering[i] = s->lingering[--s->nlingering];
			break;
		}
	}
	bufferevent_free(bev);
}

static void
linger_write_cb(struct bufferevent *bev, void *arg)
{
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		linger_end(arg, bev);
}

static void
linger_event_cb(struct bufferevent *bev, short what, void *arg)
{
	linger_end(arg, bev);
}

/*
 * A detached connection: lets it write what it holds (a last resp, within
 * 2 s) before it is freed; at most LINGER_MAX at a time, the oldest freed
 * first. One that cannot write any more is freed now: after a failed write libevent
 * disables writing, so no callback (not even the timeout) would ever come.
 */
static void
linger(struct smpp_session *s, struct bufferevent *bev)
{
	struct timeval tv = {2, 0};

	bufferevent_disable(bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0 ||
	    !(bufferevent_get_enabled(bev) & EV_WRITE)) {
		bufferevent_free(bev);
		return;
	}
	if (s->nlingering == LINGER_MAX)
		linger_end(s, s->lingering[0]);
	s->lingering[s->nlingering++] = bev;
	bufferevent_setcb(bev, NULL, linger_write_cb, linger_event_cb, s);
	bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
	bufferevent_set_timeouts(bev, NULL, &tv);
}

/* The single exit of a connection: frees it, fails the window, moves on. */
static void
disconnect(struct smpp_session *s, const char *why)
{
	if (s->bev != NULL) {
		log_warn(MOD, "%s: closing connection: %s", s->name, why);
		linger(s, s->bev);
		s->bev = NULL;
	}
	s->conn_id = 0;
	evtimer_del(s->enq_timer);
	evtimer_del(s->state_timer);
	window_fail_all(s);
	if (s->stopping) {
		enter_state(s, SMPP_ST_CLOSED);
		return;
	}
	int ms = backoff_ms(s);
	enter_state(s, SMPP_ST_WAITING);
	log_info(MOD, "%s: reconnecting in %d ms", s->name, ms);
	arm(s->state_timer, ms);
}

static void
send_bind(struct smpp_session *s)
{
	static const uint32_t cmds[] = {SMPP_BIND_TRANSCEIVER, SMPP_BIND_TRANSMITTER,
	                                SMPP_BIND_RECEIVER};
	struct smpp_bind b = {cmds[s->role], s->conf->system_id, s->conf->password,
	                      s->conf->system_type};
	uint8_t buf[128];

	s->bind_seq = next_seq(s);
	s->unbind_seq = 0;
	if (send_raw(s, buf, smpp_codec_encode_bind(buf, sizeof buf, s->bind_seq, &b)) != 0) {
		disconnect(s, "cannot encode bind");
		return;
	}
	enter_state(s, SMPP_ST_BINDING);
	arm(s->state_timer, s->conf->response_timeout * 1000);
}

static void tls_log_error(struct smpp_session *s);

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smpp_session *s = arg;

	s->in_cb++;
	if (what & BEV_EVENT_CONNECTED) {
		/* PDUs are small and answered one by one: without TCP_NODELAY each
		 * write can wait for the peer's delayed ACK (measured: 3x slower) */
		int one = 1;
		evutil_socket_t fd = bufferevent_getfd(bev);
		if (fd >= 0)
			(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		log_debug(MOD, "%s: connected", s->name);
		send_bind(s);
	} else if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
		int err = EVUTIL_SOCKET_ERROR();
		if (s->ssl_ctx != NULL)
			tls_log_error(s);
		disconnect(s, (what & BEV_EVENT_EOF) ? "closed by peer"
		              : err != 0             ? evutil_socket_error_to_string(err)
		                                     : "TLS or I/O error");
	}
	s->in_cb--;
}

/* ---------------------------------------------------------------------- */
/* Inbound PDUs                                                            */

static void
on_bind_resp(struct smpp_session *s, const struct smpp_hdr *h, const uint8_t *p)
{
	char sysid[66];

	if (s->state != SMPP_ST_BINDING || h->seq != s->bind_seq) {
		log_warn(MOD, "%s: unexpected %s seq %u", s->name, smpp_codec_cmd_name(h->cmd),
		         h->seq);
		return;
	}
	if (h->status != SMPP_ROK) {
		log_error(MOD, "%s: bind refused, status 0x%02x", s->name, h->status);
		disconnect(s, "bind refused");
		return;
	}
	(void)smpp_codec_decode_resp(p, h->len, sysid, sizeof sysid);
	evtimer_del(s->state_timer);
	s->backoff = s->conf->reconnect_min;
	log_info(MOD, "%s: bound to SMSC '%s'", s->name, sysid);
	enter_state(s, SMPP_ST_BOUND);
	arm(s->enq_timer, s->conf->enquire_link * 1000);
	if (s->state == SMPP_ST_BOUND && s->cbs.room != NULL)
		s->cbs.room(s->arg, s);
}

static void
on_submit_resp(struct smpp_session *s, const struct smpp_hdr *h, const uint8_t *p)
{
	char id[66];
	struct slot *sl = slot_find(s, h->seq);

	if (sl == NULL) {
		log_warn(MOD, "%s: %s for unknown seq %u (late?)", s->name,
		         smpp_codec_cmd_name(h->cmd), h->seq);
		return;
	}
	if (h->status == SMPP_ROK && smpp_codec_decode_resp(p, h->len, id, sizeof id) != 0)
		log_hex(L_WARN, MOD, "submit_sm_resp with a bad message_id", p, h->len);
	slot_done(s, sl, h->status, h->status == SMPP_ROK ? id : "");
}

static void
on_inbound(struct smpp_session *s, const struct smpp_hdr *h, const uint8_t *p)
{
	struct smpp_inbound in;

	if (s->state != SMPP_ST_BOUND && s->state != SMPP_ST_UNBINDING) {
		send_resp(s, h->cmd, h->seq, SMPP_RINVBNDSTS);
		return;
	}
	uint32_t st = smpp_codec_decode_inbound(p, h->len, &in);
	if (st != SMPP_ROK) {
		log_warn(MOD, "%s: malformed %s seq %u, answering 0x%02x", s->name,
		         smpp_codec_cmd_name(h->cmd), h->seq, st);
		log_hex(L_WARN, MOD, "malformed PDU", p, h->len);
		send_resp(s, h->cmd, h->seq, st);
		return;
	}
	if (s->cbs.inbound != NULL)
		s->cbs.inbound(s->arg, s, &in);
}

static void
on_response(struct smpp_session *s, const struct smpp_hdr *h, const uint8_t *p)
{
	switch (h->cmd) {
	case SMPP_BIND_TRANSCEIVER | SMPP_RESP_BIT:
	case SMPP_BIND_TRANSMITTER | SMPP_RESP_BIT:
	case SMPP_BIND_RECEIVER | SMPP_RESP_BIT:
		on_bind_resp(s, h, p);
		break;
	case SMPP_ENQUIRE_LINK | SMPP_RESP_BIT:
		if (s->enq.used && h->seq == s->enq.seq) {
			s->enq.used = false;
			evtimer_del(s->enq.timer);
			arm(s->enq_timer, s->conf->enquire_link * 1000);
		}
		break;
	case SMPP_UNBIND | SMPP_RESP_BIT:
		if (s->state == SMPP_ST_UNBINDING)
			disconnect(s, "unbound");
		break;
	case SMPP_GENERIC_NACK:
		if (s->state == SMPP_ST_BINDING && h->seq == s->bind_seq)
			on_bind_resp(s, h, p);
		else if (slot_find(s, h->seq) != NULL)
			on_submit_resp(s, h, p);
		else
			log_warn(MOD, "%s: generic_nack 0x%02x seq %u", s->name, h->status, h->seq);
		break;
	default:
		on_submit_resp(s, h, p);
		break;
	}
}

static void
on_pdu(struct smpp_session *s, const struct smpp_hdr *h, const uint8_t *p)
{
	log_debug(MOD, "%s: <- %s seq %u status 0x%02x len %u", s->name,
	          smpp_codec_cmd_name(h->cmd), h->seq, h->status, h->len);
	if (h->cmd & SMPP_RESP_BIT) {
		on_response(s, h, p);
		return;
	}
	switch (h->cmd) {
	case SMPP_ENQUIRE_LINK:
		send_resp(s, h->cmd, h->seq, SMPP_ROK);
		break;
	case SMPP_UNBIND:
		send_resp(s, h->cmd, h->seq, SMPP_ROK);
		disconnect(s, "peer unbound");
		break;
	case SMPP_DELIVER_SM:
	case SMPP_DATA_SM:
		on_inbound(s, h, p);
		break;
	case SMPP_ALERT_NOTIFICATION:
	case SMPP_OUTBIND:
		log_info(MOD, "%s: ignoring %s", s->name, smpp_codec_cmd_name(h->cmd));
		break;
	default:
		log_warn(MOD, "%s: unknown command 0x%08x seq %u", s->name, h->cmd, h->seq);
		log_hex(L_WARN, MOD, "unknown PDU", p, h->len);
		send_resp(s, h->cmd, h->seq, SMPP_RINVCMDID);
		break;
	}
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct smpp_session *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct smpp_hdr h;
	uint8_t hb[SMPP_HDR_LEN];

	s->in_cb++;
	while (s->bev == bev && evbuffer_copyout(in, hb, sizeof hb) == (ev_ssize_t)sizeof hb) {
		enum smpp_frame f = smpp_codec_frame(hb, sizeof hb, (uint32_t)s->conf->max_pdu, &h);
		if (f == SMPP_FRAME_BAD) {
			pdu_stats_count_invalid(s->conf->name, PDU_STATS_IN);
			log_hex(L_WARN, MOD, "bad command_length", hb, sizeof hb);
			send_resp(s, SMPP_GENERIC_NACK, h.seq, SMPP_RINVCMDLEN);
			disconnect(s, "command_length out of bounds");
			break;
		}
		if (evbuffer_get_length(in) < h.len)
			break;
		const uint8_t *p = evbuffer_pullup(in, h.len);
		if (p == NULL)
			break;
		pdu_stats_count(s->conf->name, PDU_STATS_IN, h.cmd, h.status);
		on_pdu(s, &h, p);
		if (s->bev == bev)
			evbuffer_drain(in, h.len);
	}
	s->in_cb--;
	if (s->free_pending)
		event_active(s->reap, EV_TIMEOUT, 0);
}

/* ---------------------------------------------------------------------- */
/* TLS                                                                     */

static void
tls_log_error(struct smpp_session *s)
{
	unsigned long e;
	char buf[256];

	while (s->bev != NULL && (e = bufferevent_get_openssl_error(s->bev)) != 0) {
		ERR_error_string_n(e, buf, sizeof buf);
		log_error(MOD, "%s: TLS: %s", s->name, buf);
	}
	/* say why a certificate was refused (expired, host mismatch, ...) */
	SSL *ssl = s->bev != NULL ? bufferevent_openssl_get_ssl(s->bev) : NULL;
	long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
	if (vr != X509_V_OK)
		log_error(MOD, "%s: TLS: server certificate refused: %s", s->name,
		          X509_verify_cert_error_string(vr));
}

static SSL_CTX *
tls_ctx_new(const struct smsc_conf *c)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (c->tls_verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		int ok = c->tls_ca_file[0] != '\0'
		             ? SSL_CTX_load_verify_locations(ctx, c->tls_ca_file, NULL)
		             : SSL_CTX_set_default_verify_paths(ctx);
		if (ok != 1)
			goto fail;
	}
	if (c->tls_cert_file[0] != '\0') {
		if (SSL_CTX_use_certificate_chain_file(ctx, c->tls_cert_file) != 1 ||
		    SSL_CTX_use_PrivateKey_file(
		        ctx, c->tls_key_file[0] ? c->tls_key_file : c->tls_cert_file,
		        SSL_FILETYPE_PEM) != 1)
			goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* A new SSL for one connection: SNI, and host name / IP verification. */
static SSL *
tls_new(struct smpp_session *s)
{
	SSL *ssl = SSL_new(s->ssl_ctx);
	const char *host = s->conf->host;
	struct in6_addr a6;

	if (ssl == NULL)
		return NULL;
	bool is_ip = inet_pton(AF_INET, host, &a6) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
	if (!is_ip)
		SSL_set_tlsext_host_name(ssl, host);
	if (s->conf->tls_verify) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
		int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, host)
		               : X509_VERIFY_PARAM_set1_host(vp, host, 0);
		if (ok != 1) {
			SSL_free(ssl);
			return NULL;
		}
	}
	return ssl;
}

/* ---------------------------------------------------------------------- */
/* Life cycle                                                              */

static void
start_connect(struct smpp_session *s)
{
	int opts = BEV_OPT_CLOSE_ON_FREE;

	if (s->ssl_ctx != NULL) {
		SSL *ssl = tls_new(s);
		s->bev = ssl == NULL ? NULL
		                     : bufferevent_openssl_socket_new(
		                           s->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, opts);
		if (s->bev == NULL && ssl != NULL)
			SSL_free(ssl);
		if (s->bev != NULL)
			bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	} else {
		s->bev = bufferevent_socket_new(s->base, -1, opts);
	}
	s->conn_id = next_conn_id++;
	enter_state(s, SMPP_ST_CONNECTING);
	if (s->bev == NULL) {
		disconnect(s, "cannot create connection");
		return;
	}
	bufferevent_setcb(s->bev, read_cb, NULL, event_cb, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, (size_t)s->conf->max_pdu * 4);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	arm(s->state_timer, s->conf->response_timeout * 1000);
	/* A numeric address resolved in smpp_session_new(): never blocks. */
	if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&s->addr, (int)s->addrlen) != 0)
		disconnect(s, "connect failed");
}

/* getaddrinfo() at start-up, before the event loop runs (may block). */
static int
resolve(struct smpp_session *s)
{
	struct addrinfo hints, *res = NULL;
	char port[16];

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof port, "%d", s->conf->port);
	int rc = getaddrinfo(s->conf->host, port, &hints, &res);
	if (rc != 0 || res == NULL) {
		log_error(MOD, "%s: cannot resolve %s: %s", s->name, s->conf->host,
		          gai_strerror(rc));
		return -1;
	}
	memcpy(&s->addr, res->ai_addr, res->ai_addrlen);
	s->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static int
alloc_timers(struct smpp_session *s)
{
	s->win = calloc((size_t)s->win_size, sizeof *s->win);
	if (s->win == NULL)
		return -1;
	for (int i = 0; i < s->win_size; i++) {
		s->win[i].s = s;
		s->win[i].timer = evtimer_new(s->base, slot_timeout_cb, &s->win[i]);
		if (s->win[i].timer == NULL)
			return -1;
	}
	s->enq.s = s;
	s->enq.timer = evtimer_new(s->base, enq_timeout_cb, s);
	s->state_timer = evtimer_new(s->base, state_timer_cb, s);
	s->enq_timer = evtimer_new(s->base, enq_tick_cb, s);
	s->reap = event_new(s->base, -1, 0, reap_cb, s);
	return s->enq.timer && s->state_timer && s->enq_timer && s->reap ? 0 : -1;
}

struct smpp_session *
smpp_session_new(struct event_base *base, const struct smsc_conf *conf, enum smpp_role role,
                 const struct smpp_session_cbs *cbs, void *arg)
{
	static const char *const roles[] = {"trx", "tx", "rx"};
	struct smpp_session *s = calloc(1, sizeof *s);

	if (s == NULL)
		return NULL;
	s->base = base;
	s->conf = conf;
	s->role = role;
	s->cbs = *cbs;
	s->arg = arg;
	snprintf(s->name, sizeof s->name, "%s/%s", conf->name, roles[role]);
	s->next_seq = 1;
	s->win_size = conf->window > 0 ? conf->window : 1;
	s->backoff = conf->reconnect_min > 0 ? conf->reconnect_min : 1;
	s->rnd = (uint32_t)time(NULL) ^ (uint32_t)(uintptr_t)s ^ 0x9e3779b9u;
	if (s->rnd == 0)
		s->rnd = 1;
	if (alloc_timers(s) != 0 || resolve(s) != 0)
		goto fail;
	if (conf->tls && (s->ssl_ctx = tls_ctx_new(conf)) == NULL) {
		log_error(MOD, "%s: cannot set up TLS (CA %s, cert %s)", s->name,
		          conf->tls_ca_file[0] ? conf->tls_ca_file : "system",
		          conf->tls_cert_file[0] ? conf->tls_cert_file : "none");
		goto fail;
	}
	return s;
fail:
	smpp_session_free(s);
	return NULL;
}

void
smpp_session_free(struct smpp_session *s)
{
	if (s == NULL)
		return;
	if (s->in_cb > 0) {
		s->free_pending = true;
		s->cbs = (struct smpp_session_cbs){0};
		event_active(s->reap, EV_TIMEOUT, 0);
		return;
	}
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	while (s->nlingering > 0)
		bufferevent_free(s->lingering[--s->nlingering]);
	for (int i = 0; s->win != NULL && i < s->win_size; i++)
		if (s->win[i].timer != NULL)
			event_free(s->win[i].timer);
	free(s->win);
	if (s->enq.timer)
		event_free(s->enq.timer);
	if (s->state_timer)
		event_free(s->state_timer);
	if (s->enq_timer)
		event_free(s->enq_timer);
	if (s->reap)
		event_free(s->reap);
	SSL_CTX_free(s->ssl_ctx);
	free(s);
}

void
smpp_session_start(struct smpp_session *s)
{
	if (s->state != SMPP_ST_IDLE && s->state != SMPP_ST_CLOSED)
		return;
	s->stopping = false;
	start_connect(s);
}

void
smpp_session_stop(struct smpp_session *s, int deadline_ms)
{
	s->stopping = true;
	if (s->state != SMPP_ST_BOUND) {
		if (s->state == SMPP_ST_CLOSED || s->state == SMPP_ST_UNBINDING)
			return;
		evtimer_del(s->state_timer);
		if (s->state == SMPP_ST_IDLE || s->state == SMPP_ST_WAITING)
			enter_state(s, SMPP_ST_CLOSED);
		else
			disconnect(s, "stopping");
		return;
	}
	evtimer_del(s->enq_timer);
	enter_state(s, SMPP_ST_UNBINDING);
	arm(s->state_timer, deadline_ms > 0 ? deadline_ms : 1);
	if (s->win_used == 0)
		send_unbind(s);
}

int
smpp_session_respond(struct smpp_session *s, uint64_t conn_id, uint32_t cmd, uint32_t seq,
                     uint32_t status)
{
	uint8_t b[32];

	if (s->bev == NULL || conn_id != s->conn_id || conn_id == 0)
		return -1;
	return send_raw(s, b, smpp_codec_encode_resp(b, sizeof b, cmd, seq, status));
}

uint64_t
smpp_session_conn_id(const struct smpp_session *s)
{
	return s->conn_id;
}

enum smpp_state
smpp_session_state(const struct smpp_session *s)
{
	return s->state;
}

enum smpp_role
smpp_session_role(const struct smpp_session *s)
{
	return s->role;
}

int
smpp_session_window_used(const struct smpp_session *s)
{
	return s->win_used;
}

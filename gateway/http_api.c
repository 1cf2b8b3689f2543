/*
 * http_api.c — skillgate's HTTP side on the daemon's event loop (evhttp):
 * /healthz, /metrics, the JSON API under /api/v1 (§4.1) and the dashboard's
 * static files (§4.4). TLS through bufferevent_openssl when [http] tls_cert
 * is set.
 *
 * Every request that needs the database becomes a struct hreq. Its queries
 * go through store_query() (never blocking libpq); the request remembers
 * the id of the query in flight, and when the client's connection goes away
 * first the close callback cancels that query (store_cancel guarantees no
 * callback) and frees the hreq, so no completion ever touches a freed
 * request. Replies are JSON; errors are {"error": "...", "detail": "..."}.
 *
 * Bearer tokens are hashed (SHA-256) and looked up in api_tokens; valid
 * hashes are cached for HTTP_TOKEN_TTL seconds and compared with
 * CRYPTO_memcmp. Failed authentications are counted per client address and
 * answered 429 past HTTP_AUTH_FAIL_MAX a minute; the token is never logged.
 */
#include "http_api.h"
#include "ussd.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <sys/queue.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "gateway.h"
#include "household_csv.h"
#include "http_parse.h"
#include "log.h"
#include "msisdn.h"
#include "pdu_stats.h"
#include "pipeline.h"
#include "store.h"
#include "strbuf.h"

#define HTTP_TOKEN_TTL 10        /* seconds a valid token stays cached (revocation delay) */
#define HTTP_TOKEN_CACHE 64      /* cached tokens */
#define HTTP_AUTH_FAIL_MAX 10    /* failed authentications per address per window */
#define HTTP_AUTH_FAIL_WINDOW 60 /* seconds */
#define HTTP_AUTH_SLOTS 256      /* addresses tracked */
#define HTTP_MAX_ERRORS 1000     /* per-row import errors listed in a reply */

enum role { ROLE_NONE = 0, ROLE_VIEWER, ROLE_PARTNER, ROLE_STAFF, ROLE_ADMIN };

struct tok_entry {
	unsigned char hash[32];
	enum role role;
	char name[64];
	time_t expires;
};

struct fail_entry {
	char addr[64];
	time_t since;
	int count;
};

struct hreq;
typedef void (*hreq_fn)(struct hreq *r);

struct http_api {
	struct event_base *base;
	const struct sg_config *cfg;
	struct store *st;
	struct gateway *gw;
	struct pipeline *pipe;
	const struct content *content;
	struct evhttp *http;
	struct evhttp_bound_socket *sock;
	SSL_CTX *ssl;
	char webroot[PATH_MAX]; /* realpath of the dashboard dir, "" if none */
	struct hreq *active;    /* requests waiting for the database */
	uint64_t next_seq;
	struct ussd *ussd; /* the USSD dialogs, for POST /ussd */
	struct tok_entry toks[HTTP_TOKEN_CACHE];
	struct fail_entry fails[HTTP_AUTH_SLOTS];
	uint64_t replies[6]; /* by status class 1xx..5xx (index 1..5) */
	uint64_t auth_failures;
	struct hconn *conns;  /* every open client connection (see hconn) */
	uint64_t slow_closed; /* connections cut by the header deadline */
	uint64_t too_large;   /* requests refused 413 */
};

/* One API request waiting for the database. */
struct hreq {
	struct hreq *next, *prev;
	struct http_api *h;
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	struct hconn *conn; /* its tracked connection, NULL if not found */
	bool own_closecb;   /* not tracked: r is the evcon's close callback */
	uint64_t qid;       /* query in flight, 0 if none */
	uint64_t seq;       /* request id, for completions that may outlive it */
	enum role need;     /* role the endpoint requires */
	enum role role;     /* role of the token */
	char who[64];       /* token name (never the token) */
	char addr[64];      /* client address */
	unsigned char hash[32];
	hreq_fn handler; /* runs once authenticated */
	char arg[64];    /* path parameter */
	char *body;      /* copied request body (NUL-terminated), or NULL */
	size_t body_len;
	json_t *json;      /* parsed body, for handlers that keep it */
	int imported_errs; /* import: CSV errors kept in errs */
	json_t *errs;      /* import: [{"line","error"}] from the parser */
	int nerr_total;
	struct strbuf a[8]; /* import: array literals of the valid rows */
	int nrows;
};

static void http_gen_cb(struct evhttp_request *req, void *arg);
static void hreq_free(struct hreq *r);
static void hreq_conn_closed(struct evhttp_connection *evcon, void *arg);
static void hconn_free(struct hconn *c);
static struct hconn *hconn_find(struct http_api *h, struct evhttp_connection *evcon);
static void hconn_attach(struct hconn *c, struct evhttp_connection *evcon);
static void http_mark_reply(struct http_api *h, struct evhttp_request *req);
static void hreq_attach(struct hreq *r);
static void hreq_detach(struct hreq *r);

/* ------------------------------------------------------------------ */
/* Replies                                                             */

static void
http_count(struct http_api *h, int code)
{
	int c = code / 100;
	if (c >= 1 && c <= 5)
		h->replies[c]++;
}

static void
http_send(struct http_api *h, struct evhttp_request *req, int code, const char *ctype,
          const char *body, size_t len)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	evhttp_add_header(out, "Content-Type", ctype);
	evhttp_add_header(out, "Cache-Control", "no-store");
	evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
	struct evbuffer *b = evbuffer_new();
	if (b == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	if (len > 0)
		evbuffer_add(b, body, len);
	http_count(h, code);
	http_mark_reply(h, req);
	evhttp_send_reply(req, code, NULL, b);
	evbuffer_free(b);
}

static void
http_send_json(struct http_api *h, struct evhttp_request *req, int code, const char *json)
{
	http_send(h, req, code, "application/json; charset=utf-8", json, strlen(json));
}

static void
http_send_error(struct http_api *h, struct evhttp_request *req, int code, const char *error,
                const char *detail)
{
	json_t *o = json_pack("{s:s,s:s}", "error", error, "detail", detail ? detail : "");
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	http_send_json(h, req, code, s ? s : "{\"error\":\"internal\",\"detail\":\"\"}");
	free(s);
	json_decref(o);
}

/* Detaches r from its connection, replies and frees r. */
static void
hreq_reply(struct hreq *r, int code, const char *json)
{
	hreq_detach(r);
	http_send_json(r->h, r->req, code, json);
	hreq_free(r);
}

static void
hreq_error(struct hreq *r, int code, const char *error, const char *detail)
{
	hreq_detach(r);
	http_send_error(r->h, r->req, code, error, detail);
	hreq_free(r);
}

static void
hreq_reply_obj(struct hreq *r, int code, json_t *o)
{
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	if (s == NULL) {
		json_decref(o);
		hreq_error(r, 500, "internal", "cannot encode the reply");
		return;
	}
	hreq_reply(r, code, s);
	free(s);
	json_decref(o);
}

/* A database failure: 503 when the database is unreachable, 422 for values
 * PostgreSQL rejected (bad timestamps...), else 500. */
static void
hreq_db_error(struct hreq *r, const char *err)
{
	if (err != NULL && (strncmp(err, "22", 2) == 0 || strncmp(err, "23514", 5) == 0)) {
		const char *msg = strstr(err, ": ");
		hreq_error(r, 422, "invalid", msg ? msg + 2 : err);
	} else if (err != NULL && isdigit((unsigned char)err[0]) && err[5] == ':') {
		log_error("http", "database error: %s", err);
		hreq_error(r, 500, "internal", "database error");
	} else {
		hreq_error(r, 503, "database_unavailable", "the database did not answer");
	}
}

/* ------------------------------------------------------------------ */
/* Connections: header deadline, JSON for libevent's own errors         */

/*
 * libevent 2.1's evhttp has no new-request hook (evhttp_set_newreqcb is
 * 2.2), and its timeouts are inactivity timeouts. So every connection's
 * bufferevent is made here (evhttp_set_bevcb) and watched:
 *
 *  - an evbuffer callback on its input sees every byte before evhttp parses
 *    it and notes when the request line and headers are complete (an empty
 *    line). Until then the connection is in HCONN_HEAD and a timer bounds
 *    it: the headers must be complete within [http] timeout seconds of the
 *    connection opening or of the previous response having been written.
 *    Past that the connection is closed (a 408 JSON reply first on plain
 *    HTTP) through evhttp's own timeout path, and the event is logged. The
 *    body is not under this deadline: it is bounded by [http] max_body and
 *    by the inactivity timeout, so a large CSV import that keeps sending is
 *    never cut.
 *  - an evbuffer callback on its output turns the HTML error pages evhttp
 *    writes by itself (413 over max_body, Content-Length or chunked; 400 on
 *    malformed requests; 405/501 on unknown methods) into our JSON
 *    {"error","detail"} with the same status and Connection: close, before
 *    the bytes reach the socket. It also notes when one of our replies has
 *    been written out, which starts the deadline for the next request.
 *
 * An hconn holds a reference on its bufferevent so that it can tell, in
 * the one loop pass before it is attached to the evhttp connection (the
 * bufferevent's callback argument, set by evhttp after the bevcb returns),
 * whether evhttp already freed it. Once attached, the connection's close
 * callback frees the hconn, and forwards to the API request waiting on it.
 */
enum hconn_state { HCONN_HEAD, HCONN_BODY };

struct hconn {
	struct hconn *next, *prev;
	struct http_api *h;
	struct bufferevent *bev;         /* one reference held */
	struct evhttp_connection *evcon; /* NULL until attached */
	struct event *timer;             /* attach, then the header deadline */
	struct evbuffer_cb_entry *in_cb, *out_cb;
	struct hreq *req; /* API request waiting on it, or NULL */
	enum hconn_state state;
	bool reply_pending;   /* one of our replies is being written */
	bool rewriting;       /* re-entrancy guard of hconn_out_cb */
	int line_len, nlines; /* header scanner */
	size_t head_bytes;    /* bytes of the current request head */
	struct timeval since; /* start of the current deadline */
	char addr[64];
};

#define HCONN_ERR_MAX 2048 /* longest evhttp error page rewritten */

static void
hconn_arm(struct hconn *c, int secs)
{
	struct timeval tv = {secs, 0};
	event_add(c->timer, &tv);
}

static void
hconn_head_start(struct hconn *c)
{
	c->state = HCONN_HEAD;
	c->line_len = 0;
	c->nlines = 0;
	c->head_bytes = 0;
	event_base_gettimeofday_cached(c->h->base, &c->since);
	if (c->evcon != NULL)
		hconn_arm(c, c->h->cfg->http_timeout);
}

/* Feeds bytes of the request head to the scanner; true once an empty line
 * ends it (lines end in LF or CRLF, as evhttp reads them). */
static bool
hconn_scan(struct hconn *c, const unsigned char *p, size_t n, size_t *used)
{
	for (size_t i = 0; i < n; i++) {
		c->head_bytes++;
		if (p[i] == '\n') {
			if (c->line_len == 0 && c->nlines > 0) {
				*used = i + 1;
				return true;
			}
			if (c->line_len > 0)
				c->nlines++;
			c->line_len = 0;
		} else if (p[i] != '\r') {
			c->line_len++;
		}
	}
	*used = n;
	return false;
}

/* Scans buf from offset off while the connection is reading a head. */
static void
hconn_scan_from(struct hconn *c, struct evbuffer *buf, size_t off)
{
	size_t len = evbuffer_get_length(buf);
	while (c->state == HCONN_HEAD && off < len) {
		struct evbuffer_ptr pos;
		struct evbuffer_iovec v[8];
		if (evbuffer_ptr_set(buf, &pos, off, EVBUFFER_PTR_SET) != 0)
			return;
		int nv = evbuffer_peek(buf, (ev_ssize_t)(len - off), &pos, v, 8);
		if (nv <= 0)
			return;
		for (int i = 0; i < nv && i < 8 && c->state == HCONN_HEAD; i++) {
			size_t l = v[i].iov_len, used = 0;
			if (l > len - off)
				l = len - off;
			if (hconn_scan(c, v[i].iov_base, l, &used)) {
				c->state = HCONN_BODY;
				event_del(c->timer);
			}
			off += used;
		}
	}
}

static void
hconn_in_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct hconn *c = arg;
	if (c->state != HCONN_HEAD || info->n_added == 0)
		return;
	size_t len = evbuffer_get_length(buf);
	hconn_scan_from(c, buf, info->n_added <= len ? len - info->n_added : 0);
}

static const char *
hconn_error_name(int code)
{
	switch (code) {
	case 400:
		return "bad_request";
	case 405:
		return "method_not_allowed";
	case 408:
		return "request_timeout";
	case 413:
		return "too_large";
	case 417:
		return "expectation_failed";
	case 501:
		return "not_implemented";
	case 503:
		return "unavailable";
	default:
		return code >= 500 ? "internal" : "bad_request";
	}
}

/* Writes the JSON error reply for code (with Connection: close) to out. */
static void
hconn_json_error(struct evbuffer *out, const char *status_line, int code, const char *detail)
{
	json_t *o = json_pack("{s:s,s:s}", "error", hconn_error_name(code), "detail", detail);
	char *js = o ? json_dumps(o, JSON_COMPACT) : NULL;
	const char *body = js ? js : "{\"error\":\"internal\",\"detail\":\"\"}";
	evbuffer_add_printf(out,
	                    "%s\r\nContent-Type: application/json; charset=utf-8\r\n"
	                    "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
	                    "Connection: close\r\nContent-Length: %zu\r\n\r\n%s",
	                    status_line, strlen(body), body);
	free(js);
	json_decref(o);
}

/*
 * If out holds exactly one of evhttp's own HTML error pages (evhttp_send_error:
 * "<HTML><HEAD>\n<TITLE>..." with Content-Type: text/html), replaces it with
 * our JSON error of the same status. Our replies always carry a charset, so
 * they never match.
 */
static int hconn_rewrite_page(struct hconn *c, struct evbuffer *out, char *b, size_t len);

static void
hconn_rewrite_error(struct hconn *c, struct evbuffer *out)
{
	size_t len = evbuffer_get_length(out);
	if (len < 16 || len > HCONN_ERR_MAX)
		return;
	char b[HCONN_ERR_MAX + 1];
	/* evhttp's failure path leaves the output's start frozen (read-only
	 * to us): thaw it for the rewrite, freeze it again after */
	bool frozen = false;
	if (evbuffer_copyout(out, b, len) != (ev_ssize_t)len) {
		evbuffer_unfreeze(out, 1);
		frozen = true;
		if (evbuffer_copyout(out, b, len) != (ev_ssize_t)len) {
			evbuffer_freeze(out, 1);
			return;
		}
	}
	b[len] = '\0';
	if (hconn_rewrite_page(c, out, b, len) != 0)
		log_debug("http", "%s: evhttp reply of %zu bytes left as is", c->addr, len);
	if (frozen)
		evbuffer_freeze(out, 1);
}

/* hconn_rewrite_error() on b, a copy of out's len bytes: 0 when done or
 * when out is not an evhttp error page, -1 if it could not be rewritten. */
static int
hconn_rewrite_page(struct hconn *c, struct evbuffer *out, char *b, size_t len)
{
	static const char tail[] = "</BODY></HTML>\n";
	static const char head[] = "\r\n\r\n<HTML><HEAD>\n<TITLE>";
	if (strncmp(b, "HTTP/1.", 7) != 0 || len < sizeof tail ||
	    memcmp(b + len - (sizeof tail - 1), tail, sizeof tail - 1) != 0)
		return 0;
	char *hb = strstr(b, head);
	char *eol = strstr(b, "\r\n");
	if (hb == NULL || eol == NULL || !strstr(b, "\r\nContent-Type: text/html\r\n"))
		return 0;
	int code = (int)strtol(b + 9, NULL, 10);
	if (code < 400 || code > 599)
		return 0;
	*eol = '\0'; /* b is now the status line */
	struct http_api *h = c->h;
	char detail[160];
	if (code == 413 && c->state == HCONN_HEAD) {
		snprintf(detail, sizeof detail, "the request headers are over the limit");
		log_warn("http", "%s: request headers too large: refused (413)", c->addr);
	} else if (code == 413) {
		snprintf(detail, sizeof detail,
		         "the request body is over [http] max_body (%d bytes)",
		         h->cfg->http_max_body);
		log_warn("http", "%s: request body over [http] max_body (%d bytes): refused (413)",
		         c->addr, h->cfg->http_max_body);
	} else {
		snprintf(detail, sizeof detail, "%.150s", strlen(b) > 13 ? b + 13 : "");
		log_info("http", "%s: malformed request: %s", c->addr, b);
	}
	if (code == 413)
		h->too_large++;
	http_count(h, code);
	c->rewriting = true;
	int rc = evbuffer_drain(out, len);
	if (rc == 0)
		hconn_json_error(out, b, code, detail);
	c->rewriting = false;
	return rc;
}

static void
hconn_out_cb(struct evbuffer *out, const struct evbuffer_cb_info *info, void *arg)
{
	struct hconn *c = arg;
	if (c->rewriting)
		return;
	if (info->n_added > 0 && info->orig_size + info->n_added <= HCONN_ERR_MAX + 1)
		hconn_rewrite_error(c, out);
	if (info->n_deleted > 0 && evbuffer_get_length(out) == 0 && c->reply_pending) {
		/* our reply is out: the next request (maybe already in) starts now */
		c->reply_pending = false;
		hconn_head_start(c);
		hconn_scan_from(c, bufferevent_get_input(c->bev), 0);
	}
}

/* The header deadline passed: 408 (plain HTTP), then evhttp's timeout path
 * closes the connection (and calls hconn_closed). */
static void
hconn_expire(struct hconn *c)
{
	struct http_api *h = c->h;
	h->slow_closed++;
	log_warn("http",
	         "%s: request headers not complete after %d s (%zu bytes): closing (slow client)",
	         c->addr, h->cfg->http_timeout, c->head_bytes);
	if (h->ssl == NULL) {
		struct evbuffer *e = evbuffer_new();
		if (e != NULL) {
			char d[96];
			snprintf(d, sizeof d, "the request headers did not arrive within %d s",
			         h->cfg->http_timeout);
			hconn_json_error(e, "HTTP/1.1 408 Request Timeout", 408, d);
			size_t n = evbuffer_get_length(e);
			const char *p = (const char *)evbuffer_pullup(e, -1);
			evutil_socket_t fd = bufferevent_getfd(c->bev);
			/* best effort, never blocking: a few hundred bytes into an
			 * idle socket's send buffer */
			if (p != NULL && fd >= 0 && send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
				log_debug("http", "%s: 408 not sent: %s", c->addr, strerror(errno));
			evbuffer_free(e);
		}
		http_count(h, 408);
	}
	bufferevent_trigger_event(c->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, 0);
	/* c is freed by now (hconn_closed) */
}

static void
hconn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct hconn *c = arg;
	if (c->req != NULL)
		hreq_conn_closed(evcon, c->req); /* frees the hreq, which detaches */
	hconn_free(c);
}

/* Ties c to its evhttp connection (idempotent). */
static void
hconn_attach(struct hconn *c, struct evhttp_connection *evcon)
{
	if (c->evcon != NULL)
		return;
	c->evcon = evcon;
	evhttp_connection_set_closecb(evcon, hconn_closed, c);
	char *host = NULL;
	ev_uint16_t port = 0;
	evhttp_connection_get_peer(evcon, &host, &port);
	snprintf(c->addr, sizeof c->addr, "%s", host ? host : "?");
}

static void
hconn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hconn *c = arg;
	if (c->evcon == NULL) {
		bufferevent_data_cb rcb = NULL;
		void *cbarg = NULL;
		bufferevent_getcb(c->bev, &rcb, NULL, NULL, &cbarg);
		if (rcb == NULL || cbarg == NULL) {
			/* evhttp already dropped it (our reference kept it) */
			hconn_free(c);
			return;
		}
		hconn_attach(c, cbarg);
	}
	if (c->state != HCONN_HEAD)
		return;
	struct timeval now;
	event_base_gettimeofday_cached(c->h->base, &now);
	long ms = (now.tv_sec - c->since.tv_sec) * 1000L + (now.tv_usec - c->since.tv_usec) / 1000;
	long limit = c->h->cfg->http_timeout * 1000L;
	if (ms + 5 >= limit) {
		hconn_expire(c);
		return;
	}
	struct timeval tv = {(limit - ms) / 1000, ((limit - ms) % 1000) * 1000};
	event_add(c->timer, &tv);
}

static struct hconn *
hconn_new(struct http_api *h, struct bufferevent *bev)
{
	struct hconn *c = calloc(1, sizeof *c);
	if (c == NULL)
		abort();
	c->h = h;
	c->bev = bev;
	bufferevent_incref(bev);
	snprintf(c->addr, sizeof c->addr, "?");
	c->timer = evtimer_new(h->base, hconn_timer_cb, c);
	c->in_cb = evbuffer_add_cb(bufferevent_get_input(bev), hconn_in_cb, c);
	c->out_cb = evbuffer_add_cb(bufferevent_get_output(bev), hconn_out_cb, c);
	if (c->timer == NULL || c->in_cb == NULL || c->out_cb == NULL)
		abort();
	hconn_head_start(c);
	/* attach as soon as evhttp has set the connection up */
	struct timeval zero = {0, 0};
	event_add(c->timer, &zero);
	c->next = h->conns;
	if (h->conns)
		h->conns->prev = c;
	h->conns = c;
	return c;
}

static void
hconn_free(struct hconn *c)
{
	struct http_api *h = c->h;
	if (c->req != NULL)
		c->req->conn = NULL;
	if (c->evcon != NULL)
		evhttp_connection_set_closecb(c->evcon, NULL, NULL);
	evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->in_cb);
	evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_cb);
	event_free(c->timer);
	bufferevent_decref(c->bev);
	if (c->prev)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
}

static struct hconn *
hconn_find(struct http_api *h, struct evhttp_connection *evcon)
{
	if (evcon == NULL)
		return NULL;
	struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
	for (struct hconn *c = h->conns; c; c = c->next)
		if (c->bev == bev) {
			hconn_attach(c, evcon);
			return c;
		}
	return NULL;
}

/* One of our replies is about to be queued on req's connection. */
static void
http_mark_reply(struct http_api *h, struct evhttp_request *req)
{
	struct hconn *c = hconn_find(h, evhttp_request_get_connection(req));
	if (c != NULL)
		c->reply_pending = true;
}

/* ------------------------------------------------------------------ */
/* Request objects                                                     */

static void
hreq_conn_closed(struct evhttp_connection *evcon, void *arg)
{
	struct hreq *r = arg;
	log_debug("http", "client %s went away before the reply", r->addr);
	hreq_free(r);
}

/* Ties r to its connection: when the client goes away first, r is freed. */
static void
hreq_attach(struct hreq *r)
{
	r->conn = hconn_find(r->h, r->evcon);
	if (r->conn != NULL) {
		r->conn->req = r;
	} else {
		evhttp_connection_set_closecb(r->evcon, hreq_conn_closed, r);
		r->own_closecb = true;
	}
}

/* Unties r from its connection (before replying or freeing). */
static void
hreq_detach(struct hreq *r)
{
	if (r->conn != NULL) {
		if (r->conn->req == r)
			r->conn->req = NULL;
		r->conn = NULL;
	} else if (r->own_closecb) {
		evhttp_connection_set_closecb(r->evcon, NULL, NULL);
		r->own_closecb = false;
	}
}

static struct hreq *
hreq_new(struct http_api *h, struct evhttp_request *req)
{
	struct hreq *r = calloc(1, sizeof *r);
	if (r == NULL)
		abort();
	r->h = h;
	r->req = req;
	r->seq = ++h->next_seq;
	r->evcon = evhttp_request_get_connection(req);
	char *host = NULL;
	ev_uint16_t port = 0;
	evhttp_connection_get_peer(r->evcon, &host, &port);
	snprintf(r->addr, sizeof r->addr, "%s", host ? host : "?");
	for (int i = 0; i < 8; i++)
		strbuf_init(&r->a[i]);
	r->next = h->active;
	if (h->active)
		h->active->prev = r;
	h->active = r;
	hreq_attach(r);
	return r;
}

static void
hreq_free(struct hreq *r)
{
	if (r == NULL)
		return;
	struct http_api *h = r->h;
	hreq_detach(r);
	if (r->qid != 0)
		store_cancel(h->st, r->qid);
	if (r->prev)
		r->prev->next = r->next;
	else
		h->active = r->next;
	if (r->next)
		r->next->prev = r->prev;
	free(r->body);
	json_decref(r->json);
	json_decref(r->errs);
	for (int i = 0; i < 8; i++)
		strbuf_free(&r->a[i]);
	free(r);
}

/* Runs sql; cb gets r back. On refusal (no database) replies 503. */
static bool
hreq_query(struct hreq *r, const char *sql, int n, const char *const *params, store_cb cb)
{
	r->qid = store_query(r->h->st, sql, n, params, cb, r);
	if (r->qid == 0) {
		hreq_error(r, 503, "database_unavailable", "the database is down or overloaded");
		return false;
	}
	return true;
}

/* Copies the request body into r->body. */
static void
hreq_take_body(struct hreq *r)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
	size_t n = evbuffer_get_length(in);
	r->body = malloc(n + 1);
	if (r->body == NULL)
		abort();
	evbuffer_copyout(in, r->body, n);
	r->body[n] = '\0';
	r->body_len = n;
}

/* ------------------------------------------------------------------ */
/* Authentication                                                      */

static enum role
role_parse(const char *s)
{
	if (strcmp(s, "admin") == 0)
		return ROLE_ADMIN;
	if (strcmp(s, "staff") == 0)
		return ROLE_STAFF;
	if (strcmp(s, "partner") == 0)
		return ROLE_PARTNER;
	if (strcmp(s, "viewer") == 0)
		return ROLE_VIEWER;
	return ROLE_NONE;
}

static const char *
role_name(enum role r)
{
	switch (r) {
	case ROLE_ADMIN:
		return "admin";
	case ROLE_STAFF:
		return "staff";
	case ROLE_PARTNER:
		return "partner";
	case ROLE_VIEWER:
		return "viewer";
	default:
		return "none";
	}
}

/* admin > staff > partner, viewer (partner and viewer are siblings). */
static bool
role_allows(enum role have, enum role need)
{
	if (have == need || have == ROLE_ADMIN)
		return true;
	if (have == ROLE_STAFF)
		return need == ROLE_PARTNER || need == ROLE_VIEWER;
	return false;
}

static struct fail_entry *
auth_fail_slot(struct http_api *h, const char *addr, bool create)
{
	time_t now = time(NULL);
	struct fail_entry *oldest = &h->fails[0];
	for (int i = 0; i < HTTP_AUTH_SLOTS; i++) {
		struct fail_entry *f = &h->fails[i];
		if (f->addr[0] != '\0' && strcmp(f->addr, addr) == 0) {
			if (now - f->since >= HTTP_AUTH_FAIL_WINDOW) {
				f->since = now;
				f->count = 0;
			}
			return f;
		}
		if (f->since < oldest->since)
			oldest = f;
	}
	if (!create)
		return NULL;
	snprintf(oldest->addr, sizeof oldest->addr, "%s", addr);
	oldest->since = now;
	oldest->count = 0;
	return oldest;
}

static bool
auth_limited(struct http_api *h, const char *addr)
{
	struct fail_entry *f = auth_fail_slot(h, addr, false);
	return f != NULL && f->count >= HTTP_AUTH_FAIL_MAX;
}

static void
auth_failed(struct hreq *r, const char *why)
{
	struct http_api *h = r->h;
	struct fail_entry *f = auth_fail_slot(h, r->addr, true);
	f->count++;
	h->auth_failures++;
	/* the path only: a client may have put its token in the query string */
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(r->req);
	const char *upath = u ? evhttp_uri_get_path(u) : NULL;
	log_warn("http", "authentication failed from %s: %s (%s %.200s)", r->addr, why,
	         evhttp_request_get_command(r->req) == EVHTTP_REQ_POST ? "POST" : "GET",
	         upath ? upath : "?");
	hreq_error(r, 401, "unauthorized", why);
}

static void
auth_done(struct hreq *r)
{
	if (!role_allows(r->role, r->need)) {
		char d[96];
		snprintf(d, sizeof d, "this endpoint needs the %s role; the token has %s",
		         role_name(r->need), role_name(r->role));
		hreq_error(r, 403, "forbidden", d);
		return;
	}
	r->handler(r);
}

static void
auth_query_cb(void *arg, PGresult *res, const char *err)
{
	struct hreq *r = arg;
	r->qid = 0;
	if (res == NULL) {
		hreq_db_error(r, err);
		return;
	}
	if (PQntuples(res) != 1) {
		auth_failed(r, "unknown or revoked token");
		return;
	}
	r->role = role_parse(PQgetvalue(res, 0, 0));
	snprintf(r->who, sizeof r->who, "%s", PQgetvalue(res, 0, 1));
	/* cache it: the slot expiring first */
	struct http_api *h = r->h;
	struct tok_entry *slot = &h->toks[0];
	for (int i = 0; i < HTTP_TOKEN_CACHE; i++)
		if (h->toks[i].expires < slot->expires)
			slot = &h->toks[i];
	memcpy(slot->hash, r->hash, 32);
	slot->role = r->role;
	snprintf(slot->name, sizeof slot->name, "%s", r->who);
	slot->expires = time(NULL) + HTTP_TOKEN_TTL;
	auth_done(r);
}

/* Authenticates r (Bearer token), then runs r->handler or replies 401/403/429. */
static void
auth_start(struct hreq *r)
{
	struct http_api *h = r->h;
	if (auth_limited(h, r->addr)) {
		hreq_error(r, 429, "too_many_requests",
		           "too many failed authentications; wait a minute");
		return;
	}
	const char *hdr =
	    evhttp_find_header(evhttp_request_get_input_headers(r->req), "Authorization");
	if (hdr == NULL) {
		auth_failed(r, "missing Authorization: Bearer token");
		return;
	}
	if (strncasecmp(hdr, "Bearer ", 7) != 0) {
		auth_failed(r, "Authorization must be Bearer");
		return;
	}
	const char *tok = hdr + 7;
	while (*tok == ' ')
		tok++;
	size_t n = strlen(tok);
	while (n > 0 && tok[n - 1] == ' ')
		n--;
	if (n == 0 || n > 256) {
		auth_failed(r, "malformed token");
		return;
	}
	unsigned int hl = 0;
	if (EVP_Digest(tok, n, r->hash, &hl, EVP_sha256(), NULL) != 1 || hl != 32) {
		hreq_error(r, 500, "internal", "hash failed");
		return;
	}
	time_t now = time(NULL);
	for (int i = 0; i < HTTP_TOKEN_CACHE; i++) {
		struct tok_entry *t = &h->toks[i];
		if (t->expires > now && CRYPTO_memcmp(t->hash, r->hash, 32) == 0) {
			r->role = t->role;
			snprintf(r->who, sizeof r->who, "%s", t->name);
			auth_done(r);
			return;
		}
	}
	char hex[2 + 64 + 1] = "\\x";
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 + 2 * i, 3, "%02x", r->hash[i]);
	const char *p[1] = {hex};
	hreq_query(
	    r, "SELECT role, name FROM api_tokens WHERE hash = $1::bytea AND revoked_at IS NULL", 1,
	    p, auth_query_cb);
}

/* ------------------------------------------------------------------ */
/* Subscribers                                                         */

static void
single_json_cb(void *arg, PGresult *res, const char *err)
{
	struct hreq *r = arg;
	r->qid = 0;
	if (res == NULL) {
		hreq_db_error(r, err);
		return;
	}
	if (PQntuples(res) < 1 || PQgetisnull(res, 0, 0)) {
		hreq_error(r, 404, "not_found", r->arg);
		return;
	}
	hreq_reply(r, 200, PQgetvalue(res, 0, 0));
}

static void
h_subscriber(struct hreq *r)
{
	char norm[32];
	if (msisdn_normalise(r->arg, norm, sizeof norm) != 0) {
		hreq_error(r, 422, "invalid_msisdn", "not a phone number");
		return;
	}
	snprintf(r->arg, sizeof r->arg, "subscriber %s", norm);
	const char *p[1] = {norm};
	hreq_query(
	    r,
	    "SELECT json_build_object('msisdn', s.msisdn, 'language', s.language,"
	    " 'opted_out', s.opted_out, 'household', h.code, 'commune', h.commune_code,"
	    " 'village', h.village, 'joined_via', s.joined_via, 'registered_at', s.registered_at,"
	    " 'last_mo_at', s.last_mo_at,"
	    " 'proficient_skills', (SELECT count(*) FROM proficiency p"
	    "     WHERE p.msisdn = s.msisdn AND p.proficient),"
	    " 'skills', (SELECT json_object_agg(k.code, json_build_object("
	    "     'proficient', coalesce(p.proficient, false), 'self_level', p.self_level,"
	    "     'best_quiz', p.best_quiz, 'quiz_passed_at', p.quiz_passed_at,"
	    "     'updated_at', p.updated_at) ORDER BY k.position)"
	    "   FROM skills k LEFT JOIN proficiency p ON p.skill = k.code AND p.msisdn = s.msisdn))"
	    " FROM subscribers s LEFT JOIN households h ON h.id = s.household_id"
	    " WHERE s.msisdn = $1",
	    1, p, single_json_cb);
}

/* ------------------------------------------------------------------ */
/* Household import                                                    */

enum { A_LINE, A_CODE, A_PROV, A_DIST, A_COMM, A_VILL, A_MSISDN, A_LANG };

static void
import_row_cb(void *arg, int line, const struct hhcsv_row *row, const char *err)
{
	struct hreq *r = arg;
	if (row == NULL) {
		r->nerr_total++;
		if (json_array_size(r->errs) < HTTP_MAX_ERRORS)
			json_array_append_new(r->errs,
			                      json_pack("{s:i,s:s}", "line", line, "error", err));
		return;
	}
	char ln[16];
	snprintf(ln, sizeof ln, "%d", row->line);
	strbuf_pgarr_elem(&r->a[A_LINE], ln);
	strbuf_pgarr_elem(&r->a[A_CODE], row->household_code);
	strbuf_pgarr_elem(&r->a[A_PROV], row->province);
	strbuf_pgarr_elem(&r->a[A_DIST], row->district);
	strbuf_pgarr_elem(&r->a[A_COMM], row->commune);
	strbuf_pgarr_elem(&r->a[A_VILL], row->village);
	strbuf_pgarr_elem(&r->a[A_MSISDN], row->msisdn);
	strbuf_pgarr_elem(&r->a[A_LANG], row->language);
	r->nrows++;
}

static int
err_line_cmp(const void *a, const void *b)
{
	json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "line"));
	json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "line"));
	return (x > y) - (x < y);
}

static void
import_reply(struct hreq *r, int imported, int households, int phones)
{
	size_t n = json_array_size(r->errs);
	json_t **v = calloc(n ? n : 1, sizeof *v);
	if (v == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		v[i] = json_incref(json_array_get(r->errs, i));
	qsort(v, n, sizeof *v, err_line_cmp);
	json_t *sorted = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(sorted, v[i]);
	free(v);
	json_t *o =
	    json_pack("{s:i,s:i,s:i,s:i,s:o}", "imported", imported, "households", households,
	              "phones", phones, "rejected", r->nerr_total, "errors", sorted);
	if ((size_t)r->nerr_total > n)
		json_object_set_new(o, "errors_truncated", json_true());
	log_info("http", "household import by %s: %d rows imported, %d rejected", r->who, imported,
	         r->nerr_total);
	hreq_reply_obj(r, 200, o);
}

static void
import_cb(void *arg, PGresult *res, const char *err)
{
	struct hreq *r = arg;
	r->qid = 0;
	if (res == NULL || PQntuples(res) != 1) {
		hreq_db_error(r, err);
		return;
	}
	int imported = atoi(PQgetvalue(res, 0, 0));
	int households = atoi(PQgetvalue(res, 0, 1));
	int phones = atoi(PQgetvalue(res, 0, 2));
	/* err_lines / err_texts come back as array literals: parse with SQL
	 * quoting rules via a second tiny decoder. */
	const char *lines = PQgetvalue(res, 0, 3);
	const char *texts = PQgetvalue(res, 0, 4);
	/* lines: {3,5,9} */
	int ln[HTTP_MAX_ERRORS];
	int nl = 0;
	for (const char *q = lines; *q && nl < HTTP_MAX_ERRORS; q++) {
		if (*q >= '0' && *q <= '9') {
			ln[nl++] = (int)strtol(q, (char **)&q, 10);
			q--;
		}
	}
	/* texts: {"a b",c} — elements quoted when they contain specials */
	const char *q = texts;
	if (*q == '{')
		q++;
	for (int i = 0; i < nl && *q && *q != '}'; i++) {
		char buf[256];
		size_t bn = 0;
		if (*q == '"') {
			q++;
			while (*q && *q != '"') {
				if (*q == '\\' && q[1])
					q++;
				if (bn < sizeof buf - 1)
					buf[bn++] = *q;
				q++;
			}
			if (*q == '"')
				q++;
		} else {
			while (*q && *q != ',' && *q != '}') {
				if (bn < sizeof buf - 1)
					buf[bn++] = *q;
				q++;
			}
		}
		buf[bn] = '\0';
		if (*q == ',')
			q++;
		r->nerr_total++;
		if (json_array_size(r->errs) < HTTP_MAX_ERRORS)
			json_array_append_new(r->errs,
			                      json_pack("{s:i,s:s}", "line", ln[i], "error", buf));
	}
	import_reply(r, imported, households, phones);
}

static void
h_import(struct hreq *r)
{
	r->errs = json_array();
	for (int i = 0; i < 8; i++)
		strbuf_pgarr_begin(&r->a[i]);
	struct hhcsv *p = hhcsv_new(import_row_cb, r);
	/* stream the body through the parser chunk by chunk (no copy). The
	 * length is given to evbuffer_peek: with -1 it stops at the 16th chain
	 * and says 16, which once silently dropped the rest of a large body. */
	struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
	size_t total = evbuffer_get_length(in), done = 0;
	struct evbuffer_ptr pos;
	struct evbuffer_iovec vec[16];
	while (done < total) {
		if (evbuffer_ptr_set(in, &pos, done, EVBUFFER_PTR_SET) != 0)
			break;
		int nv = evbuffer_peek(in, (ev_ssize_t)(total - done), &pos, vec, 16);
		size_t before = done;
		for (int i = 0; i < nv && i < 16 && done < total; i++) {
			size_t l = vec[i].iov_len < total - done ? vec[i].iov_len : total - done;
			hhcsv_feed(p, vec[i].iov_base, l);
			done += l;
		}
		if (done == before)
			break;
	}
	const char *fatal = NULL;
	if (hhcsv_finish(p, &fatal) != 0) {
		char d[200];
		snprintf(d, sizeof d,
		         "%s; expected header: household_code,province_code,district_code,"
		         "commune_code,village,msisdn,language",
		         fatal);
		hhcsv_free(p);
		hreq_error(r, 422, "invalid_csv", d);
		return;
	}
	hhcsv_free(p);
	if (r->nrows == 0) {
		import_reply(r, 0, 0, 0);
		return;
	}
	const char *params[8];
	for (int i = 0; i < 8; i++) {
		strbuf_pgarr_end(&r->a[i]);
		params[i] = r->a[i].s;
	}
	hreq_query(
	    r,
	    "SELECT imported, households, phones, err_lines, err_texts FROM sg_households_import("
	    "$1::int[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
	    " $8::text[])",
	    8, params, import_cb);
}

/* ------------------------------------------------------------------ */
/* Coverage                                                            */

static void
coverage_cb(void *arg, PGresult *res, const char *err)
{
	struct hreq *r = arg;
	r->qid = 0;
	if (res == NULL || PQntuples(res) != 1) {
		hreq_db_error(r, err);
		return;
	}
	struct strbuf b;
	strbuf_init(&b);
	strbuf_printf(&b, "{\"level\":\"%s\",\"parent\":", r->arg);
	if (PQgetisnull(res, 0, 1)) {
		strbuf_puts(&b, "null");
	} else {
		json_t *s = json_string(PQgetvalue(res, 0, 1));
		char *t = json_dumps(s, JSON_ENCODE_ANY);
		strbuf_puts(&b, t ? t : "null");
		free(t);
		json_decref(s);
	}
	strbuf_puts(&b, ",\"parent_name\":");
	if (PQgetisnull(res, 0, 2)) {
		strbuf_puts(&b, "null");
	} else {
		json_t *s = json_string(PQgetvalue(res, 0, 2));
		char *t = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
		strbuf_puts(&b, t ? t : "null");
		free(t);
		json_decref(s);
	}
	strbuf_puts(&b, ",\"rows\":");
	strbuf_puts(&b, PQgetvalue(res, 0, 0));
	strbuf_puts(&b, "}");
	hreq_reply(r, 200, b.s);
	strbuf_free(&b);
}

static void
h_coverage(struct hreq *r)
{
	const char *qs = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(r->req));
	const char *detail = NULL;
	char pbuf[8];
	const char *err =
	    http_parse_coverage_query(qs, r->arg, sizeof r->arg, pbuf, sizeof pbuf, &detail);
	if (err != NULL) {
		hreq_error(r, 422, err, detail);
		return;
	}
	const char *p[2] = {r->arg, pbuf[0] ? pbuf : NULL};
	hreq_query(r,
	           "SELECT sg_coverage_json($1, $2), $2::text,"
	           " (SELECT name FROM localities WHERE code = $2)",
	           2, p, coverage_cb);
}

/* ------------------------------------------------------------------ */
/* Broadcasts                                                          */

#define BROADCAST_JSON                                                                             \
	"json_build_object('id', b.id, 'name', b.name, 'state', b.state,"                          \
	" 'text', json_build_object('vi', b.text_vi, 'en', b.text_en), 'segment', b.segment,"      \
	" 'start_at', b.start_at, 'end_at', b.end_at, 'rate', b.rate, 'created_by', b.created_by," \
	" 'created_at', b.created_at, 'counts', json_build_object("                                \
	"   'targeted', greatest(b.targeted, coalesce(c.total, 0)),"                               \
	"   'queued', coalesce(c.queued, 0), 'submitted', coalesce(c.submitted, 0),"               \
	"   'delivered', coalesce(c.delivered, 0), 'failed', coalesce(c.failed, 0),"               \
	"   'cancelled', coalesce(c.cancelled, 0)))"

#define BROADCAST_COUNTS                                                                           \
	"SELECT count(*) AS total, count(*) FILTER (WHERE m.state = 'queued') AS queued,"          \
	" count(*) FILTER (WHERE m.state IN ('submitting', 'submitted')) AS submitted,"            \
	" count(*) FILTER (WHERE m.state = 'delivered') AS delivered,"                             \
	" count(*) FILTER (WHERE m.state IN ('failed', 'expired')) AS failed,"                     \
	" count(*) FILTER (WHERE m.state = 'cancelled') AS cancelled"                              \
	" FROM mt_messages m WHERE m.broadcast_id = b.id"

static void
h_broadcast_show(struct hreq *r)
{
	if (!http_parse_digits(r->arg, 18)) {
		hreq_error(r, 404, "not_found", "no such broadcast");
		return;
	}
	const char *p[1] = {r->arg};
	hreq_query(r,
	           "SELECT " BROADCAST_JSON
	           " FROM broadcasts b LEFT JOIN LATERAL (" BROADCAST_COUNTS
	           ") c ON true WHERE b.id = $1::bigint",
	           1, p, single_json_cb);
}

static void
h_broadcast_list(struct hreq *r)
{
	const char *qs = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(r->req));
	int limit = http_parse_list_limit(qs);
	if (limit < 0) {
		hreq_error(r, 422, "invalid_limit", "limit must be 1..500");
		return;
	}
	char lb[16];
	snprintf(lb, sizeof lb, "%d", limit);
	const char *p[1] = {lb};
	hreq_query(r,
	           "SELECT json_build_object('broadcasts', "
	           " coalesce(json_agg(x.j ORDER BY x.id DESC), '[]'::json)) FROM ("
	           " SELECT b.id, " BROADCAST_JSON " AS j FROM (SELECT * FROM broadcasts"
	           "  ORDER BY id DESC LIMIT $1::int) b LEFT JOIN LATERAL (" BROADCAST_COUNTS
	           ") c ON true) x",
	           1, p, single_json_cb);
}

static void
broadcast_created_cb(void *arg, PGresult *res, const char *err)
{
	struct hreq *r = arg;
	r->qid = 0;
	if (res == NULL) {
		hreq_db_error(r, err);
		return;
	}
	if (PQntuples(res) != 1) {
		hreq_error(r, 422, "invalid", "end_at must be after start_at");
		return;
	}
	log_info("http", "broadcast %s scheduled by %s", PQgetvalue(res, 0, 0), r->who);
	struct strbuf b;
	strbuf_init(&b);
	strbuf_printf(&b, "{\"id\":%s,\"state\":\"%s\",\"broadcast\":%s}", PQgetvalue(res, 0, 0),
	              PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
	hreq_reply(r, 201, b.s);
	strbuf_free(&b);
}

static void
h_broadcast_create(struct hreq *r)
{
	json_error_t je;
	hreq_take_body(r);
	r->json = json_loadb(r->body, r->body_len, 0, &je);
	if (r->json == NULL) {
		hreq_error(r, 400, "bad_json", je.text);
		return;
	}
	const char *tvi = NULL, *ten = NULL;
	json_t *seg = NULL;
	const char *why = http_parse_broadcast(r->json, &tvi, &ten, &seg);
	if (why != NULL) {
		hreq_error(r, 422, "invalid", why);
		return;
	}
	char *segs = seg ? json_dumps(seg, JSON_COMPACT) : NULL;
	json_t *sa = json_object_get(r->json, "start_at"), *ea = json_object_get(r->json, "end_at");
	json_t *rate = json_object_get(r->json, "rate");
	char rb[24] = "";
	if (json_is_integer(rate))
		snprintf(rb, sizeof rb, "%" JSON_INTEGER_FORMAT, json_integer_value(rate));
	const char *p[8] = {
	    json_string_value(json_object_get(r->json, "name")),
	    tvi,
	    ten,
	    segs ? segs : "{}",
	    json_is_string(sa) ? json_string_value(sa) : NULL,
	    json_is_string(ea) ? json_string_value(ea) : NULL,
	    rb[0] ? rb : NULL,
	    r->who,
	};
	hreq_query(
	    r,
	    "WITH v AS (SELECT coalesce($5::timestamptz, now()) AS s, $6::timestamptz AS e),"
	    " ins AS (INSERT INTO broadcasts AS b (name, text_vi, text_en, segment, start_at,"
	    "  end_at, rate, state, created_by)"
	    "  SELECT $1, $2, $3, $4::jsonb, v.s, v.e, $7::int, 'scheduled', $8 FROM v"
	    "  WHERE v.e IS NULL OR v.e > v.s RETURNING b.*)"
	    " SELECT b.id, b.state, json_build_object('id', b.id, 'name', b.name, 'state', b.state,"
	    "  'start_at', b.start_at, 'end_at', b.end_at, 'rate', b.rate, 'segment', b.segment)"
	    " FROM ins b",
	    8, p, broadcast_created_cb);
	free(segs);
}

static void
broadcast_cancel_cb(void *arg, PGresult *res, const char *err)
{
	struct hreq *r = arg;
	r->qid = 0;
	if (res == NULL || PQntuples(res) != 1) {
		hreq_db_error(r, err);
		return;
	}
	if (PQgetisnull(res, 0, 0)) {
		hreq_error(r, 404, "not_found", "no such broadcast");
		return;
	}
	const char *prev = PQgetvalue(res, 0, 0);
	if (strcmp(prev, "done") == 0) {
		hreq_error(r, 409, "conflict", "the broadcast has already finished");
		return;
	}
	log_info("http", "broadcast %s cancelled by %s (%s queued messages)", r->arg, r->who,
	         PQgetvalue(res, 0, 1));
	struct strbuf b;
	strbuf_init(&b);
	strbuf_printf(&b,
	              "{\"id\":%s,\"state\":\"cancelled\",\"previous_state\":\"%s\",\"cancelled_"
	              "messages\":%s}",
	              r->arg, prev, PQgetvalue(res, 0, 1));
	hreq_reply(r, 200, b.s);
	strbuf_free(&b);
}

static void
h_broadcast_cancel(struct hreq *r)
{
	if (!http_parse_digits(r->arg, 18)) {
		hreq_error(r, 404, "not_found", "no such broadcast");
		return;
	}
	const char *p[1] = {r->arg};
	hreq_query(r,
	           "WITH b AS (UPDATE broadcasts SET state = 'cancelled' WHERE id = $1::bigint"
	           "   AND state NOT IN ('done', 'cancelled') RETURNING id),"
	           " m AS (UPDATE mt_messages SET state = 'cancelled', final_at = now()"
	           "   WHERE broadcast_id = $1::bigint AND state = 'queued' RETURNING 1),"
	           " rc AS (UPDATE broadcast_recipients SET state = 'cancelled'"
	           "   WHERE broadcast_id = $1::bigint AND state = 'pending'"
	           "   AND EXISTS (SELECT 1 FROM b) RETURNING 1)"
	           " SELECT (SELECT state FROM broadcasts WHERE id = $1::bigint),"
	           "  (SELECT count(*) FROM m), (SELECT count(*) FROM rc)",
	           1, p, broadcast_cancel_cb);
}

/* ------------------------------------------------------------------ */
/* Single messages (partners)                                          */

static void
message_cb(void *arg, PGresult *res, const char *err)
{
	struct hreq *r = arg;
	r->qid = 0;
	if (res == NULL) {
		hreq_db_error(r, err);
		return;
	}
	if (PQntuples(res) != 1) {
		/* a concurrent insert of the same client id is still open */
		hreq_error(r, 409, "conflict", "a message with this id is being created; retry");
		return;
	}
	const char *status = PQgetvalue(res, 0, 0);
	if (strcmp(status, "opted_out") == 0) {
		hreq_error(r, 422, "opted_out", "the recipient has opted out");
		return;
	}
	if (strcmp(status, "mismatch") == 0) {
		hreq_error(r, 409, "conflict", "this id was already used for another message");
		return;
	}
	bool created = strcmp(status, "created") == 0;
	json_t *o = json_pack(
	    "{s:I,s:s,s:s,s:b}", "message_id", (json_int_t)strtoll(PQgetvalue(res, 0, 1), NULL, 10),
	    "state", PQgetvalue(res, 0, 2), "to", PQgetvalue(res, 0, 3), "duplicate", !created);
	json_t *cid = json_object_get(r->json, "id");
	if (json_is_string(cid))
		json_object_set(o, "id", cid);
	hreq_reply_obj(r, created ? 202 : 200, o);
}

static void
h_message(struct hreq *r)
{
	json_error_t je;
	hreq_take_body(r);
	r->json = json_loadb(r->body, r->body_len, 0, &je);
	if (r->json == NULL) {
		hreq_error(r, 400, "bad_json", je.text);
		return;
	}
	char norm[32];
	const char *why = http_parse_message(r->json, norm, sizeof norm);
	if (why != NULL) {
		hreq_error(r, 422, "invalid", why);
		return;
	}
	json_t *text = json_object_get(r->json, "text"), *id = json_object_get(r->json, "id");
	char cid[160] = "";
	if (json_is_string(id)) /* client ids are per partner token */
		snprintf(cid, sizeof cid, "%s:%s", r->who, json_string_value(id));
	const char *p[3] = {norm, json_string_value(text), cid[0] ? cid : NULL};
	hreq_query(
	    r,
	    "WITH prev AS (SELECT id, msisdn, text, state FROM mt_messages"
	    "   WHERE $3::text IS NOT NULL AND client_id = $3),"
	    " oo AS (SELECT 1 FROM subscribers WHERE msisdn = $1 AND opted_out),"
	    " ins AS (INSERT INTO mt_messages (msisdn, text, kind, priority, state, client_id)"
	    "   SELECT $1, $2, 'api', 0, 'queued', $3"
	    "   WHERE NOT EXISTS (SELECT 1 FROM prev) AND NOT EXISTS (SELECT 1 FROM oo)"
	    "   ON CONFLICT (client_id) WHERE client_id IS NOT NULL DO NOTHING"
	    "   RETURNING id, msisdn, state)"
	    " SELECT 'created', id, state, msisdn FROM ins"
	    " UNION ALL SELECT CASE WHEN msisdn = $1 AND text = $2 THEN 'existing' ELSE 'mismatch' "
	    "END,"
	    "   id, state, msisdn FROM prev"
	    " UNION ALL SELECT 'opted_out', 0, '', $1"
	    "   WHERE NOT EXISTS (SELECT 1 FROM prev) AND EXISTS (SELECT 1 FROM oo)",
	    3, p, message_cb);
}

/* ------------------------------------------------------------------ */
/* /healthz and /metrics                                               */

static void
h_healthz(struct http_api *h, struct evhttp_request *req)
{
	int up = store_up(h->st);
	json_t *links = json_array();
	struct gateway_link_status ls[CONFIG_MAX_LINKS];
	int n = h->gw ? gateway_link_status(h->gw, ls, CONFIG_MAX_LINKS) : 0;
	int bound = 0;
	for (int i = 0; i < n && i < CONFIG_MAX_LINKS; i++) {
		json_t *q = json_array();
		for (int k = 0; k < MSG_PRIO_COUNT; k++)
			json_array_append_new(q, json_integer(ls[i].queued[k]));
		json_array_append_new(
		    links, json_pack("{s:s,s:s,s:b,s:i,s:i,s:i,s:i,s:o,s:b}", "name", ls[i].name,
		                     "state", ls[i].state ? ls[i].state : "unknown", "bound",
		                     ls[i].binds_up > 0, "binds_up", ls[i].binds_up, "window_used",
		                     ls[i].window_used, "window", ls[i].window, "rate", ls[i].rate,
		                     "queued", q, "paused", ls[i].paused));
		if (ls[i].binds_up > 0)
			bound++;
	}
	const char *status = up == 0 ? "down" : (n > 0 && bound < n) ? "degraded" : "ok";
	json_t *o = json_pack("{s:s,s:{s:b,s:i,s:i},s:o,s:i,s:i}", "status", status, "database",
	                      "up", up > 0, "connections", up, "pending", store_pending(h->st),
	                      "links", links, "links_bound", bound, "links_total", n);
	char *s = json_dumps(o, JSON_COMPACT);
	http_send_json(h, req, up > 0 ? 200 : 503, s ? s : "{}");
	free(s);
	json_decref(o);
}

static void
metrics_render(struct http_api *h, struct strbuf *b, PGresult *res)
{
	struct pipeline_stats ps;
	memset(&ps, 0, sizeof ps);
	if (h->pipe)
		pipeline_get_stats(h->pipe, &ps);
	strbuf_puts(b, "# HELP skillgate_messages_total Messages by direction and state.\n"
	               "# TYPE skillgate_messages_total counter\n");
	const struct {
		const char *dir, *state;
		uint64_t v;
	} m[] = {
	    {"mo", "received", ps.mo_received},    {"mo", "committed", ps.mo_committed},
	    {"mo", "duplicate", ps.mo_duplicates}, {"mo", "looping", ps.mo_looping},
	    {"mo", "refused", ps.mo_refused},      {"mt", "queued", ps.mt_queued},
	    {"mt", "submitted", ps.mt_submitted},  {"mt", "failed", ps.mt_failed},
	    {"dlr", "received", ps.dlr_received},  {"dlr", "parked", ps.dlr_parked},
	};
	for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
		strbuf_printf(
		    b, "skillgate_messages_total{direction=\"%s\",state=\"%s\"} %" PRIu64 "\n",
		    m[i].dir, m[i].state, m[i].v);
	strbuf_printf(
	    b,
	    "# HELP skillgate_mo_waiting MOs held behind an earlier MO of the same number.\n"
	    "# TYPE skillgate_mo_waiting gauge\nskillgate_mo_waiting %d\n"
	    "# HELP skillgate_mt_pending MTs claimed, waiting for room on a link.\n"
	    "# TYPE skillgate_mt_pending gauge\nskillgate_mt_pending %d\n"
	    "# HELP skillgate_batches_in_flight Pipeline batches being committed.\n"
	    "# TYPE skillgate_batches_in_flight gauge\nskillgate_batches_in_flight %d\n",
	    ps.mo_waiting, ps.mt_pending, ps.batches_in_flight);

	struct gateway_link_status ls[CONFIG_MAX_LINKS];
	int n = h->gw ? gateway_link_status(h->gw, ls, CONFIG_MAX_LINKS) : 0;
	if (n > CONFIG_MAX_LINKS)
		n = CONFIG_MAX_LINKS;
	static const char *const lstates[] = {"connecting", "binding", "bound",
	                                      "unbinding",  "closed",  "down"};
	strbuf_puts(
	    b, "# HELP skillgate_link_up Binds up on the link.\n# TYPE skillgate_link_up gauge\n");
	for (int i = 0; i < n; i++)
		strbuf_printf(b, "skillgate_link_up{link=\"%s\"} %d\n", ls[i].name, ls[i].binds_up);
	strbuf_puts(b, "# HELP skillgate_link_state Link state (1 for the current one).\n"
	               "# TYPE skillgate_link_state gauge\n");
	for (int i = 0; i < n; i++) {
		bool known = false;
		for (size_t k = 0; k < sizeof lstates / sizeof lstates[0]; k++) {
			bool cur = ls[i].state && strcmp(ls[i].state, lstates[k]) == 0;
			known |= cur;
			strbuf_printf(b, "skillgate_link_state{link=\"%s\",state=\"%s\"} %d\n",
			              ls[i].name, lstates[k], cur);
		}
		if (!known && ls[i].state)
			strbuf_printf(b, "skillgate_link_state{link=\"%s\",state=\"%s\"} 1\n",
			              ls[i].name, ls[i].state);
	}
	strbuf_puts(b, "# HELP skillgate_link_window_used Outstanding requests on the link.\n"
	               "# TYPE skillgate_link_window_used gauge\n");
	for (int i = 0; i < n; i++)
		strbuf_printf(b, "skillgate_link_window_used{link=\"%s\"} %d\n", ls[i].name,
		              ls[i].window_used);
	strbuf_puts(b, "# HELP skillgate_link_window_size Window limit of the link.\n"
	               "# TYPE skillgate_link_window_size gauge\n");
	for (int i = 0; i < n; i++)
		strbuf_printf(b, "skillgate_link_window_size{link=\"%s\"} %d\n", ls[i].name,
		              ls[i].window);
	strbuf_puts(b, "# HELP skillgate_link_queued Messages queued on the link by priority.\n"
	               "# TYPE skillgate_link_queued gauge\n");
	for (int i = 0; i < n; i++)
		for (int k = 0; k < MSG_PRIO_COUNT; k++)
			strbuf_printf(b, "skillgate_link_queued{link=\"%s\",priority=\"%d\"} %d\n",
			              ls[i].name, k, ls[i].queued[k]);
	strbuf_puts(b, "# HELP skillgate_link_paused 1 while the link is throttled.\n"
	               "# TYPE skillgate_link_paused gauge\n");
	for (int i = 0; i < n; i++)
		strbuf_printf(b, "skillgate_link_paused{link=\"%s\"} %d\n", ls[i].name,
		              ls[i].paused);
	strbuf_puts(b, "# HELP skillgate_link_pdus_total PDUs by link and kind.\n"
	               "# TYPE skillgate_link_pdus_total counter\n");
	for (int i = 0; i < n; i++) {
		strbuf_printf(b,
		              "skillgate_link_pdus_total{link=\"%s\",kind=\"submit_sm\",status="
		              "\"ok\"} %" PRIu64 "\n",
		              ls[i].name, ls[i].submitted);
		strbuf_printf(b,
		              "skillgate_link_pdus_total{link=\"%s\",kind=\"submit_sm\",status="
		              "\"error\"} %" PRIu64 "\n",
		              ls[i].name, ls[i].submit_failed);
		strbuf_printf(b,
		              "skillgate_link_pdus_total{link=\"%s\",kind=\"deliver_sm\",status="
		              "\"mo\"} %" PRIu64 "\n",
		              ls[i].name, ls[i].received);
		strbuf_printf(b,
		              "skillgate_link_pdus_total{link=\"%s\",kind=\"deliver_sm\",status="
		              "\"dlr\"} %" PRIu64 "\n",
		              ls[i].name, ls[i].dlrs);
	}

	pdu_stats_render(b);
	struct store_stats ss;
	memset(&ss, 0, sizeof ss);
	store_get_stats(h->st, &ss);
	strbuf_printf(b,
	              "# HELP skillgate_db_connections_up Database connections up.\n"
	              "# TYPE skillgate_db_connections_up gauge\nskillgate_db_connections_up %d\n"
	              "# HELP skillgate_db_pending Queries waiting or in flight.\n"
	              "# TYPE skillgate_db_pending gauge\nskillgate_db_pending %d\n"
	              "# HELP skillgate_db_queries_total Queries by outcome.\n"
	              "# TYPE skillgate_db_queries_total counter\n"
	              "skillgate_db_queries_total{outcome=\"done\"} %" PRIu64 "\n"
	              "skillgate_db_queries_total{outcome=\"failed\"} %" PRIu64 "\n"
	              "skillgate_db_queries_total{outcome=\"refused\"} %" PRIu64 "\n",
	              store_up(h->st), store_pending(h->st), ss.queries, ss.failed, ss.refused);
	strbuf_puts(b, "# HELP skillgate_db_roundtrip_seconds Database round trip.\n"
	               "# TYPE skillgate_db_roundtrip_seconds histogram\n");
	uint64_t cum = 0;
	for (int i = 0; i < 11; i++) {
		cum += ss.latency_buckets[i];
		strbuf_printf(b, "skillgate_db_roundtrip_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
		              store_latency_bounds_ms[i] / 1000.0, cum);
	}
	cum += ss.latency_buckets[11];
	strbuf_printf(b,
	              "skillgate_db_roundtrip_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n"
	              "skillgate_db_roundtrip_seconds_sum %.6f\n"
	              "skillgate_db_roundtrip_seconds_count %" PRIu64 "\n",
	              cum, ss.latency_sum_ms / 1000.0, cum);
	if (res != NULL && PQntuples(res) == 1) {
		strbuf_printf(
		    b,
		    "# HELP skillgate_outbox_queued Messages queued in the outbox by priority.\n"
		    "# TYPE skillgate_outbox_queued gauge\n"
		    "skillgate_outbox_queued{priority=\"0\"} %s\n"
		    "skillgate_outbox_queued{priority=\"1\"} %s\n"
		    "# HELP skillgate_outbox_oldest_seconds Age of the oldest due queued message.\n"
		    "# TYPE skillgate_outbox_oldest_seconds gauge\n"
		    "skillgate_outbox_oldest_seconds %s\n",
		    PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
	}
	strbuf_printf(b,
	              "# HELP skillgate_http_responses_total HTTP responses by status class.\n"
	              "# TYPE skillgate_http_responses_total counter\n"
	              "skillgate_http_responses_total{class=\"2xx\"} %" PRIu64 "\n"
	              "skillgate_http_responses_total{class=\"4xx\"} %" PRIu64 "\n"
	              "skillgate_http_responses_total{class=\"5xx\"} %" PRIu64 "\n"
	              "# HELP skillgate_http_auth_failures_total Failed API authentications.\n"
	              "# TYPE skillgate_http_auth_failures_total counter\n"
	              "skillgate_http_auth_failures_total %" PRIu64 "\n",
	              h->replies[2], h->replies[4], h->replies[5], h->auth_failures);
}

static void
metrics_cb(void *arg, PGresult *res, const char *err)
{
	struct hreq *r = arg;
	r->qid = 0;
	struct strbuf b;
	strbuf_init(&b);
	metrics_render(r->h, &b, res);
	hreq_detach(r);
	http_send(r->h, r->req, 200, "text/plain; version=0.0.4; charset=utf-8", b.s, b.len);
	strbuf_free(&b);
	hreq_free(r);
}

static void
h_metrics(struct hreq *r)
{
	/* the outbox depth needs the database; without it the rest still answers */
	r->qid = store_query(
	    r->h->st,
	    "SELECT count(*) FILTER (WHERE priority = 0), count(*) FILTER (WHERE priority > 0),"
	    " coalesce(extract(epoch FROM now() - min(next_attempt_at)), 0)::bigint"
	    " FROM mt_messages WHERE state = 'queued' AND next_attempt_at <= now()",
	    0, NULL, metrics_cb, r);
	if (r->qid == 0)
		metrics_cb(r, NULL, "database down");
}

static bool
is_loopback(const char *addr)
{
	return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 ||
	       strncmp(addr, "::ffff:127.", 11) == 0;
}

/* ------------------------------------------------------------------ */
/* Static dashboard files                                              */

static const char *
mime_type(const char *path)
{
	const char *dot = strrchr(path, '.');
	if (dot == NULL)
		return "application/octet-stream";
	static const struct {
		const char *ext, *type;
	} t[] = {
	    {".html", "text/html; charset=utf-8"},
	    {".js", "text/javascript; charset=utf-8"},
	    {".css", "text/css; charset=utf-8"},
	    {".json", "application/json; charset=utf-8"},
	    {".svg", "image/svg+xml"},
	    {".png", "image/png"},
	    {".ico", "image/x-icon"},
	    {".txt", "text/plain; charset=utf-8"},
	};
	for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
		if (strcmp(dot, t[i].ext) == 0)
			return t[i].type;
	return "application/octet-stream";
}

static void
h_static(struct http_api *h, struct evhttp_request *req, const char *path)
{
	if (h->webroot[0] == '\0') {
		http_send_error(h, req, 404, "not_found", "no dashboard configured");
		return;
	}
	/* path is decoded; refuse anything that could climb out of webroot */
	if (!http_parse_static_ok(path)) {
		http_send_error(h, req, 404, "not_found", path);
		return;
	}
	char file[PATH_MAX + 256];
	snprintf(file, sizeof file, "%s/%s", h->webroot, *path ? path : "index.html");
	char real[PATH_MAX];
	size_t rl = strlen(h->webroot);
	if (realpath(file, real) == NULL || strncmp(real, h->webroot, rl) != 0 || real[rl] != '/') {
		http_send_error(h, req, 404, "not_found", path);
		return;
	}
	int fd = open(real, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		if (fd >= 0)
			close(fd);
		http_send_error(h, req, 404, "not_found", path);
		return;
	}
	struct evbuffer *b = evbuffer_new();
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	evhttp_add_header(out, "Content-Type", mime_type(real));
	evhttp_add_header(out, "Cache-Control", "no-cache");
	evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(
	    out, "Content-Security-Policy",
	    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'");
	if (sb.st_size > 0)
		evbuffer_add_file(b, fd, 0, sb.st_size); /* takes the fd */
	else
		close(fd);
	http_count(h, 200);
	http_mark_reply(h, req);
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

/* ------------------------------------------------------------------ */
/* POST /ussd: the USSD aggregator callback (§4.5)                     */

/* The request a USSD completion belongs to, found by id: the client may have
 * gone away (and its hreq been freed) before the dialog step committed. */
struct ussd_wait {
	struct http_api *h;
	uint64_t seq;
};

static struct hreq *
hreq_by_seq(struct http_api *h, uint64_t seq)
{
	for (struct hreq *r = h->active; r; r = r->next)
		if (r->seq == seq)
			return r;
	return NULL;
}

static void
h_ussd_done(void *arg, int status, const char *body)
{
	struct ussd_wait *w = arg;
	struct hreq *r = hreq_by_seq(w->h, w->seq);
	free(w);
	if (r == NULL)
		return; /* the aggregator hung up; the step is committed all the same */
	hreq_detach(r);
	struct evbuffer *b = evbuffer_new();
	evbuffer_add(b, body, strlen(body));
	evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Type",
	                  "text/plain; charset=utf-8");
	http_count(r->h, status);
	http_mark_reply(r->h, r->req);
	evhttp_send_reply(r->req, status, status == 200 ? "OK" : "Error", b);
	evbuffer_free(b);
	hreq_free(r);
}

/*
 * Form fields sessionId, serviceCode, phoneNumber, networkCode, text (the
 * inputs so far joined by '*'); the answer is "CON ..." or "END ...".
 * Malformed requests get 400 and create no session.
 */
static void
h_ussd(struct hreq *r)
{
	if (r->h->ussd == NULL) {
		hreq_error(r, 503, "unavailable", "USSD is not running");
		return;
	}
	hreq_take_body(r);
	struct http_ussd_form f;
	if (http_parse_ussd_form(r->body, &f) != 0) {
		http_parse_ussd_form_clear(&f);
		hreq_error(r, 400, "bad_request", "the body is not a form (x-www-form-urlencoded)");
		return;
	}
	struct ussd_wait *w = malloc(sizeof *w);
	if (w == NULL)
		abort();
	w->h = r->h;
	w->seq = r->seq;
	struct http_api *h = r->h;
	uint64_t seq = r->seq;
	int rc = ussd_http(h->ussd, f.session_id, f.service_code, f.phone, f.text, h_ussd_done, w);
	http_parse_ussd_form_clear(&f);
	if (rc != 0) {
		free(w);
		struct hreq *still = hreq_by_seq(h, seq);
		if (still)
			hreq_error(still, 400, "bad_request",
			           "sessionId, serviceCode and a valid phoneNumber are required");
	}
}

void
http_api_set_ussd(struct http_api *h, struct ussd *u)
{
	h->ussd = u;
}

/* ------------------------------------------------------------------ */
/* Routing                                                             */

/* What each API route needs and runs, by enum http_route. */
static const struct route {
	enum role need;
	hreq_fn fn;
} routes[] = {
    [HTTP_ROUTE_SUBSCRIBER] = {ROLE_VIEWER, h_subscriber},
    [HTTP_ROUTE_IMPORT] = {ROLE_STAFF, h_import},
    [HTTP_ROUTE_COVERAGE] = {ROLE_VIEWER, h_coverage},
    [HTTP_ROUTE_BROADCAST_CREATE] = {ROLE_STAFF, h_broadcast_create},
    [HTTP_ROUTE_BROADCAST_LIST] = {ROLE_VIEWER, h_broadcast_list},
    [HTTP_ROUTE_BROADCAST_CANCEL] = {ROLE_STAFF, h_broadcast_cancel},
    [HTTP_ROUTE_BROADCAST_SHOW] = {ROLE_VIEWER, h_broadcast_show},
    [HTTP_ROUTE_MESSAGE] = {ROLE_PARTNER, h_message},
};

static void
http_gen_cb(struct evhttp_request *req, void *arg)
{
	struct http_api *h = arg;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	char *path = http_parse_path(uri ? evhttp_uri_get_path(uri) : NULL);
	if (path == NULL) {
		http_send_error(h, req, 400, "bad_request", "bad path");
		return;
	}

	if (strcmp(path, "/healthz") == 0) {
		if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD)
			http_send_error(h, req, 405, "method_not_allowed", "use GET");
		else
			h_healthz(h, req);
		free(path);
		return;
	}
	if (strcmp(path, "/metrics") == 0) {
		if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
			http_send_error(h, req, 405, "method_not_allowed", "use GET");
		} else {
			struct hreq *r = hreq_new(h, req);
			if (is_loopback(r->addr)) {
				h_metrics(r);
			} else {
				r->need = ROLE_VIEWER;
				r->handler = h_metrics;
				auth_start(r);
			}
		}
		free(path);
		return;
	}
	if (strcmp(path, "/ussd") == 0) {
		if (cmd != EVHTTP_REQ_POST) {
			http_send_error(h, req, 405, "method_not_allowed", "use POST");
		} else {
			struct hreq *r = hreq_new(h, req);
			r->need = ROLE_PARTNER; /* the aggregator holds a partner token */
			r->handler = h_ussd;
			auth_start(r);
		}
		free(path);
		return;
	}
	if (strncmp(path, "/api/", 5) == 0) {
		enum http_parse_method m = cmd == EVHTTP_REQ_GET    ? HTTP_PARSE_GET
		                           : cmd == EVHTTP_REQ_POST ? HTTP_PARSE_POST
		                           : cmd == EVHTTP_REQ_HEAD ? HTTP_PARSE_HEAD
		                                                    : HTTP_PARSE_OTHER;
		char param[HTTP_PARSE_PARAM_MAX];
		enum http_route rt = http_parse_route(path, m, param, sizeof param);
		if (rt != HTTP_ROUTE_UNKNOWN && rt != HTTP_ROUTE_BAD_METHOD) {
			struct hreq *r = hreq_new(h, req);
			r->need = routes[rt].need;
			r->handler = routes[rt].fn;
			if (http_parse_route_has_param(rt))
				snprintf(r->arg, sizeof r->arg, "%s", param);
			free(path);
			auth_start(r);
			return;
		}
		bool path_known = rt == HTTP_ROUTE_BAD_METHOD;
		if (path_known)
			http_send_error(h, req, 405, "method_not_allowed", path);
		else
			http_send_error(h, req, 404, "not_found", path);
		free(path);
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		http_send_error(h, req, strcmp(path, "/") == 0 ? 405 : 404,
		                strcmp(path, "/") == 0 ? "method_not_allowed" : "not_found", path);
		free(path);
		return;
	}
	if (strcmp(path, "/") == 0 || strcmp(path, "/dashboard") == 0 ||
	    strcmp(path, "/dashboard/") == 0)
		h_static(h, req, "index.html");
	else if (strncmp(path, "/dashboard/", 11) == 0)
		h_static(h, req, path + 11);
	else
		http_send_error(h, req, 404, "not_found", path);
	free(path);
}

/* ------------------------------------------------------------------ */
/* Setup                                                               */

/* Every connection's bufferevent (TLS when configured), watched by an hconn. */
static struct bufferevent *
http_bevcb(struct event_base *base, void *arg)
{
	struct http_api *h = arg;
	struct bufferevent *bev;
	if (h->ssl != NULL) {
		SSL *ssl = SSL_new(h->ssl);
		if (ssl == NULL)
			return NULL;
		bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
		                                     BEV_OPT_CLOSE_ON_FREE);
		if (bev == NULL)
			SSL_free(ssl);
	} else {
		bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	}
	if (bev != NULL)
		hconn_new(h, bev);
	return bev;
}

#define HTTP_TLS_WARN_DAYS 14 /* warn when the certificate expires sooner */

/* ASN1 time as text ("Jan  2 00:00:00 2020 GMT"). */
static void
tls_time_str(const ASN1_TIME *t, char *out, size_t cap)
{
	snprintf(out, cap, "?");
	BIO *b = BIO_new(BIO_s_mem());
	if (b == NULL)
		return;
	if (ASN1_TIME_print(b, t) == 1) {
		int n = BIO_read(b, out, (int)cap - 1);
		out[n > 0 ? n : 0] = '\0';
	}
	BIO_free(b);
}

static void
tls_err_str(const char *what, char *err, size_t cap)
{
	char e[256];
	unsigned long code = ERR_peek_last_error();
	if (code != 0)
		ERR_error_string_n(code, e, sizeof e);
	else
		snprintf(e, sizeof e, "%s", strerror(errno));
	ERR_clear_error();
	snprintf(err, cap, "%s: %s", what, e);
}

/*
 * Loads [http] tls_cert and tls_key into ctx and checks them: the
 * certificate must be valid now (not expired, not yet valid) and the key
 * must match it; otherwise -1 with the reason in err. A self-signed
 * certificate, or one expiring within HTTP_TLS_WARN_DAYS, is only warned
 * about (logged).
 */
static int
http_tls_load(SSL_CTX *ctx, const struct sg_config *cfg, char *err, size_t cap)
{
	const char *cert = cfg->http_tls_cert;
	const char *key = cfg->http_tls_key[0] ? cfg->http_tls_key : cert;
	ERR_clear_error();
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		tls_err_str("cannot load the certificate", err, cap);
		return -1;
	}
	X509 *x = SSL_CTX_get0_certificate(ctx);
	if (x == NULL) {
		snprintf(err, cap, "no certificate in the file");
		return -1;
	}
	char nb[64], na[64];
	tls_time_str(X509_get0_notBefore(x), nb, sizeof nb);
	tls_time_str(X509_get0_notAfter(x), na, sizeof na);
	int c1 = X509_cmp_current_time(X509_get0_notBefore(x));
	int c2 = X509_cmp_current_time(X509_get0_notAfter(x));
	if (c1 == 0 || c2 == 0) {
		snprintf(err, cap, "the certificate's validity dates cannot be read");
		return -1;
	}
	if (c1 > 0) {
		snprintf(err, cap, "the certificate is not yet valid (notBefore %s)", nb);
		return -1;
	}
	if (c2 < 0) {
		snprintf(err, cap, "the certificate has expired (notAfter %s)", na);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
			ERR_clear_error();
			snprintf(err, cap, "the private key %s does not match the certificate",
			         key);
		} else {
			tls_err_str("cannot load the private key", err, cap);
		}
		return -1;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ERR_clear_error();
		snprintf(err, cap, "the private key %s does not match the certificate", key);
		return -1;
	}
	time_t soon = time(NULL) + (time_t)HTTP_TLS_WARN_DAYS * 86400;
	if (X509_cmp_time(X509_get0_notAfter(x), &soon) < 0)
		log_warn("http", "TLS certificate %s expires soon (notAfter %s)", cert, na);
	if (X509_self_signed(x, 0) == 1)
		log_warn("http",
		         "TLS certificate %s is self-signed: clients must be given it to trust it "
		         "(use a certificate from a CA in production)",
		         cert);
	ERR_clear_error();
	return 0;
}

int
http_api_check_tls(const struct sg_config *cfg, FILE *out)
{
	if (cfg->http_tls_cert[0] == '\0')
		return 0;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char err[512];
	int rc = ctx ? http_tls_load(ctx, cfg, err, sizeof err) : -1;
	if (ctx == NULL)
		snprintf(err, sizeof err, "cannot create a TLS context");
	if (rc != 0 && out != NULL)
		fprintf(out, "%s: [http] tls_cert: %s\n", cfg->http_tls_cert, err);
	SSL_CTX_free(ctx);
	return rc != 0 ? 1 : 0;
}

static int
http_tls_init(struct http_api *h)
{
	h->ssl = SSL_CTX_new(TLS_server_method());
	if (h->ssl == NULL)
		return -1;
	SSL_CTX_set_min_proto_version(h->ssl, TLS1_2_VERSION);
	SSL_CTX_set_options(h->ssl, SSL_OP_NO_RENEGOTIATION);
	char err[512];
	if (http_tls_load(h->ssl, h->cfg, err, sizeof err) != 0) {
		log_error("http", "TLS certificate %s refused: %s", h->cfg->http_tls_cert, err);
		return -1;
	}
	return 0;
}

struct http_api *
http_api_new(struct event_base *base, const struct sg_config *cfg, struct store *st,
             struct gateway *gw, struct pipeline *pipe)
{
	struct http_api *h = calloc(1, sizeof *h);
	if (h == NULL)
		abort();
	h->base = base;
	h->cfg = cfg;
	h->st = st;
	h->gw = gw;
	h->pipe = pipe;
	h->http = evhttp_new(base);
	if (h->http == NULL)
		goto fail;
	evhttp_set_max_body_size(h->http, (ev_ssize_t)cfg->http_max_body);
	evhttp_set_max_headers_size(h->http, 16384);
	evhttp_set_timeout(h->http, cfg->http_timeout);
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
	                                        EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	                                        EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
	evhttp_set_gencb(h->http, http_gen_cb, h);
	evhttp_set_bevcb(h->http, http_bevcb, h);
	if (cfg->http_tls_cert[0] != '\0' && http_tls_init(h) != 0)
		goto fail;
	if (cfg->http_dashboard_dir[0] != '\0' &&
	    realpath(cfg->http_dashboard_dir, h->webroot) == NULL) {
		log_warn("http", "dashboard dir %s: %s (dashboard disabled)",
		         cfg->http_dashboard_dir, strerror(errno));
		h->webroot[0] = '\0';
	}

	/* listen = host:port, [v6]:port or :port */
	char host[128], *port;
	snprintf(host, sizeof host, "%s", cfg->http_listen);
	char *hp = host;
	if (*hp == '[') {
		char *end = strchr(hp, ']');
		if (end == NULL)
			goto badlisten;
		*end = '\0';
		hp++;
		port = end + 1;
		if (*port != ':')
			goto badlisten;
		port++;
	} else {
		port = strrchr(hp, ':');
		if (port == NULL)
			goto badlisten;
		*port++ = '\0';
	}
	if (*hp == '\0')
		hp = "0.0.0.0";
	char *endp;
	long pn = strtol(port, &endp, 10);
	if (*port == '\0' || *endp != '\0' || pn < 0 || pn > 65535)
		goto badlisten;
	h->sock = evhttp_bind_socket_with_handle(h->http, hp, (ev_uint16_t)pn);
	if (h->sock == NULL) {
		log_error("http", "cannot listen on %s: %s", cfg->http_listen, strerror(errno));
		goto fail;
	}
	/* report the real port (listen = ...:0 picks a free one) */
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	int bport = (int)pn;
	if (getsockname(evhttp_bound_socket_get_fd(h->sock), (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET)
			bport = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			bport = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	log_info("http", "listening on %s port %d (%s)%s%s", hp, bport, h->ssl ? "https" : "http",
	         h->webroot[0] ? ", dashboard " : "", h->webroot);
	return h;
badlisten:
	log_error("http", "[http] listen = %s: expected host:port", cfg->http_listen);
fail:
	http_api_free(h);
	return NULL;
}

void
http_api_stop(struct http_api *h)
{
	if (h == NULL || h->sock == NULL)
		return;
	evhttp_del_accept_socket(h->http, h->sock);
	h->sock = NULL;
}

void
http_api_free(struct http_api *h)
{
	if (h == NULL)
		return;
	while (h->active != NULL) {
		struct hreq *r = h->active;
		hreq_free(r);
	}
	if (h->http)
		evhttp_free(h->http); /* closes every connection: their hconns go */
	while (h->conns != NULL)
		hconn_free(h->conns); /* never attached to their evhttp connection */
	if (h->ssl)
		SSL_CTX_free(h->ssl);
	free(h);
}

void
http_api_set_content(struct http_api *h, const struct content *c)
{
	if (h != NULL)
		h->content = c;
}

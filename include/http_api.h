/*
 * http_api.h — the HTTP side of skillgate on the daemon's event loop
 * (evhttp): /healthz, /metrics, the JSON API under /api/v1 (§4.1), the USSD
 * callback POST /ussd (§4.5) and the dashboard's static files (§4.4).
 * TLS when [http] tls_cert is set.
 *
 * Hardening (see http_api.c, "Connections"): every error is JSON, including
 * evhttp's own (413 over [http] max_body, 400 malformed); the request line
 * and headers must be complete within [http] timeout seconds of the
 * connection opening (or of the previous response), else 408 and closed;
 * the certificate is refused at start when expired, not yet valid or not
 * matching its key, and a self-signed one is warned about.
 */
#ifndef SG_HTTP_API_H
#define SG_HTTP_API_H

#include <stdio.h>

struct event_base;
struct sg_config;
struct store;
struct gateway;
struct pipeline;
struct content;
struct http_api;

/* Binds [http] listen. Everything passed is borrowed. NULL on failure (logged). */
struct http_api *http_api_new(struct event_base *base, const struct sg_config *cfg,
                              struct store *st, struct gateway *gw, struct pipeline *pipe);

/*
 * For skillgated -t: when [http] tls_cert is set, loads it and its key the
 * way http_api_new() does and prints "file: [http] tls_cert: reason" to out
 * (if not NULL) when the server would refuse it (expired or not yet valid,
 * key not matching, unreadable). Returns the number of errors (0 or 1).
 */
int http_api_check_tls(const struct sg_config *cfg, FILE *out);

/* Stops accepting new requests (shutdown); requests in flight may finish. */
void http_api_stop(struct http_api *h);

void http_api_free(struct http_api *h);

/* The USSD dialogs that answer POST /ussd (borrowed). */
struct ussd;
void http_api_set_ussd(struct http_api *h, struct ussd *u);

/* The content in force (swapped on SIGHUP). Borrowed. */
void http_api_set_content(struct http_api *h, const struct content *c);

#endif

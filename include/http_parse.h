/*
 * http_parse.h — the pure parsing and validation behind the HTTP API: what
 * skillgate itself reads out of a request (path decoding, API route
 * matching, dashboard path checks, the coverage and list query strings, the
 * JSON bodies of POST /api/v1/broadcasts and /api/v1/messages, the /ussd
 * form). No I/O, no database, no event loop: http_api.c calls these, and
 * tests/fuzz/fuzz_http.c feeds them hostile input.
 */
#ifndef SG_HTTP_PARSE_H
#define SG_HTTP_PARSE_H

#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define HTTP_PARSE_TEXT_MAX 1600 /* bytes of one API message or broadcast text */
#define HTTP_PARSE_PARAM_MAX 64  /* bytes of a path parameter, NUL included */

/* The API routes under /api/v1, in match order. */
enum http_route {
	HTTP_ROUTE_UNKNOWN = 0,      /* no route has this path */
	HTTP_ROUTE_SUBSCRIBER,       /* GET  /api/v1/subscribers/{msisdn} */
	HTTP_ROUTE_IMPORT,           /* POST /api/v1/households/import */
	HTTP_ROUTE_COVERAGE,         /* GET  /api/v1/reports/coverage */
	HTTP_ROUTE_BROADCAST_CREATE, /* POST /api/v1/broadcasts */
	HTTP_ROUTE_BROADCAST_LIST,   /* GET  /api/v1/broadcasts */
	HTTP_ROUTE_BROADCAST_CANCEL, /* POST /api/v1/broadcasts/{id}/cancel */
	HTTP_ROUTE_BROADCAST_SHOW,   /* GET  /api/v1/broadcasts/{id} */
	HTTP_ROUTE_MESSAGE,          /* POST /api/v1/messages */
	HTTP_ROUTE_BAD_METHOD,       /* a route has this path, but not this method */
};

/* Request methods as far as routing cares (evhttp's are mapped by the caller). */
enum http_parse_method { HTTP_PARSE_GET, HTTP_PARSE_POST, HTTP_PARSE_HEAD, HTTP_PARSE_OTHER };

/*
 * Decodes the raw (still %-encoded) request path. Returns a malloc'ed,
 * NUL-terminated decoded path the caller frees, or NULL when the path is
 * refused (undecodable, or holding %00 which would cut it short).
 */
char *http_parse_path(const char *raw);

/*
 * Matches a decoded path and method against the API routes. On a match
 * writes the path parameter (if the route has one) into param (cap bytes,
 * at most HTTP_PARSE_PARAM_MAX used) and returns the route; otherwise
 * HTTP_ROUTE_BAD_METHOD or HTTP_ROUTE_UNKNOWN. Whether the route has a
 * parameter: http_parse_route_has_param().
 */
enum http_route http_parse_route(const char *path, enum http_parse_method m, char *param,
                                 size_t cap);
bool http_parse_route_has_param(enum http_route r);

/*
 * Is rel (the decoded path below /dashboard/) acceptable as a file name
 * inside the web root before it is resolved? Refuses "..", backslashes and
 * names over 200 bytes. (The caller still checks realpath() stays inside.)
 */
bool http_parse_static_ok(const char *rel);

/* True when s is 1..maxlen ASCII digits. */
bool http_parse_digits(const char *s, size_t maxlen);

/*
 * The coverage report's query string (may be NULL): level (default
 * province; province, district or commune) and parent (optional, 1..5
 * digits). Fills level (levelcap bytes) and parent ("" when absent).
 * Returns NULL, or the error code ("invalid_level", "invalid_parent") with
 * *detail set to a static message.
 */
const char *http_parse_coverage_query(const char *qs, char *level, size_t levelcap, char *parent,
                                      size_t parentcap, const char **detail);

/* The broadcast list's ?limit= (default 50). Returns 1..500, or -1 when out of range. */
int http_parse_list_limit(const char *qs);

/*
 * Validates the §4.2 body of POST /api/v1/broadcasts. On success returns
 * NULL and points *tvi / *ten at the texts (inside o, never NULL) and
 * *segment at the segment object (inside o, or left NULL). Else returns a
 * static error detail.
 */
const char *http_parse_broadcast(json_t *o, const char **tvi, const char **ten, json_t **segment);

/*
 * Validates the body of POST /api/v1/messages: to (normalised into norm,
 * normcap bytes), text, optional client id. Returns NULL, or a static
 * error detail (all are 422 errors).
 */
const char *http_parse_message(json_t *o, char *norm, size_t normcap);

/* The fields of a /ussd form (x-www-form-urlencoded); pointers into kv, NULL when absent. */
struct http_ussd_form {
	struct evkeyvalq kv;
	const char *session_id, *service_code, *phone, *text;
};

/*
 * Parses a /ussd body. Returns 0, or -1 when it is not a form. Either way
 * the caller calls http_parse_ussd_form_clear(f) afterwards.
 */
int http_parse_ussd_form(const char *body, struct http_ussd_form *f);
void http_parse_ussd_form_clear(struct http_ussd_form *f);

#endif

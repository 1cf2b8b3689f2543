/*
 * http_parse.c — the pure parsing and validation behind the HTTP API (see
 * http_parse.h): path decoding, route matching, dashboard path checks,
 * query strings, the JSON bodies of broadcasts and messages, the /ussd form.
 * Nothing here touches a socket, the database or the event loop, so each
 * function can be fuzzed on its own (tests/fuzz/fuzz_http.c).
 */
#include "http_parse.h"

#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "msisdn.h"

/* ------------------------------------------------------------------ */
/* Paths and routes                                                    */

char *
http_parse_path(const char *raw)
{
	if (raw == NULL || *raw == '\0')
		raw = "/";
	/* a NUL decoded from %00 would end the string early: refuse it */
	if (strstr(raw, "%00") != NULL)
		return NULL;
	return evhttp_uridecode(raw, 0, NULL);
}

struct route_pat {
	enum http_route id;
	enum http_parse_method method;
	const char *prefix; /* path, or prefix when the route has a parameter */
	const char *suffix; /* after the parameter, or NULL */
	bool param;
};

static const struct route_pat route_pats[] = {
    {HTTP_ROUTE_SUBSCRIBER, HTTP_PARSE_GET, "/api/v1/subscribers/", NULL, true},
    {HTTP_ROUTE_IMPORT, HTTP_PARSE_POST, "/api/v1/households/import", NULL, false},
    {HTTP_ROUTE_COVERAGE, HTTP_PARSE_GET, "/api/v1/reports/coverage", NULL, false},
    {HTTP_ROUTE_BROADCAST_CREATE, HTTP_PARSE_POST, "/api/v1/broadcasts", NULL, false},
    {HTTP_ROUTE_BROADCAST_LIST, HTTP_PARSE_GET, "/api/v1/broadcasts", NULL, false},
    {HTTP_ROUTE_BROADCAST_CANCEL, HTTP_PARSE_POST, "/api/v1/broadcasts/", "/cancel", true},
    {HTTP_ROUTE_BROADCAST_SHOW, HTTP_PARSE_GET, "/api/v1/broadcasts/", NULL, true},
    {HTTP_ROUTE_MESSAGE, HTTP_PARSE_POST, "/api/v1/messages", NULL, false},
};

/* Does path match route t? Fills param. */
static bool
route_match(const struct route_pat *t, const char *path, char *param, size_t cap)
{
	size_t pl = strlen(t->prefix);
	if (!t->param)
		return strcmp(path, t->prefix) == 0;
	if (strncmp(path, t->prefix, pl) != 0)
		return false;
	const char *rest = path + pl;
	const char *slash = strchr(rest, '/');
	size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
	if (n == 0 || n >= cap)
		return false;
	const char *tail = rest + n;
	if (t->suffix ? strcmp(tail, t->suffix) != 0 : *tail != '\0')
		return false;
	memcpy(param, rest, n);
	param[n] = '\0';
	return true;
}

enum http_route
http_parse_route(const char *path, enum http_parse_method m, char *param, size_t cap)
{
	bool path_known = false;
	char p[HTTP_PARSE_PARAM_MAX];
	if (cap > sizeof p)
		cap = sizeof p;
	for (size_t i = 0; i < sizeof route_pats / sizeof route_pats[0]; i++) {
		if (!route_match(&route_pats[i], path, p, sizeof p))
			continue;
		path_known = true;
		if (route_pats[i].method != m)
			continue;
		if (route_pats[i].param && cap > 0)
			snprintf(param, cap, "%s", p);
		return route_pats[i].id;
	}
	return path_known ? HTTP_ROUTE_BAD_METHOD : HTTP_ROUTE_UNKNOWN;
}

bool
http_parse_route_has_param(enum http_route r)
{
	for (size_t i = 0; i < sizeof route_pats / sizeof route_pats[0]; i++)
		if (route_pats[i].id == r)
			return route_pats[i].param;
	return false;
}

bool
http_parse_static_ok(const char *rel)
{
	return strstr(rel, "..") == NULL && strchr(rel, '\\') == NULL && strlen(rel) <= 200;
}

/* ------------------------------------------------------------------ */
/* Query strings                                                       */

bool
http_parse_digits(const char *s, size_t maxlen)
{
	size_t n = strlen(s);
	if (n == 0 || n > maxlen)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

const char *
http_parse_coverage_query(const char *qs, char *level, size_t levelcap, char *parent,
                          size_t parentcap, const char **detail)
{
	struct evkeyvalq q;
	TAILQ_INIT(&q);
	evhttp_parse_query_str(qs ? qs : "", &q);
	const char *lv = evhttp_find_header(&q, "level");
	const char *pa = evhttp_find_header(&q, "parent");
	const char *err = NULL;
	if (lv == NULL || *lv == '\0')
		lv = "province";
	if (parent != NULL && parentcap > 0)
		parent[0] = '\0';
	if (strcmp(lv, "province") != 0 && strcmp(lv, "district") != 0 &&
	    strcmp(lv, "commune") != 0) {
		err = "invalid_level";
		*detail = "level must be province, district or commune";
		goto out;
	}
	if (pa != NULL && *pa == '\0')
		pa = NULL;
	if (pa != NULL && !http_parse_digits(pa, 5)) {
		err = "invalid_parent";
		*detail = "parent must be a locality code (digits)";
		goto out;
	}
	snprintf(level, levelcap, "%s", lv);
	if (pa != NULL)
		snprintf(parent, parentcap, "%s", pa);
out:
	evhttp_clear_headers(&q);
	return err;
}

int
http_parse_list_limit(const char *qs)
{
	struct evkeyvalq q;
	TAILQ_INIT(&q);
	evhttp_parse_query_str(qs ? qs : "", &q);
	const char *lim = evhttp_find_header(&q, "limit");
	int limit = lim ? atoi(lim) : 50;
	evhttp_clear_headers(&q);
	return limit < 1 || limit > 500 ? -1 : limit;
}

/* ------------------------------------------------------------------ */
/* JSON bodies                                                         */

static const char *const skill_codes[] = {"public_services", "shopping", "payment", "safety",
                                          "platforms"};

const char *
http_parse_broadcast(json_t *o, const char **tvi, const char **ten, json_t **segment)
{
	if (!json_is_object(o))
		return "the body must be a JSON object";
	json_t *name = json_object_get(o, "name");
	if (!json_is_string(name) || json_string_length(name) == 0 ||
	    json_string_length(name) > 200)
		return "name must be a non-empty string (at most 200 bytes)";
	json_t *text = json_object_get(o, "text");
	if (json_is_string(text)) {
		*tvi = *ten = json_string_value(text);
	} else if (json_is_object(text)) {
		json_t *vi = json_object_get(text, "vi"), *en = json_object_get(text, "en");
		if ((vi && !json_is_string(vi)) || (en && !json_is_string(en)))
			return "text.vi and text.en must be strings";
		*tvi = vi ? json_string_value(vi) : NULL;
		*ten = en ? json_string_value(en) : NULL;
		if (*tvi && **tvi == '\0')
			*tvi = NULL;
		if (*ten && **ten == '\0')
			*ten = NULL;
		if (*tvi == NULL && *ten == NULL)
			return "text needs at least one of vi, en";
		if (*tvi == NULL)
			*tvi = *ten;
		if (*ten == NULL)
			*ten = *tvi;
	} else {
		return "text must be an object {\"vi\": ..., \"en\": ...}";
	}
	if (strlen(*tvi) > HTTP_PARSE_TEXT_MAX || strlen(*ten) > HTTP_PARSE_TEXT_MAX)
		return "text longer than 1600 bytes";
	json_t *seg = json_object_get(o, "segment");
	if (seg != NULL && !json_is_null(seg)) {
		if (!json_is_object(seg))
			return "segment must be an object";
		static const struct {
			const char *key;
			size_t len;
		} codes[] = {{"province", 2}, {"district", 3}, {"commune", 5}};
		for (size_t i = 0; i < 3; i++) {
			json_t *v = json_object_get(seg, codes[i].key);
			if (v == NULL || json_is_null(v))
				continue;
			if (!json_is_string(v) || json_string_length(v) != codes[i].len ||
			    !http_parse_digits(json_string_value(v), codes[i].len))
				return codes[i].len == 2   ? "segment.province must be 2 digits"
				       : codes[i].len == 3 ? "segment.district must be 3 digits"
				                           : "segment.commune must be 5 digits";
		}
		json_t *ms = json_object_get(seg, "missing_skills");
		if (ms != NULL && !json_is_null(ms)) {
			if (!json_is_array(ms))
				return "segment.missing_skills must be an array of skill codes";
			size_t i;
			json_t *v;
			json_array_foreach(ms, i, v)
			{
				bool ok = false;
				for (size_t k = 0; k < 5 && json_is_string(v); k++)
					if (strcmp(json_string_value(v), skill_codes[k]) == 0)
						ok = true;
				if (!ok)
					return "segment.missing_skills: unknown skill code";
			}
		}
		json_t *lang = json_object_get(seg, "language");
		if (lang != NULL && !json_is_null(lang) &&
		    (!json_is_string(lang) || (strcmp(json_string_value(lang), "vi") != 0 &&
		                               strcmp(json_string_value(lang), "en") != 0)))
			return "segment.language must be vi or en";
		json_t *cov = json_object_get(seg, "covered");
		if (cov != NULL && !json_is_null(cov) && !json_is_boolean(cov))
			return "segment.covered must be true or false";
		json_t *since = json_object_get(seg, "registered_since");
		if (since != NULL && !json_is_null(since) && !json_is_string(since))
			return "segment.registered_since must be a timestamp string";
		*segment = seg;
	}
	json_t *sa = json_object_get(o, "start_at"), *ea = json_object_get(o, "end_at");
	if (sa != NULL && !json_is_null(sa) && !json_is_string(sa))
		return "start_at must be an ISO 8601 timestamp string";
	if (ea != NULL && !json_is_null(ea) && !json_is_string(ea))
		return "end_at must be an ISO 8601 timestamp string";
	json_t *rate = json_object_get(o, "rate");
	if (rate != NULL && !json_is_null(rate) &&
	    (!json_is_integer(rate) || json_integer_value(rate) < 1 ||
	     json_integer_value(rate) > 100000))
		return "rate must be an integer 1..100000 (messages per second)";
	return NULL;
}

const char *
http_parse_message(json_t *o, char *norm, size_t normcap)
{
	if (!json_is_object(o))
		return "the body must be a JSON object";
	json_t *to = json_object_get(o, "to"), *text = json_object_get(o, "text");
	json_t *id = json_object_get(o, "id");
	if (!json_is_string(to) || msisdn_normalise(json_string_value(to), norm, normcap) != 0)
		return "to must be a phone number";
	if (!json_is_string(text) || json_string_length(text) == 0 ||
	    json_string_length(text) > HTTP_PARSE_TEXT_MAX)
		return "text must be a non-empty string of at most 1600 bytes";
	if (id != NULL && !json_is_null(id) &&
	    (!json_is_string(id) || json_string_length(id) == 0 || json_string_length(id) > 64))
		return "id must be a string of 1..64 characters";
	return NULL;
}

/* ------------------------------------------------------------------ */
/* The /ussd form                                                      */

int
http_parse_ussd_form(const char *body, struct http_ussd_form *f)
{
	TAILQ_INIT(&f->kv);
	f->session_id = f->service_code = f->phone = f->text = NULL;
	if (evhttp_parse_query_str(body, &f->kv) != 0)
		return -1;
	f->session_id = evhttp_find_header(&f->kv, "sessionId");
	f->service_code = evhttp_find_header(&f->kv, "serviceCode");
	f->phone = evhttp_find_header(&f->kv, "phoneNumber");
	f->text = evhttp_find_header(&f->kv, "text");
	return 0;
}

void
http_parse_ussd_form_clear(struct http_ussd_form *f)
{
	evhttp_clear_headers(&f->kv);
	f->session_id = f->service_code = f->phone = f->text = NULL;
}

/*
 * fuzz_http.c — libFuzzer target for what skillgate itself parses out of an
 * HTTP request (http_parse.h). The first byte picks the parser, the rest is
 * its input:
 *   0  request path: decode, API route match for every method, dashboard check
 *   1  coverage query string (?level=&parent=)
 *   2  broadcast list query string (?limit=)
 *   3  JSON body of POST /api/v1/broadcasts (jansson, then validation)
 *   4  JSON body of POST /api/v1/messages
 *   5  /ussd form body
 * Each parser's promises are checked: a parameter never holds '/', a level
 * is one of three, a limit is 1..500, validated texts are bounded, a
 * normalised number is digits, dashboard names never hold "..".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"

static void
fuzz_path(const char *s)
{
	char *path = http_parse_path(s);
	if (path == NULL)
		return;
	static const enum http_parse_method ms[] = {HTTP_PARSE_GET, HTTP_PARSE_POST,
	                                            HTTP_PARSE_HEAD, HTTP_PARSE_OTHER};
	for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
		char param[HTTP_PARSE_PARAM_MAX];
		enum http_route r = http_parse_route(path, ms[i], param, sizeof param);
		if (r < HTTP_ROUTE_UNKNOWN || r > HTTP_ROUTE_BAD_METHOD)
			abort();
		if ((ms[i] == HTTP_PARSE_HEAD || ms[i] == HTTP_PARSE_OTHER) &&
		    r != HTTP_ROUTE_UNKNOWN && r != HTTP_ROUTE_BAD_METHOD)
			abort();
		if (r != HTTP_ROUTE_UNKNOWN && strncmp(path, "/api/v1/", 8) != 0)
			abort();
		if (r != HTTP_ROUTE_UNKNOWN && r != HTTP_ROUTE_BAD_METHOD &&
		    http_parse_route_has_param(r)) {
			size_t n = strlen(param);
			if (n == 0 || n >= sizeof param || strchr(param, '/') != NULL)
				abort();
		}
	}
	if (strncmp(path, "/dashboard/", 11) == 0 && http_parse_static_ok(path + 11) &&
	    (strstr(path + 11, "..") != NULL || strlen(path + 11) > 200))
		abort();
	free(path);
}

static void
fuzz_coverage(const char *s)
{
	char level[64], parent[8];
	const char *detail = NULL;
	const char *err =
	    http_parse_coverage_query(s, level, sizeof level, parent, sizeof parent, &detail);
	if (err != NULL) {
		if (detail == NULL)
			abort();
		return;
	}
	if (strcmp(level, "province") != 0 && strcmp(level, "district") != 0 &&
	    strcmp(level, "commune") != 0)
		abort();
	if (parent[0] != '\0' && !http_parse_digits(parent, 5))
		abort();
}

static void
fuzz_json(const char *s, size_t n, int which)
{
	json_error_t je;
	json_t *o = json_loadb(s, n, 0, &je);
	if (o == NULL)
		return;
	if (which == 3) {
		const char *tvi = NULL, *ten = NULL;
		json_t *seg = NULL;
		if (http_parse_broadcast(o, &tvi, &ten, &seg) == NULL) {
			if (tvi == NULL || ten == NULL || strlen(tvi) > HTTP_PARSE_TEXT_MAX ||
			    strlen(ten) > HTTP_PARSE_TEXT_MAX ||
			    (seg != NULL && !json_is_object(seg)))
				abort();
			char *d = seg ? json_dumps(seg, JSON_COMPACT) : NULL;
			free(d);
		}
	} else {
		char norm[32];
		if (http_parse_message(o, norm, sizeof norm) == NULL) {
			size_t k = strlen(norm);
			if (k == 0 || k >= sizeof norm)
				abort();
			for (size_t i = 0; i < k; i++)
				if (norm[i] < '0' || norm[i] > '9')
					abort();
		}
	}
	json_decref(o);
}

static void
fuzz_ussd(const char *s)
{
	struct http_ussd_form f;
	if (http_parse_ussd_form(s, &f) == 0) {
		const char *v[] = {f.session_id, f.service_code, f.phone, f.text};
		size_t total = 0;
		for (size_t i = 0; i < 4; i++)
			total += v[i] ? strlen(v[i]) : 0;
		if (total > strlen(s) * 3 + 4) /* decoding never grows a field */
			abort();
	}
	http_parse_ussd_form_clear(&f);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 65536)
		return 0;
	int which = data[0] % 6;
	size_t n = size - 1;
	char *s = malloc(n + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data + 1, n);
	s[n] = '\0';
	switch (which) {
	case 0:
		fuzz_path(s);
		break;
	case 1:
		fuzz_coverage(s);
		break;
	case 2: {
		int l = http_parse_list_limit(s);
		if (l != -1 && (l < 1 || l > 500))
			abort();
		break;
	}
	case 3:
	case 4:
		fuzz_json(s, n, which);
		break;
	default:
		fuzz_ussd(s);
		break;
	}
	free(s);
	return 0;
}

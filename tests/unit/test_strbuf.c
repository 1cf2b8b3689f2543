/*
 * test_strbuf.c — strbuf.c: integers without printf (the extremes included),
 * PostgreSQL array elements, and the JSON writer: commas where JSON needs
 * them, escapes, and bytes that are not UTF-8 replaced so that PostgreSQL's
 * jsonb input accepts the batch. The JSON is read back with jansson.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "strbuf.h"

static void
test_int(void **state)
{
	const long long v[] = {0, 7, -7, 10, 1234567890123LL, LLONG_MAX, LLONG_MIN};
	struct strbuf b;
	char want[32];

	strbuf_init(&b);
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		strbuf_reset(&b);
		strbuf_int(&b, v[i]);
		snprintf(want, sizeof want, "%lld", v[i]);
		assert_string_equal(b.s, want);
		assert_int_equal(b.len, strlen(want));
	}
	strbuf_reset(&b);
	strbuf_pgarr_begin(&b);
	strbuf_pgarr_int(&b, 12);
	strbuf_pgarr_elem(&b, NULL);
	strbuf_pgarr_int(&b, -3);
	strbuf_pgarr_elem(&b, "a\"b");
	strbuf_pgarr_end(&b);
	assert_string_equal(b.s, "{12,NULL,-3,\"a\\\"b\"}");
	strbuf_free(&b);
}

/* str_copy cuts and terminates as snprintf("%s") does; NULL is "", cap 0 writes nothing. */
static void
test_copy(void **state)
{
	char d[5] = "wxyz", want[5];
	const char *src[] = {"", "ab", "abcd", "abcdef"};

	for (size_t i = 0; i < sizeof src / sizeof src[0]; i++) {
		for (size_t cap = 1; cap <= sizeof d; cap++) {
			snprintf(want, cap, "%s", src[i]);
			assert_ptr_equal(str_copy(d, cap, src[i]), d);
			assert_string_equal(d, want);
		}
	}
	str_copy(d, sizeof d, NULL);
	assert_string_equal(d, "");
	d[0] = 'q';
	str_copy(d, 0, "abc");
	assert_int_equal(d[0], 'q');
}

/* The writer's output for one nested element, parsed back. */
static void
test_json_shape(void **state)
{
	struct strbuf b;
	json_error_t err;

	strbuf_init(&b);
	strbuf_json_open(&b, '[');
	for (int i = 0; i < 2; i++) {
		strbuf_json_open(&b, '{');
		strbuf_json_key(&b, "mo");
		strbuf_json_int(&b, 9000000000LL + i);
		strbuf_json_key(&b, "empty");
		strbuf_json_open(&b, '[');
		strbuf_json_close(&b, ']');
		strbuf_json_key(&b, "ev");
		strbuf_json_open(&b, '[');
		strbuf_json_open(&b, '[');
		strbuf_json_int(&b, 1);
		strbuf_json_str(&b, "quiz:");
		strbuf_json_bool(&b, true);
		strbuf_json_close(&b, ']');
		strbuf_json_open(&b, '[');
		strbuf_json_bool(&b, false);
		strbuf_json_str(&b, NULL);
		strbuf_json_close(&b, ']');
		strbuf_json_close(&b, ']');
		strbuf_json_key(&b, "in");
		strbuf_json_open(&b, '{');
		strbuf_json_key(&b, "text");
		strbuf_json_str(&b, "");
		strbuf_json_close(&b, '}');
		strbuf_json_close(&b, '}');
	}
	strbuf_json_close(&b, ']');
	assert_string_equal(b.s, "[{\"mo\":9000000000,\"empty\":[],\"ev\":[[1,\"quiz:\",true],"
	                         "[false,null]],\"in\":{\"text\":\"\"}},{\"mo\":9000000001,"
	                         "\"empty\":[],\"ev\":[[1,\"quiz:\",true],[false,null]],"
	                         "\"in\":{\"text\":\"\"}}]");
	json_t *j = json_loads(b.s, 0, &err);
	assert_non_null(j);
	assert_int_equal(json_array_size(j), 2);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(j, 1), "mo")),
	                 9000000001LL);
	json_decref(j);
	strbuf_free(&b);
}

/* s written as a JSON string, parsed back by jansson (which rejects invalid UTF-8). */
static void
json_roundtrip(const char *s, const char *want_json, const char *want_value)
{
	struct strbuf b;
	json_error_t err;

	strbuf_init(&b);
	strbuf_json_str(&b, s);
	assert_string_equal(b.s, want_json);
	json_t *j = json_loads(b.s, JSON_DECODE_ANY, &err);
	assert_non_null(j);
	assert_string_equal(json_string_value(j), want_value);
	json_decref(j);
	strbuf_free(&b);
}

static void
test_json_escapes(void **state)
{
	json_roundtrip("HOC 1", "\"HOC 1\"", "HOC 1");
	json_roundtrip("a\"b\\c/d", "\"a\\\"b\\\\c/d\"", "a\"b\\c/d");
	json_roundtrip("l1\nl2\t\x01\x1f", "\"l1\\u000al2\\u0009\\u0001\\u001f\"",
	               "l1\nl2\t\x01\x1f");
	/* Vietnamese and a 4-byte character pass as they are */
	json_roundtrip("Học kỹ năng số \xf0\x9f\x93\xb1", "\"Học kỹ năng số \xf0\x9f\x93\xb1\"",
	               "Học kỹ năng số \xf0\x9f\x93\xb1");
	json_roundtrip("\x7f", "\"\x7f\"", "\x7f");
}

/* Each byte that does not start valid UTF-8 becomes U+FFFD; the rest is kept. */
static void
test_json_not_utf8(void **state)
{
	struct {
		const char *in, *out;
	} c[] = {
	    {"a\xff"
	     "b",
	     "a\xef\xbf\xbd"
	     "b"},                                                    /* not a lead byte */
	    {"\x80", "\xef\xbf\xbd"},                                 /* lone continuation */
	    {"\xc3", "\xef\xbf\xbd"},                                 /* cut at the end */
	    {"\xc3(", "\xef\xbf\xbd("},                               /* bad continuation */
	    {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong '/' */
	    {"\xe0\x80\xaf", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* overlong */
	    {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate D800 */
	    {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > 10FFFF */
	    {"\xe1\xbb\x8d\xe1", "\xe1\xbb\x8d\xef\xbf\xbd"}, /* "ọ", then a cut sequence */
	};
	char json[64], value[64];

	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
		snprintf(json, sizeof json, "\"%s\"", c[i].out);
		snprintf(value, sizeof value, "%s", c[i].out);
		json_roundtrip(c[i].in, json, value);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_int),           cmocka_unit_test(test_copy),
	    cmocka_unit_test(test_json_shape),    cmocka_unit_test(test_json_escapes),
	    cmocka_unit_test(test_json_not_utf8),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

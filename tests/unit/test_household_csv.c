/*
 * test_household_csv.c — the household import CSV parser and validator:
 * quoting, column counts, codes, phone numbers, languages, BOM, CRLF,
 * non-UTF-8 input, and feeding in pieces of every size.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "household_csv.h"

#define HDR "household_code,province_code,district_code,commune_code,village,msisdn,language\n"

struct result {
	int nok, nerr;
	int lines[64];
	char errs[64][128];
	struct hhcsv_row rows[64];
};

static void
collect(void *arg, int line, const struct hhcsv_row *row, const char *err)
{
	struct result *r = arg;
	int i = r->nok + r->nerr;
	if (i >= 64)
		return;
	r->lines[i] = line;
	if (row != NULL) {
		r->rows[i] = *row;
		r->errs[i][0] = '\0';
		r->nok++;
	} else {
		snprintf(r->errs[i], sizeof r->errs[i], "%s", err);
		r->nerr++;
	}
}

/* Parses text fed in pieces of `chunk` bytes (0 = all at once). */
static int
parse(const char *text, size_t len, size_t chunk, struct result *r, const char **fatal)
{
	memset(r, 0, sizeof *r);
	struct hhcsv *p = hhcsv_new(collect, r);
	if (chunk == 0)
		chunk = len ? len : 1;
	for (size_t off = 0; off < len; off += chunk)
		hhcsv_feed(p, text + off, len - off < chunk ? len - off : chunk);
	static char fatal_copy[256];
	const char *f = NULL;
	int rc = hhcsv_finish(p, &f);
	snprintf(fatal_copy, sizeof fatal_copy, "%s", f ? f : "");
	if (fatal != NULL)
		*fatal = fatal_copy;
	hhcsv_free(p);
	return rc;
}

static void
test_valid_rows(void **state)
{
	const char *csv = HDR "HN-0001,01,001,00001,Tổ 5,0912345678,vi\n"
	                      "HN-0001,01,001,00001,Tổ 5,+84912345679,EN\n"
	                      "HN-0002,01,001,00004,,,\n";
	struct result r;
	assert_int_equal(parse(csv, strlen(csv), 0, &r, NULL), 0);
	assert_int_equal(r.nok, 3);
	assert_int_equal(r.nerr, 0);
	assert_string_equal(r.rows[0].household_code, "HN-0001");
	assert_string_equal(r.rows[0].msisdn, "84912345678");
	assert_string_equal(r.rows[0].village, "Tổ 5");
	assert_int_equal(r.rows[0].line, 2);
	assert_string_equal(r.rows[1].msisdn, "84912345679");
	assert_string_equal(r.rows[1].language, "en");
	assert_string_equal(r.rows[2].msisdn, "");
	assert_string_equal(r.rows[2].language, "vi");
	assert_int_equal(r.rows[2].line, 4);
}

/* One bad record each; the error must mention `want`. */
static const struct {
	const char *row;
	const char *want;
} bad_rows[] = {
    {"HN-1,01,001,00001,\"Tổ 5,0912345678,vi", "unterminated"},
    {"HN-1,01,001,00001,Tổ \"5\",0912345678,vi", "quote inside"},
    {"HN-1,01,001,00001,\"Tổ 5\"x,0912345678,vi", "after a closing quote"},
    {"HN-1,01,001,00001,0912345678,vi", "expected 7 columns, got 6"},
    {"HN-1,01,001,00001,v,0912345678,vi,extra", "expected 7 columns, got 8"},
    {"HN-1,1,001,00001,v,0912345678,vi", "province_code"},
    {"HN-1,01,01,00001,v,0912345678,vi", "district_code"},
    {"HN-1,01,001,0001A,v,0912345678,vi", "commune_code"},
    {",01,001,00001,v,0912345678,vi", "household_code is empty"},
    {"HN 1,01,001,00001,v,0912345678,vi", "household_code may only"},
    {"HN-1,01,001,00001,v,12ab,vi", "msisdn"},
    {"HN-1,01,001,00001,v,0912345678,fr", "language"},
    {"HN-1,01,001,00001,T\xe1\xbb,0912345678,vi", "UTF-8"},
    {"HN-1,01,001,00001,\xff\xfe,0912345678,vi", "UTF-8"},
    {"HN-1,01,001,00001,\xed\xa0\x80,0912345678,vi", "UTF-8"},
};

static void
test_bad_rows(void **state)
{
	for (size_t i = 0; i < sizeof bad_rows / sizeof bad_rows[0]; i++) {
		char csv[1024];
		snprintf(csv, sizeof csv,
		         HDR "HN-9,01,001,00001,ok,0912000001,vi\n%s\nHN-9,01,001,00001,ok,,vi\n",
		         bad_rows[i].row);
		struct result r;
		assert_int_equal(parse(csv, strlen(csv), 0, &r, NULL), 0);
		if (r.nerr != 1 || strstr(r.errs[1], bad_rows[i].want) == NULL)
			fail_msg("row %zu (%s): got %d errors, error \"%s\", want \"%s\"", i,
			         bad_rows[i].row, r.nerr, r.errs[1], bad_rows[i].want);
		assert_int_equal(r.nok, 2);
		assert_int_equal(r.lines[1], 3);
		assert_int_equal(r.lines[2], 4);
	}
}

static void
test_bom_crlf_quotes(void **state)
{
	const char *csv =
	    "\xef\xbb\xbf"
	    "household_code,province_code,district_code,commune_code,village,msisdn,language\r\n"
	    "\"HN-1\",01,001,00001,\"Tổ 5, \"\"Ngõ\"\" 3\",\"0912 345 678\",vi\r\n"
	    "\r\n"
	    "HN-2,01,001,00001,x,,en";
	for (size_t chunk = 0; chunk < 9; chunk++) {
		struct result r;
		assert_int_equal(parse(csv, strlen(csv), chunk, &r, NULL), 0);
		assert_int_equal(r.nerr, 0);
		assert_int_equal(r.nok, 2);
		assert_string_equal(r.rows[0].household_code, "HN-1");
		assert_string_equal(r.rows[0].village, "Tổ 5, \"Ngõ\" 3");
		assert_string_equal(r.rows[0].msisdn, "84912345678");
		assert_int_equal(r.lines[1], 4);
		assert_string_equal(r.rows[1].language, "en");
	}
}

static void
test_header(void **state)
{
	struct result r;
	const char *fatal = NULL;
	/* columns in another order are fine */
	const char *reordered =
	    "msisdn,language,village,commune_code,district_code,province_code,household_code\n"
	    "0912345678,en,x,00001,001,01,HN-1\n";
	assert_int_equal(parse(reordered, strlen(reordered), 0, &r, &fatal), 0);
	assert_int_equal(r.nok, 1);
	assert_string_equal(r.rows[0].commune, "00001");
	/* no header: every record is an error and the parse fails */
	const char *nohdr =
	    "HN-1,01,001,00001,x,0912345678,vi\nHN-2,01,001,00001,x,0912345679,vi\n";
	assert_int_equal(parse(nohdr, strlen(nohdr), 0, &r, &fatal), -1);
	assert_non_null(strstr(fatal, "unknown column"));
	assert_int_equal(r.nerr, 1);
	assert_int_equal(r.nok, 0);
	/* missing column */
	const char *missing =
	    "household_code,province_code,district_code,commune_code,village,msisdn\n";
	assert_int_equal(parse(missing, strlen(missing), 0, &r, &fatal), -1);
	assert_non_null(strstr(fatal, "missing column language"));
	/* empty input */
	assert_int_equal(parse("", 0, 0, &r, &fatal), -1);
	assert_non_null(strstr(fatal, "empty"));
	/* a BOM only */
	assert_int_equal(parse("\xef\xbb", 2, 0, &r, &fatal), -1);
}

static void
test_long_record(void **state)
{
	char csv[8192];
	size_t n = (size_t)snprintf(csv, sizeof csv, HDR "HN-1,01,001,00001,");
	memset(csv + n, 'a', 3000);
	n += 3000;
	n += (size_t)snprintf(csv + n, sizeof csv - n, ",,vi\nHN-2,01,001,00001,x,,vi\n");
	struct result r;
	assert_int_equal(parse(csv, n, 7, &r, NULL), 0);
	assert_int_equal(r.nerr, 1);
	assert_non_null(strstr(r.errs[0], "longer"));
	assert_int_equal(r.nok, 1);
	assert_int_equal(r.lines[1], 3);
}

static void
test_utf8(void **state)
{
	static const struct {
		const char *s;
		int ok;
	} cases[] = {
	    {"abc", 1},      {"Tổ", 1},           {"\xf0\x9f\x98\x80", 1},
	    {"\xc0\x80", 0}, {"\xe0\x80\x80", 0}, {"\xf4\x90\x80\x80", 0},
	    {"\x80", 0},     {"\xe1\xbb", 0},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_int_equal(hhcsv_utf8_valid(cases[i].s, strlen(cases[i].s)), cases[i].ok);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_valid_rows),      cmocka_unit_test(test_bad_rows),
	    cmocka_unit_test(test_bom_crlf_quotes), cmocka_unit_test(test_header),
	    cmocka_unit_test(test_long_record),     cmocka_unit_test(test_utf8),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

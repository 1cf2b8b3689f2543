/*
 * test_msisdn.c — msisdn.c: Vietnamese mobile numbers in every usual
 * writing, international numbers, and what must be rejected.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "msisdn.h"

static const struct {
	const char *in;
	const char *out; /* NULL = rejected */
} cases[] = {
    {"0912345678", "84912345678"},
    {"+84912345678", "84912345678"},
    {"84912345678", "84912345678"},
    {"0084912345678", "84912345678"},
    {"0912 345 678", "84912345678"},
    {"091-234-5678", "84912345678"},
    {"091.234.5678", "84912345678"},
    {"(+84) 912 345 678", "84912345678"},
    {"+84 (0) 912345678", "84912345678"}, /* trunk 0 after the country code */
    {"0321234567", "84321234567"},        /* Viettel 03x */
    {"0561234567", "84561234567"},
    {"0701234567", "84701234567"},
    {"0861234567", "84861234567"},
    {"0981234567", "84981234567"},
    {"+4915112345678", "4915112345678"}, /* international kept */
    {"004915112345678", "4915112345678"},
    {"+65 9123 4567", "6591234567"},
    {"+12025550123", "12025550123"},
    {"+1234567", NULL},        /* 7 digits: too short */
    {"+12345678", "12345678"}, /* 8: shortest accepted */
    {"+123456789012345", "123456789012345"},
    {"+1234567890123456", NULL}, /* 16 digits */
    {"0212345678", NULL},        /* 02x is a landline */
    {"0112345678", NULL},
    {"091234567", NULL},     /* 9 digits */
    {"09123456789", NULL},   /* 11 digits */
    {"+842412345678", NULL}, /* +84 but not a mobile */
    {"912345678", NULL},     /* no prefix: ambiguous */
    {"4915112345678", NULL}, /* international without + */
    {"+0912345678", NULL},   /* country code cannot start with 0 */
    {"09123abc78", NULL},
    {"84+912345678", NULL},
    {"++84912345678", NULL},
    {"", NULL},
    {"   ", NULL},
    {"+", NULL},
    {"VIETTEL", NULL},
    {"0912345678901234567890123", NULL},
};

static void
test_table(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[24];
		int rc;

		memset(out, 'X', sizeof(out));
		rc = msisdn_normalise(cases[i].in, out, sizeof(out));
		if (cases[i].out == NULL) {
			if (rc != -1 || out[0] != '\0')
				fail_msg("'%s' should be rejected, got '%s'", cases[i].in, out);
		} else if (rc != 0 || strcmp(out, cases[i].out) != 0) {
			fail_msg("'%s': rc %d '%s', want '%s'", cases[i].in, rc, out, cases[i].out);
		}
	}
}

static void
test_small_buffer(void **state)
{
	char out[12];

	assert_int_equal(msisdn_normalise("0912345678", out, 12), 0);
	assert_string_equal(out, "84912345678");
	assert_int_equal(msisdn_normalise("0912345678", out, 11), -1);
	assert_string_equal(out, "");
	assert_int_equal(msisdn_normalise(NULL, out, sizeof(out)), -1);
	assert_int_equal(msisdn_normalise("0912345678", NULL, 0), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_small_buffer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

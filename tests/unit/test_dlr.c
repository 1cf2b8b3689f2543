/*
 * test_dlr.c — dlr.c: appendix-B receipt text (the field-note examples,
 * missing sub/dlvrd, 10- and 12-digit dates, unknown states, extra fields,
 * odd case and order), stat words, final states and id normalisation
 * (hex/decimal, leading zeros, case, overflow).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "dlr.h"

struct parse_case {
	const char *name;
	const char *text;
	int rc;
	const char *id;
	enum msg_dlr_state state;
	int err, sub, dlvrd;
	const char *submit, *done;
};

static const struct parse_case parse_cases[] = {
    {"jasmin #1050 (no sub/dlvrd)",
     "id:1602718841 submit date:2204152009 done date:2204152009 stat:DELIVRD err:000", 0,
     "1602718841", MSG_DLR_DELIVERED, 0, -1, -1, "2204152009", "2204152009"},
    {"full appendix B",
     "id:0123456789 sub:001 dlvrd:001 submit date:2211281600 done date:2211281601 "
     "stat:DELIVRD err:000 text:Xin chao",
     0, "0123456789", MSG_DLR_DELIVERED, 0, 1, 1, "2211281600", "2211281601"},
    {"12-digit dates",
     "id:abc sub:001 dlvrd:000 submit date:221128160012 done date:221128160159 "
     "stat:UNDELIV err:075 text:",
     0, "abc", MSG_DLR_UNDELIVERABLE, 75, 1, 0, "221128160012", "221128160159"},
    {"unknown state word", "id:42 stat:WEIRDO err:1", 0, "42", MSG_DLR_UNKNOWN, 1, -1, -1, "", ""},
    {"lower case keys and state", "ID:7f sub:1 Stat:delivrd ERR:0", 0, "7f", MSG_DLR_DELIVERED, 0,
     1, -1, "", ""},
    {"any order, extra fields", "stat:EXPIRED foo:bar id:99 network:45201 err:027", 0, "99",
     MSG_DLR_EXPIRED, 27, -1, -1, "", ""},
    {"text contains keys", "id:5 stat:REJECTD err:0 text:id:6 stat:DELIVRD", 0, "5",
     MSG_DLR_REJECTED, 0, -1, -1, "", ""},
    {"text first hides the rest", "text:hello id:5 stat:DELIVRD", -1, "", MSG_DLR_UNKNOWN, -1, -1,
     -1, "", ""},
    {"underscore dates", "id:1 submit_date:2204152009 done_date:2204152010 stat:ACCEPTD", 0, "1",
     MSG_DLR_ACCEPTED, -1, -1, -1, "2204152009", "2204152010"},
    {"space after colon", "id: 77 stat: DELIVRD err: 0", 0, "77", MSG_DLR_DELIVERED, 0, -1, -1, "",
     ""},
    {"hex err", "id:1 stat:UNDELIV err:00B", 0, "1", MSG_DLR_UNDELIVERABLE, 11, -1, -1, "", ""},
    {"garbage err", "id:1 stat:UNDELIV err:zz", 0, "1", MSG_DLR_UNDELIVERABLE, -1, -1, -1, "", ""},
    {"bad date ignored", "id:1 stat:DELIVRD submit date:22x4", 0, "1", MSG_DLR_DELIVERED, -1, -1,
     -1, "", ""},
    {"tabs and newlines", "\tid:1\nstat:ENROUTE\r\n", 0, "1", MSG_DLR_ENROUTE, -1, -1, -1, "", ""},
    {"64-char id",
     "id:0123456789012345678901234567890123456789012345678901234567890123 stat:DELIVRD", 0,
     "0123456789012345678901234567890123456789012345678901234567890123", MSG_DLR_DELIVERED, -1, -1,
     -1, "", ""},
    {"too long id",
     "id:01234567890123456789012345678901234567890123456789012345678901234567890123456789 "
     "stat:DELIVRD",
     -1, "", MSG_DLR_DELIVERED, -1, -1, -1, "", ""},
    {"missing stat", "id:1 err:0", -1, "1", MSG_DLR_UNKNOWN, 0, -1, -1, "", ""},
    {"missing id", "sub:1 stat:DELIVRD", -1, "", MSG_DLR_DELIVERED, -1, 1, -1, "", ""},
    {"xid is not id", "xid:1 stat:DELIVRD", -1, "", MSG_DLR_DELIVERED, -1, -1, -1, "", ""},
    {"empty", "", -1, "", MSG_DLR_UNKNOWN, -1, -1, -1, "", ""},
    {"plain MO text", "xin chao, toi muon hoc", -1, "", MSG_DLR_UNKNOWN, -1, -1, -1, "", ""},
};

static void
test_parse_table(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const struct parse_case *c = &parse_cases[i];
		struct dlr_text d;
		int rc = dlr_parse_text(c->text, strlen(c->text), &d);

		if (rc != c->rc || strcmp(d.id, c->id) != 0 || d.state != c->state ||
		    d.err != c->err || d.sub != c->sub || d.dlvrd != c->dlvrd ||
		    strcmp(d.submit_date, c->submit) != 0 || strcmp(d.done_date, c->done) != 0)
			fail_msg("case '%s': rc %d id '%s' state %d err %d sub %d dlvrd %d "
			         "dates '%s' '%s'",
			         c->name, rc, d.id, d.state, d.err, d.sub, d.dlvrd, d.submit_date,
			         d.done_date);
	}
}

static void
test_parse_bounded(void **state)
{
	/* n stops the parse before the NUL; a NUL inside stops it too */
	const char t[] = "id:12 stat:DELIVRD err:005";
	const char z[] = "id:12\0stat:DELIVRD";
	struct dlr_text d;

	assert_int_equal(dlr_parse_text(t, 18, &d), 0);
	assert_int_equal(d.err, -1);
	assert_int_equal(dlr_parse_text(t, 8, &d), -1);
	assert_int_equal(dlr_parse_text(z, sizeof(z) - 1, &d), -1);
	assert_int_equal(dlr_parse_text(NULL, 5, &d), -1);
	assert_int_equal(dlr_parse_text(t, sizeof(t) - 1, NULL), -1);
}

static void
test_state_words(void **state)
{
	static const struct {
		const char *w;
		enum msg_dlr_state s;
		bool final;
	} t[] = {
	    {"DELIVRD", MSG_DLR_DELIVERED, true},   {"EXPIRED", MSG_DLR_EXPIRED, true},
	    {"DELETED", MSG_DLR_DELETED, true},     {"UNDELIV", MSG_DLR_UNDELIVERABLE, true},
	    {"ACCEPTD", MSG_DLR_ACCEPTED, false},   {"UNKNOWN", MSG_DLR_UNKNOWN, false},
	    {"REJECTD", MSG_DLR_REJECTED, true},    {"ENROUTE", MSG_DLR_ENROUTE, false},
	    {"ACKED", MSG_DLR_ENROUTE, false},      {"BUFFRED", MSG_DLR_ENROUTE, false},
	    {"BUFFERD", MSG_DLR_ENROUTE, false},    {"delivrd", MSG_DLR_DELIVERED, true},
	    {"DELIVERED", MSG_DLR_DELIVERED, true}, {"FAILED", MSG_DLR_UNDELIVERABLE, true},
	    {"", MSG_DLR_UNKNOWN, false},           {"DELIVRDX", MSG_DLR_UNKNOWN, false},
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (dlr_state_from_word(t[i].w) != t[i].s)
			fail_msg("word '%s'", t[i].w);
		assert_int_equal(dlr_state_final(dlr_state_from_word(t[i].w)), t[i].final);
	}
	assert_int_equal(dlr_state_from_word(NULL), MSG_DLR_UNKNOWN);
}

static void
test_normalise_id(void **state)
{
	static const struct {
		const char *in;
		enum id_base base;
		int rc;
		const char *out;
	} t[] = {
	    {"0001A2", ID_BASE_HEX, 0, "418"},
	    {"1a2", ID_BASE_HEX, 0, "418"},
	    {"418", ID_BASE_DEC, 0, "418"},
	    {"000418", ID_BASE_DEC, 0, "418"},
	    {"0e999f21", ID_BASE_HEX, 0, "244948769"}, /* jasmin #643 */
	    {"E999F21", ID_BASE_HEX, 0, "244948769"},
	    {"0x1A2", ID_BASE_HEX, 0, "418"},
	    {"0", ID_BASE_DEC, 0, "0"},
	    {"000", ID_BASE_HEX, 0, "0"},
	    {"FFFFFFFFFFFFFFFF", ID_BASE_HEX, 0, "18446744073709551615"},
	    {"10000000000000000", ID_BASE_HEX, 0, "10000000000000000"}, /* overflow: as-is */
	    {"18446744073709551615", ID_BASE_DEC, 0, "18446744073709551615"},
	    {"18446744073709551616", ID_BASE_DEC, 0, "18446744073709551616"},
	    {"1A2", ID_BASE_DEC, 0, "1a2"}, /* not decimal: lower-cased */
	    {"abc-XYZ", ID_BASE_HEX, 0, "abc-xyz"},
	    {"AbC00", ID_BASE_STRING, 0, "abc00"},
	    {"00418", ID_BASE_STRING, 0, "00418"},
	    {" 418 ", ID_BASE_DEC, 0, "418"},
	    {"", ID_BASE_DEC, -1, ""},
	    {"  ", ID_BASE_HEX, -1, ""},
	};
	size_t i;
	char out[MSG_SMSC_ID_MAX];

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int rc = dlr_normalise_id(t[i].in, t[i].base, out, sizeof(out));

		if (rc != t[i].rc || strcmp(out, t[i].out) != 0)
			fail_msg("id '%s' base %d: rc %d out '%s'", t[i].in, t[i].base, rc, out);
	}
	/* the two ids of one message meet */
	{
		char a[32], b[32];

		assert_int_equal(dlr_normalise_id("0001A2", ID_BASE_HEX, a, sizeof(a)), 0);
		assert_int_equal(dlr_normalise_id("418", ID_BASE_DEC, b, sizeof(b)), 0);
		assert_string_equal(a, b);
	}
	/* too small */
	assert_int_equal(dlr_normalise_id("0001A2", ID_BASE_HEX, out, 3), -1);
	assert_string_equal(out, "");
	assert_int_equal(dlr_normalise_id("0001A2", ID_BASE_HEX, out, 4), 0);
	assert_int_equal(dlr_normalise_id("abcdef", ID_BASE_STRING, out, 6), -1);
	assert_int_equal(dlr_normalise_id(NULL, ID_BASE_STRING, out, 6), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_table),
	    cmocka_unit_test(test_parse_bounded),
	    cmocka_unit_test(test_state_words),
	    cmocka_unit_test(test_normalise_id),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

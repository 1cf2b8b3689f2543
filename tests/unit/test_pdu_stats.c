/*
 * test_pdu_stats.c — pdu_stats.c: counting by link/direction/command/status,
 * request status ignored, unknown and invalid commands, rendering (HELP/TYPE,
 * ESME names, hex for vendor codes, label escaping, first-seen order),
 * link truncation, and the table-full overflow series.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "pdu_stats.h"
#include "strbuf.h"

static int
setup(void **state)
{
	pdu_stats_reset();
	return 0;
}

/* Renders into a fresh buffer; the caller frees it with strbuf_free. */
static void
render(struct strbuf *b)
{
	strbuf_init(b);
	pdu_stats_render(b);
	assert_non_null(b->s);
}

static int
count_lines(const char *s, const char *prefix)
{
	int n = 0;
	size_t pl = strlen(prefix);

	for (const char *p = s; p != NULL && *p != '\0';) {
		if (strncmp(p, prefix, pl) == 0)
			n++;
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return n;
}

struct count_case {
	const char *link;
	int dir;
	uint32_t cmd, status;
	int times;
};

static void
test_counting(void **state)
{
	static const struct count_case cases[] = {
	    {"l1", PDU_STATS_OUT, 0x00000004, 0, 3},   /* submit_sm */
	    {"l1", PDU_STATS_IN, 0x80000004, 0x00, 2}, /* submit_sm_resp ROK */
	    {"l1", PDU_STATS_IN, 0x80000004, 0x58, 1}, /* submit_sm_resp THROTTLED */
	    {"l2", PDU_STATS_OUT, 0x00000004, 0, 5},   /* other link */
	    {"l1", PDU_STATS_IN, 0x00000005, 0, 4},    /* deliver_sm */
	    {"l1", PDU_STATS_OUT, 0x80000005, 0, 4},   /* deliver_sm_resp */
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		for (int k = 0; k < cases[i].times; k++)
			pdu_stats_count(cases[i].link, cases[i].dir, cases[i].cmd, cases[i].status);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_int_equal(
		    pdu_stats_get(cases[i].link, cases[i].dir, cases[i].cmd, cases[i].status),
		    cases[i].times);
	/* direction, link and status are part of the key */
	assert_int_equal(pdu_stats_get("l1", PDU_STATS_IN, 0x00000004, 0), 0);
	assert_int_equal(pdu_stats_get("l3", PDU_STATS_OUT, 0x00000004, 0), 0);
	assert_int_equal(pdu_stats_get("l1", PDU_STATS_IN, 0x80000004, 0x14), 0);
}

static void
test_request_status_ignored(void **state)
{
	/* a request with a (bogus) non-zero status is the same series */
	pdu_stats_count("l1", PDU_STATS_IN, 0x00000015, 0);
	pdu_stats_count("l1", PDU_STATS_IN, 0x00000015, 0x1234);
	assert_int_equal(pdu_stats_get("l1", PDU_STATS_IN, 0x00000015, 0), 2);

	struct strbuf b;
	render(&b);
	assert_non_null(strstr(b.s, "skillgate_smpp_pdus_total{link=\"l1\",direction=\"in\","
	                            "command=\"enquire_link\"} 2\n"));
	assert_null(strstr(b.s, "status="));
	strbuf_free(&b);
}

static void
test_unknown_and_invalid(void **state)
{
	/* every unknown request id shares one series; so do unknown responses */
	pdu_stats_count("l1", PDU_STATS_IN, 0x00000077, 0);
	pdu_stats_count("l1", PDU_STATS_IN, 0x00001234, 0);
	pdu_stats_count("l1", PDU_STATS_IN, 0x80001234, 0x03);
	pdu_stats_count_invalid("l1", PDU_STATS_IN);
	assert_int_equal(pdu_stats_get("l1", PDU_STATS_IN, 0x00000099, 0), 2);

	struct strbuf b;
	render(&b);
	assert_non_null(strstr(b.s, "{link=\"l1\",direction=\"in\",command=\"unknown\"} 2\n"));
	assert_non_null(strstr(b.s, "{link=\"l1\",direction=\"in\",command=\"unknown\","
	                            "status=\"ESME_RINVCMDID\"} 1\n"));
	assert_non_null(strstr(b.s, "{link=\"l1\",direction=\"in\",command=\"invalid\"} 1\n"));
	strbuf_free(&b);
}

struct render_case {
	uint32_t cmd, status;
	int dir;
	const char *line;
};

static void
test_render(void **state)
{
	static const struct render_case cases[] = {
	    {0x80000004, 0x00, PDU_STATS_IN,
	     "skillgate_smpp_pdus_total{link=\"l1\",direction=\"in\",command=\"submit_sm_resp\","
	     "status=\"ESME_ROK\"} 1\n"},
	    {0x80000004, 0x58, PDU_STATS_IN,
	     "command=\"submit_sm_resp\",status=\"ESME_RTHROTTLED\"} 1\n"},
	    {0x80000004, 0x14, PDU_STATS_IN,
	     "command=\"submit_sm_resp\",status=\"ESME_RMSGQFUL\"} 1\n"},
	    {0x80000004, 0x400, PDU_STATS_IN,
	     "command=\"submit_sm_resp\",status=\"0x00000400\"} 1\n"},
	    {0x80000000, 0x03, PDU_STATS_OUT,
	     "direction=\"out\",command=\"generic_nack\",status=\"ESME_RINVCMDID\"} 1\n"},
	    {0x00000009, 0, PDU_STATS_OUT, "direction=\"out\",command=\"bind_transceiver\"} 1\n"},
	    {0x80000009, 0, PDU_STATS_IN,
	     "command=\"bind_transceiver_resp\",status=\"ESME_ROK\"} 1\n"},
	    {0x00000006, 0, PDU_STATS_OUT, "command=\"unbind\"} 1\n"},
	    {0x80000006, 0, PDU_STATS_IN, "command=\"unbind_resp\",status=\"ESME_ROK\"} 1\n"},
	    {0x00000103, 0, PDU_STATS_IN, "command=\"data_sm\"} 1\n"},
	    {0x80000103, 0xC2, PDU_STATS_OUT,
	     "command=\"data_sm_resp\",status=\"ESME_RINVPARLEN\"} 1\n"},
	    {0x80000015, 0, PDU_STATS_IN, "command=\"enquire_link_resp\",status=\"ESME_ROK\"} 1\n"},
	};
	const size_t n = sizeof cases / sizeof cases[0];

	for (size_t i = 0; i < n; i++)
		pdu_stats_count("l1", cases[i].dir, cases[i].cmd, cases[i].status);
	struct strbuf b;
	render(&b);
	assert_true(strncmp(b.s, "# HELP skillgate_smpp_pdus_total ", 33) == 0);
	assert_non_null(strstr(b.s, "\n# TYPE skillgate_smpp_pdus_total counter\n"));
	const char *prev = b.s;
	for (size_t i = 0; i < n; i++) {
		const char *at = strstr(b.s, cases[i].line);
		if (at == NULL)
			fail_msg("missing line %zu: %s\n%s", i, cases[i].line, b.s);
		assert_true(at > prev); /* first-seen order */
		prev = at;
	}
	assert_int_equal(count_lines(b.s, "skillgate_smpp_pdus_total{"), (int)n);
	assert_null(strstr(b.s, "overflow"));
	strbuf_free(&b);
}

static void
test_render_empty_and_reset(void **state)
{
	pdu_stats_count("l1", PDU_STATS_OUT, 0x00000004, 0);
	pdu_stats_reset();
	assert_int_equal(pdu_stats_get("l1", PDU_STATS_OUT, 0x00000004, 0), 0);

	struct strbuf b;
	render(&b);
	assert_int_equal(count_lines(b.s, "# "), 2);
	assert_int_equal(count_lines(b.s, "skillgate_smpp_pdus_total{"), 0);
	strbuf_free(&b);
}

static void
test_label_escaping_and_truncation(void **state)
{
	char longname[200];

	pdu_stats_count("a\"b\\c\nd", PDU_STATS_OUT, 0x00000004, 0);
	pdu_stats_count(NULL, PDU_STATS_OUT, 0x00000004, 0);
	memset(longname, 'x', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	pdu_stats_count(longname, PDU_STATS_OUT, 0x00000004, 0);
	pdu_stats_count(longname, PDU_STATS_OUT, 0x00000004, 0);
	assert_int_equal(pdu_stats_get(longname, PDU_STATS_OUT, 0x00000004, 0), 2);

	struct strbuf b;
	render(&b);
	assert_non_null(strstr(b.s, "{link=\"a\\\"b\\\\c\\nd\",direction=\"out\""));
	assert_non_null(strstr(b.s, "{link=\"\",direction=\"out\",command=\"submit_sm\"} 1\n"));
	char want[PDU_STATS_LINK_MAX + 16];
	snprintf(want, sizeof want, "{link=\"%.*s\",", PDU_STATS_LINK_MAX - 1, longname);
	assert_non_null(strstr(b.s, want));
	strbuf_free(&b);
}

static void
test_overflow(void **state)
{
	char link[32];

	/* PDU_STATS_SLOTS distinct series fill the table exactly */
	for (int i = 0; i < PDU_STATS_SLOTS; i++) {
		snprintf(link, sizeof link, "link%d", i);
		pdu_stats_count(link, PDU_STATS_IN, 0x80000004, 0);
	}
	struct strbuf b;
	render(&b);
	assert_int_equal(count_lines(b.s, "skillgate_smpp_pdus_total{"), PDU_STATS_SLOTS);
	assert_null(strstr(b.s, "overflow"));
	strbuf_free(&b);

	/* existing series still count; new ones go to overflow per direction */
	pdu_stats_count("link7", PDU_STATS_IN, 0x80000004, 0);
	assert_int_equal(pdu_stats_get("link7", PDU_STATS_IN, 0x80000004, 0), 2);
	for (int i = 0; i < 3; i++)
		pdu_stats_count("new", PDU_STATS_IN, 0x80000004, 0x58);
	pdu_stats_count("new", PDU_STATS_OUT, 0x00000004, 0);
	pdu_stats_count_invalid("new", PDU_STATS_IN);
	assert_int_equal(pdu_stats_get("new", PDU_STATS_IN, 0x80000004, 0x58), 0);
	render(&b);
	assert_int_equal(count_lines(b.s, "skillgate_smpp_pdus_total{"), PDU_STATS_SLOTS + 2);
	assert_non_null(strstr(b.s, "skillgate_smpp_pdus_total{link=\"\",direction=\"in\","
	                            "command=\"overflow\"} 4\n"));
	assert_non_null(strstr(b.s, "skillgate_smpp_pdus_total{link=\"\",direction=\"out\","
	                            "command=\"overflow\"} 1\n"));
	strbuf_free(&b);

	/* reset empties the table and the overflow counters */
	pdu_stats_reset();
	pdu_stats_count("new", PDU_STATS_IN, 0x80000004, 0x58);
	assert_int_equal(pdu_stats_get("new", PDU_STATS_IN, 0x80000004, 0x58), 1);
	render(&b);
	assert_null(strstr(b.s, "overflow"));
	strbuf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_counting, setup),
	    cmocka_unit_test_setup(test_request_status_ignored, setup),
	    cmocka_unit_test_setup(test_unknown_and_invalid, setup),
	    cmocka_unit_test_setup(test_render, setup),
	    cmocka_unit_test_setup(test_render_empty_and_reset, setup),
	    cmocka_unit_test_setup(test_label_escaping_and_truncation, setup),
	    cmocka_unit_test_setup(test_overflow, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

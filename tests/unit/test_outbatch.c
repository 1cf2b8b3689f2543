/*
 * test_outbatch.c — outbatch.c: which messages wait for the rest of their
 * segments or receipts (incomplete results, missing or non-final receipts,
 * failures, waited long enough, receipts moving with their results, unknown
 * receipts staying), order kept, and the sg_mt_outcomes parameters: the
 * messages whole and delivered as one row each.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "outbatch.h"

#define WAIT 100 /* ms a message may wait */

static int64_t now; /* the test's clock, ms */

/* Result of segment part/nparts of message mt on link L, SMSC id "<mt>-<part>". */
static void
res(struct outbatch *b, int64_t mt, int part, int nparts, uint32_t status)
{
	struct msg_mt_result r;
	memset(&r, 0, sizeof r);
	r.mt_id = mt;
	snprintf(r.link, sizeof r.link, "L");
	r.part = part;
	r.nparts = nparts;
	r.status = status;
	r.temporary = status == 0x58;
	if (status == 0)
		snprintf(r.smsc_id, sizeof r.smsc_id, "%lld-%d", (long long)mt, part);
	outbatch_add_result(b, &r, now);
}

/* Receipt for segment part of message mt (its ack seq = mt * 10 + part). */
static void
dlr(struct outbatch *b, int64_t mt, int part, enum msg_dlr_state state)
{
	struct msg_dlr d;
	memset(&d, 0, sizeof d);
	snprintf(d.link, sizeof d.link, "L");
	snprintf(d.smsc_id, sizeof d.smsc_id, "%lld-%d", (long long)mt, part);
	d.state = state;
	d.err = state == MSG_DLR_DELIVERED ? 0 : -1;
	d.ack.seq = (uint32_t)(mt * 10 + part);
	outbatch_add_receipt(b, &d);
}

static const char *
param(const struct outbatch *b, int i, char *out, size_t n)
{
	struct strbuf p[OUTBATCH_PARAMS];
	outbatch_params(b, p);
	snprintf(out, n, "%s", p[i].s);
	for (int k = 0; k < OUTBATCH_PARAMS; k++)
		strbuf_free(&p[k]);
	return out;
}

static void
test_whole_messages_stay(void **state)
{
	(void)state;
	struct outbatch *b = outbatch_new();
	res(b, 1, 1, 2, 0);
	res(b, 1, 2, 2, 0);
	dlr(b, 1, 1, MSG_DLR_DELIVERED);
	dlr(b, 1, 2, MSG_DLR_UNDELIVERABLE); /* final, failed: whole all the same */
	res(b, 2, 1, 1, 0x45);               /* refused: nothing more will come */
	res(b, 3, 1, 2, 0);
	res(b, 3, 2, 2, 0x58); /* throttled, given up for now: whole in results */
	assert_null(outbatch_split(b, now, WAIT));
	assert_int_equal(outbatch_results(b), 5);
	assert_int_equal(outbatch_receipts(b), 2);
	outbatch_free(b);
}

static void
test_incomplete_messages_wait(void **state)
{
	(void)state;
	now = 1000;
	struct outbatch *b = outbatch_new();
	res(b, 7, 1, 3, 0); /* 2 of 3 results */
	dlr(b, 7, 1, MSG_DLR_DELIVERED);
	res(b, 8, 1, 1, 0); /* whole, receipt in */
	dlr(b, 8, 1, MSG_DLR_DELIVERED);
	res(b, 7, 2, 3, 0);
	res(b, 9, 1, 1, 0);               /* result in, receipt not yet */
	dlr(b, 99, 1, MSG_DLR_DELIVERED); /* no result in this batch: stays */
	res(b, 10, 1, 1, 0);              /* only an intermediate receipt */
	dlr(b, 10, 1, MSG_DLR_ACCEPTED);

	now += 10;
	struct outbatch *rest = outbatch_split(b, now, WAIT);
	assert_non_null(rest);
	char s[256];
	/* 8 stays, whole and delivered: one row (param 11) */
	assert_string_equal(param(b, 0, s, sizeof s), "{}");
	assert_string_equal(param(b, 11, s, sizeof s), "{8}");
	assert_string_equal(param(b, 8, s, sizeof s), "{\"99-1\"}");
	/* order kept; the receipts go with their results */
	assert_string_equal(param(rest, 0, s, sizeof s), "{7,7,9,10}");
	assert_string_equal(param(rest, 1, s, sizeof s), "{1,2,1,1}");
	assert_string_equal(param(rest, 8, s, sizeof s), "{\"7-1\",\"10-1\"}");
	assert_int_equal(outbatch_receipt_ack(rest, 0)->seq, 71);
	assert_int_equal(outbatch_receipt_ack(rest, 1)->seq, 101);

	/* 50 ms on: 7 is whole; 9 and 10 still incomplete and wait again; 11 new */
	now += 50;
	res(rest, 7, 3, 3, 0);
	dlr(rest, 7, 2, MSG_DLR_DELIVERED);
	dlr(rest, 7, 3, MSG_DLR_DELIVERED);
	res(rest, 11, 1, 2, 0);
	struct outbatch *again = outbatch_split(rest, now, WAIT);
	assert_non_null(again);
	assert_string_equal(param(rest, 0, s, sizeof s), "{}");
	assert_string_equal(param(rest, 11, s, sizeof s), "{7}");
	assert_string_equal(param(rest, 14, s, sizeof s), "{\"7-1\",\"7-2\",\"7-3\"}");
	assert_string_equal(param(again, 0, s, sizeof s), "{9,10,11}");
	assert_string_equal(param(again, 8, s, sizeof s), "{\"10-1\"}");

	/* 100 ms after their first result 9 and 10 go as they are; 11 waits on */
	now += 40;
	struct outbatch *last = outbatch_split(again, now, WAIT);
	assert_non_null(last);
	assert_string_equal(param(again, 0, s, sizeof s), "{9,10}");
	assert_string_equal(param(last, 0, s, sizeof s), "{11}");
	now += 60; /* 11 arrived 100 ms ago */
	struct outbatch *none = outbatch_split(last, now, WAIT);
	assert_null(none);
	assert_int_equal(outbatch_results(last), 1);
	outbatch_free(last);
	outbatch_free(again);
	outbatch_free(rest);
	outbatch_free(b);
}

static void
test_failed_segment_with_missing_results_waits(void **state)
{
	(void)state;
	struct outbatch *b = outbatch_new();
	res(b, 5, 1, 3, 0x45); /* refused, parts 2 and 3 still on their way */
	struct outbatch *rest = outbatch_split(b, now, WAIT);
	assert_non_null(rest);
	assert_int_equal(outbatch_results(b), 0);
	assert_int_equal(outbatch_results(rest), 1);
	outbatch_free(rest);
	outbatch_free(b);
}

static void
test_params_literals(void **state)
{
	(void)state;
	struct outbatch *b = outbatch_new();
	res(b, 42, 1, 1, 0);
	res(b, 43, 1, 1, 0x58);
	dlr(b, 42, 1, MSG_DLR_DELIVERED);
	dlr(b, 43, 1, MSG_DLR_EXPIRED);
	char s[256];
	/* 42 is whole and delivered: one row in the last five, nothing of it in
	 * the first eleven; 43 was refused: row by row, its receipt too */
	const char *want[OUTBATCH_PARAMS] = {
	    "{43}",       "{1}", "{1}",    "{\"L\"}", "{88}", "{\"\"}",  "{\"t\"}",    "{\"L\"}",
	    "{\"43-1\"}", "{3}", "{NULL}", "{42}",    "{1}",  "{\"L\"}", "{\"42-1\"}", "{0}",
	};
	for (int i = 0; i < OUTBATCH_PARAMS; i++)
		assert_string_equal(param(b, i, s, sizeof s), want[i]);
	outbatch_drop_receipts(b);
	assert_int_equal(outbatch_receipts(b), 0);
	assert_string_equal(param(b, 8, s, sizeof s), "{}");
	outbatch_free(b);
}

/* The messages whole and delivered in the batch go as one row each; all
 * the others, and every receipt not for one of theirs, row by row. */
static void
test_whole_delivered_messages_go_as_one_row(void **state)
{
	(void)state;
	struct outbatch *b = outbatch_new();
	for (int k = 1; k <= 3; k++)
		res(b, 1, k, 3, 0); /* 1: three parts, all delivered (and an ENROUTE) */
	res(b, 2, 1, 2, 0);         /* 2: part 2 undeliverable */
	res(b, 2, 2, 2, 0);
	res(b, 3, 1, 2, 0); /* 3: no receipt for part 2 */
	res(b, 3, 2, 2, 0);
	res(b, 4, 1, 1, 0x58); /* 4: refused, then accepted */
	res(b, 4, 1, 1, 0);
	res(b, 5, 2, 2, 0); /* 5: parts out of order */
	res(b, 5, 1, 2, 0);
	res(b, 6, 17, 20, 0); /* 6: more parts than a message can have */
	for (int k = 1; k <= 3; k++)
		dlr(b, 1, k, MSG_DLR_DELIVERED);
	dlr(b, 1, 2, MSG_DLR_ENROUTE);
	dlr(b, 2, 1, MSG_DLR_DELIVERED);
	dlr(b, 2, 2, MSG_DLR_UNDELIVERABLE);
	dlr(b, 3, 1, MSG_DLR_DELIVERED);
	dlr(b, 4, 1, MSG_DLR_DELIVERED);
	dlr(b, 5, 2, MSG_DLR_DELIVERED);
	dlr(b, 5, 1, MSG_DLR_DELIVERED);
	dlr(b, 99, 1, MSG_DLR_DELIVERED); /* for no result here */
	char s[512];
	assert_string_equal(param(b, 11, s, sizeof s), "{1,5}");
	assert_string_equal(param(b, 12, s, sizeof s), "{3,2}");
	assert_string_equal(param(b, 13, s, sizeof s), "{\"L\",\"L\"}");
	assert_string_equal(param(b, 14, s, sizeof s), "{\"1-1\",\"1-2\",\"1-3\",\"5-1\",\"5-2\"}");
	assert_string_equal(param(b, 15, s, sizeof s), "{0,0,0,0,0}");
	assert_string_equal(param(b, 0, s, sizeof s), "{2,2,3,3,4,4,6}");
	assert_string_equal(param(b, 4, s, sizeof s), "{0,0,0,0,88,0,0}");
	assert_string_equal(param(b, 8, s, sizeof s), "{\"2-1\",\"2-2\",\"3-1\",\"4-1\",\"99-1\"}");
	assert_string_equal(param(b, 9, s, sizeof s), "{2,5,2,2,2}");
	/* the receipts still answer their PDUs: all eleven of them */
	assert_int_equal(outbatch_receipts(b), 11);
	outbatch_free(b);
}

static void
test_many_messages(void **state)
{
	(void)state;
	struct outbatch *b = outbatch_new();
	for (int64_t mt = 1; mt <= 5000; mt++) {
		res(b, mt, 1, 2, 0);
		if (mt % 2 == 0) { /* even: whole and delivered */
			res(b, mt, 2, 2, 0);
			dlr(b, mt, 1, MSG_DLR_DELIVERED);
			dlr(b, mt, 2, MSG_DLR_DELIVERED);
		} else {
			dlr(b, mt, 1, MSG_DLR_DELIVERED);
		}
	}
	struct outbatch *rest = outbatch_split(b, now, WAIT);
	assert_non_null(rest);
	assert_int_equal(outbatch_results(b), 5000);
	assert_int_equal(outbatch_receipts(b), 5000);
	assert_int_equal(outbatch_results(rest), 2500);
	assert_int_equal(outbatch_receipts(rest), 2500);
	outbatch_free(rest);
	outbatch_free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_whole_messages_stay),
	    cmocka_unit_test(test_incomplete_messages_wait),
	    cmocka_unit_test(test_failed_segment_with_missing_results_waits),
	    cmocka_unit_test(test_params_literals),
	    cmocka_unit_test(test_whole_delivered_messages_go_as_one_row),
	    cmocka_unit_test(test_many_messages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_concat.c — concat.c: UDH parsing (8-/16-bit references, other IEs
 * before and after, malformed headers), reassembly in order, out of order,
 * with duplicates, SAR-style 16-bit references, timeouts (partial),
 * max_pending eviction, and a UCS-2 surrogate pair / GSM escape split
 * across parts.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "concat.h"

/* ------------------------------------------------------------ UDH */

struct udh_case {
	const char *name;
	const char *sm;
	size_t len;
	int rc;
	uint16_t ref;
	uint8_t total, seq;
	size_t udh_len;
};

#define B(s) s, sizeof(s) - 1

static const struct udh_case udh_cases[] = {
    {"8-bit", B("\x05\x00\x03\xaa\x03\x01hello"), 1, 0xaa, 3, 1, 6},
    {"16-bit", B("\x06\x08\x04\x12\x34\x02\x02hi"), 1, 0x1234, 2, 2, 7},
    {"shift IE before", B("\x08\x24\x01\x01\x00\x03\xaa\x02\x01x"), 1, 0xaa, 2, 1, 9},
    {"shift IE after", B("\x08\x00\x03\xab\x02\x02\x25\x01\x01x"), 1, 0xab, 2, 2, 9},
    {"16-bit between", B("\x0c\x24\x01\x01\x08\x04\xbe\xef\x04\x03\x25\x01\x01"), 1, 0xbeef, 4, 3,
     13},
    {"port IE then 8-bit", B("\x0b\x05\x04\x0b\x84\x23\xf0\x00\x03\x01\x02\x02"), 1, 0x01, 2, 2,
     12},
    {"no concat IE", B("\x03\x24\x01\x01text"), 0, 0, 0, 0, 4},
    {"empty UDH", B("\x00text"), 0, 0, 0, 0, 1},
    {"udh longer than data", B("\x05\x00\x03\xaa"), -1, 0, 0, 0, 0},
    {"IE overflows UDH", B("\x03\x00\x03\xaa\x02\x01"), -1, 0, 0, 0, 0},
    {"IE header cut", B("\x01\x24"), -1, 0, 0, 0, 0},
    {"wrong 8-bit IE length", B("\x04\x00\x02\xaa\x01"), -1, 0, 0, 0, 0},
    {"wrong 16-bit IE length", B("\x05\x08\x03\xaa\x01\x01"), -1, 0, 0, 0, 0},
    {"seq 0", B("\x05\x00\x03\xaa\x02\x00"), 0, 0, 0, 0, 6},
    {"seq > total", B("\x05\x00\x03\xaa\x02\x03"), 0, 0, 0, 0, 6},
    {"total 0", B("\x05\x00\x03\xaa\x00\x00"), 0, 0, 0, 0, 6},
    {"no data", "", 0, -1, 0, 0, 0, 0},
};

static void
test_parse_udh(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(udh_cases) / sizeof(udh_cases[0]); i++) {
		const struct udh_case *c = &udh_cases[i];
		uint16_t ref = 0;
		uint8_t total = 0, seq = 0;
		size_t ul = 99;
		int rc = concat_parse_udh((const uint8_t *)c->sm, c->len, &ref, &total, &seq, &ul);

		if (rc != c->rc)
			fail_msg("case '%s': rc %d want %d", c->name, rc, c->rc);
		if (rc == 1 && (ref != c->ref || total != c->total || seq != c->seq))
			fail_msg("case '%s': ref %u total %u seq %u", c->name, ref, total, seq);
		if (rc >= 0 && ul != c->udh_len)
			fail_msg("case '%s': udh_len %zu want %zu", c->name, ul, c->udh_len);
	}
}

/* ------------------------------------------------------- reassembly */

struct got {
	int calls;
	char text[512];
	size_t text_len;
	bool partial;
	int n_acks;
	uint32_t ack_seq[16];
	char smsc_id[MSG_SMSC_ID_MAX];
	char from[MSG_MSISDN_MAX];
	char to[MSG_ADDR_MAX];
	char link[MSG_LINK_MAX];
};

static void
on_done(void *arg, const struct msg_mo *mo)
{
	struct got *g = arg;
	int i;

	g->calls++;
	snprintf(g->text, sizeof(g->text), "%s", mo->text);
	g->text_len = mo->text_len;
	g->partial = mo->partial;
	g->n_acks = mo->n_acks;
	for (i = 0; i < mo->n_acks && i < 16; i++)
		g->ack_seq[i] = mo->acks[i].seq;
	snprintf(g->smsc_id, sizeof(g->smsc_id), "%s", mo->smsc_id);
	snprintf(g->from, sizeof(g->from), "%s", mo->from);
	snprintf(g->to, sizeof(g->to), "%s", mo->to);
	snprintf(g->link, sizeof(g->link), "%s", mo->link);
}

/* Adds part seq/total of message ref from `from`, data s (len n), ack seq. */
static int
add(struct concat *c, struct got *g, const char *from, uint16_t ref, uint8_t total, uint8_t seq,
    uint8_t dcs, const char *s, size_t n, uint32_t ackseq, int64_t now)
{
	struct concat_part p;
	char sid[16];

	snprintf(sid, sizeof(sid), "id%u", ackseq);
	memset(&p, 0, sizeof(p));
	p.link = "viettel";
	p.from = from;
	p.to = "8077";
	p.smsc_id = sid;
	p.ref = ref;
	p.total = total;
	p.seq = seq;
	p.dcs = dcs;
	p.data = (const uint8_t *)s;
	p.len = n;
	p.ack.sess_id = 1;
	p.ack.seq = ackseq;
	p.ack.cmd = 0x00000005;
	return concat_add(c, &p, DC0_GSM, now, on_done, g);
}

static void
test_in_order(void **state)
{
	struct concat *c = concat_new(60, 16);
	struct got g = {0};

	assert_non_null(c);
	assert_int_equal(add(c, &g, "84912345678", 7, 3, 1, 0, B("Hello "), 11, 100), 0);
	assert_int_equal(add(c, &g, "84912345678", 7, 3, 2, 0, B("world"), 12, 101), 0);
	assert_int_equal(g.calls, 0);
	assert_int_equal(concat_pending(c), 1);
	assert_int_equal(add(c, &g, "84912345678", 7, 3, 3, 0, B("!"), 13, 102), 0);
	assert_int_equal(g.calls, 1);
	assert_string_equal(g.text, "Hello world!");
	assert_int_equal(g.text_len, 12);
	assert_false(g.partial);
	assert_int_equal(g.n_acks, 3);
	assert_string_equal(g.smsc_id, "id11");
	assert_string_equal(g.from, "84912345678");
	assert_string_equal(g.to, "8077");
	assert_string_equal(g.link, "viettel");
	assert_int_equal(concat_pending(c), 0);
	concat_free(c);
}

static void
test_out_of_order_and_duplicates(void **state)
{
	struct concat *c = concat_new(60, 16);
	struct got g = {0};

	assert_int_equal(add(c, &g, "84912345678", 9, 3, 3, 0, B("C"), 3, 100), 0);
	assert_int_equal(add(c, &g, "84912345678", 9, 3, 1, 0, B("A"), 1, 100), 0);
	assert_int_equal(add(c, &g, "84912345678", 9, 3, 1, 0, B("X"), 4, 101), 0); /* dup */
	assert_int_equal(add(c, &g, "84912345678", 9, 3, 3, 0, B("Y"), 5, 101), 0); /* dup */
	assert_int_equal(g.calls, 0);
	assert_int_equal(add(c, &g, "84912345678", 9, 3, 2, 0, B("B"), 2, 102), 0);
	assert_int_equal(g.calls, 1);
	assert_string_equal(g.text, "ABC");
	assert_int_equal(g.n_acks, 5); /* duplicates are answered too */
	assert_int_equal(g.ack_seq[0], 3);
	assert_int_equal(g.ack_seq[4], 2);
	assert_string_equal(g.smsc_id, "id1"); /* part 1's, not the first arrival's */
	concat_free(c);
}

static void
test_keys_do_not_mix(void **state)
{
	struct concat *c = concat_new(60, 16);
	struct got g = {0};

	/* SAR-style 16-bit refs; same ref from two numbers, and another total */
	assert_int_equal(add(c, &g, "84911111111", 0xBEEF, 2, 1, 0, B("one-"), 1, 0), 0);
	assert_int_equal(add(c, &g, "84922222222", 0xBEEF, 2, 2, 0, B("TWO"), 2, 0), 0);
	assert_int_equal(add(c, &g, "84911111111", 0xBEEF, 3, 2, 0, B("three"), 3, 0), 0);
	assert_int_equal(concat_pending(c), 3);
	assert_int_equal(add(c, &g, "84911111111", 0xBEEF, 2, 2, 0, B("1"), 4, 0), 0);
	assert_int_equal(g.calls, 1);
	assert_string_equal(g.text, "one-1");
	assert_string_equal(g.from, "84911111111");
	assert_int_equal(concat_pending(c), 2);
	concat_free(c); /* frees what is still pending, no leak */
}

static void
test_timeout_partial(void **state)
{
	struct concat *c = concat_new(30, 16);
	struct got g = {0};

	assert_int_equal(add(c, &g, "84912345678", 1, 3, 1, 0, B("start "), 1, 1000), 0);
	assert_int_equal(add(c, &g, "84912345678", 1, 3, 3, 0, B("end"), 3, 1010), 0);
	concat_expire(c, 1029, DC0_GSM, on_done, &g);
	assert_int_equal(g.calls, 0);
	concat_expire(c, 1030, DC0_GSM, on_done, &g);
	assert_int_equal(g.calls, 1);
	assert_true(g.partial);
	assert_string_equal(g.text, "start end"); /* the missing part is nothing */
	assert_int_equal(g.n_acks, 2);
	assert_int_equal(concat_pending(c), 0);
	concat_expire(c, 5000, DC0_GSM, on_done, &g);
	assert_int_equal(g.calls, 1);
	concat_free(c);
}

static void
test_max_pending_eviction(void **state)
{
	struct concat *c = concat_new(600, 2);
	struct got g = {0};

	assert_int_equal(add(c, &g, "84911111111", 1, 2, 1, 0, B("A1"), 1, 10), 0);
	assert_int_equal(add(c, &g, "84922222222", 2, 2, 1, 0, B("B1"), 2, 11), 0);
	assert_int_equal(g.calls, 0);
	/* a part of an existing message does not evict */
	assert_int_equal(add(c, &g, "84922222222", 2, 2, 1, 0, B("B1"), 3, 12), 0);
	assert_int_equal(g.calls, 0);
	/* a third message evicts the oldest (A) as partial */
	assert_int_equal(add(c, &g, "84933333333", 3, 2, 2, 0, B("C2"), 4, 13), 0);
	assert_int_equal(g.calls, 1);
	assert_true(g.partial);
	assert_string_equal(g.text, "A1");
	assert_string_equal(g.from, "84911111111");
	assert_int_equal(concat_pending(c), 2);
	assert_int_equal(add(c, &g, "84922222222", 2, 2, 2, 0, B("B2"), 5, 14), 0);
	assert_int_equal(g.calls, 2);
	assert_false(g.partial);
	assert_string_equal(g.text, "B1B2");
	assert_int_equal(g.n_acks, 3);
	concat_free(c);
}

static void
test_split_surrogate_and_escape(void **state)
{
	struct concat *c = concat_new(60, 4);
	struct got g = {0};

	/* U+1F600 = D83D DE00, split across parts 1 and 2 */
	assert_int_equal(add(c, &g, "84912345678", 5, 2, 2, 8, B("\xde\x00\x00\x42"), 2, 0), 0);
	assert_int_equal(add(c, &g, "84912345678", 5, 2, 1, 8, B("\x00\x41\xd8\x3d"), 1, 0), 0);
	assert_int_equal(g.calls, 1);
	assert_string_equal(g.text, "A😀B");
	/* GSM escape split: ESC ends part 1, 0x65 starts part 2 */
	assert_int_equal(add(c, &g, "84912345678", 6, 2, 1, 0, B("ab\x1b"), 3, 0), 0);
	assert_int_equal(add(c, &g, "84912345678", 6, 2, 2, 0,
	                     B("\x65"
	                       "c"),
	                     4, 0),
	                 0);
	assert_int_equal(g.calls, 2);
	assert_string_equal(g.text, "ab€c");
	/* dcs is the first part's even when a later part arrives first */
	assert_int_equal(add(c, &g, "84912345678", 7, 2, 2, 0, B("\x00\x44"), 5, 0), 0);
	assert_int_equal(add(c, &g, "84912345678", 7, 2, 1, 8, B("\x1e\xa1"), 6, 0), 0);
	assert_string_equal(g.text, "ạD");
	/* Vietnamese class-form UCS-2 0x18 */
	assert_int_equal(add(c, &g, "84912345678", 8, 2, 1, 0x18, B("\x01\x11"), 7, 0), 0);
	assert_int_equal(add(c, &g, "84912345678", 8, 2, 2, 0x18, B("\x00\x61"), 8, 0), 0);
	assert_string_equal(g.text, "đa");
	concat_free(c);
}

static void
test_invalid_and_single(void **state)
{
	struct concat *c = concat_new(60, 4);
	struct got g = {0};

	assert_int_equal(add(c, &g, "84912345678", 1, 2, 0, 0, B("x"), 1, 0), -1);
	assert_int_equal(add(c, &g, "84912345678", 1, 2, 3, 0, B("x"), 1, 0), -1);
	assert_int_equal(add(c, &g, "84912345678", 1, 0, 0, 0, B("x"), 1, 0), -1);
	assert_int_equal(add(c, &g, "84912345678", 1, 0, 1, 0, B("x"), 1, 0), -1);
	assert_int_equal(concat_pending(c), 0);
	assert_int_equal(g.calls, 0);
	/* total 1: delivered at once */
	assert_int_equal(add(c, &g, "84912345678", 1, 1, 1, 0, B("solo"), 9, 0), 0);
	assert_int_equal(g.calls, 1);
	assert_string_equal(g.text, "solo");
	assert_int_equal(g.n_acks, 1);
	assert_int_equal(g.ack_seq[0], 9);
	assert_int_equal(concat_pending(c), 0);
	/* empty parts are fine */
	assert_int_equal(add(c, &g, "84912345678", 2, 2, 1, 0, "", 0, 10, 0), 0);
	assert_int_equal(add(c, &g, "84912345678", 2, 2, 2, 0, B("z"), 11, 0), 0);
	assert_string_equal(g.text, "z");
	concat_free(c);
	concat_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_udh),
	    cmocka_unit_test(test_in_order),
	    cmocka_unit_test(test_out_of_order_and_duplicates),
	    cmocka_unit_test(test_keys_do_not_mix),
	    cmocka_unit_test(test_timeout_partial),
	    cmocka_unit_test(test_max_pending_eviction),
	    cmocka_unit_test(test_split_surrogate_and_escape),
	    cmocka_unit_test(test_invalid_and_single),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

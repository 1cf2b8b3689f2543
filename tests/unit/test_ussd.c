/*
 * test_ussd.c — the USSD screen logic (core/ussd.c, pure half) against the
 * shipped content in config/content (run from the repository root): every
 * screen within 160 GSM-7 characters and unaccented, main menu, shortcut,
 * 0 / 00 navigation, a quiz and a self-assessment screen by screen, invalid
 * input, progress, household, language, state strings and the hand-over of
 * an interrupted quiz to SMS.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content.h"
#include "flow.h"
#include "ussd.h"

static struct content *C;
static const struct ussd_cfg CFG = {4, 5, FLOW_RULE_BOTH};

static void
new_sub(struct flow_sub *s, const char *lang)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->msisdn, sizeof(s->msisdn), "84912345678");
	snprintf(s->lang, sizeof(s->lang), "%s", lang);
	for (int i = 0; i < FLOW_SKILLS; i++)
		s->self_level[i] = s->best_quiz[i] = -1;
}

static void
assert_screen_ok(const char *screen)
{
	assert_true(strlen(screen) > 0);
	if (content_gsm7_folded_len(screen) > CONTENT_USSD_MAX)
		fail_msg("screen too long (%d): %s", content_gsm7_folded_len(screen), screen);
	for (const unsigned char *p = (const unsigned char *)screen; *p; p++)
		if (*p >= 0x80)
			fail_msg("accented screen: %s", screen);
}

static void
step1(struct flow_sub *sub, struct ussd_dialog *d, const char *in, struct ussd_step_out *out)
{
	const char *inputs[] = {in};
	ussd_input(C, &CFG, sub, d, inputs, 1, 7, out);
	*d = out->next;
	if (!out->end || out->screen[0])
		assert_screen_ok(out->screen);
}

static void
test_main_menu(void **state)
{
	struct flow_sub sub;
	struct ussd_step_out out;

	new_sub(&sub, "vi");
	ussd_begin(C, &CFG, &sub, "*8079#", 1, &out);
	assert_false(out.end);
	assert_int_equal(out.next.screen, USSD_MAIN);
	assert_non_null(strstr(out.screen, "1 Kiem tra ky nang"));
	assert_screen_ok(out.screen);
	assert_string_equal(out.state, "M:vi:0:0");
	new_sub(&sub, "en");
	ussd_begin(C, &CFG, &sub, "", 1, &out);
	assert_non_null(strstr(out.screen, "1 Quiz"));
}

static void
test_shortcut_and_navigation(void **state)
{
	struct flow_sub sub;
	struct ussd_step_out out;
	struct ussd_dialog d;

	new_sub(&sub, "en");
	ussd_begin(C, &CFG, &sub, "*8079*1*3#", 99, &out);
	assert_int_equal(out.next.screen, USSD_QUIZ_Q);
	assert_int_equal(out.next.skill, 3);
	assert_int_equal(out.next.qn, 5);
	assert_true(strncmp(out.screen, "1/5 ", 4) == 0);
	d = out.next;
	step1(&sub, &d, "0", &out);
	assert_int_equal(d.screen, USSD_QUIZ_MENU);
	assert_int_equal(d.qn, 0);
	step1(&sub, &d, "0", &out);
	assert_int_equal(d.screen, USSD_MAIN);
	step1(&sub, &d, "4", &out);
	assert_int_equal(d.screen, USSD_HOUSEHOLD_ENTER);
	step1(&sub, &d, "00", &out);
	assert_int_equal(d.screen, USSD_MAIN);
	/* shortcut to self-assessment and to a bad skill */
	ussd_begin(C, &CFG, &sub, "*8079*2#", 1, &out);
	assert_int_equal(out.next.screen, USSD_SELF_Q);
	ussd_begin(C, &CFG, &sub, "*8079*1*9#", 1, &out);
	assert_int_equal(out.next.screen, USSD_QUIZ_MENU);
	assert_int_equal(out.next.bad, 1);
	assert_non_null(strstr(out.screen, "Invalid choice"));
}

static void
test_quiz(void **state)
{
	static const struct {
		int right;
		bool passed;
	} cases[] = {{5, true}, {4, true}, {3, false}, {0, false}};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct flow_sub sub;
		struct ussd_step_out out;
		struct ussd_dialog d;
		char ans[2] = {0, 0};

		new_sub(&sub, "vi");
		ussd_begin(C, &CFG, &sub, "*8079*1*2#", (uint32_t)k + 3, &out);
		d = out.next;
		for (int i = 0; i < 5; i++) {
			const struct content_question *q =
			    content_question_find(C, 0, 2, d.ids[d.qi]);
			assert_non_null(q);
			ans[0] =
			    (char)('1' + (i < cases[k].right ? q->answer : (q->answer + 1) % 4));
			step1(&sub, &d, ans, &out);
			assert_int_equal(out.end, i == 4);
		}
		assert_int_equal(out.n_events, 1);
		assert_int_equal(out.events[0].kind, FLOW_EV_QUIZ);
		assert_int_equal(out.events[0].value, cases[k].right);
		assert_int_equal(out.events[0].passed, cases[k].passed);
		assert_true(strlen(out.sms) > 0);
		assert_int_equal(sub.quiz_passed[1], cases[k].passed);
		assert_int_equal(d.screen, USSD_END);
		assert_true(out.state[0] == 'E');
	}
}

static void
test_self_assessment(void **state)
{
	struct flow_sub sub;
	struct ussd_step_out out;
	struct ussd_dialog d;
	int events = 0;

	new_sub(&sub, "en");
	ussd_begin(C, &CFG, &sub, "*8079#", 1, &out);
	d = out.next;
	step1(&sub, &d, "2", &out);
	assert_int_equal(d.screen, USSD_SELF_Q);
	assert_string_equal(out.state, "S:en:0:0:1");
	for (int i = 1; i <= 5; i++) {
		step1(&sub, &d, "4", &out);
		assert_int_equal(out.n_events, 1);
		assert_int_equal(out.events[0].skill, i);
		assert_int_equal(out.events[0].value, 3);
		events++;
	}
	assert_true(out.end);
	assert_int_equal(events, 5);
	assert_int_equal(sub.self_level[4], 3);
}

static void
test_invalid_input(void **state)
{
	struct flow_sub sub;
	struct ussd_step_out out;
	struct ussd_dialog d;
	static const char *const bad[] = {"7", "abc", "", "1 2", "99"};

	new_sub(&sub, "vi");
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		ussd_begin(C, &CFG, &sub, "*8079#", 1, &out);
		d = out.next;
		step1(&sub, &d, bad[k], &out);
		assert_int_equal(d.screen, USSD_MAIN);
		assert_int_equal(d.bad, 1);
		assert_non_null(strstr(out.screen, "khong hop le"));
	}
	step1(&sub, &d, "x", &out);
	assert_false(out.end);
	step1(&sub, &d, "x", &out);
	assert_true(out.end); /* third in a row */
	assert_int_equal(d.screen, USSD_END);
}

static void
test_progress_household_language(void **state)
{
	struct flow_sub sub;
	struct ussd_step_out out;
	struct ussd_dialog d;

	new_sub(&sub, "en");
	sub.self_level[0] = 3;
	sub.quiz_passed[0] = true;
	snprintf(sub.household, sizeof(sub.household), "0100100012345678901234567890123");
	sub.household_members = 12;
	sub.household_skills = 1;
	ussd_begin(C, &CFG, &sub, "*8079*3#", 1, &out);
	assert_non_null(strstr(out.screen, "Skills done: 1\n"));
	assert_non_null(strstr(out.screen, "Missing: 2,3,4,5"));
	assert_non_null(strstr(out.screen, "misses: 2,3,4,5"));
	assert_screen_ok(out.screen);
	d = out.next;
	step1(&sub, &d, "0", &out);
	step1(&sub, &d, "4", &out);
	step1(&sub, &d, "HH-01001", &out);
	assert_true(out.end);
	assert_string_equal(out.join_code, "HH-01001");
	assert_non_null(strstr(out.screen_join_ok, "HH-01001"));
	assert_non_null(strstr(out.screen_join_unknown, "HH-01001"));
	ussd_begin(C, &CFG, &sub, "*8079*5*1#", 1, &out);
	assert_string_equal(out.lang, "vi");
	assert_int_equal(out.next.screen, USSD_MAIN);
	assert_non_null(strstr(out.screen, "Kiem tra"));
}

static void
test_close_hands_quiz_to_sms(void **state)
{
	struct flow_sub sub;
	struct ussd_step_out out;
	struct ussd_dialog d, p;
	char ans[2] = {0, 0};

	new_sub(&sub, "vi");
	ussd_begin(C, &CFG, &sub, "*8079*1*4#", 5, &out);
	d = out.next;
	const struct content_question *q = content_question_find(C, 0, 4, d.ids[0]);
	ans[0] = (char)('1' + q->answer);
	step1(&sub, &d, ans, &out);
	ussd_close(C, &CFG, &d, true, &out);
	assert_true(out.end);
	assert_non_null(strstr(out.screen, "Het thoi gian"));
	assert_true(out.sms_state_set);
	char want[FLOW_STATE_MAX];
	snprintf(want, sizeof(want), "Q:4:%s,%s,%s,%s,%s:1:1:0", d.ids[0], d.ids[1], d.ids[2],
	         d.ids[3], d.ids[4]);
	assert_string_equal(out.sms_state, want);
	assert_non_null(strstr(out.sms, "2/5"));
	/* abort: no screen */
	ussd_close(C, &CFG, &d, false, &out);
	assert_string_equal(out.screen, "");
	assert_true(out.end);
	/* outside a quiz: nothing for SMS */
	ussd_begin(C, &CFG, &sub, "*8079#", 1, &out);
	p = out.next;
	ussd_close(C, &CFG, &p, false, &out);
	assert_false(out.sms_state_set);
	assert_string_equal(out.sms, "");
}

static void
test_state_strings(void **state)
{
	struct flow_sub sub;
	struct ussd_step_out out;
	struct ussd_dialog d;
	char s[USSD_STATE_MAX];
	static const char *const corrupt[] = {
	    "",           "X:vi:0:0",           "M:fr:0:0", "Q:vi:0:0:3::0:0", "Q:vi:0:0:3:a,b:2:0",
	    "S:vi:0:0:9", "Q:vi:0:0:3:a,b:1:2", "M:vi:0",   "M:vi:0:0:junk",
	};

	new_sub(&sub, "en");
	ussd_begin(C, &CFG, &sub, "*8079*1*5#", 11, &out);
	assert_int_equal(ussd_state_parse(out.state, &d), 0);
	ussd_state_format(&d, s, sizeof(s));
	assert_string_equal(s, out.state);
	assert_int_equal(d.skill, 5);
	for (size_t k = 0; k < sizeof(corrupt) / sizeof(corrupt[0]); k++) {
		if (ussd_state_parse(corrupt[k], &d) != -1)
			fail_msg("accepted corrupt state '%s'", corrupt[k]);
		assert_int_equal(d.screen, USSD_MAIN);
	}
}

/* Walks every screen reachable in both languages and checks its size. */
static void
test_every_screen_fits(void **state)
{
	static const char *const paths[] = {
	    "*8079#",     "*8079*1#",   "*8079*2#",   "*8079*3#",   "*8079*4#",   "*8079*5#",
	    "*8079*1*1#", "*8079*1*2#", "*8079*1*3#", "*8079*1*4#", "*8079*1*5#",
	};
	for (int lang = 0; lang < 2; lang++)
		for (size_t k = 0; k < sizeof(paths) / sizeof(paths[0]); k++)
			for (uint32_t seed = 1; seed < 40; seed++) {
				struct flow_sub sub;
				struct ussd_step_out out;
				new_sub(&sub, lang ? "en" : "vi");
				ussd_begin(C, &CFG, &sub, paths[k], seed, &out);
				assert_screen_ok(out.screen);
				struct ussd_dialog d = out.next;
				for (int i = 0; i < 6 && d.screen != USSD_END; i++)
					step1(&sub, &d, (i & 1) ? "1" : "3", &out);
			}
}

static int
setup(void **state)
{
	int n = 0;
	C = content_load("config/content", stderr, &n);
	return C != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
	content_free(C);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_main_menu),
	    cmocka_unit_test(test_shortcut_and_navigation),
	    cmocka_unit_test(test_quiz),
	    cmocka_unit_test(test_self_assessment),
	    cmocka_unit_test(test_invalid_input),
	    cmocka_unit_test(test_progress_household_language),
	    cmocka_unit_test(test_close_hands_quiz_to_sms),
	    cmocka_unit_test(test_state_strings),
	    cmocka_unit_test(test_every_screen_fits),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

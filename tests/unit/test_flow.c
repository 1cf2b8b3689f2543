/*
 * test_flow.c — resident scenarios through flow_handle_sms with the real
 * content from config/content (run from the repository root). A tiny
 * in-memory "store" applies each result to the subscriber snapshot the way
 * the pipeline commits it, so multi-message conversations can be replayed.
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
#include "text.h"

static struct content *C;
static struct flow_cfg cfg = {4, 5, FLOW_RULE_BOTH, 600, 3600, 0}; /* join_segments 0: apart */
static const int64_t T0 = 1790000000;

static void
sub_init(struct flow_sub *s, const char *lang)
{
	int i;

	memset(s, 0, sizeof(*s));
	snprintf(s->msisdn, sizeof(s->msisdn), "84912345678");
	snprintf(s->lang, sizeof(s->lang), "%s", lang);
	for (i = 0; i < FLOW_SKILLS; i++) {
		s->self_level[i] = -1;
		s->best_quiz[i] = -1;
	}
}

/* Sends text at now and applies the result like the pipeline would. */
static void
sms(struct flow_sub *s, const char *text, int64_t now, struct flow_result *r)
{
	int i;

	flow_handle_sms(C, &cfg, s, text, now, (uint32_t)now * 2654435761u, r);
	if (r->state_changed) {
		snprintf(s->state, sizeof(s->state), "%s", r->state);
		s->state_at = now;
	}
	if (r->lang[0] != '\0')
		snprintf(s->lang, sizeof(s->lang), "%s", r->lang);
	if (r->opt != 0)
		s->opted_out = r->opt < 0;
	if (r->help_sent)
		s->help_at = now;
	for (i = 0; i < r->n_events; i++) {
		const struct flow_event *e = &r->events[i];
		if (e->kind == FLOW_EV_SELF) {
			s->self_level[e->skill - 1] = e->value;
		} else {
			if (e->value > s->best_quiz[e->skill - 1])
				s->best_quiz[e->skill - 1] = e->value;
			s->quiz_passed[e->skill - 1] |= e->passed;
		}
	}
}

/* The question the quiz in s is waiting for, read from the state string. */
static const struct content_question *
pending(const struct flow_sub *s)
{
	char buf[FLOW_STATE_MAX], *ids, *p;
	int skill, i, k;

	assert_int_equal(s->state[0], 'Q');
	snprintf(buf, sizeof(buf), "%s", s->state);
	skill = atoi(buf + 2);
	ids = strchr(buf + 2, ':') + 1;
	p = strchr(ids, ':');
	*p = '\0';
	i = atoi(p + 1);
	for (k = 0; k < i; k++)
		ids = strchr(ids, ',') + 1;
	p = strchr(ids, ',');
	if (p != NULL)
		*p = '\0';
	return content_question_find(C, content_lang(s->lang), skill, ids);
}

static void
has(const char *hay, const char *needle)
{
	if (strstr(hay, needle) == NULL)
		fail_msg("expected '%s' in '%s'", needle, hay);
}

static int
setup(void **state)
{
	int n = -1;

	C = content_load("config/content", stderr, &n);
	return C == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	content_free(C);
	return 0;
}

/* Plays a whole quiz on skill, answering right when right[i] is set. */
static void
play_quiz(struct flow_sub *s, int skill, const bool right[5], struct flow_result *r)
{
	const struct content_question *q;
	char cmd[16], ans[4];
	int i;

	snprintf(cmd, sizeof(cmd), "HOC %d", skill);
	sms(s, cmd, T0, r);
	assert_int_equal(r->n_replies, 2);
	for (i = 0; i < 5; i++) {
		q = pending(s);
		assert_non_null(q);
		has(r->reply[r->n_replies - 1], q->text);
		snprintf(ans, sizeof(ans), "%c",
		         'a' + (right[i] ? q->answer : (q->answer + 1) % 4));
		sms(s, ans, T0 + 10 + i, r);
		if (!right[i])
			has(r->reply[0], q->why);
	}
	assert_string_equal(s->state, "");
	assert_true(r->state_changed);
}

static void
test_quiz_passed_each_skill(void **state)
{
	static const bool right[5] = {true, true, false, true, true};
	struct flow_sub s;
	struct flow_result r;
	int k;

	for (k = 1; k <= FLOW_SKILLS; k++) {
		sub_init(&s, "vi");
		play_quiz(&s, k, right, &r);
		assert_int_equal(r.n_events, 1);
		assert_int_equal(r.events[0].kind, FLOW_EV_QUIZ);
		assert_int_equal(r.events[0].skill, k);
		assert_int_equal(r.events[0].value, 4);
		assert_true(r.events[0].passed);
		has(r.reply[r.n_replies - 1], "Chúc mừng! Bạn đúng 4/5 câu");
		has(r.reply[r.n_replies - 1], content_skill_name(C, 0, k));
		if (k < 5) { /* offers the next skill not yet done */
			char next[32];
			snprintf(next, sizeof(next), "nhắn HOC %d", k + 1);
			has(r.reply[r.n_replies - 1], next);
		}
		assert_true(s.quiz_passed[k - 1]);
	}
}

static void
test_quiz_failed_each_skill(void **state)
{
	static const bool right[5] = {true, false, true, false, true};
	struct flow_sub s;
	struct flow_result r;
	char again[32];
	int k;

	for (k = 1; k <= FLOW_SKILLS; k++) {
		sub_init(&s, k % 2 ? "vi" : "en");
		play_quiz(&s, k, right, &r);
		assert_int_equal(r.n_events, 1);
		assert_int_equal(r.events[0].value, 3);
		assert_false(r.events[0].passed);
		snprintf(again, sizeof(again), k % 2 ? "HOC %d" : "QUIZ %d", k);
		has(r.reply[r.n_replies - 1], again);
		has(r.reply[r.n_replies - 1], k % 2 ? "3/5" : "You got 3/5");
		assert_false(s.quiz_passed[k - 1]);
	}
}

static void
test_wrong_answer_explained(void **state)
{
	struct flow_sub s;
	struct flow_result r;
	const struct content_question *q;
	char want[FLOW_REPLY_MAX], ans[2];

	sub_init(&s, "vi");
	sms(&s, "HOC 3", T0, &r);
	has(r.reply[0], "Thanh toán trực tuyến");
	has(r.reply[0], "đúng 4 câu là đạt");
	has(r.reply[1], "1/5 ");
	has(r.reply[1], "\nA. ");
	q = pending(&s);
	ans[0] = (char)('A' + (q->answer + 2) % 4);
	ans[1] = '\0';
	sms(&s, ans, T0 + 5, &r);
	snprintf(want, sizeof(want), "Chưa đúng, đáp án là %c. %s", 'A' + q->answer, q->why);
	assert_int_equal(r.n_replies, 2);
	assert_string_equal(r.reply[0], want);
	has(r.reply[1], "2/5 ");
	assert_int_equal(r.n_events, 0);
	/* a right answer: "Đúng!" put before the next question, one SMS */
	q = pending(&s);
	ans[0] = (char)('1' + q->answer);
	sms(&s, ans, T0 + 6, &r);
	assert_int_equal(r.n_replies, 1);
	assert_memory_equal(r.reply[0], "Đúng! 3/5 ", strlen("Đúng! 3/5 "));
}

static void
test_quiz_draws_distinct_questions(void **state)
{
	struct flow_sub s;
	struct flow_result r;
	char seen[5][CONTENT_ID_MAX];
	int i, j;

	sub_init(&s, "vi");
	sms(&s, "QUIZ 4", T0, &r);
	for (i = 0; i < 5; i++) {
		snprintf(seen[i], sizeof(seen[i]), "%s", pending(&s)->id);
		for (j = 0; j < i; j++)
			assert_string_not_equal(seen[i], seen[j]);
		sms(&s, "A", T0 + 1 + i, &r);
	}
	assert_string_equal(s.state, "");
}

static void
test_self_assessment(void **state)
{
	static const char *const answers[] = {"2", "3", "Mức 1", "0", "2."};
	static const int levels[] = {2, 3, 1, 0, 2};
	struct flow_sub s;
	struct flow_result r;
	int i;

	sub_init(&s, "vi");
	sms(&s, "Đánh giá", T0, &r);
	assert_int_equal(r.n_replies, 2);
	has(r.reply[0], "0 chưa làm được");
	has(r.reply[1], "1/5 Sử dụng dịch vụ công trực tuyến");
	assert_string_equal(s.state, "S:1:0");
	for (i = 0; i < 5; i++) {
		sms(&s, answers[i], T0 + 1 + i, &r);
		assert_int_equal(r.n_events, 1);
		assert_int_equal(r.events[0].kind, FLOW_EV_SELF);
		assert_int_equal(r.events[0].skill, i + 1);
		assert_int_equal(r.events[0].value, levels[i]);
		if (i < 4)
			has(r.reply[0], content_skill_name(C, 0, i + 2));
	}
	has(r.reply[0], "Cảm ơn bạn đã tự đánh giá!");
	has(r.reply[0], "HOC 1"); /* rule both: quizzes still missing */
	assert_string_equal(s.state, "");
	/* an answer out of range is not a level */
	sms(&s, "RATE", T0 + 20, &r);
	sms(&s, "4", T0 + 21, &r);
	has(r.reply[0], "0, 1, 2 hoặc 3");
	assert_int_equal(r.n_events, 0);
	assert_string_equal(s.state, "S:1:1");
}

static void
test_stop_mid_quiz_then_start(void **state)
{
	struct flow_sub s;
	struct flow_result r;

	sub_init(&s, "vi");
	sms(&s, "HOC 2", T0, &r);
	sms(&s, "B", T0 + 1, &r);
	sms(&s, "Từ chối", T0 + 2, &r);
	assert_int_equal(r.opt, -1);
	assert_true(r.state_changed);
	assert_string_equal(r.state, "");
	assert_int_equal(r.n_replies, 1);
	has(r.reply[0], "ngừng nhận tin");
	assert_true(s.opted_out);
	static const char *const ignored[] = {"A", "HOC 2", "HELP", "KQ", "EN", "STOP", "hello"};
	for (size_t i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++) {
		sms(&s, ignored[i], T0 + 10 + (int)i, &r);
		assert_int_equal(r.n_replies, 0);
		assert_false(r.state_changed);
		assert_int_equal(r.opt, 0);
		assert_false(r.help_sent);
		assert_string_equal(r.join_code, "");
	}
	sms(&s, "bắt đầu", T0 + 30, &r);
	assert_int_equal(r.opt, 1);
	assert_int_equal(r.n_replies, 1);
	has(r.reply[0], "Chào mừng");
	assert_false(s.opted_out);
	/* STOP also answers "HUY" and "stop" */
	sms(&s, "huỷ", T0 + 40, &r);
	assert_int_equal(r.opt, -1);
	sms(&s, "start", T0 + 41, &r);
	assert_int_equal(r.opt, 1);
	sms(&s, "START", T0 + 42, &r); /* already in: confirmation, no change */
	assert_int_equal(r.opt, 0);
	assert_int_equal(r.n_replies, 1);
}

static void
test_help_rate_limit(void **state)
{
	struct flow_sub s;
	struct flow_result r;

	sub_init(&s, "vi");
	s.is_new = true;
	sms(&s, "xin chào", T0, &r);
	assert_int_equal(r.n_replies, 1);
	assert_true(r.help_sent);
	has(r.reply[0], "Nhắn HOC");
	sms(&s, "alo alo", T0 + 60, &r);
	assert_int_equal(r.n_replies, 0);
	assert_false(r.help_sent);
	sms(&s, "1", T0 + 3599, &r);
	assert_int_equal(r.n_replies, 0);
	sms(&s, "ok", T0 + 3600, &r);
	assert_int_equal(r.n_replies, 1);
	assert_true(r.help_sent);
	/* asked-for help is always answered and is not "unsolicited" */
	sms(&s, "Trợ giúp", T0 + 3601, &r);
	assert_int_equal(r.n_replies, 1);
	assert_false(r.help_sent);
}

struct kwcase {
	const char *text;
	const char *state_prefix; /* expected new state prefix, NULL = unchanged */
	const char *reply;        /* substring of reply[0] */
};

static void
test_keywords_diacritics(void **state)
{
	static const struct kwcase cases[] = {
	    {"HỌC 3", "Q:3:", "Thanh toán"},      {"hoc3", "Q:3:", "Thanh toán"},
	    {"Học 3", "Q:3:", "Thanh toán"},      {"  hoc   3 !", "Q:3:", "Thanh toán"},
	    {"HOC-5", "Q:5:", "nền tảng"},        {"quiz 1", "Q:1:", "dịch vụ công"},
	    {"HỌC", "M:0", "1 Dịch vụ công"},     {"hoc 9", "M:0", "Nhắn số kỹ năng"},
	    {"danh gia", "S:1:0", "Tự đánh giá"}, {"ĐÁNH GIÁ", "S:1:0", "Tự đánh giá"},
	    {"rate", "S:1:0", "Tự đánh giá"},     {"kq", NULL, "Kết quả của bạn"},
	    {"Kết quả", NULL, "Kết quả của bạn"}, {"hd", NULL, "Nhắn HOC"},
	    {"TRO GIUP", NULL, "Nhắn HOC"},       {"help?", NULL, "Nhắn HOC"},
	};
	struct flow_sub s;
	struct flow_result r;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sub_init(&s, "vi");
		sms(&s, cases[i].text, T0, &r);
		if (cases[i].state_prefix != NULL) {
			assert_true(r.state_changed);
			if (strncmp(r.state, cases[i].state_prefix, strlen(cases[i].state_prefix)))
				fail_msg("'%s': state '%s'", cases[i].text, r.state);
		} else {
			assert_false(r.state_changed);
		}
		assert_true(r.n_replies >= 1);
		has(r.reply[0], cases[i].reply);
		assert_false(r.help_sent);
	}
}

static void
test_menu_then_number(void **state)
{
	struct flow_sub s;
	struct flow_result r;

	sub_init(&s, "vi");
	sms(&s, "HOC", T0, &r);
	sms(&s, "7", T0 + 1, &r);
	has(r.reply[0], "từ 1 đến 5");
	sms(&s, "(3)", T0 + 2, &r);
	has(r.reply[0], "Kiểm tra kỹ năng 3");
	assert_int_equal(s.state[0], 'Q');
}

static void
test_english(void **state)
{
	struct flow_sub s;
	struct flow_result r;

	sub_init(&s, "en");
	sms(&s, "QUIZ 2", T0, &r);
	has(r.reply[0], "Skill 2 quiz: Online shopping");
	sms(&s, "maybe", T0 + 1, &r);
	has(r.reply[0], "Please answer A, B, C or D");
	sms(&s, "STATUS", T0 + 2, &r);
	has(r.reply[0], "Your results. Done: none yet. Missing: 1 Public services");
	has(r.reply[1], "You have not joined a household");
	assert_int_equal(s.state[0], 'Q'); /* STATUS keeps the quiz going */
	sms(&s, "hello", T0 + 3, &r);
	has(r.reply[0], "Please answer");
}

static void
test_language_switch(void **state)
{
	struct flow_sub s;
	struct flow_result r;
	const struct content_question *q;

	sub_init(&s, "vi");
	sms(&s, "HOC 1", T0, &r);
	q = pending(&s);
	sms(&s, "en", T0 + 1, &r);
	assert_string_equal(r.lang, "en");
	assert_false(r.state_changed);
	assert_int_equal(r.n_replies, 2);
	has(r.reply[0], "Switched to English");
	q = pending(&s); /* now looked up in English */
	has(r.reply[1], q->text);
	has(r.reply[1], "1/5 ");
	sms(&s, "Z", T0 + 2, &r);
	has(r.reply[0], "Please answer");
	sms(&s, "Tiếng Việt", T0 + 3, &r);
	assert_string_equal(r.lang, "vi");
	has(r.reply[0], "Đã chuyển sang tiếng Việt");
	q = pending(&s);
	has(r.reply[1], q->text);
}

static void
test_late_answer(void **state)
{
	struct flow_sub s;
	struct flow_result r;

	sub_init(&s, "vi");
	sms(&s, "HOC 4", T0, &r);
	sms(&s, "b", T0 + 601, &r);
	assert_int_equal(r.n_replies, 1);
	has(r.reply[0], "hết thời gian chờ");
	has(r.reply[0], "HOC 4");
	assert_true(r.state_changed);
	assert_string_equal(r.state, "");
	assert_int_equal(r.n_events, 0);
	/* just inside the timeout still counts */
	sms(&s, "HOC 4", T0 + 1000, &r);
	sms(&s, "b", T0 + 1600, &r);
	assert_int_equal(s.state[0], 'Q');
	/* self-assessment and a non-answer after the timeout */
	sms(&s, "DANHGIA", T0 + 2000, &r);
	sms(&s, "2", T0 + 3000, &r);
	has(r.reply[0], "Nhắn DANHGIA để làm lại");
	sms(&s, "DANHGIA", T0 + 4000, &r);
	sms(&s, "what?", T0 + 5000, &r);
	assert_string_equal(s.state, "");
	has(r.reply[0], "Nhắn HOC"); /* help: none sent before */
}

static void
test_answer_forms(void **state)
{
	static const char *const right[] = {
	    "đáp án B", "dap an b", "b",         "B.",   "(b)",       "b)",
	    " 2 ",      "2",        "Đáp án: B", "ĐA B", "tra loi b", "B. dichvucong.gov.vn",
	    "\tB\n",
	};
	static const char *const wrong[] = {"c", "(c)", "1", "a)", "D!"};
	static const char *const junk[] = {"5", "E", "BB", "xyz", ""};
	struct flow_sub s;
	struct flow_result r;
	size_t i;

	/* dvc01 is answered B in the shipped content */
	for (i = 0; i < sizeof(right) / sizeof(right[0]); i++) {
		sub_init(&s, "vi");
		snprintf(s.state, sizeof(s.state), "Q:1:dvc01,dvc02:0:0:0");
		s.state_at = T0;
		sms(&s, right[i], T0 + 1, &r);
		if (strncmp(r.reply[0], "Đúng!", strlen("Đúng!")) != 0)
			fail_msg("'%s' not taken as B: %s", right[i], r.reply[0]);
		assert_string_equal(s.state, "Q:1:dvc01,dvc02:1:1:0");
	}
	for (i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
		sub_init(&s, "vi");
		snprintf(s.state, sizeof(s.state), "Q:1:dvc01,dvc02:0:0:0");
		s.state_at = T0;
		sms(&s, wrong[i], T0 + 1, &r);
		has(r.reply[0], "Chưa đúng, đáp án là B.");
	}
	for (i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		sub_init(&s, "vi");
		snprintf(s.state, sizeof(s.state), "Q:1:dvc01,dvc02:0:0:0");
		s.state_at = T0;
		sms(&s, junk[i], T0 + 1, &r);
		has(r.reply[0], "Vui lòng trả lời A, B, C hoặc D");
		assert_string_equal(s.state, "Q:1:dvc01,dvc02:0:0:1");
	}
	/* the third unusable reply in a row ends the quiz */
	sms(&s, "?", T0 + 2, &r);
	sms(&s, "??", T0 + 3, &r);
	has(r.reply[0], "Đã dừng");
	assert_string_equal(s.state, "");
}

static void
test_household_join(void **state)
{
	static const struct {
		const char *text, *code;
	} cases[] = {
	    {"HO abc123", "ABC123"}, {"Hộ 0100 1000", "01001000"},
	    {"home hn-01", "HN-01"}, {"HO123", "123"},
	    {"ho: 77", "77"},
	};
	struct flow_sub s;
	struct flow_result r;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sub_init(&s, i == 2 ? "en" : "vi");
		sms(&s, cases[i].text, T0, &r);
		assert_string_equal(r.join_code, cases[i].code);
		assert_int_equal(r.n_replies, 0);
		has(r.reply_join_ok, cases[i].code);
		has(r.reply_join_unknown, cases[i].code);
		has(r.reply_join_ok, i == 2 ? "You joined household" : "Bạn đã vào hộ");
		has(r.reply_join_unknown, i == 2 ? "was not found" : "Không tìm thấy mã hộ");
	}
	sub_init(&s, "vi");
	sms(&s, "HO", T0, &r);
	assert_string_equal(r.join_code, "");
	has(r.reply[0], "Nhắn HO và mã hộ");
}

static void
test_status_text(void **state)
{
	struct flow_sub s;
	struct flow_result r;

	sub_init(&s, "vi");
	s.self_level[0] = 2, s.quiz_passed[0] = true;
	s.self_level[2] = 3, s.quiz_passed[2] = true;
	s.self_level[1] = 3; /* quiz missing: not proficient under "both" */
	s.quiz_passed[3] = true;
	snprintf(s.household, sizeof(s.household), "01001000123");
	s.household_members = 3;
	s.household_skills = 0x05; /* skills 1 and 3 */
	sms(&s, "KQ", T0, &r);
	assert_int_equal(r.n_replies, 2);
	assert_string_equal(r.reply[0], "Kết quả của bạn. Đã đạt: 1 Dịch vụ công, 3 Thanh toán. "
	                                "Còn thiếu: 2 Mua sắm, 4 An toàn mạng, 5 Nền tảng số.");
	assert_string_equal(r.reply[1], "Hộ 01001000123 (3 số điện thoại) còn thiếu: 2 Mua sắm, "
	                                "4 An toàn mạng, 5 Nền tảng số.");
	s.household_covered = true;
	s.household_skills = 0x1f;
	sms(&s, "status", T0, &r);
	has(r.reply[1], "đã đạt đủ 5 kỹ năng số");
	cfg.rule = FLOW_RULE_SELF;
	sms(&s, "KQ", T0, &r);
	has(r.reply[0], "Đã đạt: 1 Dịch vụ công, 2 Mua sắm, 3 Thanh toán.");
	cfg.rule = FLOW_RULE_BOTH;
}

static void
test_proficient_rules(void **state)
{
	static const struct {
		int self;
		bool passed;
		bool want[3]; /* self, quiz, both */
	} cases[] = {
	    {-1, false, {false, false, false}}, {1, true, {false, true, false}},
	    {2, false, {true, false, false}},   {3, true, {true, true, true}},
	    {0, false, {false, false, false}},  {2, true, {true, true, true}},
	};
	struct flow_sub s;
	size_t i;
	int rule;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sub_init(&s, "vi");
		s.self_level[4] = cases[i].self;
		s.quiz_passed[4] = cases[i].passed;
		for (rule = 0; rule < 3; rule++)
			assert_int_equal(flow_proficient(&s, 5, (enum flow_rule)rule),
			                 cases[i].want[rule]);
	}
	assert_false(flow_proficient(&s, 0, FLOW_RULE_SELF));
	assert_false(flow_proficient(&s, 6, FLOW_RULE_SELF));
}

static void
test_normalise(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"  Học   3 ! ", "HOC 3"},
	    {"đáp án: B.", "DAP AN: B"},
	    {"(c)", "C"},
	    {"TỪ CHỐI", "TU CHOI"},
	    {"\t\r\nhd\n", "HD"},
	    {"", ""},
	    {"...", ""},
	    {"a)", "A"},
	    {"Ơ kìa 😀", "O KIA 😀"},
	};
	char out[64];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		flow_normalise(cases[i].in, out, sizeof(out));
		assert_string_equal(out, cases[i].out);
	}
	flow_normalise("hoc hoc hoc", out, 6);
	assert_string_equal(out, "HOC H");
	flow_normalise("ab😀", out, 5); /* never cuts a character in half */
	assert_string_equal(out, "AB");
	flow_normalise(NULL, out, sizeof(out));
	assert_string_equal(out, "");
}

static void
test_corrupt_and_stale_state(void **state)
{
	static const char *const corrupt[] = {
	    "Q:9:dvc01:0:0:0",
	    "Q:1::0:0:0",
	    "Q:1:dvc01:1:0:0",
	    "Q:1:dvc01:0:1:0",
	    "S:0:0",
	    "S:1",
	    "M:x",
	    "X:1",
	    "Q",
	    "Q:1:DVC01:0:0:0",
	    "Q:1:dvc01:0:0:0:9",
	};
	struct flow_sub s;
	struct flow_result r;
	size_t i;

	for (i = 0; i < sizeof(corrupt) / sizeof(corrupt[0]); i++) {
		sub_init(&s, "vi");
		snprintf(s.state, sizeof(s.state), "%s", corrupt[i]);
		s.state_at = T0;
		sms(&s, "A", T0 + 1, &r);
		if (!r.state_changed || r.state[0] != '\0')
			fail_msg("state '%s' was accepted", corrupt[i]);
		assert_true(r.help_sent);
	}
	/* a question removed by a content reload ends the quiz politely */
	sub_init(&s, "vi");
	snprintf(s.state, sizeof(s.state), "Q:2:gone1,ms01:0:0:0");
	s.state_at = T0;
	sms(&s, "A", T0 + 1, &r);
	has(r.reply[0], "HOC 2");
	assert_string_equal(s.state, "");
	/* the state string is not trusted to be terminated */
	sub_init(&s, "vi");
	memset(s.state, 'Q', sizeof(s.state));
	memset(s.lang, 'x', sizeof(s.lang));
	memset(s.household, 'H', sizeof(s.household));
	sms(&s, "KQ", T0, &r);
	assert_int_equal(r.n_replies, 2);
}

/* ------------------------------------------------------------------ */
/* Joined replies (flow_cfg.join_segments)                             */
/* ------------------------------------------------------------------ */

static void
fill(char *dst, const char *unit, int n)
{
	size_t k = strlen(unit);

	for (int i = 0; i < n; i++)
		memcpy(dst + (size_t)i * k, unit, k);
	dst[(size_t)n * k] = '\0';
}

/* A result of n replies: unit repeated len[i] times, letters from 'a'. */
static void
replies(struct flow_result *r, int n, const int *len)
{
	memset(r, 0, sizeof(*r));
	r->n_replies = n;
	for (int i = 0; i < n; i++) {
		char u[2] = {(char)('a' + i), '\0'};
		fill(r->reply[i], u, len[i]);
	}
}

static void
test_join_rule(void **state)
{
	struct flow_cfg j = cfg;
	struct flow_result r;
	char want[2 * FLOW_REPLY_MAX + 2], a[FLOW_REPLY_MAX], b[FLOW_REPLY_MAX];

	/* 60 + 1 + 60 characters: 2 parts, as many as apart: joined */
	j.join_segments = 6;
	replies(&r, 2, (int[]){60, 60});
	fill(a, "a", 60), fill(b, "b", 60);
	snprintf(want, sizeof(want), "%s\n%s", a, b);
	flow_join_replies(&j, &r);
	assert_int_equal(r.n_replies, 1);
	assert_string_equal(r.reply[0], want);
	assert_int_equal(text_count_segments(r.reply[0], TEXT_UCS2, LONG_UDH16), 2);

	/* 66 + 1 + 66: 3 parts against 1 + 1 apart: dearer, kept apart */
	replies(&r, 2, (int[]){66, 66});
	flow_join_replies(&j, &r);
	assert_int_equal(r.n_replies, 2);
	assert_int_equal(strlen(r.reply[0]), 66);
	assert_int_equal(strlen(r.reply[1]), 66);

	/* 100 + 1 + 100: 4 parts, as many as apart, over a limit of 3 */
	j.join_segments = 3;
	replies(&r, 2, (int[]){100, 100});
	flow_join_replies(&j, &r);
	assert_int_equal(r.n_replies, 2);

	/* greedy, in order: the first two join, the third would pass the limit */
	replies(&r, 3, (int[]){10, 10, 190});
	flow_join_replies(&j, &r);
	assert_int_equal(r.n_replies, 2);
	fill(a, "a", 10), fill(b, "b", 10);
	snprintf(want, sizeof(want), "%s\n%s", a, b);
	assert_string_equal(r.reply[0], want);
	fill(want, "c", 190);
	assert_string_equal(r.reply[1], want);

	/* a later pair still joins after one that could not */
	j.join_segments = 6;
	replies(&r, 3, (int[]){66, 66, 20});
	flow_join_replies(&j, &r);
	assert_int_equal(r.n_replies, 2);
	assert_int_equal(strlen(r.reply[0]), 66);
	assert_int_equal(strlen(r.reply[1]), 66 + 1 + 20);

	/* the joined text must fit FLOW_REPLY_MAX bytes: 800 + 1 + 400 does not */
	j.join_segments = 16;
	memset(&r, 0, sizeof(r));
	r.n_replies = 2;
	fill(r.reply[0], "\xc3\xa9", 400); /* é: 2 bytes of UTF-8, 1 UCS-2 character */
	fill(r.reply[1], "\xc3\xa9", 200);
	flow_join_replies(&j, &r);
	assert_int_equal(r.n_replies, 2);

	/* join_segments 0: never */
	j.join_segments = 0;
	replies(&r, 2, (int[]){5, 5});
	flow_join_replies(&j, &r);
	assert_int_equal(r.n_replies, 2);
}

/* The same conversation twice, replies apart and joined (a link of 6 parts):
 * the joined replies are the apart ones grouped in order, one per line. */
static void
same_joined(struct flow_sub *apart, struct flow_sub *joined, const char *text, int64_t now,
            struct flow_result *r)
{
	struct flow_cfg keep = cfg;
	struct flow_result ra;
	char wa[FLOW_MAX_REPLIES * FLOW_REPLY_MAX], wj[sizeof(wa)];
	size_t oa = 0, oj = 0;
	int i;

	sms(apart, text, now, &ra);
	cfg.join_segments = 6;
	sms(joined, text, now, r);
	cfg = keep;
	assert_true(r->n_replies <= ra.n_replies);
	assert_true(ra.n_replies == 0 || r->n_replies >= 1);
	for (i = 0; i < ra.n_replies; i++)
		oa +=
		    (size_t)snprintf(wa + oa, sizeof(wa) - oa, "%s%s", i ? "\n" : "", ra.reply[i]);
	for (i = 0; i < r->n_replies; i++) {
		oj +=
		    (size_t)snprintf(wj + oj, sizeof(wj) - oj, "%s%s", i ? "\n" : "", r->reply[i]);
		assert_true(text_count_segments(r->reply[i], TEXT_UCS2, LONG_UDH16) <= 6);
	}
	assert_string_equal(wj, wa);
	assert_string_equal(joined->state, apart->state);
}

static void
test_quiz_replies_joined(void **state)
{
	struct flow_sub sa, sj;
	struct flow_result r;
	const struct content_question *q;
	char want[FLOW_REPLY_MAX], ans[2] = {0, 0};
	int i;

	sub_init(&sa, "vi");
	sub_init(&sj, "vi");
	/* the opening and the first question: one message */
	same_joined(&sa, &sj, "HOC 3", T0, &r);
	assert_int_equal(r.n_replies, 1);
	has(r.reply[0], "đúng 4 câu là đạt. Trả lời A, B, C hoặc D.\n1/5 ");
	for (i = 0; i < 5; i++) {
		q = pending(&sj);
		/* wrong, right, wrong, right, wrong: failed with 2/5 */
		ans[0] = (char)('A' + (i % 2 ? q->answer : (q->answer + 1) % 4));
		same_joined(&sa, &sj, ans, T0 + 1 + i, &r);
		assert_int_equal(r.n_replies, 1);
		if (i % 2 == 0) {
			snprintf(want, sizeof(want), "Chưa đúng, đáp án là %c. %s\n",
			         'A' + q->answer, q->why);
			assert_memory_equal(r.reply[0], want, strlen(want));
		}
		if (i < 4) {
			snprintf(want, sizeof(want), "%d/5 ", i + 2);
			has(r.reply[0], want);
		}
	}
	has(r.reply[0], "2/5"); /* the result, after the last explanation */
	assert_string_equal(sj.state, "");

	/* the last answer right: "Đúng!" and the result in one message */
	sub_init(&sa, "en");
	sub_init(&sj, "en");
	same_joined(&sa, &sj, "QUIZ 2", T0, &r);
	for (i = 0; i < 5; i++) {
		ans[0] = (char)('A' + pending(&sj)->answer);
		same_joined(&sa, &sj, ans, T0 + 1 + i, &r);
	}
	assert_int_equal(r.n_replies, 1);
	assert_memory_equal(r.reply[0], "Correct!\nWell done! 5/5",
	                    strlen("Correct!\nWell done! 5/5"));
	assert_true(sj.quiz_passed[1]);

	/* self-assessment and status: grouped the same way, nothing lost */
	same_joined(&sa, &sj, "RATE", T0 + 20, &r);
	assert_int_equal(r.n_replies, 1);
	for (i = 0; i < 5; i++)
		same_joined(&sa, &sj, "2", T0 + 21 + i, &r);
	snprintf(sa.household, sizeof(sa.household), "HN-0001");
	snprintf(sj.household, sizeof(sj.household), "HN-0001");
	sa.household_members = sj.household_members = 3;
	same_joined(&sa, &sj, "STATUS", T0 + 30, &r);
	assert_int_equal(r.n_replies, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_quiz_passed_each_skill),
	    cmocka_unit_test(test_quiz_failed_each_skill),
	    cmocka_unit_test(test_wrong_answer_explained),
	    cmocka_unit_test(test_join_rule),
	    cmocka_unit_test(test_quiz_replies_joined),
	    cmocka_unit_test(test_quiz_draws_distinct_questions),
	    cmocka_unit_test(test_self_assessment),
	    cmocka_unit_test(test_stop_mid_quiz_then_start),
	    cmocka_unit_test(test_help_rate_limit),
	    cmocka_unit_test(test_keywords_diacritics),
	    cmocka_unit_test(test_menu_then_number),
	    cmocka_unit_test(test_english),
	    cmocka_unit_test(test_language_switch),
	    cmocka_unit_test(test_late_answer),
	    cmocka_unit_test(test_answer_forms),
	    cmocka_unit_test(test_household_join),
	    cmocka_unit_test(test_status_text),
	    cmocka_unit_test(test_proficient_rules),
	    cmocka_unit_test(test_normalise),
	    cmocka_unit_test(test_corrupt_and_stale_state),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

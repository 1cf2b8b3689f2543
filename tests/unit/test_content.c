/*
 * test_content.c — the shipped content in config/content loads with no
 * error, and each kind of broken content file is reported as
 * "file:line: reason" (a copy of the real content is mutated in a temp dir).
 * Run from the repository root.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "content.h"
#include "flow.h"

#define SRC "config/content"

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

static void
spit(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* A fresh copy of the shipped content in a new temp dir (caller frees). */
static char *
copy_content(void)
{
	static const char *const langs[] = {"vi", "en"};
	char tmpl[] = "/tmp/sg_content_XXXXXX", p[512], q[512];
	char *dir, *text;
	int l, s;

	dir = strdup(mkdtemp(tmpl));
	for (l = 0; l < 2; l++) {
		snprintf(p, sizeof(p), "%s/%s", dir, langs[l]);
		assert_int_equal(mkdir(p, 0700), 0);
		for (s = -1; s < FLOW_SKILLS; s++) {
			const char *name = s < 0 ? "messages" : flow_skill_codes[s];
			snprintf(p, sizeof(p), SRC "/%s/%s.txt", langs[l], name);
			snprintf(q, sizeof(q), "%s/%s/%s.txt", dir, langs[l], name);
			text = slurp(p);
			spit(q, text);
			free(text);
		}
	}
	return dir;
}

static void
remove_content(char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(dir);
}

/* 1-based line of the first line starting with prefix, or 0. */
static int
line_of(const char *text, const char *prefix)
{
	const char *p = text;
	int line = 1;

	while (*p != '\0') {
		if (strncmp(p, prefix, strlen(prefix)) == 0)
			return line;
		p = strchr(p, '\n');
		if (p == NULL)
			break;
		p++;
		line++;
	}
	return 0;
}

static int
count_lines(const char *text)
{
	int n = 0;

	for (; *text != '\0'; text++)
		n += *text == '\n';
	return n;
}

/* Replaces the first line starting with prefix by repl ("" deletes it). */
static void
edit_file(const char *path, const char *prefix, const char *repl)
{
	char *text = slurp(path), *start, *end, *out;

	start = text;
	while (strncmp(start, prefix, strlen(prefix)) != 0) {
		start = strchr(start, '\n');
		assert_non_null(start);
		start++;
	}
	end = strchr(start, '\n');
	end = end != NULL ? end + 1 : start + strlen(start);
	out = calloc(1, strlen(text) + strlen(repl) + 2);
	memcpy(out, text, (size_t)(start - text));
	strcat(out, repl);
	if (repl[0] != '\0')
		strcat(out, "\n");
	strcat(out, end);
	spit(path, out);
	free(out);
	free(text);
}

static void
append_file(const char *path, const char *line)
{
	FILE *f = fopen(path, "ab");

	assert_non_null(f);
	fprintf(f, "%s\n", line);
	fclose(f);
}

/* Loads dir, expects failure, returns the error text (caller frees). */
static char *
load_errors(const char *dir)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *err = open_memstream(&buf, &len);
	int n = -1;
	struct content *c = content_load(dir, err, &n);

	fclose(err);
	assert_null(c);
	assert_true(n > 0);
	return buf;
}

static void
expect_error(const char *errs, const char *want)
{
	if (strstr(errs, want) == NULL)
		fail_msg("expected '%s' in:\n%s", want, errs);
}

static void
test_shipped_content_loads(void **state)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *err = open_memstream(&buf, &len);
	int n = -1, l, s;
	struct content *c = content_load(SRC, err, &n);

	fclose(err);
	if (n != 0)
		fail_msg("shipped content has errors:\n%s", buf);
	assert_non_null(c);
	for (l = 0; l < CONTENT_LANGS; l++)
		for (s = 1; s <= FLOW_SKILLS; s++) {
			assert_true(content_question_count(c, l, s) >= CONTENT_MIN_QUESTIONS);
			assert_true(strlen(content_skill_name(c, l, s)) > 0);
			assert_true(strlen(content_self_question(c, l, s)) > 0);
		}
	assert_string_equal(content_msg(c, 0, "correct"), "Đúng!");
	assert_string_equal(content_msg(c, 1, "correct"), "Correct!");
	assert_string_equal(content_msg(c, 0, "no_such_key"), "");
	assert_null(content_question_at(c, 0, 6, 0));
	assert_null(content_question_find(c, 0, 1, "nope"));
	content_free(c);
	free(buf);
}

struct broken {
	const char *file;   /* relative to the copy */
	const char *prefix; /* line to replace, or NULL to append */
	const char *repl;   /* replacement / appended line, "" deletes */
	const char *reason; /* expected after "file:line: " */
	const char *where;  /* NULL: the edited line; "$": last line; else a line prefix */
};

static const struct broken broken_cases[] = {
    {"vi/messages.txt", NULL, "bogus = x", "unknown key 'bogus'", NULL},
    {"vi/messages.txt", NULL, "help = again", "duplicate key 'help' (first on line", NULL},
    {"en/messages.txt", "correct =", "correct = Right {foo}!",
     "unknown placeholder {foo} in 'correct'", NULL},
    {"en/messages.txt", "wrong =", "wrong = Not {answer", "unclosed '{' in 'wrong'", NULL},
    {"vi/messages.txt", "optout =", "", "missing message key 'optout'", "$"},
    {"vi/messages.txt", NULL, "garbage line", "expected 'key = value'", NULL},
    {"vi/messages.txt", NULL, "help2 = \xff\xfe", "invalid UTF-8", NULL},
    {"vi/messages.txt", "optin =", "optin =   ", "empty value for 'optin'", NULL},
    {"vi/messages.txt", "help =",
     "help = {n} Nhắn HOC để học. Nhắn HOC để học. Nhắn HOC để học. Nhắn HOC để học. "
     "Nhắn HOC để học. Nhắn HOC để học. Nhắn HOC để học. Nhắn HOC để học. Nhắn HOC để học. Nhắn "
     "HOC để học. "
     "Nhắn HOC để học. Nhắn HOC để học.",
     "unknown placeholder {n} in 'help'", NULL},
    {"en/messages.txt", "help =",
     "help = Text QUIZ. Text QUIZ. Text QUIZ. Text QUIZ. Text QUIZ. Text QUIZ. "
     "Text QUIZ. Text QUIZ. Text QUIZ. Text QUIZ. Text QUIZ. Text QUIZ. Text QUIZ. Text QUIZ. Text "
     "QUIZ. "
     "Text QUIZ. Text QUIZ. Text QUIZ. Text QUIZ.",
     "help too long: 208 characters", NULL},
    {"vi/payment.txt", "answer = A", "answer = E", "answer must be one of A, B, C, D (got 'E')",
     NULL},
    {"en/payment.txt", "answer = A", "answer = AB", "answer must be one of A, B, C, D", NULL},
    {"vi/payment.txt", "answer = A", "answer = B", "question 'tt01': answer differs from",
     "id = tt01"},
    {"vi/shopping.txt", "d = ", "", "question 'ms01': missing option 'd'", "id = ms01"},
    {"en/safety.txt", "why = ", "", "question 'at01': missing explanation 'why'", "id = at01"},
    {"vi/safety.txt", "id = at02", "id = at01", "duplicate question id 'at01'", NULL},
    {"vi/safety.txt", "id = at02", "id = At 2!", "bad question id 'At 2!'", NULL},
    {"en/platforms.txt", "id = nt09", "id = nt99", "question 'nt99' missing from", NULL},
    {"vi/platforms.txt", "skill =", "skill = shopping",
     "skill 'shopping' does not match file name 'platforms'", "$"},
    {"vi/platforms.txt", "short =", "", "missing key 'short'", "$"},
    {"en/shopping.txt", NULL, "colour = red", "unknown key 'colour'", NULL},
    {"en/shopping.txt", NULL, "q = orphan", NULL,
     NULL}, /* belongs to the last question: duplicate */
    {"vi/payment.txt", "why = ",
     "why = Giải thích này rất dài, dài hơn nhiều so với một tin nhắn: ngân hàng không bao "
     "giờ hỏi mã OTP, không bao giờ gọi điện xin mật khẩu, không bao giờ gửi đường link lạ, "
     "không bao giờ yêu cầu cài ứng dụng từ tệp apk, hãy luôn kiểm tra kỹ.",
     "'wrong' reply with this explanation too long", "id = tt01"},
};

static void
run_broken(const struct broken *b)
{
	char *dir = copy_content(), path[600], want[900], *text, *errs;
	int line;

	snprintf(path, sizeof(path), "%s/%s", dir, b->file);
	text = slurp(path);
	if (b->prefix == NULL) {
		line = count_lines(text) + 1;
		append_file(path, b->repl);
	} else {
		line = line_of(text, b->prefix);
		assert_true(line > 0);
		edit_file(path, b->prefix, b->repl);
	}
	free(text);
	text = slurp(path);
	if (b->where != NULL && strcmp(b->where, "$") == 0)
		line = count_lines(text);
	else if (b->where != NULL)
		line = line_of(text, b->where);
	free(text);
	errs = load_errors(dir);
	if (b->reason != NULL) {
		snprintf(want, sizeof(want), "%s:%d: %s", path, line, b->reason);
		expect_error(errs, want);
	} else {
		snprintf(want, sizeof(want), "%s:%d: duplicate key 'q' in question", path, line);
		expect_error(errs, want);
	}
	free(errs);
	remove_content(dir);
}

static void
test_broken_content(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(broken_cases) / sizeof(broken_cases[0]); i++)
		run_broken(&broken_cases[i]);
}

static void
test_missing_files(void **state)
{
	char *dir = copy_content(), path[600], *errs;

	snprintf(path, sizeof(path), "%s/en/safety.txt", dir);
	assert_int_equal(unlink(path), 0);
	snprintf(path, sizeof(path), "%s/vi/shoping.txt", dir);
	spit(path, "skill = shopping\n");
	errs = load_errors(dir);
	snprintf(path, sizeof(path), "%s/en/safety.txt:0: cannot open", dir);
	expect_error(errs, path);
	snprintf(path, sizeof(path), "%s/vi/shoping.txt:0: unknown content file", dir);
	expect_error(errs, path);
	free(errs);
	remove_content(dir);
	errs = load_errors("/nonexistent/content");
	expect_error(errs, "/nonexistent/content/vi/messages.txt:0: cannot open");
	free(errs);
}

static void
test_too_few_questions(void **state)
{
	char *dir = copy_content(), path[600], want[700], *errs;
	int i;
	FILE *f;

	for (i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/%s/payment.txt", dir, i ? "en" : "vi");
		f = fopen(path, "w");
		assert_non_null(f);
		fprintf(f, "skill = payment\nname = P\nshort = P\nself = S?\n\nid = x1\nq = Q?\n"
		           "a = 1\nb = 2\nc = 3\nd = 4\nanswer = C\nwhy = W.\n");
		fclose(f);
	}
	errs = load_errors(dir);
	snprintf(want, sizeof(want), "%s:13: 1 questions for skill 'payment', need at least 8",
	         path);
	expect_error(errs, want);
	free(errs);
	remove_content(dir);
}

static void
test_helpers(void **state)
{
	char buf[64];
	struct content_var v[] = {{"n", "3"}, {"skill", "Thanh toán"}};

	content_fold("Học ĐÁP ÁN Tự chối ờ", buf, sizeof(buf));
	assert_string_equal(buf, "Hoc DAP AN Tu choi o");
	content_fold("Ho\xcc\x81"
	             "c",
	             buf, sizeof(buf)); /* combining acute */
	assert_string_equal(buf, "Hoc");
	content_fold("đđđđđ", buf, 4);
	assert_string_equal(buf, "ddd");
	assert_int_equal(content_ucs2_len("Đúng!"), 5);
	assert_int_equal(content_ucs2_len("\xc0\x80"), -1);
	assert_int_equal(content_gsm7_folded_len("Đúng {x}"), 10);
	content_render("HOC {n}: {skill} {x} {", v, 2, buf, sizeof(buf));
	assert_string_equal(buf, "HOC 3: Thanh toán {x} {");
	content_render("{skill}", v, 2, buf, 10);
	assert_string_equal(buf, "Thanh to"); /* "á" would not fit: cut before it */
	assert_int_equal(content_lang("en"), 1);
	assert_int_equal(content_lang("vi"), 0);
	assert_int_equal(content_lang(NULL), 0);
	content_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_shipped_content_loads),
	    cmocka_unit_test(test_broken_content),
	    cmocka_unit_test(test_missing_files),
	    cmocka_unit_test(test_too_few_questions),
	    cmocka_unit_test(test_helpers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

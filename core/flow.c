/*
 * flow.c — what a resident experiences by SMS (§3.1, §3.2): the keyword
 * router, quizzes, self-assessment, status, household join, language and
 * opt-out. Pure: no I/O, no clock, no rand(); include/flow.h is the
 * contract and core/pipeline.c commits the result.
 *
 * Flow state is a short string stored with the subscriber:
 *
 *   Q:<skill>:<id>,<id>,...:<i>:<score>:<bad>   quiz on skill 1..5, the drawn
 *                                               question ids, index of the
 *                                               question awaiting an answer,
 *                                               correct answers so far, and
 *                                               consecutive unusable replies
 *   S:<i>:<bad>                                 self-assessment, asking skill i
 *   M:<bad>                                     skill menu shown, waiting 1-5
 *
 * Questions are named by their stable content ids, so a content reload or a
 * language switch never breaks a quiz in progress. Anything that does not
 * parse is treated as "no flow". BAD_MAX unusable replies in a row end the
 * flow, so an auto-responder cannot keep a conversation going forever.
 */
#include "flow.h"
#include "content.h"
#include "strbuf.h"
#include "text.h"

#include <stdio.h>
#include <string.h>

const char *const flow_skill_codes[FLOW_SKILLS] = {
    "public_services", "shopping", "payment", "safety", "platforms",
};

#define QUIZ_MAX 10  /* questions per quiz, whatever the config says */
#define BAD_MAX 3    /* unusable replies in a row before a flow ends */
#define NORM_MAX 256 /* bytes of normalised input looked at */

enum kw {
	KW_NONE = 0,
	KW_HELP,
	KW_QUIZ,
	KW_RATE,
	KW_STATUS,
	KW_HOME,
	KW_STOP,
	KW_START,
	KW_EN,
	KW_VI,
};

struct kwmatch {
	enum kw kw;
	int n;         /* KW_QUIZ: skill number, 0 = none given */
	char code[32]; /* KW_HOME: household code, "" = none given */
};

struct quiz {
	int skill, n, i, score, bad;
	char ids[QUIZ_MAX][CONTENT_ID_MAX];
};

struct fstate {
	char kind;     /* 0 none, 'Q' quiz, 'S' self-assessment, 'M' menu */
	struct quiz q; /* 'Q' */
	int i;         /* 'S': skill being asked */
	int bad;       /* 'S', 'M' */
};

struct ctx {
	const struct content *c;
	const struct flow_cfg *cfg;
	const struct flow_sub *sub;
	struct flow_result *out;
	int lang;
	int64_t now;
	uint32_t seed;
};

/* ------------------------------------------------------------------ */
/* Normalising and keywords                                            */
/* ------------------------------------------------------------------ */

static bool
is_punct_or_space(unsigned char ch)
{
	return ch == ' ' ||
	       (ch < 0x80 && (ch < 0x20 || (ch > ' ' && ch < '0') || (ch > '9' && ch < 'A') ||
	                      (ch > 'Z' && ch < 'a') || ch > 'z'));
}

/* Drops a trailing incomplete UTF-8 sequence left by truncation. */
static size_t
utf8_cut(char *s, size_t n)
{
	size_t k = n, need;
	unsigned char lead;

	while (k > 0 && ((unsigned char)s[k - 1] & 0xC0) == 0x80)
		k--;
	if (k == 0 || (unsigned char)s[k - 1] < 0x80)
		return n;
	lead = (unsigned char)s[k - 1];
	need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
	if (n - (k - 1) < need) {
		s[k - 1] = '\0';
		return k - 1;
	}
	return n;
}

void
flow_normalise(const char *text, char *out, size_t cap)
{
	char f[1024];
	const unsigned char *s = (const unsigned char *)f;
	size_t o = 0;
	bool space = false;

	if (cap == 0)
		return;
	content_fold(text != NULL ? text : "", f, sizeof(f));
	while (*s != '\0' && is_punct_or_space(*s))
		s++;
	for (; *s != '\0' && o + 2 < cap; s++) {
		if (*s <= ' ' || *s == 0x7F) {
			space = true;
			continue;
		}
		if (space && o > 0)
			out[o++] = ' ';
		space = false;
		out[o++] = (char)(*s >= 'a' && *s <= 'z' ? *s - 'a' + 'A' : *s);
	}
	out[o] = '\0';
	o = utf8_cut(out, o);
	while (o > 0 && is_punct_or_space((unsigned char)out[o - 1]))
		out[--o] = '\0';
}

/* Keeps only A-Z and 0-9: "TU CHOI" -> "TUCHOI", "HOC 3" -> "HOC3". */
static void
compact(const char *norm, char *out, size_t cap)
{
	size_t o = 0;

	for (; *norm != '\0' && o + 1 < cap; norm++)
		if ((*norm >= 'A' && *norm <= 'Z') || (*norm >= '0' && *norm <= '9'))
			out[o++] = *norm;
	out[o] = '\0';
}

static const struct {
	const char *word;
	enum kw kw;
} words[] = {
    {"HD", KW_HELP},       {"TROGIUP", KW_HELP},   {"HUONGDAN", KW_HELP}, {"HELP", KW_HELP},
    {"DANHGIA", KW_RATE},  {"TUDANHGIA", KW_RATE}, {"RATE", KW_RATE},     {"KQ", KW_STATUS},
    {"KETQUA", KW_STATUS}, {"STATUS", KW_STATUS},  {"TUCHOI", KW_STOP},   {"HUY", KW_STOP},
    {"STOP", KW_STOP},     {"BATDAU", KW_START},   {"START", KW_START},   {"EN", KW_EN},
    {"ENGLISH", KW_EN},    {"TIENGANH", KW_EN},    {"VI", KW_VI},         {"TIENGVIET", KW_VI},
};

/* "HOC", "HOC3", "QUIZ 12" (n = -1: out of range). */
static bool
match_quiz(const char *cp, struct kwmatch *m)
{
	const char *p;

	if (strncmp(cp, "HOC", 3) == 0)
		p = cp + 3;
	else if (strncmp(cp, "QUIZ", 4) == 0)
		p = cp + 4;
	else
		return false;
	if (p[0] == '\0') {
		m->n = 0;
	} else if (p[0] >= '0' && p[0] <= '9' && p[1] == '\0') {
		m->n = p[0] - '0';
	} else if (strspn(p, "0123456789") == strlen(p) && strlen(p) <= 3) {
		m->n = -1;
	} else {
		return false;
	}
	m->kw = KW_QUIZ;
	return true;
}

/* "HO 123", "HO123", "HOME AB-12": the rest, upper-cased, [A-Z0-9._-]. */
static bool
match_home(const char *norm, struct kwmatch *m)
{
	const char *p;
	size_t o = 0;

	if (strncmp(norm, "HOME", 4) == 0 && !(norm[4] >= 'A' && norm[4] <= 'Z'))
		p = norm + 4;
	else if (strncmp(norm, "HO", 2) == 0 && !(norm[2] >= 'A' && norm[2] <= 'Z'))
		p = norm + 2;
	else
		return false;
	for (; *p != '\0' && o + 1 < sizeof(m->code); p++)
		if ((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		    *p == '_' || *p == '.')
			m->code[o++] = *p;
	m->code[o] = '\0';
	m->kw = KW_HOME;
	return true;
}

/* Recognises a global keyword in normalised text. */
static void
match_keyword(const char *norm, struct kwmatch *m)
{
	char cp[64];
	size_t i;

	memset(m, 0, sizeof(*m));
	if (strlen(norm) >= sizeof(cp))
		return; /* keywords are short; a long text is never one */
	compact(norm, cp, sizeof(cp));
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcmp(cp, words[i].word) == 0) {
			m->kw = words[i].kw;
			return;
		}
	if (match_quiz(cp, m))
		return;
	match_home(norm, m);
}

/*
 * The one character a resident meant as an answer, or 0: "b", "B.", "(c)",
 * " 2 ", "đáp án B", "dap an b", "tra loi: C", "B. Ngân hàng".
 */
static char
answer_char(const char *norm)
{
	static const char *const prefix[] = {
	    "CAUTRALOI", "TRALOI", "DAPAN", "CHON", "ANSWER", "ANS",
	    "MUCDO",     "MUC",    "LEVEL", "TL",   "DA",     "",
	};
	char cp[64];
	size_t i, n;

	if (strlen(norm) >= sizeof(cp))
		return 0;
	compact(norm, cp, sizeof(cp));
	for (i = 0; i < sizeof(prefix) / sizeof(prefix[0]); i++) {
		n = strlen(prefix[i]);
		if (strncmp(cp, prefix[i], n) == 0 && strlen(cp) == n + 1)
			return cp[n];
	}
	/* "B. NGAN HANG": a first word of one letter or digit */
	if (norm[0] != '\0' && (norm[1] == ' ' || norm[1] == '.' || norm[1] == ')'))
		return norm[0];
	return 0;
}

/* Answer to a quiz question: 0..3 for A..D / 1..4, or -1. */
static int
parse_choice(const char *norm)
{
	char ch = answer_char(norm);

	if (ch >= 'A' && ch <= 'D')
		return ch - 'A';
	if (ch >= '1' && ch <= '4')
		return ch - '1';
	return -1;
}

/* Self-assessment level 0..3, or -1. */
static int
parse_level(const char *norm)
{
	char ch = answer_char(norm);

	return ch >= '0' && ch <= '3' ? ch - '0' : -1;
}

/* Skill menu choice 1..5, or -1. */
static int
parse_menu(const char *norm)
{
	char ch = answer_char(norm);

	return ch >= '1' && ch <= '5' ? ch - '0' : -1;
}

/* ------------------------------------------------------------------ */
/* State strings                                                       */
/* ------------------------------------------------------------------ */

/* Reads a decimal in [lo, hi] followed by end, returns the char after it. */
const char *
flow_parse_int(const char *p, int lo, int hi, char end, int *v)
{
	int n = 0, digits = 0;

	while (*p >= '0' && *p <= '9' && digits < 4) {
		n = n * 10 + (*p++ - '0');
		digits++;
	}
	if (digits == 0 || *p != end || n < lo || n > hi)
		return NULL;
	*v = n;
	return p + (end != '\0');
}

static const char *
parse_ids(const char *p, struct quiz *q)
{
	size_t len;

	for (q->n = 0; q->n < QUIZ_MAX;) {
		len = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_-");
		if (len == 0 || len >= CONTENT_ID_MAX)
			return NULL;
		memcpy(q->ids[q->n], p, len);
		q->ids[q->n++][len] = '\0';
		p += len;
		if (*p == ':')
			return p + 1;
		if (*p++ != ',')
			return NULL;
	}
	return NULL;
}

/* Parses a stored state; a corrupt string leaves st->kind = 0. */
static void
state_parse(const char *s, struct fstate *st)
{
	const char *p = s + 2;
	struct quiz *q = &st->q;

	memset(st, 0, sizeof(*st));
	if (s[0] == '\0' || s[1] != ':')
		return;
	if (s[0] == 'Q') {
		if ((p = flow_parse_int(p, 1, FLOW_SKILLS, ':', &q->skill)) == NULL ||
		    (p = parse_ids(p, q)) == NULL ||
		    (p = flow_parse_int(p, 0, q->n - 1, ':', &q->i)) == NULL ||
		    (p = flow_parse_int(p, 0, q->i, ':', &q->score)) == NULL ||
		    flow_parse_int(p, 0, BAD_MAX - 1, '\0', &q->bad) == NULL)
			return;
	} else if (s[0] == 'S') {
		if ((p = flow_parse_int(p, 1, FLOW_SKILLS, ':', &st->i)) == NULL ||
		    flow_parse_int(p, 0, BAD_MAX - 1, '\0', &st->bad) == NULL)
			return;
	} else if (s[0] == 'M') {
		if (flow_parse_int(p, 0, BAD_MAX - 1, '\0', &st->bad) == NULL)
			return;
	} else {
		return;
	}
	st->kind = s[0];
}

static void
set_state(struct ctx *x, const char *s)
{
	str_copy(x->out->state, sizeof(x->out->state), s);
	x->out->state_changed = true;
}

static void
set_quiz_state(struct ctx *x, const struct quiz *q)
{
	char s[FLOW_STATE_MAX];
	size_t o;
	int k;

	o = (size_t)snprintf(s, sizeof(s), "Q:%d:", q->skill);
	for (k = 0; k < q->n && o < sizeof(s); k++)
		o += (size_t)snprintf(s + o, sizeof(s) - o, "%s%s", k ? "," : "", q->ids[k]);
	if (o < sizeof(s))
		snprintf(s + o, sizeof(s) - o, ":%d:%d:%d", q->i, q->score, q->bad);
	set_state(x, s);
}

/* ------------------------------------------------------------------ */
/* Replies                                                             */
/* ------------------------------------------------------------------ */

static void
add_text(struct ctx *x, const char *text)
{
	struct flow_result *o = x->out;

	if (o->n_replies >= FLOW_MAX_REPLIES || text[0] == '\0')
		return;
	str_copy(o->reply[o->n_replies++], FLOW_REPLY_MAX, text);
}

static void
render(struct ctx *x, const char *key, const struct content_var *v, int nv, char *buf)
{
	content_render(content_msg(x->c, x->lang, key), v, nv, buf, FLOW_REPLY_MAX);
}

static void
add_msg(struct ctx *x, const char *key, const struct content_var *v, int nv)
{
	char buf[FLOW_REPLY_MAX];

	render(x, key, v, nv, buf);
	add_text(x, buf);
}

static void
add_event(struct ctx *x, int skill, enum flow_event_kind kind, int value, bool passed)
{
	struct flow_result *o = x->out;

	if (o->n_events >= FLOW_MAX_EVENTS)
		return;
	o->events[o->n_events++] = (struct flow_event){skill, kind, value, passed};
}

/* Segments of utf8 on the least roomy link mode: UCS-2 with a 16-bit UDH. */
static int
segments(const char *utf8)
{
	return text_count_segments(utf8, TEXT_UCS2, LONG_UDH16);
}

void
flow_join_replies(const struct flow_cfg *cfg, struct flow_result *o)
{
	char both[FLOW_REPLY_MAX];
	int i, n = 0, seg, seg_n;

	if (cfg->join_segments <= 0 || o->n_replies < 2)
		return;
	seg_n = segments(o->reply[0]);
	for (i = 1; i < o->n_replies; i++) {
		int seg_i = segments(o->reply[i]);
		int len = snprintf(both, sizeof(both), "%s\n%s", o->reply[n], o->reply[i]);

		if (len >= 0 && (size_t)len < sizeof(both) && (seg = segments(both)) > 0 &&
		    seg <= cfg->join_segments && seg <= seg_n + seg_i) {
			memcpy(o->reply[n], both, (size_t)len + 1);
			seg_n = seg;
			continue;
		}
		n++;
		if (n != i)
			memcpy(o->reply[n], o->reply[i], sizeof(o->reply[n]));
		seg_n = seg_i;
	}
	o->n_replies = n + 1;
}

/* Renders question q as number n of total into buf, after prefix. */
static void
render_question(struct ctx *x, const struct content_question *q, int n, int total,
                const char *prefix, char *buf)
{
	char ns[12], ts[12];
	size_t o = 0;
	struct content_var v[] = {
	    {"n", ns},        {"total", ts},    {"question", q->text}, {"a", q->opt[0]},
	    {"b", q->opt[1]}, {"c", q->opt[2]}, {"d", q->opt[3]},
	};

	snprintf(ns, sizeof(ns), "%d", n);
	snprintf(ts, sizeof(ts), "%d", total);
	if (prefix[0] != '\0') {
		o = content_render(prefix, NULL, 0, buf, FLOW_REPLY_MAX / 2);
		buf[o++] = ' ';
	}
	content_render(content_msg(x->c, x->lang, "quiz_question"), v, 7, buf + o,
	               FLOW_REPLY_MAX - o);
}

static void
add_self_question(struct ctx *x, int skill)
{
	char ns[12];
	struct content_var v[] = {
	    {"n", ns},
	    {"total", "5"},
	    {"skill", content_skill_name(x->c, x->lang, skill)},
	    {"question", content_self_question(x->c, x->lang, skill)},
	};

	snprintf(ns, sizeof(ns), "%d", skill);
	add_msg(x, "self_question", v, 4);
}

/*
 * The "what next" sentence: the next skill (after cur, wrapping) whose quiz
 * still stands between the resident and proficiency, else an invitation to
 * self-assess when that is what is missing, else congratulations.
 */
static void
render_next(struct ctx *x, const struct flow_sub *s, int cur, char *buf)
{
	enum flow_rule rule = x->cfg->rule;
	bool missing = false;
	char ns[12];
	int k, sk;

	for (k = 1; k <= FLOW_SKILLS; k++) {
		sk = (cur + k - 1) % FLOW_SKILLS + 1;
		if (flow_proficient(s, sk, rule))
			continue;
		missing = true;
		if (rule != FLOW_RULE_SELF && !s->quiz_passed[sk - 1]) {
			struct content_var v[] = {
			    {"n", ns},
			    {"skill", content_skill_name(x->c, x->lang, sk)},
			};
			snprintf(ns, sizeof(ns), "%d", sk);
			render(x, "next_skill", v, 2, buf);
			return;
		}
	}
	render(x, missing ? "next_rate" : "all_done", NULL, 0, buf);
}

/* ------------------------------------------------------------------ */
/* Quiz                                                                */
/* ------------------------------------------------------------------ */

static uint32_t
xorshift32(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static int
quiz_length(const struct flow_cfg *cfg, int bank)
{
	int n = cfg->quiz_length > 0 ? cfg->quiz_length : 5;

	if (n > QUIZ_MAX)
		n = QUIZ_MAX;
	return n < bank ? n : bank;
}

static int
pass_mark(const struct flow_cfg *cfg, int total)
{
	int p = cfg->pass_mark > 0 ? cfg->pass_mark : 4;

	return p < total ? p : total;
}

static void
start_quiz(struct ctx *x, int skill)
{
	int idx[CONTENT_MAX_QUESTIONS], bank, i, j, t;
	uint32_t rs = x->seed != 0 ? x->seed : 0x9E3779B9u;
	char buf[FLOW_REPLY_MAX], ns[12], ts[12], ps[12];
	struct quiz q;

	bank = content_question_count(x->c, x->lang, skill);
	memset(&q, 0, sizeof(q));
	q.skill = skill;
	q.n = quiz_length(x->cfg, bank);
	if (q.n <= 0)
		return; /* content_load guarantees a bank; defensive */
	for (i = 0; i < bank; i++)
		idx[i] = i;
	for (i = 0; i < q.n; i++) { /* partial Fisher-Yates */
		j = i + (int)(xorshift32(&rs) % (uint32_t)(bank - i));
		t = idx[i], idx[i] = idx[j], idx[j] = t;
		snprintf(q.ids[i], sizeof(q.ids[i]), "%s",
		         content_question_at(x->c, x->lang, skill, idx[i])->id);
	}
	snprintf(ns, sizeof(ns), "%d", skill);
	snprintf(ts, sizeof(ts), "%d", q.n);
	snprintf(ps, sizeof(ps), "%d", pass_mark(x->cfg, q.n));
	struct content_var v[] = {
	    {"skill", content_skill_name(x->c, x->lang, skill)},
	    {"n", ns},
	    {"total", ts},
	    {"pass", ps},
	};
	add_msg(x, "quiz_start", v, 4);
	render_question(x, content_question_find(x->c, x->lang, skill, q.ids[0]), 1, q.n, "", buf);
	add_text(x, buf);
	set_quiz_state(x, &q);
}

static void
quiz_expired(struct ctx *x, int skill)
{
	char ns[12];
	struct content_var v[] = {
	    {"n", ns},
	    {"skill", content_skill_name(x->c, x->lang, skill)},
	};

	snprintf(ns, sizeof(ns), "%d", skill);
	add_msg(x, "quiz_expired", v, 2);
	set_state(x, "");
}

static void
quiz_finish(struct ctx *x, const struct quiz *q)
{
	int pass = pass_mark(x->cfg, q->n);
	bool passed = q->score >= pass;
	char ns[12], ss[12], ts[12], ps[12], next[FLOW_REPLY_MAX];
	struct flow_sub tmp = *x->sub;
	struct content_var v[] = {
	    {"skill", content_skill_name(x->c, x->lang, q->skill)},
	    {"n", ns},
	    {"score", ss},
	    {"total", ts},
	    {"pass", ps},
	    {"next", next},
	};

	snprintf(ns, sizeof(ns), "%d", q->skill);
	snprintf(ss, sizeof(ss), "%d", q->score);
	snprintf(ts, sizeof(ts), "%d", q->n);
	snprintf(ps, sizeof(ps), "%d", pass);
	add_event(x, q->skill, FLOW_EV_QUIZ, q->score, passed);
	if (passed)
		tmp.quiz_passed[q->skill - 1] = true;
	render_next(x, &tmp, q->skill, next);
	add_msg(x, passed ? "quiz_passed" : "quiz_failed", v, 6);
	set_state(x, "");
}

/* One unusable reply inside a flow: a hint, or the end after BAD_MAX. */
static bool
too_many_bad(struct ctx *x, int *bad, const char *hint_key)
{
	if (++*bad >= BAD_MAX) {
		add_msg(x, "flow_abandoned", NULL, 0);
		set_state(x, "");
		return true;
	}
	add_msg(x, hint_key, NULL, 0);
	return false;
}

static void
quiz_answer(struct ctx *x, struct quiz q, const char *norm)
{
	const struct content_question *cq;
	char buf[FLOW_REPLY_MAX], ans[2] = {0, 0};
	int choice = parse_choice(norm);

	if (choice < 0) {
		if (!too_many_bad(x, &q.bad, "invalid_answer"))
			set_quiz_state(x, &q);
		return;
	}
	cq = content_question_find(x->c, x->lang, q.skill, q.ids[q.i]);
	if (cq == NULL) { /* removed by a content reload */
		quiz_expired(x, q.skill);
		return;
	}
	q.bad = 0;
	const char *prefix = "";
	if (choice == cq->answer) {
		q.score++;
		prefix = content_msg(x->c, x->lang, "correct");
	} else {
		ans[0] = (char)('A' + cq->answer);
		struct content_var v[] = {{"answer", ans}, {"explanation", cq->why}};
		add_msg(x, "wrong", v, 2);
	}
	if (++q.i >= q.n) {
		if (prefix[0] != '\0')
			add_text(x, prefix);
		quiz_finish(x, &q);
		return;
	}
	cq = content_question_find(x->c, x->lang, q.skill, q.ids[q.i]);
	if (cq == NULL) {
		quiz_expired(x, q.skill);
		return;
	}
	render_question(x, cq, q.i + 1, q.n, prefix, buf);
	add_text(x, buf);
	set_quiz_state(x, &q);
}

/* ------------------------------------------------------------------ */
/* Self-assessment and menu                                            */
/* ------------------------------------------------------------------ */

static void
start_self(struct ctx *x)
{
	struct content_var v[] = {{"total", "5"}};

	add_msg(x, "self_start", v, 1);
	add_self_question(x, 1);
	set_state(x, "S:1:0");
}

static void
self_answer(struct ctx *x, int skill, int bad, const char *norm)
{
	int level = parse_level(norm);
	char s[16], next[FLOW_REPLY_MAX];
	struct flow_sub tmp = *x->sub;

	if (level < 0) {
		if (!too_many_bad(x, &bad, "invalid_self")) {
			snprintf(s, sizeof(s), "S:%d:%d", skill, bad);
			set_state(x, s);
		}
		return;
	}
	add_event(x, skill, FLOW_EV_SELF, level, false);
	if (skill < FLOW_SKILLS) {
		add_self_question(x, skill + 1);
		snprintf(s, sizeof(s), "S:%d:0", skill + 1);
		set_state(x, s);
		return;
	}
	tmp.self_level[skill - 1] = level;
	render_next(x, &tmp, 0, next);
	struct content_var v[] = {{"next", next}};
	add_msg(x, "self_done", v, 1);
	set_state(x, "");
}

static void
menu_answer(struct ctx *x, int bad, const char *norm)
{
	int skill = parse_menu(norm);
	char s[16];

	if (skill > 0) {
		start_quiz(x, skill);
		return;
	}
	if (!too_many_bad(x, &bad, "invalid_menu")) {
		snprintf(s, sizeof(s), "M:%d", bad);
		set_state(x, s);
	}
}

/* ------------------------------------------------------------------ */
/* Global keywords                                                     */
/* ------------------------------------------------------------------ */

/* Appends "1 Name, 3 Name" for the skills proficient (want) or not. */
static void
skill_list(struct ctx *x, const struct flow_sub *s, bool want, uint8_t mask_only, char *buf,
           size_t cap)
{
	size_t o = 0;
	int k;
	bool prof;

	buf[0] = '\0';
	for (k = 1; k <= FLOW_SKILLS && o < cap; k++) {
		prof = mask_only ? (s->household_skills >> (k - 1)) & 1
		                 : flow_proficient(s, k, x->cfg->rule);
		if (prof != want)
			continue;
		o += (size_t)snprintf(buf + o, cap - o, "%s%d %s", o ? ", " : "", k,
		                      content_skill_short(x->c, x->lang, k));
	}
	if (o == 0)
		str_copy(buf, cap, content_msg(x->c, x->lang, "none"));
}

static void
do_status(struct ctx *x)
{
	const struct flow_sub *s = x->sub;
	char done[512], miss[512], hmiss[512], members[12];
	const char *hkey = "status_household_none";
	struct content_var v[] = {
	    {"done_skills", done}, {"missing_skills", miss},     {"household", s->household},
	    {"members", members},  {"household_missing", hmiss},
	};

	skill_list(x, s, true, 0, done, sizeof(done));
	skill_list(x, s, false, 0, miss, sizeof(miss));
	skill_list(x, s, false, 1, hmiss, sizeof(hmiss));
	snprintf(members, sizeof(members), "%d", s->household_members);
	if (s->household[0] != '\0')
		hkey =
		    s->household_covered ? "status_household_covered" : "status_household_partial";
	add_msg(x, "status", v, 2);
	add_msg(x, hkey, v + 2, 3);
}

static void
do_home(struct ctx *x, const char *code)
{
	struct flow_result *o = x->out;
	struct content_var v[] = {{"code", code}};

	if (code[0] == '\0') {
		add_msg(x, "join_usage", NULL, 0);
		return;
	}
	str_copy(o->join_code, sizeof(o->join_code), code);
	render(x, "join_ok", v, 1, o->reply_join_ok);
	render(x, "join_unknown", v, 1, o->reply_join_unknown);
}

static bool
expired(const struct ctx *x)
{
	return x->cfg->idle_timeout > 0 &&
	       x->now - x->sub->state_at > (int64_t)x->cfg->idle_timeout;
}

/* After EN/VI: the pending question again, in the new language. */
static void
repeat_pending(struct ctx *x)
{
	struct fstate st;
	const struct content_question *cq;
	char buf[FLOW_REPLY_MAX];

	state_parse(x->sub->state, &st);
	if (st.kind == 0 || expired(x))
		return;
	if (st.kind == 'S') {
		add_self_question(x, st.i);
	} else if (st.kind == 'M') {
		add_msg(x, "skill_menu", NULL, 0);
	} else {
		cq = content_question_find(x->c, x->lang, st.q.skill, st.q.ids[st.q.i]);
		if (cq == NULL)
			return;
		render_question(x, cq, st.q.i + 1, st.q.n, "", buf);
		add_text(x, buf);
	}
}

static void
do_keyword(struct ctx *x, const struct kwmatch *m)
{
	switch (m->kw) {
	case KW_HELP:
		add_msg(x, "help", NULL, 0);
		break;
	case KW_QUIZ:
		if (m->n >= 1 && m->n <= FLOW_SKILLS) {
			start_quiz(x, m->n);
		} else {
			add_msg(x, "skill_menu", NULL, 0);
			set_state(x, "M:0");
		}
		break;
	case KW_RATE:
		start_self(x);
		break;
	case KW_STATUS:
		do_status(x);
		break;
	case KW_HOME:
		do_home(x, m->code);
		break;
	case KW_STOP:
		x->out->opt = -1;
		set_state(x, "");
		add_msg(x, "optout", NULL, 0);
		break;
	case KW_START:
		x->out->opt = x->sub->opted_out ? 1 : 0;
		add_msg(x, "optin", NULL, 0);
		break;
	case KW_EN:
	case KW_VI:
		x->lang = m->kw == KW_EN ? 1 : 0;
		str_copy(x->out->lang, sizeof(x->out->lang), x->lang ? "en" : "vi");
		add_msg(x, "lang_switched", NULL, 0);
		repeat_pending(x);
		break;
	case KW_NONE:
		break;
	}
}

/* ------------------------------------------------------------------ */
/* Entry points                                                        */
/* ------------------------------------------------------------------ */

static void
unknown_input(struct ctx *x)
{
	const struct flow_sub *s = x->sub;

	if (s->help_at != 0 && x->now - s->help_at < (int64_t)x->cfg->help_interval)
		return;
	add_msg(x, "help", NULL, 0);
	x->out->help_sent = true;
}

/* An answer-shaped reply to a flow that timed out: say so and clear it. */
static void
flow_late(struct ctx *x, const struct fstate *st, const char *norm)
{
	if (st->kind == 'Q' && parse_choice(norm) >= 0) {
		quiz_expired(x, st->q.skill);
	} else if (st->kind == 'S' && parse_level(norm) >= 0) {
		add_msg(x, "self_expired", NULL, 0);
		set_state(x, "");
	} else if (st->kind == 'M' && parse_menu(norm) > 0) {
		start_quiz(x, parse_menu(norm)); /* the choice is still clear */
	} else {
		set_state(x, "");
		unknown_input(x);
	}
}

static void
flow_step(struct ctx *x, const char *norm)
{
	struct fstate st;

	state_parse(x->sub->state, &st);
	if (st.kind == 0) {
		set_state(x, ""); /* corrupt: forget it */
		unknown_input(x);
	} else if (expired(x)) {
		flow_late(x, &st, norm);
	} else if (st.kind == 'Q') {
		quiz_answer(x, st.q, norm);
	} else if (st.kind == 'S') {
		self_answer(x, st.i, st.bad, norm);
	} else {
		menu_answer(x, st.bad, norm);
	}
}

void
flow_handle_sms(const struct content *c, const struct flow_cfg *cfg, const struct flow_sub *sub,
                const char *text, int64_t now, uint32_t seed, struct flow_result *out)
{
	struct flow_sub s = *sub; /* terminated copy: the snapshot is untrusted */
	struct ctx x = {c, cfg, &s, out, 0, now, seed};
	char norm[NORM_MAX];
	struct kwmatch m;

	s.msisdn[sizeof(s.msisdn) - 1] = '\0';
	s.lang[sizeof(s.lang) - 1] = '\0';
	s.state[sizeof(s.state) - 1] = '\0';
	s.household[sizeof(s.household) - 1] = '\0';
	x.lang = content_lang(s.lang);
	memset(out, 0, sizeof(*out));
	flow_normalise(text, norm, sizeof(norm));
	match_keyword(norm, &m);
	if (s.opted_out) {
		if (m.kw == KW_START)
			do_keyword(&x, &m);
	} else if (m.kw != KW_NONE)
		do_keyword(&x, &m);
	else if (s.state[0] != '\0')
		flow_step(&x, norm);
	else
		unknown_input(&x);
	flow_join_replies(cfg, out);
}

bool
flow_proficient(const struct flow_sub *sub, int skill, enum flow_rule rule)
{
	bool self, quiz;

	if (skill < 1 || skill > FLOW_SKILLS)
		return false;
	self = sub->self_level[skill - 1] >= 2;
	quiz = sub->quiz_passed[skill - 1];
	switch (rule) {
	case FLOW_RULE_SELF:
		return self;
	case FLOW_RULE_QUIZ:
		return quiz;
	case FLOW_RULE_BOTH:
	default:
		return self && quiz;
	}
}

const char *
flow_rule_name(enum flow_rule rule)
{
	return rule == FLOW_RULE_SELF ? "self" : rule == FLOW_RULE_QUIZ ? "quiz" : "both";
}

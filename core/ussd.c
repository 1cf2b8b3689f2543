/*
 * ussd.c — USSD menus (§3.3, §4.5): one state machine per dialog, used by
 * SMPP dialogs and by the HTTP callback. See include/ussd.h.
 *
 * Screens: MAIN (1 quiz, 2 self-assessment, 3 progress, 4 household,
 * 5 language), QUIZ_MENU, QUIZ_Q, SELF_Q, PROGRESS, HOUSEHOLD_ENTER,
 * LANGUAGE, END. enter_state() is the only writer of the current screen.
 * "0" goes back (to the parent screen), "00" to the main menu; three
 * unusable inputs in a row end the dialog. Every screen comes from
 * config/content/<lang>/ussd.txt, folded to GSM-7 (content_load checks each
 * fits CONTENT_USSD_MAX characters).
 *
 * Dialog state string (ussd_sessions.state):
 *   <scr>:<lang>:<bad>:<inputs>[:<skill>[:<ids>:<qi>:<score>]]
 * scr is one of M K Q S P H L E; Q carries the quiz (skill, drawn question
 * ids, index of the pending question, score), S the skill being asked.
 *
 * I/O (second half of the file): a cache of open dialogs keyed by link and
 * session key, each with a FIFO of steps handled one at a time: (load the
 * dialog and the subscriber snapshot from PostgreSQL when needed) -> screen
 * logic -> sg_ussd_steps commits the MO row, the dialog state, events, join,
 * language, the screen (mt_messages kind 'ussd') and any SMS -> deliver_sm_resp
 * -> submit_sm of the screen (or the HTTP body). Idle and total timeouts end
 * a dialog with a step of their own; their deadlines sit in one min-heap of
 * dialogs served by a single event. A cached dialog is kept small (struct
 * dlg: packed state, the few snapshot fields the screens read, strings and
 * HTTP body sized to need): §7 wants 100,000 open dialogs within 64 MiB.
 *
 * Group commit (sql/008_ussd_batch.sql), as core/pipeline.c does for SMS:
 * loads and steps of all dialogs collect in an open batch of each kind; at
 * most one batch of each kind is in flight, and whatever arrives meanwhile
 * goes into the next one (flushed from a deferred event, so requests read in
 * the same loop pass share a batch). A dialog has at most one load or step
 * in flight, so a batch holds at most one step per dialog and a dialog's
 * steps stay FIFO. A failed batch fails each of its steps as a single failed
 * step would (temporary error / 503).
 */
#include "ussd.h"

#include <ctype.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "msg.h"
#include "msisdn.h"
#include "store.h"
#include "strbuf.h"

#define MOD "ussd"
#define BAD_MAX 3

/* ------------------------------------------------------------------ */
/* State strings                                                       */
/* ------------------------------------------------------------------ */

static const char scr_letters[] = "MKQSPHLE";

void
ussd_state_format(const struct ussd_dialog *d, char *out, size_t cap)
{
	size_t o;
	int k;

	if (cap == 0)
		return;
	o = (size_t)snprintf(out, cap, "%c:%s:%d:%d", scr_letters[d->screen],
	                     d->lang == 1 ? "en" : "vi", d->bad, d->inputs);
	if (o >= cap)
		return;
	if (d->screen == USSD_SELF_Q) {
		snprintf(out + o, cap - o, ":%d", d->skill);
	} else if (d->screen == USSD_QUIZ_Q) {
		o += (size_t)snprintf(out + o, cap - o, ":%d:", d->skill);
		for (k = 0; k < d->qn && o < cap; k++)
			o += (size_t)snprintf(out + o, cap - o, "%s%s", k ? "," : "", d->ids[k]);
		if (o < cap)
			snprintf(out + o, cap - o, ":%d:%d", d->qi, d->score);
	}
}

static void
dialog_reset(struct ussd_dialog *d, int lang)
{
	memset(d, 0, sizeof(*d));
	d->screen = USSD_MAIN;
	d->lang = lang;
}

int
ussd_state_parse(const char *s, struct ussd_dialog *d)
{
	const char *p, *sl;
	size_t len;
	int lang;

	dialog_reset(d, 0);
	if (s == NULL || s[0] == '\0' || s[1] != ':' || (sl = strchr(scr_letters, s[0])) == NULL)
		return -1;
	if (strncmp(s + 2, "vi:", 3) == 0)
		lang = 0;
	else if (strncmp(s + 2, "en:", 3) == 0)
		lang = 1;
	else
		return -1;
	d->lang = lang;
	d->screen = (enum ussd_screen)(sl - scr_letters);
	p = s + 5;
	if ((p = flow_parse_int(p, 0, BAD_MAX, ':', &d->bad)) == NULL)
		goto bad;
	if (d->screen != USSD_QUIZ_Q && d->screen != USSD_SELF_Q)
		return flow_parse_int(p, 0, 9999, '\0', &d->inputs) != NULL
		           ? 0
		           : (dialog_reset(d, lang), -1);
	if ((p = flow_parse_int(p, 0, 9999, ':', &d->inputs)) == NULL)
		goto bad;
	if (d->screen == USSD_SELF_Q)
		return flow_parse_int(p, 1, FLOW_SKILLS, '\0', &d->skill) != NULL
		           ? 0
		           : (dialog_reset(d, lang), -1);
	if ((p = flow_parse_int(p, 1, FLOW_SKILLS, ':', &d->skill)) == NULL)
		goto bad;
	for (d->qn = 0; d->qn < USSD_QUIZ_MAX;) {
		len = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_-");
		if (len == 0 || len >= CONTENT_ID_MAX)
			goto bad;
		memcpy(d->ids[d->qn], p, len);
		d->ids[d->qn++][len] = '\0';
		p += len;
		if (*p == ':')
			break;
		if (*p++ != ',')
			goto bad;
	}
	if (*p != ':')
		goto bad;
	if ((p = flow_parse_int(p + 1, 0, d->qn - 1, ':', &d->qi)) == NULL ||
	    flow_parse_int(p, 0, d->qi, '\0', &d->score) == NULL)
		goto bad;
	return 0;
bad:
	dialog_reset(d, lang);
	return -1;
}

/* ------------------------------------------------------------------ */
/* Screen logic                                                        */
/* ------------------------------------------------------------------ */

struct uctx {
	const struct content *c;
	const struct ussd_cfg *cfg;
	struct flow_sub *sub;
	struct ussd_step_out *out;
	struct ussd_dialog d;
	uint32_t rs;
	char prefix[128]; /* folded feedback put before the next screen if it fits */
};

/* Renders USSD template key into out (folded). */
static void
render(const struct uctx *x, const char *key, const struct content_var *v, int nv, char *out,
       size_t cap)
{
	char buf[2048];

	content_render(content_ussd(x->c, x->d.lang, key), v, nv, buf, sizeof(buf));
	content_fold(buf, out, cap);
}

static void
add_event(struct uctx *x, int skill, enum flow_event_kind kind, int value, bool passed)
{
	struct ussd_step_out *o = x->out;

	if (o->n_events < FLOW_MAX_EVENTS)
		o->events[o->n_events++] = (struct flow_event){skill, kind, value, passed};
	if (kind == FLOW_EV_SELF) {
		x->sub->self_level[skill - 1] = value;
	} else {
		if (value > x->sub->best_quiz[skill - 1])
			x->sub->best_quiz[skill - 1] = value;
		if (passed)
			x->sub->quiz_passed[skill - 1] = true;
	}
}

/* The one writer of the current screen. */
static void
enter_state(struct uctx *x, enum ussd_screen s)
{
	if (s != USSD_QUIZ_Q) {
		x->d.qn = x->d.qi = x->d.score = 0;
		memset(x->d.ids, 0, sizeof(x->d.ids));
	}
	if (s != USSD_QUIZ_Q && s != USSD_SELF_Q)
		x->d.skill = 0;
	x->d.screen = s;
	x->d.bad = 0;
	if (s == USSD_END)
		x->out->end = true;
}

/* A final screen from template key: the dialog ends. */
static void
finish(struct uctx *x, const char *key, const struct content_var *v, int nv)
{
	enter_state(x, USSD_END);
	render(x, key, v, nv, x->out->screen, sizeof(x->out->screen));
	x->prefix[0] = '\0';
}

static void
question_screen(const struct uctx *x, const struct content_question *q, char *out, size_t cap)
{
	char ns[12], ts[12];
	struct content_var v[] = {
	    {"n", ns},        {"total", ts},    {"question", q->text}, {"a", q->opt[0]},
	    {"b", q->opt[1]}, {"c", q->opt[2]}, {"d", q->opt[3]},
	};

	snprintf(ns, sizeof(ns), "%d", x->d.qi + 1);
	snprintf(ts, sizeof(ts), "%d", x->d.qn);
	render(x, "quiz_question", v, 7, out, cap);
}

/* "1,3,5" of skills proficient (want) or not; mask: household skills. */
static void
skill_numbers(const struct uctx *x, bool want, bool household, char *out, size_t cap)
{
	size_t o = 0;
	int k;
	bool prof;

	out[0] = '\0';
	for (k = 1; k <= FLOW_SKILLS; k++) {
		prof = household ? (x->sub->household_skills >> (k - 1)) & 1
		                 : flow_proficient(x->sub, k, x->cfg->rule);
		if (prof == want && o + 3 < cap)
			o += (size_t)snprintf(out + o, cap - o, "%s%d", o ? "," : "", k);
	}
	if (o == 0)
		render(x, "none", NULL, 0, out, cap);
}

/* Renders the current (non-final) screen into out->screen. */
static void
show(struct uctx *x)
{
	char buf[USSD_SCREEN_BYTES], ns[12], done[64], miss[64], hmiss[64], members[12];
	const struct content_question *q;
	struct ussd_step_out *o = x->out;

	switch (x->d.screen) {
	case USSD_MAIN:
		render(x, "main", NULL, 0, buf, sizeof(buf));
		break;
	case USSD_QUIZ_MENU:
		render(x, "quiz_menu", NULL, 0, buf, sizeof(buf));
		break;
	case USSD_QUIZ_Q:
		q = content_question_find(x->c, x->d.lang, x->d.skill, x->d.ids[x->d.qi]);
		if (q == NULL) { /* retired by a content reload */
			finish(x, "abandoned", NULL, 0);
			return;
		}
		question_screen(x, q, buf, sizeof(buf));
		break;
	case USSD_SELF_Q: {
		snprintf(ns, sizeof(ns), "%d", x->d.skill);
		struct content_var v[] = {
		    {"n", ns},
		    {"total", "5"},
		    {"skill", content_skill_short(x->c, x->d.lang, x->d.skill)},
		    {"question", content_self_question(x->c, x->d.lang, x->d.skill)},
		};
		render(x, "self_question", v, 4, buf, sizeof(buf));
		break;
	}
	case USSD_PROGRESS: {
		const char *key = "progress_none";
		skill_numbers(x, true, false, done, sizeof(done));
		skill_numbers(x, false, false, miss, sizeof(miss));
		skill_numbers(x, false, true, hmiss, sizeof(hmiss));
		snprintf(members, sizeof(members), "%d", x->sub->household_members);
		if (x->sub->household[0] != '\0')
			key = x->sub->household_covered ? "progress_covered" : "progress_partial";
		struct content_var v[] = {
		    {"done", done},
		    {"missing", miss},
		    {"household", x->sub->household},
		    {"members", members},
		    {"household_missing", hmiss},
		};
		render(x, key, v, 5, buf, sizeof(buf));
		break;
	}
	case USSD_HOUSEHOLD_ENTER:
		render(x, "household_enter", NULL, 0, buf, sizeof(buf));
		break;
	case USSD_LANGUAGE:
		render(x, "language", NULL, 0, buf, sizeof(buf));
		break;
	case USSD_END:
	default:
		return; /* the final screen is already in out->screen */
	}
	if (x->prefix[0] != '\0') {
		char both[USSD_SCREEN_BYTES + 160];
		snprintf(both, sizeof(both), "%s %s", x->prefix, buf);
		if (content_gsm7_folded_len(both) <= CONTENT_USSD_MAX &&
		    strlen(both) < sizeof(o->screen)) {
			memcpy(o->screen, both, strlen(both) + 1);
			return;
		}
	}
	str_copy(o->screen, sizeof(o->screen), buf);
}

static uint32_t
xorshift32(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void
start_quiz(struct uctx *x, int skill)
{
	int idx[CONTENT_MAX_QUESTIONS], bank, i, j, t, n;

	bank = content_question_count(x->c, x->d.lang, skill);
	n = x->cfg->quiz_length > 0 ? x->cfg->quiz_length : 5;
	if (n > USSD_QUIZ_MAX)
		n = USSD_QUIZ_MAX;
	if (n > bank)
		n = bank;
	if (n <= 0) {
		finish(x, "abandoned", NULL, 0);
		return;
	}
	enter_state(x, USSD_QUIZ_Q);
	x->d.skill = skill;
	x->d.qn = n;
	for (i = 0; i < bank; i++)
		idx[i] = i;
	for (i = 0; i < n; i++) { /* partial Fisher-Yates, as the SMS quiz */
		j = i + (int)(xorshift32(&x->rs) % (uint32_t)(bank - i));
		t = idx[i], idx[i] = idx[j], idx[j] = t;
		snprintf(x->d.ids[i], sizeof(x->d.ids[i]), "%s",
		         content_question_at(x->c, x->d.lang, skill, idx[i])->id);
	}
}

static int
pass_mark(const struct uctx *x)
{
	int p = x->cfg->pass_mark > 0 ? x->cfg->pass_mark : 4;

	return p < x->d.qn ? p : x->d.qn;
}

static void
quiz_done(struct uctx *x)
{
	int skill = x->d.skill, pass = pass_mark(x);
	bool passed = x->d.score >= pass;
	char ns[12], ss[12], ts[12], ps[12], tmp[USSD_SMS_BYTES];
	struct content_var v[] = {
	    {"skill", content_skill_short(x->c, x->d.lang, skill)},
	    {"n", ns},
	    {"score", ss},
	    {"total", ts},
	    {"pass", ps},
	};

	snprintf(ns, sizeof(ns), "%d", skill);
	snprintf(ss, sizeof(ss), "%d", x->d.score);
	snprintf(ts, sizeof(ts), "%d", x->d.qn);
	snprintf(ps, sizeof(ps), "%d", pass);
	add_event(x, skill, FLOW_EV_QUIZ, x->d.score, passed);
	render(x, passed ? "sms_passed" : "sms_failed", v, 5, tmp, sizeof(tmp));
	str_copy(x->out->sms, sizeof(x->out->sms), tmp);
	finish(x, passed ? "quiz_passed" : "quiz_failed", v, 5);
}

static void
quiz_answer(struct uctx *x, int choice)
{
	const struct content_question *q =
	    content_question_find(x->c, x->d.lang, x->d.skill, x->d.ids[x->d.qi]);
	char ans[12];

	if (q == NULL) {
		finish(x, "abandoned", NULL, 0);
		return;
	}
	if (choice == q->answer) {
		x->d.score++;
		render(x, "correct", NULL, 0, x->prefix, sizeof(x->prefix));
	} else {
		snprintf(ans, sizeof(ans), "%d", q->answer + 1);
		struct content_var v[] = {{"answer", ans}};
		render(x, "wrong", v, 1, x->prefix, sizeof(x->prefix));
	}
	if (++x->d.qi >= x->d.qn)
		quiz_done(x);
}

static void
self_answer(struct uctx *x, int level)
{
	add_event(x, x->d.skill, FLOW_EV_SELF, level, false);
	if (x->d.skill >= FLOW_SKILLS) {
		finish(x, "self_done", NULL, 0);
		return;
	}
	x->d.skill++;
	x->d.bad = 0;
}

static bool
valid_household_code(const char *s)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > 31)
		return false;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

static void
join(struct uctx *x, const char *code)
{
	struct content_var v[] = {{"code", code}};
	struct ussd_step_out *o = x->out;

	snprintf(o->join_code, sizeof(o->join_code), "%.*s", (int)sizeof(o->join_code) - 1, code);
	render(x, "join_ok", v, 1, o->screen_join_ok, sizeof(o->screen_join_ok));
	render(x, "join_unknown", v, 1, o->screen_join_unknown, sizeof(o->screen_join_unknown));
	enter_state(x, USSD_END);
	o->screen[0] = '\0'; /* the store picks one of the two */
	x->prefix[0] = '\0';
}

/* A single digit 1..max, or 0 for anything else. */
static int
digit(const char *in, int max)
{
	if (in[0] >= '1' && in[0] <= '0' + max && in[1] == '\0')
		return in[0] - '0';
	return 0;
}

static void
invalid(struct uctx *x)
{
	if (++x->d.bad >= BAD_MAX) {
		finish(x, "abandoned", NULL, 0);
		return;
	}
	render(x, "invalid", NULL, 0, x->prefix, sizeof(x->prefix));
}

/* Applies one user input to the dialog. */
static void
apply(struct uctx *x, const char *raw)
{
	char in[64];
	size_t n;
	int k;

	if (x->d.screen == USSD_END)
		return;
	while (*raw == ' ' || *raw == '\t')
		raw++;
	str_copy(in, sizeof(in), raw);
	n = strlen(in);
	while (n > 0 &&
	       (in[n - 1] == ' ' || in[n - 1] == '\t' || in[n - 1] == '\r' || in[n - 1] == '\n'))
		in[--n] = '\0';
	x->prefix[0] = '\0';
	if (strcmp(in, "00") == 0) {
		enter_state(x, USSD_MAIN);
		return;
	}
	if (strcmp(in, "0") == 0) {
		static const enum ussd_screen parent[] = {
		    [USSD_MAIN] = USSD_MAIN,        [USSD_QUIZ_MENU] = USSD_MAIN,
		    [USSD_QUIZ_Q] = USSD_QUIZ_MENU, [USSD_SELF_Q] = USSD_MAIN,
		    [USSD_PROGRESS] = USSD_MAIN,    [USSD_HOUSEHOLD_ENTER] = USSD_MAIN,
		    [USSD_LANGUAGE] = USSD_MAIN,    [USSD_END] = USSD_END,
		};
		enter_state(x, parent[x->d.screen]);
		return;
	}
	switch (x->d.screen) {
	case USSD_MAIN:
		k = digit(in, 5);
		if (k == 1)
			enter_state(x, USSD_QUIZ_MENU);
		else if (k == 2) {
			enter_state(x, USSD_SELF_Q);
			x->d.skill = 1;
		} else if (k == 3)
			enter_state(x, USSD_PROGRESS);
		else if (k == 4)
			enter_state(x, USSD_HOUSEHOLD_ENTER);
		else if (k == 5)
			enter_state(x, USSD_LANGUAGE);
		else
			invalid(x);
		break;
	case USSD_QUIZ_MENU:
		if ((k = digit(in, FLOW_SKILLS)) > 0)
			start_quiz(x, k);
		else
			invalid(x);
		break;
	case USSD_QUIZ_Q:
		if ((k = digit(in, 4)) > 0) {
			x->d.bad = 0;
			quiz_answer(x, k - 1);
		} else {
			invalid(x);
		}
		break;
	case USSD_SELF_Q:
		if ((k = digit(in, 4)) > 0)
			self_answer(x, k - 1);
		else
			invalid(x);
		break;
	case USSD_HOUSEHOLD_ENTER:
		if (valid_household_code(in))
			join(x, in);
		else
			invalid(x);
		break;
	case USSD_LANGUAGE:
		if ((k = digit(in, 2)) > 0) {
			x->d.lang = k - 1;
			str_copy(x->out->lang, sizeof(x->out->lang), k == 2 ? "en" : "vi");
			enter_state(x, USSD_MAIN);
		} else {
			invalid(x);
		}
		break;
	case USSD_PROGRESS:
	case USSD_END:
	default:
		invalid(x);
		break;
	}
}

static void
finish_out(struct uctx *x)
{
	if (x->d.screen != USSD_END)
		show(x);
	x->out->next = x->d;
	ussd_state_format(&x->d, x->out->state, sizeof(x->out->state));
}

static void
ctx_init(struct uctx *x, const struct content *c, const struct ussd_cfg *cfg, struct flow_sub *sub,
         uint32_t seed, struct ussd_step_out *out)
{
	memset(out, 0, sizeof(*out));
	memset(x, 0, sizeof(*x));
	x->c = c;
	x->cfg = cfg;
	x->sub = sub;
	x->out = out;
	x->rs = seed != 0 ? seed : 0x9E3779B9u;
}

/* A fresh dialog at MAIN, then each input in turn. */
static void
begin_inputs(const struct content *c, const struct ussd_cfg *cfg, struct flow_sub *sub,
             const char *const *inputs, int n, uint32_t seed, struct ussd_step_out *out)
{
	struct uctx x;
	int i;

	ctx_init(&x, c, cfg, sub, seed, out);
	dialog_reset(&x.d, content_lang(sub->lang));
	for (i = 0; i < n && i < USSD_MAX_INPUTS; i++)
		apply(&x, inputs[i]);
	x.d.inputs = n;
	finish_out(&x);
}

void
ussd_begin(const struct content *c, const struct ussd_cfg *cfg, struct flow_sub *sub,
           const char *dialled, uint32_t seed, struct ussd_step_out *out)
{
	char buf[128], *p, *f[USSD_MAX_INPUTS + 1];
	const char *inputs[USSD_MAX_INPUTS];
	int nf = 0, i;
	size_t n;

	str_copy(buf, sizeof(buf), dialled);
	p = buf;
	while (*p == ' ')
		p++;
	n = strlen(p);
	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '#'))
		p[--n] = '\0';
	if (*p == '*') { /* "*8079*1*3" -> fields 8079, 1, 3 */
		p++;
		while (nf < USSD_MAX_INPUTS + 1) {
			f[nf++] = p;
			p = strchr(p, '*');
			if (p == NULL)
				break;
			*p++ = '\0';
		}
	}
	for (i = 1; i < nf; i++)
		inputs[i - 1] = f[i];
	begin_inputs(c, cfg, sub, inputs, nf > 1 ? nf - 1 : 0, seed, out);
	out->next.inputs = 0;
	ussd_state_format(&out->next, out->state, sizeof(out->state));
}

void
ussd_input(const struct content *c, const struct ussd_cfg *cfg, struct flow_sub *sub,
           const struct ussd_dialog *in, const char *const *inputs, int n, uint32_t seed,
           struct ussd_step_out *out)
{
	struct uctx x;
	int i;

	ctx_init(&x, c, cfg, sub, seed, out);
	x.d = *in;
	for (i = 0; i < n && i < USSD_MAX_INPUTS; i++)
		apply(&x, inputs[i]);
	finish_out(&x);
}

void
ussd_close(const struct content *c, const struct ussd_cfg *cfg, const struct ussd_dialog *in,
           bool timeout, struct ussd_step_out *out)
{
	struct flow_sub dummy;
	struct uctx x;
	const struct content_question *q;

	memset(&dummy, 0, sizeof(dummy));
	ctx_init(&x, c, cfg, &dummy, 0, out);
	x.d = *in;
	if (x.d.screen == USSD_QUIZ_Q && x.d.qn > 0 &&
	    (q = content_question_find(c, x.d.lang, x.d.skill, x.d.ids[x.d.qi])) != NULL) {
		char ns[12], as[12], ts[12], ss[12], head[USSD_SMS_BYTES / 2],
		    qs[USSD_SCREEN_BYTES - 8];
		struct content_var v[] = {
		    {"skill", content_skill_short(c, x.d.lang, x.d.skill)},
		    {"n", ns},
		    {"answered", as},
		    {"total", ts},
		    {"score", ss},
		};
		size_t o;
		int k;

		snprintf(ns, sizeof(ns), "%d", x.d.skill);
		snprintf(as, sizeof(as), "%d", x.d.qi);
		snprintf(ts, sizeof(ts), "%d", x.d.qn);
		snprintf(ss, sizeof(ss), "%d", x.d.score);
		render(&x, "sms_paused", v, 5, head, sizeof(head));
		question_screen(&x, q, qs, sizeof(qs));
		snprintf(out->sms, sizeof(out->sms), "%s\n%s", head, qs);
		/* the SMS quiz (core/flow.c) continues from here */
		o = (size_t)snprintf(out->sms_state, sizeof(out->sms_state), "Q:%d:", x.d.skill);
		for (k = 0; k < x.d.qn && o < sizeof(out->sms_state); k++)
			o += (size_t)snprintf(out->sms_state + o, sizeof(out->sms_state) - o,
			                      "%s%s", k ? "," : "", x.d.ids[k]);
		if (o < sizeof(out->sms_state))
			snprintf(out->sms_state + o, sizeof(out->sms_state) - o, ":%d:%d:0", x.d.qi,
			         x.d.score);
		out->sms_state_set = true;
	}
	if (timeout)
		finish(&x, "timeout", NULL, 0);
	else
		enter_state(&x, USSD_END);
	out->next = x.d;
	ussd_state_format(&x.d, out->state, sizeof(out->state));
}

/* ------------------------------------------------------------------ */
/* I/O: dialogs, steps, the store and the gateway                      */
/* ------------------------------------------------------------------ */

#define DLG_BUCKETS_MIN 4096 /* hash buckets at first: doubled when dialogs outnumber them */
#define HEAP_MIN 1024        /* deadline heap slots at first */
#define HTTP_LINK "http"
#define SUBMIT_RETRIES 100

enum step_kind { STEP_SMPP, STEP_HTTP, STEP_TIMEOUT };

struct step {
	struct step *next;
	enum step_kind kind;
	enum msg_ussd_op op; /* STEP_SMPP */
	char *text;          /* input, dialled string, or HTTP text */
	struct msg_ack ack;
	bool has_ack;
	bool loaded; /* BEGIN: the snapshot was read for this step */
	void (*done)(void *arg, int status, const char *body);
	void *done_arg;
};

/*
 * One dialog in the cache, kept small (§7: 100,000 open dialogs within
 * 64 MiB for the whole process): the dialog state packed (quiz ids on the
 * heap only while a quiz runs: dlg_get / dlg_put), only the fields of the
 * subscriber snapshot the screens read (sub_get / sub_put), the last HTTP
 * body allocated to its length, no timer of its own (the idle and total
 * deadlines sit in one heap for all dialogs, served by one event), and the
 * four strings in the same allocation as the struct.
 */
struct dlg {
	struct dlg *hnext;
	struct ussd *u;
	struct step *head, *tail;
	char *last;                  /* HTTP: last body, for a repeated request; NULL none */
	char (*ids)[CONTENT_ID_MAX]; /* d.ids[0 .. qn-1] while qn > 0, else NULL */
	char *household;             /* snapshot: household code, NULL none */
	int64_t idle_at, total_at;   /* deadlines, ms of CLOCK_MONOTONIC; 0 unarmed */
	uint32_t hpos;               /* 1 + index in the deadline heap; 0 not in it */
	int32_t inputs;              /* d.inputs */
	int32_t members;             /* snapshot: household_members */
	uint8_t screen, lang, bad, skill, qn, qi, score; /* the rest of d */
	int8_t self_level[FLOW_SKILLS];                  /* snapshot, clamped to -1..3 */
	uint8_t passed;                                  /* snapshot: quiz_passed, bit k-1 */
	uint8_t hskills;                                 /* snapshot: household_skills */
	uint8_t o_key, o_msisdn, o_service;              /* offsets in s */
	bool sub_en : 1;                                 /* snapshot: language "en" */
	bool covered : 1;                                /* snapshot: household_covered */
	bool http : 1;
	bool loaded : 1;        /* d and the snapshot are known */
	bool open : 1;          /* a dialog exists (not ended, not unknown) */
	bool busy : 1;          /* a load or a step is in a batch (open or in flight) */
	bool total_expired : 1; /* the total timeout fired while busy */
	char s[];               /* link NUL key NUL msisdn NUL service NUL */
};

/* A growable array of pointers: a batch of commits or of dialogs to load. */
struct batch {
	void **v;
	int n, cap;
};

struct ussd {
	struct event_base *base;
	const struct sg_config *cfg;
	struct store *st;
	const struct gw_ops *gw;
	void *gwarg;
	const struct content *content;
	struct ussd_cfg ucfg;
	char owner[64];
	uint32_t rng;
	int active;
	struct dlg **tab; /* nbuckets chains (a power of two) */
	uint32_t nbuckets;
	/* idle and total deadlines: a binary min-heap of dialogs by dlg_due() */
	struct dlg **heap;
	uint32_t heap_n, heap_cap;
	struct event *timer_ev; /* armed for the earliest deadline */
	int64_t timer_at;       /* when timer_ev is due (0 not armed) */
	bool in_timer;          /* timer_cb runs (or ussd_free): it syncs timer_ev at the end */
	/* group commit: open batches, and the one of each kind in flight */
	struct batch open_steps; /* struct commit * */
	struct batch open_loads; /* struct dlg * */
	struct batch *steps_fly, *loads_fly;
	uint64_t steps_req, loads_req;
	struct event *flush_ev; /* deferred flush of the open batches */
};

/* A commit in flight. */
struct commit {
	struct dlg *g;
	struct step *s;
	struct ussd_step_out out;
	struct flow_sub sub; /* snapshot with this step's events */
	bool begin;
};

static void kick(struct dlg *g);
static void batch_push(struct batch *b, void *p);
static void flush_soon(struct ussd *u);

static uint32_t
urand(struct ussd *u)
{
	return xorshift32(&u->rng);
}

static const char *
g_link(const struct dlg *g)
{
	return g->s;
}

static const char *
g_key(const struct dlg *g)
{
	return g->s + g->o_key;
}

static const char *
g_msisdn(const struct dlg *g)
{
	return g->s + g->o_msisdn;
}

static const char *
g_service(const struct dlg *g)
{
	return g->s + g->o_service;
}

/* ---- packed dialog state and snapshot ---- */

/* The dialog state of g, unpacked. */
static void
dlg_get(const struct dlg *g, struct ussd_dialog *d)
{
	memset(d, 0, sizeof(*d));
	d->screen = (enum ussd_screen)g->screen;
	d->lang = g->lang;
	d->bad = g->bad;
	d->inputs = g->inputs;
	d->skill = g->skill;
	d->qn = g->qn;
	d->qi = g->qi;
	d->score = g->score;
	if (g->qn > 0 && g->ids != NULL)
		memcpy(d->ids, g->ids, (size_t)g->qn * sizeof(d->ids[0]));
}

/*
 * Packs d into g. Every field is small by construction (screen < 8, lang
 * 0..1, bad < BAD_MAX, skill <= FLOW_SKILLS, qi, score <= qn <=
 * USSD_QUIZ_MAX), and ids beyond qn are always empty (enter_state clears
 * them with qn; start_quiz and ussd_state_parse fill exactly qn).
 */
static void
dlg_put(struct dlg *g, const struct ussd_dialog *d)
{
	int qn = d->qn > 0 ? (d->qn < USSD_QUIZ_MAX ? d->qn : USSD_QUIZ_MAX) : 0;

	g->screen = (uint8_t)d->screen;
	g->lang = (uint8_t)d->lang;
	g->bad = (uint8_t)d->bad;
	g->inputs = d->inputs;
	g->skill = (uint8_t)d->skill;
	g->qi = (uint8_t)d->qi;
	g->score = (uint8_t)d->score;
	if (qn == 0) {
		free(g->ids);
		g->ids = NULL;
	} else {
		if (g->ids == NULL || g->qn != qn) {
			char(*ids)[CONTENT_ID_MAX] = realloc(g->ids, (size_t)qn * sizeof(*ids));
			if (ids == NULL)
				fatal("out of memory");
			g->ids = ids;
		}
		memcpy(g->ids, d->ids, (size_t)qn * sizeof(d->ids[0]));
	}
	g->qn = (uint8_t)qn;
}

/*
 * The subscriber snapshot of g as the screen logic takes it: the fields it
 * reads (language, self levels, quizzes passed, household); best_quiz is only
 * ever written by it, the rest is not used by USSD.
 */
static void
sub_get(const struct dlg *g, struct flow_sub *s)
{
	memset(s, 0, sizeof(*s));
	str_copy(s->msisdn, sizeof(s->msisdn), g_msisdn(g));
	memcpy(s->lang, g->sub_en ? "en" : "vi", 3);
	for (int i = 0; i < FLOW_SKILLS; i++) {
		s->self_level[i] = g->self_level[i];
		s->best_quiz[i] = -1;
		s->quiz_passed[i] = (g->passed >> i) & 1;
	}
	if (g->household != NULL)
		str_copy(s->household, sizeof(s->household), g->household);
	s->household_covered = g->covered;
	s->household_members = g->members;
	s->household_skills = g->hskills;
}

/* Keeps what sub_get gives back of s (flow_proficient needs level >= 2 only). */
static void
sub_put(struct dlg *g, const struct flow_sub *s)
{
	g->sub_en = content_lang(s->lang) == 1;
	g->passed = 0;
	for (int i = 0; i < FLOW_SKILLS; i++) {
		int v = s->self_level[i];
		g->self_level[i] = (int8_t)(v < -1 ? -1 : v > 3 ? 3 : v);
		if (s->quiz_passed[i])
			g->passed |= (uint8_t)(1u << i);
	}
	if (s->household[0] == '\0') {
		free(g->household);
		g->household = NULL;
	} else if (g->household == NULL || strcmp(g->household, s->household) != 0) {
		free(g->household);
		if ((g->household = strdup(s->household)) == NULL)
			fatal("out of memory");
	}
	g->covered = s->household_covered;
	g->members = s->household_members;
	g->hskills = s->household_skills;
}

/* ---- the cache: a hash table that grows with the dialogs ---- */

static uint32_t
dlg_hash(const char *link, const char *key)
{
	uint32_t h = 2166136261u;
	for (const char *s = link; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	h = (h ^ '|') * 16777619u;
	for (const char *s = key; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h ^ (h >> 15);
}

static struct dlg **
dlg_slot(struct ussd *u, const char *link, const char *key)
{
	struct dlg **g = &u->tab[dlg_hash(link, key) & (u->nbuckets - 1)];
	while (*g && (strcmp(g_link(*g), link) != 0 || strcmp(g_key(*g), key) != 0))
		g = &(*g)->hnext;
	return g;
}

/* Doubles the buckets (keeps the old ones when memory is short). */
static void
tab_grow(struct ussd *u)
{
	uint32_t nb = u->nbuckets * 2;
	struct dlg **t = calloc(nb, sizeof(*t));
	if (t == NULL)
		return;
	for (uint32_t i = 0; i < u->nbuckets; i++) {
		struct dlg *g = u->tab[i];
		while (g != NULL) {
			struct dlg *next = g->hnext;
			struct dlg **b = &t[dlg_hash(g_link(g), g_key(g)) & (nb - 1)];
			g->hnext = *b;
			*b = g;
			g = next;
		}
	}
	free(u->tab);
	u->tab = t;
	u->nbuckets = nb;
}

/* ---- idle and total deadlines: one heap, one event ---- */

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The earliest armed deadline of g (0: none). */
static int64_t
dlg_due(const struct dlg *g)
{
	if (g->idle_at == 0)
		return g->total_at;
	if (g->total_at == 0)
		return g->idle_at;
	return g->idle_at < g->total_at ? g->idle_at : g->total_at;
}

static void
heap_set(struct ussd *u, uint32_t i, struct dlg *g)
{
	u->heap[i] = g;
	g->hpos = i + 1;
}

static void
heap_up(struct ussd *u, uint32_t i)
{
	struct dlg *g = u->heap[i];
	int64_t due = dlg_due(g);

	while (i > 0) {
		uint32_t p = (i - 1) / 2;
		if (dlg_due(u->heap[p]) <= due)
			break;
		heap_set(u, i, u->heap[p]);
		i = p;
	}
	heap_set(u, i, g);
}

static void
heap_down(struct ussd *u, uint32_t i)
{
	struct dlg *g = u->heap[i];
	int64_t due = dlg_due(g);

	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= u->heap_n)
			break;
		if (c + 1 < u->heap_n && dlg_due(u->heap[c + 1]) < dlg_due(u->heap[c]))
			c++;
		if (dlg_due(u->heap[c]) >= due)
			break;
		heap_set(u, i, u->heap[c]);
		i = c;
	}
	heap_set(u, i, g);
}

/* Arms timer_ev for the earliest deadline (or disarms it). */
static void
timer_sync(struct ussd *u)
{
	if (u->in_timer)
		return;
	if (u->heap_n == 0) {
		if (u->timer_at != 0)
			evtimer_del(u->timer_ev);
		u->timer_at = 0;
		return;
	}
	int64_t due = dlg_due(u->heap[0]);
	if (due == u->timer_at)
		return;
	int64_t ms = due - now_ms();
	if (ms < 0)
		ms = 0;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(u->timer_ev, &tv);
	u->timer_at = due;
}

/* Puts g where its deadlines say in the heap (out of it with none armed). */
static void
heap_fix(struct dlg *g)
{
	struct ussd *u = g->u;
	bool want = g->idle_at != 0 || g->total_at != 0;

	if (g->hpos == 0) {
		if (!want)
			return;
		if (u->heap_n == u->heap_cap) {
			uint32_t cap = u->heap_cap > 0 ? u->heap_cap * 2 : HEAP_MIN;
			struct dlg **h = realloc(u->heap, (size_t)cap * sizeof(*h));
			if (h == NULL)
				fatal("out of memory");
			u->heap = h;
			u->heap_cap = cap;
		}
		heap_set(u, u->heap_n++, g);
		heap_up(u, g->hpos - 1);
	} else if (!want) {
		uint32_t i = g->hpos - 1;
		struct dlg *last = u->heap[--u->heap_n];
		g->hpos = 0;
		if (last != g) {
			heap_set(u, i, last);
			heap_up(u, i);
			heap_down(u, last->hpos - 1);
		}
		if (u->heap_cap > HEAP_MIN && u->heap_n < u->heap_cap / 4) {
			struct dlg **h = realloc(u->heap, (size_t)(u->heap_cap / 2) * sizeof(*h));
			if (h != NULL) {
				u->heap = h;
				u->heap_cap /= 2;
			}
		}
	} else {
		heap_up(u, g->hpos - 1);
		heap_down(u, g->hpos - 1);
	}
	timer_sync(u);
}

/* Arms the idle (or total) deadline of g secs from now (as evtimer_add would). */
static void
arm(struct dlg *g, bool total, int secs)
{
	int64_t at = now_ms() + (int64_t)(secs > 0 ? secs : 0) * 1000;

	if (at <= 0)
		at = 1;
	if (total)
		g->total_at = at;
	else
		g->idle_at = at;
	heap_fix(g);
}

static void
disarm_idle(struct dlg *g)
{
	if (g->idle_at == 0)
		return;
	g->idle_at = 0;
	heap_fix(g);
}

static void idle_fire(struct dlg *g);
static void total_fire(struct dlg *g);

/*
 * Every deadline that is due, earliest first, one at a time: a handler may
 * disarm the other deadline of its dialog (run_step drops the idle one), as
 * evtimer_del did before. Handlers never free a dialog synchronously.
 */
static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ussd *u = arg;
	int64_t now = now_ms();

	u->timer_at = 0;
	u->in_timer = true;
	while (u->heap_n > 0) {
		struct dlg *g = u->heap[0];
		if (dlg_due(g) > now)
			break;
		if (g->total_at != 0 && g->total_at <= now) {
			g->total_at = 0;
			heap_fix(g);
			total_fire(g);
		} else {
			g->idle_at = 0;
			heap_fix(g);
			idle_fire(g);
		}
	}
	u->in_timer = false;
	timer_sync(u);
}

/* ---- dialogs ---- */

static struct dlg *
dlg_new(struct ussd *u, const char *link, const char *key, const char *msisdn, const char *service,
        bool http)
{
	/* the same bounds as the fixed fields these strings had */
	size_t ll = strnlen(link, MSG_LINK_MAX - 1), kl = strnlen(key, 39),
	       ml = strnlen(msisdn, MSG_MSISDN_MAX - 1), sl = strnlen(service, MSG_ADDR_MAX - 1);
	struct dlg *g = calloc(1, sizeof(*g) + ll + kl + ml + sl + 4);
	if (g == NULL)
		fatal("out of memory");
	g->u = u;
	g->o_key = (uint8_t)(ll + 1);
	g->o_msisdn = (uint8_t)(g->o_key + kl + 1);
	g->o_service = (uint8_t)(g->o_msisdn + ml + 1);
	memcpy(g->s, link, ll);
	memcpy(g->s + g->o_key, key, kl);
	memcpy(g->s + g->o_msisdn, msisdn, ml);
	memcpy(g->s + g->o_service, service, sl);
	g->http = http;
	if ((uint32_t)u->active >= u->nbuckets)
		tab_grow(u);
	struct dlg **b = &u->tab[dlg_hash(g_link(g), g_key(g)) & (u->nbuckets - 1)];
	g->hnext = *b;
	*b = g;
	u->active++;
	return g;
}

static void
step_free(struct step *s)
{
	if (s == NULL)
		return;
	free(s->text);
	free(s);
}

/* Answers a step that will not be committed (status: SMPP ack / HTTP). */
static void
step_drop(struct ussd *u, struct step *s, uint32_t smpp_status, int http_status, const char *body)
{
	if (s->has_ack && u->gwarg != NULL)
		u->gw->ack(u->gwarg, &s->ack, 1, smpp_status);
	if (s->done != NULL)
		s->done(s->done_arg, http_status, body);
	step_free(s);
}

/* Removes g from the cache; queued steps are answered (ok / 503). */
static void
dlg_free(struct dlg *g, bool answer)
{
	struct ussd *u = g->u;
	struct dlg **slot = &u->tab[dlg_hash(g_link(g), g_key(g)) & (u->nbuckets - 1)];
	while (*slot != NULL && *slot != g)
		slot = &(*slot)->hnext;
	if (*slot == g)
		*slot = g->hnext;
	u->active--;
	g->idle_at = g->total_at = 0;
	heap_fix(g);
	struct step *s = g->head;
	while (s) {
		struct step *next = s->next;
		if (answer)
			step_drop(u, s, 0, 200, "END ");
		else
			step_free(s);
		s = next;
	}
	free(g->last);
	free(g->ids);
	free(g->household);
	free(g);
}

static void
push_step(struct dlg *g, struct step *s)
{
	s->next = NULL;
	if (g->tail)
		g->tail->next = s;
	else
		g->head = s;
	g->tail = s;
}

static struct step *
pop_step(struct dlg *g)
{
	struct step *s = g->head;
	if (s) {
		g->head = s->next;
		if (g->head == NULL)
			g->tail = NULL;
	}
	return s;
}

/* Timers: a timeout step, run after whatever is in flight. */
static void
timeout_step(struct dlg *g)
{
	struct step *s = calloc(1, sizeof(*s));
	if (s == NULL)
		fatal("out of memory");
	s->kind = STEP_TIMEOUT;
	push_step(g, s);
	kick(g);
}

static void
idle_fire(struct dlg *g)
{
	if (g->busy || g->head != NULL)
		return; /* activity: the commit re-arms the timer */
	timeout_step(g);
}

static void
total_fire(struct dlg *g)
{
	if (g->busy || g->head != NULL) {
		g->total_expired = true;
		return;
	}
	timeout_step(g);
}

/* ---- submit (with a short retry while the link queue is full) ---- */

struct pending_mt {
	struct ussd *u;
	struct msg_mt mt;
	char *text;
	int tries;
	struct event *ev;
};

static void
submit_try(evutil_socket_t fd, short what, void *arg)
{
	struct pending_mt *p = arg;
	struct ussd *u = p->u;
	int rc = u->gwarg != NULL ? u->gw->submit(u->gwarg, &p->mt) : -2;

	if ((rc == -1 || rc == -2) && ++p->tries < SUBMIT_RETRIES) {
		if (p->ev == NULL)
			p->ev = evtimer_new(u->base, submit_try, p);
		struct timeval tv = {0, 20 * 1000};
		evtimer_add(p->ev, &tv);
		return;
	}
	if (rc != 0) {
		char mb[32];
		log_warn(MOD, "USSD screen %lld to %s not sent: no link can carry it",
		         (long long)p->mt.id, log_msisdn(p->mt.to, mb, sizeof(mb)));
	}
	if (p->ev)
		event_free(p->ev);
	free(p->text);
	free(p);
}

static void
submit_screen(struct dlg *g, int64_t mt_id, const char *text, bool end)
{
	struct pending_mt *p = calloc(1, sizeof(*p));
	if (p == NULL || (p->text = strdup(text)) == NULL)
		fatal("out of memory");
	p->u = g->u;
	p->mt.id = mt_id;
	str_copy(p->mt.to, sizeof(p->mt.to), g_msisdn(g));
	p->mt.text = p->text;
	p->mt.prio = MSG_PRIO_INTERACTIVE;
	p->mt.fold = true;
	str_copy(p->mt.link, sizeof(p->mt.link), g_link(g));
	p->mt.ussd = true;
	p->mt.ussd_end = end;
	str_copy(p->mt.ussd_session_key, sizeof(p->mt.ussd_session_key), g_key(g));
	submit_try(-1, 0, p);
}

/* ---- commit ---- */

static json_t *
step_json(const struct dlg *g, const struct step *s, const struct commit *c)
{
	const struct ussd_step_out *o = &c->out;
	json_t *ev = json_array();
	for (int i = 0; i < o->n_events; i++) {
		const struct flow_event *e = &o->events[i];
		json_array_append_new(ev, json_pack("[i s i b]", e->skill,
		                                    e->kind == FLOW_EV_SELF ? "self" : "quiz",
		                                    e->value, e->passed));
	}
	json_t *j =
	    json_pack("{s:s s:s s:s s:s s:s s:s s:b s:b s:b s:s s:s s:s s:s s:s s:s s:b s:o}",
	              "link", g_link(g), "key", g_key(g), "msisdn", g_msisdn(g), "dest",
	              g_service(g), "channel", g->http ? "http" : "ussd", "state", o->state,
	              "begin", c->begin, "end", o->end, "http", g->http, "lang", o->lang, "join",
	              o->join_code, "rok", o->screen_join_ok, "runk", o->screen_join_unknown,
	              "screen", o->screen, "sms", o->sms, "sc", o->sms_state_set, "ev", ev);
	json_object_set_new(j, "input",
	                    s->kind == STEP_TIMEOUT ? json_null()
	                                            : json_string(s->text ? s->text : ""));
	if (o->sms_state_set)
		json_object_set_new(j, "sms_state", json_string(o->sms_state));
	return j;
}

/*
 * The outcome of one step of a batch: row of res (columns idx, mt_id, text),
 * or res NULL when the batch was not committed (err says why; NULL when the
 * batch failure was logged once for all). Frees c.
 */
static void
commit_done(struct commit *c, PGresult *res, int row, const char *err)
{
	struct dlg *g = c->g;
	struct ussd *u = g->u;
	struct step *s = c->s;
	char mb[32];

	g->busy = false;
	if (res == NULL) {
		if (err != NULL)
			log_warn(MOD, "USSD step of %s not committed (%s)",
			         log_msisdn(g_msisdn(g), mb, sizeof(mb)), err);
		bool timeout = s->kind == STEP_TIMEOUT;
		step_drop(u, s, (uint32_t)u->cfg->mo_temp_error, 503, "END Service unavailable");
		free(c);
		if (!g->open || timeout) {
			dlg_free(g, true);
			return;
		}
		kick(g);
		return;
	}
	/* committed: acknowledge, then send the screen */
	if (s->has_ack && u->gwarg != NULL)
		u->gw->ack(u->gwarg, &s->ack, 1, 0);
	s->has_ack = false;
	const char *screen = c->out.screen;
	int64_t mt_id = 0;
	if (!PQgetisnull(res, row, 1)) {
		mt_id = atoll(PQgetvalue(res, row, 1));
		screen = PQgetvalue(res, row, 2);
	}
	bool end = c->out.end;
	if (g->http) {
		char body[USSD_SCREEN_BYTES + 8]; /* as long as the body ever was */
		snprintf(body, sizeof(body), "%s %s", end ? "END" : "CON", screen);
		free(g->last);
		g->last = NULL;
		if (!end && (g->last = strdup(body)) == NULL) /* kept for a repeated request */
			fatal("out of memory");
		if (s->done)
			s->done(s->done_arg, 200, body);
		s->done = NULL;
	} else if (screen[0] != '\0' && mt_id > 0) {
		submit_screen(g, mt_id, screen, end);
	}
	dlg_put(g, &c->out.next);
	sub_put(g, &c->sub);
	g->loaded = true;
	g->open = !end;
	if (c->begin)
		arm(g, true, u->cfg->ussd_total_timeout);
	step_free(s);
	free(c);
	if (end) {
		dlg_free(g, true);
		return;
	}
	if (g->total_expired && g->head == NULL) {
		g->total_expired = false;
		timeout_step(g);
		return;
	}
	arm(g, false, u->cfg->ussd_idle_timeout);
	kick(g);
}

/* Splits an HTTP text on '*' (in place); returns the field count. */
static int
split_inputs(char *text, const char **f, int max)
{
	int n = 0;
	if (text == NULL || text[0] == '\0')
		return 0;
	char *p = text;
	while (n < max) {
		f[n++] = p;
		p = strchr(p, '*');
		if (p == NULL)
			break;
		*p++ = '\0';
	}
	return n;
}

/* Computes and commits the head step (the dialog is loaded). */
static void
run_step(struct dlg *g, struct step *s)
{
	struct ussd *u = g->u;
	struct commit *c = calloc(1, sizeof(*c));
	if (c == NULL)
		fatal("out of memory");
	c->g = g;
	c->s = s;
	sub_get(g, &c->sub);
	const struct content *ct = u->content;
	struct ussd_dialog d;
	dlg_get(g, &d);

	if (s->kind == STEP_TIMEOUT) {
		ussd_close(ct, &u->ucfg, &d, true, &c->out);
		if (g->http)
			c->out.screen[0] = '\0'; /* nobody to show it to */
	} else if (s->kind == STEP_SMPP && s->op == MSG_USSD_BEGIN) {
		c->begin = true;
		ussd_begin(ct, &u->ucfg, &c->sub, s->text, urand(u), &c->out);
	} else if (s->kind == STEP_SMPP && s->op == MSG_USSD_ABORT) {
		ussd_close(ct, &u->ucfg, &d, false, &c->out);
	} else if (s->kind == STEP_SMPP) {
		const char *in[1] = {s->text};
		if (!g->open) { /* unknown or ended dialog: say so */
			struct uctx x;
			ctx_init(&x, ct, &u->ucfg, &c->sub, 0, &c->out);
			dialog_reset(&x.d, content_lang(c->sub.lang));
			finish(&x, "expired", NULL, 0);
			finish_out(&x);
		} else {
			ussd_input(ct, &u->ucfg, &c->sub, &d, in, 1, urand(u), &c->out);
		}
	} else { /* HTTP */
		char *copy = strdup(s->text ? s->text : "");
		const char *f[USSD_MAX_INPUTS * 4];
		if (copy == NULL)
			fatal("out of memory");
		int n = split_inputs(copy, f, (int)(sizeof(f) / sizeof(f[0])));
		if (!g->loaded || (!g->open && d.screen != USSD_END)) {
			c->begin = true;
			begin_inputs(ct, &u->ucfg, &c->sub, f, n, urand(u), &c->out);
		} else if (!g->open) {
			struct uctx x;
			ctx_init(&x, ct, &u->ucfg, &c->sub, 0, &c->out);
			dialog_reset(&x.d, d.lang);
			finish(&x, "expired", NULL, 0);
			finish_out(&x);
		} else if (n == d.inputs && g->last != NULL) {
			/* the same request again: same answer, nothing to commit */
			free(copy);
			free(c);
			if (s->done)
				s->done(s->done_arg, 200, g->last);
			s->done = NULL;
			step_free(s);
			arm(g, false, u->cfg->ussd_idle_timeout);
			kick(g);
			return;
		} else {
			int from = n > d.inputs ? d.inputs : (n > 0 ? n - 1 : 0);
			ussd_input(ct, &u->ucfg, &c->sub, &d, f + from, n - from, urand(u),
			           &c->out);
			c->out.next.inputs = n;
			ussd_state_format(&c->out.next, c->out.state, sizeof(c->out.state));
		}
		c->out.next.inputs = n;
		ussd_state_format(&c->out.next, c->out.state, sizeof(c->out.state));
		free(copy);
	}

	g->busy = true;
	disarm_idle(g);
	batch_push(&u->open_steps, c);
	flush_soon(u);
}

/* Columns of sg_ussd_load: found, state, ended, started, then the snapshot. */
static void
snapshot_from(PGresult *res, int row, int off, const char *msisdn, const char *deflang,
              struct flow_sub *s)
{
	memset(s, 0, sizeof(*s));
	str_copy(s->msisdn, sizeof(s->msisdn), msisdn);
	for (int i = 0; i < FLOW_SKILLS; i++)
		s->self_level[i] = s->best_quiz[i] = -1;
	if (PQgetisnull(res, row, off)) { /* no subscriber yet */
		memcpy(s->lang, strcmp(deflang, "en") == 0 ? "en" : "vi", 3);
		s->is_new = true;
		return;
	}
	str_copy(s->lang, sizeof(s->lang), PQgetvalue(res, row, off + 0));
	s->opted_out = PQgetvalue(res, row, off + 1)[0] == 't';
	str_copy(s->state, sizeof(s->state), PQgetvalue(res, row, off + 2));
	s->state_at = atoll(PQgetvalue(res, row, off + 3));
	s->help_at = atoll(PQgetvalue(res, row, off + 4));
	str_copy(s->household, sizeof(s->household), PQgetvalue(res, row, off + 5));
	s->household_covered = PQgetvalue(res, row, off + 6)[0] == 't';
	s->household_members = atoi(PQgetvalue(res, row, off + 7));
	s->household_skills = (uint8_t)atoi(PQgetvalue(res, row, off + 8));
	const char *lists[3] = {PQgetvalue(res, row, off + 9), PQgetvalue(res, row, off + 10),
	                        PQgetvalue(res, row, off + 11)};
	for (int l = 0; l < 3; l++) {
		const char *p = lists[l];
		for (int i = 0; i < FLOW_SKILLS && p && *p; i++) {
			int v = atoi(p);
			if (l == 0)
				s->self_level[i] = v;
			else if (l == 1)
				s->best_quiz[i] = v;
			else
				s->quiz_passed[i] = v == 1;
			p = strchr(p, ',');
			if (p)
				p++;
		}
	}
}

/*
 * The outcome of one load of a batch: row of res (columns idx, then those of
 * sg_ussd_load), or res NULL when the batch failed (err says why; NULL when
 * the batch failure was logged once for all).
 */
static void
load_done(struct dlg *g, PGresult *res, int row, const char *err)
{
	struct ussd *u = g->u;
	char mb[32];

	g->busy = false;
	if (res == NULL) {
		if (err != NULL)
			log_warn(MOD, "USSD dialog of %s not loaded (%s)",
			         log_msisdn(g_msisdn(g), mb, sizeof(mb)), err);
		struct step *s = pop_step(g);
		step_drop(u, s, (uint32_t)u->cfg->mo_temp_error, 503, "END Service unavailable");
		if (!g->loaded) {
			dlg_free(g, true);
			return;
		}
		kick(g);
		return;
	}
	bool found = PQgetvalue(res, row, 1)[0] == 't';
	bool ended = PQgetvalue(res, row, 3)[0] == 't';
	struct flow_sub sub;
	struct ussd_dialog d;
	snapshot_from(res, row, 5, g_msisdn(g), u->cfg->default_language, &sub);
	sub_put(g, &sub);
	struct step *s = g->head;
	bool begin = s->kind == STEP_SMPP && s->op == MSG_USSD_BEGIN;
	s->loaded = true;
	if (begin) {
		dialog_reset(&d, content_lang(sub.lang));
		g->open = true;
	} else if (found && !ended) {
		if (ussd_state_parse(PQgetvalue(res, row, 2), &d) != 0)
			log_warn(MOD, "corrupt USSD state of %s: back to the main menu",
			         log_msisdn(g_msisdn(g), mb, sizeof(mb)));
		g->open = d.screen != USSD_END;
		int64_t started = atoll(PQgetvalue(res, row, 4));
		int64_t left = started + u->cfg->ussd_total_timeout - (int64_t)time(NULL);
		if (g->open)
			arm(g, true, left > 0 ? (int)left : 0);
	} else {
		g->open = false;
		dialog_reset(&d, content_lang(sub.lang));
		if (found)
			d.screen = USSD_END;
	}
	dlg_put(g, &d);
	g->loaded = true;
	if (s->kind == STEP_SMPP && s->op == MSG_USSD_ABORT && !g->open) {
		/* nothing to end: just acknowledge */
		step_drop(u, pop_step(g), 0, 200, "");
		dlg_free(g, true);
		return;
	}
	kick(g);
}

/* Runs the head step unless one is in flight. */
static void
kick(struct dlg *g)
{
	struct ussd *u = g->u;
	if (g->busy || g->head == NULL)
		return;
	struct step *s = g->head;
	bool begin = s->kind == STEP_SMPP && s->op == MSG_USSD_BEGIN;
	if (u->content == NULL) {
		step_drop(u, pop_step(g), (uint32_t)u->cfg->mo_temp_error, 503,
		          "END Service unavailable");
		kick(g);
		return;
	}
	if (!g->loaded || (begin && !s->loaded)) {
		g->busy = true;
		batch_push(&u->open_loads, g);
		flush_soon(u);
		return;
	}
	if (s->kind == STEP_TIMEOUT && !g->open) {
		step_free(pop_step(g));
		kick(g);
		return;
	}
	run_step(g, pop_step(g));
}

/* ---- group commit ---- */

static void
batch_push(struct batch *b, void *p)
{
	if (b->n == b->cap) {
		int cap = b->cap > 0 ? b->cap * 2 : 64;
		void **v = realloc(b->v, (size_t)cap * sizeof(*v));
		if (v == NULL)
			fatal("out of memory");
		b->v = v;
		b->cap = cap;
	}
	b->v[b->n++] = p;
}

/* Moves at most max items from the head of open into a new batch. */
static struct batch *
batch_take(struct batch *open, int max)
{
	struct batch *b = calloc(1, sizeof(*b));
	int n = open->n < max ? open->n : max;

	if (b == NULL)
		fatal("out of memory");
	if (n == open->n) { /* all of it: hand the array over */
		*b = *open;
		memset(open, 0, sizeof(*open));
		return b;
	}
	b->v = malloc((size_t)n * sizeof(*b->v));
	if (b->v == NULL)
		fatal("out of memory");
	memcpy(b->v, open->v, (size_t)n * sizeof(*b->v));
	memmove(open->v, open->v + n, (size_t)(open->n - n) * sizeof(*open->v));
	open->n -= n;
	b->n = b->cap = n;
	return b;
}

static void
batch_free(struct batch *b)
{
	if (b == NULL)
		return;
	free(b->v);
	free(b);
}

/* Steps (or loads) per statement at most: a bounded parameter size. */
static int
batch_limit(const struct ussd *u)
{
	int n = u->cfg->db_batch_max > 0 ? u->cfg->db_batch_max * 4 : 1024;
	return n < 4096 ? n : 4096;
}

/* The open batches go out from the loop, after the current callback. */
static void
flush_soon(struct ussd *u)
{
	event_active(u->flush_ev, EV_TIMEOUT, 1);
}

static void
steps_cb(void *arg, PGresult *res, const char *err)
{
	struct ussd *u = arg;
	struct batch *b = u->steps_fly;
	bool ok = res != NULL && PQntuples(res) == b->n;

	u->steps_req = 0;
	if (res != NULL && !ok)
		err = "short result";
	if (!ok && b->n > 1) { /* once for all: each step gets a temporary error / 503 */
		log_warn(MOD, "a batch of %d USSD steps was not committed (%s)", b->n, err);
		err = NULL;
	}
	/* steps_fly stays set meanwhile: what the dialogs queue now waits */
	for (int i = 0; i < b->n; i++)
		commit_done(b->v[i], ok ? res : NULL, i, err);
	u->steps_fly = NULL;
	batch_free(b);
	if (u->open_steps.n > 0 || u->open_loads.n > 0)
		flush_soon(u);
}

static void
steps_flush(struct ussd *u)
{
	if (u->steps_fly != NULL || u->open_steps.n == 0)
		return;
	struct batch *b = batch_take(&u->open_steps, batch_limit(u));
	json_t *arr = json_array();
	for (int i = 0; i < b->n; i++) {
		struct commit *c = b->v[i];
		json_array_append_new(arr, step_json(c->g, c->s, c));
	}
	char *js = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	if (js == NULL)
		fatal("out of memory");
	const char *rule = flow_rule_name(u->ucfg.rule);
	const char *params[] = {js, rule, u->owner};
	u->steps_fly = b;
	u->steps_req = store_query(u->st, "SELECT * FROM sg_ussd_steps($1::jsonb, $2, $3)", 3,
	                           params, steps_cb, u);
	free(js);
	if (u->steps_req == 0)
		steps_cb(u, NULL, "database unavailable");
}

static void
loads_cb(void *arg, PGresult *res, const char *err)
{
	struct ussd *u = arg;
	struct batch *b = u->loads_fly;
	bool ok = res != NULL && PQntuples(res) == b->n;

	u->loads_req = 0;
	if (res != NULL && !ok)
		err = "short result";
	if (!ok && b->n > 1) {
		log_warn(MOD, "a batch of %d USSD dialog loads failed (%s)", b->n, err);
		err = NULL;
	}
	for (int i = 0; i < b->n; i++)
		load_done(b->v[i], ok ? res : NULL, i, err);
	u->loads_fly = NULL;
	batch_free(b);
	if (u->open_steps.n > 0 || u->open_loads.n > 0)
		flush_soon(u);
}

static void
loads_flush(struct ussd *u)
{
	if (u->loads_fly != NULL || u->open_loads.n == 0)
		return;
	struct batch *b = batch_take(&u->open_loads, batch_limit(u));
	struct strbuf a[3];
	for (int k = 0; k < 3; k++) {
		strbuf_init(&a[k]);
		strbuf_pgarr_begin(&a[k]);
	}
	for (int i = 0; i < b->n; i++) {
		const struct dlg *g = b->v[i];
		strbuf_pgarr_elem(&a[0], g_link(g));
		strbuf_pgarr_elem(&a[1], g_key(g));
		strbuf_pgarr_elem(&a[2], g_msisdn(g));
	}
	const char *params[3];
	for (int k = 0; k < 3; k++) {
		strbuf_pgarr_end(&a[k]);
		params[k] = a[k].s;
	}
	u->loads_fly = b;
	u->loads_req =
	    store_query(u->st, "SELECT * FROM sg_ussd_loads($1::text[], $2::text[], $3::text[])", 3,
	                params, loads_cb, u);
	for (int k = 0; k < 3; k++)
		strbuf_free(&a[k]);
	if (u->loads_req == 0)
		loads_cb(u, NULL, "database unavailable");
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ussd *u = arg;

	loads_flush(u);
	steps_flush(u);
}

/* ---- public ---- */

struct ussd *
ussd_new(struct event_base *base, const struct sg_config *cfg, struct store *st,
         const struct gw_ops *gw, void *gwarg)
{
	struct ussd *u = calloc(1, sizeof(*u));
	if (u == NULL)
		fatal("out of memory");
	u->base = base;
	u->cfg = cfg;
	u->st = st;
	u->gw = gw;
	u->gwarg = gwarg;
	u->ucfg.pass_mark = cfg->pass_mark;
	u->ucfg.quiz_length = cfg->quiz_length;
	u->ucfg.rule = (enum flow_rule)cfg->proficiency_rule;
	snprintf(u->owner, sizeof(u->owner), "%s",
	         cfg->instance_name); /* never empty: config_load */
	u->rng = (uint32_t)time(NULL) ^ ((uint32_t)getpid() << 16) ^ 0x85ebca6bu;
	if (u->rng == 0)
		u->rng = 1;
	if ((u->flush_ev = evtimer_new(base, flush_cb, u)) == NULL ||
	    (u->timer_ev = evtimer_new(base, timer_cb, u)) == NULL ||
	    (u->tab = calloc(DLG_BUCKETS_MIN, sizeof(*u->tab))) == NULL)
		fatal("out of memory");
	u->nbuckets = DLG_BUCKETS_MIN;
	return u;
}

void
ussd_set_gateway(struct ussd *u, void *gwarg)
{
	u->gwarg = gwarg;
}

void
ussd_set_content(struct ussd *u, const struct content *c)
{
	u->content = c;
}

void
ussd_free(struct ussd *u)
{
	if (u == NULL)
		return;
	/* batches first: their commits own steps, the dialogs are freed below */
	if (u->steps_req != 0)
		store_cancel(u->st, u->steps_req);
	if (u->loads_req != 0)
		store_cancel(u->st, u->loads_req);
	struct batch *cb[2] = {u->steps_fly, &u->open_steps};
	for (int k = 0; k < 2; k++) {
		for (int i = 0; cb[k] != NULL && i < cb[k]->n; i++) {
			struct commit *c = cb[k]->v[i];
			step_free(c->s);
			free(c);
		}
	}
	batch_free(u->steps_fly);
	batch_free(u->loads_fly);
	free(u->open_steps.v);
	free(u->open_loads.v);
	if (u->flush_ev != NULL)
		event_free(u->flush_ev);
	u->in_timer = true; /* no timer_ev updates while the dialogs go */
	for (uint32_t i = 0; i < u->nbuckets; i++)
		while (u->tab[i] != NULL)
			dlg_free(u->tab[i], false);
	if (u->timer_ev != NULL)
		event_free(u->timer_ev);
	free(u->heap);
	free(u->tab);
	free(u);
}

int
ussd_active(const struct ussd *u)
{
	return u->active;
}

static struct step *
step_new(enum step_kind kind, const char *text)
{
	struct step *s = calloc(1, sizeof(*s));
	if (s == NULL || (s->text = strdup(text != NULL ? text : "")) == NULL)
		fatal("out of memory");
	s->kind = kind;
	return s;
}

void
ussd_handle(void *arg, const struct msg_ussd *m)
{
	struct ussd *u = arg;
	struct dlg **slot = dlg_slot(u, m->link, m->session_key);
	struct dlg *g = *slot;

	if (m->op == MSG_USSD_BEGIN && g != NULL && !g->busy && g->head == NULL) {
		dlg_free(g, true); /* a new dialog reuses the key: forget the old one */
		g = NULL;
	}
	if (g == NULL)
		g = dlg_new(u, m->link, m->session_key, m->from, m->service_code, false);
	struct step *s = step_new(STEP_SMPP, m->text);
	s->op = m->op;
	s->ack = m->ack;
	s->has_ack = true;
	push_step(g, s);
	kick(g);
}

/* True when s is valid UTF-8 with no control characters, at most max bytes. */
static bool
clean_field(const char *s, size_t max)
{
	if (s == NULL)
		return false;
	size_t n = strlen(s);
	if (n > max || content_ucs2_len(s) < 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

int
ussd_http(struct ussd *u, const char *session_id, const char *service_code, const char *phone,
          const char *text, void (*done)(void *arg, int http_status, const char *body), void *arg)
{
	char msisdn[MSG_MSISDN_MAX];

	if (session_id == NULL || session_id[0] == '\0' || !clean_field(session_id, 39) ||
	    phone == NULL || msisdn_normalise(phone, msisdn, sizeof(msisdn)) != 0 ||
	    (service_code != NULL && !clean_field(service_code, MSG_ADDR_MAX - 1)) ||
	    (text != NULL && !clean_field(text, 512)) || done == NULL)
		return 400;
	struct dlg *g = *dlg_slot(u, HTTP_LINK, session_id);
	if (g != NULL && strcmp(g_msisdn(g), msisdn) != 0)
		return 400; /* another phone on the same session id */
	if (g == NULL)
		g = dlg_new(u, HTTP_LINK, session_id, msisdn, service_code ? service_code : "",
		            true);
	struct step *s = step_new(STEP_HTTP, text);
	s->done = done;
	s->done_arg = arg;
	push_step(g, s);
	kick(g);
	return 0;
}

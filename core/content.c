/*
 * content.c — loads and validates the resident-facing content: for each
 * language a messages.txt (reply templates) and one file per skill (name,
 * short name, self-assessment question, question bank). The format is
 * documented in config/content/README.md: "key = value" lines, '#'
 * comments, "\n" for a line break inside a value.
 *
 * Every problem is reported as "file:line: reason" and the load fails if
 * there was any, so a bad edit never reaches residents: the running daemon
 * keeps its previous struct content until a valid one loads. Length checks
 * render every template with worst-case values and reject anything that
 * would need more than CONTENT_MAX_SEGMENTS UCS-2 parts.
 *
 * ussd.txt holds the USSD screens (core/ussd.c): each must fit
 * CONTENT_USSD_MAX GSM-7 characters once rendered with worst-case values and
 * folded, and so must every question and self-assessment question shown as
 * a USSD screen.
 *
 * Also home to the small UTF-8 helpers shared with core/flow.c: decoding,
 * Vietnamese diacritic folding and template rendering.
 */
#include "content.h"
#include "flow.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LINE_MAX_BYTES 2048
#define PATH_BYTES 1024

/* ------------------------------------------------------------------ */
/* Message keys and the placeholders each may use                      */
/* ------------------------------------------------------------------ */

static const struct msgdef {
	const char *key;
	const char *vars; /* space-separated placeholder names allowed */
} msgdefs[] = {
    {"help", ""},
    {"skill_menu", ""},
    {"quiz_start", "skill n total pass"},
    {"quiz_question", "n total question a b c d"},
    {"correct", ""},
    {"wrong", "answer explanation"},
    {"quiz_passed", "skill n score total next"},
    {"quiz_failed", "skill n score total pass"},
    {"next_skill", "skill n"},
    {"next_rate", ""},
    {"all_done", ""},
    {"invalid_answer", ""},
    {"invalid_self", ""},
    {"invalid_menu", ""},
    {"flow_abandoned", ""},
    {"quiz_expired", "skill n"},
    {"self_expired", ""},
    {"self_start", "total"},
    {"self_question", "n total skill question"},
    {"self_done", "next"},
    {"status", "done_skills missing_skills"},
    {"status_household_none", ""},
    {"status_household_covered", "household members"},
    {"status_household_partial", "household members household_missing"},
    {"none", ""},
    {"join_ok", "code"},
    {"join_unknown", "code"},
    {"join_usage", ""},
    {"optout", ""},
    {"optin", ""},
    {"lang_switched", ""},
    {"reminder_unfinished", "skill n"},
    {"reminder_failed", "skill n"},
    {"reminder_next", "skill n"},
};
#define NMSG ((int)(sizeof(msgdefs) / sizeof(msgdefs[0])))

/* ussd.txt: the USSD screens (§3.3), each within CONTENT_USSD_MAX GSM-7
 * characters once rendered with worst-case values and folded. */
static const struct msgdef ussddefs[] = {
    {"main", ""},
    {"quiz_menu", ""},
    {"quiz_question", "n total question a b c d"},
    {"correct", ""},
    {"wrong", "answer"},
    {"quiz_passed", "skill n score total"},
    {"quiz_failed", "skill n score total pass"},
    {"self_question", "n total skill question"},
    {"self_done", ""},
    {"progress_none", "done missing"},
    {"progress_covered", "done missing household members"},
    {"progress_partial", "done missing household members household_missing"},
    {"none", ""},
    {"household_enter", ""},
    {"join_ok", "code"},
    {"join_unknown", "code"},
    {"language", ""},
    {"invalid", ""},
    {"abandoned", ""},
    {"timeout", ""},
    {"expired", ""},
    {"sms_passed", "skill n score total"},
    {"sms_failed", "skill n score total pass"},
    {"sms_paused", "skill n answered total score"},
};
#define NUSSD ((int)(sizeof(ussddefs) / sizeof(ussddefs[0])))

static const char *const lang_codes[CONTENT_LANGS] = {"vi", "en"};

struct qrec {
	struct content_question q; /* first: content_question pointers alias qrec */
	int line;
};

struct skill_bank {
	char path[PATH_BYTES];
	char *code, *name, *shortname, *self;
	int self_line;
	struct qrec *q;
	int nq;
	int lines; /* line count of the file, for end-of-file errors */
};

struct lang_set {
	char path[PATH_BYTES]; /* messages.txt */
	char *msg[NMSG];
	int msg_line[NMSG];
	int lines;
	struct skill_bank skill[FLOW_SKILLS];
	char ussd_path[PATH_BYTES]; /* ussd.txt */
	char *ussd[NUSSD];
	int ussd_line[NUSSD];
	int ussd_lines;
};

struct content {
	struct lang_set lang[CONTENT_LANGS];
};

struct loader {
	FILE *err;
	int nerrors;
};

static void report(struct loader *L, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
report(struct loader *L, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	L->nerrors++;
	if (L->err == NULL)
		return;
	fprintf(L->err, "%s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(L->err, fmt, ap);
	va_end(ap);
	fputc('\n', L->err);
}

/* ------------------------------------------------------------------ */
/* UTF-8 helpers                                                       */
/* ------------------------------------------------------------------ */

/* Decodes one code point at *p (strict: no overlongs, no surrogates).
 * Advances *p and returns the code point, or -1 on invalid input (then *p
 * advances by one byte). */
static int32_t
utf8_next(const unsigned char **p)
{
	const unsigned char *s = *p;
	int32_t cp;
	int n, i;

	if (s[0] < 0x80) {
		*p = s + 1;
		return s[0];
	}
	if (s[0] >= 0xC2 && s[0] <= 0xDF) {
		n = 1;
		cp = s[0] & 0x1F;
	} else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
		n = 2;
		cp = s[0] & 0x0F;
	} else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
		n = 3;
		cp = s[0] & 0x07;
	} else {
		*p = s + 1;
		return -1;
	}
	for (i = 1; i <= n; i++) {
		if ((s[i] & 0xC0) != 0x80) {
			*p = s + 1;
			return -1;
		}
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
	    (cp >= 0xD800 && cp <= 0xDFFF)) {
		*p = s + 1;
		return -1;
	}
	*p = s + n + 1;
	return cp;
}

int
content_ucs2_len(const char *utf8)
{
	const unsigned char *p = (const unsigned char *)utf8;
	int n = 0;
	int32_t cp;

	while (*p != '\0') {
		cp = utf8_next(&p);
		if (cp < 0)
			return -1;
		n += cp >= 0x10000 ? 2 : 1;
	}
	return n;
}

/*
 * Vietnamese letters with their marks, grouped by the plain letter they fold
 * to. Precomposed forms only; combining marks (U+0300-U+036F) are dropped
 * separately.
 */
static const struct {
	const char *from;
	char to;
} fold_table[] = {
    {"àáảãạăằắẳẵặâầấẩẫậ", 'a'},
    {"ÀÁẢÃẠĂẰẮẲẴẶÂẦẤẨẪẬ", 'A'},
    {"èéẻẽẹêềếểễệ", 'e'},
    {"ÈÉẺẼẸÊỀẾỂỄỆ", 'E'},
    {"ìíỉĩị", 'i'},
    {"ÌÍỈĨỊ", 'I'},
    {"òóỏõọôồốổỗộơờớởỡợ", 'o'},
    {"ÒÓỎÕỌÔỒỐỔỖỘƠỜỚỞỠỢ", 'O'},
    {"ùúủũụưừứửữự", 'u'},
    {"ÙÚỦŨỤƯỪỨỬỮỰ", 'U'},
    {"ỳýỷỹỵ", 'y'},
    {"ỲÝỶỸỴ", 'Y'},
    {"đ", 'd'},
    {"Đ", 'D'},
};

/* The ASCII letter cp folds to, 0 to drop it (combining mark), -1 to keep. */
static int
fold_cp(int32_t cp)
{
	size_t i;
	const unsigned char *p;

	if (cp >= 0x300 && cp <= 0x36F)
		return 0;
	for (i = 0; i < sizeof(fold_table) / sizeof(fold_table[0]); i++) {
		p = (const unsigned char *)fold_table[i].from;
		while (*p != '\0')
			if (utf8_next(&p) == cp)
				return fold_table[i].to;
	}
	return -1;
}

size_t
content_fold(const char *utf8, char *out, size_t cap)
{
	const unsigned char *p = (const unsigned char *)utf8, *start;
	size_t o = 0, len;
	int32_t cp;
	int f;

	if (cap == 0)
		return 0;
	while (*p != '\0') {
		start = p;
		cp = utf8_next(&p);
		f = cp < 0x80 ? -1 : fold_cp(cp);
		if (f == 0)
			continue;
		if (f > 0) {
			if (o + 1 >= cap)
				break;
			out[o++] = (char)f;
			continue;
		}
		len = (size_t)(p - start);
		if (o + len >= cap)
			break;
		memcpy(out + o, start, len);
		o += len;
	}
	out[o] = '\0';
	return o;
}

int
content_gsm7_folded_len(const char *utf8)
{
	const unsigned char *p = (const unsigned char *)utf8;
	int n = 0, f;
	int32_t cp;

	while (*p != '\0') {
		cp = utf8_next(&p);
		f = cp >= 0x80 ? fold_cp(cp) : -1;
		if (f == 0)
			continue;
		if (cp < 0x80 && cp > 0 && strchr("[]{}\\^~|", (int)cp) != NULL)
			n += 2;
		else
			n += 1;
	}
	return n;
}

/* ------------------------------------------------------------------ */
/* Templates                                                           */
/* ------------------------------------------------------------------ */

static const char *
var_lookup(const struct content_var *vars, int nvars, const char *name, size_t len)
{
	int i;

	for (i = 0; i < nvars; i++)
		if (strlen(vars[i].name) == len && memcmp(vars[i].name, name, len) == 0)
			return vars[i].value != NULL ? vars[i].value : "";
	return NULL;
}

/* Appends n bytes of s, cutting on a UTF-8 boundary when full. */
static size_t
append(char *out, size_t cap, size_t o, const char *s, size_t n)
{
	if (o + n >= cap) {
		n = cap - 1 - o;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	memcpy(out + o, s, n);
	return o + n;
}

size_t
content_render(const char *tmpl, const struct content_var *vars, int nvars, char *out, size_t cap)
{
	const char *p = tmpl, *close, *val;
	size_t o = 0;

	if (cap == 0)
		return 0;
	while (*p != '\0' && o + 1 < cap) {
		close = *p == '{' ? strchr(p + 1, '}') : NULL;
		val =
		    close != NULL ? var_lookup(vars, nvars, p + 1, (size_t)(close - p - 1)) : NULL;
		if (val != NULL) {
			o = append(out, cap, o, val, strlen(val));
			p = close + 1;
		} else {
			o = append(out, cap, o, p, 1);
			p++;
		}
	}
	out[o] = '\0';
	return o;
}

/* ------------------------------------------------------------------ */
/* Line parsing                                                        */
/* ------------------------------------------------------------------ */

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = '\0';
	return s;
}

/* "\n" becomes a line break and "\\" a backslash, in place. */
static void
unescape(char *s)
{
	char *o = s;

	for (; *s != '\0'; s++) {
		if (s[0] == '\\' && s[1] == 'n') {
			*o++ = '\n';
			s++;
		} else if (s[0] == '\\' && s[1] == '\\') {
			*o++ = '\\';
			s++;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

typedef void (*line_fn)(struct loader *L, void *ctx, const char *file, int line, const char *key,
                        char *value);

/*
 * Reads path line by line, skipping blanks and comments, and calls fn with
 * each "key = value" pair (value trimmed and unescaped). Returns the number
 * of lines read, or -1 when the file cannot be opened (reported).
 */
static int
read_kv_file(struct loader *L, const char *path, line_fn fn, void *ctx)
{
	char buf[LINE_MAX_BYTES], *s, *eq;
	FILE *f;
	int line = 0;
	bool skipping = false;

	if ((f = fopen(path, "r")) == NULL) {
		report(L, path, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	while (fgets(buf, sizeof(buf), f) != NULL) {
		bool whole = strchr(buf, '\n') != NULL || feof(f);
		if (skipping) {
			skipping = !whole;
			continue;
		}
		line++;
		if (!whole) {
			report(L, path, line, "line too long (max %d bytes)", LINE_MAX_BYTES - 2);
			skipping = true;
			continue;
		}
		if (content_ucs2_len(buf) < 0) {
			report(L, path, line, "invalid UTF-8");
			continue;
		}
		s = trim(buf);
		if (*s == '\0' || *s == '#')
			continue;
		if ((eq = strchr(s, '=')) == NULL) {
			report(L, path, line, "expected 'key = value'");
			continue;
		}
		*eq = '\0';
		s = trim(s);
		eq = trim(eq + 1);
		if (*eq == '\0') {
			report(L, path, line, "empty value for '%s'", s);
			continue;
		}
		unescape(eq);
		fn(L, ctx, path, line, s, eq);
	}
	fclose(f);
	return line;
}

static char *
xstrdup(const char *s)
{
	char *d = strdup(s);

	if (d == NULL)
		abort();
	return d;
}

/* ------------------------------------------------------------------ */
/* messages.txt                                                        */
/* ------------------------------------------------------------------ */

static int
msg_index(const char *key)
{
	int i;

	for (i = 0; i < NMSG; i++)
		if (strcmp(msgdefs[i].key, key) == 0)
			return i;
	return -1;
}

/* True when the space-separated list allowed contains name[0..len). */
static bool
var_allowed(const char *allowed, const char *name, size_t len)
{
	const char *p = allowed, *e;

	while (*p != '\0') {
		e = strchr(p, ' ');
		if (e == NULL)
			e = p + strlen(p);
		if ((size_t)(e - p) == len && memcmp(p, name, len) == 0)
			return true;
		p = *e == ' ' ? e + 1 : e;
	}
	return false;
}

static void
check_placeholders(struct loader *L, const char *file, int line, const struct msgdef *def,
                   const char *v)
{
	const char *p = v, *close;

	while ((p = strchr(p, '{')) != NULL) {
		close = strchr(p, '}');
		if (close == NULL) {
			report(L, file, line, "unclosed '{' in '%s'", def->key);
			return;
		}
		if (!var_allowed(def->vars, p + 1, (size_t)(close - p - 1)))
			report(L, file, line, "unknown placeholder {%.*s} in '%s'",
			       (int)(close - p - 1), p + 1, def->key);
		p = close + 1;
	}
}

static void
msg_line(struct loader *L, void *ctx, const char *file, int line, const char *key, char *value)
{
	struct lang_set *ls = ctx;
	int k = msg_index(key);

	if (k < 0) {
		report(L, file, line, "unknown key '%s'", key);
		return;
	}
	if (ls->msg[k] != NULL) {
		report(L, file, line, "duplicate key '%s' (first on line %d)", key,
		       ls->msg_line[k]);
		return;
	}
	check_placeholders(L, file, line, &msgdefs[k], value);
	ls->msg[k] = xstrdup(value);
	ls->msg_line[k] = line;
}

static void
load_messages(struct loader *L, struct lang_set *ls, const char *dir, const char *lang)
{
	int i;

	snprintf(ls->path, sizeof(ls->path), "%s/%s/messages.txt", dir, lang);
	ls->lines = read_kv_file(L, ls->path, msg_line, ls);
	if (ls->lines < 0)
		return;
	for (i = 0; i < NMSG; i++)
		if (ls->msg[i] == NULL)
			report(L, ls->path, ls->lines, "missing message key '%s'", msgdefs[i].key);
}

/* ------------------------------------------------------------------ */
/* ussd.txt                                                            */
/* ------------------------------------------------------------------ */

static int
ussd_index(const char *key)
{
	int i;

	for (i = 0; i < NUSSD; i++)
		if (strcmp(ussddefs[i].key, key) == 0)
			return i;
	return -1;
}

static void
ussd_kv_line(struct loader *L, void *ctx, const char *file, int line, const char *key, char *value)
{
	struct lang_set *ls = ctx;
	int k = ussd_index(key);

	if (k < 0) {
		report(L, file, line, "unknown key '%s'", key);
		return;
	}
	if (ls->ussd[k] != NULL) {
		report(L, file, line, "duplicate key '%s' (first on line %d)", key,
		       ls->ussd_line[k]);
		return;
	}
	check_placeholders(L, file, line, &ussddefs[k], value);
	ls->ussd[k] = xstrdup(value);
	ls->ussd_line[k] = line;
}

static void
load_ussd(struct loader *L, struct lang_set *ls, const char *dir, const char *lang)
{
	int i;

	snprintf(ls->ussd_path, sizeof(ls->ussd_path), "%s/%s/ussd.txt", dir, lang);
	ls->ussd_lines = read_kv_file(L, ls->ussd_path, ussd_kv_line, ls);
	if (ls->ussd_lines < 0)
		return;
	for (i = 0; i < NUSSD; i++)
		if (ls->ussd[i] == NULL)
			report(L, ls->ussd_path, ls->ussd_lines, "missing USSD key '%s'",
			       ussddefs[i].key);
}

/* ------------------------------------------------------------------ */
/* <skill>.txt                                                         */
/* ------------------------------------------------------------------ */

static const char *const qkeys[] = {"q", "a", "b", "c", "d", "answer", "why"};

static bool
valid_id(const char *id)
{
	size_t n = strlen(id), i;

	if (n == 0 || n >= CONTENT_ID_MAX)
		return false;
	for (i = 0; i < n; i++)
		if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9') ||
		      id[i] == '_' || id[i] == '-'))
			return false;
	return true;
}

/* Reports what the last question of sb lacks. */
static void
finish_question(struct loader *L, struct skill_bank *sb)
{
	struct qrec *r;
	const char *miss = NULL;
	int i;

	if (sb->nq == 0)
		return;
	r = &sb->q[sb->nq - 1];
	if (r->q.text == NULL)
		miss = "question text 'q'";
	for (i = 0; i < 4 && miss == NULL; i++)
		if (r->q.opt[i] == NULL)
			miss = (const char *[]){"option 'a'", "option 'b'", "option 'c'",
			                        "option 'd'"}[i];
	if (miss == NULL && r->q.answer < 0)
		miss = "'answer'";
	if (miss == NULL && r->q.why == NULL)
		miss = "explanation 'why'";
	if (miss != NULL)
		report(L, sb->path, r->line, "question '%s': missing %s", r->q.id, miss);
}

static void
new_question(struct loader *L, struct skill_bank *sb, int line, const char *id)
{
	struct qrec *r;
	int i;

	finish_question(L, sb);
	if (!valid_id(id)) {
		report(L, sb->path, line, "bad question id '%s' (use 1-15 of a-z 0-9 _ -)", id);
		id = "invalid";
	}
	for (i = 0; i < sb->nq; i++)
		if (strcmp(sb->q[i].q.id, id) == 0)
			report(L, sb->path, line, "duplicate question id '%s' (first on line %d)",
			       id, sb->q[i].line);
	if (sb->nq >= CONTENT_MAX_QUESTIONS) {
		report(L, sb->path, line, "too many questions (max %d)", CONTENT_MAX_QUESTIONS);
		return;
	}
	if ((sb->nq & 15) == 0) {
		sb->q = realloc(sb->q, (size_t)(sb->nq + 16) * sizeof(*sb->q));
		if (sb->q == NULL)
			abort();
	}
	r = &sb->q[sb->nq++];
	memset(r, 0, sizeof(*r));
	snprintf(r->q.id, sizeof(r->q.id), "%s", id);
	r->q.answer = -1;
	r->line = line;
}

/* The slot for question key k (0 q, 1-4 a-d, 6 why) of the last question. */
static const char **
qslot(struct qrec *r, int k)
{
	if (k == 0)
		return &r->q.text;
	if (k >= 1 && k <= 4)
		return &r->q.opt[k - 1];
	return &r->q.why;
}

static void
question_line(struct loader *L, struct skill_bank *sb, int line, int k, const char *value)
{
	struct qrec *r;
	const char **slot;

	if (sb->nq == 0) {
		report(L, sb->path, line, "'%s' before any 'id'", qkeys[k]);
		return;
	}
	r = &sb->q[sb->nq - 1];
	if (k == 5) {
		if (r->q.answer >= 0)
			report(L, sb->path, line, "duplicate key 'answer'");
		else if (strlen(value) != 1 || value[0] < 'A' || value[0] > 'D')
			report(L, sb->path, line, "answer must be one of A, B, C, D (got '%s')",
			       value);
		else
			r->q.answer = value[0] - 'A';
		return;
	}
	slot = qslot(r, k);
	if (*slot != NULL) {
		report(L, sb->path, line, "duplicate key '%s' in question '%s'", qkeys[k], r->q.id);
		return;
	}
	*slot = xstrdup(value);
}

static void
header_line(struct loader *L, struct skill_bank *sb, int line, const char *key, const char *value)
{
	char **slot;

	if (strcmp(key, "skill") == 0)
		slot = &sb->code;
	else if (strcmp(key, "name") == 0)
		slot = &sb->name;
	else if (strcmp(key, "short") == 0)
		slot = &sb->shortname;
	else
		slot = &sb->self;
	if (*slot != NULL) {
		report(L, sb->path, line, "duplicate key '%s'", key);
		return;
	}
	*slot = xstrdup(value);
	if (slot == &sb->self)
		sb->self_line = line;
}

static void
skill_line(struct loader *L, void *ctx, const char *file, int line, const char *key, char *value)
{
	struct skill_bank *sb = ctx;
	size_t k;

	if (strcmp(key, "id") == 0) {
		new_question(L, sb, line, value);
		return;
	}
	for (k = 0; k < sizeof(qkeys) / sizeof(qkeys[0]); k++)
		if (strcmp(key, qkeys[k]) == 0) {
			question_line(L, sb, line, (int)k, value);
			return;
		}
	if (strcmp(key, "skill") == 0 || strcmp(key, "name") == 0 || strcmp(key, "short") == 0 ||
	    strcmp(key, "self") == 0) {
		header_line(L, sb, line, key, value);
		return;
	}
	report(L, file, line, "unknown key '%s'", key);
}

static void
load_skill(struct loader *L, struct skill_bank *sb, const char *dir, const char *lang, int skill)
{
	const char *code = flow_skill_codes[skill - 1];

	snprintf(sb->path, sizeof(sb->path), "%s/%s/%s.txt", dir, lang, code);
	sb->lines = read_kv_file(L, sb->path, skill_line, sb);
	if (sb->lines < 0)
		return;
	finish_question(L, sb);
	if (sb->code == NULL)
		report(L, sb->path, sb->lines, "missing key 'skill'");
	else if (strcmp(sb->code, code) != 0)
		report(L, sb->path, sb->lines, "skill '%s' does not match file name '%s'", sb->code,
		       code);
	if (sb->name == NULL)
		report(L, sb->path, sb->lines, "missing key 'name'");
	if (sb->shortname == NULL)
		report(L, sb->path, sb->lines, "missing key 'short'");
	if (sb->self == NULL)
		report(L, sb->path, sb->lines, "missing key 'self'");
	if (sb->nq < CONTENT_MIN_QUESTIONS)
		report(L, sb->path, sb->lines, "%d questions for skill '%s', need at least %d",
		       sb->nq, code, CONTENT_MIN_QUESTIONS);
}

/* Flags files in dir/lang that are neither known nor reserved. */
static void
scan_unknown_files(struct loader *L, const char *dir, const char *lang)
{
	char path[PATH_BYTES], fpath[PATH_BYTES + 260];
	struct dirent *de;
	DIR *d;
	size_t n;
	int i;
	bool known;

	snprintf(path, sizeof(path), "%s/%s", dir, lang);
	if ((d = opendir(path)) == NULL)
		return; /* reported when messages.txt fails to open */
	while ((de = readdir(d)) != NULL) {
		n = strlen(de->d_name);
		if (n < 5 || strcmp(de->d_name + n - 4, ".txt") != 0)
			continue;
		known = strcmp(de->d_name, "messages.txt") == 0 ||
		        strcmp(de->d_name, "ussd.txt") == 0; /* reserved: USSD menus */
		for (i = 0; i < FLOW_SKILLS && !known; i++)
			known = n - 4 == strlen(flow_skill_codes[i]) &&
			        strncmp(de->d_name, flow_skill_codes[i], n - 4) == 0;
		if (known)
			continue;
		snprintf(fpath, sizeof(fpath), "%s/%s", path, de->d_name);
		report(L, fpath, 0,
		       "unknown content file (expected messages.txt, ussd.txt "
		       "or <skill_code>.txt)");
	}
	closedir(d);
}

/* ------------------------------------------------------------------ */
/* Length checks                                                       */
/* ------------------------------------------------------------------ */

#define WORST_BYTES 2048
#define LIMIT_UCS2 (CONTENT_MAX_SEGMENTS * CONTENT_UCS2_SEG)

/* Worst-case values for every placeholder, per language. */
struct worst {
	char skill[WORST_BYTES];
	char list[WORST_BYTES];
	char next[WORST_BYTES];
	char code[32];
	struct content_var v[20];
	int nv;
};

static const char *
msgl(const struct lang_set *ls, const char *key)
{
	int k = msg_index(key);

	return k >= 0 && ls->msg[k] != NULL ? ls->msg[k] : "";
}

/* Renders tmpl with the worst values and keeps it in dst if it is longer. */
static void
keep_longest(struct worst *w, const char *tmpl, char *dst)
{
	char buf[WORST_BYTES];

	content_render(tmpl, w->v, w->nv, buf, sizeof(buf));
	if (content_ucs2_len(buf) > content_ucs2_len(dst))
		snprintf(dst, WORST_BYTES, "%s", buf);
}

static void
worst_init(struct worst *w, const struct lang_set *ls)
{
	static const char *const nums[] = {"n", "total", "pass", "score", "members", "answer"};
	size_t i, o = 0;
	int s;

	memset(w, 0, sizeof(*w));
	memset(w->code, 'X', sizeof(w->code) - 1);
	for (s = 0; s < FLOW_SKILLS; s++) {
		const char *nm = ls->skill[s].name ? ls->skill[s].name : "";
		const char *sh = ls->skill[s].shortname ? ls->skill[s].shortname : "";
		if (content_ucs2_len(nm) > content_ucs2_len(w->skill))
			snprintf(w->skill, sizeof(w->skill), "%s", nm);
		o += (size_t)snprintf(w->list + o, sizeof(w->list) - o, "%s%d %s", s ? ", " : "",
		                      s + 1, sh);
	}
	for (i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
		w->v[w->nv++] = (struct content_var){nums[i], "10"};
	w->v[w->nv++] = (struct content_var){"skill", w->skill};
	w->v[w->nv++] = (struct content_var){"household", w->code};
	w->v[w->nv++] = (struct content_var){"code", w->code};
	/* done + missing always name each skill once; "none" fills the other */
	w->v[w->nv++] = (struct content_var){"done_skills", w->list};
	w->v[w->nv++] = (struct content_var){"missing_skills", msgl(ls, "none")};
	w->v[w->nv++] = (struct content_var){"household_missing", w->list};
	keep_longest(w, msgl(ls, "next_skill"), w->next);
	keep_longest(w, msgl(ls, "next_rate"), w->next);
	keep_longest(w, msgl(ls, "all_done"), w->next);
	w->v[w->nv++] = (struct content_var){"next", w->next};
}

static void
check_len(struct loader *L, const char *file, int line, const char *what, const char *text)
{
	int n = content_ucs2_len(text);

	if (n > LIMIT_UCS2)
		report(L, file, line, "%s too long: %d characters when rendered, max %d (%d SMS)",
		       what, n, LIMIT_UCS2, CONTENT_MAX_SEGMENTS);
}

static void
check_question(struct loader *L, const struct lang_set *ls, const struct skill_bank *sb,
               const struct qrec *r)
{
	char q[WORST_BYTES], buf[2 * WORST_BYTES + 8];
	struct content_var v[] = {
	    {"n", "10"},        {"total", "10"},    {"question", r->q.text},
	    {"a", r->q.opt[0]}, {"b", r->q.opt[1]}, {"c", r->q.opt[2]},
	    {"d", r->q.opt[3]}, {"answer", "A"},    {"explanation", r->q.why},
	};

	content_render(msgl(ls, "quiz_question"), v, 9, q, sizeof(q));
	snprintf(buf, sizeof(buf), "%s %s", msgl(ls, "correct"), q);
	check_len(L, sb->path, r->line, "question (with the 'correct' prefix)", buf);
	content_render(msgl(ls, "wrong"), v, 9, buf, sizeof(buf));
	check_len(L, sb->path, r->line, "'wrong' reply with this explanation", buf);
}

static void
check_lengths(struct loader *L, const struct lang_set *ls)
{
	struct worst w;
	char buf[WORST_BYTES];
	struct content_var sv[4];
	int i, s;

	worst_init(&w, ls);
	for (i = 0; i < NMSG; i++) {
		if (ls->msg[i] == NULL)
			continue;
		content_render(ls->msg[i], w.v, w.nv, buf, sizeof(buf));
		check_len(L, ls->path, ls->msg_line[i], msgdefs[i].key, buf);
	}
	for (s = 0; s < FLOW_SKILLS; s++) {
		const struct skill_bank *sb = &ls->skill[s];
		for (i = 0; i < sb->nq; i++)
			if (sb->q[i].q.text && sb->q[i].q.why && sb->q[i].q.opt[0] &&
			    sb->q[i].q.opt[1] && sb->q[i].q.opt[2] && sb->q[i].q.opt[3])
				check_question(L, ls, sb, &sb->q[i]);
		if (sb->self == NULL)
			continue;
		sv[0] = (struct content_var){"n", "5"};
		sv[1] = (struct content_var){"total", "5"};
		sv[2] = (struct content_var){"skill", sb->name ? sb->name : ""};
		sv[3] = (struct content_var){"question", sb->self};
		content_render(msgl(ls, "self_question"), sv, 4, buf, sizeof(buf));
		check_len(L, sb->path, sb->self_line, "self-assessment question", buf);
	}
}

static const char *
ussdl(const struct lang_set *ls, const char *key)
{
	int k = ussd_index(key);

	return k >= 0 && ls->ussd[k] != NULL ? ls->ussd[k] : "";
}

static void
check_ussd_len(struct loader *L, const char *file, int line, const char *what, const char *text)
{
	int n = content_gsm7_folded_len(text);

	if (n > CONTENT_USSD_MAX)
		report(L, file, line, "USSD %s too long: %d GSM-7 characters when rendered, max %d",
		       what, n, CONTENT_USSD_MAX);
}

/*
 * Every USSD screen with worst-case values: the longest short skill name,
 * two-digit numbers, a 31-character household code, all five skill numbers
 * in a list; each question of each bank in quiz_question, each skill in
 * self_question.
 */
static void
check_ussd_lengths(struct loader *L, const struct lang_set *ls)
{
	char skill[WORST_BYTES] = "", buf[WORST_BYTES], code[32];
	const char *list = "1,2,3,4,5";
	struct content_var v[16];
	int nv = 0, i, s;

	if (ls->ussd_lines < 0)
		return;
	memset(code, 'X', sizeof(code) - 1);
	code[sizeof(code) - 1] = '\0';
	for (s = 0; s < FLOW_SKILLS; s++) {
		const char *sh = ls->skill[s].shortname ? ls->skill[s].shortname : "";
		if (content_gsm7_folded_len(sh) > content_gsm7_folded_len(skill))
			snprintf(skill, sizeof(skill), "%s", sh);
	}
	if (content_gsm7_folded_len(ussdl(ls, "none")) > (int)strlen(list))
		list = ussdl(ls, "none");
	v[nv++] = (struct content_var){"n", "10"};
	v[nv++] = (struct content_var){"total", "10"};
	v[nv++] = (struct content_var){"score", "10"};
	v[nv++] = (struct content_var){"pass", "10"};
	v[nv++] = (struct content_var){"answered", "10"};
	v[nv++] = (struct content_var){"members", "10"};
	v[nv++] = (struct content_var){"answer", "4"};
	v[nv++] = (struct content_var){"skill", skill};
	v[nv++] = (struct content_var){"household", code};
	v[nv++] = (struct content_var){"code", code};
	v[nv++] = (struct content_var){"done", list};
	v[nv++] = (struct content_var){"missing", list};
	v[nv++] = (struct content_var){"household_missing", list};
	for (i = 0; i < NUSSD; i++) {
		if (ls->ussd[i] == NULL || strcmp(ussddefs[i].key, "quiz_question") == 0 ||
		    strcmp(ussddefs[i].key, "self_question") == 0)
			continue;
		content_render(ls->ussd[i], v, nv, buf, sizeof(buf));
		check_ussd_len(L, ls->ussd_path, ls->ussd_line[i], ussddefs[i].key, buf);
	}
	for (s = 0; s < FLOW_SKILLS; s++) {
		const struct skill_bank *sb = &ls->skill[s];
		for (i = 0; i < sb->nq; i++) {
			const struct content_question *q = &sb->q[i].q;
			if (q->text == NULL || q->opt[0] == NULL || q->opt[1] == NULL ||
			    q->opt[2] == NULL || q->opt[3] == NULL)
				continue;
			struct content_var qv[] = {
			    {"n", "10"},      {"total", "10"},  {"question", q->text},
			    {"a", q->opt[0]}, {"b", q->opt[1]}, {"c", q->opt[2]},
			    {"d", q->opt[3]},
			};
			content_render(ussdl(ls, "quiz_question"), qv, 7, buf, sizeof(buf));
			check_ussd_len(L, sb->path, sb->q[i].line, "question screen", buf);
		}
		if (sb->self == NULL)
			continue;
		struct content_var sv[] = {
		    {"n", "5"},
		    {"total", "5"},
		    {"skill", sb->shortname ? sb->shortname : ""},
		    {"question", sb->self},
		};
		content_render(ussdl(ls, "self_question"), sv, 4, buf, sizeof(buf));
		check_ussd_len(L, sb->path, sb->self_line, "self-assessment screen", buf);
	}
}

/* Both languages must carry the same question ids with the same answers. */
static void
check_pairing(struct loader *L, const struct content *c)
{
	const struct skill_bank *a, *b;
	const struct content_question *o;
	int s, i, x;

	for (s = 0; s < FLOW_SKILLS; s++) {
		for (x = 0; x < CONTENT_LANGS; x++) {
			a = &c->lang[x].skill[s];
			b = &c->lang[1 - x].skill[s];
			if (a->lines < 0 || b->lines < 0)
				continue;
			for (i = 0; i < a->nq; i++) {
				o = content_question_find(c, 1 - x, s + 1, a->q[i].q.id);
				if (o == NULL)
					report(L, a->path, a->q[i].line,
					       "question '%s' missing from %s", a->q[i].q.id,
					       b->path);
				else if (x == 0 && o->answer != a->q[i].q.answer)
					report(L, a->path, a->q[i].line,
					       "question '%s': answer differs from %s",
					       a->q[i].q.id, b->path);
			}
		}
	}
}

/* ------------------------------------------------------------------ */
/* Public API                                                          */
/* ------------------------------------------------------------------ */

struct content *
content_load(const char *dir, FILE *err, int *nerrors)
{
	struct loader L = {err, 0};
	struct content *c;
	int l, s;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		abort();
	for (l = 0; l < CONTENT_LANGS; l++) {
		load_messages(&L, &c->lang[l], dir, lang_codes[l]);
		for (s = 0; s < FLOW_SKILLS; s++)
			load_skill(&L, &c->lang[l].skill[s], dir, lang_codes[l], s + 1);
		load_ussd(&L, &c->lang[l], dir, lang_codes[l]);
		scan_unknown_files(&L, dir, lang_codes[l]);
		check_lengths(&L, &c->lang[l]);
		check_ussd_lengths(&L, &c->lang[l]);
	}
	check_pairing(&L, c);
	if (nerrors != NULL)
		*nerrors = L.nerrors;
	if (L.nerrors > 0) {
		content_free(c);
		return NULL;
	}
	return c;
}

static void
free_bank(struct skill_bank *sb)
{
	int i, k;

	free(sb->code);
	free(sb->name);
	free(sb->shortname);
	free(sb->self);
	for (i = 0; i < sb->nq; i++) {
		free((void *)sb->q[i].q.text);
		for (k = 0; k < 4; k++)
			free((void *)sb->q[i].q.opt[k]);
		free((void *)sb->q[i].q.why);
	}
	free(sb->q);
}

void
content_free(struct content *c)
{
	int l, i;

	if (c == NULL)
		return;
	for (l = 0; l < CONTENT_LANGS; l++) {
		for (i = 0; i < NMSG; i++)
			free(c->lang[l].msg[i]);
		for (i = 0; i < NUSSD; i++)
			free(c->lang[l].ussd[i]);
		for (i = 0; i < FLOW_SKILLS; i++)
			free_bank(&c->lang[l].skill[i]);
	}
	free(c);
}

int
content_lang(const char *code)
{
	return code != NULL && strcmp(code, "en") == 0 ? 1 : 0;
}

static const struct lang_set *
lset(const struct content *c, int lang)
{
	return &c->lang[lang == 1 ? 1 : 0];
}

static const struct skill_bank *
bank(const struct content *c, int lang, int skill)
{
	if (skill < 1 || skill > FLOW_SKILLS)
		return NULL;
	return &lset(c, lang)->skill[skill - 1];
}

const char *
content_msg(const struct content *c, int lang, const char *key)
{
	return msgl(lset(c, lang), key);
}

const char *
content_ussd(const struct content *c, int lang, const char *key)
{
	return ussdl(lset(c, lang), key);
}

const char *
content_skill_name(const struct content *c, int lang, int skill)
{
	const struct skill_bank *sb = bank(c, lang, skill);

	return sb != NULL && sb->name != NULL ? sb->name : "";
}

const char *
content_skill_short(const struct content *c, int lang, int skill)
{
	const struct skill_bank *sb = bank(c, lang, skill);

	return sb != NULL && sb->shortname != NULL ? sb->shortname : "";
}

const char *
content_self_question(const struct content *c, int lang, int skill)
{
	const struct skill_bank *sb = bank(c, lang, skill);

	return sb != NULL && sb->self != NULL ? sb->self : "";
}

int
content_question_count(const struct content *c, int lang, int skill)
{
	const struct skill_bank *sb = bank(c, lang, skill);

	return sb != NULL ? sb->nq : 0;
}

const struct content_question *
content_question_at(const struct content *c, int lang, int skill, int idx)
{
	const struct skill_bank *sb = bank(c, lang, skill);

	if (sb == NULL || idx < 0 || idx >= sb->nq)
		return NULL;
	return &sb->q[idx].q;
}

const struct content_question *
content_question_find(const struct content *c, int lang, int skill, const char *id)
{
	const struct skill_bank *sb = bank(c, lang, skill);
	int i;

	if (sb == NULL)
		return NULL;
	for (i = 0; i < sb->nq; i++)
		if (strcmp(sb->q[i].q.id, id) == 0)
			return &sb->q[i].q;
	return NULL;
}

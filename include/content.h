/*
 * content.h — the words residents read: question banks, menus and replies,
 * one set per language, loaded from human-editable files under
 * config/content/{vi,en}/ (format: config/content/README.md).
 *
 * A struct content is immutable once loaded. The daemon loads a fresh one on
 * SIGHUP and swaps the pointer; flow state refers to questions by their
 * stable ids (e.g. "pay03"), never by position, so a reload never breaks a
 * quiz in progress. Both languages carry the same question ids with the same
 * answers, so switching language mid-quiz keeps working too.
 */
#ifndef SG_CONTENT_H
#define SG_CONTENT_H

#include <stddef.h>
#include <stdio.h>

#define CONTENT_LANGS 2   /* 0 = "vi", 1 = "en" */
#define CONTENT_ID_MAX 16 /* question id incl. NUL: [a-z0-9_-]{1,15} */
#define CONTENT_MIN_QUESTIONS 8
#define CONTENT_MAX_QUESTIONS 200 /* per skill per language */
#define CONTENT_MAX_SEGMENTS 3    /* hard cap for any rendered reply */
#define CONTENT_UCS2_SEG 67       /* UCS-2 characters per concatenated part */
#define CONTENT_USSD_MAX 160      /* GSM-7 characters per USSD screen (ussd.txt) */

struct content;

/* One multiple-choice question; strings owned by the struct content. */
struct content_question {
	char id[CONTENT_ID_MAX];
	const char *text;
	const char *opt[4]; /* options A..D */
	int answer;         /* 0..3 = A..D */
	const char *why;    /* one-line explanation shown on a wrong answer */
};

/* A template variable: {name} is replaced by value. */
struct content_var {
	const char *name;
	const char *value;
};

/*
 * Loads dir/vi/ and dir/en/ (messages.txt, ussd.txt and one
 * <skill_code>.txt per skill) and validates everything. Every problem is written to err (if not
 * NULL) as "file:line: reason"; *nerrors (if not NULL) gets the count.
 * Returns a new struct content owned by the caller (content_free), or NULL
 * when there was any error.
 */
struct content *content_load(const char *dir, FILE *err, int *nerrors);

/* Frees c and every string it owns. NULL is a no-op. */
void content_free(struct content *c);

/* Language index for a code: 1 for "en", 0 for anything else ("vi"). */
int content_lang(const char *code);

/*
 * The message template for key in language lang, never NULL ("" for a key
 * that is not defined). The pointer lives as long as c.
 */
const char *content_msg(const struct content *c, int lang, const char *key);

/*
 * The USSD screen template for key (ussd.txt) in language lang, never NULL
 * ("" for an unknown key). Lives as long as c.
 */
const char *content_ussd(const struct content *c, int lang, const char *key);

/* Skill (1..5) full name, short name and self-assessment question; never NULL. */
const char *content_skill_name(const struct content *c, int lang, int skill);
const char *content_skill_short(const struct content *c, int lang, int skill);
const char *content_self_question(const struct content *c, int lang, int skill);

/* Questions in the bank of skill (1..5); 0 for a bad skill. */
int content_question_count(const struct content *c, int lang, int skill);

/* The idx-th question (file order), or NULL when out of range. Borrowed. */
const struct content_question *content_question_at(const struct content *c, int lang, int skill,
                                                   int idx);

/* The question with this id in skill's bank, or NULL. Borrowed. */
const struct content_question *content_question_find(const struct content *c, int lang, int skill,
                                                     const char *id);

/*
 * Expands {name} placeholders in tmpl from vars into out (always
 * NUL-terminated when cap > 0, truncated on a UTF-8 boundary). A
 * placeholder with no matching var is copied literally. Returns the bytes
 * written, excluding the NUL.
 */
size_t content_render(const char *tmpl, const struct content_var *vars, int nvars, char *out,
                      size_t cap);

/*
 * Folds Vietnamese diacritics (precomposed and combining forms) to plain
 * ASCII letters: "Học" -> "Hoc", "đ" -> "d". Other characters are kept.
 * Always NUL-terminates when cap > 0. Returns bytes written.
 */
size_t content_fold(const char *utf8, char *out, size_t cap);

/* UTF-16 code units in utf8 (what a UCS-2 SMS counts), -1 if invalid UTF-8. */
int content_ucs2_len(const char *utf8);

/*
 * GSM 03.38 septets of utf8 once folded (extension characters count 2,
 * anything still outside GSM-7 counts 1, as a '?' would).
 */
int content_gsm7_folded_len(const char *utf8);

#endif

/*
 * dlr.c — delivery receipts: the SMPP 3.4 appendix-B receipt text parser and
 * the message-id normalisation that makes submit_sm_resp ids (often hex)
 * and receipt ids (often decimal) meet.
 *
 * The parser is Kannel-tolerant: keys in any case and any order, missing
 * sub:/dlvrd:, 10-, 12- (or 14-) digit dates, unknown stat: words, unknown
 * extra fields (skipped), "submit_date:"/"submitdate:" spellings, and a
 * text: field that may contain anything. Readings chosen here:
 *  - text: runs to the end of the receipt; keys after it are not looked at.
 *  - A key is recognised only at the start or after white space, so "xid:"
 *    is not "id:". White space after a colon is skipped unless what follows
 *    is itself a "key:" (then the value is empty).
 *  - An id longer than MSG_SMSC_ID_MAX - 1 makes the receipt unparseable
 *    (-1) rather than truncated, since a truncated id could match another.
 *  - err: is decimal; a value with hex letters is read as hex; anything else
 *    leaves err at -1. Dates must be all digits (<= 15) or are left "".
 *  - stat: FAILED is taken as UNDELIV (seen in the field); other unknown
 *    words are MSG_DLR_UNKNOWN.
 */
#include "dlr.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum dlr_key { K_ID, K_SUB, K_DLVRD, K_SUBMIT, K_DONE, K_STAT, K_ERR, K_TEXT };

/* Looked up at every field of every receipt (4 per MO in the bench): a key
 * is compared only when its first letter matches (strncasecmp against every
 * key was 7 % of the daemon's CPU under MO load). */
static const struct {
	const char *name; /* lower case, including the colon */
	enum dlr_key key;
} dlr_keys[] = {
    {"id:", K_ID},
    {"sub:", K_SUB},
    {"dlvrd:", K_DLVRD},
    {"submit date:", K_SUBMIT},
    {"submit_date:", K_SUBMIT},
    {"submitdate:", K_SUBMIT},
    {"done date:", K_DONE},
    {"done_date:", K_DONE},
    {"donedate:", K_DONE},
    {"stat:", K_STAT},
    {"err:", K_ERR},
    {"text:", K_TEXT},
};

static bool
is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Matches a known key at s (n bytes left); returns its length or 0. */
static size_t
match_key(const char *s, size_t n, enum dlr_key *key)
{
	char c;
	size_t i;

	if (n == 0)
		return 0;
	c = (char)tolower((unsigned char)s[0]);
	for (i = 0; i < sizeof(dlr_keys) / sizeof(dlr_keys[0]); i++) {
		size_t kl;

		if (dlr_keys[i].name[0] != c)
			continue;
		kl = strlen(dlr_keys[i].name);
		if (kl <= n && strncasecmp(s, dlr_keys[i].name, kl) == 0) {
			*key = dlr_keys[i].key;
			return kl;
		}
	}
	return 0;
}

/* True when s (n bytes) starts with "word:" (a following key). */
static bool
starts_with_key(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n && !is_ws(s[i]); i++)
		if (s[i] == ':')
			return true;
	return false;
}

/* Parses a non-negative decimal token; -1 when empty, not digits or huge. */
static int
parse_uint(const char *s, size_t n)
{
	long v = 0;
	size_t i;

	if (n == 0)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
		if (v > 0x7FFFFFFF)
			return -1;
	}
	return (int)v;
}

static int
parse_err(const char *s, size_t n)
{
	long v = 0;
	size_t i;
	int d;

	if ((d = parse_uint(s, n)) >= 0 || n == 0 || n > 7)
		return d;
	if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		s += 2;
		n -= 2;
	}
	for (i = 0; i < n; i++) {
		if (!isxdigit((unsigned char)s[i]))
			return -1;
		d = isdigit((unsigned char)s[i]) ? s[i] - '0'
		                                 : (tolower((unsigned char)s[i]) - 'a' + 10);
		v = v * 16 + d;
	}
	return n ? (int)v : -1;
}

static void
copy_date(char dst[16], const char *s, size_t n)
{
	size_t i;

	dst[0] = '\0';
	if (n == 0 || n > 15)
		return;
	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return;
	memcpy(dst, s, n);
	dst[n] = '\0';
}

/*
 * Parses appendix-B receipt text (n bytes, need not be NUL-terminated; a
 * NUL ends it early) into *out. Returns 0 when both id: (non-empty) and
 * stat: were found, -1 otherwise (out is filled as far as it got).
 */
int
dlr_parse_text(const char *text, size_t n, struct dlr_text *out)
{
	bool have_id = false, have_stat = false, id_too_long = false;
	size_t i = 0;

	if (out == NULL)
		return -1;
	memset(out, 0, sizeof(*out));
	out->state = MSG_DLR_UNKNOWN;
	out->err = out->sub = out->dlvrd = -1;
	if (text == NULL)
		return -1;
	n = strnlen(text, n);

	while (i < n) {
		enum dlr_key key;
		size_t kl, vs, ve;

		while (i < n && is_ws(text[i]))
			i++;
		if (i >= n)
			break;
		if ((kl = match_key(text + i, n - i, &key)) == 0) {
			/* unknown field or stray word: skip it */
			while (i < n && !is_ws(text[i]))
				i++;
			continue;
		}
		if (key == K_TEXT)
			break; /* free text to the end */
		vs = i + kl;
		if (vs < n && is_ws(text[vs])) {
			size_t j = vs;

			while (j < n && is_ws(text[j]))
				j++;
			if (j < n && !starts_with_key(text + j, n - j))
				vs = j;
		}
		for (ve = vs; ve < n && !is_ws(text[ve]); ve++)
			;
		switch (key) {
		case K_ID:
			if (ve - vs >= sizeof(out->id)) {
				id_too_long = true;
			} else if (ve > vs) {
				memcpy(out->id, text + vs, ve - vs);
				out->id[ve - vs] = '\0';
				have_id = true;
			}
			break;
		case K_SUB:
			out->sub = parse_uint(text + vs, ve - vs);
			break;
		case K_DLVRD:
			out->dlvrd = parse_uint(text + vs, ve - vs);
			break;
		case K_SUBMIT:
			copy_date(out->submit_date, text + vs, ve - vs);
			break;
		case K_DONE:
			copy_date(out->done_date, text + vs, ve - vs);
			break;
		case K_STAT: {
			char word[16];
			size_t wl = ve - vs;

			if (wl > 0 && wl < sizeof(word)) {
				memcpy(word, text + vs, wl);
				word[wl] = '\0';
				out->state = dlr_state_from_word(word);
			} else {
				out->state = MSG_DLR_UNKNOWN;
			}
			have_stat = wl > 0;
			break;
		}
		case K_ERR:
			out->err = parse_err(text + vs, ve - vs);
			break;
		case K_TEXT:
			break;
		}
		i = ve;
	}
	if (id_too_long) {
		out->id[0] = '\0';
		return -1;
	}
	return have_id && have_stat ? 0 : -1;
}

static const struct {
	const char *word;
	enum msg_dlr_state state;
} dlr_words[] = {
    {"DELIVRD", MSG_DLR_DELIVERED},     {"DELIVERED", MSG_DLR_DELIVERED},
    {"EXPIRED", MSG_DLR_EXPIRED},       {"DELETED", MSG_DLR_DELETED},
    {"UNDELIV", MSG_DLR_UNDELIVERABLE}, {"UNDELIVERABLE", MSG_DLR_UNDELIVERABLE},
    {"FAILED", MSG_DLR_UNDELIVERABLE},  {"ACCEPTD", MSG_DLR_ACCEPTED},
    {"ACCEPTED", MSG_DLR_ACCEPTED},     {"UNKNOWN", MSG_DLR_UNKNOWN},
    {"REJECTD", MSG_DLR_REJECTED},      {"REJECTED", MSG_DLR_REJECTED},
    {"ENROUTE", MSG_DLR_ENROUTE},       {"ACKED", MSG_DLR_ENROUTE},
    {"BUFFRED", MSG_DLR_ENROUTE},       {"BUFFERD", MSG_DLR_ENROUTE},
    {"BUFFERED", MSG_DLR_ENROUTE},
};

/*
 * Maps a stat: word (case-insensitive) to a state: the appendix-B words,
 * their long spellings, Kannel's buffered words (ACKED, BUFFRED, BUFFERD ->
 * ENROUTE) and FAILED -> UNDELIVERABLE; anything else MSG_DLR_UNKNOWN.
 */
enum msg_dlr_state
dlr_state_from_word(const char *word)
{
	size_t i;

	if (word == NULL)
		return MSG_DLR_UNKNOWN;
	for (i = 0; i < sizeof(dlr_words) / sizeof(dlr_words[0]); i++)
		if (strcasecmp(word, dlr_words[i].word) == 0)
			return dlr_words[i].state;
	return MSG_DLR_UNKNOWN;
}

/* True for the states after which no further receipt is expected. */
bool
dlr_state_final(enum msg_dlr_state s)
{
	switch (s) {
	case MSG_DLR_DELIVERED:
	case MSG_DLR_EXPIRED:
	case MSG_DLR_DELETED:
	case MSG_DLR_UNDELIVERABLE:
	case MSG_DLR_REJECTED:
		return true;
	default:
		return false;
	}
}

/* Parses s (n chars) as an unsigned number in base 10 or 16 (an optional
 * 0x prefix in base 16); false on an empty string, a bad digit or overflow. */
static bool
parse_u64(const char *s, size_t n, unsigned base, uint64_t *v)
{
	size_t i;

	if (base == 16 && n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		s += 2;
		n -= 2;
	}
	if (n == 0)
		return false;
	*v = 0;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		unsigned d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (base == 16 && isxdigit(c))
			d = (unsigned)(tolower(c) - 'a' + 10);
		else
			return false;
		if (*v > (UINT64_MAX - d) / base)
			return false;
		*v = *v * base + d;
	}
	return true;
}

/*
 * Canonical SMSC message id (see dlr.h): surrounding white space trimmed;
 * numeric ids in their base (hex or decimal) become decimal without leading
 * zeros; ID_BASE_STRING ids and ids that do not parse (non-digits, more than
 * 64 bits) are kept, lower-cased. Returns 0, or -1 when in is empty (after
 * trimming) or out cannot hold the result (out is then "" when cap > 0).
 */
int
dlr_normalise_id(const char *in, enum id_base base, char *out, size_t cap)
{
	size_t n, i;
	uint64_t v;

	if (out != NULL && cap > 0)
		out[0] = '\0';
	if (in == NULL || out == NULL || cap == 0)
		return -1;
	while (is_ws(*in))
		in++;
	n = strlen(in);
	while (n > 0 && is_ws(in[n - 1]))
		n--;
	if (n == 0)
		return -1;
	if (base != ID_BASE_STRING && parse_u64(in, n, base == ID_BASE_HEX ? 16 : 10, &v)) {
		int w = snprintf(out, cap, "%" PRIu64, v);

		if (w < 0 || (size_t)w >= cap) {
			out[0] = '\0';
			return -1;
		}
		return 0;
	}
	if (n >= cap)
		return -1;
	for (i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)in[i]);
	out[n] = '\0';
	return 0;
}

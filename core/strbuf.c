/*
 * strbuf.c — growable byte strings (see strbuf.h).
 */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

void
strbuf_init(struct strbuf *b)
{
	b->s = NULL;
	b->len = b->cap = 0;
}

void
strbuf_free(struct strbuf *b)
{
	free(b->s);
	strbuf_init(b);
}

void
strbuf_reset(struct strbuf *b)
{
	b->len = 0;
	if (b->s)
		b->s[0] = '\0';
}

static void
strbuf_grow(struct strbuf *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra + 1)
		cap *= 2;
	char *s = realloc(b->s, cap);
	if (s == NULL)
		fatal("out of memory");
	b->s = s;
	b->cap = cap;
}

void
strbuf_append(struct strbuf *b, const char *s, size_t n)
{
	strbuf_grow(b, n);
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

void
strbuf_puts(struct strbuf *b, const char *s)
{
	strbuf_append(b, s, strlen(s));
}

void
strbuf_printf(struct strbuf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	strbuf_grow(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void
strbuf_pgarr_begin(struct strbuf *b)
{
	strbuf_append(b, "{", 1);
}

/* The comma before an array element unless it is the first. */
static void
pgarr_sep(struct strbuf *b)
{
	if (b->len > 0 && b->s[b->len - 1] != '{')
		strbuf_append(b, ",", 1);
}

void
strbuf_pgarr_elem(struct strbuf *b, const char *s)
{
	pgarr_sep(b);
	if (s == NULL) {
		strbuf_append(b, "NULL", 4);
		return;
	}
	strbuf_grow(b, strlen(s) * 2 + 2);
	b->s[b->len++] = '"';
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			b->s[b->len++] = '\\';
		b->s[b->len++] = *s;
	}
	b->s[b->len++] = '"';
	b->s[b->len] = '\0';
}

void
strbuf_pgarr_int(struct strbuf *b, long long v)
{
	pgarr_sep(b);
	strbuf_int(b, v);
}

void
strbuf_pgarr_end(struct strbuf *b)
{
	strbuf_append(b, "}", 1);
}

char *
str_copy(char *dst, size_t cap, const char *src)
{
	if (cap == 0)
		return dst;
	size_t n = src != NULL ? strnlen(src, cap - 1) : 0;

	if (n > 0)
		memcpy(dst, src, n);
	dst[n] = '\0';
	return dst;
}

void
strbuf_int(struct strbuf *b, long long v)
{
	char tmp[24];
	size_t i = sizeof tmp;
	/* negated as unsigned, so LLONG_MIN works */
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

	do {
		tmp[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u > 0);
	if (v < 0)
		tmp[--i] = '-';
	strbuf_append(b, tmp + i, sizeof tmp - i);
}

static void
json_sep(struct strbuf *b)
{
	if (b->len > 0) {
		char c = b->s[b->len - 1];
		if (c != '{' && c != '[' && c != ':')
			strbuf_append(b, ",", 1);
	}
}

void
strbuf_json_open(struct strbuf *b, char c)
{
	json_sep(b);
	strbuf_append(b, &c, 1);
}

void
strbuf_json_close(struct strbuf *b, char c)
{
	strbuf_append(b, &c, 1);
}

void
strbuf_json_key(struct strbuf *b, const char *key)
{
	strbuf_json_str(b, key);
	strbuf_append(b, ":", 1);
}

void
strbuf_json_int(struct strbuf *b, long long v)
{
	json_sep(b);
	strbuf_int(b, v);
}

void
strbuf_json_bool(struct strbuf *b, bool v)
{
	json_sep(b);
	strbuf_puts(b, v ? "true" : "false");
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if it is not one. */
static size_t
utf8_valid_len(const unsigned char *s)
{
	unsigned char c = s[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		return (s[1] & 0xC0) == 0x80 ? 2 : 0;
	if (c >= 0xE0 && c <= 0xEF) {
		/* no overlong forms (E0 A0..), no surrogates (ED ..9F) */
		unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
		return s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 ? 3 : 0;
	}
	if (c >= 0xF0 && c <= 0xF4) {
		/* no overlong forms (F0 90..), nothing past U+10FFFF (F4 ..8F) */
		unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
		return s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80
		           ? 4
		           : 0;
	}
	return 0;
}

void
strbuf_json_str(struct strbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;

	json_sep(b);
	if (s == NULL) {
		strbuf_append(b, "null", 4);
		return;
	}
	strbuf_append(b, "\"", 1);
	while (*p) {
		/* the run of bytes that go as they are */
		const unsigned char *run = p;
		size_t n;
		while (*p >= 0x20 && *p != '"' && *p != '\\' && (n = utf8_valid_len(p)) > 0)
			p += n;
		strbuf_append(b, (const char *)run, (size_t)(p - run));
		if (*p == 0)
			break;
		if (*p == '"' || *p == '\\') {
			char e[2] = {'\\', (char)*p};
			strbuf_append(b, e, 2);
		} else if (*p < 0x20) {
			char e[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
			strbuf_append(b, e, 6);
		} else {
			strbuf_append(b, "\xef\xbf\xbd",
			              3); /* U+FFFD for a byte that is not UTF-8 */
		}
		p++;
	}
	strbuf_append(b, "\"", 1);
}

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

void
strbuf_pgarr_elem(struct strbuf *b, const char *s)
{
	if (b->len > 0 && b->s[b->len - 1] != '{')
		strbuf_append(b, ",", 1);
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
strbuf_pgarr_end(struct strbuf *b)
{
	strbuf_append(b, "}", 1);
}

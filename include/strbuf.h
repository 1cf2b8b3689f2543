/*
 * strbuf.h — a growable byte string, for building SQL array literals, JSON
 * and HTTP bodies. Allocation failure is fatal (xmalloc style).
 */
#ifndef SG_STRBUF_H
#define SG_STRBUF_H

#include <stddef.h>

struct strbuf {
	char *s; /* always NUL-terminated once anything was appended */
	size_t len;
	size_t cap;
};

void strbuf_init(struct strbuf *b);
void strbuf_free(struct strbuf *b);
void strbuf_reset(struct strbuf *b);
void strbuf_append(struct strbuf *b, const char *s, size_t n);
void strbuf_puts(struct strbuf *b, const char *s);
void strbuf_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * PostgreSQL array literals: strbuf_pgarr_begin writes "{", each
 * strbuf_pgarr_elem adds one quoted, escaped element (NULL = SQL NULL),
 * strbuf_pgarr_end writes "}".
 */
void strbuf_pgarr_begin(struct strbuf *b);
void strbuf_pgarr_elem(struct strbuf *b, const char *s);
void strbuf_pgarr_end(struct strbuf *b);

#endif

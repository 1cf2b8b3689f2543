/*
 * strbuf.h — a growable byte string, for building SQL array literals, JSON
 * and HTTP bodies, and the copy into fixed fields (str_copy). What runs per
 * message (integers, JSON, copies) avoids printf. Allocation failure is
 * fatal (xmalloc style).
 */
#ifndef SG_STRBUF_H
#define SG_STRBUF_H

#include <stdbool.h>
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
void strbuf_pgarr_int(struct strbuf *b, long long v); /* unquoted */
void strbuf_pgarr_end(struct strbuf *b);

/*
 * Copies src into the fixed field dst of cap bytes as snprintf(dst, cap,
 * "%s", src) would, cut to fit and NUL-terminated (NULL copies as ""),
 * without printf: for copies made per message. Returns dst.
 */
char *str_copy(char *dst, size_t cap, const char *src);

/* v in decimal (no printf: this runs per array element and per MO). */
void strbuf_int(struct strbuf *b, long long v);

/*
 * JSON, written straight into the buffer (no tree, no allocation per value).
 * Each value and each key is preceded by a comma unless it opens the
 * buffer, follows '{', '[' or a key. strbuf_json_str escapes '"', '\\' and
 * control characters and replaces each byte that is not part of valid UTF-8
 * (overlong forms, surrogates, past U+10FFFF) by U+FFFD, so PostgreSQL's
 * jsonb input always accepts the result (NULL is written as null).
 */
void strbuf_json_open(struct strbuf *b, char c); /* '{' or '[' */
void strbuf_json_close(struct strbuf *b, char c);
void strbuf_json_key(struct strbuf *b, const char *key);
void strbuf_json_str(struct strbuf *b, const char *s);
void strbuf_json_int(struct strbuf *b, long long v);
void strbuf_json_bool(struct strbuf *b, bool v);

#endif

/*
 * household_csv.c — streaming parser and validator for the household import
 * CSV (see household_csv.h).
 *
 * The parser keeps at most one raw record (HHCSV_RECORD_MAX bytes) in
 * memory, so a file of any size streams through it. Quoted fields follow RFC
 * 4180 but may not span lines: a quote left open at the end of a line is an
 * error for that record only, instead of swallowing the rest of the file.
 */
#include "household_csv.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msisdn.h"

#define HHCSV_MAX_FIELDS 16

enum hhcsv_state {
	ST_FIELD_START, /* at the start of a field */
	ST_UNQUOTED,    /* inside an unquoted field */
	ST_QUOTED,      /* inside a quoted field */
	ST_QUOTE,       /* a quote inside a quoted field: end or escape */
	ST_AFTER_QUOTE, /* closing quote seen, expecting , or line end */
	ST_SKIP,        /* broken record: skip to the line end */
};

struct hhcsv {
	hhcsv_row_cb cb;
	void *arg;
	int bom_pos; /* bytes of a BOM matched so far; -1 when done */
	enum hhcsv_state st;
	int line;     /* current physical line (1-based) */
	int rec_line; /* line the current record started on */
	char rec[HHCSV_RECORD_MAX + 1];
	size_t reclen;
	size_t fstart[HHCSV_MAX_FIELDS];
	int nfields;   /* fields started in the current record */
	int toomany;   /* fields beyond HHCSV_MAX_FIELDS */
	int any;       /* the current record has any byte */
	char err[128]; /* the current record's error, "" if none */
	int have_header;
	int header_bad;
	char fatal[160];
	int ncols;
	int colmap[HHCSV_NCOLS]; /* canonical column -> index in the file */
	int records;
};

static const char *const hhcsv_cols[HHCSV_NCOLS] = {
    "household_code", "province_code", "district_code", "commune_code",
    "village",        "msisdn",        "language",
};

static void hhcsv_byte(struct hhcsv *p, unsigned char c);
static void hhcsv_end_record(struct hhcsv *p);

struct hhcsv *
hhcsv_new(hhcsv_row_cb cb, void *arg)
{
	struct hhcsv *p = calloc(1, sizeof *p);
	if (p == NULL)
		abort();
	p->cb = cb;
	p->arg = arg;
	p->line = 1;
	p->rec_line = 1;
	p->st = ST_FIELD_START;
	return p;
}

void
hhcsv_free(struct hhcsv *p)
{
	free(p);
}

int
hhcsv_records(const struct hhcsv *p)
{
	return p->records;
}

int
hhcsv_utf8_valid(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;
	while (i < n) {
		unsigned c = u[i];
		size_t len;
		unsigned cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if (i + len > n)
			return 0;
		for (size_t k = 1; k < len; k++) {
			if ((u[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (u[i + k] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
			return 0;
		if (cp >= 0xd800 && cp <= 0xdfff)
			return 0;
		i += len;
	}
	return 1;
}

/* Sets the current record's first error (later ones are dropped). */
static void
hhcsv_fail(struct hhcsv *p, const char *msg)
{
	if (p->err[0] == '\0')
		snprintf(p->err, sizeof p->err, "%s", msg);
	p->st = ST_SKIP;
}

static void
hhcsv_put(struct hhcsv *p, unsigned char c)
{
	if (p->reclen >= HHCSV_RECORD_MAX) {
		hhcsv_fail(p, "record longer than 2048 bytes");
		return;
	}
	p->rec[p->reclen++] = (char)c;
}

/* Starts a new field (the previous one, if any, is NUL-terminated). */
static void
hhcsv_start_field(struct hhcsv *p)
{
	if (p->nfields > 0)
		hhcsv_put(p, '\0');
	if (p->nfields < HHCSV_MAX_FIELDS)
		p->fstart[p->nfields] = p->reclen;
	else
		p->toomany++;
	p->nfields++;
}

void
hhcsv_feed(struct hhcsv *p, const char *data, size_t n)
{
	static const unsigned char bom[3] = {0xef, 0xbb, 0xbf};
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)data[i];
		if (p->bom_pos >= 0) {
			if (c == bom[p->bom_pos]) {
				if (++p->bom_pos == 3)
					p->bom_pos = -1;
				continue;
			}
			int held = p->bom_pos;
			p->bom_pos = -1;
			for (int k = 0; k < held; k++)
				hhcsv_byte(p, bom[k]);
		}
		hhcsv_byte(p, c);
	}
}

static void
hhcsv_byte(struct hhcsv *p, unsigned char c)
{
	if (c == '\r')
		return; /* CRLF and stray CRs: the LF ends the line */
	if (c == '\n') {
		if (p->st == ST_QUOTED)
			hhcsv_fail(p, "unterminated quoted field");
		hhcsv_end_record(p);
		p->line++;
		p->rec_line = p->line;
		return;
	}
	if (!p->any) {
		p->any = 1;
		hhcsv_start_field(p);
	}
	switch (p->st) {
	case ST_FIELD_START:
		if (c == '"') {
			p->st = ST_QUOTED;
		} else if (c == ',') {
			hhcsv_start_field(p);
		} else {
			p->st = ST_UNQUOTED;
			hhcsv_put(p, c);
		}
		break;
	case ST_UNQUOTED:
		if (c == ',') {
			hhcsv_start_field(p);
			p->st = ST_FIELD_START;
		} else if (c == '"') {
			hhcsv_fail(p, "quote inside an unquoted field");
		} else {
			hhcsv_put(p, c);
		}
		break;
	case ST_QUOTED:
		if (c == '"')
			p->st = ST_QUOTE;
		else
			hhcsv_put(p, c);
		break;
	case ST_QUOTE:
		if (c == '"') {
			hhcsv_put(p, c);
			p->st = ST_QUOTED;
		} else if (c == ',') {
			hhcsv_start_field(p);
			p->st = ST_FIELD_START;
		} else if (c == ' ' || c == '\t') {
			p->st = ST_AFTER_QUOTE;
		} else {
			hhcsv_fail(p, "characters after a closing quote");
		}
		break;
	case ST_AFTER_QUOTE:
		if (c == ',') {
			hhcsv_start_field(p);
			p->st = ST_FIELD_START;
		} else if (c != ' ' && c != '\t') {
			hhcsv_fail(p, "characters after a closing quote");
		}
		break;
	case ST_SKIP:
		break;
	}
}

/* Trims ASCII white space in place. */
static char *
hhcsv_trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

static int
hhcsv_digits(const char *s, size_t want)
{
	if (strlen(s) != want)
		return 0;
	for (size_t i = 0; i < want; i++)
		if (!isdigit((unsigned char)s[i]))
			return 0;
	return 1;
}

const char *
hhcsv_validate(const char *const fields[HHCSV_NCOLS], struct hhcsv_row *row)
{
	char buf[HHCSV_NCOLS][HHCSV_FIELD_MAX + 1];
	char *f[HHCSV_NCOLS];
	for (int i = 0; i < HHCSV_NCOLS; i++) {
		if (strlen(fields[i]) > HHCSV_FIELD_MAX)
			return "field longer than 512 bytes";
		snprintf(buf[i], sizeof buf[i], "%s", fields[i]);
		f[i] = hhcsv_trim(buf[i]);
		if (!hhcsv_utf8_valid(f[i], strlen(f[i])))
			return "not valid UTF-8";
		for (const char *q = f[i]; *q; q++)
			if ((unsigned char)*q < 0x20 || *q == 0x7f)
				return "control character in a field";
	}
	memset(row, 0, sizeof *row);
	const char *code = f[0];
	if (code[0] == '\0')
		return "household_code is empty";
	if (strlen(code) > HHCSV_CODE_MAX)
		return "household_code longer than 64 characters";
	for (const char *q = code; *q; q++)
		if (!isalnum((unsigned char)*q) && strchr("._/-", *q) == NULL)
			return "household_code may only hold letters, digits and . _ / -";
	if (!hhcsv_digits(f[1], 2))
		return "province_code must be 2 digits";
	if (!hhcsv_digits(f[2], 3))
		return "district_code must be 3 digits";
	if (!hhcsv_digits(f[3], 5))
		return "commune_code must be 5 digits";
	if (strlen(f[4]) > HHCSV_VILLAGE_MAX)
		return "village longer than 200 bytes";
	if (f[5][0] != '\0' && msisdn_normalise(f[5], row->msisdn, sizeof row->msisdn) != 0)
		return "msisdn is not a valid phone number";
	if (f[6][0] == '\0' || strcasecmp(f[6], "vi") == 0)
		memcpy(row->language, "vi", 3);
	else if (strcasecmp(f[6], "en") == 0)
		memcpy(row->language, "en", 3);
	else
		return "language must be vi or en";
	snprintf(row->household_code, sizeof row->household_code, "%s", code);
	memcpy(row->province, f[1], 3);
	memcpy(row->district, f[2], 4);
	memcpy(row->commune, f[3], 6);
	snprintf(row->village, sizeof row->village, "%s", f[4]);
	return NULL;
}

/* The header row: maps each canonical column to its place in the file. */
static void
hhcsv_header(struct hhcsv *p)
{
	p->have_header = 1;
	if (p->err[0] != '\0') {
		snprintf(p->fatal, sizeof p->fatal, "line %d: bad header: %s", p->rec_line, p->err);
		p->header_bad = 1;
		return;
	}
	if (p->toomany > 0 || !hhcsv_utf8_valid(p->rec, p->reclen)) {
		snprintf(p->fatal, sizeof p->fatal, "line %d: bad header", p->rec_line);
		p->header_bad = 1;
		return;
	}
	for (int i = 0; i < HHCSV_NCOLS; i++)
		p->colmap[i] = -1;
	p->ncols = p->nfields;
	for (int k = 0; k < p->nfields; k++) {
		char name[64];
		snprintf(name, sizeof name, "%s", p->rec + p->fstart[k]);
		char *t = hhcsv_trim(name);
		for (char *q = t; *q; q++)
			*q = (char)tolower((unsigned char)*q);
		int found = -1;
		for (int i = 0; i < HHCSV_NCOLS; i++)
			if (strcmp(t, hhcsv_cols[i]) == 0)
				found = i;
		if (found < 0 || p->colmap[found] >= 0) {
			snprintf(p->fatal, sizeof p->fatal, "line %d: header: %s column \"%.40s\"",
			         p->rec_line, found < 0 ? "unknown" : "duplicate", t);
			p->header_bad = 1;
			return;
		}
		p->colmap[found] = k;
	}
	for (int i = 0; i < HHCSV_NCOLS; i++) {
		if (p->colmap[i] < 0) {
			snprintf(p->fatal, sizeof p->fatal, "line %d: header: missing column %s",
			         p->rec_line, hhcsv_cols[i]);
			p->header_bad = 1;
			return;
		}
	}
}

static void
hhcsv_end_record(struct hhcsv *p)
{
	p->rec[p->reclen] = '\0';
	if (!p->any && p->err[0] == '\0')
		goto reset; /* empty line */
	if (!p->have_header) {
		hhcsv_header(p);
		goto reset;
	}
	p->records++;
	if (p->header_bad) {
		p->cb(p->arg, p->rec_line, NULL, "no valid header row");
		goto reset;
	}
	char msg[128];
	const char *err = NULL;
	struct hhcsv_row row;
	if (p->err[0] != '\0') {
		err = p->err;
	} else if (p->nfields != p->ncols) {
		snprintf(msg, sizeof msg, "expected %d columns, got %d", p->ncols, p->nfields);
		err = msg;
	} else if (!hhcsv_utf8_valid(p->rec, p->reclen)) {
		err = "not valid UTF-8";
	} else {
		const char *fields[HHCSV_NCOLS];
		for (int i = 0; i < HHCSV_NCOLS; i++)
			fields[i] = p->rec + p->fstart[p->colmap[i]];
		err = hhcsv_validate(fields, &row);
	}
	if (err != NULL) {
		p->cb(p->arg, p->rec_line, NULL, err);
	} else {
		row.line = p->rec_line;
		p->cb(p->arg, p->rec_line, &row, NULL);
	}
reset:
	p->reclen = 0;
	p->nfields = 0;
	p->toomany = 0;
	p->any = 0;
	p->err[0] = '\0';
	p->st = ST_FIELD_START;
}

int
hhcsv_finish(struct hhcsv *p, const char **fatal)
{
	if (p->bom_pos > 0) {
		/* a file shorter than a BOM: replay what was held */
		static const unsigned char bom[3] = {0xef, 0xbb, 0xbf};
		int held = p->bom_pos;
		p->bom_pos = -1;
		for (int k = 0; k < held; k++)
			hhcsv_byte(p, bom[k]);
	}
	if (p->any || p->err[0] != '\0') {
		if (p->st == ST_QUOTED)
			hhcsv_fail(p, "unterminated quoted field");
		hhcsv_end_record(p);
	}
	if (!p->have_header) {
		snprintf(p->fatal, sizeof p->fatal, "empty file: no header row");
		p->header_bad = 1;
	}
	if (p->header_bad) {
		if (fatal != NULL)
			*fatal = p->fatal;
		return -1;
	}
	return 0;
}

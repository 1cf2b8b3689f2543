/*
 * household_csv.h — the household import CSV of §4.3, shared by the HTTP API
 * (POST /api/v1/households/import) and `skillctl import-households`.
 *
 *   household_code,province_code,district_code,commune_code,village,msisdn,language
 *
 * RFC 4180 quoting ("" inside quotes), CRLF or LF line ends, an optional
 * UTF-8 BOM; the header row is required (columns may come in any order).
 * The parser is a byte-at-a-time state machine fed in pieces of any size
 * (streaming-friendly); each complete record is validated and handed to a
 * callback either as a clean row or as an error with its line number.
 * Checks that need the database (the commune exists under that district and
 * province) are made by the batched SQL (sg_households_import).
 */
#ifndef SG_HOUSEHOLD_CSV_H
#define SG_HOUSEHOLD_CSV_H

#include <stddef.h>

#define HHCSV_CODE_MAX 64     /* household code, bytes */
#define HHCSV_VILLAGE_MAX 200 /* village, bytes */
#define HHCSV_FIELD_MAX 512   /* any raw field, bytes */
#define HHCSV_RECORD_MAX 2048 /* one raw record, bytes */
#define HHCSV_NCOLS 7

/* One valid row; strings are NUL-terminated and already normalised. */
struct hhcsv_row {
	int line; /* physical line the record starts on */
	char household_code[HHCSV_CODE_MAX + 1];
	char province[3]; /* 2 digits */
	char district[4]; /* 3 digits */
	char commune[6];  /* 5 digits */
	char village[HHCSV_VILLAGE_MAX + 1];
	char msisdn[16];  /* "" = household without a phone */
	char language[3]; /* "vi" or "en" */
};

/*
 * Called for each data record: row is NULL and err says why when the record
 * is invalid (line is then the record's first line). Both pointers are only
 * valid during the call.
 */
typedef void (*hhcsv_row_cb)(void *arg, int line, const struct hhcsv_row *row, const char *err);

struct hhcsv;

/* A parser calling cb(arg, ...) for every record. */
struct hhcsv *hhcsv_new(hhcsv_row_cb cb, void *arg);
void hhcsv_free(struct hhcsv *p);

/* Feeds the next n bytes of the file. */
void hhcsv_feed(struct hhcsv *p, const char *data, size_t n);

/*
 * Ends the input (a last record without a line end is processed). Returns 0,
 * or -1 when the file had no usable header (then every record was reported
 * as an error and *fatal, if given, says why).
 */
int hhcsv_finish(struct hhcsv *p, const char **fatal);

/* Data records seen so far (valid or not), header excluded. */
int hhcsv_records(const struct hhcsv *p);

/* Validates one record's fields (already unquoted, in file column order
 * household_code..language). Returns NULL and fills *row, or a static error
 * text. Exposed for tests. */
const char *hhcsv_validate(const char *const fields[HHCSV_NCOLS], struct hhcsv_row *row);

/* Is s (n bytes) well-formed UTF-8 (no overlongs, no surrogates)? */
int hhcsv_utf8_valid(const char *s, size_t n);

#endif

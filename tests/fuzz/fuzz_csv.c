/*
 * fuzz_csv.c — libFuzzer target for the household import CSV parser: the
 * input is fed in two pieces split at a point chosen by its first byte, and
 * every valid row handed back must satisfy the validator's promises.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "household_csv.h"

static void
check_row(void *arg, int line, const struct hhcsv_row *row, const char *err)
{
	if (line < 1)
		abort();
	if (row == NULL) {
		if (err == NULL || err[0] == '\0')
			abort();
		return;
	}
	if (row->household_code[0] == '\0' || strlen(row->province) != 2 ||
	    strlen(row->district) != 3 || strlen(row->commune) != 5)
		abort();
	if (strcmp(row->language, "vi") != 0 && strcmp(row->language, "en") != 0)
		abort();
	if (!hhcsv_utf8_valid(row->village, strlen(row->village)))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t split = size ? data[0] % (size + 1) : 0;
	struct hhcsv *p = hhcsv_new(check_row, NULL);
	hhcsv_feed(p, (const char *)data, split);
	hhcsv_feed(p, (const char *)data + split, size - split);
	const char *fatal = NULL;
	if (hhcsv_finish(p, &fatal) != 0 && fatal == NULL)
		abort();
	hhcsv_free(p);
	return 0;
}

/*
 * fuzz_json.c — the JSON string writer of strbuf.c (the MO batch sent to
 * sg_mo_commit as jsonb): any bytes in, and jansson, which refuses invalid
 * UTF-8 as PostgreSQL does, must read back one string; when the input was
 * valid UTF-8 that string is the input. Also strbuf_int against printf.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char in[4097];
	struct strbuf b;
	json_error_t err;

	if (size > 4096)
		return 0;
	memcpy(in, data, size);
	in[size] = '\0';

	strbuf_init(&b);
	strbuf_json_str(&b, in);
	json_t *j = json_loads(b.s, JSON_DECODE_ANY, &err);
	CHECK(j != NULL && json_is_string(j));
	/* jansson accepts the input itself as a string only when it is valid UTF-8 */
	json_t *raw = json_stringn(in, strlen(in));
	if (raw != NULL)
		CHECK(strcmp(json_string_value(j), in) == 0);
	json_decref(raw);
	json_decref(j);

	if (size >= 8) {
		long long v;
		char want[32];
		memcpy(&v, data, sizeof v);
		strbuf_reset(&b);
		strbuf_int(&b, v);
		snprintf(want, sizeof want, "%lld", v);
		CHECK(strcmp(b.s, want) == 0);
	}
	strbuf_free(&b);
	return 0;
}

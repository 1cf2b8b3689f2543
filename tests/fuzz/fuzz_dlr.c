/*
 * fuzz_dlr.c — dlr_parse_text on arbitrary bytes (not NUL-terminated) and
 * dlr_normalise_id in every id base, with small and large output buffers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dlr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dlr_text d;
	char *s, out[MSG_SMSC_ID_MAX], tiny[4];
	int b;

	if (dlr_parse_text((const char *)data, size, &d) == 0) {
		if (d.id[0] == '\0' || strlen(d.id) >= sizeof(d.id))
			__builtin_trap();
	}
	if (strlen(d.submit_date) >= sizeof(d.submit_date))
		__builtin_trap();
	(void)dlr_state_final(d.state);

	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	for (b = ID_BASE_HEX; b <= ID_BASE_STRING; b++) {
		if (dlr_normalise_id(s, (enum id_base)b, out, sizeof(out)) == 0 &&
		    strlen(out) >= sizeof(out))
			__builtin_trap();
		(void)dlr_normalise_id(s, (enum id_base)b, tiny, sizeof(tiny));
	}
	(void)dlr_state_from_word(s);
	free(s);
	return 0;
}

/*
 * fuzz_text.c — text_decode for every data_coding and both dc0 meanings,
 * then text_fold, text_encode (every text mode and long mode) and
 * text_count_segments of the decoded text, checking the invariants the
 * SMPP gateway relies on (bounded lengths, counts agree with encode).
 * Input: octet 0 = dcs, octet 1 = flags (bit 0 dc0), the rest = user data.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

#ifndef TEXT_OUT_PAYLOAD_FLAG
#define TEXT_OUT_PAYLOAD_FLAG use_payload
#endif

#define CHECK(x)                                                                                   \
	do {                                                                                       \
		if (!(x))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

static struct text_out out;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char dec[4 * 2048 + 8], fold[4 * 2048 + 8];
	uint8_t dcs;
	enum dc0_meaning dc0;
	size_t n, fl;
	int mode, lm;

	if (size < 2 || size > 2048 + 2)
		return 0;
	dcs = data[0];
	dc0 = (data[1] & 1) ? DC0_LATIN1 : DC0_GSM;
	data += 2;
	size -= 2;

	/* a tight buffer must never be overrun nor cut a character */
	n = text_decode(dcs, dc0, data, size, dec, 5);
	CHECK(n <= 4 && dec[n] == '\0');

	n = text_decode(dcs, dc0, data, size, dec, sizeof(dec));
	CHECK(n < sizeof(dec) && dec[n] == '\0' && strlen(dec) == n);

	fl = text_fold(dec, fold, sizeof(fold));
	CHECK(fl < sizeof(fold) && strlen(fold) == fl);

	CHECK((text_gsm7_septets(dec) >= 0) == text_fits_gsm7(dec));
	for (mode = TEXT_AUTO; mode <= TEXT_UCS2; mode++) {
		for (lm = LONG_UDH8; lm <= LONG_PAYLOAD; lm++) {
			int cnt =
			    text_count_segments(dec, (enum text_mode)mode, (enum long_mode)lm);
			int rc = text_encode(dec, (enum text_mode)mode, (enum long_mode)lm, 0,
			                     (uint16_t)size, &out);
			int s;

			if (rc != 0) {
				CHECK(cnt == -1 || cnt > TEXT_MAX_SEGMENTS);
				continue;
			}
			CHECK(cnt == out.nseg);
			CHECK(out.nseg >= 1 && out.nseg <= TEXT_MAX_SEGMENTS);
			CHECK(out.data_coding == 0 || out.data_coding == 8);
			if (out.TEXT_OUT_PAYLOAD_FLAG) {
				CHECK(out.payload_len <= TEXT_PAYLOAD_MAX);
				continue;
			}
			for (s = 0; s < out.nseg; s++) {
				CHECK(out.seg[s].sm_len <= (out.data_coding == 8 ? 140 : 160));
				/* a GSM part never ends on a lone escape */
				if (out.data_coding == 0 && out.seg[s].sm_len > 0 && out.nseg > 1) {
					int esc = 0, i;

					for (i = out.udhi ? out.seg[s].sm[0] + 1 : 0;
					     i < out.seg[s].sm_len; i++)
						esc = (out.seg[s].sm[i] == 0x1B && !esc);
					CHECK(!esc);
				}
			}
		}
	}
	return 0;
}

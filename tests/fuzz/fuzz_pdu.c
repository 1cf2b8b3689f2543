/*
 * fuzz_pdu.c — libFuzzer target for the SMPP framer, the inbound
 * deliver_sm/data_sm validator+decoder and the response decoder: whatever
 * the peer sends, the codec must not crash, read out of bounds or leak
 * libsmpp34 allocations. Input: a byte stream of PDUs, framed as the session
 * frames it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smpp_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smpp_hdr h;
	struct smpp_inbound in;
	uint8_t out[64];
	char id[66];

	smpp_codec_count_allocs();
	while (smpp_codec_frame(data, size, 8192, &h) == SMPP_FRAME_OK) {
		/* copy into an exact-size heap buffer so ASan sees overreads */
		uint8_t *p = malloc(h.len);
		if (p == NULL)
			return 0;
		memcpy(p, data, h.len);
		if (h.cmd == SMPP_DELIVER_SM || h.cmd == SMPP_DATA_SM) {
			uint32_t st = smpp_codec_decode_inbound(p, h.len, &in);
			if (st == 0 && in.sm_len > 0)
				(void)in.sm[in.sm_len - 1];
			(void)smpp_codec_encode_resp(out, sizeof out, h.cmd, h.seq, st);
		} else if (h.cmd & SMPP_RESP_BIT) {
			(void)smpp_codec_decode_resp(p, h.len, id, sizeof id);
		} else {
			(void)smpp_codec_encode_resp(out, sizeof out, h.cmd, h.seq, SMPP_RINVCMDID);
		}
		free(p);
		data += h.len;
		size -= h.len;
	}
	if (smpp_codec_live_allocs() != 0)
		abort();
	return 0;
}

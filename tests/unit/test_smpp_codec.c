/*
 * test_smpp_codec.c — the SMPP codec: round trips of every PDU we send
 * (packed by libsmpp34, read back by libsmpp34) and the hostile inputs of
 * notes §2.7 (many TLVs, truncated TLV, wrong numeric TLV length, seq 0,
 * vendor status, header-only error responses, 1025-byte payload, oversize
 * command_length, unknown command, unterminated C-strings). Every case ends
 * with libsmpp34's allocation counter back at 0.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "smpp_codec.h"

/* ---------------------------------------------------------------------- */
/* A tiny PDU builder for inbound test PDUs                                */

struct pb {
	uint8_t b[4096];
	size_t n;
};

static void
pb_u8(struct pb *p, uint8_t v)
{
	p->b[p->n++] = v;
}

static void
pb_u16(struct pb *p, uint16_t v)
{
	pb_u8(p, (uint8_t)(v >> 8));
	pb_u8(p, (uint8_t)v);
}

static void
pb_u32(struct pb *p, uint32_t v)
{
	pb_u16(p, (uint16_t)(v >> 16));
	pb_u16(p, (uint16_t)v);
}

static void
pb_str(struct pb *p, const char *s)
{
	size_t n = strlen(s) + 1;
	memcpy(p->b + p->n, s, n);
	p->n += n;
}

static void
pb_tlv(struct pb *p, uint16_t tag, uint16_t len, const void *v)
{
	pb_u16(p, tag);
	pb_u16(p, len);
	if (len > 0 && v != NULL)
		memcpy(p->b + p->n, v, len);
	else if (len > 0)
		memset(p->b + p->n, 'x', len);
	p->n += len;
}

/* Header (length patched by pb_end) + deliver_sm mandatory part. */
static void
pb_deliver(struct pb *p, uint32_t seq, uint8_t esm, const char *text)
{
	p->n = 0;
	pb_u32(p, 0);
	pb_u32(p, SMPP_DELIVER_SM);
	pb_u32(p, 0);
	pb_u32(p, seq);
	pb_str(p, ""); /* service_type */
	pb_u8(p, 1);
	pb_u8(p, 1);
	pb_str(p, "84912345678"); /* source_addr */
	pb_u8(p, 0);
	pb_u8(p, 0);
	pb_str(p, "8079"); /* destination_addr */
	pb_u8(p, esm);
	pb_u8(p, 0);
	pb_u8(p, 0);
	pb_str(p, "");
	pb_str(p, "");
	pb_u8(p, 0);
	pb_u8(p, 0);
	pb_u8(p, 0); /* data_coding */
	pb_u8(p, 0);
	pb_u8(p, (uint8_t)strlen(text));
	memcpy(p->b + p->n, text, strlen(text));
	p->n += strlen(text);
}

static void
pb_end(struct pb *p)
{
	size_t n = p->n;
	p->n = 0;
	pb_u32(p, (uint32_t)n);
	p->n = n;
}

/* ---------------------------------------------------------------------- */

static int
setup(void **state)
{
	smpp_codec_count_allocs();
	return 0;
}

static int
teardown(void **state)
{
	assert_int_equal(smpp_codec_live_allocs(), 0);
	return 0;
}

static void
test_frame(void **state)
{
	uint8_t b[20] = {0, 0, 0, 16, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 7};
	struct smpp_hdr h;

	assert_int_equal(smpp_codec_frame(b, 10, 8192, &h), SMPP_FRAME_MORE);
	assert_int_equal(smpp_codec_frame(b, 16, 8192, &h), SMPP_FRAME_OK);
	assert_int_equal(h.cmd, SMPP_ENQUIRE_LINK);
	assert_int_equal(h.seq, 7);
	b[3] = 15; /* shorter than a header */
	assert_int_equal(smpp_codec_frame(b, 16, 8192, &h), SMPP_FRAME_BAD);
	b[0] = 0x7F; /* oversize command_length: refused before any read */
	b[3] = 16;
	assert_int_equal(smpp_codec_frame(b, 16, 8192, &h), SMPP_FRAME_BAD);
	b[0] = 0;
	b[2] = 0x20; /* 8208 > 8192 */
	assert_int_equal(smpp_codec_frame(b, 16, 8192, &h), SMPP_FRAME_BAD);
	b[2] = 0;
	b[3] = 20; /* whole PDU not there yet */
	assert_int_equal(smpp_codec_frame(b, 16, 8192, &h), SMPP_FRAME_MORE);
}

static void
test_bind_roundtrip(void **state)
{
	static const uint32_t cmds[] = {SMPP_BIND_TRANSCEIVER, SMPP_BIND_TRANSMITTER,
	                                SMPP_BIND_RECEIVER};
	uint8_t b[SMPP_OUT_MAX];
	struct smpp_hdr h;

	for (size_t i = 0; i < 3; i++) {
		struct smpp_bind bd = {cmds[i], "skillgate", "secret", "VMA"};
		int n = smpp_codec_encode_bind(b, sizeof b, 42, &bd);
		assert_true(n > 16);
		assert_int_equal(smpp_codec_frame(b, (size_t)n, 8192, &h), SMPP_FRAME_OK);
		assert_int_equal(h.cmd, cmds[i]);
		assert_int_equal(h.seq, 42);
		assert_int_equal(h.len, n);
		assert_memory_equal(b + 16, "skillgate\0secret\0VMA\0\x34", 22);
		assert_int_equal(smpp_codec_selfcheck(b, (size_t)n), 0);
	}
	struct smpp_bind bad = {SMPP_BIND_TRANSCEIVER, "a-system-id-too-long", "x", ""};
	assert_int_equal(smpp_codec_encode_bind(b, sizeof b, 1, &bad), -1);
	struct smpp_bind ok = {SMPP_BIND_TRANSCEIVER, "x", "y", ""};
	assert_int_equal(smpp_codec_encode_bind(b, sizeof b, 0, &ok), -1); /* seq 0 */
	assert_int_equal(smpp_codec_encode_bind(b, sizeof b, 0x80000000u, &ok), -1);
}

static void
test_simple_roundtrip(void **state)
{
	uint8_t b[64];
	struct smpp_hdr h;

	int n = smpp_codec_encode_enquire_link(b, sizeof b, 0x7FFFFFFF);
	assert_int_equal(n, 16);
	assert_int_equal(smpp_codec_frame(b, 16, 8192, &h), SMPP_FRAME_OK);
	assert_int_equal(h.cmd, SMPP_ENQUIRE_LINK);
	assert_int_equal(h.seq, 0x7FFFFFFF);
	assert_int_equal(smpp_codec_selfcheck(b, 16), 0);
	n = smpp_codec_encode_unbind(b, sizeof b, 3);
	assert_int_equal(n, 16);
	assert_int_equal(smpp_codec_frame(b, 16, 8192, &h), SMPP_FRAME_OK);
	assert_int_equal(h.cmd, SMPP_UNBIND);
	assert_int_equal(smpp_codec_selfcheck(b, 16), 0);
}

static void
test_resp_encode(void **state)
{
	uint8_t b[64];
	struct smpp_hdr h;
	static const struct {
		uint32_t cmd, seq, status, want_cmd, want_len;
	} cases[] = {
	    {SMPP_DELIVER_SM, 9, 0, SMPP_DELIVER_SM | SMPP_RESP_BIT, 17},
	    {SMPP_DELIVER_SM, 0, 0, SMPP_DELIVER_SM | SMPP_RESP_BIT, 17}, /* seq 0 */
	    {SMPP_DELIVER_SM, 5, 0x64, SMPP_DELIVER_SM | SMPP_RESP_BIT, 16},
	    {SMPP_DATA_SM, 5, 0, SMPP_DATA_SM | SMPP_RESP_BIT, 17},
	    {SMPP_ENQUIRE_LINK, 5, 0, SMPP_ENQUIRE_LINK | SMPP_RESP_BIT, 16},
	    {SMPP_UNBIND, 5, 0, SMPP_UNBIND | SMPP_RESP_BIT, 16},
	    {0x00001234, 5, SMPP_RINVCMDID, SMPP_GENERIC_NACK, 16}, /* unknown command */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int n = smpp_codec_encode_resp(b, sizeof b, cases[i].cmd, cases[i].seq,
		                               cases[i].status);
		assert_int_equal(n, cases[i].want_len);
		assert_int_equal(smpp_codec_frame(b, (size_t)n, 8192, &h), SMPP_FRAME_OK);
		assert_int_equal(h.cmd, cases[i].want_cmd);
		assert_int_equal(h.seq, cases[i].seq);
		assert_int_equal(h.status, cases[i].status);
	}
	assert_int_equal(smpp_codec_encode_generic_nack(b, sizeof b, 0, SMPP_RINVCMDLEN), 16);
	assert_int_equal(smpp_codec_encode_resp(b, 10, SMPP_DELIVER_SM, 1, 0), -1);
}

/* One segment with a UDH, SAR TLVs and a service type: a field of each kind. */
static const uint8_t UDH[] = {5, 0, 3, 7, 2, 1, 'h', 'i'};

static struct smpp_submit
submit_segment(void)
{
	return (struct smpp_submit){.service_type = "USSD",
	                            .src_ton = 3,
	                            .src = "8079",
	                            .dst_ton = 1,
	                            .dst_npi = 1,
	                            .dst = "84912345678",
	                            .esm_class = 0x40,
	                            .registered_delivery = 1,
	                            .data_coding = 8,
	                            .sm = UDH,
	                            .sm_len = sizeof UDH,
	                            .sar = true,
	                            .sar_ref = 0x1234,
	                            .sar_total = 2,
	                            .sar_seq = 1};
}

/* The text in message_payload, with every other TLV we send. */
static struct smpp_submit
submit_payload(const uint8_t *payload, uint16_t n)
{
	return (struct smpp_submit){.src = "8079",
	                            .dst = "84912345678",
	                            .data_coding = 8,
	                            .payload = payload,
	                            .payload_len = n,
	                            .has_ussd_op = true,
	                            .ussd_op = 2,
	                            .has_its_session = true,
	                            .its_session = 0x2501,
	                            .has_umr = true,
	                            .umr = 0xBEEF};
}

static void
test_submit_roundtrip(void **state)
{
	uint8_t b[SMPP_OUT_MAX], payload[1024];
	struct smpp_submit_view v;

	memset(payload, 'p', sizeof payload);
	struct smpp_submit s = submit_segment();
	int n = smpp_codec_encode_submit(b, sizeof b, 11, &s);
	assert_true(n > 0);
	assert_int_equal(smpp_codec_unpack_submit(b, (size_t)n, &v), 0);
	assert_string_equal(v.service_type, "USSD");
	assert_string_equal(v.src, "8079");
	assert_string_equal(v.dst, "84912345678");
	assert_int_equal(v.src_ton, 3);
	assert_int_equal(v.dst_ton, 1);
	assert_int_equal(v.esm_class, 0x40);
	assert_int_equal(v.registered_delivery, 1);
	assert_int_equal(v.sm_len, sizeof UDH);
	assert_memory_equal(v.sm, UDH, sizeof UDH);
	assert_true(v.sar);
	assert_int_equal(v.sar_ref, 0x1234);
	assert_int_equal(v.sar_total, 2);
	assert_int_equal(v.sar_seq, 1);

	struct smpp_submit u = submit_payload(payload, sizeof payload);
	n = smpp_codec_encode_submit(b, sizeof b, 12, &u);
	assert_true(n > 1024);
	assert_int_equal(smpp_codec_unpack_submit(b, (size_t)n, &v), 0);
	assert_true(v.payload);
	assert_int_equal(v.sm_len, 1024);
	assert_memory_equal(v.sm, payload, 1024);
	assert_int_equal(v.data_coding, 8);
	assert_true(v.has_ussd_op);
	assert_int_equal(v.ussd_op, 2);
	assert_int_equal(v.its_session, 0x2501);
	assert_int_equal(v.umr, 0xBEEF);
	/* the same bytes as the hardened inbound walker reads them */
	assert_int_equal(smpp_codec_selfcheck(b, (size_t)n), 0);
}

/*
 * submit_sm is written by hand: these are the bytes smpp34_pack() wrote for
 * the same fields (TLVs in its order, last added first). Every shorter
 * buffer is refused.
 */
static void
test_submit_bytes(void **state)
{
	uint8_t b[SMPP_OUT_MAX], pl[] = {'p', 'q', 'r', 's', 't'};
	static const uint8_t want_a[] = {
	    0x00, 0x00, 0x00, 0x4c, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00,
	    0x00, 0x00, 0x0b, 0x55, 0x53, 0x53, 0x44, 0x00, 0x03, 0x00, 0x38, 0x30, 0x37,
	    0x39, 0x00, 0x01, 0x01, 0x38, 0x34, 0x39, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36,
	    0x37, 0x38, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x08, 0x00, 0x08,
	    0x05, 0x00, 0x03, 0x07, 0x02, 0x01, 0x68, 0x69, 0x02, 0x0f, 0x00, 0x01, 0x01,
	    0x02, 0x0e, 0x00, 0x01, 0x02, 0x02, 0x0c, 0x00, 0x02, 0x12, 0x34};
	static const uint8_t want_b[] = {
	    0x00, 0x00, 0x00, 0x4a, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x7f,
	    0xff, 0xff, 0xff, 0x00, 0x00, 0x09, 0x38, 0x30, 0x37, 0x39, 0x00, 0x00, 0x00,
	    0x38, 0x34, 0x39, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x00, 0x00,
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x02, 0x04, 0x00, 0x02,
	    0xbe, 0xef, 0x13, 0x83, 0x00, 0x02, 0x25, 0x01, 0x05, 0x01, 0x00, 0x01, 0x02,
	    0x04, 0x24, 0x00, 0x05, 0x70, 0x71, 0x72, 0x73, 0x74};
	static const uint8_t want_c[] = {0x00, 0x00, 0x00, 0x22, 0x00, 0x00, 0x00, 0x04, 0x00,
	                                 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
	                                 0x00, 0x00, 0x00, 0x00, 0x31, 0x00, 0x00, 0x00, 0x00,
	                                 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
	struct smpp_submit a = submit_segment(), pb = submit_payload(pl, sizeof pl);
	struct smpp_submit c = {.src = "", .dst = "1"};

	pb.src_npi = 9;
	assert_int_equal(smpp_codec_encode_submit(b, sizeof b, 11, &a), sizeof want_a);
	assert_memory_equal(b, want_a, sizeof want_a);
	assert_int_equal(smpp_codec_encode_submit(b, sizeof b, 0x7fffffff, &pb), sizeof want_b);
	assert_memory_equal(b, want_b, sizeof want_b);
	assert_int_equal(smpp_codec_encode_submit(b, sizeof b, 1, &c), sizeof want_c);
	assert_memory_equal(b, want_c, sizeof want_c);
	for (size_t cap = 0; cap < sizeof want_a; cap++)
		assert_int_equal(smpp_codec_encode_submit(b, cap, 11, &a), -1);
	c.service_type = "CMTxyz"; /* 6 characters: no room for the NUL */
	assert_int_equal(smpp_codec_encode_submit(b, sizeof b, 1, &c), -1);
}

static void
test_submit_refused(void **state)
{
	uint8_t b[SMPP_OUT_MAX], big[1025] = {0};
	struct smpp_submit s = {.src = "8079", .dst = "84912345678", .sm = big, .sm_len = 254};

	assert_int_equal(smpp_codec_encode_submit(b, sizeof b, 1, &s), -1); /* > 253 */
	s.sm_len = 0;
	s.payload = big;
	s.payload_len = 1025;
	assert_int_equal(smpp_codec_encode_submit(b, sizeof b, 1, &s), -1);
	s.payload_len = 10;
	s.dst = "012345678901234567890"; /* 21 characters */
	assert_int_equal(smpp_codec_encode_submit(b, sizeof b, 1, &s), -1);
	s.dst = "84912345678";
	assert_int_equal(smpp_codec_encode_submit(b, sizeof b, 0, &s), -1); /* seq 0 */
}

static void
test_inbound_ok(void **state)
{
	struct pb p;
	struct smpp_inbound in;
	uint8_t st = 2, ne[3] = {3, 0, 5};

	pb_deliver(&p, 77, 0x04, "id:0001A2 stat:DELIVRD");
	pb_tlv(&p, SMPP_TLV_RECEIPTED_MESSAGE_ID, 7, "0001A2");
	pb_tlv(&p, SMPP_TLV_MESSAGE_STATE, 1, &st);
	pb_tlv(&p, SMPP_TLV_NETWORK_ERROR_CODE, 3, ne);
	pb_end(&p);
	assert_int_equal(smpp_codec_decode_inbound(p.b, p.n, &in), SMPP_ROK);
	assert_int_equal(in.seq, 77);
	assert_string_equal(in.src, "84912345678");
	assert_string_equal(in.dst, "8079");
	assert_int_equal(in.esm_class, 0x04);
	assert_int_equal(in.sm_len, 22);
	assert_memory_equal(in.sm, "id:0001A2 stat:DELIVRD", 22);
	assert_true(in.has_receipted_id);
	assert_string_equal(in.receipted_id, "0001A2");
	assert_int_equal(in.message_state, 2);
	assert_true(in.has_network_error);
	assert_int_equal(in.network_error[2], 5);

	uint16_t its = 0x2500;
	uint8_t op = 1;
	its = (uint16_t)((its >> 8) | (its << 8)); /* big endian on the wire */
	pb_deliver(&p, 78, 0, "*8079#");
	pb_tlv(&p, SMPP_TLV_USSD_SERVICE_OP, 1, &op);
	pb_tlv(&p, SMPP_TLV_ITS_SESSION_INFO, 2, &its);
	pb_end(&p);
	assert_int_equal(smpp_codec_decode_inbound(p.b, p.n, &in), SMPP_ROK);
	assert_true(in.has_ussd_op);
	assert_int_equal(in.ussd_op, 1);
	assert_int_equal(in.its_session, 0x2500);
}

static void
test_inbound_data_sm_payload(void **state)
{
	struct pb p;
	struct smpp_inbound in;

	p.n = 0;
	pb_u32(&p, 0);
	pb_u32(&p, SMPP_DATA_SM);
	pb_u32(&p, 0);
	pb_u32(&p, 5);
	pb_str(&p, "");
	pb_u8(&p, 1);
	pb_u8(&p, 1);
	pb_str(&p, "0912345678");
	pb_u8(&p, 0);
	pb_u8(&p, 0);
	pb_str(&p, "8079");
	pb_u8(&p, 0);
	pb_u8(&p, 0);
	pb_u8(&p, 8);
	pb_tlv(&p, SMPP_TLV_MESSAGE_PAYLOAD, 1024, NULL);
	pb_end(&p);
	assert_int_equal(smpp_codec_decode_inbound(p.b, p.n, &in), SMPP_ROK);
	assert_int_equal(in.cmd, SMPP_DATA_SM);
	assert_true(in.payload);
	assert_int_equal(in.sm_len, 1024);
	assert_int_equal(in.data_coding, 8);
}

/* Hostile inputs: each gets a precise status and nothing reaches libsmpp34. */
static void
test_inbound_hostile(void **state)
{
	struct pb p;
	struct smpp_inbound in;
	uint8_t one = 1;

	/* 29 small TLVs (libsmpp34 overflows its log buffer): refused */
	pb_deliver(&p, 1, 0, "hi");
	for (int i = 0; i < 29; i++)
		pb_tlv(&p, 0x1400, 1, &one);
	pb_end(&p);
	assert_int_equal(smpp_codec_decode_inbound(p.b, p.n, &in), SMPP_RINVOPTPARSTREAM);
	/* 16 are fine, 17 are not */
	pb_deliver(&p, 1, 0, "hi");
	for (int i = 0; i < 16; i++)
		pb_tlv(&p, 0x1400, 1, &one);
	pb_end(&p);
	assert_int_equal(smpp_codec_decode_inbound(p.b, p.n, &in), SMPP_ROK);
	pb_tlv(&p, 0x1400, 1, &one);
	pb_end(&p);
	assert_int_equal(smpp_codec_decode_inbound(p.b, p.n, &in), SMPP_RINVOPTPARSTREAM);

	/* truncated TLV: length says 10, 3 bytes follow */
	pb_deliver(&p, 1, 0, "hi");
	pb_tlv(&p, 0x1400, 3, "abc");
	p.b[p.n - 4] = 10;
	pb_end(&p);
	assert_int_equal(smpp_codec_decode_inbound(p.b, p.n, &in), SMPP_RINVOPTPARSTREAM);
	/* a TLV header cut in half */
	pb_deliver(&p, 1, 0, "hi");
	pb_u16(&p, 0x0427);
	pb_end(&p);
	assert_int_equal(smpp_codec_decode_inbound(p.b, p.n, &in), SMPP_RINVOPTPARSTREAM);

	/* wrong numeric TLV length: sar_msg_ref_num with 1 byte */
	pb_deliver(&p, 1, 0x40, "hi");
	pb_tlv(&p, SMPP_TLV_SAR_MSG_REF_NUM, 1, &one);
	pb_end(&p);
	assert_int_equal(smpp_codec_decode_inbound(p.b, p.n, &in), SMPP_RINVPARLEN);
	pb_deliver(&p, 1, 0, "hi");
	pb_tlv(&p, SMPP_TLV_MESSAGE_STATE, 4, "abcd");
	pb_end(&p);
	assert_int_equal(smpp_codec_decode_inbound(p.b, p.n, &in), SMPP_RINVPARLEN);

	/* 1025-byte message_payload */
	pb_deliver(&p, 1, 0, "");
	pb_tlv(&p, SMPP_TLV_MESSAGE_PAYLOAD, 1025, NULL);
	pb_end(&p);
	assert_int_equal(smpp_codec_decode_inbound(p.b, p.n, &in), SMPP_RINVPARLEN);
	/* short_message and message_payload together */
	pb_deliver(&p, 1, 0, "hi");
	pb_tlv(&p, SMPP_TLV_MESSAGE_PAYLOAD, 3, "abc");
	pb_end(&p);
	assert_int_equal(smpp_codec_decode_inbound(p.b, p.n, &in), SMPP_RINVOPTPARSTREAM);

	/* sm_length beyond the PDU */
	pb_deliver(&p, 1, 0, "hello");
	p.n -= 3;
	pb_end(&p);
	assert_int_equal(smpp_codec_decode_inbound(p.b, p.n, &in), SMPP_RINVMSGLEN);
	/* command_length that does not match the buffer */
	pb_deliver(&p, 1, 0, "hello");
	pb_end(&p);
	assert_int_equal(smpp_codec_decode_inbound(p.b, p.n - 1, &in), SMPP_RINVCMDLEN);
}

static void
test_inbound_unterminated(void **state)
{
	struct pb p;
	struct smpp_inbound in;

	/* source_addr runs to the end of the PDU without a NUL */
	p.n = 0;
	pb_u32(&p, 0);
	pb_u32(&p, SMPP_DELIVER_SM);
	pb_u32(&p, 0);
	pb_u32(&p, 3);
	pb_str(&p, "");
	pb_u8(&p, 1);
	pb_u8(&p, 1);
	memcpy(p.b + p.n, "8491234", 7);
	p.n += 7;
	pb_end(&p);
	assert_int_equal(smpp_codec_decode_inbound(p.b, p.n, &in), SMPP_RINVCMDLEN);
	/* an address longer than 20 characters (deliver_sm) */
	pb_deliver(&p, 1, 0, "x");
	p.n = 16;
	pb_str(&p, "");
	pb_u8(&p, 1);
	pb_u8(&p, 1);
	pb_str(&p, "123456789012345678901");
	memset(p.b + p.n, 0, 40);
	p.n += 40;
	pb_end(&p);
	assert_int_equal(smpp_codec_decode_inbound(p.b, p.n, &in), SMPP_RINVCMDLEN);
	/* empty body */
	pb_deliver(&p, 1, 0, "");
	p.n = 16;
	pb_end(&p);
	assert_int_equal(smpp_codec_decode_inbound(p.b, p.n, &in), SMPP_RINVCMDLEN);
}

static void
test_inbound_seq0(void **state)
{
	struct pb p;
	struct smpp_inbound in;
	uint8_t b[32];

	pb_deliver(&p, 0, 0, "1"); /* Kannel's drive_smpp starts at 0 */
	pb_end(&p);
	assert_int_equal(smpp_codec_decode_inbound(p.b, p.n, &in), SMPP_ROK);
	assert_int_equal(in.seq, 0);
	int n = smpp_codec_encode_resp(b, sizeof b, in.cmd, in.seq, SMPP_ROK);
	assert_int_equal(n, 17);
	assert_memory_equal(b, "\0\0\0\x11\x80\0\0\x05\0\0\0\0\0\0\0\0\0", 17);
}

static void
test_resp_decode(void **state)
{
	char id[66];
	/* submit_sm_resp, vendor status 0x400, header only */
	uint8_t vend[16] = {0, 0, 0, 16, 0x80, 0, 0, 4, 0, 0, 4, 0, 0, 0, 0, 9};
	assert_int_equal(smpp_codec_decode_resp(vend, 16, id, sizeof id), 0);
	assert_string_equal(id, "");
	/* header-only bind_transceiver_resp with an error */
	uint8_t bnd[16] = {0, 0, 0, 16, 0x80, 0, 0, 9, 0, 0, 0, 0x0E, 0, 0, 0, 1};
	assert_int_equal(smpp_codec_decode_resp(bnd, 16, id, sizeof id), 0);
	assert_string_equal(id, "");
	/* submit_sm_resp error status + empty message_id (17 bytes) */
	uint8_t e17[17] = {0, 0, 0, 17, 0x80, 0, 0, 4, 0, 0, 0, 0x58, 0, 0, 0, 2, 0};
	assert_int_equal(smpp_codec_decode_resp(e17, 17, id, sizeof id), 0);
	assert_string_equal(id, "");
	/* submit_sm_resp OK with an id */
	uint8_t ok[23] = {0, 0, 0, 23, 0x80, 0,   0,   4,   0,   0, 0, 0,
	                  0, 0, 0, 3,  '0',  '0', '1', 'A', '2', 0, 0};
	ok[3] = 22;
	assert_int_equal(smpp_codec_decode_resp(ok, 22, id, sizeof id), 0);
	assert_string_equal(id, "001A2");
	/* OK with an unterminated id */
	assert_int_equal(smpp_codec_decode_resp(ok, 21, id, sizeof id), -1);
	assert_string_equal(id, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_frame, teardown),
	    cmocka_unit_test_teardown(test_bind_roundtrip, teardown),
	    cmocka_unit_test_teardown(test_simple_roundtrip, teardown),
	    cmocka_unit_test_teardown(test_resp_encode, teardown),
	    cmocka_unit_test_teardown(test_submit_roundtrip, teardown),
	    cmocka_unit_test_teardown(test_submit_bytes, teardown),
	    cmocka_unit_test_teardown(test_submit_refused, teardown),
	    cmocka_unit_test_teardown(test_inbound_ok, teardown),
	    cmocka_unit_test_teardown(test_inbound_data_sm_payload, teardown),
	    cmocka_unit_test_teardown(test_inbound_hostile, teardown),
	    cmocka_unit_test_teardown(test_inbound_unterminated, teardown),
	    cmocka_unit_test_teardown(test_inbound_seq0, teardown),
	    cmocka_unit_test_teardown(test_resp_decode, teardown),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}

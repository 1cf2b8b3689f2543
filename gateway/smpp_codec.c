/*
 * smpp_codec.c — SMPP 3.4 PDUs as bytes (see smpp_codec.h).
 *
 * The only file that includes libsmpp34. libsmpp34 packs the requests we
 * send now and then (bind_*, unbind, enquire_link); submit_sm, sent per
 * segment, is written by hand in the same bytes. Everything a peer sends is read
 * by own bounded code first: the 16-byte header by smpp_codec_frame(), the
 * body of deliver_sm/data_sm by a validating walker that never reads past
 * command_length and enforces libsmpp34's own caps, and responses from the
 * header (plus the first C-string when status is 0). Responses we send are
 * built by hand so sequence 0 and vendor statuses work (notes §2.7 #6-#8).
 * libsmpp34 is never asked to unpack peer input: its parser overflows a
 * global log buffer on many TLVs and leaks on bad TLVs (notes §2.7 #1, #3).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <smpp34.h>
#include <smpp34_structs.h>
#include <smpp34_params.h>
#include <smpp34_heap.h>

#include "log.h"
#include "smpp_codec.h"
#include "strbuf.h"

#define MOD "smpp_codec"

/* ---------------------------------------------------------------------- */
/* Byte helpers                                                            */

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void
put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* A bounded reader over one PDU body. */
struct rd {
	const uint8_t *p;
	size_t left;
	int bad; /* set once anything did not fit */
};

static uint8_t
rd_u8(struct rd *r)
{
	if (r->left < 1) {
		r->bad = 1;
		return 0;
	}
	r->left--;
	return *r->p++;
}

/*
 * Reads a C-string of at most max octets including the NUL, bounded by the
 * bytes left; copies it into out (cap >= max). Unterminated or too long:
 * r->bad.
 */
static void
rd_cstr(struct rd *r, char *out, size_t max)
{
	size_t lim = r->left < max ? r->left : max;
	const uint8_t *nul = memchr(r->p, 0, lim);

	out[0] = '\0';
	if (r->bad || nul == NULL) {
		r->bad = 1;
		return;
	}
	size_t n = (size_t)(nul - r->p);
	memcpy(out, r->p, n);
	out[n] = '\0';
	r->p += n + 1;
	r->left -= n + 1;
}

/* ---------------------------------------------------------------------- */
/* Framing                                                                 */

enum smpp_frame
smpp_codec_frame(const uint8_t *buf, size_t avail, uint32_t max_pdu, struct smpp_hdr *hdr)
{
	if (avail < SMPP_HDR_LEN)
		return SMPP_FRAME_MORE;
	hdr->len = get32(buf);
	hdr->cmd = get32(buf + 4);
	hdr->status = get32(buf + 8);
	hdr->seq = get32(buf + 12);
	if (hdr->len < SMPP_HDR_LEN || hdr->len > max_pdu)
		return SMPP_FRAME_BAD;
	if (avail < hdr->len)
		return SMPP_FRAME_MORE;
	return SMPP_FRAME_OK;
}

/* ---------------------------------------------------------------------- */
/* Inbound deliver_sm / data_sm                                            */

/*
 * Exact lengths of the numeric TLVs libsmpp34 knows for deliver_sm/data_sm
 * (def_frame/deliver_sm.tlv, data_sm.tlv), and caps of its octet TLVs. 0 = not numeric.
 */
struct tlv_rule {
	uint16_t tag;
	uint16_t exact; /* numeric: exact length */
	uint16_t cap;   /* octet string: max length */
};

static const struct tlv_rule tlv_rules[] = {
    {0x0204, 2, 0},            /* user_message_reference */
    {0x020A, 2, 0},            /* source_port */
    {0x020B, 2, 0},            /* destination_port */
    {0x020C, 2, 0},            /* sar_msg_ref_num */
    {0x020E, 1, 0},            /* sar_total_segments */
    {0x020F, 1, 0},            /* sar_segment_seqnum */
    {0x0205, 1, 0},            /* user_response_code */
    {0x0201, 1, 0},            /* privacy_indicator */
    {0x0019, 1, 0},            /* payload_type */
    {0x020D, 1, 0},            /* language_indicator */
    {0x1383, 2, 0},            /* its_session_info */
    {0x0427, 1, 0},            /* message_state */
    {0x0421, 1, 0},            /* set_dpf */
    {0x000E, 1, 0},            /* source_network_type */
    {0x000D, 1, 0},            /* source_addr_subunit */
    {0x000F, 1, 0},            /* source_bearer_type */
    {0x0010, 1, 0},            /* source_telematics_id */
    {0x0005, 1, 0},            /* dest_addr_subunit */
    {0x0006, 1, 0},            /* dest_network_type */
    {0x0007, 1, 0},            /* dest_bearer_type */
    {0x0008, 2, 0},            /* dest_telematics_id */
    {0x0426, 1, 0},            /* more_messages_to_send */
    {0x0017, 4, 0},            /* qos_time_to_live */
    {0x0302, 1, 0},            /* callback_num_pres_ind */
    {0x1201, 1, 0},            /* display_time */
    {0x1203, 2, 0},            /* sms_signal */
    {0x1204, 1, 0},            /* ms_validity */
    {0x0030, 1, 0},            /* ms_msg_wait_facilities */
    {0x0304, 1, 0},            /* number_of_messages */
    {0x1380, 1, 0},            /* its_reply_type */
    {0x0501, 1, 0},            /* ussd_service_op (octet string of 1 in practice) */
    {0x0424, 0, SMPP_TLV_MAX}, /* message_payload */
    {0x0381, 0, 19},           /* callback_num */
    {0x0303, 0, 65},           /* callback_num_atag */
    {0x0202, 0, 23},           /* source_subaddress */
    {0x0203, 0, 23},           /* dest_subaddress */
    {0x0423, 0, 3},            /* network_error_code */
    {0x001E, 0, 65},           /* receipted_message_id */
    {0x130C, 0, 0},            /* alert_on_message_delivery: empty */
};

/* Returns SMPP_ROK or the status for a TLV of this tag and length. */
static uint32_t
tlv_check(uint16_t tag, uint16_t len)
{
	for (size_t i = 0; i < sizeof tlv_rules / sizeof tlv_rules[0]; i++) {
		const struct tlv_rule *r = &tlv_rules[i];
		if (r->tag != tag)
			continue;
		if (r->exact != 0)
			return len == r->exact ? SMPP_ROK : SMPP_RINVPARLEN;
		return len <= r->cap ? SMPP_ROK : SMPP_RINVPARLEN;
	}
	return len <= SMPP_TLV_MAX ? SMPP_ROK : SMPP_RINVPARLEN;
}

/* Stores the TLVs we use; v has len bytes already checked by tlv_check. */
static void
tlv_take(struct smpp_inbound *in, uint16_t tag, const uint8_t *v, uint16_t len)
{
	switch (tag) {
	case SMPP_TLV_MESSAGE_PAYLOAD:
		in->sm = v;
		in->sm_len = len;
		in->payload = true;
		break;
	case SMPP_TLV_RECEIPTED_MESSAGE_ID: {
		size_t n = strnlen((const char *)v, len);
		memcpy(in->receipted_id, v, n);
		in->receipted_id[n] = '\0';
		in->has_receipted_id = true;
		break;
	}
	case SMPP_TLV_MESSAGE_STATE:
		in->message_state = v[0];
		in->has_message_state = true;
		break;
	case SMPP_TLV_NETWORK_ERROR_CODE:
		if (len == 3) {
			memcpy(in->network_error, v, 3);
			in->has_network_error = true;
		}
		break;
	case SMPP_TLV_USSD_SERVICE_OP:
		in->ussd_op = v[0];
		in->has_ussd_op = true;
		break;
	case SMPP_TLV_ITS_SESSION_INFO:
		in->its_session = get16(v);
		in->has_its_session = true;
		break;
	case SMPP_TLV_USER_MESSAGE_REFERENCE:
		in->umr = get16(v);
		in->has_umr = true;
		break;
	case SMPP_TLV_SAR_MSG_REF_NUM:
		in->sar_ref = get16(v);
		in->has_sar = true;
		break;
	case SMPP_TLV_SAR_TOTAL_SEGMENTS:
		in->sar_total = v[0];
		break;
	case SMPP_TLV_SAR_SEGMENT_SEQNUM:
		in->sar_seq = v[0];
		break;
	default:
		break;
	}
}

/* Walks the TLV area p..p+n. */
static uint32_t
tlv_walk(struct smpp_inbound *in, const uint8_t *p, size_t n)
{
	bool had_sm = in->sm_len > 0;

	while (n > 0) {
		if (n < 4)
			return SMPP_RINVOPTPARSTREAM;
		uint16_t tag = get16(p), len = get16(p + 2);
		if ((size_t)len > n - 4)
			return SMPP_RINVOPTPARSTREAM;
		if (++in->n_tlvs > SMPP_MAX_TLVS)
			return SMPP_RINVOPTPARSTREAM;
		uint32_t st = tlv_check(tag, len);
		if (st != SMPP_ROK)
			return st;
		if (tag == SMPP_TLV_MESSAGE_PAYLOAD && had_sm)
			return SMPP_RINVOPTPARSTREAM; /* both short_message and payload */
		tlv_take(in, tag, p + 4, len);
		p += 4 + len;
		n -= 4 + (size_t)len;
	}
	if (in->has_sar && (in->sar_total == 0 || in->sar_seq == 0))
		in->has_sar = false;
	return SMPP_ROK;
}

/* deliver_sm mandatory part after the addresses. */
static void
walk_deliver_tail(struct rd *r, struct smpp_inbound *in)
{
	char tbuf[18];

	in->esm_class = rd_u8(r);
	(void)rd_u8(r);       /* protocol_id */
	(void)rd_u8(r);       /* priority_flag */
	rd_cstr(r, tbuf, 17); /* schedule_delivery_time */
	rd_cstr(r, tbuf, 17); /* validity_period */
	in->registered_delivery = rd_u8(r);
	(void)rd_u8(r); /* replace_if_present_flag */
	in->data_coding = rd_u8(r);
	(void)rd_u8(r); /* sm_default_msg_id */
}

uint32_t
smpp_codec_decode_inbound(const uint8_t *pdu, size_t len, struct smpp_inbound *in)
{
	memset(in, 0, sizeof *in);
	if (len < SMPP_HDR_LEN || get32(pdu) != len)
		return SMPP_RINVCMDLEN;
	in->cmd = get32(pdu + 4);
	in->seq = get32(pdu + 12);
	if (in->cmd != SMPP_DELIVER_SM && in->cmd != SMPP_DATA_SM)
		return SMPP_RINVCMDID;

	bool dsm = in->cmd == SMPP_DATA_SM;
	struct rd r = {pdu + SMPP_HDR_LEN, len - SMPP_HDR_LEN, 0};
	rd_cstr(&r, in->service_type, sizeof in->service_type);
	in->src_ton = rd_u8(&r);
	in->src_npi = rd_u8(&r);
	rd_cstr(&r, in->src, dsm ? 65 : 21);
	in->dst_ton = rd_u8(&r);
	in->dst_npi = rd_u8(&r);
	rd_cstr(&r, in->dst, dsm ? 65 : 21);
	if (dsm) {
		in->esm_class = rd_u8(&r);
		in->registered_delivery = rd_u8(&r);
		in->data_coding = rd_u8(&r);
	} else {
		walk_deliver_tail(&r, in);
		uint8_t sm_len = rd_u8(&r);
		if (r.bad)
			return SMPP_RINVCMDLEN;
		if (sm_len > r.left)
			return SMPP_RINVMSGLEN;
		in->sm = r.p;
		in->sm_len = sm_len;
		r.p += sm_len;
		r.left -= sm_len;
	}
	if (r.bad)
		return SMPP_RINVCMDLEN;
	return tlv_walk(in, r.p, r.left);
}

/* ---------------------------------------------------------------------- */
/* Responses                                                               */

int
smpp_codec_decode_resp(const uint8_t *pdu, size_t len, char *id, size_t idcap)
{
	char tmp[66];

	if (idcap > 0)
		id[0] = '\0';
	if (len < SMPP_HDR_LEN || get32(pdu + 8) != SMPP_ROK)
		return 0;
	if (len == SMPP_HDR_LEN)
		return 0; /* no body: some SMSCs send a bare header */
	struct rd r = {pdu + SMPP_HDR_LEN, len - SMPP_HDR_LEN, 0};
	rd_cstr(&r, tmp, sizeof tmp);
	if (r.bad)
		return -1;
	str_copy(id, idcap, tmp);
	return 0;
}

int
smpp_codec_encode_resp(uint8_t *buf, size_t cap, uint32_t cmd, uint32_t seq, uint32_t status)
{
	uint32_t rid = cmd | SMPP_RESP_BIT;
	size_t n = SMPP_HDR_LEN;

	switch (cmd) {
	case SMPP_DELIVER_SM:
	case SMPP_DATA_SM:
		if (status == SMPP_ROK)
			n++; /* empty message_id; error responses are header-only */
		break;
	case SMPP_UNBIND:
	case SMPP_ENQUIRE_LINK:
		break;
	default: /* unknown or not ours to answer: generic_nack */
		rid = SMPP_GENERIC_NACK;
		break;
	}
	if (cap < n)
		return -1;
	put32(buf, (uint32_t)n);
	put32(buf + 4, rid);
	put32(buf + 8, status);
	put32(buf + 12, seq);
	if (n > SMPP_HDR_LEN)
		buf[SMPP_HDR_LEN] = 0;
	return (int)n;
}

int
smpp_codec_encode_generic_nack(uint8_t *buf, size_t cap, uint32_t seq, uint32_t status)
{
	if (cap < SMPP_HDR_LEN)
		return -1;
	put32(buf, SMPP_HDR_LEN);
	put32(buf + 4, SMPP_GENERIC_NACK);
	put32(buf + 8, status);
	put32(buf + 12, seq);
	return SMPP_HDR_LEN;
}

/* ---------------------------------------------------------------------- */
/* Encoders                                                                */

static bool
seq_ok(uint32_t seq)
{
	return seq >= 1 && seq <= SMPP_SEQ_MAX;
}

/* Copies s into a fixed field of cap bytes (NUL included); -1 if too long. */
static int
put_str(uint8_t *field, size_t cap, const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	if (n >= cap)
		return -1;
	if (n > 0)
		memcpy(field, s, n);
	field[n] = 0;
	return 0;
}

/* Packs pdu into buf; returns the length or -1. */
static int
pack(uint8_t *buf, size_t cap, void *pdu, const char *what)
{
	int len = 0;

	if (cap > INT32_MAX)
		cap = INT32_MAX;
	if (smpp34_pack2(buf, (int)cap, &len, pdu) != 0) {
		const char *e = smpp34_strerror;
		size_t el = strlen(e);
		log_warn(MOD, "cannot pack %s: %s", what, el > 120 ? e + el - 120 : e);
		return -1;
	}
	return len;
}

int
smpp_codec_encode_bind(uint8_t *buf, size_t cap, uint32_t seq, const struct smpp_bind *b)
{
	bind_transceiver_t p; /* the three bind bodies have the same layout */

	if (!seq_ok(seq))
		return -1;
	if (b->cmd != SMPP_BIND_TRANSCEIVER && b->cmd != SMPP_BIND_TRANSMITTER &&
	    b->cmd != SMPP_BIND_RECEIVER)
		return -1;
	memset(&p, 0, sizeof p);
	p.command_id = b->cmd;
	p.sequence_number = seq;
	if (put_str(p.system_id, sizeof p.system_id, b->system_id) ||
	    put_str(p.password, sizeof p.password, b->password) ||
	    put_str(p.system_type, sizeof p.system_type, b->system_type))
		return -1;
	p.interface_version = 0x34;
	return pack(buf, cap, &p, "bind");
}

static int
simple_pdu(uint8_t *buf, size_t cap, uint32_t cmd, uint32_t seq)
{
	enquire_link_t p; /* header only, like unbind_t */

	if (!seq_ok(seq))
		return -1;
	memset(&p, 0, sizeof p);
	p.command_id = cmd;
	p.sequence_number = seq;
	return pack(buf, cap, &p, smpp_codec_cmd_name(cmd));
}

int
smpp_codec_encode_unbind(uint8_t *buf, size_t cap, uint32_t seq)
{
	return simple_pdu(buf, cap, SMPP_UNBIND, seq);
}

int
smpp_codec_encode_enquire_link(uint8_t *buf, size_t cap, uint32_t seq)
{
	return simple_pdu(buf, cap, SMPP_ENQUIRE_LINK, seq);
}

/* A bounded writer for the one request built by hand (submit_sm). */
struct wr {
	uint8_t *p;
	size_t left;
	int bad; /* set once anything did not fit */
};

static void
wr_bytes(struct wr *w, const void *v, size_t n)
{
	if (w->bad || n > w->left) {
		w->bad = 1;
		return;
	}
	if (n > 0)
		memcpy(w->p, v, n);
	w->p += n;
	w->left -= n;
}

static void
wr_u8(struct wr *w, uint8_t v)
{
	wr_bytes(w, &v, 1);
}

/* A C-Octet String field of at most cap bytes, NUL included. */
static void
wr_cstr(struct wr *w, const char *s, size_t cap)
{
	size_t n = s != NULL ? strlen(s) : 0;

	if (n >= cap)
		w->bad = 1;
	wr_bytes(w, s, n);
	wr_u8(w, 0);
}

static void
wr_tlv(struct wr *w, uint16_t tag, const void *v, uint16_t len)
{
	uint8_t h[4] = {(uint8_t)(tag >> 8), (uint8_t)tag, (uint8_t)(len >> 8), (uint8_t)len};

	wr_bytes(w, h, sizeof h);
	wr_bytes(w, v, len);
}

static void
wr_tlv16(struct wr *w, uint16_t tag, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};

	wr_tlv(w, tag, b, 2);
}

/*
 * submit_sm is written here rather than by smpp34_pack(): it is the PDU sent
 * per segment, and the library formats a log line per field into a 2 KiB
 * buffer it clears first, and allocates each TLV (about a sixth of the
 * daemon's CPU in the MO->reply bench). The bytes are the ones the library
 * wrote, TLVs in its order (last added first); tests read them back with
 * smpp34_unpack (smpp_codec_unpack_submit).
 */
int
smpp_codec_encode_submit(uint8_t *buf, size_t cap, uint32_t seq, const struct smpp_submit *s)
{
	struct wr w = {buf, cap, 0};
	uint8_t hdr[SMPP_HDR_LEN] = {0};

	if (!seq_ok(seq) || s->sm_len > 253 || s->payload_len > SMPP_TLV_MAX ||
	    (s->payload != NULL && s->sm_len > 0))
		return -1;
	put32(hdr + 4, SMPP_SUBMIT_SM);
	put32(hdr + 12, seq);
	wr_bytes(&w, hdr, sizeof hdr);
	wr_cstr(&w, s->service_type, 6);
	wr_u8(&w, s->src_ton);
	wr_u8(&w, s->src_npi);
	wr_cstr(&w, s->src, 21);
	wr_u8(&w, s->dst_ton);
	wr_u8(&w, s->dst_npi);
	wr_cstr(&w, s->dst, 21);
	wr_u8(&w, s->esm_class);
	wr_u8(&w, 0); /* protocol_id */
	wr_u8(&w, 0); /* priority_flag */
	wr_u8(&w, 0); /* schedule_delivery_time "" */
	wr_u8(&w, 0); /* validity_period "" */
	wr_u8(&w, s->registered_delivery);
	wr_u8(&w, 0); /* replace_if_present_flag */
	wr_u8(&w, s->data_coding);
	wr_u8(&w, 0); /* sm_default_msg_id */
	wr_u8(&w, (uint8_t)s->sm_len);
	wr_bytes(&w, s->sm, s->sm_len);
	if (s->has_umr)
		wr_tlv16(&w, TLVID_user_message_reference, s->umr);
	if (s->has_its_session)
		wr_tlv16(&w, TLVID_its_session_info, s->its_session);
	if (s->has_ussd_op)
		wr_tlv(&w, TLVID_ussd_service_op, &s->ussd_op, 1);
	if (s->sar) {
		uint8_t n = s->sar_seq, total = s->sar_total;
		wr_tlv(&w, TLVID_sar_segment_seqnum, &n, 1);
		wr_tlv(&w, TLVID_sar_total_segments, &total, 1);
		wr_tlv16(&w, TLVID_sar_msg_ref_num, s->sar_ref);
	}
	if (s->payload != NULL)
		wr_tlv(&w, TLVID_message_payload, s->payload, s->payload_len);
	if (w.bad)
		return -1;
	put32(buf, (uint32_t)(w.p - buf));
	return (int)(w.p - buf);
}

/* ---------------------------------------------------------------------- */
/* Self-checks (our own PDUs only)                                         */

int
smpp_codec_selfcheck(const uint8_t *pdu, size_t len)
{
	union {
		submit_sm_t submit;
		bind_transceiver_t bind;
		enquire_link_t simple;
		deliver_sm_resp_t dresp;
	} u;

	if (len < SMPP_HDR_LEN || len > SMPP_OUT_MAX || get32(pdu + 12) == 0)
		return -1;
	memset(&u, 0, sizeof u);
	int rc = smpp34_unpack2(&u, pdu, (int)len);
	if (get32(pdu + 4) == SMPP_SUBMIT_SM)
		destroy_tlv(u.submit.tlv);
	return rc == 0 ? 0 : -1;
}

static void
view_tlv(struct smpp_submit_view *v, const tlv_t *t)
{
	switch (t->tag) {
	case TLVID_message_payload:
		memcpy(v->sm, t->value.octet, t->length);
		v->sm_len = t->length;
		v->payload = true;
		break;
	case TLVID_sar_msg_ref_num:
		v->sar = true;
		v->sar_ref = t->value.val16;
		break;
	case TLVID_sar_total_segments:
		v->sar_total = t->value.val08;
		break;
	case TLVID_sar_segment_seqnum:
		v->sar_seq = t->value.val08;
		break;
	case TLVID_ussd_service_op:
		v->has_ussd_op = true;
		v->ussd_op = t->value.octet[0];
		break;
	case TLVID_its_session_info:
		v->has_its_session = true;
		v->its_session = t->value.val16;
		break;
	case TLVID_user_message_reference:
		v->has_umr = true;
		v->umr = t->value.val16;
		break;
	default:
		break;
	}
}

int
smpp_codec_unpack_submit(const uint8_t *pdu, size_t len, struct smpp_submit_view *v)
{
	submit_sm_t p;

	memset(v, 0, sizeof *v);
	if (len < SMPP_HDR_LEN || len > SMPP_OUT_MAX || get32(pdu + 4) != SMPP_SUBMIT_SM ||
	    get32(pdu + 12) == 0)
		return -1;
	memset(&p, 0, sizeof p);
	int rc = smpp34_unpack(SUBMIT_SM, &p, pdu, (int)len);
	if (rc == 0) {
		str_copy(v->service_type, sizeof v->service_type, (char *)p.service_type);
		str_copy(v->src, sizeof v->src, (char *)p.source_addr);
		str_copy(v->dst, sizeof v->dst, (char *)p.destination_addr);
		v->src_ton = p.source_addr_ton;
		v->src_npi = p.source_addr_npi;
		v->dst_ton = p.dest_addr_ton;
		v->dst_npi = p.dest_addr_npi;
		v->esm_class = p.esm_class;
		v->registered_delivery = p.registered_delivery;
		v->data_coding = p.data_coding;
		memcpy(v->sm, p.short_message, p.sm_length);
		v->sm_len = p.sm_length;
		tlv_t *t;
		smpp34_tlv_for_each(t, p.tlv) view_tlv(v, t);
	}
	destroy_tlv(p.tlv);
	return rc == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------------- */
/* Names, allocation counting                                              */

const char *
smpp_codec_cmd_name(uint32_t cmd)
{
	switch (cmd) {
	case SMPP_GENERIC_NACK:
		return "generic_nack";
	case SMPP_BIND_RECEIVER:
		return "bind_receiver";
	case SMPP_BIND_RECEIVER | SMPP_RESP_BIT:
		return "bind_receiver_resp";
	case SMPP_BIND_TRANSMITTER:
		return "bind_transmitter";
	case SMPP_BIND_TRANSMITTER | SMPP_RESP_BIT:
		return "bind_transmitter_resp";
	case SMPP_BIND_TRANSCEIVER:
		return "bind_transceiver";
	case SMPP_BIND_TRANSCEIVER | SMPP_RESP_BIT:
		return "bind_transceiver_resp";
	case SMPP_SUBMIT_SM:
		return "submit_sm";
	case SMPP_SUBMIT_SM | SMPP_RESP_BIT:
		return "submit_sm_resp";
	case SMPP_DELIVER_SM:
		return "deliver_sm";
	case SMPP_DELIVER_SM | SMPP_RESP_BIT:
		return "deliver_sm_resp";
	case SMPP_DATA_SM:
		return "data_sm";
	case SMPP_DATA_SM | SMPP_RESP_BIT:
		return "data_sm_resp";
	case SMPP_UNBIND:
		return "unbind";
	case SMPP_UNBIND | SMPP_RESP_BIT:
		return "unbind_resp";
	case SMPP_ENQUIRE_LINK:
		return "enquire_link";
	case SMPP_ENQUIRE_LINK | SMPP_RESP_BIT:
		return "enquire_link_resp";
	case SMPP_OUTBIND:
		return "outbind";
	case SMPP_ALERT_NOTIFICATION:
		return "alert_notification";
	default:
		return "unknown";
	}
}

static long live_allocs;

static void *
count_malloc(size_t sz)
{
	void *p = malloc(sz);
	if (p != NULL)
		live_allocs++;
	return p;
}

static void *
count_realloc(void *ptr, size_t sz)
{
	void *p = realloc(ptr, sz);
	if (p != NULL && ptr == NULL)
		live_allocs++;
	return p;
}

static void
count_free(void *p)
{
	if (p != NULL)
		live_allocs--;
	free(p);
}

void
smpp_codec_count_allocs(void)
{
	static const struct smpp34_memory_functions mf = {count_malloc, count_realloc, count_free};
	static int done;

	if (!done) {
		smpp34_set_memory_functions(&mf);
		done = 1;
	}
}

long
smpp_codec_live_allocs(void)
{
	return live_allocs;
}

/*
 * smpp_codec.h — SMPP 3.4 PDUs as bytes: framing by the 16-byte header,
 * hardened decoding of what an SMSC sends us, encoding of what we send.
 *
 * gateway/smpp_codec.c is the only file that includes libsmpp34; every other
 * file works with the plain structs below. Nothing here does I/O.
 *
 * Inbound deliver_sm/data_sm are walked field by field with every length
 * bounded (C-strings within the remaining bytes, sm_length, every TLV,
 * numeric TLVs of exact length, octet TLVs within libsmpp34's caps, at most
 * SMPP_MAX_TLVS TLVs) before anything is trusted, so a peer cannot reach
 * libsmpp34's parser bugs (notes §2.7). Responses with a non-zero status are
 * handled from the header alone.
 */
#ifndef SG_SMPP_CODEC_H
#define SG_SMPP_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMPP_HDR_LEN 16
#define SMPP_SEQ_MAX 0x7FFFFFFFu
#define SMPP_MAX_TLVS 16
#define SMPP_TLV_MAX 1024 /* libsmpp34's octet TLV cap */
#define SMPP_OUT_MAX 2048 /* encoded PDUs we send fit in this */

/* Command ids (own names: libsmpp34's macros stay inside the codec). */
#define SMPP_GENERIC_NACK 0x80000000u
#define SMPP_BIND_RECEIVER 0x00000001u
#define SMPP_BIND_TRANSMITTER 0x00000002u
#define SMPP_SUBMIT_SM 0x00000004u
#define SMPP_DELIVER_SM 0x00000005u
#define SMPP_UNBIND 0x00000006u
#define SMPP_BIND_TRANSCEIVER 0x00000009u
#define SMPP_OUTBIND 0x0000000Bu
#define SMPP_ENQUIRE_LINK 0x00000015u
#define SMPP_ALERT_NOTIFICATION 0x00000102u
#define SMPP_DATA_SM 0x00000103u
#define SMPP_RESP_BIT 0x80000000u

/* command_status values we use. */
#define SMPP_ROK 0x00u
#define SMPP_RINVMSGLEN 0x01u
#define SMPP_RINVCMDLEN 0x02u
#define SMPP_RINVCMDID 0x03u
#define SMPP_RINVBNDSTS 0x04u
#define SMPP_RSYSERR 0x08u
#define SMPP_RMSGQFUL 0x14u
#define SMPP_RTHROTTLED 0x58u
#define SMPP_RX_T_APPN 0x64u
#define SMPP_RINVOPTPARSTREAM 0xC0u
#define SMPP_RINVPARLEN 0xC2u
/* Local pseudo-status, never on the wire: no response (timeout, link lost). */
#define SMPP_STATUS_NORESP 0xFFFFFFFFu

/* TLV tags we read or write. */
#define SMPP_TLV_RECEIPTED_MESSAGE_ID 0x001E
#define SMPP_TLV_USER_MESSAGE_REFERENCE 0x0204
#define SMPP_TLV_SAR_MSG_REF_NUM 0x020C
#define SMPP_TLV_SAR_TOTAL_SEGMENTS 0x020E
#define SMPP_TLV_SAR_SEGMENT_SEQNUM 0x020F
#define SMPP_TLV_NETWORK_ERROR_CODE 0x0423
#define SMPP_TLV_MESSAGE_PAYLOAD 0x0424
#define SMPP_TLV_MESSAGE_STATE 0x0427
#define SMPP_TLV_USSD_SERVICE_OP 0x0501
#define SMPP_TLV_ITS_SESSION_INFO 0x1383

struct smpp_hdr {
	uint32_t len, cmd, status, seq;
};

/* Result of smpp_codec_frame(). */
enum smpp_frame {
	SMPP_FRAME_MORE = 0, /* fewer bytes than a header or than command_length */
	SMPP_FRAME_OK = 1,   /* a whole PDU of hdr->len bytes is at the start */
	SMPP_FRAME_BAD = -1, /* command_length < 16 or > max_pdu: close the link */
};

/*
 * Reads the header from the first avail bytes of buf (any alignment) and
 * says whether a whole PDU is there. command_length is checked against
 * max_pdu before the caller reads or allocates anything more.
 */
enum smpp_frame smpp_codec_frame(const uint8_t *buf, size_t avail, uint32_t max_pdu,
                                 struct smpp_hdr *hdr);

/* An inbound deliver_sm or data_sm, fully decoded into plain fields. */
struct smpp_inbound {
	uint32_t cmd, seq;
	char service_type[6];
	uint8_t src_ton, src_npi, dst_ton, dst_npi;
	char src[66], dst[66]; /* data_sm allows 64 characters */
	uint8_t esm_class, registered_delivery, data_coding;
	const uint8_t *sm; /* short_message or message_payload (points into the PDU) */
	uint16_t sm_len;
	bool payload; /* sm comes from message_payload */
	bool has_receipted_id, has_message_state, has_network_error;
	char receipted_id[66];
	uint8_t message_state;
	uint8_t network_error[3];
	bool has_ussd_op, has_its_session, has_umr, has_sar;
	uint8_t ussd_op;
	uint16_t its_session, umr;
	uint16_t sar_ref;
	uint8_t sar_total, sar_seq;
	int n_tlvs;
};

/*
 * Validates and decodes a whole deliver_sm or data_sm (pdu, len = its
 * command_length, header included). Pointers in *out point into pdu.
 * Returns SMPP_ROK, or the command_status to answer the PDU with
 * (ESME_RINVCMDLEN for a truncated mandatory part, ESME_RINVMSGLEN for a bad
 * sm_length, ESME_RINVOPTPARSTREAM for a TLV that does not fit or too many
 * TLVs, ESME_RINVPARLEN for a TLV of the wrong length). Sequence 0 is
 * accepted: answer it with smpp_codec_resp().
 */
uint32_t smpp_codec_decode_inbound(const uint8_t *pdu, size_t len, struct smpp_inbound *out);

/*
 * The body of a successful response: message_id of submit_sm_resp /
 * data_sm_resp or system_id of bind_*_resp, copied into id (NUL-terminated,
 * "" when absent or when status != 0 — then the body is never parsed).
 * Returns 0, or -1 when the body is malformed (id is then "").
 */
int smpp_codec_decode_resp(const uint8_t *pdu, size_t len, char *id, size_t idcap);

/* What a bind carries. */
struct smpp_bind {
	uint32_t cmd; /* SMPP_BIND_TRANSCEIVER, _TRANSMITTER or _RECEIVER */
	const char *system_id, *password, *system_type;
};

/* One submit_sm. Strings are copied; too long ones make the encode fail. */
struct smpp_submit {
	const char *service_type;
	uint8_t src_ton, src_npi, dst_ton, dst_npi;
	const char *src, *dst;
	uint8_t esm_class, registered_delivery, data_coding;
	const uint8_t *sm; /* short_message (<= 253) or NULL */
	uint16_t sm_len;
	const uint8_t *payload; /* message_payload (<= 1024) or NULL */
	uint16_t payload_len;
	bool sar;
	uint16_t sar_ref;
	uint8_t sar_total, sar_seq;
	bool has_ussd_op;
	uint8_t ussd_op;
	bool has_its_session;
	uint16_t its_session;
	bool has_umr;
	uint16_t umr;
};

/*
 * Encoders: write one PDU into buf (cap >= SMPP_OUT_MAX is always enough)
 * and return its length, or -1 (bad argument, seq outside 1..0x7FFFFFFF for
 * requests, library refusal; logged at warn).
 */
int smpp_codec_encode_bind(uint8_t *buf, size_t cap, uint32_t seq, const struct smpp_bind *b);
int smpp_codec_encode_submit(uint8_t *buf, size_t cap, uint32_t seq, const struct smpp_submit *s);
int smpp_codec_encode_unbind(uint8_t *buf, size_t cap, uint32_t seq);
int smpp_codec_encode_enquire_link(uint8_t *buf, size_t cap, uint32_t seq);

/*
 * The response to a request cmd from the peer, built by hand so sequence 0
 * and any status work: deliver_sm_resp / data_sm_resp (empty message_id
 * body when status is 0, header only otherwise), unbind_resp,
 * enquire_link_resp; any other cmd gets a generic_nack with status.
 * Returns the length or -1.
 */
int smpp_codec_encode_resp(uint8_t *buf, size_t cap, uint32_t cmd, uint32_t seq, uint32_t status);

/* generic_nack with status for seq (hand-built; seq 0 allowed). */
int smpp_codec_encode_generic_nack(uint8_t *buf, size_t cap, uint32_t seq, uint32_t status);

/*
 * Decodes a PDU we sent (tests and the fuzzer: round trips) with libsmpp34:
 * returns 0 when libsmpp34 unpacks it, -1 otherwise. Never call it on
 * peer input that smpp_codec_decode_inbound() has not accepted.
 */
int smpp_codec_selfcheck(const uint8_t *pdu, size_t len);

/*
 * Decodes one of our own submit_sm back into *out (strings into the given
 * buffers of 66 bytes; sm/payload copied into smbuf of 1025 bytes). For
 * tests. Returns 0 or -1.
 */
struct smpp_submit_view {
	char service_type[6], src[66], dst[66];
	uint8_t src_ton, src_npi, dst_ton, dst_npi;
	uint8_t esm_class, registered_delivery, data_coding;
	uint8_t sm[1025];
	uint16_t sm_len;
	bool payload, sar, has_ussd_op, has_its_session, has_umr;
	uint16_t sar_ref;
	uint8_t sar_total, sar_seq, ussd_op;
	uint16_t its_session, umr;
};
int smpp_codec_unpack_submit(const uint8_t *pdu, size_t len, struct smpp_submit_view *out);

/* Name of a command id ("submit_sm", ..., "unknown"); static string. */
const char *smpp_codec_cmd_name(uint32_t cmd);

/*
 * Routes libsmpp34's allocations through a counter. Call once, before any
 * encode; smpp_codec_live_allocs() then returns allocations not yet freed
 * (tests assert 0 after each case).
 */
void smpp_codec_count_allocs(void);
long smpp_codec_live_allocs(void);

#endif

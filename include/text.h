/*
 * text.h — everything between UTF-8 inside skillgate and octets on an SMPP
 * link: decoding inbound data_coding values, encoding outbound text as
 * GSM 03.38 (unpacked septets, one per octet, as SMPP carries them) or UCS-2
 * (UTF-16BE, no BOM), folding Vietnamese to GSM-7, and segmenting.
 */
#ifndef SG_TEXT_H
#define SG_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h" /* enum dc0_meaning, long_mode, text_mode */

#define TEXT_MAX_SEGMENTS 16
#define TEXT_PAYLOAD_MAX 1024 /* libsmpp34's message_payload cap */
/* UCS-2 octets in one part with a 16-bit-reference UDH: the least text any
 * long-message mode puts in a part (66 characters) */
#define TEXT_UCS2_UDH16_PART 132

/*
 * Decodes n octets of short_message/message_payload with data_coding dcs to
 * UTF-8 in out (always NUL-terminated when outcap > 0). dcs 0 follows dc0
 * (GSM 03.38 or Latin-1); 1 IA5; 3 Latin-1; 8 UCS-2/UTF-16BE (surrogate
 * pairs); message-class forms 0x10-0x1F and 0xF0-0xF7 by their alphabet
 * bits. Invalid input becomes U+FFFD, never a crash. Returns the UTF-8
 * length written (excluding NUL), truncated to fit outcap.
 */
size_t text_decode(uint8_t dcs, enum dc0_meaning dc0, const uint8_t *in, size_t n, char *out,
                   size_t outcap);

/*
 * Folds Vietnamese (and other Latin diacritics) to plain ASCII letters:
 * tones and vowel marks removed, đ->d, Đ->D. Other characters are kept.
 * Returns bytes written (excluding NUL).
 */
size_t text_fold(const char *utf8, char *out, size_t outcap);

/* True when every character of utf8 is in GSM 03.38 (base or extension). */
bool text_fits_gsm7(const char *utf8);

/* One submit_sm worth of text. */
struct text_segment {
	uint8_t sm[160]; /* short_message octets, UDH included when udhi */
	uint16_t sm_len;
	uint16_t sar_ref;  /* LONG_SAR only */
	uint8_t sar_total; /* LONG_SAR only */
	uint8_t sar_seq;   /* LONG_SAR only, 1-based */
};

struct text_out {
	uint8_t data_coding; /* 0 GSM 03.38 septets, or 8 UCS-2 */
	bool udhi;           /* set esm_class bit 0x40 */
	bool sar;            /* send SAR TLVs */
	bool use_payload;    /* LONG_PAYLOAD: whole text in payload[] */
	int nseg;            /* segments (1 for payload mode, billing counts septets) */
	struct text_segment seg[TEXT_MAX_SEGMENTS];
	uint8_t payload[TEXT_PAYLOAD_MAX];
	uint16_t payload_len;
};

/*
 * Encodes utf8 for a link. mode TEXT_AUTO: GSM 03.38 when every character
 * fits, else UCS-2; TEXT_FOLD: fold first, then GSM 03.38 (characters that
 * still do not fit become '?'); TEXT_UCS2: always UCS-2. Segments at 160/70
 * for one part, 153/67 (UDH 8-bit), 152/66 (UDH 16-bit) or 153/67 (SAR),
 * never splitting an escape sequence or a surrogate pair. ref is the
 * concatenation reference (low 8 bits used for UDH 8-bit).
 * Returns 0, or -1 when the text needs more than max_segments parts (out is
 * then undefined).
 */
int text_encode(const char *utf8, enum text_mode mode, enum long_mode lm, int max_segments,
                uint16_t ref, struct text_out *out);

/* Segments text_encode would produce (for rates, billing and checks). */
int text_count_segments(const char *utf8, enum text_mode mode, enum long_mode lm);

/* GSM-7 length in septets (extension chars count 2), -1 if not GSM-7. */
int text_gsm7_septets(const char *utf8);

#endif

/*
 * text.c — conversion between UTF-8 (everything inside skillgate) and the
 * octets an SMPP link carries: decoding every data_coding we may receive,
 * encoding outbound text as GSM 03.38 (unpacked septets, one per octet) or
 * UCS-2 (UTF-16BE, no BOM), folding Vietnamese to plain letters, and cutting
 * long texts into segments (UDH 8-/16-bit, SAR or message_payload).
 *
 * Hot path: no allocation at all. Everything is table lookups over the input
 * and writes into caller-provided, bounded buffers.
 *
 * Readings of include/text.h chosen here (the header leaves them open):
 *  - Binary data (dcs 2 and 4, the 8-bit alphabet of the message-class forms,
 *    compressed and reserved codings) is rendered like Latin-1, except that
 *    control octets other than TAB/LF/CR become U+FFFD: readable when a
 *    phone or SMSC labels text as 8-bit, visibly odd when it really is binary.
 *  - Codings we cannot decode (5 JIS, 6 Cyrillic, 7 Hebrew, 9, 10, 13, 14)
 *    are read as IA5: ASCII survives, anything else becomes U+FFFD.
 *  - UCS-2: a leading BOM FEFF is dropped; a leading FFFE switches the rest
 *    to little-endian (some handsets do this). U+0000 never reaches the
 *    output (it would cut the C string): it becomes U+FFFD, as do lone
 *    surrogates and a trailing odd octet.
 *  - GSM: an octet >= 0x80 is U+FFFD; ESC followed by an undefined extension
 *    code shows the base-table character (03.38 says so); ESC ESC and a
 *    trailing ESC show a space and U+FFFD respectively.
 *  - Encoding: U+FEFF (BOM / zero-width no-break space) is dropped from
 *    outbound text in every mode, so no BOM is ever sent. A text that fits
 *    one part is always sent in short_message, even with LONG_PAYLOAD; only
 *    a longer text goes to payload[]. max_segments <= 0 means
 *    TEXT_MAX_SEGMENTS, and no mode ever exceeds TEXT_MAX_SEGMENTS.
 *  - TEXT_FOLD folds every character text_fold() knows (so é becomes e even
 *    though GSM has é), drops combining marks, turns a few typographic
 *    characters (curly quotes, dashes, NBSP) into ASCII and anything still
 *    outside GSM 03.38 into '?'.
 *  - Invalid UTF-8 in outbound text is treated as U+FFFD (so TEXT_AUTO
 *    picks UCS-2 for it, TEXT_FOLD sends '?').
 */
#include "text.h"

#include <string.h>

/*
 * include/text.h as first written declares two members named "payload" in
 * struct text_out (the bool and the array), which cannot compile. We read the
 * array as payload[] (the header comment says "whole text in payload[]") and
 * the flag as use_payload; if the header settles on other names, change
 * the two macros below only (tests/unit/test_text.c and
 * tests/fuzz/fuzz_text.c read the flag through the same macro name).
 */
#ifndef TEXT_OUT_PAYLOAD_FLAG
#define TEXT_OUT_PAYLOAD_FLAG use_payload
#endif
#ifndef TEXT_OUT_PAYLOAD_BUF
#define TEXT_OUT_PAYLOAD_BUF payload
#endif

#define REPL 0xFFFDu

/* ---------------------------------------------------------------------
 * GSM 03.38 tables
 */

static const uint16_t gsm_base[128] = {
    0x0040, 0x00A3, 0x0024, 0x00A5, 0x00E8, 0x00E9, 0x00F9, 0x00EC, 0x00F2, 0x00C7, 0x000A, 0x00D8,
    0x00F8, 0x000D, 0x00C5, 0x00E5, 0x0394, 0x005F, 0x03A6, 0x0393, 0x039B, 0x03A9, 0x03A0, 0x03A8,
    0x03A3, 0x0398, 0x039E, 0x00A0, 0x00C6, 0x00E6, 0x00DF, 0x00C9, 0x0020, 0x0021, 0x0022, 0x0023,
    0x00A4, 0x0025, 0x0026, 0x0027, 0x0028, 0x0029, 0x002A, 0x002B, 0x002C, 0x002D, 0x002E, 0x002F,
    0x0030, 0x0031, 0x0032, 0x0033, 0x0034, 0x0035, 0x0036, 0x0037, 0x0038, 0x0039, 0x003A, 0x003B,
    0x003C, 0x003D, 0x003E, 0x003F, 0x00A1, 0x0041, 0x0042, 0x0043, 0x0044, 0x0045, 0x0046, 0x0047,
    0x0048, 0x0049, 0x004A, 0x004B, 0x004C, 0x004D, 0x004E, 0x004F, 0x0050, 0x0051, 0x0052, 0x0053,
    0x0054, 0x0055, 0x0056, 0x0057, 0x0058, 0x0059, 0x005A, 0x00C4, 0x00D6, 0x00D1, 0x00DC, 0x00A7,
    0x00BF, 0x0061, 0x0062, 0x0063, 0x0064, 0x0065, 0x0066, 0x0067, 0x0068, 0x0069, 0x006A, 0x006B,
    0x006C, 0x006D, 0x006E, 0x006F, 0x0070, 0x0071, 0x0072, 0x0073, 0x0074, 0x0075, 0x0076, 0x0077,
    0x0078, 0x0079, 0x007A, 0x00E4, 0x00F6, 0x00F1, 0x00FC, 0x00E0,
}; /* 0x1B (ESC) is handled before the table is consulted */

/* Extension table (after 0x1B): code -> Unicode, 0 = undefined. */
static uint32_t
gsm_ext_to_cp(uint8_t c)
{
	switch (c) {
	case 0x0A:
		return 0x0C;
	case 0x14:
		return '^';
	case 0x28:
		return '{';
	case 0x29:
		return '}';
	case 0x2F:
		return '\\';
	case 0x3C:
		return '[';
	case 0x3D:
		return '~';
	case 0x3E:
		return ']';
	case 0x40:
		return '|';
	case 0x65:
		return 0x20AC;
	default:
		return 0;
	}
}

#define GSM_EXT 0x100 /* flag: escape 0x1B then the low byte */

/*
 * Unicode -> GSM 03.38: the septet, GSM_EXT|septet for the extension table,
 * or -1 when the character has no GSM form.
 */
static int
gsm_from_cp(uint32_t cp)
{
	if (cp < 0x80) {
		switch (cp) {
		case '@':
			return 0x00;
		case '$':
			return 0x02;
		case '_':
			return 0x11;
		case '\n':
			return 0x0A;
		case '\r':
			return 0x0D;
		case '\f':
			return GSM_EXT | 0x0A;
		case '^':
			return GSM_EXT | 0x14;
		case '{':
			return GSM_EXT | 0x28;
		case '}':
			return GSM_EXT | 0x29;
		case '\\':
			return GSM_EXT | 0x2F;
		case '[':
			return GSM_EXT | 0x3C;
		case '~':
			return GSM_EXT | 0x3D;
		case ']':
			return GSM_EXT | 0x3E;
		case '|':
			return GSM_EXT | 0x40;
		case '`':
			return -1;
		default:
			if (cp >= 0x20 && cp <= 0x7A)
				return (int)cp;
			return -1;
		}
	}
	switch (cp) {
	case 0x00A3:
		return 0x01;
	case 0x00A5:
		return 0x03;
	case 0x00E8:
		return 0x04;
	case 0x00E9:
		return 0x05;
	case 0x00F9:
		return 0x06;
	case 0x00EC:
		return 0x07;
	case 0x00F2:
		return 0x08;
	case 0x00C7:
		return 0x09;
	case 0x00D8:
		return 0x0B;
	case 0x00F8:
		return 0x0C;
	case 0x00C5:
		return 0x0E;
	case 0x00E5:
		return 0x0F;
	case 0x0394:
		return 0x10;
	case 0x03A6:
		return 0x12;
	case 0x0393:
		return 0x13;
	case 0x039B:
		return 0x14;
	case 0x03A9:
		return 0x15;
	case 0x03A0:
		return 0x16;
	case 0x03A8:
		return 0x17;
	case 0x03A3:
		return 0x18;
	case 0x0398:
		return 0x19;
	case 0x039E:
		return 0x1A;
	case 0x00C6:
		return 0x1C;
	case 0x00E6:
		return 0x1D;
	case 0x00DF:
		return 0x1E;
	case 0x00C9:
		return 0x1F;
	case 0x00A4:
		return 0x24;
	case 0x00A1:
		return 0x40;
	case 0x00C4:
		return 0x5B;
	case 0x00D6:
		return 0x5C;
	case 0x00D1:
		return 0x5D;
	case 0x00DC:
		return 0x5E;
	case 0x00A7:
		return 0x5F;
	case 0x00BF:
		return 0x60;
	case 0x00E4:
		return 0x7B;
	case 0x00F6:
		return 0x7C;
	case 0x00F1:
		return 0x7D;
	case 0x00FC:
		return 0x7E;
	case 0x00E0:
		return 0x7F;
	case 0x20AC:
		return GSM_EXT | 0x65;
	default:
		return -1;
	}
}

/* ---------------------------------------------------------------------
 * UTF-8 helpers
 */

/*
 * Reads one code point from p (at most end - p bytes; end NULL = stop at
 * NUL) and returns the bytes consumed (0 at the end). Invalid, overlong,
 * surrogate or truncated sequences yield U+FFFD and consume one byte.
 */
static size_t
utf8_next(const unsigned char *p, const unsigned char *end, uint32_t *cp)
{
	size_t avail = end ? (size_t)(end - p) : 4;
	uint32_t c, min;
	size_t len, i;

	if (avail == 0 || (end == NULL && *p == 0))
		return 0;
	c = p[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	} else if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
		c &= 0x1F;
		min = 0x80;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		c &= 0x0F;
		min = 0x800;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		c &= 0x07;
		min = 0x10000;
	} else {
		*cp = REPL;
		return 1;
	}
	for (i = 1; i < len; i++) {
		/* with end == NULL a NUL byte stops us before reading past it */
		if (i >= avail || (p[i] & 0xC0) != 0x80) {
			*cp = REPL;
			return 1;
		}
		c = (c << 6) | (p[i] & 0x3F);
	}
	if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
		*cp = REPL;
		return 1;
	}
	*cp = c;
	return len;
}

static size_t
utf8_put(uint32_t cp, char buf[4])
{
	if (cp < 0x80) {
		buf[0] = (char)cp;
		return 1;
	} else if (cp < 0x800) {
		buf[0] = (char)(0xC0 | (cp >> 6));
		buf[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	} else if (cp < 0x10000) {
		buf[0] = (char)(0xE0 | (cp >> 12));
		buf[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		buf[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	buf[0] = (char)(0xF0 | (cp >> 18));
	buf[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	buf[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	buf[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Bounded UTF-8 writer: stops (and stays stopped) at the first code point
 * that does not fit, so the output never ends in half a character. */
struct wbuf {
	char *out;
	size_t cap; /* usable bytes, NUL excluded */
	size_t len;
	size_t outcap;
	bool full;
};

static void
wb_init(struct wbuf *w, char *out, size_t outcap)
{
	w->out = out;
	w->cap = outcap ? outcap - 1 : 0;
	w->len = 0;
	w->outcap = outcap;
	w->full = outcap == 0;
}

static void
wb_cp(struct wbuf *w, uint32_t cp)
{
	char tmp[4];
	size_t n;

	if (w->full)
		return;
	if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		cp = REPL;
	n = utf8_put(cp, tmp);
	if (w->len + n > w->cap) {
		w->full = true;
		return;
	}
	memcpy(w->out + w->len, tmp, n);
	w->len += n;
}

static void
wb_bytes(struct wbuf *w, const char *s, size_t n)
{
	if (w->full)
		return;
	if (w->len + n > w->cap) {
		w->full = true;
		return;
	}
	memcpy(w->out + w->len, s, n);
	w->len += n;
}

static size_t
wb_finish(struct wbuf *w)
{
	if (w->outcap > 0)
		w->out[w->len] = '\0';
	return w->len;
}

/* ---------------------------------------------------------------------
 * Decoding
 */

enum alphabet { AL_GSM, AL_LATIN1, AL_IA5, AL_BINARY, AL_UCS2 };

/* The alphabet of a data_coding value (see the file comment). */
static enum alphabet
dcs_alphabet(uint8_t dcs, enum dc0_meaning dc0)
{
	static const enum alphabet bits23[4] = {AL_GSM, AL_BINARY, AL_UCS2, AL_BINARY};

	if (dcs < 0x10) {
		switch (dcs) {
		case 0x00:
			return dc0 == DC0_LATIN1 ? AL_LATIN1 : AL_GSM;
		case 0x01:
			return AL_IA5;
		case 0x02:
			return AL_BINARY;
		case 0x03:
			return AL_LATIN1;
		case 0x04:
			return AL_BINARY;
		case 0x08:
			return AL_UCS2;
		default:
			return AL_IA5;
		}
	}
	if (dcs < 0x80) {
		/* GSM 03.38 general data coding (0x40-0x7F: auto-deletion group);
		 * bit 5 = compressed, which we cannot decode. */
		if (dcs & 0x20)
			return AL_BINARY;
		return bits23[(dcs >> 2) & 3];
	}
	if (dcs < 0xC0)
		return AL_BINARY; /* reserved coding groups */
	if (dcs < 0xE0)
		return AL_GSM; /* message waiting, discard / store, GSM */
	if (dcs < 0xF0)
		return AL_UCS2;                   /* message waiting, store, UCS2 */
	return (dcs & 0x04) ? AL_BINARY : AL_GSM; /* data coding / message class */
}

static void
decode_gsm(struct wbuf *w, const uint8_t *in, size_t n)
{
	size_t i;

	for (i = 0; i < n && !w->full; i++) {
		uint8_t c = in[i];

		if (c >= 0x80) {
			wb_cp(w, REPL);
		} else if (c == 0x1B) {
			uint32_t e;

			if (i + 1 >= n) {
				wb_cp(w, REPL);
				break;
			}
			c = in[++i];
			if (c >= 0x80)
				e = REPL;
			else if (c == 0x1B)
				e = ' ';
			else if ((e = gsm_ext_to_cp(c)) == 0)
				e = gsm_base[c];
			wb_cp(w, e);
		} else {
			wb_cp(w, gsm_base[c]);
		}
	}
}

static void
decode_8bit(struct wbuf *w, const uint8_t *in, size_t n, enum alphabet al)
{
	size_t i;

	for (i = 0; i < n && !w->full; i++) {
		uint8_t c = in[i];

		if (al == AL_IA5 && c >= 0x80)
			wb_cp(w, REPL);
		else if (al == AL_BINARY && (c < 0x20 || (c >= 0x7F && c < 0xA0)) && c != '\t' &&
		         c != '\n' && c != '\r')
			wb_cp(w, REPL);
		else
			wb_cp(w, c); /* 0x00 becomes U+FFFD in wb_cp */
	}
}

static void
decode_ucs2(struct wbuf *w, const uint8_t *in, size_t n)
{
	size_t i = 0;
	bool le = false;

	if (n >= 2 && in[0] == 0xFE && in[1] == 0xFF) {
		i = 2;
	} else if (n >= 2 && in[0] == 0xFF && in[1] == 0xFE) {
		i = 2;
		le = true;
	}
	for (; i + 1 < n && !w->full; i += 2) {
		uint32_t u =
		    le ? (uint32_t)(in[i] | in[i + 1] << 8) : (uint32_t)(in[i] << 8 | in[i + 1]);

		if (u >= 0xD800 && u <= 0xDBFF && i + 3 < n) {
			uint32_t l = le ? (uint32_t)(in[i + 2] | in[i + 3] << 8)
			                : (uint32_t)(in[i + 2] << 8 | in[i + 3]);

			if (l >= 0xDC00 && l <= 0xDFFF) {
				wb_cp(w, 0x10000 + ((u - 0xD800) << 10) + (l - 0xDC00));
				i += 2;
				continue;
			}
		}
		wb_cp(w, u); /* lone surrogates and U+0000 become U+FFFD */
	}
	if (i < n && n % 2 == 1 && !w->full)
		wb_cp(w, REPL);
}

/*
 * Decodes n octets in data_coding dcs to UTF-8 (see text.h and the file
 * comment for the reading of each coding). Never reads past in + n, never
 * writes past out + outcap; the result is NUL-terminated when outcap > 0.
 */
size_t
text_decode(uint8_t dcs, enum dc0_meaning dc0, const uint8_t *in, size_t n, char *out,
            size_t outcap)
{
	struct wbuf w;
	enum alphabet al;

	wb_init(&w, out, outcap);
	if (in == NULL)
		n = 0;
	al = dcs_alphabet(dcs, dc0);
	switch (al) {
	case AL_GSM:
		decode_gsm(&w, in, n);
		break;
	case AL_UCS2:
		decode_ucs2(&w, in, n);
		break;
	default:
		decode_8bit(&w, in, n, al);
		break;
	}
	return wb_finish(&w);
}

/* ---------------------------------------------------------------------
 * Folding. Generated from Unicode NFD decompositions (base letter kept,
 * marks dropped) plus hand-written entries for letters that do not
 * decompose (đ, Ð, ø, æ, ß, ł, œ, ...). "" = keep the character.
 * fold_latin covers U+00C0-U+024F (Latin-1 Supplement letters, Latin
 * Extended-A and -B, including ơ Ơ ư Ư); fold_ext covers U+1E00-U+1EFF
 * (Latin Extended Additional: every Vietnamese vowel with a tone mark).
 */
static const char fold_latin[400][3] = {
    "A", "A",  "A",  "A",  "A",  "A",  "AE", "C",  "E",  "E",  "E",  "E",  "I",  "I", "I",  "I",
    "D", "N",  "O",  "O",  "O",  "O",  "O",  "",   "O",  "U",  "U",  "U",  "U",  "Y", "TH", "ss",
    "a", "a",  "a",  "a",  "a",  "a",  "ae", "c",  "e",  "e",  "e",  "e",  "i",  "i", "i",  "i",
    "d", "n",  "o",  "o",  "o",  "o",  "o",  "",   "o",  "u",  "u",  "u",  "u",  "y", "th", "y",
    "A", "a",  "A",  "a",  "A",  "a",  "C",  "c",  "C",  "c",  "C",  "c",  "C",  "c", "D",  "d",
    "D", "d",  "E",  "e",  "E",  "e",  "E",  "e",  "E",  "e",  "E",  "e",  "G",  "g", "G",  "g",
    "G", "g",  "G",  "g",  "H",  "h",  "H",  "h",  "I",  "i",  "I",  "i",  "I",  "i", "I",  "i",
    "I", "i",  "IJ", "ij", "J",  "j",  "K",  "k",  "q",  "L",  "l",  "L",  "l",  "L", "l",  "L",
    "l", "L",  "l",  "N",  "n",  "N",  "n",  "N",  "n",  "n",  "N",  "n",  "O",  "o", "O",  "o",
    "O", "o",  "OE", "oe", "R",  "r",  "R",  "r",  "R",  "r",  "S",  "s",  "S",  "s", "S",  "s",
    "S", "s",  "T",  "t",  "T",  "t",  "T",  "t",  "U",  "u",  "U",  "u",  "U",  "u", "U",  "u",
    "U", "u",  "U",  "u",  "W",  "w",  "Y",  "y",  "Y",  "Z",  "z",  "Z",  "z",  "Z", "z",  "s",
    "b", "B",  "",   "",   "",   "",   "",   "C",  "c",  "",   "D",  "",   "",   "",  "",   "",
    "",  "F",  "f",  "G",  "",   "",   "",   "I",  "K",  "k",  "l",  "",   "",   "N", "n",  "",
    "O", "o",  "",   "",   "P",  "p",  "",   "",   "",   "",   "",   "t",  "T",  "t", "T",  "U",
    "u", "",   "V",  "Y",  "y",  "Z",  "z",  "",   "",   "",   "",   "",   "",   "",  "",   "",
    "",  "",   "",   "",   "DZ", "Dz", "dz", "LJ", "Lj", "lj", "NJ", "Nj", "nj", "A", "a",  "I",
    "i", "O",  "o",  "U",  "u",  "U",  "u",  "U",  "u",  "U",  "u",  "U",  "u",  "",  "A",  "a",
    "A", "a",  "",   "",   "G",  "g",  "G",  "g",  "K",  "k",  "O",  "o",  "O",  "o", "",   "",
    "j", "DZ", "Dz", "dz", "G",  "g",  "",   "",   "N",  "n",  "A",  "a",  "",   "",  "",   "",
    "A", "a",  "A",  "a",  "E",  "e",  "E",  "e",  "I",  "i",  "I",  "i",  "O",  "o", "O",  "o",
    "R", "r",  "R",  "r",  "U",  "u",  "U",  "u",  "S",  "s",  "T",  "t",  "",   "",  "H",  "h",
    "",  "d",  "",   "",   "",   "",   "A",  "a",  "E",  "e",  "O",  "o",  "O",  "o", "O",  "o",
    "O", "o",  "Y",  "y",  "l",  "n",  "t",  "j",  "",   "",   "A",  "C",  "c",  "L", "T",  "s",
    "z", "",   "",   "B",  "U",  "",   "E",  "e",  "J",  "j",  "Q",  "q",  "R",  "r", "Y",  "y",
};
static const char fold_ext[256][3] = {
    "A", "a", "B", "b", "B", "b", "B",  "b", "C", "c", "D", "d", "D", "d", "D", "d", "D", "d", "D",
    "d", "E", "e", "E", "e", "E", "e",  "E", "e", "E", "e", "F", "f", "G", "g", "H", "h", "H", "h",
    "H", "h", "H", "h", "H", "h", "I",  "i", "I", "i", "K", "k", "K", "k", "K", "k", "L", "l", "L",
    "l", "L", "l", "L", "l", "M", "m",  "M", "m", "M", "m", "N", "n", "N", "n", "N", "n", "N", "n",
    "O", "o", "O", "o", "O", "o", "O",  "o", "P", "p", "P", "p", "R", "r", "R", "r", "R", "r", "R",
    "r", "S", "s", "S", "s", "S", "s",  "S", "s", "S", "s", "T", "t", "T", "t", "T", "t", "T", "t",
    "U", "u", "U", "u", "U", "u", "U",  "u", "U", "u", "V", "v", "V", "v", "W", "w", "W", "w", "W",
    "w", "W", "w", "W", "w", "X", "x",  "X", "x", "Y", "y", "Z", "z", "Z", "z", "Z", "z", "h", "t",
    "w", "y", "a", "s", "s", "s", "SS", "",  "A", "a", "A", "a", "A", "a", "A", "a", "A", "a", "A",
    "a", "A", "a", "A", "a", "A", "a",  "A", "a", "A", "a", "A", "a", "E", "e", "E", "e", "E", "e",
    "E", "e", "E", "e", "E", "e", "E",  "e", "E", "e", "I", "i", "I", "i", "O", "o", "O", "o", "O",
    "o", "O", "o", "O", "o", "O", "o",  "O", "o", "O", "o", "O", "o", "O", "o", "O", "o", "O", "o",
    "U", "u", "U", "u", "U", "u", "U",  "u", "U", "u", "U", "u", "U", "u", "Y", "y", "Y", "y", "Y",
    "y", "Y", "y", "",  "",  "",  "",   "",  "",
};

/* The ASCII replacement of cp, "" for a mark to drop, NULL to keep it. */
static const char *
fold_cp(uint32_t cp)
{
	const char *s = NULL;

	if (cp >= 0xC0 && cp < 0x250)
		s = fold_latin[cp - 0xC0];
	else if (cp >= 0x1E00 && cp < 0x1F00)
		s = fold_ext[cp - 0x1E00];
	else if (cp >= 0x0300 && cp <= 0x036F)
		return ""; /* combining diacritical marks (NFD input) */
	if (s != NULL && s[0] == '\0')
		s = NULL;
	return s;
}

/*
 * Folds Latin diacritics (the full Vietnamese alphabet among them) to ASCII
 * letters and drops combining marks; other characters are copied, invalid
 * UTF-8 becomes U+FFFD. Output is bounded by outcap and NUL-terminated when
 * outcap > 0; returns the bytes written.
 */
size_t
text_fold(const char *utf8, char *out, size_t outcap)
{
	const unsigned char *p = (const unsigned char *)utf8;
	struct wbuf w;
	uint32_t cp;
	size_t k;

	wb_init(&w, out, outcap);
	if (p == NULL)
		return wb_finish(&w);
	while (!w.full && (k = utf8_next(p, NULL, &cp)) > 0) {
		const char *f = fold_cp(cp);

		if (f != NULL)
			wb_bytes(&w, f, strlen(f));
		else if (cp == REPL)
			wb_cp(&w, REPL);
		else
			wb_bytes(&w, (const char *)p, k);
		p += k;
	}
	return wb_finish(&w);
}

/* ---------------------------------------------------------------------
 * Encoding and segmentation
 */

/* TEXT_FOLD extras: typographic characters with an ASCII look-alike.
 * Returns the replacement, "" to drop, NULL when there is none. */
static const char *
subst_cp(uint32_t cp)
{
	switch (cp) {
	case '`':
	case 0x2018:
	case 0x2019:
	case 0x201A:
	case 0x201B:
	case 0x2032:
		return "'";
	case 0x00AB:
	case 0x00BB:
	case 0x201C:
	case 0x201D:
	case 0x201E:
	case 0x2033:
		return "\"";
	case 0x2010:
	case 0x2011:
	case 0x2012:
	case 0x2013:
	case 0x2014:
	case 0x2015:
	case 0x2212:
		return "-";
	case 0x00A0:
	case 0x2002:
	case 0x2003:
	case 0x2009:
	case 0x202F:
		return " ";
	case 0x2026:
		return "...";
	case 0x200B:
	case 0x200C:
	case 0x200D:
		return "";
	default:
		return NULL;
	}
}

/*
 * Walks outbound text as unsplittable groups of octets: one septet, or
 * ESC + septet, for GSM; one UTF-16BE code unit, or a surrogate pair, for
 * UCS-2. Both passes of text_encode use it, so they cut identically.
 */
struct grp_iter {
	const unsigned char *p;
	bool fold;
	bool ucs2;
	const char *pend; /* rest of an ASCII replacement being emitted */
};

static int
put_gsm(int c, uint8_t g[4])
{
	if (c & GSM_EXT) {
		g[0] = 0x1B;
		g[1] = (uint8_t)(c & 0x7F);
		return 2;
	}
	g[0] = (uint8_t)c;
	return 1;
}

/* Next group into g; returns its octets, 0 at the end of the text. */
static int
grp_next(struct grp_iter *it, uint8_t g[4])
{
	uint32_t cp;
	size_t k;
	int c;

	for (;;) {
		if (it->pend != NULL && *it->pend != '\0') {
			c = gsm_from_cp((unsigned char)*it->pend++);
			return put_gsm(c < 0 ? '?' : c, g);
		}
		it->pend = NULL;
		k = utf8_next(it->p, NULL, &cp);
		if (k == 0)
			return 0;
		it->p += k;
		if (cp == 0xFEFF)
			continue; /* never send a BOM */
		if (it->ucs2) {
			if (cp < 0x10000) {
				g[0] = (uint8_t)(cp >> 8);
				g[1] = (uint8_t)cp;
				return 2;
			}
			cp -= 0x10000;
			g[0] = (uint8_t)(0xD8 | (cp >> 18));
			g[1] = (uint8_t)(cp >> 10);
			g[2] = (uint8_t)(0xDC | ((cp >> 8) & 0x03));
			g[3] = (uint8_t)cp;
			return 4;
		}
		if (it->fold) {
			const char *f = fold_cp(cp);

			if (f == NULL && gsm_from_cp(cp) < 0)
				f = subst_cp(cp);
			if (f != NULL) {
				it->pend = f;
				continue;
			}
		}
		c = gsm_from_cp(cp);
		return put_gsm(c < 0 ? '?' : c, g);
	}
}

/* GSM-7 septets of utf8 (U+FEFF ignored), -1 when a character has no GSM
 * form or the UTF-8 is invalid. */
static long
gsm7_septets(const char *utf8)
{
	const unsigned char *p = (const unsigned char *)utf8;
	uint32_t cp;
	size_t k;
	long n = 0;

	if (p == NULL)
		return 0;
	while ((k = utf8_next(p, NULL, &cp)) > 0) {
		int c;

		p += k;
		if (cp == 0xFEFF)
			continue;
		if ((c = gsm_from_cp(cp)) < 0)
			return -1;
		n += (c & GSM_EXT) ? 2 : 1;
	}
	return n;
}

/*
 * True when every character is in GSM 03.38 (base or extension table).
 * U+FEFF is ignored (it is never sent); invalid UTF-8 makes it false.
 */
bool
text_fits_gsm7(const char *utf8)
{
	return gsm7_septets(utf8) >= 0;
}

/*
 * GSM-7 length in septets, extension characters counting 2; -1 when the
 * text is not GSM-7 (or longer than INT_MAX septets).
 */
int
text_gsm7_septets(const char *utf8)
{
	long n = gsm7_septets(utf8);

	return n > 0x7FFFFFFF ? -1 : (int)n;
}

/*
 * Shared by text_encode (out != NULL) and text_count_segments (out NULL,
 * no segment limit). Returns the number of segments or -1.
 */
static int
encode_core(const char *utf8, enum text_mode mode, enum long_mode lm, int max_segments,
            uint16_t ref, struct text_out *out)
{
	struct grp_iter it;
	uint8_t g[4];
	bool ucs2;
	size_t single, per, total = 0, used = 0, pos;
	int k, nseg = 1, s;

	if (utf8 == NULL)
		utf8 = "";
	ucs2 = mode == TEXT_UCS2 || (mode == TEXT_AUTO && !text_fits_gsm7(utf8));
	single = ucs2 ? 140 : 160;
	if (lm == LONG_UDH16)
		per = ucs2 ? TEXT_UCS2_UDH16_PART : 152;
	else
		per = ucs2 ? 134 : 153;

	/* Pass 1: total octets and the greedy cut into parts. */
	memset(&it, 0, sizeof(it));
	it.p = (const unsigned char *)utf8;
	it.fold = mode == TEXT_FOLD;
	it.ucs2 = ucs2;
	while ((k = grp_next(&it, g)) > 0) {
		total += (size_t)k;
		if (used + (size_t)k > per) {
			nseg++;
			used = 0;
		}
		used += (size_t)k;
		if (out != NULL && total > single && lm != LONG_PAYLOAD && nseg > max_segments)
			return -1; /* no need to read further */
	}
	if (total <= single)
		nseg = 1;
	else if (lm == LONG_PAYLOAD) {
		if (total > TEXT_PAYLOAD_MAX)
			return -1;
		nseg = 1;
	}
	if (out == NULL)
		return nseg;

	/* Pass 2: fill. */
	memset(out, 0, sizeof(*out));
	out->data_coding = ucs2 ? 8 : 0;
	out->nseg = nseg;
	memset(&it, 0, sizeof(it));
	it.p = (const unsigned char *)utf8;
	it.fold = mode == TEXT_FOLD;
	it.ucs2 = ucs2;
	if (total <= single || lm == LONG_PAYLOAD) {
		uint8_t *dst = total <= single ? out->seg[0].sm : out->TEXT_OUT_PAYLOAD_BUF;

		pos = 0;
		while ((k = grp_next(&it, g)) > 0) {
			memcpy(dst + pos, g, (size_t)k);
			pos += (size_t)k;
		}
		if (total <= single) {
			out->seg[0].sm_len = (uint16_t)pos;
		} else {
			out->TEXT_OUT_PAYLOAD_FLAG = true;
			out->payload_len = (uint16_t)pos;
		}
		return nseg;
	}
	out->udhi = lm == LONG_UDH8 || lm == LONG_UDH16;
	out->sar = lm == LONG_SAR;
	for (s = 0; s < nseg; s++) {
		struct text_segment *seg = &out->seg[s];
		uint8_t *h = seg->sm;

		if (lm == LONG_UDH8) {
			h[0] = 0x05, h[1] = 0x00, h[2] = 0x03;
			h[3] = (uint8_t)ref, h[4] = (uint8_t)nseg, h[5] = (uint8_t)(s + 1);
			seg->sm_len = 6;
		} else if (lm == LONG_UDH16) {
			h[0] = 0x06, h[1] = 0x08, h[2] = 0x04;
			h[3] = (uint8_t)(ref >> 8), h[4] = (uint8_t)ref;
			h[5] = (uint8_t)nseg, h[6] = (uint8_t)(s + 1);
			seg->sm_len = 7;
		} else {
			seg->sar_ref = ref;
			seg->sar_total = (uint8_t)nseg;
			seg->sar_seq = (uint8_t)(s + 1);
		}
	}
	s = 0;
	used = 0;
	while ((k = grp_next(&it, g)) > 0) {
		if (used + (size_t)k > per) {
			s++;
			used = 0;
			if (s >= nseg)
				return -1; /* cannot happen: both passes cut alike */
		}
		memcpy(out->seg[s].sm + out->seg[s].sm_len, g, (size_t)k);
		out->seg[s].sm_len += (uint16_t)k;
		used += (size_t)k;
	}
	return nseg;
}

/*
 * Encodes utf8 for a link into *out (see text.h). Never allocates.
 * Returns 0, or -1 when the text needs more than max_segments parts
 * (max_segments <= 0 or > TEXT_MAX_SEGMENTS means TEXT_MAX_SEGMENTS) or,
 * with LONG_PAYLOAD, more than TEXT_PAYLOAD_MAX octets.
 */
int
text_encode(const char *utf8, enum text_mode mode, enum long_mode lm, int max_segments,
            uint16_t ref, struct text_out *out)
{
	if (out == NULL)
		return -1;
	if (max_segments <= 0 || max_segments > TEXT_MAX_SEGMENTS)
		max_segments = TEXT_MAX_SEGMENTS;
	return encode_core(utf8, mode, lm, max_segments, ref, out) < 0 ? -1 : 0;
}

/*
 * Segments text_encode would produce with an unlimited max_segments (so a
 * caller can see how far over its limit a text is): 1 for a text that fits
 * one part or goes in message_payload, -1 when a payload would exceed
 * TEXT_PAYLOAD_MAX.
 */
int
text_count_segments(const char *utf8, enum text_mode mode, enum long_mode lm)
{
	return encode_core(utf8, mode, lm, 0, 0, NULL);
}

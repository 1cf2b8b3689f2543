/*
 * test_text.c — text.c: decoding of every data_coding (class forms, invalid
 * input), GSM 03.38 / UCS-2 encoding, segmentation limits at their exact
 * boundaries (160/161, 70/71, 153*2, 67*3), escapes and surrogate pairs at a
 * boundary, UDH/SAR/payload layouts, and Vietnamese folding (the full
 * alphabet in both cases, precomposed and NFD).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

/* text.h's struct text_out flag for message_payload (see text.c). */
#ifndef TEXT_OUT_PAYLOAD_FLAG
#define TEXT_OUT_PAYLOAD_FLAG use_payload
#endif

/* Repeats s n times into a static-size caller buffer. */
static char *
rep(char *buf, size_t cap, const char *s, int n)
{
	size_t l = strlen(s), pos = 0;
	int i;

	for (i = 0; i < n; i++) {
		assert_true(pos + l < cap);
		memcpy(buf + pos, s, l);
		pos += l;
	}
	buf[pos] = '\0';
	return buf;
}

/* ------------------------------------------------------------------ decode */

struct dec_case {
	const char *name;
	uint8_t dcs;
	enum dc0_meaning dc0;
	const char *in;
	size_t n;
	const char *want;
};

#define B(s) s, sizeof(s) - 1

static const struct dec_case dec_cases[] = {
    {"gsm basic", 0x00, DC0_GSM, B("Hello \x00 \x01 \x02 \x11"), "Hello @ £ $ _"},
    {"gsm accents", 0x00, DC0_GSM, B("\x04\x05\x7f\x1f\x5b"), "èéàÉÄ"},
    {"gsm greek", 0x00, DC0_GSM, B("\x10\x15"), "ΔΩ"},
    {"gsm ext", 0x00, DC0_GSM,
     B("\x1b\x65\x1b\x28\x1b\x29\x1b\x14\x1b\x2f\x1b\x3c\x1b\x3d\x1b\x3e\x1b\x40"), "€{}^\\[~]|"},
    {"gsm ext undefined -> base", 0x00, DC0_GSM, B("\x1b\x41"), "A"},
    {"gsm trailing esc", 0x00, DC0_GSM, B("ab\x1b"), "ab\xEF\xBF\xBD"},
    {"gsm high octet", 0x00, DC0_GSM, B("a\x80z"), "a\xEF\xBF\xBDz"},
    {"gsm lf cr", 0x00, DC0_GSM, B("a\nb\rc"), "a\nb\rc"},
    {"latin1 dc0 @", 0x00, DC0_LATIN1, B("\x40\xe9"), "@é"},
    {"latin1 dc0 00", 0x00, DC0_LATIN1, B("a\x00"), "a\xEF\xBF\xBD"},
    {"ia5", 0x01, DC0_GSM, B("abc\x80"), "abc\xEF\xBF\xBD"},
    {"latin1 dcs3", 0x03, DC0_GSM, B("\xe9\xff\xa3"), "éÿ£"},
    {"binary dcs2", 0x02, DC0_GSM,
     B("\x01"
       "A\n"),
     "\xEF\xBF\xBD"
     "A\n"},
    {"binary dcs4", 0x04, DC0_GSM, B("Hi\x85\xe9"), "Hi\xEF\xBF\xBDé"},
    {"ucs2", 0x08, DC0_GSM, B("\x00T\x1e\xa1\x00m"), "Tạm"},
    {"ucs2 vietnamese", 0x08, DC0_GSM, B("\x01\x11\x1e\xb9\x00p"), "đẹp"},
    {"ucs2 surrogate pair", 0x08, DC0_GSM, B("\xd8\x3d\xde\x00"), "😀"},
    {"ucs2 lone high", 0x08, DC0_GSM, B("\xd8\x3d\x00\x41"),
     "\xEF\xBF\xBD"
     "A"},
    {"ucs2 lone high at end", 0x08, DC0_GSM, B("\x00\x41\xd8\x3d"), "A\xEF\xBF\xBD"},
    {"ucs2 lone low", 0x08, DC0_GSM, B("\xdc\x00\x00\x41"),
     "\xEF\xBF\xBD"
     "A"},
    {"ucs2 odd length", 0x08, DC0_GSM, B("\x00\x41\x00"), "A\xEF\xBF\xBD"},
    {"ucs2 nul", 0x08, DC0_GSM, B("\x00\x00\x00\x41"),
     "\xEF\xBF\xBD"
     "A"},
    {"ucs2 bom dropped", 0x08, DC0_GSM, B("\xfe\xff\x00\x41"), "A"},
    {"ucs2 le bom", 0x08, DC0_GSM, B("\xff\xfe\x41\x00\xa1\x1e"), "Aạ"},
    {"class 0x10 gsm", 0x10, DC0_LATIN1, B("\x00"), "@"},
    {"class 0x11 gsm", 0x11, DC0_LATIN1, B("\x1b\x65"), "€"},
    {"class 0x14 8bit", 0x14, DC0_GSM, B("AB"), "AB"},
    {"class 0x18 ucs2", 0x18, DC0_GSM, B("\x1e\xa1"), "ạ"},
    {"class 0x19 ucs2", 0x19, DC0_GSM, B("\x00\x41"), "A"},
    {"class 0x1c reserved", 0x1c, DC0_GSM, B("A"), "A"},
    {"compressed 0x28", 0x28, DC0_GSM, B("\x01"), "\xEF\xBF\xBD"},
    {"0xf0 gsm", 0xf0, DC0_LATIN1, B("\x00\x02"), "@$"},
    {"0xf1 gsm", 0xf1, DC0_GSM, B("ok"), "ok"},
    {"0xf4 8bit", 0xf4, DC0_GSM, B("A\x01"), "A\xEF\xBF\xBD"},
    {"0xf7 8bit", 0xf7, DC0_GSM, B("Z"), "Z"},
    {"jis as ia5", 0x05, DC0_GSM, B("a\xa4"), "a\xEF\xBF\xBD"},
    {"empty", 0x08, DC0_GSM, B(""), ""},
};

static void
test_decode_table(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(dec_cases) / sizeof(dec_cases[0]); i++) {
		const struct dec_case *c = &dec_cases[i];
		char out[256];
		size_t n;

		memset(out, 'X', sizeof(out));
		n = text_decode(c->dcs, c->dc0, (const uint8_t *)c->in, c->n, out, sizeof(out));
		if (strcmp(out, c->want) != 0 || n != strlen(c->want))
			fail_msg("case '%s': got '%s' (%zu), want '%s'", c->name, out, n, c->want);
	}
}

static void
test_decode_truncation(void **state)
{
	/* "ạạ" is 6 UTF-8 bytes; capacity 6 leaves room for one plus NUL */
	const uint8_t in[] = {0x1e, 0xa1, 0x1e, 0xa1};
	char out[8];
	size_t n;

	memset(out, 'X', sizeof(out));
	n = text_decode(8, DC0_GSM, in, sizeof(in), out, 6);
	assert_int_equal(n, 3);
	assert_string_equal(out, "ạ");
	n = text_decode(8, DC0_GSM, in, sizeof(in), out, 7);
	assert_int_equal(n, 6);
	assert_string_equal(out, "ạạ");
	n = text_decode(8, DC0_GSM, in, sizeof(in), out, 1);
	assert_int_equal(n, 0);
	assert_string_equal(out, "");
	out[0] = 'Q';
	n = text_decode(8, DC0_GSM, in, sizeof(in), out, 0);
	assert_int_equal(n, 0);
	assert_int_equal(out[0], 'Q');
	n = text_decode(0, DC0_GSM, NULL, 5, out, sizeof(out));
	assert_int_equal(n, 0);
}

/* ---------------------------------------------------- fold (Vietnamese) */

static const char *const fold_cases[][2] = {
    /* the full Vietnamese alphabet, lower case */
    {"a à á ả ã ạ ă ằ ắ ẳ ẵ ặ â ầ ấ ẩ ẫ ậ", "a a a a a a a a a a a a a a a a a a"},
    {"đ", "d"},
    {"e è é ẻ ẽ ẹ ê ề ế ể ễ ệ", "e e e e e e e e e e e e"},
    {"i ì í ỉ ĩ ị", "i i i i i i"},
    {"o ò ó ỏ õ ọ ô ồ ố ổ ỗ ộ ơ ờ ớ ở ỡ ợ", "o o o o o o o o o o o o o o o o o o"},
    {"u ù ú ủ ũ ụ ư ừ ứ ử ữ ự", "u u u u u u u u u u u u"},
    {"y ỳ ý ỷ ỹ ỵ", "y y y y y y"},
    /* and upper case */
    {"A À Á Ả Ã Ạ Ă Ằ Ắ Ẳ Ẵ Ặ Â Ầ Ấ Ẩ Ẫ Ậ", "A A A A A A A A A A A A A A A A A A"},
    {"Đ", "D"},
    {"E È É Ẻ Ẽ Ẹ Ê Ề Ế Ể Ễ Ệ", "E E E E E E E E E E E E"},
    {"I Ì Í Ỉ Ĩ Ị", "I I I I I I"},
    {"O Ò Ó Ỏ Õ Ọ Ô Ồ Ố Ổ Ỗ Ộ Ơ Ờ Ớ Ở Ỡ Ợ", "O O O O O O O O O O O O O O O O O O"},
    {"U Ù Ú Ủ Ũ Ụ Ư Ừ Ứ Ử Ữ Ự", "U U U U U U U U U U U U"},
    {"Y Ỳ Ý Ỷ Ỹ Ỵ", "Y Y Y Y Y Y"},
    /* sentences */
    {"Kỹ năng số cơ bản của Đảng viên", "Ky nang so co ban cua Dang vien"},
    {"Bạn đã trả lời đúng 4/5 câu hỏi!", "Ban da tra loi dung 4/5 cau hoi!"},
    /* NFD: base letters followed by combining marks U+0300-U+036F */
    {"Vie\xcc\x82\xcc\xa3t", "Viet"}, /* e + circumflex + dot below */
    {"a\xcc\x80 a\xcc\x81 a\xcc\x89 a\xcc\x83 a\xcc\xa3", "a a a a a"},
    {"o\xcc\x9b\xcc\x81 u\xcc\x9b\xcc\x80", "o u"}, /* horn + tone */
    {"A\xcd\xaf", "A"},                             /* U+036F, last of the block */
    /* other Latin letters and things that are kept */
    {"Ærøskøbing Straße Łódź", "AEroskobing Strasse Lodz"},
    {"Ð ð", "D d"},
    {"日本 € 😀 @", "日本 € 😀 @"},
    {"plain ascii 123", "plain ascii 123"},
    {"", ""},
    {"bad \xff utf8", "bad \xEF\xBF\xBD utf8"},
};

static void
test_fold_table(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(fold_cases) / sizeof(fold_cases[0]); i++) {
		char out[256];
		size_t n = text_fold(fold_cases[i][0], out, sizeof(out));

		if (strcmp(out, fold_cases[i][1]) != 0 || n != strlen(fold_cases[i][1]))
			fail_msg("fold '%s': got '%s', want '%s'", fold_cases[i][0], out,
			         fold_cases[i][1]);
		/* the folded alphabet is GSM-7 */
		if (i < 16)
			assert_true(text_fits_gsm7(out));
	}
}

static void
test_fold_bounded(void **state)
{
	char out[4];

	assert_int_equal(text_fold("ẠẠẠẠẠẠ", out, sizeof(out)), 3);
	assert_string_equal(out, "AAA");
	assert_int_equal(text_fold("日本", out, sizeof(out)), 3); /* one char + NUL */
	assert_string_equal(out, "日");
	assert_int_equal(text_fold(NULL, out, sizeof(out)), 0);
	assert_string_equal(out, "");
}

/* ------------------------------------------------------ gsm7 helpers */

static void
test_gsm7_septets(void **state)
{
	static const struct {
		const char *s;
		int septets;
	} t[] = {
	    {"", 0},
	    {"abc", 3},
	    {"€", 2},
	    {"[]", 4},
	    {"{}\\^~|", 12},
	    {"é@$£", 4},
	    {"ΔΩ", 2},
	    {"\f", 2},
	    {"\n\r", 2},
	    {"ạ", -1},
	    {"`", -1},
	    {"😀", -1},
	    {"\xEF\xBB\xBFHi", 2}, /* BOM ignored */
	    {"bad\xff", -1},
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (text_gsm7_septets(t[i].s) != t[i].septets)
			fail_msg("septets '%s': got %d want %d", t[i].s, text_gsm7_septets(t[i].s),
			         t[i].septets);
		assert_int_equal(text_fits_gsm7(t[i].s), t[i].septets >= 0);
	}
}

/* ------------------------------------------------- encode and segments */

struct seg_case {
	const char *name;
	const char *unit; /* repeated n times, then tail appended */
	int n;
	const char *tail;
	enum text_mode mode;
	enum long_mode lm;
	int max;
	int rc;    /* text_encode result */
	int count; /* text_count_segments */
	uint8_t dcs;
	int nseg;
	int lens[4]; /* sm_len of the first segments (payload_len in payload mode) */
};

static const struct seg_case seg_cases[] = {
    {"160 gsm: one part", "a", 160, "", TEXT_AUTO, LONG_UDH8, 0, 0, 1, 0, 1, {160}},
    {"161 gsm: two parts", "a", 161, "", TEXT_AUTO, LONG_UDH8, 0, 0, 2, 0, 2, {159, 14}},
    {"153*2 gsm", "a", 306, "", TEXT_AUTO, LONG_UDH8, 0, 0, 2, 0, 2, {159, 159}},
    {"153*2+1 gsm", "a", 307, "", TEXT_AUTO, LONG_UDH8, 0, 0, 3, 0, 3, {159, 159, 7}},
    {"161 gsm udh16", "a", 161, "", TEXT_AUTO, LONG_UDH16, 0, 0, 2, 0, 2, {159, 16}},
    {"152*2 udh16", "a", 304, "", TEXT_AUTO, LONG_UDH16, 0, 0, 2, 0, 2, {159, 159}},
    {"161 gsm sar", "a", 161, "", TEXT_AUTO, LONG_SAR, 0, 0, 2, 0, 2, {153, 8}},
    {"161 gsm payload", "a", 161, "", TEXT_AUTO, LONG_PAYLOAD, 0, 0, 1, 0, 1, {161}},
    {"1024 gsm payload", "a", 1024, "", TEXT_AUTO, LONG_PAYLOAD, 0, 0, 1, 0, 1, {1024}},
    {"1025 gsm payload", "a", 1025, "", TEXT_AUTO, LONG_PAYLOAD, 0, -1, -1, 0, 0, {0}},
    {"160 gsm payload stays in sm", "a", 160, "", TEXT_AUTO, LONG_PAYLOAD, 0, 0, 1, 0, 1, {160}},
    {"158+euro = 160", "a", 158, "€", TEXT_AUTO, LONG_UDH8, 0, 0, 1, 0, 1, {160}},
    {"159+euro = 161", "a", 159, "€", TEXT_AUTO, LONG_UDH8, 0, 0, 2, 0, 2, {159, 14}},
    {"escape at boundary", "a", 152, "€bbbbbbbbbb", TEXT_AUTO, LONG_UDH8, 0, 0, 2, 0, 2, {158, 18}},
    {"70 ucs2", "ạ", 70, "", TEXT_AUTO, LONG_UDH8, 0, 0, 1, 8, 1, {140}},
    {"71 ucs2", "ạ", 71, "", TEXT_AUTO, LONG_UDH8, 0, 0, 2, 8, 2, {140, 14}},
    {"67*2 ucs2", "ạ", 134, "", TEXT_AUTO, LONG_UDH8, 0, 0, 2, 8, 2, {140, 140}},
    {"67*3 ucs2", "ạ", 201, "", TEXT_AUTO, LONG_UDH8, 0, 0, 3, 8, 3, {140, 140, 140}},
    {"67*3+1 ucs2", "ạ", 202, "", TEXT_AUTO, LONG_UDH8, 0, 0, 4, 8, 4, {140, 140, 140, 8}},
    {"71 ucs2 udh16", "ạ", 71, "", TEXT_AUTO, LONG_UDH16, 0, 0, 2, 8, 2, {139, 17}},
    {"66*2 ucs2 udh16", "ạ", 132, "", TEXT_AUTO, LONG_UDH16, 0, 0, 2, 8, 2, {139, 139}},
    {"71 ucs2 sar", "ạ", 71, "", TEXT_AUTO, LONG_SAR, 0, 0, 2, 8, 2, {134, 8}},
    {"surrogate at boundary", "ạ", 66, "😀xxxxx", TEXT_AUTO, LONG_UDH8, 0, 0, 2, 8, 2, {138, 20}},
    {"ascii forced ucs2", "a", 71, "", TEXT_UCS2, LONG_UDH8, 0, 0, 2, 8, 2, {140, 14}},
    {"fold 71 vietnamese -> gsm 1 part", "ạ", 71, "", TEXT_FOLD, LONG_UDH8, 0, 0, 1, 0, 1, {71}},
    {"max_segments 1 exceeded", "a", 161, "", TEXT_AUTO, LONG_UDH8, 1, -1, 2, 0, 0, {0}},
    {"max_segments 2 ok", "a", 161, "", TEXT_AUTO, LONG_UDH8, 2, 0, 2, 0, 2, {159, 14}},
    {"16 parts ok", "a", 16 * 153, "", TEXT_AUTO, LONG_UDH8, 0, 0, 16, 0, 16, {159}},
    {"17 parts refused", "a", 16 * 153 + 1, "", TEXT_AUTO, LONG_UDH8, 0, -1, 17, 0, 0, {0}},
    {"17 parts refused even with max 99",
     "a",
     16 * 153 + 1,
     "",
     TEXT_AUTO,
     LONG_UDH8,
     99,
     -1,
     17,
     0,
     0,
     {0}},
    {"empty", "", 0, "", TEXT_AUTO, LONG_UDH8, 0, 0, 1, 0, 1, {0}},
};

static void
test_segment_table(void **state)
{
	static char buf[16 * 1024];
	struct text_out *out = malloc(sizeof(*out));
	size_t i;

	assert_non_null(out);
	for (i = 0; i < sizeof(seg_cases) / sizeof(seg_cases[0]); i++) {
		const struct seg_case *c = &seg_cases[i];
		int rc, j;

		rep(buf, sizeof(buf) - 64, c->unit, c->n);
		strcat(buf, c->tail);
		rc = text_encode(buf, c->mode, c->lm, c->max, 0x1234, out);
		if (rc != c->rc)
			fail_msg("case '%s': rc %d want %d", c->name, rc, c->rc);
		if (text_count_segments(buf, c->mode, c->lm) != c->count)
			fail_msg("case '%s': count %d want %d", c->name,
			         text_count_segments(buf, c->mode, c->lm), c->count);
		if (rc != 0)
			continue;
		if (out->nseg != c->nseg || out->data_coding != c->dcs)
			fail_msg("case '%s': nseg %d dcs %d", c->name, out->nseg, out->data_coding);
		for (j = 0; j < 4 && j < c->nseg; j++) {
			int got =
			    out->TEXT_OUT_PAYLOAD_FLAG ? out->payload_len : out->seg[j].sm_len;

			if (c->lens[j] != 0 && got != c->lens[j])
				fail_msg("case '%s': seg %d len %d want %d", c->name, j, got,
				         c->lens[j]);
		}
		assert_int_equal(out->TEXT_OUT_PAYLOAD_FLAG,
		                 c->lm == LONG_PAYLOAD && c->count == 1 && c->n > 160);
		assert_int_equal(out->udhi,
		                 c->nseg > 1 && (c->lm == LONG_UDH8 || c->lm == LONG_UDH16));
		assert_int_equal(out->sar, c->nseg > 1 && c->lm == LONG_SAR);
	}
	free(out);
}

static void
test_udh_bytes(void **state)
{
	char buf[400];
	struct text_out *out = malloc(sizeof(*out));
	static const uint8_t u8a[] = {0x05, 0x00, 0x03, 0x34, 0x02, 0x01};
	static const uint8_t u8b[] = {0x05, 0x00, 0x03, 0x34, 0x02, 0x02};
	static const uint8_t u16a[] = {0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x01};
	static const uint8_t u16b[] = {0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x02};

	assert_non_null(out);
	rep(buf, sizeof(buf), "a", 161);
	assert_int_equal(text_encode(buf, TEXT_AUTO, LONG_UDH8, 0, 0x1234, out), 0);
	assert_memory_equal(out->seg[0].sm, u8a, 6);
	assert_memory_equal(out->seg[1].sm, u8b, 6);
	assert_int_equal(out->seg[0].sm[6], 'a');
	assert_int_equal(text_encode(buf, TEXT_AUTO, LONG_UDH16, 0, 0x1234, out), 0);
	assert_memory_equal(out->seg[0].sm, u16a, 7);
	assert_memory_equal(out->seg[1].sm, u16b, 7);
	assert_int_equal(text_encode(buf, TEXT_AUTO, LONG_SAR, 0, 0x1234, out), 0);
	assert_int_equal(out->seg[0].sar_ref, 0x1234);
	assert_int_equal(out->seg[0].sar_total, 2);
	assert_int_equal(out->seg[0].sar_seq, 1);
	assert_int_equal(out->seg[1].sar_seq, 2);
	assert_int_equal(out->seg[0].sm[0], 'a'); /* no UDH with SAR */
	free(out);
}

static void
test_boundary_bytes(void **state)
{
	char buf[400];
	struct text_out *out = malloc(sizeof(*out));

	assert_non_null(out);
	/* the escape never ends a part: part 2 starts with 1B 65 */
	rep(buf, sizeof(buf), "a", 152);
	strcat(buf, "€bbbbbbbbbb");
	assert_int_equal(text_encode(buf, TEXT_AUTO, LONG_UDH8, 0, 7, out), 0);
	assert_int_equal(out->seg[0].sm[157], 'a');
	assert_int_equal(out->seg[1].sm[6], 0x1B);
	assert_int_equal(out->seg[1].sm[7], 0x65);
	/* the surrogate pair moves whole to part 2 */
	rep(buf, sizeof(buf), "ạ", 66);
	strcat(buf, "😀xxxxx");
	assert_int_equal(text_encode(buf, TEXT_AUTO, LONG_UDH8, 0, 7, out), 0);
	assert_int_equal(out->seg[0].sm[6 + 130], 0x1E);
	assert_int_equal(out->seg[0].sm[6 + 131], 0xA1);
	assert_int_equal(out->seg[1].sm[6], 0xD8);
	assert_int_equal(out->seg[1].sm[7], 0x3D);
	assert_int_equal(out->seg[1].sm[8], 0xDE);
	assert_int_equal(out->seg[1].sm[9], 0x00);
	free(out);
}

struct enc_case {
	const char *name;
	const char *in;
	enum text_mode mode;
	uint8_t dcs;
	const char *want;
	size_t wlen;
};

static const struct enc_case enc_cases[] = {
    {"gsm specials", "@£$€[", TEXT_AUTO, 0, B("\x00\x01\x02\x1b\x65\x1b\x3c")},
    {"gsm accents", "èéÄ_", TEXT_AUTO, 0, B("\x04\x05\x5b\x11")},
    {"ucs2 auto", "Aạ", TEXT_AUTO, 8, B("\x00\x41\x1e\xa1")},
    {"ucs2 forced", "A", TEXT_UCS2, 8, B("\x00\x41")},
    {"ucs2 pair", "😀", TEXT_AUTO, 8, B("\xd8\x3d\xde\x00")},
    {"no bom sent", "\xEF\xBB\xBFHi", TEXT_UCS2, 8, B("\x00H\x00i")},
    {"bom dropped gsm", "\xEF\xBB\xBFHi", TEXT_AUTO, 0, B("Hi")},
    {"invalid utf8 -> ucs2 fffd", "a\xff", TEXT_AUTO, 8, B("\x00\x61\xff\xfd")},
    {"fold", "Tiếng Việt đẹp ĐẸP", TEXT_FOLD, 0, B("Tieng Viet dep DEP")},
    {"fold nfd", "Vie\xcc\x82\xcc\xa3t", TEXT_FOLD, 0, B("Viet")},
    {"fold é to e", "é", TEXT_FOLD, 0, B("e")},
    {"fold keeps gsm", "@€", TEXT_FOLD, 0, B("\x00\x1b\x65")},
    {"fold unknown -> ?", "日 `x`", TEXT_FOLD, 0, B("? 'x'")},
    {"fold punctuation", "“a” – b…", TEXT_FOLD, 0, B("\"a\" - b...")},
};

static void
test_encode_bytes(void **state)
{
	struct text_out *out = malloc(sizeof(*out));
	size_t i;

	assert_non_null(out);
	for (i = 0; i < sizeof(enc_cases) / sizeof(enc_cases[0]); i++) {
		const struct enc_case *c = &enc_cases[i];

		assert_int_equal(text_encode(c->in, c->mode, LONG_UDH8, 0, 0, out), 0);
		if (out->data_coding != c->dcs || out->seg[0].sm_len != c->wlen ||
		    memcmp(out->seg[0].sm, c->want, c->wlen) != 0)
			fail_msg("case '%s': dcs %d len %d", c->name, out->data_coding,
			         out->seg[0].sm_len);
	}
	free(out);
}

/* Vietnamese UCS-2 round trip at 70, 67*2 and 67*3 characters. */
static void
test_roundtrip_vietnamese(void **state)
{
	static const char *alpha =
	    "aàáảãạăằắẳẵặâầấẩẫậđeèéẻẽẹêềếểễệiìíỉĩịoòóỏõọôồốổỗộơờớởỡợuùúủũụưừứửữựyỳýỷỹỵ"
	    "AÀÁẢÃẠĂẰẮẲẴẶÂẦẤẨẪẬĐEÈÉẺẼẸÊỀẾỂỄỆIÌÍỈĨỊOÒÓỎÕỌÔỒỐỔỖỘƠỜỚỞỠỢUÙÚỦŨỤƯỪỨỬỮỰYỲÝỶỸỴ";
	static const int lens[] = {70, 134, 201};
	struct text_out *out = malloc(sizeof(*out));
	char in[2048], dec[2048];
	uint8_t raw[2048];
	size_t i;

	assert_non_null(out);
	for (i = 0; i < 3; i++) {
		const char *p = alpha;
		size_t pos = 0, rl = 0;
		int k, s, want = lens[i] == 70 ? 1 : lens[i] / 67;

		/* take lens[i] characters, cycling through the alphabet */
		for (k = 0; k < lens[i]; k++) {
			size_t cl = 1;

			if (*p == '\0')
				p = alpha;
			while ((p[cl] & 0xC0) == 0x80)
				cl++;
			memcpy(in + pos, p, cl);
			pos += cl;
			p += cl;
		}
		in[pos] = '\0';
		assert_int_equal(text_encode(in, TEXT_AUTO, LONG_UDH8, 0, 9, out), 0);
		assert_int_equal(out->nseg, want);
		for (s = 0; s < out->nseg; s++) {
			size_t h = out->udhi ? 6 : 0;

			memcpy(raw + rl, out->seg[s].sm + h, out->seg[s].sm_len - h);
			rl += out->seg[s].sm_len - h;
		}
		text_decode(8, DC0_GSM, raw, rl, dec, sizeof(dec));
		assert_string_equal(dec, in);
	}
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_decode_table), cmocka_unit_test(test_decode_truncation),
	    cmocka_unit_test(test_fold_table),   cmocka_unit_test(test_fold_bounded),
	    cmocka_unit_test(test_gsm7_septets), cmocka_unit_test(test_segment_table),
	    cmocka_unit_test(test_udh_bytes),    cmocka_unit_test(test_boundary_bytes),
	    cmocka_unit_test(test_encode_bytes), cmocka_unit_test(test_roundtrip_vietnamese),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * msisdn.c — phone number normalisation (§5.4).
 *
 * Vietnamese mobile numbers in any usual writing ("0912 345 678",
 * "+84 912-345-678", "84912345678", "0084912345678", "(+84) 912.345.678")
 * become "84" + 9 digits; the national number must start with 3, 5, 7, 8
 * or 9 (the mobile ranges 03x 05x 07x 08x 09x since the 2018 renumbering).
 * A trunk 0 written after the country code ("+84 0912...") is tolerated.
 * Other international numbers, written "+CC..." or "00CC...", are kept as
 * digits without '+' when they have 8 to 15 digits (E.164) and do not start
 * with 0. Everything else is rejected: letters, a '+' that is not leading,
 * too few or too many digits, a +84 number that is not a mobile number,
 * and bare digits that are neither "0..." nor "84..." (ambiguous).
 * Separators accepted and dropped: space, tab, '.', '-', '(', ')', '/'.
 */
#include "msisdn.h"

#include <stdbool.h>
#include <string.h>

#define MSISDN_DIGITS_MAX 20 /* more cleaned digits than this: rejected */

/* Writes "84" + the 9-digit national mobile number nat, or returns -1. */
static int
vn_mobile(const char *nat, size_t n, char *out, size_t cap)
{
	if (n == 10 && nat[0] == '0') { /* trunk 0 after the country code */
		nat++;
		n--;
	}
	if (n != 9 || strchr("35789", nat[0]) == NULL)
		return -1;
	if (cap < 12)
		return -1;
	memcpy(out, "84", 2);
	memcpy(out + 2, nat, 9);
	out[11] = '\0';
	return 0;
}

/* International number without '+' or 00: country code then subscriber. */
static int
international(const char *d, size_t n, char *out, size_t cap)
{
	if (n >= 2 && d[0] == '8' && d[1] == '4')
		return vn_mobile(d + 2, n - 2, out, cap);
	if (n < 8 || n > 15 || d[0] == '0' || n >= cap)
		return -1;
	memcpy(out, d, n);
	out[n] = '\0';
	return 0;
}

/*
 * Normalises a phone number (see the file comment). Returns 0 and writes
 * the digits to out, or -1 with out = "" (when cap > 0) for anything that is
 * not a Vietnamese mobile or international number, or when out is too small.
 */
int
msisdn_normalise(const char *in, char *out, size_t cap)
{
	char d[MSISDN_DIGITS_MAX + 1];
	size_t n = 0;
	bool plus = false;
	int rc;

	if (out == NULL || cap == 0)
		return -1;
	out[0] = '\0';
	if (in == NULL)
		return -1;
	for (; *in != '\0'; in++) {
		char c = *in;

		if (c >= '0' && c <= '9') {
			if (n >= MSISDN_DIGITS_MAX)
				return -1;
			d[n++] = c;
		} else if (c == '+') {
			if (plus || n > 0)
				return -1;
			plus = true;
		} else if (c == ' ' || c == '\t' || c == '.' || c == '-' || c == '(' || c == ')' ||
		           c == '/') {
			continue;
		} else {
			return -1;
		}
	}
	d[n] = '\0';
	if (plus)
		rc = international(d, n, out, cap);
	else if (n >= 2 && d[0] == '0' && d[1] == '0')
		rc = international(d + 2, n - 2, out, cap);
	else if (n >= 1 && d[0] == '0')
		rc = vn_mobile(d + 1, n - 1, out, cap);
	else if (n >= 2 && d[0] == '8' && d[1] == '4')
		rc = vn_mobile(d + 2, n - 2, out, cap);
	else
		rc = -1;
	if (rc != 0)
		out[0] = '\0';
	return rc;
}

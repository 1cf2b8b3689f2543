/*
 * log.c — leveled logging to stderr, with phone numbers masked.
 *
 * Writes are one fprintf per line to an unbuffered-by-line stderr, so lines
 * from one process never interleave. The logger keeps no other state than
 * its level and the masking switch, set once by main().
 */
#include "log.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

static enum log_level cur_level = L_INFO;
static bool mask_numbers = true;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void
log_init(enum log_level level, bool mask_msisdn)
{
	cur_level = level;
	mask_numbers = mask_msisdn;
}

void
log_set_level(enum log_level level)
{
	cur_level = level;
}

enum log_level
log_get_level(void)
{
	return cur_level;
}

int
log_parse_level(const char *name, enum log_level *out)
{
	static const char *const alias[] = {"debug", "info", "warn", "error"};
	for (int i = 0; i < 4; i++) {
		if (strcasecmp(name, alias[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

static void
log_vmsg(enum log_level level, const char *module, const char *fmt, va_list ap)
{
	char line[2048];
	struct timeval tv;
	struct tm tm;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	int n = snprintf(line, sizeof line,
	                 "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %-5s %s: ", tm.tm_year + 1900,
	                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	                 (int)(tv.tv_usec / 1000), level_names[level], module);
	if (n < 0 || (size_t)n >= sizeof line)
		n = 0;
	vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	/* control characters from the peer never reach the terminal raw */
	for (char *p = line + n; *p; p++)
		if ((unsigned char)*p < 0x20 && *p != '\t')
			*p = '?';
	fprintf(stderr, "%s\n", line);
}

void
log_msg(enum log_level level, const char *module, const char *fmt, ...)
{
	if (level < cur_level)
		return;
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, module, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(L_ERR, "fatal", fmt, ap);
	va_end(ap);
	exit(1);
}

void
log_hex(enum log_level level, const char *module, const char *what, const uint8_t *p, size_t n)
{
	if (level < cur_level)
		return;
	char hex[512 * 2 + 1];
	size_t shown = n > 512 ? 512 : n;
	for (size_t i = 0; i < shown; i++)
		snprintf(hex + 2 * i, 3, "%02x", p[i]);
	hex[2 * shown] = '\0';
	log_msg(level, module, "%s (%zu bytes%s): %s", what, n, n > shown ? ", truncated" : "",
	        hex);
}

const char *
log_msisdn(const char *msisdn, char *buf, size_t buflen)
{
	if (buflen == 0)
		return "";
	if (msisdn == NULL) {
		snprintf(buf, buflen, "-");
		return buf;
	}
	size_t len = strlen(msisdn);
	if (!mask_numbers || len < 7) {
		snprintf(buf, buflen, "%s", msisdn);
		return buf;
	}
	/* keep the first len-6 digits and the last 3: 84912345678 -> 84912***678 */
	snprintf(buf, buflen, "%.*s***%s", (int)(len - 6), msisdn, msisdn + len - 3);
	return buf;
}

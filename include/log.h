/*
 * log.h — leveled logging to stderr.
 *
 * One line per event: "2026-11-28T16:00:00.123Z INFO  smpp[viettel] message".
 * Phone numbers are masked by default (84912***678); pass them through
 * log_msisdn() before printing. Secrets are never passed to the logger.
 */
#ifndef SG_LOG_H
#define SG_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { L_DEBUG = 0, L_INFO, L_WARN, L_ERR };

void log_init(enum log_level level, bool mask_msisdn);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
int log_parse_level(const char *name, enum log_level *out);

void log_msg(enum log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Hex dump of a PDU or buffer (at most 512 bytes shown), one log line. */
void log_hex(enum log_level level, const char *module, const char *what, const uint8_t *p,
             size_t n);

/*
 * Masks a phone number for logging into buf (>= 32 bytes) and returns buf:
 * "84912345678" -> "84912***678" unless masking is off.
 */
const char *log_msisdn(const char *msisdn, char *buf, size_t buflen);

#define log_debug(mod, ...)                                                                        \
	do {                                                                                       \
		if (log_get_level() <= L_DEBUG)                                                    \
			log_msg(L_DEBUG, mod, __VA_ARGS__);                                        \
	} while (0)
#define log_info(mod, ...) log_msg(L_INFO, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_msg(L_WARN, mod, __VA_ARGS__)
#define log_error(mod, ...) log_msg(L_ERR, mod, __VA_ARGS__)

/* Startup or broken invariant only: logs and exits(1). */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif

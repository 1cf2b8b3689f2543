/*
 * msisdn.h — Vietnamese phone numbers (§5.4). "0912345678", "+84912345678",
 * "84912345678", "0084912345678" and spaced/dashed forms all become
 * "84912345678". Other international numbers (+CC..., 8-15 digits) are kept
 * in international form without '+'. Anything else is rejected.
 */
#ifndef SG_MSISDN_H
#define SG_MSISDN_H

#include <stddef.h>

/* Returns 0 and writes the normalised number, or -1 (with out = ""). */
int msisdn_normalise(const char *in, char *out, size_t cap);

#endif

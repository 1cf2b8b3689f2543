/*
 * fuzz_concat.c — reassembly driven by arbitrary input: a sequence of
 * records, each one a deliver_sm short_message with its UDH
 *   [op][from][len][len octets]
 * op bit 7 = run concat_expire instead, bits 0-3 = dcs choice, bit 4 =
 * advance the clock; from picks one of four senders. Each short_message is
 * parsed with concat_parse_udh and, when it has a concatenation IE, added.
 * A small max_pending forces evictions. Every message delivered is checked.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "concat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int delivered;

static void
on_done(void *arg, const struct msg_mo *mo)
{
	(void)arg;
	if (mo->text == NULL || strlen(mo->text) != mo->text_len || mo->n_acks < 1)
		__builtin_trap();
	delivered++;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const from[4] = {"84911111111", "84922222222", "84933333333", ""};
	static const uint8_t dcs[8] = {0x00, 0x08, 0x18, 0xF0, 0x03, 0x04, 0x01, 0x11};
	struct concat *c = concat_new(30, 3);
	int64_t now = 1000;
	size_t i = 0;
	uint32_t seq = 0;

	if (c == NULL)
		return 0;
	while (i + 3 <= size) {
		uint8_t op = data[i], who = data[i + 1];
		size_t len = data[i + 2];

		i += 3;
		if (op & 0x10)
			now += who % 40;
		if (op & 0x80) {
			concat_expire(c, now, (op & 0x40) ? DC0_LATIN1 : DC0_GSM, on_done, NULL);
			continue;
		}
		if (len > size - i)
			len = size - i;
		{
			const uint8_t *sm = data + i;
			uint16_t ref;
			uint8_t total, sq;
			size_t ul;
			int rc = concat_parse_udh(sm, len, &ref, &total, &sq, &ul);

			if (rc >= 0 && ul > len)
				__builtin_trap();
			if (rc == 1) {
				struct concat_part p;

				memset(&p, 0, sizeof(p));
				p.link = (op & 0x20) ? "vina" : "viettel";
				p.from = from[who & 3];
				p.to = "8077";
				p.smsc_id = (op & 0x40) ? "" : "abc";
				p.ref = ref;
				p.total = total;
				p.seq = sq;
				p.dcs = dcs[op & 7];
				p.data = sm + ul;
				p.len = len - ul;
				p.ack.seq = ++seq;
				(void)concat_add(c, &p, DC0_GSM, now, on_done, NULL);
			}
		}
		i += len;
		if (concat_pending(c) > 3 || concat_pending(c) < 0)
			__builtin_trap();
	}
	concat_expire(c, now + 100000, DC0_GSM, on_done, NULL);
	if (concat_pending(c) != 0)
		__builtin_trap();
	concat_free(c);
	return 0;
}

/*
 * fuzz_keyword.c — flow_normalise and flow_handle_sms on arbitrary input,
 * with the shipped content (run from the repository root).
 *
 * Input: the first byte picks flags (language, opted out, household, timing,
 * rule), then everything up to the first '\n' is used as the stored flow
 * state (so the state parser is fuzzed too), the rest is the SMS text.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "content.h"
#include "flow.h"

static struct content *C;

static void
check_result(const struct flow_result *r)
{
	int i;

	if (r->n_replies < 0 || r->n_replies > FLOW_MAX_REPLIES || r->n_events < 0 ||
	    r->n_events > FLOW_MAX_EVENTS)
		abort();
	for (i = 0; i < r->n_replies; i++)
		if (memchr(r->reply[i], '\0', FLOW_REPLY_MAX) == NULL ||
		    content_ucs2_len(r->reply[i]) < 0)
			abort();
	if (memchr(r->state, '\0', FLOW_STATE_MAX) == NULL)
		abort();
	for (i = 0; i < r->n_events; i++)
		if (r->events[i].skill < 1 || r->events[i].skill > FLOW_SKILLS)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct flow_cfg cfg = {4, 5, FLOW_RULE_BOTH, 600, 3600, 0};
	struct flow_sub sub;
	struct flow_result r;
	char text[2048], norm[256];
	const uint8_t *nl;
	size_t slen, tlen;
	uint8_t flags;
	int i;

	if (C == NULL && (C = content_load("config/content", stderr, NULL)) == NULL)
		abort();
	if (size == 0)
		return 0;
	flags = data[0];
	data++, size--;
	nl = memchr(data, '\n', size);
	slen = nl != NULL ? (size_t)(nl - data) : 0;
	memset(&sub, 0, sizeof(sub));
	memcpy(sub.lang, flags & 1 ? "en" : "vi", 3);
	sub.opted_out = flags & 2;
	for (i = 0; i < FLOW_SKILLS; i++) {
		sub.self_level[i] = (flags >> 2) & 1 ? i % 4 : -1;
		sub.quiz_passed[i] = (flags >> 3) & 1 && i % 2;
	}
	if (flags & 0x10)
		memcpy(sub.household, "01001000123", 12);
	sub.household_skills = flags;
	sub.state_at = 1790000000 - ((flags & 0x20) ? 1000 : 0);
	cfg.rule = (enum flow_rule)((flags >> 6) % 3);
	memcpy(sub.state, data, slen < FLOW_STATE_MAX - 1 ? slen : FLOW_STATE_MAX - 1);
	if (nl != NULL)
		data += slen + 1, size -= slen + 1;
	tlen = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
	memcpy(text, data, tlen);
	text[tlen] = '\0';
	cfg.join_segments = (int)(tlen % 3) * 3; /* replies apart, or joined within 3 or 6 parts */

	flow_normalise(text, norm, sizeof(norm));
	if (strlen(norm) >= sizeof(norm))
		abort();
	flow_handle_sms(C, &cfg, &sub, text, 1790000000, (uint32_t)size, &r);
	check_result(&r);
	return 0;
}

/*
 * flow.h — what a resident experiences by SMS (§3.1, §3.2): the keyword
 * router, quizzes, self-assessment, status, household join, language and
 * opt-out. Pure: given a snapshot of the subscriber and the text, it decides
 * the replies and the changes; the pipeline (core/pipeline.c) commits them
 * in one transaction before anything is sent. No I/O, no clock, no rand():
 * "now" and a random seed come in.
 */
#ifndef SG_FLOW_H
#define SG_FLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct content; /* content.h */

#define FLOW_SKILLS 5
#define FLOW_STATE_MAX 256
#define FLOW_MAX_REPLIES 3
#define FLOW_MAX_EVENTS 8
#define FLOW_REPLY_MAX 1024 /* bytes of UTF-8 per reply */

/* Skill codes in order, index 0..4 = skill 1..5. */
extern const char *const flow_skill_codes[FLOW_SKILLS];

enum flow_rule { FLOW_RULE_SELF = 0, FLOW_RULE_QUIZ = 1, FLOW_RULE_BOTH = 2 };

/* The rule's name as the SQL functions take it: "self", "quiz" or "both". */
const char *flow_rule_name(enum flow_rule rule);

struct flow_cfg {
	int pass_mark;       /* correct answers needed, default 4 */
	int quiz_length;     /* questions per quiz, default 5 */
	enum flow_rule rule; /* what "proficient" means */
	int idle_timeout;    /* seconds a flow waits for an answer */
	int help_interval;   /* seconds between unsolicited help texts */
	/* segments a joined reply may take (flow_join_replies); 0 never joins.
	 * The pipeline sets config_reply_segments(). */
	int join_segments;
};

/* Snapshot of one subscriber, read from the database with the MO. */
struct flow_sub {
	char msisdn[24];
	char lang[3]; /* "vi" or "en" */
	bool opted_out;
	bool is_new;                 /* first message ever from this number */
	int self_level[FLOW_SKILLS]; /* -1 never assessed, else 0..3 */
	int best_quiz[FLOW_SKILLS];  /* -1 never taken, else best score */
	bool quiz_passed[FLOW_SKILLS];
	char state[FLOW_STATE_MAX]; /* flow state as stored ("" = none) */
	int64_t state_at;           /* unix seconds of the last state change */
	int64_t help_at;            /* unix seconds of the last unsolicited help, 0 never */
	char household[32];         /* household code, "" none */
	bool household_covered;
	int household_members;
	uint8_t household_skills; /* bit i: some member proficient in skill i+1 */
};

enum flow_event_kind { FLOW_EV_SELF = 0, FLOW_EV_QUIZ = 1 };

struct flow_event { /* one proficiency event to append */
	int skill;  /* 1..5 */
	enum flow_event_kind kind;
	int value;   /* self level 0..3, or quiz score */
	bool passed; /* quiz only */
};

struct flow_result {
	int n_replies;
	char reply[FLOW_MAX_REPLIES][FLOW_REPLY_MAX];
	char state[FLOW_STATE_MAX]; /* new state ("" = no flow in progress) */
	bool state_changed;
	char lang[3];   /* new language ("" = unchanged) */
	int opt;        /* +1 opt in, -1 opt out, 0 unchanged */
	bool help_sent; /* an unsolicited help text was sent: store help_at */
	/*
	 * Household join: when join_code is set the store tries to join and
	 * sends reply_join_ok or reply_join_unknown instead of reply[] (which is
	 * then empty).
	 */
	char join_code[32];
	char reply_join_ok[FLOW_REPLY_MAX];
	char reply_join_unknown[FLOW_REPLY_MAX];
	int n_events;
	struct flow_event events[FLOW_MAX_EVENTS];
};

/*
 * Handles one inbound SMS text from sub at time now (unix seconds), with
 * seed for drawing quiz questions. Fills *out (zeroed first). Never fails:
 * unknown input gets help (at most once per help_interval) or nothing.
 * An opted-out subscriber gets no reply except to START/BATDAU. Its replies
 * are joined last (flow_join_replies).
 */
void flow_handle_sms(const struct content *c, const struct flow_cfg *cfg,
                     const struct flow_sub *sub, const char *text, int64_t now, uint32_t seed,
                     struct flow_result *out);

/*
 * The last step of flow_handle_sms: joins consecutive replies of o, one per
 * line, greedily and in order (a wrong answer's explanation and the next
 * question, a quiz's opening and its first question, the last feedback and
 * the result). A join is kept when the joined text, counted as UCS-2 with a
 * 16-bit UDH (TEXT_UCS2_UDH16_PART, the least room of any link mode), takes
 * at most cfg->join_segments and no more segments than the two apart: it
 * fits every link, costs no more in UCS-2, and the resident never reads the
 * next question before the feedback on the last answer.
 */
void flow_join_replies(const struct flow_cfg *cfg, struct flow_result *o);

/* Normalises input for matching: diacritics folded, upper-cased, spaces and
 * punctuation trimmed/collapsed. Writes at most cap bytes. */
void flow_normalise(const char *text, char *out, size_t cap);

/*
 * Reads a decimal of at most 4 digits in [lo, hi] followed by the character
 * end (state strings: "Q:3:..."); returns a pointer past end ('\0' is not
 * skipped), or NULL when the text does not match.
 */
const char *flow_parse_int(const char *p, int lo, int hi, char end, int *v);

/* True when a subscriber counts as proficient in skill (1..5) under rule. */
bool flow_proficient(const struct flow_sub *sub, int skill, enum flow_rule rule);

#endif

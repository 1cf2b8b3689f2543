/*
 * ussd.h — USSD menus (§3.3, §4.5): one state machine per dialog, shared by
 * SMPP dialogs (ussd_service_op, via the pipeline's hook) and the HTTP
 * callback POST /ussd (CON/END bodies).
 *
 * Two halves:
 *  - pure screen logic (ussd_begin, ussd_input, ussd_close): given the
 *    content, a subscriber snapshot and the dialog state, it produces the
 *    next screen (folded to GSM-7, at most CONTENT_USSD_MAX characters),
 *    whether the dialog ends, the new dialog state and the changes to commit
 *    (proficiency events, household join, language, an SMS, the SMS flow
 *    state). No I/O, no clock, no rand().
 *  - I/O (ussd_new, ussd_handle, ussd_http): dialog state lives in the
 *    ussd_sessions table with an in-memory cache; each step is committed
 *    before the deliver_sm is acknowledged and before the screen is
 *    submitted (or the HTTP reply sent). Steps and loads of all dialogs are
 *    group-committed by sg_ussd_steps / sg_ussd_loads
 *    (sql/008_ussd_batch.sql): one batch of each kind in flight, the next
 *    collecting meanwhile; a dialog has one step in flight at a time, so its
 *    steps stay in order. Idle and total timeouts end a dialog cleanly; an
 *    interrupted quiz is handed over to SMS.
 */
#ifndef SG_USSD_H
#define SG_USSD_H

#include <stdbool.h>
#include <stdint.h>

#include "content.h"
#include "flow.h"

struct event_base;
struct sg_config;
struct store;
struct gw_ops;
struct msg_ussd;
struct ussd;

#define USSD_QUIZ_MAX 10   /* questions per quiz at most */
#define USSD_STATE_MAX 256 /* serialised dialog state */
#define USSD_SCREEN_BYTES 512
#define USSD_SMS_BYTES 1024
#define USSD_MAX_INPUTS 16 /* inputs applied in one step (shortcut, HTTP) */

/* Screens of a dialog. */
enum ussd_screen {
	USSD_MAIN = 0,
	USSD_QUIZ_MENU,
	USSD_QUIZ_Q,
	USSD_SELF_Q,
	USSD_PROGRESS,
	USSD_HOUSEHOLD_ENTER,
	USSD_LANGUAGE,
	USSD_END,
};

/* The state of one dialog (what ussd_sessions.state serialises). */
struct ussd_dialog {
	enum ussd_screen screen;
	int lang;   /* 0 vi, 1 en */
	int bad;    /* unusable inputs in a row */
	int inputs; /* HTTP: inputs of "text" consumed so far */
	int skill;  /* QUIZ_Q: quiz skill; SELF_Q: skill being asked */
	int qn, qi, score;
	char ids[USSD_QUIZ_MAX][CONTENT_ID_MAX];
};

struct ussd_cfg {
	int pass_mark;
	int quiz_length;
	enum flow_rule rule;
};

/* What one step decided. */
struct ussd_step_out {
	struct ussd_dialog next;
	char state[USSD_STATE_MAX];     /* next, serialised */
	char screen[USSD_SCREEN_BYTES]; /* folded; "" = no screen (abort) */
	bool end;                       /* the screen is the last one */
	char lang[3];                   /* new language, "" unchanged */
	char join_code[32];             /* household join: the store picks */
	char screen_join_ok[USSD_SCREEN_BYTES];
	char screen_join_unknown[USSD_SCREEN_BYTES];
	char sms[USSD_SMS_BYTES]; /* SMS to send as well, "" none */
	bool sms_state_set;       /* set the subscriber's SMS flow state */
	char sms_state[FLOW_STATE_MAX];
	int n_events;
	struct flow_event events[FLOW_MAX_EVENTS];
};

/*
 * Serialises / parses a dialog state. ussd_state_parse returns -1 for a
 * corrupt string (d is then a fresh dialog at MAIN).
 */
void ussd_state_format(const struct ussd_dialog *d, char *out, size_t cap);
int ussd_state_parse(const char *s, struct ussd_dialog *d);

/*
 * A new dialog for sub (language from the snapshot): the main menu, or
 * wherever the shortcut in dialled leads ("*8079*1*3#" = quiz on skill 3:
 * the fields after the service code are applied as menu inputs). sub is
 * updated with the events produced (so a later progress screen is right).
 */
void ussd_begin(const struct content *c, const struct ussd_cfg *cfg, struct flow_sub *sub,
                const char *dialled, uint32_t seed, struct ussd_step_out *out);

/*
 * Applies n inputs (one per user answer, in order) to dialog in. "0" goes
 * back, "00" to the main menu. out is zeroed first; events accumulate.
 */
void ussd_input(const struct content *c, const struct ussd_cfg *cfg, struct flow_sub *sub,
                const struct ussd_dialog *in, const char *const *inputs, int n, uint32_t seed,
                struct ussd_step_out *out);

/*
 * The dialog ends without a user choice: timeout (screen: the "timeout"
 * text) or abort / network close (no screen). A quiz in progress is handed
 * over to SMS: the result so far and the pending question go in out->sms,
 * and the subscriber's SMS flow state continues the same quiz.
 */
void ussd_close(const struct content *c, const struct ussd_cfg *cfg, const struct ussd_dialog *in,
                bool timeout, struct ussd_step_out *out);

/* ------------------------------------------------------------------ */
/* I/O                                                                  */

/*
 * cfg, st and gw are borrowed and must outlive the module; gwarg is the
 * gateway argument of gw (may be set later with ussd_set_gateway).
 */
struct ussd *ussd_new(struct event_base *base, const struct sg_config *cfg, struct store *st,
                      const struct gw_ops *gw, void *gwarg);
void ussd_set_gateway(struct ussd *u, void *gwarg);

/* The content in force (borrowed; swap on SIGHUP, free the old one after). */
void ussd_set_content(struct ussd *u, const struct content *c);

/* Frees every dialog (nothing more is committed or sent). NULL is a no-op. */
void ussd_free(struct ussd *u);

/*
 * One SMPP dialog step from the gateway (the pipeline's hook; arg is the
 * struct ussd). The deliver_sm is acknowledged once the step is committed
 * (a temporary error when it cannot be), then the screen is submitted.
 */
void ussd_handle(void *arg, const struct msg_ussd *m);

/*
 * One request of the HTTP callback (§4.5): text is every input so far
 * joined with '*'. Returns 0 when accepted: done(arg, status, body) is then
 * called exactly once (maybe before ussd_http returns) with 200 and "CON
 * ..." / "END ..." (text/plain), or 503 when the database cannot take the
 * step. Returns 400 for a malformed request (missing or bad sessionId or
 * phoneNumber, bad UTF-8, oversized fields): no session is created and done
 * is not called.
 */
int ussd_http(struct ussd *u, const char *session_id, const char *service_code, const char *phone,
              const char *text, void (*done)(void *arg, int http_status, const char *body),
              void *arg);

/* Dialogs currently open in memory. */
int ussd_active(const struct ussd *u);

#endif

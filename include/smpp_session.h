/*
 * smpp_session.h — one SMPP bind (transceiver, transmitter or receiver) to
 * one SMSC: TCP or TLS connect, bind, enquire_link both ways, silent-link
 * detection, reconnect with backoff and jitter, a window of outstanding
 * requests with a response timer per sequence number, clean unbind on stop.
 *
 * One state machine, one writer of the state (logged old -> new). The owner
 * (gateway.c) hears about everything through struct smpp_session_cbs, called
 * from the event loop; it may call any smpp_session_* function from inside
 * a callback, including smpp_session_free() (the free is then deferred).
 */
#ifndef SG_SMPP_SESSION_H
#define SG_SMPP_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "smpp_codec.h"

struct event_base;
struct smpp_session;

enum smpp_state {
	SMPP_ST_IDLE = 0,   /* created, not started */
	SMPP_ST_CONNECTING, /* TCP (+TLS) connect in progress */
	SMPP_ST_BINDING,    /* bind sent, waiting for bind_resp */
	SMPP_ST_BOUND,      /* traffic flows */
	SMPP_ST_UNBINDING,  /* stop requested: draining the window, unbind sent */
	SMPP_ST_WAITING,    /* disconnected, reconnect timer armed */
	SMPP_ST_CLOSED,     /* stopped for good */
};

enum smpp_role { SMPP_ROLE_TRX = 0, SMPP_ROLE_TX = 1, SMPP_ROLE_RX = 2 };

struct smpp_session_cbs {
	/* The state changed (already logged). */
	void (*state)(void *arg, struct smpp_session *s, enum smpp_state st);
	/*
	 * A valid deliver_sm/data_sm arrived (borrowed for the call). The owner
	 * answers it later with smpp_session_respond(). Malformed ones never
	 * get here: the session answers them with the error status itself.
	 */
	void (*inbound)(void *arg, struct smpp_session *s, const struct smpp_inbound *in);
	/*
	 * The outcome of smpp_session_submit(cookie): the response status, or
	 * SMPP_STATUS_NORESP on response timeout or lost connection.
	 * message_id is "" unless status is 0.
	 */
	void (*resp)(void *arg, struct smpp_session *s, uint64_t cookie, uint32_t status,
	             const char *message_id);
	/* The window has room again, or the session just became bound. */
	void (*room)(void *arg, struct smpp_session *s);
};

/*
 * Creates a session for conf (borrowed, must outlive it). Resolves
 * conf->host with getaddrinfo() and loads TLS files here, so call it at
 * start-up BEFORE the event loop runs: nothing afterwards blocks. Returns
 * NULL (logged) when the host does not resolve or TLS files do not load.
 */
struct smpp_session *smpp_session_new(struct event_base *base, const struct smsc_conf *conf,
                                      enum smpp_role role, const struct smpp_session_cbs *cbs,
                                      void *arg);

/* Frees the session, its connection and timers; pending requests are
 * dropped without callbacks. NULL is a no-op. Deferred inside a callback. */
void smpp_session_free(struct smpp_session *s);

/* Connects and binds (and keeps doing so until stopped). */
void smpp_session_start(struct smpp_session *s);

/*
 * Stops: when bound, waits for outstanding responses, sends unbind and
 * waits for unbind_resp, all within deadline_ms; then closes. Ends in
 * SMPP_ST_CLOSED (reported through cbs->state).
 */
void smpp_session_stop(struct smpp_session *s, int deadline_ms);

/* True when a submit_sm can be sent now (bound, can transmit, window room). */
bool smpp_session_can_submit(const struct smpp_session *s);

/*
 * Sends a submit_sm; its outcome comes back through cbs->resp with cookie.
 * Returns 0, -1 when it cannot be sent now (see can_submit), -2 when the
 * message cannot be encoded (permanent).
 */
int smpp_session_submit(struct smpp_session *s, const struct smpp_submit *sm, uint64_t cookie);

/*
 * Answers the request (cmd, seq) received on connection conn_id with
 * status. Returns 0, or -1 when that connection is gone (the SMSC will
 * resend) or the write failed.
 */
int smpp_session_respond(struct smpp_session *s, uint64_t conn_id, uint32_t cmd, uint32_t seq,
                         uint32_t status);

/* Id of the current connection (changes on every reconnect; 0 = none). */
uint64_t smpp_session_conn_id(const struct smpp_session *s);
enum smpp_state smpp_session_state(const struct smpp_session *s);
enum smpp_role smpp_session_role(const struct smpp_session *s);
int smpp_session_window_used(const struct smpp_session *s);
const char *smpp_session_strstate(enum smpp_state st);

#endif

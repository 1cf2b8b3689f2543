/*
 * gateway.h — the SMPP side of skillgate: every [smsc NAME] link, the
 * outbound router (longest MSISDN prefix, then the default link, failover to
 * another bound link), and the translation between PDUs and the typed
 * messages of msg.h. Owns its sessions; core talks to it only through
 * gateway_ops() and receives traffic through the core_ops it was given.
 */
#ifndef SG_GATEWAY_H
#define SG_GATEWAY_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "msg.h"

struct event_base;
struct gateway;

struct gateway_link_status {
	char name[MSG_LINK_MAX];
	const char *state;       /* "connecting", "binding", "bound", "standby", ... (static) */
	int binds_up;            /* bound sessions (2 for tx+rx) */
	int window_used, window; /* outstanding requests / limit */
	int rate;                /* configured segments per second */
	int queued[MSG_PRIO_COUNT];
	uint64_t submitted, submit_failed, received, dlrs;
	bool paused; /* throttled */
};

/* cfg and ops are borrowed and must outlive the gateway. */
struct gateway *gateway_new(struct event_base *base, const struct sg_config *cfg,
                            const struct core_ops *ops, void *core);
void gateway_free(struct gateway *gw);

/*
 * Connects and binds every enabled link. Links start enabled unless
 * [gateway] link_lock is set; then each waits for gateway_link_enable().
 */
void gateway_start(struct gateway *gw);

/*
 * Enables link name (connects and binds it, also before gateway_start,
 * which then starts it) or disables it: it unbinds cleanly within its
 * response_timeout, its queued MT fail over to other bound links as when a
 * link drops, and it no longer reconnects ("standby" in its status). Unknown
 * names and no-change calls are ignored. Called by main.c as linklock.h
 * reports a link's lock held or lost.
 */
void gateway_link_enable(struct gateway *gw, const char *name, bool on);

/*
 * Unbinds every link cleanly, waiting for in-flight responses up to
 * deadline_ms, then calls done(arg) (from the event loop).
 */
void gateway_stop(struct gateway *gw, int deadline_ms, void (*done)(void *arg), void *arg);

/* The gw_ops table to hand to core (its first argument is the gateway). */
const struct gw_ops *gateway_ops(void);

/* Fills up to max entries, returns the number of links. */
int gateway_link_status(struct gateway *gw, struct gateway_link_status *out, int max);

#endif

/*
 * msg.h — the typed messages that cross between gateway/ (the edges: SMPP,
 * USSD, HTTP) and core/ (the domain). Neither side includes the other's
 * headers; main.c wires them with the two ops tables below.
 *
 * Ownership: every pointer inside a message is borrowed for the duration of
 * the call. A receiver that needs the data later copies it.
 *
 * Bump MSG_VERSION whenever a struct here changes shape.
 */
#ifndef SG_MSG_H
#define SG_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MSG_VERSION 1

#define MSG_MSISDN_MAX 24  /* digits + NUL; normalised international form */
#define MSG_ADDR_MAX 24    /* short code / service code */
#define MSG_SMSC_ID_MAX 72 /* SMSC message id (normalised) + NUL */
#define MSG_LINK_MAX 32    /* link (smsc section) name + NUL */

/* Traffic classes on a link: interactive replies always go first. */
enum msg_prio { MSG_PRIO_INTERACTIVE = 0, MSG_PRIO_BULK = 1, MSG_PRIO_COUNT };

/* A PDU to acknowledge once the message it carried is committed. */
struct msg_ack {
	uint64_t sess_id; /* gateway session id (stale ids are ignored) */
	uint32_t seq;     /* sequence_number of the deliver_sm/data_sm */
	uint32_t cmd;     /* command id of the request (deliver_sm or data_sm) */
};

/* An inbound SMS: decoded to UTF-8 and reassembled. */
struct msg_mo {
	char link[MSG_LINK_MAX];
	char smsc_id[MSG_SMSC_ID_MAX]; /* "" when the SMSC gave none */
	char from[MSG_MSISDN_MAX];     /* normalised, e.g. 84912345678 */
	char to[MSG_ADDR_MAX];         /* short code as received */
	const char *text;              /* UTF-8, NUL-terminated */
	size_t text_len;
	bool partial;               /* reassembly timed out: parts missing */
	const struct msg_ack *acks; /* every PDU that carried a part */
	int n_acks;
};

/* Delivery receipt states (SMPP message_state values). */
enum msg_dlr_state {
	MSG_DLR_UNKNOWN = 0,
	MSG_DLR_ENROUTE = 1,
	MSG_DLR_DELIVERED = 2,
	MSG_DLR_EXPIRED = 3,
	MSG_DLR_DELETED = 4,
	MSG_DLR_UNDELIVERABLE = 5,
	MSG_DLR_ACCEPTED = 6,
	MSG_DLR_REJECTED = 8,
};

struct msg_dlr {
	char link[MSG_LINK_MAX];
	char smsc_id[MSG_SMSC_ID_MAX]; /* normalised with the link's id base */
	enum msg_dlr_state state;
	int err; /* err: field / network error, -1 unknown */
	struct msg_ack ack;
};

/* USSD dialog step (SMPP ussd_service_op or HTTP callback). */
enum msg_ussd_op {
	MSG_USSD_BEGIN = 1,    /* network opened the dialog (PSSR indication) */
	MSG_USSD_CONTINUE = 2, /* user answered (USSR confirm) */
	MSG_USSD_ABORT = 3,    /* user or network closed it */
};

struct msg_ussd {
	char link[MSG_LINK_MAX];
	char session_key[40]; /* link-scoped dialog key */
	char from[MSG_MSISDN_MAX];
	char service_code[MSG_ADDR_MAX];
	enum msg_ussd_op op;
	const char *text; /* UTF-8 user input (or dialled string on BEGIN) */
	struct msg_ack ack;
};

/* An outbound message handed to the gateway after it is committed. */
struct msg_mt {
	int64_t id; /* outbox row id */
	char to[MSG_MSISDN_MAX];
	char from[MSG_ADDR_MAX]; /* "" = the link's source address */
	const char *text;        /* UTF-8 */
	enum msg_prio prio;
	bool fold;               /* fold Vietnamese to GSM-7 */
	char link[MSG_LINK_MAX]; /* "" = route by prefix */
	/* USSD replies only */
	bool ussd;
	bool ussd_end;
	char ussd_session_key[40];
};

/* Result of one submit_sm (one segment) of an MT. */
struct msg_mt_result {
	int64_t mt_id;
	char link[MSG_LINK_MAX];
	int part, nparts;              /* 1-based part index and total */
	uint32_t status;               /* SMPP command_status; 0 = accepted */
	bool temporary;                /* retry later (throttled, queue full, ...) */
	char smsc_id[MSG_SMSC_ID_MAX]; /* normalised, when status == 0 */
};

/* gateway -> core. Each call returns at once; acks go back through gw_ops. */
struct core_ops {
	void (*mo)(void *core, const struct msg_mo *mo);
	void (*dlr)(void *core, const struct msg_dlr *dlr);
	void (*ussd)(void *core, const struct msg_ussd *u);
	void (*mt_result)(void *core, const struct msg_mt_result *r);
	/* A link has room for more traffic of this priority. */
	void (*ready)(void *core, const char *link, enum msg_prio prio);
};

/* core -> gateway. */
struct gw_ops {
	/* Send the responses for acks[] with command_status (0 = ok). */
	void (*ack)(void *gw, const struct msg_ack *acks, int n, uint32_t status);
	/*
	 * Queue an MT on its link. Returns 0 when taken, -1 when the chosen
	 * link's queue for that priority is full (core keeps the message and
	 * waits for core_ops.ready), -2 when no link can carry it.
	 * The gateway copies what it needs.
	 */
	int (*submit)(void *gw, const struct msg_mt *mt);
};

#endif

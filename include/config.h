/*
 * config.h — skillgate's configuration: one INI file, one declarative table
 * of keys (core/config.c) giving each key's type, default, bounds and doc.
 *
 * config_load() parses and validates; every problem is reported as
 * "file:line: reason" and the load fails if there was any.
 */
#ifndef SG_CONFIG_H
#define SG_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#define CONFIG_MAX_LINKS 16
#define CONFIG_MAX_LIST 32 /* entries in a space-separated list key */

enum bind_mode { BIND_TRANSCEIVER = 0, BIND_TX_RX = 1 };
enum id_base { ID_BASE_HEX = 0, ID_BASE_DEC = 1, ID_BASE_STRING = 2 };
enum dc0_meaning { DC0_GSM = 0, DC0_LATIN1 = 1 };
enum long_mode { LONG_UDH8 = 0, LONG_UDH16 = 1, LONG_SAR = 2, LONG_PAYLOAD = 3 };
enum text_mode { TEXT_AUTO = 0, TEXT_FOLD = 1, TEXT_UCS2 = 2 };
enum ussd_key { USSD_KEY_ITS_SESSION = 0, USSD_KEY_UMR = 1 };
enum prof_rule { PROF_RULE_SELF = 0, PROF_RULE_QUIZ = 1, PROF_RULE_BOTH = 2 };

struct str_list {
	int n;
	char v[CONFIG_MAX_LIST][32];
};

/* [smsc NAME]: one SMPP link to an operator's SMSC. */
struct smsc_conf {
	char name[32];
	char host[256];
	int port;
	bool tls;
	char tls_ca_file[256];   /* CA bundle to verify the SMSC certificate */
	char tls_cert_file[256]; /* optional client certificate */
	char tls_key_file[256];
	bool tls_verify; /* verify certificate and host name */
	char system_id[16];
	char password[9];
	char system_type[13];
	enum bind_mode bind;
	int window;            /* outstanding requests per bind */
	int rate;              /* segments per second, 0 = unlimited */
	int enquire_link;      /* seconds between enquire_link */
	int response_timeout;  /* seconds to wait for any response */
	int reconnect_min;     /* seconds, first backoff */
	int reconnect_max;     /* seconds, backoff cap */
	int throttle_pause_ms; /* pause after ESME_RTHROTTLED / RMSGQFUL */
	int max_retries;       /* temporary errors before a message fails */
	char source_addr[21];
	int source_ton, source_npi;
	int dest_ton, dest_npi;
	struct str_list short_codes;
	struct str_list ussd_codes;
	struct str_list prefixes;
	bool default_route;          /* carries traffic no prefix matches */
	enum id_base submit_id_base; /* message_id in submit_sm_resp */
	enum id_base dlr_id_base;    /* id in receipts */
	enum dc0_meaning dc0;
	enum long_mode long_mode;
	enum text_mode text_mode;
	int max_segments;
	int registered_delivery;
	char service_type[6];
	enum ussd_key ussd_session_key;
	int ussd_op_begin, ussd_op_continue, ussd_op_request, ussd_op_end;
	struct str_list ussd_op_abort; /* numbers, e.g. "0x81 0x22" */
	int max_pdu;                   /* bytes, command_length bound */
	int reassembly_timeout;        /* seconds before a partial MO is delivered */
};

struct sg_config {
	char path[512];
	/* [gateway] */
	char log_level[8];
	bool log_mask_msisdn;
	char pid_file[256];
	int shutdown_timeout; /* seconds to finish in-flight work */
	char instance_name[64];
	bool link_lock;         /* hold each link's advisory lock to bind it */
	int link_lock_interval; /* seconds between lock attempts and heartbeats */
	/* [database] */
	char db_conninfo[512];
	int db_pool;          /* connections */
	int db_batch_max;     /* messages per group commit */
	int db_batch_wait_ms; /* longest wait before a partial batch commits */
	int db_queue_max;     /* pending queries before callers are refused */
	int db_reconnect_max; /* seconds, backoff cap */
	int db_slow_ms;       /* statements logged when this slow (0: none) */
	int mo_temp_error;    /* status sent when an MO cannot be committed */
	int dedupe_window;    /* seconds: same number + text = duplicate */
	/* [http] */
	char http_listen[128];
	char http_tls_cert[256];
	char http_tls_key[256];
	int http_max_body; /* bytes */
	int http_timeout;  /* seconds */
	char http_dashboard_dir[256];
	/* [campaign] */
	char timezone[64];
	char quiet_hours[16]; /* "21:00-07:00" or "" */
	int daily_cap;        /* messages per number per day from campaigns */
	int reminder_max_per_skill;
	int reminder_unfinished_delay; /* seconds */
	int reminder_failed_delay;
	int reminder_next_delay;
	int mt_validity; /* seconds a queued bulk MT stays sendable */
	/* [content] */
	char content_dir[256];
	char default_language[4];
	int pass_mark; /* of quiz_length */
	int quiz_length;
	enum prof_rule proficiency_rule;
	int flow_idle_timeout; /* seconds */
	int help_interval;     /* seconds between unsolicited help texts */
	int loop_max;          /* identical exchanges ... */
	int loop_window;       /* ... within this many seconds */
	int ussd_idle_timeout;
	int ussd_total_timeout;
	char ussd_code[24];
	/* [smsc NAME] ... */
	int n_links;
	struct smsc_conf links[CONFIG_MAX_LINKS];
};

/*
 * Loads and validates path into *cfg (which it zeroes and fills with
 * defaults first). Errors go to err (one "file:line: reason" per line).
 * Returns the number of errors (0 = valid).
 */
int config_load(const char *path, struct sg_config *cfg, FILE *err);

/*
 * The most segments (UCS-2 parts with a 16-bit UDH, 66 characters each) one
 * reply can take and still be sendable on every link: the least
 * max_segments, or for long_messages = payload what its 1024 octets hold
 * (7). 0 without links. The flow joins replies within it (flow.h).
 */
int config_reply_segments(const struct sg_config *cfg);

/* Prints the sample config (every key, its default and doc) to out. */
void config_write_sample(FILE *out);

/* Visits every key of the table: section ("smsc" for links), key, doc. */
void config_each_key(void (*fn)(const char *section, const char *key, const char *doc, void *arg),
                     void *arg);

#endif

/*
 * config.c — the configuration table and its loader.
 *
 * Every key skillgate understands is one row of config_table[] below: the
 * section it lives in, its type, where it lands in struct sg_config (or in a
 * link's struct smsc_conf for [smsc NAME] sections), its default, its bounds
 * and a one-line doc. The loader, the validator, the sample file
 * (config/skillgate.conf, checked by a test) and the README table all come
 * from this one table, so a key cannot exist in one place and not another.
 *
 * Parsing uses inih's ini_parse_stream with our own line reader so that every
 * error can be reported as "file:line: reason"; all errors are collected, not
 * just the first.
 */
#include "config.h"

#include "log.h"
#include "text.h" /* TEXT_PAYLOAD_MAX, TEXT_UCS2_UDH16_PART */

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum cf_type { CF_INT, CF_BOOL, CF_STR, CF_ENUM, CF_LIST };
enum cf_scope { CF_GLOBAL, CF_LINK };

struct cf_key {
	const char *section; /* "smsc" for every [smsc NAME] section */
	const char *key;
	enum cf_type type;
	enum cf_scope scope;
	size_t off;               /* offset in struct sg_config or struct smsc_conf */
	size_t size;              /* CF_STR: buffer size */
	const char *def;          /* default as it would be written in the file */
	long min, max;            /* CF_INT bounds */
	const char *const *names; /* CF_ENUM: value names, index = value */
	bool required;
	const char *doc;
};

static const char *const bind_names[] = {"transceiver", "transmitter+receiver", NULL};
static const char *const id_base_names[] = {"hex", "decimal", "string", NULL};
static const char *const dc0_names[] = {"gsm", "latin1", NULL};
static const char *const long_names[] = {"udh8", "udh16", "sar", "payload", NULL};
static const char *const text_names[] = {"auto", "fold", "ucs2", NULL};
static const char *const ussd_key_names[] = {"its_session_info", "user_message_reference", NULL};
static const char *const rule_names[] = {"self", "quiz", "both", NULL};

#define G(sec, k, t, field, def, mn, mx, doc)                                                      \
	{                                                                                          \
		sec, k, t, CF_GLOBAL, offsetof(struct sg_config, field),                           \
		    sizeof(((struct sg_config *)0)->field), def, mn, mx, NULL, false, doc          \
	}
#define GE(sec, k, field, def, names, doc)                                                         \
	{                                                                                          \
		sec, k, CF_ENUM, CF_GLOBAL, offsetof(struct sg_config, field), sizeof(int), def,   \
		    0, 0, names, false, doc                                                        \
	}
#define L(k, t, field, def, mn, mx, req, doc)                                                      \
	{                                                                                          \
		"smsc", k, t, CF_LINK, offsetof(struct smsc_conf, field),                          \
		    sizeof(((struct smsc_conf *)0)->field), def, mn, mx, NULL, req, doc            \
	}
#define LE(k, field, def, names, doc)                                                              \
	{                                                                                          \
		"smsc", k, CF_ENUM, CF_LINK, offsetof(struct smsc_conf, field), sizeof(int), def,  \
		    0, 0, names, false, doc                                                        \
	}

static const struct cf_key config_table[] = {
    /* [gateway] */
    G("gateway", "log_level", CF_STR, log_level, "info", 0, 0, "debug, info, warn or error"),
    G("gateway", "log_mask_msisdn", CF_BOOL, log_mask_msisdn, "yes", 0, 0,
      "mask phone numbers in logs (84912***678)"),
    G("gateway", "pid_file", CF_STR, pid_file, "", 0, 0,
      "write the daemon's pid here (empty: none)"),
    G("gateway", "shutdown_timeout", CF_INT, shutdown_timeout, "5", 1, 60,
      "seconds to finish in-flight work on SIGTERM"),
    G("gateway", "instance_name", CF_STR, instance_name, "", 0, 0,
      "name of this instance when several share one database (empty: host name)"),
    G("gateway", "link_lock", CF_BOOL, link_lock, "yes", 0, 0,
      "bind a link only while holding its lock in the database (several instances)"),
    G("gateway", "link_lock_interval", CF_INT, link_lock_interval, "5", 1, 60,
      "seconds between link lock attempts and instance heartbeats"),
    /* [database] */
    G("database", "conninfo", CF_STR, db_conninfo, "", 0, 0, "a libpq conninfo string (required)"),
    G("database", "pool", CF_INT, db_pool, "4", 1, 64, "PostgreSQL connections"),
    G("database", "batch_max", CF_INT, db_batch_max, "256", 1, 10000,
      "messages committed in one transaction at most"),
    G("database", "batch_wait_ms", CF_INT, db_batch_wait_ms, "2", 0, 1000,
      "longest wait for a batch to fill before it commits"),
    G("database", "queue_max", CF_INT, db_queue_max, "10000", 16, 1000000,
      "queries waiting for a connection before new work is refused"),
    G("database", "reconnect_max", CF_INT, db_reconnect_max, "10", 1, 300,
      "seconds, cap of the reconnect backoff"),
    G("database", "slow_ms", CF_INT, db_slow_ms, "1000", 0, 600000,
      "log statements whose round trip takes this many ms or more (0: none)"),
    G("database", "mo_temp_error", CF_INT, mo_temp_error, "100", 0, 0x7fffffff,
      "command_status sent when an MO cannot be committed (0x64 ESME_RX_T_APPN)"),
    G("database", "dedupe_window", CF_INT, dedupe_window, "3", 0, 3600,
      "seconds in which the same number and text count as one MO"),
    /* [http] */
    G("http", "listen", CF_STR, http_listen, "127.0.0.1:8080", 0, 0,
      "address:port of the HTTP API and dashboard (empty: off)"),
    G("http", "tls_cert", CF_STR, http_tls_cert, "", 0, 0, "PEM certificate; TLS when set"),
    G("http", "tls_key", CF_STR, http_tls_key, "", 0, 0, "PEM private key for tls_cert"),
    G("http", "max_body", CF_INT, http_max_body, "10485760", 1024, 1073741824,
      "bytes; larger request bodies get 413"),
    G("http", "timeout", CF_INT, http_timeout, "30", 1, 3600, "seconds an HTTP request may take"),
    G("http", "dashboard_dir", CF_STR, http_dashboard_dir, "web", 0, 0,
      "static files of the dashboard"),
    /* [campaign] */
    G("campaign", "timezone", CF_STR, timezone, "Asia/Ho_Chi_Minh", 0, 0,
      "time zone of quiet hours and schedules"),
    G("campaign", "quiet_hours", CF_STR, quiet_hours, "21:00-07:00", 0, 0,
      "HH:MM-HH:MM when nothing unsolicited is sent (empty: none)"),
    G("campaign", "daily_cap", CF_INT, daily_cap, "1", 0, 100,
      "unsolicited messages per number per day"),
    G("campaign", "reminder_max_per_skill", CF_INT, reminder_max_per_skill, "3", 0, 100,
      "reminders per number per skill"),
    G("campaign", "reminder_unfinished_delay", CF_INT, reminder_unfinished_delay, "86400", 0,
      31536000, "seconds after an unfinished quiz before a reminder"),
    G("campaign", "reminder_failed_delay", CF_INT, reminder_failed_delay, "259200", 0, 31536000,
      "seconds after a failed quiz before a retry invitation"),
    G("campaign", "reminder_next_delay", CF_INT, reminder_next_delay, "86400", 0, 31536000,
      "seconds after a pass before inviting to the next skill"),
    G("campaign", "mt_validity", CF_INT, mt_validity, "86400", 60, 31536000,
      "seconds a queued reminder or broadcast message stays worth sending"),
    /* [content] */
    G("content", "dir", CF_STR, content_dir, "config/content", 0, 0,
      "questions, menus and replies, one folder per language"),
    G("content", "default_language", CF_STR, default_language, "vi", 0, 0, "vi or en"),
    G("content", "pass_mark", CF_INT, pass_mark, "4", 1, 20, "correct answers to pass a quiz"),
    G("content", "quiz_length", CF_INT, quiz_length, "5", 1, 20, "questions per quiz"),
    GE("content", "proficiency_rule", proficiency_rule, "both", rule_names,
       "self (level >= 2), quiz (passed) or both"),
    G("content", "flow_idle_timeout", CF_INT, flow_idle_timeout, "86400", 60, 31536000,
      "seconds a quiz waits for an answer"),
    G("content", "help_interval", CF_INT, help_interval, "3600", 0, 86400,
      "seconds between help texts for unknown input"),
    G("content", "loop_max", CF_INT, loop_max, "20", 1, 10000,
      "identical exchanges with one number that count as a loop"),
    G("content", "loop_window", CF_INT, loop_window, "300", 1, 86400, "seconds of the loop window"),
    G("content", "ussd_idle_timeout", CF_INT, ussd_idle_timeout, "120", 5, 3600,
      "seconds a USSD dialog may sit idle"),
    G("content", "ussd_total_timeout", CF_INT, ussd_total_timeout, "180", 5, 3600,
      "seconds a USSD dialog may last"),
    G("content", "ussd_code", CF_STR, ussd_code, "*8079#", 0, 0, "the USSD service code"),
    /* [smsc NAME] */
    L("host", CF_STR, host, "", 0, 0, true, "SMSC address (IP or name resolved at start-up)"),
    L("port", CF_INT, port, "2775", 1, 65535, false, "SMSC port"),
    L("tls", CF_BOOL, tls, "no", 0, 0, false, "connect with TLS"),
    L("tls_ca_file", CF_STR, tls_ca_file, "", 0, 0, false,
      "CA bundle to verify the SMSC certificate (empty: system store)"),
    L("tls_cert_file", CF_STR, tls_cert_file, "", 0, 0, false, "client certificate (optional)"),
    L("tls_key_file", CF_STR, tls_key_file, "", 0, 0, false, "client key (optional)"),
    L("tls_verify", CF_BOOL, tls_verify, "yes", 0, 0, false,
      "verify the SMSC certificate and host name"),
    L("system_id", CF_STR, system_id, "", 0, 0, true, "bind system_id (at most 15 characters)"),
    L("password", CF_STR, password, "", 0, 0, false, "bind password (at most 8 characters)"),
    L("system_type", CF_STR, system_type, "", 0, 0, false, "bind system_type"),
    LE("bind", bind, "transceiver", bind_names, "transceiver, or transmitter+receiver"),
    L("window", CF_INT, window, "10", 1, 1000, false, "outstanding requests per bind"),
    L("rate", CF_INT, rate, "100", 0, 100000, false, "segments per second (0: unlimited)"),
    L("enquire_link", CF_INT, enquire_link, "30", 1, 3600, false, "seconds between enquire_link"),
    L("response_timeout", CF_INT, response_timeout, "10", 1, 300, false,
      "seconds to wait for a response"),
    L("reconnect_min", CF_INT, reconnect_min, "1", 1, 3600, false,
      "seconds, first reconnect delay"),
    L("reconnect_max", CF_INT, reconnect_max, "60", 1, 3600, false, "seconds, reconnect delay cap"),
    L("throttle_pause_ms", CF_INT, throttle_pause_ms, "1000", 10, 600000, false,
      "pause of the whole link after ESME_RTHROTTLED or ESME_RMSGQFUL"),
    L("max_retries", CF_INT, max_retries, "5", 0, 100, false,
      "temporary errors before a message fails"),
    L("source_addr", CF_STR, source_addr, "8079", 0, 0, false, "source address of MT messages"),
    L("source_ton", CF_INT, source_ton, "3", 0, 6, false, "source TON (3: network specific)"),
    L("source_npi", CF_INT, source_npi, "0", 0, 18, false, "source NPI"),
    L("dest_ton", CF_INT, dest_ton, "1", 0, 6, false, "destination TON (1: international)"),
    L("dest_npi", CF_INT, dest_npi, "1", 0, 18, false, "destination NPI (1: E.164)"),
    L("short_codes", CF_LIST, short_codes, "", 0, 0, false,
      "short codes this link delivers (space separated)"),
    L("ussd_codes", CF_LIST, ussd_codes, "", 0, 0, false, "USSD codes this link delivers"),
    L("prefixes", CF_LIST, prefixes, "", 0, 0, false,
      "MSISDN prefixes this link serves (routing hint)"),
    L("default_route", CF_BOOL, default_route, "no", 0, 0, false,
      "carry traffic that no prefix matches"),
    LE("submit_id_base", submit_id_base, "hex", id_base_names,
       "message_id base in submit_sm_resp: hex, decimal or string"),
    LE("dlr_id_base", dlr_id_base, "hex", id_base_names,
       "id base in delivery receipts: hex, decimal or string"),
    LE("data_coding_0", dc0, "gsm", dc0_names, "meaning of data_coding 0: gsm or latin1"),
    LE("long_messages", long_mode, "udh8", long_names, "udh8, udh16, sar or payload"),
    LE("text", text_mode, "auto", text_names,
       "auto (GSM-7 else UCS-2), fold (Vietnamese folded to GSM-7) or ucs2"),
    L("max_segments", CF_INT, max_segments, "6", 1, 16, false, "segments per message at most"),
    L("registered_delivery", CF_INT, registered_delivery, "1", 0, 31, false,
      "receipt request bits on every segment"),
    L("service_type", CF_STR, service_type, "", 0, 0, false, "service_type of submit_sm"),
    LE("ussd_session_key", ussd_session_key, "its_session_info", ussd_key_names,
       "where the USSD dialog id travels"),
    L("ussd_op_begin", CF_INT, ussd_op_begin, "1", 0, 255, false,
      "ussd_service_op that opens a dialog (PSSR indication)"),
    L("ussd_op_continue", CF_INT, ussd_op_continue, "18", 0, 255, false,
      "ussd_service_op of a user answer (USSR confirm)"),
    L("ussd_op_request", CF_INT, ussd_op_request, "2", 0, 255, false,
      "ussd_service_op we send to continue (USSR request)"),
    L("ussd_op_end", CF_INT, ussd_op_end, "17", 0, 255, false,
      "ussd_service_op we send on the last screen (PSSR response)"),
    L("ussd_op_abort", CF_LIST, ussd_op_abort, "0x81", 0, 0, false,
      "ussd_service_op values that abort a dialog"),
    L("max_pdu", CF_INT, max_pdu, "8192", 64, 65536, false,
      "bytes; larger command_length closes the link"),
    L("reassembly_timeout", CF_INT, reassembly_timeout, "60", 1, 3600, false,
      "seconds before a partial concatenated MO is handled"),
};

#define N_KEYS (sizeof config_table / sizeof config_table[0])

/* Parser state shared by the reader and the handler. */
struct cf_parse {
	struct sg_config *cfg;
	FILE *fp, *err;
	const char *path;
	int line; /* line most recently read */
	int nerr;
	struct smsc_conf *link; /* current [smsc NAME], NULL otherwise */
	bool link_seen[CONFIG_MAX_LINKS][N_KEYS];
	int link_line[CONFIG_MAX_LINKS];
	bool bad_section;
};

static void
cf_error(struct cf_parse *p, int line, const char *fmt, const char *a, const char *b)
{
	fprintf(p->err, "%s:%d: ", p->path, line);
	fprintf(p->err, fmt, a, b);
	fputc('\n', p->err);
	p->nerr++;
}

static int
cf_parse_int(const char *s, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 0); /* 0x.. allowed for status codes */
	if (errno != 0 || end == s || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

static int
cf_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};
	for (int i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0)
			return *out = true, 0;
		if (strcasecmp(s, no[i]) == 0)
			return *out = false, 0;
	}
	return -1;
}

/*
 * Stores value into the field of k at base. Returns NULL on success, or a
 * reason (static string) the caller reports with the line.
 */
static const char *
cf_set(const struct cf_key *k, void *base, const char *value, char *why, size_t whylen)
{
	char *field = (char *)base + k->off;
	long v;

	switch (k->type) {
	case CF_INT:
		if (cf_parse_int(value, &v) != 0)
			return "not an integer";
		if (v < k->min || v > k->max) {
			snprintf(why, whylen, "out of bounds (%ld..%ld)", k->min, k->max);
			return why;
		}
		*(int *)field = (int)v;
		return NULL;
	case CF_BOOL:
		if (cf_parse_bool(value, (bool *)field) != 0)
			return "not a boolean (yes/no)";
		return NULL;
	case CF_STR:
		if (strlen(value) >= k->size) {
			snprintf(why, whylen, "too long (at most %zu characters)", k->size - 1);
			return why;
		}
		memcpy(field, value, strlen(value) + 1);
		return NULL;
	case CF_ENUM:
		for (int i = 0; k->names[i]; i++) {
			if (strcasecmp(value, k->names[i]) == 0) {
				*(int *)field = i;
				return NULL;
			}
		}
		return "not one of the allowed values";
	case CF_LIST: {
		struct str_list *l = (struct str_list *)field;
		char tmp[1024];
		snprintf(tmp, sizeof tmp, "%s", value);
		l->n = 0;
		for (char *save, *tok = strtok_r(tmp, " \t,", &save); tok;
		     tok = strtok_r(NULL, " \t,", &save)) {
			if (l->n == CONFIG_MAX_LIST)
				return "too many entries";
			if (strlen(tok) >= sizeof l->v[0])
				return "an entry is too long";
			snprintf(l->v[l->n++], sizeof l->v[0], "%s", tok);
		}
		return NULL;
	}
	}
	return "bad key type";
}

static void
cf_defaults(void *base, enum cf_scope scope)
{
	char why[64];
	for (size_t i = 0; i < N_KEYS; i++) {
		if (config_table[i].scope != scope)
			continue;
		if (cf_set(&config_table[i], base, config_table[i].def, why, sizeof why) != NULL)
			fatal("config: bad default for %s", config_table[i].key);
	}
}

static const struct cf_key *
cf_find(const char *section, const char *key, size_t *idx)
{
	for (size_t i = 0; i < N_KEYS; i++) {
		if (strcmp(config_table[i].section, section) == 0 &&
		    strcmp(config_table[i].key, key) == 0) {
			*idx = i;
			return &config_table[i];
		}
	}
	return NULL;
}

static bool
cf_known_section(const char *s)
{
	static const char *const sections[] = {"gateway", "database", "http", "campaign",
	                                       "content"};
	for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++)
		if (strcmp(s, sections[i]) == 0)
			return true;
	return false;
}

/* "[smsc NAME]": opens a new link, or returns NULL with an error reported. */
static struct smsc_conf *
cf_open_link(struct cf_parse *p, const char *section)
{
	const char *name = section + 4;
	while (*name == ' ' || *name == '\t')
		name++;
	if (*name == '\0') {
		cf_error(p, p->line, "[smsc NAME]: the link needs a name%s%s", "", "");
		return NULL;
	}
	for (int i = 0; i < p->cfg->n_links; i++) {
		if (strcmp(p->cfg->links[i].name, name) == 0) {
			cf_error(p, p->line, "duplicate section [smsc %s]%s", name, "");
			return NULL;
		}
	}
	if (p->cfg->n_links == CONFIG_MAX_LINKS) {
		cf_error(p, p->line, "too many [smsc] sections%s%s", "", "");
		return NULL;
	}
	if (strlen(name) >= sizeof p->cfg->links[0].name) {
		cf_error(p, p->line, "link name '%s' is too long%s", name, "");
		return NULL;
	}
	int i = p->cfg->n_links++;
	struct smsc_conf *l = &p->cfg->links[i];
	cf_defaults(l, CF_LINK);
	snprintf(l->name, sizeof l->name, "%s", name);
	p->link_line[i] = p->line;
	return l;
}

static int
cf_handler(void *user, const char *section, const char *key, const char *value)
{
	struct cf_parse *p = user;
	char why[96];
	size_t idx;

	bool is_link = strncmp(section, "smsc", 4) == 0 &&
	               (section[4] == '\0' || section[4] == ' ' || section[4] == '\t');
	if (is_link) {
		const char *name = section + 4;
		while (*name == ' ' || *name == '\t')
			name++;
		if (p->link == NULL || strcmp(p->link->name, name) != 0) {
			p->link = cf_open_link(p, section);
			if (p->link == NULL)
				return 1;
		}
	} else {
		p->link = NULL;
		if (!cf_known_section(section)) {
			cf_error(p, p->line, "unknown section [%s]%s", section, "");
			return 1;
		}
	}
	const struct cf_key *k = cf_find(is_link ? "smsc" : section, key, &idx);
	if (k == NULL) {
		cf_error(p, p->line, "unknown key '%s' in [%s]", key, section);
		return 1;
	}
	void *base = is_link ? (void *)p->link : (void *)p->cfg;
	const char *err = cf_set(k, base, value, why, sizeof why);
	if (err != NULL) {
		char msg[160];
		snprintf(msg, sizeof msg, "%s: %s", key, err);
		cf_error(p, p->line, "%s (value '%s')", msg, value);
		return 1;
	}
	if (is_link)
		p->link_seen[p->link - p->cfg->links][idx] = true;
	return 1;
}

static char *
cf_reader(char *str, int num, void *stream)
{
	struct cf_parse *p = stream;
	char *r = fgets(str, num, p->fp);
	if (r != NULL)
		p->line++;
	return r;
}

/* Cross-key checks that no single row can express. */
static void
cf_check(struct cf_parse *p)
{
	struct sg_config *c = p->cfg;
	enum log_level lv;
	int h1, m1, h2, m2;
	char tail;

	if (c->db_conninfo[0] == '\0')
		cf_error(p, p->line, "[database] conninfo is required%s%s", "", "");
	if (log_parse_level(c->log_level, &lv) != 0)
		cf_error(p, p->line, "[gateway] log_level '%s' is not debug, info, warn or error%s",
		         c->log_level, "");
	if (c->quiet_hours[0] != '\0' &&
	    (sscanf(c->quiet_hours, "%d:%d-%d:%d%c", &h1, &m1, &h2, &m2, &tail) != 4 || h1 < 0 ||
	     h1 > 23 || h2 < 0 || h2 > 23 || m1 < 0 || m1 > 59 || m2 < 0 || m2 > 59))
		cf_error(p, p->line, "[campaign] quiet_hours '%s' is not HH:MM-HH:MM%s",
		         c->quiet_hours, "");
	if (strcmp(c->default_language, "vi") != 0 && strcmp(c->default_language, "en") != 0)
		cf_error(p, p->line, "[content] default_language must be vi or en%s%s", "", "");
	if (c->pass_mark > c->quiz_length)
		cf_error(p, p->line, "[content] pass_mark is larger than quiz_length%s%s", "", "");
	for (int i = 0; i < c->n_links; i++) {
		struct smsc_conf *l = &c->links[i];
		for (size_t k = 0; k < N_KEYS; k++) {
			if (config_table[k].scope == CF_LINK && config_table[k].required &&
			    !p->link_seen[i][k])
				cf_error(p, p->link_line[i], "[smsc %s]: missing required key '%s'",
				         l->name, config_table[k].key);
		}
		if (l->reconnect_min > l->reconnect_max)
			cf_error(p, p->link_line[i], "[smsc %s]: reconnect_min > reconnect_max%s",
			         l->name, "");
	}
}

int
config_load(const char *path, struct sg_config *cfg, FILE *err)
{
	static struct cf_parse p; /* large (link_seen); config loads are not reentrant */

	memset(cfg, 0, sizeof *cfg);
	memset(&p, 0, sizeof p);
	cf_defaults(cfg, CF_GLOBAL);
	snprintf(cfg->path, sizeof cfg->path, "%s", path);
	p.cfg = cfg;
	p.err = err;
	p.path = path;
	p.fp = fopen(path, "r");
	if (p.fp == NULL) {
		fprintf(err, "%s:0: cannot open: %s\n", path, strerror(errno));
		return 1;
	}
	ini_allow_multiline = false;
	int rc = ini_parse_stream(cf_reader, &p, cf_handler, &p);
	fclose(p.fp);
	if (rc > 0)
		cf_error(&p, rc, "syntax error (expected [section] or key = value)%s%s", "", "");
	else if (rc < 0)
		cf_error(&p, 0, "cannot parse%s%s", "", "");
	cf_check(&p);
	/* one name for this instance everywhere (outbox owner, heartbeat, locks) */
	if (cfg->instance_name[0] == '\0' &&
	    gethostname(cfg->instance_name, sizeof cfg->instance_name - 1) != 0)
		snprintf(cfg->instance_name, sizeof cfg->instance_name, "skillgated");
	return p.nerr;
}

void
config_each_key(void (*fn)(const char *section, const char *key, const char *doc, void *arg),
                void *arg)
{
	for (size_t i = 0; i < N_KEYS; i++)
		fn(config_table[i].section, config_table[i].key, config_table[i].doc, arg);
}

void
config_write_sample(FILE *out)
{
	const char *cur = "";
	for (size_t i = 0; i < N_KEYS; i++) {
		const struct cf_key *k = &config_table[i];
		if (strcmp(cur, k->section) != 0) {
			cur = k->section;
			fprintf(out, "\n[%s%s]\n", cur, strcmp(cur, "smsc") == 0 ? " NAME" : "");
		}
		fprintf(out, "; %s%s\n%s = %s\n", k->doc, k->required ? " (required)" : "", k->key,
		        k->def);
	}
}

int
config_reply_segments(const struct sg_config *cfg)
{
	int least = 0;

	for (int i = 0; i < cfg->n_links; i++) {
		const struct smsc_conf *l = &cfg->links[i];
		/* message_payload ignores max_segments: its octets hold 7 UCS-2 parts' worth */
		int room = l->long_mode == LONG_PAYLOAD ? TEXT_PAYLOAD_MAX / TEXT_UCS2_UDH16_PART
		                                        : l->max_segments;

		if (i == 0 || room < least)
			least = room;
	}
	return least;
}

/*
 * pdu_stats.c — SMPP PDU counters for /metrics (see pdu_stats.h).
 *
 * A fixed open-addressing table (linear probing, FNV-1a over the key) of
 * TABLE_SIZE slots holding at most PDU_STATS_SLOTS series, so the load
 * stays at or below one half and probes stay short. The key is (link,
 * direction, command, status-or-none); commands are folded to an index in
 * a static name table first, so unknown command ids from a hostile peer all
 * share one series. Status values are kept raw (arbitrary vendor values are
 * bounded by the table: past PDU_STATS_SLOTS series everything new goes to
 * the overflow counter of its direction). Nothing here allocates.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "pdu_stats.h"
#include "strbuf.h"

#define TABLE_SIZE (PDU_STATS_SLOTS * 2)
#define RESP_BIT 0x80000000u

static const struct {
	uint32_t id;
	const char *name;
} cmds[] = {
    {0x80000000u, "generic_nack"},          {0x00000001u, "bind_receiver"},
    {0x80000001u, "bind_receiver_resp"},    {0x00000002u, "bind_transmitter"},
    {0x80000002u, "bind_transmitter_resp"}, {0x00000003u, "query_sm"},
    {0x80000003u, "query_sm_resp"},         {0x00000004u, "submit_sm"},
    {0x80000004u, "submit_sm_resp"},        {0x00000005u, "deliver_sm"},
    {0x80000005u, "deliver_sm_resp"},       {0x00000006u, "unbind"},
    {0x80000006u, "unbind_resp"},           {0x00000007u, "replace_sm"},
    {0x80000007u, "replace_sm_resp"},       {0x00000008u, "cancel_sm"},
    {0x80000008u, "cancel_sm_resp"},        {0x00000009u, "bind_transceiver"},
    {0x80000009u, "bind_transceiver_resp"}, {0x0000000Bu, "outbind"},
    {0x00000015u, "enquire_link"},          {0x80000015u, "enquire_link_resp"},
    {0x00000021u, "submit_multi"},          {0x80000021u, "submit_multi_resp"},
    {0x00000102u, "alert_notification"},    {0x00000103u, "data_sm"},
    {0x80000103u, "data_sm_resp"},
};
#define N_CMDS ((int)(sizeof cmds / sizeof cmds[0]))
#define CMD_UNKNOWN_REQ N_CMDS        /* unknown request id */
#define CMD_UNKNOWN_RESP (N_CMDS + 1) /* unknown id with the response bit */
#define CMD_INVALID (N_CMDS + 2)      /* header not trusted */

/* SMPP 3.4 §5.1.3 command_status names. */
static const struct {
	uint32_t v;
	const char *name;
} statuses[] = {
    {0x00, "ESME_ROK"},
    {0x01, "ESME_RINVMSGLEN"},
    {0x02, "ESME_RINVCMDLEN"},
    {0x03, "ESME_RINVCMDID"},
    {0x04, "ESME_RINVBNDSTS"},
    {0x05, "ESME_RALYBND"},
    {0x06, "ESME_RINVPRTFLG"},
    {0x07, "ESME_RINVREGDLVFLG"},
    {0x08, "ESME_RSYSERR"},
    {0x0A, "ESME_RINVSRCADR"},
    {0x0B, "ESME_RINVDSTADR"},
    {0x0C, "ESME_RINVMSGID"},
    {0x0D, "ESME_RBINDFAIL"},
    {0x0E, "ESME_RINVPASWD"},
    {0x0F, "ESME_RINVSYSID"},
    {0x11, "ESME_RCANCELFAIL"},
    {0x13, "ESME_RREPLACEFAIL"},
    {0x14, "ESME_RMSGQFUL"},
    {0x15, "ESME_RINVSERTYP"},
    {0x33, "ESME_RINVNUMDESTS"},
    {0x34, "ESME_RINVDLNAME"},
    {0x40, "ESME_RINVDESTFLAG"},
    {0x42, "ESME_RINVSUBREP"},
    {0x43, "ESME_RINVESMCLASS"},
    {0x44, "ESME_RCNTSUBDL"},
    {0x45, "ESME_RSUBMITFAIL"},
    {0x48, "ESME_RINVSRCTON"},
    {0x49, "ESME_RINVSRCNPI"},
    {0x50, "ESME_RINVDSTTON"},
    {0x51, "ESME_RINVDSTNPI"},
    {0x53, "ESME_RINVSYSTYP"},
    {0x54, "ESME_RINVREPFLAG"},
    {0x55, "ESME_RINVNUMMSGS"},
    {0x58, "ESME_RTHROTTLED"},
    {0x61, "ESME_RINVSCHED"},
    {0x62, "ESME_RINVEXPIRY"},
    {0x63, "ESME_RINVDFTMSGID"},
    {0x64, "ESME_RX_T_APPN"},
    {0x65, "ESME_RX_P_APPN"},
    {0x66, "ESME_RX_R_APPN"},
    {0x67, "ESME_RQUERYFAIL"},
    {0xC0, "ESME_RINVOPTPARSTREAM"},
    {0xC1, "ESME_ROPTPARNOTALLWD"},
    {0xC2, "ESME_RINVPARLEN"},
    {0xC3, "ESME_RMISSINGOPTPARAM"},
    {0xC4, "ESME_RINVOPTPARAMVAL"},
    {0xFE, "ESME_RDELIVERYFAILURE"},
    {0xFF, "ESME_RUNKNOWNERR"},
};

struct entry {
	bool used;
	bool has_status;
	uint8_t dir;
	uint8_t cmd; /* index into cmds[] or CMD_* */
	uint32_t status;
	uint64_t n;
	char link[PDU_STATS_LINK_MAX];
};

static struct entry table[TABLE_SIZE];
static uint16_t order[PDU_STATS_SLOTS]; /* table indices, first seen first */
static int n_used;
static uint64_t overflow[2];

static int cmd_index(uint32_t id);
static const char *cmd_label(int idx);
static uint32_t hash_key(const char *link, int dir, int cmd, bool has_status, uint32_t status);
static struct entry *lookup(const char *link, int dir, int cmd, bool has_status, uint32_t status,
                            bool create);
static void count_key(const char *link, int dir, int cmd, bool has_status, uint32_t status);
static void put_label_value(struct strbuf *b, const char *s);
static uint32_t be32(const uint8_t *p);

static int
cmd_index(uint32_t id)
{
	for (int i = 0; i < N_CMDS; i++)
		if (cmds[i].id == id)
			return i;
	return (id & RESP_BIT) ? CMD_UNKNOWN_RESP : CMD_UNKNOWN_REQ;
}

static const char *
cmd_label(int idx)
{
	if (idx >= 0 && idx < N_CMDS)
		return cmds[idx].name;
	return idx == CMD_INVALID ? "invalid" : "unknown";
}

static uint32_t
hash_key(const char *link, int dir, int cmd, bool has_status, uint32_t status)
{
	uint32_t h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)link; *p != '\0'; p++)
		h = (h ^ *p) * 16777619u;
	uint32_t rest[3] = {(uint32_t)dir, (uint32_t)cmd << 1 | (has_status ? 1u : 0u), status};
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 4; k++)
			h = (h ^ ((rest[i] >> (8 * k)) & 0xFFu)) * 16777619u;
	return h;
}

/*
 * Finds the entry of the key (link already truncated to fit); when absent
 * and create is set, claims a free slot unless the table holds
 * PDU_STATS_SLOTS series already. Returns NULL when absent / full.
 */
static struct entry *
lookup(const char *link, int dir, int cmd, bool has_status, uint32_t status, bool create)
{
	uint32_t i = hash_key(link, dir, cmd, has_status, status) % TABLE_SIZE;

	for (int probes = 0; probes < TABLE_SIZE; probes++, i = (i + 1) % TABLE_SIZE) {
		struct entry *e = &table[i];
		if (!e->used) {
			if (!create || n_used >= PDU_STATS_SLOTS)
				return NULL;
			e->used = true;
			e->dir = (uint8_t)dir;
			e->cmd = (uint8_t)cmd;
			e->has_status = has_status;
			e->status = status;
			e->n = 0;
			str_copy(e->link, sizeof e->link, link);
			order[n_used++] = (uint16_t)i;
			return e;
		}
		if (e->dir == dir && e->cmd == cmd && e->has_status == has_status &&
		    e->status == status && strcmp(e->link, link) == 0)
			return e;
	}
	return NULL;
}

static void
count_key(const char *link, int dir, int cmd, bool has_status, uint32_t status)
{
	char lk[PDU_STATS_LINK_MAX];
	int d = dir == PDU_STATS_OUT ? PDU_STATS_OUT : PDU_STATS_IN;
	struct entry *e = lookup(str_copy(lk, sizeof lk, link), d, cmd, has_status, status, true);

	if (e != NULL)
		e->n++;
	else
		overflow[d]++;
}

void
pdu_stats_count(const char *link, int dir, uint32_t command_id, uint32_t status)
{
	bool resp = (command_id & RESP_BIT) != 0;

	count_key(link, dir, cmd_index(command_id), resp, resp ? status : 0);
}

void
pdu_stats_count_invalid(const char *link, int dir)
{
	count_key(link, dir, CMD_INVALID, false, 0);
}

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void
pdu_stats_count_pdu(const char *link, int dir, const uint8_t *pdu, size_t len)
{
	if (pdu == NULL || len < 16)
		pdu_stats_count_invalid(link, dir);
	else
		pdu_stats_count(link, dir, be32(pdu + 4), be32(pdu + 8));
}

uint64_t
pdu_stats_get(const char *link, int dir, uint32_t command_id, uint32_t status)
{
	char lk[PDU_STATS_LINK_MAX];
	bool resp = (command_id & RESP_BIT) != 0;
	int d = dir == PDU_STATS_OUT ? PDU_STATS_OUT : PDU_STATS_IN;
	struct entry *e = lookup(str_copy(lk, sizeof lk, link), d, cmd_index(command_id), resp,
	                         resp ? status : 0, false);

	return e != NULL ? e->n : 0;
}

/* Writes s as a label value: backslash, double quote and newline escaped. */
static void
put_label_value(struct strbuf *b, const char *s)
{
	const char *run = s;

	for (; *s != '\0'; s++) {
		const char *esc = *s == '\\'   ? "\\\\"
		                  : *s == '"'  ? "\\\""
		                  : *s == '\n' ? "\\n"
		                               : NULL;
		if (esc == NULL)
			continue;
		strbuf_append(b, run, (size_t)(s - run));
		strbuf_puts(b, esc);
		run = s + 1;
	}
	strbuf_append(b, run, (size_t)(s - run));
}

void
pdu_stats_render(struct strbuf *b)
{
	static const char *const dirs[] = {"in", "out"};

	strbuf_puts(b, "# HELP skillgate_smpp_pdus_total SMPP PDUs by link, direction, command and "
	               "response status.\n"
	               "# TYPE skillgate_smpp_pdus_total counter\n");
	for (int k = 0; k < n_used; k++) {
		const struct entry *e = &table[order[k]];
		strbuf_puts(b, "skillgate_smpp_pdus_total{link=\"");
		put_label_value(b, e->link);
		strbuf_printf(b, "\",direction=\"%s\",command=\"%s\"", dirs[e->dir],
		              cmd_label(e->cmd));
		if (e->has_status) {
			const char *name = NULL;
			for (size_t i = 0; i < sizeof statuses / sizeof statuses[0] && name == NULL;
			     i++)
				if (statuses[i].v == e->status)
					name = statuses[i].name;
			if (name != NULL)
				strbuf_printf(b, ",status=\"%s\"", name);
			else
				strbuf_printf(b, ",status=\"0x%08" PRIx32 "\"", e->status);
		}
		strbuf_printf(b, "} %" PRIu64 "\n", e->n);
	}
	for (int d = 0; d < 2; d++)
		if (overflow[d] > 0)
			strbuf_printf(b,
			              "skillgate_smpp_pdus_total{link=\"\",direction=\"%s\","
			              "command=\"overflow\"} %" PRIu64 "\n",
			              dirs[d], overflow[d]);
}

void
pdu_stats_reset(void)
{
	memset(table, 0, sizeof table);
	memset(order, 0, sizeof order);
	n_used = 0;
	overflow[0] = overflow[1] = 0;
}

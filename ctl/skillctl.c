/*
 * skillctl.c — the operator's command line: global options, then one
 * command (see ctl.h). Usage: skillctl [-c FILE] COMMAND [ARGS...]
 */
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "log.h"

struct ctl_cmd {
	const char *name;
	int (*fn)(struct ctl *, int, char **);
	bool needs_config;
	const char *help;
};

static const struct ctl_cmd commands[] = {
    {"migrate", ctl_migrate, true, "apply the schema migrations in sql/ (idempotent)"},
    {"import-households", ctl_import_households, true, "FILE.csv: import households and phones"},
    {"broadcast", ctl_broadcast, true, "create|list|show|cancel broadcasts"},
    {"report", ctl_report, true, "coverage [--level L] [--parent CODE] [--format table|csv|json]"},
    {"subscriber", ctl_subscriber, true, "MSISDN: language, opt-out, household, proficiency"},
    {"token", ctl_token, true, "create --role ROLE --name NAME | list | revoke ID"},
    {"content", ctl_content, true, "check: validate config/content"},
    {"status", ctl_status, true, "links and database as the daemon sees them"},
    {"phone", ctl_phone, false, "MSISDN: an interactive handset (SMS and USSD) for demos"},
};

static void
usage(void)
{
	fprintf(stderr, "usage: skillctl [-c FILE] [-s SQLDIR] COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(stderr, "  %-18s %s\n", commands[i].name, commands[i].help);
	exit(2);
}

PGconn *
ctl_db(struct ctl *c)
{
	if (c->db != NULL)
		return c->db;
	const char *ci = getenv("SKILLGATE_DB");
	if (ci == NULL)
		ci = c->cfg->db_conninfo;
	c->db = PQconnectdb(ci);
	if (PQstatus(c->db) != CONNECTION_OK) {
		fprintf(stderr, "skillctl: cannot connect to the database: %s",
		        PQerrorMessage(c->db));
		exit(1);
	}
	PQclear(PQexec(c->db, "SET client_min_messages = warning"));
	return c->db;
}

PGresult *
ctl_exec(struct ctl *c, const char *sql, int n, const char *const *params)
{
	PGresult *res = PQexecParams(ctl_db(c), sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType s = PQresultStatus(res);
	if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK) {
		fprintf(stderr, "skillctl: %s", PQresultErrorMessage(res));
		PQclear(res);
		return NULL;
	}
	return res;
}

void
ctl_http_base(const struct ctl *c, char *out, size_t cap)
{
	const char *l = c->cfg->http_listen;
	bool tls = c->cfg->http_tls_cert[0] != '\0';
	if (strncmp(l, "0.0.0.0:", 8) == 0)
		snprintf(out, cap, "%s://127.0.0.1:%s", tls ? "https" : "http", l + 8);
	else
		snprintf(out, cap, "%s://%s", tls ? "https" : "http", l);
}

/* <dir of the binary>/../sql, unless -s or SKILLGATE_SQL_DIR says otherwise. */
static const char *
default_sql_dir(const char *argv0)
{
	static char dir[PATH_MAX];
	const char *env = getenv("SKILLGATE_SQL_DIR");
	if (env)
		return env;
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		snprintf(self, sizeof self, "%s", argv0);
	else
		self[n] = '\0';
	snprintf(dir, sizeof dir, "%s/../sql", dirname(self));
	return dir;
}

int
main(int argc, char **argv)
{
	static struct sg_config cfg;
	struct ctl c = {.config_path = "config/skillgate.conf", .cfg = &cfg};
	const char *sql_dir = NULL;
	int ch;

	log_init(L_WARN, true);
	while ((ch = getopt(argc, argv, "+c:s:h")) != -1) {
		switch (ch) {
		case 'c':
			c.config_path = optarg;
			break;
		case 's':
			sql_dir = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind >= argc)
		usage();
	c.sql_dir = sql_dir ? sql_dir : default_sql_dir(argv[0]);
	const char *name = argv[optind];
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		if (strcmp(commands[i].name, name) != 0)
			continue;
		if (commands[i].needs_config && config_load(c.config_path, &cfg, stderr) != 0)
			return 1;
		if (!commands[i].needs_config && access(c.config_path, R_OK) == 0)
			config_load(c.config_path, &cfg, stderr);
		optind++;
		int rc = commands[i].fn(&c, argc - optind + 1, argv + optind - 1);
		if (c.db)
			PQfinish(c.db);
		return rc;
	}
	fprintf(stderr, "skillctl: unknown command '%s'\n", name);
	usage();
}

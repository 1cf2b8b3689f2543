/*
 * ctl.h — skillctl, the operator's command line (§2). ctl/skillctl.c parses
 * the global options and dispatches to one function per command, each in
 * its own ctl/<command>.c. skillctl is a CLI, not the daemon: it may block
 * (synchronous libpq, blocking HTTP to the daemon).
 */
#ifndef SG_CTL_H
#define SG_CTL_H

#include <libpq-fe.h>
#include <stdio.h>

#include "config.h"

struct ctl {
	const char *config_path;
	struct sg_config *cfg; /* loaded from -c (or the default path) */
	const char *sql_dir;   /* migrations (default: <bin>/../sql) */
	PGconn *db;            /* connected on first ctl_db() */
};

/* The database connection, connected on first use; exits(1) with a clear
 * message when it cannot connect. */
PGconn *ctl_db(struct ctl *c);

/* Runs sql with text params; on error prints it and returns NULL. */
PGresult *ctl_exec(struct ctl *c, const char *sql, int n, const char *const *params);

/* The daemon's HTTP base URL from [http] listen, e.g. "http://127.0.0.1:8080". */
void ctl_http_base(const struct ctl *c, char *out, size_t cap);

/*
 * Commands. argv[0] is the command name. Return the process exit status
 * (0 ok, 1 failure, 2 usage).
 */
int ctl_migrate(struct ctl *c, int argc, char **argv);           /* ctl/migrate.c */
int ctl_phone(struct ctl *c, int argc, char **argv);             /* ctl/phone.c */
int ctl_content(struct ctl *c, int argc, char **argv);           /* ctl/migrate.c */
int ctl_broadcast(struct ctl *c, int argc, char **argv);         /* ctl/broadcast.c */
int ctl_report(struct ctl *c, int argc, char **argv);            /* ctl/report.c */
int ctl_import_households(struct ctl *c, int argc, char **argv); /* ctl/report.c */
int ctl_subscriber(struct ctl *c, int argc, char **argv);        /* ctl/report.c */
int ctl_token(struct ctl *c, int argc, char **argv);             /* ctl/report.c */
int ctl_status(struct ctl *c, int argc, char **argv);            /* ctl/report.c */

#endif

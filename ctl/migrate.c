/*
 * migrate.c — `skillctl migrate`: applies sql/NNN_name.sql in order, each in
 * its own transaction with its version recorded in schema_version, under an
 * advisory lock so two operators cannot migrate at once. Running it again
 * applies nothing. Also `skillctl content check`.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "content.h"
#include "ctl.h"

#define MIGRATE_LOCK "7420001" /* pg_advisory_lock key for migrations */

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted NNN_*.sql names in dir; returns the count, *out malloc'd. */
static int
list_migrations(const char *dir, char ***out)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return -1;
	char **names = NULL;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		if (len < 8 || strcmp(e->d_name + len - 4, ".sql") != 0 || e->d_name[0] < '0' ||
		    e->d_name[0] > '9')
			continue;
		names = realloc(names, (size_t)(n + 1) * sizeof *names);
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, (size_t)n, sizeof *names, cmp_names);
	*out = names;
	return n;
}

static char *
read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *s = malloc((size_t)n + 1);
	if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
		free(s);
		s = NULL;
	}
	if (s)
		s[n] = '\0';
	fclose(f);
	return s;
}

static bool
simple(PGconn *db, const char *sql)
{
	PGresult *r = PQexec(db, sql);
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
	if (!ok)
		fprintf(stderr, "skillctl: %s", PQresultErrorMessage(r));
	PQclear(r);
	return ok;
}

static int
apply_one(struct ctl *c, const char *name)
{
	PGconn *db = ctl_db(c);
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", c->sql_dir, name);
	char *sql = read_file(path);
	if (sql == NULL) {
		fprintf(stderr, "skillctl: cannot read %s\n", path);
		return -1;
	}
	bool ok = simple(db, "BEGIN") && simple(db, sql);
	free(sql);
	const char *params[] = {name};
	if (ok) {
		PGresult *r = PQexecParams(db, "INSERT INTO schema_version (name) VALUES ($1)", 1,
		                           NULL, params, NULL, NULL, 0);
		ok = PQresultStatus(r) == PGRES_COMMAND_OK;
		PQclear(r);
	}
	if (!ok || !simple(db, "COMMIT")) {
		simple(db, "ROLLBACK");
		fprintf(stderr, "skillctl: migration %s failed; nothing of it was applied\n", name);
		return -1;
	}
	printf("applied %s\n", name);
	return 0;
}

int
ctl_migrate(struct ctl *c, int argc, char **argv)
{
	PGconn *db = ctl_db(c);
	char **names;
	int n = list_migrations(c->sql_dir, &names);
	if (n < 0) {
		fprintf(stderr, "skillctl: cannot read migrations in %s (use -s DIR)\n",
		        c->sql_dir);
		return 1;
	}
	if (!simple(db, "SELECT pg_advisory_lock(" MIGRATE_LOCK ")") ||
	    !simple(db, "CREATE TABLE IF NOT EXISTS schema_version (name text PRIMARY KEY, "
	                "applied_at timestamptz NOT NULL DEFAULT now())"))
		return 1;
	int applied = 0, rc = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		const char *params[] = {names[i]};
		PGresult *r = PQexecParams(db, "SELECT 1 FROM schema_version WHERE name = $1", 1,
		                           NULL, params, NULL, NULL, 0);
		bool done = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
		PQclear(r);
		if (!done) {
			if (apply_one(c, names[i]) != 0)
				rc = 1;
			else
				applied++;
		}
	}
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	simple(db, "SELECT pg_advisory_unlock(" MIGRATE_LOCK ")");
	if (rc == 0)
		printf("schema up to date (%d applied, %d total)\n", applied, n);
	return rc;
}

int
ctl_content(struct ctl *c, int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "check") != 0) {
		fprintf(stderr, "usage: skillctl content check\n");
		return 2;
	}
	int nerr = 0;
	struct content *ct = content_load(c->cfg->content_dir, stdout, &nerr);
	if (ct == NULL) {
		printf("%s: %d error(s)\n", c->cfg->content_dir, nerr);
		return 1;
	}
	content_free(ct);
	printf("%s: ok\n", c->cfg->content_dir);
	return 0;
}

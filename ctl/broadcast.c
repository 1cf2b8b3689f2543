/*
 * broadcast.c — `skillctl broadcast`: how campaign staff schedule, watch and
 * cancel broadcasts (§4.2) from the command line.
 *
 *   skillctl broadcast create --name N --text-vi T [--text-en T]
 *                             [--province C] [--district C] [--commune C]
 *                             [--missing-skills payment,safety] [--language vi|en]
 *                             [--covered yes|no] [--registered-since DATE]
 *                             --start TIME [--end TIME] [--rate N] [--dry-run]
 *   skillctl broadcast create --json FILE      (the §4.2 create body; "-" = stdin)
 *   skillctl broadcast list [--all]
 *   skillctl broadcast show ID [--json]
 *   skillctl broadcast cancel ID
 *
 * Validation and creation are done by sg_broadcast_create() in the database
 * (sql/004_campaigns.sql), the same function the HTTP API uses, so both say
 * the same thing about a bad segment. Times without an offset are in the
 * campaign time zone ([campaign] timezone).
 */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static void
bc_usage(void)
{
	fprintf(stderr, "usage: skillctl broadcast create --name N --text-vi T [--text-en T]\n"
	                "                 [--province C] [--district C] [--commune C]\n"
	                "                 [--missing-skills payment,safety] [--language vi|en]\n"
	                "                 [--covered yes|no] [--registered-since DATE]\n"
	                "                 --start TIME [--end TIME] [--rate N] [--dry-run]\n"
	                "       skillctl broadcast create --json FILE [--dry-run]\n"
	                "       skillctl broadcast list [--all]\n"
	                "       skillctl broadcast show ID [--json]\n"
	                "       skillctl broadcast cancel ID\n"
	                "TIME is ISO 8601, e.g. 2026-10-01T08:00 (campaign time zone) or "
	                "2026-10-01T08:00:00+07:00.\n");
}

/* Runs sql; on error prints only the primary message (the database's own
 * wording of what is wrong with the input) and returns NULL. */
static PGresult *
bc_exec(struct ctl *c, const char *sql, int n, const char *const *params)
{
	PGresult *res = PQexecParams(ctl_db(c), sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		fprintf(stderr, "skillctl broadcast: %s\n", m ? m : PQresultErrorMessage(res));
		PQclear(res);
		return NULL;
	}
	return res;
}

/* A positive decimal id, or -1. */
static long long
bc_id(const char *s)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v <= 0)
		return -1;
	return v;
}

/* --opt VALUE or --opt=VALUE at argv[*i]; advances *i. NULL when it is not
 * this option; exits with usage when the value is missing. */
static const char *
bc_opt(int argc, char **argv, int *i, const char *name)
{
	size_t n = strlen(name);
	const char *a = argv[*i];
	if (strncmp(a, name, n) != 0)
		return NULL;
	if (a[n] == '=')
		return a + n + 1;
	if (a[n] != '\0')
		return NULL;
	if (*i + 1 >= argc) {
		fprintf(stderr, "skillctl broadcast: %s needs a value\n", name);
		exit(2);
	}
	return argv[++*i];
}

static json_t *
bc_read_json(const char *path)
{
	json_error_t e;
	json_t *j = strcmp(path, "-") == 0 ? json_loadf(stdin, 0, &e) : json_load_file(path, 0, &e);
	if (j == NULL)
		fprintf(stderr, "skillctl broadcast: %s:%d: %s\n", path, e.line, e.text);
	return j;
}

static int
bc_create(struct ctl *c, int argc, char **argv)
{
	const char *name = NULL, *vi = NULL, *en = NULL, *start = NULL, *end = NULL, *rate = NULL;
	const char *jsonf = NULL;
	const char *seg_keys[] = {"--province",        "--district", "--commune",
	                          "--missing-skills",  "--language", "--covered",
	                          "--registered-since"};
	const char *seg_json[] = {"province", "district", "commune",         "missing_skills",
	                          "language", "covered",  "registered_since"};
	const char *seg_val[7] = {0};
	bool dry = false;

	for (int i = 2; i < argc; i++) {
		const char *v;
		bool hit = false;
		if ((v = bc_opt(argc, argv, &i, "--name")) != NULL)
			name = v;
		else if ((v = bc_opt(argc, argv, &i, "--text-vi")) != NULL)
			vi = v;
		else if ((v = bc_opt(argc, argv, &i, "--text-en")) != NULL)
			en = v;
		else if ((v = bc_opt(argc, argv, &i, "--start")) != NULL)
			start = v;
		else if ((v = bc_opt(argc, argv, &i, "--end")) != NULL)
			end = v;
		else if ((v = bc_opt(argc, argv, &i, "--rate")) != NULL)
			rate = v;
		else if ((v = bc_opt(argc, argv, &i, "--json")) != NULL)
			jsonf = v;
		else if (strcmp(argv[i], "--dry-run") == 0)
			dry = true;
		else {
			for (size_t k = 0; k < sizeof seg_keys / sizeof seg_keys[0]; k++) {
				if ((v = bc_opt(argc, argv, &i, seg_keys[k])) != NULL) {
					seg_val[k] = v;
					hit = true;
					break;
				}
			}
			if (!hit) {
				fprintf(stderr, "skillctl broadcast: unknown option %s\n", argv[i]);
				bc_usage();
				return 2;
			}
		}
	}

	json_t *body;
	if (jsonf != NULL) {
		if (name || vi || en || start || end || rate) {
			fprintf(
			    stderr,
			    "skillctl broadcast: --json cannot be combined with other options\n");
			return 2;
		}
		body = bc_read_json(jsonf);
		if (body == NULL)
			return 1;
	} else {
		if (name == NULL || (vi == NULL && en == NULL) || start == NULL) {
			fprintf(stderr,
			        "skillctl broadcast: --name, --text-vi (or --text-en) and --start "
			        "are required\n");
			bc_usage();
			return 2;
		}
		body = json_object();
		json_object_set_new(body, "name", json_string(name));
		json_t *text = json_object();
		if (vi)
			json_object_set_new(text, "vi", json_string(vi));
		if (en)
			json_object_set_new(text, "en", json_string(en));
		json_object_set_new(body, "text", text);
		json_t *seg = json_object();
		for (size_t k = 0; k < sizeof seg_json / sizeof seg_json[0]; k++)
			if (seg_val[k] != NULL)
				json_object_set_new(seg, seg_json[k], json_string(seg_val[k]));
		json_object_set_new(body, "segment", seg);
		json_object_set_new(body, "start_at", json_string(start));
		if (end)
			json_object_set_new(body, "end_at", json_string(end));
		if (rate) {
			long long r = bc_id(rate);
			if (r < 0) {
				fprintf(
				    stderr,
				    "skillctl broadcast: --rate must be a positive whole number "
				    "(messages per second)\n");
				json_decref(body);
				return 2;
			}
			json_object_set_new(body, "rate", json_integer(r));
		}
	}
	char *txt = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (txt == NULL) {
		fprintf(stderr, "skillctl broadcast: out of memory\n");
		return 1;
	}

	/* Create (or validate only) inside a transaction, and count who the
	 * segment matches now for the operator. */
	const char *p[] = {txt, "skillctl"};
	PGresult *r = bc_exec(c, "BEGIN", 0, NULL);
	if (r == NULL) {
		free(txt);
		return 1;
	}
	PQclear(r);
	r = bc_exec(c, "SELECT sg_broadcast_create($1::jsonb, $2)", 2, p);
	if (r != NULL) {
		const char *idp[] = {PQgetvalue(r, 0, 0)};
		PGresult *d = bc_exec(
		    c,
		    "SELECT x.id, sg_segment_count(x.segment), "
		    "to_char(x.start_at AT TIME ZONE cs.timezone, 'YYYY-MM-DD HH24:MI:SS'), "
		    "coalesce(to_char(x.end_at AT TIME ZONE cs.timezone, 'YYYY-MM-DD HH24:MI:SS'), "
		    "''), "
		    "cs.timezone, coalesce(x.rate::text, 'link rate') "
		    "FROM broadcasts x, campaign_settings cs WHERE x.id = $1::bigint",
		    1, idp);
		PQclear(r);
		r = d;
		if (r != NULL && PQntuples(r) != 1) {
			fprintf(stderr,
			        "skillctl broadcast: the new broadcast cannot be read back\n");
			PQclear(r);
			r = NULL;
		}
	}
	free(txt);
	if (r == NULL) {
		PQclear(PQexec(ctl_db(c), "ROLLBACK"));
		return 1;
	}
	PGresult *fin = PQexec(ctl_db(c), dry ? "ROLLBACK" : "COMMIT");
	bool ok = PQresultStatus(fin) == PGRES_COMMAND_OK;
	PQclear(fin);
	if (!ok) {
		fprintf(stderr, "skillctl broadcast: commit failed: %s", PQerrorMessage(ctl_db(c)));
		PQclear(r);
		return 1;
	}
	if (dry)
		printf("valid (not created): ");
	else
		printf("broadcast %s created: ", PQgetvalue(r, 0, 0));
	printf("starts %s %s%s%s, rate %s, %s number(s) match now\n", PQgetvalue(r, 0, 2),
	       PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 3)[0] ? ", ends " : "", PQgetvalue(r, 0, 3),
	       PQgetvalue(r, 0, 5), PQgetvalue(r, 0, 1));
	PQclear(r);
	return 0;
}

static int
bc_list(struct ctl *c, int argc, char **argv)
{
	bool all = argc > 2 && strcmp(argv[2], "--all") == 0;
	PGresult *r =
	    bc_exec(c,
	            "SELECT n.id, n.state, to_char(n.start_at AT TIME ZONE cs.timezone, "
	            "'YYYY-MM-DD HH24:MI'), "
	            "n.targeted, n.queued, n.submitted, n.delivered, n.failed, n.cancelled, n.name "
	            "FROM broadcasts b CROSS JOIN LATERAL sg_broadcast_counts(b.id) n, "
	            "campaign_settings cs "
	            "WHERE $1::boolean OR b.state NOT IN ('done', 'cancelled') OR b.created_at > "
	            "now() - interval '7 days' "
	            "ORDER BY b.id DESC LIMIT 200",
	            1, (const char *const[]){all ? "true" : "false"});
	if (r == NULL)
		return 1;
	printf("%6s  %-10s %-16s %8s %8s %9s %9s %7s %9s  %s\n", "id", "state", "start", "targeted",
	       "queued", "submitted", "delivered", "failed", "cancelled", "name");
	for (int i = 0; i < PQntuples(r); i++)
		printf("%6s  %-10s %-16s %8s %8s %9s %9s %7s %9s  %s\n", PQgetvalue(r, i, 0),
		       PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), PQgetvalue(r, i, 3),
		       PQgetvalue(r, i, 4), PQgetvalue(r, i, 5), PQgetvalue(r, i, 6),
		       PQgetvalue(r, i, 7), PQgetvalue(r, i, 8), PQgetvalue(r, i, 9));
	PQclear(r);
	return 0;
}

static int
bc_show(struct ctl *c, int argc, char **argv)
{
	if (argc < 3 || bc_id(argv[2]) < 0) {
		fprintf(stderr, "skillctl broadcast: show needs a broadcast id\n");
		return 2;
	}
	bool as_json = argc > 3 && strcmp(argv[3], "--json") == 0;
	const char *p[] = {argv[2]};
	PGresult *r = bc_exec(
	    c,
	    "SELECT json_build_object('id', n.id, 'name', n.name, 'state', n.state, "
	    "'start_at', n.start_at, 'end_at', n.end_at, 'rate', n.rate, 'segment', b.segment, "
	    "'text', json_build_object('vi', b.text_vi, 'en', b.text_en), "
	    "'targeted', n.targeted, 'queued', n.queued, 'submitted', n.submitted, "
	    "'delivered', n.delivered, 'failed', n.failed, 'cancelled', n.cancelled, "
	    "'skipped', n.skipped)::text, "
	    "n.name, n.state, to_char(n.start_at AT TIME ZONE cs.timezone, 'YYYY-MM-DD "
	    "HH24:MI:SS'), "
	    "coalesce(to_char(n.end_at AT TIME ZONE cs.timezone, 'YYYY-MM-DD HH24:MI:SS'), '-'), "
	    "coalesce(n.rate::text, 'link rate'), b.segment::text, b.text_vi, b.text_en, "
	    "n.targeted, n.queued, n.submitted, n.delivered, n.failed, n.cancelled, n.skipped, "
	    "cs.timezone "
	    "FROM sg_broadcast_counts($1::bigint) n JOIN broadcasts b ON b.id = n.id, "
	    "campaign_settings cs",
	    1, p);
	if (r == NULL)
		return 1;
	if (PQntuples(r) == 0) {
		fprintf(stderr, "skillctl broadcast: no broadcast %s\n", argv[2]);
		PQclear(r);
		return 1;
	}
	if (as_json) {
		printf("%s\n", PQgetvalue(r, 0, 0));
	} else {
		printf("broadcast %s: %s\n  state      %s\n  start      %s %s\n  end        %s\n"
		       "  rate       %s\n  segment    %s\n  text vi    %s\n  text en    %s\n"
		       "  targeted   %s\n  queued     %s\n  submitted  %s\n  delivered  %s\n"
		       "  failed     %s\n  cancelled  %s\n  skipped    %s\n",
		       argv[2], PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3),
		       PQgetvalue(r, 0, 16), PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 5),
		       PQgetvalue(r, 0, 6), PQgetvalue(r, 0, 7), PQgetvalue(r, 0, 8),
		       PQgetvalue(r, 0, 9), PQgetvalue(r, 0, 10), PQgetvalue(r, 0, 11),
		       PQgetvalue(r, 0, 12), PQgetvalue(r, 0, 13), PQgetvalue(r, 0, 14),
		       PQgetvalue(r, 0, 15));
	}
	PQclear(r);
	return 0;
}

static int
bc_cancel(struct ctl *c, int argc, char **argv)
{
	if (argc < 3 || bc_id(argv[2]) < 0) {
		fprintf(stderr, "skillctl broadcast: cancel needs a broadcast id\n");
		return 2;
	}
	const char *p[] = {argv[2]};
	PGresult *r =
	    bc_exec(c, "SELECT previous, cancelled FROM sg_broadcast_cancel($1::bigint)", 1, p);
	if (r == NULL)
		return 1;
	int rc = 0;
	if (PQgetisnull(r, 0, 0)) {
		fprintf(stderr, "skillctl broadcast: no broadcast %s\n", argv[2]);
		rc = 1;
	} else if (strcmp(PQgetvalue(r, 0, 0), "done") == 0 ||
	           strcmp(PQgetvalue(r, 0, 0), "cancelled") == 0) {
		printf("broadcast %s was already %s; %s queued message(s) cancelled\n", argv[2],
		       PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
	} else {
		printf("broadcast %s cancelled (was %s): %s queued message(s) will not be sent\n",
		       argv[2], PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
	}
	PQclear(r);
	return rc;
}

/* Entry point: argv[0] = "broadcast", argv[1] = subcommand. */
int
ctl_broadcast(struct ctl *c, int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		bc_usage();
		return 2;
	}
	if (strcmp(argv[1], "create") == 0)
		return bc_create(c, argc, argv);
	if (strcmp(argv[1], "list") == 0)
		return bc_list(c, argc, argv);
	if (strcmp(argv[1], "show") == 0)
		return bc_show(c, argc, argv);
	if (strcmp(argv[1], "cancel") == 0)
		return bc_cancel(c, argc, argv);
	fprintf(stderr, "skillctl broadcast: unknown subcommand %s\n", argv[1]);
	bc_usage();
	return 2;
}

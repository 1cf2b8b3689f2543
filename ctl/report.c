/*
 * report.c — skillctl's staff commands (§2, §4): `report coverage`,
 * `import-households`, `subscriber`, `token create|list|revoke` and
 * `status`. They use the same SQL functions as the HTTP API
 * (sql/005_reports.sql) and the same CSV parser (core/household_csv.c), over
 * synchronous libpq: skillctl is a CLI and may block.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "ctl.h"
#include "household_csv.h"
#include "msisdn.h"
#include "strbuf.h"

/* ------------------------------------------------------------------ */
/* report coverage                                                     */

static void
print_table(PGresult *res, FILE *out)
{
	int nf = PQnfields(res), nt = PQntuples(res);
	int w[32] = {0};
	if (nf > 32)
		nf = 32;
	for (int f = 0; f < nf; f++) {
		w[f] = (int)strlen(PQfname(res, f));
		for (int t = 0; t < nt; t++) {
			/* count UTF-8 characters, not bytes, for the width */
			int n = 0;
			for (const char *s = PQgetvalue(res, t, f); *s; s++)
				n += ((unsigned char)*s & 0xc0) != 0x80;
			if (n > w[f])
				w[f] = n;
		}
	}
	for (int f = 0; f < nf; f++)
		fprintf(out, "%s%-*s", f ? "  " : "", w[f], PQfname(res, f));
	fputc('\n', out);
	for (int f = 0; f < nf; f++) {
		fprintf(out, "%s", f ? "  " : "");
		for (int i = 0; i < w[f]; i++)
			fputc('-', out);
	}
	fputc('\n', out);
	for (int t = 0; t < nt; t++) {
		for (int f = 0; f < nf; f++) {
			const char *v = PQgetvalue(res, t, f);
			int n = 0;
			for (const char *s = v; *s; s++)
				n += ((unsigned char)*s & 0xc0) != 0x80;
			bool num =
			    PQftype(res, f) == 20 || PQftype(res, f) == 1700; /* int8, numeric */
			if (num)
				fprintf(out, "%s%*s%s", f ? "  " : "", w[f] - n, "", v);
			else
				fprintf(out, "%s%s%*s", f ? "  " : "", v, w[f] - n, "");
		}
		fputc('\n', out);
	}
}

static void
print_csv_field(const char *v, FILE *out)
{
	if (strpbrk(v, ",\"\n\r") == NULL) {
		fputs(v, out);
		return;
	}
	fputc('"', out);
	for (; *v; v++) {
		if (*v == '"')
			fputc('"', out);
		fputc(*v, out);
	}
	fputc('"', out);
}

static void
print_csv(PGresult *res, FILE *out)
{
	int nf = PQnfields(res), nt = PQntuples(res);
	for (int f = 0; f < nf; f++) {
		if (f)
			fputc(',', out);
		print_csv_field(PQfname(res, f), out);
	}
	fputc('\n', out);
	for (int t = 0; t < nt; t++) {
		for (int f = 0; f < nf; f++) {
			if (f)
				fputc(',', out);
			print_csv_field(PQgetvalue(res, t, f), out);
		}
		fputc('\n', out);
	}
}

int
ctl_report(struct ctl *c, int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "coverage") != 0) {
		fprintf(stderr,
		        "usage: skillctl report coverage [--level province|district|commune] "
		        "[--parent CODE] [--format table|csv|json]\n");
		return 2;
	}
	const char *level = "province", *parent = NULL, *format = "table";
	static const struct option opts[] = {
	    {"level", required_argument, NULL, 'l'},
	    {"parent", required_argument, NULL, 'p'},
	    {"format", required_argument, NULL, 'f'},
	    {NULL, 0, NULL, 0},
	};
	optind = 2;
	int ch;
	while ((ch = getopt_long(argc, argv, "l:p:f:", opts, NULL)) != -1) {
		switch (ch) {
		case 'l':
			level = optarg;
			break;
		case 'p':
			parent = optarg;
			break;
		case 'f':
			format = optarg;
			break;
		default:
			return 2;
		}
	}
	if (strcmp(level, "province") != 0 && strcmp(level, "district") != 0 &&
	    strcmp(level, "commune") != 0) {
		fprintf(stderr, "skillctl: --level must be province, district or commune\n");
		return 2;
	}
	const char *p[2] = {level, parent};
	PGresult *res;
	if (strcmp(format, "json") == 0) {
		res = ctl_exec(c, "SELECT sg_coverage_json($1, $2)", 2, p);
		if (res == NULL)
			return 1;
		json_t *j = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
		char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
		printf("%s\n", s ? s : PQgetvalue(res, 0, 0));
		free(s);
		json_decref(j);
	} else if (strcmp(format, "csv") == 0 || strcmp(format, "table") == 0) {
		res = ctl_exec(c, "SELECT * FROM sg_coverage($1, $2)", 2, p);
		if (res == NULL)
			return 1;
		if (strcmp(format, "csv") == 0)
			print_csv(res, stdout);
		else
			print_table(res, stdout);
	} else {
		fprintf(stderr, "skillctl: --format must be table, csv or json\n");
		return 2;
	}
	PQclear(res);
	return 0;
}

/* ------------------------------------------------------------------ */
/* import-households                                                   */

struct import_ctx {
	struct strbuf a[8];
	int nrows, nerr;
};

static void
import_row(void *arg, int line, const struct hhcsv_row *row, const char *err)
{
	struct import_ctx *x = arg;
	if (row == NULL) {
		fprintf(stderr, "line %d: %s\n", line, err);
		x->nerr++;
		return;
	}
	char ln[16];
	snprintf(ln, sizeof ln, "%d", row->line);
	strbuf_pgarr_elem(&x->a[0], ln);
	strbuf_pgarr_elem(&x->a[1], row->household_code);
	strbuf_pgarr_elem(&x->a[2], row->province);
	strbuf_pgarr_elem(&x->a[3], row->district);
	strbuf_pgarr_elem(&x->a[4], row->commune);
	strbuf_pgarr_elem(&x->a[5], row->village);
	strbuf_pgarr_elem(&x->a[6], row->msisdn);
	strbuf_pgarr_elem(&x->a[7], row->language);
	x->nrows++;
}

int
ctl_import_households(struct ctl *c, int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr,
		        "usage: skillctl import-households FILE.csv   (- for standard input)\n");
		return 2;
	}
	FILE *f = strcmp(argv[1], "-") == 0 ? stdin : fopen(argv[1], "rb");
	if (f == NULL) {
		fprintf(stderr, "skillctl: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	struct import_ctx x;
	memset(&x, 0, sizeof x);
	for (int i = 0; i < 8; i++) {
		strbuf_init(&x.a[i]);
		strbuf_pgarr_begin(&x.a[i]);
	}
	struct hhcsv *p = hhcsv_new(import_row, &x);
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		hhcsv_feed(p, buf, n);
	if (f != stdin)
		fclose(f);
	const char *fatal = NULL;
	int rc = 0;
	if (hhcsv_finish(p, &fatal) != 0) {
		fprintf(stderr, "skillctl: %s: %s\n", argv[1], fatal);
		rc = 1;
		goto done;
	}
	int imported = 0, households = 0, phones = 0, dberr = 0;
	if (x.nrows > 0) {
		const char *params[8];
		for (int i = 0; i < 8; i++) {
			strbuf_pgarr_end(&x.a[i]);
			params[i] = x.a[i].s;
		}
		PGresult *res =
		    ctl_exec(c,
		             "SELECT imported, households, phones, array_length(err_lines, 1),"
		             " e.line, e.err"
		             " FROM sg_households_import($1::int[], $2::text[], $3::text[],"
		             "  $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) r"
		             " LEFT JOIN LATERAL unnest(r.err_lines, r.err_texts) AS e(line, err)"
		             " ON true ORDER BY e.line",
		             8, params);
		if (res == NULL) {
			rc = 1;
			goto done;
		}
		for (int t = 0; t < PQntuples(res); t++) {
			if (!PQgetisnull(res, t, 4)) {
				fprintf(stderr, "line %s: %s\n", PQgetvalue(res, t, 4),
				        PQgetvalue(res, t, 5));
				dberr++;
			}
		}
		if (PQntuples(res) > 0) {
			imported = atoi(PQgetvalue(res, 0, 0));
			households = atoi(PQgetvalue(res, 0, 1));
			phones = atoi(PQgetvalue(res, 0, 2));
		}
		PQclear(res);
	}
	printf("imported %d rows: %d households, %d phones; %d rows rejected\n", imported,
	       households, phones, x.nerr + dberr);
	rc = x.nerr + dberr > 0 ? 1 : 0;
done:
	hhcsv_free(p);
	for (int i = 0; i < 8; i++)
		strbuf_free(&x.a[i]);
	return rc;
}

/* ------------------------------------------------------------------ */
/* subscriber                                                          */

int
ctl_subscriber(struct ctl *c, int argc, char **argv)
{
	char norm[32];
	if (argc != 2) {
		fprintf(stderr, "usage: skillctl subscriber MSISDN\n");
		return 2;
	}
	if (msisdn_normalise(argv[1], norm, sizeof norm) != 0) {
		fprintf(stderr, "skillctl: %s is not a phone number\n", argv[1]);
		return 2;
	}
	const char *p[1] = {norm};
	PGresult *res =
	    ctl_exec(c,
	             "SELECT s.msisdn, s.language, s.opted_out, coalesce(h.code, ''),"
	             " coalesce(h.commune_code, ''), coalesce(s.joined_via, ''),"
	             " s.registered_at::text,"
	             " (SELECT string_agg(format('  %-16s %-3s self=%s quiz=%s', k.code,"
	             "    CASE WHEN coalesce(p.proficient, false) THEN 'yes' ELSE 'no' END,"
	             "    coalesce(p.self_level::text, '-'), coalesce(p.best_quiz::text, '-')),"
	             "    E'\\n' ORDER BY k.position)"
	             "  FROM skills k LEFT JOIN proficiency p ON p.skill = k.code"
	             "   AND p.msisdn = s.msisdn)"
	             " FROM subscribers s LEFT JOIN households h ON h.id = s.household_id"
	             " WHERE s.msisdn = $1",
	             1, p);
	if (res == NULL)
		return 1;
	if (PQntuples(res) == 0) {
		fprintf(stderr, "skillctl: no subscriber %s\n", norm);
		PQclear(res);
		return 1;
	}
	printf("msisdn      %s\nlanguage    %s\nopted out   %s\nhousehold   %s\ncommune     %s\n"
	       "joined via  %s\nregistered  %s\nskills (proficient, self level, best quiz):\n%s\n",
	       PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
	       strcmp(PQgetvalue(res, 0, 2), "t") == 0 ? "yes" : "no", PQgetvalue(res, 0, 3),
	       PQgetvalue(res, 0, 4), PQgetvalue(res, 0, 5), PQgetvalue(res, 0, 6),
	       PQgetvalue(res, 0, 7));
	PQclear(res);
	return 0;
}

/* ------------------------------------------------------------------ */
/* token                                                               */

static void
sha256_hex_bytea(const char *tok, size_t n, char out[2 + 64 + 1])
{
	unsigned char h[32];
	unsigned int hl = 0;
	EVP_Digest(tok, n, h, &hl, EVP_sha256(), NULL);
	memcpy(out, "\\x", 2);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 + 2 * i, 3, "%02x", h[i]);
}

static int
token_create(struct ctl *c, int argc, char **argv)
{
	const char *role = NULL, *name = NULL;
	static const struct option opts[] = {
	    {"role", required_argument, NULL, 'r'},
	    {"name", required_argument, NULL, 'n'},
	    {NULL, 0, NULL, 0},
	};
	optind = 2;
	int ch;
	while ((ch = getopt_long(argc, argv, "r:n:", opts, NULL)) != -1) {
		if (ch == 'r')
			role = optarg;
		else if (ch == 'n')
			name = optarg;
		else
			return 2;
	}
	if (role == NULL || name == NULL || *name == '\0') {
		fprintf(
		    stderr,
		    "usage: skillctl token create --role admin|staff|partner|viewer --name NAME\n");
		return 2;
	}
	if (strcmp(role, "admin") != 0 && strcmp(role, "staff") != 0 &&
	    strcmp(role, "partner") != 0 && strcmp(role, "viewer") != 0) {
		fprintf(stderr, "skillctl: --role must be admin, staff, partner or viewer\n");
		return 2;
	}
	unsigned char raw[32];
	if (RAND_bytes(raw, sizeof raw) != 1) {
		fprintf(stderr, "skillctl: no randomness\n");
		return 1;
	}
	char b64[64];
	int n = EVP_EncodeBlock((unsigned char *)b64, raw, sizeof raw);
	while (n > 0 && b64[n - 1] == '=')
		n--;
	b64[n] = '\0';
	for (int i = 0; i < n; i++) {
		if (b64[i] == '+')
			b64[i] = '-';
		else if (b64[i] == '/')
			b64[i] = '_';
	}
	char hex[2 + 64 + 1];
	sha256_hex_bytea(b64, (size_t)n, hex);
	const char *p[3] = {name, role, hex};
	PGresult *res =
	    ctl_exec(c,
	             "INSERT INTO api_tokens (name, role, hash) VALUES ($1, $2, $3::bytea)"
	             " RETURNING id",
	             3, p);
	OPENSSL_cleanse(raw, sizeof raw);
	if (res == NULL)
		return 1;
	fprintf(stderr, "token %s created for %s (role %s); it is shown only once:\n",
	        PQgetvalue(res, 0, 0), name, role);
	printf("%s\n", b64);
	OPENSSL_cleanse(b64, sizeof b64);
	PQclear(res);
	return 0;
}

int
ctl_token(struct ctl *c, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "create") == 0)
		return token_create(c, argc, argv);
	if (argc == 2 && strcmp(argv[1], "list") == 0) {
		PGresult *res = ctl_exec(
		    c,
		    "SELECT id, name, role, date_trunc('second', created_at)::text AS created,"
		    " coalesce(date_trunc('second', revoked_at)::text, '') AS revoked"
		    " FROM api_tokens ORDER BY id",
		    0, NULL);
		if (res == NULL)
			return 1;
		print_table(res, stdout);
		PQclear(res);
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "revoke") == 0) {
		const char *p[1] = {argv[2]};
		char *end;
		strtoll(argv[2], &end, 10);
		if (*argv[2] == '\0' || *end != '\0') {
			fprintf(stderr, "skillctl: token id must be a number\n");
			return 2;
		}
		PGresult *res =
		    ctl_exec(c,
		             "UPDATE api_tokens SET revoked_at = now()"
		             " WHERE id = $1::bigint AND revoked_at IS NULL RETURNING name",
		             1, p);
		if (res == NULL)
			return 1;
		int rc = 0;
		if (PQntuples(res) == 0) {
			fprintf(stderr, "skillctl: no active token %s\n", argv[2]);
			rc = 1;
		} else {
			printf("token %s (%s) revoked\n", argv[2], PQgetvalue(res, 0, 0));
		}
		PQclear(res);
		return rc;
	}
	fprintf(stderr,
	        "usage: skillctl token create --role ROLE --name NAME | list | revoke ID\n");
	return 2;
}

/* ------------------------------------------------------------------ */
/* status                                                              */

/* GET path from the daemon over a blocking socket (TLS without
 * verification when the daemon serves https: it is our own local daemon).
 * Returns the HTTP status, fills body. */
static int
http_get(const char *base, const char *path, struct strbuf *body)
{
	bool tls = strncmp(base, "https://", 8) == 0;
	const char *hp = base + (tls ? 8 : 7);
	char host[256], port[16] = "80";
	snprintf(host, sizeof host, "%s", hp);
	char *slash = strchr(host, '/');
	if (slash)
		*slash = '\0';
	char *h = host;
	if (*h == '[') { /* [v6]:port */
		char *end = strchr(h, ']');
		if (end == NULL)
			return -1;
		*end = '\0';
		h++;
		if (end[1] == ':')
			snprintf(port, sizeof port, "%s", end + 2);
	} else {
		char *colon = strrchr(h, ':');
		if (colon) {
			*colon = '\0';
			snprintf(port, sizeof port, "%s", colon + 1);
		}
	}
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	if (getaddrinfo(h, port, &hints, &ai) != 0 || ai == NULL)
		return -1;
	int fd = socket(ai->ai_family, SOCK_STREAM, 0);
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
		freeaddrinfo(ai);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	freeaddrinfo(ai);
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;
	if (tls) {
		ctx = SSL_CTX_new(TLS_client_method());
		ssl = ctx ? SSL_new(ctx) : NULL;
		if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1) {
			SSL_free(ssl);
			SSL_CTX_free(ctx);
			close(fd);
			return -1;
		}
	}
	char req[512];
	int rn = snprintf(req, sizeof req,
	                  "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n", path, h);
	int ok = tls ? SSL_write(ssl, req, rn) == rn : write(fd, req, (size_t)rn) == rn;
	struct strbuf all;
	strbuf_init(&all);
	char buf[4096];
	for (;;) {
		int n = tls ? SSL_read(ssl, buf, sizeof buf) : (int)read(fd, buf, sizeof buf);
		if (n <= 0)
			break;
		strbuf_append(&all, buf, (size_t)n);
	}
	if (ssl) {
		SSL_free(ssl);
		SSL_CTX_free(ctx);
	}
	close(fd);
	int status = -1;
	if (ok && all.s && sscanf(all.s, "HTTP/%*d.%*d %d", &status) == 1) {
		const char *b = strstr(all.s, "\r\n\r\n");
		if (b)
			strbuf_puts(body, b + 4);
	}
	strbuf_free(&all);
	return status;
}

int
ctl_status(struct ctl *c, int argc, char **argv)
{
	char base[300];
	ctl_http_base(c, base, sizeof base);
	struct strbuf body;
	strbuf_init(&body);
	int st = http_get(base, "/healthz", &body);
	if (st < 0) {
		fprintf(stderr, "skillctl: the daemon does not answer at %s\n", base);
		strbuf_free(&body);
		return 1;
	}
	json_t *j = body.s ? json_loads(body.s, 0, NULL) : NULL;
	if (j == NULL) {
		fprintf(stderr, "skillctl: unexpected answer from %s/healthz (HTTP %d)\n", base,
		        st);
		strbuf_free(&body);
		return 1;
	}
	json_t *db = json_object_get(j, "database");
	printf("daemon    %s (%s)\n", base, json_string_value(json_object_get(j, "status")));
	printf("database  %s, %lld connection(s), %lld pending\n",
	       json_is_true(json_object_get(db, "up")) ? "up" : "DOWN",
	       (long long)json_integer_value(json_object_get(db, "connections")),
	       (long long)json_integer_value(json_object_get(db, "pending")));
	size_t i;
	json_t *l;
	json_array_foreach(json_object_get(j, "links"), i, l)
	{
		printf("link %-12s %-10s binds %lld  window %lld/%lld  rate %lld/s%s\n",
		       json_string_value(json_object_get(l, "name")),
		       json_string_value(json_object_get(l, "state")),
		       (long long)json_integer_value(json_object_get(l, "binds_up")),
		       (long long)json_integer_value(json_object_get(l, "window_used")),
		       (long long)json_integer_value(json_object_get(l, "window")),
		       (long long)json_integer_value(json_object_get(l, "rate")),
		       json_is_true(json_object_get(l, "paused")) ? "  PAUSED" : "");
	}
	json_decref(j);
	strbuf_free(&body);
	return st == 200 ? 0 : 1;
}

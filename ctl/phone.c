/*
 * phone.c — `skillctl phone MSISDN`: an interactive handset for demos and
 * manual tests. It talks to the SMSC simulator's control port (the one
 * `make run` starts): each line typed is sent as an SMS to the short code,
 * a line like *8079# or *8079*1*3# dials USSD, and every message the daemon
 * sends to this number is printed as it arrives.
 *
 *   skillctl phone 0912345678 [--sim 127.0.0.1:2776] [--to 8079]
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctl.h"
#include "msisdn.h"
#include "strbuf.h"

struct phone {
	char host[64];
	int port;
	char msisdn[32];
	char to[24];
	long next;         /* last MT sequence seen */
	long ussd_session; /* 0 = none */
};

/* A blocking HTTP/1.0 exchange; returns the body (malloc'd) or NULL. */
static char *
http_call(const struct phone *ph, const char *method, const char *path, const char *body)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ph->port)};
	inet_pton(AF_INET, ph->host, &sa.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	struct strbuf req;
	strbuf_init(&req);
	strbuf_printf(&req,
	              "%s %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\n"
	              "Content-Length: %zu\r\n\r\n%s",
	              method, path, ph->host, body ? strlen(body) : 0, body ? body : "");
	ssize_t w = write(fd, req.s, req.len);
	strbuf_free(&req);
	if (w < 0) {
		close(fd);
		return NULL;
	}
	struct strbuf resp;
	strbuf_init(&resp);
	char buf[4096];
	ssize_t n;
	while ((n = read(fd, buf, sizeof buf)) > 0)
		strbuf_append(&resp, buf, (size_t)n);
	close(fd);
	char *b = resp.s ? strstr(resp.s, "\r\n\r\n") : NULL;
	char *out = b ? strdup(b + 4) : NULL;
	strbuf_free(&resp);
	return out;
}

static void
print_mt(struct phone *ph, json_t *msg)
{
	const char *text = json_string_value(json_object_get(msg, "text"));
	json_t *u = json_object_get(msg, "ussd");
	if (u && json_is_object(u)) {
		bool end = json_is_true(json_object_get(u, "end"));
		printf("\n  [USSD%s] %s\n", end ? " END" : "", text ? text : "");
		if (end)
			ph->ussd_session = 0;
	} else {
		printf("\n  [SMS from %s] %s\n", json_string_value(json_object_get(msg, "from")),
		       text ? text : "");
	}
}

/* Fetches and prints MTs for this number, waiting up to wait seconds. */
static void
poll_mt(struct phone *ph, int wait)
{
	char path[160];
	snprintf(path, sizeof path, "/mt?to=%s&after=%ld&wait=%d", ph->msisdn, ph->next, wait);
	char *body = http_call(ph, "GET", path, NULL);
	if (body == NULL)
		return;
	json_t *j = json_loads(body, 0, NULL);
	free(body);
	if (j == NULL)
		return;
	json_t *msgs = json_object_get(j, "messages");
	size_t i;
	json_t *m;
	json_array_foreach(msgs, i, m) print_mt(ph, m);
	json_t *next = json_object_get(j, "next");
	if (json_is_integer(next))
		ph->next = (long)json_integer_value(next);
	if (json_array_size(msgs) > 0) {
		printf("> ");
		fflush(stdout);
	}
	json_decref(j);
}

static void
send_line(struct phone *ph, const char *line)
{
	size_t n = strlen(line);
	bool dial = n >= 2 && line[0] == '*' && line[n - 1] == '#';
	json_t *req;
	const char *path;
	if (dial || ph->ussd_session != 0) {
		req = json_pack("{s:s s:s}", "from", ph->msisdn, "text", line);
		if (!dial)
			json_object_set_new(req, "session", json_integer(ph->ussd_session));
		path = "/ussd";
	} else {
		req = json_pack("{s:s s:s s:s}", "from", ph->msisdn, "to", ph->to, "text", line);
		path = "/mo";
	}
	char *body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	char *resp = http_call(ph, "POST", path, body);
	free(body);
	if (resp == NULL) {
		printf("  (the simulator at %s:%d does not answer: is `make run` running?)\n",
		       ph->host, ph->port);
		return;
	}
	json_t *j = json_loads(resp, 0, NULL);
	free(resp);
	if (j && dial)
		ph->ussd_session = (long)json_integer_value(json_object_get(j, "session"));
	json_decref(j);
}

int
ctl_phone(struct ctl *c, int argc, char **argv)
{
	struct phone ph = {.host = "127.0.0.1", .port = 2776, .to = "8079"};
	const char *number = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--sim") == 0 && i + 1 < argc) {
			char *colon = strrchr(argv[++i], ':');
			if (colon) {
				snprintf(ph.host, sizeof ph.host, "%.*s", (int)(colon - argv[i]),
				         argv[i]);
				ph.port = atoi(colon + 1);
			}
		} else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc) {
			snprintf(ph.to, sizeof ph.to, "%s", argv[++i]);
		} else {
			number = argv[i];
		}
	}
	if (number == NULL || msisdn_normalise(number, ph.msisdn, sizeof ph.msisdn) != 0) {
		fprintf(stderr,
		        "usage: skillctl phone MSISDN [--sim HOST:PORT] [--to SHORTCODE]\n");
		return 2;
	}
	printf("Phone %s. Type an SMS to %s (try HOC, QUIZ, HELP, KQ), dial *8079# for USSD, "
	       "Ctrl-D to quit.\n> ",
	       ph.msisdn, ph.to);
	fflush(stdout);
	poll_mt(&ph, 0);
	/* skip what was sent before this session started */
	char line[1024];
	for (;;) {
		struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
		int r = poll(&pfd, 1, 1000);
		if (r > 0) {
			if (fgets(line, sizeof line, stdin) == NULL)
				break;
			line[strcspn(line, "\r\n")] = '\0';
			if (line[0] != '\0')
				send_line(&ph, line);
			poll_mt(&ph, 2);
			printf("> ");
			fflush(stdout);
		} else {
			poll_mt(&ph, 0);
		}
	}
	printf("\n");
	return 0;
}

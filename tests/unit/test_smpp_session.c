/*
 * test_smpp_session.c — the session's connection life cycle against a peer
 * played by the test over a real loopback socket (no SMSC simulator here).
 *
 * What it guards: a connection the session has left is closed, whatever
 * killed it. A write that fails (the SMSC reset the connection while a
 * submit_sm was queued) makes libevent stop writing on that bufferevent; a
 * connection left to "linger" until its output drains then never drained,
 * and kept its socket and buffers for the life of the process (one per SMSC
 * crash; found as an ASan leak at exit in the SMSC-restart integration test).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "config.h"
#include "smpp_session.h"

struct peer {
	struct event_base *base;
	int lfd, fd;
	enum smpp_state state;
	int resps, noresp;
};

static void
on_state(void *arg, struct smpp_session *s, enum smpp_state st)
{
	((struct peer *)arg)->state = st;
}

static void
on_resp(void *arg, struct smpp_session *s, uint64_t cookie, uint32_t status, const char *mid)
{
	struct peer *p = arg;
	p->resps++;
	if (status == SMPP_STATUS_NORESP)
		p->noresp++;
}

static int
open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n - 3; /* ".", ".." and the directory's own descriptor */
}

static long
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Runs the loop until done(p) or ms pass; returns done(p). */
static bool
run_until(struct peer *p, bool (*done)(struct peer *), int ms)
{
	long end = now_ms() + ms;

	while (!done(p) && now_ms() < end) {
		event_base_loop(p->base, EVLOOP_NONBLOCK);
		if (p->fd < 0)
			p->fd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK);
		usleep(1000);
	}
	return done(p);
}

static bool
accepted(struct peer *p)
{
	return p->fd >= 0;
}

static bool
bound(struct peer *p)
{
	return p->state == SMPP_ST_BOUND;
}

static bool
waiting(struct peer *p)
{
	return p->state == SMPP_ST_WAITING;
}

static bool
settled(struct peer *p)
{
	return false; /* run the full time */
}

/* Reads the bind the session sent and answers it with ESME_ROK. */
static void
answer_bind(struct peer *p)
{
	uint8_t in[512], out[32];
	ssize_t n = -1;
	long end = now_ms() + 2000;

	while (n < 16 && now_ms() < end) {
		event_base_loop(p->base, EVLOOP_NONBLOCK);
		n = recv(p->fd, in, sizeof in, MSG_PEEK);
		usleep(1000);
	}
	assert_true(n >= 16);
	uint32_t len = (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
	assert_true(len <= (uint32_t)n);
	assert_int_equal(recv(p->fd, in, len, 0), (ssize_t)len);
	assert_int_equal(in[7], 0x09); /* bind_transceiver */
	static const uint8_t hdr[] = {0, 0, 0, 21, 0x80, 0, 0, 0x09, 0, 0, 0, 0};
	memcpy(out, hdr, sizeof hdr);
	memcpy(out + 12, in + 12, 4); /* sequence number */
	memcpy(out + 16, "smsc", 5);
	assert_int_equal(send(p->fd, out, 21, 0), 21);
}

static void
test_reset_while_writing_closes_the_socket(void **state)
{
	struct peer p = {.fd = -1};
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof a;
	struct smsc_conf conf;

	p.base = event_base_new();
	assert_non_null(p.base);
	p.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_int_equal(bind(p.lfd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(p.lfd, 4), 0);
	assert_int_equal(getsockname(p.lfd, (struct sockaddr *)&a, &alen), 0);

	memset(&conf, 0, sizeof conf);
	snprintf(conf.name, sizeof conf.name, "t");
	snprintf(conf.host, sizeof conf.host, "127.0.0.1");
	conf.port = ntohs(a.sin_port);
	snprintf(conf.system_id, sizeof conf.system_id, "sg");
	snprintf(conf.password, sizeof conf.password, "pw");
	conf.window = 4;
	conf.enquire_link = 60;
	conf.response_timeout = 10;
	conf.reconnect_min = 60; /* no reconnect within the test */
	conf.reconnect_max = 60;
	conf.max_pdu = 4096;

	int fds_before = open_fds();
	struct smpp_session_cbs cbs = {.state = on_state, .resp = on_resp};
	struct smpp_session *s = smpp_session_new(p.base, &conf, SMPP_ROLE_TRX, &cbs, &p);
	assert_non_null(s);
	smpp_session_start(s);
	assert_true(run_until(&p, accepted, 2000));
	answer_bind(&p);
	assert_true(run_until(&p, bound, 2000));

	/* the SMSC resets the connection; the session has a submit_sm to write */
	struct linger lg = {1, 0};
	assert_int_equal(setsockopt(p.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
	close(p.fd);
	p.fd = -2; /* accept no more */
	usleep(20000);
	static const uint8_t text[] = "hello";
	struct smpp_submit sm = {.src = "1234", .dst = "84912345678", .sm = text, .sm_len = 5};
	assert_int_equal(smpp_session_submit(s, &sm, 7), 0);

	assert_true(run_until(&p, waiting, 2000));
	run_until(&p, settled, 100);
	assert_int_equal(p.resps, 1);
	assert_int_equal(p.noresp, 1);
	/* the session holds no socket while it waits to reconnect */
	assert_int_equal(open_fds(), fds_before);

	smpp_session_free(s);
	close(p.lfd);
	event_base_free(p.base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reset_while_writing_closes_the_socket),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * main.c — skillgated: wires the modules together and owns the one
 * event_base, the signals and the order of start-up and shutdown.
 *
 *   skillgated -c FILE [-f] [-t]
 *     -c FILE  configuration (default config/skillgate.conf)
 *     -t       check the configuration and the content, then exit:
 *              0 when valid, 1 with "file:line: reason" lines otherwise
 *     -f       stay in the foreground (log to stderr)
 *     -S       print every configuration key with its default and doc
 *
 * Start-up order (each step needs the ones before it):
 *   config -> logging -> content -> store (PostgreSQL pool) -> gateway
 *   (SMPP links) -> pipeline (joins gateway and store) -> linklock (binds
 *   each link once its advisory lock is held, see linklock.h) -> loop.
 * SIGTERM/SIGINT: the gateway unbinds (in-flight responses awaited, their
 * outcomes handed to the pipeline), the link locks are released (another
 * instance may bind), then the pipeline commits what it holds,
 * the store drains, and the loop exits;
 * shutdown_timeout bounds the whole. SIGHUP reloads the content and the log
 * level; sessions and flows in progress are kept.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "content.h"
#include "gateway.h"
#include "http_api.h"
#include "linklock.h"
#include "log.h"
#include "pipeline.h"
#include "scheduler.h"
#include "store.h"
#include "ussd.h"

struct daemon {
	struct event_base *base;
	struct sg_config cfg;
	struct content *content;
	struct store *store;
	struct gateway *gw;
	struct pipeline *pipe;
	struct ussd *ussd; /* USSD menus (core/ussd.c), fed by the pipeline's hook */
	struct http_api *http;
	struct sched *sched;
	struct linklock *locks; /* which links this instance binds */
	struct event *sig_term, *sig_int, *sig_hup, *hard_stop;
	bool stopping;
};

static void
usage(void)
{
	fprintf(stderr, "usage: skillgated [-c FILE] [-f] [-t]\n");
	exit(2);
}

/* Warns when a file holding secrets can be read by anyone. */
static void
check_secret_file(const char *path)
{
	struct stat sb;
	if (stat(path, &sb) == 0 && (sb.st_mode & S_IROTH))
		log_warn("main", "%s is world-readable and holds passwords: chmod o-r it", path);
}

static int
check_only(const char *path)
{
	struct sg_config *cfg = calloc(1, sizeof *cfg);
	if (cfg == NULL)
		return 1;
	int errs = config_load(path, cfg, stdout);
	if (errs == 0) {
		int nerr = 0;
		struct content *c = content_load(cfg->content_dir, stdout, &nerr);
		content_free(c);
		errs += nerr;
		errs += http_api_check_tls(cfg, stdout);
	}
	if (errs == 0)
		printf("%s: ok\n", path);
	free(cfg);
	return errs == 0 ? 0 : 1;
}

static void
stop_done(void *arg)
{
	struct daemon *d = arg;
	log_info("main", "stopped cleanly");
	event_base_loopexit(d->base, NULL);
}

static void
stop_pipeline_done(void *arg)
{
	struct daemon *d = arg;
	store_drain(d->store, stop_done, d);
}

/* The links are unbound and every response that was coming has come (or the
 * deadline passed): now the pipeline commits what it holds. */
static void
stop_gateway_done(void *arg)
{
	struct daemon *d = arg;
	linklock_stop(d->locks); /* unbound: let another instance take the links */
	pipeline_stop(d->pipe, stop_pipeline_done, d);
}

static void
hard_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct daemon *d = arg;
	log_warn("main", "shutdown_timeout reached: exiting with work in flight "
	                 "(nothing acknowledged is lost; it is recovered at the next start)");
	event_base_loopexit(d->base, NULL);
}

static void
sig_stop_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	if (d->stopping) {
		log_warn("main", "second signal: exiting now");
		event_base_loopexit(d->base, NULL);
		return;
	}
	d->stopping = true;
	log_info("main", "signal %d: stopping (at most %d s)", (int)sig, d->cfg.shutdown_timeout);
	struct timeval tv = {d->cfg.shutdown_timeout, 0};
	evtimer_add(d->hard_stop, &tv);
	if (d->http)
		http_api_stop(d->http);
	sched_stop(d->sched);
	gateway_stop(d->gw, d->cfg.shutdown_timeout * 1000 / 2, stop_gateway_done, d);
}

static void
sig_hup_cb(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;
	/* Reading the content files is the one file I/O on the loop; it happens
	 * only on SIGHUP, never on the message path. */
	int nerr = 0;
	struct content *c = content_load(d->cfg.content_dir, stderr, &nerr);
	if (c == NULL) {
		log_error("main", "SIGHUP: content has %d errors; keeping the loaded content",
		          nerr);
		return;
	}
	pipeline_set_content(d->pipe, c);
	ussd_set_content(d->ussd, c);
	if (d->http)
		http_api_set_content(d->http, c);
	content_free(d->content);
	d->content = c;
	struct sg_config *fresh = calloc(1, sizeof *fresh);
	if (fresh && config_load(d->cfg.path, fresh, stderr) == 0) {
		enum log_level lv;
		if (log_parse_level(fresh->log_level, &lv) == 0)
			log_set_level(lv);
	}
	free(fresh);
	log_info("main", "SIGHUP: content reloaded");
}

/* A link's lock was taken or lost: bind or unbind it; with no link held,
 * the outbox is left to the instances that hold some. */
static void
link_lock_cb(void *arg, const char *link, bool held)
{
	struct daemon *d = arg;
	gateway_link_enable(d->gw, link, held);
	pipeline_set_standby(d->pipe, linklock_held(d->locks) == 0);
}

static void
sched_configured_cb(void *arg)
{
	struct daemon *d = arg;
	pipeline_set_bulk_ready(d->pipe);
}

static void
store_up_cb(void *arg)
{
	struct daemon *d = arg;
	pipeline_recover(d->pipe);
}

static void
write_pid_file(const char *path)
{
	if (path[0] == '\0')
		return;
	char tmp[600];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (f == NULL || fprintf(f, "%ld\n", (long)getpid()) < 0 || fflush(f) != 0 ||
	    fsync(fileno(f)) != 0 || fclose(f) != 0 || rename(tmp, path) != 0)
		fatal("cannot write pid file %s: %s", path, strerror(errno));
}

static void
daemonize(void)
{
	pid_t pid = fork();
	if (pid < 0)
		fatal("fork: %s", strerror(errno));
	if (pid > 0)
		_exit(0);
	setsid();
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		if (fd > 2)
			close(fd);
	}
}

static void
daemon_start(struct daemon *d)
{
	/* epoll changes are applied once per loop iteration, so a socket whose
	 * EV_WRITE is dropped after one write and added again for the next (every
	 * SMPP and PostgreSQL socket under load) costs no epoll_ctl; the daemon
	 * never dup()s a socket it watches (the flag's one caveat) */
	struct event_config *ec = event_config_new();
	if (ec == NULL || event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST) != 0)
		fatal("event_config failed");
	d->base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (d->base == NULL)
		fatal("event_base_new failed");
	int nerr = 0;
	d->content = content_load(d->cfg.content_dir, stderr, &nerr);
	if (d->content == NULL)
		fatal("content in %s has %d errors", d->cfg.content_dir, nerr);

	d->store = store_new(d->base, d->cfg.db_conninfo, d->cfg.db_pool, d->cfg.db_queue_max,
	                     d->cfg.db_reconnect_max);
	store_set_slow_ms(d->store, d->cfg.db_slow_ms);
	d->pipe = pipeline_new(d->base, &d->cfg, d->store, gateway_ops(), NULL);
	d->gw = gateway_new(d->base, &d->cfg, pipeline_core_ops(), d->pipe);
	pipeline_set_gateway(d->pipe, d->gw);
	/* USSD menus: after the pipeline and the gateway */
	d->ussd = ussd_new(d->base, &d->cfg, d->store, gateway_ops(), d->gw);
	ussd_set_content(d->ussd, d->content);
	pipeline_set_ussd(d->pipe, ussd_handle, d->ussd);
	d->sched = sched_new(d->base, &d->cfg, d->store);
	if (d->sched == NULL)
		fatal("out of memory");
	sched_on_configured(d->sched, sched_configured_cb, d);
	d->locks = linklock_new(d->base, &d->cfg, link_lock_cb, d);
	pipeline_set_standby(d->pipe, d->cfg.link_lock && d->cfg.n_links > 0);
	pipeline_set_content(d->pipe, d->content);
	store_on_up(d->store, store_up_cb, d);
	if (d->cfg.http_listen[0] != '\0') {
		d->http = http_api_new(d->base, &d->cfg, d->store, d->gw, d->pipe);
		if (d->http == NULL)
			fatal("cannot start the HTTP server on %s", d->cfg.http_listen);
		http_api_set_content(d->http, d->content);
		http_api_set_ussd(d->http, d->ussd);
	}

	d->sig_term = evsignal_new(d->base, SIGTERM, sig_stop_cb, d);
	d->sig_int = evsignal_new(d->base, SIGINT, sig_stop_cb, d);
	d->sig_hup = evsignal_new(d->base, SIGHUP, sig_hup_cb, d);
	d->hard_stop = evtimer_new(d->base, hard_stop_cb, d);
	event_add(d->sig_term, NULL);
	event_add(d->sig_int, NULL);
	event_add(d->sig_hup, NULL);
	signal(SIGPIPE, SIG_IGN);

	store_start(d->store);
	gateway_start(d->gw);
	linklock_start(d->locks);
	sched_start(d->sched);
	log_info("main", "skillgated started: %d link(s), database pool %d", d->cfg.n_links,
	         d->cfg.db_pool);
}

static void
daemon_free(struct daemon *d)
{
	http_api_free(d->http);
	linklock_free(d->locks);
	gateway_free(d->gw);
	ussd_free(d->ussd);
	pipeline_free(d->pipe);
	sched_free(d->sched);
	store_free(d->store);
	content_free(d->content);
	event_free(d->sig_term);
	event_free(d->sig_int);
	event_free(d->sig_hup);
	event_free(d->hard_stop);
	event_base_free(d->base);
}

int
main(int argc, char **argv)
{
	const char *path = "config/skillgate.conf";
	bool foreground = false, test = false;
	int ch;

	while ((ch = getopt(argc, argv, "c:ftSh")) != -1) {
		switch (ch) {
		case 'S': /* the documented sample of every key (config/skillgate.conf) */
			config_write_sample(stdout);
			return 0;
		case 'c':
			path = optarg;
			break;
		case 'f':
			foreground = true;
			break;
		case 't':
			test = true;
			break;
		default:
			usage();
		}
	}
	if (test)
		return check_only(path);

	static struct daemon d;
	if (config_load(path, &d.cfg, stderr) != 0)
		return 1;
	enum log_level lv = L_INFO;
	log_parse_level(d.cfg.log_level, &lv);
	log_init(lv, d.cfg.log_mask_msisdn);
	check_secret_file(path);
	if (!foreground)
		daemonize();
	write_pid_file(d.cfg.pid_file);

	daemon_start(&d);
	event_base_dispatch(d.base);
	daemon_free(&d);
	if (d.cfg.pid_file[0])
		unlink(d.cfg.pid_file);
	return 0;
}

/*
 * test_config.c — the configuration table, the sample file and the
 * "file:line: reason" errors of skillgated -t.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static struct sg_config cfg;

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	static char buf[1 << 18];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void
test_sample_is_valid(void **state)
{
	FILE *err = tmpfile();
	assert_int_equal(config_load("config/skillgate.conf", &cfg, err), 0);
	fclose(err);
	assert_int_equal(cfg.n_links, 1);
	assert_string_equal(cfg.links[0].name, "viettel");
	assert_int_equal(cfg.links[0].port, 2775);
	assert_int_equal(cfg.links[0].prefixes.n, 12);
	assert_string_equal(cfg.quiet_hours, "21:00-07:00");
}

struct key_check {
	const char *sample;
	int missing;
};

static void
check_key(const char *section, const char *key, const char *doc, void *arg)
{
	struct key_check *kc = arg;
	char pat[128];
	snprintf(pat, sizeof pat, "\n%s = ", key);
	if (strstr(kc->sample, pat) == NULL) {
		fprintf(stderr, "key [%s] %s is missing from config/skillgate.conf\n", section,
		        key);
		kc->missing++;
	}
	if (doc == NULL || doc[0] == '\0') {
		fprintf(stderr, "key [%s] %s has no doc\n", section, key);
		kc->missing++;
	}
}

static void
test_every_key_in_sample(void **state)
{
	struct key_check kc = {slurp("config/skillgate.conf"), 0};
	config_each_key(check_key, &kc);
	assert_int_equal(kc.missing, 0);
}

/* A file with one error per marked line; every one must be reported. */
static void
test_errors_have_lines(void **state)
{
	char path[] = "/tmp/sgconfXXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	const char *text = "[gateway]\n"                    /* 1 */
	                   "log_level = loud\n"             /* 2: not a level (reported at end) */
	                   "colour = blue\n"                /* 3: unknown key */
	                   "[database]\n"                   /* 4 */
	                   "pool = many\n"                  /* 5: not an integer */
	                   "batch_max = 0\n"                /* 6: out of bounds */
	                   "[nonsense]\n"                   /* 7 */
	                   "x = 1\n"                        /* 8: unknown section */
	                   "[smsc viettel]\n"               /* 9 */
	                   "port = 99999\n"                 /* 10: out of bounds */
	                   "tls = perhaps\n"                /* 11: not a boolean */
	                   "bind = sideways\n"              /* 12: not an allowed value */
	                   "system_id = skillgate\n"        /* 13 */
	                   "this line has no equals sign\n" /* 14: syntax */
	                   "[content]\n"                    /* 15 */
	                   "pass_mark = 6\n";               /* 16: > quiz_length (cross check) */
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	FILE *err = tmpfile();
	int n = config_load(path, &cfg, err);
	rewind(err);
	char out[8192];
	size_t len = fread(out, 1, sizeof out - 1, err);
	out[len] = '\0';
	fclose(err);
	unlink(path);
	const char *expect[] = {
	    ":3: unknown key 'colour' in [gateway]",
	    ":5: pool: not an integer",
	    ":6: batch_max: out of bounds",
	    ":8: unknown section [nonsense]",
	    ":10: port: out of bounds",
	    ":11: tls: not a boolean",
	    ":12: bind: not one of the allowed values",
	    ":14: syntax error",
	    "log_level 'loud'",
	    "[database] conninfo is required",
	    "[smsc viettel]: missing required key 'host'",
	    "pass_mark is larger than quiz_length",
	};
	for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++) {
		if (strstr(out, expect[i]) == NULL)
			fail_msg("expected \"%s\" in:\n%s", expect[i], out);
	}
	assert_int_equal(n, (int)(sizeof expect / sizeof expect[0]));
	/* every line names the file */
	for (char *l = out; *l; l = strchr(l, '\n') + 1) {
		assert_memory_equal(l, path, strlen(path));
		if (strchr(l, '\n') == NULL)
			break;
	}
}

/* The segments a joined reply may take: what the least roomy link sends. */
static void
test_reply_segments(void **state)
{
	static struct sg_config c;

	memset(&c, 0, sizeof c);
	assert_int_equal(config_reply_segments(&c), 0); /* no link: never joined */
	c.n_links = 2;
	c.links[0].max_segments = 6;
	c.links[1].max_segments = 4;
	assert_int_equal(config_reply_segments(&c), 4);
	c.links[0].max_segments = 3;
	assert_int_equal(config_reply_segments(&c), 3);
	/* message_payload: max_segments does not bound it, its 1024 octets do */
	c.links[0].max_segments = 16;
	c.links[1].max_segments = 16;
	c.links[1].long_mode = LONG_PAYLOAD;
	assert_int_equal(config_reply_segments(&c), 7);
	c.links[0].max_segments = 5;
	assert_int_equal(config_reply_segments(&c), 5);
	/* the sample: one link, max_segments 6 by default */
	FILE *err = tmpfile();
	assert_int_equal(config_load("config/skillgate.conf", &c, err), 0);
	fclose(err);
	assert_int_equal(config_reply_segments(&c), 6);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sample_is_valid),
	    cmocka_unit_test(test_every_key_in_sample),
	    cmocka_unit_test(test_errors_have_lines),
	    cmocka_unit_test(test_reply_segments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

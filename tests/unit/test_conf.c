/*
 * test_conf.c - configuration: embedded default, INI file, environment
 * overrides, and the refusals that name file, line and key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "spool/conf.h"
#include "spool/util.h"

static char conf_path[] = "/tmp/test_conf.XXXXXX";

static void
write_conf(const char *text)
{
	int fd = mkstemp(conf_path);
	FILE *fp;

	assert_true(fd >= 0);
	fp = fdopen(fd, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

static int
teardown(void **state)
{
	(void)state;
	unlink(conf_path);
	strcpy(conf_path, "/tmp/test_conf.XXXXXX");
	unsetenv("SPOOLD_CONFIG");
	unsetenv("SPOOLD_DELIVERY_ROUTE");
	unsetenv("SPOOLD_TRANSPORT_MAILU_HOST");
	unsetenv("SPOOLD_TRANSPORT_MAILU_PASSWORD_FILE");
	unsetenv("SPOOLD_TRANSPORT_MAILU_USER");
	unsetenv("SPOOLD_TRANSPORT_MAILU_TLS");
	unsetenv("SPOOLD_TRANSPORT_LOCAL_PORT");
	unsetenv("SPOOLD_SPOOL_DIR");
	unsetenv("SPOOLD_BOGUS");
	unsetenv("SPOOLD_DELIVERY_RETRYS");
	unsetenv("SPOOLD_TRANSPORT_MAILU_CONNECT_TIMOUT");
	unsetenv("SPOOLD_TRANSPORT_MAILU_PORT");
	return 0;
}

/* The tests run with a default path that does not exist, never the host's
 * /etc/spoold: ctest sets it, and a run without it is refused. */
static void
test_no_host_config(void **state)
{
	const char *d = getenv("SPOOLD_TEST_DEFAULT_CONFIG");

	(void)state;
	assert_non_null(d);
	assert_int_equal(strncmp(d, "/etc/", 5) == 0, 0);
	assert_int_equal(access(d, F_OK), -1);
}

/* Collects what conf_load_opts reports. */
struct reported {
	char lines[16][1024];
	int fatal[16];
	size_t n;
};

static void
collect(void *arg, int fatal, const char *line)
{
	struct reported *r = arg;

	assert_true(r->n < 16);
	snprintf(r->lines[r->n], sizeof(r->lines[0]), "%s", line);
	r->fatal[r->n++] = fatal;
}

static int
load_collect(struct conf *cf, int spool_only, struct reported *r)
{
	struct conf_opts o = {
	    .spool_only = spool_only, .report = collect, .arg = r};
	char err[1024] = "";

	memset(r, 0, sizeof(*r));
	return conf_load_opts(cf, conf_path, &o, err, sizeof(err));
}

/* A typo gets the key it is probably a typo of, in the file and in the
 * environment, and every problem is reported, not only the first. */
static void
test_typo_hints(void **state)
{
	struct reported r;
	struct conf cf;

	(void)state;
	setenv("SPOOLD_DELIVERY_RETRYS", "1m", 1);
	setenv("SPOOLD_TRANSPORT_MAILU_CONNECT_TIMOUT", "5s", 1);
	write_conf("[spool]\ndir = /tmp/x\n"
		   "[transport mailu]\nhost = h\nconnect_timout = 5s\n"
		   "[delivery]\nconcurency = 2\n"
		   "[transprt b]\nhost = h\n");
	assert_int_equal(load_collect(&cf, 0, &r), EX_CONFIG);
	assert_int_equal(r.n, 5);
	assert_non_null(strstr(r.lines[0], ":5: [transport mailu] "
					   "connect_timout: unknown key; did "
					   "you mean connect_timeout?"));
	assert_non_null(strstr(r.lines[1], "concurency: unknown key; did you "
					   "mean concurrency?"));
	assert_non_null(strstr(r.lines[2],
			       ":9: [transprt b] host: unknown section "
			       "[transprt b]; did you mean [transport NAME]?"));
	for (size_t i = 3; i < 5; i++)
		assert_true(
		    strstr(r.lines[i], "did you mean SPOOLD_DELIVERY_RETRY?") !=
			NULL ||
		    strstr(r.lines[i], "did you mean "
				       "SPOOLD_TRANSPORT_MAILU_CONNECT_"
				       "TIMEOUT?") != NULL);
	for (size_t i = 0; i < r.n; i++)
		assert_int_equal(r.fatal[i], 1);
	conf_free(&cf);
}

/* submit needs [spool] only: a problem elsewhere is a warning and the
 * load succeeds; a problem in [spool] is still refused. */
static void
test_spool_only(void **state)
{
	struct reported r;
	struct conf cf;

	(void)state;
	setenv("SPOOLD_DELIVERY_RETRYS", "1m", 1);
	write_conf("[spool]\ndir = /tmp/spool-only\nmax_size = 2M\n"
		   "[delivery]\nroute = nowhere\nretry = soon\n"
		   "[transport a]\nhost = h\nport = 99999\nbogus\n");
	assert_int_equal(load_collect(&cf, 1, &r), 0);
	assert_string_equal(cf.spool_dir, "/tmp/spool-only");
	assert_int_equal(cf.max_size, 2 * 1024 * 1024);
	assert_int_equal(r.n, 5);
	for (size_t i = 0; i < r.n; i++)
		assert_int_equal(r.fatal[i], 0);
	conf_free(&cf);
	/* the same file is refused whole by spoold */
	assert_int_equal(load_collect(&cf, 0, &r), EX_CONFIG);
	assert_int_equal(r.n, 5);
	teardown(NULL);

	write_conf("[spool]\ndirr = /tmp/x\n[transport a]\nhost = h\n");
	assert_int_equal(load_collect(&cf, 1, &r), EX_CONFIG);
	assert_int_equal(r.n, 1);
	assert_non_null(strstr(r.lines[0], "did you mean dir?"));
	teardown(NULL);

	/* a broken header might have been [spool]'s: refused */
	write_conf("[transport a]\nhost = h\n[spool\ndir = /tmp/x\n");
	assert_int_equal(load_collect(&cf, 1, &r), EX_CONFIG);
	assert_non_null(strstr(r.lines[0], ":3: not a valid INI line"));
}

/* Quotes around a value are removed; section words, transport names and
 * keys are case-insensitive. */
static void
test_quotes_and_case(void **state)
{
	struct conf cf;
	char err[256];
	const struct conf_transport *t;

	(void)state;
	setenv("SPOOLD_TRANSPORT_MAILU_PORT", "\"2525\"", 1);
	write_conf(
	    "[SPOOL]\nDir = \"/tmp/quoted spool\"\n"
	    "[Delivery]\nroute = Mailu\n"
	    "[Transport  Mailu]\nhost = \"localhost\"\ntls = 'starttls'\n"
	    "password_file = '/run/a#b'\nuser = \"u\n"
	    "helo = \"\"\n");
	assert_int_equal(conf_load(&cf, conf_path, err, sizeof(err)), 0);
	assert_string_equal(cf.spool_dir, "/tmp/quoted spool");
	assert_int_equal(cf.route_count, 1);
	t = &cf.transports[cf.route[0]];
	assert_string_equal(t->name, "mailu");
	assert_string_equal(t->host, "localhost");
	assert_string_equal(t->password_file, "/run/a#b");
	/* an unmatched quote is part of the value */
	assert_string_equal(t->user, "\"u");
	assert_string_equal(t->helo, "");
	assert_int_equal(t->port, 2525);
	conf_free(&cf);
}

/* failed_keep and probe_method: defaults and values. */
static void
test_new_keys(void **state)
{
	struct conf cf;
	char err[256];

	(void)state;
	write_conf("[transport a]\nhost = h\n");
	assert_int_equal(conf_load(&cf, conf_path, err, sizeof(err)), 0);
	assert_int_equal(cf.failed_keep, 30 * 86400);
	assert_int_equal(cf.transports[0].probe_method, CONF_PROBE_HEAD);
	conf_free(&cf);
	teardown(NULL);
	write_conf("[spool]\nfailed_keep = 0\n"
		   "[transport a]\nhost = h\nprobe_method = get\n");
	assert_int_equal(conf_load(&cf, conf_path, err, sizeof(err)), 0);
	assert_int_equal(cf.failed_keep, 0);
	assert_int_equal(cf.transports[0].probe_method, CONF_PROBE_GET);
	conf_free(&cf);
	teardown(NULL);
	write_conf("[transport a]\nhost = h\nprobe_method = POST\n");
	assert_int_equal(conf_load(&cf, conf_path, err, sizeof(err)),
			 EX_CONFIG);
	assert_non_null(strstr(err, "is not HEAD or GET"));
}

static void
test_embedded_default(void **state)
{
	struct conf cf;
	char err[256];

	(void)state;
	assert_int_equal(conf_load(&cf, NULL, err, sizeof(err)), 0);
	assert_string_equal(cf.spool_dir, "/var/spool/spoold");
	assert_int_equal(cf.transport_count, 1);
	assert_string_equal(cf.transports[0].name, "local");
	assert_string_equal(cf.transports[0].host, "127.0.0.1");
	assert_int_equal(cf.transports[0].port, 25);
	assert_int_equal(cf.transports[0].tls, CONF_TLS_NONE);
	assert_int_equal(cf.route_count, 1);
	assert_int_equal(cf.max_size, 10 * 1024 * 1024);
	assert_int_equal(conf_retry_delay(&cf, 1), 60);
	assert_int_equal(conf_retry_delay(&cf, 99), 3600);
	conf_free(&cf);
}

static void
test_contract_example(void **state)
{
	struct conf cf;
	char err[256];
	const struct conf_transport *m;

	(void)state;
	write_conf("[spool]\n"
		   "dir = /tmp/spool-x\n"
		   "max_size = 10M\n"
		   "\n"
		   "[delivery]\n"
		   "; transports tried in order\n"
		   "route = mailu, local\n"
		   "concurrency = 4\n"
		   "retry = 1m, 5m, 15m, 1h\n"
		   "max_age = 5d\n"
		   "bounce = no\n"
		   "\n"
		   "[transport mailu]\n"
		   "type = smtp\n"
		   "host = mail.example.org\n"
		   "port = 465\n"
		   "tls = implicit\n"
		   "  ca_file = /etc/ssl/certs/ca-certificates.crt\n"
		   "user = no-reply@example.org\n"
		   "password_file = /etc/spoold/mailu.token\n"
		   "from = no-reply@example.org\n"
		   "probe_url = https://mail.example.org/\n"
		   "probe_expect = 200, 204, 301\n"
		   "probe_interval = 30s\n"
		   "probe_timeout = 5s\n"
		   "\n"
		   "[transport local]\n"
		   "type = smtp\n"
		   "host = 127.0.0.1\n"
		   "port = 25\n"
		   "tls = none\n");
	assert_int_equal(conf_load(&cf, conf_path, err, sizeof(err)), 0);
	assert_string_equal(cf.spool_dir, "/tmp/spool-x");
	assert_int_equal(cf.route_count, 2);
	m = &cf.transports[cf.route[0]];
	assert_string_equal(m->name, "mailu");
	assert_int_equal(m->tls, CONF_TLS_IMPLICIT);
	assert_int_equal(m->port, 465);
	assert_string_equal(m->ca_file, "/etc/ssl/certs/ca-certificates.crt");
	assert_int_equal(m->probe_expect_count, 3);
	assert_int_equal(m->probe_expect[2], 301);
	assert_int_equal(m->probe_interval, 30);
	assert_string_equal(cf.transports[cf.route[1]].name, "local");
	assert_int_equal(cf.max_age, 5 * 86400);
	assert_int_equal(cf.retry_count, 4);
	assert_int_equal(cf.retry[3], 3600);
	conf_free(&cf);
}

static void
test_env_overrides(void **state)
{
	struct conf cf;
	char err[256];
	const struct conf_transport *m;

	(void)state;
	setenv("SPOOLD_SPOOL_DIR", "/tmp/env-spool", 1);
	setenv("SPOOLD_DELIVERY_ROUTE", "mailu, local", 1);
	setenv("SPOOLD_TRANSPORT_MAILU_HOST", "mail.example.org", 1);
	setenv("SPOOLD_TRANSPORT_MAILU_TLS", "starttls", 1);
	setenv("SPOOLD_TRANSPORT_MAILU_USER", "u@example.org", 1);
	setenv("SPOOLD_TRANSPORT_MAILU_PASSWORD_FILE", "/run/token", 1);
	assert_int_equal(conf_load(&cf, NULL, err, sizeof(err)), 0);
	assert_string_equal(cf.spool_dir, "/tmp/env-spool");
	m = conf_transport_find(&cf, "mailu");
	assert_non_null(m);
	assert_string_equal(m->host, "mail.example.org");
	assert_string_equal(m->password_file, "/run/token");
	assert_int_equal(m->port, 587);
	assert_int_equal(cf.route_count, 2);
	assert_string_equal(cf.transports[cf.route[0]].name, "mailu");
	conf_free(&cf);
}

/* With no file, transports from the environment replace the embedded relay
 * in the default route; the embedded one can still be named. */
static void
test_env_only_route(void **state)
{
	struct conf cf;
	char err[256];

	(void)state;
	setenv("SPOOLD_TRANSPORT_MAILU_HOST", "mail.example.org", 1);
	assert_int_equal(conf_load(&cf, NULL, err, sizeof(err)), 0);
	assert_int_equal(cf.route_count, 1);
	assert_string_equal(cf.transports[cf.route[0]].name, "mailu");
	assert_non_null(conf_transport_find(&cf, "local"));
	conf_free(&cf);

	/* set up in the environment, the local relay is part of it */
	setenv("SPOOLD_TRANSPORT_LOCAL_PORT", "2525", 1);
	assert_int_equal(conf_load(&cf, NULL, err, sizeof(err)), 0);
	assert_int_equal(cf.route_count, 2);
	conf_free(&cf);
}

static void
test_refusals(void **state)
{
	static const struct {
		const char *text;
		const char *want; /* substring of the message */
	} cases[] = {
	    {"[spool]\ndir = relative\n", ":2: [spool] dir: must be an"},
	    {"[delivery]\nretry = 1m, soon\n", "retry: \"soon\""},
	    {"[delivery]\nroute = nowhere\n", "no [transport nowhere]"},
	    {"[transport a]\nhost = x # old\n", "'#' in a value"},
	    {"[transport a]\nport = 99999\n", ":2: [transport a] port"},
	    {"[transport a]\ntls = maybe\n", "tls: \"maybe\""},
	    {"[transport a]\nhost=x\nuser = u\n", "password_file"},
	    /* AUTH never in clear, tls = none being the default */
	    {"[transport a]\nhost=x\nuser = u\npassword_file = /p\n",
	     "[transport a] tls: with user set, tls = none would send"},
	    {"[transport a]\nhost=x\ntls = none\nuser = u\npassword_file = "
	     "/p\n",
	     "set tls = starttls or tls = implicit, or remove user"},
	    {"[transport a]\ntype = maildir\n", "absolute path"},
	    {"[weird]\nkey = 1\n", "unknown section"},
	    {"[spool]\nnope = 1\n", "nope: unknown key"},
	    {"[spool\n", "not a valid INI line"},
	    {"[delivery]\nadmin = root\n", "admin: \"root\" is not an address"},
	    {"[delivery]\nadmin = a b@example.org\n", "is not an address"},
	    {"[delivery]\naliases = aliases\n", "absolute path or none"},
	    {"[delivery]\ndomain = host name\n", "is not a domain name"},
	    {"[delivery]\ndomain = .example\n", "is not a domain name"},
	    {"[transport a]\nhost = "
	     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
	     ":2: line longer than"},
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct conf cf;
		char err[256] = "";

		write_conf(cases[i].text);
		assert_int_equal(conf_load(&cf, conf_path, err, sizeof(err)),
				 EX_CONFIG);
		if (strstr(err, cases[i].want) == NULL)
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err,
				 cases[i].want);
		assert_non_null(strstr(err, conf_path));
		conf_free(&cf);
		teardown(NULL);
	}
}

/* Mail for local names: admin, aliases and domain, and their defaults. */
static void
test_local_names(void **state)
{
	struct conf cf;
	char err[256];

	(void)state;
	write_conf("[delivery]\nadmin = admin@example.org\n"
		   "aliases = /etc/spoold/aliases\ndomain = host.example.org\n"
		   "[transport a]\nhost = x\n");
	assert_int_equal(conf_load(&cf, conf_path, err, sizeof(err)), 0);
	assert_string_equal(cf.admin, "admin@example.org");
	assert_string_equal(cf.aliases, "/etc/spoold/aliases");
	assert_string_equal(cf.domain, "host.example.org");
	conf_free(&cf);
	teardown(NULL);

	/* defaults: no admin, /etc/aliases, the domain found at submission */
	write_conf("[transport a]\nhost = x\n");
	setenv("SPOOLD_DELIVERY_ADMIN", "ops@example.org", 1);
	assert_int_equal(conf_load(&cf, conf_path, err, sizeof(err)), 0);
	assert_string_equal(cf.admin, "ops@example.org");
	assert_string_equal(cf.aliases, "/etc/aliases");
	assert_null(cf.domain);
	conf_free(&cf);
	unsetenv("SPOOLD_DELIVERY_ADMIN");
	teardown(NULL);

	write_conf("[delivery]\naliases = none\n[transport a]\nhost = x\n");
	assert_int_equal(conf_load(&cf, conf_path, err, sizeof(err)), 0);
	assert_null(cf.aliases);
	conf_free(&cf);
}

static void
test_missing_named_file(void **state)
{
	struct conf cf;
	char err[256];

	(void)state;
	assert_int_equal(
	    conf_load(&cf, "/nonexistent/spoold.conf", err, sizeof(err)),
	    EX_CONFIG);
	assert_non_null(strstr(err, "/nonexistent/spoold.conf"));
	setenv("SPOOLD_CONFIG", "/nonexistent/env.conf", 1);
	assert_int_equal(conf_load(&cf, NULL, err, sizeof(err)), EX_CONFIG);
	assert_non_null(strstr(err, "/nonexistent/env.conf"));
}

static void
test_unknown_env(void **state)
{
	struct conf cf;
	char err[256];

	(void)state;
	setenv("SPOOLD_BOGUS", "1", 1);
	write_conf("[transport a]\nhost = h\n");
	assert_int_equal(conf_load(&cf, conf_path, err, sizeof(err)),
			 EX_CONFIG);
	assert_non_null(strstr(err, "SPOOLD_BOGUS"));
}

/* A sidecar's environment cannot turn AUTH over plain text on either. */
static void
test_env_plaintext_auth(void **state)
{
	struct conf cf;
	char err[256];

	(void)state;
	if (access(CONF_DEFAULT_PATH, F_OK) == 0)
		skip();
	setenv("SPOOLD_TRANSPORT_MAILU_HOST", "mail.example.org", 1);
	setenv("SPOOLD_TRANSPORT_MAILU_USER", "u@example.org", 1);
	setenv("SPOOLD_TRANSPORT_MAILU_PASSWORD_FILE", "/run/token", 1);
	assert_int_equal(conf_load(&cf, NULL, err, sizeof(err)), EX_CONFIG);
	if (strstr(err, "[transport mailu] tls: with user set") == NULL)
		fail_msg("%s", err);
	setenv("SPOOLD_TRANSPORT_MAILU_TLS", "implicit", 1);
	assert_int_equal(conf_load(&cf, NULL, err, sizeof(err)), 0);
	conf_free(&cf);
}

static void
test_values(void **state)
{
	int64_t d;
	uint64_t s;

	(void)state;
	assert_int_equal(parse_duration("90", &d), 0);
	assert_int_equal(d, 90);
	assert_int_equal(parse_duration("5d", &d), 0);
	assert_int_equal(d, 432000);
	assert_int_equal(parse_duration("5x", &d), -EINVAL);
	assert_int_equal(parse_duration("", &d), -EINVAL);
	assert_int_equal(parse_size("10M", &s), 0);
	assert_int_equal(s, 10485760);
	assert_int_equal(parse_size("-1", &s), -EINVAL);
	assert_int_equal(parse_size("99999999999999999999", &s), -ERANGE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_no_host_config),
	    cmocka_unit_test_teardown(test_embedded_default, teardown),
	    cmocka_unit_test_teardown(test_typo_hints, teardown),
	    cmocka_unit_test_teardown(test_spool_only, teardown),
	    cmocka_unit_test_teardown(test_quotes_and_case, teardown),
	    cmocka_unit_test_teardown(test_new_keys, teardown),
	    cmocka_unit_test_teardown(test_contract_example, teardown),
	    cmocka_unit_test_teardown(test_env_overrides, teardown),
	    cmocka_unit_test_teardown(test_env_only_route, teardown),
	    cmocka_unit_test_teardown(test_refusals, teardown),
	    cmocka_unit_test_teardown(test_local_names, teardown),
	    cmocka_unit_test_teardown(test_missing_named_file, teardown),
	    cmocka_unit_test_teardown(test_unknown_env, teardown),
	    cmocka_unit_test_teardown(test_env_plaintext_auth, teardown),
	    cmocka_unit_test(test_values),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

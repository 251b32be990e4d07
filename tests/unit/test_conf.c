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
	return 0;
}

static void
test_embedded_default(void **state)
{
	struct conf cf;
	char err[256];

	(void)state;
	if (access(CONF_DEFAULT_PATH, F_OK) == 0)
		skip();
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
	if (access(CONF_DEFAULT_PATH, F_OK) == 0)
		skip();
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
	if (access(CONF_DEFAULT_PATH, F_OK) == 0)
		skip();
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
	    cmocka_unit_test_teardown(test_embedded_default, teardown),
	    cmocka_unit_test_teardown(test_contract_example, teardown),
	    cmocka_unit_test_teardown(test_env_overrides, teardown),
	    cmocka_unit_test_teardown(test_env_only_route, teardown),
	    cmocka_unit_test_teardown(test_refusals, teardown),
	    cmocka_unit_test_teardown(test_local_names, teardown),
	    cmocka_unit_test_teardown(test_missing_named_file, teardown),
	    cmocka_unit_test_teardown(test_unknown_env, teardown),
	    cmocka_unit_test(test_values),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

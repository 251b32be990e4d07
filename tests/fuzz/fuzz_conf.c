/*
 * fuzz_conf.c - conf_load on an INI file (inih plus the key parsers:
 * sizes, durations, lists, ports, transports) and the SPOOLD_* variables
 * applied on top. The input is the file, optionally followed by a line
 * "%%env" and lines "NAME=VALUE", set as SPOOLD_NAME for that run only.
 * The file lives in a memfd so a run writes nothing to disk, and
 * conf_load opens it by path exactly as spoold does with -c. An accepted
 * configuration must
 * be one spoold can use without further checks: a route of known
 * transports, an absolute spool directory, a port and a host on every
 * smtp transport, retry steps that are positive. Every problem is
 * reported as one line, a refusal by at least one; what spoold accepts,
 * submit (which reads [spool] only) accepts with the same spool, and what
 * submit accepts has a usable [spool].
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "spool/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static int conf_fd = -1;
static char conf_path[64];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* SPOOLD_* variables would be applied on top of every input. */
	for (char **e = environ; *e != NULL;) {
		if (strncmp(*e, "SPOOLD_", 7) == 0) {
			char name[256];
			size_t n = strcspn(*e, "=");

			snprintf(name, sizeof(name), "%.*s", (int)n, *e);
			unsetenv(name);
			continue; /* environ shifted down */
		}
		e++;
	}
	conf_fd = memfd_create("spoold.conf", MFD_CLOEXEC);
	if (conf_fd < 0) {
		perror("memfd_create");
		abort();
	}
	snprintf(conf_path, sizeof(conf_path), "/proc/self/fd/%d", conf_fd);
	return 0;
}

static void
check_usable(const struct conf *cf)
{
	if (cf->spool_dir == NULL || cf->spool_dir[0] != '/')
		abort();
	if (cf->transport_count == 0 ||
	    cf->transport_count > CONF_MAX_TRANSPORTS)
		abort();
	if (cf->route_count == 0 || cf->route_count > CONF_MAX_TRANSPORTS)
		abort();
	for (size_t i = 0; i < cf->route_count; i++)
		if (cf->route[i] >= cf->transport_count)
			abort();
	if (cf->retry_count == 0 || cf->retry_count > CONF_MAX_RETRY ||
	    cf->concurrency == 0 || cf->max_age <= 0)
		abort();
	for (unsigned a = 0; a <= CONF_MAX_RETRY + 2; a++)
		if (conf_retry_delay(cf, a) <= 0)
			abort();
	for (size_t i = 0; i < cf->transport_count; i++) {
		const struct conf_transport *t = &cf->transports[i];

		if (memchr(t->name, '\0', sizeof(t->name)) == NULL)
			abort();
		if (conf_transport_find(cf, t->name) == NULL)
			abort();
		if (t->probe_expect_count > CONF_MAX_EXPECT)
			abort();
		if (t->type == CONF_TRANSPORT_SMTP &&
		    (t->host == NULL || t->port == 0 || t->port > 65535))
			abort();
	}
}

#define ENV_MARK "\n%%env\n"
#define ENV_MAX 16

/* Sets SPOOLD_NAME=VALUE for each line of env; names[] gets what to unset
 * afterwards. Lines without '=' or with a NUL cannot be variables. */
static size_t
env_set(const char *env, size_t len, char names[ENV_MAX][128])
{
	size_t n = 0, pos = 0;

	while (pos < len && n < ENV_MAX) {
		const char *line = env + pos,
			   *nl = memchr(line, '\n', len - pos);
		size_t llen = nl ? (size_t)(nl - line) : len - pos;
		const char *eq = memchr(line, '=', llen);
		char value[512];

		pos += llen + 1;
		if (eq == NULL || memchr(line, '\0', llen) != NULL ||
		    (size_t)(eq - line) + 8 > sizeof(names[n]) ||
		    llen - (size_t)(eq - line) > sizeof(value))
			continue;
		snprintf(names[n], sizeof(names[n]), "SPOOLD_%.*s",
			 (int)(eq - line), line);
		snprintf(value, sizeof(value), "%.*s",
			 (int)(llen - (size_t)(eq - line) - 1), eq + 1);
		if (setenv(names[n], value, 1) == 0)
			n++;
	}
	return n;
}

struct fuzz_reports {
	size_t n, fatal;
};

static void
fuzz_report(void *arg, int fatal, const char *line)
{
	struct fuzz_reports *r = arg;

	if (line[0] == '\0' || strchr(line, '\n') != NULL)
		abort();
	r->n++;
	r->fatal += fatal != 0;
}

/* The same input as submit reads it; strict_rc is spoold's verdict. */
static void
check_spool_only(int strict_rc, const char *spool_dir)
{
	struct fuzz_reports r = {0};
	struct conf_opts o = {
	    .spool_only = 1, .report = fuzz_report, .arg = &r};
	struct conf cf;
	char err[512] = "";
	int rc = conf_load_opts(&cf, conf_path, &o, err, sizeof(err));

	if (rc == 0) {
		if (cf.spool_dir == NULL || cf.spool_dir[0] != '/' ||
		    cf.max_size < 1024 || r.fatal != 0)
			abort();
		if (strict_rc == 0 && strcmp(cf.spool_dir, spool_dir) != 0)
			abort();
		conf_free(&cf);
	} else if (strict_rc == 0 || err[0] == '\0' || r.fatal == 0) {
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	const char *mark = memmem(in, size, ENV_MARK, strlen(ENV_MARK));
	size_t flen = mark ? (size_t)(mark - in) + 1 : size, nenv = 0;
	char names[ENV_MAX][128];
	struct conf cf;
	struct fuzz_reports r = {0};
	struct conf_opts o = {.report = fuzz_report, .arg = &r};
	char err[512], spool_dir[4096] = "";
	int rc;

	if (ftruncate(conf_fd, 0) < 0 ||
	    (flen > 0 && pwrite(conf_fd, data, flen, 0) != (ssize_t)flen))
		abort();
	if (mark != NULL) {
		const char *env = mark + strlen(ENV_MARK);

		nenv = env_set(env, size - (size_t)(env - in), names);
	}
	err[0] = '\0';
	rc = conf_load_opts(&cf, conf_path, &o, err, sizeof(err));
	if (rc == 0) {
		check_usable(&cf);
		if (r.n != 0)
			abort();
		snprintf(spool_dir, sizeof(spool_dir), "%s", cf.spool_dir);
		conf_free(&cf);
	} else if (err[0] == '\0' || r.fatal == 0) {
		abort(); /* every refusal must say why */
	}
	check_spool_only(rc, spool_dir);
	for (size_t i = 0; i < nenv; i++)
		unsetenv(names[i]);
	return 0;
}

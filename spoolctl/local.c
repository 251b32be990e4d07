/*
 * local.c - the host's names and the aliases file as submission applies
 * them, and `newaliases`, which checks that file.
 *
 * spoold keeps no alias database: every submission reads the aliases file
 * (a few lines on a notification host), so an edit applies to the next
 * message and newaliases has nothing to rebuild. Run as newaliases (or
 * `spoolctl newaliases`), it reports every line the submissions skip, so
 * that an entry that cannot work is seen when it is written.
 */
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "spool/conf.h"
#include "spool/msg.h"
#include "spool/util.h"
#include "spoolctl.h"

struct aliases_report {
	const char *path;
	unsigned warnings;
};

static void
aliases_report_cb(void *arg, unsigned line, const char *why)
{
	struct aliases_report *r = arg;

	r->warnings++;
	ctl_error("%s:%u: %s", r->path, line, why);
}

/* report NULL: for a submission, where an aliases file that cannot be
 * read must not stop mail (local names then go to the admin address, and
 * one line says why); else newaliases, where it is the error. */
static int
local_setup(struct ctl_local *l, const struct conf *cf,
	    struct aliases_report *report)
{
	char err[512];
	int rc;

	memset(l, 0, sizeof(*l));
	rc = msg_host_init(&l->host, cf->domain, NULL, NULL, err, sizeof(err));
	if (rc == 0 && cf->aliases != NULL)
		rc = msg_aliases_load(cf->aliases, &l->aliases,
				      report ? aliases_report_cb : NULL, report,
				      err, sizeof(err));
	if (rc != 0 && report != NULL) {
		ctl_error("%s", err);
		return rc;
	}
	if (rc != 0)
		ctl_error("warning: aliases not applied: %s", err);
	l->local.admin = cf->admin;
	l->local.domain = l->host.domain;
	l->local.names = l->host.names;
	l->local.nnames = ARRAY_SIZE(l->host.names);
	l->local.aliases = &l->aliases;
	return 0;
}

int
ctl_local_init(struct ctl_local *l, const struct conf *cf)
{
	return local_setup(l, cf, NULL);
}

void
ctl_local_free(struct ctl_local *l)
{
	msg_aliases_free(&l->aliases);
}

/* Where root's mail goes, for the summary line. */
static void
aliases_root_target(const struct ctl_local *l, char *buf, size_t len)
{
	struct msg_strlist to = {0};
	char err[128];
	size_t used = 0;

	buf[0] = '\0';
	if (msg_local_resolve(&l->local, "root", &to, err, sizeof(err)) != 0)
		return;
	for (size_t i = 0; i < to.n && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s",
					 i ? ", " : "", to.v[i]);
	msg_strlist_free(&to);
}

/*
 * newaliases: reads the aliases file as a submission would and reports
 * every skipped line. 0 when it can be read (skipped lines are warnings:
 * the packages of other mail software run newaliases after editing the
 * file, and must not fail for a line spoold ignores), EX_NOINPUT or
 * EX_DATAERR when it cannot, EX_CONFIG for a bad configuration.
 */
int
cmd_newaliases(const char *conf_path, int argc, char **argv)
{
	struct aliases_report r = {0};
	struct ctl_local l;
	struct conf cf;
	char root_to[512];
	int rc;

	(void)argv;
	if (argc > 1) {
		ctl_error("newaliases takes no arguments");
		return EX_USAGE;
	}
	if ((rc = ctl_conf_load(&cf, conf_path)) != 0)
		return rc;
	if (cf.aliases == NULL) {
		printf("no aliases file configured\n");
		conf_free(&cf);
		return 0;
	}
	r.path = cf.aliases;
	if ((rc = local_setup(&l, &cf, &r)) != 0) {
		ctl_local_free(&l);
		conf_free(&cf);
		return rc;
	}
	aliases_root_target(&l, root_to, sizeof(root_to));
	printf("%s: %zu aliases, %u lines skipped; mail to root goes to %s\n",
	       cf.aliases, l.aliases.n, r.warnings, root_to);
	ctl_local_free(&l);
	conf_free(&cf);
	return 0;
}

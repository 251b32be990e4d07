/*
 * checkconf.c - spoold --check-config: every check the daemon makes at
 * start, without starting it, so a file can be checked before a reload.
 *
 * Syntax, values and the route come from conf_load_opts (every problem, not
 * only the first); then each transport is built as at start (secret file
 * modes, the CA file of STARTTLS), and the files and folders the daemon
 * will use are opened as the daemon's user would: secrets and CA files
 * read, the spool and Maildir folders written or creatable. Problems go to
 * stderr, one line each; nothing is created or changed.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "spool/conf.h"
#include "spool/transport.h"
#include "spool/util.h"
#include "spoold.h"

/* The user the daemon's file accesses are made as. */
struct checkconf_user {
	uid_t uid;
	gid_t gid;
	gid_t saved_groups[NGROUPS_MAX];
	int nsaved; /* -1: the checks run as we are */
};

struct checkconf {
	const char *source;
	struct checkconf_user user;
	unsigned problems;
};

static void checkconf_problem(struct checkconf *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
checkconf_problem(struct checkconf *c, const char *fmt, ...)
{
	va_list ap;

	c->problems++;
	fprintf(stderr, "spoold: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void
checkconf_report(void *arg, int fatal, const char *line)
{
	struct checkconf *c = arg;

	(void)fatal; /* --check-config is strict: every problem counts */
	checkconf_problem(c, "%s", line);
}

/*
 * The daemon's user: the daemon runs as whoever starts it, so that is the
 * user it checks as. Where the daemon switches to another user at start,
 * that user's uid and gid go here, and root then checks as them.
 */
static void
checkconf_daemon_user(const struct conf *cf, struct checkconf_user *u)
{
	(void)cf;
	u->uid = geteuid();
	u->gid = getegid();
	u->nsaved = -1;
}

/* Takes the daemon user's identity for the file checks, if it is not
 * ours; 0 or -errno. checkconf_leave undoes it. */
static int
checkconf_enter(struct checkconf_user *u)
{
	if (u->uid == geteuid())
		return 0;
	u->nsaved = getgroups(NGROUPS_MAX, u->saved_groups);
	if (u->nsaved < 0 || setgroups(1, &u->gid) < 0 || setegid(u->gid) < 0 ||
	    seteuid(u->uid) < 0) {
		int rc = -errno;

		u->nsaved = -1;
		return rc;
	}
	return 0;
}

static void
checkconf_leave(struct checkconf_user *u)
{
	if (u->nsaved < 0)
		return;
	/* back to root, which this process was before entering; failing
	 * that the process must not go on with mixed identities */
	if (seteuid(0) < 0 || setegid(0) < 0 ||
	    setgroups((size_t)u->nsaved, u->saved_groups) < 0)
		abort();
	u->nsaved = -1;
}

/* A file the daemon reads: it must open for reading. */
static void
checkconf_readable(struct checkconf *c, const char *sec, const char *key,
		   const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

	if (fd < 0)
		checkconf_problem(c, "%s: [%s] %s: %s: %s (as uid %ld)",
				  c->source, sec, key, path, strerror(errno),
				  (long)c->user.uid);
	else
		close(fd);
}

/* A folder the daemon writes, made at start if missing: it must be a
 * writable folder, or its nearest existing parent must be one. */
static void
checkconf_writable_dir(struct checkconf *c, const char *sec, const char *key,
		       const char *path)
{
	char buf[PATH_MAX];
	struct stat sb;

	str_copy(buf, path, sizeof(buf));
	while (stat(buf, &sb) < 0) {
		char *slash = strrchr(buf, '/');

		if (errno != ENOENT || slash == NULL || slash == buf) {
			checkconf_problem(c, "%s: [%s] %s: %s: %s (as uid %ld)",
					  c->source, sec, key, buf,
					  strerror(errno), (long)c->user.uid);
			return;
		}
		*slash = '\0';
	}
	if (!S_ISDIR(sb.st_mode)) {
		checkconf_problem(c, "%s: [%s] %s: %s is not a folder",
				  c->source, sec, key, buf);
		return;
	}
	if (faccessat(AT_FDCWD, buf, W_OK | X_OK, AT_EACCESS) < 0)
		checkconf_problem(c,
				  "%s: [%s] %s: %s: %s (as uid %ld, which "
				  "must %s it)",
				  c->source, sec, key, buf, strerror(errno),
				  (long)c->user.uid,
				  strcmp(buf, path) == 0 ? "write in"
							 : "create folders in");
}

/* [metrics] textfile: spoold writes PATH.tmp next to it and renames it
 * over PATH, so its folder must exist and take new files from the
 * daemon's user; spoold makes no folder for it. */
static void
checkconf_metrics(struct checkconf *c, const struct conf *cf)
{
	char dir[PATH_MAX];
	const char *why = NULL, *bad = dir;
	struct stat sb;
	char *slash;

	if (cf->metrics_textfile == NULL)
		return;
	str_copy(dir, cf->metrics_textfile, sizeof(dir));
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash != NULL)
		*slash = '\0';
	if (stat(dir, &sb) < 0)
		why = strerror(errno);
	else if (!S_ISDIR(sb.st_mode))
		why = "not a folder";
	else if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) < 0)
		why = strerror(errno);
	else if (lstat(cf->metrics_textfile, &sb) == 0 && !S_ISREG(sb.st_mode))
		bad = cf->metrics_textfile, why = "not a regular file";
	if (why != NULL)
		checkconf_problem(
		    c,
		    "%s: [metrics] textfile: %s: %s (as uid %ld); "
		    "name a file in a folder the daemon's user "
		    "may write in, or make %s one (e.g. chown %s "
		    "it)",
		    c->source, bad, why, (long)c->user.uid, dir,
		    cf->spool_user ? cf->spool_user : "spoold");
}

static void
checkconf_transport(struct checkconf *c, const struct conf_transport *t)
{
	char sec[CONF_NAME_MAX + 16], err[1024];
	struct transport *tr;

	snprintf(sec, sizeof(sec), "transport %s", t->name);
	if (transport_create(&tr, t, err, sizeof(err)) < 0)
		checkconf_problem(c, "%s: [%s]: %s", c->source, sec, err);
	else
		transport_destroy(tr);
	if (t->password_file != NULL)
		checkconf_readable(c, sec, "password_file", t->password_file);
	if (t->ca_file != NULL)
		checkconf_readable(c, sec, "ca_file", t->ca_file);
	if (t->type == CONF_TRANSPORT_MAILDIR && t->path != NULL)
		checkconf_writable_dir(c, sec, "path", t->path);
}

int
checkconf_run(const char *path)
{
	struct checkconf c = {0};
	const struct conf_opts o = {.report = checkconf_report, .arg = &c};
	struct conf cf;
	char err[1024];
	int rc;

	rc = conf_load_opts(&cf, path, &o, err, sizeof(err));
	if (rc != 0) {
		if (c.problems == 0)
			checkconf_problem(&c, "%s", err);
		return rc;
	}
	c.source = cf.source;
	checkconf_daemon_user(&cf, &c.user);
	rc = checkconf_enter(&c.user);
	if (rc < 0) {
		checkconf_problem(&c, "cannot take uid %ld to check as it: %s",
				  (long)c.user.uid, strerror(-rc));
		conf_free(&cf);
		return EX_OSERR;
	}
	checkconf_writable_dir(&c, "spool", "dir", cf.spool_dir);
	for (size_t i = 0; i < cf.transport_count; i++)
		checkconf_transport(&c, &cf.transports[i]);
	checkconf_metrics(&c, &cf);
	checkconf_leave(&c.user);
	if (c.problems == 0)
		printf("%s: configuration OK\n", cf.source);
	conf_free(&cf);
	return c.problems == 0 ? 0 : EX_CONFIG;
}

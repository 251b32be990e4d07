/*
 * setgid.c - spoolctl installed setgid to [spool] submit_group, the way
 * Postfix's postdrop is: the group may write the spool's tmp/ and new/,
 * which no one else may enter, so any local user can queue mail and none
 * can reach a queued file afterwards.
 *
 * The group is a privilege the caller does not have, so while spoolctl
 * holds it nothing the caller chooses may steer it:
 *   - at start the effective group goes back to the caller's own; the
 *     saved one is kept only to write one spool file (ctl_setgid_raise,
 *     then ctl_setgid_drop gives it up for good), so the message, a
 *     --body-file and the configuration are read with the caller's rights;
 *   - every command but submission drops the group for good at once;
 *   - SPOOLD_* variables are ignored (one warning line), and a
 *     configuration named by -c, -C or $SPOOLD_CONFIG is taken only if root
 *     owns it and every folder above it and no one else may change them.
 * Root, and a caller that is a member of the group already (a container
 * given the group, where setgid cannot work), gain nothing from the bit:
 * for them spoolctl behaves as an ordinary program.
 */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "spoolctl.h"

extern char **environ;

static int setgid_held;	   /* the saved group is one the caller lacks */
static int setgid_session; /* sendmail -bs: several spool writes to come */
static gid_t setgid_gid;

/* 1 if the caller is in group g by its real or supplementary groups. */
static int
setgid_caller_has(gid_t g)
{
	gid_t groups[NGROUPS_MAX];
	int n = getgroups(NGROUPS_MAX, groups);

	if (g == getgid())
		return 1;
	for (int i = 0; i < n; i++)
		if (groups[i] == g)
			return 1;
	return 0;
}

static const char *
setgid_group_name(void)
{
	struct group *gr = getgrgid(setgid_gid);

	return gr != NULL ? gr->gr_name : "the submit group";
}

/* Removes every SPOOLD_* variable but SPOOLD_CONFIG (checked like -c);
 * one warning line names them. */
static void
setgid_clear_env(void)
{
	char names[512] = "";
	size_t used = 0;
	int n = 0;

	for (char **e = environ; *e != NULL;) {
		const char *eq = strchr(*e, '=');
		char name[256];
		size_t len = eq != NULL ? (size_t)(eq - *e) : strlen(*e);

		if (strncmp(*e, "SPOOLD_", 7) != 0 || len >= sizeof(name) ||
		    strncmp(*e, "SPOOLD_CONFIG=", 14) == 0) {
			e++;
			continue;
		}
		memcpy(name, *e, len);
		name[len] = '\0';
		if (used + len + 3 < sizeof(names))
			used +=
			    (size_t)snprintf(names + used, sizeof(names) - used,
					     "%s%s", n > 0 ? ", " : "", name);
		n++;
		unsetenv(name); /* shifts environ: look at *e again */
	}
	if (n > 0)
		ctl_error("warning: %s ignored: spoolctl runs setgid %s and "
			  "takes its configuration from the system only",
			  names, setgid_group_name());
}

#if defined(__SANITIZE_ADDRESS__)
/* Started with a group its caller does not have: set once, never reset. */
static int setgid_started;

/* LeakSanitizer cannot inspect a process that is not dumpable, as a
 * setgid one is, and would end it with a fatal error instead of its exit
 * status: it skips the check when this says so. Leaks are checked by the
 * runs of the same code that are not setgid. */
int __lsan_is_turned_off(void);
int
__lsan_is_turned_off(void)
{
	return setgid_started;
}
#endif

void
ctl_setgid_init(int submits)
{
	gid_t r = getgid(), e = getegid();

	if (e == r)
		return;
	if (getuid() == 0 || setgid_caller_has(e)) {
		/* nothing gained: an ordinary process of the caller */
		(void)setresgid(r, r, r);
		return;
	}
	setgid_held = 1;
	setgid_gid = e;
#if defined(__SANITIZE_ADDRESS__)
	setgid_started = 1;
#endif
	if (setegid(r) < 0 || !submits) {
		ctl_setgid_drop();
		return;
	}
	setgid_clear_env();
}

int
ctl_setgid_raise(void)
{
	if (!setgid_held)
		return 0;
	if (setegid(setgid_gid) < 0) {
		ctl_error("cannot take group %s: %s", setgid_group_name(),
			  strerror(errno));
		return EX_OSERR;
	}
	return 0;
}

void
ctl_setgid_drop(void)
{
	gid_t r = getgid();

	if (!setgid_held)
		return;
	setgid_held = 0;
	/* the saved group too, so it cannot be taken back */
	if (setresgid(r, r, r) < 0) {
		/* cannot happen for one's own real group; never go on with
		 * the group held */
		ctl_error("cannot give up group %u: %s", (unsigned)setgid_gid,
			  strerror(errno));
		_exit(EX_OSERR);
	}
}

void
ctl_setgid_lower(void)
{
	if (!setgid_session) {
		ctl_setgid_drop();
		return;
	}
	/* the saved group stays for the session's next message; a setgid
	 * process is not dumpable, so its caller cannot take it meanwhile */
	if (setgid_held && setegid(getgid()) < 0) {
		ctl_error("cannot give up group %u: %s", (unsigned)setgid_gid,
			  strerror(errno));
		_exit(EX_OSERR);
	}
}

void
ctl_setgid_session(int open)
{
	setgid_session = open;
	if (!open)
		ctl_setgid_drop();
}

/*
 * 0 if path is a configuration only root may have written and may
 * change: the file and every folder from / down are root's, no folder
 * writable by others unless sticky (as /tmp), the file writable by no one
 * else. Else EX_CONFIG after one line.
 */
static int
setgid_conf_trusted(const char *path, const char *how)
{
	char *real = realpath(path, NULL), *p;
	const char *why = NULL;
	struct stat st;
	int rc = 0;

	if (real == NULL) {
		ctl_error("%s %s: %s", how, path, strerror(errno));
		return EX_CONFIG;
	}
	for (p = real;; p++) {
		char c = *p;

		if (c != '/' && c != '\0')
			continue;
		*p = '\0';
		if (lstat(p == real ? "/" : real, &st) < 0) {
			why = strerror(errno);
		} else if (st.st_uid != 0) {
			why = "not owned by root";
		} else if (c == '\0' && !S_ISREG(st.st_mode)) {
			why = "not a regular file";
		} else if ((st.st_mode & 022) != 0 &&
			   (c == '\0' || !(st.st_mode & S_ISVTX))) {
			why = c == '\0' ? "writable by group or others"
					: "in a folder others may change";
		}
		*p = c;
		if (why != NULL || c == '\0')
			break;
	}
	if (why != NULL) {
		ctl_error("%s %s refused (%s): spoolctl runs setgid %s and "
			  "takes only a configuration that root owns and no "
			  "one else may change",
			  how, path, why, setgid_group_name());
		rc = EX_CONFIG;
	}
	free(real);
	return rc;
}

int
ctl_setgid_conf_check(const char *conf_path)
{
	const char *env = getenv("SPOOLD_CONFIG");

	if (!setgid_held)
		return 0;
	if (conf_path != NULL)
		return setgid_conf_trusted(conf_path, "configuration");
	if (env != NULL && env[0] != '\0')
		return setgid_conf_trusted(env, "$SPOOLD_CONFIG file");
	return 0;
}

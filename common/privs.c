/*
 * privs.c - looking up the daemon's user and the submitters' group, and
 * becoming that user for good.
 *
 * Why the order matters: spoold takes what needs root (the spool's owner
 * and modes) and then calls privs_drop before it reads a spool file, opens
 * LMDB, reads a secret or opens a socket, so nothing a local user or the
 * network can feed it is ever parsed by uid 0.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "spool/privs.h"
#include "spool/util.h"

int
privs_resolve(struct privs_ids *out, const char *user, const char *group,
	      const char *spool_dir, char *err, size_t errlen)
{
	struct passwd *pw;
	struct group *gr;

	memset(out, 0, sizeof(*out));
	errno = 0;
	pw = getpwnam(user);
	if (pw == NULL && errno != 0 && errno != ENOENT && errno != ESRCH) {
		snprintf(err, errlen, "looking up user %s: %s", user,
			 strerror(errno));
		return EX_OSERR;
	}
	if (pw == NULL) {
		snprintf(err, errlen,
			 "no user \"%s\" ([spool] user): run spoold-setup, or "
			 "useradd --system --home-dir %.512s --shell "
			 "/usr/sbin/nologin %s, or name another user in "
			 "[spool] user",
			 user, spool_dir, user);
		return EX_CONFIG;
	}
	if (pw->pw_uid == 0) {
		snprintf(err, errlen,
			 "[spool] user %s has uid 0: spoold never runs as "
			 "root; name an unprivileged user of its own",
			 user);
		return EX_CONFIG;
	}
	out->uid = pw->pw_uid;
	out->gid = pw->pw_gid;
	str_copy(out->user, user, sizeof(out->user));
	str_copy(out->home, pw->pw_dir != NULL ? pw->pw_dir : "/",
		 sizeof(out->home));
	errno = 0;
	gr = getgrnam(group);
	if (gr == NULL && errno != 0 && errno != ENOENT && errno != ESRCH) {
		snprintf(err, errlen, "looking up group %s: %s", group,
			 strerror(errno));
		return EX_OSERR;
	}
	if (gr == NULL) {
		snprintf(err, errlen,
			 "no group \"%s\" ([spool] submit_group): run "
			 "spoold-setup, or groupadd --system %s && usermod "
			 "-aG %s %s",
			 group, group, group, user);
		return EX_CONFIG;
	}
	if (gr->gr_gid == 0) {
		snprintf(err, errlen,
			 "[spool] submit_group %s has gid 0: name a group "
			 "of its own",
			 group);
		return EX_CONFIG;
	}
	out->submit_gid = gr->gr_gid;
	str_copy(out->group, group, sizeof(out->group));
	return 0;
}

int
privs_drop(const struct privs_ids *ids, char *err, size_t errlen)
{
	gid_t groups[2] = {ids->gid, ids->submit_gid};
	uid_t r, e, s;
	gid_t rg, eg, sg;

	if (setgroups(ids->gid == ids->submit_gid ? 1 : 2, groups) < 0 ||
	    setresgid(ids->gid, ids->gid, ids->gid) < 0 ||
	    setresuid(ids->uid, ids->uid, ids->uid) < 0) {
		snprintf(err, errlen, "cannot become user %s: %s", ids->user,
			 strerror(errno));
		return -errno;
	}
	/* a kernel or a security module that let any of this fail quietly
	 * would leave root behind: prove it is gone */
	if (getresuid(&r, &e, &s) < 0 || getresgid(&rg, &eg, &sg) < 0 ||
	    r != ids->uid || e != ids->uid || s != ids->uid || rg != ids->gid ||
	    eg != ids->gid || sg != ids->gid || setuid(0) == 0 ||
	    seteuid(0) == 0 || setgid(0) == 0) {
		snprintf(err, errlen,
			 "switching to user %s did not drop root for good",
			 ids->user);
		return -EPERM;
	}
	if (setenv("HOME", ids->home[0] ? ids->home : "/", 1) < 0 ||
	    setenv("USER", ids->user, 1) < 0 ||
	    setenv("LOGNAME", ids->user, 1) < 0) {
		snprintf(err, errlen, "setting $HOME: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

const char *
privs_user_name(uid_t uid, char *buf, size_t len)
{
	struct passwd *pw = getpwuid(uid);

	if (pw != NULL)
		str_copy(buf, pw->pw_name, len);
	else
		snprintf(buf, len, "uid %lu", (unsigned long)uid);
	return buf;
}

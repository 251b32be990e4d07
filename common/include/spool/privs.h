/*
 * spool/privs.h - the accounts of the privilege model: spoold runs as
 * [spool] user (never root), and [spool] submit_group may write tmp/ and
 * new/ (spoolctl is installed setgid to it). Root uses these to set the
 * spool up and to become the daemon's user for good.
 */
#ifndef SPOOL_PRIVS_H
#define SPOOL_PRIVS_H

#include <stddef.h>
#include <sys/types.h>

struct privs_ids {
	uid_t uid;	  /* [spool] user */
	gid_t gid;	  /* its primary group */
	gid_t submit_gid; /* [spool] submit_group */
	char user[64];
	char group[64];
	char home[256]; /* the user's home, for $HOME */
};

/*
 * Looks up user and group. spool_dir only shapes the advice. Returns 0,
 * or a sysexits code (EX_CONFIG for a missing or root account, EX_OSERR)
 * with one line in err saying how to create what is missing.
 */
int privs_resolve(struct privs_ids *out, const char *user, const char *group,
		  const char *spool_dir, char *err, size_t errlen);

/*
 * Root becomes ids->uid for good: supplementary groups are exactly the
 * user's primary group and the submit group; real, effective and saved
 * ids all change, and the call checks that uid 0 cannot be regained.
 * $HOME becomes the user's, as a login would set it: libraries look there
 * (libESMTP for client certificates) and must not meet root's.
 * 0 or -errno with one line in err; on error the caller must exit.
 */
int privs_drop(const struct privs_ids *ids, char *err, size_t errlen);

/* The name of uid, or its number, into buf. */
const char *privs_user_name(uid_t uid, char *buf, size_t len);

#endif

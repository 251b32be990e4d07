/*
 * spool_own.c - root gives the spool to the daemon's user: creates what is
 * missing and brings an existing spool of any earlier model (root's, with
 * world-writable tmp/ and new/) to the present one.
 *
 *   SPOOL/                 0711  user:user
 *   SPOOL/tmp/, new/      03730  user:submit_group (setgid: files get the
 *                                group; sticky: a submitter cannot remove
 *                                another's file; the group cannot list)
 *   SPOOL/cur/ hold/ failed/ state/  0700  user:user, files user's 0600
 *
 * The folders are handled before the spool itself, so an adoption cut
 * short (a crash, a full disk) is done again whole at the next start: the
 * spool's own owner says whether it was finished.
 *
 * Nothing here follows a symbolic link, and only regular files with a
 * single link change: an entry a local user planted in a world-writable
 * folder of the old model (a link to a file of root's) is left alone for
 * the pickup to refuse. Files waiting in tmp/ and new/ keep their owner
 * and get the submit group and 0640: the daemon can read them, and treats
 * them as any submission it does not own (their owner may still hold a
 * descriptor open from before).
 *
 * Root only. Failure policy: -errno and one line in err.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool/privs.h"
#include "spool/util.h"
#include "queue_int.h"

#define OWN_ROOT_MODE 0711
#define OWN_DROP_MODE 03730
#define OWN_PRIVATE_MODE 0700

static const struct {
	const char *name;
	int drop; /* tmp/ and new/: written by the submit group */
} own_dirs[] = {
    {"tmp", 1},	 {"new", 1},	{"cur", 0},
    {"hold", 0}, {"failed", 0}, {"state", 0},
};

static void own_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
own_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Sets owner and mode of an open file or folder if they differ; 1 if
 * something changed. The mode goes first: a file never is the new
 * owner's while still open to others. */
static int
own_fix(int fd, const struct stat *st, uid_t uid, gid_t gid, mode_t mode)
{
	int changed = 0;

	if ((st->st_mode & 07777) != mode) {
		if (fchmod(fd, mode) < 0)
			return -errno;
		changed = 1;
	}
	if (st->st_uid != uid || st->st_gid != gid) {
		if (fchown(fd, uid, gid) < 0)
			return -errno;
		changed = 1;
		/* chown clears the setgid bit of a folder on some systems */
		if ((mode & 06000) != 0 && fchmod(fd, mode) < 0)
			return -errno;
	}
	return changed;
}

/* Every regular, singly linked file of folder dfd to uid:gid mode; with
 * keep_owner only the group and mode change. */
static int
own_files(int dfd, uid_t uid, gid_t gid, mode_t mode, int keep_owner)
{
	int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	DIR *dir;
	int rc = 0;

	if (fd < 0)
		return -errno;
	dir = fdopendir(fd);
	if (dir == NULL) {
		rc = -errno;
		close(fd);
		return rc;
	}
	while (rc >= 0 && (errno = 0, de = readdir(dir)) != NULL) {
		struct stat st;
		int f;

		if (de->d_name[0] == '.' &&
		    (de->d_name[1] == '\0' ||
		     (de->d_name[1] == '.' && de->d_name[2] == '\0')))
			continue;
		/* O_NONBLOCK: a FIFO planted here must not block; it is
		 * skipped below anyway */
		f = openat(dfd, de->d_name,
			   O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC |
			       O_NOCTTY);
		if (f < 0)
			continue; /* a symbolic link, or gone meanwhile */
		if (fstat(f, &st) == 0 && S_ISREG(st.st_mode) &&
		    st.st_nlink == 1) {
			int r = own_fix(f, &st, keep_owner ? st.st_uid : uid,
					gid, mode);

			if (r < 0)
				rc = r;
		}
		close(f);
	}
	if (rc == 0 && errno != 0)
		rc = -errno;
	closedir(dir);
	return rc;
}

int
spool_own(const char *dir, const struct privs_ids *ids, int *adopted, char *err,
	  size_t errlen)
{
	struct stat st;
	int dfd = -1, rc, existed;

	*adopted = 0;
	existed = lstat(dir, &st) == 0;
	/* made, if missing, by spool_open as root, then fixed below */
	{
		struct spool *sp;

		rc = spool_open(&sp, dir, 1, err, errlen);
		if (rc < 0)
			return rc;
		spool_close(sp);
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0 || fstat(dfd, &st) < 0) {
		rc = -errno;
		own_err(err, errlen, "spool: open %s: %s", dir, strerror(-rc));
		goto out;
	}
	/* an earlier model, or an adoption cut short: every file too (a
	 * spool made just now has none) */
	*adopted = existed && st.st_uid != ids->uid;
	for (size_t i = 0; i < ARRAY_SIZE(own_dirs); i++) {
		const char *name = own_dirs[i].name;
		int drop = own_dirs[i].drop;
		gid_t gid = drop ? ids->submit_gid : ids->gid;
		struct stat sst;
		int sfd;

		sfd = openat(dfd, name,
			     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sfd < 0 || fstat(sfd, &sst) < 0) {
			rc = -errno;
			own_err(err, errlen, "spool: open %s/%s: %s", dir, name,
				strerror(-rc));
			if (sfd >= 0)
				close(sfd);
			goto out;
		}
		rc = own_fix(sfd, &sst, ids->uid, gid,
			     drop ? OWN_DROP_MODE : OWN_PRIVATE_MODE);
		/* state/ every time: root's spoolctl, changing the queue
		 * while no daemon ran, may have made LMDB's files anew */
		if (rc >= 0 && (*adopted || strcmp(name, "state") == 0))
			rc = own_files(sfd, ids->uid,
				       drop ? ids->submit_gid : ids->gid,
				       drop ? 0640 : 0600, drop);
		close(sfd);
		if (rc < 0) {
			own_err(err, errlen, "spool: give %s/%s to %s: %s", dir,
				name, ids->user, strerror(-rc));
			goto out;
		}
	}
	/* the pid file (reused) and the socket (made again at start) of an
	 * earlier daemon */
	rc = own_files(dfd, ids->uid, ids->gid, 0600, 0);
	if (rc == 0 && *adopted &&
	    fchownat(dfd, "ctl.sock", ids->uid, ids->gid, AT_SYMLINK_NOFOLLOW) <
		0 &&
	    errno != ENOENT)
		rc = -errno;
	if (rc < 0) {
		own_err(err, errlen, "spool: give %s to %s: %s", dir, ids->user,
			strerror(-rc));
		goto out;
	}
	rc = own_fix(dfd, &st, ids->uid, ids->gid, OWN_ROOT_MODE);
	if (rc >= 0 && fsync(dfd) < 0)
		rc = -errno;
	if (rc < 0) {
		own_err(err, errlen, "spool: give %s to %s: %s", dir, ids->user,
			strerror(-rc));
		goto out;
	}
	rc = 0;
out:
	if (dfd >= 0)
		close(dfd);
	return rc;
}

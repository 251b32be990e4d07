/*
 * spool_pickup.c - how the daemon reads a file that anyone may have
 * dropped into new/: as hostile input, whoever wrote it.
 *
 * Nothing here blocks or maps: an open cannot wait on a FIFO, a device or
 * a lease (O_NONBLOCK: a lease the open would break is -EAGAIN, retried
 * later), a symlink is refused (O_NOFOLLOW), the size is checked with
 * fstat before a byte is read, and the file is read() once into memory of
 * at most max_size plus the envelope's bound, so a truncation meanwhile
 * costs a short read, never a SIGBUS. The image is then held to the rules
 * of submission (spool_pickup_check).
 *
 * A file that only root and the spool's owner can change is taken as it
 * is (renamed into cur/ by the caller). Any other file is copied into a
 * new file of the daemon's own (spool_pickup_stage, then
 * spool_pickup_place), so nothing downstream reads a file that another
 * user can still write or truncate; the original is then unlinked.
 *
 * Returns -errno like spool_fs.c; queue_err_temporary() tells a passing
 * condition (retry) from a file that is bad in itself (failed/).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool/msg.h"
#include "queue_int.h"

void
spool_pickup_free(struct spool_pickup *p)
{
	if (p == NULL)
		return;
	free(p->data);
	spool_envelope_free(&p->env);
	memset(p, 0, sizeof(*p));
	p->uid = (uid_t)-1;
}

int
spool_pickup_check(const char *data, size_t len, uint64_t max_size,
		   struct spool_envelope *env, size_t *body_off, char *err,
		   size_t errlen)
{
	char why[256];
	size_t off, body;
	int rc;

	rc = queue__spool_parse(data, len, SPOOL_RCPT_MAX, env, &off, err,
				errlen);
	if (rc < 0)
		return rc;
	/* the rules spoolctl submit applies, so no envelope reaches a
	 * relay that submit would have refused ("a@b> RET=FULL", ...) */
	if (msg_addr_check(env->sender, 1, why, sizeof(why)) != 0) {
		queue__err(err, errlen, "sender: %s", why);
		goto bad;
	}
	for (size_t i = 0; i < env->nrcpt; i++)
		if (msg_addr_check(env->rcpt[i].address, 0, why, sizeof(why)) !=
		    0) {
			queue__err(err, errlen, "recipient %zu: %s", i + 1,
				   why);
			goto bad;
		}
	body = len - off;
	if (body > max_size + SPOOL_TRACE_MAX) {
		queue__err(err, errlen,
			   "message of %zu bytes is over max_size (%llu)", body,
			   (unsigned long long)max_size);
		goto bad;
	}
	if (memchr(data + off, '\0', body) != NULL) {
		queue__err(err, errlen, "NUL byte in the message");
		goto bad;
	}
	*body_off = off;
	return 0;
bad:
	spool_envelope_free(env);
	return -EINVAL;
}

/* Reads the n bytes fstat promised, and one more to see growth. */
static int
pickup_read_fd(int fd, size_t n, char **out, size_t *len)
{
	char *buf = malloc(n + 1);
	size_t got = 0;

	if (buf == NULL)
		return -ENOMEM;
	while (got < n + 1) {
		ssize_t r = read(fd, buf + got, n + 1 - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int rc = -errno;

			free(buf);
			return rc;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	*out = buf;
	*len = got;
	return 0;
}

int
spool_pickup_read(struct spool *sp, enum queue_dir d, const char *id,
		  uint64_t max_size, struct spool_pickup *out, char *err,
		  size_t errlen)
{
	uint64_t limit = max_size + SPOOL_ENVELOPE_MAX + SPOOL_TRACE_MAX;
	int dfd = spool_dirfd(sp, d), fd = -1, rc;
	struct stat st;
	size_t n;

	memset(out, 0, sizeof(*out));
	out->uid = (uid_t)-1;
	if (dfd < 0 || !queue_id_valid(id)) {
		queue__err(err, errlen, "invalid folder or queue id");
		return -EINVAL;
	}
	/* Not even opened unless a regular file: opening a device can act
	 * on it. A file swapped in after this is caught by O_NOFOLLOW,
	 * O_NONBLOCK and the fstat below. */
	if (fstatat(dfd, id, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		rc = -errno;
		queue__err(err, errlen, "stat: %s", strerror(-rc));
		return rc;
	}
	out->uid = st.st_uid;
	if (!S_ISREG(st.st_mode)) {
		queue__err(err, errlen, "not a regular file");
		return -EINVAL;
	}
	fd = openat(dfd, id,
		    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		if (rc == -EAGAIN)
			queue__err(err, errlen, "open: held by a lease");
		else
			queue__err(err, errlen, "open: %s", strerror(-rc));
		/* a symlink or socket swapped in is the file's fault */
		return rc == -ELOOP || rc == -ENXIO ? -EINVAL : rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		queue__err(err, errlen, "stat: %s", strerror(-rc));
		goto out;
	}
	out->uid = st.st_uid;
	rc = -EINVAL;
	if (!S_ISREG(st.st_mode)) {
		queue__err(err, errlen, "not a regular file");
		goto out;
	}
	if (st.st_size <= 0) {
		queue__err(err, errlen, "empty file");
		goto out;
	}
	if ((uint64_t)st.st_size > limit || (uint64_t)st.st_size >= SIZE_MAX) {
		rc = -EFBIG;
		queue__err(err, errlen,
			   "file of %lld bytes is over max_size (%llu) and "
			   "the envelope's bound",
			   (long long)st.st_size, (unsigned long long)max_size);
		goto out;
	}
	n = (size_t)st.st_size;
	rc = pickup_read_fd(fd, n, &out->data, &out->len);
	if (rc < 0) {
		queue__err(err, errlen, "read: %s", strerror(-rc));
		goto out;
	}
	if (out->len != n) {
		rc = -EINVAL;
		queue__err(err, errlen, "file changed size while being read");
		goto out;
	}
	rc = spool_pickup_check(out->data, out->len, max_size, &out->env,
				&out->body_off, err, errlen);
	if (rc < 0)
		goto out;
	out->trusted = spool_file_untrusted(sp, &st) == NULL;
out:
	close(fd);
	if (rc < 0) {
		uid_t uid = out->uid;

		spool_pickup_free(out);
		out->uid = uid;
	}
	return rc;
}

/* ".ID": hidden from spool_scan, which passes queue ids only. */
static void
pickup_stage_name(char out[QUEUE_ID_LEN + 2], const char *id)
{
	out[0] = '.';
	memcpy(out + 1, id, QUEUE_ID_LEN + 1);
}

int
spool_pickup_stage(struct spool *sp, enum queue_dir d, const char *id,
		   const struct spool_pickup *p, const char *trace, char *err,
		   size_t errlen)
{
	char name[QUEUE_ID_LEN + 2];
	int dfd = spool_dirfd(sp, d), fd, rc;
	const char *step = "create";

	if (dfd < 0 || !queue_id_valid(id) || p->data == NULL) {
		queue__err(err, errlen, "invalid folder or queue id");
		return -EINVAL;
	}
	pickup_stage_name(name, id);
	if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT) {
		rc = -errno;
		queue__err(err, errlen, "remove %s/%s: %s", queue__dir_name(d),
			   name, strerror(-rc));
		return rc;
	}
	fd = openat(dfd, name,
		    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = errno == EDQUOT ? -ENOSPC : -errno;
		goto fail;
	}
	/* the daemon's file, as if the spool's owner had written it: a
	 * daemon running as root keeps the spool's ownership rule */
	step = "chmod";
	if (fchmod(fd, 0600) < 0 ||
	    (geteuid() != spool_owner(sp) &&
	     fchown(fd, spool_owner(sp), (gid_t)-1) < 0)) {
		rc = -errno;
		goto fail;
	}
	step = "write";
	rc = queue__write_all(fd, p->data, p->body_off);
	if (rc == 0 && trace != NULL)
		rc = queue__write_all(fd, trace, strlen(trace));
	if (rc == 0)
		rc = queue__write_all(fd, p->data + p->body_off,
				      p->len - p->body_off);
	if (rc < 0)
		goto fail;
	step = "fdatasync";
	if (fdatasync(fd) < 0) {
		rc = errno == EDQUOT ? -ENOSPC : -errno;
		goto fail;
	}
	step = "close";
	rc = close(fd);
	fd = -1;
	if (rc < 0) {
		rc = errno == EDQUOT ? -ENOSPC : -errno;
		goto fail;
	}
	return 0;
fail:
	queue__err(err, errlen, "%s %s/%s: %s", step, queue__dir_name(d), name,
		   strerror(-rc));
	if (fd >= 0)
		close(fd);
	unlinkat(dfd, name, 0);
	return rc;
}

int
spool_pickup_place(struct spool *sp, enum queue_dir d, const char *id,
		   int replace)
{
	char name[QUEUE_ID_LEN + 2];
	int dfd = spool_dirfd(sp, d);

	if (dfd < 0 || !queue_id_valid(id))
		return -EINVAL;
	pickup_stage_name(name, id);
	if (!replace) {
		int rc = queue__rename_noreplace(dfd, name, dfd, id);

		if (rc == -EEXIST)
			unlinkat(dfd, name, 0);
		return rc;
	}
	if (renameat(dfd, name, dfd, id) < 0)
		return -errno;
	return 0;
}

int
spool_pickup_clean(struct spool *sp, enum queue_dir d)
{
	struct dirent *de;
	DIR *dir;
	int fd, count = 0;

	if (spool_dirfd(sp, d) < 0)
		return -EINVAL;
	fd =
	    openat(spool_dirfd(sp, d), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	dir = fdopendir(fd);
	if (dir == NULL) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	while ((de = readdir(dir)) != NULL)
		if (de->d_name[0] == '.' && queue_id_valid(de->d_name + 1) &&
		    unlinkat(spool_dirfd(sp, d), de->d_name, 0) == 0)
			count++;
	closedir(dir);
	return count;
}

/*
 * maildir.c - the maildir transport: each message becomes one file in a
 * local Maildir (tmp/, fsync, rename into new/, fsync of new/), for nodes
 * with no relay at all and for demos. Mail readers expect LF line ends and
 * a Return-Path, so the message gets both. Every recipient of a message
 * shares its one file: the Maildir is the mailbox.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool/util.h"
#include "spool/transport.h"
#include "transport_int.h"

struct maildir_transport {
	struct transport base;
	char *path;
	char host[256]; /* for unique file names; '/' and ':' replaced */
};

static atomic_uint maildir_seq;

static int
mkdir_p(const char *path, mode_t mode)
{
	char buf[4096];
	size_t len = str_copy(buf, path, sizeof(buf));

	if (len >= sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int
maildir_prepare(const struct maildir_transport *t)
{
	static const char *const sub[] = {"tmp", "new", "cur"};
	char dir[4096];
	int rc;

	for (size_t i = 0; i < ARRAY_SIZE(sub); i++) {
		snprintf(dir, sizeof(dir), "%s/%s", t->path, sub[i]);
		if ((rc = mkdir_p(dir, 0700)) < 0)
			return rc;
	}
	return 0;
}

static int
write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* no progress: retrying would spin */
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Writes the message with LF line ends (CRLF and bare CR become LF). */
static int
write_lf(int fd, const char *data, size_t len)
{
	char buf[8192];
	size_t n = 0;
	int rc;

	for (size_t i = 0; i < len; i++) {
		char c = data[i];

		if (c == '\r') {
			if (i + 1 < len && data[i + 1] == '\n')
				continue;
			c = '\n';
		}
		buf[n++] = c;
		if (n == sizeof(buf)) {
			if ((rc = write_all(fd, buf, n)) < 0)
				return rc;
			n = 0;
		}
	}
	if (len > 0 && data[len - 1] != '\n' && data[len - 1] != '\r')
		buf[n++] = '\n'; /* room: the loop flushes when full */
	return write_all(fd, buf, n);
}

/* Delivers one message; its file name into name. */
static int
maildir_store(const struct maildir_transport *t, const struct transport_msg *m,
	      char *name, size_t namelen)
{
	char tmp[4096], dst[4096], head[512];
	int64_t us = time_now_us();
	int fd, rc, hlen;

	snprintf(name, namelen, "%lld.M%lldP%dQ%u.%s",
		 (long long)(us / 1000000), (long long)(us % 1000000),
		 (int)getpid(), atomic_fetch_add(&maildir_seq, 1) + 1, t->host);
	snprintf(tmp, sizeof(tmp), "%s/tmp/%s", t->path, name);
	snprintf(dst, sizeof(dst), "%s/new/%s", t->path, name);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	hlen = snprintf(head, sizeof(head), "Return-Path: <%s>\n", m->sender);
	if (hlen < 0 || (size_t)hlen >= sizeof(head))
		hlen = snprintf(head, sizeof(head), "Return-Path: <>\n");
	if ((rc = write_all(fd, head, (size_t)hlen)) < 0 ||
	    (rc = write_lf(fd, m->data, m->len)) < 0)
		goto fail;
	if (fsync(fd) < 0) {
		rc = -errno;
		goto fail;
	}
	/* a write-back that failed (NFS) is reported here, at last */
	rc = close(fd);
	fd = -1;
	if (rc < 0) {
		rc = -errno;
		goto fail;
	}
	if (rename(tmp, dst) < 0) {
		rc = -errno;
		goto fail;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return rc;
}

static int
maildir_deliver(struct transport *base, struct transport_msg *msgs, size_t n,
		struct transport_session *sess)
{
	struct maildir_transport *t = (struct maildir_transport *)base;
	char newdir[4096], name[512], reply[QUEUE_REPLY_MAX];
	size_t done = 0;
	int rc;

	if ((rc = maildir_prepare(t)) < 0) {
		snprintf(sess->diag, sizeof(sess->diag), "maildir %s: %s",
			 t->path, strerror(-rc));
		sess->relay_failed = 1;
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		rc = maildir_store(t, &msgs[i], name, sizeof(name));
		if (rc < 0) {
			/* a full or read-only disk is the relay failing */
			snprintf(sess->diag, sizeof(sess->diag),
				 "maildir %s: %s", t->path, strerror(-rc));
			sess->relay_failed = 1;
			continue;
		}
		snprintf(reply, sizeof(reply),
			 "250 2.0.0 delivered to maildir as %.400s", name);
		for (size_t r = 0; r < msgs[i].nrcpt; r++)
			transport_set_reply(&msgs[i].rcpt[r], DELIV_OK, 250,
					    reply);
		done++;
	}
	/* The renames count only once new/ itself is on disk. */
	snprintf(newdir, sizeof(newdir), "%s/new", t->path);
	if (done > 0 && (rc = fsync_dir_path(newdir)) < 0) {
		snprintf(sess->diag, sizeof(sess->diag), "maildir %.300s: %s",
			 newdir, strerror(-rc));
		sess->relay_failed = 1;
		for (size_t i = 0; i < n; i++)
			for (size_t r = 0; r < msgs[i].nrcpt; r++)
				transport_set_reply(&msgs[i].rcpt[r],
						    DELIV_TEMPFAIL, 0,
						    sess->diag);
	}
	return 0;
}

/* The folders a delivery writes in: made if missing, and writable. */
static int
maildir_probe(struct transport *base, char *diag, size_t len)
{
	struct maildir_transport *t = (struct maildir_transport *)base;
	char newdir[4096];
	int rc = maildir_prepare(t);

	snprintf(newdir, sizeof(newdir), "%s/new", t->path);
	if (rc == 0 && access(newdir, W_OK | X_OK) < 0)
		rc = -errno;
	if (rc < 0)
		snprintf(diag, len, "maildir %s: %s", t->path, strerror(-rc));
	return rc;
}

static void
maildir_destroy(struct transport *base)
{
	struct maildir_transport *t = (struct maildir_transport *)base;

	free(t->path);
	free(t);
}

static int
maildir_create(struct transport **out, const struct conf_transport *cf,
	       char *err, size_t errlen)
{
	struct maildir_transport *t;

	if (cf->path == NULL || cf->path[0] != '/') {
		snprintf(err, errlen,
			 "transport %s: maildir needs an absolute path",
			 cf->name);
		return -EINVAL;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->path = strdup(cf->path)) == NULL) {
		free(t);
		snprintf(err, errlen, "transport %s: out of memory", cf->name);
		return -ENOMEM;
	}
	if (gethostname(t->host, sizeof(t->host) - 1) < 0)
		str_copy(t->host, "localhost", sizeof(t->host));
	for (char *p = t->host; *p; p++)
		if (*p == '/' || *p == ':')
			*p = '_';
	*out = &t->base;
	return 0;
}

const struct transport_ops transport_maildir_ops = {
    .type = "maildir",
    .create = maildir_create,
    .deliver = maildir_deliver,
    .probe = maildir_probe,
    .destroy = maildir_destroy,
};

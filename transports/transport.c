/*
 * transport.c - picks a transport by type and wraps the ops table so that
 * every recipient always leaves deliver() with an outcome.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "spool/util.h"
#include "spool/transport.h"
#include "module.h"
#include "smtp_int.h"
#include "transport_int.h"

/* Built in; the push types are in spoold-push.so, loaded for them. */
static const struct transport_ops *const transport_types[] = {
    &transport_smtp_ops,
    &transport_maildir_ops,
};

/* Whether needle occurs in hay, ignoring ASCII case. */
static int
has_word(const char *hay, const char *needle)
{
	return strcasestr(hay, needle) != NULL;
}

int
transport_reply_is_rate(int code, const char *text)
{
	static const char *const words[] = {"rate", "too many", "too much",
					    "limit"};
	const char *p = text;

	if (code / 100 != 4 || text == NULL)
		return 0;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (has_word(text, words[i]))
			return 1;
	/* "450 4.7.0 ...": a policy refusal, such as a relay's sending
	 * limit; greylisting says so and is left to the retry schedule */
	while (*p >= '0' && *p <= '9')
		p++;
	while (*p == ' ' || *p == '-')
		p++;
	return strncmp(p, "4.7.", 4) == 0 && !has_word(text, "greylist") &&
	       !has_word(text, "graylist");
}

const char *
deliv_status_name(enum deliv_status s)
{
	switch (s) {
	case DELIV_OK:
		return "sent";
	case DELIV_TEMPFAIL:
		return "deferred";
	case DELIV_PERMFAIL:
		return "failed";
	}
	return "unknown";
}

/* The ops of type among types[n], or NULL. */
static const struct transport_ops *
transport_ops_find(const struct transport_ops *const *types, size_t n,
		   const char *type)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(types[i]->type, type) == 0)
			return types[i];
	return NULL;
}

int
transport_create(struct transport **out, const struct conf_transport *cf,
		 char *err, size_t errlen)
{
	const char *type = conf_transport_type_name(cf->type);
	const struct transport_ops *ops;
	const struct module_push *push;
	int rc;

	*out = NULL;
	ops = transport_ops_find(transport_types, ARRAY_SIZE(transport_types),
				 type);
	if (ops == NULL) {
		if ((push = module_push_get(err, errlen)) == NULL)
			return -ENOENT;
		ops = transport_ops_find(push->types, push->ntypes, type);
	}
	if (ops == NULL) {
		snprintf(err, errlen, "transport %s: unknown type", cf->name);
		return -EINVAL;
	}
	rc = ops->create(out, cf, err, errlen);
	if (rc < 0)
		return rc;
	(*out)->ops = ops;
	str_copy((*out)->name, cf->name, sizeof((*out)->name));
	return 0;
}

int
transport_deliver(struct transport *t, struct transport_msg *msgs, size_t n,
		  struct transport_session *sess)
{
	int rc;

	memset(sess, 0, sizeof(*sess));
	for (size_t i = 0; i < n; i++)
		for (size_t r = 0; r < msgs[i].nrcpt; r++) {
			struct transport_rcpt *o = &msgs[i].rcpt[r];

			o->status = DELIV_TEMPFAIL;
			o->code = 0;
			o->reply[0] = '\0';
		}
	rc = t->ops->deliver(t, msgs, n, sess);
	if (rc < 0 && sess->diag[0] == '\0')
		snprintf(sess->diag, sizeof(sess->diag),
			 "local delivery error: %s", strerror(-rc));
	/* A recipient the session never reached carries the reason why. */
	for (size_t i = 0; i < n; i++)
		for (size_t r = 0; r < msgs[i].nrcpt; r++) {
			struct transport_rcpt *o = &msgs[i].rcpt[r];

			if (o->reply[0] == '\0')
				str_copy(o->reply,
					 sess->diag[0] ? sess->diag
						       : "not attempted",
					 sizeof(o->reply));
		}
	return rc;
}

void
transport_msg_settled(struct transport_msg *m)
{
	if (m->settled != NULL)
		m->settled(m, m->settled_arg);
}

int
transport_probe_prepare(struct transport *t, char *diag, size_t len)
{
	diag[0] = '\0';
	return t->ops->probe_prepare != NULL
		   ? t->ops->probe_prepare(t, diag, len)
		   : 0;
}

int
transport_probe(struct transport *t, char *diag, size_t len)
{
	int rc;

	diag[0] = '\0';
	rc = t->ops->probe != NULL ? t->ops->probe(t, diag, len) : 0;
	/* probes run on libuv's pool threads, which are never joined: the
	 * state OpenSSL keeps per thread (its error queue) is freed now,
	 * not left behind at exit */
	OPENSSL_thread_stop();
	return rc;
}

void
transport_destroy(struct transport *t)
{
	if (t != NULL)
		t->ops->destroy(t);
}

int
transport_global_init(char *err, size_t errlen)
{
	/* libcurl pulls in GnuTLS (through librtmp, for rtmp:// URLs, which
	 * spoold never uses), whose constructor would otherwise set itself
	 * up when a module loads: 0.6 MB resident for nothing. Set here,
	 * before threads start: setenv is not safe beside them. */
	if (setenv("GNUTLS_NO_IMPLICIT_INIT", "1", 0) < 0) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return smtp_esmtp_global_init(err, errlen);
}

void
transport_set_reply(struct transport_rcpt *o, enum deliv_status st, int code,
		    const char *reply)
{
	size_t n;

	o->status = st;
	o->code = code;
	str_copy(o->reply, reply != NULL ? reply : "", sizeof(o->reply));
	/* one line for logs and JSON: server replies end in CRLF */
	n = strcspn(o->reply, "\r\n");
	o->reply[n] = '\0';
}

int
transport_crlf(const char *data, size_t len, char **out, size_t *outlen)
{
	size_t extra = 0;
	char *p;

	*out = NULL;
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
			i++;
		else if (data[i] == '\r' || data[i] == '\n')
			extra++;
	}
	if (len > 0 && data[len - 1] != '\n' && data[len - 1] != '\r')
		extra += 2;
	if (extra == 0)
		return 0;
	if ((p = malloc(len + extra)) == NULL)
		return -ENOMEM;
	*out = p;
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n') {
			*p++ = '\r';
			*p++ = '\n';
			i++;
		} else if (data[i] == '\r' || data[i] == '\n') {
			*p++ = '\r';
			*p++ = '\n';
		} else {
			*p++ = data[i];
		}
	}
	if (len > 0 && data[len - 1] != '\n' && data[len - 1] != '\r') {
		*p++ = '\r';
		*p++ = '\n';
	}
	*outlen = (size_t)(p - *out);
	return 0;
}

/* "name (uid N)" of a uid, or "uid N" when it has no name. */
static void
uid_describe(uid_t uid, char *buf, size_t len, char *name, size_t namelen)
{
	struct passwd pw, *res = NULL;
	char pwbuf[1024];

	if (getpwuid_r(uid, &pw, pwbuf, sizeof(pwbuf), &res) == 0 &&
	    res != NULL) {
		snprintf(buf, len, "%s (uid %u)", pw.pw_name, (unsigned)uid);
		str_copy(name, pw.pw_name, namelen);
	} else {
		snprintf(buf, len, "uid %u", (unsigned)uid);
		snprintf(name, namelen, "%u", (unsigned)uid);
	}
}

int
transport_secret_stat_check(const char *what, const char *path,
			    const struct stat *sb, char *err, size_t errlen)
{
	uid_t me = geteuid();
	char found[300], mine[300], name[256], myname[256];

	if (!S_ISREG(sb->st_mode)) {
		snprintf(err, errlen, "%s %s: not a regular file", what, path);
		return -EINVAL;
	}
	if (sb->st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, errlen,
			 "%s %s: readable by group or others (mode %03o); "
			 "chmod 600 it",
			 what, path, (unsigned)(sb->st_mode & 0777));
		return -EPERM;
	}
	if (sb->st_uid == 0 || sb->st_uid == me)
		return 0;
	uid_describe(sb->st_uid, found, sizeof(found), name, sizeof(name));
	uid_describe(me, mine, sizeof(mine), myname, sizeof(myname));
	if (me == 0)
		snprintf(err, errlen,
			 "%s %s: owned by %s, not by root (spoold runs as "
			 "root); chown root %s",
			 what, path, found, path);
	else
		snprintf(err, errlen,
			 "%s %s: owned by %s, not by root or by %s, the user "
			 "spoold runs as; chown %s %s",
			 what, path, found, mine, myname, path);
	return -EPERM;
}

int
transport_secret_check(const char *what, const char *path, char *err,
		       size_t errlen)
{
	struct stat sb;
	int rc;

	/* stat, not lstat: a symlink (a Kubernetes secret) counts by its
	 * target */
	if (stat(path, &sb) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
		return rc;
	}
	return transport_secret_stat_check(what, path, &sb, err, errlen);
}

int
transport_secret_read(const char *path, const char *key, char *buf, size_t len,
		      char *err, size_t errlen)
{
	struct stat sb;
	ssize_t n;
	int fd, rc = 0;

	/* O_NONBLOCK: a FIFO put in its place must not hang a delivery
	 * thread; the checks below refuse it */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s %s: %s", key, path, strerror(errno));
		/* a file given to another user is refused for that, with the
		 * chown that mends it, not with a bare "Permission denied" */
		if (rc == -EACCES && stat(path, &sb) == 0 &&
		    transport_secret_stat_check(key, path, &sb, err, errlen) <
			0)
			return -EPERM;
		return rc;
	}
	/* the type, mode or owner may have changed since start */
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s %s: %s", key, path, strerror(errno));
		close(fd);
		return rc;
	}
	if ((rc = transport_secret_stat_check(key, path, &sb, err, errlen)) <
	    0) {
		close(fd);
		return rc;
	}
	n = read(fd, buf, len - 1);
	if (n < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s %s: %s", key, path, strerror(errno));
	}
	close(fd);
	if (rc < 0)
		return rc;
	buf[n] = '\0';
	/* a file written by echo ends in a newline that is not the token */
	while (n > 0 && strchr("\r\n \t", buf[n - 1]) != NULL)
		buf[--n] = '\0';
	if (n == 0 || (size_t)n >= len - 1 || strpbrk(buf, "\r\n") != NULL) {
		snprintf(err, errlen,
			 "%s %s: empty, over %zu bytes, or more "
			 "than one line",
			 key, path, len - 2);
		explicit_bzero(buf, len);
		return -EINVAL;
	}
	return 0;
}

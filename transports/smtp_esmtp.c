/*
 * smtp_esmtp.c - the smtp transport on libESMTP.
 *
 * One deliver() call is one SMTP session: every message of the batch goes
 * over the same connection (libESMTP pipelines them). libESMTP's own
 * verdict means little (smtp_start_session returns 1 after most failures),
 * so each recipient is judged from the reply codes: MAIL FROM, then its
 * RCPT TO, then the reply to the final dot.
 *
 * libESMTP has no connect timeout and no socket options, and it leaves the
 * last short segment of a message waiting for a delayed ACK (Nagle). Both
 * are fixed below by interposing connect() for the threads that run a
 * session: the socket gets TCP_NODELAY and a send timeout that bounds the
 * connect.
 *
 * libESMTP 1.1 also crashes (it calls the handler of state -1) when the
 * server closes the connection while several pipelined replies are still
 * due: its loop keeps polling, sees the socket readable at EOF, and reads
 * on. poll() is interposed too, so that on a session socket at EOF it
 * fails (ECONNRESET) instead; libESMTP then ends the session as a
 * dropped connection.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libesmtp.h>

#include "spool/util.h"
#include "spool/transport.h"
#include "transport_int.h"

struct smtp_transport {
	struct transport base;
	char *hostport; /* "host:port" for smtp_set_server */
	char *helo;	/* NULL: libESMTP uses the host name */
	char *from;	/* NULL: each message's own sender */
	int64_t connect_timeout;
	int64_t timeout;
};

/* ---- connect() and poll() interposition ------------------------------ */

/* Seconds for connect() on this thread; 0 outside an SMTP session, so
 * other callers (libcurl, the resolver, libuv) are left alone. */
static __thread int64_t session_connect_timeout;
/* The socket of this thread's SMTP session, -1 outside one. */
static __thread int session_fd = -1;

typedef int connect_fn(int, __CONST_SOCKADDR_ARG, socklen_t);
typedef int poll_fn(struct pollfd *, nfds_t, int);
static connect_fn *real_connect;
static poll_fn *real_poll;
static pthread_once_t real_fns_once = PTHREAD_ONCE_INIT;

static void
real_fns_find(void)
{
	real_connect = (connect_fn *)dlsym(RTLD_NEXT, "connect");
	real_poll = (poll_fn *)dlsym(RTLD_NEXT, "poll");
}

static int
sock_is_blocking_tcp(int fd)
{
	int domain = 0, type = 0, fl;
	socklen_t len = sizeof(domain);

	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
		return 0;
	len = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return 0;
	fl = fcntl(fd, F_GETFL);
	return (domain == AF_INET || domain == AF_INET6) &&
	       type == SOCK_STREAM && fl >= 0 && !(fl & O_NONBLOCK);
}

int
connect(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len)
{
	struct timeval tv = {0};
	int one = 1, rc, saved;

	pthread_once(&real_fns_once, real_fns_find);
	if (real_connect == NULL) {
		errno = ENOSYS;
		return -1;
	}
	if (session_connect_timeout <= 0 || !sock_is_blocking_tcp(fd))
		return real_connect(fd, addr, len);
	session_fd = fd;
	/* Small messages must not wait 40 ms for a delayed ACK. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* A blocking connect() gives up after SO_SNDTIMEO (EINPROGRESS). */
	tv.tv_sec = (time_t)session_connect_timeout;
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	rc = real_connect(fd, addr, len);
	saved = errno;
	/* libESMTP bounds its own reads and writes with poll() */
	tv.tv_sec = 0;
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (rc < 0 && (saved == EINPROGRESS || saved == EAGAIN))
		saved = ETIMEDOUT;
	errno = saved;
	return rc;
}

/* 1 if fd is at end of file or broken, with nothing left to read. */
static int
sock_at_eof(int fd)
{
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
			  errno != EINTR);
}

int
poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
	int rc;

	pthread_once(&real_fns_once, real_fns_find);
	if (real_poll == NULL) {
		errno = ENOSYS;
		return -1;
	}
	rc = real_poll(fds, nfds, timeout);
	if (rc <= 0 || session_fd < 0)
		return rc;
	for (nfds_t i = 0; i < nfds; i++)
		if (fds[i].fd == session_fd && (fds[i].revents & POLLIN) &&
		    sock_at_eof(session_fd)) {
			errno = ECONNRESET;
			return -1;
		}
	return rc;
}

/* ---- one session ------------------------------------------------------ */

/* What the message callback reads: the message with CRLF line ends. */
struct smtp_msg_src {
	const char *data;
	size_t len;
	int sent;
};

/* libESMTP calls this with len == NULL to rewind, then until it returns
 * NULL. *ctx is freed by libESMTP, so nothing is kept there. */
static const char *
smtp_msg_read(void **ctx, int *len, void *arg)
{
	struct smtp_msg_src *src = arg;

	(void)ctx;
	if (len == NULL) {
		src->sent = 0;
		return NULL;
	}
	if (src->sent) {
		*len = 0;
		return NULL;
	}
	src->sent = 1;
	*len = (int)src->len;
	return src->data;
}

struct smtp_session_state {
	char event[128]; /* the last event that explains a failure */
};

static void
smtp_event(smtp_session_t session, int event, void *arg, ...)
{
	struct smtp_session_state *st = arg;

	(void)session;
	switch (event) {
	case SMTP_EV_EXTNA_STARTTLS:
		str_copy(st->event, "the server does not offer STARTTLS",
			 sizeof(st->event));
		break;
	case SMTP_EV_INVALID_PEER_CERTIFICATE:
	case SMTP_EV_NO_PEER_CERTIFICATE:
	case SMTP_EV_WRONG_PEER_CERTIFICATE:
		str_copy(st->event, "TLS: server certificate refused",
			 sizeof(st->event));
		break;
	default:
		break;
	}
}

static int
status_class(const smtp_status_t *s)
{
	return s != NULL ? s->code / 100 : 0;
}

/* "250 2.0.0 Ok: queued" from a libESMTP status. */
static void
status_text(char *buf, size_t len, const smtp_status_t *s)
{
	if (s == NULL || s->code == 0) {
		buf[0] = '\0';
		return;
	}
	if (s->text != NULL && s->text[0] != '\0')
		snprintf(buf, len, "%d %s", s->code, s->text);
	else
		snprintf(buf, len, "%d", s->code);
}

/* The reason a session failed before or while talking to the relay. */
static void
session_diag(const struct smtp_transport *t,
	     const struct smtp_session_state *st, char *buf, size_t len)
{
	char why[256];

	if (st->event[0] != '\0') {
		snprintf(buf, len, "%s: %s", t->hostport, st->event);
		return;
	}
	smtp_strerror(smtp_errno(), why, sizeof(why));
	snprintf(buf, len, "%s: %s", t->hostport, why);
}

/* Judges one message's recipients; 1 if the relay itself failed. */
static int
judge_message(smtp_message_t m, smtp_recipient_t *rr, struct transport_msg *tm,
	      const char *diag)
{
	const smtp_status_t *mail = smtp_reverse_path_status(m);
	const smtp_status_t *data = smtp_message_transfer_status(m);
	char reply[QUEUE_REPLY_MAX];
	int relay_failed = 0;

	if (status_class(mail) != 2) {
		/* Nothing was sent. A 4xx, an AUTH demand or no reply at
		 * all is the relay's fault; a 5xx to a sender is only this
		 * message's, and still never fails a recipient. */
		status_text(reply, sizeof(reply), mail);
		if (mail == NULL || mail->code == 0 ||
		    status_class(mail) == 4 || mail->code == 530)
			relay_failed = 1;
		for (size_t r = 0; r < tm->nrcpt; r++)
			transport_set_reply(&tm->rcpt[r], DELIV_TEMPFAIL,
					    mail != NULL ? mail->code : 0,
					    reply[0] ? reply : diag);
		return relay_failed;
	}
	for (size_t r = 0; r < tm->nrcpt; r++) {
		const smtp_status_t *rs = smtp_recipient_status(rr[r]);
		const smtp_status_t *s = rs;
		enum deliv_status st = DELIV_TEMPFAIL;

		if (status_class(rs) == 5) {
			st = DELIV_PERMFAIL;
		} else if (status_class(rs) == 2) {
			s = data;
			if (status_class(data) == 2)
				st = DELIV_OK;
			else if (status_class(data) == 5)
				st = DELIV_PERMFAIL;
			else
				relay_failed = 1;
		} else if (rs == NULL || rs->code == 0) {
			relay_failed = 1;
		}
		status_text(reply, sizeof(reply), s);
		transport_set_reply(&tm->rcpt[r], st, s != NULL ? s->code : 0,
				    reply[0] ? reply : diag);
	}
	return relay_failed;
}

/* Fills one libESMTP message from a queued one. */
static int
add_message(smtp_session_t s, const struct smtp_transport *t,
	    struct transport_msg *tm, struct smtp_msg_src *src,
	    smtp_recipient_t *rr, smtp_message_t *out)
{
	smtp_message_t m = smtp_add_message(s);
	const char *sender = t->from != NULL ? t->from : tm->sender;

	if (m == NULL)
		return -ENOMEM;
	if (!smtp_set_reverse_path(m, sender[0] ? sender : NULL) ||
	    !smtp_set_messagecb(m, smtp_msg_read, src))
		return -ENOMEM;
	for (size_t r = 0; r < tm->nrcpt; r++)
		if ((rr[r] = smtp_add_recipient(m, tm->rcpt[r].address)) ==
		    NULL)
			return -ENOMEM;
	*out = m;
	return 0;
}

static int
session_setup(smtp_session_t s, const struct smtp_transport *t,
	      struct smtp_session_state *st)
{
	static const int stages[] = {Timeout_GREETING, Timeout_ENVELOPE,
				     Timeout_DATA, Timeout_TRANSFER,
				     Timeout_DATA2};
	long ms = (long)(t->timeout * 1000);

	if (!smtp_set_server(s, t->hostport) ||
	    !smtp_set_hostname(s, t->helo) ||
	    !smtp_set_eventcb(s, smtp_event, st))
		return -ENOMEM;
	for (size_t i = 0; i < ARRAY_SIZE(stages); i++)
		if (smtp_set_timeout(
			s, stages[i] | Timeout_OVERRIDE_RFC2822_MINIMUM, ms) <
		    0)
			return -EINVAL;
	return 0;
}

/* Per-message working memory of one session. */
struct smtp_batch {
	struct smtp_msg_src *src;
	smtp_message_t *msg;
	smtp_recipient_t **rcpt;
	char **copies; /* CRLF copies of messages that needed them */
	size_t n;
};

static void
batch_free(struct smtp_batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		if (b->rcpt != NULL)
			free(b->rcpt[i]);
		if (b->copies != NULL)
			free(b->copies[i]);
	}
	free(b->src);
	free(b->msg);
	free(b->rcpt);
	free(b->copies);
}

static int
batch_init(struct smtp_batch *b, struct transport_msg *msgs, size_t n)
{
	b->n = n;
	b->src = calloc(n, sizeof(*b->src));
	b->msg = calloc(n, sizeof(*b->msg));
	b->rcpt = calloc(n, sizeof(*b->rcpt));
	b->copies = calloc(n, sizeof(*b->copies));
	if (b->src == NULL || b->msg == NULL || b->rcpt == NULL ||
	    b->copies == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		size_t len;
		int rc;

		b->rcpt[i] = calloc(msgs[i].nrcpt ? msgs[i].nrcpt : 1,
				    sizeof(**b->rcpt));
		if (b->rcpt[i] == NULL)
			return -ENOMEM;
		/* libESMTP needs CRLF: with bare LF it misreads the header
		 * and leaves lone dots unstuffed. */
		rc = transport_crlf(msgs[i].data, msgs[i].len, &b->copies[i],
				    &len);
		if (rc < 0)
			return rc;
		b->src[i].data = b->copies[i] ? b->copies[i] : msgs[i].data;
		b->src[i].len = b->copies[i] ? len : msgs[i].len;
		if (b->src[i].len > INT_MAX)
			return -EFBIG;
	}
	return 0;
}

static int
smtp_deliver(struct transport *base, struct transport_msg *msgs, size_t n,
	     struct transport_session *sess)
{
	struct smtp_transport *t = (struct smtp_transport *)base;
	struct smtp_session_state st = {0};
	struct smtp_batch b = {0};
	smtp_session_t s = NULL;
	int rc;

	rc = batch_init(&b, msgs, n);
	if (rc < 0)
		goto out;
	if ((s = smtp_create_session()) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = session_setup(s, t, &st)) < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		if ((rc = add_message(s, t, &msgs[i], &b.src[i], b.rcpt[i],
				      &b.msg[i])) < 0)
			goto out;

	session_connect_timeout = t->connect_timeout;
	(void)smtp_start_session(s); /* its verdict means little */
	session_connect_timeout = 0;
	session_fd = -1;

	session_diag(t, &st, sess->diag, sizeof(sess->diag));
	for (size_t i = 0; i < n; i++)
		if (judge_message(b.msg[i], b.rcpt[i], &msgs[i], sess->diag))
			sess->relay_failed = 1;
	if (!sess->relay_failed)
		sess->diag[0] = '\0';
out:
	if (s != NULL)
		smtp_destroy_session(s);
	batch_free(&b);
	if (rc < 0)
		snprintf(sess->diag, sizeof(sess->diag),
			 "cannot set up a session with %s: %s", t->hostport,
			 strerror(-rc));
	return rc;
}

/* ---- life cycle ------------------------------------------------------- */

static void
smtp_destroy(struct transport *base)
{
	struct smtp_transport *t = (struct smtp_transport *)base;

	free(t->hostport);
	free(t->helo);
	free(t->from);
	free(t);
}

static int
smtp_create(struct transport **out, const struct conf_transport *cf, char *err,
	    size_t errlen)
{
	struct smtp_transport *t;
	int rc;

	if (cf->tls != CONF_TLS_NONE || cf->user != NULL) {
		snprintf(err, errlen,
			 "transport %s: TLS and AUTH are not supported by "
			 "this build",
			 cf->name);
		return -ENOTSUP;
	}
	if (cf->password_file != NULL &&
	    (rc = transport_secret_check(cf->password_file, err, errlen)) < 0)
		return rc;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		goto nomem;
	/* an IPv6 literal needs brackets only if it has a colon */
	if (asprintf(&t->hostport, strchr(cf->host, ':') ? "[%s]:%u" : "%s:%u",
		     cf->host, cf->port) < 0) {
		t->hostport = NULL;
		goto nomem;
	}
	if ((cf->helo && (t->helo = strdup(cf->helo)) == NULL) ||
	    (cf->from && (t->from = strdup(cf->from)) == NULL))
		goto nomem;
	t->connect_timeout = cf->connect_timeout;
	t->timeout = cf->timeout;
	*out = &t->base;
	return 0;
nomem:
	if (t != NULL)
		smtp_destroy(&t->base);
	snprintf(err, errlen, "transport %s: out of memory", cf->name);
	return -ENOMEM;
}

int
smtp_global_init(char *err, size_t errlen)
{
	pthread_once(&real_fns_once, real_fns_find);
	if (real_connect == NULL || real_poll == NULL) {
		snprintf(err, errlen,
			 "cannot find the C library's connect() and poll()");
		return -ENOSYS;
	}
	return 0;
}

const struct transport_ops transport_smtp_ops = {
    .type = "smtp",
    .create = smtp_create,
    .deliver = smtp_deliver,
    .destroy = smtp_destroy,
};

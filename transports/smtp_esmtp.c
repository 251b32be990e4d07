/*
 * smtp_esmtp.c - the smtp transport's libESMTP engine: plain SMTP and
 * STARTTLS, with AUTH PLAIN or LOGIN.
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
 *
 * libESMTP's stage timeouts bound each read, not each reply: a relay that
 * trickles a byte every few seconds, or streams "250-" lines forever,
 * would hold a delivery thread for as long as it likes. The wait for a
 * whole reply (from the first poll for it, or its first byte, to its last
 * line) is therefore bounded by the transport's timeout, and its size by
 * SMTP_REPLY_BYTES_MAX: the poll() interposer shortens waits, and the
 * monitor callback, which sees every byte read, cuts the connection.
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

/* <openssl/ssl.h> first: it enables libESMTP's SSL_CTX prototype */
#include <openssl/ssl.h>
#include <auth-client.h>
#include <libesmtp.h>

#include "spool/util.h"
#include "smtp_int.h"
#include "transport_int.h"

/* ---- connect() and poll() interposition ------------------------------ */

/* Seconds for connect() on this thread; 0 outside an SMTP session, so
 * other callers (libcurl, the resolver, libuv) are left alone. */
static __thread int64_t session_connect_timeout;
/* The socket of this thread's SMTP session, -1 outside one. */
static __thread int session_fd = -1;
/* The bound on each reply of this thread's session (limit_ms 0 outside
 * one). */
static __thread struct smtp_reply_watch session_watch;

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

/* 1 if this poll waits for the session socket to become readable. */
static int
polls_session_reply(const struct pollfd *fds, nfds_t nfds)
{
	if (session_fd < 0 || session_watch.limit_ms <= 0)
		return 0;
	for (nfds_t i = 0; i < nfds; i++)
		if (fds[i].fd == session_fd && (fds[i].events & POLLIN))
			return 1;
	return 0;
}

/* Shortens a wait for a reply to what is left of the reply's time; -1
 * once none is left. */
static int
reply_wait_clamp(int timeout)
{
	int64_t left;

	smtp_reply_watch_await(&session_watch);
	left = session_watch.deadline - time_mono_ms();
	if (left <= 0) {
		session_watch.cut = SMTP_REPLY_LATE;
		return -1;
	}
	return timeout < 0 || timeout > left ? (int)left : timeout;
}

int
poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
	int rc, reply_wait;

	pthread_once(&real_fns_once, real_fns_find);
	if (real_poll == NULL) {
		errno = ENOSYS;
		return -1;
	}
	reply_wait = polls_session_reply(fds, nfds);
	if (reply_wait && (timeout = reply_wait_clamp(timeout)) < 0) {
		for (nfds_t i = 0; i < nfds; i++)
			fds[i].revents = 0;
		return 0; /* libESMTP takes it for its own timeout */
	}
	rc = real_poll(fds, nfds, timeout);
	if (rc == 0 && reply_wait && time_mono_ms() >= session_watch.deadline)
		session_watch.cut = SMTP_REPLY_LATE;
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

#define PASSWORD_MAX 1024

struct smtp_session_state {
	const struct smtp_transport *t;
	int in_auth;	   /* the last command was AUTH or its follow-up */
	int authenticated; /* the server answered 235 */
	char password[PASSWORD_MAX];
	char event[QUEUE_REPLY_MAX]; /* the reason the relay failed */
	int mail_sent;		     /* a MAIL FROM has been written */
	/* The first 4xx/5xx before any MAIL FROM (greeting, EHLO, HELO,
	 * STARTTLS): libESMTP turns it into no error, or "dropped
	 * connection" after a 421, which hides what the relay said. */
	char refusal[256];
	/* the session's messages, for the per-message event */
	struct smtp_batch *batch;
	struct transport_msg *msgs;
};

/* What the message callback reads: the message with CRLF line ends. */
struct smtp_msg_src {
	const char *data;
	size_t len;
	int sent;
	struct smtp_session_state *st;
};

/* libESMTP calls this with len == NULL to rewind, then until it returns
 * NULL. *ctx is freed by libESMTP, so nothing is kept there. */
static const char *
smtp_msg_read(void **ctx, int *len, void *arg)
{
	struct smtp_msg_src *src = arg;
	struct smtp_session_state *st = src->st;

	(void)ctx;
	if (len == NULL) {
		src->sent = 0;
		return NULL;
	}
	/* A server that skipped AUTH must not get the message: failing the
	 * read makes libESMTP drop the connection before the final dot. */
	if (st->t->user != NULL && !st->authenticated) {
		if (st->event[0] == '\0')
			snprintf(st->event, sizeof(st->event),
				 "%s: AUTH configured but not performed "
				 "(the server offers no usable mechanism)",
				 st->t->hostport);
		errno = EACCES;
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

static void batch_message_sent(struct smtp_session_state *st, smtp_message_t m);
static void batch_heard(struct smtp_session_state *st, int event, void *what);

static void
smtp_event(smtp_session_t session, int event, void *arg, ...)
{
	struct smtp_session_state *st = arg;
	const char *why = NULL;
	va_list ap;

	(void)session;
	switch (event) {
	case SMTP_EV_MESSAGESENT:
		va_start(ap, arg);
		batch_message_sent(st, va_arg(ap, smtp_message_t));
		va_end(ap);
		return;
	case SMTP_EV_MAILSTATUS:
	case SMTP_EV_RCPTSTATUS:
		va_start(ap, arg);
		(void)va_arg(ap, const char *); /* the mailbox */
		batch_heard(st, event, va_arg(ap, void *));
		va_end(ap);
		return;
	case SMTP_EV_EXTNA_STARTTLS:
		why = "the server does not offer STARTTLS";
		break;
	case SMTP_EV_INVALID_PEER_CERTIFICATE:
	case SMTP_EV_NO_PEER_CERTIFICATE:
	case SMTP_EV_WRONG_PEER_CERTIFICATE:
		/* the int *ok in the arguments stays 0: refused */
		why = "the server certificate is refused";
		break;
	default:
		return;
	}
	snprintf(st->event, sizeof(st->event), "%s: %s", st->t->hostport, why);
}

/*
 * Counts what the server sent against the bound on a reply. libESMTP
 * reads without polling while data is waiting, so a relay streaming
 * continuation lines fast is seen here, never in poll(). Once a reply runs
 * over, the connection is shut down: libESMTP's next reads find it broken
 * (the relay's further bytes are answered with a reset) and it ends the
 * session as a dropped connection.
 */
static void
reply_watch_feed(const char *buf, size_t len)
{
	if (session_fd < 0 || session_watch.limit_ms <= 0)
		return;
	if (smtp_reply_watch_feed(&session_watch, buf, len) != SMTP_REPLY_OK)
		(void)shutdown(session_fd, SHUT_RDWR);
}

/* Keeps the first refusal line of buf read before MAIL FROM. */
static void
refusal_note(struct smtp_session_state *st, const char *buf, size_t len)
{
	const char *p = buf, *end = buf + len;

	if (st->mail_sent || st->refusal[0] != '\0')
		return;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((eol ? eol : end) - p);

		if (n >= 3 && (p[0] == '4' || p[0] == '5')) {
			if (n >= sizeof(st->refusal))
				n = sizeof(st->refusal) - 1;
			memcpy(st->refusal, p, n);
			st->refusal[n] = '\0';
			st->refusal[strcspn(st->refusal, "\r\n")] = '\0';
			return;
		}
		p = eol ? eol + 1 : end;
	}
}

/* Follows the AUTH exchange in the protocol stream (libESMTP reports
 * neither success nor failure). Written data is never kept: it holds the
 * credentials. */
static void
smtp_monitor(const char *buf, int len, int writing, void *arg)
{
	struct smtp_session_state *st = arg;
	char line[256];
	size_t n;

	if (!writing && len > 0) {
		reply_watch_feed(buf, (size_t)len);
		refusal_note(st, buf, (size_t)len);
	}
	if (writing) {
		if (len >= 5 && strncasecmp(buf, "MAIL ", 5) == 0)
			st->mail_sent = 1;
		/* LOGIN's follow-up lines are base64 and stay in_auth */
		if (len >= 5 && strncasecmp(buf, "AUTH ", 5) == 0)
			st->in_auth = 1;
		else if (len >= 5 && (strncasecmp(buf, "MAIL ", 5) == 0 ||
				      strncasecmp(buf, "QUIT", 4) == 0))
			st->in_auth = 0;
		return;
	}
	if (!st->in_auth || st->authenticated || len < 4)
		return;
	if (strncmp(buf, "235", 3) == 0) {
		st->authenticated = 1;
		st->event[0] = '\0';
	} else if ((buf[0] == '4' || buf[0] == '5') && st->event[0] == '\0') {
		/* a reason already noted is ours (an unreadable password
		 * aborts AUTH) and says more than the server's answer */
		n = (size_t)len < sizeof(line) - 1 ? (size_t)len
						   : sizeof(line) - 1;
		memcpy(line, buf, n);
		line[n] = '\0';
		line[strcspn(line, "\r\n")] = '\0';
		snprintf(st->event, sizeof(st->event), "%s: AUTH refused: %s",
			 st->t->hostport, line);
	}
}

/* Hands libESMTP's SASL plugins the user and the password, read from the
 * file now so that a rotated token is used at the next connection. */
static int
smtp_interact(auth_client_request_t req, char **result, int fields, void *arg)
{
	struct smtp_session_state *st = arg;
	char err[QUEUE_REPLY_MAX - 64];

	if (st->password[0] == '\0' &&
	    smtp_password_read(st->t, st->password, sizeof(st->password), err,
			       sizeof(err)) < 0) {
		snprintf(st->event, sizeof(st->event), "%s: %s",
			 st->t->hostport, err);
		return 0;
	}
	for (int i = 0; i < fields; i++) {
		if (req[i].flags & AUTH_USER)
			result[i] = st->t->user;
		else if (req[i].flags & AUTH_PASS)
			result[i] = st->password;
		else
			result[i] = (char *)"";
	}
	return 1;
}

static void
status_reply(struct smtp_reply *r, const smtp_status_t *s)
{
	const char *shown = s != NULL ? s->text : NULL;
	char *text = NULL;

	/* From a server that offers ENHANCEDSTATUSCODES libESMTP moves the
	 * "5.1.1" out of the text; put it back, so that the reply reads as
	 * the server sent it, as it does from the libcurl engine. */
	if (shown != NULL && s->enh_class > 0) {
		if (asprintf(&text, "%d.%d.%d %s", s->enh_class, s->enh_subject,
			     s->enh_detail, shown) < 0)
			text = NULL;
		else
			shown = text;
	}
	smtp_reply_set(r, s != NULL ? s->code : 0, shown);
	free(text);
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
	      struct smtp_session_state *st, auth_context_t *auth)
{
	static const int stages[] = {Timeout_GREETING, Timeout_ENVELOPE,
				     Timeout_DATA, Timeout_TRANSFER,
				     Timeout_DATA2};
	long ms = (long)(t->timeout * 1000);

	if (!smtp_set_server(s, t->hostport) ||
	    !smtp_set_hostname(s, t->helo) ||
	    !smtp_set_eventcb(s, smtp_event, st) ||
	    !smtp_set_monitorcb(s, smtp_monitor, st, 0))
		return -ENOMEM;
	for (size_t i = 0; i < ARRAY_SIZE(stages); i++)
		if (smtp_set_timeout(
			s, stages[i] | Timeout_OVERRIDE_RFC2822_MINIMUM, ms) <
		    0)
			return -EINVAL;
	/* Required, never "if offered": no plaintext fallback. */
	if (t->tls == CONF_TLS_STARTTLS &&
	    (!smtp_starttls_enable(s, Starttls_REQUIRED) ||
	     !smtp_starttls_set_ctx(s, t->ssl_ctx)))
		return -EINVAL;
	if (t->user == NULL)
		return 0;
	if ((*auth = auth_create_context()) == NULL)
		return -ENOMEM;
	/* without the PLAIN flag libESMTP skips PLAIN and LOGIN silently */
	if (!auth_set_mechanism_flags(*auth, AUTH_PLUGIN_PLAIN, 0) ||
	    !auth_set_interact_cb(*auth, smtp_interact, st) ||
	    !smtp_auth_set_context(s, *auth))
		return -EINVAL;
	return 0;
}

/* Per-message working memory of one session. */
struct smtp_batch {
	struct smtp_msg_src *src;
	smtp_message_t *msg;
	smtp_recipient_t **rcpt;
	struct smtp_result *res;
	char **copies; /* CRLF copies of messages that needed them */
	/* Which replies libESMTP reported through an event, as it does only
	 * once it read the whole reply: a reply cut off keeps the code of its
	 * first line ("250-...") in the status, which must not count. */
	struct batch_heard {
		int mail, data;
		unsigned char *rcpt;
	} * heard;
	size_t n;
};

static void
batch_free(struct smtp_batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		if (b->rcpt != NULL)
			free(b->rcpt[i]);
		if (b->res != NULL)
			free(b->res[i].rcpt);
		if (b->copies != NULL)
			free(b->copies[i]);
		if (b->heard != NULL)
			free(b->heard[i].rcpt);
	}
	free(b->src);
	free(b->msg);
	free(b->rcpt);
	free(b->res);
	free(b->copies);
	free(b->heard);
}

static int
batch_init(struct smtp_batch *b, struct transport_msg *msgs, size_t n,
	   struct smtp_session_state *st)
{
	b->n = n;
	b->src = calloc(n, sizeof(*b->src));
	b->msg = calloc(n, sizeof(*b->msg));
	b->rcpt = calloc(n, sizeof(*b->rcpt));
	b->res = calloc(n, sizeof(*b->res));
	b->copies = calloc(n, sizeof(*b->copies));
	b->heard = calloc(n, sizeof(*b->heard));
	if (b->src == NULL || b->msg == NULL || b->rcpt == NULL ||
	    b->res == NULL || b->copies == NULL || b->heard == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		size_t len, nr = msgs[i].nrcpt ? msgs[i].nrcpt : 1;
		int rc;

		b->rcpt[i] = calloc(nr, sizeof(**b->rcpt));
		b->res[i].rcpt = calloc(nr, sizeof(*b->res[i].rcpt));
		b->heard[i].rcpt = calloc(nr, sizeof(*b->heard[i].rcpt));
		if (b->rcpt[i] == NULL || b->res[i].rcpt == NULL ||
		    b->heard[i].rcpt == NULL)
			return -ENOMEM;
		/* libESMTP needs CRLF: with bare LF it misreads the header
		 * and leaves lone dots unstuffed. */
		rc = transport_crlf(msgs[i].data, msgs[i].len, &b->copies[i],
				    &len);
		if (rc < 0)
			return rc;
		b->src[i].data = b->copies[i] ? b->copies[i] : msgs[i].data;
		b->src[i].len = b->copies[i] ? len : msgs[i].len;
		b->src[i].st = st;
		if (b->src[i].len > INT_MAX)
			return -EFBIG;
	}
	return 0;
}

/* Reads libESMTP's statuses of message i into the engine-neutral result;
 * a reply never heard in full reads as no reply. */
static void
batch_collect_one(struct smtp_batch *b, struct transport_msg *msgs, size_t i)
{
	const struct batch_heard *h = &b->heard[i];

	status_reply(&b->res[i].mail,
		     h->mail ? smtp_reverse_path_status(b->msg[i]) : NULL);
	status_reply(&b->res[i].data,
		     h->data ? smtp_message_transfer_status(b->msg[i]) : NULL);
	for (size_t r = 0; r < msgs[i].nrcpt; r++)
		status_reply(&b->res[i].rcpt[r],
			     h->rcpt[r] ? smtp_recipient_status(b->rcpt[i][r])
					: NULL);
}

/* libESMTP reported the reply to a MAIL (what: the message) or a RCPT
 * (what: the recipient). */
static void
batch_heard(struct smtp_session_state *st, int event, void *what)
{
	struct smtp_batch *b = st->batch;

	for (size_t i = 0; b != NULL && i < b->n; i++) {
		if (event == SMTP_EV_MAILSTATUS && what == (void *)b->msg[i]) {
			b->heard[i].mail = 1;
			return;
		}
		for (size_t r = 0;
		     event == SMTP_EV_RCPTSTATUS && r < st->msgs[i].nrcpt; r++)
			if (what == (void *)b->rcpt[i][r]) {
				b->heard[i].rcpt[r] = 1;
				return;
			}
	}
}

static void
batch_collect(struct smtp_batch *b, struct transport_msg *msgs)
{
	for (size_t i = 0; i < b->n; i++)
		batch_collect_one(b, msgs, i);
}

/* The relay answered a message's data: its MAIL and RCPT replies are in
 * too (they come before), so its outcome is known now. The judgement is
 * made again, the same, when the session ends. */
static void
batch_message_sent(struct smtp_session_state *st, smtp_message_t m)
{
	struct smtp_batch *b = st->batch;

	for (size_t i = 0; b != NULL && i < b->n; i++) {
		if (b->msg[i] != m)
			continue;
		b->heard[i].data = 1;
		batch_collect_one(b, st->msgs, i);
		(void)smtp_judge(&b->res[i], &st->msgs[i], "");
		transport_msg_settled(&st->msgs[i]);
		return;
	}
}

int
smtp_esmtp_deliver(struct smtp_transport *t, struct transport_msg *msgs,
		   size_t n, struct transport_session *sess)
{
	struct smtp_session_state st = {.t = t};
	struct smtp_batch b = {0};
	auth_context_t auth = NULL;
	smtp_session_t s = NULL;
	const char *refusal;
	char why[256];
	int rc;

	rc = batch_init(&b, msgs, n, &st);
	if (rc < 0)
		goto out;
	st.batch = &b;
	st.msgs = msgs;
	if ((s = smtp_create_session()) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = session_setup(s, t, &st, &auth)) < 0)
		goto out;
	for (size_t i = 0; i < n; i++)
		if ((rc = add_message(s, t, &msgs[i], &b.src[i], b.rcpt[i],
				      &b.msg[i])) < 0)
			goto out;

	session_connect_timeout = t->connect_timeout;
	smtp_reply_watch_init(&session_watch, t->timeout * 1000);
	smtp_tls_expect_host(t->host);
	smtp_tls_error_clear();
	(void)smtp_start_session(s); /* its verdict means little */
	smtp_tls_expect_host(NULL);
	session_connect_timeout = 0;
	session_fd = -1; /* the interposers let other callers be */

	/* the most specific reason first; smtp_errno() is not reset by a
	 * session, so the relay's own words beat it */
	batch_collect(&b, msgs);
	refusal = smtp_batch_refusal(b.res, n);
	smtp_strerror(smtp_errno(), why, sizeof(why));
	if (smtp_tls_error()[0] != '\0')
		snprintf(sess->diag, sizeof(sess->diag), "%s: TLS: %s",
			 t->hostport, smtp_tls_error());
	else if (st.event[0] != '\0')
		str_copy(sess->diag, st.event, sizeof(sess->diag));
	else if (session_watch.cut != SMTP_REPLY_OK)
		smtp_reply_watch_diag(&session_watch, t->hostport, sess->diag,
				      sizeof(sess->diag));
	else if (st.refusal[0] != '\0')
		snprintf(sess->diag, sizeof(sess->diag), "%s: refused: %s",
			 t->hostport, st.refusal);
	else if (refusal != NULL)
		snprintf(sess->diag, sizeof(sess->diag), "%s: refused: %s",
			 t->hostport, refusal);
	else
		snprintf(sess->diag, sizeof(sess->diag), "%s: %s", t->hostport,
			 why);
	for (size_t i = 0; i < n; i++)
		smtp_session_judge(sess,
				   smtp_judge(&b.res[i], &msgs[i], sess->diag));
	if (!sess->relay_failed && !sess->rate_limited)
		sess->diag[0] = '\0';
out:
	if (s != NULL)
		smtp_destroy_session(s);
	if (auth != NULL)
		auth_destroy_context(auth);
	explicit_bzero(st.password, sizeof(st.password));
	batch_free(&b);
	if (rc < 0)
		snprintf(sess->diag, sizeof(sess->diag),
			 "cannot set up a session with %s: %s", t->hostport,
			 strerror(-rc));
	return rc;
}

int
smtp_esmtp_global_init(char *err, size_t errlen)
{
	pthread_once(&real_fns_once, real_fns_find);
	if (real_connect == NULL || real_poll == NULL) {
		snprintf(err, errlen,
			 "cannot find the C library's connect() and poll()");
		return -ENOSYS;
	}
	auth_client_init();
	return 0;
}

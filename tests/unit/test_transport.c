/*
 * test_transport.c - the smtp and maildir transports.
 *
 * The smtp cases talk to a scripted SMTP server on 127.0.0.1 run by a
 * thread of this test. It exists for what no real server does on demand:
 * rejecting chosen recipients, going silent after the greeting, or
 * hanging up while pipelined replies are due. Every socket is loopback,
 * every wait is bounded.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "spool/transport.h"
#include "spool/util.h"

/* ---- the scripted server -------------------------------------------- */

struct script {
	int silent;	    /* accept, then never greet */
	int drop_at_rcpt;   /* hang up when the first RCPT arrives */
	const char *reject; /* "addr=reply" pairs separated by ';' */
	const char *data_reply;
	const char *mail_reply; /* instead of 250 to MAIL */
	const char *auth_plain; /* offer AUTH PLAIN, expect this response */
	/* filled by the server */
	int connections;
	int messages;
	char data[65536]; /* DATA bytes of the last message, as sent */
	size_t data_len;
};

struct server {
	int fd;
	unsigned port;
	pthread_t thread;
	struct script *sc;
};

static int
read_line(int fd, char *buf, size_t len)
{
	size_t n = 0;

	while (n + 1 < len) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		char c;

		if (poll(&p, 1, 10000) <= 0 || read(fd, &c, 1) != 1)
			return -1;
		buf[n++] = c;
		if (c == '\n')
			break;
	}
	buf[n] = '\0';
	return (int)n;
}

static void
say(int fd, const char *s)
{
	(void)!write(fd, s, strlen(s));
}

/* The reply for RCPT TO:<addr> from the script's reject list. */
static void
rcpt_reply(const struct script *sc, const char *line, char *out, size_t len)
{
	const char *p = sc->reject;

	snprintf(out, len, "250 2.1.5 Ok\r\n");
	while (p != NULL && *p) {
		const char *eq = strchr(p, '='), *end = strchr(p, ';');
		char addr[128];

		if (eq == NULL)
			break;
		if (end == NULL)
			end = p + strlen(p);
		snprintf(addr, sizeof(addr), "<%.*s>", (int)(eq - p), p);
		if (strstr(line, addr) != NULL) {
			snprintf(out, len, "%.*s\r\n", (int)(end - eq - 1),
				 eq + 1);
			return;
		}
		p = *end ? end + 1 : end;
	}
}

/* AUTH PLAIN with the response on the line or after a 334. */
static void
auth_plain(const struct script *sc, int c, char *line, int *authenticated)
{
	char *resp = line + 10;

	resp += strspn(resp, " ");
	if (*resp == '\r' || *resp == '\n') {
		say(c, "334 \r\n");
		if (read_line(c, line, 2048) <= 0)
			return;
		resp = line;
	}
	resp[strcspn(resp, "\r\n")] = '\0';
	*authenticated = strcmp(resp, sc->auth_plain) == 0;
	say(c, *authenticated ? "235 2.7.0 Authentication successful\r\n"
			      : "535 5.7.8 Authentication failed\r\n");
}

static void
serve_one(struct script *sc, int c)
{
	char line[2048], reply[256];
	int authenticated = 0;

	sc->connections++;
	if (sc->silent) {
		/* the client must give up on its own */
		read_line(c, line, sizeof(line));
		return;
	}
	say(c, "220 test ESMTP\r\n");
	while (read_line(c, line, sizeof(line)) > 0) {
		if (strncasecmp(line, "EHLO", 4) == 0) {
			say(c, sc->auth_plain ? "250-test\r\n250-AUTH PLAIN\r\n"
					      : "250-test\r\n");
			say(c, "250-PIPELINING\r\n250 8BITMIME\r\n");
		} else if (strncasecmp(line, "AUTH PLAIN", 10) == 0) {
			auth_plain(sc, c, line, &authenticated);
		} else if (strncasecmp(line, "MAIL", 4) == 0 &&
			   sc->mail_reply != NULL) {
			snprintf(reply, sizeof(reply), "%s\r\n",
				 sc->mail_reply);
			say(c, reply);
		} else if (strncasecmp(line, "MAIL", 4) == 0) {
			say(c, sc->auth_plain && !authenticated
				   ? "530 5.7.0 Authentication required\r\n"
				   : "250 2.1.0 Ok\r\n");
		} else if (strncasecmp(line, "RCPT", 4) == 0) {
			if (sc->drop_at_rcpt)
				return;
			rcpt_reply(sc, line, reply, sizeof(reply));
			say(c, reply);
		} else if (strncasecmp(line, "DATA", 4) == 0) {
			say(c, "354 go ahead\r\n");
			sc->data_len = 0;
			for (;;) {
				size_t n;

				if (read_line(c, line, sizeof(line)) <= 0)
					return; /* no dot: no message */
				if (strcmp(line, ".\r\n") == 0)
					break;
				n = strlen(line);

				if (sc->data_len + n < sizeof(sc->data)) {
					memcpy(sc->data + sc->data_len, line,
					       n);
					sc->data_len += n;
				}
			}
			sc->messages++;
			snprintf(reply, sizeof(reply), "%s\r\n",
				 sc->data_reply ? sc->data_reply
						: "250 2.0.0 Ok: queued");
			say(c, reply);
		} else if (strncasecmp(line, "RSET", 4) == 0) {
			say(c, "250 Ok\r\n");
		} else if (strncasecmp(line, "QUIT", 4) == 0) {
			say(c, "221 Bye\r\n");
			return;
		} else {
			say(c, "502 5.5.2 Error: command not recognized\r\n");
		}
	}
}

static void *
server_main(void *arg)
{
	struct server *sv = arg;

	for (;;) {
		struct pollfd p = {.fd = sv->fd, .events = POLLIN};
		int c;

		if (poll(&p, 1, 15000) <= 0)
			return NULL;
		if ((c = accept(sv->fd, NULL, NULL)) < 0)
			return NULL;
		serve_one(sv->sc, c);
		shutdown(c, SHUT_RDWR);
		close(c);
	}
}

static int
listen_loopback(unsigned *port, int backlog)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, backlog), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static void
server_start(struct server *sv, struct script *sc)
{
	sv->sc = sc;
	sv->fd = listen_loopback(&sv->port, 8);
	assert_int_equal(pthread_create(&sv->thread, NULL, server_main, sv), 0);
}

static void
server_stop(struct server *sv)
{
	/* wakes the accept poll at once */
	shutdown(sv->fd, SHUT_RDWR);
	pthread_join(sv->thread, NULL);
	close(sv->fd);
}

/* ---- helpers ---------------------------------------------------------- */

/* When set, transports authenticate as test_user with this file. */
static const char *test_password_file;
static const char test_user[] = "no-reply@example.org";

static struct transport *
smtp_transport(unsigned port, int64_t timeout)
{
	struct conf_transport cf = {0};
	struct transport *t = NULL;
	char err[256];

	str_copy(cf.name, "test", sizeof(cf.name));
	cf.type = CONF_TRANSPORT_SMTP;
	cf.host = "127.0.0.1";
	cf.port = port;
	cf.tls = CONF_TLS_NONE;
	cf.connect_timeout = timeout;
	cf.timeout = timeout;
	cf.helo = "client.test";
	if (test_password_file != NULL) {
		cf.user = (char *)test_user;
		cf.password_file = (char *)test_password_file;
	}
	if (transport_create(&t, &cf, err, sizeof(err)) < 0)
		fail_msg("transport_create: %s", err);
	return t;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char plain_msg[] = "From: a@example.org\r\n"
				"To: x@example.org\r\n"
				"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
				"Message-ID: <t1@example.org>\r\n"
				"Subject: test\r\n"
				"\r\n"
				"body\r\n";

static void
msg_init(struct transport_msg *m, struct transport_rcpt *r, size_t n,
	 const char *const *addr, const char *data, size_t len)
{
	memset(m, 0, sizeof(*m));
	memset(r, 0, n * sizeof(*r));
	for (size_t i = 0; i < n; i++)
		r[i].address = addr[i];
	m->id = "0661066224498c6d2495c974";
	m->sender = "a@example.org";
	m->rcpt = r;
	m->nrcpt = n;
	m->data = data;
	m->len = len;
}

/* Delivers n messages of nrcpt recipients each (to[], data) to a scripted
 * server in one session; returns how long it took. */
static double
deliver_scripted(struct script *sc, int64_t timeout, struct transport_msg *m,
		 struct transport_rcpt *r, size_t n, const char *const *to,
		 size_t nrcpt, const char *data, size_t len,
		 struct transport_session *sess)
{
	struct server sv;
	struct transport *t;
	double t0;

	server_start(&sv, sc);
	t = smtp_transport(sv.port, timeout);
	for (size_t i = 0; i < n; i++)
		msg_init(&m[i], &r[i * nrcpt], nrcpt, to, data, len);
	t0 = now_s();
	assert_int_equal(transport_deliver(t, m, n, sess), 0);
	t0 = now_s() - t0;
	transport_destroy(t);
	server_stop(&sv);
	return t0;
}

/* ---- smtp ------------------------------------------------------------- */

/* Each recipient gets its own verdict: 2xx sent, 4xx deferred, 5xx failed;
 * the relay itself did not fail. */
static void
smtp_per_recipient_outcomes(void **state)
{
	static const char *const to[] = {"ok@example.org", "temp@example.org",
					 "perm@example.org"};
	struct script sc = {.reject = "temp@example.org=450 4.2.0 busy;"
				      "perm@example.org=550 5.1.1 no such "
				      "user"};
	struct transport_rcpt r[3];
	struct transport_msg m;
	struct transport_session sess;

	(void)state;
	deliver_scripted(&sc, 5, &m, r, 1, to, 3, plain_msg,
			 sizeof(plain_msg) - 1, &sess);
	assert_false(sess.relay_failed);
	assert_int_equal(r[0].status, DELIV_OK);
	assert_string_equal(r[0].reply, "250 2.0.0 Ok: queued");
	assert_int_equal(r[1].status, DELIV_TEMPFAIL);
	assert_int_equal(r[1].code, 450);
	assert_string_equal(r[1].reply, "450 4.2.0 busy");
	assert_int_equal(r[2].status, DELIV_PERMFAIL);
	assert_int_equal(r[2].code, 550);
}

/* A 5xx after the dot fails every recipient that RCPT accepted. */
static void
smtp_data_rejected(void **state)
{
	static const char *const to[] = {"x@example.org"};
	struct script sc = {.data_reply = "554 5.6.0 message refused"};
	struct transport_rcpt r[1];
	struct transport_msg m;
	struct transport_session sess;

	(void)state;
	deliver_scripted(&sc, 5, &m, r, 1, to, 1, plain_msg,
			 sizeof(plain_msg) - 1, &sess);
	assert_int_equal(r[0].status, DELIV_PERMFAIL);
	assert_string_equal(r[0].reply, "554 5.6.0 message refused");
}

/* A relay's refusal for its rate, to MAIL or to the data, is not a
 * failure of the relay: the session says rate_limited, every recipient
 * waits with the relay's words; any other 4xx to MAIL still is one. */
static void
smtp_refused_for_rate(void **state)
{
	static const char *const to[] = {"x@example.org", "y@example.org"};
	static const struct {
		const char *mail, *data, *reply;
		int rate;
	} t[] = {
	    {"450 4.7.0 rate limit exceeded", NULL,
	     "450 4.7.0 rate limit exceeded", 1},
	    {NULL, "451 4.7.1 Ratelimit exceeded",
	     "451 4.7.1 Ratelimit exceeded", 1},
	    {"451 4.3.0 local error", NULL, NULL, 0},
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		struct script sc = {.mail_reply = t[i].mail,
				    .data_reply = t[i].data};
		struct transport_rcpt r[2][2];
		struct transport_msg m[2];
		struct transport_session sess;

		deliver_scripted(&sc, 5, m, &r[0][0], 2, to, 2, plain_msg,
				 sizeof(plain_msg) - 1, &sess);
		assert_int_equal(sess.rate_limited, t[i].rate);
		assert_int_equal(sess.relay_failed, !t[i].rate);
		for (int j = 0; j < 2; j++)
			for (int k = 0; k < 2; k++) {
				assert_int_equal(r[j][k].status,
						 DELIV_TEMPFAIL);
				if (t[i].reply != NULL)
					assert_string_equal(r[j][k].reply,
							    t[i].reply);
			}
	}
}

/* Bare LF becomes CRLF on the wire, a lone dot is stuffed, and a message
 * with its own Date, From and Message-ID arrives unchanged. */
static void
smtp_bytes_on_the_wire(void **state)
{
	static const char *const to[] = {"x@example.org"};
	static const char lf_msg[] = "From: a@example.org\n"
				     "Date: Tue, 24 Nov 2026 10:00:00 +0000\n"
				     "Message-ID: <t2@example.org>\n"
				     "Subject: dots\n"
				     "\n"
				     "line one\n"
				     ".\n"
				     "..two dots\n"
				     "last line without end";
	static const char want[] = "From: a@example.org\r\n"
				   "Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
				   "Message-ID: <t2@example.org>\r\n"
				   "Subject: dots\r\n"
				   "\r\n"
				   "line one\r\n"
				   "..\r\n"
				   "...two dots\r\n"
				   "last line without end\r\n";
	struct script sc = {0};
	struct transport_rcpt r[1];
	struct transport_msg m;
	struct transport_session sess;

	(void)state;
	deliver_scripted(&sc, 5, &m, r, 1, to, 1, lf_msg, sizeof(lf_msg) - 1,
			 &sess);
	assert_int_equal(r[0].status, DELIV_OK);
	assert_int_equal(sc.data_len, sizeof(want) - 1);
	assert_memory_equal(sc.data, want, sizeof(want) - 1);
}

/* Several messages share one connection. */
static void
smtp_batch_one_session(void **state)
{
	static const char *const to[] = {"x@example.org", "y@example.org"};
	struct script sc = {0};
	struct transport_rcpt r[3][2];
	struct transport_msg m[3];
	struct transport_session sess;

	(void)state;
	deliver_scripted(&sc, 5, m, &r[0][0], 3, to, 2, plain_msg,
			 sizeof(plain_msg) - 1, &sess);
	for (int i = 0; i < 3; i++)
		for (int j = 0; j < 2; j++)
			assert_int_equal(r[i][j].status, DELIV_OK);
	assert_int_equal(sc.connections, 1);
	assert_int_equal(sc.messages, 3);
}

/* The server hangs up while pipelined RCPT replies are due: the session
 * ends as a relay failure (libESMTP alone would crash here). */
static void
smtp_drop_while_pipelining(void **state)
{
	static const char *const to[] = {"x@example.org", "y@example.org",
					 "z@example.org"};
	struct script sc = {.drop_at_rcpt = 1};
	struct transport_rcpt r[2][3];
	struct transport_msg m[2];
	struct transport_session sess;

	(void)state;
	deliver_scripted(&sc, 5, m, &r[0][0], 2, to, 3, plain_msg,
			 sizeof(plain_msg) - 1, &sess);
	assert_true(sess.relay_failed);
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 3; j++) {
			assert_int_equal(r[i][j].status, DELIV_TEMPFAIL);
			assert_non_null(strstr(r[i][j].reply, "dropped"));
		}
}

/* A server that accepts and never greets costs one stage timeout. */
static void
smtp_greeting_timeout(void **state)
{
	static const char *const to[] = {"x@example.org"};
	struct script sc = {.silent = 1};
	struct transport_rcpt r[1];
	struct transport_msg m;
	struct transport_session sess;
	double took;

	(void)state;
	took = deliver_scripted(&sc, 1, &m, r, 1, to, 1, plain_msg,
				sizeof(plain_msg) - 1, &sess);
	assert_true(sess.relay_failed);
	assert_int_equal(r[0].status, DELIV_TEMPFAIL);
	/* bounded by the 1 s stage timeout, generously */
	assert_true(took < 8.0);
}

/* A listener whose backlog is full drops SYNs, as a blackholed host
 * does: connect() must give up after connect_timeout. */
static void
smtp_connect_timeout(void **state)
{
	static const char *const to[] = {"x@example.org"};
	struct transport_rcpt r[1];
	struct transport_msg m;
	struct transport_session sess;
	struct transport *t;
	unsigned port;
	int lfd = listen_loopback(&port, 0), filler[4];
	double t0, took;

	(void)state;
	/* fill the accept queue so that further SYNs go unanswered */
	for (size_t i = 0; i < ARRAY_SIZE(filler); i++) {
		struct sockaddr_in sa = {.sin_family = AF_INET,
					 .sin_port = htons((uint16_t)port),
					 .sin_addr.s_addr =
					     htonl(INADDR_LOOPBACK)};

		filler[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		(void)connect(filler[i], (struct sockaddr *)&sa, sizeof(sa));
	}
	usleep(100000);
	t = smtp_transport(port, 1);
	msg_init(&m, r, 1, to, plain_msg, sizeof(plain_msg) - 1);
	t0 = now_s();
	assert_int_equal(transport_deliver(t, &m, 1, &sess), 0);
	took = now_s() - t0;
	assert_true(sess.relay_failed);
	assert_int_equal(r[0].status, DELIV_TEMPFAIL);
	/* a timeout, not a fast refusal: it waited connect_timeout (1 s) */
	if (took < 0.95 || took >= 8.0)
		fail_msg("connect gave up after %.3f s, want 1 s: %s", took,
			 r[0].reply);
	assert_non_null(strcasestr(r[0].reply, "timed out"));
	transport_destroy(t);
	for (size_t i = 0; i < ARRAY_SIZE(filler); i++)
		close(filler[i]);
	close(lfd);
}

/* Nobody listens: a relay failure that names the cause. */
static void
smtp_connection_refused(void **state)
{
	static const char *const to[] = {"x@example.org"};
	struct transport_rcpt r[1];
	struct transport_msg m;
	struct transport_session sess;
	struct transport *t;
	unsigned port;
	int fd = listen_loopback(&port, 1);

	(void)state;
	close(fd); /* the port is now free and refuses */
	t = smtp_transport(port, 2);
	msg_init(&m, r, 1, to, plain_msg, sizeof(plain_msg) - 1);
	assert_int_equal(transport_deliver(t, &m, 1, &sess), 0);
	assert_true(sess.relay_failed);
	assert_int_equal(r[0].status, DELIV_TEMPFAIL);
	assert_non_null(strstr(r[0].reply, "refused"));
	transport_destroy(t);
}

/* A secret readable by others is refused when the transport is built. */
static void
smtp_secret_mode_refused(void **state)
{
	char path[] = "/tmp/test_transport.secret.XXXXXX", err[256];
	struct conf_transport cf = {0};
	struct transport *t = NULL;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(fchmod(fd, 0644), 0);
	close(fd);
	str_copy(cf.name, "mailu", sizeof(cf.name));
	cf.type = CONF_TRANSPORT_SMTP;
	cf.host = "127.0.0.1";
	cf.port = 25;
	cf.user = (char *)test_user;
	cf.password_file = path;
	assert_int_equal(transport_create(&t, &cf, err, sizeof(err)), -EPERM);
	assert_null(t);
	assert_non_null(strstr(err, "readable by group or others"));
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(transport_create(&t, &cf, err, sizeof(err)), 0);
	transport_destroy(t);
	unlink(path);
}

/* A secret owned by another user than root and this process's own is
 * refused, its target's owner counting through a symlink; the line says
 * who owns it and the chown that fixes it. */
static void
smtp_secret_owner_refused(void **state)
{
	char path[] = "/tmp/test_transport.secret.XXXXXX", err[512];
	char link[sizeof(path) + 8], want[128];
	struct conf_transport cf = {0};
	struct transport *t = NULL;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	snprintf(link, sizeof(link), "%s.link", path);
	assert_int_equal(symlink(path, link), 0);
	str_copy(cf.name, "mailu", sizeof(cf.name));
	cf.type = CONF_TRANSPORT_SMTP;
	cf.host = "127.0.0.1";
	cf.port = 25;
	cf.tls = CONF_TLS_STARTTLS;
	cf.user = (char *)test_user;
	/* this process's own file (root's when the tests run as root) */
	cf.password_file = path;
	assert_int_equal(transport_create(&t, &cf, err, sizeof(err)), 0);
	transport_destroy(t);
	if (geteuid() == 0) {
		/* given away: to nobody's uid, named or not */
		assert_int_equal(chown(path, 65534, (gid_t)-1), 0);
		for (int i = 0; i < 2; i++) {
			cf.password_file = i == 0 ? path : link;
			t = NULL;
			assert_int_equal(
			    transport_create(&t, &cf, err, sizeof(err)),
			    -EPERM);
			assert_null(t);
			if (strstr(err, "uid 65534), not by root") == NULL &&
			    strstr(err, "uid 65534, not by root") == NULL)
				fail_msg("%s", err);
			snprintf(want, sizeof(want), "; chown root %s",
				 cf.password_file);
			if (strstr(err, want) == NULL)
				fail_msg("%s", err);
		}
	}
	unlink(link);
	unlink(path);
}

/* ---- AUTH -------------------------------------------------------------- */

/* What AUTH PLAIN sends for test_user and token. */
static void
plain_response(const char *token, char *out)
{
	unsigned char raw[256];
	size_t ul = strlen(test_user), tl = strlen(token);

	raw[0] = '\0';
	memcpy(raw + 1, test_user, ul);
	raw[1 + ul] = '\0';
	memcpy(raw + 2 + ul, token, tl);
	EVP_EncodeBlock((unsigned char *)out, raw, (int)(2 + ul + tl));
}

static void
write_token(const char *path, const char *token)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fprintf(f, "%s\n", token);
	fclose(f);
	assert_int_equal(chmod(path, 0600), 0);
}

/* The token is read at each connection: a rotated one works at once. */
static void
smtp_auth_token_rotation(void **state)
{
	static const char *const to[] = {"x@example.org"};
	char path[] = "/tmp/test_transport.token.XXXXXX", want[256];
	struct script sc = {.auth_plain = want};
	struct transport_rcpt r[1];
	struct transport_msg m;
	struct transport_session sess;

	(void)state;
	close(mkstemp(path));
	test_password_file = path;
	write_token(path, "first-token");
	plain_response("first-token", want);
	deliver_scripted(&sc, 5, &m, r, 1, to, 1, plain_msg,
			 sizeof(plain_msg) - 1, &sess);
	assert_false(sess.relay_failed);
	assert_int_equal(r[0].status, DELIV_OK);
	write_token(path, "second-token");
	plain_response("second-token", want);
	deliver_scripted(&sc, 5, &m, r, 1, to, 1, plain_msg,
			 sizeof(plain_msg) - 1, &sess);
	assert_int_equal(r[0].status, DELIV_OK);
	assert_int_equal(sc.messages, 2);
	test_password_file = NULL;
	unlink(path);
}

/* A refused token fails the relay, never the message. */
static void
smtp_auth_refused(void **state)
{
	static const char *const to[] = {"x@example.org"};
	char path[] = "/tmp/test_transport.token.XXXXXX", want[256];
	struct script sc = {.auth_plain = want};
	struct transport_rcpt r[1];
	struct transport_msg m;
	struct transport_session sess;

	(void)state;
	close(mkstemp(path));
	test_password_file = path;
	write_token(path, "stale-token");
	plain_response("current-token", want);
	deliver_scripted(&sc, 5, &m, r, 1, to, 1, plain_msg,
			 sizeof(plain_msg) - 1, &sess);
	assert_true(sess.relay_failed);
	assert_int_equal(r[0].status, DELIV_TEMPFAIL);
	assert_non_null(strstr(r[0].reply, "AUTH refused: 535"));
	assert_null(strstr(r[0].reply, "stale-token"));
	assert_int_equal(sc.messages, 0);
	test_password_file = NULL;
	unlink(path);
}

/* A server that offers no AUTH (and would take the mail) never gets the
 * message when AUTH is configured: the session stops before the dot. */
static void
smtp_auth_not_offered(void **state)
{
	static const char *const to[] = {"x@example.org"};
	char path[] = "/tmp/test_transport.token.XXXXXX";
	struct script sc = {0};
	struct transport_rcpt r[1];
	struct transport_msg m;
	struct transport_session sess;

	(void)state;
	close(mkstemp(path));
	test_password_file = path;
	write_token(path, "some-token");
	deliver_scripted(&sc, 5, &m, r, 1, to, 1, plain_msg,
			 sizeof(plain_msg) - 1, &sess);
	assert_true(sess.relay_failed);
	assert_int_equal(r[0].status, DELIV_TEMPFAIL);
	if (strstr(r[0].reply, "AUTH configured but not") == NULL)
		fail_msg("reply: %s", r[0].reply);
	assert_int_equal(sc.messages, 0);
	test_password_file = NULL;
	unlink(path);
}

/* ---- maildir ---------------------------------------------------------- */

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void
maildir_delivers_with_lf(void **state)
{
	static const char *const to[] = {"x@example.org", "y@example.org"};
	char dir[] = "/tmp/test_transport.XXXXXX", path[512], err[256];
	char newdir[600], buf[1024];
	struct conf_transport cf = {0};
	struct transport_rcpt r[2];
	struct transport_msg m;
	struct transport_session sess;
	struct transport *t = NULL;
	struct dirent *de;
	DIR *d;
	FILE *f;
	size_t n;
	int files = 0;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/Maildir", dir);
	str_copy(cf.name, "box", sizeof(cf.name));
	cf.type = CONF_TRANSPORT_MAILDIR;
	cf.path = path;
	assert_int_equal(transport_create(&t, &cf, err, sizeof(err)), 0);
	msg_init(&m, r, 2, to, "Subject: x\r\n\r\nbody\r\n", 20);
	assert_int_equal(transport_deliver(t, &m, 1, &sess), 0);
	assert_int_equal(r[0].status, DELIV_OK);
	assert_int_equal(r[1].status, DELIV_OK);
	snprintf(newdir, sizeof(newdir), "%s/new", path);
	assert_non_null(d = opendir(newdir));
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		files++;
		snprintf(buf, sizeof(buf), "%s/%s", newdir, de->d_name);
		assert_non_null(f = fopen(buf, "r"));
		n = fread(buf, 1, sizeof(buf) - 1, f);
		buf[n] = '\0';
		fclose(f);
		assert_string_equal(buf, "Return-Path: <a@example.org>\n"
					 "Subject: x\n\nbody\n");
	}
	closedir(d);
	assert_int_equal(files, 1);
	transport_destroy(t);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A Maildir that cannot be written is the relay failing, not the mail. */
static void
maildir_unwritable_is_relay_failure(void **state)
{
	static const char *const to[] = {"x@example.org"};
	struct conf_transport cf = {0};
	struct transport_rcpt r[1];
	struct transport_msg m;
	struct transport_session sess;
	struct transport *t = NULL;
	char err[256];

	(void)state;
	str_copy(cf.name, "box", sizeof(cf.name));
	cf.type = CONF_TRANSPORT_MAILDIR;
	cf.path = "/proc/spoold-test-no-such-maildir";
	assert_int_equal(transport_create(&t, &cf, err, sizeof(err)), 0);
	msg_init(&m, r, 1, to, "Subject: x\r\n\r\nbody\r\n", 20);
	assert_int_equal(transport_deliver(t, &m, 1, &sess), 0);
	assert_true(sess.relay_failed);
	assert_int_equal(r[0].status, DELIV_TEMPFAIL);
	assert_non_null(strstr(r[0].reply, "maildir"));
	transport_destroy(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(smtp_per_recipient_outcomes),
	    cmocka_unit_test(smtp_data_rejected),
	    cmocka_unit_test(smtp_refused_for_rate),
	    cmocka_unit_test(smtp_bytes_on_the_wire),
	    cmocka_unit_test(smtp_batch_one_session),
	    cmocka_unit_test(smtp_drop_while_pipelining),
	    cmocka_unit_test(smtp_greeting_timeout),
	    cmocka_unit_test(smtp_connect_timeout),
	    cmocka_unit_test(smtp_connection_refused),
	    cmocka_unit_test(smtp_secret_mode_refused),
	    cmocka_unit_test(smtp_secret_owner_refused),
	    cmocka_unit_test(smtp_auth_token_rotation),
	    cmocka_unit_test(smtp_auth_refused),
	    cmocka_unit_test(smtp_auth_not_offered),
	    cmocka_unit_test(maildir_delivers_with_lf),
	    cmocka_unit_test(maildir_unwritable_is_relay_failure),
	};
	char err[256];

	if (transport_global_init(err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}

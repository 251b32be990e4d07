/*
 * smtp_curl.c - the smtp transport's libcurl engine, for tls = implicit
 * (submissions on port 465), which libESMTP cannot speak.
 *
 * One easy handle carries the batch: libcurl keeps the connection between
 * transfers, so later messages skip the handshake, EHLO and AUTH. libcurl
 * reports one result per transfer, so every reply is read from its protocol
 * trace instead: the command last sent says what a reply answers. Bytes go
 * out as given (libcurl adds no headers and stuffs dots itself) once the
 * line ends are CRLF. Its TLS verifies the chain and the host name (DNS or
 * IP SANs) against ca_file or the system store, TLS 1.3 included.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "spool/util.h"
#include "smtp_int.h"
#include "transport_int.h"

enum smtp_cmd { CMD_NONE, CMD_MAIL, CMD_RCPT, CMD_DATA, CMD_DOT, CMD_AUTH };

/* One transfer: the message and what the server said to it. */
struct curl_xfer {
	const struct smtp_transport *t;
	const char *data;
	size_t len, pos;
	struct smtp_result *res;
	size_t nrcpt, rcpt_seen;
	enum smtp_cmd last; /* the command the next reply answers */
	int authenticated;  /* 235 seen on this connection */
	char auth_error[QUEUE_REPLY_MAX];
	/* libcurl's response timeout restarts as lines come in, and its
	 * connect timeout spans the whole greeting and EHLO: each reply is
	 * bounded here instead, and a reply that runs over cuts the
	 * connection (fd: the session's socket, from the sockopt callback) */
	struct smtp_reply_watch watch;
	curl_socket_t fd;
};

static size_t
curl_read(char *buf, size_t size, size_t nitems, void *arg)
{
	struct curl_xfer *x = arg;
	size_t n = size * nitems;

	/* libcurl goes on without AUTH when the server offers none; the
	 * message then never leaves: no final dot is sent. */
	if (x->t->user != NULL && !x->authenticated)
		return CURL_READFUNC_ABORT;
	if (n > x->len - x->pos)
		n = x->len - x->pos;
	memcpy(buf, x->data + x->pos, n);
	x->pos += n;
	return n;
}

static void
trace_command(struct curl_xfer *x, const char *p, size_t n)
{
	/* AUTH lines hold the credentials: only their kind is looked at */
	if (n >= 5 && strncasecmp(p, "AUTH ", 5) == 0)
		x->last = CMD_AUTH;
	else if (n >= 5 && strncasecmp(p, "MAIL ", 5) == 0)
		x->last = CMD_MAIL;
	else if (n >= 5 && strncasecmp(p, "RCPT ", 5) == 0)
		x->last = CMD_RCPT;
	else if (n >= 4 && strncasecmp(p, "DATA", 4) == 0)
		x->last = CMD_DATA;
	else if (x->last != CMD_AUTH) /* LOGIN's follow-ups are base64 */
		x->last = CMD_NONE;
}

static void
trace_reply(struct curl_xfer *x, const char *p, size_t n)
{
	char line[QUEUE_REPLY_MAX];
	int code;

	/* only the last line of a reply ("250 ...", not "250-...") */
	if (n < 4 || p[3] == '-')
		return;
	n = n < sizeof(line) - 1 ? n : sizeof(line) - 1;
	memcpy(line, p, n);
	line[n] = '\0';
	line[strcspn(line, "\r\n")] = '\0';
	code = atoi(line);
	switch (x->last) {
	case CMD_AUTH:
		if (code == 235) {
			x->authenticated = 1;
			x->auth_error[0] = '\0';
		} else if (code >= 400) {
			snprintf(x->auth_error, sizeof(x->auth_error),
				 "%s: AUTH refused: %.300s", x->t->hostport,
				 line);
		}
		return;
	case CMD_MAIL:
		smtp_reply_set(&x->res->mail, code, line + 4);
		break;
	case CMD_RCPT:
		if (x->rcpt_seen < x->nrcpt)
			smtp_reply_set(&x->res->rcpt[x->rcpt_seen++], code,
				       line + 4);
		break;
	case CMD_DATA:
		if (code == 354) {
			x->last = CMD_DOT;
			return;
		}
		smtp_reply_set(&x->res->data, code, line + 4);
		break;
	case CMD_DOT:
		smtp_reply_set(&x->res->data, code, line + 4);
		break;
	case CMD_NONE:
		return;
	}
	x->last = CMD_NONE;
}

static int
curl_trace(CURL *easy, curl_infotype type, char *data, size_t size, void *arg)
{
	struct curl_xfer *x = arg;

	(void)easy;
	if (type == CURLINFO_HEADER_OUT) {
		trace_command(x, data, size);
		smtp_reply_watch_await(&x->watch);
	} else if (type == CURLINFO_HEADER_IN) {
		trace_reply(x, data, size);
		if (smtp_reply_watch_feed(&x->watch, data, size) !=
			SMTP_REPLY_OK &&
		    x->fd != CURL_SOCKET_BAD)
			(void)shutdown(x->fd, SHUT_RDWR);
	}
	return 0;
}

/* Notes the session's socket, which a reply that runs over shuts down,
 * for as long as it is open. */
static int
curl_sockopt(void *arg, curl_socket_t fd, curlsocktype purpose)
{
	struct curl_xfer *x = arg;

	if (purpose == CURLSOCKTYPE_IPCXN)
		x->fd = fd;
	return CURL_SOCKOPT_OK;
}

static int
curl_closesocket(void *arg, curl_socket_t fd)
{
	struct curl_xfer *x = arg;

	if (fd == x->fd)
		x->fd = CURL_SOCKET_BAD;
	return close(fd);
}

static struct curl_slist *
rcpt_list(const struct transport_msg *tm)
{
	struct curl_slist *l = NULL, *n;
	char buf[QUEUE_REPLY_MAX];

	for (size_t r = 0; r < tm->nrcpt; r++) {
		snprintf(buf, sizeof(buf), "<%s>", tm->rcpt[r].address);
		if ((n = curl_slist_append(l, buf)) == NULL) {
			curl_slist_free_all(l);
			return NULL;
		}
		l = n;
	}
	return l;
}

/* Settings shared by every transfer of the batch. */
static int
easy_setup(CURL *c, const struct smtp_transport *t, const char *password,
	   struct curl_xfer *x, char *errbuf)
{
	char url[512];
	CURLcode rc;

	/* the path of an smtp URL is the EHLO name */
	snprintf(url, sizeof(url), "smtps://%s%s%s:%u/%s",
		 strchr(t->host, ':') ? "[" : "", t->host,
		 strchr(t->host, ':') ? "]" : "", t->port,
		 t->helo ? t->helo : "");
	rc = curl_easy_setopt(c, CURLOPT_URL, url);
#define SET(opt, val)                                                          \
	if (rc == CURLE_OK)                                                    \
	rc = curl_easy_setopt(c, opt, val)
	SET(CURLOPT_PROTOCOLS_STR, "smtps");
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_ERRORBUFFER, errbuf);
	SET(CURLOPT_CONNECTTIMEOUT, (long)t->connect_timeout);
	SET(CURLOPT_SERVER_RESPONSE_TIMEOUT, (long)t->timeout);
	/* a stalled transfer counts as a timed-out stage */
	SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
	SET(CURLOPT_LOW_SPEED_TIME, (long)t->timeout);
	SET(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	if (t->ca_file != NULL)
		SET(CURLOPT_CAINFO, t->ca_file);
	if (t->user != NULL) {
		SET(CURLOPT_USERNAME, t->user);
		SET(CURLOPT_PASSWORD, password);
	}
	SET(CURLOPT_MAIL_RCPT_ALLLOWFAILS, 1L);
	SET(CURLOPT_UPLOAD, 1L);
	SET(CURLOPT_READFUNCTION, curl_read);
	SET(CURLOPT_READDATA, x);
	SET(CURLOPT_VERBOSE, 1L);
	SET(CURLOPT_DEBUGFUNCTION, curl_trace);
	SET(CURLOPT_DEBUGDATA, x);
	SET(CURLOPT_SOCKOPTFUNCTION, curl_sockopt);
	SET(CURLOPT_SOCKOPTDATA, x);
	SET(CURLOPT_CLOSESOCKETFUNCTION, curl_closesocket);
	SET(CURLOPT_CLOSESOCKETDATA, x);
#undef SET
	return rc == CURLE_OK ? 0 : -EINVAL;
}

/* One message over the handle's connection: 0, or -errno locally. */
static int
send_one(CURL *c, struct curl_xfer *x, struct transport_msg *tm,
	 const char *sender, char *errbuf, CURLcode *result)
{
	struct curl_slist *rcpt = rcpt_list(tm);
	char from[QUEUE_REPLY_MAX];
	char *copy = NULL;
	size_t len;
	CURLcode rc;

	if (rcpt == NULL ||
	    transport_crlf(tm->data, tm->len, &copy, &len) < 0) {
		curl_slist_free_all(rcpt);
		return -ENOMEM;
	}
	x->data = copy ? copy : tm->data;
	x->len = copy ? len : tm->len;
	x->pos = 0;
	x->nrcpt = tm->nrcpt;
	x->rcpt_seen = 0;
	x->last = CMD_NONE;
	snprintf(from, sizeof(from), "<%s>", sender);
	errbuf[0] = '\0';
	rc = curl_easy_setopt(c, CURLOPT_MAIL_FROM, from);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt);
	if (rc == CURLE_OK)
		rc = curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE,
				      (curl_off_t)x->len);
	/* the replies come from the trace; the result only explains a
	 * session that broke off */
	if (rc == CURLE_OK)
		*result = curl_easy_perform(c);
	curl_slist_free_all(rcpt);
	free(copy);
	return rc == CURLE_OK ? 0 : -EINVAL;
}

int
smtp_curl_deliver(struct smtp_transport *t, struct transport_msg *msgs,
		  size_t n, struct transport_session *sess)
{
	char password[1024] = "", errbuf[CURL_ERROR_SIZE], err[256];
	struct curl_xfer x = {.t = t, .fd = CURL_SOCKET_BAD};
	struct smtp_result res = {0};
	CURLcode result = CURLE_OK;
	CURL *c = NULL;
	size_t maxrcpt = 1, i;
	int rc = 0;

	/* read at each connection, so a rotated token is used at once */
	if (t->user != NULL && smtp_password_read(t, password, sizeof(password),
						  err, sizeof(err)) < 0) {
		snprintf(sess->diag, sizeof(sess->diag), "%s: %s", t->hostport,
			 err);
		sess->relay_failed = 1;
		return 0;
	}
	for (i = 0; i < n; i++)
		if (msgs[i].nrcpt > maxrcpt)
			maxrcpt = msgs[i].nrcpt;
	res.rcpt = calloc(maxrcpt, sizeof(*res.rcpt));
	if (res.rcpt == NULL || (c = curl_easy_init()) == NULL ||
	    easy_setup(c, t, password, &x, errbuf) < 0) {
		rc = -ENOMEM;
		goto out;
	}
	x.res = &res;
	smtp_reply_watch_init(&x.watch, t->timeout * 1000);
	/* a refusal for rate ends the session too: the relay is asking
	 * for fewer messages, not for the next one at once */
	for (i = 0; i < n && !sess->relay_failed && !sess->rate_limited; i++) {
		const char *sender = t->from ? t->from : msgs[i].sender;

		memset(res.rcpt, 0, maxrcpt * sizeof(*res.rcpt));
		memset(&res.mail, 0, sizeof(res.mail));
		memset(&res.data, 0, sizeof(res.data));
		if ((rc = send_one(c, &x, &msgs[i], sender, errbuf, &result)) <
		    0)
			goto out;
		if (x.watch.cut != SMTP_REPLY_OK)
			smtp_reply_watch_diag(&x.watch, t->hostport, sess->diag,
					      sizeof(sess->diag));
		else if (x.auth_error[0] != '\0')
			str_copy(sess->diag, x.auth_error, sizeof(sess->diag));
		else if (result == CURLE_ABORTED_BY_CALLBACK &&
			 t->user != NULL && !x.authenticated)
			snprintf(sess->diag, sizeof(sess->diag),
				 "%s: AUTH configured but not performed "
				 "(the server offers no usable mechanism)",
				 t->hostport);
		else
			snprintf(sess->diag, sizeof(sess->diag), "%s: %s",
				 t->hostport,
				 errbuf[0] ? errbuf
					   : "no reply from the server");
		smtp_session_judge(sess,
				   smtp_judge(&res, &msgs[i], sess->diag));
		transport_msg_settled(&msgs[i]);
	}
	/* the rest of the batch waits for the next transport or attempt */
	if (!sess->relay_failed && !sess->rate_limited)
		sess->diag[0] = '\0';
out:
	explicit_bzero(password, sizeof(password));
	/* A reply still awaited: the connection is in no known state, and
	 * the QUIT that libcurl sends at cleanup would wait for an answer
	 * from a relay that may stream forever. */
	if (x.watch.deadline != 0 && x.fd != CURL_SOCKET_BAD)
		(void)shutdown(x.fd, SHUT_RDWR);
	if (c != NULL)
		curl_easy_cleanup(c);
	free(res.rcpt);
	if (rc < 0)
		snprintf(sess->diag, sizeof(sess->diag),
			 "cannot set up a session with %s: %s", t->hostport,
			 strerror(-rc));
	return rc;
}

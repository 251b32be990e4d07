/*
 * smtp.c - the smtp transport: configuration, credentials, certificate
 * checks, and the judgement of replies shared by its two engines.
 *
 * tls = none and tls = starttls run on libESMTP; tls = implicit (port 465)
 * runs on libcurl's smtps://, as libESMTP has no implicit TLS.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "spool/util.h"
#include "module.h"
#include "smtp_int.h"
#include "transport_int.h"

/* ---- judgement ------------------------------------------------------ */

void
smtp_reply_set(struct smtp_reply *r, int code, const char *text)
{
	r->code = code;
	if (text != NULL && text[0] != '\0')
		snprintf(r->text, sizeof(r->text), "%d %s", code, text);
	else if (code != 0)
		snprintf(r->text, sizeof(r->text), "%d", code);
	else
		r->text[0] = '\0';
	r->text[strcspn(r->text, "\r\n")] = '\0';
}

void
smtp_reply_watch_init(struct smtp_reply_watch *w, int64_t limit_ms)
{
	memset(w, 0, sizeof(*w));
	w->limit_ms = limit_ms;
}

void
smtp_reply_watch_await(struct smtp_reply_watch *w)
{
	if (w->deadline == 0 && w->limit_ms > 0)
		w->deadline = time_mono_ms() + w->limit_ms;
}

enum smtp_reply_cut
smtp_reply_watch_feed(struct smtp_reply_watch *w, const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		/* bytes of a reply nobody asked for yet (the greeting, or
		 * the next pipelined one) start its clock too */
		smtp_reply_watch_await(w);
		if (w->line_len < sizeof(w->head))
			w->head[w->line_len] = buf[i];
		w->line_len++;
		w->bytes++;
		if (buf[i] != '\n')
			continue;
		/* "250 ok", "250": the last line; "250-..." continues */
		if (w->line_len >= sizeof(w->head) + 1 && w->head[3] == '-') {
			w->line_len = 0;
			continue;
		}
		w->line_len = 0;
		w->bytes = 0;
		w->deadline = 0;
	}
	if (w->cut == SMTP_REPLY_OK && w->bytes > SMTP_REPLY_BYTES_MAX)
		w->cut = SMTP_REPLY_HUGE;
	if (w->cut == SMTP_REPLY_OK && w->deadline != 0 &&
	    time_mono_ms() >= w->deadline)
		w->cut = SMTP_REPLY_LATE;
	return w->cut;
}

void
smtp_reply_watch_diag(const struct smtp_reply_watch *w, const char *hostport,
		      char *buf, size_t len)
{
	if (w->cut == SMTP_REPLY_HUGE)
		snprintf(buf, len, "%s: a reply over %d bytes", hostport,
			 SMTP_REPLY_BYTES_MAX);
	else
		snprintf(buf, len, "%s: no complete reply within %llds",
			 hostport, (long long)(w->limit_ms / 1000));
}

int
smtp_judge(const struct smtp_result *res, struct transport_msg *tm,
	   const char *diag)
{
	int mail = res->mail.code / 100, data = res->data.code / 100;
	int relay_failed = 0;

	if (mail != 2) {
		/* Nothing was sent. No reply, a 4xx or an AUTH demand is
		 * the relay's fault, unless the 4xx says the relay limits
		 * its rate; a 5xx to a sender is this message's alone, and
		 * still never fails a recipient. */
		int rate =
		    transport_reply_is_rate(res->mail.code, res->mail.text);

		if (!rate && (mail != 5 || res->mail.code == 530))
			relay_failed = 1;
		for (size_t r = 0; r < tm->nrcpt; r++)
			transport_set_reply(
			    &tm->rcpt[r], DELIV_TEMPFAIL, res->mail.code,
			    res->mail.code && !relay_failed ? res->mail.text
							    : diag);
		return rate ? SMTP_RATE_LIMITED : relay_failed;
	}
	/* a refusal of the data for the relay's rate: the message waits */
	if (data == 4 &&
	    transport_reply_is_rate(res->data.code, res->data.text)) {
		for (size_t r = 0; r < tm->nrcpt; r++) {
			const struct smtp_reply *rc = &res->rcpt[r];
			int ok = rc->code / 100 == 2;

			transport_set_reply(&tm->rcpt[r],
					    rc->code / 100 == 5
						? DELIV_PERMFAIL
						: DELIV_TEMPFAIL,
					    ok ? res->data.code : rc->code,
					    ok	       ? res->data.text
					    : rc->code ? rc->text
						       : diag);
		}
		return SMTP_RATE_LIMITED;
	}
	for (size_t r = 0; r < tm->nrcpt; r++) {
		const struct smtp_reply *rc = &res->rcpt[r];
		const struct smtp_reply *s = rc;
		enum deliv_status st = DELIV_TEMPFAIL;

		switch (rc->code / 100) {
		case 5:
			st = DELIV_PERMFAIL;
			break;
		case 2:
			s = &res->data;
			if (data == 2)
				st = DELIV_OK;
			else if (data == 5)
				st = DELIV_PERMFAIL;
			else
				relay_failed = 1;
			/* a 354 and no more: the session broke off */
			if (data != 2 && data != 4 && data != 5)
				s = NULL;
			break;
		case 4:
			break; /* this recipient only, e.g. greylisting */
		default:
			relay_failed = 1;
			break;
		}
		transport_set_reply(&tm->rcpt[r], st, s ? s->code : 0,
				    s && s->code ? s->text : diag);
	}
	return relay_failed;
}

void
smtp_session_judge(struct transport_session *sess, int verdict)
{
	if (verdict == SMTP_RELAY_FAILED)
		sess->relay_failed = 1;
	else if (verdict == SMTP_RATE_LIMITED)
		sess->rate_limited = 1;
}

const char *
smtp_batch_refusal(const struct smtp_result *res, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int mail = res[i].mail.code, data = res[i].data.code;

		if (mail / 100 == 4 || mail == 530)
			return res[i].mail.text;
		if (mail / 100 == 2 && data / 100 == 4)
			return res[i].data.text;
	}
	return NULL;
}

/* ---- credentials ------------------------------------------------------ */

int
smtp_password_read(const struct smtp_transport *t, char *buf, size_t len,
		   char *err, size_t errlen)
{
	return transport_secret_read(t->password_file, "password_file", buf,
				     len, err, errlen);
}

/* ---- certificate checks (STARTTLS) ------------------------------------ */

/* The host the session on this thread connects to, and why its last
 * handshake failed. */
static __thread const char *tls_host;
static __thread char tls_error[256];

void
smtp_tls_expect_host(const char *host)
{
	tls_host = host;
}

const char *
smtp_tls_error(void)
{
	return tls_error;
}

void
smtp_tls_error_clear(void)
{
	tls_error[0] = '\0';
}

static int
is_ip_literal(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 ||
	       inet_pton(AF_INET6, host, buf) == 1;
}

/* OpenSSL's chain verification, plus the host name (or IP address) of
 * the leaf certificate, so a wrong name fails the handshake itself. */
static int
tls_verify(int ok, X509_STORE_CTX *xs)
{
	X509 *cert;
	int match;

	if (!ok) {
		if (tls_error[0] == '\0')
			snprintf(tls_error, sizeof(tls_error),
				 "certificate refused: %s",
				 X509_verify_cert_error_string(
				     X509_STORE_CTX_get_error(xs)));
		return 0;
	}
	if (X509_STORE_CTX_get_error_depth(xs) != 0 || tls_host == NULL)
		return 1;
	cert = X509_STORE_CTX_get_current_cert(xs);
	match = is_ip_literal(tls_host)
		    ? X509_check_ip_asc(cert, tls_host, 0)
		    : X509_check_host(cert, tls_host, 0, 0, NULL);
	if (match == 1)
		return 1;
	snprintf(tls_error, sizeof(tls_error),
		 "certificate refused: it does not name %.100s", tls_host);
	X509_STORE_CTX_set_error(xs, X509_V_ERR_HOSTNAME_MISMATCH);
	return 0;
}

/* libESMTP sends no SNI; a front serving several names needs it. */
static void
tls_info(const SSL *ssl, int where, int ret)
{
	(void)ret;
	if ((where & SSL_CB_HANDSHAKE_START) && !SSL_is_server(ssl) &&
	    tls_host != NULL && !is_ip_literal(tls_host))
		SSL_set_tlsext_host_name((SSL *)ssl, tls_host);
}

static int
tls_ctx_new(SSL_CTX **out, const struct conf_transport *cf, char *err,
	    size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	const char *why;
	int ok;

	if (ctx == NULL)
		goto fail;
	/* libESMTP's STARTTLS can stall over TLS 1.3: after the handshake
	 * the server's session tickets make the socket readable and it
	 * reads before it sends EHLO. TLS 1.2 has no such tickets. */
	ok = SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) &&
	     SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	if (ok && cf->ca_file != NULL)
		ok = SSL_CTX_load_verify_locations(ctx, cf->ca_file, NULL);
	else if (ok)
		ok = SSL_CTX_set_default_verify_paths(ctx);
	if (!ok)
		goto fail;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, tls_verify);
	SSL_CTX_set_info_callback(ctx, tls_info);
	*out = ctx;
	return 0;
fail:
	why = ERR_reason_error_string(ERR_get_error());
	snprintf(err, errlen, "transport %s: TLS set-up%s%s: %s", cf->name,
		 cf->ca_file ? " with ca_file " : "",
		 cf->ca_file ? cf->ca_file : "", why ? why : "failed");
	SSL_CTX_free(ctx);
	return -EINVAL;
}

/* ---- the transport ------------------------------------------------------ */

static int
smtp_deliver(struct transport *base, struct transport_msg *msgs, size_t n,
	     struct transport_session *sess)
{
	struct smtp_transport *t = (struct smtp_transport *)base;
	const struct module_curl *c;

	if (t->tls != CONF_TLS_IMPLICIT)
		return smtp_esmtp_deliver(t, msgs, n, sess);
	/* loaded by smtp_create already: this only finds it */
	if ((c = module_curl_get(sess->diag, sizeof(sess->diag))) == NULL)
		return -ENOENT;
	return c->smtp_deliver(t, msgs, n, sess);
}

/* The probe is libcurl's session (smtp_probe.c): its module is loaded,
 * and libcurl and OpenSSL set up, on the loop thread at the first. */
static int
smtp_probe_prepare(struct transport *base, char *diag, size_t len)
{
	(void)base;
	return module_curl_get(diag, len) != NULL ? 0 : -ENOENT;
}

static int
smtp_probe_run(struct transport *base, char *diag, size_t len)
{
	const struct module_curl *c = module_curl_get(diag, len);

	return c != NULL ? c->smtp_probe(base, diag, len) : -ENOENT;
}

static void
smtp_destroy(struct transport *base)
{
	struct smtp_transport *t = (struct smtp_transport *)base;

	free(t->host);
	free(t->hostport);
	free(t->helo);
	free(t->from);
	free(t->ca_file);
	free(t->user);
	free(t->password_file);
	SSL_CTX_free(t->ssl_ctx);
	free(t);
}

static int
dup_opt(char **dst, const char *src)
{
	return src == NULL || (*dst = strdup(src)) != NULL;
}

static int
smtp_create(struct transport **out, const struct conf_transport *cf, char *err,
	    size_t errlen)
{
	struct smtp_transport *t;
	int rc;

	if ((cf->user == NULL) != (cf->password_file == NULL)) {
		snprintf(err, errlen,
			 "transport %s: user and password_file go together",
			 cf->name);
		return -EINVAL;
	}
	if (cf->password_file != NULL &&
	    (rc = transport_secret_check("password_file", cf->password_file,
					 err, errlen)) < 0)
		return rc;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		goto nomem;
	if (asprintf(&t->hostport, strchr(cf->host, ':') ? "[%s]:%u" : "%s:%u",
		     cf->host, cf->port) < 0) {
		t->hostport = NULL;
		goto nomem;
	}
	if (!dup_opt(&t->host, cf->host) || !dup_opt(&t->helo, cf->helo) ||
	    !dup_opt(&t->from, cf->from) ||
	    !dup_opt(&t->ca_file, cf->ca_file) ||
	    !dup_opt(&t->user, cf->user) ||
	    !dup_opt(&t->password_file, cf->password_file))
		goto nomem;
	t->port = cf->port;
	t->tls = cf->tls;
	t->connect_timeout = cf->connect_timeout;
	t->timeout = cf->timeout;
	if (t->tls == CONF_TLS_STARTTLS &&
	    (rc = tls_ctx_new(&t->ssl_ctx, cf, err, errlen)) < 0) {
		smtp_destroy(&t->base);
		return rc;
	}
	/* implicit TLS is libcurl's: a missing module fails the start */
	if (t->tls == CONF_TLS_IMPLICIT &&
	    module_curl_get(err, errlen) == NULL) {
		smtp_destroy(&t->base);
		return -ENOENT;
	}
	*out = &t->base;
	return 0;
nomem:
	if (t != NULL)
		smtp_destroy(&t->base);
	snprintf(err, errlen, "transport %s: out of memory", cf->name);
	return -ENOMEM;
}

const struct transport_ops transport_smtp_ops = {
    .type = "smtp",
    .create = smtp_create,
    .deliver = smtp_deliver,
    .probe = smtp_probe_run,
    .probe_prepare = smtp_probe_prepare,
    .destroy = smtp_destroy,
};

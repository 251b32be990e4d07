/*
 * push.c - what the push transports share: one HTTP request per message
 * through libcurl's easy API on the delivery thread (one handle per
 * session, so a batch reuses the connection), the token read from
 * token_file at each session, and the judgement of the answer:
 *
 *   2xx         sent: every pending recipient of the message is done
 *   429         the service limits its rate (rate_limited): the session
 *               stops, the transport slows down and stays up, the
 *               messages wait at least as long as a Retry-After asks
 *   5xx         the service failed (relay_failed): the session stops,
 *               the messages go on to the next transport or wait, at
 *               least as long as a Retry-After asks
 *   401, 403    the token was refused: the transport's failure, never
 *               the message's (relay_failed)
 *   400, 413,   this service cannot carry this message: it goes on to
 *   414, 422    the next transport of the route, the transport stays up;
 *               a message no transport can carry ends by max_age
 *   no answer,  the service failed (relay_failed): connect, TLS,
 *   any other   timeout, a redirect, a 404 from a wrong url
 *
 * The token never reaches a message: URLs are shown with the token
 * replaced (Telegram's is in the path), and every text that comes back
 * from libcurl or the service is scrubbed of it before it is kept.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "spool/util.h"
#include "push_int.h"
#include "transport_int.h"

/* Bytes of an answer kept for the reply. */
#define PUSH_ANSWER_MAX 512
/* A Retry-After is honoured up to a day. */
#define PUSH_RETRY_AFTER_MAX 86400

void
push_global_init(void)
{
	mail2text_global_init();
}

/* ---- helpers for the services ------------------------------------------ */

int
push_header(struct push_request *req, const char *name, const char *value)
{
	struct curl_slist *l;
	char *line;

	if (asprintf(&line, "%s: %s", name, value) < 0)
		return -ENOMEM;
	l = curl_slist_append(req->headers, line);
	explicit_bzero(line, strlen(line));
	free(line);
	if (l == NULL)
		return -ENOMEM;
	req->headers = l;
	return 0;
}

int
push_priority(const struct push_transport *t, const struct mail2text_note *n)
{
	if (n->urgent)
		return t->svc->prio_urgent;
	return t->priority >= 0 ? t->priority : t->svc->prio_default;
}

static void
push_request_free(struct push_request *req)
{
	for (struct curl_slist *l = req->headers; l != NULL; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(req->headers);
	if (req->url != NULL)
		explicit_bzero(req->url, strlen(req->url));
	free(req->url);
	free(req->shown_url);
	free(req->body);
	memset(req, 0, sizeof(*req));
}

/* ---- scrubbing -------------------------------------------------------- */

/* Replaces every copy of secret in s by "***", in place. */
static void
scrub_one(char *s, const char *secret)
{
	size_t sl = strlen(secret);
	char *p;

	if (sl == 0)
		return;
	while ((p = strstr(s, secret)) != NULL) {
		memmove(p + 3, p + sl, strlen(p + sl) + 1);
		memcpy(p, "***", 3);
	}
}

/* Removes the token from s, as it is and as it looks in a URL. */
static void
push_scrub(char *s, const char *token)
{
	char *esc;

	if (token == NULL || token[0] == '\0')
		return;
	scrub_one(s, token);
	esc = curl_easy_escape(NULL, token, 0);
	if (esc != NULL) {
		scrub_one(s, esc);
		curl_free(esc);
	}
	/* a few characters of a token left by a cut line still count */
	for (char *c = s; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = ' ';
}

/* ---- one request -------------------------------------------------------- */

struct push_answer {
	long status;
	int64_t retry_after; /* seconds, 0: none */
	char body[PUSH_ANSWER_MAX];
	size_t len;
};

static size_t
push_on_body(char *p, size_t size, size_t n, void *arg)
{
	struct push_answer *a = arg;
	size_t len = size * n, room = sizeof(a->body) - 1 - a->len;

	if (len < room)
		room = len;
	memcpy(a->body + a->len, p, room);
	a->len += room;
	a->body[a->len] = '\0';
	return len; /* the rest is read and dropped */
}

/* Retry-After: delay-seconds or an HTTP date (RFC 9110 10.2.3). */
static size_t
push_on_header(char *p, size_t size, size_t n, void *arg)
{
	struct push_answer *a = arg;
	size_t len = size * n;
	char value[128];
	int64_t secs = -1;

	if (len < 12 || strncasecmp(p, "Retry-After:", 12) != 0)
		return len;
	snprintf(value, sizeof(value), "%.*s", (int)(len - 12), p + 12);
	value[strcspn(value, "\r\n")] = '\0';
	{
		char *v = value + strspn(value, " \t"), *end;
		long long l = strtoll(v, &end, 10);

		if (end != v && *end == '\0' && l >= 0)
			secs = l;
		else if ((l = (long long)curl_getdate(v, NULL)) > 0)
			secs = l - (long long)time(NULL);
	}
	if (secs > PUSH_RETRY_AFTER_MAX)
		secs = PUSH_RETRY_AFTER_MAX;
	if (secs > 0)
		a->retry_after = secs;
	return len;
}

#define SET(opt, val)                                                          \
	do {                                                                   \
		if ((rc = curl_easy_setopt(c, opt, val)) != CURLE_OK)          \
			return rc;                                             \
	} while (0)

static CURLcode
push_setup(CURL *c, const struct push_transport *t,
	   const struct push_request *req, struct push_answer *a, char *errbuf)
{
	CURLcode rc;

	SET(CURLOPT_URL, req->url);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_CONNECTTIMEOUT, (long)t->connect_timeout);
	SET(CURLOPT_TIMEOUT, (long)t->timeout);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	if (t->ca_file != NULL)
		SET(CURLOPT_CAINFO, t->ca_file);
	SET(CURLOPT_CUSTOMREQUEST, req->method);
	SET(CURLOPT_POSTFIELDS, req->body);
	SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->len);
	SET(CURLOPT_HTTPHEADER, req->headers);
	SET(CURLOPT_USERAGENT, "spoold");
	SET(CURLOPT_WRITEFUNCTION, push_on_body);
	SET(CURLOPT_WRITEDATA, a);
	SET(CURLOPT_HEADERFUNCTION, push_on_header);
	SET(CURLOPT_HEADERDATA, a);
	SET(CURLOPT_ERRORBUFFER, errbuf);
	return CURLE_OK;
}

#undef SET

/* What an answer means; see the file's head. */
enum push_verdict { PUSH_SENT, PUSH_SERVICE_FAILED, PUSH_CANNOT_CARRY };

static enum push_verdict
push_judge(long status)
{
	if (status >= 200 && status <= 299)
		return PUSH_SENT;
	if (status == 400 || status == 413 || status == 414 || status == 422)
		return PUSH_CANNOT_CARRY;
	return PUSH_SERVICE_FAILED;
}

/* The first line of an answer, printable, for a reply. */
static void
push_answer_line(struct push_answer *a, const char *token)
{
	a->body[strcspn(a->body, "\r\n")] = '\0';
	push_scrub(a->body, token);
	if (strlen(a->body) > 200)
		strcpy(a->body + 197, "...");
}

/* Delivers one message; 0 to go on with the next, 1 to end the session
 * (the service failed: sess says why). */
static int
push_one(struct push_transport *t, CURL *c, struct transport_msg *m,
	 const char *token, struct transport_session *sess)
{
	struct mail2text_opts o = t->svc->text;
	struct mail2text_note n;
	struct push_request req = {0};
	struct push_answer a = {0};
	char errbuf[CURL_ERROR_SIZE] = "", reply[QUEUE_REPLY_MAX];
	enum deliv_status st = DELIV_TEMPFAIL;
	CURLcode rc;
	int stop = 0;

	o.host = t->host;
	o.sender = m->sender;
	if (mail2text(m->data, m->len, &o, &n) < 0) {
		snprintf(reply, sizeof(reply), "%s: out of memory",
			 t->svc->type);
		goto out;
	}
	if (t->svc->request(t, m, &n, token, &req) < 0) {
		snprintf(reply, sizeof(reply), "%s: out of memory",
			 t->svc->type);
		goto out;
	}
	curl_easy_reset(c);
	rc = push_setup(c, t, &req, &a, errbuf);
	if (rc == CURLE_OK)
		rc = curl_easy_perform(c);
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.status);
	if (rc != CURLE_OK) {
		push_scrub(errbuf, token);
		snprintf(sess->diag, sizeof(sess->diag), "%s %.160s: %.200s",
			 t->svc->type, req.shown_url,
			 errbuf[0] ? errbuf : curl_easy_strerror(rc));
		str_copy(reply, sess->diag, sizeof(reply));
		sess->relay_failed = 1;
		stop = 1;
		goto out;
	}
	push_answer_line(&a, token);
	switch (push_judge(a.status)) {
	case PUSH_SENT:
		st = DELIV_OK;
		snprintf(reply, sizeof(reply), "%ld accepted by %s %.160s%s",
			 a.status, t->svc->type, req.shown_url,
			 n.truncated ? " (text cut to the service's limit)"
				     : "");
		break;
	case PUSH_CANNOT_CARRY:
		snprintf(reply, sizeof(reply),
			 "%ld from %s %.160s: this transport cannot carry the "
			 "message%s%.200s",
			 a.status, t->svc->type, req.shown_url,
			 a.body[0] ? ": " : "", a.body);
		break;
	case PUSH_SERVICE_FAILED:
		snprintf(sess->diag, sizeof(sess->diag),
			 "%ld from %s %.160s%s%s%.200s", a.status, t->svc->type,
			 req.shown_url,
			 a.status == 401 || a.status == 403
			     ? ": the token was refused (see token_file)"
			     : "",
			 a.body[0] ? ": " : "", a.body);
		str_copy(reply, sess->diag, sizeof(reply));
		if (a.retry_after > sess->retry_after)
			sess->retry_after = a.retry_after;
		/* Too Many Requests: a refusal for rate, not a failure */
		if (a.status == 429)
			sess->rate_limited = 1;
		else
			sess->relay_failed = 1;
		stop = 1;
		break;
	}
out:
	/* one notification per message: its recipients share the outcome */
	for (size_t r = 0; r < m->nrcpt; r++)
		transport_set_reply(&m->rcpt[r], st,
				    st == DELIV_OK ? (int)a.status : 0, reply);
	if (st == DELIV_OK)
		transport_msg_settled(m);
	push_request_free(&req);
	mail2text_note_free(&n);
	return stop;
}

static int
push_deliver(struct transport *base, struct transport_msg *msgs, size_t n,
	     struct transport_session *sess)
{
	struct push_transport *t = (struct push_transport *)base;
	char token[PUSH_TOKEN_MAX] = "", err[QUEUE_REPLY_MAX - 16];
	CURL *c;

	if (t->token_file != NULL &&
	    transport_secret_read(t->token_file, "token_file", token,
				  sizeof(token), err, sizeof(err)) < 0) {
		snprintf(sess->diag, sizeof(sess->diag), "%s: %s", t->svc->type,
			 err);
		sess->relay_failed = 1;
		return 0;
	}
	if ((c = curl_easy_init()) == NULL) {
		explicit_bzero(token, sizeof(token));
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		if (push_one(t, c, &msgs[i], token, sess))
			break;
	curl_easy_cleanup(c);
	explicit_bzero(token, sizeof(token));
	return 0;
}

/* ---- configuration ------------------------------------------------------ */

static const struct push_service *
push_service_of(enum conf_transport_type type)
{
	static const struct push_service *const all[] = {
	    &push_ntfy,	    &push_gotify,  &push_matrix,
	    &push_telegram, &push_webhook,
	};

	for (size_t i = 0; i < ARRAY_SIZE(all); i++)
		if (strcmp(all[i]->type, conf_transport_type_name(type)) == 0)
			return all[i];
	return NULL;
}

/* https://, or http:// to this host only (a token in clear text must not
 * cross a network). */
static int
push_url_check(const char *url, char *why, size_t whylen)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL;
	int ok = 0;

	if (u == NULL) {
		snprintf(why, whylen, "out of memory");
		return 0;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		snprintf(why, whylen, "\"%s\" is not a URL", url);
	} else if (strcasecmp(scheme, "https") == 0) {
		ok = 1;
	} else if (strcasecmp(scheme, "http") != 0) {
		snprintf(why, whylen, "\"%s\" is not an https:// URL", url);
	} else if (strcasecmp(host, "localhost") == 0 ||
		   strncmp(host, "127.", 4) == 0 ||
		   strcmp(host, "[::1]") == 0) {
		ok = 1;
	} else {
		snprintf(why, whylen,
			 "http:// is refused except to this host (loopback); "
			 "use https://");
	}
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return ok;
}

static void
push_destroy(struct transport *base)
{
	struct push_transport *t = (struct push_transport *)base;

	free(t->url);
	free(t->token_file);
	free(t->room);
	free(t->chat_id);
	free(t->ca_file);
	free(t);
}

static int
dup_opt(char **dst, const char *src)
{
	return src == NULL || (*dst = strdup(src)) != NULL;
}

static int
push_create(struct transport **out, const struct conf_transport *cf, char *err,
	    size_t errlen)
{
	const struct push_service *svc = push_service_of(cf->type);
	const char *url = cf->url;
	struct push_transport *t;
	char why[256];
	size_t len;
	int rc;

	if (svc == NULL) {
		snprintf(err, errlen, "transport %s: not a push service",
			 cf->name);
		return -EINVAL;
	}
	if (url == NULL)
		url = svc->default_url;
	if (url == NULL) {
		snprintf(err, errlen, "transport %s: %s needs url", cf->name,
			 svc->type);
		return -EINVAL;
	}
	if (!push_url_check(url, why, sizeof(why))) {
		snprintf(err, errlen, "transport %s: url: %s", cf->name, why);
		return -EINVAL;
	}
	if (cf->priority >= 0 &&
	    (!svc->has_priority || cf->priority < svc->prio_min ||
	     cf->priority > svc->prio_max)) {
		if (svc->has_priority)
			snprintf(err, errlen,
				 "transport %s: priority: %s takes %d to %d",
				 cf->name, svc->type, svc->prio_min,
				 svc->prio_max);
		else
			snprintf(err, errlen,
				 "transport %s: priority: %s has none",
				 cf->name, svc->type);
		return -EINVAL;
	}
	if (cf->token_file != NULL &&
	    (rc = transport_secret_check("token_file", cf->token_file, err,
					 errlen)) < 0)
		return rc;
	if ((t = calloc(1, sizeof(*t))) == NULL || !dup_opt(&t->url, url) ||
	    !dup_opt(&t->token_file, cf->token_file) ||
	    !dup_opt(&t->room, cf->room) ||
	    !dup_opt(&t->chat_id, cf->chat_id) ||
	    !dup_opt(&t->ca_file, cf->ca_file)) {
		if (t != NULL)
			push_destroy(&t->base);
		snprintf(err, errlen, "transport %s: out of memory", cf->name);
		return -ENOMEM;
	}
	len = strlen(t->url);
	while (len > 0 && t->url[len - 1] == '/')
		t->url[--len] = '\0';
	t->svc = svc;
	t->priority = cf->priority;
	t->connect_timeout = cf->connect_timeout;
	t->timeout = cf->timeout;
	if (gethostname(t->host, sizeof(t->host) - 1) < 0)
		str_copy(t->host, "localhost", sizeof(t->host));
	*out = &t->base;
	return 0;
}

#define PUSH_OPS(name)                                                         \
	const struct transport_ops transport_##name##_ops = {                  \
	    .type = #name,                                                     \
	    .create = push_create,                                             \
	    .deliver = push_deliver,                                           \
	    .destroy = push_destroy,                                           \
	}

PUSH_OPS(ntfy);
PUSH_OPS(gotify);
PUSH_OPS(matrix);
PUSH_OPS(telegram);
PUSH_OPS(webhook);

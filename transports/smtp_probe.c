/*
 * smtp_probe.c - an SMTP transport's probe: the session a delivery opens,
 * stopped before MAIL FROM. libcurl connects, starts TLS (implicit, or
 * STARTTLS, never falling back to plain), sends EHLO and authenticates as
 * the transport does, then closes with QUIT; nothing is sent. Blocking,
 * bounded by the transport's timeouts: run off the event loop.
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "smtp_int.h"

/* Set once the daemon stops: probes in flight give up within a second,
 * so a stop never waits out a probe's timeouts. */
static atomic_int smtp_probe_cancelled;

void
smtp_probe_cancel_all(void)
{
	atomic_store(&smtp_probe_cancelled, 1);
}

/* libcurl calls it at least once a second, connecting included. */
static int
smtp_probe_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut,
		    curl_off_t un)
{
	(void)arg;
	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	return atomic_load(&smtp_probe_cancelled);
}

int
smtp_probe(struct transport *base, char *diag, size_t len)
{
	struct smtp_transport *t = (struct smtp_transport *)base;
	char url[512], password[1024], errbuf[CURL_ERROR_SIZE] = "";
	int v6 = strchr(t->host, ':') != NULL;
	CURLcode rc;
	long code = 0;
	CURL *c;

	if (t->user != NULL &&
	    smtp_password_read(t, password, sizeof(password), diag, len) < 0)
		return -EACCES;
	if ((c = curl_easy_init()) == NULL) {
		explicit_bzero(password, sizeof(password));
		snprintf(diag, len, "out of memory");
		return -ENOMEM;
	}
	/* the path of an smtp URL is the EHLO name */
	snprintf(url, sizeof(url), "%s://%s%s%s:%u/%s",
		 t->tls == CONF_TLS_IMPLICIT ? "smtps" : "smtp", v6 ? "[" : "",
		 t->host, v6 ? "]" : "", t->port, t->helo ? t->helo : "");
	rc = curl_easy_setopt(c, CURLOPT_URL, url);
#define SET(opt, val)                                                          \
	if (rc == CURLE_OK)                                                    \
	rc = curl_easy_setopt(c, opt, val)
	SET(CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	/* connect, TLS, greeting, EHLO and AUTH, then stop: no MAIL */
	SET(CURLOPT_CONNECT_ONLY, 1L);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_NOPROGRESS, 0L);
	SET(CURLOPT_XFERINFOFUNCTION, smtp_probe_progress);
	SET(CURLOPT_ERRORBUFFER, errbuf);
	SET(CURLOPT_CONNECTTIMEOUT, (long)t->connect_timeout);
	SET(CURLOPT_SERVER_RESPONSE_TIMEOUT, (long)t->timeout);
	SET(CURLOPT_TIMEOUT, (long)(t->connect_timeout + 4 * t->timeout));
	SET(CURLOPT_USE_SSL, t->tls == CONF_TLS_STARTTLS
				 ? (long)CURLUSESSL_ALL
				 : (long)CURLUSESSL_NONE);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	if (t->ca_file != NULL)
		SET(CURLOPT_CAINFO, t->ca_file);
	if (t->user != NULL) {
		SET(CURLOPT_USERNAME, t->user);
		SET(CURLOPT_PASSWORD, password);
	}
#undef SET
	if (rc == CURLE_OK)
		rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	explicit_bzero(password, sizeof(password));
	if (rc == CURLE_OK)
		return 0;
	if (code > 0)
		snprintf(diag, len, "%s: %s (last reply %ld)", t->hostport,
			 errbuf[0] ? errbuf : curl_easy_strerror(rc), code);
	else
		snprintf(diag, len, "%s: %s", t->hostport,
			 errbuf[0] ? errbuf : curl_easy_strerror(rc));
	return -EIO;
}

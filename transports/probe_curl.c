/*
 * probe_curl.c - HEAD or GET probes through libcurl's multi_socket API on a
 * libuv loop: one uv_poll_t per socket curl asks us to watch, one uv_timer_t
 * for curl's timeout, and curl_multi_info_read after every action. A poll error
 * is passed on to curl as CURL_CSELECT_ERR so curl fails the transfer
 * instead of waiting for its timeout. Poll handles are freed only in their
 * close callback.
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "module.h"

struct probe_curl {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	struct probe *pending; /* list, to cancel on close */
	int closing;
};

struct probe {
	struct probe *next, **prevp;
	struct probe_curl *e;
	CURL *easy;
	probe_done_cb *cb;
	void *arg;
	long *expect;
	size_t nexpect;
	char curl_error[CURL_ERROR_SIZE];
};

struct probe_socket {
	uv_poll_t poll;
	struct probe_curl *e;
	curl_socket_t fd;
};

static void probe_check_done(struct probe_curl *e);

/* A GET's body: only its status matters, so the bytes are dropped. */
static size_t
probe_body_drop(char *data, size_t size, size_t n, void *arg)
{
	(void)data;
	(void)arg;
	return size * n;
}

static void
probe_socket_closed(uv_handle_t *h)
{
	free(h->data);
}

static void
probe_on_poll(uv_poll_t *h, int status, int events)
{
	struct probe_socket *ps = h->data;
	struct probe_curl *e = ps->e;
	int flags = 0, running;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(e->multi, ps->fd, flags, &running);
	probe_check_done(e);
}

static int
probe_on_socket(CURL *easy, curl_socket_t fd, int action, void *userp,
		void *socketp)
{
	struct probe_curl *e = userp;
	struct probe_socket *ps = socketp;
	int events = 0;

	(void)easy;
	if (action == CURL_POLL_REMOVE) {
		if (ps != NULL) {
			uv_poll_stop(&ps->poll);
			uv_close((uv_handle_t *)&ps->poll, probe_socket_closed);
			curl_multi_assign(e->multi, fd, NULL);
		}
		return 0;
	}
	if (ps == NULL) {
		ps = calloc(1, sizeof(*ps));
		if (ps == NULL)
			return -1;
		ps->e = e;
		ps->fd = fd;
		if (uv_poll_init_socket(e->loop, &ps->poll, fd) < 0) {
			free(ps);
			return -1;
		}
		ps->poll.data = ps;
		curl_multi_assign(e->multi, fd, ps);
	}
	if (action == CURL_POLL_IN || action == CURL_POLL_INOUT)
		events |= UV_READABLE;
	if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT)
		events |= UV_WRITABLE;
	uv_poll_start(&ps->poll, events, probe_on_poll);
	return 0;
}

static void
probe_on_timer(uv_timer_t *t)
{
	struct probe_curl *e = t->data;
	int running;

	curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	probe_check_done(e);
}

static int
probe_on_timeout(CURLM *multi, long timeout_ms, void *userp)
{
	struct probe_curl *e = userp;

	(void)multi;
	if (timeout_ms < 0)
		uv_timer_stop(&e->timer);
	else
		/* 0 means "now"; the loop turn after this one is soon
		 * enough and avoids re-entering curl from its callback */
		uv_timer_start(&e->timer, probe_on_timer, (uint64_t)timeout_ms,
			       0);
	return 0;
}

static void
probe_finish(struct probe *p, CURLcode code, const char *cancel)
{
	struct probe_curl *e = p->e;
	struct probe_result r = {0};

	*p->prevp = p->next;
	if (p->next != NULL)
		p->next->prevp = p->prevp;
	curl_easy_getinfo(p->easy, CURLINFO_RESPONSE_CODE, &r.http_status);
	curl_easy_getinfo(p->easy, CURLINFO_TOTAL_TIME, &r.seconds);
	if (cancel != NULL) {
		snprintf(r.error, sizeof(r.error), "%s", cancel);
	} else if (code != CURLE_OK) {
		snprintf(r.error, sizeof(r.error), "%s",
			 p->curl_error[0] ? p->curl_error
					  : curl_easy_strerror(code));
	} else {
		for (size_t i = 0; i < p->nexpect; i++)
			if (p->expect[i] == r.http_status)
				r.ok = 1;
		if (!r.ok)
			snprintf(r.error, sizeof(r.error),
				 "unexpected HTTP status %ld", r.http_status);
	}
	curl_multi_remove_handle(e->multi, p->easy);
	curl_easy_cleanup(p->easy);
	free(p->expect);
	p->cb(p->arg, &r);
	free(p);
}

static void
probe_check_done(struct probe_curl *e)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(e->multi, &left)) != NULL) {
		struct probe *p;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
				  (char **)&p);
		probe_finish(p, msg->data.result, NULL);
	}
}

int
probe_curl_new(struct probe_curl **out, uv_loop_t *loop, char *err,
	       size_t errlen)
{
	struct probe_curl *e = calloc(1, sizeof(*e));

	if (e == NULL || (e->multi = curl_multi_init()) == NULL) {
		free(e);
		snprintf(err, errlen, "libcurl: cannot create a multi handle");
		return -ENOMEM;
	}
	e->loop = loop;
	uv_timer_init(loop, &e->timer);
	e->timer.data = e;
	curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, probe_on_socket);
	curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
	curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, probe_on_timeout);
	curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
	*out = e;
	return 0;
}

int
probe_curl_start(struct probe_curl *e, const struct probe_request *req,
		 probe_done_cb *cb, void *arg)
{
	struct probe *p;
	long ms = (long)req->timeout * 1000;

	if (e->closing || req->url == NULL || req->nexpect == 0)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	p->expect = calloc(req->nexpect, sizeof(*p->expect));
	p->easy = curl_easy_init();
	if (p->expect == NULL || p->easy == NULL) {
		if (p->easy != NULL)
			curl_easy_cleanup(p->easy);
		free(p->expect);
		free(p);
		return -ENOMEM;
	}
	memcpy(p->expect, req->expect, req->nexpect * sizeof(*p->expect));
	p->nexpect = req->nexpect;
	p->e = e;
	p->cb = cb;
	p->arg = arg;
	/* curl copies every string option it is given */
	curl_easy_setopt(p->easy, CURLOPT_URL, req->url);
	if (req->get) {
		curl_easy_setopt(p->easy, CURLOPT_HTTPGET, 1L);
		curl_easy_setopt(p->easy, CURLOPT_WRITEFUNCTION,
				 probe_body_drop);
	} else {
		curl_easy_setopt(p->easy, CURLOPT_NOBODY, 1L);
	}
	curl_easy_setopt(p->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(p->easy, CURLOPT_CONNECTTIMEOUT_MS, ms);
	curl_easy_setopt(p->easy, CURLOPT_TIMEOUT_MS, ms);
	curl_easy_setopt(p->easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(p->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(p->easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(p->easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (req->ca_file != NULL)
		curl_easy_setopt(p->easy, CURLOPT_CAINFO, req->ca_file);
	curl_easy_setopt(p->easy, CURLOPT_USERAGENT, "spoold-probe/1");
	curl_easy_setopt(p->easy, CURLOPT_ERRORBUFFER, p->curl_error);
	curl_easy_setopt(p->easy, CURLOPT_PRIVATE, p);
	if (curl_multi_add_handle(e->multi, p->easy) != CURLM_OK) {
		curl_easy_cleanup(p->easy);
		free(p->expect);
		free(p);
		return -ENOMEM;
	}
	p->next = e->pending;
	if (p->next != NULL)
		p->next->prevp = &p->next;
	p->prevp = &e->pending;
	e->pending = p;
	return 0;
}

static void
probe_curl_closed(uv_handle_t *h)
{
	free(h->data);
}

void
probe_curl_close(struct probe_curl *e)
{
	if (e == NULL || e->closing)
		return;
	e->closing = 1;
	while (e->pending != NULL)
		probe_finish(e->pending, CURLE_OK, "cancelled");
	curl_multi_cleanup(e->multi);
	uv_close((uv_handle_t *)&e->timer, probe_curl_closed);
}

/*
 * health.c - is each transport up? Loop thread only.
 *
 * A transport is down while its HTTP probe fails, or while its breaker is
 * open after relay failures (connect, TLS, greeting, AUTH, timeouts). The
 * breaker opens on the first relay failure for a cool-down that doubles on
 * each further failure (10 s up to 5 min) and then lets the next session
 * through to try again; a session that reaches the relay closes it, and so
 * does a change of the transport's password_file (a fixed token is tried at
 * once). Every change of verdict, the end of a cool-down included, is
 * logged once and saved in LMDB, so `spoolctl status` can show it while
 * the daemon is stopped or idle.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "spool/log.h"
#include "spool/probe.h"
#include "spool/util.h"
#include "spoold.h"

/* The first cool-down, doubled per further failure up to the last; the
 * test knob SPOOLD_TEST_BREAKER_FIRST_MS sets the first. */
#define BREAKER_FIRST_MS 10000
#define BREAKER_MAX_MS 300000
/* How often an open breaker looks at its password_file. */
#define BREAKER_TICK_MS 1000

/* What identifies a version of a file: a token rewritten in place or
 * replaced by a rename both change it. */
struct health_file_id {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

struct health {
	char name[CONF_NAME_MAX];
	int probe_failed;      /* the last probe failed */
	unsigned failures;     /* consecutive relay failures */
	int64_t breaker_until; /* down until then (unix milliseconds) */
	/* the password_file when the breaker opened; ino 0: none */
	struct health_file_id secret;
	uv_timer_t breaker; /* ticks while the breaker is open */
	int handles_open;   /* timer and breaker, until both are closed */
	int64_t last_probe; /* unix seconds, 0: never */
	char last_error[QUEUE_REPLY_MAX];
	int was_up; /* the verdict last logged */
	int judged; /* a probe answered or a session ended: up is known */
	int probing;
	unsigned sessions;		     /* session probes in flight */
	int64_t session_at;		     /* the last one's end, 0: never */
	char session_error[QUEUE_REPLY_MAX]; /* its failure, "" if none */
	uv_timer_t timer;
	struct daemon *d;
	struct health *next;
};

static int64_t
now_s(void)
{
	return (int64_t)time(NULL);
}

static int64_t
now_ms(void)
{
	return time_now_us() / 1000;
}

static struct health *
health_find(struct daemon *d, const char *name)
{
	for (struct health *h = d->health; h != NULL; h = h->next)
		if (strcmp(h->name, name) == 0)
			return h;
	return NULL;
}

static int
health_verdict(const struct health *h)
{
	return !h->probe_failed && now_ms() >= h->breaker_until;
}

/* Saves the verdict for spoolctl status; best effort. */
static void
health_save(struct health *h)
{
	struct state_txn *txn;
	char key[CONF_NAME_MAX + 16], value[QUEUE_REPLY_MAX + 64];

	snprintf(key, sizeof(key), "health:%s", h->name);
	/* -1: never judged, so status does not call it up */
	snprintf(value, sizeof(value), "%d %lld %s",
		 h->judged ? health_verdict(h) : -1, (long long)h->last_probe,
		 h->last_error);
	if (state_begin(h->d->state, 1, &txn) < 0)
		return;
	if (state_meta_put(txn, key, value) < 0)
		state_abort(txn);
	else
		state_commit(txn);
}

static void
health_changed(struct health *h)
{
	int up = health_verdict(h);

	if (up != h->was_up) {
		h->was_up = up;
		if (up)
			log_info("transport=%s health=up", h->name);
		else
			log_warn("transport=%s health=down reason=\"%s\"",
				 h->name, h->last_error);
	}
	health_save(h);
}

static const struct conf_transport *
health_conf(const struct health *h)
{
	return conf_transport_find(&h->d->gen->cf, h->name);
}

static void health_timer_cb(uv_timer_t *t);

/* Callers of health_probe_all waiting for the round to end. */
struct probe_waiter {
	void (*done)(void *arg);
	void *arg;
	struct probe_waiter *next;
};

static void
health_round_check(struct daemon *d)
{
	for (struct health *h = d->health; h != NULL; h = h->next)
		if (h->probing || h->sessions > 0)
			return;
	while (d->probe_waiters != NULL) {
		struct probe_waiter *w = d->probe_waiters;

		d->probe_waiters = w->next;
		w->done(w->arg);
		free(w);
	}
}

static void
health_on_probe(void *arg, const struct probe_result *r)
{
	struct health *h = arg;
	const struct conf_transport *ct;

	h->probing = 0;
	if (h->d->stopping) {
		health_round_check(h->d);
		return;
	}
	h->last_probe = now_s();
	h->judged = 1;
	h->probe_failed = !r->ok;
	if (!r->ok)
		snprintf(h->last_error, sizeof(h->last_error), "probe: %s",
			 r->error);
	health_changed(h);
	ct = health_conf(h);
	if (ct != NULL && ct->probe_url != NULL)
		uv_timer_start(&h->timer, health_timer_cb,
			       (uint64_t)ct->probe_interval * 1000, 0);
	health_round_check(h->d);
	if (r->ok)
		sched_run(h->d); /* deferred traffic may go back to it */
}

static void
health_probe_now(struct health *h)
{
	const struct conf_transport *ct = health_conf(h);
	struct probe_request req;
	struct probe_result r = {0};

	if (ct == NULL || ct->probe_url == NULL || h->probing ||
	    h->d->probes == NULL)
		return;
	req.url = ct->probe_url;
	req.ca_file = ct->ca_file;
	req.timeout = ct->probe_timeout;
	req.expect = ct->probe_expect;
	req.nexpect = ct->probe_expect_count;
	req.get = ct->probe_method == CONF_PROBE_GET;
	if (probe_start(h->d->probes, &req, health_on_probe, h) < 0) {
		snprintf(r.error, sizeof(r.error), "cannot start the probe");
		health_on_probe(h, &r);
		return;
	}
	h->probing = 1;
}

static void
health_timer_cb(uv_timer_t *t)
{
	health_probe_now(t->data);
}

/* Makes the list match the configuration's transports; new entries
 * start up, and a transport with a probe is probed at once. */
int
health_sync(struct daemon *d)
{
	const struct conf *cf = &d->gen->cf;

	for (size_t i = 0; i < cf->transport_count; i++) {
		const struct conf_transport *ct = &cf->transports[i];
		struct health *h = health_find(d, ct->name);

		if (h == NULL) {
			h = calloc(1, sizeof(*h));
			if (h == NULL)
				return -ENOMEM;
			str_copy(h->name, ct->name, sizeof(h->name));
			h->d = d;
			h->was_up = 1;
			uv_timer_init(d->loop, &h->timer);
			h->timer.data = h;
			uv_timer_init(d->loop, &h->breaker);
			h->breaker.data = h;
			h->handles_open = 2;
			h->next = d->health;
			d->health = h;
			health_save(h);
		}
		if (ct->probe_url != NULL && !h->probing)
			uv_timer_start(&h->timer, health_timer_cb, 0, 0);
		else if (ct->probe_url == NULL) {
			uv_timer_stop(&h->timer);
			if (h->probe_failed) {
				h->probe_failed = 0;
				health_changed(h);
			}
		}
	}
	return 0;
}

/* The identity of path now; ino 0 if it cannot be read. */
static struct health_file_id
health_file_id(const char *path)
{
	struct health_file_id id = {0};
	struct stat sb;

	if (path != NULL && stat(path, &sb) == 0) {
		id.dev = sb.st_dev;
		id.ino = sb.st_ino;
		id.size = sb.st_size;
		id.mtime = sb.st_mtim;
	}
	return id;
}

static int
health_file_same(const struct health_file_id *a, const struct health_file_id *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec &&
	       a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* Closes the breaker: the next session tries the relay again. */
static void
health_rearm(struct health *h)
{
	uv_timer_stop(&h->breaker);
	h->failures = 0;
	h->breaker_until = 0;
	health_changed(h);
	sched_run(h->d); /* deferred traffic may go back to it */
}

/*
 * While the breaker is open: its end is recorded when it comes (with no
 * traffic nothing else would), and a new password_file ends it at once,
 * since the failure may have been the token that was just fixed.
 */
static void
health_breaker_cb(uv_timer_t *t)
{
	struct health *h = t->data;
	const struct conf_transport *ct = health_conf(h);
	struct health_file_id now;

	if (now_ms() >= h->breaker_until) {
		uv_timer_stop(&h->breaker);
		health_changed(h);
		sched_run(h->d);
		return;
	}
	if (ct == NULL || ct->password_file == NULL)
		return;
	now = health_file_id(ct->password_file);
	if (now.ino != 0 && !health_file_same(&now, &h->secret)) {
		log_info("transport=%s password_file changed: trying it again",
			 h->name);
		health_rearm(h);
	}
}

int
health_is_up(struct daemon *d, const char *name)
{
	struct health *h = health_find(d, name);

	return h == NULL || health_verdict(h);
}

void
health_report(struct daemon *d, const char *name, int relay_failed,
	      const char *diag)
{
	struct health *h = health_find(d, name);
	const struct conf_transport *ct;
	int64_t cool, max;

	if (h == NULL)
		return;
	if (!relay_failed) {
		if (h->failures > 0 || h->breaker_until > 0 || !h->judged) {
			h->judged = 1;
			uv_timer_stop(&h->breaker);
			h->failures = 0;
			h->breaker_until = 0;
			health_changed(h);
		}
		return;
	}
	h->judged = 1;
	h->failures++;
	cool = spoold_knob("SPOOLD_TEST_BREAKER_FIRST_MS", BREAKER_FIRST_MS);
	max = cool > BREAKER_MAX_MS ? cool : BREAKER_MAX_MS;
	for (unsigned i = 1; i < h->failures && cool < max; i++)
		cool *= 2;
	if (cool > max)
		cool = max;
	h->breaker_until = now_ms() + cool;
	ct = health_conf(h);
	h->secret = health_file_id(ct != NULL ? ct->password_file : NULL);
	uv_timer_start(
	    &h->breaker, health_breaker_cb,
	    (uint64_t)(cool < BREAKER_TICK_MS ? cool : BREAKER_TICK_MS),
	    BREAKER_TICK_MS);
	snprintf(h->last_error, sizeof(h->last_error), "%s", diag);
	health_changed(h);
}

/*
 * A session probe (spoolctl probe): the transport's own probe op, on the
 * thread pool since it blocks like a delivery. It holds the generation,
 * and finds its health entry again by name, which is gone at shutdown.
 */
struct health_session {
	uv_work_t work;
	struct daemon *d;
	struct generation *gen;
	size_t index; /* in gen */
	int rc;
	char diag[QUEUE_REPLY_MAX];
};

static void
health_session_run(uv_work_t *w)
{
	struct health_session *p = w->data;

	p->rc = transport_probe(p->gen->transports[p->index], p->diag,
				sizeof(p->diag));
}

static void
health_session_done(uv_work_t *w, int status)
{
	struct health_session *p = w->data;
	const char *name = p->gen->cf.transports[p->index].name;
	struct health *h = health_find(p->d, name);

	if (h != NULL && !p->d->stopping) {
		h->sessions--;
		h->session_at = now_s();
		if (status < 0 && p->rc == 0) {
			p->rc = status;
			snprintf(p->diag, sizeof(p->diag), "cancelled");
		}
		str_copy(h->session_error, p->rc < 0 ? p->diag : "",
			 sizeof(h->session_error));
		if (p->rc < 0)
			health_report(p->d, name, 1, p->diag);
		else if (h->breaker_until > 0) {
			log_info("transport=%s probe reached the relay: trying "
				 "it again",
				 name);
			health_rearm(h);
		}
		health_round_check(p->d);
	}
	generation_put(p->gen);
	free(p);
}

static void
health_session_start(struct health *h)
{
	struct daemon *d = h->d;
	struct generation *g = d->gen;
	struct health_session *p;
	size_t i;

	for (i = 0; i < g->cf.transport_count; i++)
		if (strcmp(g->cf.transports[i].name, h->name) == 0)
			break;
	if (i == g->cf.transport_count || g->transports[i] == NULL ||
	    (p = calloc(1, sizeof(*p))) == NULL)
		return;
	p->d = d;
	p->gen = g;
	p->index = i;
	p->work.data = p;
	/* a failure here is the probe's too, which reports it */
	(void)transport_probe_prepare(g->transports[i], p->diag,
				      sizeof(p->diag));
	g->refs++;
	if (uv_queue_work(d->loop, &p->work, health_session_run,
			  health_session_done) < 0) {
		generation_put(g);
		free(p);
		return;
	}
	h->sessions++;
}

int
health_probe_all(struct daemon *d, void (*done)(void *arg), void *arg)
{
	struct probe_waiter *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return -ENOMEM;
	w->done = done;
	w->arg = arg;
	w->next = d->probe_waiters;
	d->probe_waiters = w;
	for (struct health *h = d->health; h != NULL; h = h->next) {
		uv_timer_stop(&h->timer);
		health_probe_now(h);
		if (h->sessions == 0)
			health_session_start(h);
	}
	health_round_check(d);
	return 0;
}

int
health_state(struct daemon *d, const char *name, int64_t *last_probe)
{
	struct health *h = health_find(d, name);

	*last_probe = h != NULL ? h->last_probe : 0;
	if (h == NULL || !h->judged)
		return -1;
	return health_verdict(h);
}

char *
health_describe(struct daemon *d)
{
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);

	if (fp == NULL)
		return NULL;
	for (struct health *h = d->health; h != NULL; h = h->next) {
		const struct conf_transport *ct = health_conf(h);
		char buf[RFC3339_LEN];

		if (ct == NULL)
			continue;
		fprintf(fp, "%s: %s", h->name,
			health_verdict(h) ? "up" : "down");
		if (ct->probe_url == NULL)
			fprintf(fp, ", no probe configured");
		else
			fprintf(fp, ", probe %s at %s", ct->probe_url,
				h->last_probe
				    ? format_rfc3339((time_t)h->last_probe, buf)
				    : "never");
		if (h->session_at > 0)
			fprintf(fp, ", session %s at %s",
				h->session_error[0] ? "failed" : "ok",
				format_rfc3339((time_t)h->session_at, buf));
		if (!health_verdict(h) && h->last_error[0])
			fprintf(fp, ": %s", h->last_error);
		fputc('\n', fp);
	}
	fclose(fp);
	return out;
}

static void
health_closed(uv_handle_t *handle)
{
	struct health *h = handle->data;

	if (--h->handles_open == 0)
		free(h);
}

void
health_close_all(struct daemon *d)
{
	struct health *h = d->health;

	/* session probes run on the thread pool: the loop waits for them */
	transport_probe_cancel_all();
	while (d->probe_waiters != NULL) {
		struct probe_waiter *w = d->probe_waiters;

		d->probe_waiters = w->next;
		free(w); /* their connections are closed with the loop */
	}
	d->health = NULL;
	while (h != NULL) {
		struct health *next = h->next;

		uv_close((uv_handle_t *)&h->timer, health_closed);
		uv_close((uv_handle_t *)&h->breaker, health_closed);
		h = next;
	}
}

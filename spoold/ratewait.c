/*
 * ratewait.c - the daemon's side of rate limits. Loop thread only.
 *
 * A transport at its limit is not down: messages that would go to it wait
 * (or, with rate_overflow = next, go on along the route). Waiting costs
 * nothing: no message is claimed that cannot go, and one timer runs the
 * scheduler when the next token is due. The messages next in line say why
 * they wait in their record's last_error, written once per wait, which is
 * also when "status=rate-limited" is logged for each of them. Reaching the
 * limit and being slowed by the relay are logged once per episode.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spool/log.h"
#include "spool/util.h"
#include "ratelimit.h"
#include "spoold.h"

/* The most records of messages due that one wait marks. */
#define RATE_MARK_MAX 500

struct rate_state {
	char name[CONF_NAME_MAX];
	struct rate_bucket b;
	int limited; /* "reached its limit" logged; cleared once all went */
	struct rate_state *next;
};

struct rates {
	struct rate_state *list;
	uv_timer_t timer;
	int64_t timer_due; /* monotonic ms it is armed for; 0: idle */
	struct daemon *d;
};

static struct rate_state *
rate_find(struct rates *r, const char *name)
{
	for (struct rate_state *s = r != NULL ? r->list : NULL; s != NULL;
	     s = s->next)
		if (strcmp(s->name, name) == 0)
			return s;
	return NULL;
}

static void
rate_timer_cb(uv_timer_t *t)
{
	struct rates *r = t->data;

	r->timer_due = 0;
	sched_run(r->d);
}

/* Runs the scheduler in wait_ms, unless it runs sooner already. */
static void
rate_timer_arm(struct rates *r, int64_t wait_ms)
{
	int64_t due = time_mono_ms() + wait_ms;

	if (r->timer_due != 0 && r->timer_due <= due &&
	    uv_is_active((uv_handle_t *)&r->timer))
		return;
	r->timer_due = due;
	uv_timer_start(&r->timer, rate_timer_cb, (uint64_t)wait_ms, 0);
}

int
rate_sync(struct daemon *d)
{
	const struct conf *cf = &d->gen->cf;
	int64_t now = time_mono_ms();
	struct rates *r = d->rates;

	if (r == NULL) {
		if ((r = calloc(1, sizeof(*r))) == NULL)
			return -ENOMEM;
		uv_timer_init(d->loop, &r->timer);
		r->timer.data = r;
		r->d = d;
		d->rates = r;
	}
	for (size_t i = 0; i < cf->transport_count; i++) {
		const struct conf_transport *t = &cf->transports[i];
		struct rate_state *s = rate_find(r, t->name);

		if (s != NULL) {
			rate_bucket_set(&s->b, t->rate_count,
					t->rate_period * 1000, t->burst, now);
			continue;
		}
		if ((s = calloc(1, sizeof(*s))) == NULL)
			return -ENOMEM;
		str_copy(s->name, t->name, sizeof(s->name));
		rate_bucket_init(&s->b, t->rate_count, t->rate_period * 1000,
				 t->burst, now);
		s->next = r->list;
		r->list = s;
	}
	return 0;
}

static void
rate_closed(uv_handle_t *h)
{
	struct rates *r = h->data;

	while (r->list != NULL) {
		struct rate_state *s = r->list;

		r->list = s->next;
		free(s);
	}
	free(r);
}

void
rate_close(struct daemon *d)
{
	if (d->rates == NULL)
		return;
	uv_timer_stop(&d->rates->timer);
	uv_close((uv_handle_t *)&d->rates->timer, rate_closed);
	d->rates = NULL;
}

static void
rate_why(char *buf, size_t len, const char *tname)
{
	snprintf(buf, len, "waiting for the rate limit of transport %s", tname);
}

/* Says in last_error that m waits for tname's limit; 1 if it did not say
 * so yet (then the hold is logged), else 0. -ENOMEM. */
static int
rate_mark_one(struct queue_msg_info *m, const char *tname)
{
	char why[QUEUE_REPLY_MAX];
	char *copy;

	rate_why(why, sizeof(why), tname);
	if (m->last_error != NULL && strcmp(m->last_error, why) == 0)
		return 0;
	if ((copy = strdup(why)) == NULL)
		return -ENOMEM;
	free(m->last_error);
	m->last_error = copy;
	log_info("id=%s transport=%s status=rate-limited reply=\"%s\"", m->id,
		 tname, why);
	return 1;
}

/* Marks the records of the messages due now (the first RATE_MARK_MAX)
 * as waiting for tname. */
static int
rate_mark_due(struct state_txn *txn, const char *tname, int *marked)
{
	char(*ids)[QUEUE_ID_LEN + 1] = calloc(RATE_MARK_MAX, sizeof(*ids));
	int64_t next_due = 0;
	size_t n = 0;
	int rc;

	if (ids == NULL)
		return -ENOMEM;
	rc = state_due(txn, (int64_t)time(NULL), RATE_MARK_MAX, ids, &n,
		       &next_due);
	for (size_t i = 0; i < n && rc >= 0; i++) {
		struct queue_msg_info m;

		if ((rc = state_msg_get(txn, ids[i], &m)) == -ENOENT) {
			rc = 0;
			continue;
		}
		if (rc < 0)
			break;
		rc = rate_mark_one(&m, tname);
		if (rc > 0) {
			*marked = 1;
			rc = state_msg_put(txn, &m);
			/* one per status=rate-limited line */
			if (rc >= 0)
				rc = metrics_count_rate_limited(txn, tname, 1);
		}
		queue_msg_info_free(&m);
	}
	free(ids);
	return rc < 0 ? rc : 0;
}

/* The first transport of the route from position from on that is up, or
 * route_count. */
static size_t
rate_next_up(struct daemon *d, const struct conf *cf, size_t from)
{
	for (size_t pos = from; pos < cf->route_count; pos++)
		if (health_is_up(d, cf->transports[cf->route[pos]].name))
			return pos;
	return cf->route_count;
}

/* Logs once per episode that t reached its configured limit. */
static void
rate_reached(struct daemon *d, struct rate_state *s,
	     const struct conf_transport *t, size_t pos)
{
	const struct conf *cf = &d->gen->cf;
	size_t next = rate_next_up(d, cf, pos + 1);
	char rate[64];

	if (s->limited || s->b.count == 0 ||
	    s->b.paused_until_ms > time_mono_ms())
		return;
	s->limited = 1;
	if (t->rate_overflow_next && next < cf->route_count)
		log_warn("transport=%s rate limit %s reached: the excess goes "
			 "to transport %s",
			 t->name, rate_bucket_format(&s->b, rate, sizeof(rate)),
			 cf->transports[cf->route[next]].name);
	else
		log_warn("transport=%s rate limit %s reached: messages wait "
			 "for it",
			 t->name,
			 rate_bucket_format(&s->b, rate, sizeof(rate)));
}

int
rate_claim(struct daemon *d, struct state_txn *txn, size_t n, size_t *pos,
	   int *marked)
{
	const struct conf *cf = &d->gen->cf;
	const char *first = cf->transports[cf->route[*pos]].name;
	int64_t now = time_mono_ms(), wait = -1;
	int rc;

	*marked = 0;
	for (;;) {
		const struct conf_transport *t =
		    &cf->transports[cf->route[*pos]];
		struct rate_state *s = rate_find(d->rates, t->name);
		size_t k, next;
		int64_t w;

		if (s == NULL)
			return (int)n; /* not tracked (out of memory) */
		k = rate_bucket_take(&s->b, n, now);
		if (k == n) {
			s->limited = 0;
			return (int)k;
		}
		rate_reached(d, s, t, *pos);
		if (k > 0)
			return (int)k;
		w = rate_bucket_wait_ms(&s->b, now);
		if (wait < 0 || w < wait)
			wait = w;
		next = rate_next_up(d, cf, *pos + 1);
		if (!t->rate_overflow_next || next >= cf->route_count)
			break;
		*pos = next;
	}
	rate_timer_arm(d->rates, wait > 0 ? wait : 1);
	rc = rate_mark_due(txn, first, marked);
	return rc < 0 ? rc : 0;
}

void
rate_session_done(struct daemon *d, const struct job *job)
{
	const char *tname = job->gen->cf.transports[job->transport].name;
	struct rate_state *s = rate_find(d->rates, tname);
	int64_t now = time_mono_ms(), before, pause;
	char rate[80], buf[64];

	if (s == NULL || !job->attempted || job->sess.relay_failed)
		return;
	if (!job->sess.rate_limited) {
		rate_bucket_relieved(&s->b);
		return;
	}
	before = s->b.paused_until_ms;
	pause = rate_bucket_refused(
	    &s->b, now,
	    spoold_knob("SPOOLD_TEST_RATE_PAUSE_MS", RATE_PAUSE_FIRST_MS),
	    job->sess.retry_after * 1000);
	if (s->b.paused_until_ms == before)
		return; /* a session begun before the pause: logged */
	if (s->b.count > 0)
		snprintf(rate, sizeof(rate), ", rate now %s",
			 rate_bucket_format(&s->b, buf, sizeof(buf)));
	else
		rate[0] = '\0';
	log_warn("transport=%s slowed by the relay: paused for %.1fs%s: %s",
		 tname, (double)pause / 1000.0, rate, job->sess.diag);
}

int
rate_outcome(struct daemon *d, const struct job *job, struct queue_msg_info *m,
	     int can_continue)
{
	const struct conf_transport *t =
	    &job->gen->cf.transports[job->transport];

	(void)d;
	if (t->rate_overflow_next && can_continue)
		return 1;
	m->state = m->attempts > 0 ? QUEUE_MSG_DEFERRED : QUEUE_MSG_QUEUED;
	m->next_attempt = (int64_t)time(NULL);
	if (rate_mark_one(m, t->name) < 0)
		log_err("id=%s out of memory for its last error", m->id);
	return 0;
}

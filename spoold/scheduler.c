/*
 * scheduler.c - from the spool to sessions and back. Loop thread only.
 *
 * The spool files are the truth; LMDB holds what is derived from them
 * (state, attempts, replies) plus the due index that says what to send
 * next. Every step writes LMDB in one short transaction per loop turn:
 * one for a burst of new files, one per claimed batch, one per finished
 * session. Nothing here scans the queue except start-up, which reconciles
 * LMDB with the spool after a crash or a deleted state directory.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spool/log.h"
#include "spool/util.h"
#include "bounce.h"
#include "spoold.h"

static int64_t
now_s(void)
{
	return (int64_t)time(NULL);
}

static char *
dup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

static void
set_str(char **dst, const char *s)
{
	char *copy = dup_or_null(s);

	if (s != NULL && copy == NULL)
		return; /* keep the old text rather than lose the record */
	free(*dst);
	*dst = copy;
}

/* The retry delay for attempt n with +-10 % jitter, so messages deferred
 * together do not come back together and hammer a recovering relay. */
static int64_t
retry_at(const struct conf *cf, unsigned attempts)
{
	int64_t delay = conf_retry_delay(cf, attempts);
	int64_t spread = delay / 5;

	if (spread > 0)
		delay += (int64_t)arc4random_uniform((uint32_t)spread + 1) -
			 spread / 2;
	return now_s() + (delay > 0 ? delay : 1);
}

/* Builds a fresh record from a spool file. */
static int
record_from_file(struct queue_msg_info *m, const struct spool_file *f,
		 enum queue_msg_state state, int64_t next)
{
	memset(m, 0, sizeof(*m));
	str_copy(m->id, f->id, sizeof(m->id));
	m->state = state;
	m->queued_at = f->env.queued_at;
	if (m->queued_at == 0 && queue_id_valid(f->id))
		m->queued_at = queue_id_time_us(f->id) / 1000000;
	m->next_attempt = next;
	m->size = f->size - f->body_off;
	m->sender = strdup(f->env.sender);
	m->rcpt = calloc(f->env.nrcpt, sizeof(*m->rcpt));
	if (m->sender == NULL || m->rcpt == NULL)
		goto nomem;
	m->nrcpt = f->env.nrcpt;
	for (size_t i = 0; i < f->env.nrcpt; i++) {
		m->rcpt[i].state = f->env.rcpt[i].state;
		m->rcpt[i].address = strdup(f->env.rcpt[i].address);
		if (m->rcpt[i].address == NULL)
			goto nomem;
	}
	return 0;
nomem:
	queue_msg_info_free(m);
	memset(m, 0, sizeof(*m));
	return -ENOMEM;
}

/* A record for a message that cannot be read; it sits in failed/. */
static int
put_unreadable(struct state_txn *txn, const char *id, const char *why)
{
	struct queue_msg_info m = {.state = QUEUE_MSG_FAILED};
	int rc;

	str_copy(m.id, id, sizeof(m.id));
	m.queued_at = now_s();
	m.sender = (char *)"";
	m.last_error = (char *)why;
	rc = state_msg_put(txn, &m);
	return rc;
}

/* ---- pickup: new/ -> LMDB + cur/ --------------------------------- */

/* The jobs claimed in one state transaction; they start once it commits. */
struct claims {
	struct job *jobs[CONF_MAX_CONCURRENCY];
	size_t n;
	size_t reserved;  /* delivery threads promised to other jobs */
	int64_t next_due; /* when nothing more was due: the next due time */
	int drained;	  /* nothing more was due */
	int taken;	  /* the due index was read for free threads */
};

static void pickup_cb(uv_timer_t *t);

void
sched_pickup_soon(struct daemon *d, const char *name)
{
	if (name == NULL) {
		d->rescan_new = 1;
	} else if (name[0] != '.') {
		if (d->npending == d->cap_pending) {
			size_t cap = d->cap_pending ? d->cap_pending * 2 : 64;
			void *p =
			    realloc(d->pending, cap * sizeof(*d->pending));

			if (p == NULL) {
				d->rescan_new = 1; /* read new/ instead */
				goto arm;
			}
			d->pending = p;
			d->cap_pending = cap;
		}
		/* names that are not ids get one at pickup; a name too
		 * long for the list is found by reading new/ instead */
		if (strlen(name) >= sizeof(d->pending[0]))
			d->rescan_new = 1;
		else
			str_copy(d->pending[d->npending++], name,
				 sizeof(d->pending[0]));
	}
arm:
	if (!uv_is_active((uv_handle_t *)&d->pickup_timer))
		uv_timer_start(&d->pickup_timer, pickup_cb, 0, 0);
}

/* Gives a file dropped under another name a queue id. */
static int
pickup_rename(struct daemon *d, const char *name, char id[QUEUE_ID_LEN + 1])
{
	int dfd = spool_dirfd(d->spool, QUEUE_DIR_NEW);

	if (queue_id_new(id) < 0)
		return -EIO;
	if (renameat(dfd, name, dfd, id) < 0)
		return -errno;
	return 0;
}

/* Reads the whole of new/ into the pending list. */
static void
pickup_read_new(struct daemon *d)
{
	/* a dup would share the read position with the spool's own fd,
	 * making every read after the first come back empty */
	int fd = openat(spool_dirfd(d->spool, QUEUE_DIR_NEW), ".",
			O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (dir == NULL) {
		log_err("cannot read %s/new: %s", spool_path(d->spool),
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	/* every name still waiting is in new/: read, not added twice */
	d->rescan_new = 0;
	d->npending = 0;
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		sched_pickup_soon(d, de->d_name);
		if (d->rescan_new)
			break; /* out of memory: try again on the next rescan */
	}
	closedir(dir);
}

/* One new/ file into the transaction; returns 1 if it should move to
 * cur/ after the commit, 0 to skip, -errno on a state error. */
static int
pickup_one(struct daemon *d, struct state_txn *txn, const char *name,
	   char id[QUEUE_ID_LEN + 1])
{
	struct spool_file f;
	struct queue_msg_info m;
	char err[256];
	int rc;

	if (!queue_id_valid(name)) {
		rc = pickup_rename(d, name, id);
		if (rc < 0) {
			if (rc != -ENOENT)
				log_err("cannot rename new/%s: %s", name,
					strerror(-rc));
			return 0;
		}
		log_info("id=%s picked up new/%s", id, name);
	} else {
		str_copy(id, name, QUEUE_ID_LEN + 1);
	}
	rc = state_msg_get(txn, id, &m);
	if (rc == 0) {
		/* known already: the daemon stopped between commit and
		 * rename last time */
		queue_msg_info_free(&m);
		return 1;
	}
	if (rc != -ENOENT)
		return rc;
	rc = spool_file_open(d->spool, QUEUE_DIR_NEW, id, &f, err, sizeof(err));
	if (rc == -ENOENT)
		return 0; /* a duplicate event for a file already taken */
	if (rc < 0) {
		log_err("id=%s status=failed reply=\"unreadable spool file: "
			"%s\"",
			id, err);
		if (spool_move(d->spool, id, QUEUE_DIR_NEW, QUEUE_DIR_FAILED) <
		    0)
			return 0;
		return put_unreadable(txn, id, err);
	}
	rc = record_from_file(&m, &f, QUEUE_MSG_QUEUED, now_s());
	spool_file_close(&f);
	if (rc < 0)
		return rc;
	rc = state_msg_put(txn, &m);
	if (rc == 0) {
		log_info("id=%s from=<%s> nrcpt=%zu size=%llu queued", id,
			 m.sender, m.nrcpt, (unsigned long long)m.size);
		rc = 1;
	}
	queue_msg_info_free(&m);
	return rc;
}

/* New files recorded per transaction. */
#define PICKUP_CHUNK 1000

static int claims_take(struct daemon *d, struct state_txn *txn,
		       struct claims *c);
static void claims_finish(struct daemon *d, struct claims *c, int committed);

static void
pickup_cb(uv_timer_t *t)
{
	struct daemon *d = t->data;
	char(*moved)[QUEUE_ID_LEN + 1] = NULL;
	struct state_txn *txn = NULL;
	struct claims c = {0};
	size_t nmoved = 0, take;
	int rc;

	if (d->rescan_new)
		pickup_read_new(d);
	if (d->npending == 0) {
		sched_run(d);
		return;
	}
	/* a backlog goes in several commits of bounded size, and other
	 * events are served between them */
	take = d->npending < PICKUP_CHUNK ? d->npending : PICKUP_CHUNK;
	moved = calloc(take, sizeof(*moved));
	if (moved == NULL || (rc = state_begin(d->state, 1, &txn)) < 0) {
		log_err("pickup: cannot open a state transaction");
		goto retry;
	}
	for (size_t i = 0; i < take; i++) {
		rc = pickup_one(d, txn, d->pending[i], moved[nmoved]);
		if (rc < 0)
			goto abort;
		if (rc == 1)
			nmoved++;
	}
	/* the new messages leave for delivery in the same commit */
	rc = claims_take(d, txn, &c);
	if (rc < 0)
		goto abort;
	rc = state_commit(txn);
	if (rc < 0) {
		log_err("pickup: state commit failed: %s", strerror(-rc));
		claims_finish(d, &c, 0);
		goto retry;
	}
	for (size_t i = 0; i < nmoved; i++) {
		/* No fsync: a rename lost in a crash leaves the file in
		 * new/, where the next pickup finds it known and moves it
		 * again. */
		if (renameat(spool_dirfd(d->spool, QUEUE_DIR_NEW), moved[i],
			     spool_dirfd(d->spool, QUEUE_DIR_CUR),
			     moved[i]) < 0 &&
		    errno != ENOENT)
			log_err("id=%s cannot move to cur/: %s", moved[i],
				strerror(errno));
	}
	d->npending -= take;
	memmove(d->pending, d->pending + take,
		d->npending * sizeof(*d->pending));
	if (d->npending > 0)
		uv_timer_start(&d->pickup_timer, pickup_cb, 0, 0);
	free(moved);
	/* only now: the delivery threads read the files from cur/ */
	claims_finish(d, &c, 1);
	return;
abort:
	log_err("pickup: state write failed: %s", strerror(-rc));
	state_abort(txn);
	claims_finish(d, &c, 0);
retry:
	/* keep the names; the rescan timer also finds them */
	free(moved);
	d->npending = 0;
	d->rescan_new = 1;
}

/* ---- dispatch: due index -> delivery threads --------------------- */

static void due_cb(uv_timer_t *t);

static void
due_arm(struct daemon *d, int64_t next_due)
{
	int64_t delay;

	if (next_due == 0) {
		uv_timer_stop(&d->due_timer);
		d->due_armed = 0;
		return;
	}
	if (d->due_armed == next_due &&
	    uv_is_active((uv_handle_t *)&d->due_timer))
		return;
	delay = (next_due - now_s()) * 1000;
	if (delay < 0)
		delay = 0;
	d->due_armed = next_due;
	uv_timer_start(&d->due_timer, due_cb, (uint64_t)delay, 0);
}

static void
due_cb(uv_timer_t *t)
{
	struct daemon *d = t->data;

	d->due_armed = 0;
	sched_run(d);
}

/* The first transport of the route from position from on that is up, or
 * route_count if none is. */
static size_t
route_next_up(struct daemon *d, const struct generation *gen, size_t from)
{
	for (size_t pos = from; pos < gen->cf.route_count; pos++)
		if (health_is_up(d,
				 gen->cf.transports[gen->cf.route[pos]].name))
			return pos;
	return gen->cf.route_count;
}

static struct job *
job_new(struct generation *gen, size_t route_pos, size_t n)
{
	struct job *job = calloc(1, sizeof(*job));

	if (job == NULL)
		return NULL;
	job->msgs = calloc(n, sizeof(*job->msgs));
	if (job->msgs == NULL) {
		free(job);
		return NULL;
	}
	job->gen = gen;
	gen->refs++;
	job->route_pos = route_pos;
	job->transport = gen->cf.route[route_pos];
	return job;
}

static void
job_start(struct daemon *d, struct job *job)
{
	d->jobs_running++;
	workers_submit(d->workers, job);
}

/* Claims one batch of due messages into a new job; 1 if one was claimed,
 * 0 if nothing is due, -errno on a state error. */
static int
claim_batch(struct daemon *d, struct state_txn *txn, struct claims *c)
{
	char ids[SPOOLD_BATCH_MAX][QUEUE_ID_LEN + 1];
	struct job *job;
	size_t n = 0, pos;
	int rc;

	rc = state_due(txn, now_s(), SPOOLD_BATCH_MAX, ids, &n, &c->next_due);
	if (rc < 0)
		return rc;
	if (n == 0) {
		c->drained = 1;
		return 0;
	}
	/* With every transport down, try the route anyway: a probe can be
	 * wrong while SMTP works, and the retry schedule bounds the cost. */
	pos = route_next_up(d, d->gen, 0);
	job = job_new(d->gen, pos < d->gen->cf.route_count ? pos : 0, n);
	if (job == NULL)
		return -ENOMEM;
	c->jobs[c->n++] = job;
	for (size_t i = 0; i < n; i++) {
		struct queue_msg_info m;

		rc = state_msg_get(txn, ids[i], &m);
		if (rc < 0)
			return rc;
		m.state = QUEUE_MSG_DELIVERING;
		m.next_attempt = 0;
		rc = state_msg_put(txn, &m);
		queue_msg_info_free(&m);
		if (rc < 0)
			return rc;
		str_copy(job->msgs[job->n++].id, ids[i], QUEUE_ID_LEN + 1);
	}
	return 1;
}

/* Claims due messages inside txn while delivery threads are free, so that
 * a pickup or a set of results and the claims they allow share one commit
 * (one fdatasync) instead of two. */
static int
claims_take(struct daemon *d, struct state_txn *txn, struct claims *c)
{
	int rc = 0;

	c->n = 0;
	c->next_due = 0;
	c->drained = 0;
	c->taken = 0;
	if (d->stopping)
		return 0;
	while (d->jobs_running + c->reserved + c->n < d->gen->cf.concurrency &&
	       c->n < CONF_MAX_CONCURRENCY && (rc = claim_batch(d, txn, c)) > 0)
		;
	c->taken = rc == 0;
	return rc < 0 ? rc : 0;
}

/* After the commit: starts the claimed jobs, or drops them if the
 * transaction failed (their records stay as they were). */
static void
claims_finish(struct daemon *d, struct claims *c, int committed)
{
	for (size_t i = 0; i < c->n; i++) {
		if (committed) {
			job_start(d, c->jobs[i]);
		} else {
			generation_put(c->jobs[i]->gen);
			job_free(c->jobs[i]);
		}
	}
	if (!committed)
		due_arm(d, now_s() + 1);
	else if (c->drained)
		due_arm(d, c->next_due);
	c->n = 0;
}

void
sched_run(struct daemon *d)
{
	struct claims c = {0};
	struct state_txn *txn;
	int rc;

	if (d->stopping || d->jobs_running >= d->gen->cf.concurrency)
		return;
	rc = state_begin(d->state, 1, &txn);
	if (rc < 0) {
		log_err("schedule: cannot open a state transaction: %s",
			strerror(-rc));
		due_arm(d, now_s() + 1);
		return;
	}
	rc = claims_take(d, txn, &c);
	if (rc == 0 && c.n == 0) {
		state_abort(txn); /* nothing claimed: nothing to write */
		claims_finish(d, &c, 1);
		return;
	}
	if (rc < 0)
		state_abort(txn);
	else
		rc = state_commit(txn);
	if (rc < 0)
		log_err("schedule: state write failed: %s", strerror(-rc));
	claims_finish(d, &c, rc == 0);
}

/* ---- outcomes: delivery threads -> LMDB --------------------------- */

static const char *
first_reply(const struct job_msg *m, enum deliv_status st)
{
	for (size_t r = 0; r < m->nrcpt; r++)
		if (m->rcpt[r].status == st)
			return m->rcpt[r].reply;
	return NULL;
}

static void
log_outcomes(const struct job *job, const struct job_msg *jm,
	     const struct queue_msg_info *m, const char *tname)
{
	static const char *word[] = {"sent", "deferred", "failed"};

	for (size_t r = 0; r < jm->nrcpt; r++) {
		size_t i = jm->index[r];
		const struct transport_rcpt *o = &jm->rcpt[r];

		log_info("id=%s to=<%s> transport=%s status=%s delay=%.3fs "
			 "reply=\"%s\"",
			 jm->id, i < m->nrcpt ? m->rcpt[i].address : "?", tname,
			 word[o->status],
			 (double)(time_mono_ms() - job->started_ms) / 1000.0,
			 o->reply);
	}
}

/* One line of history: the counts and the reply that matters most. */
static void
history_add(struct queue_msg_info *m, const struct job_msg *jm,
	    const char *tname)
{
	static const char *const word[] = {"sent", "deferred", "failed"};
	size_t count[3] = {0};
	const char *why = NULL;
	char result[QUEUE_REPLY_MAX + 64];
	size_t len = 0;

	for (size_t r = 0; r < jm->nrcpt; r++) {
		count[jm->rcpt[r].status]++;
		if (why == NULL || jm->rcpt[r].status != DELIV_OK)
			why = jm->rcpt[r].reply;
	}
	for (size_t i = 0; i < 3 && len < sizeof(result); i++)
		if (count[i] > 0)
			len += (size_t)snprintf(
			    result + len, sizeof(result) - len, "%s%s %zu",
			    len ? ", " : "", word[i], count[i]);
	if (len < sizeof(result))
		snprintf(result + len, sizeof(result) - len, ": %s",
			 why ? why : "");
	if (queue_msg_add_attempt(m, now_s(), tname, result) < 0)
		log_err("id=%s out of memory for its history", m->id);
}

/* Ends a message that will never be delivered: failed/ and FAILED. */
static void
msg_fail(struct daemon *d, struct queue_msg_info *m, const char *why, int move)
{
	int rc;

	if (move && (rc = spool_move(d->spool, m->id, QUEUE_DIR_CUR,
				     QUEUE_DIR_FAILED)) < 0) {
		/* keep it queued rather than lose track of it */
		log_err("id=%s cannot move to failed/: %s", m->id,
			strerror(-rc));
		m->state = QUEUE_MSG_DEFERRED;
		m->next_attempt = now_s() + 60;
		return;
	}
	m->state = QUEUE_MSG_FAILED;
	m->next_attempt = 0;
	set_str(&m->last_error, why);
	log_info("id=%s status=failed reply=\"%s\"", m->id, why);
}

/* A failure notice to the sender of m, which has just failed, if the
 * configuration asks for notices. A notice that cannot be queued is
 * logged and not retried: the message itself stays in failed/. */
static void
msg_bounce(struct daemon *d, const struct queue_msg_info *m)
{
	char id[QUEUE_ID_LEN + 1], err[512];
	int rc;

	if (!d->gen->cf.bounce || m->state != QUEUE_MSG_FAILED)
		return;
	rc = bounce_queue(d->spool, d->bounces, m, now_s(), id, err,
			  sizeof(err));
	if (rc == 1)
		log_info("id=%s notice=%s to=<%s> status=queued", m->id, id,
			 m->sender);
	else if (rc == -EBUSY)
		log_warn("id=%s notice to=<%s> status=suppressed reason=\"%s\"",
			 m->id, m->sender, err);
	else if (rc < 0)
		log_err("id=%s notice to=<%s> status=error reason=\"%s\"",
			m->id, m->sender, err);
}

/* The longest Retry-After asked in this attempt so far. */
static int64_t
job_retry_after(const struct job *job)
{
	return job->sess.retry_after > job->retry_after ? job->sess.retry_after
							: job->retry_after;
}

/* Applies one message's outcome to its record; 1 if it goes on to the
 * next transport of the route in this same attempt. */
static int
outcome_apply(struct daemon *d, struct job *job, struct job_msg *jm,
	      struct queue_msg_info *m, int can_continue)
{
	const struct conf *cf = &job->gen->cf;
	const char *tname = cf->transports[job->transport].name;
	const char *why;

	if (jm->bad) {
		msg_fail(d, m, jm->diag, 1);
		return 0;
	}
	for (size_t r = 0; r < jm->nrcpt; r++) {
		size_t i = jm->index[r];

		if (i >= m->nrcpt)
			continue;
		if (jm->rcpt[r].status == DELIV_OK)
			m->rcpt[i].state = QUEUE_RCPT_SENT;
		else if (jm->rcpt[r].status == DELIV_PERMFAIL)
			m->rcpt[i].state = QUEUE_RCPT_FAILED;
		set_str(&m->rcpt[i].reply, jm->rcpt[r].reply);
	}
	log_outcomes(job, jm, m, tname);
	if (jm->nrcpt > 0)
		history_add(m, jm, tname);
	if (jm->nrcpt > 0)
		set_str(&m->transport, tname);
	if (jm->finished) {
		if (!jm->any_failed)
			return -ENOENT; /* delivered: the record goes */
		why = first_reply(jm, DELIV_PERMFAIL);
		msg_fail(d, m, why ? why : "a recipient failed earlier",
			 !jm->moved_failed);
		msg_bounce(d, m);
		return 0;
	}
	why = jm->file_error ? "cannot record the outcome in the spool file"
			     : first_reply(jm, DELIV_TEMPFAIL);
	if (why == NULL)
		why = job->sess.diag[0] ? job->sess.diag : "not delivered";
	set_str(&m->last_error, why);
	if (!jm->file_error && can_continue)
		return 1;
	m->attempts++;
	if (now_s() - m->queued_at >= cf->max_age) {
		char buf[QUEUE_REPLY_MAX + 64];

		snprintf(buf, sizeof(buf), "expired after %llds: %s",
			 (long long)cf->max_age, why);
		msg_fail(d, m, buf, 1);
		msg_bounce(d, m);
		return 0;
	}
	m->state = QUEUE_MSG_DEFERRED;
	m->next_attempt = retry_at(cf, m->attempts);
	/* a service that asked for a pause (Retry-After) gets it */
	if (m->next_attempt < now_s() + job_retry_after(job))
		m->next_attempt = now_s() + job_retry_after(job);
	return 0;
}

/* Records a finished job; ids that go on to the next healthy transport
 * of the route are copied into next (sized for job->n), if there is one.
 * The messages now due are claimed into c in the same commit. */
static int
outcomes_write(struct daemon *d, struct job *job, struct job *next,
	       struct claims *c)
{
	struct state_txn *txn;
	int rc = state_begin(d->state, 1, &txn);

	if (rc < 0)
		return rc;
	for (size_t i = 0; i < job->n && rc >= 0; i++) {
		struct job_msg *jm = &job->msgs[i];
		struct queue_msg_info m;

		rc = state_msg_get(txn, jm->id, &m);
		if (rc == -ENOENT) {
			rc = 0;
			continue; /* deleted meanwhile */
		}
		if (rc < 0)
			break;
		if (jm->gone) {
			rc = state_msg_del(txn, jm->id);
		} else {
			rc = outcome_apply(d, job, jm, &m, next != NULL);
			if (rc == -ENOENT) {
				rc = state_msg_del(txn, jm->id);
			} else {
				if (rc == 1)
					str_copy(next->msgs[next->n++].id,
						 jm->id, QUEUE_ID_LEN + 1);
				rc = state_msg_put(txn, &m);
			}
		}
		queue_msg_info_free(&m);
	}
	c->reserved = next != NULL && next->n > 0;
	/* a pending repair waits for every job to end: claim nothing */
	if (rc >= 0 && !d->state_repair)
		rc = claims_take(d, txn, c);
	if (rc < 0) {
		state_abort(txn);
		return rc;
	}
	return state_commit(txn);
}

void
sched_job_done(struct daemon *d, struct job *job)
{
	struct job *next = NULL;
	struct claims c = {0};
	int rc;

	const char *tname = job->gen->cf.transports[job->transport].name;
	size_t pos;

	d->jobs_running--;
	if (job->sess.relay_failed)
		log_warn("transport=%s relay failed: %s", tname,
			 job->sess.diag);
	health_report(d, tname, job->sess.relay_failed, job->sess.diag);
	/* Failover stays within the configuration the attempt began
	 * with, even if SIGHUP replaced it meanwhile. */
	pos = route_next_up(d, job->gen, job->route_pos + 1);
	if (pos < job->gen->cf.route_count &&
	    (next = job_new(job->gen, pos, job->n)) != NULL)
		next->retry_after = job_retry_after(job);
	rc = outcomes_write(d, job, next, &c);
	if (rc < 0) {
		/* Each recipient's outcome is in the spool file already;
		 * the message is retried from there once its record leaves
		 * "delivering" (sched_repair). */
		log_err("cannot record delivery results: %s", strerror(-rc));
		d->state_repair = 1;
	}
	if (next != NULL && next->n > 0 && rc >= 0 && !d->stopping) {
		job_start(d, next);
	} else if (next != NULL) {
		generation_put(next->gen);
		job_free(next);
	}
	claims_finish(d, &c, rc >= 0);
	generation_put(job->gen);
	job_free(job);
	if (d->stopping) {
		daemon_maybe_finish(d);
		return;
	}
	sched_repair(d);
	/* the claims committed with the results filled every free thread
	 * or found nothing more due: a second look would find the same */
	if (rc < 0 || !c.taken)
		sched_run(d);
}

static int sched_reconcile(struct daemon *d, size_t *rebuilt);

void
sched_repair(struct daemon *d)
{
	size_t rebuilt = 0;
	int rc;

	/* a record that says "delivering" may be in flight: only with no
	 * job running is every such record a stale one */
	if (!d->state_repair || d->jobs_running > 0 || d->stopping)
		return;
	rc = sched_reconcile(d, &rebuilt);
	if (rc < 0) {
		log_warn("cannot put undecided messages back in the queue "
			 "yet: %s",
			 strerror(-rc));
		return;
	}
	d->state_repair = 0;
	log_info("put messages whose results were not recorded back in the "
		 "queue");
	sched_run(d);
}

/* ---- flush --------------------------------------------------------- */

void
sched_pickup_now(struct daemon *d)
{
	d->rescan_new = 1;
	pickup_cb(&d->pickup_timer);
}

int
sched_act(struct daemon *d, enum queue_action a, char **ids, size_t n,
	  struct sched_act_result *res)
{
	struct state_txn *txn;
	int rc;

	/* a message still in new/ gets its record first, so that what is
	 * done to it is recorded */
	sched_pickup_now(d);
	memset(res, 0, sizeof(*res));
	rc = state_begin(d->state, 1, &txn);
	if (rc < 0) {
		snprintf(res->err, sizeof(res->err), "state: %s",
			 strerror(-rc));
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		char err[sizeof(res->err)];

		rc = queue_act(d->spool, txn, a, ids[i], now_s(), err,
			       sizeof(err));
		if (rc == 0) {
			res->done++;
			log_info("id=%s %s by operator", ids[i],
				 queue_action_name(a));
			continue;
		}
		if (res->failed++ == 0) {
			res->first_rc = rc;
			str_copy(res->err, err, sizeof(res->err));
		}
		/* a failed file operation may have left the state half
		 * written for this id; give up on the rest */
		if (rc != -ENOENT && rc != -EBUSY && rc != -EINVAL)
			break;
	}
	rc = state_commit(txn);
	if (rc < 0) {
		snprintf(res->err, sizeof(res->err), "state: %s",
			 strerror(-rc));
		return rc;
	}
	uv_timer_stop(&d->due_timer);
	d->due_armed = 0;
	sched_run(d);
	return 0;
}

/* Messages made due per transaction by a flush of the whole queue. */
#define FLUSH_CHUNK 1000

/* One transaction of a flush: the ids given, or with n == 0 the next
 * FLUSH_CHUNK messages not yet due. */
static int
flush_txn(struct daemon *d, char **ids, size_t n, int64_t now, size_t *done,
	  char *err, size_t errlen)
{
	struct state_txn *txn;
	int rc = state_begin(d->state, 1, &txn);

	if (rc < 0) {
		snprintf(err, errlen, "state: %s", strerror(-rc));
		return rc;
	}
	if (n > 0) {
		rc = state_flush(txn, (const char *const *)ids, n, now, done,
				 err, errlen);
	} else {
		rc = state_flush_later(txn, now, FLUSH_CHUNK, done);
		if (rc < 0)
			snprintf(err, errlen, "state: %s", strerror(-rc));
	}
	if (rc < 0) {
		state_abort(txn);
		return rc;
	}
	rc = state_commit(txn);
	if (rc < 0)
		snprintf(err, errlen, "state: %s", strerror(-rc));
	return rc;
}

int
sched_flush(struct daemon *d, char **ids, size_t n, char *err, size_t errlen)
{
	int64_t now = now_s();
	size_t total = 0, done;
	int rc;

	do {
		rc = flush_txn(d, ids, n, now, &done, err, errlen);
		if (rc < 0)
			break;
		total += done;
	} while (n == 0 && done == FLUSH_CHUNK);
	if (total > 0 || rc >= 0) {
		log_info("flush: %zu message(s) due now", total);
		uv_timer_stop(&d->due_timer);
		d->due_armed = 0;
		sched_run(d);
	}
	return rc < 0 ? rc : (int)(total > INT_MAX ? INT_MAX : total);
}

/* ---- start-up reconciliation -------------------------------------- */

struct id_set {
	char (*ids)[QUEUE_ID_LEN + 1];
	size_t n, cap;
	enum queue_msg_state *state; /* for records */
};

static int
id_set_add(struct id_set *s, const char *id, enum queue_msg_state st)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		void *p = realloc(s->ids, cap * sizeof(*s->ids));
		void *q = realloc(s->state, cap * sizeof(*s->state));

		if (p != NULL)
			s->ids = p;
		if (q != NULL)
			s->state = q;
		if (p == NULL || q == NULL)
			return -ENOMEM;
		s->cap = cap;
	}
	str_copy(s->ids[s->n], id, QUEUE_ID_LEN + 1);
	s->state[s->n++] = st;
	return 0;
}

static int
id_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

static int
id_set_has(const struct id_set *s, const char *id)
{
	/* bsearch and qsort want a valid pointer even for no elements */
	return s->n > 0 &&
	       bsearch(id, s->ids, s->n, sizeof(*s->ids), id_cmp) != NULL;
}

static void
id_set_sort(struct id_set *s)
{
	if (s->n > 0)
		qsort(s->ids, s->n, sizeof(*s->ids), id_cmp);
}

static void
id_set_free(struct id_set *s)
{
	free(s->ids);
	free(s->state);
}

static int
scan_cb(const char *id, void *arg)
{
	return id_set_add(arg, id, QUEUE_MSG_QUEUED);
}

static int
record_cb(const struct queue_msg_info *m, void *arg)
{
	return id_set_add(arg, m->id, m->state);
}

/* Records, in state st, the messages of folder d that have none. */
static int
rebuild_missing(struct daemon *d, struct state_txn *txn, enum queue_dir dir,
		const struct id_set *files, const struct id_set *recs,
		enum queue_msg_state st, size_t *rebuilt)
{
	int rc = 0;

	for (size_t i = 0; i < files->n && rc >= 0; i++) {
		const char *id = files->ids[i];
		struct spool_file f;
		struct queue_msg_info m;
		char err[256];

		if (id_set_has(recs, id))
			continue;
		rc = spool_file_open(d->spool, dir, id, &f, err, sizeof(err));
		if (rc < 0) {
			log_err("id=%s unreadable spool file: %s", id, err);
			rc = spool_move(d->spool, id, dir, QUEUE_DIR_FAILED);
			if (rc == 0)
				rc = put_unreadable(txn, id, err);
			continue;
		}
		rc = record_from_file(&m, &f, st,
				      st == QUEUE_MSG_HELD ? 0 : now_s());
		spool_file_close(&f);
		if (rc == 0)
			rc = state_msg_put(txn, &m);
		queue_msg_info_free(&m);
		(*rebuilt)++;
	}
	return rc;
}

/* Sets the record of id to state st if it is in another one. */
static int
record_set_state(struct state_txn *txn, const char *id, enum queue_msg_state st)
{
	struct queue_msg_info m;
	int rc = state_msg_get(txn, id, &m);

	if (rc < 0)
		return rc;
	m.state = st;
	m.next_attempt = st == QUEUE_MSG_QUEUED ? now_s() : 0;
	rc = state_msg_put(txn, &m);
	queue_msg_info_free(&m);
	return rc;
}

/*
 * Makes LMDB agree with the spool, whose folders say what a message is:
 * cur/ queued (nothing stays "delivering" after a crash), hold/ held,
 * failed/ failed. Records come for files that lack one and go for files
 * that are gone.
 */
static int
reconcile(struct daemon *d, struct state_txn *txn, size_t *rebuilt)
{
	struct id_set cur = {0}, held = {0}, failed = {0}, recs = {0};
	int rc;

	rc = spool_scan(d->spool, QUEUE_DIR_CUR, scan_cb, &cur);
	if (rc == 0)
		rc = spool_scan(d->spool, QUEUE_DIR_HOLD, scan_cb, &held);
	if (rc == 0)
		rc = spool_scan(d->spool, QUEUE_DIR_FAILED, scan_cb, &failed);
	if (rc == 0)
		rc = state_foreach(txn, record_cb, &recs);
	if (rc < 0)
		goto out;
	id_set_sort(&cur);
	id_set_sort(&held);
	id_set_sort(&failed);
	/* records are in id order already */
	for (size_t i = 0; i < recs.n && rc >= 0; i++) {
		const char *id = recs.ids[i];
		enum queue_msg_state st = recs.state[i];

		if (id_set_has(&cur, id)) {
			if (st == QUEUE_MSG_DELIVERING ||
			    st == QUEUE_MSG_FAILED || st == QUEUE_MSG_HELD)
				rc =
				    record_set_state(txn, id, QUEUE_MSG_QUEUED);
		} else if (id_set_has(&held, id)) {
			if (st != QUEUE_MSG_HELD)
				rc = record_set_state(txn, id, QUEUE_MSG_HELD);
		} else if (id_set_has(&failed, id)) {
			if (st != QUEUE_MSG_FAILED)
				rc =
				    record_set_state(txn, id, QUEUE_MSG_FAILED);
		} else {
			rc = state_msg_del(txn, id);
		}
	}
	if (rc >= 0)
		rc = rebuild_missing(d, txn, QUEUE_DIR_CUR, &cur, &recs,
				     QUEUE_MSG_QUEUED, rebuilt);
	if (rc >= 0)
		rc = rebuild_missing(d, txn, QUEUE_DIR_HOLD, &held, &recs,
				     QUEUE_MSG_HELD, rebuilt);
	for (size_t i = 0; i < failed.n && rc >= 0; i++) {
		if (id_set_has(&recs, failed.ids[i]))
			continue;
		rc = put_unreadable(txn, failed.ids[i],
				    "failed (reason lost with the state)");
		(*rebuilt)++;
	}
out:
	id_set_free(&cur);
	id_set_free(&held);
	id_set_free(&failed);
	id_set_free(&recs);
	return rc;
}

static int
sched_reconcile(struct daemon *d, size_t *rebuilt)
{
	struct state_txn *txn;
	int rc = state_begin(d->state, 1, &txn);

	if (rc < 0)
		return rc;
	rc = reconcile(d, txn, rebuilt);
	if (rc < 0) {
		state_abort(txn);
		return rc;
	}
	return state_commit(txn);
}

int
sched_start(struct daemon *d, char *err, size_t errlen)
{
	const char *dir = d->gen->cf.spool_dir;
	size_t rebuilt = 0;
	int rc = sched_reconcile(d, &rebuilt);

	/* The check at open reads every page but cannot foresee every
	 * write: a tree LMDB rejects while reconciling is derived data all
	 * the same, so rebuild it once rather than refuse to start. */
	if (rc == -EBADMSG || rc == -EIO) {
		log_warn("state unusable while reconciling (%s); rebuilding "
			 "it from the spool",
			 strerror(-rc));
		state_close(d->state);
		d->state = NULL;
		rc = state_remove(dir);
		if (rc < 0) {
			snprintf(err, errlen,
				 "cannot remove the state in %s: %s", dir,
				 strerror(-rc));
			return rc;
		}
		rc = state_open(&d->state, dir, 0, err, errlen);
		if (rc < 0)
			return rc;
		rebuilt = 0;
		rc = sched_reconcile(d, &rebuilt);
	}
	if (rc < 0) {
		snprintf(err, errlen, "cannot reconcile the state with %s: %s",
			 spool_path(d->spool), strerror(-rc));
		return rc;
	}
	if (rebuilt > 0)
		log_info("rebuilt the state of %zu message(s) from the spool",
			 rebuilt);
	d->rescan_new = 1;
	sched_pickup_soon(d, NULL);
	return 0;
}

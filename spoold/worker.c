/*
 * worker.c - delivery threads.
 *
 * SMTP sessions block, so they run on threads of our own rather than on
 * libuv's pool, which also serves file I/O. A thread takes one job (one
 * session), reads the spool files, delivers, records each recipient's
 * outcome durably in the spool file, and hands the job back to the loop
 * through an async handle. The loop never waits for a thread.
 *
 * Outcome records happen here, before the loop hears of them, so that a
 * crash right after a 250 cannot lead to sending to that recipient again
 * once the spool file says 'D'.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spool/log.h"
#include "spool/util.h"
#include "spoold.h"

struct workers {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct job *todo, **todo_tail;
	struct job *done, **done_tail;
	struct spool *spool;
	uv_async_t *done_async;
	pthread_t *threads;
	unsigned count, busy;
	int stop;
};

void
job_free(struct job *job)
{
	if (job == NULL)
		return;
	for (size_t i = 0; i < job->n; i++) {
		free(job->msgs[i].rcpt);
		free(job->msgs[i].index);
	}
	free(job->msgs);
	free(job);
}

/* What the settled hook of one message needs. */
struct job_settle {
	struct job_msg *m;
	struct spool_file *f;
};

/*
 * A message's outcome came in mid-session: its D and F marks go into the
 * file now, unsynced. The page cache outlives spoold, so a crash (even
 * kill -9) later in the session repeats none of its accepted recipients;
 * job_record makes the marks durable when the session ends.
 */
static void
job_msg_settled(struct transport_msg *tm, void *arg)
{
	struct job_settle *s = arg;

	for (size_t r = 0; r < tm->nrcpt; r++) {
		enum deliv_status st = tm->rcpt[r].status;

		if (st == DELIV_TEMPFAIL)
			continue;
		/* a failed write is retried by job_record */
		(void)spool_file_mark(s->f, s->m->index[r],
				      st == DELIV_OK ? QUEUE_RCPT_SENT
						     : QUEUE_RCPT_FAILED);
	}
}

/* Loads the pending recipients of each message of the job. */
static int
job_load(struct workers *w, struct job *job, struct spool_file *files,
	 struct transport_msg *tm, struct job_settle *settle)
{
	size_t ready = 0;

	for (size_t i = 0; i < job->n; i++) {
		struct job_msg *m = &job->msgs[i];
		struct spool_file *f = &files[i];
		int rc;

		f->fd = -1;
		rc = spool_file_open(w->spool, QUEUE_DIR_CUR, m->id, f, m->diag,
				     sizeof(m->diag));
		if (rc == -ENOENT) {
			m->gone = 1;
			f->fd = -1;
			continue;
		}
		if (rc < 0) {
			/* EMFILE, ENOMEM, EIO...: the message waits, it
			 * does not fail */
			if (queue_err_temporary(rc))
				m->temp_error = 1;
			else
				m->bad = 1;
			f->fd = -1;
			continue;
		}
		m->rcpt = calloc(f->env.nrcpt, sizeof(*m->rcpt));
		m->index = calloc(f->env.nrcpt, sizeof(*m->index));
		if (m->rcpt == NULL || m->index == NULL) {
			snprintf(m->diag, sizeof(m->diag), "out of memory");
			m->temp_error = 1;
			spool_file_close(f);
			f->fd = -1;
			continue;
		}
		for (size_t r = 0; r < f->env.nrcpt; r++) {
			if (f->env.rcpt[r].state != QUEUE_RCPT_PENDING)
				continue;
			m->index[m->nrcpt] = r;
			m->rcpt[m->nrcpt].address = f->env.rcpt[r].address;
			m->rcpt[m->nrcpt].status = DELIV_TEMPFAIL;
			m->nrcpt++;
		}
		if (m->nrcpt == 0)
			continue;
		tm[ready].id = m->id;
		tm[ready].sender = f->env.sender;
		tm[ready].data = f->data + f->body_off;
		tm[ready].len = f->size - f->body_off;
		tm[ready].nrcpt = m->nrcpt;
		tm[ready].rcpt = m->rcpt;
		settle[ready].m = m;
		settle[ready].f = f;
		tm[ready].settled = job_msg_settled;
		tm[ready].settled_arg = &settle[ready];
		ready++;
	}
	return (int)ready;
}

/* Writes D/F marks for the outcomes and settles the file's fate. */
static void
job_record(struct workers *w, struct job_msg *m, struct spool_file *f)
{
	size_t pending = 0, failed = 0, marked = 0;

	for (size_t r = 0; r < m->nrcpt; r++) {
		enum queue_rcpt_state st;

		if (m->rcpt[r].status == DELIV_TEMPFAIL)
			continue;
		st = m->rcpt[r].status == DELIV_OK ? QUEUE_RCPT_SENT
						   : QUEUE_RCPT_FAILED;
		if (spool_file_mark(f, m->index[r], st) < 0) {
			m->file_error = 1;
			continue;
		}
		marked++;
	}
	for (size_t r = 0; r < f->env.nrcpt; r++) {
		/* the state spool_file_mark keeps: f->data may be a copy
		 * read before the marks were written */
		enum queue_rcpt_state st = f->env.rcpt[r].state;

		if (st == QUEUE_RCPT_PENDING)
			pending++;
		else if (st == QUEUE_RCPT_FAILED)
			failed++;
	}
	m->finished = pending == 0 && !m->file_error;
	m->any_failed = failed > 0;
	if (m->finished && failed == 0) {
		/* Everyone has it: no need to make marks durable first. A
		 * lost unlink only repeats a delivery, which at-least-once
		 * allows. */
		if (spool_remove(w->spool, QUEUE_DIR_CUR, m->id) < 0)
			m->file_error = 1;
		return;
	}
	if (marked > 0 && spool_file_sync(f) < 0) {
		m->file_error = 1;
		m->finished = 0;
		return;
	}
	/* SPOOL_MOVED_UNSYNCED: in failed/ all the same */
	if (m->finished &&
	    spool_move(w->spool, m->id, QUEUE_DIR_CUR, QUEUE_DIR_FAILED) >= 0)
		m->moved_failed = 1;
}

static void
job_run(struct workers *w, struct job *job)
{
	struct transport *t = job->gen->transports[job->transport];
	struct spool_file *files = calloc(job->n, sizeof(*files));
	struct transport_msg *tm = calloc(job->n, sizeof(*tm));
	struct job_settle *settle = calloc(job->n, sizeof(*settle));
	int ready;

	job->started_ms = time_mono_ms();
	if (files == NULL || tm == NULL || settle == NULL) {
		free(files);
		free(tm);
		free(settle);
		job->sess.relay_failed = 1;
		snprintf(job->sess.diag, sizeof(job->sess.diag),
			 "out of memory");
		return;
	}
	ready = job_load(w, job, files, tm, settle);
	job->attempted = ready > 0;
	if (ready > 0 &&
	    transport_deliver(t, tm, (size_t)ready, &job->sess) < 0 &&
	    job->sess.diag[0] == '\0')
		snprintf(job->sess.diag, sizeof(job->sess.diag),
			 "local delivery error");
	for (size_t i = 0; i < job->n; i++) {
		struct job_msg *m = &job->msgs[i];

		if (files[i].fd < 0 || m->gone || m->bad || m->temp_error)
			continue;
		job_record(w, m, &files[i]);
		/* addresses point into the file's data, which goes now */
		for (size_t r = 0; r < m->nrcpt; r++)
			m->rcpt[r].address = NULL;
		spool_file_close(&files[i]);
	}
	free(settle);
	free(tm);
	free(files);
}

static void *
worker_main(void *arg)
{
	struct workers *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct job *job;

		while (w->todo == NULL && !w->stop)
			pthread_cond_wait(&w->wake, &w->lock);
		if (w->stop)
			break;
		job = w->todo;
		w->todo = job->next;
		if (w->todo == NULL)
			w->todo_tail = &w->todo;
		w->busy++;
		pthread_mutex_unlock(&w->lock);

		job->next = NULL;
		job_run(w, job);

		pthread_mutex_lock(&w->lock);
		w->busy--;
		*w->done_tail = job;
		w->done_tail = &job->next;
		pthread_mutex_unlock(&w->lock);
		uv_async_send(w->done_async);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int
workers_start(struct workers **out, unsigned count, struct spool *spool,
	      uv_async_t *done, char *err, size_t errlen)
{
	struct workers *w = calloc(1, sizeof(*w));
	int rc;

	if (w == NULL ||
	    (w->threads = calloc(count, sizeof(pthread_t))) == NULL) {
		free(w);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->wake, NULL);
	w->todo_tail = &w->todo;
	w->done_tail = &w->done;
	w->spool = spool;
	w->done_async = done;
	for (w->count = 0; w->count < count; w->count++) {
		rc =
		    pthread_create(&w->threads[w->count], NULL, worker_main, w);
		if (rc != 0) {
			snprintf(err, errlen,
				 "cannot start delivery thread: %s",
				 strerror(rc));
			workers_stop(w);
			return -rc;
		}
	}
	*out = w;
	return 0;
}

void
workers_submit(struct workers *w, struct job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&w->lock);
	*w->todo_tail = job;
	w->todo_tail = &job->next;
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
}

struct job *
workers_take_done(struct workers *w)
{
	struct job *list;

	pthread_mutex_lock(&w->lock);
	list = w->done;
	w->done = NULL;
	w->done_tail = &w->done;
	pthread_mutex_unlock(&w->lock);
	return list;
}

unsigned
workers_stop(struct workers *w)
{
	unsigned busy;

	if (w == NULL)
		return 0;
	pthread_mutex_lock(&w->lock);
	w->stop = 1;
	busy = w->busy;
	pthread_cond_broadcast(&w->wake);
	pthread_mutex_unlock(&w->lock);
	if (busy > 0)
		return busy; /* threads blocked in I/O die with the process */
	for (unsigned i = 0; i < w->count; i++)
		pthread_join(w->threads[i], NULL);
	while (w->todo != NULL) {
		struct job *j = w->todo;

		w->todo = j->next;
		generation_put(j->gen);
		job_free(j);
	}
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->wake);
	free(w->threads);
	free(w);
	return 0;
}

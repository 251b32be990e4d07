/*
 * queue_ops.c - queue operations shared by spoold and spoolctl, built on
 * the state API only, so the daemon and the offline command behave alike.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spool/queue.h"
#include "spool/util.h"

struct id_list {
	char (*ids)[QUEUE_ID_LEN + 1];
	size_t n, cap;
};

static int
collect_due_cb(const struct queue_msg_info *m, void *arg)
{
	struct id_list *l = arg;

	if (m->state != QUEUE_MSG_QUEUED && m->state != QUEUE_MSG_DEFERRED)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 256;
		void *p = realloc(l->ids, cap * sizeof(*l->ids));

		if (p == NULL)
			return -ENOMEM;
		l->ids = p;
		l->cap = cap;
	}
	str_copy(l->ids[l->n++], m->id, QUEUE_ID_LEN + 1);
	return 0;
}

static int
flush_one(struct state_txn *txn, const char *id, int64_t now, size_t *count)
{
	struct queue_msg_info m;
	int rc = state_msg_get(txn, id, &m);

	if (rc < 0)
		return rc;
	if (m.state == QUEUE_MSG_QUEUED || m.state == QUEUE_MSG_DEFERRED) {
		m.next_attempt = now;
		m.flags |= QUEUE_MSG_F_FLUSHED;
		rc = state_msg_put(txn, &m);
		if (rc == 0)
			(*count)++;
	}
	queue_msg_info_free(&m);
	return rc;
}

int
state_flush(struct state_txn *txn, const char *const *ids, size_t n,
	    int64_t now, size_t *count, char *err, size_t errlen)
{
	struct id_list all = {0};
	int rc = 0;

	*count = 0;
	if (n == 0) {
		/* collect first: the records change under the cursor */
		rc = state_foreach(txn, collect_due_cb, &all);
		for (size_t i = 0; i < all.n && rc >= 0; i++)
			rc = flush_one(txn, all.ids[i], now, count);
		free(all.ids);
	}
	for (size_t i = 0; i < n && rc >= 0; i++) {
		rc = flush_one(txn, ids[i], now, count);
		if (rc == -ENOENT) {
			snprintf(err, errlen, "%s: no such message", ids[i]);
			return rc;
		}
	}
	if (rc < 0)
		snprintf(err, errlen, "state: %s", strerror(-rc));
	return rc < 0 ? rc : 0;
}

int
state_flush_later(struct state_txn *txn, int64_t now, size_t max, size_t *count)
{
	char(*ids)[QUEUE_ID_LEN + 1] = calloc(max ? max : 1, sizeof(*ids));
	size_t n = 0;
	int rc;

	*count = 0;
	if (ids == NULL)
		return -ENOMEM;
	rc = state_due_after(txn, now, max, ids, &n);
	for (size_t i = 0; i < n && rc >= 0; i++)
		rc = flush_one(txn, ids[i], now, count);
	free(ids);
	return rc < 0 ? rc : 0;
}

/* ---- summary ------------------------------------------------------ */

static int
summary_new_cb(const char *id, void *arg)
{
	struct queue_summary *s = arg;
	int64_t t = queue_id_time_us(id) / 1000000;

	s->in_new++;
	if (s->oldest == 0 || t < s->oldest)
		s->oldest = t;
	return 0;
}

int
queue_summary_read(struct spool *sp, struct state_txn *txn,
		   struct queue_summary *out)
{
	int64_t oldest = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = spool_scan(sp, QUEUE_DIR_NEW, summary_new_cb, out);
	if (rc < 0 || txn == NULL)
		return rc < 0 ? rc : 0;
	rc = state_count(txn, out->counts);
	if (rc == 0)
		rc = state_oldest(txn, &oldest);
	if (rc == 0 && oldest > 0 && (out->oldest == 0 || oldest < out->oldest))
		out->oldest = oldest;
	return rc;
}

/* ---- operator actions -------------------------------------------- */

const char *
queue_action_name(enum queue_action a)
{
	static const char *const names[] = {
	    [QUEUE_HOLD] = "hold",
	    [QUEUE_RELEASE] = "release",
	    [QUEUE_DELETE] = "delete",
	    [QUEUE_REQUEUE] = "requeue",
	};

	return (unsigned)a < ARRAY_SIZE(names) ? names[a] : "?";
}

/* The folder holding id, or -ENOENT. */
static int
locate(struct spool *sp, const char *id, enum queue_dir *out)
{
	static const enum queue_dir dirs[] = {QUEUE_DIR_CUR, QUEUE_DIR_HOLD,
					      QUEUE_DIR_FAILED, QUEUE_DIR_NEW};

	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++)
		if (spool_stat(sp, dirs[i], id, NULL, NULL) == 0) {
			*out = dirs[i];
			return 0;
		}
	return -ENOENT;
}

/* Failed recipients become pending again, in the file first. */
static int
requeue_marks(struct spool *sp, const char *id, struct queue_msg_info *m,
	      int have_record, char *err, size_t errlen)
{
	struct spool_file f;
	int rc, marked = 0;

	rc = spool_file_open(sp, QUEUE_DIR_FAILED, id, &f, err, errlen);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < f.env.nrcpt && rc == 0; i++)
		if (f.env.rcpt[i].state == QUEUE_RCPT_FAILED) {
			rc = spool_file_mark(&f, i, QUEUE_RCPT_PENDING);
			marked++;
		}
	if (rc == 0 && marked > 0)
		rc = spool_file_sync(&f);
	spool_file_close(&f);
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", id, strerror(-rc));
		return rc;
	}
	for (size_t i = 0; have_record && i < m->nrcpt; i++)
		if (m->rcpt[i].state == QUEUE_RCPT_FAILED) {
			m->rcpt[i].state = QUEUE_RCPT_PENDING;
			free(m->rcpt[i].reply);
			m->rcpt[i].reply = NULL;
		}
	return 0;
}

/* Checks that action applies to a message in folder d; 0 or -errno. */
static int
action_allowed(enum queue_action a, enum queue_dir d, const char *id, char *err,
	       size_t errlen)
{
	const char *why = NULL;

	if (a == QUEUE_HOLD && d == QUEUE_DIR_FAILED)
		why = "has failed; requeue it first";
	else if (a == QUEUE_RELEASE && d != QUEUE_DIR_HOLD)
		why = "is not held";
	else if (a == QUEUE_REQUEUE && d != QUEUE_DIR_FAILED)
		why = "has not failed";
	if (why == NULL)
		return 0;
	snprintf(err, errlen, "%s %s", id, why);
	return -EINVAL;
}

int
queue_act(struct spool *sp, struct state_txn *txn, enum queue_action a,
	  const char *id, int64_t now, char *err, size_t errlen)
{
	struct queue_msg_info m;
	enum queue_dir d;
	int rc, have_record;

	err[0] = '\0';
	if (locate(sp, id, &d) < 0) {
		snprintf(err, errlen, "%s: no such message", id);
		return -ENOENT;
	}
	rc = state_msg_get(txn, id, &m);
	if (rc < 0 && rc != -ENOENT) {
		snprintf(err, errlen, "state: %s", strerror(-rc));
		return rc;
	}
	have_record = rc == 0;
	if (have_record && m.state == QUEUE_MSG_DELIVERING) {
		snprintf(err, errlen, "%s is being delivered; try again", id);
		rc = -EBUSY;
		goto out;
	}
	if ((rc = action_allowed(a, d, id, err, errlen)) < 0)
		goto out;
	/* the files first: they are the truth the state is rebuilt from */
	switch (a) {
	case QUEUE_HOLD:
		rc = spool_move(sp, id, d, QUEUE_DIR_HOLD);
		m.state = QUEUE_MSG_HELD;
		m.next_attempt = 0;
		break;
	case QUEUE_RELEASE:
		rc = spool_move(sp, id, d, QUEUE_DIR_CUR);
		m.state = QUEUE_MSG_QUEUED;
		m.next_attempt = now;
		break;
	case QUEUE_DELETE:
		rc = spool_remove(sp, d, id);
		break;
	case QUEUE_REQUEUE:
		rc = requeue_marks(sp, id, &m, have_record, err, errlen);
		if (rc == 0)
			rc = spool_move(sp, id, d, QUEUE_DIR_CUR);
		/* max_age counts again from now */
		m.state = QUEUE_MSG_QUEUED;
		m.next_attempt = now;
		m.queued_at = now;
		m.attempts = 0;
		free(m.last_error);
		m.last_error = NULL;
		break;
	}
	if (rc < 0) {
		if (err[0] == '\0')
			snprintf(err, errlen, "%s: %s", id, strerror(-rc));
		goto out;
	}
	rc = 0; /* SPOOL_MOVED_UNSYNCED: the file is where m says */
	/* with no record yet (not picked up), the daemon builds one from
	 * the file's new place */
	if (have_record)
		rc = a == QUEUE_DELETE ? state_msg_del(txn, id)
				       : state_msg_put(txn, &m);
	if (rc < 0)
		snprintf(err, errlen, "state: %s", strerror(-rc));
out:
	if (have_record)
		queue_msg_info_free(&m);
	return rc;
}

int
queue_msg_add_attempt(struct queue_msg_info *m, int64_t at,
		      const char *transport, const char *result)
{
	struct queue_attempt a = {.at = at};

	a.transport = strdup(transport != NULL ? transport : "");
	a.result = strdup(result != NULL ? result : "");
	if (a.transport == NULL || a.result == NULL)
		goto nomem;
	if (m->nhistory == QUEUE_HISTORY_MAX) {
		free(m->history[0].transport);
		free(m->history[0].result);
		memmove(m->history, m->history + 1,
			(m->nhistory - 1) * sizeof(*m->history));
		m->nhistory--;
	} else {
		struct queue_attempt *h = realloc(
		    m->history, (m->nhistory + 1) * sizeof(*m->history));

		if (h == NULL)
			goto nomem;
		m->history = h;
	}
	m->history[m->nhistory++] = a;
	return 0;
nomem:
	free(a.transport);
	free(a.result);
	return -ENOMEM;
}

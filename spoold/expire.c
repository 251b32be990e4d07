/*
 * expire.c - failed messages leave failed/ after [spool] failed_keep, and
 * coalescing keys are forgotten when they hold nothing back. Loop thread
 * only.
 *
 * A failed message is kept for the operator (list --failed, requeue); past
 * failed_keep, counted from its last attempt, its record is deleted and
 * then its file, one log line each, at a rescan up to a hundredth of
 * failed_keep (at most an hour) later. The records go first: a crash in
 * between leaves a file without a record, which the next start's repair
 * records as failed again and the next pass removes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spool/log.h"
#include "spool/util.h"
#include "coalesce.h"
#include "spoold.h"

/* Messages removed per pass: bounds the transaction. */
#define EXPIRE_MAX 1000
/* Finding the expired failed messages walks every record (37 ms at
 * 100,000 on a small machine), so with failed messages kept the walk
 * runs once per hundredth of failed_keep, at most hourly, not at every
 * rescan: a message then leaves up to 1 % of failed_keep late. */
#define EXPIRE_WALK_SHARE 100
#define EXPIRE_WALK_MAX_GAP_S 3600

struct expire_scan {
	int64_t before; /* failed before this: expired */
	char (*ids)[QUEUE_ID_LEN + 1];
	size_t n;
};

/* When m failed: its last attempt, else when it was queued. */
static int64_t
expire_failed_at(const struct queue_msg_info *m)
{
	int64_t at = m->queued_at;

	if (m->nhistory > 0 && m->history[m->nhistory - 1].at > at)
		at = m->history[m->nhistory - 1].at;
	return at;
}

static int
expire_scan_cb(const struct queue_msg_info *m, void *arg)
{
	struct expire_scan *x = arg;

	if (m->state != QUEUE_MSG_FAILED || expire_failed_at(m) >= x->before)
		return 0;
	str_copy(x->ids[x->n++], m->id, sizeof(x->ids[0]));
	return x->n == EXPIRE_MAX;
}

static uint64_t
expire_walk_gap_ms(int64_t keep)
{
	int64_t gap = keep / EXPIRE_WALK_SHARE;

	if (gap > EXPIRE_WALK_MAX_GAP_S)
		gap = EXPIRE_WALK_MAX_GAP_S;
	return (uint64_t)gap * 1000;
}

int
sched_expire_failed(struct daemon *d)
{
	int64_t keep = d->gen->cf.failed_keep;
	struct expire_scan x = {0};
	uint64_t counts[5];
	struct state_txn *txn;
	int rc;

	if (keep <= 0)
		return 0; /* kept for ever */
	if (uv_now(d->loop) < d->failed_walk_after)
		return 0;
	x.before = (int64_t)time(NULL) - keep;
	x.ids = calloc(EXPIRE_MAX, sizeof(*x.ids));
	if (x.ids == NULL)
		return -ENOMEM;
	rc = state_begin(d->state, 1, &txn);
	if (rc < 0)
		goto out;
	/* the kept counts first: with no failed message, no walk over a
	 * queue that may hold 100,000 records, twice a minute */
	rc = state_count(txn, counts);
	if (rc == 0 && counts[QUEUE_MSG_FAILED] == 0) {
		state_abort(txn);
		goto out;
	}
	if (rc == 0)
		rc = state_foreach(txn, expire_scan_cb, &x);
	for (size_t i = 0; rc >= 0 && i < x.n; i++)
		rc = state_msg_del(txn, x.ids[i]);
	if (rc < 0 || x.n == 0) {
		state_abort(txn);
		goto out;
	}
	rc = state_commit(txn);
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < x.n; i++) {
		int r = spool_remove(d->spool, QUEUE_DIR_FAILED, x.ids[i]);

		if (r < 0 && r != -ENOENT)
			log_warn("id=%s expired, but failed/%s stays: %s",
				 x.ids[i], x.ids[i], strerror(-r));
		else
			log_info("id=%s expired: removed from failed/ after "
				 "failed_keep (%llds)",
				 x.ids[i], (long long)keep);
	}
	rc = (int)x.n;
out:
	/* the next look in a while, once this one found and removed all
	 * there was; a failed one, or one cut at EXPIRE_MAX, looks again at
	 * the next rescan */
	if (rc >= 0 && x.n < EXPIRE_MAX)
		d->failed_walk_after =
		    uv_now(d->loop) + expire_walk_gap_ms(keep);
	free(x.ids);
	return rc;
}

/* Key entries forgotten per pass: bounds the transaction; a backlog of
 * them goes over the next passes. */
#define EXPIRE_KEYS_MAX 256

int
sched_expire_keys(struct daemon *d)
{
	struct state_txn *txn;
	int rc, n;

	rc = state_begin(d->state, 1, &txn);
	if (rc < 0)
		return rc;
	n = coalesce_expire(txn, (int64_t)time(NULL), EXPIRE_KEYS_MAX);
	if (n <= 0) {
		state_abort(txn);
		return n;
	}
	rc = state_commit(txn);
	return rc < 0 ? rc : n;
}

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

/*
 * test_metrics.c - unit tests of queue/metrics.c and the metrics table of
 * state_lmdb.c: label escaping, the counts by state kept in step with the
 * records (equal to a walk of the queue after every kind of change), the
 * counters, and the text the renderer writes.
 *
 * Each test works in its own directory under /tmp, removed afterwards.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool/queue.h"

struct fixture {
	char dir[64];
	char err[256];
	struct spool *sp;
	struct state *st;
};

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int
setup(void **ctx)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (fx == NULL)
		return -1;
	strcpy(fx->dir, "/tmp/test_metrics.XXXXXX");
	if (mkdtemp(fx->dir) == NULL ||
	    spool_open(&fx->sp, fx->dir, 1, fx->err, sizeof(fx->err)) < 0 ||
	    state_open(&fx->st, fx->dir, 0, fx->err, sizeof(fx->err)) < 0) {
		free(fx);
		return -1;
	}
	*ctx = fx;
	return 0;
}

static int
teardown(void **ctx)
{
	struct fixture *fx = *ctx;

	state_close(fx->st);
	spool_close(fx->sp);
	nftw(fx->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return 0;
}

static void
test_label_escape(void **ctx)
{
	static const struct {
		const char *in, *want;
	} t[] = {
	    {"mailu", "mailu"}, {"a\"b", "a\\\"b"}, {"a\\b", "a\\\\b"},
	    {"a\nb", "a\\nb"},	{"", ""},
	};
	char out[64];

	(void)ctx;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		assert_int_equal(
		    metrics_label_escape(out, sizeof(out), t[i].in),
		    strlen(t[i].want));
		assert_string_equal(out, t[i].want);
	}
	/* cut, NUL-terminated, and says what it needed */
	assert_int_equal(metrics_label_escape(out, 4, "a\"bc"), 5);
	assert_string_equal(out, "a\\\"");
}

static void
put_msg(struct state_txn *txn, const char *id, enum queue_msg_state s)
{
	struct queue_rcpt_info r = {.address = (char *)"x@example.org"};
	struct queue_msg_info m = {0};

	snprintf(m.id, sizeof(m.id), "%s", id);
	m.state = s;
	m.queued_at = 1700000000;
	m.next_attempt =
	    s == QUEUE_MSG_QUEUED || s == QUEUE_MSG_DEFERRED ? 1700000100 : 0;
	m.sender = (char *)"a@example.org";
	m.rcpt = &r;
	m.nrcpt = 1;
	assert_int_equal(state_msg_put(txn, &m), 0);
}

struct walk {
	uint64_t counts[5];
};

static int
walk_cb(const struct queue_msg_info *m, void *arg)
{
	((struct walk *)arg)->counts[m->state]++;
	return 0;
}

/* The kept counts equal a walk of the records. */
static void
assert_counts(struct state *st, const uint64_t want[5])
{
	struct state_txn *txn;
	struct walk w = {{0}};
	uint64_t kept[5];

	assert_int_equal(state_begin(st, 0, &txn), 0);
	assert_int_equal(state_count(txn, kept), 0);
	assert_int_equal(state_foreach(txn, walk_cb, &w), 0);
	state_abort(txn);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(kept[i], w.counts[i]);
		assert_int_equal(kept[i], want[i]);
	}
}

static void
test_counts_kept(void **ctx)
{
	struct fixture *fx = *ctx;
	char ids[4][QUEUE_ID_LEN + 1];
	struct state_txn *txn;

	for (int i = 0; i < 4; i++)
		assert_int_equal(queue_id_new(ids[i]), 0);
	assert_int_equal(state_begin(fx->st, 1, &txn), 0);
	for (int i = 0; i < 4; i++)
		put_msg(txn, ids[i], QUEUE_MSG_QUEUED);
	assert_int_equal(state_commit(txn), 0);
	assert_counts(fx->st, (const uint64_t[5]){4, 0, 0, 0, 0});

	assert_int_equal(state_begin(fx->st, 1, &txn), 0);
	put_msg(txn, ids[0], QUEUE_MSG_DELIVERING);
	put_msg(txn, ids[1], QUEUE_MSG_DEFERRED);
	put_msg(txn, ids[2], QUEUE_MSG_FAILED);
	put_msg(txn, ids[2], QUEUE_MSG_FAILED); /* same state again */
	assert_int_equal(state_commit(txn), 0);
	assert_counts(fx->st, (const uint64_t[5]){1, 1, 1, 0, 1});

	/* an aborted change moves nothing */
	assert_int_equal(state_begin(fx->st, 1, &txn), 0);
	put_msg(txn, ids[3], QUEUE_MSG_HELD);
	assert_int_equal(state_msg_del(txn, ids[1]), 0);
	state_abort(txn);
	assert_counts(fx->st, (const uint64_t[5]){1, 1, 1, 0, 1});

	assert_int_equal(state_begin(fx->st, 1, &txn), 0);
	put_msg(txn, ids[3], QUEUE_MSG_HELD);
	assert_int_equal(state_msg_del(txn, ids[0]), 0);
	assert_int_equal(state_msg_del(txn, ids[1]), 0);
	assert_int_equal(state_msg_del(txn, ids[0]), -ENOENT);
	assert_int_equal(state_commit(txn), 0);
	assert_counts(fx->st, (const uint64_t[5]){0, 0, 0, 1, 1});

	/* reopened: the same, from the table */
	state_close(fx->st);
	assert_int_equal(state_open(&fx->st, fx->dir, 1, fx->err, 256), 0);
	assert_counts(fx->st, (const uint64_t[5]){0, 0, 0, 1, 1});
}

struct seen {
	char text[4096];
	size_t len;
};

static int
seen_cb(const char *key, uint64_t value, void *arg)
{
	struct seen *s = arg;

	s->len += (size_t)snprintf(s->text + s->len, sizeof(s->text) - s->len,
				   "%s=%llu;", key, (unsigned long long)value);
	return 0;
}

static void
test_counters(void **ctx)
{
	struct fixture *fx = *ctx;
	struct state_txn *txn;
	struct seen s = {0};

	assert_int_equal(state_begin(fx->st, 1, &txn), 0);
	assert_int_equal(metrics_count_outcome(txn, "mailu", "sent", 3), 0);
	assert_int_equal(metrics_count_outcome(txn, "mailu", "sent", 2), 0);
	assert_int_equal(metrics_count_outcome(txn, "local", "failed", 1), 0);
	assert_int_equal(metrics_count_outcome(txn, "local", "lost", 1),
			 -EINVAL);
	assert_int_equal(metrics_count_outcome(txn, "a:b", "sent", 1), -EINVAL);
	assert_int_equal(metrics_observe_session(txn, "mailu", 30), 0);
	assert_int_equal(metrics_observe_session(txn, "mailu", 700), 0);
	assert_int_equal(metrics_observe_session(txn, "mailu", 999999), 0);
	assert_int_equal(metrics_count_coalesced(txn, 4), 0);
	assert_int_equal(metrics_count_rate_limited(txn, "mailu", 2), 0);
	assert_int_equal(state_commit(txn), 0);

	assert_int_equal(state_begin(fx->st, 0, &txn), 0);
	assert_int_equal(metrics_count_coalesced(txn, 1), -EROFS);
	assert_int_equal(state_counter_foreach(txn, seen_cb, &s), 0);
	state_abort(txn);
	assert_non_null(strstr(s.text, "sent:mailu=5;"));
	assert_non_null(strstr(s.text, "failed:local=1;"));
	assert_non_null(strstr(s.text, "dur:mailu:00=1;"));
	assert_non_null(strstr(s.text, "dur:mailu:04=1;"));
	assert_non_null(strstr(s.text, "dur:mailu:11=1;"));
	assert_non_null(strstr(s.text, "dursum:mailu=1000729000;"));
	assert_non_null(strstr(s.text, "coalesced=4;"));
	assert_non_null(strstr(s.text, "ratelimited:mailu=2;"));
	assert_non_null(strstr(s.text, "created="));
}

/* The whole text for a small state: every family, every state, 0s. */
static void
test_render(void **ctx)
{
	struct fixture *fx = *ctx;
	const struct metrics_transport t[] = {{"mailu", 1}, {"local", -1}};
	char id[QUEUE_ID_LEN + 1], *text = NULL;
	struct state_txn *txn;
	size_t len = 0;
	FILE *fp;

	assert_int_equal(queue_id_new(id), 0);
	assert_int_equal(state_begin(fx->st, 1, &txn), 0);
	put_msg(txn, id, QUEUE_MSG_DEFERRED);
	assert_int_equal(metrics_count_outcome(txn, "mailu", "deferred", 1), 0);
	assert_int_equal(metrics_observe_session(txn, "mailu", 300), 0);
	/* a transport no longer configured keeps its counters */
	assert_int_equal(metrics_count_outcome(txn, "old", "sent", 7), 0);
	assert_int_equal(state_commit(txn), 0);

	assert_int_equal(state_begin(fx->st, 0, &txn), 0);
	fp = open_memstream(&text, &len);
	assert_non_null(fp);
	assert_int_equal(metrics_render(fp, fx->sp, txn, t, 2, 1, 1700000060),
			 0);
	fclose(fp);
	state_abort(txn);

	assert_non_null(strstr(text, "# TYPE spoold_up gauge\nspoold_up 1\n"));
	assert_non_null(
	    strstr(text, "spoold_queue_messages{state=\"queued\"} 0\n"));
	assert_non_null(
	    strstr(text, "spoold_queue_messages{state=\"deferred\"} 1\n"));
	assert_non_null(
	    strstr(text, "spoold_queue_messages{state=\"held\"} 0\n"));
	assert_non_null(
	    strstr(text, "spoold_queue_messages{state=\"failed\"} 0\n"));
	assert_non_null(
	    strstr(text, "spoold_queue_oldest_message_age_seconds 60\n"));
	assert_non_null(
	    strstr(text, "spoold_transport_up{transport=\"mailu\"} 1\n"));
	/* never judged: no sample */
	assert_null(strstr(text, "spoold_transport_up{transport=\"local\"}"));
	assert_non_null(strstr(text, "spoold_messages_total{transport=\"mailu\""
				     ",status=\"deferred\"} 1\n"));
	assert_non_null(strstr(text, "spoold_messages_total{transport=\"local\""
				     ",status=\"sent\"} 0\n"));
	assert_non_null(strstr(text, "spoold_messages_total{transport=\"old\","
				     "status=\"sent\"} 7\n"));
	assert_non_null(strstr(text, "spoold_delivery_duration_seconds_bucket{"
				     "transport=\"mailu\",le=\"0.25\"} 0\n"));
	assert_non_null(strstr(text, "spoold_delivery_duration_seconds_bucket{"
				     "transport=\"mailu\",le=\"0.5\"} 1\n"));
	assert_non_null(strstr(text, "spoold_delivery_duration_seconds_bucket{"
				     "transport=\"mailu\",le=\"+Inf\"} 1\n"));
	assert_non_null(strstr(text, "spoold_delivery_duration_seconds_sum{"
				     "transport=\"mailu\"} 0.300000\n"));
	assert_non_null(strstr(text, "spoold_coalesced_messages_total 0\n"));
	assert_non_null(strstr(text, "spoold_rate_limited_messages_total{"
				     "transport=\"local\"} 0\n"));
	assert_non_null(strstr(text, "spoold_messages_created{transport="));
	/* no address ever */
	assert_null(strchr(text, '@'));
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_label_escape),
	    cmocka_unit_test_setup_teardown(test_counts_kept, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_counters, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_render, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

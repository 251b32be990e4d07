/*
 * test_keyed.c - unit tests of coalescing and priority: the K, E and P
 * lines of a spool file (submission and the hostile parser), the record's
 * coalescing part, the urgent range of the due index, and the plan,
 * rewrite and key state of spoold/coalesce.c.
 *
 * Each test that needs a directory makes its own under /tmp.
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
#include <unistd.h>

#include "spool/queue.h"
#include "../../queue/queue_int.h"
#include "coalesce.h"

#define ERRLEN 256

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
	char *dir = strdup("/tmp/test_keyed.XXXXXX");

	if (dir == NULL || mkdtemp(dir) == NULL)
		return -1;
	*ctx = dir;
	return 0;
}

static int
teardown(void **ctx)
{
	nftw(*ctx, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(*ctx);
	return 0;
}

/* ---- the envelope's K, E and P lines ----------------------------------- */

static void
test_key_problem(void **ctx)
{
	static const struct {
		const char *key;
		int ok;
	} t[] = {
	    {"health-node7", 1},
	    {"disk:/var@host.example.org", 1},
	    {"", 0},
	    {"a b", 0},
	    {"a\tb", 0},
	    {"a\001b", 0},
	    {"a\x7f", 0},
	    {"caf\xc3\xa9", 0},
	    {"a\"b", 0},
	    {"a\\b", 0},
	};
	char big[SPOOL_KEY_MAX + 2];

	(void)ctx;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		assert_int_equal(
		    spool_key_problem(t[i].key, strlen(t[i].key)) == NULL,
		    t[i].ok);
	memset(big, 'k', sizeof(big));
	assert_null(spool_key_problem(big, SPOOL_KEY_MAX));
	assert_non_null(spool_key_problem(big, SPOOL_KEY_MAX + 1));
	/* a NUL inside the given length is a control byte */
	assert_non_null(spool_key_problem("a\0b", 3));
}

static void
test_parse_meta(void **ctx)
{
	static const struct {
		const char *lines; /* between S and R */
		int ok;
		const char *key;
		int64_t every;
		int urgent;
	} t[] = {
	    {"", 1, NULL, 0, 0},
	    {"K disk\n", 1, "disk", 0, 0},
	    {"K disk\nE 600\nP urgent\n", 1, "disk", 600, 1},
	    {"P normal\n", 1, NULL, 0, 0},
	    {"E 1\n", 1, NULL, 1, 0},
	    {"K disk\nK other\n", 0, NULL, 0, 0},
	    {"K a b\n", 0, NULL, 0, 0},
	    {"K a\x01z\n", 0, NULL, 0, 0},
	    {"K \n", 0, NULL, 0, 0},
	    {"E 0\n", 0, NULL, 0, 0},
	    {"E 99999999999\n", 0, NULL, 0, 0},
	    {"E -5\n", 0, NULL, 0, 0},
	    {"E 10\nE 10\n", 0, NULL, 0, 0},
	    {"P high\n", 0, NULL, 0, 0},
	    {"P urgent\nP urgent\n", 0, NULL, 0, 0},
	    {"P urgentx\n", 0, NULL, 0, 0},
	};
	char data[512], err[ERRLEN];

	(void)ctx;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct spool_envelope env;
		size_t body;
		int n = snprintf(data, sizeof(data),
				 "SPOOLD 1\nS a@example.org\n%sR b@example.org"
				 "\n\nSubject: x\r\n\r\nx\r\n",
				 t[i].lines);
		int rc = spool_pickup_check(data, (size_t)n, 1024, &env, &body,
					    err, sizeof(err));

		if (!t[i].ok) {
			if (rc != -EINVAL)
				fail_msg("case %zu accepted", i);
			continue;
		}
		if (rc != 0)
			fail_msg("case %zu: %s", i, err);
		if (t[i].key == NULL)
			assert_null(env.key);
		else
			assert_string_equal(env.key, t[i].key);
		assert_int_equal(env.every, t[i].every);
		assert_int_equal(env.urgent, t[i].urgent);
		spool_envelope_free(&env);
	}
	/* 10 KB of key: refused, never cut */
	{
		size_t big = 10240, off;
		char *p = malloc(big + 128);
		struct spool_envelope env;
		size_t body;

		assert_non_null(p);
		off = (size_t)sprintf(p, "SPOOLD 1\nS a@example.org\nK ");
		memset(p + off, 'k', big);
		off += big;
		off += (size_t)sprintf(p + off, "\nR b@example.org\n\nx\r\n");
		assert_int_equal(spool_pickup_check(p, off, 1024, &env, &body,
						    err, sizeof(err)),
				 -EINVAL);
		assert_non_null(strstr(err, "key longer"));
		free(p);
	}
}

static void
test_submit_meta(void **ctx)
{
	static const char *const rcpt[] = {"b@example.org"};
	struct spool_meta meta = {
	    .key = "health-node7", .every = 3600, .urgent = 1};
	struct spool_meta bad = {.key = "a\nP urgent"};
	char id[QUEUE_ID_LEN + 1], err[ERRLEN];
	struct spool_pickup p;
	struct spool *sp;

	assert_int_equal(spool_open(&sp, *ctx, 1, err, sizeof(err)), 0);
	assert_int_equal(queue_id_new(id), 0);
	assert_int_equal(spool_submit_meta(sp, id, "a@example.org", rcpt, 1,
					   &meta, "Subject: x\r\n\r\nx\r\n", 17,
					   err, sizeof(err)),
			 0);
	assert_int_equal(spool_pickup_read(sp, QUEUE_DIR_NEW, id, 1024, &p, err,
					   sizeof(err)),
			 0);
	assert_string_equal(p.env.key, "health-node7");
	assert_int_equal(p.env.every, 3600);
	assert_int_equal(p.env.urgent, 1);
	spool_pickup_free(&p);
	/* a key that would inject an envelope line is refused, nothing
	 * written */
	assert_int_equal(queue_id_new(id), 0);
	assert_int_equal(spool_submit_meta(sp, id, "a@example.org", rcpt, 1,
					   &bad, "x", 1, err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(spool_stat(sp, QUEUE_DIR_NEW, id, NULL, NULL),
			 -ENOENT);
	spool_close(sp);
}

/* ---- the record and the due index --------------------------------------- */

static void
msg_init(struct queue_msg_info *m, struct queue_rcpt_info *r, const char *id,
	 enum queue_msg_state s, int64_t next)
{
	memset(m, 0, sizeof(*m));
	snprintf(m->id, sizeof(m->id), "%s", id);
	m->state = s;
	m->queued_at = 1700000000;
	m->next_attempt = next;
	m->sender = (char *)"a@example.org";
	r->address = (char *)"b@example.org";
	r->state = QUEUE_RCPT_PENDING;
	r->reply = NULL;
	m->rcpt = r;
	m->nrcpt = 1;
}

static void
test_record_key(void **ctx)
{
	struct queue_msg_info m, got;
	struct queue_rcpt_info r;
	unsigned char *rec;
	size_t len;

	(void)ctx;
	msg_init(&m, &r, "0123456789abcdef01234567", QUEUE_MSG_DEFERRED, 5);
	m.key = (char *)"disk";
	m.repeats = 14;
	m.first_at = 1700000100;
	m.last_at = 1700000200;
	m.every = 600;
	m.flags = QUEUE_MSG_F_DIGEST;
	assert_int_equal(queue__record_encode(&m, &rec, &len), 0);
	memset(&got, 0, sizeof(got));
	assert_int_equal(queue__record_decode(rec, len, &got), 0);
	assert_string_equal(got.key, "disk");
	assert_int_equal(got.repeats, 14);
	assert_int_equal(got.first_at, 1700000100);
	assert_int_equal(got.last_at, 1700000200);
	assert_int_equal(got.every, 600);
	assert_int_equal(got.flags, QUEUE_MSG_F_DIGEST);
	queue_msg_info_free(&got);
	/* cut anywhere inside the key's part: refused, never read short */
	for (size_t i = len - 28 - 4 - 4 + 1; i < len; i++)
		assert_int_equal(queue__record_decode(rec, i, &got), -EBADMSG);
	/* trailing bytes after it are refused too */
	{
		unsigned char *more = malloc(len + 1);

		assert_non_null(more);
		memcpy(more, rec, len);
		more[len] = 0;
		assert_int_equal(queue__record_decode(more, len + 1, &got),
				 -EBADMSG);
		free(more);
	}
	free(rec);
}

static void
test_due_urgent(void **ctx)
{
	static const char *const ids[] = {
	    "000000000000010000000000", "000000000000020000000000",
	    "000000000000030000000000", "000000000000040000000000"};
	char out[8][QUEUE_ID_LEN + 1], err[ERRLEN];
	struct queue_msg_info m;
	struct queue_rcpt_info r;
	struct state_txn *tx;
	struct state *st;
	int64_t next;
	size_t n;

	assert_int_equal(state_open(&st, *ctx, 0, err, sizeof(err)), 0);
	assert_int_equal(state_begin(st, 1, &tx), 0);
	/* two of the backlog, due at 100 and 300; urgent ones at 200 and
	 * 400 */
	for (size_t i = 0; i < 4; i++) {
		msg_init(&m, &r, ids[i], QUEUE_MSG_DEFERRED,
			 100 + 100 * (int64_t)i);
		if (i % 2 == 1)
			m.flags = QUEUE_MSG_F_URGENT;
		assert_int_equal(state_msg_put(tx, &m), 0);
	}
	assert_int_equal(state_due(tx, 1000, 8, out, &n, &next), 0);
	assert_int_equal(n, 4);
	assert_string_equal(out[0], ids[1]);
	assert_string_equal(out[1], ids[3]);
	assert_string_equal(out[2], ids[0]);
	assert_string_equal(out[3], ids[2]);
	assert_int_equal(next, 0);
	/* only what is due, and the next time across both ranges */
	assert_int_equal(state_due(tx, 250, 8, out, &n, &next), 0);
	assert_int_equal(n, 2);
	assert_string_equal(out[0], ids[1]);
	assert_string_equal(out[1], ids[0]);
	assert_int_equal(next, 300);
	assert_int_equal(state_due(tx, 150, 8, out, &n, &next), 0);
	assert_int_equal(n, 1);
	assert_int_equal(next, 200);
	/* a limit takes the urgent first */
	assert_int_equal(state_due(tx, 1000, 1, out, &n, &next), 0);
	assert_int_equal(n, 1);
	assert_string_equal(out[0], ids[1]);
	/* not yet due, for a flush: both ranges */
	assert_int_equal(state_due_after(tx, 150, 8, out, &n), 0);
	assert_int_equal(n, 3);
	/* a state change takes an urgent entry out of the index */
	msg_init(&m, &r, ids[1], QUEUE_MSG_DELIVERING, 0);
	m.flags = QUEUE_MSG_F_URGENT;
	assert_int_equal(state_msg_put(tx, &m), 0);
	assert_int_equal(state_msg_del(tx, ids[3]), 0);
	assert_int_equal(state_due(tx, 1000, 8, out, &n, &next), 0);
	assert_int_equal(n, 2);
	assert_string_equal(out[0], ids[0]);
	assert_int_equal(state_commit(tx), 0);
	state_close(st);
}

/* ---- spoold/coalesce.c ----------------------------------------------------
 */

static void
env_init(struct spool_envelope *env, const char *key, int64_t every)
{
	memset(env, 0, sizeof(*env));
	env->key = (char *)key;
	env->every = every;
}

/* Picks up id as the scheduler does: plan, apply, put. */
static void
pickup(struct state_txn *tx, const char *id, const struct spool_envelope *env,
       int64_t now, struct coalesce_plan *pl)
{
	struct queue_msg_info m;
	struct queue_rcpt_info r;

	assert_int_equal(coalesce_plan(tx, id, 0, env, now, pl), 0);
	msg_init(&m, &r, id, QUEUE_MSG_QUEUED, now);
	assert_int_equal(coalesce_apply(tx, pl, env, &m), 0);
	assert_int_equal(state_msg_put(tx, &m), 0);
	free(m.key); /* the one string apply made */
}

static void
test_coalesce_plan(void **ctx)
{
	static const char *const ids[] = {
	    "000000000000010000000000", "000000000000020000000000",
	    "000000000000030000000000", "000000000000040000000000",
	    "000000000000050000000000"};
	struct spool_envelope env, urgent;
	struct coalesce_plan pl;
	struct queue_msg_info m;
	struct state_txn *tx;
	struct state *st;
	char err[ERRLEN];

	assert_int_equal(state_open(&st, *ctx, 0, err, sizeof(err)), 0);
	assert_int_equal(state_begin(st, 1, &tx), 0);
	env_init(&env, "disk", 60);
	pickup(tx, ids[0], &env, 1000, &pl);
	assert_int_equal(pl.verdict, COALESCE_QUEUED);
	/* queued still: the next one replaces it and counts */
	pickup(tx, ids[1], &env, 1005, &pl);
	assert_int_equal(pl.verdict, COALESCE_MERGED);
	assert_string_equal(pl.old_id, ids[0]);
	assert_int_equal(pl.repeats, 2);
	assert_int_equal(pl.first_at, 1000); /* the first's */
	assert_int_equal(pl.last_at, 1005);
	assert_int_equal(state_msg_get(tx, ids[0], &m), -ENOENT);
	/* urgent: never merged or held, and the key's state untouched */
	env_init(&urgent, "disk", 60);
	urgent.urgent = 1;
	assert_int_equal(coalesce_plan(tx, ids[4], 0, &urgent, 1006, &pl), 0);
	assert_int_equal(pl.verdict, COALESCE_NONE);
	/* sent at 1010: the window runs to 1070 */
	assert_int_equal(state_msg_get(tx, ids[1], &m), 0);
	assert_int_equal(coalesce_sent(tx, &m, 1010), 0);
	queue_msg_info_free(&m);
	assert_int_equal(state_msg_del(tx, ids[1]), 0);
	pickup(tx, ids[2], &env, 1020, &pl);
	assert_int_equal(pl.verdict, COALESCE_HELD);
	assert_int_equal(pl.next_attempt, 1070);
	assert_int_equal(state_msg_get(tx, ids[2], &m), 0);
	assert_int_equal(m.state, QUEUE_MSG_DEFERRED);
	assert_true(m.flags & QUEUE_MSG_F_DIGEST);
	queue_msg_info_free(&m);
	/* a repeat merges into the held digest and keeps its time */
	pickup(tx, ids[3], &env, 1030, &pl);
	assert_int_equal(pl.verdict, COALESCE_MERGED);
	assert_int_equal(pl.repeats, 2);
	assert_int_equal(pl.next_attempt, 1070);
	assert_true(pl.digest);
	/* after the window another key's or this key's message goes */
	assert_int_equal(state_msg_get(tx, ids[3], &m), 0);
	assert_int_equal(coalesce_sent(tx, &m, 1070), 0);
	queue_msg_info_free(&m);
	assert_int_equal(state_msg_del(tx, ids[3]), 0);
	assert_int_equal(coalesce_plan(tx, ids[4], 0, &env, 1131, &pl), 0);
	assert_int_equal(pl.verdict, COALESCE_QUEUED);
	env_init(&env, "other", 60);
	assert_int_equal(coalesce_plan(tx, ids[4], 0, &env, 1071, &pl), 0);
	assert_int_equal(pl.verdict, COALESCE_QUEUED);
	/* another user's message of the same key is a message of its own:
	 * it neither replaces nor is held by uid 0's */
	env_init(&env, "disk", 60);
	assert_int_equal(coalesce_plan(tx, ids[4], 65534, &env, 1072, &pl), 0);
	assert_int_equal(pl.verdict, COALESCE_QUEUED);
	assert_int_equal(state_commit(tx), 0);
	state_close(st);
}

/* Key entries go when they hold nothing back, and only then. */
static void
test_coalesce_expire(void **ctx)
{
	static const char *const ids[] = {"000000000000010000000000",
					  "000000000000020000000000"};
	struct spool_envelope env;
	struct coalesce_plan pl;
	struct queue_msg_info m;
	struct state_txn *tx;
	struct state *st;
	char err[ERRLEN], val[64], name[64];

	assert_int_equal(state_open(&st, *ctx, 0, err, sizeof(err)), 0);
	assert_int_equal(state_begin(st, 1, &tx), 0);
	/* a message of "disk" waits: its entry stays, however late */
	env_init(&env, "disk", 60);
	pickup(tx, ids[0], &env, 1000, &pl);
	assert_int_equal(coalesce_expire(tx, 999999, 256), 0);
	assert_int_equal(state_meta_get(tx, "coalesce 0 disk", val, 64), 0);
	/* sent at 1010 with a window of 60: kept until 1070 */
	assert_int_equal(state_msg_get(tx, ids[0], &m), 0);
	assert_int_equal(coalesce_sent(tx, &m, 1010), 0);
	queue_msg_info_free(&m);
	assert_int_equal(state_msg_del(tx, ids[0]), 0);
	assert_int_equal(coalesce_expire(tx, 1069, 256), 0);
	/* within it, the next message is still held */
	assert_int_equal(coalesce_plan(tx, ids[1], 0, &env, 1069, &pl), 0);
	assert_int_equal(pl.verdict, COALESCE_HELD);
	assert_int_equal(coalesce_expire(tx, 1070, 256), 1);
	assert_int_equal(state_meta_get(tx, "coalesce 0 disk", val, 64),
			 -ENOENT);
	/* forgotten after its window: the next one goes at once */
	assert_int_equal(coalesce_plan(tx, ids[1], 0, &env, 1071, &pl), 0);
	assert_int_equal(pl.verdict, COALESCE_QUEUED);
	/* a waiting message deleted by an operator: its entry goes */
	assert_int_equal(state_meta_put(tx, "coalesce 0 gone",
					"000000000000090000000000 0 0"),
			 0);
	/* an entry of two fields (an older spoold's): the longest window */
	assert_int_equal(state_meta_put(tx, "coalesce 0 old", "- 1000"), 0);
	assert_int_equal(coalesce_expire(tx, 2000, 256), 1);
	assert_int_equal(state_meta_get(tx, "coalesce 0 gone", val, 64),
			 -ENOENT);
	assert_int_equal(state_meta_get(tx, "coalesce 0 old", val, 64), 0);
	assert_int_equal(coalesce_expire(tx, 1000 + SPOOL_EVERY_MAX, 256), 1);
	/* other metadata is not the sweep's */
	assert_int_equal(state_meta_put(tx, "coalescent", "x"), 0);
	/* at most max a pass */
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "coalesce 0 k%03d", i);
		assert_int_equal(state_meta_put(tx, name, "- 1000 5"), 0);
	}
	assert_int_equal(coalesce_expire(tx, 1005, 256), 256);
	assert_int_equal(coalesce_expire(tx, 1005, 256), 44);
	assert_int_equal(coalesce_expire(tx, 1005, 256), 0);
	assert_int_equal(state_meta_get(tx, "coalescent", val, 64), 0);
	assert_int_equal(state_commit(tx), 0);
	state_close(st);
}

static void
test_coalesce_rewrite(void **ctx)
{
	static const char msg[] = "From: a@example.org\r\n"
				  "Subject: disk\r\n full\r\n"
				  "To: b@example.org\r\n"
				  "\r\n"
				  "Subject: not this\r\n";
	static const char nosubj[] = "From: a@example.org\n\nbody\n";
	char *out;
	size_t len;

	(void)ctx;
	assert_int_equal(coalesce_rewrite(msg, strlen(msg), 14, 1764000000,
					  1764000600, &out, &len),
			 0);
	assert_int_equal(len, strlen(out) + 0 * len);
	assert_non_null(strstr(out, "X-Spoold-Repeated: 14 times between "
				    "2025-11-24T16:00:00Z and "
				    "2025-11-24T16:10:00Z\r\n"));
	assert_non_null(strstr(out, "Subject: disk\r\n full\r\n (repeated 14 "
				    "times between"));
	assert_non_null(strstr(out, "\r\n\r\nSubject: not this\r\n"));
	free(out);
	assert_int_equal(
	    coalesce_rewrite(nosubj, strlen(nosubj), 1, 1, 1, &out, &len), 0);
	assert_non_null(strstr(out, "Subject: repeated 1 time between"));
	assert_non_null(strstr(out, "From: a@example.org\n\nbody\n"));
	free(out);
	assert_int_equal(coalesce_needs_rewrite(1), 0);
	assert_int_equal(coalesce_needs_rewrite(2), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_key_problem),
	    cmocka_unit_test(test_parse_meta),
	    cmocka_unit_test_setup_teardown(test_submit_meta, setup, teardown),
	    cmocka_unit_test(test_record_key),
	    cmocka_unit_test_setup_teardown(test_due_urgent, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_coalesce_plan, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_coalesce_expire, setup,
					    teardown),
	    cmocka_unit_test(test_coalesce_rewrite),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

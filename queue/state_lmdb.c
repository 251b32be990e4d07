/*
 * state_lmdb.c - retry state of the queue in an LMDB environment in
 * SPOOL/state. The state is derived from the spool files and may be
 * deleted at any time; spoold rebuilds it.
 *
 * Databases:
 *   msg   queue id (24 bytes) -> record (see record codec below)
 *   due   8-byte big-endian next_attempt + queue id -> empty; holds exactly
 *         the queued and deferred messages, so the next due messages are
 *         the first keys and nothing scans the whole queue
 *   meta  string -> string, daemon metadata
 *   metrics  string -> 8-byte big-endian counter: what spoold has done
 *         (deliveries by transport and outcome, session durations), kept
 *         in the same transactions as the outcomes they count, and the
 *         number of records in each state ("msgs:STATE"), kept in step by
 *         state_msg_put and state_msg_del, so state_count reads five keys
 *         instead of the whole queue. "created" is the unix time the table
 *         was made: counters start from zero then (a new or rebuilt
 *         state). A state written before this table existed gets it, its
 *         counts taken by one walk of "msg", when a writer opens it;
 *         until then state_count walks "msg" (decoding only the state
 *         byte, about 10 ms for 100,000 messages).
 *
 * Commits are fully durable (default LMDB flags plus MDB_NOTLS). The map
 * starts at 256 MiB (SPOOL_STATE_MAPSIZE in the environment overrides it,
 * for tests); when it fills, the transaction is dropped, the map doubles
 * and -ENOSPC tells the caller to retry.
 *
 * Failure policy: LMDB codes are translated in state_err() only; a corrupt
 * environment or record is -EBADMSG so the caller can remove the state and
 * rebuild it from the spool. Nothing returned points into LMDB memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "queue_int.h"

#define STATE_MAPSIZE_DEFAULT ((size_t)256 << 20)
/* grow no further than this; a queue this large has other problems */
#define STATE_MAPSIZE_MAX ((size_t)1 << 40)
#define STATE_DUE_KEY_LEN (8 + QUEUE_ID_LEN)
/* version, state, queued_at, next_attempt, size, attempts */
#define STATE_REC_FIXED (1 + 1 + 8 + 8 + 8 + 4)
#define STATE_STR_NULL UINT32_MAX
#define STATE_NSTATES 5
#define STATE_COUNTER_KEY_MAX 200

struct state {
	MDB_env *env;
	MDB_dbi msg;
	MDB_dbi due;
	MDB_dbi meta;
	MDB_dbi metrics;
	int has_metrics; /* 0: a readonly open of a state older than it */
	int readonly;
	/* where LMDB mapped data.mdb, once state_map_release found it */
	uintptr_t map_lo, map_hi;
	/* records walked since the last release */
	unsigned walked;
};

struct state_txn {
	struct state *st;
	MDB_txn *txn;
	int write;
	/* a put hit MDB_MAP_FULL: the txn is dead, grow the map when it ends */
	int map_full;
};

static void state_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
state_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/*
 * The one place LMDB results become -errno. LMDB passes system errors
 * through as positive errno values; those keep their meaning (EACCES,
 * ENOENT, ENOSPC from a full disk, ...).
 */
static int
state_err(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
		return -ENOSPC;
	case MDB_CORRUPTED:
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
	case MDB_PAGE_NOTFOUND:
		return -EBADMSG;
	case EDQUOT:
		return -ENOSPC;
	}
	if (rc > 0)
		return -rc;
	return -EIO;
}

/* ---- record codec ---------------------------------------------------- */

/*
 * Record, version 1, all integers big-endian:
 *   u8 version, u8 state, i64 queued_at, i64 next_attempt, u64 size,
 *   u32 attempts, str sender, str last_error, str transport, u32 nrcpt,
 *   then per recipient: u8 state, str address, str reply;
 *   then, only when there is a history or an owner or flags, u32 nhistory
 *   (may be 0) and per attempt: i64 at, str transport, str result;
 *   then, only when there is an owner or flags or a key, u32 owner_uid,
 *   u32 flags; then, only when there is a key, str key, u32 repeats,
 *   i64 first_at, i64 last_at, i64 every
 *   (records without these parts still read).
 * str is a u32 length (0xffffffff for NULL) and that many bytes, no NUL.
 */

static void
put_be(unsigned char *p, uint64_t v, int n)
{
	int i;

	for (i = n - 1; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

static uint64_t
get_be(const unsigned char *p, int n)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

static size_t
rec_str_size(const char *s)
{
	return 4 + (s != NULL ? strlen(s) : 0);
}

static unsigned char *
rec_put_str(unsigned char *p, const char *s)
{
	size_t l;

	if (s == NULL) {
		put_be(p, STATE_STR_NULL, 4);
		return p + 4;
	}
	l = strlen(s);
	put_be(p, l, 4);
	memcpy(p + 4, s, l);
	return p + 4 + l;
}

int
queue__record_encode(const struct queue_msg_info *m, unsigned char **out,
		     size_t *outlen)
{
	unsigned char *buf, *p;
	size_t need, i;
	int tail;

	*out = NULL;
	if ((unsigned)m->state >= STATE_NSTATES || m->nrcpt > UINT32_MAX ||
	    (m->nrcpt > 0 && m->rcpt == NULL))
		return -EINVAL;
	need = STATE_REC_FIXED + rec_str_size(m->sender) +
	       rec_str_size(m->last_error) + rec_str_size(m->transport) + 4;
	for (i = 0; i < m->nrcpt; i++) {
		if (m->rcpt[i].address == NULL ||
		    (unsigned)m->rcpt[i].state > QUEUE_RCPT_FAILED)
			return -EINVAL;
		need += 1 + rec_str_size(m->rcpt[i].address) +
			rec_str_size(m->rcpt[i].reply);
	}
	tail = m->owner_uid != 0 || m->flags != 0 || m->key != NULL;
	if (m->nhistory > 0 || tail)
		need += 4;
	if (tail)
		need += 8;
	if (m->key != NULL)
		need += rec_str_size(m->key) + 4 + 24;
	for (i = 0; i < m->nhistory; i++)
		need += 8 + rec_str_size(m->history[i].transport) +
			rec_str_size(m->history[i].result);
	/* lengths must fit the u32 fields and stay clear of the NULL mark */
	if (need >= STATE_STR_NULL)
		return -EINVAL;
	buf = malloc(need);
	if (buf == NULL)
		return -ENOMEM;
	p = buf;
	*p++ = QUEUE_RECORD_VERSION;
	*p++ = (unsigned char)m->state;
	put_be(p, (uint64_t)m->queued_at, 8);
	put_be(p + 8, (uint64_t)m->next_attempt, 8);
	put_be(p + 16, m->size, 8);
	put_be(p + 24, m->attempts, 4);
	p += 28;
	p = rec_put_str(p, m->sender);
	p = rec_put_str(p, m->last_error);
	p = rec_put_str(p, m->transport);
	put_be(p, m->nrcpt, 4);
	p += 4;
	for (i = 0; i < m->nrcpt; i++) {
		*p++ = (unsigned char)m->rcpt[i].state;
		p = rec_put_str(p, m->rcpt[i].address);
		p = rec_put_str(p, m->rcpt[i].reply);
	}
	if (m->nhistory > 0 || tail) {
		put_be(p, m->nhistory, 4);
		p += 4;
	}
	for (i = 0; i < m->nhistory; i++) {
		put_be(p, (uint64_t)m->history[i].at, 8);
		p = rec_put_str(p + 8, m->history[i].transport);
		p = rec_put_str(p, m->history[i].result);
	}
	if (tail) {
		put_be(p, m->owner_uid, 4);
		put_be(p + 4, m->flags, 4);
		p += 8;
	}
	if (m->key != NULL) {
		p = rec_put_str(p, m->key);
		put_be(p, m->repeats, 4);
		put_be(p + 4, (uint64_t)m->first_at, 8);
		put_be(p + 12, (uint64_t)m->last_at, 8);
		put_be(p + 20, (uint64_t)m->every, 8);
		p += 28;
	}
	*out = buf;
	*outlen = (size_t)(p - buf);
	return 0;
}

struct rec_reader {
	const unsigned char *p;
	size_t left;
};

static int
rec_get(struct rec_reader *r, size_t n, const unsigned char **out)
{
	if (n > r->left)
		return -EBADMSG;
	*out = r->p;
	r->p += n;
	r->left -= n;
	return 0;
}

static int
rec_get_str(struct rec_reader *r, char **out)
{
	const unsigned char *b;
	uint32_t l;

	*out = NULL;
	if (rec_get(r, 4, &b) < 0)
		return -EBADMSG;
	l = (uint32_t)get_be(b, 4);
	if (l == STATE_STR_NULL)
		return 0;
	if (rec_get(r, l, &b) < 0 || memchr(b, '\0', l) != NULL)
		return -EBADMSG;
	*out = malloc((size_t)l + 1);
	if (*out == NULL)
		return -ENOMEM;
	memcpy(*out, b, l);
	(*out)[l] = '\0';
	return 0;
}

static int
rec_get_history(struct rec_reader *r, struct queue_msg_info *m)
{
	const unsigned char *b;
	uint32_t n;
	int rc;

	if (rec_get(r, 4, &b) < 0)
		return -EBADMSG;
	n = (uint32_t)get_be(b, 4);
	/* each attempt takes at least 16 bytes; none is written only
	 * before an owner */
	if (n > r->left / 16 || (n == 0 && r->left < 8))
		return -EBADMSG;
	if (n > 0 && (m->history = calloc(n, sizeof(*m->history))) == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		struct queue_attempt *a = &m->history[i];

		if (rec_get(r, 8, &b) < 0)
			return -EBADMSG;
		a->at = (int64_t)get_be(b, 8);
		m->nhistory = i + 1;
		if ((rc = rec_get_str(r, &a->transport)) < 0 ||
		    (rc = rec_get_str(r, &a->result)) < 0)
			return rc;
	}
	if (r->left == 0)
		return 0;
	if (rec_get(r, 8, &b) < 0)
		return -EBADMSG;
	m->owner_uid = (uint32_t)get_be(b, 4);
	m->flags = (uint32_t)get_be(b + 4, 4);
	if (r->left == 0)
		return 0;
	/* the coalescing part: a key, never NULL here */
	if ((rc = rec_get_str(r, &m->key)) < 0)
		return rc;
	if (m->key == NULL || rec_get(r, 28, &b) < 0 || r->left != 0)
		return -EBADMSG;
	m->repeats = (uint32_t)get_be(b, 4);
	m->first_at = (int64_t)get_be(b + 4, 8);
	m->last_at = (int64_t)get_be(b + 12, 8);
	m->every = (int64_t)get_be(b + 20, 8);
	return 0;
}

int
queue__record_decode(const unsigned char *p, size_t len,
		     struct queue_msg_info *out)
{
	struct rec_reader r = {p, len};
	struct queue_msg_info m = {0};
	const unsigned char *b;
	uint32_t n, i;
	int rc;

	if (len < STATE_REC_FIXED || p[0] != QUEUE_RECORD_VERSION ||
	    p[1] >= STATE_NSTATES)
		return -EBADMSG;
	rec_get(&r, STATE_REC_FIXED, &b);
	m.state = (enum queue_msg_state)b[1];
	m.queued_at = (int64_t)get_be(b + 2, 8);
	m.next_attempt = (int64_t)get_be(b + 10, 8);
	m.size = get_be(b + 18, 8);
	m.attempts = (uint32_t)get_be(b + 26, 4);
	if ((rc = rec_get_str(&r, &m.sender)) < 0 ||
	    (rc = rec_get_str(&r, &m.last_error)) < 0 ||
	    (rc = rec_get_str(&r, &m.transport)) < 0)
		goto fail;
	rc = -EBADMSG;
	if (rec_get(&r, 4, &b) < 0)
		goto fail;
	n = (uint32_t)get_be(b, 4);
	/* each recipient takes at least 9 bytes: refuse absurd counts early */
	if (n > r.left / 9)
		goto fail;
	if (n > 0) {
		m.rcpt = calloc(n, sizeof(*m.rcpt));
		if (m.rcpt == NULL) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	for (i = 0; i < n; i++) {
		struct queue_rcpt_info *ri = &m.rcpt[i];

		rc = -EBADMSG;
		if (rec_get(&r, 1, &b) < 0 || b[0] > QUEUE_RCPT_FAILED)
			goto fail;
		ri->state = (enum queue_rcpt_state)b[0];
		m.nrcpt = i + 1;
		if ((rc = rec_get_str(&r, &ri->address)) < 0 ||
		    (rc = rec_get_str(&r, &ri->reply)) < 0)
			goto fail;
		rc = -EBADMSG;
		if (ri->address == NULL)
			goto fail;
	}
	m.nrcpt = n;
	if (r.left > 0 && (rc = rec_get_history(&r, &m)) < 0)
		goto fail;
	memcpy(m.id, out->id, sizeof(m.id));
	*out = m;
	return 0;
fail:
	queue_msg_info_free(&m);
	return rc;
}

void
queue_msg_info_free(struct queue_msg_info *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->nrcpt; i++) {
		free(m->rcpt[i].address);
		free(m->rcpt[i].reply);
	}
	free(m->rcpt);
	for (i = 0; i < m->nhistory; i++) {
		free(m->history[i].transport);
		free(m->history[i].result);
	}
	free(m->history);
	free(m->sender);
	free(m->last_error);
	free(m->transport);
	free(m->key);
	m->key = NULL;
	m->history = NULL;
	m->nhistory = 0;
	m->rcpt = NULL;
	m->nrcpt = 0;
	m->sender = NULL;
	m->last_error = NULL;
	m->transport = NULL;
}

/* ---- environment ------------------------------------------------------ */

static int
state_mapsize_conf(size_t *out, char *err, size_t errlen)
{
	const char *s = getenv("SPOOL_STATE_MAPSIZE");
	unsigned long long v;
	char *end;

	*out = STATE_MAPSIZE_DEFAULT;
	if (s == NULL || s[0] == '\0')
		return 0;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || s[0] < '0' || s[0] > '9' ||
	    v < 4096 || v > STATE_MAPSIZE_MAX) {
		state_errf(err, errlen,
			   "state: SPOOL_STATE_MAPSIZE=%s is not a size in "
			   "bytes between 4096 and %zu",
			   s, STATE_MAPSIZE_MAX);
		return -EINVAL;
	}
	*out = (size_t)v;
	return 0;
}

/*
 * LMDB trusts its files: a data.mdb shorter than its meta page claims
 * would fault (SIGBUS) on the first access to a missing page, so check the
 * size before any lookup.
 */
static int
state_check_size(MDB_env *env)
{
	MDB_envinfo info;
	MDB_stat stat;
	struct stat sb;
	mdb_filehandle_t fd;
	int rc;

	if ((rc = mdb_env_info(env, &info)) != 0 ||
	    (rc = mdb_env_stat(env, &stat)) != 0 ||
	    (rc = mdb_env_get_fd(env, &fd)) != 0)
		return state_err(rc);
	if (fstat(fd, &sb) < 0)
		return -errno;
	if ((uint64_t)sb.st_size <
	    ((uint64_t)info.me_last_pgno + 1) * stat.ms_psize)
		return -EBADMSG;
	return 0;
}

/* The counts of records by state, by one walk of "msg". */
static int
state_count_walk(MDB_txn *txn, MDB_dbi msg, uint64_t counts[STATE_NSTATES])
{
	MDB_cursor *cur;
	MDB_val k, v;
	const unsigned char *p;
	int rc;

	memset(counts, 0, STATE_NSTATES * sizeof(counts[0]));
	rc = mdb_cursor_open(txn, msg, &cur);
	if (rc != 0)
		return state_err(rc);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		p = v.mv_data;
		if (v.mv_size < 2 || p[0] != QUEUE_RECORD_VERSION ||
		    p[1] >= STATE_NSTATES) {
			rc = MDB_CORRUPTED;
			break;
		}
		counts[p[1]]++;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : state_err(rc);
}

static int
state_counter_key(const char *key, MDB_val *k)
{
	size_t l;

	if (key == NULL || (l = strlen(key)) == 0 || l > STATE_COUNTER_KEY_MAX)
		return -EINVAL;
	k->mv_size = l;
	k->mv_data = (void *)key;
	return 0;
}

/* Writes value under key in the metrics table: 0 or an LMDB code. */
static int
state_counter_set(MDB_txn *txn, MDB_dbi dbi, const char *key, uint64_t value)
{
	unsigned char buf[8];
	MDB_val k, v;

	if (state_counter_key(key, &k) < 0)
		return EINVAL;
	put_be(buf, value, 8);
	v.mv_size = sizeof(buf);
	v.mv_data = buf;
	return mdb_put(txn, dbi, &k, &v, 0);
}

/* The counter under key, 0 if absent or not a counter. */
static uint64_t
state_counter_read(MDB_txn *txn, MDB_dbi dbi, const char *key, int *found)
{
	MDB_val k, v;

	*found = 0;
	if (state_counter_key(key, &k) < 0 || mdb_get(txn, dbi, &k, &v) != 0 ||
	    v.mv_size != 8)
		return 0;
	*found = 1;
	return get_be(v.mv_data, 8);
}

/*
 * A writer's first open of a state without "created" in its metrics
 * table (new, rebuilt, or older than the table): counts the records by
 * state once and stamps the time the counters start from.
 */
static int
state_metrics_init(struct state *st, MDB_txn *txn)
{
	uint64_t counts[STATE_NSTATES];
	char key[64];
	int found, rc;

	state_counter_read(txn, st->metrics, "created", &found);
	if (found)
		return 0;
	rc = state_count_walk(txn, st->msg, counts);
	if (rc < 0)
		return rc;
	for (int i = 0; i < STATE_NSTATES && rc == 0; i++) {
		snprintf(key, sizeof(key), "msgs:%s",
			 queue_msg_state_name((enum queue_msg_state)i));
		rc = state_counter_set(txn, st->metrics, key, counts[i]);
	}
	if (rc == 0)
		rc = state_counter_set(txn, st->metrics, "created",
				       (uint64_t)time(NULL));
	return state_err(rc);
}

/* Opens the four databases once; the handles live as long as env. */
static int
state_open_dbis(struct state *st)
{
	unsigned int flags = st->readonly ? 0 : MDB_CREATE;
	MDB_txn *txn;
	MDB_stat ms;
	int rc;

	rc = mdb_txn_begin(st->env, NULL, st->readonly ? MDB_RDONLY : 0, &txn);
	if (rc != 0)
		return state_err(rc);
	if ((rc = mdb_dbi_open(txn, "msg", flags, &st->msg)) != 0 ||
	    (rc = mdb_dbi_open(txn, "due", flags, &st->due)) != 0 ||
	    (rc = mdb_dbi_open(txn, "meta", flags, &st->meta)) != 0) {
		mdb_txn_abort(txn);
		/* a named database that is not one (MDB_INCOMPATIBLE) */
		if (rc == MDB_INCOMPATIBLE)
			return -EBADMSG;
		return state_err(rc);
	}
	rc = mdb_dbi_open(txn, "metrics", flags, &st->metrics);
	st->has_metrics = rc == 0;
	if (rc == MDB_NOTFOUND && st->readonly)
		rc = 0; /* written by a spoold older than the table */
	if (rc != 0) {
		mdb_txn_abort(txn);
		return rc == MDB_INCOMPATIBLE ? -EBADMSG : state_err(rc);
	}
	if (!st->readonly && (rc = state_metrics_init(st, txn)) < 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	/* touches each root page: catches a broken tree before real use */
	if ((rc = mdb_stat(txn, st->msg, &ms)) != 0 ||
	    (rc = mdb_stat(txn, st->due, &ms)) != 0 ||
	    (rc = mdb_stat(txn, st->meta, &ms)) != 0) {
		mdb_txn_abort(txn);
		return state_err(rc);
	}
	/* committing, even read-only, keeps the handles open */
	rc = mdb_txn_commit(txn);
	return state_err(rc);
}

int
state_open(struct state **out, const char *spool_dir, int readonly, char *err,
	   size_t errlen)
{
	struct state *st;
	size_t mapsize;
	char *path = NULL;
	int rc, dead;

	*out = NULL;
	if (spool_dir == NULL || spool_dir[0] == '\0') {
		state_errf(err, errlen, "state: no spool directory given");
		return -EINVAL;
	}
	rc = state_mapsize_conf(&mapsize, err, errlen);
	if (rc < 0)
		return rc;
	if (asprintf(&path, "%s/state", spool_dir) < 0) {
		state_errf(err, errlen, "state: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		free(path);
		state_errf(err, errlen, "state: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	st->readonly = readonly;
	if (!readonly && mkdir(path, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		state_errf(err, errlen, "state: create %s: %s", path,
			   strerror(-rc));
		goto fail;
	}
	rc = mdb_env_create(&st->env);
	if (rc != 0) {
		st->env = NULL;
		state_errf(err, errlen, "state: %s", mdb_strerror(rc));
		rc = state_err(rc);
		goto fail;
	}
	rc = mdb_env_set_maxdbs(st->env, 4);
	/* a reader maps what the writer last recorded in the meta page */
	if (rc == 0 && !readonly)
		rc = mdb_env_set_mapsize(st->env, mapsize);
	if (rc != 0) {
		state_errf(err, errlen, "state: configure %s: %s", path,
			   mdb_strerror(rc));
		rc = state_err(rc);
		goto fail;
	}
	rc = mdb_env_open(st->env, path,
			  MDB_NOTLS | (readonly ? MDB_RDONLY : 0), 0600);
	if (rc != 0) {
		state_errf(err, errlen, "state: open %s: %s", path,
			   mdb_strerror(rc));
		rc = state_err(rc);
		goto fail;
	}
	rc = state_check_size(st->env);
	if (rc < 0) {
		state_errf(err, errlen, "state: %s/data.mdb: %s", path,
			   rc == -EBADMSG ? "truncated" : strerror(-rc));
		goto fail;
	}
	rc = mdb_reader_check(st->env, &dead);
	if (rc != 0) {
		state_errf(err, errlen, "state: reader check in %s: %s", path,
			   mdb_strerror(rc));
		rc = state_err(rc);
		goto fail;
	}
	rc = state_open_dbis(st);
	if (rc < 0) {
		state_errf(err, errlen, "state: open databases in %s: %s", path,
			   rc == -EBADMSG  ? "corrupt environment"
			   : rc == -ENOENT ? "not initialised by a writer yet"
					   : strerror(-rc));
		goto fail;
	}
	free(path);
	*out = st;
	return 0;
fail:
	free(path);
	state_close(st);
	return rc;
}

void
state_close(struct state *st)
{
	if (st == NULL)
		return;
	if (st->env != NULL)
		mdb_env_close(st->env);
	free(st);
}

int
state_remove(const char *spool_dir)
{
	static const char *const files[] = {"data.mdb", "lock.mdb"};
	char path[4096];
	size_t i;
	int n, rc = 0;

	if (spool_dir == NULL || spool_dir[0] == '\0')
		return -EINVAL;
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		n = snprintf(path, sizeof(path), "%s/state/%s", spool_dir,
			     files[i]);
		if (n < 0 || (size_t)n >= sizeof(path))
			return -ENAMETOOLONG;
		if (unlink(path) < 0 && errno != ENOENT && rc == 0)
			rc = -errno;
	}
	return rc;
}

int
state_reader_check(struct state *st)
{
	int dead = 0, rc;

	rc = mdb_reader_check(st->env, &dead);
	return rc != 0 ? state_err(rc) : dead;
}

/* ---- transactions ----------------------------------------------------- */

/*
 * Doubles the map after MDB_MAP_FULL. LMDB allows this only while this
 * process has no transaction open; if one is, the next full map tries
 * again.
 */
static void
state_grow(struct state *st)
{
	MDB_envinfo info;

	/* pages pinned by a reader that died are what filled it, maybe */
	state_reader_check(st);
	if (mdb_env_info(st->env, &info) != 0)
		return;
	if (info.me_mapsize >= STATE_MAPSIZE_MAX / 2)
		return;
	mdb_env_set_mapsize(st->env, info.me_mapsize * 2);
}

int
state_begin(struct state *st, int write, struct state_txn **out)
{
	struct state_txn *t;
	int rc;

	*out = NULL;
	if (write && st->readonly)
		return -EROFS;
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	t->st = st;
	t->write = write;
	rc = mdb_txn_begin(st->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
	if (rc == MDB_MAP_RESIZED) {
		/* another process grew the map: adopt its size and retry */
		rc = mdb_env_set_mapsize(st->env, 0);
		if (rc == 0)
			rc = mdb_txn_begin(st->env, NULL,
					   write ? 0 : MDB_RDONLY, &t->txn);
	}
	if (rc != 0) {
		free(t);
		return state_err(rc);
	}
	*out = t;
	return 0;
}

int
state_commit(struct state_txn *txn)
{
	struct state *st;
	int rc;

	if (txn == NULL)
		return -EINVAL;
	st = txn->st;
	if (txn->map_full) {
		mdb_txn_abort(txn->txn);
		free(txn);
		state_grow(st);
		return -ENOSPC;
	}
	rc = mdb_txn_commit(txn->txn);
	free(txn);
	if (rc == MDB_MAP_FULL)
		state_grow(st);
	return state_err(rc);
}

void
state_abort(struct state_txn *txn)
{
	struct state *st;
	int grow;

	if (txn == NULL)
		return;
	st = txn->st;
	grow = txn->map_full;
	mdb_txn_abort(txn->txn);
	free(txn);
	if (grow)
		state_grow(st);
}

/* Records MDB_MAP_FULL so that ending the txn grows the map. */
static int
state_write_err(struct state_txn *txn, int rc)
{
	if (rc == MDB_MAP_FULL || rc == MDB_TXN_FULL)
		txn->map_full = 1;
	return state_err(rc);
}

/* ---- messages --------------------------------------------------------- */

/*
 * A due entry is the time (big-endian) and the id. An urgent message's
 * time has its top bit set (no real time has): its entries sort after
 * every other, in a range of their own that state_due reads first, and
 * an index written before urgent messages existed reads the same.
 */
#define STATE_DUE_URGENT (UINT64_C(1) << 63)

static int state_tally(struct state_txn *txn, int from, int to);

static void
state_due_key(unsigned char key[STATE_DUE_KEY_LEN], int64_t when,
	      const char *id, int urgent)
{
	put_be(key, (uint64_t)when | (urgent ? STATE_DUE_URGENT : 0), 8);
	memcpy(key + 8, id, QUEUE_ID_LEN);
}

static int
state_in_due(enum queue_msg_state s)
{
	return s == QUEUE_MSG_QUEUED || s == QUEUE_MSG_DEFERRED;
}

/*
 * Drops every due entry of id by scanning the index; only for a record too
 * damaged to tell its due key, so the index never keeps a stale entry.
 */
static int
state_due_purge(struct state_txn *txn, const char *id)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	rc = mdb_cursor_open(txn->txn, txn->st->due, &cur);
	if (rc != 0)
		return state_err(rc);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size == STATE_DUE_KEY_LEN &&
		    memcmp((char *)k.mv_data + 8, id, QUEUE_ID_LEN) == 0) {
			rc = mdb_cursor_del(cur, 0);
			if (rc != 0)
				break;
		}
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : state_write_err(txn, rc);
}

/* Removes the due entry that the stored record old implies. */
static int
state_due_drop_old(struct state_txn *txn, const char *id, const MDB_val *old)
{
	const unsigned char *p = old->mv_data;
	unsigned char key[STATE_DUE_KEY_LEN];
	MDB_val k;
	int rc;

	if (old->mv_size < STATE_REC_FIXED || p[0] != QUEUE_RECORD_VERSION ||
	    p[1] >= STATE_NSTATES)
		return state_due_purge(txn, id);
	if (!state_in_due((enum queue_msg_state)p[1]))
		return 0;
	/* the flags sit at the record's end: try both ranges instead */
	for (int urgent = 0; urgent < 2; urgent++) {
		state_due_key(key, (int64_t)get_be(p + 10, 8), id, urgent);
		k.mv_size = sizeof(key);
		k.mv_data = key;
		rc = mdb_del(txn->txn, txn->st->due, &k, NULL);
		if (rc != 0 && rc != MDB_NOTFOUND)
			return state_write_err(txn, rc);
	}
	return 0;
}

int
state_msg_get(struct state_txn *txn, const char *id, struct queue_msg_info *out)
{
	struct queue_msg_info m = {0};
	MDB_val k, v;
	int rc;

	if (!queue_id_valid(id))
		return -EINVAL;
	k.mv_size = QUEUE_ID_LEN;
	k.mv_data = (void *)id;
	rc = mdb_get(txn->txn, txn->st->msg, &k, &v);
	if (rc != 0)
		return state_err(rc);
	memcpy(m.id, id, QUEUE_ID_LEN + 1);
	rc = queue__record_decode(v.mv_data, v.mv_size, &m);
	if (rc < 0)
		return rc;
	*out = m;
	return 0;
}

int
state_msg_put(struct state_txn *txn, const struct queue_msg_info *m)
{
	unsigned char key[STATE_DUE_KEY_LEN], *rec = NULL;
	MDB_val k, v, old;
	size_t reclen;
	int rc, from = -1;

	if (!txn->write)
		return -EROFS;
	if (!queue_id_valid(m->id) || m->next_attempt < 0)
		return -EINVAL;
	rc = queue__record_encode(m, &rec, &reclen);
	if (rc < 0)
		return rc;
	k.mv_size = QUEUE_ID_LEN;
	k.mv_data = (void *)m->id;
	rc = mdb_get(txn->txn, txn->st->msg, &k, &old);
	if (rc == 0) {
		/* read before any write moves the page old points into */
		from = old.mv_size >= 2
			   ? ((const unsigned char *)old.mv_data)[1]
			   : STATE_NSTATES;
		rc = state_due_drop_old(txn, m->id, &old);
		if (rc < 0)
			goto out;
	} else if (rc != MDB_NOTFOUND) {
		rc = state_err(rc);
		goto out;
	}
	v.mv_size = reclen;
	v.mv_data = rec;
	rc = mdb_put(txn->txn, txn->st->msg, &k, &v, 0);
	if (rc != 0) {
		rc = state_write_err(txn, rc);
		goto out;
	}
	if (state_in_due(m->state)) {
		state_due_key(key, m->next_attempt, m->id,
			      (m->flags & QUEUE_MSG_F_URGENT) != 0);
		k.mv_size = sizeof(key);
		k.mv_data = key;
		v.mv_size = 0;
		v.mv_data = NULL;
		rc = mdb_put(txn->txn, txn->st->due, &k, &v, 0);
		if (rc != 0) {
			rc = state_write_err(txn, rc);
			goto out;
		}
	}
	rc = state_tally(txn, from, (int)m->state);
out:
	free(rec);
	return rc;
}

int
state_msg_del(struct state_txn *txn, const char *id)
{
	MDB_val k, old;
	int rc, from;

	if (!txn->write)
		return -EROFS;
	if (!queue_id_valid(id))
		return -EINVAL;
	k.mv_size = QUEUE_ID_LEN;
	k.mv_data = (void *)id;
	rc = mdb_get(txn->txn, txn->st->msg, &k, &old);
	if (rc != 0)
		return state_err(rc);
	from = old.mv_size >= 2 ? ((const unsigned char *)old.mv_data)[1]
				: STATE_NSTATES;
	rc = state_due_drop_old(txn, id, &old);
	if (rc < 0)
		return rc;
	rc = mdb_del(txn->txn, txn->st->msg, &k, NULL);
	if (rc != 0)
		return state_write_err(txn, rc);
	return state_tally(txn, from, -1);
}

/*
 * Walks the due index from key time from on: up to max ids whose key time
 * is at most until, earliest first. *next gets the first key time after
 * until still in the index (0 if none), as if the ids returned were taken.
 * Key times are unsigned: the urgent range has the top bit set.
 */
static int
due_scan(struct state_txn *txn, uint64_t from, uint64_t until, size_t max,
	 char (*ids)[QUEUE_ID_LEN + 1], size_t *n, uint64_t *next)
{
	unsigned char key[8];
	MDB_cursor *cur;
	MDB_val k, v;
	size_t count = 0;
	uint64_t when;
	int rc;

	*n = 0;
	*next = 0;
	rc = mdb_cursor_open(txn->txn, txn->st->due, &cur);
	if (rc != 0)
		return state_err(rc);
	put_be(key, from, 8);
	k.mv_size = sizeof(key);
	k.mv_data = key;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size != STATE_DUE_KEY_LEN) {
			rc = MDB_CORRUPTED;
			break;
		}
		when = get_be(k.mv_data, 8);
		if (when > until) {
			*next = when;
			break;
		}
		if (count == max) {
			/* more are within until than asked for: skip to
			 * the first later one */
			if (until == UINT64_MAX) {
				rc = MDB_NOTFOUND;
				break;
			}
			put_be(key, until + 1, 8);
			k.mv_size = sizeof(key);
			k.mv_data = key;
			rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
			if (rc == 0)
				*next = get_be(k.mv_data, 8);
			break;
		}
		memcpy(ids[count], (char *)k.mv_data + 8, QUEUE_ID_LEN);
		ids[count][QUEUE_ID_LEN] = '\0';
		if (!queue_id_valid(ids[count])) {
			rc = MDB_CORRUPTED;
			break;
		}
		count++;
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return state_err(rc);
	*n = count;
	return 0;
}

/* The earlier of two next-due times, 0 being none. */
static int64_t
due_min(int64_t a, int64_t b)
{
	if (a == 0)
		return b;
	if (b == 0)
		return a;
	return a < b ? a : b;
}

int
state_due(struct state_txn *txn, int64_t now, size_t max,
	  char (*ids)[QUEUE_ID_LEN + 1], size_t *n, int64_t *next_due)
{
	uint64_t next_u, next;
	size_t nu = 0;
	int rc;

	*n = 0;
	*next_due = 0;
	if (now < 0)
		now = 0;
	rc = due_scan(txn, STATE_DUE_URGENT, STATE_DUE_URGENT | (uint64_t)now,
		      max, ids, &nu, &next_u);
	if (rc < 0)
		return rc;
	next_u = next_u != 0 ? next_u & ~STATE_DUE_URGENT : 0;
	rc = due_scan(txn, 0, (uint64_t)now, max - nu, ids + nu, n, &next);
	if (rc < 0)
		return rc;
	/* past the normal range the scan reads urgent keys: not a time */
	if (next & STATE_DUE_URGENT)
		next = 0;
	*n += nu;
	*next_due = due_min((int64_t)next_u, (int64_t)next);
	return 0;
}

int
state_due_after(struct state_txn *txn, int64_t after, size_t max,
		char (*ids)[QUEUE_ID_LEN + 1], size_t *n)
{
	uint64_t next;
	size_t nu = 0;
	int rc;

	*n = 0;
	if (after == INT64_MAX)
		return 0;
	if (after < -1)
		after = -1;
	rc = due_scan(txn, STATE_DUE_URGENT | (uint64_t)(after + 1), UINT64_MAX,
		      max, ids, &nu, &next);
	if (rc < 0)
		return rc;
	rc = due_scan(txn, (uint64_t)(after + 1), STATE_DUE_URGENT - 1,
		      max - nu, ids + nu, n, &next);
	*n += nu;
	return rc;
}

/*
 * A walk over the whole state (a listing, the count, state_verify's
 * child) touches every page of data.mdb, and each page it touches stays
 * mapped in the process: file pages, in the page cache anyway, but counted
 * in its RSS all the same, which then grows with the queue. With
 * state_pages_release_set(1), every STATE_RELEASE_EVERY records a readonly
 * state drops the mapping with MADV_DONTNEED: the pages stay in the page
 * cache, and one read again (a cursor's current page) is mapped again
 * from it, unchanged, as no writer reuses a page that a live reader can
 * see. It costs a page fault per page read instead of one per 16 pages
 * (the kernel maps a page's neighbours with it), so it is for the
 * listings, whose memory is to stay flat; the daemon's state, whose pages
 * are its working set, is never released. LMDB does not say where it
 * mapped the file: the mapping is looked up in /proc/self/maps from a
 * pointer into it.
 */
#define STATE_RELEASE_EVERY 256

static int state_release_pages;

void
state_pages_release_set(int on)
{
	state_release_pages = on;
}

static void
state_map_release(struct state *st, const void *inside)
{
	uintptr_t p = (uintptr_t)inside;

	if (!state_release_pages || !st->readonly ||
	    ++st->walked < STATE_RELEASE_EVERY)
		return;
	st->walked = 0;
	if (p < st->map_lo || p >= st->map_hi) {
		FILE *fp = fopen("/proc/self/maps", "re");
		unsigned long lo, hi;

		st->map_lo = st->map_hi = 0;
		if (fp == NULL)
			return;
		while (fscanf(fp, "%lx-%lx%*[^\n]", &lo, &hi) == 2)
			if (p >= lo && p < hi) {
				st->map_lo = lo;
				st->map_hi = hi;
				break;
			}
		fclose(fp);
		if (st->map_hi == 0)
			return;
	}
	/* advice only: a failure costs memory, never a record */
	(void)madvise((void *)st->map_lo, st->map_hi - st->map_lo,
		      MADV_DONTNEED);
}

int
state_foreach_after(struct state_txn *txn, const char *after,
		    int (*cb)(const struct queue_msg_info *m, void *arg),
		    void *arg)
{
	MDB_cursor *cur;
	MDB_val k, v;
	MDB_cursor_op op = MDB_FIRST;
	int rc, ret = 0;

	rc = mdb_cursor_open(txn->txn, txn->st->msg, &cur);
	if (rc != 0)
		return state_err(rc);
	if (after != NULL && after[0] != '\0') {
		/* the first key >= after, then past it if it is after */
		k.mv_size = strnlen(after, QUEUE_ID_LEN);
		k.mv_data = (void *)after;
		op = MDB_SET_RANGE;
	}
	for (rc = mdb_cursor_get(cur, &k, &v, op); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct queue_msg_info m = {0};

		if (k.mv_size != QUEUE_ID_LEN) {
			ret = -EBADMSG;
			break;
		}
		memcpy(m.id, k.mv_data, QUEUE_ID_LEN);
		m.id[QUEUE_ID_LEN] = '\0';
		if (op == MDB_SET_RANGE && strcmp(m.id, after) == 0)
			continue;
		ret = queue__record_decode(v.mv_data, v.mv_size, &m);
		if (ret < 0)
			break;
		ret = cb(&m, arg);
		queue_msg_info_free(&m);
		state_map_release(txn->st, v.mv_data);
		if (ret != 0)
			break;
	}
	mdb_cursor_close(cur);
	if (ret != 0)
		return ret;
	return rc == MDB_NOTFOUND ? 0 : state_err(rc);
}

int
state_foreach(struct state_txn *txn,
	      int (*cb)(const struct queue_msg_info *m, void *arg), void *arg)
{
	return state_foreach_after(txn, NULL, cb, arg);
}

static int
state_verify_record(const struct queue_msg_info *m, void *arg)
{
	(void)m;
	(void)arg;
	return 0;
}

/* Reads every key and value of dbi: touches each page a reader reaches. */
static int
state_verify_dbi(struct state_txn *txn, MDB_dbi dbi, size_t key_len)
{
	MDB_cursor *cur;
	MDB_val k, v;
	volatile unsigned char sum = 0;
	int rc, bad = 0;

	rc = mdb_cursor_open(txn->txn, dbi, &cur);
	if (rc != 0)
		return state_err(rc);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		const unsigned char *p = v.mv_data;

		if (key_len != 0 && k.mv_size != key_len) {
			bad = 1;
			break;
		}
		/* overflow pages are only touched when read */
		for (size_t i = 0; i < v.mv_size; i += 512)
			sum ^= p[i];
		state_map_release(txn->st, k.mv_data);
	}
	/* sum is volatile so that no read above can be dropped; this read
	 * of it is what tells clang the variable is used */
	(void)sum;
	mdb_cursor_close(cur);
	if (bad)
		return -EBADMSG;
	return rc == MDB_NOTFOUND ? 0 : state_err(rc);
}

static int
state_verify_all(const char *spool_dir)
{
	struct state *st;
	struct state_txn *txn;
	char err[256];
	int rc;

	rc = state_open(&st, spool_dir, 1, err, sizeof(err));
	if (rc < 0)
		return rc;
	rc = state_begin(st, 0, &txn);
	if (rc == 0) {
		/* 0 is LMDB's free-page list, which writers follow */
		rc = state_verify_dbi(txn, 0, 0);
		if (rc == 0)
			rc = state_verify_dbi(txn, st->due, STATE_DUE_KEY_LEN);
		if (rc == 0)
			rc = state_verify_dbi(txn, st->meta, 0);
		if (rc == 0 && st->has_metrics)
			rc = state_verify_dbi(txn, st->metrics, 0);
		if (rc == 0)
			rc = state_foreach(txn, state_verify_record, NULL);
		state_abort(txn);
	}
	state_close(st);
	return rc;
}

int
state_verify(const char *spool_dir, char *err, size_t errlen)
{
	int status, rc;
	pid_t pid;

	pid = fork();
	if (pid < 0) {
		rc = -errno;
		state_errf(err, errlen, "state: cannot fork to check it: %s",
			   strerror(-rc));
		return rc;
	}
	if (pid == 0) {
		rc = state_verify_all(spool_dir);
		/* -EIO is an LMDB error with no errno of its own: a
		 * database record LMDB refuses to use (MDB_BAD_TXN on a
		 * fresh transaction) is damage like a broken page */
		_exit(rc == -EBADMSG || rc == -EIO ? 2 : 0);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			rc = -errno;
			state_errf(err, errlen,
				   "state: waiting for its check: %s",
				   strerror(-rc));
			return rc;
		}
	}
	if (WIFSIGNALED(status)) {
		state_errf(err, errlen,
			   "state: reading %s/state crashed its check (signal "
			   "%d)",
			   spool_dir, WTERMSIG(status));
		return -EBADMSG;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 2) {
		state_errf(err, errlen,
			   "state: %s/state is truncated or corrupt",
			   spool_dir);
		return -EBADMSG;
	}
	return 0;
}

int
state_count(struct state_txn *txn, uint64_t counts[5])
{
	struct state *st = txn->st;
	char key[64];
	int found = 0;

	for (int i = 0; st->has_metrics && i < STATE_NSTATES; i++) {
		snprintf(key, sizeof(key), "msgs:%s",
			 queue_msg_state_name((enum queue_msg_state)i));
		counts[i] =
		    state_counter_read(txn->txn, st->metrics, key, &found);
		if (!found)
			break;
	}
	return found ? 0 : state_count_walk(txn->txn, st->msg, counts);
}

/* ---- metrics counters ------------------------------------------------- */

int
state_oldest(struct state_txn *txn, int64_t *queued_at)
{
	MDB_cursor *cur;
	MDB_val k, v;
	const unsigned char *p;
	int rc;

	*queued_at = 0;
	rc = mdb_cursor_open(txn->txn, txn->st->msg, &cur);
	if (rc != 0)
		return state_err(rc);
	/* ids sort by time: the first record not failed is the oldest; the
	 * failed ones before it cost a byte each, not a decode */
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		p = v.mv_data;
		if (v.mv_size < STATE_REC_FIXED ||
		    p[0] != QUEUE_RECORD_VERSION || p[1] >= STATE_NSTATES) {
			rc = MDB_CORRUPTED;
			break;
		}
		if (p[1] != QUEUE_MSG_FAILED) {
			*queued_at = (int64_t)get_be(p + 2, 8);
			break;
		}
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : state_err(rc);
}

/* Adds delta (which may be negative) to the counter under key. */
static int
state_counter_move(struct state_txn *txn, const char *key, int64_t delta)
{
	uint64_t v;
	int found, rc;

	if (!txn->write)
		return -EROFS;
	if (!txn->st->has_metrics)
		return 0;
	v = state_counter_read(txn->txn, txn->st->metrics, key, &found);
	if (delta < 0 && v < (uint64_t)-delta)
		v = 0; /* never wraps, whatever an earlier damage did */
	else
		v += (uint64_t)delta;
	rc = state_counter_set(txn->txn, txn->st->metrics, key, v);
	return state_write_err(txn, rc);
}

int
state_counter_add(struct state_txn *txn, const char *key, uint64_t n)
{
	MDB_val k;

	if (state_counter_key(key, &k) < 0 || n > INT64_MAX)
		return -EINVAL;
	return state_counter_move(txn, key, (int64_t)n);
}

/* Moves one record from state from (-1: none) to state to (-1: none) in
 * the kept counts. A damaged old record (from out of range) is left out. */
static int
state_tally(struct state_txn *txn, int from, int to)
{
	char key[64];
	int rc;

	if (from == to)
		return 0;
	if (from >= 0 && from < STATE_NSTATES) {
		snprintf(key, sizeof(key), "msgs:%s",
			 queue_msg_state_name((enum queue_msg_state)from));
		if ((rc = state_counter_move(txn, key, -1)) < 0)
			return rc;
	}
	if (to >= 0 && to < STATE_NSTATES) {
		snprintf(key, sizeof(key), "msgs:%s",
			 queue_msg_state_name((enum queue_msg_state)to));
		if ((rc = state_counter_move(txn, key, 1)) < 0)
			return rc;
	}
	return 0;
}

int
state_counter_foreach(struct state_txn *txn,
		      int (*cb)(const char *key, uint64_t value, void *arg),
		      void *arg)
{
	char key[STATE_COUNTER_KEY_MAX + 1];
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, ret = 0;

	if (!txn->st->has_metrics)
		return 0;
	rc = mdb_cursor_open(txn->txn, txn->st->metrics, &cur);
	if (rc != 0)
		return state_err(rc);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size > STATE_COUNTER_KEY_MAX || v.mv_size != 8)
			continue;
		memcpy(key, k.mv_data, k.mv_size);
		key[k.mv_size] = '\0';
		if (strlen(key) != k.mv_size)
			continue;
		ret = cb(key, get_be(v.mv_data, 8), arg);
		if (ret != 0)
			break;
	}
	mdb_cursor_close(cur);
	if (ret != 0)
		return ret;
	return rc == MDB_NOTFOUND ? 0 : state_err(rc);
}

/* ---- metadata --------------------------------------------------------- */

static int
state_meta_key(struct state_txn *txn, const char *key, MDB_val *k)
{
	size_t l;

	if (key == NULL)
		return -EINVAL;
	l = strlen(key);
	if (l == 0 || l > (size_t)mdb_env_get_maxkeysize(txn->st->env))
		return -EINVAL;
	k->mv_size = l;
	k->mv_data = (void *)key;
	return 0;
}

int
state_meta_get(struct state_txn *txn, const char *key, char *buf, size_t buflen)
{
	MDB_val k, v;
	int rc;

	rc = state_meta_key(txn, key, &k);
	if (rc < 0)
		return rc;
	rc = mdb_get(txn->txn, txn->st->meta, &k, &v);
	if (rc != 0)
		return state_err(rc);
	if (v.mv_size >= buflen)
		return -ERANGE;
	memcpy(buf, v.mv_data, v.mv_size);
	buf[v.mv_size] = '\0';
	return 0;
}

int
state_meta_put(struct state_txn *txn, const char *key, const char *value)
{
	MDB_val k, v;
	int rc;

	if (!txn->write)
		return -EROFS;
	if (value == NULL)
		return -EINVAL;
	rc = state_meta_key(txn, key, &k);
	if (rc < 0)
		return rc;
	v.mv_size = strlen(value);
	v.mv_data = (void *)value;
	rc = mdb_put(txn->txn, txn->st->meta, &k, &v, 0);
	return state_write_err(txn, rc);
}

/* LMDB's default key size limit; a longer key (a build with a larger
 * limit) is passed over by the sweep */
#define STATE_SWEEP_KEY_MAX 511

int
state_meta_sweep(struct state_txn *txn, const char *prefix,
		 int (*drop)(const char *key, const char *value, void *arg),
		 void *arg, size_t max)
{
	size_t plen = prefix != NULL ? strlen(prefix) : 0;
	size_t keymax, n = 0;
	char *keys = NULL, val[256];
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, ret = 0;

	if (!txn->write)
		return -EROFS;
	if (plen == 0 || drop == NULL || max == 0)
		return -EINVAL;
	/* the keys to delete are gathered first and deleted after the walk
	 * (no cursor walks a tree it changes), in memory taken at the first
	 * one: a sweep that finds nothing allocates nothing */
	keymax = STATE_SWEEP_KEY_MAX + 1;
	rc = mdb_cursor_open(txn->txn, txn->st->meta, &cur);
	if (rc != 0)
		return state_err(rc);
	k.mv_size = plen;
	k.mv_data = (void *)prefix;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	     rc == 0 && n < max; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		char key[STATE_SWEEP_KEY_MAX + 1];

		if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
			break;
		if (k.mv_size >= keymax || v.mv_size >= sizeof(val))
			continue;
		memcpy(key, k.mv_data, k.mv_size);
		key[k.mv_size] = '\0';
		memcpy(val, v.mv_data, v.mv_size);
		val[v.mv_size] = '\0';
		ret = drop(key, val, arg);
		if (ret < 0)
			break;
		if (ret == 1) {
			if (keys == NULL &&
			    (keys = malloc(max * keymax)) == NULL) {
				ret = -ENOMEM;
				break;
			}
			memcpy(keys + n++ * keymax, key, k.mv_size + 1);
		}
		ret = 0;
	}
	mdb_cursor_close(cur);
	if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
		ret = state_err(rc);
	for (size_t i = 0; ret == 0 && i < n; i++) {
		char *key = keys + i * keymax;

		k.mv_size = strlen(key);
		k.mv_data = key;
		rc = mdb_del(txn->txn, txn->st->meta, &k, NULL);
		if (rc != 0 && rc != MDB_NOTFOUND)
			ret = state_write_err(txn, rc);
	}
	free(keys);
	return ret < 0 ? ret : (int)n;
}

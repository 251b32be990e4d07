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
#include <inttypes.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spool/log.h"
#include "spool/msg.h"
#include "spool/util.h"
#include "bounce.h"
#include "coalesce.h"
#include "ratelimit.h"
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

/* Builds a fresh record from an envelope; size is the message's. */
static int
record_from_env(struct queue_msg_info *m, const char *id,
		const struct spool_envelope *env, uint64_t size,
		enum queue_msg_state state, int64_t next)
{
	memset(m, 0, sizeof(*m));
	str_copy(m->id, id, sizeof(m->id));
	m->state = state;
	m->queued_at = env->queued_at;
	if (m->queued_at == 0 && queue_id_valid(id))
		m->queued_at = queue_id_time_us(id) / 1000000;
	m->next_attempt = next;
	m->size = size;
	m->sender = strdup(env->sender);
	m->rcpt = calloc(env->nrcpt, sizeof(*m->rcpt));
	if (m->sender == NULL || m->rcpt == NULL)
		goto nomem;
	m->nrcpt = env->nrcpt;
	if (env->urgent)
		m->flags |= QUEUE_MSG_F_URGENT;
	if (env->key != NULL) {
		/* as a message alone; the pickup's plan may say more */
		if ((m->key = strdup(env->key)) == NULL)
			goto nomem;
		m->repeats = 1;
		m->first_at = m->last_at = m->queued_at;
		m->every = env->every;
	}
	for (size_t i = 0; i < env->nrcpt; i++) {
		m->rcpt[i].state = env->rcpt[i].state;
		m->rcpt[i].address = strdup(env->rcpt[i].address);
		if (m->rcpt[i].address == NULL)
			goto nomem;
	}
	return 0;
nomem:
	queue_msg_info_free(m);
	memset(m, 0, sizeof(*m));
	return -ENOMEM;
}

static int
record_from_file(struct queue_msg_info *m, const struct spool_file *f,
		 enum queue_msg_state state, int64_t next)
{
	int rc = record_from_env(m, f->id, &f->env, f->size - f->body_off,
				 state, next);

	if (rc == 0)
		m->owner_uid = (uint32_t)f->owner;
	return rc;
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

/* A uid for the log: -1 when the file could not even be looked at. */
static long
uid_num(uid_t uid)
{
	return uid == (uid_t)-1 ? -1L : (long)uid;
}

/* ---- pickup: new/ -> LMDB + cur/ --------------------------------- */

/*
 * Every file in new/ is hostile input (spool_pickup_read). A file only
 * root and the spool's owner can change is renamed into cur/ after the
 * commit; any other is copied into cur/.ID first, placed as cur/ID after
 * the commit, cur/ is synced, and only then the original is unlinked. A
 * file bad in itself goes to failed/ with the reason; a passing error (a
 * lease, EMFILE, a full disk, a failed commit) leaves the file in new/ and
 * reads new/ again after a backoff.
 */

/* A backlog goes on after one turn of the loop, never at 0 ms from inside
 * pickup_cb: libuv 1.44 runs a timer restarted at 0 in its own callback
 * again in the same pass over the timers, before any I/O, so a pickup that
 * re-arms itself that way keeps the loop from ever polling (ctl.sock,
 * signals). */
#define PICKUP_NEXT_MS 1
/* First delay before new/ is read again after a passing error. */
#define PICKUP_RETRY_MS 1000

/* The jobs claimed in one state transaction; they start once it commits. */
struct claims {
	struct job *jobs[CONF_MAX_CONCURRENCY];
	size_t n;
	size_t reserved;  /* delivery threads promised to other jobs */
	int64_t next_due; /* when nothing more was due: the next due time */
	int drained;	  /* nothing more was due */
	int taken;	  /* the due index was read for free threads */
	int wrote;	  /* records say they wait for a rate limit */
};

static void pickup_cb(uv_timer_t *t);

static int
pending_add(struct daemon *d, const char *id)
{
	if (d->npending == d->cap_pending) {
		size_t cap = d->cap_pending ? d->cap_pending * 2 : 64;
		void *p = realloc(d->pending, cap * sizeof(*d->pending));

		if (p == NULL)
			return -ENOMEM;
		d->pending = p;
		d->cap_pending = cap;
	}
	str_copy(d->pending[d->npending++], id, sizeof(d->pending[0]));
	return 0;
}

void
sched_pickup_soon(struct daemon *d, const char *name)
{
	/* a name that is not a queue id gets one when new/ is read; names
	 * starting with '.' are not for spoold */
	if (name == NULL || (name[0] != '.' && !queue_id_valid(name)))
		d->rescan_new = 1;
	else if (name[0] != '.' && pending_add(d, name) < 0)
		d->rescan_new = 1; /* read new/ instead */
	if (d->rescan_new || d->npending > 0)
		uv_timer_start(&d->pickup_timer, pickup_cb, 0, 0);
}

/* After a passing error: read new/ again later, backing off. */
static void
pickup_retry_later(struct daemon *d)
{
	uint64_t b = d->pickup_backoff_ms;

	if (d->pickup_retry)
		return;
	b = b == 0 ? PICKUP_RETRY_MS : b * 2;
	if (b > SPOOLD_RESCAN_MS)
		b = SPOOLD_RESCAN_MS;
	d->pickup_backoff_ms = b;
	d->pickup_retry = 1;
	d->pickup_retry_due = uv_now(d->loop) + b;
}

static void
pickup_rearm(struct daemon *d)
{
	uint64_t now = uv_now(d->loop);

	if (d->rescan_new || d->npending > 0)
		uv_timer_start(&d->pickup_timer, pickup_cb, PICKUP_NEXT_MS, 0);
	else if (d->pickup_retry)
		uv_timer_start(&d->pickup_timer, pickup_cb,
			       d->pickup_retry_due > now
				   ? d->pickup_retry_due - now
				   : PICKUP_NEXT_MS,
			       0);
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

/* A file name for the log: printable ASCII as it is, else only its
 * length, so that no byte of it reaches an operator's terminal. */
static const char *
name_shown(const char *name, char *buf, size_t len)
{
	for (const char *c = name; *c != '\0'; c++)
		if (*c < 0x21 || *c > 0x7e || *c == '"' || *c == '\\') {
			snprintf(buf, len, "(a name of %zu bytes)",
				 strlen(name));
			return buf;
		}
	snprintf(buf, len, "new/%.200s", name);
	return buf;
}

static int
pickup_is_stuck(const struct daemon *d, const char *id)
{
	for (size_t i = 0; i < SPOOLD_STUCK_MAX; i++)
		if (strcmp(d->stuck[i], id) == 0)
			return 1;
	return 0;
}

/* Reads the whole of new/ into the pending list; any name that is not a
 * queue id is given one on the way. 0 or -errno. */
static int
pickup_read_new(struct daemon *d)
{
	/* a dup would share the read position with the spool's own fd,
	 * making every read after the first come back empty */
	int fd = openat(spool_dirfd(d->spool, QUEUE_DIR_NEW), ".",
			O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	int rc = 0;

	if (dir == NULL) {
		rc = -errno;
		if (fd >= 0)
			close(fd);
		return rc;
	}
	/* every name still waiting is in new/: read, not added twice */
	d->rescan_new = 0;
	d->npending = 0;
	while (rc == 0 && (de = readdir(dir)) != NULL) {
		char id[QUEUE_ID_LEN + 1], shown[256];

		if (de->d_name[0] == '.')
			continue;
		if (queue_id_valid(de->d_name)) {
			if (!pickup_is_stuck(d, de->d_name))
				rc = pending_add(d, de->d_name);
			continue;
		}
		rc = pickup_rename(d, de->d_name, id);
		if (rc == 0) {
			log_info("id=%s picked up %s", id,
				 name_shown(de->d_name, shown, sizeof(shown)));
			rc = pending_add(d, id);
		} else if (rc == -ENOENT) {
			rc = 0;
		} else {
			log_err("cannot give %s a queue id: %s",
				name_shown(de->d_name, shown, sizeof(shown)),
				strerror(-rc));
			if (queue_err_temporary(rc))
				pickup_retry_later(d);
			rc = 0;
		}
	}
	closedir(dir);
	return rc;
}

/* What became of one file of new/. */
enum pickup_result {
	PICKUP_SKIP,  /* gone, refused into failed/, or renamed */
	PICKUP_TAKEN, /* recorded: move it after the commit */
	PICKUP_RETRY, /* a passing error: it stays in new/ */
};

/* A file recorded in the transaction, to be put in cur/ once it commits. */
struct pickup_move {
	char id[QUEUE_ID_LEN + 1];
	int copied;    /* cur/.ID holds the daemon's copy */
	int copy_done; /* cur/ID is that copy already (before a crash) */
	char replaced[QUEUE_ID_LEN + 1]; /* coalesced away: its file goes */
	uint32_t replaced_owner;
};

/*
 * new/ID is refused and cannot go to failed/: a directory of another user
 * (moving it to another folder needs write access to it). Removed if it
 * is empty (new/ is spoold's, so its sticky bit lets spoold unlink any
 * entry); else left in place with one log line that says what to do, and
 * passed over by later rescans instead of being retried forever.
 */
static int
pickup_stuck(struct daemon *d, const char *id, uid_t uid, const char *why,
	     int move_rc)
{
	if (unlinkat(spool_dirfd(d->spool, QUEUE_DIR_NEW), id, AT_REMOVEDIR) ==
	    0) {
		log_warn("id=%s uid=%ld new/%s removed: %s", id, uid_num(uid),
			 id, why);
		return PICKUP_SKIP;
	}
	if (!pickup_is_stuck(d, id)) {
		log_err("id=%s uid=%ld new/%s left in place: %s, and it cannot "
			"be moved to failed/ (%s); remove it as root: rm -r "
			"%s/new/%s",
			id, uid_num(uid), id, why, strerror(-move_rc),
			spool_path(d->spool), id);
		str_copy(d->stuck[d->stuck_next], id, QUEUE_ID_LEN + 1);
		d->stuck_next = (d->stuck_next + 1) % SPOOLD_STUCK_MAX;
	}
	return PICKUP_SKIP;
}

/* A file bad in itself: into failed/ with the reason, never delivered. */
static int
pickup_refuse(struct daemon *d, struct state_txn *txn, const char *id,
	      uid_t uid, const char *why)
{
	char reason[QUEUE_REPLY_MAX], fresh[QUEUE_ID_LEN + 1];
	int rc;

	rc = spool_move(d->spool, id, QUEUE_DIR_NEW, QUEUE_DIR_FAILED);
	if (rc == -EEXIST && pickup_rename(d, id, fresh) == 0) {
		/* named after a failed message: refused under its own id */
		log_warn("id=%s uid=%ld new/%s renamed: its id is taken", fresh,
			 uid_num(uid), id);
		return PICKUP_SKIP;
	}
	if (rc == -ENOENT)
		return PICKUP_SKIP;
	if (rc < 0 && !queue_err_temporary(rc))
		return pickup_stuck(d, id, uid, why, rc);
	if (rc < 0) {
		log_err("id=%s cannot move to failed/: %s", id, strerror(-rc));
		return PICKUP_RETRY;
	}
	snprintf(reason, sizeof(reason), "refused at pickup: %.480s", why);
	log_err("id=%s uid=%ld status=failed reply=\"%s\"", id, uid_num(uid),
		reason);
	rc = put_unreadable(txn, id, reason);
	return rc < 0 ? rc : PICKUP_SKIP;
}

/* Copies an untrusted file into cur/.ID with its Received line. */
static int
pickup_copy(struct daemon *d, const char *id, const struct spool_pickup *p,
	    size_t *trace_len)
{
	char trace[MSG_RECEIVED_MAX] = "", err[512];
	int rc;

	/* a file of the daemon's own is copied only to be rewritten (a
	 * digest): its submitter's Received line is in it already */
	*trace_len = 0;
	if (!p->trusted) {
		rc = msg_received_format(trace, sizeof(trace),
					 (unsigned long)p->uid,
					 daemon_hostname(), id, time(NULL));
		if (rc < 0)
			return rc;
		*trace_len = (size_t)rc;
	}
	rc = spool_pickup_stage(d->spool, QUEUE_DIR_CUR, id, p, trace, err,
				sizeof(err));
	if (rc < 0)
		log_err("id=%s pickup deferred: %s", id, err);
	return rc;
}

/* Who submitted p: its file's owner, or, for a file of the daemon's user
 * (root's spoolctl gives its files away), the uid root's spoolctl wrote
 * in the Received line on top, which only root or spoold could write. */
static uid_t
pickup_submitter(const struct spool_pickup *p)
{
	unsigned long uid;

	if (p->trusted && msg_received_uid(p->data + p->body_off,
					   p->len - p->body_off, &uid) == 0)
		return (uid_t)uid;
	return p->uid;
}

/*
 * Decides what a keyed message becomes (coalesce.c) and, if it stands
 * for several submissions or is held for a digest, rewrites its image in
 * p to say so. 1 if rewritten (so it must be copied, not moved), 0 if
 * not, -errno.
 */
static int
pickup_coalesce(struct state_txn *txn, const char *id, uid_t who,
		struct spool_pickup *p, struct coalesce_plan *plan)
{
	char *msg = NULL, *data;
	size_t len;
	int rc;

	rc = coalesce_plan(txn, id, (uint32_t)who, &p->env, now_s(), plan);
	if (rc < 0 || !coalesce_needs_rewrite(plan->repeats))
		return rc;
	rc = coalesce_rewrite(p->data + p->body_off, p->len - p->body_off,
			      plan->repeats, plan->first_at, plan->last_at,
			      &msg, &len);
	if (rc < 0)
		return rc;
	data = malloc(p->body_off + len);
	if (data == NULL) {
		free(msg);
		return -ENOMEM;
	}
	/* the envelope as it was (the marks' offsets stay), then the
	 * message that says what it stands for */
	memcpy(data, p->data, p->body_off);
	memcpy(data + p->body_off, msg, len);
	free(msg);
	free(p->data);
	p->data = data;
	p->len = p->body_off + len;
	return 1;
}

/* The line a metrics reader counts: status=coalesced at merge or hold,
 * with held_until= when the message waits for its key's digest. */
static void
pickup_coalesce_log(const struct queue_msg_info *m,
		    const struct coalesce_plan *plan)
{
	char until[RFC3339_LEN], held[RFC3339_LEN + 16] = "";

	if (plan->verdict != COALESCE_MERGED && plan->verdict != COALESCE_HELD)
		return;
	if (plan->digest)
		snprintf(held, sizeof(held), " held_until=%s",
			 format_rfc3339((time_t)plan->next_attempt, until));
	if (plan->verdict == COALESCE_MERGED)
		log_info("id=%s key=%s status=coalesced replaced=%s "
			 "repeats=%" PRIu32 "%s",
			 m->id, m->key, plan->old_id, plan->repeats, held);
	else
		log_info("id=%s key=%s status=coalesced repeats=1%s", m->id,
			 m->key, held);
}

/* After the commit and the placing: the files of messages that newer
 * ones of their key replaced. A crash before this leaves such a file
 * without a record; the next start queues it again (one more mail). */
static void
pickup_drop_replaced(struct daemon *d, const struct pickup_move *mv, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int rc;

		if (mv[i].replaced[0] == '\0')
			continue;
		/* a WAIT on the replaced message follows the new one */
		control_msg_replaced(d, mv[i].replaced, mv[i].id,
				     mv[i].replaced_owner);
		rc = spool_remove(d->spool, QUEUE_DIR_CUR, mv[i].replaced);
		if (rc == -ENOENT)
			rc = spool_remove(d->spool, QUEUE_DIR_NEW,
					  mv[i].replaced);
		if (rc < 0 && rc != -ENOENT)
			log_err("id=%s cannot remove the replaced message: %s",
				mv[i].replaced, strerror(-rc));
	}
}

/* One new/ file into the transaction: a pickup_result, or -errno on a
 * state error. */
static int
pickup_one(struct daemon *d, struct state_txn *txn, const char *id,
	   struct pickup_move *mv)
{
	struct spool_pickup p;
	struct queue_msg_info m;
	struct coalesce_plan plan;
	char err[512], fresh[QUEUE_ID_LEN + 1];
	size_t trace_len = 0;
	uid_t who;
	int rc, known;

	rc = spool_pickup_read(d->spool, QUEUE_DIR_NEW, id, d->gen->cf.max_size,
			       &p, err, sizeof(err));
	if (rc == -ENOENT)
		return PICKUP_SKIP; /* a duplicate event for a file taken */
	if (rc < 0 && queue_err_temporary(rc)) {
		log_warn("id=%s uid=%ld pickup deferred: %s", id,
			 uid_num(p.uid), err);
		return PICKUP_RETRY;
	}
	if (rc < 0)
		return pickup_refuse(d, txn, id, p.uid, err);
	/* before a digest's rewrite puts its own field on top */
	who = pickup_submitter(&p);
	rc = state_msg_get(txn, id, &m);
	known = rc == 0;
	if (known &&
	    (m.state == QUEUE_MSG_HELD || m.state == QUEUE_MSG_FAILED) &&
	    pickup_rename(d, id, fresh) == 0) {
		/* the id of a message elsewhere: never merged with it */
		log_warn("id=%s uid=%ld new/%s renamed: its id is taken", fresh,
			 uid_num(p.uid), id);
		rc = PICKUP_SKIP;
		goto out;
	}
	if (known)
		queue_msg_info_free(&m);
	else if (rc != -ENOENT)
		goto out;
	str_copy(mv->id, id, sizeof(mv->id));
	mv->replaced[0] = '\0';
	plan.verdict = COALESCE_NONE;
	if (!known && (rc = pickup_coalesce(txn, id, who, &p, &plan)) < 0)
		goto out;
	mv->copied = !p.trusted || rc == 1; /* rewritten: a copy */
	mv->copy_done = 0;
	if (mv->copied && known &&
	    spool_stat(d->spool, QUEUE_DIR_CUR, id, NULL, NULL) == 0) {
		/* known and copied already: the daemon stopped before the
		 * original went */
		mv->copy_done = 1;
	} else if (mv->copied &&
		   (rc = pickup_copy(d, id, &p, &trace_len)) < 0) {
		rc = PICKUP_RETRY; /* the file is fine; the failure is ours */
		goto out;
	}
	rc = PICKUP_TAKEN;
	if (known)
		goto out; /* the daemon stopped between commit and move */
	rc = record_from_env(&m, id, &p.env, p.len - p.body_off + trace_len,
			     QUEUE_MSG_QUEUED, now_s());
	if (rc == 0) {
		/* the kernel's word on who submitted it, for WAIT */
		m.owner_uid = (uint32_t)who;
		rc = coalesce_apply(txn, &plan, &p.env, &m);
	}
	if (rc == 0)
		rc = state_msg_put(txn, &m);
	if (rc == 0) {
		log_info("id=%s uid=%ld from=<%s> nrcpt=%zu size=%llu queued%s",
			 id, uid_num(who), m.sender, m.nrcpt,
			 (unsigned long long)m.size,
			 mv->copied ? " (copied)" : "");
		pickup_coalesce_log(&m, &plan);
		if (plan.verdict == COALESCE_MERGED) {
			str_copy(mv->replaced, plan.old_id,
				 sizeof(mv->replaced));
			mv->replaced_owner = plan.owner_uid;
		}
		rc = PICKUP_TAKEN;
	}
	queue_msg_info_free(&m);
out:
	spool_pickup_free(&p);
	return rc;
}

/* After the commit: the files recorded go into cur/. A copy is placed,
 * cur/ synced, and only then its original unlinked, so that a crash
 * leaves one of the two, never neither. */
static void
pickup_place(struct daemon *d, struct pickup_move *mv, size_t n)
{
	int ndfd = spool_dirfd(d->spool, QUEUE_DIR_NEW);
	int cdfd = spool_dirfd(d->spool, QUEUE_DIR_CUR);
	size_t copies = 0;
	int rc;

	for (size_t i = 0; i < n; i++) {
		if (!mv[i].copied) {
			/* No fsync: a rename lost in a crash leaves the file
			 * in new/, where the next pickup finds it known and
			 * moves it again. Never over cur/ID: that file holds
			 * the marks of recipients already sent to. */
			rc = spool_move_nosync(d->spool, mv[i].id,
					       QUEUE_DIR_NEW, QUEUE_DIR_CUR);
			if (rc < 0 && rc != -ENOENT)
				log_err("id=%s cannot move to cur/: %s",
					mv[i].id, strerror(-rc));
			continue;
		}
		rc = mv[i].copy_done
			 ? 0
			 : spool_pickup_place(d->spool, QUEUE_DIR_CUR, mv[i].id,
					      0);
		if (rc == -EEXIST)
			rc = 0; /* placed before a crash; the copy is gone */
		if (rc < 0) {
			log_err("id=%s cannot place its copy in cur/: %s",
				mv[i].id, strerror(-rc));
			mv[i].copied = 0; /* keep the original */
			continue;
		}
		copies++;
	}
	if (copies == 0)
		return;
	if (fsync(cdfd) < 0) {
		/* the originals stay; the next pickup finds them copied */
		log_err("cannot sync cur/: %s", strerror(errno));
		pickup_retry_later(d);
		return;
	}
	for (size_t i = 0; i < n; i++)
		if (mv[i].copied && unlinkat(ndfd, mv[i].id, 0) < 0 &&
		    errno != ENOENT)
			log_err("id=%s cannot remove new/%s: %s", mv[i].id,
				mv[i].id, strerror(errno));
}

/* New files recorded per transaction: with one file in memory at a time
 * (max_size at most), this bounds the transaction, not the memory. */
#define PICKUP_CHUNK 1000

static int claims_take(struct daemon *d, struct state_txn *txn,
		       struct claims *c);
static void claims_finish(struct daemon *d, struct claims *c, int committed);

static void
pickup_cb(uv_timer_t *t)
{
	struct daemon *d = t->data;
	struct pickup_move *moved = NULL;
	struct state_txn *txn = NULL;
	struct claims c = {0};
	size_t nmoved = 0, take;
	int rc;

	if (d->pickup_retry && uv_now(d->loop) >= d->pickup_retry_due) {
		d->pickup_retry = 0;
		d->rescan_new = 1;
	}
	if (d->rescan_new && (rc = pickup_read_new(d)) < 0) {
		log_err("cannot read %s/new: %s", spool_path(d->spool),
			strerror(-rc));
		d->rescan_new = 0;
		goto retry;
	}
	if (d->npending == 0) {
		if (!d->pickup_retry)
			d->pickup_backoff_ms = 0;
		pickup_rearm(d);
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
		rc = pickup_one(d, txn, d->pending[i], &moved[nmoved]);
		if (rc < 0)
			goto abort;
		if (rc == PICKUP_TAKEN)
			nmoved++;
		else if (rc == PICKUP_RETRY)
			pickup_retry_later(d);
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
	pickup_place(d, moved, nmoved);
	pickup_drop_replaced(d, moved, nmoved);
	d->npending -= take;
	memmove(d->pending, d->pending + take,
		d->npending * sizeof(*d->pending));
	if (!d->pickup_retry)
		d->pickup_backoff_ms = 0;
	pickup_rearm(d);
	free(moved);
	/* only now: the delivery threads read the files from cur/ */
	claims_finish(d, &c, 1);
	return;
abort:
	log_err("pickup: state write failed: %s", strerror(-rc));
	state_abort(txn);
	claims_finish(d, &c, 0);
retry:
	/* the names are in new/ still: read it again after a backoff,
	 * not at once, or a lasting error would spin the loop */
	free(moved);
	d->npending = 0;
	pickup_retry_later(d);
	pickup_rearm(d);
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
	int rc, marked;

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
	if (pos >= d->gen->cf.route_count)
		pos = 0;
	/* a session takes no more messages than its transport's rate
	 * allows now; with none, they wait (ratewait.c) */
	rc = rate_claim(d, txn, n, &pos, &marked);
	c->wrote |= marked;
	if (rc <= 0)
		return rc;
	n = (size_t)rc;
	job = job_new(d->gen, pos, n);
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
	if (rc == 0 && c.n == 0 && !c.wrote) {
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
	if (jm->temp_error) {
		why = jm->diag;
		log_warn("id=%s status=deferred reply=\"%s\"", jm->id, why);
	} else if (jm->file_error) {
		why = "cannot record the outcome in the spool file";
	} else {
		why = first_reply(jm, DELIV_TEMPFAIL);
	}
	if (why == NULL)
		why = job->sess.diag[0] ? job->sess.diag : "not delivered";
	set_str(&m->last_error, why);
	/* refused for the relay's rate: no fault of the message's or the
	 * relay's, so it waits uncounted, up to its max_age */
	if (job->sess.rate_limited && !job->sess.relay_failed &&
	    !jm->file_error && !jm->temp_error &&
	    now_s() - m->queued_at < cf->max_age)
		return rate_outcome(d, job, m, can_continue);
	if (!jm->file_error && !jm->temp_error && can_continue)
		return 1;
	if (m->flags & QUEUE_MSG_F_FLUSHED)
		m->flags &= ~QUEUE_MSG_F_FLUSHED; /* a flush takes no step */
	else
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
				control_msg_sent(d, jm->id, m.owner_uid);
				rc = coalesce_sent(txn, &m, now_s());
				if (rc >= 0)
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
	/* the counters move with the outcomes, or not at all */
	if (rc >= 0)
		rc = metrics_job_record(txn, job);
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
	/* a job whose files could not be read says nothing of the relay */
	if (job->attempted)
		health_report(d, tname, job->sess.relay_failed, job->sess.diag);
	rate_session_done(d, job);
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
	control_waiters_check(d);
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
		if (rc < 0 && queue_err_temporary(rc)) {
			/* the file is fine: start again later */
			log_err("id=%s cannot read the spool file: %s", id,
				err);
			break;
		}
		if (rc < 0) {
			log_err("id=%s unreadable spool file: %s", id, err);
			rc = spool_move(d->spool, id, dir, QUEUE_DIR_FAILED);
			if (rc >= 0)
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

/*
 * The delivery threads map the files of cur/ and hold/, so each must be
 * one that no one but root and the spool's owner can change. A file that
 * is not (left by an older spoold, which moved users' files in place, or
 * put there by hand) is replaced by a copy of the daemon's own if it
 * passes the pickup rules, else moved to failed/ with the reason. Files of
 * failed/ are left as they are: spool_file_open refuses to requeue one
 * that is not the daemon's. 0, or -errno for a passing error.
 */
static int
sched_adopt(struct daemon *d, enum queue_dir dir)
{
	int dfd = spool_dirfd(d->spool, dir), rc, replaced = 0;
	struct id_set ids = {0};

	spool_pickup_clean(d->spool, dir);
	rc = spool_scan(d->spool, dir, scan_cb, &ids);
	for (size_t i = 0; i < ids.n && rc >= 0; i++) {
		const char *id = ids.ids[i];
		struct spool_pickup p;
		char err[512];
		struct stat st;

		if (fstatat(dfd, id, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    spool_file_untrusted(d->spool, &st) == NULL)
			continue;
		rc = spool_pickup_read(d->spool, dir, id, d->gen->cf.max_size,
				       &p, err, sizeof(err));
		if (rc == 0) {
			rc = spool_pickup_stage(d->spool, dir, id, &p, NULL,
						err, sizeof(err));
			if (rc == 0)
				rc = spool_pickup_place(d->spool, dir, id, 1);
			spool_pickup_free(&p);
		}
		if (rc == 0) {
			replaced++;
			log_info("id=%s uid=%ld %s file replaced by spoold's "
				 "own copy",
				 id, uid_num(st.st_uid),
				 dir == QUEUE_DIR_CUR ? "cur/" : "hold/");
		} else if (!queue_err_temporary(rc) && rc != -ENOENT) {
			log_err("id=%s uid=%ld status=failed reply=\"%s\"", id,
				uid_num(st.st_uid), err);
			rc = spool_move(d->spool, id, dir, QUEUE_DIR_FAILED);
			if (rc < 0) /* delivery refuses it in its turn */
				log_err("id=%s cannot move to failed/: %s", id,
					strerror(-rc));
			rc = 0;
		}
		if (rc == -ENOENT)
			rc = 0;
	}
	if (rc >= 0 && replaced > 0 && fsync(dfd) < 0)
		rc = -errno;
	id_set_free(&ids);
	return rc < 0 ? rc : 0;
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
	int rc = sched_adopt(d, QUEUE_DIR_CUR);

	if (rc == 0)
		rc = sched_adopt(d, QUEUE_DIR_HOLD);
	if (rc < 0) {
		snprintf(err, errlen, "cannot check the files of %s: %s",
			 spool_path(d->spool), strerror(-rc));
		return rc;
	}
	rc = sched_reconcile(d, &rebuilt);

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

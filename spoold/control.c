/*
 * control.c - the daemon's end of SPOOL/ctl.sock (see spool/ctlproto.h).
 *
 * One request per connection, answered from the loop thread, so a command
 * that changes the queue is serialised with the scheduler and cannot race
 * a delivery.
 *
 * Any local user may connect, so no client may cost the daemon more than
 * a bounded share of its descriptors, memory and loop time:
 *  - a uid other than root holds at most CTL_CONN_PER_UID connections and
 *    all such uids together CTL_CONN_MAX; root has CTL_CONN_MAX of its
 *    own, so no flood locks the operator out. A connection over a cap gets
 *    one "ERR" line and is closed at once; refusals and timeouts are
 *    logged at most once a minute per uid.
 *  - a client has CTL_IDLE_MS from its connect to send its request line
 *    (CTL_REQUEST_MAX bytes at most), and as long again to take the reply.
 *  - the listening socket is ours, watched with a uv_poll (uv_listen
 *    cannot pause): while no more than the reserve of descriptors is
 *    free, it is not watched, new connections wait in the kernel's
 *    backlog, and deliveries, the spool and LMDB keep their descriptors.
 *  - a WAIT parks its connection until the message's outcome or the
 *    deadline it asked for (CTL_WAIT_MAX_S at most), whichever comes
 *    first; at most CTL_WAITERS_MAX wait at once.
 *  - a user other than root and the spool's owner (a stranger) starts a
 *    probe round at most once per CTL_STRANGER_PROBE_MS for all strangers
 *    together, and gets each transport's verdict, never a relay's name,
 *    address or error text.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "spool/ctlproto.h"
#include "spool/log.h"
#include "spool/util.h"
#include "spoold.h"

#define CTL_CONN_PER_UID 8
#define CTL_CONN_MAX 64
#define CTL_BACKLOG 64
#define CTL_IDLE_MS 5000
#define CTL_SWEEP_MS 500
#define CTL_LOG_EVERY_MS 60000
#define CTL_STRANGER_PROBE_MS 10000
/* accepts per turn of the loop, so a flood cannot hold the loop */
#define CTL_ACCEPT_BATCH 32
/* Descriptors kept for the rest of the daemon: the loop, LMDB, the spool
 * folders, the lock, syslog (base); per delivery thread a relay socket,
 * the message, the resolver, the CA and password files; per transport
 * the probe's socket and resolver. */
#define CTL_FD_BASE 32
#define CTL_FD_PER_DELIVERY 8
#define CTL_FD_PER_TRANSPORT 4
/* WAIT requests parked at once, at most; more are told to come back. */
#define CTL_WAITERS_MAX 1024
/* Delivered ids remembered for WAIT: a submitter asks right after its
 * submit, and a fast relay may have taken the message already. */
#define CTL_RECENT_MAX 4096
/* The longest WAIT, as `submit --wait` allows. */
#define CTL_WAIT_MAX_S 86400

struct ctl_recent {
	struct {
		char id[QUEUE_ID_LEN + 1];
		char by[QUEUE_ID_LEN + 1]; /* "": sent; else replaced by it */
		uint32_t uid;
	} e[CTL_RECENT_MAX];
	size_t next; /* a ring: the oldest entry is overwritten */
};

/* Connections and logged complaints of one uid. */
struct ctl_uid {
	uid_t uid;
	unsigned conns;
	int64_t logged_ms; /* last complaint logged; 0: none in memory */
	unsigned quiet;	   /* complaints not logged since then */
};

struct control {
	struct daemon *d;
	int fd; /* the listening socket */
	uv_poll_t poll;
	uv_timer_t
	    sweep; /* idle timeouts, and the retry of a paused listener */
	unsigned handles; /* of poll and sweep still open; freed at 0 */
	int paused; /* descriptors are short: the listener is not polled */
	int64_t paused_logged_ms;
	long nofile;
	struct ctl_conn *conns;
	unsigned nroot, nother; /* connections open */
	int64_t stranger_probe_ms;
	struct ctl_conn *waiters; /* parked WAITs, answered on an outcome */
	unsigned nwaiters;
	struct ctl_recent *recent; /* ids delivered lately, for WAIT */
	struct ctl_uid uids[2 * CTL_CONN_MAX];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

struct ctl_conn {
	uv_pipe_t pipe;
	struct control *ctl;
	struct ctl_conn *prev, *next;
	uid_t uid;
	int64_t deadline_ms; /* closed then; 0 while a probe round runs */
	uv_write_t wreq;
	char *reply;
	struct ctl_reader rd;
	/* a parked WAIT: its message and when to answer regardless */
	char wait_id[QUEUE_ID_LEN + 1];
	int64_t wait_deadline_ms; /* 0: not waiting */
	struct ctl_conn *next_waiter;
};

static struct ctl_uid *
ctl_uid_find(struct control *ctl, uid_t uid, int create)
{
	struct ctl_uid *spare = NULL;

	for (size_t i = 0; i < ARRAY_SIZE(ctl->uids); i++) {
		struct ctl_uid *u = &ctl->uids[i];
		int used = u->conns > 0 || u->logged_ms != 0;

		if (used && u->uid == uid)
			return u;
		if (u->conns > 0)
			continue;
		/* an idle entry whose complaint is oldest may be reused */
		if (spare == NULL || u->logged_ms < spare->logged_ms)
			spare = u;
	}
	if (!create || spare == NULL)
		return NULL;
	/* with more uids than entries complaining within a minute, the
	 * oldest is forgotten and may be logged again: still bounded */
	memset(spare, 0, sizeof(*spare));
	spare->uid = uid;
	return spare;
}

static void ctl_complain(struct control *ctl, uid_t uid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Logs a client's misbehaviour, at most once a minute per uid. */
static void
ctl_complain(struct control *ctl, uid_t uid, const char *fmt, ...)
{
	struct ctl_uid *u = ctl_uid_find(ctl, uid, 1);
	int64_t now = time_mono_ms();
	char text[256];
	va_list ap;

	if (u != NULL && u->logged_ms != 0 &&
	    now - u->logged_ms < CTL_LOG_EVERY_MS) {
		u->quiet++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (u != NULL && u->quiet > 0)
		log_warn("control: uid %lu: %s (and %u more event(s) in the "
			 "last minute; at most one a minute is logged)",
			 (unsigned long)uid, text, u->quiet);
	else
		log_warn("control: uid %lu: %s (at most one such line a "
			 "minute)",
			 (unsigned long)uid, text);
	if (u != NULL) {
		u->logged_ms = now;
		u->quiet = 0;
	}
}

/* Descriptors the rest of the daemon may need at once. */
static long
ctl_fd_wanted(const struct control *ctl)
{
	const struct conf *cf = &ctl->d->gen->cf;

	return CTL_FD_BASE + (long)cf->concurrency * CTL_FD_PER_DELIVERY +
	       (long)cf->transport_count * CTL_FD_PER_TRANSPORT;
}

/* Descriptors reserved for everything but the control socket. */
static long
ctl_fd_reserve(const struct control *ctl)
{
	long want = ctl_fd_wanted(ctl);

	/* under a tiny limit the socket still gets half, or no operator
	 * could ever reach the daemon */
	return want < ctl->nofile / 2 ? want : ctl->nofile / 2;
}

/* Descriptors the process may still open (RLIMIT_NOFILE less those open,
 * as /proc counts them), or -1 when that cannot be known; then a failed
 * accept() is the only sign. */
static long
ctl_fd_free(const struct control *ctl)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *e;
	long open = -1; /* the directory's own descriptor */

	if (dir == NULL)
		return errno == EMFILE || errno == ENFILE ? 0 : -1;
	while ((e = readdir(dir)) != NULL)
		if (e->d_name[0] != '.')
			open++;
	closedir(dir);
	return ctl->nofile - open;
}

static void ctl_sweep_cb(uv_timer_t *t);
static void ctl_listen_cb(uv_poll_t *p, int status, int events);

static void
ctl_sweep_arm(struct control *ctl)
{
	if (!uv_is_active((uv_handle_t *)&ctl->sweep))
		uv_timer_start(&ctl->sweep, ctl_sweep_cb, CTL_SWEEP_MS,
			       CTL_SWEEP_MS);
}

static void
ctl_pause(struct control *ctl, long free_fds)
{
	int64_t now = time_mono_ms();

	if (ctl->paused)
		return;
	ctl->paused = 1;
	uv_poll_stop(&ctl->poll);
	ctl_sweep_arm(ctl);
	if (ctl->paused_logged_ms != 0 &&
	    now - ctl->paused_logged_ms < CTL_LOG_EVERY_MS)
		return;
	ctl->paused_logged_ms = now;
	log_warn("control: %ld of %ld descriptors free, %ld kept for "
		 "deliveries; not accepting on %s until more are free (at "
		 "most one such line a minute)",
		 free_fds < 0 ? 0 : free_fds, ctl->nofile, ctl_fd_reserve(ctl),
		 CTL_SOCKET_NAME);
}

static void
ctl_resume_maybe(struct control *ctl)
{
	long free_fds;

	if (!ctl->paused || ctl->d->stopping)
		return;
	free_fds = ctl_fd_free(ctl);
	if (free_fds >= 0 && free_fds <= ctl_fd_reserve(ctl))
		return;
	ctl->paused = 0;
	uv_poll_start(&ctl->poll, UV_READABLE, ctl_listen_cb);
}

static void
ctl_conn_closed(uv_handle_t *h)
{
	struct ctl_conn *c = h->data;

	free(c->reply);
	free(c);
}

static void
ctl_waiter_unlink(struct ctl_conn *c)
{
	struct ctl_conn **p = &c->ctl->waiters;

	if (c->wait_deadline_ms == 0)
		return;
	c->wait_deadline_ms = 0;
	while (*p != NULL && *p != c)
		p = &(*p)->next_waiter;
	if (*p == c) {
		*p = c->next_waiter;
		c->ctl->nwaiters--;
	}
}

static void
ctl_conn_close(struct ctl_conn *c)
{
	struct control *ctl = c->ctl;
	struct ctl_uid *u;

	if (uv_is_closing((uv_handle_t *)&c->pipe))
		return;
	ctl_waiter_unlink(c);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		ctl->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	if (c->uid == 0)
		ctl->nroot--;
	else
		ctl->nother--;
	if ((u = ctl_uid_find(ctl, c->uid, 0)) != NULL && u->conns > 0)
		u->conns--;
	uv_close((uv_handle_t *)&c->pipe, ctl_conn_closed);
	ctl_resume_maybe(ctl);
}

static void
ctl_written(uv_write_t *req, int status)
{
	(void)status;
	ctl_conn_close(req->data);
}

static void ctl_reply(struct ctl_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
ctl_reply(struct ctl_conn *c, const char *fmt, ...)
{
	va_list ap;
	uv_buf_t b;
	int n;

	/* a probe round may end after the daemon began to stop */
	if (uv_is_closing((uv_handle_t *)&c->pipe))
		return;
	va_start(ap, fmt);
	n = vasprintf(&c->reply, fmt, ap);
	va_end(ap);
	if (n < 0) {
		c->reply = NULL;
		ctl_conn_close(c);
		return;
	}
	ctl_waiter_unlink(c);
	b = uv_buf_init(c->reply, (unsigned)n);
	c->wreq.data = c;
	c->deadline_ms = time_mono_ms() + CTL_IDLE_MS;
	uv_read_stop((uv_stream_t *)&c->pipe);
	if (uv_write(&c->wreq, (uv_stream_t *)&c->pipe, &b, 1, ctl_written) < 0)
		ctl_conn_close(c);
}

/* Root and the spool's owner may change the queue and see relay details. */
static int
ctl_trusted(struct ctl_conn *c)
{
	struct stat st;

	if (c->uid == 0)
		return 1;
	if (stat(spool_path(c->ctl->d->spool), &st) == 0 && st.st_uid == c->uid)
		return 1;
	return 0;
}

static void
ctl_probe_done(void *arg)
{
	struct ctl_conn *c = arg;
	char *text = health_describe(c->ctl->d);

	ctl_reply(c, "OK\n%s", text ? text : "");
	free(text);
}

/* What a stranger learns: up or down per transport name, nothing of the
 * relays themselves (host, URL, error text). */
static void
ctl_probe_done_stranger(void *arg)
{
	struct ctl_conn *c = arg;
	const struct conf *cf = &c->ctl->d->gen->cf;
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);

	if (fp == NULL) {
		ctl_reply(c, "ERR out of memory\n");
		return;
	}
	for (size_t i = 0; i < cf->transport_count; i++)
		fprintf(fp, "%s: %s\n", cf->transports[i].name,
			health_is_up(c->ctl->d, cf->transports[i].name)
			    ? "up"
			    : "down");
	if (fclose(fp) != 0) {
		free(out);
		ctl_reply(c, "ERR out of memory\n");
		return;
	}
	ctl_reply(c, "OK\n%s", out);
	free(out);
}

static void
ctl_do_ping(struct ctl_conn *c, struct ctl_request *req)
{
	(void)req;
	ctl_reply(c, "OK pid=%ld\n", (long)getpid());
}

static void
ctl_do_probe(struct ctl_conn *c, struct ctl_request *req)
{
	struct control *ctl = c->ctl;
	void (*done)(void *) = ctl_probe_done;
	int64_t now = time_mono_ms();

	(void)req;
	if (!ctl_trusted(c)) {
		done = ctl_probe_done_stranger;
		/* strangers share one round per period: what they trigger
		 * goes out to the relays, so they must not be able to
		 * repeat it at will */
		if (ctl->stranger_probe_ms != 0 &&
		    now - ctl->stranger_probe_ms < CTL_STRANGER_PROBE_MS) {
			done(c);
			return;
		}
		ctl->stranger_probe_ms = now;
	}
	/* the probes' own timeouts bound the wait */
	c->deadline_ms = 0;
	if (health_probe_all(ctl->d, done, c) < 0)
		ctl_reply(c, "ERR out of memory\n");
}

static void
ctl_do_flush(struct ctl_conn *c, struct ctl_request *req)
{
	char err[256] = "";
	int rc =
	    sched_flush(c->ctl->d, req->args, req->nargs, err, sizeof(err));

	if (rc < 0)
		ctl_reply(c, "ERR %s\n", err);
	else
		ctl_reply(c, "OK %d\n", rc);
}

static void
ctl_do_action(struct ctl_conn *c, struct ctl_request *req)
{
	static const enum queue_action actions[] = {
	    [CTL_HOLD] = QUEUE_HOLD,
	    [CTL_RELEASE] = QUEUE_RELEASE,
	    [CTL_DELETE] = QUEUE_DELETE,
	    [CTL_REQUEUE] = QUEUE_REQUEUE,
	};
	struct sched_act_result res;

	if (sched_act(c->ctl->d, actions[req->verb], req->args, req->nargs,
		      &res) < 0)
		ctl_reply(c, "ERR %s\n", res.err);
	else
		ctl_reply(c, "OK %zu %zu %d %s\n", res.done, res.failed,
			  -res.first_rc, res.err);
}

/* ---- WAIT: how a message fares, for its submitter ---------------- */

static void
ctl_recent_add(struct daemon *d, const char *id, const char *by,
	       uint32_t owner_uid)
{
	struct control *ctl = d->control;
	struct ctl_recent *r;

	if (ctl == NULL)
		return;
	r = ctl->recent;
	if (r == NULL && (r = ctl->recent = calloc(1, sizeof(*r))) == NULL)
		return; /* a WAIT then finds the message gone: "deleted" */
	str_copy(r->e[r->next].id, id, sizeof(r->e[0].id));
	str_copy(r->e[r->next].by, by, sizeof(r->e[0].by));
	r->e[r->next].uid = owner_uid;
	r->next = (r->next + 1) % CTL_RECENT_MAX;
}

void
control_msg_sent(struct daemon *d, const char *id, uint32_t owner_uid)
{
	ctl_recent_add(d, id, "", owner_uid);
}

void
control_msg_replaced(struct daemon *d, const char *old_id, const char *new_id,
		     uint32_t owner_uid)
{
	ctl_recent_add(d, old_id, new_id, owner_uid);
}

/* The newest entry for id: 1 with its owner and, if it was replaced, the
 * id that replaced it in by (else ""); 0 if none. */
static int
ctl_recent_find(const struct control *ctl, const char *id, uint32_t *uid,
		char by[QUEUE_ID_LEN + 1])
{
	const struct ctl_recent *r = ctl->recent;

	if (r == NULL)
		return 0;
	for (size_t k = 1; k <= CTL_RECENT_MAX; k++) {
		size_t i = (r->next + CTL_RECENT_MAX - k) % CTL_RECENT_MAX;

		if (strcmp(r->e[i].id, id) == 0) {
			*uid = r->e[i].uid;
			str_copy(by, r->e[i].by, QUEUE_ID_LEN + 1);
			return 1;
		}
	}
	return 0;
}

/* What WAIT tells: a state word (a record's, or sent, or deleted), the
 * attempts made and the reason of the last failure. */
struct ctl_msg_view {
	const char *state;
	unsigned attempts;
	uint32_t owner;
	char reason[QUEUE_REPLY_MAX];
};

/* 0, or -ENOENT when the daemon knows no message id (never queued, or
 * gone in a way it does not remember). */
static int
ctl_msg_view_one(struct control *ctl, const char *id, struct ctl_msg_view *v)
{
	struct daemon *d = ctl->d;
	struct queue_msg_info m;
	struct state_txn *txn;
	struct stat st;
	char by[QUEUE_ID_LEN + 1];
	uint32_t owner;
	int rc;

	memset(v, 0, sizeof(*v));
	if ((rc = state_begin(d->state, 0, &txn)) < 0)
		return rc;
	rc = state_msg_get(txn, id, &m);
	state_abort(txn);
	if (rc == 0) {
		v->state = queue_msg_state_name(m.state);
		v->attempts = m.attempts;
		v->owner = m.owner_uid;
		if (m.last_error != NULL)
			str_copy(v->reason, m.last_error, sizeof(v->reason));
		queue_msg_info_free(&m);
		return 0;
	}
	if (rc != -ENOENT)
		return rc;
	if (ctl_recent_find(ctl, id, &owner, by) && by[0] == '\0') {
		v->owner = owner;
		v->state = "sent";
		return 0;
	}
	/* submitted, not picked up yet: its file says who submitted it */
	if (fstatat(spool_dirfd(d->spool, QUEUE_DIR_NEW), id, &st,
		    AT_SYMLINK_NOFOLLOW) == 0) {
		v->state = "queued";
		v->owner = st.st_uid;
		return 0;
	}
	return -ENOENT;
}

/* 1 if id was replaced by newer messages of its key, with the newest of
 * that chain in newest and id's submitter in owner; 0 if it was not.
 * Bounded: once ids wrap around the ring, it could hold a cycle. */
static int
ctl_replaced_newest(const struct control *ctl, const char *id, uint32_t *owner,
		    char newest[QUEUE_ID_LEN + 1])
{
	char by[QUEUE_ID_LEN + 1];
	uint32_t uid;

	if (!ctl_recent_find(ctl, id, owner, by) || by[0] == '\0')
		return 0;
	for (int hop = 0; hop < 64; hop++) {
		str_copy(newest, by, QUEUE_ID_LEN + 1);
		if (!ctl_recent_find(ctl, newest, &uid, by) || by[0] == '\0')
			break;
	}
	return 1;
}

/* As ctl_msg_view_one; a message that newer ones of its key replaced
 * fares as the newest does, and its submitter keeps the right to ask. */
static int
ctl_msg_view(struct control *ctl, const char *id, struct ctl_msg_view *v)
{
	char newest[QUEUE_ID_LEN + 1];
	uint32_t owner;
	int rc = ctl_msg_view_one(ctl, id, v);

	if (rc != -ENOENT || !ctl_replaced_newest(ctl, id, &owner, newest))
		return rc;
	rc = ctl_msg_view_one(ctl, newest, v);
	if (rc == 0)
		v->owner = owner;
	return rc;
}

static int
ctl_state_final(const char *state)
{
	return strcmp(state, "sent") == 0 || strcmp(state, "failed") == 0 ||
	       strcmp(state, "deleted") == 0;
}

static void
ctl_wait_answer(struct ctl_conn *c, const struct ctl_msg_view *v)
{
	char reason[sizeof(v->reason)];

	/* one line: a relay's reply may have had several */
	str_copy(reason, v->reason, sizeof(reason));
	for (char *p = reason; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	ctl_reply(c, "OK %s %u %s\n", v->state, v->attempts, reason);
}

/* Answers c if its message reached an outcome, or always with force. */
static void
ctl_waiter_check(struct ctl_conn *c, int force)
{
	struct ctl_msg_view v;
	int rc = ctl_msg_view(c->ctl, c->wait_id, &v);

	if (rc == -ENOENT) {
		/* it existed when the WAIT came: an operator deleted it */
		v.state = "deleted";
		str_copy(v.reason, "deleted by an operator", sizeof(v.reason));
	} else if (rc < 0) {
		if (force)
			ctl_reply(c, "ERR state: %s\n", strerror(-rc));
		return;
	}
	if (force || ctl_state_final(v.state))
		ctl_wait_answer(c, &v);
}

void
control_waiters_check(struct daemon *d)
{
	struct ctl_conn *c, *next;

	if (d->control == NULL)
		return;
	for (c = d->control->waiters; c != NULL; c = next) {
		next = c->next_waiter; /* an answer unlinks c */
		ctl_waiter_check(c, 0);
	}
}

/* The client hung up (or sent more): it no longer waits. */
static void
ctl_wait_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	(void)buf;
	if (nread != 0)
		ctl_conn_close(s->data);
}

static void ctl_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

/* WAIT ID SECONDS: answered once the message is sent, failed or
 * deleted, or after SECONDS with its state then. Only root, the spool's
 * owner and the user who submitted the message may ask. */
static void
ctl_do_wait(struct ctl_conn *c, struct ctl_request *req)
{
	struct control *ctl = c->ctl;
	struct ctl_msg_view v;
	char *end;
	long secs;
	int rc;

	if (req->nargs != 2 || !queue_id_valid(req->args[0])) {
		ctl_reply(c, "ERR usage: WAIT ID SECONDS\n");
		return;
	}
	secs = strtol(req->args[1], &end, 10);
	if (*end != '\0' || secs < 0 || secs > CTL_WAIT_MAX_S) {
		ctl_reply(c, "ERR WAIT: seconds from 0 to %d\n",
			  CTL_WAIT_MAX_S);
		return;
	}
	rc = ctl_msg_view(ctl, req->args[0], &v);
	if (rc == -ENOENT) {
		ctl_reply(c, "ERR %s: no such message\n", req->args[0]);
		return;
	}
	if (rc < 0) {
		ctl_reply(c, "ERR state: %s\n", strerror(-rc));
		return;
	}
	if (!ctl_trusted(c) && c->uid != v.owner) {
		ctl_reply(c,
			  "ERR permission denied: %s was submitted by "
			  "another user\n",
			  req->args[0]);
		return;
	}
	if (secs == 0 || ctl_state_final(v.state)) {
		ctl_wait_answer(c, &v);
		return;
	}
	if (ctl->nwaiters >= CTL_WAITERS_MAX) {
		ctl_reply(c, "ERR too many clients waiting; try again\n");
		return;
	}
	str_copy(c->wait_id, req->args[0], sizeof(c->wait_id));
	/* the WAIT's own deadline replaces the idle timeout */
	c->deadline_ms = 0;
	c->wait_deadline_ms = time_mono_ms() + (int64_t)secs * 1000;
	c->next_waiter = ctl->waiters;
	ctl->waiters = c;
	ctl->nwaiters++;
	ctl_sweep_arm(ctl);
	uv_read_start((uv_stream_t *)&c->pipe, ctl_alloc, ctl_wait_read);
}

/* ---- STATUS: counts and health, for anyone ------------------------ */

/* No address and no relay reply: any local user may ask, so an
 * application's own health check works. */
static void
ctl_do_status(struct ctl_conn *c, struct ctl_request *req)
{
	const struct conf *cf = &c->ctl->d->gen->cf;
	struct daemon *d = c->ctl->d;
	struct queue_summary sum;
	struct state_txn *txn;
	char *out = NULL;
	size_t len = 0;
	FILE *fp;
	int rc;

	(void)req;
	if ((rc = state_begin(d->state, 0, &txn)) < 0) {
		ctl_reply(c, "ERR state: %s\n", strerror(-rc));
		return;
	}
	rc = queue_summary_read(d->spool, txn, &sum);
	state_abort(txn);
	if (rc < 0 || (fp = open_memstream(&out, &len)) == NULL) {
		ctl_reply(c, "ERR state: %s\n",
			  strerror(rc < 0 ? -rc : ENOMEM));
		return;
	}
	fprintf(fp, "OK pid=%ld\n", (long)getpid());
	fprintf(fp, "queue %llu %llu %llu %llu %llu %llu %lld\n",
		(unsigned long long)sum.counts[QUEUE_MSG_QUEUED],
		(unsigned long long)sum.counts[QUEUE_MSG_DEFERRED],
		(unsigned long long)sum.counts[QUEUE_MSG_DELIVERING],
		(unsigned long long)sum.counts[QUEUE_MSG_HELD],
		(unsigned long long)sum.counts[QUEUE_MSG_FAILED],
		(unsigned long long)sum.in_new, (long long)sum.oldest);
	for (size_t i = 0; i < cf->route_count; i++) {
		const char *name = cf->transports[cf->route[i]].name;
		int64_t probe;
		int up = health_state(d, name, &probe);

		fprintf(fp, "transport %s %d %lld\n", name, up,
			(long long)probe);
	}
	if (fclose(fp) != 0) {
		free(out);
		ctl_reply(c, "ERR out of memory\n");
		return;
	}
	ctl_reply(c, "%s", out);
	free(out);
}

/* ---- SUBMITTED: what coalescing made of a submission -------------- */

/* The record of the newest message that replaced id into *m: 0; 1 if
 * that message was sent meanwhile; or -errno. */
static int
ctl_submitted_newest(struct control *ctl, const char *id,
		     struct queue_msg_info *m)
{
	char newest[QUEUE_ID_LEN + 1], by[QUEUE_ID_LEN + 1];
	struct state_txn *txn;
	uint32_t owner;
	int rc;

	if (!ctl_replaced_newest(ctl, id, &owner, newest))
		return -ENOENT;
	if ((rc = state_begin(ctl->d->state, 0, &txn)) < 0)
		return rc;
	rc = state_msg_get(txn, newest, m);
	state_abort(txn);
	if (rc == -ENOENT && ctl_recent_find(ctl, newest, &owner, by) &&
	    by[0] == '\0')
		return 1;
	return rc;
}

/* SUBMITTED ID: "pending" while the file waits in new/, then "queued"
 * (a message of its own), "merged N" (it replaced a queued message of
 * its key and stands for N submissions) or "held T" (held for a digest
 * until T); "sent" once delivered. For root, the spool's owner and the
 * submitter, as WAIT. */
static void
ctl_do_submitted(struct ctl_conn *c, struct ctl_request *req)
{
	struct daemon *d = c->ctl->d;
	struct queue_msg_info m;
	struct state_txn *txn;
	char until[RFC3339_LEN], by[QUEUE_ID_LEN + 1];
	struct stat st;
	uint32_t owner;
	int rc;

	if (req->nargs != 1 || !queue_id_valid(req->args[0])) {
		ctl_reply(c, "ERR usage: SUBMITTED ID\n");
		return;
	}
	if ((rc = state_begin(d->state, 0, &txn)) < 0) {
		ctl_reply(c, "ERR state: %s\n", strerror(-rc));
		return;
	}
	/* the record first: a pickup commits it before the file leaves
	 * new/ */
	rc = state_msg_get(txn, req->args[0], &m);
	state_abort(txn);
	if (rc < 0 && rc != -ENOENT) {
		ctl_reply(c, "ERR state: %s\n", strerror(-rc));
		return;
	}
	if (rc == 0) {
		owner = m.owner_uid;
	} else if (ctl_recent_find(c->ctl, req->args[0], &owner, by)) {
		/* sent, or replaced by a newer one of its key: then it fares
		 * as the newest does, which stands for it too */
		rc = by[0] == '\0'
			 ? 1
			 : ctl_submitted_newest(c->ctl, req->args[0], &m);
		if (rc == -ENOENT) {
			ctl_reply(c, "ERR %s: no such message\n", req->args[0]);
			return;
		}
		if (rc < 0) {
			ctl_reply(c, "ERR state: %s\n", strerror(-rc));
			return;
		}
	} else if (fstatat(spool_dirfd(d->spool, QUEUE_DIR_NEW), req->args[0],
			   &st, AT_SYMLINK_NOFOLLOW) == 0) {
		owner = st.st_uid;
		rc = 2;
	} else {
		ctl_reply(c, "ERR %s: no such message\n", req->args[0]);
		return;
	}
	if (!ctl_trusted(c) && c->uid != owner)
		ctl_reply(c,
			  "ERR permission denied: %s was submitted by "
			  "another user\n",
			  req->args[0]);
	else if (rc == 1)
		ctl_reply(c, "OK sent\n");
	else if (rc == 2)
		ctl_reply(c, "OK pending\n");
	else if ((m.flags & QUEUE_MSG_F_DIGEST) && m.attempts == 0 &&
		 m.state == QUEUE_MSG_DEFERRED)
		ctl_reply(c, "OK held %s\n",
			  format_rfc3339((time_t)m.next_attempt, until));
	else if (m.repeats > 1)
		ctl_reply(c, "OK merged %" PRIu32 "\n", m.repeats);
	else
		ctl_reply(c, "OK queued\n");
	if (rc == 0)
		queue_msg_info_free(&m);
}

/* The Prometheus text of metrics.c: counts and health, as STATUS. */
static void
ctl_do_metrics(struct ctl_conn *c, struct ctl_request *req)
{
	char *text;
	size_t len;
	int rc;

	(void)req;
	rc = metrics_text(c->ctl->d, 1, &text, &len);
	if (rc < 0) {
		ctl_reply(c, "ERR metrics: %s\n", strerror(-rc));
		return;
	}
	ctl_reply(c, "OK\n%s", text);
	free(text);
}

static const struct ctl_handler {
	void (*run)(struct ctl_conn *c, struct ctl_request *req);
	int changes_queue; /* root and the spool's owner only; args are ids */
} ctl_handlers[] = {
    [CTL_PING] = {ctl_do_ping, 0},
    [CTL_PROBE] = {ctl_do_probe, 0},
    [CTL_FLUSH] = {ctl_do_flush, 1},
    [CTL_HOLD] = {ctl_do_action, 1},
    [CTL_RELEASE] = {ctl_do_action, 1},
    [CTL_DELETE] = {ctl_do_action, 1},
    [CTL_REQUEUE] = {ctl_do_action, 1},
    [CTL_WAIT] = {ctl_do_wait, 0},
    [CTL_STATUS] = {ctl_do_status, 0},
    [CTL_SUBMITTED] = {ctl_do_submitted, 0},
    [CTL_METRICS] = {ctl_do_metrics, 0},
};

static void
ctl_dispatch(struct ctl_conn *c)
{
	const struct ctl_handler *h;
	struct ctl_request req;
	const char *why;

	if (ctl_request_parse(c->rd.buf, c->rd.len, &req, &why) < 0) {
		ctl_reply(c, "ERR %s\n", why);
		return;
	}
	h = &ctl_handlers[req.verb];
	if (h->changes_queue) {
		if (!ctl_trusted(c)) {
			ctl_reply(c, "ERR permission denied: only root and "
				     "the spool's owner change the queue\n");
			return;
		}
		for (size_t i = 0; i < req.nargs; i++)
			if (!queue_id_valid(req.args[i])) {
				ctl_reply(c, "ERR %s: not a queue id\n",
					  req.args[i]);
				return;
			}
	}
	h->run(c, &req);
}

static void
ctl_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	static char scratch[4096];

	(void)h;
	(void)suggested;
	/* one loop thread: a static buffer is copied out in ctl_read */
	*buf = uv_buf_init(scratch, sizeof(scratch));
}

static void
ctl_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct ctl_conn *c = s->data;
	int rc;

	if (nread < 0) {
		ctl_conn_close(c);
		return;
	}
	if (nread == 0)
		return;
	rc = ctl_reader_feed(&c->rd, buf->base, (size_t)nread);
	if (rc < 0) {
		/* nothing a client sends is worth a reply past the cap */
		ctl_conn_close(c);
		return;
	}
	if (rc == 0)
		return;
	/* one request per connection: the reply may come later (PROBE),
	 * and the connection must live until then */
	uv_read_stop(s);
	ctl_dispatch(c);
}

/* Refuses a connection before any memory is spent on it. */
static void
ctl_refuse(int fd, const char *line)
{
	/* best effort: the socket's buffer is empty, so it fits */
	if (send(fd, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_debug("control: refusal not sent: %s", strerror(errno));
	close(fd);
}

/* Takes over an accepted socket, within the caps. */
static void
ctl_conn_new(struct control *ctl, int fd)
{
	struct ctl_conn *c;
	struct ctl_uid *u;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	char line[160];

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		close(fd);
		return;
	}
	u = ctl_uid_find(ctl, cred.uid, 1);
	if (cred.uid == 0 ? ctl->nroot >= CTL_CONN_MAX
			  : ctl->nother >= CTL_CONN_MAX) {
		ctl_complain(ctl, cred.uid,
			     "refused a connection: %u are open, the most "
			     "allowed",
			     cred.uid == 0 ? ctl->nroot : ctl->nother);
		snprintf(line, sizeof(line),
			 "ERR too many connections (at most %d); try again "
			 "later\n",
			 CTL_CONN_MAX);
		ctl_refuse(fd, line);
		return;
	}
	if (u == NULL || (cred.uid != 0 && u->conns >= CTL_CONN_PER_UID)) {
		ctl_complain(ctl, cred.uid,
			     "refused a connection: it holds %d, the most "
			     "one user other than root may",
			     CTL_CONN_PER_UID);
		snprintf(line, sizeof(line),
			 "ERR too many connections from uid %lu (at most %d "
			 "for a user other than root); try again later\n",
			 (unsigned long)cred.uid, CTL_CONN_PER_UID);
		ctl_refuse(fd, line);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		ctl_refuse(fd, "ERR out of memory\n");
		return;
	}
	c->ctl = ctl;
	c->uid = cred.uid;
	c->deadline_ms = time_mono_ms() + CTL_IDLE_MS;
	uv_pipe_init(ctl->d->loop, &c->pipe, 0);
	c->pipe.data = c;
	if (uv_pipe_open(&c->pipe, fd) < 0) {
		close(fd);
		uv_close((uv_handle_t *)&c->pipe, ctl_conn_closed);
		return;
	}
	c->next = ctl->conns;
	if (ctl->conns != NULL)
		ctl->conns->prev = c;
	ctl->conns = c;
	if (c->uid == 0)
		ctl->nroot++;
	else
		ctl->nother++;
	u->conns++;
	ctl_sweep_arm(ctl);
	if (uv_read_start((uv_stream_t *)&c->pipe, ctl_alloc, ctl_read) < 0)
		ctl_conn_close(c);
}

static void
ctl_listen_cb(uv_poll_t *p, int status, int events)
{
	struct control *ctl = p->data;
	long free_fds = ctl_fd_free(ctl), reserve = ctl_fd_reserve(ctl);

	(void)events;
	if (status < 0) {
		/* paused, so a lasting error is retried (and logged) twice a
		 * second, not on every turn of the loop */
		log_warn("control: %s: %s", ctl->path, uv_strerror(status));
		ctl->paused = 1;
		uv_poll_stop(&ctl->poll);
		ctl_sweep_arm(ctl);
		return;
	}
	for (int i = 0; i < CTL_ACCEPT_BATCH; i++, free_fds--) {
		int fd;

		if (free_fds >= 0 && free_fds <= reserve) {
			ctl_pause(ctl, free_fds);
			return;
		}
		fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM)
				ctl_pause(ctl, 0);
			/* else EAGAIN: drained; ECONNABORTED, EINTR: the
			 * next turn tries again */
			return;
		}
		ctl_conn_new(ctl, fd);
	}
}

/* Closes connections past their deadline; retries a paused listener. */
static void
ctl_sweep_cb(uv_timer_t *t)
{
	struct control *ctl = t->data;
	int64_t now = time_mono_ms();
	struct ctl_conn *c = ctl->conns;

	/* outcomes reached by other paths than a session (an expiry at
	 * pickup, an operator's action) are found here too */
	for (c = ctl->waiters; c != NULL;) {
		struct ctl_conn *next = c->next_waiter; /* answers unlink */

		ctl_waiter_check(c, now >= c->wait_deadline_ms);
		c = next;
	}
	for (c = ctl->conns; c != NULL;) {
		struct ctl_conn *next = c->next;

		if (c->deadline_ms != 0 && now >= c->deadline_ms) {
			if (c->reply == NULL)
				ctl_complain(ctl, c->uid,
					     "closed a connection that sent no "
					     "request within %d ms",
					     CTL_IDLE_MS);
			ctl_conn_close(c);
		}
		c = next;
	}
	ctl_resume_maybe(ctl);
	if (ctl->conns == NULL && !ctl->paused)
		uv_timer_stop(t);
}

static void
ctl_handle_closed(uv_handle_t *h)
{
	struct control *ctl = h->data;

	if (--ctl->handles > 0)
		return;
	if (ctl->fd >= 0)
		close(ctl->fd);
	free(ctl);
}

/* Closes everything; ctl is freed once libuv has let go of its handles. */
static void
ctl_free(struct control *ctl)
{
	/* a waiter reads the hang-up as "spoold stopped" */
	while (ctl->conns != NULL)
		ctl_conn_close(ctl->conns);
	free(ctl->recent);
	ctl->recent = NULL;
	if (ctl->handles == 0) {
		if (ctl->fd >= 0)
			close(ctl->fd);
		free(ctl);
		return;
	}
	uv_close((uv_handle_t *)&ctl->sweep, ctl_handle_closed);
	if (ctl->handles == 2)
		uv_close((uv_handle_t *)&ctl->poll, ctl_handle_closed);
}

/* A listening socket that any local user may connect to. */
static int
ctl_socket(struct control *ctl, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	mode_t old;
	int rc = 0;

	str_copy(sa.sun_path, ctl->path, sizeof(sa.sun_path));
	ctl->fd =
	    socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (ctl->fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "control socket: %s", strerror(errno));
		return rc;
	}
	/* the spool lock says no other daemon owns it, so this is stale */
	unlink(ctl->path);
	/* Anyone may connect; what they may do is checked per request. */
	old = umask(0111);
	if (bind(ctl->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(ctl->fd, CTL_BACKLOG) < 0)
		rc = -errno;
	umask(old);
	if (rc < 0)
		snprintf(err, errlen, "control socket %s: %s", ctl->path,
			 strerror(-rc));
	return rc;
}

int
control_start(struct daemon *d, char *err, size_t errlen)
{
	struct control *ctl = calloc(1, sizeof(*ctl));
	struct rlimit rl;
	int rc;

	if (ctl == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ctl->d = d;
	ctl->fd = -1;
	if ((size_t)snprintf(ctl->path, sizeof(ctl->path), "%s/%s",
			     spool_path(d->spool),
			     CTL_SOCKET_NAME) >= sizeof(ctl->path)) {
		snprintf(err, errlen,
			 "control socket %s/%s: path too long for a socket",
			 spool_path(d->spool), CTL_SOCKET_NAME);
		free(ctl);
		return -ENAMETOOLONG;
	}
	ctl->nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
			      rl.rlim_cur != RLIM_INFINITY &&
			      rl.rlim_cur < 1L << 30
			  ? (long)rl.rlim_cur
			  : 1L << 30;
	uv_timer_init(d->loop, &ctl->sweep);
	ctl->sweep.data = ctl;
	ctl->handles = 1;
	d->control = ctl;
	if ((rc = ctl_socket(ctl, err, errlen)) < 0)
		goto fail;
	if ((rc = uv_poll_init(d->loop, &ctl->poll, ctl->fd)) < 0) {
		snprintf(err, errlen, "control socket %s: %s", ctl->path,
			 uv_strerror(rc));
		goto fail;
	}
	ctl->poll.data = ctl;
	ctl->handles = 2;
	uv_poll_start(&ctl->poll, UV_READABLE, ctl_listen_cb);
	if (ctl_fd_wanted(ctl) > ctl->nofile / 2)
		log_warn("the descriptor limit (%ld) leaves less than the %ld "
			 "that %u delivery thread(s) and %zu transport(s) may "
			 "need; raise it to at least %ld (LimitNOFILE=, ulimit "
			 "-n)",
			 ctl->nofile, ctl_fd_wanted(ctl),
			 d->gen->cf.concurrency, d->gen->cf.transport_count,
			 2 * ctl_fd_wanted(ctl));
	return 0;
fail:
	d->control = NULL;
	ctl_free(ctl);
	return rc;
}

void
control_stop(struct daemon *d)
{
	struct control *ctl = d->control;

	if (ctl == NULL)
		return;
	d->control = NULL;
	unlink(ctl->path);
	ctl_free(ctl);
}

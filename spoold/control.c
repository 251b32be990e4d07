/*
 * control.c - the daemon's end of SPOOL/ctl.sock (see spool/ctlproto.h).
 *
 * One request per connection, answered from the loop thread, so a command
 * that changes the queue is serialised with the scheduler and cannot race
 * a delivery. A request over CTL_REQUEST_MAX closes the connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spool/ctlproto.h"
#include "spool/log.h"
#include "spool/util.h"
#include "spoold.h"

struct ctl_conn {
	uv_pipe_t pipe;
	struct daemon *d;
	char *buf;
	size_t len;
	uid_t uid;
	uv_write_t wreq;
	char *reply;
	/* a parked WAIT: its message and when to answer regardless */
	char wait_id[QUEUE_ID_LEN + 1];
	uint64_t wait_deadline; /* uv_now() ms; 0: not waiting */
	struct ctl_conn *next_waiter;
};

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
		uint32_t uid;
	} e[CTL_RECENT_MAX];
	size_t next; /* a ring: the oldest entry is overwritten */
};

static void
ctl_conn_closed(uv_handle_t *h)
{
	struct ctl_conn *c = h->data;

	free(c->buf);
	free(c->reply);
	free(c);
}

static void
ctl_waiter_unlink(struct ctl_conn *c)
{
	struct ctl_conn **p = &c->d->waiters;

	if (c->wait_deadline == 0)
		return;
	c->wait_deadline = 0;
	while (*p != NULL && *p != c)
		p = &(*p)->next_waiter;
	if (*p == c)
		*p = c->next_waiter;
	if (c->d->waiters == NULL)
		uv_timer_stop(&c->d->wait_timer);
}

static void
ctl_conn_close(struct ctl_conn *c)
{
	ctl_waiter_unlink(c);
	if (!uv_is_closing((uv_handle_t *)&c->pipe))
		uv_close((uv_handle_t *)&c->pipe, ctl_conn_closed);
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
	uv_read_stop((uv_stream_t *)&c->pipe);
	if (uv_write(&c->wreq, (uv_stream_t *)&c->pipe, &b, 1, ctl_written) < 0)
		ctl_conn_close(c);
}

static void
ctl_probe_done(void *arg)
{
	struct ctl_conn *c = arg;
	char *text = health_describe(c->d);

	ctl_reply(c, "OK\n%s", text ? text : "");
	free(text);
}

/* Root and the spool's owner may change the queue. */
static int
ctl_may_change(struct ctl_conn *c)
{
	struct stat st;

	if (c->uid == 0)
		return 1;
	if (stat(spool_path(c->d->spool), &st) == 0 && st.st_uid == c->uid)
		return 1;
	return 0;
}

/* HOLD, RELEASE, DELETE and REQUEUE: the operator actions. */
static int
ctl_action(const char *word, enum queue_action *out)
{
	static const struct {
		const char *word;
		enum queue_action action;
	} actions[] = {
	    {"HOLD", QUEUE_HOLD},
	    {"RELEASE", QUEUE_RELEASE},
	    {"DELETE", QUEUE_DELETE},
	    {"REQUEUE", QUEUE_REQUEUE},
	};

	for (size_t i = 0; i < ARRAY_SIZE(actions); i++)
		if (strcmp(word, actions[i].word) == 0) {
			*out = actions[i].action;
			return 1;
		}
	return 0;
}

/* ---- WAIT: how a message fares, for its submitter ---------------- */

void
control_msg_sent(struct daemon *d, const char *id, uint32_t owner_uid)
{
	struct ctl_recent *r = d->recent;

	if (r == NULL && (r = d->recent = calloc(1, sizeof(*r))) == NULL)
		return; /* a WAIT then finds the message gone: "deleted" */
	str_copy(r->e[r->next].id, id, sizeof(r->e[0].id));
	r->e[r->next].uid = owner_uid;
	r->next = (r->next + 1) % CTL_RECENT_MAX;
}

static int
ctl_recent_find(const struct daemon *d, const char *id, uint32_t *uid)
{
	if (d->recent == NULL)
		return 0;
	for (size_t i = 0; i < CTL_RECENT_MAX; i++)
		if (strcmp(d->recent->e[i].id, id) == 0) {
			*uid = d->recent->e[i].uid;
			return 1;
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
ctl_msg_view(struct daemon *d, const char *id, struct ctl_msg_view *v)
{
	struct queue_msg_info m;
	struct state_txn *txn;
	struct stat st;
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
	if (ctl_recent_find(d, id, &v->owner)) {
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
	int rc = ctl_msg_view(c->d, c->wait_id, &v);

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
	struct ctl_conn *c = d->waiters, *next;

	for (; c != NULL; c = next) {
		next = c->next_waiter; /* an answer unlinks c */
		ctl_waiter_check(c, 0);
	}
}

static void
ctl_wait_timer_cb(uv_timer_t *t)
{
	struct daemon *d = t->data;
	uint64_t now = uv_now(d->loop);
	struct ctl_conn *c = d->waiters, *next;

	/* outcomes reached by other paths than a session (an expiry at
	 * pickup, an operator's action) are found here too */
	for (; c != NULL; c = next) {
		next = c->next_waiter;
		ctl_waiter_check(c, now >= c->wait_deadline);
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
ctl_wait(struct ctl_conn *c, char **words, size_t n)
{
	struct daemon *d = c->d;
	struct ctl_msg_view v;
	size_t count = 0;
	char *end;
	long secs;
	int rc;

	if (n != 3 || !queue_id_valid(words[1])) {
		ctl_reply(c, "ERR usage: WAIT ID SECONDS\n");
		return;
	}
	secs = strtol(words[2], &end, 10);
	if (*end != '\0' || secs < 0 || secs > CTL_WAIT_MAX_S) {
		ctl_reply(c, "ERR WAIT: seconds from 0 to %d\n",
			  CTL_WAIT_MAX_S);
		return;
	}
	rc = ctl_msg_view(d, words[1], &v);
	if (rc == -ENOENT) {
		ctl_reply(c, "ERR %s: no such message\n", words[1]);
		return;
	}
	if (rc < 0) {
		ctl_reply(c, "ERR state: %s\n", strerror(-rc));
		return;
	}
	if (!ctl_may_change(c) && c->uid != v.owner) {
		ctl_reply(c,
			  "ERR permission denied: %s was submitted by "
			  "another user\n",
			  words[1]);
		return;
	}
	if (secs == 0 || ctl_state_final(v.state)) {
		ctl_wait_answer(c, &v);
		return;
	}
	for (struct ctl_conn *w = d->waiters; w != NULL; w = w->next_waiter)
		count++;
	if (count >= CTL_WAITERS_MAX) {
		ctl_reply(c, "ERR too many clients waiting; try again\n");
		return;
	}
	str_copy(c->wait_id, words[1], sizeof(c->wait_id));
	c->wait_deadline = uv_now(d->loop) + (uint64_t)secs * 1000;
	c->next_waiter = d->waiters;
	d->waiters = c;
	if (!uv_is_active((uv_handle_t *)&d->wait_timer))
		uv_timer_start(&d->wait_timer, ctl_wait_timer_cb, 1000, 1000);
	uv_read_start((uv_stream_t *)&c->pipe, ctl_alloc, ctl_wait_read);
}

/* ---- STATUS: counts and health, for anyone ------------------------ */

/* No address and no relay reply: any local user may ask, so an
 * application's own health check works. */
static void
ctl_status(struct ctl_conn *c)
{
	const struct conf *cf = &c->d->gen->cf;
	struct queue_summary sum;
	struct state_txn *txn;
	char *out = NULL;
	size_t len = 0;
	FILE *fp;
	int rc;

	if ((rc = state_begin(c->d->state, 0, &txn)) < 0) {
		ctl_reply(c, "ERR state: %s\n", strerror(-rc));
		return;
	}
	rc = queue_summary_read(c->d->spool, txn, &sum);
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
		int up = health_state(c->d, name, &probe);

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

static void
ctl_handle(struct ctl_conn *c, char *line)
{
	char *words[256], *save = NULL, err[256] = "";
	enum queue_action action;
	size_t n = 0;
	int rc;

	for (char *w = strtok_r(line, " \t\r", &save); w != NULL;
	     w = strtok_r(NULL, " \t\r", &save)) {
		if (n == ARRAY_SIZE(words)) {
			ctl_reply(c, "ERR too many arguments\n");
			return;
		}
		words[n++] = w;
	}
	if (n == 0) {
		ctl_reply(c, "ERR empty request\n");
		return;
	}
	if (strcmp(words[0], "PING") == 0) {
		ctl_reply(c, "OK pid=%ld\n", (long)getpid());
		return;
	}
	if (strcmp(words[0], "FLUSH") == 0) {
		if (!ctl_may_change(c)) {
			ctl_reply(c, "ERR permission denied: only root and "
				     "the spool's owner change the queue\n");
			return;
		}
		for (size_t i = 1; i < n; i++) {
			if (!queue_id_valid(words[i])) {
				ctl_reply(c, "ERR %s: not a queue id\n",
					  words[i]);
				return;
			}
		}
		rc = sched_flush(c->d, words + 1, n - 1, err, sizeof(err));
		if (rc < 0)
			ctl_reply(c, "ERR %s\n", err);
		else
			ctl_reply(c, "OK %d\n", rc);
		return;
	}
	if (ctl_action(words[0], &action)) {
		struct sched_act_result res;

		if (!ctl_may_change(c)) {
			ctl_reply(c, "ERR permission denied: only root and "
				     "the spool's owner change the queue\n");
			return;
		}
		for (size_t i = 1; i < n; i++)
			if (!queue_id_valid(words[i])) {
				ctl_reply(c, "ERR %s: not a queue id\n",
					  words[i]);
				return;
			}
		if (sched_act(c->d, action, words + 1, n - 1, &res) < 0)
			ctl_reply(c, "ERR %s\n", res.err);
		else
			ctl_reply(c, "OK %zu %zu %d %s\n", res.done, res.failed,
				  -res.first_rc, res.err);
		return;
	}
	if (strcmp(words[0], "WAIT") == 0) {
		ctl_wait(c, words, n);
		return;
	}
	if (strcmp(words[0], "STATUS") == 0) {
		ctl_status(c);
		return;
	}
	if (strcmp(words[0], "PROBE") == 0) {
		if (health_probe_all(c->d, ctl_probe_done, c) < 0)
			ctl_reply(c, "ERR out of memory\n");
		return;
	}
	ctl_reply(c, "ERR unknown request %s\n", words[0]);
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
	char *nl, *nb;

	if (nread < 0) {
		ctl_conn_close(c);
		return;
	}
	if (nread == 0)
		return;
	if (c->len + (size_t)nread + 1 > CTL_REQUEST_MAX) {
		ctl_conn_close(c);
		return;
	}
	nb = realloc(c->buf, c->len + (size_t)nread + 1);
	if (nb == NULL) {
		ctl_conn_close(c);
		return;
	}
	c->buf = nb;
	memcpy(c->buf + c->len, buf->base, (size_t)nread);
	c->len += (size_t)nread;
	c->buf[c->len] = '\0';
	nl = memchr(c->buf, '\n', c->len);
	if (nl == NULL)
		return;
	*nl = '\0';
	/* one request per connection: the reply may come later (PROBE),
	 * and the connection must live until then */
	uv_read_stop(s);
	ctl_handle(c, c->buf);
}

static void
ctl_accept(uv_stream_t *server, int status)
{
	struct daemon *d = server->data;
	struct ctl_conn *c;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uv_os_fd_t fd;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return;
	c->d = d;
	uv_pipe_init(d->loop, &c->pipe, 0);
	c->pipe.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0 ||
	    uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		ctl_conn_close(c);
		return;
	}
	c->uid = cred.uid;
	uv_read_start((uv_stream_t *)&c->pipe, ctl_alloc, ctl_read);
}

int
control_start(struct daemon *d, char *err, size_t errlen)
{
	char path[4096];
	mode_t old;
	int rc;

	snprintf(path, sizeof(path), "%s/%s", spool_path(d->spool),
		 CTL_SOCKET_NAME);
	/* the spool lock says no other daemon owns it, so this is stale */
	unlink(path);
	uv_pipe_init(d->loop, &d->ctl, 0);
	d->ctl.data = d;
	d->ctl_open = 1;
	uv_timer_init(d->loop, &d->wait_timer);
	d->wait_timer.data = d;
	/* Anyone may connect; what they may do is checked per request. */
	old = umask(0111);
	rc = uv_pipe_bind(&d->ctl, path);
	umask(old);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&d->ctl, 64, ctl_accept);
	if (rc < 0) {
		snprintf(err, errlen, "control socket %s: %s", path,
			 uv_strerror(rc));
		return rc;
	}
	return 0;
}

void
control_stop(struct daemon *d)
{
	char path[4096];

	if (!d->ctl_open)
		return;
	d->ctl_open = 0;
	snprintf(path, sizeof(path), "%s/%s", spool_path(d->spool),
		 CTL_SOCKET_NAME);
	unlink(path);
	uv_close((uv_handle_t *)&d->ctl, NULL);
	/* a waiter reads the hang-up as "spoold stopped" */
	while (d->waiters != NULL)
		ctl_conn_close(d->waiters);
	uv_close((uv_handle_t *)&d->wait_timer, NULL);
	free(d->recent);
	d->recent = NULL;
}

/*
 * control.c - the daemon's end of SPOOL/ctl.sock (see spool/ctlproto.h).
 *
 * One request per connection, answered from the loop thread, so a command
 * that changes the queue is serialised with the scheduler and cannot race
 * a delivery. A request over CTL_REQUEST_MAX closes the connection.
 */
#include <errno.h>
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
ctl_conn_close(struct ctl_conn *c)
{
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
}

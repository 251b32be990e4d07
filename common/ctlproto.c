/*
 * ctlproto.c - the control socket's framing and grammar, which the daemon
 * runs on whatever any local user sends, and its client side: blocking,
 * with a deadline on every read and write, so a stuck daemon cannot hang
 * spoolctl.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "spool/ctlproto.h"
#include "spool/util.h"

static const struct {
	const char *word;
	enum ctl_verb verb;
	int takes_args;
} ctl_verbs[] = {
    {"PING", CTL_PING, 0},	 {"PROBE", CTL_PROBE, 0},
    {"FLUSH", CTL_FLUSH, 1},	 {"HOLD", CTL_HOLD, 1},
    {"RELEASE", CTL_RELEASE, 1}, {"DELETE", CTL_DELETE, 1},
    {"REQUEUE", CTL_REQUEUE, 1}, {"WAIT", CTL_WAIT, 1},
    {"STATUS", CTL_STATUS, 0},	 {"SUBMITTED", CTL_SUBMITTED, 1},
    {"METRICS", CTL_METRICS, 0},
};

int
ctl_reader_feed(struct ctl_reader *r, const char *data, size_t n)
{
	const char *nl = memchr(data, '\n', n);
	size_t take = nl != NULL ? (size_t)(nl - data) : n;

	/* the line and the NUL after it must fit */
	if (take >= sizeof(r->buf) - r->len)
		return -E2BIG;
	memcpy(r->buf + r->len, data, take);
	r->len += take;
	r->buf[r->len] = '\0';
	return nl != NULL;
}

int
ctl_request_parse(char *line, size_t len, struct ctl_request *req,
		  const char **why)
{
	char *words[CTL_ARGS_MAX + 1], *p = line, *end = line + len;
	size_t n = 0, i;

	if (len > 0 && end[-1] == '\r')
		end--;
	/* the verb and the ids are ASCII; anything else (NUL, escapes,
	 * 8-bit) is refused before it can reach a log or a reply */
	for (p = line; p < end; p++) {
		unsigned char ch = (unsigned char)*p;

		if ((ch < 0x20 && ch != '\t') || ch > 0x7e) {
			*why = "request is not printable ASCII";
			return -EINVAL;
		}
	}
	for (p = line; p < end;) {
		while (p < end && (*p == ' ' || *p == '\t'))
			*p++ = '\0';
		if (p == end)
			break;
		if (n == ARRAY_SIZE(words)) {
			*why = "too many arguments";
			return -EINVAL;
		}
		words[n++] = p;
		while (p < end && *p != ' ' && *p != '\t')
			p++;
	}
	*end = '\0';
	if (n == 0) {
		*why = "empty request";
		return -EINVAL;
	}
	for (i = 0; i < ARRAY_SIZE(ctl_verbs); i++)
		if (strcmp(words[0], ctl_verbs[i].word) == 0)
			break;
	if (i == ARRAY_SIZE(ctl_verbs)) {
		*why = "unknown request (PING, PROBE, STATUS, WAIT, SUBMITTED, "
		       "FLUSH, HOLD, RELEASE, DELETE or REQUEUE)";
		return -EINVAL;
	}
	if (!ctl_verbs[i].takes_args && n > 1) {
		*why = "this request takes no argument";
		return -EINVAL;
	}
	req->verb = ctl_verbs[i].verb;
	req->nargs = n - 1;
	memcpy(req->args, words + 1, (n - 1) * sizeof(words[0]));
	return 0;
}

static int
ctl_wait(int fd, short events, int64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};
	int64_t left = deadline - time_mono_ms();
	int rc;

	if (left <= 0)
		return -ETIMEDOUT;
	do
		rc = poll(&p, 1, (int)left);
	while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return -errno;
	return rc == 0 ? -ETIMEDOUT : 0;
}

static int
ctl_connect(const char *spool_dir)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s",
			     spool_dir, CTL_SOCKET_NAME) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	return fd;
}

int
ctl_call(const char *spool_dir, const char *request, char **reply,
	 int timeout_ms)
{
	int64_t deadline = time_mono_ms() + timeout_ms;
	size_t len = strlen(request), off = 0, cap = 4096, n = 0;
	char *buf = NULL, *line;
	int fd, rc = 0;

	if (len + 1 > CTL_REQUEST_MAX)
		return -E2BIG;
	fd = ctl_connect(spool_dir);
	if (fd < 0)
		return fd;
	line = malloc(len + 1);
	buf = malloc(cap);
	if (line == NULL || buf == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(line, request, len);
	line[len++] = '\n';
	while (off < len) {
		ssize_t w;

		if ((rc = ctl_wait(fd, POLLOUT, deadline)) < 0)
			goto out;
		w = send(fd, line + off, len - off, MSG_NOSIGNAL);
		if (w < 0 && errno != EINTR && errno != EAGAIN) {
			rc = -errno;
			goto out;
		}
		if (w > 0)
			off += (size_t)w;
	}
	for (;;) {
		ssize_t r;

		if (n + 1 >= cap) {
			char *nb;

			if (cap >= CTL_REPLY_MAX) {
				rc = -EFBIG;
				goto out;
			}
			nb = realloc(buf, cap * 2);
			if (nb == NULL) {
				rc = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap *= 2;
		}
		if ((rc = ctl_wait(fd, POLLIN, deadline)) < 0)
			goto out;
		r = read(fd, buf + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	*reply = buf;
	buf = NULL;
out:
	free(line);
	free(buf);
	close(fd);
	return rc;
}

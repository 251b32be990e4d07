/*
 * ctlproto.c - the client side of the control socket. Blocking, with a
 * deadline on every read and write, so a stuck daemon cannot hang spoolctl.
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

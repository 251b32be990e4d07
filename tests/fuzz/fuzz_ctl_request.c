/*
 * fuzz_ctl_request.c - what spoold does with the bytes any local user
 * sends to SPOOL/ctl.sock: ctl_reader_feed over the input cut into reads
 * (the first byte chooses their size, 0: one read), ctl_request_parse on
 * the line once it is complete, and queue_id_valid on the arguments of a
 * verb that changes the queue, as spoold/control.c runs them. An accepted
 * request must be one the daemon can act on safely: a known verb, no
 * argument to PING, PROBE or STATUS, at most CTL_ARGS_MAX arguments, each a
 * non-empty run of printable ASCII inside the line, so that nothing a
 * client sends can reach a log or a reply as a control character.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spool/ctlproto.h"
#include "spool/queue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_request(const struct ctl_reader *r, const struct ctl_request *req)
{
	if (req->verb > CTL_METRICS || req->nargs > CTL_ARGS_MAX)
		abort();
	if ((req->verb == CTL_PING || req->verb == CTL_PROBE ||
	     req->verb == CTL_STATUS || req->verb == CTL_METRICS) &&
	    req->nargs != 0)
		abort();
	for (size_t i = 0; i < req->nargs; i++) {
		const char *a = req->args[i];
		size_t n = strlen(a);

		if (a < r->buf || a + n > r->buf + r->len || n == 0)
			abort();
		for (size_t j = 0; j < n; j++)
			if (a[j] <= ' ' || a[j] > '~')
				abort();
		/* control.c checks every id before acting on it */
		if (req->verb != CTL_PING && req->verb != CTL_PROBE &&
		    req->verb != CTL_STATUS && req->verb != CTL_METRICS)
			(void)queue_id_valid(a);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* one reader per connection, as big as the daemon's */
	static struct ctl_reader r;
	struct ctl_request req;
	size_t step, off = 1;
	const char *why = NULL;
	int rc = 0;

	if (size == 0)
		return 0;
	step = data[0] ? data[0] : size;
	r.len = 0;
	while (off < size && rc == 0) {
		size_t n = size - off < step ? size - off : step;
		/* a copy of exactly n bytes, so ASan sees a read past it */
		char *chunk = malloc(n);

		if (chunk == NULL)
			abort();
		memcpy(chunk, data + off, n);
		rc = ctl_reader_feed(&r, chunk, n);
		free(chunk);
		off += n;
	}
	if (rc < 0) {
		if (rc != -E2BIG || r.len >= CTL_REQUEST_MAX)
			abort();
		return 0;
	}
	if (rc == 0) /* the client would be cut by the idle timeout */
		return 0;
	if (r.len >= CTL_REQUEST_MAX || r.buf[r.len] != '\0' ||
	    memchr(r.buf, '\n', r.len) != NULL)
		abort();
	if (ctl_request_parse(r.buf, r.len, &req, &why) == 0)
		check_request(&r, &req);
	else if (why == NULL || why[0] == '\0')
		abort(); /* every refusal must say why */
	return 0;
}

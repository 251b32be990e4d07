/*
 * spool/ctlproto.h - the control socket between spoolctl and spoold.
 *
 * SPOOL/ctl.sock, a Unix stream socket. The client sends one request line
 * ("FLUSH id id\n"), the daemon answers "OK text" or "ERR text" on the
 * first line, optionally followed by more lines, and closes. Requests that
 * change the queue are refused unless the peer (SO_PEERCRED) is root or
 * the owner of the spool directory.
 *
 * A request is one line of at most CTL_REQUEST_MAX bytes: a verb and up to
 * CTL_ARGS_MAX arguments, separated by spaces or tabs, printable ASCII
 * only; one CR before the newline is allowed. The daemon reads it with
 * ctl_reader_feed and parses it with ctl_request_parse, both pure, so the
 * fuzz target runs exactly what the daemon runs.
 */
#ifndef SPOOL_CTLPROTO_H
#define SPOOL_CTLPROTO_H

#include <stddef.h>

#define CTL_SOCKET_NAME "ctl.sock"
/* A request line with its newline: the longest valid one (a verb and
 * CTL_ARGS_MAX queue ids) is about 6,500 bytes. */
#define CTL_REQUEST_MAX 8192
#define CTL_ARGS_MAX 255
#define CTL_REPLY_MAX (16 * 1024 * 1024)

enum ctl_verb {
	CTL_PING,
	CTL_PROBE,
	CTL_FLUSH,
	CTL_HOLD,
	CTL_RELEASE,
	CTL_DELETE,
	CTL_REQUEUE,
	CTL_WAIT, /* WAIT ID SECONDS: a message's outcome, for its submitter */
	CTL_STATUS, /* counts and health, no addresses: for anyone */
	/* SUBMITTED ID: what became of a keyed submission, for its
	 * submitter: "OK pending", "OK queued", "OK merged N", "OK held T" */
	CTL_SUBMITTED,
	CTL_METRICS, /* the same in the Prometheus text format: for anyone */
	/* a new verb goes here, last: tests/fuzz/fuzz_ctl_request.c checks
	 * the range and which verbs take no argument */
};

/* A parsed request; args point into the line it was parsed from. */
struct ctl_request {
	enum ctl_verb verb;
	char *args[CTL_ARGS_MAX];
	size_t nargs;
};

/* The bytes of one request as they arrive. */
struct ctl_reader {
	char buf[CTL_REQUEST_MAX];
	size_t len;
};

/*
 * Adds n bytes read from a connection to r. Returns 1 once the first line
 * is complete: r->buf holds it NUL-terminated, without its newline, and
 * r->len is its length (bytes after the newline are ignored: one request
 * per connection). Returns 0 while more is needed, -E2BIG when the line
 * would exceed CTL_REQUEST_MAX.
 */
int ctl_reader_feed(struct ctl_reader *r, const char *data, size_t n);

/*
 * Splits a request line of len bytes in place (it is modified, and
 * line[len] must be writable, as ctl_reader_feed leaves it) into req.
 * Returns 0, or -EINVAL with *why set to a static text for the "ERR"
 * reply: an empty or non-ASCII line, an unknown verb, too many
 * arguments, arguments to a verb that takes none.
 */
int ctl_request_parse(char *line, size_t len, struct ctl_request *req,
		      const char **why);

/*
 * Sends request (without its newline) to the daemon of spool_dir and reads
 * the whole reply into *reply (malloc'd, NUL-terminated). Returns 0,
 * -ENOENT or -ECONNREFUSED when no daemon listens, -ETIMEDOUT after
 * timeout_ms, or another -errno.
 */
int ctl_call(const char *spool_dir, const char *request, char **reply,
	     int timeout_ms);

#endif

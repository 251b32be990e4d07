/*
 * spool/probe.h - HTTP reachability probes (a HEAD or GET request with an
 * expected status), run by libcurl's multi_socket API inside a libuv loop,
 * so a slow or silent endpoint never blocks the loop. Loop thread only.
 */
#ifndef SPOOL_PROBE_H
#define SPOOL_PROBE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct probe_engine;

struct probe_result {
	int ok;		  /* the status was one of the expected ones */
	long http_status; /* 0 if no HTTP answer came */
	double seconds;	  /* total time */
	char error[256];  /* why not ok, e.g. "HTTP 503" or curl's text */
};

typedef void probe_done_cb(void *arg, const struct probe_result *r);

struct probe_request {
	const char *url;
	const char *ca_file; /* NULL: the system store */
	int64_t timeout;     /* seconds, for connect and the whole request */
	const long *expect;  /* acceptable HTTP status codes */
	size_t nexpect;
	int get; /* GET (the body is read and dropped) instead of HEAD */
};

int probe_engine_new(struct probe_engine **out, uv_loop_t *loop, char *err,
		     size_t errlen);

/*
 * Starts one probe. cb runs exactly once, later, on the loop thread,
 * unless this returns an error (-ENOMEM, -EINVAL), in which case it never
 * runs. Strings in req are copied.
 */
int probe_start(struct probe_engine *e, const struct probe_request *req,
		probe_done_cb *cb, void *arg);

/* Aborts pending probes (their callbacks run with ok = 0, "cancelled")
 * and closes the engine's handles; memory goes once they are closed. */
void probe_engine_close(struct probe_engine *e);

#endif

/*
 * module.h - the transports' loadable modules and the tables they hand the
 * daemon.
 *
 * What needs libcurl (SMTP with implicit TLS, SMTP session probes, HTTP
 * probes) is built as spoold-curl.so, the push transports (libcurl, GMime,
 * cJSON) as spoold-push.so. The daemon loads a module the first time its
 * configuration needs it, so that a daemon relaying plain SMTP never maps
 * those libraries (nor pays for their initialisation). A module calls back
 * into the daemon for the helpers it shares with the built-in transports
 * (transport_int.h, smtp_int.h, str_copy): the daemon exports those by
 * name (spoold/exports.list).
 *
 * Each module exports one table, checked on load against the daemon's
 * version and the table's size, so a module left from another build is
 * refused instead of called.
 */
#ifndef SPOOL_MODULE_H
#define SPOOL_MODULE_H

#include <stddef.h>
#include <uv.h>

#include "spool/probe.h"
#include "spool/transport.h"

#define MODULE_CURL_FILE "spoold-curl.so"
#define MODULE_PUSH_FILE "spoold-push.so"

struct smtp_transport;
struct probe_curl;

/* What every table opens with. */
struct module_head {
	const char *version; /* SPOOL_MODULE_VERSION of its build */
	size_t size;	     /* sizeof its table in its build */
	/* the libraries' global setup; once, before any other entry */
	int (*init)(char *err, size_t errlen);
};

struct module_curl {
	struct module_head head;
	/* smtp_int.h: a session over implicit TLS (smtps://) */
	int (*smtp_deliver)(struct smtp_transport *t,
			    struct transport_msg *msgs, size_t n,
			    struct transport_session *sess);
	/* transport_ops.probe of an smtp transport */
	int (*smtp_probe)(struct transport *t, char *diag, size_t len);
	void (*smtp_probe_cancel_all)(void);
	/* spool/probe.h, on the daemon's loop */
	int (*probe_new)(struct probe_curl **out, uv_loop_t *loop, char *err,
			 size_t errlen);
	int (*probe_start)(struct probe_curl *e,
			   const struct probe_request *req, probe_done_cb *cb,
			   void *arg);
	void (*probe_close)(struct probe_curl *e);
};

struct module_push {
	struct module_head head;
	const struct transport_ops *const *types;
	size_t ntypes;
};

/* The module, loaded and set up at the first call; any thread. NULL with
 * one line in err (which file, why, what to do) if it cannot be. */
const struct module_curl *module_curl_get(char *err, size_t errlen);
const struct module_push *module_push_get(char *err, size_t errlen);

/* Defined by the modules. */
extern const struct module_curl spool_module_curl;
extern const struct module_push spool_module_push;

/* probe_curl.c */
int probe_curl_new(struct probe_curl **out, uv_loop_t *loop, char *err,
		   size_t errlen);
int probe_curl_start(struct probe_curl *e, const struct probe_request *req,
		     probe_done_cb *cb, void *arg);
void probe_curl_close(struct probe_curl *e);

#endif

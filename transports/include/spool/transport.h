/*
 * spool/transport.h - pluggable delivery.
 *
 * A transport delivers a batch of messages over one session (one SMTP
 * connection, one Maildir). deliver() blocks: spoold calls it from its own
 * delivery threads, never from the event loop, and may call it from several
 * threads at once on the same transport. Every stage of a session is bounded
 * in time, so deliver() always returns.
 *
 * Outcomes follow the delivery rules:
 *   DELIV_OK        accepted upstream (2xx to RCPT and to the final dot)
 *   DELIV_TEMPFAIL  try again: on the next transport of the route in the
 *                   same attempt, else later by the retry schedule
 *   DELIV_PERMFAIL  5xx to RCPT or to the data: this recipient has failed
 */
#ifndef SPOOL_TRANSPORT_H
#define SPOOL_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "spool/conf.h"
#include "spool/queue.h"

enum deliv_status { DELIV_OK, DELIV_TEMPFAIL, DELIV_PERMFAIL };

const char *deliv_status_name(enum deliv_status s);

/* Whether a reply ("450 4.7.0 rate limit exceeded", code 450) is a
 * relay's refusal for its sending rate: a 4xx whose text says rate, too
 * many, too much or limit, or whose enhanced code is 4.7.x (greylisting
 * excepted). 1 or 0. */
int transport_reply_is_rate(int code, const char *text);

struct transport_rcpt {
	const char *address;
	/* filled by deliver() */
	enum deliv_status status;
	int code;		     /* SMTP reply code, 0 if none */
	char reply[QUEUE_REPLY_MAX]; /* the server's reply or our diagnosis */
};

struct transport_msg {
	const char *id;
	const char *sender; /* "" for <>; the transport's `from` overrides */
	struct transport_rcpt *rcpt; /* only recipients still pending */
	size_t nrcpt;
	const char *data; /* the message: CRLF, bare LF or CR tolerated */
	size_t len;
	/*
	 * If set, called in the delivering thread as soon as this message's
	 * outcome is in (the relay's reply to its data), while the session
	 * goes on with the next one; the recipients it settled are no longer
	 * DELIV_TEMPFAIL. The caller records them at once, so that a crash
	 * later in the session repeats none of them. Outcomes are final
	 * only when deliver() returns.
	 */
	void (*settled)(struct transport_msg *m, void *arg);
	void *settled_arg;
};

/* What a session as a whole came to. relay_failed: the relay itself
 * failed (connect, TLS, greeting, EHLO, AUTH, a timeout, a dropped
 * connection, 4xx to MAIL): every recipient not yet answered is
 * DELIV_TEMPFAIL with diag as its reply, and the transport's health
 * counts it. */
struct transport_session {
	int relay_failed;
	/* seconds the relay asked for before the next try (an HTTP
	 * Retry-After), 0: none; the messages left are deferred at least
	 * that long */
	int64_t retry_after;
	/* the relay refused messages for its rate limit (see
	 * transport_reply_is_rate); not a failure of the relay: the
	 * messages left wait while the transport slows down, and diag
	 * holds the refusal */
	int rate_limited;
	char diag[QUEUE_REPLY_MAX];
};

struct transport;

struct transport_ops {
	const char *type; /* the `type =` value: "smtp", "maildir", "ntfy" */
	/* Checks cf (e.g. secret file modes) and builds the transport.
	 * 0 or -errno with one line in err. */
	int (*create)(struct transport **out, const struct conf_transport *cf,
		      char *err, size_t errlen);
	/* Delivers msgs in one session and fills every recipient's outcome
	 * and *sess. Returns 0 once outcomes are filled in (even if all
	 * failed), -errno only for a local fault (outcomes then TEMPFAIL). */
	int (*deliver)(struct transport *t, struct transport_msg *msgs,
		       size_t n, struct transport_session *sess);
	/* Opens a session as deliver() would and closes it before any
	 * mail (SMTP: connect, TLS, EHLO, AUTH; Maildir: its folders).
	 * Blocks like deliver(). 0, or -errno with one line in diag.
	 * NULL: nothing to test beyond the HTTP probe. */
	int (*probe)(struct transport *t, char *diag, size_t len);
	/* Loads what probe() needs, called on the loop thread before probe()
	 * runs on a pool thread: a library set up from a pool thread keeps
	 * per-thread state that the thread never frees. NULL: nothing. */
	int (*probe_prepare)(struct transport *t, char *diag, size_t len);
	void (*destroy)(struct transport *t);
};

/* The common head of every transport; implementations embed it first. */
struct transport {
	const struct transport_ops *ops;
	char name[CONF_NAME_MAX];
};

extern const struct transport_ops transport_smtp_ops;
extern const struct transport_ops transport_maildir_ops;
/* push services: one HTTP request per message (transports/push.c) */
extern const struct transport_ops transport_ntfy_ops;
extern const struct transport_ops transport_gotify_ops;
extern const struct transport_ops transport_matrix_ops;
extern const struct transport_ops transport_telegram_ops;
extern const struct transport_ops transport_webhook_ops;

/* Builds the transport cf names (by its type). */
int transport_create(struct transport **out, const struct conf_transport *cf,
		     char *err, size_t errlen);
int transport_deliver(struct transport *t, struct transport_msg *msgs, size_t n,
		      struct transport_session *sess);
void transport_destroy(struct transport *t); /* NULL is a no-op */
/* The transport's own probe (see transport_ops.probe); 0 if it has none. */
int transport_probe(struct transport *t, char *diag, size_t len);
/* See transport_ops.probe_prepare: 0, or -errno with one line in diag
 * (the probe then fails with the same). */
int transport_probe_prepare(struct transport *t, char *diag, size_t len);
/* Makes probes in flight, and any later one, fail at once: for a stop. */
void transport_probe_cancel_all(void);
/* For transports: reports m's outcome to its settled hook, if any. */
void transport_msg_settled(struct transport_msg *m);

/* Process-wide setup (OpenSSL, libESMTP); call once before threads. */
int transport_global_init(char *err, size_t errlen);

#endif

/*
 * smtp_int.h - the smtp transport's parts: the transport itself (smtp.c)
 * and its two engines, libESMTP for plain SMTP and STARTTLS
 * (smtp_esmtp.c) and libcurl for implicit TLS (smtp_curl.c), which
 * libESMTP cannot speak. Both engines report replies the same way and
 * share one judgement, so a recipient's outcome does not depend on the
 * engine.
 */
#ifndef SPOOL_SMTP_INT_H
#define SPOOL_SMTP_INT_H

#include <openssl/ssl.h>

#include "spool/transport.h"

struct smtp_transport {
	struct transport base;
	char *host;
	unsigned port;
	char *hostport; /* "host:port", "[v6]:port" for messages */
	char *helo;	/* NULL: the host name */
	char *from;	/* NULL: each message's own sender */
	enum conf_tls tls;
	char *ca_file;	     /* NULL: the system store */
	char *user;	     /* NULL: no AUTH */
	char *password_file; /* read at each connection */
	int64_t connect_timeout;
	int64_t timeout;
	SSL_CTX *ssl_ctx; /* STARTTLS: verifying, capped at TLS 1.2 */
};

/* A server reply: code 0 when none came. */
struct smtp_reply {
	int code;
	char text[QUEUE_REPLY_MAX]; /* "250 2.0.0 Ok", one line */
};

/* What one message's transaction came to, whichever engine ran it. */
struct smtp_result {
	struct smtp_reply mail;
	struct smtp_reply *rcpt; /* one per pending recipient */
	struct smtp_reply data;	 /* to DATA if refused, else to the dot */
};

/* What smtp_judge makes of a message's transaction. */
#define SMTP_RELAY_FAILED 1
#define SMTP_RATE_LIMITED 2

/*
 * Sets each recipient's outcome from res; diag explains a missing reply.
 * Returns SMTP_RELAY_FAILED when the relay itself failed (no reply, a
 * 4xx to MAIL or DATA, an AUTH demand), SMTP_RATE_LIMITED when its 4xx to
 * MAIL or DATA refused the message for its rate (the recipients stay
 * DELIV_TEMPFAIL, never PERMFAIL for that), else 0.
 */
int smtp_judge(const struct smtp_result *res, struct transport_msg *tm,
	       const char *diag);

/* Adds one message's verdict (smtp_judge) to the session's. */
void smtp_session_judge(struct transport_session *sess, int verdict);

/* The first reply among n results that made the relay fail (a 4xx or 530
 * to MAIL, a 4xx to the data), for the session's diagnosis; or NULL. */
const char *smtp_batch_refusal(const struct smtp_result *res, size_t n);

void smtp_reply_set(struct smtp_reply *r, int code, const char *text);

/*
 * The bound on one server reply, whichever engine reads it: all its lines
 * (a "250-" line continues it, "250 " ends it) within the transport's
 * timeout and within SMTP_REPLY_BYTES_MAX bytes. Per-read timeouts do not
 * see a relay that streams continuation lines forever, each one quickly.
 */
#define SMTP_REPLY_BYTES_MAX 65536

enum smtp_reply_cut {
	SMTP_REPLY_OK,	 /* within bounds so far */
	SMTP_REPLY_LATE, /* not complete within the timeout */
	SMTP_REPLY_HUGE	 /* over SMTP_REPLY_BYTES_MAX */
};

struct smtp_reply_watch {
	int64_t limit_ms;	 /* what a whole reply may take; 0: unbounded */
	int64_t deadline;	 /* monotonic ms; 0: no reply awaited */
	size_t bytes;		 /* of the reply being read */
	size_t line_len;	 /* bytes of its current line so far */
	char head[4];		 /* the first bytes of that line */
	enum smtp_reply_cut cut; /* sticky once set */
};

/* Resets w for a new session whose replies may each take limit_ms. */
void smtp_reply_watch_init(struct smtp_reply_watch *w, int64_t limit_ms);

/* A reply is awaited from now on: starts its clock unless it runs. */
void smtp_reply_watch_await(struct smtp_reply_watch *w);

/* Feeds bytes read from the server (any split: lines may span calls).
 * Returns w->cut: not SMTP_REPLY_OK once a reply ran over. */
enum smtp_reply_cut smtp_reply_watch_feed(struct smtp_reply_watch *w,
					  const char *buf, size_t len);

/* Why the session ended after a cut, as "host:port: ..." in buf. */
void smtp_reply_watch_diag(const struct smtp_reply_watch *w,
			   const char *hostport, char *buf, size_t len);

/* Reads the password (the Mailu token) now: 0, or -errno with a reason
 * in err that never contains the secret. */
int smtp_password_read(const struct smtp_transport *t, char *buf, size_t len,
		       char *err, size_t errlen);

/* Host name check for a server certificate, used by the STARTTLS
 * verification callback on the thread running the session. */
void smtp_tls_expect_host(const char *host);
const char *smtp_tls_error(void);
void smtp_tls_error_clear(void);

int smtp_esmtp_deliver(struct smtp_transport *t, struct transport_msg *msgs,
		       size_t n, struct transport_session *sess);
int smtp_curl_deliver(struct smtp_transport *t, struct transport_msg *msgs,
		      size_t n, struct transport_session *sess);
int smtp_esmtp_global_init(char *err, size_t errlen);
/* The transport's probe op (smtp_probe.c). */
int smtp_probe(struct transport *base, char *diag, size_t len);

#endif

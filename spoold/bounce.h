/*
 * bounce.h - failure notices (delivery status notifications, RFC 3464) to
 * the sender of a message that failed permanently.
 *
 * A notice is an ordinary spool message from the null sender <>, so it is
 * durable and retried like any other, and a notice that fails in turn can
 * never cause another: no notice is ever made for a null-sender message.
 * Notices are rate-limited so that a flood of failures (a dead mailbox
 * behind a busy alarm) cannot become a flood of notices; what the limits
 * hold back is logged as suppressed.
 *
 * Loop thread only: the limiter has no lock.
 */
#ifndef SPOOLD_BOUNCE_H
#define SPOOLD_BOUNCE_H

#include <stddef.h>
#include <stdint.h>

#include "spool/queue.h"

/* One sender gets at most this many notices in any hour: enough to see
 * that something is wrong, not enough to bury the mailbox. */
#define BOUNCE_SENDER_PER_HOUR 10
/* All senders together get at most this many in any minute: bounds the
 * mail a failure storm can make, and the fsyncs it costs the loop. */
#define BOUNCE_TOTAL_PER_MINUTE 30
/* Senders remembered for the hourly limit; when every slot holds a
 * sender seen within the hour, a new sender's notice is suppressed rather
 * than an old sender's count forgotten. */
#define BOUNCE_SENDERS_MAX 1024
/* The original header section quoted in a notice is cut here. */
#define BOUNCE_HEADERS_MAX (64 * 1024)

struct bounce_limiter;

/* This host's name, read once ("localhost" if unusable): for notices and
 * the Received line of a message copied at pickup. */
const char *daemon_hostname(void);

int bounce_limiter_new(struct bounce_limiter **out);
void bounce_limiter_free(struct bounce_limiter *l); /* NULL is a no-op */

/*
 * Counts one notice to sender at now (unix seconds) if both limits allow
 * it: 0. Otherwise -EBUSY and *why names the limit that held it back;
 * nothing is counted then.
 */
int bounce_limiter_take(struct bounce_limiter *l, const char *sender,
			int64_t now, const char **why);

/* One recipient a notice reports. */
struct bounce_rcpt {
	const char *address;
	const char *reply; /* the last reply or diagnosis; NULL if none */
	int expired;	   /* failed by max_age, not by a reply */
};

/* What a notice says about one failed message. */
struct bounce_report {
	const char *id;	      /* the failed message's queue id */
	const char *sender;   /* its envelope sender: the notice goes there */
	const char *hostname; /* this host, for From, Reporting-MTA, ids */
	int64_t queued_at;    /* unix seconds */
	int64_t failed_at;
	const struct bounce_rcpt *rcpt;
	size_t nrcpt;
	const char *headers; /* the failed message's header section */
	size_t headers_len;
};

/*
 * Composes the notice as a CRLF message: multipart/report;
 * report-type=delivery-status with a readable part (each recipient and
 * its last reply), a message/delivery-status part and the original
 * headers as text/rfc822-headers. *out is malloc'd (the caller frees).
 * 0, -EINVAL for a null sender or no recipient, or -ENOMEM.
 */
int bounce_compose(const struct bounce_report *r, char **out, size_t *len);

/*
 * Queues a notice for m, which has just failed and whose spool file is in
 * failed/, if bounce is on for it: not for the null sender, and only
 * within the limits. Returns 1 with the notice's id in id_out when one
 * was queued, 0 when none was due (null sender, nothing failed) and
 * -EBUSY when a limit suppressed it (err says which), or -errno with err
 * when it could not be made or written.
 */
int bounce_queue(struct spool *sp, struct bounce_limiter *l,
		 const struct queue_msg_info *m, int64_t now,
		 char id_out[QUEUE_ID_LEN + 1], char *err, size_t errlen);

#endif

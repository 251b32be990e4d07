/*
 * ratelimit.h - a transport's rate limit.
 *
 * The bucket (ratelimit.c) is arithmetic on times the caller passes, in
 * milliseconds of a monotonic clock, so it is tested without a loop. It
 * holds up to burst tokens and gains count of them per period; a message
 * handed to a session takes one. A relay that refuses messages for its
 * rate (e.g. "450 4.7.0 rate limit exceeded") pauses the transport, 5 s
 * at first and twice as long on each further refusal up to 5 min (or as
 * long as the relay asked, if longer), and halves a configured rate, down
 * to a sixteenth; each period without a refusal doubles it back.
 *
 * The daemon's side (ratewait.c) keeps one bucket per transport name,
 * across reloads, on the loop thread only.
 */
#ifndef SPOOLD_RATELIMIT_H
#define SPOOLD_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "spool/queue.h"

/* The first pause after a refusal for rate, and the longest. */
#define RATE_PAUSE_FIRST_MS 5000
#define RATE_PAUSE_MAX_MS 300000
/* A configured rate is never slowed below count / RATE_SLOW_MAX. */
#define RATE_SLOW_MAX 16

struct rate_bucket {
	unsigned count; /* tokens per period; 0: no configured limit */
	int64_t period_ms;
	unsigned burst;	  /* the most tokens it holds */
	unsigned divisor; /* the relay slowed it: count / divisor, 1..16 */
	double tokens;
	int64_t at_ms;		 /* tokens were counted at this time */
	int64_t paused_until_ms; /* the relay asked for a pause until then */
	int64_t pause_ms;	 /* the last pause; 0: no refusal lately */
	int64_t slowed_ms;	 /* the divisor last changed then */
};

/* A full bucket of count per period_ms holding burst (0: count); count 0
 * makes a bucket that only a relay's refusal can pause. */
void rate_bucket_init(struct rate_bucket *b, unsigned count, int64_t period_ms,
		      unsigned burst, int64_t now_ms);
/* A new configuration: the tokens and any pause are kept (capped by the
 * new burst), so a reload is no way around a limit. */
void rate_bucket_set(struct rate_bucket *b, unsigned count, int64_t period_ms,
		     unsigned burst, int64_t now_ms);
/* Takes up to want tokens; returns how many (0 while paused, want with no
 * configured limit). */
size_t rate_bucket_take(struct rate_bucket *b, size_t want, int64_t now_ms);
/* Milliseconds until a token can be taken; 0: now. */
int64_t rate_bucket_wait_ms(struct rate_bucket *b, int64_t now_ms);
/* The relay refused messages for its rate; asked_ms is how long it asked
 * to wait (0: it did not say). Returns the pause now in force. */
int64_t rate_bucket_refused(struct rate_bucket *b, int64_t now_ms,
			    int64_t first_pause_ms, int64_t asked_ms);
/* A session went through with no refusal for rate: the next refusal
 * starts again at the first pause. */
void rate_bucket_relieved(struct rate_bucket *b);
/* The rate in force, count / divisor per period, as "20/10s" into buf;
 * "none" with no configured limit. */
const char *rate_bucket_format(const struct rate_bucket *b, char *buf,
			       size_t len);

/* ---- the daemon's side (ratewait.c), loop thread only ---- */

struct daemon;
struct job;
struct state_txn;
struct queue_msg_info;

/* Start and reload: a bucket per configured transport, kept by name. 0 or
 * -ENOMEM. */
int rate_sync(struct daemon *d);
/* Stop: closes the timer; the buckets go once it is closed. */
void rate_close(struct daemon *d);
/*
 * For n messages due, with *pos the route position the scheduler chose:
 * how many of them may go now. With rate_overflow = next, *pos moves on
 * along the route past transports at their limit. With 0 the messages
 * wait: the records of those due say so in txn (*marked is set when one
 * was written) and a timer runs the scheduler again when a token is due.
 * Returns the count or -errno.
 */
int rate_claim(struct daemon *d, struct state_txn *txn, size_t n, size_t *pos,
	       int *marked);
/* A session of job ended: a refusal for rate slows its transport. Call
 * before the job's outcomes are written, so that the claims made with
 * them see the pause. */
void rate_session_done(struct daemon *d, const struct job *job);
/*
 * The outcome of m, a message of job that its transport refused for rate:
 * 1 if it goes on to the next transport of the route (rate_overflow =
 * next and can_continue), else 0: it waits, due again at once (the
 * scheduler holds it back until the pause ends), and the attempt is not
 * counted against it.
 */
int rate_outcome(struct daemon *d, const struct job *job,
		 struct queue_msg_info *m, int can_continue);

#endif

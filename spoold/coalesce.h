/*
 * coalesce.h - coalescing by key: while a message of a key is queued, a
 * new one of that key replaces it and counts the repeats; within the
 * key's window after a send, new ones are held and go out as one digest
 * at the window's end. Loop thread only; every call works inside the
 * caller's write transaction, so the key's state commits with the pickup
 * or the outcome that changes it.
 */
#ifndef SPOOLD_COALESCE_H
#define SPOOLD_COALESCE_H

#include <stdint.h>

#include "spool/queue.h"

enum coalesce_verdict {
	COALESCE_NONE,	 /* no key, or urgent: a message like any other */
	COALESCE_QUEUED, /* the key's first message: goes at once */
	COALESCE_MERGED, /* replaces old_id, a queued message of its key */
	COALESCE_HELD,	 /* within the window: a digest at next_attempt */
};

struct coalesce_plan {
	enum coalesce_verdict verdict;
	char old_id[QUEUE_ID_LEN + 1]; /* MERGED: the message replaced */
	uint32_t repeats;	       /* submissions it stands for */
	int64_t first_at, last_at;
	int64_t next_attempt;
	uint32_t attempts;  /* MERGED: the replaced message's */
	uint32_t owner_uid; /* MERGED: who submitted the replaced message */
	int digest;	    /* held for a digest */
	int deferred;	    /* MERGED: the replaced message was deferred */
};

/*
 * What the message id that uid submitted with envelope env, picked up at
 * now, becomes: keys are each submitter's own. Reads the key's state and
 * the record of its queued message in txn. 0 or
 * -errno (a state error).
 */
int coalesce_plan(struct state_txn *txn, const char *id, uint32_t uid,
		  const struct spool_envelope *env, int64_t now,
		  struct coalesce_plan *out);

/*
 * Applies pl to m, the new message's record (not yet put): its coalescing
 * fields, due time and flags; removes the replaced message's record and
 * records m as its key's queued message. The replaced message's file is
 * the caller's to remove after the commit. 0 or -errno.
 */
int coalesce_apply(struct state_txn *txn, const struct coalesce_plan *pl,
		   const struct spool_envelope *env, struct queue_msg_info *m);

/* 1 if a message with these fields must say it stands for several. */
int coalesce_needs_rewrite(uint32_t repeats);

/*
 * The message msg (len bytes, a header then a body) as the digest of
 * repeats submissions between first and last: an X-Spoold-Repeated field
 * on top and the Subject extended (or added) with "(repeated N times
 * between A and B)". *out is malloc'd and NUL-terminated (the caller frees it);
 * *outlen does not count the NUL. 0 or -ENOMEM.
 */
int coalesce_rewrite(const char *msg, size_t len, uint32_t repeats,
		     int64_t first, int64_t last, char **out, size_t *outlen);

/* m was delivered at now: its key's window starts again from now. */
int coalesce_sent(struct state_txn *txn, const struct queue_msg_info *m,
		  int64_t now);

/* Forgets, in txn, at most max key entries that no longer hold anything
 * back: no message of the key waits and the last window has passed. The
 * number forgotten, or -errno. */
int coalesce_expire(struct state_txn *txn, int64_t now, size_t max);

#endif

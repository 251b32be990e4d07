/*
 * coalesce.c - coalescing by key (see coalesce.h).
 *
 * A key's state is one entry of the state's metadata, "coalesce UID KEY" ->
 * "QUEUED SENT EVERY": the id of its message still waiting ("-" if none),
 * when one of its messages was last delivered (0: never) and that
 * message's window. An entry with no message waiting is forgotten once
 * that window has passed (coalesce_expire): keys can be made up at will
 * (a host name, a path), and their entries must not pile up. The repeat
 * count and the first and last submission live in the queued message's
 * own record. Both are written in the pickup's or the outcome's
 * transaction, so a kill -9 leaves them as the last commit did. If
 * state/ is lost, the rebuild knows each message's key (its spool file
 * has it) but neither the last send nor which message a key waits on:
 * the next message of a key then goes out at once, as one more mail,
 * and nothing is ever dropped for it.
 *
 * Functions return 0 or -errno, like the state calls they make.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "spool/util.h"
#include "coalesce.h"

#define COALESCE_META_PREFIX "coalesce "

struct coalesce_key {
	char queued[QUEUE_ID_LEN + 1]; /* "" if none */
	int64_t sent_at;
	int64_t every; /* the window of the message sent at sent_at */
};

/* An entry's value into *out: 0, or -EINVAL if it is none this code
 * wrote. An entry of two fields (from before the window was kept) counts
 * the longest window there is. */
static int
coalesce_key_parse(const char *val, struct coalesce_key *out)
{
	char id[QUEUE_ID_LEN + 2];
	long long sent, every;
	int n = sscanf(val, "%25s %lld %lld", id, &sent, &every);

	memset(out, 0, sizeof(*out));
	if (n < 2)
		return -EINVAL;
	if (queue_id_valid(id))
		str_copy(out->queued, id, sizeof(out->queued));
	out->sent_at = sent > 0 ? (int64_t)sent : 0;
	out->every = n == 3 && every >= 0 && every <= SPOOL_EVERY_MAX
			 ? (int64_t)every
			 : SPOOL_EVERY_MAX;
	return 0;
}

/* Keys are the submitter's own: another local user's message with the
 * same key neither replaces nor holds it. */
static void
coalesce_meta_name(char *buf, size_t len, uint32_t uid, const char *key)
{
	snprintf(buf, len, COALESCE_META_PREFIX "%" PRIu32 " %s", uid, key);
}

/* The key's state; a missing or unreadable entry is a fresh key (the
 * entry is derived: at worst one more mail goes out). */
static int
coalesce_key_get(struct state_txn *txn, uint32_t uid, const char *key,
		 struct coalesce_key *out)
{
	char name[sizeof(COALESCE_META_PREFIX) + 11 + SPOOL_KEY_MAX], val[64];
	int rc;

	memset(out, 0, sizeof(*out));
	coalesce_meta_name(name, sizeof(name), uid, key);
	rc = state_meta_get(txn, name, val, sizeof(val));
	if (rc == -ENOENT || rc == -ERANGE)
		return 0;
	if (rc < 0)
		return rc;
	(void)coalesce_key_parse(val, out); /* none: a fresh key */
	return 0;
}

static int
coalesce_key_put(struct state_txn *txn, uint32_t uid, const char *key,
		 const struct coalesce_key *k)
{
	char name[sizeof(COALESCE_META_PREFIX) + 11 + SPOOL_KEY_MAX], val[64];

	coalesce_meta_name(name, sizeof(name), uid, key);
	snprintf(val, sizeof(val), "%s %" PRId64 " %" PRId64,
		 k->queued[0] ? k->queued : "-", k->sent_at, k->every);
	return state_meta_put(txn, name, val);
}

int
coalesce_plan(struct state_txn *txn, const char *id, uint32_t uid,
	      const struct spool_envelope *env, int64_t now,
	      struct coalesce_plan *out)
{
	struct coalesce_key k;
	struct queue_msg_info old;
	int rc, in_flight = 0;

	memset(out, 0, sizeof(*out));
	out->verdict = COALESCE_NONE;
	out->repeats = 1;
	out->next_attempt = now;
	/* the digest names submission times (T), not pickup times */
	out->first_at = out->last_at =
	    env->queued_at > 0 && env->queued_at <= now ? env->queued_at : now;
	/* urgent is never held nor merged */
	if (env->key == NULL || env->urgent)
		return 0;
	if ((rc = coalesce_key_get(txn, uid, env->key, &k)) < 0)
		return rc;
	if (k.queued[0] != '\0' && strcmp(k.queued, id) != 0) {
		rc = state_msg_get(txn, k.queued, &old);
		if (rc < 0 && rc != -ENOENT)
			return rc;
		if (rc == 0) {
			int same = old.key != NULL &&
				   strcmp(old.key, env->key) == 0 &&
				   old.owner_uid == uid;

			if (same && (old.state == QUEUE_MSG_QUEUED ||
				     old.state == QUEUE_MSG_DEFERRED)) {
				out->verdict = COALESCE_MERGED;
				str_copy(out->old_id, k.queued,
					 sizeof(out->old_id));
				out->repeats =
				    (old.repeats > 0 ? old.repeats : 1) + 1;
				out->first_at = old.first_at > 0
						    ? old.first_at
						    : old.queued_at;
				out->next_attempt = old.next_attempt;
				out->attempts = old.attempts;
				out->owner_uid = old.owner_uid;
				out->digest =
				    (old.flags & QUEUE_MSG_F_DIGEST) != 0;
				out->deferred = old.state == QUEUE_MSG_DEFERRED;
			}
			in_flight = same && old.state == QUEUE_MSG_DELIVERING;
			queue_msg_info_free(&old);
			if (out->verdict == COALESCE_MERGED)
				return 0;
		}
	}
	if (env->every > 0 && in_flight) {
		/* its predecessor is being sent now: the window starts */
		out->verdict = COALESCE_HELD;
		out->next_attempt = now + env->every;
		out->digest = 1;
	} else if (env->every > 0 && k.sent_at > 0 &&
		   now < k.sent_at + env->every) {
		out->verdict = COALESCE_HELD;
		out->next_attempt = k.sent_at + env->every;
		out->digest = 1;
	} else {
		out->verdict = COALESCE_QUEUED;
	}
	return 0;
}

int
coalesce_apply(struct state_txn *txn, const struct coalesce_plan *pl,
	       const struct spool_envelope *env, struct queue_msg_info *m)
{
	struct coalesce_key k;
	int rc;

	if (env->key == NULL)
		return 0;
	if (m->key == NULL && (m->key = strdup(env->key)) == NULL)
		return -ENOMEM;
	m->repeats = pl->repeats;
	m->first_at = pl->first_at;
	m->last_at = pl->last_at;
	m->every = env->every;
	if (pl->verdict == COALESCE_NONE)
		return 0;
	m->next_attempt = pl->next_attempt;
	if (pl->verdict == COALESCE_MERGED)
		m->attempts = pl->attempts;
	if (pl->deferred)
		m->state = QUEUE_MSG_DEFERRED;
	if (pl->digest) {
		m->flags |= QUEUE_MSG_F_DIGEST;
		m->state = QUEUE_MSG_DEFERRED;
	}
	if (pl->verdict == COALESCE_MERGED) {
		rc = state_msg_del(txn, pl->old_id);
		if (rc < 0 && rc != -ENOENT)
			return rc;
		/* spoold_coalesced_messages_total, with the merge */
		if ((rc = metrics_count_coalesced(txn, 1)) < 0)
			return rc;
	}
	if ((rc = coalesce_key_get(txn, m->owner_uid, env->key, &k)) < 0)
		return rc;
	str_copy(k.queued, m->id, sizeof(k.queued));
	return coalesce_key_put(txn, m->owner_uid, env->key, &k);
}

int
coalesce_needs_rewrite(uint32_t repeats)
{
	/* a message held alone goes out as it was written, only later */
	return repeats > 1;
}

/* Where the header's Subject field ends (before its last line's end of
 * line), or NULL if there is none. *eol gets that line end. */
static const char *
coalesce_subject_end(const char *msg, size_t len, const char **eol_out,
		     size_t *eol_len)
{
	const char *p = msg, *end = msg + len, *subj_end = NULL;
	int in_subject = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *line_end = nl != NULL ? nl : end;
		size_t l = (size_t)(line_end - p);

		if (l > 0 && p[l - 1] == '\r')
			l--;
		if (l == 0)
			break; /* the body begins */
		if (p[0] == ' ' || p[0] == '\t') {
			if (in_subject)
				subj_end = p + l;
		} else {
			in_subject =
			    l >= 8 && strncasecmp(p, "Subject:", 8) == 0;
			if (in_subject && subj_end == NULL)
				subj_end = p + l;
			else if (!in_subject && subj_end != NULL)
				break;
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	if (subj_end == NULL)
		return NULL;
	*eol_out = subj_end;
	*eol_len = (subj_end < end && *subj_end == '\r') ? 2 : 1;
	return subj_end;
}

int
coalesce_rewrite(const char *msg, size_t len, uint32_t repeats, int64_t first,
		 int64_t last, char **out, size_t *outlen)
{
	char a[RFC3339_LEN], b[RFC3339_LEN], what[160];
	const char *at, *eol = NULL;
	size_t eol_len = 2, wlen, need, off = 0;
	char *buf;
	int n;

	format_rfc3339((time_t)first, a);
	format_rfc3339((time_t)last, b);
	n = snprintf(what, sizeof(what), "%" PRIu32 " time%s between %s and %s",
		     repeats, repeats == 1 ? "" : "s", a, b);
	wlen = n > 0 ? (size_t)n : 0;
	at = coalesce_subject_end(msg, len, &eol, &eol_len);
	/* X-Spoold-Repeated: WHAT CRLF, and the Subject's fold or a new
	 * Subject field */
	need = len + 2 * wlen + 64;
	buf = malloc(need);
	if (buf == NULL)
		return -ENOMEM;
	off += (size_t)snprintf(buf, need, "X-Spoold-Repeated: %s\r\n", what);
	if (at == NULL)
		off += (size_t)snprintf(buf + off, need - off,
					"Subject: repeated %s\r\n", what);
	if (at == NULL) {
		memcpy(buf + off, msg, len);
		off += len;
	} else {
		size_t head = (size_t)(at - msg);

		memcpy(buf + off, msg, head);
		off += head;
		/* a folded continuation: no line of the field grows */
		off +=
		    (size_t)snprintf(buf + off, need - off, "%s (repeated %s)",
				     eol_len == 2 ? "\r\n" : "\n", what);
		memcpy(buf + off, at, len - head);
		off += len - head;
	}
	buf[off] = '\0'; /* for the reader's convenience; not counted */
	*out = buf;
	*outlen = off;
	return 0;
}

int
coalesce_sent(struct state_txn *txn, const struct queue_msg_info *m,
	      int64_t now)
{
	struct coalesce_key k;
	int rc;

	if (m->key == NULL)
		return 0;
	if ((rc = coalesce_key_get(txn, m->owner_uid, m->key, &k)) < 0)
		return rc;
	if (strcmp(k.queued, m->id) == 0)
		k.queued[0] = '\0';
	k.sent_at = now;
	k.every = m->every;
	return coalesce_key_put(txn, m->owner_uid, m->key, &k);
}

struct coalesce_sweep {
	struct state_txn *txn;
	int64_t now;
};

/* 1 if the entry is no longer needed: no message of its key waits and
 * the window of the last one sent has passed. */
static int
coalesce_sweep_cb(const char *name, const char *val, void *arg)
{
	struct coalesce_sweep *sw = arg;
	struct coalesce_key k;
	struct queue_msg_info m;
	int rc;

	(void)name;
	/* an entry this code did not write is derived data: dropped */
	if (coalesce_key_parse(val, &k) < 0)
		return 1;
	if (k.queued[0] != '\0') {
		rc = state_msg_get(sw->txn, k.queued, &m);
		if (rc == 0) {
			queue_msg_info_free(&m);
			return 0;
		}
		if (rc != -ENOENT)
			return rc;
	}
	return k.sent_at + k.every <= sw->now;
}

int
coalesce_expire(struct state_txn *txn, int64_t now, size_t max)
{
	struct coalesce_sweep sw = {txn, now};

	return state_meta_sweep(txn, COALESCE_META_PREFIX, coalesce_sweep_cb,
				&sw, max);
}

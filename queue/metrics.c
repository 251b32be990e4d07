/*
 * metrics.c - what spoold has done and holds, in the Prometheus text
 * exposition format (version 0.0.4), for `spoolctl metrics` and the
 * daemon's textfile.
 *
 * Every figure comes from the state in one read transaction: the counts
 * of records by state (kept in step by state_lmdb.c, never a walk of the
 * queue), the counters spoold adds to in the transactions that apply the
 * outcomes they count (so a kill -9 loses neither), and new/ for what no
 * daemon has taken yet. Nothing here names an address or quotes a reply:
 * any local user may read it.
 *
 * Counter keys in the metrics table (transport names hold letters,
 * digits, '-' and '_' only, so ':' separates):
 *   sent:T, deferred:T, failed:T   recipients by outcome of an attempt on T
 *   dur:T:NN                       sessions on T that took at most bucket NN
 *   dursum:T                       their total duration, microseconds
 *   coalesced                      messages merged into another
 *   ratelimited:T                  messages held back by T's rate
 *   created, msgs:STATE            kept by state_lmdb.c
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spool/queue.h"

static const double metrics_bounds[METRICS_BUCKETS] = {
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};

static const char *const metrics_status[] = {"sent", "deferred", "failed"};
#define METRICS_NSTATUS 3

/* One transport's figures, configured or only found in the counters. */
struct metrics_row {
	char name[METRICS_NAME_MAX];
	int up; /* 1, 0, -1 never judged or not configured */
	uint64_t status[METRICS_NSTATUS];
	uint64_t bucket[METRICS_BUCKETS + 1]; /* the last: over every bound */
	uint64_t dur_us;
	uint64_t rate_limited;
};

struct metrics_data {
	struct metrics_row *rows;
	size_t n, cap;
	uint64_t coalesced;
	uint64_t created;
};

/* 1 if name can be a transport's (and so a key's part). */
static int
metrics_name_ok(const char *name, size_t len)
{
	if (len == 0 || len >= METRICS_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (name[i] == ':' || (unsigned char)name[i] < 0x20)
			return 0;
	return 1;
}

/* The row of transport name, made if missing; NULL if out of memory. */
static struct metrics_row *
metrics_row(struct metrics_data *md, const char *name, size_t len)
{
	struct metrics_row *r;

	for (size_t i = 0; i < md->n; i++)
		if (strncmp(md->rows[i].name, name, len) == 0 &&
		    md->rows[i].name[len] == '\0')
			return &md->rows[i];
	if (md->n == md->cap) {
		size_t cap = md->cap ? md->cap * 2 : 8;

		r = realloc(md->rows, cap * sizeof(*r));
		if (r == NULL)
			return NULL;
		md->rows = r;
		md->cap = cap;
	}
	r = &md->rows[md->n++];
	memset(r, 0, sizeof(*r));
	memcpy(r->name, name, len);
	r->up = -1;
	return r;
}

/* Files one counter of the table into md. Unknown keys are skipped, so
 * an older spoolctl reads what a newer spoold writes. */
static int
metrics_collect_cb(const char *key, uint64_t value, void *arg)
{
	struct metrics_data *md = arg;
	const char *t = strchr(key, ':');
	struct metrics_row *r;
	size_t klen, tlen;

	if (strcmp(key, "created") == 0) {
		md->created = value;
		return 0;
	}
	if (strcmp(key, "coalesced") == 0) {
		md->coalesced = value;
		return 0;
	}
	if (t == NULL || strncmp(key, "msgs:", 5) == 0)
		return 0;
	klen = (size_t)(t - key);
	t++;
	tlen = strncmp(key, "dur:", 4) == 0 ? strcspn(t, ":") : strlen(t);
	if (!metrics_name_ok(t, tlen))
		return 0;
	if ((r = metrics_row(md, t, tlen)) == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < METRICS_NSTATUS; i++)
		if (strlen(metrics_status[i]) == klen &&
		    strncmp(key, metrics_status[i], klen) == 0)
			r->status[i] = value;
	if (klen == 6 && strncmp(key, "dursum", klen) == 0)
		r->dur_us = value;
	else if (klen == 11 && strncmp(key, "ratelimited", klen) == 0)
		r->rate_limited = value;
	else if (klen == 3 && strncmp(key, "dur", klen) == 0 &&
		 t[tlen] == ':') {
		unsigned long b = strtoul(t + tlen + 1, NULL, 10);

		if (b <= METRICS_BUCKETS)
			r->bucket[b] = value;
	}
	return 0;
}

size_t
metrics_label_escape(char *out, size_t outlen, const char *in)
{
	size_t n = 0;

	for (; *in != '\0'; in++) {
		const char *rep = NULL;
		char c[2] = {*in, '\0'};

		if (*in == '\\')
			rep = "\\\\";
		else if (*in == '"')
			rep = "\\\"";
		else if (*in == '\n')
			rep = "\\n";
		else
			rep = c;
		for (; *rep != '\0'; rep++, n++)
			if (n + 1 < outlen)
				out[n] = *rep;
	}
	if (outlen > 0)
		out[n < outlen ? n : outlen - 1] = '\0';
	return n;
}

/* A family's HELP and TYPE lines. */
static void
metrics_head(FILE *fp, const char *name, const char *type, const char *help)
{
	fprintf(fp, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
metrics_counters(FILE *fp, const struct metrics_data *md)
{
	char esc[METRICS_NAME_MAX * 2];

	metrics_head(fp, "spoold_messages_total", "counter",
		     "Recipients by the outcome of a delivery attempt on a "
		     "transport, one per recipient and attempt (deferred "
		     "includes going on to the next transport).");
	for (size_t i = 0; i < md->n; i++) {
		metrics_label_escape(esc, sizeof(esc), md->rows[i].name);
		for (size_t s = 0; s < METRICS_NSTATUS; s++)
			fprintf(fp,
				"spoold_messages_total{transport=\"%s\","
				"status=\"%s\"} %" PRIu64 "\n",
				esc, metrics_status[s], md->rows[i].status[s]);
	}
	metrics_head(fp, "spoold_messages_created", "gauge",
		     "Unix time spoold_messages_total started from zero.");
	for (size_t i = 0; i < md->n; i++) {
		metrics_label_escape(esc, sizeof(esc), md->rows[i].name);
		for (size_t s = 0; s < METRICS_NSTATUS; s++)
			fprintf(fp,
				"spoold_messages_created{transport=\"%s\","
				"status=\"%s\"} %" PRIu64 "\n",
				esc, metrics_status[s], md->created);
	}
	metrics_head(fp, "spoold_delivery_duration_seconds", "histogram",
		     "Duration of delivery sessions (connect to the last "
		     "reply, up to 50 messages each) by transport.");
	for (size_t i = 0; i < md->n; i++) {
		const struct metrics_row *r = &md->rows[i];
		uint64_t cum = 0;

		metrics_label_escape(esc, sizeof(esc), r->name);
		for (size_t b = 0; b < METRICS_BUCKETS; b++) {
			cum += r->bucket[b];
			fprintf(fp,
				"spoold_delivery_duration_seconds_bucket{"
				"transport=\"%s\",le=\"%g\"} %" PRIu64 "\n",
				esc, metrics_bounds[b], cum);
		}
		cum += r->bucket[METRICS_BUCKETS];
		fprintf(fp,
			"spoold_delivery_duration_seconds_bucket{transport="
			"\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
			esc, cum);
		/* microseconds as an exact decimal */
		fprintf(fp,
			"spoold_delivery_duration_seconds_sum{transport="
			"\"%s\"} %" PRIu64 ".%06" PRIu64 "\n",
			esc, r->dur_us / 1000000, r->dur_us % 1000000);
		fprintf(fp,
			"spoold_delivery_duration_seconds_count{transport="
			"\"%s\"} %" PRIu64 "\n",
			esc, cum);
	}
	metrics_head(fp, "spoold_delivery_duration_seconds_created", "gauge",
		     "Unix time spoold_delivery_duration_seconds started from "
		     "zero.");
	for (size_t i = 0; i < md->n; i++) {
		metrics_label_escape(esc, sizeof(esc), md->rows[i].name);
		fprintf(fp,
			"spoold_delivery_duration_seconds_created{transport="
			"\"%s\"} %" PRIu64 "\n",
			esc, md->created);
	}
	metrics_head(fp, "spoold_rate_limited_messages_total", "counter",
		     "Messages held back because a transport was at its "
		     "rate limit.");
	for (size_t i = 0; i < md->n; i++) {
		metrics_label_escape(esc, sizeof(esc), md->rows[i].name);
		fprintf(fp,
			"spoold_rate_limited_messages_total{transport=\"%s\"} "
			"%" PRIu64 "\n",
			esc, md->rows[i].rate_limited);
	}
	metrics_head(fp, "spoold_rate_limited_messages_created", "gauge",
		     "Unix time spoold_rate_limited_messages_total started "
		     "from zero.");
	for (size_t i = 0; i < md->n; i++) {
		metrics_label_escape(esc, sizeof(esc), md->rows[i].name);
		fprintf(fp,
			"spoold_rate_limited_messages_created{transport="
			"\"%s\"} %" PRIu64 "\n",
			esc, md->created);
	}
	metrics_head(fp, "spoold_coalesced_messages_total", "counter",
		     "Messages merged into a queued message or digest of the "
		     "same key.");
	fprintf(fp, "spoold_coalesced_messages_total %" PRIu64 "\n",
		md->coalesced);
	metrics_head(fp, "spoold_coalesced_messages_created", "gauge",
		     "Unix time spoold_coalesced_messages_total started from "
		     "zero.");
	fprintf(fp, "spoold_coalesced_messages_created %" PRIu64 "\n",
		md->created);
}

static void
metrics_queue(FILE *fp, const struct queue_summary *q, int64_t now)
{
	static const enum queue_msg_state order[] = {
	    QUEUE_MSG_QUEUED, QUEUE_MSG_DEFERRED, QUEUE_MSG_DELIVERING,
	    QUEUE_MSG_HELD, QUEUE_MSG_FAILED};

	metrics_head(fp, "spoold_queue_messages", "gauge",
		     "Messages in the queue by state (queued includes those "
		     "submitted and not yet taken by spoold).");
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		fprintf(fp, "spoold_queue_messages{state=\"%s\"} %" PRIu64 "\n",
			queue_msg_state_name(order[i]),
			q->counts[order[i]] +
			    (order[i] == QUEUE_MSG_QUEUED ? q->in_new : 0));
	metrics_head(fp, "spoold_queue_oldest_message_age_seconds", "gauge",
		     "Age of the oldest message neither delivered nor "
		     "failed; 0 when there is none.");
	fprintf(fp, "spoold_queue_oldest_message_age_seconds %lld\n",
		(long long)(q->oldest > 0 && now > q->oldest ? now - q->oldest
							     : 0));
}

int
metrics_render(FILE *fp, struct spool *sp, struct state_txn *txn,
	       const struct metrics_transport *t, size_t nt, int up,
	       int64_t now)
{
	struct metrics_data md = {0};
	struct queue_summary q;
	char esc[METRICS_NAME_MAX * 2];
	int rc;

	rc = queue_summary_read(sp, txn, &q);
	for (size_t i = 0; rc == 0 && i < nt; i++) {
		struct metrics_row *r =
		    metrics_name_ok(t[i].name, strlen(t[i].name))
			? metrics_row(&md, t[i].name, strlen(t[i].name))
			: NULL;

		if (r == NULL)
			rc = -ENOMEM;
		else
			r->up = t[i].up;
	}
	if (rc == 0 && txn != NULL)
		rc = state_counter_foreach(txn, metrics_collect_cb, &md);
	if (rc < 0) {
		free(md.rows);
		return rc;
	}
	if (md.created == 0)
		md.created = (uint64_t)now; /* no state yet: counting starts */
	metrics_head(fp, "spoold_up", "gauge",
		     "1 if spoold runs and answers, else 0.");
	fprintf(fp, "spoold_up %d\n", up ? 1 : 0);
	metrics_queue(fp, &q, now);
	metrics_head(fp, "spoold_transport_up", "gauge",
		     "1 if the transport is up, 0 if down; absent while it "
		     "has never been judged.");
	for (size_t i = 0; i < md.n; i++)
		if (md.rows[i].up >= 0) {
			metrics_label_escape(esc, sizeof(esc), md.rows[i].name);
			fprintf(fp,
				"spoold_transport_up{transport=\"%s\"} %d\n",
				esc, md.rows[i].up);
		}
	metrics_counters(fp, &md);
	free(md.rows);
	return ferror(fp) ? -EIO : 0;
}

/* ---- counting: inside the write transaction of the outcome -------- */

/* Adds n to the counter "kind:transport" or "kind:transport:suffix". */
static int
metrics_add(struct state_txn *txn, const char *kind, const char *transport,
	    const char *suffix, uint64_t n)
{
	char key[METRICS_NAME_MAX + 32];

	if (!metrics_name_ok(transport, strlen(transport)))
		return -EINVAL;
	if (n == 0)
		return 0;
	snprintf(key, sizeof(key), "%s:%s%s%s", kind, transport,
		 suffix ? ":" : "", suffix ? suffix : "");
	return state_counter_add(txn, key, n);
}

int
metrics_count_outcome(struct state_txn *txn, const char *transport,
		      const char *status, uint64_t n)
{
	for (size_t i = 0; i < METRICS_NSTATUS; i++)
		if (strcmp(status, metrics_status[i]) == 0)
			return metrics_add(txn, metrics_status[i], transport,
					   NULL, n);
	return -EINVAL;
}

int
metrics_observe_session(struct state_txn *txn, const char *transport,
			int64_t duration_ms)
{
	char bucket[8];
	size_t b;
	int rc;

	if (duration_ms < 0)
		duration_ms = 0;
	for (b = 0; b < METRICS_BUCKETS; b++)
		if ((double)duration_ms / 1000.0 <= metrics_bounds[b])
			break;
	snprintf(bucket, sizeof(bucket), "%02zu", b);
	rc = metrics_add(txn, "dur", transport, bucket, 1);
	if (rc == 0 && duration_ms > 0)
		rc = metrics_add(txn, "dursum", transport, NULL,
				 (uint64_t)duration_ms * 1000);
	return rc;
}

int
metrics_count_coalesced(struct state_txn *txn, uint64_t n)
{
	return n == 0 ? 0 : state_counter_add(txn, "coalesced", n);
}

int
metrics_count_rate_limited(struct state_txn *txn, const char *transport,
			   uint64_t n)
{
	return metrics_add(txn, "ratelimited", transport, NULL, n);
}

int
metrics_health_saved(struct state_txn *txn, const char *name)
{
	char key[METRICS_NAME_MAX + 16], value[QUEUE_REPLY_MAX + 64];
	int up;

	snprintf(key, sizeof(key), "health:%s", name);
	if (txn == NULL || state_meta_get(txn, key, value, sizeof(value)) < 0 ||
	    sscanf(value, "%d", &up) != 1)
		return -1;
	return up < 0 ? -1 : up != 0;
}

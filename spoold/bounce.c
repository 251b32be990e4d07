/*
 * bounce.c - failure notices to the sender of a failed message.
 *
 * A notice is composed from the failed message's record (recipients and
 * their last replies) and its spool file in failed/ (the original header
 * section), and queued with spool_submit like any message: from <> to the
 * original sender. The limiter keeps two sliding windows, one per sender
 * (an hour) and one for everything (a minute); both are in memory, so a
 * restart forgets them, which costs at most one more window of notices.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "spool/util.h"
#include "bounce.h"

#define STR_(x) #x
#define STR(x) STR_(x) /* a number macro as a string literal */

/* ---- limiter -------------------------------------------------------- */

/* The times of the last size events, oldest at head once full. */
struct rate_ring {
	int64_t *t;
	unsigned size, n, head;
};

static int
ring_allows(const struct rate_ring *r, int64_t now, int64_t window)
{
	return r->n < r->size || r->t[r->head] <= now - window;
}

static void
ring_add(struct rate_ring *r, int64_t now)
{
	if (r->n < r->size) {
		r->t[(r->head + r->n) % r->size] = now;
		r->n++;
	} else {
		r->t[r->head] = now;
		r->head = (r->head + 1) % r->size;
	}
}

static int64_t
ring_newest(const struct rate_ring *r)
{
	return r->n == 0 ? 0 : r->t[(r->head + r->n - 1) % r->size];
}

struct sender_slot {
	char *address; /* NULL: free */
	struct rate_ring ring;
	int64_t t[BOUNCE_SENDER_PER_HOUR];
};

struct bounce_limiter {
	struct rate_ring total;
	int64_t total_t[BOUNCE_TOTAL_PER_MINUTE];
	struct sender_slot *slots; /* BOUNCE_SENDERS_MAX of them */
};

int
bounce_limiter_new(struct bounce_limiter **out)
{
	struct bounce_limiter *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return -ENOMEM;
	l->slots = calloc(BOUNCE_SENDERS_MAX, sizeof(*l->slots));
	if (l->slots == NULL) {
		free(l);
		return -ENOMEM;
	}
	l->total.t = l->total_t;
	l->total.size = BOUNCE_TOTAL_PER_MINUTE;
	for (size_t i = 0; i < BOUNCE_SENDERS_MAX; i++) {
		l->slots[i].ring.t = l->slots[i].t;
		l->slots[i].ring.size = BOUNCE_SENDER_PER_HOUR;
	}
	*out = l;
	return 0;
}

void
bounce_limiter_free(struct bounce_limiter *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < BOUNCE_SENDERS_MAX; i++)
		free(l->slots[i].address);
	free(l->slots);
	free(l);
}

/* The slot of sender, else a free one or one idle for an hour (emptied),
 * else NULL. */
static struct sender_slot *
slot_for(struct bounce_limiter *l, const char *sender, int64_t now)
{
	struct sender_slot *spare = NULL;

	for (size_t i = 0; i < BOUNCE_SENDERS_MAX; i++) {
		struct sender_slot *s = &l->slots[i];

		if (s->address != NULL && strcasecmp(s->address, sender) == 0)
			return s;
		if (spare == NULL &&
		    (s->address == NULL || ring_newest(&s->ring) <= now - 3600))
			spare = s;
	}
	if (spare != NULL && spare->address != NULL) {
		free(spare->address);
		spare->address = NULL;
		spare->ring.n = 0;
		spare->ring.head = 0;
	}
	return spare;
}

/* Why a notice was held back, as the log shows it. */
static const char over_senders[] =
    "over " STR(BOUNCE_SENDERS_MAX) " senders with notices this hour";
static const char over_sender[] =
    "over " STR(BOUNCE_SENDER_PER_HOUR) " notices an hour to this sender";
static const char over_total[] =
    "over " STR(BOUNCE_TOTAL_PER_MINUTE) " notices a minute";

int
bounce_limiter_take(struct bounce_limiter *l, const char *sender, int64_t now,
		    const char **why)
{
	struct sender_slot *s = slot_for(l, sender, now);

	/* the sender's own limit first: it is the more telling reason */
	if (s == NULL) {
		*why = over_senders;
		return -EBUSY;
	}
	if (!ring_allows(&s->ring, now, 3600)) {
		*why = over_sender;
		return -EBUSY;
	}
	if (!ring_allows(&l->total, now, 60)) {
		*why = over_total;
		return -EBUSY;
	}
	if (s->address == NULL && (s->address = strdup(sender)) == NULL) {
		*why = "out of memory";
		return -ENOMEM;
	}
	ring_add(&s->ring, now);
	ring_add(&l->total, now);
	return 0;
}

/* ---- composition ---------------------------------------------------- */

/* "5.1.1" from a reply such as "550 5.1.1 <x>: unknown", else the class
 * of its code with ".0.0"; expiry is 4.4.7 (delivery time expired). */
static void
rcpt_status(const struct bounce_rcpt *r, char out[16])
{
	const char *p = r->reply;
	unsigned a, b, c;
	char cls;

	if (r->expired) {
		snprintf(out, 16, "4.4.7");
		return;
	}
	cls = p != NULL && (p[0] == '4' || p[0] == '5') ? p[0] : '5';
	if (p != NULL && strlen(p) > 4 &&
	    sscanf(p + 4, "%1u.%3u.%3u", &a, &b, &c) == 3 &&
	    (char)('0' + a) == cls) {
		snprintf(out, 16, "%u.%u.%u", a, b, c);
		return;
	}
	snprintf(out, 16, "%c.0.0", cls);
}

/* 1 if a reply is an SMTP reply ("550 ..."), not our own diagnosis. */
static int
is_smtp_reply(const char *s)
{
	return s != NULL && s[0] >= '2' && s[0] <= '5' && s[1] >= '0' &&
	       s[1] <= '9' && s[2] >= '0' && s[2] <= '9' &&
	       (s[3] == ' ' || s[3] == '-' || s[3] == '\0');
}

/* The header section of a message (up to its first empty line), with
 * every line ending in CRLF, cut at a line end within max bytes. */
static void
put_headers(FILE *fp, const char *h, size_t len, size_t max)
{
	size_t i = 0, written = 0;

	while (i < len) {
		size_t start = i, end;

		while (i < len && h[i] != '\r' && h[i] != '\n')
			i++;
		end = i;
		if (i < len && h[i] == '\r')
			i++;
		if (i < len && h[i] == '\n')
			i++;
		if (end == start)
			break; /* the empty line: the body follows */
		if (written + (end - start) + 2 > max)
			break;
		fwrite(h + start, 1, end - start, fp);
		fputs("\r\n", fp);
		written += end - start + 2;
	}
}

int
bounce_compose(const struct bounce_report *r, char **out, size_t *len)
{
	char date[RFC5322_DATE_LEN], arrival[RFC5322_DATE_LEN];
	char boundary[96], status[16];
	char *buf = NULL;
	size_t n = 0;
	FILE *fp;

	if (r->sender == NULL || r->sender[0] == '\0' || r->nrcpt == 0)
		return -EINVAL;
	fp = open_memstream(&buf, &n);
	if (fp == NULL)
		return -ENOMEM;
	format_rfc5322_date((time_t)r->failed_at, date);
	format_rfc5322_date((time_t)r->queued_at, arrival);
	/* the id is unique and the random part keeps a quoted header from
	 * guessing the boundary */
	snprintf(boundary, sizeof(boundary), "%s.%08x/%.40s", r->id,
		 arc4random(), r->hostname);
	fprintf(fp,
		"From: Mail Delivery System <MAILER-DAEMON@%s>\r\n"
		"To: <%s>\r\n"
		"Subject: Undelivered Mail Returned to Sender\r\n"
		"Date: %s\r\n"
		"Message-ID: <%s.%lld.notice@%s>\r\n"
		"Auto-Submitted: auto-replied\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/report; "
		"report-type=delivery-status;\r\n"
		"\tboundary=\"%s\"\r\n"
		"\r\n"
		"This is a MIME-encapsulated message.\r\n"
		"\r\n",
		r->hostname, r->sender, date, r->id, (long long)r->failed_at,
		r->hostname, boundary);

	fprintf(
	    fp,
	    "--%s\r\n"
	    "Content-Description: Notification\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "\r\n"
	    "This is the mail system at host %s.\r\n"
	    "\r\n"
	    "Your message (queue id %s) could not be delivered to the\r\n"
	    "recipients below. It will not be tried again. Each line gives\r\n"
	    "the recipient and the last reply about it.\r\n"
	    "\r\n",
	    boundary, r->hostname, r->id);
	for (size_t i = 0; i < r->nrcpt; i++) {
		const struct bounce_rcpt *rc = &r->rcpt[i];

		fprintf(fp, "<%s>: %s%s\r\n", rc->address,
			rc->expired ? "not delivered before the queue "
				      "lifetime ran out; last reply: "
				    : "",
			rc->reply && rc->reply[0] ? rc->reply : "(none)");
	}

	fprintf(fp,
		"\r\n--%s\r\n"
		"Content-Description: Delivery report\r\n"
		"Content-Type: message/delivery-status\r\n"
		"\r\n"
		"Reporting-MTA: dns; %s\r\n"
		"X-Spoold-Queue-ID: %s\r\n"
		"Arrival-Date: %s\r\n",
		boundary, r->hostname, r->id, arrival);
	for (size_t i = 0; i < r->nrcpt; i++) {
		const struct bounce_rcpt *rc = &r->rcpt[i];

		rcpt_status(rc, status);
		fprintf(fp,
			"\r\n"
			"Final-Recipient: rfc822; %s\r\n"
			"Action: failed\r\n"
			"Status: %s\r\n",
			rc->address, status);
		if (rc->reply != NULL && rc->reply[0] != '\0')
			fprintf(fp, "Diagnostic-Code: %s; %s\r\n",
				is_smtp_reply(rc->reply) ? "smtp" : "X-spoold",
				rc->reply);
		fprintf(fp, "Last-Attempt-Date: %s\r\n", date);
	}

	fprintf(fp,
		"\r\n--%s\r\n"
		"Content-Description: Undelivered message headers\r\n"
		"Content-Type: text/rfc822-headers\r\n"
		"\r\n",
		boundary);
	if (r->headers != NULL)
		put_headers(fp, r->headers, r->headers_len, BOUNCE_HEADERS_MAX);
	fprintf(fp, "\r\n--%s--\r\n", boundary);
	if (ferror(fp) || fclose(fp) != 0) {
		free(buf);
		return -ENOMEM;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* ---- queueing ------------------------------------------------------- */

const char *
daemon_hostname(void)
{
	static char host[256];

	if (host[0] == '\0' && (gethostname(host, sizeof(host)) < 0 ||
				host[0] == '\0' || strchr(host, '>') != NULL))
		str_copy(host, "localhost", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	return host;
}

int
bounce_queue(struct spool *sp, struct bounce_limiter *l,
	     const struct queue_msg_info *m, int64_t now,
	     char id_out[QUEUE_ID_LEN + 1], char *err, size_t errlen)
{
	struct bounce_report r = {0};
	struct bounce_rcpt *rcpt = NULL;
	struct spool_file f;
	const char *why, *to;
	char *msg = NULL;
	size_t len = 0;
	int rc, opened = 0;

	if (m->sender == NULL || m->sender[0] == '\0')
		return 0; /* a notice never causes a notice */
	rcpt = calloc(m->nrcpt ? m->nrcpt : 1, sizeof(*rcpt));
	if (rcpt == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < m->nrcpt; i++) {
		if (m->rcpt[i].state == QUEUE_RCPT_SENT)
			continue;
		rcpt[r.nrcpt].address = m->rcpt[i].address;
		rcpt[r.nrcpt].reply = m->rcpt[i].reply;
		rcpt[r.nrcpt].expired = m->rcpt[i].state == QUEUE_RCPT_PENDING;
		r.nrcpt++;
	}
	rc = 0;
	if (r.nrcpt == 0)
		goto out;
	rc = spool_file_open(sp, QUEUE_DIR_FAILED, m->id, &f, err, errlen);
	if (rc < 0)
		goto out;
	opened = 1;
	r.id = m->id;
	r.sender = m->sender;
	r.hostname = daemon_hostname();
	r.queued_at = m->queued_at;
	r.failed_at = now;
	r.rcpt = rcpt;
	r.headers = f.data + f.body_off;
	r.headers_len = f.size - f.body_off;
	rc = bounce_limiter_take(l, m->sender, now, &why);
	if (rc < 0) {
		snprintf(err, errlen, "%s", why);
		goto out;
	}
	rc = bounce_compose(&r, &msg, &len);
	if (rc < 0) {
		snprintf(err, errlen, "cannot compose the notice: %s",
			 strerror(-rc));
		goto out;
	}
	to = m->sender;
	rc = spool_submit(sp, "", &to, 1, msg, len, id_out, err, errlen);
	if (rc == 0)
		rc = 1;
out:
	if (opened)
		spool_file_close(&f);
	free(msg);
	free(rcpt);
	return rc;
}

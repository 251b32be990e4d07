/*
 * keyed.c - a submission's coalescing key, digest window and priority:
 * from submit's options or, for callers that cannot pass options
 * (sendmail -t), from the message's X-Spoold-Key, X-Spoold-Every,
 * Priority and X-Priority fields; and, after the write, what spoold made
 * of a keyed message (its own, merged, held), told by the exit code.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>

#include "spool/conf.h"
#include "spool/ctlproto.h"
#include "spool/msg.h"
#include "spool/util.h"
#include "spoolctl.h"

/* How long submit asks spoold about a keyed message it just queued: a
 * pickup takes milliseconds, so this bounds only a busy or stuck one. */
#define KEYED_ASK_MS 3000
#define KEYED_POLL_MS 20

/*
 * The unfolded value of the first header field name in msg (CRLF or LF
 * lines), trimmed, into buf. 1 found, 0 absent, -ERANGE too long.
 */
static int
keyed_header(const char *msg, size_t len, const char *name, char *buf,
	     size_t buflen)
{
	size_t nlen = strlen(name), off = 0;
	const char *p = msg, *end = msg + len;
	int found = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl != NULL ? nl : end;
		size_t l = (size_t)(le - p);

		if (l > 0 && p[l - 1] == '\r')
			l--;
		if (l == 0)
			break;
		if (found && (p[0] == ' ' || p[0] == '\t')) {
			if (off + l >= buflen)
				return -ERANGE;
			memcpy(buf + off, p, l);
			off += l;
		} else if (found) {
			break;
		} else if (l > nlen && p[nlen] == ':' &&
			   strncasecmp(p, name, nlen) == 0) {
			found = 1;
			if (l - nlen - 1 >= buflen)
				return -ERANGE;
			memcpy(buf, p + nlen + 1, l - nlen - 1);
			off = l - nlen - 1;
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	if (!found)
		return 0;
	buf[off] = '\0';
	/* trim the white space around the value */
	{
		size_t s = strspn(buf, " \t");

		memmove(buf, buf + s, off - s + 1);
		off -= s;
		while (off > 0 && (buf[off - 1] == ' ' || buf[off - 1] == '\t'))
			buf[--off] = '\0';
	}
	return 1;
}

int
keyed_parse_every(const char *s, int64_t *out)
{
	int64_t v;

	if (parse_duration(s, &v) < 0 || v < 1 || v > SPOOL_EVERY_MAX)
		return -EINVAL;
	*out = v;
	return 0;
}

int
keyed_parse_priority(const char *s, int *urgent)
{
	if (strcasecmp(s, "urgent") == 0)
		*urgent = 1;
	else if (strcasecmp(s, "normal") == 0)
		*urgent = 0;
	else
		return -EINVAL;
	return 0;
}

int
keyed_meta(const struct msg_prepared *p, const struct keyed_opts *o,
	   struct spool_meta *out, char key[SPOOL_KEY_MAX + 1])
{
	char val[SPOOL_KEY_MAX + 64];
	const char *why;
	int rc;

	memset(out, 0, sizeof(*out));
	if (o != NULL && o->key != NULL) {
		str_copy(key, o->key, SPOOL_KEY_MAX + 1);
		why = spool_key_problem(o->key, strlen(o->key));
		if (why != NULL) {
			ctl_error("--key: %s (at most %d bytes of printable "
				  "ASCII)",
				  why, SPOOL_KEY_MAX);
			return EX_DATAERR;
		}
		out->key = key;
	} else if ((rc = keyed_header(p->data, p->len, "X-Spoold-Key", val,
				      sizeof(val))) != 0) {
		why = rc < 0 ? "key longer than 128 bytes"
			     : spool_key_problem(val, strlen(val));
		if (why != NULL) {
			ctl_error("X-Spoold-Key: %s (at most %d bytes of "
				  "printable ASCII)",
				  why, SPOOL_KEY_MAX);
			return EX_DATAERR;
		}
		str_copy(key, val, SPOOL_KEY_MAX + 1);
		out->key = key;
	}
	if (o != NULL && o->every > 0) {
		out->every = o->every;
	} else if ((rc = keyed_header(p->data, p->len, "X-Spoold-Every", val,
				      sizeof(val))) != 0) {
		if (rc < 0 || keyed_parse_every(val, &out->every) < 0) {
			ctl_error("X-Spoold-Every: want a duration such as "
				  "10m or 1h, up to 366d");
			return EX_DATAERR;
		}
	}
	if (out->every > 0 && out->key == NULL) {
		ctl_error("%s needs a key (--key or X-Spoold-Key)",
			  o != NULL && o->every > 0 ? "--every"
						    : "X-Spoold-Every");
		return EX_USAGE;
	}
	if (o != NULL && o->urgent >= 0) {
		out->urgent = o->urgent;
	} else if (keyed_header(p->data, p->len, "Priority", val,
				sizeof(val)) == 1 &&
		   strcasecmp(val, "urgent") == 0) {
		out->urgent = 1;
	} else if (keyed_header(p->data, p->len, "X-Priority", val,
				sizeof(val)) == 1 &&
		   val[0] == '1' && (val[1] == '\0' || val[1] == ' ')) {
		out->urgent = 1; /* "1" or "1 (Highest)" */
	}
	return 0;
}

/* Sleeps ms milliseconds. */
static void
keyed_sleep(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int
keyed_outcome(const struct conf *cf, const char *id)
{
	char req[64], *reply = NULL;
	int rc;

	snprintf(req, sizeof(req), "SUBMITTED %s", id);
	for (long waited = 0; waited < KEYED_ASK_MS; waited += KEYED_POLL_MS) {
		rc = ctl_call(cf->spool_dir, req, &reply, KEYED_ASK_MS);
		if (rc < 0)
			return 0; /* no daemon: queued, and so it is */
		if (strncmp(reply, "OK pending", 10) != 0)
			break;
		free(reply);
		reply = NULL;
		keyed_sleep(KEYED_POLL_MS);
	}
	rc = 0;
	if (reply != NULL && strncmp(reply, "OK merged ", 10) == 0) {
		reply[strcspn(reply, "\n")] = '\0';
		fprintf(stderr,
			"%s: %s replaced a queued message of its key; "
			"it stands for %s submissions\n",
			ctl_progname, id, reply + 10);
		rc = SUBMIT_EX_COALESCED;
	} else if (reply != NULL && strncmp(reply, "OK held ", 8) == 0) {
		reply[strcspn(reply, "\n")] = '\0';
		fprintf(stderr, "%s: %s held for a digest until %s\n",
			ctl_progname, id, reply + 8);
		rc = SUBMIT_EX_COALESCED;
	}
	free(reply);
	return rc;
}

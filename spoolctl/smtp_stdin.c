/*
 * smtp_stdin.c - `sendmail -bs`: the SMTP server side of RFC 5321 on
 * stdin and stdout, as Postfix's and Exim's sendmail give it to mailer
 * libraries that would rather speak SMTP than write a message to a pipe.
 *
 * Policy: every message goes through submit_prepare and submit_spool,
 * the very path of `spoolctl submit`, so a message queued here is stored
 * byte for byte as one submitted on the command line would be. Addresses
 * are judged by msg_rcpt_parse, submission's own rule, at MAIL and RCPT
 * time, so a bad one is refused in the dialogue and not after DATA.
 *
 * Limits, each answered with a reply and never by a crash or unbounded
 * memory: a command line over SMTP_LINE_MAX octets (500), a message over
 * [spool] max_size (552, and the rest of its data is read and dropped),
 * SMTP_RCPT_MAX recipients (452), SMTP_ERRORS_MAX errors (421, end).
 * Long text lines are accepted: submission re-encodes them.
 *
 * The end of stdin ends the session; an unfinished message is dropped,
 * as an SMTP server drops one whose client went away.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#include "spool/msg.h"
#include "spool/queue.h"
#include "smtp_stdin.h"
#include "spoolctl.h"

#define SMTP_LINE_MAX 1000 /* a command line, CRLF included (RFC 5321) */
#define SMTP_RCPT_MAX 1000
#define SMTP_ERRORS_MAX 20

/* A line as it arrives, its LF or CRLF removed. */
struct smtp_line {
	char *p;
	size_t len, cap;
};

struct smtp_session {
	const struct conf *cf;
	const char *full_name; /* -F */
	char user[256], host[256];
	/* stdin, buffered */
	char in[16384];
	size_t in_off, in_len;
	int in_eof;
	/* the transaction: between MAIL and the end of DATA or RSET */
	char *sender; /* "<addr>" or "<>" as msg_prepare takes -f; NULL: none */
	struct msg_strlist rcpt;
	int errors;
	int out_failed; /* stdout is gone: end the session */
	int done;	/* QUIT, or too many errors */
};

static void smtp_reply(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Writes one reply line with CRLF and flushes it: the client waits for
 * it before it sends anything more. */
static void
smtp_reply(struct smtp_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	if (fputs("\r\n", stdout) == EOF || fflush(stdout) == EOF)
		s->out_failed = 1;
}

/* A refused command: counts towards SMTP_ERRORS_MAX. */
static void
smtp_error(struct smtp_session *s, const char *reply)
{
	smtp_reply(s, "%s", reply);
	if (++s->errors >= SMTP_ERRORS_MAX) {
		smtp_reply(s, "421 4.7.0 %s Error: too many errors", s->host);
		s->done = 1;
	}
}

static void
smtp_transaction_reset(struct smtp_session *s)
{
	free(s->sender);
	s->sender = NULL;
	msg_strlist_free(&s->rcpt);
	memset(&s->rcpt, 0, sizeof(s->rcpt));
}

/*
 * Reads one line into l, keeping at most max octets; *over is set when
 * the line was longer (the rest is read and dropped). 1: a line; 0: the
 * end of input (a last line without its line end is dropped too);
 * -errno: a read error or no memory.
 */
static int
smtp_line_read(struct smtp_session *s, struct smtp_line *l, size_t max,
	       int *over)
{
	l->len = 0;
	*over = 0;
	for (;;) {
		const char *start, *nl;
		size_t n, keep;

		if (s->in_off == s->in_len) {
			ssize_t r;

			if (s->in_eof)
				return 0;
			r = read(STDIN_FILENO, s->in, sizeof(s->in));
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return -errno;
			if (r == 0) {
				s->in_eof = 1;
				return 0;
			}
			s->in_off = 0;
			s->in_len = (size_t)r;
		}
		start = s->in + s->in_off;
		nl = memchr(start, '\n', s->in_len - s->in_off);
		n = nl ? (size_t)(nl - start) : s->in_len - s->in_off;
		s->in_off += n + (nl != NULL);
		keep = l->len + n > max ? (max > l->len ? max - l->len : 0) : n;
		if (keep < n)
			*over = 1;
		if (l->len + keep + 1 > l->cap) {
			size_t cap = l->cap ? l->cap : 1024;
			char *p;

			while (cap < l->len + keep + 1)
				cap *= 2;
			if ((p = realloc(l->p, cap)) == NULL)
				return -ENOMEM;
			l->p = p;
			l->cap = cap;
		}
		memcpy(l->p + l->len, start, keep);
		l->len += keep;
		l->p[l->len] = '\0';
		if (nl != NULL) {
			if (l->len > 0 && l->p[l->len - 1] == '\r' && !*over)
				l->p[--l->len] = '\0';
			return 1;
		}
	}
}

/*
 * Splits "FROM:<path> params" (after the verb): *path gets the address
 * inside the angle brackets (or the bare word, as lenient servers take
 * it), *params what follows. Writes NULs into arg. 0 or -1 (syntax).
 */
static int
smtp_path_split(char *arg, const char *prefix, char **path, char **params)
{
	size_t pl = strlen(prefix);
	char *p, *end;

	if (strncasecmp(arg, prefix, pl) != 0)
		return -1;
	p = arg + pl;
	while (*p == ' ')
		p++;
	if (*p == '<') {
		if ((end = strchr(p + 1, '>')) == NULL)
			return -1;
		*path = p + 1;
	} else {
		*path = p;
		end = p + strcspn(p, " ");
		if (end == p)
			return -1;
	}
	*params = *end != '\0' ? end + 1 : end;
	*end = '\0';
	while (**params == ' ')
		(*params)++;
	return 0;
}

/* addr as submission would store it, into *out (malloc'd): exactly one
 * address. 0, or -1 with why set. */
static int
smtp_addr_qualify(struct smtp_session *s, const char *addr, char **out,
		  char *why, size_t whylen)
{
	struct msg_strlist l = {0};
	int rc = -1;

	if (msg_rcpt_parse(&l, addr, s->host, why, whylen) != 0)
		goto out;
	if (l.n != 1) {
		snprintf(why, whylen, "want one address");
		goto out;
	}
	*out = l.v[0];
	l.v[0] = NULL;
	rc = 0;
out:
	msg_strlist_free(&l);
	return rc;
}

/* why for a reply line: control characters as '?'. */
static const char *
smtp_printable(char *why)
{
	for (char *c = why; *c != '\0'; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	return why;
}

static void
smtp_cmd_mail(struct smtp_session *s, char *arg)
{
	char *path, *params, *tok, *save = NULL, *q = NULL, why[512];

	if (s->sender != NULL) {
		smtp_error(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	if (smtp_path_split(arg, "FROM:", &path, &params) < 0) {
		smtp_error(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	for (tok = strtok_r(params, " ", &save); tok != NULL;
	     tok = strtok_r(NULL, " ", &save)) {
		if (strncasecmp(tok, "SIZE=", 5) == 0) {
			char *e;
			unsigned long long n = strtoull(tok + 5, &e, 10);

			if (*e != '\0' || e == tok + 5) {
				smtp_error(s, "501 5.5.4 Bad SIZE parameter");
				return;
			}
			if (n > s->cf->max_size) {
				smtp_error(s, "552 5.3.4 Message size exceeds "
					      "fixed limit");
				return;
			}
		} else if (strncasecmp(tok, "BODY=", 5) == 0) {
			if (strcasecmp(tok + 5, "7BIT") != 0 &&
			    strcasecmp(tok + 5, "8BITMIME") != 0) {
				smtp_error(s, "501 5.5.4 Bad BODY parameter");
				return;
			}
		} else {
			smtp_reply(s, "555 5.5.4 Unsupported option: %.64s",
				   smtp_printable(tok));
			s->errors++;
			return;
		}
	}
	if (*path != '\0' &&
	    smtp_addr_qualify(s, path, &q, why, sizeof(why)) < 0) {
		smtp_reply(s, "553 5.1.7 Bad sender address syntax: %s",
			   smtp_printable(why));
		s->errors++;
		return;
	}
	if (asprintf(&s->sender, "<%s>", q ? q : "") < 0) {
		s->sender = NULL;
		smtp_reply(s, "451 4.3.0 Error: out of memory");
	} else {
		smtp_reply(s, "250 2.1.0 Ok");
	}
	free(q);
}

static void
smtp_cmd_rcpt(struct smtp_session *s, char *arg)
{
	char *path, *params, *q = NULL, why[512];

	if (s->sender == NULL) {
		smtp_error(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (smtp_path_split(arg, "TO:", &path, &params) < 0) {
		smtp_error(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (*params != '\0') {
		smtp_reply(s, "555 5.5.4 Unsupported option: %.64s",
			   smtp_printable(params));
		s->errors++;
		return;
	}
	if (s->rcpt.n >= SMTP_RCPT_MAX) {
		smtp_reply(s, "452 4.5.3 Error: too many recipients");
		return;
	}
	if (*path == '\0') {
		smtp_error(s, "501 5.1.3 Bad recipient address syntax");
		return;
	}
	if (smtp_addr_qualify(s, path, &q, why, sizeof(why)) < 0) {
		smtp_reply(s, "553 5.1.3 Bad recipient address syntax: %s",
			   smtp_printable(why));
		s->errors++;
		return;
	}
	if (msg_strlist_add(&s->rcpt, q) < 0)
		smtp_reply(s, "451 4.3.0 Error: out of memory");
	else
		smtp_reply(s, "250 2.1.5 Ok");
	free(q);
}

/*
 * DATA: reads the text up to the lone ".", undoing the dot-stuffing,
 * and queues it. The text is kept with CRLF line ends, as submission
 * stores them anyway. 1 to go on, 0 at the end of input, -errno.
 */
static int
smtp_cmd_data(struct smtp_session *s, struct smtp_line *l)
{
	size_t max = (size_t)s->cf->max_size, len = 0, cap = 0;
	struct msg_submit_opts o = {.sender = s->sender,
				    .full_name = s->full_name};
	struct msg_prepared p = {0};
	char *data = NULL, id[QUEUE_ID_LEN + 1], err[512];
	int over, toobig = 0, rc;

	if (s->sender == NULL) {
		smtp_error(s, "503 5.5.1 Error: need MAIL command");
		return 1;
	}
	if (s->rcpt.n == 0) {
		smtp_error(s, "503 5.5.1 Error: need RCPT command");
		return 1;
	}
	smtp_reply(s, "354 End data with <CR><LF>.<CR><LF>");
	for (;;) {
		const char *text;
		size_t n;

		/* a line longer than the whole limit makes the message too
		 * large: keep no more of it than that */
		rc = smtp_line_read(s, l, max + 1, &over);
		if (rc <= 0) {
			free(data);
			return rc; /* the client went away mid-message */
		}
		if (!over && l->len == 1 && l->p[0] == '.')
			break;
		text = l->p[0] == '.' ? l->p + 1 : l->p;
		n = l->len - (size_t)(text - l->p);
		if (toobig || over || len + n + 2 > max) {
			toobig = 1;
			continue;
		}
		if (len + n + 2 > cap) {
			size_t ncap = cap ? cap : 65536;
			char *nd;

			while (ncap < len + n + 2)
				ncap *= 2;
			if ((nd = realloc(data, ncap)) == NULL) {
				free(data);
				return -ENOMEM;
			}
			data = nd;
			cap = ncap;
		}
		memcpy(data + len, text, n);
		memcpy(data + len + n, "\r\n", 2);
		len += n + 2;
	}
	if (toobig) {
		smtp_reply(s, "552 5.3.4 Message size exceeds fixed limit");
		goto out;
	}
	rc = submit_prepare(s->cf, &o, data ? data : "", len,
			    (const char *const *)s->rcpt.v, s->rcpt.n, &p, err,
			    sizeof(err));
	if (rc == EX_OSERR || rc == EX_SOFTWARE) {
		smtp_reply(s, "451 4.3.0 Error: %s", smtp_printable(err));
	} else if (rc != 0) {
		smtp_reply(s, "554 5.6.0 Error: %s", smtp_printable(err));
	} else if ((rc = submit_spool(s->cf, &p, id)) == EX_DATAERR ||
		   rc == EX_USAGE) {
		/* a bad X-Spoold-Key or X-Spoold-Every: retrying cannot help */
		smtp_reply(s, "554 5.6.0 Error: bad X-Spoold-Key or "
			      "X-Spoold-Every field");
	} else if (rc != 0) {
		/* submit_spool said why on stderr; the client may retry */
		smtp_reply(s, "451 4.3.0 Error: queue file write error");
	} else {
		smtp_reply(s, "250 2.0.0 Ok: queued as %s", id);
	}
out:
	msg_prepared_free(&p);
	free(data);
	smtp_transaction_reset(s);
	return 1;
}

/* "VERB" or "VERB arg": 1 when line is verb, *arg is what follows it. */
static int
smtp_verb(char *line, const char *verb, char **arg)
{
	size_t n = strlen(verb);

	if (strncasecmp(line, verb, n) != 0 ||
	    (line[n] != '\0' && line[n] != ' '))
		return 0;
	*arg = line + n;
	while (**arg == ' ')
		(*arg)++;
	return 1;
}

/* One command line; 1 to go on, 0 at the end, -errno on failure. */
static int
smtp_command(struct smtp_session *s, struct smtp_line *l)
{
	char *line = l->p, *arg;

	if (strlen(line) != l->len) {
		smtp_error(s, "500 5.5.2 Error: NUL in command");
		return 1;
	}
	if (smtp_verb(line, "EHLO", &arg)) {
		if (*arg == '\0') {
			smtp_error(s, "501 5.5.4 Syntax: EHLO hostname");
			return 1;
		}
		smtp_transaction_reset(s);
		smtp_reply(s, "250-%s", s->host);
		smtp_reply(s, "250-SIZE %llu",
			   (unsigned long long)s->cf->max_size);
		smtp_reply(s, "250-8BITMIME");
		smtp_reply(s, "250 ENHANCEDSTATUSCODES");
	} else if (smtp_verb(line, "HELO", &arg)) {
		if (*arg == '\0') {
			smtp_error(s, "501 5.5.4 Syntax: HELO hostname");
			return 1;
		}
		smtp_transaction_reset(s);
		smtp_reply(s, "250 %s", s->host);
	} else if (smtp_verb(line, "MAIL", &arg)) {
		smtp_cmd_mail(s, arg);
	} else if (smtp_verb(line, "RCPT", &arg)) {
		smtp_cmd_rcpt(s, arg);
	} else if (smtp_verb(line, "DATA", &arg)) {
		if (*arg != '\0') {
			smtp_error(s, "501 5.5.4 Syntax: DATA");
			return 1;
		}
		return smtp_cmd_data(s, l);
	} else if (smtp_verb(line, "RSET", &arg)) {
		smtp_transaction_reset(s);
		smtp_reply(s, "250 2.0.0 Ok");
	} else if (smtp_verb(line, "NOOP", &arg)) {
		smtp_reply(s, "250 2.0.0 Ok");
	} else if (smtp_verb(line, "VRFY", &arg)) {
		smtp_reply(s, "252 2.0.0 Send mail, and delivery will be "
			      "attempted");
	} else if (smtp_verb(line, "HELP", &arg)) {
		smtp_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA "
			      "RSET NOOP VRFY HELP QUIT");
	} else if (smtp_verb(line, "QUIT", &arg)) {
		smtp_reply(s, "221 2.0.0 Bye");
		return 0;
	} else {
		smtp_error(s, "500 5.5.2 Error: command not recognized");
	}
	return 1;
}

int
smtp_stdin_run(const struct conf *cf, const char *full_name)
{
	struct smtp_session *s = calloc(1, sizeof(*s));
	struct smtp_line l = {0};
	int over, rc = 0;

	if (s == NULL) {
		ctl_error("out of memory");
		return EX_OSERR;
	}
	s->cf = cf;
	s->full_name = full_name;
	submit_identity(s->user, sizeof(s->user), s->host, sizeof(s->host));
	ctl_setgid_session(1);
	smtp_reply(s, "220 %s ESMTP spoold", s->host);
	while (!s->done && !s->out_failed) {
		rc = smtp_line_read(s, &l, SMTP_LINE_MAX - 2, &over);
		if (rc <= 0)
			break;
		if (over)
			smtp_error(s, "500 5.5.2 Error: line too long");
		else if ((rc = smtp_command(s, &l)) <= 0)
			break;
	}
	if (rc < 0 && !s->out_failed) {
		ctl_error("-bs: %s", strerror(-rc));
		smtp_reply(s, "421 4.3.0 %s Error: %s", s->host, strerror(-rc));
	}
	rc = s->out_failed ? EX_IOERR : rc < 0 ? EX_OSERR : 0;
	if (s->out_failed)
		ctl_error("-bs: writing the replies: %s", strerror(errno));
	ctl_setgid_session(0);
	smtp_transaction_reset(s);
	free(l.p);
	free(s);
	return rc;
}

/*
 * compose.c - builds a complete MIME message from command-line pieces
 * (`spoolctl submit --to --subject --from`). Arguments come from scripts
 * and may carry anything, so a line break in a header value is refused as
 * an injection attempt, never folded or stripped; non-ASCII text is
 * encoded (RFC 2047 in the subject, 8bit or quoted-printable in the body)
 * and invalid UTF-8 is refused. Never prints; refusals go to err.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "msg_int.h"

static int
has_line_break(const char *s)
{
	return s != NULL && strpbrk(s, "\r\n") != NULL;
}

static int
subject_append(struct msg_buf *b, const char *subject, char *err, size_t errlen)
{
	size_t len = strlen(subject), i;
	int plain = strstr(subject, "=?") == NULL;

	if (!msg__utf8_valid(subject, len))
		return msg__err(err, errlen, EX_DATAERR,
				"subject is not valid UTF-8");
	for (i = 0; i < len && plain; i++) {
		unsigned char c = (unsigned char)subject[i];

		plain = (c >= 0x20 && c < 0x7f) || c == '\t';
	}
	if (len == 0)
		return msg__buf_str(b, "Subject:\r\n") < 0
			   ? msg__oom(err, errlen)
			   : 0;
	if (plain) {
		struct msg_buf line = {0};
		size_t mark = b->len;
		int rc;

		if (msg__buf_str(&line, "Subject: ") < 0 ||
		    msg__buf_add(&line, subject, len) < 0) {
			msg__buf_free(&line);
			return msg__oom(err, errlen);
		}
		rc = msg__fold_append(b, line.p, line.len, MSG_LINE_SOFT);
		msg__buf_free(&line);
		if (rc == -ENOMEM)
			return msg__oom(err, errlen);
		if (rc == 0)
			return 0;
		/* A word too long to fold: encoded words can be split. */
		b->len = mark;
	}
	if (msg__buf_str(b, "Subject: ") < 0 ||
	    msg__rfc2047_append(b, subject, len, 9) < 0 ||
	    msg__buf_add(b, "\r\n", 2) < 0)
		return msg__oom(err, errlen);
	return 0;
}

struct from_ctx {
	size_t n;
};

static int
from_count_cb(void *arg, const char *addr, size_t end, char *err, size_t errlen)
{
	struct from_ctx *f = arg;

	(void)addr;
	(void)end;
	(void)err;
	(void)errlen;
	f->n++;
	return 0;
}

/* *out: the display name of "Name <addr>", unquoted and malloc'd, or NULL
 * if there is none. 0 or -ENOMEM. */
static int
from_name(const char *from, char **out)
{
	const char *lt = strrchr(from, '<');
	const char *s = from, *e;
	char *name, *o;

	*out = NULL;
	if (lt == NULL)
		return 0;
	e = lt;
	while (s < e && (*s == ' ' || *s == '\t'))
		s++;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		e--;
	if (e - s >= 2 && *s == '"' && e[-1] == '"') {
		s++;
		e--;
	}
	if (s == e)
		return 0;
	name = malloc((size_t)(e - s) + 1);
	if (name == NULL)
		return -ENOMEM;
	for (o = name; s < e; s++) {
		if (*s == '\\' && s + 1 < e)
			s++;
		*o++ = *s;
	}
	*o = '\0';
	*out = name;
	return 0;
}

/* Sets out->sender and appends the From field. */
static int
from_append(struct msg_buf *b, const struct msg_compose_opts *o,
	    const struct msg_ident *id, struct msg_prepared *out, char *err,
	    size_t errlen)
{
	struct msg_strlist one = {0};
	struct from_ctx f = {0};
	char why[256], *name;
	int rc;

	if (o->from == NULL) {
		if (asprintf(&out->sender, "%s@%s", id->user, id->host) < 0)
			return msg__oom(err, errlen);
		if (msg__buf_printf(b, "From: %s\r\n", out->sender) < 0)
			return msg__oom(err, errlen);
		return 0;
	}
	rc = msg__addr_list_walk(o->from, strlen(o->from), from_count_cb, &f,
				 why, sizeof(why));
	if (rc == 0 && f.n != 1)
		return msg__err(err, errlen, EX_DATAERR,
				"--from: exactly one address expected, got %zu",
				f.n);
	if (rc == 0)
		rc = msg__rcpt_arg(&one, o->from, id->host, NULL, "--from", err,
				   errlen);
	else
		msg__err(err, errlen, rc, "--from: %s", why);
	if (rc != 0) {
		msg_strlist_free(&one);
		return rc;
	}
	out->sender = one.v[0];
	one.v[0] = NULL;
	one.n = 0;
	msg_strlist_free(&one);

	/* The header is rebuilt from its parts so that a non-ASCII name
	 * is encoded and an unqualified address gets its domain. */
	if (from_name(o->from, &name) < 0)
		return msg__oom(err, errlen);
	if (msg__buf_str(b, "From: ") < 0)
		goto oom;
	if (name != NULL) {
		rc = msg__phrase_append(b, name, 6, err, errlen);
		if (rc != 0) {
			free(name);
			return rc;
		}
		if (msg__buf_printf(b, " <%s>\r\n", out->sender) < 0)
			goto oom;
	} else if (msg__buf_printf(b, "%s\r\n", out->sender) < 0) {
		goto oom;
	}
	free(name);
	return 0;
oom:
	free(name);
	return msg__oom(err, errlen);
}

static int
to_append(struct msg_buf *b, const struct msg_strlist *rcpt, char *err,
	  size_t errlen)
{
	struct msg_buf line = {0};
	int rc = 0;

	if (msg__buf_str(&line, "To: ") < 0)
		goto oom;
	for (size_t i = 0; i < rcpt->n; i++) {
		if ((i > 0 && msg__buf_str(&line, ", ") < 0) ||
		    msg__buf_str(&line, rcpt->v[i]) < 0)
			goto oom;
	}
	rc = msg__fold_append(b, line.p, line.len, MSG_LINE_SOFT);
	msg__buf_free(&line);
	/* Addresses are at most 254 octets, so only memory can fail. */
	return rc < 0 ? msg__oom(err, errlen) : 0;
oom:
	msg__buf_free(&line);
	return msg__oom(err, errlen);
}

int
msg_compose(const struct msg_compose_opts *o, struct msg_prepared *out,
	    char *err, size_t errlen)
{
	struct msg_buf m = {0}, body = {0};
	struct msg_ident id;
	const char *text = o->body ? o->body : "";
	size_t tlen = o->body ? o->body_len : 0, i;
	const char *cte;
	int rc, ascii = 1;

	memset(out, 0, sizeof(*out));
	if (has_line_break(o->subject))
		return msg__err(err, errlen, EX_DATAERR,
				"header injection refused: line break in the "
				"subject");
	if (has_line_break(o->from))
		return msg__err(err, errlen, EX_DATAERR,
				"header injection refused: line break in the "
				"from address");
	for (i = 0; i < o->nto; i++) {
		if (has_line_break(o->to[i]))
			return msg__err(err, errlen, EX_DATAERR,
					"header injection refused: line break "
					"in a to address");
	}
	if (o->nto == 0)
		return msg__err(err, errlen, EX_USAGE, "no recipients");
	if (tlen > 0 && memchr(text, '\0', tlen) != NULL)
		return msg__err(err, errlen, EX_DATAERR,
				"message contains a NUL byte");
	if (!msg__utf8_valid(text, tlen))
		return msg__err(err, errlen, EX_DATAERR,
				"body is not valid UTF-8");
	rc = msg__ident(&id, o->user, o->hostname, err, errlen);
	if (rc != 0)
		return rc;
	for (i = 0; i < o->nto; i++) {
		rc = msg__rcpt_arg(&out->rcpt, o->to[i], id.host, o->local,
				   "--to", err, errlen);
		if (rc != 0)
			goto out;
	}
	if (msg__rcpt_dedupe(&out->rcpt) < 0)
		goto oom;

	if ((rc = msg__date_append(&m, err, errlen)) != 0 ||
	    (rc = msg__msgid_append(&m, id.host, err, errlen)) != 0 ||
	    (rc = from_append(&m, o, &id, out, err, errlen)) != 0 ||
	    (rc = to_append(&m, &out->rcpt, err, errlen)) != 0 ||
	    (rc = subject_append(&m, o->subject ? o->subject : "", err,
				 errlen)) != 0)
		goto out;

	if (msg__crlf_append(&body, text, tlen) < 0)
		goto oom;
	if (body.len > 0 &&
	    (body.len < 2 || memcmp(body.p + body.len - 2, "\r\n", 2) != 0) &&
	    msg__buf_add(&body, "\r\n", 2) < 0)
		goto oom;
	for (i = 0; i < body.len && ascii; i++)
		ascii = (unsigned char)body.p[i] < 0x80;
	if (msg__line_max(body.p, body.len) > MSG_LINE_MAX)
		cte = "quoted-printable";
	else
		cte = ascii ? "7bit" : "8bit";
	if (msg__buf_printf(&m,
			    "MIME-Version: 1.0\r\n"
			    "Content-Type: text/plain; charset=utf-8\r\n"
			    "Content-Transfer-Encoding: %s\r\n"
			    "\r\n",
			    cte) < 0)
		goto oom;
	if (cte[0] == 'q' ? msg__qp_encode(&m, body.p, body.len) < 0
			  : msg__buf_add(&m, body.p, body.len) < 0)
		goto oom;
	if (o->max_size > 0 && m.len > o->max_size) {
		rc = msg__err(err, errlen, EX_DATAERR,
			      "message too large (%zu bytes, max %zu)", m.len,
			      o->max_size);
		goto out;
	}
	out->data = m.p;
	out->len = m.len;
	m.p = NULL;
	rc = 0;
	goto out;
oom:
	rc = msg__oom(err, errlen);
out:
	if (rc != 0)
		msg_prepared_free(out);
	msg__buf_free(&m);
	msg__buf_free(&body);
	return rc;
}

/*
 * prepare.c - turns a message handed to `submit` or `sendmail` into the
 * canonical form the spool stores, and works out its envelope.
 *
 * The canonical form is what every transport can send unchanged: CRLF
 * line ends, exactly one Date, From and Message-ID (libESMTP would add or
 * drop copies itself otherwise, and the bytes sent would differ from the
 * bytes queued), no Bcc or Return-Path, no line over 998 octets. Input
 * that is merely ugly is repaired; input that cannot be sent as intended
 * (NUL bytes, bad addresses, an unfoldable header, a long line inside a
 * part that cannot be re-encoded) is refused with EX_DATAERR and nothing
 * is returned. Never prints; every refusal is one line in err.
 */
#include <errno.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "msg_int.h"
#include "spool/util.h"

/* Recursion bound for nested multiparts; real mail stays far below. */
#define MIME_DEPTH_MAX 20

/* ---- identity, Date, Message-ID ------------------------------------ */

int
msg__ident(struct msg_ident *id, const char *user, const char *host, char *err,
	   size_t errlen)
{
	char addr[sizeof(id->user) + sizeof(id->host) + 1];
	char why[256];

	if (user == NULL) {
		struct passwd pw, *res = NULL;
		char buf[4096];
		int e = getpwuid_r(getuid(), &pw, buf, sizeof(buf), &res);

		if (res == NULL && e != 0)
			return msg__err(err, errlen, EX_OSERR,
					"no user name for uid %u: %s",
					(unsigned)getuid(), strerror(e));
		/* a uid with no passwd entry is a name of its own */
		if (res == NULL)
			snprintf(id->user, sizeof(id->user), "uid%u",
				 (unsigned)getuid());
		else if (str_copy(id->user, pw.pw_name, sizeof(id->user)) >=
			 sizeof(id->user))
			return msg__err(err, errlen, EX_DATAERR,
					"user name too long");
	} else if (str_copy(id->user, user, sizeof(id->user)) >=
		   sizeof(id->user)) {
		return msg__err(err, errlen, EX_DATAERR, "user name too long");
	}
	if (host == NULL) {
		if (gethostname(id->host, sizeof(id->host)) < 0)
			return msg__err(err, errlen, EX_OSERR,
					"gethostname: %s", strerror(errno));
		id->host[sizeof(id->host) - 1] = '\0';
	} else if (str_copy(id->host, host, sizeof(id->host)) >=
		   sizeof(id->host)) {
		return msg__err(err, errlen, EX_DATAERR, "host name too long");
	}
	snprintf(addr, sizeof(addr), "%s@%s", id->user, id->host);
	if (msg_addr_check(addr, 0, why, sizeof(why)) != 0)
		return msg__err(err, errlen, EX_DATAERR,
				"cannot make a sender address from user and "
				"host name: %s",
				why);
	return 0;
}

int
msg__date_append(struct msg_buf *b, char *err, size_t errlen)
{
	char date[RFC5322_DATE_LEN];

	format_rfc5322_date(time(NULL), date);
	if (msg__buf_printf(b, "Date: %s\r\n", date) < 0)
		return msg__oom(err, errlen);
	return 0;
}

int
msg__msgid_append(struct msg_buf *b, const char *host, char *err, size_t errlen)
{
	uint64_t rnd;
	ssize_t n;

	/* Time keeps ids apart across reboots, 64 random bits across
	 * processes and hosts with the same name. */
	do
		n = getrandom(&rnd, sizeof(rnd), 0);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(rnd))
		return msg__err(err, errlen, EX_OSERR, "getrandom: %s",
				n < 0 ? strerror(errno) : "short read");
	if (msg__buf_printf(b, "Message-ID: <%llx.%016llx@%s>\r\n",
			    (unsigned long long)time_now_us(),
			    (unsigned long long)rnd, host) < 0)
		return msg__oom(err, errlen);
	return 0;
}

/* ---- header fields -------------------------------------------------- */

static int
name_is(const struct msg_header *h, const char *name)
{
	return h->name_len == strlen(name) &&
	       strncasecmp(h->name, name, h->name_len) == 0;
}

static int
name_same(const struct msg_header *a, const struct msg_header *b)
{
	return a->name_len == b->name_len &&
	       strncasecmp(a->name, b->name, a->name_len) == 0;
}

/* The index of h's name in names, or -1. */
static int
name_index(const struct msg_header *h, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (name_is(h, names[i]))
			return (int)i;
	}
	return -1;
}

static int
name_in(const struct msg_header *h, const char *const *names, size_t n)
{
	return name_index(h, names, n) >= 0;
}

/* Never stored: Bcc must not reach any recipient, the relay writes
 * Return-Path, and libESMTP strips the other two on the way out. */
static const char *const fields_dropped[] = {
    "Bcc", "Return-Path", "Original-Recipient", "Resent-Reply-To"};
/* At most one of each (RFC 5322 3.6); libESMTP would send the first. */
static const char *const fields_single[] = {"Date", "From", "Sender",
					    "Reply-To", "Message-ID"};
/* Later copies are merged into the first rather than lost. */
static const char *const fields_merged[] = {"To", "Cc"};
/* Address fields whose unqualified addresses get @host. */
static const char *const fields_addr[] = {"From", "Sender", "Reply-To", "To",
					  "Cc"};

/*
 * Appends one header field given in any line ends, as CRLF lines, folding
 * any line over MSG_LINE_MAX. EX_DATAERR when a line cannot be folded.
 */
static int
field_emit(struct msg_buf *b, const char *raw, size_t len,
	   const struct msg_header *h, char *err, size_t errlen)
{
	struct msg_buf t = {0};
	size_t i = 0;
	int rc = 0;

	while (len > 0 && (raw[len - 1] == '\r' || raw[len - 1] == '\n'))
		len--;
	if (msg__crlf_append(&t, raw, len) < 0)
		return msg__oom(err, errlen);
	while (i <= t.len) {
		const char *nl = memmem(t.p + i, t.len - i, "\r\n", 2);
		size_t n = nl ? (size_t)(nl - (t.p + i)) : t.len - i;
		int frc;

		frc = n > MSG_LINE_MAX
			  ? msg__fold_append(b, t.p + i, n, MSG_LINE_SOFT)
			  : (msg__buf_add(b, t.p + i, n) < 0 ||
				     msg__buf_add(b, "\r\n", 2) < 0
				 ? -ENOMEM
				 : 0);
		if (frc == -E2BIG) {
			char name[64];

			msg__printable(name, sizeof(name), h->name,
				       h->name_len);
			rc = msg__err(err, errlen, EX_DATAERR,
				      "header line too long (%zu octets, max "
				      "%d) with no place to fold it: %s",
				      n, MSG_LINE_MAX, name);
			break;
		}
		if (frc < 0) {
			rc = msg__oom(err, errlen);
			break;
		}
		if (nl == NULL)
			break;
		i += n + 2;
	}
	msg__buf_free(&t);
	return rc;
}

/* Where "@host" goes into a header value. */
struct qualify {
	size_t *off;
	size_t n;
	size_t cap;
};

static int
qualify_cb(void *arg, const char *addr, size_t end, char *err, size_t errlen)
{
	struct qualify *q = arg;

	if (strchr(addr, '@') != NULL)
		return 0;
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 4;
		size_t *no = realloc(q->off, cap * sizeof(*no));

		if (no == NULL)
			return msg__oom(err, errlen);
		q->off = no;
		q->cap = cap;
	}
	q->off[q->n++] = end;
	return 0;
}

/*
 * Appends the field h with "@host" after every address that has no
 * domain, as sendmail does for local submissions ("From: root (Cron
 * Daemon)"): receivers refuse such headers otherwise. Fields that do not
 * parse as address lists go out as they came, since refusing them would
 * refuse mail that every relay accepts.
 */
static int
field_emit_qualified(struct msg_buf *b, const char *raw, size_t len,
		     const struct msg_header *h, const char *host, char *err,
		     size_t errlen)
{
	struct qualify q = {0};
	struct msg_buf t = {0};
	size_t voff = (size_t)(h->value - h->start), from = 0;
	char ignored[8];
	int rc;

	if (msg__addr_list_walk(h->value, h->value_len, qualify_cb, &q, ignored,
				sizeof(ignored)) != 0 ||
	    q.n == 0) {
		free(q.off);
		return field_emit(b, raw, len, h, err, errlen);
	}
	for (size_t i = 0; i < q.n; i++) {
		size_t at = voff + q.off[i];

		if (msg__buf_add(&t, raw + from, at - from) < 0 ||
		    msg__buf_printf(&t, "@%s", host) < 0)
			goto oom;
		from = at;
	}
	if (msg__buf_add(&t, raw + from, len - from) < 0)
		goto oom;
	rc = field_emit(b, t.p, t.len, h, err, errlen);
	free(q.off);
	msg__buf_free(&t);
	return rc;
oom:
	free(q.off);
	msg__buf_free(&t);
	return msg__oom(err, errlen);
}

/* ---- MIME re-encoding of long lines ---------------------------------- */

enum mime_kind { MIME_TEXT, MIME_MULTIPART, MIME_MESSAGE };

/* Reads an RFC 2045 token or quoted-string at *p (lower-cased if fold),
 * skipping comments and white space before it. */
static size_t
mime_token(const char **p, const char *end, char *out, size_t outlen, int fold)
{
	const char *s = *p;
	size_t n = 0;

	for (;;) {
		while (s < end &&
		       (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'))
			s++;
		if (s < end && *s == '(') {
			int depth = 0;

			do {
				if (*s == '\\' && s + 1 < end)
					s++;
				else if (*s == '(')
					depth++;
				else if (*s == ')')
					depth--;
				s++;
			} while (depth > 0 && s < end);
			continue;
		}
		break;
	}
	if (s < end && *s == '"') {
		for (s++; s < end && *s != '"'; s++) {
			if (*s == '\\' && s + 1 < end)
				s++;
			if (*s != '\r' && *s != '\n' && n + 1 < outlen)
				out[n++] = *s;
		}
		if (s < end)
			s++;
	} else {
		while (s<end && * s> ' ' && *s < 127 &&
		       strchr("()<>@,;:\\\"/[]?=", *s) == NULL) {
			if (n + 1 < outlen)
				out[n++] = fold && *s >= 'A' && *s <= 'Z'
					       ? (char)(*s + 32)
					       : *s;
			s++;
		}
	}
	out[n] = '\0';
	*p = s;
	return n;
}

/* The kind of the entity and, for a multipart, its boundary. */
static enum mime_kind
mime_type(const struct msg_header *ct, char *boundary, size_t blen)
{
	char type[64], name[64], val[256];
	const char *p, *end;
	enum mime_kind kind = MIME_TEXT;

	boundary[0] = '\0';
	if (ct == NULL)
		return MIME_TEXT;
	p = ct->value;
	end = ct->value + ct->value_len;
	mime_token(&p, end, type, sizeof(type), 1);
	if (strcmp(type, "multipart") == 0)
		kind = MIME_MULTIPART;
	else if (strcmp(type, "message") == 0)
		kind = MIME_MESSAGE;
	while (p < end) {
		/* Skip to the next parameter. */
		while (p < end && *p != ';') {
			if (*p == '"') {
				mime_token(&p, end, val, sizeof(val), 0);
				continue;
			}
			p++;
		}
		if (p == end)
			break;
		p++;
		mime_token(&p, end, name, sizeof(name), 1);
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (p == end || *p != '=')
			continue;
		p++;
		mime_token(&p, end, val, sizeof(val), 0);
		if (strcmp(name, "boundary") == 0)
			str_copy(boundary, val, blen);
	}
	return kind;
}

/* 1 if line (no CRLF) is "--boundary" (close: "--boundary--"), with
 * only white space after it (RFC 2046 5.1.1). */
static int
mime_delim(const char *line, size_t n, const char *boundary, int *close)
{
	size_t bl = strlen(boundary), i;

	if (n < bl + 2 || line[0] != '-' || line[1] != '-' ||
	    memcmp(line + 2, boundary, bl) != 0)
		return 0;
	i = bl + 2;
	*close = n >= i + 2 && line[i] == '-' && line[i + 1] == '-';
	if (*close)
		i += 2;
	for (; i < n; i++) {
		if (line[i] != ' ' && line[i] != '\t')
			return 0;
	}
	return 1;
}

static int entity_fix(const char *ent, size_t len, int top, int depth,
		      struct msg_buf *out, char *err, size_t errlen);

/* A multipart body: parts are fixed one by one, delimiters, preamble and
 * epilogue copied. The CRLF before a delimiter belongs to the delimiter
 * (RFC 2046), so a part ends before it. */
static int
multipart_fix(const char *body, size_t len, const char *boundary, int depth,
	      struct msg_buf *out, char *err, size_t errlen)
{
	size_t pos = 0, part = 0;
	int in_part = 0, rc;

	while (pos < len) {
		const char *nl = memmem(body + pos, len - pos, "\r\n", 2);
		size_t eol = nl ? (size_t)(nl - body) : len;
		size_t next = nl ? eol + 2 : len;
		int close;

		if (!mime_delim(body + pos, eol - pos, boundary, &close)) {
			pos = next;
			continue;
		}
		if (!in_part) {
			if (msg__line_max(body, pos) > MSG_LINE_MAX)
				return msg__err(err, errlen, EX_DATAERR,
						"line over %d octets in a "
						"multipart preamble",
						MSG_LINE_MAX);
			if (msg__buf_add(out, body, pos) < 0)
				return msg__oom(err, errlen);
		} else {
			size_t pend = pos >= part + 2 ? pos - 2 : part;

			rc = entity_fix(body + part, pend - part, 0, depth + 1,
					out, err, errlen);
			if (rc != 0)
				return rc;
			if (msg__buf_add(out, body + pend, pos - pend) < 0)
				return msg__oom(err, errlen);
		}
		if (msg__buf_add(out, body + pos, next - pos) < 0)
			return msg__oom(err, errlen);
		if (close) {
			if (msg__line_max(body + next, len - next) >
			    MSG_LINE_MAX)
				return msg__err(err, errlen, EX_DATAERR,
						"line over %d octets in a "
						"multipart epilogue",
						MSG_LINE_MAX);
			if (msg__buf_add(out, body + next, len - next) < 0)
				return msg__oom(err, errlen);
			return 0;
		}
		in_part = 1;
		part = next;
		pos = next;
	}
	if (!in_part)
		return msg__err(err, errlen, EX_DATAERR,
				"multipart body without its boundary line");
	/* No closing delimiter: the last part runs to the end. */
	return entity_fix(body + part, len - part, 0, depth + 1, out, err,
			  errlen);
}

/*
 * Appends the MIME entity ent (CRLF; headers, blank line, body) to out
 * with every line within MSG_LINE_MAX: long header lines folded, a leaf
 * body with long lines made quoted-printable (or re-wrapped if it already
 * is quoted-printable or base64), multiparts fixed part by part. top adds
 * MIME-Version when the result needs one.
 */
static int
entity_fix(const char *ent, size_t len, int top, int depth, struct msg_buf *out,
	   char *err, size_t errlen)
{
	struct msg_headers hs;
	const struct msg_header *cteh;
	const char *body;
	size_t blen, i;
	char boundary[256], cte[64] = "";
	enum mime_kind kind;
	int rc, body_long, identity, encode = 0, have_cte = 0;

	if (msg__line_max(ent, len) <= MSG_LINE_MAX)
		return msg__buf_add(out, ent, len) < 0 ? msg__oom(err, errlen)
						       : 0;
	if (depth > MIME_DEPTH_MAX)
		return msg__err(err, errlen, EX_DATAERR,
				"MIME parts nested too deep to re-encode a "
				"line over %d octets",
				MSG_LINE_MAX);
	rc = msg_headers_parse(ent, len, &hs, err, errlen);
	if (rc != 0)
		return rc;
	body = ent + hs.body_off;
	blen = len - hs.body_off;
	body_long = msg__line_max(body, blen) > MSG_LINE_MAX;
	kind = mime_type(msg_headers_find(&hs, "Content-Type"), boundary,
			 sizeof(boundary));
	cteh = msg_headers_find(&hs, "Content-Transfer-Encoding");
	if (cteh != NULL) {
		const char *p = cteh->value;

		mime_token(&p, cteh->value + cteh->value_len, cte, sizeof(cte),
			   1);
	}
	/* The identity encodings are the only ones a body may be
	 * re-encoded from, and the only ones a composite may carry. */
	identity = cte[0] == '\0' || strcmp(cte, "7bit") == 0 ||
		   strcmp(cte, "8bit") == 0 || strcmp(cte, "binary") == 0;

	if (body_long) {
		if (kind == MIME_MESSAGE) {
			rc = msg__err(err, errlen, EX_DATAERR,
				      "line over %d octets inside a message/* "
				      "part cannot be re-encoded",
				      MSG_LINE_MAX);
			goto out;
		}
		if (kind == MIME_MULTIPART && !identity) {
			rc =
			    msg__err(err, errlen, EX_DATAERR,
				     "multipart with Content-Transfer-Encoding "
				     "%s cannot be re-encoded",
				     cte);
			goto out;
		}
		if (kind == MIME_MULTIPART && boundary[0] == '\0') {
			rc = msg__err(err, errlen, EX_DATAERR,
				      "multipart without a boundary parameter "
				      "cannot be re-encoded");
			goto out;
		}
		if (kind == MIME_TEXT && !identity &&
		    strcmp(cte, "quoted-printable") != 0 &&
		    strcmp(cte, "base64") != 0) {
			rc = msg__err(err, errlen, EX_DATAERR,
				      "line over %d octets in a body with "
				      "Content-Transfer-Encoding %s",
				      MSG_LINE_MAX, cte);
			goto out;
		}
		encode = kind == MIME_TEXT && identity;
	}
	for (i = 0; i < hs.n; i++) {
		const struct msg_header *h = &hs.h[i];

		if (encode && name_is(h, "Content-Transfer-Encoding")) {
			if (!have_cte &&
			    msg__buf_str(out, "Content-Transfer-Encoding: "
					      "quoted-printable\r\n") < 0) {
				rc = msg__oom(err, errlen);
				goto out;
			}
			have_cte = 1;
			continue;
		}
		rc = field_emit(out, h->start, h->len, h, err, errlen);
		if (rc != 0)
			goto out;
	}
	if (top && body_long && kind != MIME_MESSAGE &&
	    msg_headers_find(&hs, "MIME-Version") == NULL &&
	    msg__buf_str(out, "MIME-Version: 1.0\r\n") < 0) {
		rc = msg__oom(err, errlen);
		goto out;
	}
	if (encode && !have_cte &&
	    msg__buf_str(out, "Content-Transfer-Encoding: "
			      "quoted-printable\r\n") < 0) {
		rc = msg__oom(err, errlen);
		goto out;
	}
	if (msg__buf_add(out, "\r\n", 2) < 0) {
		rc = msg__oom(err, errlen);
		goto out;
	}
	if (!body_long)
		rc = msg__buf_add(out, body, blen);
	else if (kind == MIME_MULTIPART)
		rc = multipart_fix(body, blen, boundary, depth, out, err,
				   errlen);
	else if (encode)
		rc = msg__qp_encode(out, body, blen);
	else if (strcmp(cte, "base64") == 0)
		rc = msg__b64_wrap(out, body, blen);
	else
		rc = msg__qp_wrap(out, body, blen);
	if (rc < 0)
		rc = msg__oom(err, errlen);
out:
	msg_headers_free(&hs);
	return rc;
}

/* ---- envelope -------------------------------------------------------- */

/* addr with "@host" when it has no domain; NULL when out of memory. */
static char *
addr_qualify(const char *addr, const char *host)
{
	char *s;

	if (strchr(addr, '@') != NULL)
		return strdup(addr);
	if (asprintf(&s, "%s@%s", addr, host) < 0)
		return NULL;
	return s;
}

struct rcpt_ctx {
	struct msg_strlist *list;
	const char *host;
	const struct msg_local *local; /* NULL: bare names get @host */
};

/* A local recipient becomes where its mail goes (aliases, admin); each
 * result is checked like any recipient. */
static int
rcpt_add_local(struct rcpt_ctx *rc, const char *addr, char *err, size_t errlen)
{
	struct msg_strlist res = {0};
	int r = msg_local_resolve(rc->local, addr, &res, err, errlen);

	for (size_t i = 0; i < res.n && r == 0; i++) {
		r = msg_addr_check(res.v[i], 0, err, errlen);
		if (r == 0 && msg_strlist_add(rc->list, res.v[i]) < 0)
			r = msg__oom(err, errlen);
	}
	msg_strlist_free(&res);
	return r;
}

static int
rcpt_cb(void *arg, const char *addr, size_t end, char *err, size_t errlen)
{
	struct rcpt_ctx *rc = arg;
	char *q;
	int r;

	(void)end;
	if (rc->local != NULL)
		return rcpt_add_local(rc, addr, err, errlen);
	q = addr_qualify(addr, rc->host);
	if (q == NULL)
		return msg__oom(err, errlen);
	r = msg_addr_check(q, 0, err, errlen);
	if (r == 0 && msg_strlist_add(rc->list, q) < 0)
		r = msg__oom(err, errlen);
	free(q);
	return r;
}

int
msg__rcpt_arg(struct msg_strlist *l, const char *arg, const char *host,
	      const struct msg_local *local, const char *what, char *err,
	      size_t errlen)
{
	struct rcpt_ctx ctx = {l, host, local};
	char why[256];
	int rc;

	/* The list parser reads line breaks as folding: refuse them first. */
	for (const char *p = arg; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			msg_addr_check(arg, 0, why, sizeof(why));
			return msg__err(err, errlen, EX_DATAERR, "%s: %s", what,
					why);
		}
	}
	rc = msg__addr_list_walk(arg, strlen(arg), rcpt_cb, &ctx, why,
				 sizeof(why));
	if (rc != 0)
		return msg__err(err, errlen, rc, "%s: %s", what, why);
	return 0;
}

int
msg_rcpt_parse(struct msg_strlist *out, const char *arg, const char *host,
	       char *err, size_t errlen)
{
	/* checked only: local names are resolved when the message is
	 * prepared */
	return msg__rcpt_arg(out, arg, host, NULL, "recipient", err, errlen);
}

struct first_ctx {
	char *addr;
};

static int
first_cb(void *arg, const char *addr, size_t end, char *err, size_t errlen)
{
	struct first_ctx *f = arg;

	(void)end;
	if (f->addr == NULL && (f->addr = strdup(addr)) == NULL)
		return msg__oom(err, errlen);
	return 0;
}

/* The envelope sender: -f, else the From address, else user@host. */
static int
sender_pick(const struct msg_submit_opts *o, const struct msg_headers *hs,
	    const struct msg_ident *id, char **out, char *err, size_t errlen)
{
	const struct msg_header *from = msg_headers_find(hs, "From");
	struct first_ctx f = {NULL};
	char why[256];
	char *q;
	int rc;

	if (o->sender != NULL) {
		size_t n = strlen(o->sender);
		const char *s = o->sender;

		/* "<>" and "<a@b>" as sendmail -f accepts them. */
		if (n >= 2 && s[0] == '<' && s[n - 1] == '>') {
			s++;
			n -= 2;
		}
		f.addr = strndup(s, n);
		if (f.addr == NULL)
			return msg__oom(err, errlen);
		if (f.addr[0] == '\0') {
			*out = f.addr;
			return 0;
		}
		for (const char *p = f.addr; *p != '\0'; p++) {
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				goto check;
		}
	} else if (from != NULL) {
		rc = msg__addr_list_walk(from->value, from->value_len, first_cb,
					 &f, why, sizeof(why));
		if (rc != 0) {
			free(f.addr);
			return msg__err(err, errlen, rc, "From header: %s",
					why);
		}
	}
	if (f.addr == NULL) {
		if (asprintf(out, "%s@%s", id->user, id->host) < 0)
			return msg__oom(err, errlen);
		return 0;
	}
	q = addr_qualify(f.addr, id->host);
	free(f.addr);
	if (q == NULL)
		return msg__oom(err, errlen);
	f.addr = q;
check:
	rc = msg_addr_check(f.addr, 0, why, sizeof(why));
	if (rc != 0) {
		free(f.addr);
		return msg__err(err, errlen, rc, "%s: %s",
				o->sender ? "sender" : "From header", why);
	}
	*out = f.addr;
	return 0;
}

/* ---- msg_prepare ------------------------------------------------------ */

void
msg_prepared_free(struct msg_prepared *p)
{
	free(p->data);
	free(p->sender);
	msg_strlist_free(&p->rcpt);
	memset(p, 0, sizeof(*p));
}

/* Emits the header fields of the input, dropping, merging and qualifying
 * as the canonical form wants; reports which of Date, From and Message-ID
 * were present. */
static int
headers_emit(const struct msg_headers *hs, const char *host, struct msg_buf *b,
	     int *has, char *err, size_t errlen)
{
	struct msg_buf merged = {0};
	/* Which single and merged fields were seen: one flag each, as
	 * comparing every field with all before it made a hostile header
	 * of 100,000 fields take minutes. */
	unsigned char seen_single[ARRAY_SIZE(fields_single)] = {0};
	unsigned char seen_merged[ARRAY_SIZE(fields_merged)] = {0};
	int rc = 0;

	for (size_t i = 0; i < hs->n && rc == 0; i++) {
		const struct msg_header *h = &hs->h[i];
		const char *raw = h->start;
		size_t len = h->len;
		int si, mi;

		if (name_in(h, fields_dropped, ARRAY_SIZE(fields_dropped)))
			continue;
		si = name_index(h, fields_single, ARRAY_SIZE(fields_single));
		mi = name_index(h, fields_merged, ARRAY_SIZE(fields_merged));
		if ((si >= 0 && seen_single[si]) ||
		    (mi >= 0 && seen_merged[mi]))
			continue;
		if (si >= 0)
			seen_single[si] = 1;
		if (mi >= 0) {
			int any = h->value_len > 0;

			seen_merged[mi] = 1;
			merged.len = 0;
			while (len > 0 &&
			       (raw[len - 1] == '\r' || raw[len - 1] == '\n'))
				len--;
			if (msg__buf_add(&merged, raw, len) < 0)
				goto oom;
			for (size_t j = i + 1; j < hs->n; j++) {
				const struct msg_header *o = &hs->h[j];

				if (!name_same(o, h) || o->value_len == 0)
					continue;
				if (msg__buf_str(&merged,
						 any ? ",\r\n " : " ") < 0 ||
				    msg__buf_add(&merged, o->value,
						 o->value_len) < 0)
					goto oom;
				any = 1;
			}
			raw = merged.p;
			len = merged.len;
		}
		if (name_is(h, "Date"))
			has[0] = 1;
		else if (name_is(h, "From"))
			has[1] = 1;
		else if (name_is(h, "Message-ID"))
			has[2] = 1;
		if (name_in(h, fields_addr, ARRAY_SIZE(fields_addr))) {
			/* The merged text is no longer where h points; its
			 * value starts at the same offset. */
			struct msg_header hv = *h;

			hv.start = raw;
			hv.value = raw + (h->value - h->start);
			hv.value_len = len - (size_t)(h->value - h->start);
			rc = field_emit_qualified(b, raw, len, &hv, host, err,
						  errlen);
		} else {
			rc = field_emit(b, raw, len, h, err, errlen);
		}
	}
	msg__buf_free(&merged);
	return rc;
oom:
	msg__buf_free(&merged);
	return msg__oom(err, errlen);
}

static int
extract_rcpts(const struct msg_headers *hs, struct rcpt_ctx *rc, char *err,
	      size_t errlen)
{
	static const char *const names[] = {"To", "Cc", "Bcc"};
	char why[256];

	for (size_t i = 0; i < hs->n; i++) {
		const struct msg_header *h = &hs->h[i];
		int r;

		if (!name_in(h, names, ARRAY_SIZE(names)))
			continue;
		r = msg__addr_list_walk(h->value, h->value_len, rcpt_cb, rc,
					why, sizeof(why));
		if (r != 0) {
			char name[16];

			msg__printable(name, sizeof(name), h->name,
				       h->name_len);
			return msg__err(err, errlen, r, "%s header: %s", name,
					why);
		}
	}
	return 0;
}

/*
 * 1 if in starts with an mbox "From " separator line. The obsolete field
 * syntax "From : addr" (RFC 5322 4.5.8) starts the same way but is the
 * author's From field: dropped, it would be replaced by user@host.
 */
static int
mbox_separator(const char *in, size_t len)
{
	size_t i = 5;

	if (len < 5 || memcmp(in, "From ", 5) != 0)
		return 0;
	while (i < len && (in[i] == ' ' || in[i] == '\t'))
		i++;
	return i == len || in[i] != ':';
}

int
msg_prepare(const char *in, size_t len, const struct msg_submit_opts *o,
	    const char *const *rcpt_args, size_t nrcpt_args,
	    struct msg_prepared *out, char *err, size_t errlen)
{
	struct msg_headers hs = {0};
	struct msg_buf hb = {0}, body = {0}, msg = {0};
	struct msg_ident id;
	struct rcpt_ctx rctx;
	int has[3] = {0, 0, 0};
	int rc;

	memset(out, 0, sizeof(*out));
	if (len > 0 && memchr(in, '\0', len) != NULL)
		return msg__err(err, errlen, EX_DATAERR,
				"message contains a NUL byte");
	/* Refused even when the message has its own From and the name goes
	 * unused: a line break there is an injection attempt, and whether
	 * it is refused must not depend on the message it came with. */
	if (o->full_name != NULL && strpbrk(o->full_name, "\r\n") != NULL)
		return msg__err(err, errlen, EX_DATAERR,
				"header injection: line break in the full "
				"name");
	/* An mbox "From " separator is not a header field; sendmail drops
	 * it, and kept it would push the real header into the body. */
	if (mbox_separator(in, len)) {
		size_t skip = 0;

		while (skip < len && in[skip] != '\n' && in[skip] != '\r')
			skip++;
		if (skip < len && in[skip] == '\r' && skip + 1 < len &&
		    in[skip + 1] == '\n')
			skip++;
		if (skip < len)
			skip++;
		in += skip;
		len -= skip;
	}
	rc = msg__ident(&id, o->user, o->hostname, err, errlen);
	if (rc != 0)
		return rc;
	rc = msg_headers_parse(in, len, &hs, err, errlen);
	if (rc != 0)
		return rc;

	rc = headers_emit(&hs, id.host, &hb, has, err, errlen);
	if (rc != 0)
		goto out;
	if (!has[0] && (rc = msg__date_append(&hb, err, errlen)) != 0)
		goto out;
	if (!has[1]) {
		if (msg__buf_str(&hb, "From: ") < 0)
			goto oom;
		if (o->full_name != NULL && o->full_name[0] != '\0') {
			rc = msg__phrase_append(&hb, o->full_name, 6, err,
						errlen);
			if (rc != 0)
				goto out;
			if (msg__buf_printf(&hb, " <%s@%s>\r\n", id.user,
					    id.host) < 0)
				goto oom;
		} else if (msg__buf_printf(&hb, "%s@%s\r\n", id.user, id.host) <
			   0) {
			goto oom;
		}
	}
	if (!has[2] && (rc = msg__msgid_append(&hb, id.host, err, errlen)) != 0)
		goto out;

	if (msg__crlf_append(&body, in + hs.body_off, len - hs.body_off) < 0)
		goto oom;
	/* SMTP ends DATA with CRLF "." CRLF: the last line needs its CRLF. */
	if (body.len > 0 &&
	    (body.len < 2 || memcmp(body.p + body.len - 2, "\r\n", 2) != 0) &&
	    msg__buf_add(&body, "\r\n", 2) < 0)
		goto oom;
	if (msg__line_max(body.p, body.len) > MSG_LINE_MAX) {
		struct msg_buf ent = {0};

		if (msg__buf_add(&ent, hb.p, hb.len) < 0 ||
		    msg__buf_add(&ent, "\r\n", 2) < 0 ||
		    msg__buf_add(&ent, body.p, body.len) < 0) {
			msg__buf_free(&ent);
			goto oom;
		}
		rc = entity_fix(ent.p, ent.len, 1, 0, &msg, err, errlen);
		msg__buf_free(&ent);
		if (rc != 0)
			goto out;
	} else if (msg__buf_add(&msg, hb.p, hb.len) < 0 ||
		   msg__buf_add(&msg, "\r\n", 2) < 0 ||
		   msg__buf_add(&msg, body.p, body.len) < 0) {
		goto oom;
	}
	if (o->max_size > 0 && msg.len > o->max_size) {
		rc = msg__err(err, errlen, EX_DATAERR,
			      "message too large (%zu bytes, max %zu)", msg.len,
			      o->max_size);
		goto out;
	}

	rc = sender_pick(o, &hs, &id, &out->sender, err, errlen);
	if (rc != 0)
		goto out;
	rctx.list = &out->rcpt;
	rctx.host = id.host;
	rctx.local = o->local;
	if (o->extract_rcpts) {
		rc = extract_rcpts(&hs, &rctx, err, errlen);
		if (rc != 0)
			goto out;
	}
	for (size_t i = 0; i < nrcpt_args; i++) {
		rc = msg__rcpt_arg(&out->rcpt, rcpt_args[i], id.host, o->local,
				   "recipient", err, errlen);
		if (rc != 0)
			goto out;
	}
	if (msg__rcpt_dedupe(&out->rcpt) < 0)
		goto oom;
	if (out->rcpt.n == 0) {
		rc = msg__err(err, errlen, EX_USAGE, "no recipients");
		goto out;
	}
	if (msg.p == NULL && msg__buf_add(&msg, "", 0) < 0)
		goto oom;
	out->data = msg.p;
	out->len = msg.len;
	msg.p = NULL;
	rc = 0;
	goto out;
oom:
	rc = msg__oom(err, errlen);
out:
	if (rc != 0)
		msg_prepared_free(out);
	msg_headers_free(&hs);
	msg__buf_free(&hb);
	msg__buf_free(&body);
	msg__buf_free(&msg);
	return rc;
}

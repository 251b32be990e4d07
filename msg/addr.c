/*
 * addr.c - envelope address checks (RFC 5321 mailbox, with UTF-8 allowed
 * as SMTPUTF8 does) and extraction of addr-specs from RFC 5322 address
 * lists. Everything that reaches the spool or an SMTP command passes
 * msg_addr_check first, so it refuses rather than repairs: a line break
 * in an address is an attempt to inject SMTP commands, not a typo.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

#include "msg_int.h"

int
msg_strlist_add(struct msg_strlist *l, const char *s)
{
	char *copy;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		char **nv = realloc(l->v, cap * sizeof(*nv));

		if (nv == NULL)
			return -ENOMEM;
		l->v = nv;
		l->cap = cap;
	}
	copy = strdup(s);
	if (copy == NULL)
		return -ENOMEM;
	l->v[l->n++] = copy;
	return 0;
}

void
msg_strlist_free(struct msg_strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

/* A recipient as msg__rcpt_dedupe sorts it: the local part ends at the
 * last '@', so a quoted local part may hold '@' too. */
struct rcpt_key {
	const char *addr;
	size_t local;
	size_t idx; /* position in the list: the first of equals is kept */
};

static int
rcpt_key_same(const struct rcpt_key *a, const struct rcpt_key *b)
{
	int c;

	/* The local part belongs to the receiving host, which may treat
	 * case as significant; the domain never does. */
	if (a->local != b->local)
		return a->local < b->local ? -1 : 1;
	c = memcmp(a->addr, b->addr, a->local);
	if (c != 0)
		return c;
	/* "" (no domain) or "@domain" */
	return strcasecmp(a->addr + a->local, b->addr + b->local);
}

static int
rcpt_key_cmp(const void *pa, const void *pb)
{
	const struct rcpt_key *a = pa, *b = pb;
	int c = rcpt_key_same(a, b);

	if (c != 0)
		return c;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

int
msg__rcpt_dedupe(struct msg_strlist *l)
{
	struct rcpt_key *k;
	unsigned char *keep;
	size_t o = 0;

	if (l->n < 2)
		return 0;
	k = calloc(l->n, sizeof(*k));
	keep = calloc(l->n, 1);
	if (k == NULL || keep == NULL) {
		free(k);
		free(keep);
		return -ENOMEM;
	}
	for (size_t i = 0; i < l->n; i++) {
		const char *at = strrchr(l->v[i], '@');

		k[i].addr = l->v[i];
		k[i].local = at ? (size_t)(at - l->v[i]) : strlen(l->v[i]);
		k[i].idx = i;
	}
	qsort(k, l->n, sizeof(*k), rcpt_key_cmp);
	for (size_t i = 0; i < l->n; i++)
		if (i == 0 || rcpt_key_same(&k[i - 1], &k[i]) != 0)
			keep[k[i].idx] = 1;
	for (size_t i = 0; i < l->n; i++) {
		if (keep[i])
			l->v[o++] = l->v[i];
		else
			free(l->v[i]);
	}
	l->n = o;
	free(k);
	free(keep);
	return 0;
}

static int
is_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c >= 0x80 ||
	       (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static int
addr_fail(char *err, size_t errlen, const char *addr, size_t len,
	  const char *why)
{
	char shown[80];

	msg__printable(shown, sizeof(shown), addr, len);
	return msg__err(err, errlen, EX_DATAERR, "bad address \"%s\": %s",
			shown, why);
}

/* Local part as a quoted string: s[0] is '"'. Returns its length with
 * both quotes, or 0 when the quotes do not close. */
static size_t
quoted_len(const char *s, size_t len)
{
	for (size_t i = 1; i < len; i++) {
		if (s[i] == '\\') {
			i++;
			continue;
		}
		if (s[i] == '"')
			return i + 1;
	}
	return 0;
}

static const char *
local_check(const char *s, size_t len)
{
	if (s[0] == '"') {
		for (size_t i = 1; i + 1 < len; i++) {
			if (s[i] == '\\')
				i++; /* quoted-pair: any printable follows */
			else if (s[i] == '"')
				return "stray quote in local part";
		}
		return NULL;
	}
	if (s[0] == '.' || s[len - 1] == '.')
		return "local part starts or ends with a dot";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (s[i + 1] == '.')
				return "two dots in a row in local part";
		} else if (c == ' ') {
			return "space in address";
		} else if (!is_atext(c)) {
			return "character not allowed in local part";
		}
	}
	return NULL;
}

static const char *
literal_check(const char *s, size_t len)
{
	char buf[64];
	unsigned char bin[16];

	if (len < 3 || s[len - 1] != ']' || len - 2 >= sizeof(buf))
		return "bad address literal";
	memcpy(buf, s + 1, len - 2);
	buf[len - 2] = '\0';
	if (strncasecmp(buf, "IPv6:", 5) == 0) {
		if (inet_pton(AF_INET6, buf + 5, bin) == 1)
			return NULL;
	} else if (inet_pton(AF_INET, buf, bin) == 1) {
		return NULL;
	}
	return "bad address literal";
}

static const char *
domain_check(const char *s, size_t len)
{
	size_t label = 0;

	if (len == 0)
		return "no domain after @";
	if (len > MSG_DOMAIN_MAX)
		return "domain too long";
	if (s[0] == '[')
		return literal_check(s, len);
	for (size_t i = 0; i <= len; i++) {
		unsigned char c = i < len ? (unsigned char)s[i] : '.';

		if (c == '.') {
			if (label == 0)
				return "empty label in domain";
			if (s[i - 1] == '-' || s[i - label] == '-')
				return "domain label starts or ends with '-'";
			if (label > 63)
				return "domain label longer than 63 octets";
			label = 0;
			continue;
		}
		if (c == ' ')
			return "space in address";
		/* Letters, digits, hyphen; UTF-8 for U-labels. */
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c >= 0x80))
			return "character not allowed in domain";
		label++;
	}
	return NULL;
}

int
msg_addr_check(const char *addr, int allow_empty, char *err, size_t errlen)
{
	size_t len, local;
	const char *why;

	if (addr == NULL || addr[0] == '\0') {
		if (allow_empty)
			return 0;
		return msg__err(err, errlen, EX_DATAERR, "empty address");
	}
	len = strlen(addr);
	/* Checked before anything is parsed: whatever else is wrong, a
	 * line break is what the caller must hear about. */
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)addr[i];

		if (c == '\r' || c == '\n')
			return addr_fail(err, errlen, addr, len,
					 "line break in address");
		if (c < 0x20 || c == 0x7f)
			return addr_fail(err, errlen, addr, len,
					 "control character in address");
	}
	if (len > MSG_ADDR_MAX)
		return msg__err(err, errlen, EX_DATAERR,
				"address too long (%zu octets, max %d)", len,
				MSG_ADDR_MAX);
	if (!msg__utf8_valid(addr, len))
		return addr_fail(err, errlen, addr, len,
				 "address is not valid UTF-8");
	if (addr[0] == '"') {
		local = quoted_len(addr, len);
		if (local == 0)
			return addr_fail(err, errlen, addr, len,
					 "unterminated quoted local part");
	} else {
		local = strcspn(addr, "@");
	}
	if (addr[local] != '@')
		return addr_fail(err, errlen, addr, len,
				 local == len ? "no @domain"
					      : "text after quoted local part");
	if (local == 0)
		return addr_fail(err, errlen, addr, len, "empty local part");
	if (local > MSG_LOCAL_MAX)
		return addr_fail(err, errlen, addr, len,
				 "local part longer than 64 octets");
	why = local_check(addr, local);
	if (why == NULL && strchr(addr + local + 1, '@') != NULL)
		why = "more than one @";
	if (why == NULL)
		why = domain_check(addr + local + 1, len - local - 1);
	if (why != NULL)
		return addr_fail(err, errlen, addr, len, why);
	return 0;
}

/* ---- address lists ------------------------------------------------ */

enum tok_kind { TOK_END, TOK_WORD, TOK_SPECIAL };

struct tok {
	enum tok_kind kind;
	const char *p;
	size_t len;
};

struct lexer {
	const char *p;
	const char *end;
};

/* Skips white space, line ends (folding) and comments. */
static int
lex_skip(struct lexer *lx)
{
	while (lx->p < lx->end) {
		char c = *lx->p;

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			lx->p++;
		} else if (c == '(') {
			int depth = 0;

			do {
				if (*lx->p == '\\')
					lx->p++;
				else if (*lx->p == '(')
					depth++;
				else if (*lx->p == ')')
					depth--;
				lx->p++;
			} while (depth > 0 && lx->p < lx->end);
			if (depth > 0)
				return -1;
		} else {
			break;
		}
	}
	return 0;
}

static const char *
lex_next(struct lexer *lx, struct tok *t)
{
	const char *s;

	if (lex_skip(lx) < 0)
		return "unterminated comment";
	s = lx->p;
	t->p = s;
	if (s == lx->end) {
		t->kind = TOK_END;
		t->len = 0;
		return NULL;
	}
	if (*s == '"' || *s == '[') {
		char close = *s == '"' ? '"' : ']';
		const char *q = s + 1;

		while (q < lx->end && *q != close) {
			if (*q == '\\')
				q++;
			q++;
		}
		if (q >= lx->end)
			return close == '"' ? "unterminated quoted string"
					    : "unterminated domain literal";
		lx->p = q + 1;
		t->kind = TOK_WORD;
		t->len = (size_t)(lx->p - s);
		return NULL;
	}
	if (strchr("<>,:;@.", *s) != NULL) {
		lx->p++;
		t->kind = TOK_SPECIAL;
		t->len = 1;
		return NULL;
	}
	if (strchr(")]\\", *s) != NULL)
		return "unbalanced bracket or stray backslash";
	while (lx->p < lx->end &&
	       strchr("()<>[]:;@\\,.\" \t\r\n", *lx->p) == NULL)
		lx->p++;
	t->kind = TOK_WORD;
	t->len = (size_t)(lx->p - s);
	return NULL;
}

/* One mailbox being collected. */
struct entry {
	struct msg_buf addr; /* addr-spec text, unfolded */
	size_t start;	     /* offset in the value of its first token */
	size_t end;	     /* offset in the value just past the addr-spec */
	int angle;	     /* 1 inside <>, 2 once > was seen */
	int route;	     /* inside an obsolete source route "@a,@b:" */
	int phrase;	     /* two words in a row: a display name */
	enum tok_kind last;
};

static int
entry_word(struct entry *e, const struct tok *t, const char *value)
{
	if (e->addr.len == 0)
		e->start = (size_t)(t->p - value);
	e->end = (size_t)(t->p + t->len - value);
	/* Unfolding: a quoted string may span lines; CR and LF go. */
	for (size_t i = 0; i < t->len; i++) {
		if (t->p[i] != '\r' && t->p[i] != '\n' &&
		    msg__buf_add(&e->addr, t->p + i, 1) < 0)
			return -ENOMEM;
	}
	return 0;
}

static int
entry_finish(struct entry *e, const char *value, msg__addr_cb *cb, void *arg,
	     char *err, size_t errlen)
{
	int rc = 0;

	if (e->angle == 1)
		rc = msg__err(err, errlen, EX_DATAERR, "missing '>'");
	else if (e->angle == 0 && e->addr.len > 0 && e->phrase)
		rc = addr_fail(err, errlen, value + e->start, e->end - e->start,
			       "display name without <address>");
	else if (e->angle == 2 && e->addr.len == 0)
		rc = msg__err(err, errlen, EX_DATAERR,
			      "empty address <> in a header");
	else if (e->addr.len > 0)
		rc = cb(arg, e->addr.p, e->end, err, errlen);
	msg__buf_free(&e->addr);
	memset(e, 0, sizeof(*e));
	return rc;
}

int
msg__addr_list_walk(const char *value, size_t len, msg__addr_cb *cb, void *arg,
		    char *err, size_t errlen)
{
	struct lexer lx = {value, value + len};
	struct entry e;
	int in_group = 0, rc = 0;

	memset(&e, 0, sizeof(e));
	for (;;) {
		struct tok t;
		const char *why = lex_next(&lx, &t);
		char c;

		if (why != NULL) {
			rc = msg__err(err, errlen, EX_DATAERR, "%s", why);
			break;
		}
		if (t.kind == TOK_END) {
			rc = entry_finish(&e, value, cb, arg, err, errlen);
			break;
		}
		c = t.kind == TOK_SPECIAL ? t.p[0] : 0;
		if (e.angle == 2 && c != ',' && c != ';') {
			rc = msg__err(err, errlen, EX_DATAERR,
				      "unexpected text after '>'");
			break;
		}
		if (e.angle == 1) {
			/* Inside <>: an obsolete route "@a,@b:" is dropped,
			 * the rest is the addr-spec. */
			if (c == '>') {
				e.angle = 2;
			} else if (c == '@' && e.addr.len == 0) {
				e.route = 1;
			} else if (e.route) {
				if (c == ':')
					e.route = 0;
			} else if (c == '<' || c == ',' || c == ':' ||
				   c == ';') {
				rc = msg__err(err, errlen, EX_DATAERR,
					      "unexpected '%c' inside <>", c);
				break;
			} else if (t.kind == TOK_WORD && e.last == TOK_WORD) {
				rc = addr_fail(err, errlen, value + e.start,
					       (size_t)(t.p + t.len - value) -
						   e.start,
					       "space in address");
				break;
			} else if (entry_word(&e, &t, value) < 0) {
				rc = msg__oom(err, errlen);
				break;
			}
			e.last = t.kind;
			continue;
		}
		switch (c) {
		case ',':
			rc = entry_finish(&e, value, cb, arg, err, errlen);
			break;
		case ';':
			rc = entry_finish(&e, value, cb, arg, err, errlen);
			in_group = 0;
			break;
		case ':':
			if (in_group) {
				rc = msg__err(err, errlen, EX_DATAERR,
					      "group inside a group");
				break;
			}
			/* What came before was the group's display name. */
			msg__buf_free(&e.addr);
			memset(&e, 0, sizeof(e));
			in_group = 1;
			break;
		case '<':
			msg__buf_free(&e.addr); /* the display name */
			memset(&e, 0, sizeof(e));
			e.angle = 1;
			break;
		case '>':
			rc = msg__err(err, errlen, EX_DATAERR,
				      "'>' without '<'");
			break;
		default:
			if (t.kind == TOK_WORD && e.last == TOK_WORD)
				e.phrase = 1;
			if (entry_word(&e, &t, value) < 0)
				rc = msg__oom(err, errlen);
			e.last = t.kind;
			break;
		}
		if (rc != 0)
			break;
	}
	msg__buf_free(&e.addr);
	return rc;
}

static int
list_add_cb(void *arg, const char *addr, size_t end, char *err, size_t errlen)
{
	(void)end;
	if (msg_strlist_add(arg, addr) < 0)
		return msg__oom(err, errlen);
	return 0;
}

int
msg_addr_list_parse(const char *value, size_t len, struct msg_strlist *out,
		    char *err, size_t errlen)
{
	return msg__addr_list_walk(value, len, list_add_cb, out, err, errlen);
}

/*
 * test_msg.c - message and address handling: address checks and lists,
 * header splitting, the canonical form made by msg_prepare (added and
 * removed fields, line ends, recipients, re-encoding of long lines, size
 * limit) and messages built by msg_compose. Encoded output is decoded
 * again here, so the tests prove that nothing is lost, not just that
 * something was written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

#include "spool/msg.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char host[] = "host.example";
static const char user[] = "alice";

/* ---- helpers ------------------------------------------------------- */

/* The header section (up to and including the blank line). */
static size_t
header_len(const char *data, size_t len)
{
	const char *p = memmem(data, len, "\r\n\r\n", 4);

	if (data[0] == '\r' && data[1] == '\n')
		return 2;
	assert_non_null(p);
	return (size_t)(p - data) + 4;
}

static const char *
body_of(const char *data, size_t len)
{
	return data + header_len(data, len);
}

/* Number of fields named name in the header section. */
static int
header_count(const char *data, size_t len, const char *name)
{
	size_t hl = header_len(data, len), nl = strlen(name);
	int n = 0;

	for (size_t i = 0; i < hl; i++) {
		if ((i == 0 || data[i - 1] == '\n') && i + nl < hl &&
		    strncasecmp(data + i, name, nl) == 0 && data[i + nl] == ':')
			n++;
	}
	return n;
}

/* The unfolded value of the first field named name, malloc'd, or NULL. */
static char *
header_get(const char *data, size_t len, const char *name)
{
	size_t hl = header_len(data, len), nl = strlen(name);

	for (size_t i = 0; i < hl; i++) {
		if ((i == 0 || data[i - 1] == '\n') && i + nl < hl &&
		    strncasecmp(data + i, name, nl) == 0 &&
		    data[i + nl] == ':') {
			char *v = malloc(hl), *o = v;
			size_t j = i + nl + 1;

			assert_non_null(v);
			while (j < hl && data[j] == ' ')
				j++;
			for (; j < hl; j++) {
				if (data[j] == '\r' && data[j + 1] == '\n') {
					if (data[j + 2] != ' ' &&
					    data[j + 2] != '\t')
						break;
					j++;
					continue;
				}
				*o++ = data[j];
			}
			*o = '\0';
			return v;
		}
	}
	return NULL;
}

/* Every line ends CRLF, none is over 998 octets, no NUL. */
static void
assert_canonical(const char *data, size_t len)
{
	size_t col = 0;

	for (size_t i = 0; i < len; i++) {
		assert_int_not_equal(data[i], '\0');
		if (data[i] == '\r') {
			assert_true(i + 1 < len && data[i + 1] == '\n');
			i++;
			col = 0;
			continue;
		}
		assert_int_not_equal(data[i], '\n');
		col++;
		assert_true(col <= 998);
	}
	if (len > 0)
		assert_int_equal(col, 0); /* ends with CRLF */
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* RFC 2045 quoted-printable decoder; fails the test on bad input. */
static char *
qp_decode(const char *s, size_t len, size_t *outlen)
{
	char *out = malloc(len + 1), *o = out;

	assert_non_null(out);
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '=') {
			if (s[i + 1] == '\r' && s[i + 2] == '\n') {
				i += 2;
				continue;
			}
			assert_true(hexval(s[i + 1]) >= 0);
			assert_true(hexval(s[i + 2]) >= 0);
			*o++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
			continue;
		}
		*o++ = s[i];
	}
	*o = '\0';
	*outlen = (size_t)(o - out);
	return out;
}

static size_t
b64_decode(const char *s, size_t len, char *out)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "abcdefghijklmnopqrstuvwxyz0123456789+/";
	uint32_t acc = 0;
	int bits = 0;
	size_t n = 0;

	for (size_t i = 0; i < len && s[i] != '='; i++) {
		const char *p = strchr(tab, s[i]);

		assert_non_null(p);
		acc = acc << 6 | (uint32_t)(p - tab);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (char)(acc >> bits);
		}
	}
	return n;
}

/* 1 if s is a sequence of complete UTF-8 characters. */
static int
utf8_whole(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;

	while (i < len) {
		size_t n = u[i] < 0x80	  ? 1
			   : u[i] >= 0xf0 ? 4
			   : u[i] >= 0xe0 ? 3
			   : u[i] >= 0xc0 ? 2
					  : 0;

		if (n == 0 || i + n > len)
			return 0;
		for (size_t k = 1; k < n; k++) {
			if ((u[i + k] & 0xc0) != 0x80)
				return 0;
		}
		i += n;
	}
	return 1;
}

/* Decodes a header value made of "=?UTF-8?B?...?=" words separated by
 * white space; checks each word's length and that each word is whole
 * UTF-8 characters on its own. */
static char *
rfc2047_decode(const char *v)
{
	char *out = calloc(1, strlen(v) + 1);
	size_t n = 0;

	assert_non_null(out);
	while (*v != '\0') {
		const char *end;
		size_t wl, dl;

		while (*v == ' ')
			v++;
		assert_memory_equal(v, "=?UTF-8?B?", 10);
		end = strstr(v + 10, "?=");
		assert_non_null(end);
		wl = (size_t)(end + 2 - v);
		assert_true(wl <= 75);
		dl = b64_decode(v + 10, (size_t)(end - v - 10), out + n);
		/* Each word holds whole characters only. */
		assert_true(dl > 0);
		assert_true(utf8_whole(out + n, dl));
		n += dl;
		v = end + 2;
	}
	out[n] = '\0';
	return out;
}

static void
opts_init(struct msg_submit_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->user = user;
	o->hostname = host;
}

static int
prepare_str(const char *in, const struct msg_submit_opts *o,
	    const char *const *args, size_t nargs, struct msg_prepared *out,
	    char *err, size_t errlen)
{
	return msg_prepare(in, strlen(in), o, args, nargs, out, err, errlen);
}

static char *
str_repeat(const char *unit, size_t times)
{
	size_t ul = strlen(unit);
	char *s = malloc(ul * times + 1);

	assert_non_null(s);
	for (size_t i = 0; i < times; i++)
		memcpy(s + i * ul, unit, ul);
	s[ul * times] = '\0';
	return s;
}

/* ---- addresses ----------------------------------------------------- */

static void
test_addr_valid(void **state)
{
	char local64[65], dom189[190], at_limit[300];
	char err[256];

	(void)state;
	memset(local64, 'l', 64);
	local64[64] = '\0';
	/* 63 + 1 + 63 + 1 + 61 = 189: with 64 + 1 that is 254 octets. */
	memset(dom189, 'd', 189);
	dom189[63] = '.';
	dom189[127] = '.';
	dom189[189] = '\0';
	snprintf(at_limit, sizeof(at_limit), "%s@%s", local64, dom189);
	assert_int_equal(strlen(at_limit), 254);

	const char *ok[] = {
	    "a@b.example",
	    "root@localhost",
	    "user+tag@example.org",
	    "first.last@sub.example.org",
	    "\"john doe\"@example.org",
	    "\"a@b\"@example.org",
	    "\"q\\\"uote\"@example.org",
	    "!#$%&'*+-/=?^_`{|}~@example.org",
	    "j\xc3\xb6rg@m\xc3\xbcller.example",
	    "a@[127.0.0.1]",
	    "a@[IPv6:::1]",
	    "a@x-y.example",
	    at_limit,
	};
	for (size_t i = 0; i < N(ok); i++) {
		err[0] = '\0';
		if (msg_addr_check(ok[i], 0, err, sizeof(err)) != 0)
			fail_msg("refused \"%s\": %s", ok[i], err);
	}
	assert_int_equal(msg_addr_check("", 1, err, sizeof(err)), 0);
}

static void
test_addr_invalid(void **state)
{
	char local65[66], long_addr[300], long_label[100];
	char err[256];

	(void)state;
	memset(local65, 'l', 65);
	local65[65] = '\0';
	strcat(local65, "");
	memset(long_addr, 'x', 255);
	long_addr[0] = 'a';
	long_addr[1] = '@';
	long_addr[255] = '\0';
	snprintf(long_label, sizeof(long_label), "a@%s.example",
		 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		 "aaaa"); /* 64 octets */
	char l65[80];
	snprintf(l65, sizeof(l65), "%s@x.example", local65);

	static const struct {
		const char *addr;
		const char *why; /* part of the message */
	} bad[] = {
	    {"", "empty"},
	    {"plain", "no @domain"},
	    {"a@", "no domain"},
	    {"@b.example", "empty local part"},
	    {"a\r@b.example", "line break"},
	    {"a@b.example\n", "line break"},
	    {"a@b\r\nRCPT TO:<x@y>", "line break"},
	    {"a\x01@b.example", "control character"},
	    {"a\x7f@b.example", "control character"},
	    {"a\t@b.example", "control character"},
	    {"a b@c.example", "space"},
	    {"a@b c.example", "space"},
	    {"a..b@c.example", "two dots"},
	    {".a@c.example", "dot"},
	    {"a.@c.example", "dot"},
	    {"a@b..example", "empty label"},
	    {"a@.example", "empty label"},
	    {"a@example.", "empty label"},
	    {"a@-b.example", "'-'"},
	    {"a@b-.example", "'-'"},
	    {"a@b@c.example", "more than one @"},
	    {"a(b)@c.example", "not allowed"},
	    {"a@b_c.example", "not allowed"},
	    {"\xff@b.example", "UTF-8"},
	    {"a@[300.1.1.1]", "literal"},
	    {"\"open@b.example", "unterminated"},
	    {"\"a\"b@c.example", "after quoted"},
	};
	for (size_t i = 0; i < N(bad); i++) {
		int rc;

		err[0] = '\0';
		rc = msg_addr_check(bad[i].addr, 0, err, sizeof(err));
		if (rc != EX_DATAERR)
			fail_msg("accepted \"%s\" (rc %d)", bad[i].addr, rc);
		if (strstr(err, bad[i].why) == NULL)
			fail_msg("\"%s\": \"%s\" lacks \"%s\"", bad[i].addr,
				 err, bad[i].why);
		/* A hostile address cannot add lines to the error. */
		assert_null(strpbrk(err, "\r\n"));
	}

	const char *toolong[] = {l65, long_addr, long_label};

	for (size_t i = 0; i < N(toolong); i++) {
		assert_int_equal(
		    msg_addr_check(toolong[i], 0, err, sizeof(err)),
		    EX_DATAERR);
		assert_non_null(strstr(err, "long"));
	}
}

static void
test_addr_list(void **state)
{
	static const struct {
		const char *in;
		const char *want; /* addresses joined by '|' */
	} t[] = {
	    {"a@x.example", "a@x.example"},
	    {"A <a@x>, b@y", "a@x|b@y"},
	    {"g: a@x, b@y;", "a@x|b@y"},
	    {"Team A: a@x;, c@z", "a@x|c@z"},
	    {"undisclosed-recipients:;", ""},
	    {"", ""},
	    {"a@x (Comment, with comma), \"Doe, John\" <j@y>", "a@x|j@y"},
	    {"\"Doe, John\" <j@y>,\r\n\tb@z,\r\n c@w", "j@y|b@z|c@w"},
	    {"John Q. Public <jqp@x>", "jqp@x"},
	    {"<@r1,@r2:a@x>", "a@x"},
	    {"a@x,,b@y,", "a@x|b@y"},
	    {"\"quoted local\"@x", "\"quoted local\"@x"},
	    {"\"multi\r\n line\" <m@x>", "m@x"},
	    {"root", "root"},
	    {"root (Cron Daemon)", "root"},
	    {"a @ x . example", "a@x.example"},
	    {"=?UTF-8?B?SsO2cmc=?= <j@x>", "j@x"},
	    {"<a@x>", "a@x"},
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < N(t); i++) {
		struct msg_strlist l = {0};
		char got[512] = "";
		int rc = msg_addr_list_parse(t[i].in, strlen(t[i].in), &l, err,
					     sizeof(err));

		if (rc != 0)
			fail_msg("\"%s\": %s", t[i].in, err);
		for (size_t j = 0; j < l.n; j++) {
			if (j > 0)
				strcat(got, "|");
			strcat(got, l.v[j]);
		}
		if (strcmp(got, t[i].want) != 0)
			fail_msg("\"%s\": got \"%s\" want \"%s\"", t[i].in, got,
				 t[i].want);
		msg_strlist_free(&l);
	}

	static const char *const bad[] = {
	    "John Smith",
	    "<a@x",
	    "a@x>",
	    "(unterminated comment a@x",
	    "\"unterminated@x",
	    "g: h: a@x;;",
	    "<a@x> trailing",
	    "<>",
	    "<a b@x>",
	};
	for (size_t i = 0; i < N(bad); i++) {
		struct msg_strlist l = {0};

		if (msg_addr_list_parse(bad[i], strlen(bad[i]), &l, err,
					sizeof(err)) != EX_DATAERR)
			fail_msg("accepted \"%s\"", bad[i]);
		msg_strlist_free(&l);
	}
}

/* ---- header parsing -------------------------------------------------- */

static void
test_headers_parse(void **state)
{
	static const struct {
		const char *in;
		size_t n;	    /* fields */
		const char *names;  /* joined by '|' */
		const char *value0; /* value of the first field */
		size_t body_off;    /* SIZE_MAX: the end */
	} t[] = {
	    {"A: 1\r\nB: 2\r\n\r\nbody\r\n", 2, "A|B", "1", 14},
	    {"Subject: a\r\n b\r\n\tc\r\n\r\n", 1, "Subject", "a\r\n b\r\n\tc",
	     22},
	    {"A: 1\nB: 2\n", 2, "A|B", "1", SIZE_MAX},
	    {"A: 1", 1, "A", "1", SIZE_MAX},
	    {"A: 1\nhello world\n", 1, "A", "1", 5},
	    {"", 0, "", NULL, 0},
	    {"hello\n", 0, "", NULL, 0},
	    {" x: y\n", 0, "", NULL, 0},
	    {"A: 1\rB: 2\r\rbody", 2, "A|B", "1", 11},
	    {"Subject : obsolete\n\n", 1, "Subject", "obsolete", 20},
	    {"To:\r\n a@x\r\n\r\n", 1, "To", "\r\n a@x", 13},
	    {"\r\nbody", 0, "", NULL, 2},
	    {"X-Empty:\n\n", 1, "X-Empty", "", 10},
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < N(t); i++) {
		struct msg_headers hs;
		size_t len = strlen(t[i].in);
		char names[256] = "";

		assert_int_equal(
		    msg_headers_parse(t[i].in, len, &hs, err, sizeof(err)), 0);
		if (hs.n != t[i].n)
			fail_msg("case %zu: %zu fields, want %zu", i, hs.n,
				 t[i].n);
		for (size_t j = 0; j < hs.n; j++) {
			if (j > 0)
				strcat(names, "|");
			strncat(names, hs.h[j].name, hs.h[j].name_len);
		}
		assert_string_equal(names, t[i].names);
		if (t[i].value0 != NULL) {
			assert_int_equal(hs.h[0].value_len,
					 strlen(t[i].value0));
			assert_memory_equal(hs.h[0].value, t[i].value0,
					    hs.h[0].value_len);
		}
		if (hs.body_off !=
		    (t[i].body_off == SIZE_MAX ? len : t[i].body_off))
			fail_msg("case %zu: body_off %zu", i, hs.body_off);
		msg_headers_free(&hs);
	}

	{
		static const char in[] = "Subject: x\r\nTO: a@x\r\n\r\n";
		struct msg_headers hs;
		const struct msg_header *h;

		assert_int_equal(msg_headers_parse(in, sizeof(in) - 1, &hs, err,
						   sizeof(err)),
				 0);
		h = msg_headers_find(&hs, "to");
		assert_non_null(h);
		assert_memory_equal(h->value, "a@x", 3);
		assert_int_equal(h->len, 9);
		assert_null(msg_headers_find(&hs, "Cc"));
		msg_headers_free(&hs);
	}
	{
		static const char in[] = "Subject: x\r\n\r\nbo\0dy";
		struct msg_headers hs;

		assert_int_equal(msg_headers_parse(in, sizeof(in) - 1, &hs, err,
						   sizeof(err)),
				 EX_DATAERR);
		assert_non_null(strstr(err, "NUL"));
		msg_headers_free(&hs);
	}
}

/* ---- msg_prepare ---------------------------------------------------- */

static void
test_prepare_adds_headers(void **state)
{
	static const struct {
		const char *in;
		const char *full_name;
		const char *from_want;
		const char *body_want;
	} t[] = {
	    {"", NULL, "alice@host.example", ""},
	    {"Subject: hi\n\nbody\n", NULL, "alice@host.example", "body\r\n"},
	    {"Subject: hi\n", "Jane Doe", "Jane Doe <alice@host.example>", ""},
	    {"just a body line\n", "Doe, Jane",
	     "\"Doe, Jane\" <alice@host.example>", "just a body line\r\n"},
	    {"Subject: x\n\nno final newline", NULL, "alice@host.example",
	     "no final newline\r\n"},
	};
	const char *rcpt[] = {"bob@example.org"};
	char err[256];

	(void)state;
	for (size_t i = 0; i < N(t); i++) {
		struct msg_submit_opts o;
		struct msg_prepared p;
		char *v;

		opts_init(&o);
		o.full_name = t[i].full_name;
		assert_int_equal(
		    prepare_str(t[i].in, &o, rcpt, 1, &p, err, sizeof(err)), 0);
		assert_canonical(p.data, p.len);
		assert_int_equal(header_count(p.data, p.len, "Date"), 1);
		assert_int_equal(header_count(p.data, p.len, "From"), 1);
		assert_int_equal(header_count(p.data, p.len, "Message-ID"), 1);
		v = header_get(p.data, p.len, "From");
		assert_string_equal(v, t[i].from_want);
		free(v);
		v = header_get(p.data, p.len, "Message-ID");
		assert_true(v[0] == '<');
		assert_non_null(strstr(v, "@host.example>"));
		free(v);
		v = header_get(p.data, p.len, "Date");
		/* "Tue, 24 Nov 2026 11:21:30 +0000" */
		assert_non_null(strchr(v, ','));
		assert_true(v[strlen(v) - 5] == '+' || v[strlen(v) - 5] == '-');
		free(v);
		assert_string_equal(body_of(p.data, p.len), t[i].body_want);
		assert_string_equal(p.sender, "alice@host.example");
		msg_prepared_free(&p);
	}

	/* Two messages never share a Message-ID. */
	{
		struct msg_submit_opts o;
		struct msg_prepared a, b;
		char *va, *vb;

		opts_init(&o);
		assert_int_equal(
		    prepare_str("", &o, rcpt, 1, &a, err, sizeof(err)), 0);
		assert_int_equal(
		    prepare_str("", &o, rcpt, 1, &b, err, sizeof(err)), 0);
		va = header_get(a.data, a.len, "Message-ID");
		vb = header_get(b.data, b.len, "Message-ID");
		assert_string_not_equal(va, vb);
		free(va);
		free(vb);
		msg_prepared_free(&a);
		msg_prepared_free(&b);
	}
	/* A non-ASCII full name is RFC 2047 encoded. */
	{
		struct msg_submit_opts o;
		struct msg_prepared p;
		char *v, *name;

		opts_init(&o);
		o.full_name = "J\xc3\xb6rg M\xc3\xbcller";
		assert_int_equal(
		    prepare_str("", &o, rcpt, 1, &p, err, sizeof(err)), 0);
		v = header_get(p.data, p.len, "From");
		assert_non_null(strstr(v, " <alice@host.example>"));
		*strstr(v, " <") = '\0';
		name = rfc2047_decode(v);
		assert_string_equal(name, o.full_name);
		free(name);
		free(v);
		msg_prepared_free(&p);
	}
}

static void
test_prepare_keeps_headers(void **state)
{
	static const char in[] = "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
				 "From: Jane <jane@example.org>\r\n"
				 "Message-ID: <fixed@example.org>\r\n"
				 "Subject: kept\r\n"
				 "Date: Tue, 2 Jan 2024 00:00:00 +0000\r\n"
				 "message-id: <second@example.org>\r\n"
				 "\r\n"
				 "body\r\n";
	static const char want[] = "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
				   "From: Jane <jane@example.org>\r\n"
				   "Message-ID: <fixed@example.org>\r\n"
				   "Subject: kept\r\n"
				   "\r\n"
				   "body\r\n";
	const char *rcpt[] = {"bob@example.org"};
	struct msg_submit_opts o;
	struct msg_prepared p;
	char err[256];

	(void)state;
	opts_init(&o);
	assert_int_equal(prepare_str(in, &o, rcpt, 1, &p, err, sizeof(err)), 0);
	assert_int_equal(p.len, strlen(want));
	assert_memory_equal(p.data, want, p.len);
	assert_string_equal(p.sender, "jane@example.org");
	msg_prepared_free(&p);

	/* Already canonical input passes through byte for byte. */
	assert_int_equal(prepare_str(want, &o, rcpt, 1, &p, err, sizeof(err)),
			 0);
	assert_int_equal(p.len, strlen(want));
	assert_memory_equal(p.data, want, p.len);
	msg_prepared_free(&p);
}

static void
test_prepare_removes(void **state)
{
	static const char in[] = "Return-Path: <bounce@example.org>\n"
				 "To: a@x.example\n"
				 "Bcc: secret1@y.example,\n"
				 "  secret2@z.example\n"
				 "Subject: s\n"
				 "BCC: secret3@w.example\n"
				 "Original-Recipient: rfc822;o@x.example\n"
				 "\n"
				 "Bcc: this is body text\n";
	struct msg_submit_opts o;
	struct msg_prepared p;
	char err[256];

	(void)state;
	opts_init(&o);
	o.extract_rcpts = 1;
	assert_int_equal(prepare_str(in, &o, NULL, 0, &p, err, sizeof(err)), 0);
	assert_canonical(p.data, p.len);
	assert_int_equal(header_count(p.data, p.len, "Bcc"), 0);
	assert_int_equal(header_count(p.data, p.len, "Return-Path"), 0);
	assert_int_equal(header_count(p.data, p.len, "Original-Recipient"), 0);
	assert_null(strstr(p.data, "secret"));
	assert_null(strstr(p.data, "\r\n  "));
	/* The body is not a header section. */
	assert_string_equal(body_of(p.data, p.len),
			    "Bcc: this is body text\r\n");
	assert_int_equal(p.rcpt.n, 4);
	assert_string_equal(p.rcpt.v[0], "a@x.example");
	assert_string_equal(p.rcpt.v[1], "secret1@y.example");
	assert_string_equal(p.rcpt.v[2], "secret2@z.example");
	assert_string_equal(p.rcpt.v[3], "secret3@w.example");
	msg_prepared_free(&p);
}

static void
test_prepare_line_ends(void **state)
{
	static const struct {
		const char *in;
		const char *want_tail; /* Subject on to the end */
	} t[] = {
	    {"Subject: s\n\nline1\nline2", "Subject: s\r\n"},
	    {"Subject: s\r\rline1\rline2\r", "Subject: s\r\n"},
	    {"Subject: s\r\n\nline1\r\nline2\n", "Subject: s\r\n"},
	    {"Subject: s\n\r\nline1\rline2\r\n", "Subject: s\r\n"},
	};
	const char *rcpt[] = {"bob@example.org"};
	char err[256];

	(void)state;
	for (size_t i = 0; i < N(t); i++) {
		struct msg_submit_opts o;
		struct msg_prepared p;

		opts_init(&o);
		assert_int_equal(
		    prepare_str(t[i].in, &o, rcpt, 1, &p, err, sizeof(err)), 0);
		assert_canonical(p.data, p.len);
		assert_memory_equal(p.data, t[i].want_tail,
				    strlen(t[i].want_tail));
		assert_string_equal(body_of(p.data, p.len),
				    "line1\r\nline2\r\n");
		msg_prepared_free(&p);
	}

	/* A message with no blank line gets one before its body. */
	{
		struct msg_submit_opts o;
		struct msg_prepared p;

		opts_init(&o);
		assert_int_equal(prepare_str("Subject: s\nnot a header\n", &o,
					     rcpt, 1, &p, err, sizeof(err)),
				 0);
		assert_string_equal(body_of(p.data, p.len), "not a header\r\n");
		assert_int_equal(header_count(p.data, p.len, "Subject"), 1);
		msg_prepared_free(&p);
	}
	/* "\r\r\n" is a bare CR then CRLF: two line ends. */
	{
		struct msg_submit_opts o;
		struct msg_prepared p;

		opts_init(&o);
		assert_int_equal(prepare_str("Subject: s\n\na\r\r\nb", &o, rcpt,
					     1, &p, err, sizeof(err)),
				 0);
		assert_string_equal(body_of(p.data, p.len), "a\r\n\r\nb\r\n");
		msg_prepared_free(&p);
	}
}

static void
test_prepare_rcpts(void **state)
{
	static const struct {
		const char *in;
		int extract;
		const char *args[4];
		size_t nargs;
		const char *want; /* joined by '|' */
	} t[] = {
	    {"To: A@Example.org, a@example.org, B@x.example\n"
	     "Cc: Carol <c@y.example>\n\n",
	     1,
	     {"a@EXAMPLE.ORG", "d@z.example"},
	     2,
	     "A@Example.org|a@example.org|B@x.example|c@y.example|"
	     "d@z.example"},
	    {"To: ignored@x.example\n\n",
	     0,
	     {"only@arg.example"},
	     1,
	     "only@arg.example"},
	    {"To: list: m1@x.example, m2@x.example;\n\n",
	     1,
	     {NULL},
	     0,
	     "m1@x.example|m2@x.example"},
	    {"",
	     0,
	     {"root", "Bob <bob@x.example>, c@x.example"},
	     2,
	     "root@host.example|bob@x.example|c@x.example"},
	    {"To: root\nCc: a@x.example\nCc: b@x.example\n\n",
	     1,
	     {NULL},
	     0,
	     "root@host.example|a@x.example|b@x.example"},
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < N(t); i++) {
		struct msg_submit_opts o;
		struct msg_prepared p;
		char got[512] = "";

		opts_init(&o);
		o.extract_rcpts = t[i].extract;
		if (prepare_str(t[i].in, &o, t[i].args, t[i].nargs, &p, err,
				sizeof(err)) != 0)
			fail_msg("case %zu: %s", i, err);
		for (size_t j = 0; j < p.rcpt.n; j++) {
			if (j > 0)
				strcat(got, "|");
			strcat(got, p.rcpt.v[j]);
		}
		assert_string_equal(got, t[i].want);
		msg_prepared_free(&p);
	}
}

static void
test_prepare_refusals(void **state)
{
	static const struct {
		const char *in;
		size_t len; /* 0: strlen */
		int extract;
		const char *arg;
		const char *sender;
		int rc;
		const char *why;
	} t[] = {
	    {"Subject: s\n\nbody\n", 0, 0, NULL, NULL, EX_USAGE,
	     "no recipients"},
	    {"Subject: s\n\nbody\n", 0, 1, NULL, NULL, EX_USAGE,
	     "no recipients"},
	    {"To: undisclosed-recipients:;\n\n", 0, 1, NULL, NULL, EX_USAGE,
	     "no recipients"},
	    {"", 0, 0, "a@b\r\nRCPT TO:<x@y>", NULL, EX_DATAERR, "line break"},
	    {"", 0, 0, "a@b\nx", NULL, EX_DATAERR, "line break"},
	    {"", 0, 0, "a b@x.example", NULL, EX_DATAERR, "recipient"},
	    {"", 0, 0, "a@x.example", "bad\r\nMAIL FROM:<x>", EX_DATAERR,
	     "line break"},
	    {"", 0, 0, "a@x.example", "x y@z", EX_DATAERR, "sender"},
	    {"To: John Smith\n\n", 0, 1, NULL, NULL, EX_DATAERR, "To header"},
	    {"From: Broken <x\n\n", 0, 0, "a@x.example", NULL, EX_DATAERR,
	     "From header"},
	    {"Subject: s\n\nbo\0dy\n", 18, 0, "a@x.example", NULL, EX_DATAERR,
	     "NUL"},
	    {"Subj\0ect: s\n\n", 13, 0, "a@x.example", NULL, EX_DATAERR, "NUL"},
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < N(t); i++) {
		struct msg_submit_opts o;
		struct msg_prepared p;
		const char *args[1] = {t[i].arg};
		int rc;

		opts_init(&o);
		o.extract_rcpts = t[i].extract;
		o.sender = t[i].sender;
		err[0] = '\0';
		rc = msg_prepare(t[i].in, t[i].len ? t[i].len : strlen(t[i].in),
				 &o, args, t[i].arg ? 1 : 0, &p, err,
				 sizeof(err));
		if (rc != t[i].rc || strstr(err, t[i].why) == NULL)
			fail_msg("case %zu: rc %d \"%s\"", i, rc, err);
		assert_null(strpbrk(err, "\r\n"));
		/* Nothing is handed back on a refusal. */
		assert_null(p.data);
		assert_null(p.sender);
		assert_int_equal(p.rcpt.n, 0);
	}
}

/* sendmail -F: a line break is refused whether or not the name is used
 * (a message with its own From leaves it unused), so the outcome of an
 * injection attempt never depends on the message it came with. */
static void
test_prepare_full_name_injection(void **state)
{
	static const char *const names[] = {
	    "Evil\r\nBcc: x@evil.example", "Evil\nBcc: x@evil.example",
	    "Evil\rBcc: x@evil.example", "\r\n", "Evil\r\n"};
	static const char *const msgs[] = {"Subject: s\n\nbody\n",
					   "From: a@x.example\n\nbody\n"};
	const char *rcpt[] = {"bob@example.org"};
	char err[256];

	(void)state;
	for (size_t i = 0; i < N(names); i++) {
		for (size_t j = 0; j < N(msgs); j++) {
			struct msg_submit_opts o;
			struct msg_prepared p;
			int rc;

			opts_init(&o);
			o.full_name = names[i];
			err[0] = '\0';
			rc = prepare_str(msgs[j], &o, rcpt, 1, &p, err,
					 sizeof(err));
			if (rc != EX_DATAERR ||
			    strstr(err, "full name") == NULL)
				fail_msg("name %zu, message %zu: rc %d \"%s\"",
					 i, j, rc, err);
			assert_null(strpbrk(err, "\r\n"));
			assert_null(p.data);
		}
	}
}

/* A hostile header of many fields and many repeated recipients: every
 * field kept or merged as for a small one, recipients de-duplicated in
 * order of first appearance (the domain without regard to case). Pairwise
 * comparison made this take minutes; it must stay a matter of counts. */
static void
test_prepare_many_fields(void **state)
{
	enum { NADDR = 30000, NTO = 2 * NADDR, NFILL = 60000, NDATE = 1000 };
	struct msg_submit_opts o;
	struct msg_prepared p;
	char *in, *w, err[256], want[64];
	size_t cap = (size_t)(NTO + NFILL + NDATE) * 48 + 64;

	(void)state;
	in = malloc(cap);
	assert_non_null(in);
	w = in;
	for (int i = 0; i < NTO; i++) {
		/* each address twice: u1@Example.NET, later u1@example.net */
		w += sprintf(w, "To: u%d@%s\nX-Filler: %d\n", i % NADDR,
			     i < NADDR ? "Example.NET" : "example.net", i);
		if (i < NDATE)
			w += sprintf(
			    w, "Date: Tue, 24 Nov 2026 10:00:%02d +0000\n",
			    i % 60);
	}
	w += sprintf(w, "\nbody\n");
	assert_true((size_t)(w - in) < cap);
	opts_init(&o);
	o.extract_rcpts = 1;
	if (msg_prepare(in, (size_t)(w - in), &o, NULL, 0, &p, err,
			sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(p.rcpt.n, NADDR);
	for (int i = 0; i < NADDR; i += 997) {
		snprintf(want, sizeof(want), "u%d@Example.NET", i);
		assert_string_equal(p.rcpt.v[i], want);
	}
	assert_int_equal(header_count(p.data, p.len, "To"), 1);
	assert_int_equal(header_count(p.data, p.len, "Date"), 1);
	assert_int_equal(header_count(p.data, p.len, "X-Filler"), NFILL);
	msg_prepared_free(&p);
	free(in);
}

static void
test_prepare_sender(void **state)
{
	static const struct {
		const char *in;
		const char *sender;
		const char *want;
	} t[] = {
	    {"", "<>", ""},
	    {"", "", ""},
	    {"From: Jane <jane@x.example>\n\n", "bounce@y.example",
	     "bounce@y.example"},
	    {"From: Jane <jane@x.example>\n\n", "<b@y.example>", "b@y.example"},
	    {"From: Jane <jane@x.example>\n\n", NULL, "jane@x.example"},
	    {"From: a@x.example, b@x.example\nSender: a@x.example\n\n", NULL,
	     "a@x.example"},
	    {"", NULL, "alice@host.example"},
	    {"", "daemon", "daemon@host.example"},
	    {"From: root (Cron Daemon)\n\n", NULL, "root@host.example"},
	};
	const char *rcpt[] = {"bob@example.org"};
	char err[256];

	(void)state;
	for (size_t i = 0; i < N(t); i++) {
		struct msg_submit_opts o;
		struct msg_prepared p;

		opts_init(&o);
		o.sender = t[i].sender;
		if (prepare_str(t[i].in, &o, rcpt, 1, &p, err, sizeof(err)) !=
		    0)
			fail_msg("case %zu: %s", i, err);
		assert_string_equal(p.sender, t[i].want);
		msg_prepared_free(&p);
	}
}

static void
test_prepare_qualifies_headers(void **state)
{
	static const char in[] = "From: root (Cron Daemon)\n"
				 "To: root, Ops <ops@x.example>\n"
				 "Subject: Cron <root@h> job\n\n";
	const char *rcpt[] = {"bob@example.org"};
	struct msg_submit_opts o;
	struct msg_prepared p;
	char err[256], *v;

	(void)state;
	opts_init(&o);
	assert_int_equal(prepare_str(in, &o, rcpt, 1, &p, err, sizeof(err)), 0);
	v = header_get(p.data, p.len, "From");
	assert_string_equal(v, "root@host.example (Cron Daemon)");
	free(v);
	v = header_get(p.data, p.len, "To");
	assert_string_equal(v, "root@host.example, Ops <ops@x.example>");
	free(v);
	v = header_get(p.data, p.len, "Subject");
	assert_string_equal(v, "Cron <root@h> job");
	free(v);
	msg_prepared_free(&p);
}

static void
test_prepare_merges_to(void **state)
{
	static const char in[] =
	    "To: a@x.example\nSubject: s\nTo: b@y.example\n\n";
	const char *rcpt[] = {"bob@example.org"};
	struct msg_submit_opts o;
	struct msg_prepared p;
	char err[256], *v;

	(void)state;
	opts_init(&o);
	assert_int_equal(prepare_str(in, &o, rcpt, 1, &p, err, sizeof(err)), 0);
	assert_int_equal(header_count(p.data, p.len, "To"), 1);
	v = header_get(p.data, p.len, "To");
	assert_string_equal(v, "a@x.example, b@y.example");
	free(v);
	msg_prepared_free(&p);
}

static void
test_prepare_mbox_from_line(void **state)
{
	static const char in[] =
	    "From someone@x.example Mon Jan  1 00:00:00 2024\n"
	    "Subject: s\n\nbody\n";
	const char *rcpt[] = {"bob@example.org"};
	struct msg_submit_opts o;
	struct msg_prepared p;
	char err[256];

	(void)state;
	opts_init(&o);
	assert_int_equal(prepare_str(in, &o, rcpt, 1, &p, err, sizeof(err)), 0);
	assert_null(strstr(p.data, "someone"));
	assert_int_equal(header_count(p.data, p.len, "Subject"), 1);
	assert_string_equal(body_of(p.data, p.len), "body\r\n");
	msg_prepared_free(&p);
}

/*
 * "From : addr" is the obsolete form of the From field, not an mbox
 * separator: it was dropped as one and the author replaced by user@host.
 * Seen through the fixed-point check of tests/fuzz/fuzz_msg_prepare: the
 * output of "Return-Path: ...\nFrom : ..." lost its From when prepared
 * again.
 */
static void
test_prepare_obsolete_from_field(void **state)
{
	static const char *const in[] = {
	    "From : author@x.example\nSubject: s\n\nbody\n",
	    "From \t: author@x.example\nSubject: s\n\nbody\n",
	    "Return-Path: <r@x.example>\nFrom : author@x.example\n\nbody\n",
	};
	const char *rcpt[] = {"bob@example.org"};
	struct msg_submit_opts o;
	struct msg_prepared p, again;
	char err[256];

	(void)state;
	opts_init(&o);
	for (size_t i = 0; i < N(in); i++) {
		assert_int_equal(
		    prepare_str(in[i], &o, rcpt, 1, &p, err, sizeof(err)), 0);
		assert_non_null(strstr(p.data, "author@x.example"));
		assert_null(strstr(p.data, user));
		assert_string_equal(p.sender, "author@x.example");
		/* The stored form prepared again is unchanged. */
		assert_int_equal(msg_prepare(p.data, p.len, &o, rcpt, 1, &again,
					     err, sizeof(err)),
				 0);
		assert_int_equal(again.len, p.len);
		assert_memory_equal(again.data, p.data, p.len);
		msg_prepared_free(&again);
		msg_prepared_free(&p);
	}
}

static void
test_prepare_dots_kept(void **state)
{
	static const char in[] = "Subject: s\n\n.\n..\n.x\nend\n.";
	const char *rcpt[] = {"bob@example.org"};
	struct msg_submit_opts o;
	struct msg_prepared p;
	char err[256];

	(void)state;
	opts_init(&o);
	assert_int_equal(prepare_str(in, &o, rcpt, 1, &p, err, sizeof(err)), 0);
	assert_string_equal(body_of(p.data, p.len),
			    ".\r\n..\r\n.x\r\nend\r\n.\r\n");
	msg_prepared_free(&p);
}

/* A body line of every byte value, '=' and trailing blanks included. */
static char *
long_line(size_t n)
{
	char *s = malloc(n + 1);

	assert_non_null(s);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)(32 + (i * 7) % 224);

		s[i] = (char)(c == 127 ? '=' : c);
	}
	s[n - 1] = ' ';
	s[n] = '\0';
	return s;
}

static void
test_prepare_long_line_qp(void **state)
{
	static const char *const heads[] = {
	    "Subject: long\n",
	    "Subject: long\nMIME-Version: 1.0\n"
	    "Content-Type: text/plain; charset=utf-8\n"
	    "Content-Transfer-Encoding: 8bit\n",
	};
	const char *rcpt[] = {"bob@example.org"};
	char err[256];

	(void)state;
	for (size_t i = 0; i < N(heads); i++) {
		char *line = long_line(2500), *in, *want, *dec, *v;
		struct msg_submit_opts o;
		struct msg_prepared p;
		const char *body;
		size_t dlen;

		assert_true(asprintf(&in, "%s\nfirst\n%s\n.\nlast  \n",
				     heads[i], line) > 0);
		assert_true(asprintf(&want, "first\r\n%s\r\n.\r\nlast  \r\n",
				     line) > 0);
		opts_init(&o);
		assert_int_equal(
		    prepare_str(in, &o, rcpt, 1, &p, err, sizeof(err)), 0);
		assert_canonical(p.data, p.len);
		assert_int_equal(header_count(p.data, p.len, "MIME-Version"),
				 1);
		assert_int_equal(
		    header_count(p.data, p.len, "Content-Transfer-Encoding"),
		    1);
		v = header_get(p.data, p.len, "Content-Transfer-Encoding");
		assert_string_equal(v, "quoted-printable");
		free(v);
		body = body_of(p.data, p.len);
		/* RFC 2045: encoded lines are at most 76 octets. */
		for (const char *l = body; *l != '\0';) {
			const char *e = strstr(l, "\r\n");

			assert_non_null(e);
			assert_true(e - l <= 76);
			assert_true(e == l || (e[-1] != ' ' && e[-1] != '\t'));
			l = e + 2;
		}
		dec = qp_decode(body, strlen(body), &dlen);
		assert_int_equal(dlen, strlen(want));
		assert_memory_equal(dec, want, dlen);
		free(dec);
		free(line);
		free(in);
		free(want);
		msg_prepared_free(&p);
	}
}

static void
test_prepare_long_line_multipart(void **state)
{
	char *line = long_line(1500), *in, *dec;
	const char *rcpt[] = {"bob@example.org"};
	struct msg_submit_opts o;
	struct msg_prepared p;
	char err[256], *v, *part1, *end1;
	size_t dlen;

	(void)state;
	assert_true(asprintf(&in,
			     "Subject: mp\n"
			     "MIME-Version: 1.0\n"
			     "Content-Type: multipart/mixed; boundary=\"b 1\"\n"
			     "\n"
			     "preamble\n"
			     "--b 1\n"
			     "Content-Type: text/plain\n"
			     "\n"
			     "%s\n"
			     "--b 1\n"
			     "Content-Type: text/plain\n"
			     "Content-Transfer-Encoding: base64\n"
			     "\n"
			     "aGVsbG8=\n"
			     "--b 1--\n"
			     "epilogue\n",
			     line) > 0);
	opts_init(&o);
	assert_int_equal(prepare_str(in, &o, rcpt, 1, &p, err, sizeof(err)), 0);
	assert_canonical(p.data, p.len);
	/* The top level stays a multipart with no transfer encoding. */
	assert_int_equal(
	    header_count(p.data, p.len, "Content-Transfer-Encoding"), 0);
	v = header_get(p.data, p.len, "Content-Type");
	assert_string_equal(v, "multipart/mixed; boundary=\"b 1\"");
	free(v);
	assert_non_null(strstr(p.data, "\r\n\r\npreamble\r\n--b 1\r\n"));
	part1 = strstr(p.data, "--b 1\r\n") + 7;
	assert_memory_equal(part1,
			    "Content-Type: text/plain\r\n"
			    "Content-Transfer-Encoding: quoted-printable\r\n"
			    "\r\n",
			    26 + 45 + 2);
	part1 += 26 + 45 + 2;
	end1 = strstr(part1, "\r\n--b 1\r\n");
	assert_non_null(end1);
	dec = qp_decode(part1, (size_t)(end1 - part1), &dlen);
	assert_int_equal(dlen, strlen(line));
	assert_memory_equal(dec, line, dlen);
	free(dec);
	assert_non_null(strstr(end1,
			       "\r\n--b 1\r\nContent-Type: text/plain\r\n"
			       "Content-Transfer-Encoding: base64\r\n"
			       "\r\naGVsbG8=\r\n--b 1--\r\nepilogue\r\n"));
	msg_prepared_free(&p);
	free(in);

	/* What cannot be re-encoded correctly is refused. */
	static const struct {
		const char *pre, *post; /* around the long line */
	} bad[] = {
	    {"Content-Type: multipart/mixed; boundary=z\n\n--z\n"
	     "Content-Type: message/rfc822\n\nSubject: inner\n\n",
	     "\n--z--\n"},
	    {"Content-Type: multipart/mixed\n\n", "\n"},
	    {"Content-Type: multipart/mixed; boundary=z\n\n",
	     "\n--z\n\nx\n--z--\n"},
	    {"Content-Type: text/plain\nContent-Transfer-Encoding: x-uue\n\n",
	     "\n"},
	};
	for (size_t i = 0; i < N(bad); i++) {
		assert_true(
		    asprintf(&in, "%s%s%s", bad[i].pre, line, bad[i].post) > 0);
		assert_int_equal(
		    prepare_str(in, &o, rcpt, 1, &p, err, sizeof(err)),
		    EX_DATAERR);
		assert_null(p.data);
		free(in);
	}
	free(line);
}

static void
test_prepare_long_header(void **state)
{
	char *words = str_repeat("word ", 400), *in, *v;
	const char *rcpt[] = {"bob@example.org"};
	struct msg_submit_opts o;
	struct msg_prepared p;
	char err[256];

	(void)state;
	words[strlen(words) - 1] = '\0';
	assert_true(asprintf(&in, "Subject: %s\n\nbody\n", words) > 0);
	opts_init(&o);
	assert_int_equal(prepare_str(in, &o, rcpt, 1, &p, err, sizeof(err)), 0);
	assert_canonical(p.data, p.len);
	/* Folding adds line breaks only: unfolded, the value is intact. */
	v = header_get(p.data, p.len, "Subject");
	assert_string_equal(v, words);
	free(v);
	msg_prepared_free(&p);
	free(in);
	free(words);

	words = str_repeat("x", 1200);
	assert_true(asprintf(&in, "X-Long: %s\n\nbody\n", words) > 0);
	assert_int_equal(prepare_str(in, &o, rcpt, 1, &p, err, sizeof(err)),
			 EX_DATAERR);
	assert_non_null(strstr(err, "header line too long"));
	assert_non_null(strstr(err, "X-Long"));
	free(in);
	free(words);
}

/*
 * A long field in the obsolete "Name :" form whose value has no white
 * space before the folding limit: the only white space early in the line
 * is the one before the colon, and folding there left "DC" alone on a
 * line, which ended the header and pushed Date, From and Message-ID into
 * the body. Found by tests/fuzz/fuzz_msg_prepare.
 */
static void
test_prepare_long_obsolete_field(void **state)
{
	char *run = str_repeat("x", 100), *words = str_repeat(" word", 200);
	const char *rcpt[] = {"bob@example.org"};
	struct msg_submit_opts o;
	struct msg_headers hs;
	struct msg_prepared p;
	char err[256], *in;

	(void)state;
	assert_true(asprintf(&in, "DC :%s%s\n\nbody\n", run, words) > 0);
	opts_init(&o);
	assert_int_equal(prepare_str(in, &o, rcpt, 1, &p, err, sizeof(err)), 0);
	assert_canonical(p.data, p.len);
	assert_int_equal(strncmp(p.data, "DC :", 4), 0);
	assert_int_equal(header_count(p.data, p.len, "Date"), 1);
	assert_int_equal(header_count(p.data, p.len, "From"), 1);
	assert_int_equal(header_count(p.data, p.len, "Message-ID"), 1);
	/* The header, as a receiver splits it, still holds every field. */
	assert_int_equal(
	    msg_headers_parse(p.data, p.len, &hs, err, sizeof(err)), 0);
	assert_non_null(msg_headers_find(&hs, "Date"));
	assert_non_null(msg_headers_find(&hs, "From"));
	assert_non_null(msg_headers_find(&hs, "Message-ID"));
	assert_string_equal(p.data + hs.body_off, "body\r\n");
	msg_headers_free(&hs);
	msg_prepared_free(&p);
	free(in);
	free(run);
	free(words);
}

static void
test_prepare_max_size(void **state)
{
	static const char in[] = "Date: Mon, 1 Jan 2024 00:00:00 +0000\n"
				 "From: a@x.example\n"
				 "Message-ID: <m@x.example>\n"
				 "\n"
				 "body\n";
	const char *rcpt[] = {"bob@example.org"};
	struct msg_submit_opts o;
	struct msg_prepared p;
	size_t canon;
	char err[256], want[128];

	(void)state;
	opts_init(&o);
	assert_int_equal(prepare_str(in, &o, rcpt, 1, &p, err, sizeof(err)), 0);
	canon = p.len;
	/* The limit applies to the canonical (CRLF) size, not the input. */
	assert_int_equal(canon, strlen(in) + 5);
	msg_prepared_free(&p);

	o.max_size = canon;
	assert_int_equal(prepare_str(in, &o, rcpt, 1, &p, err, sizeof(err)), 0);
	msg_prepared_free(&p);

	o.max_size = canon - 1;
	assert_int_equal(prepare_str(in, &o, rcpt, 1, &p, err, sizeof(err)),
			 EX_DATAERR);
	snprintf(want, sizeof(want), "message too large (%zu bytes, max %zu)",
		 canon, canon - 1);
	assert_string_equal(err, want);
	assert_null(p.data);
}

/* ---- msg_compose ---------------------------------------------------- */

static void
compose_opts(struct msg_compose_opts *o, const char *const *to, size_t nto,
	     const char *subject, const char *body)
{
	memset(o, 0, sizeof(*o));
	o->to = to;
	o->nto = nto;
	o->subject = subject;
	o->body = body;
	o->body_len = body ? strlen(body) : 0;
	o->user = user;
	o->hostname = host;
}

static void
test_compose_ascii(void **state)
{
	const char *to[] = {"bob@example.org", "Carol <carol@example.org>",
			    "bob@EXAMPLE.ORG"};
	struct msg_compose_opts o;
	struct msg_prepared p;
	char err[256], *v;

	(void)state;
	compose_opts(&o, to, N(to), "Disk almost full", "line 1\nline 2\n");
	assert_int_equal(msg_compose(&o, &p, err, sizeof(err)), 0);
	assert_canonical(p.data, p.len);
	static const char *const once[] = {
	    "Date",	    "Message-ID",
	    "From",	    "To",
	    "Subject",	    "MIME-Version",
	    "Content-Type", "Content-Transfer-Encoding",
	};
	for (size_t i = 0; i < N(once); i++)
		assert_int_equal(header_count(p.data, p.len, once[i]), 1);
	assert_non_null(strstr(p.data, "\r\nSubject: Disk almost full\r\n"));
	v = header_get(p.data, p.len, "To");
	assert_string_equal(v, "bob@example.org, carol@example.org");
	free(v);
	v = header_get(p.data, p.len, "From");
	assert_string_equal(v, "alice@host.example");
	free(v);
	v = header_get(p.data, p.len, "Content-Type");
	assert_string_equal(v, "text/plain; charset=utf-8");
	free(v);
	v = header_get(p.data, p.len, "Content-Transfer-Encoding");
	assert_string_equal(v, "7bit");
	free(v);
	assert_string_equal(body_of(p.data, p.len), "line 1\r\nline 2\r\n");
	assert_string_equal(p.sender, "alice@host.example");
	assert_int_equal(p.rcpt.n, 2);
	assert_string_equal(p.rcpt.v[0], "bob@example.org");
	assert_string_equal(p.rcpt.v[1], "carol@example.org");
	msg_prepared_free(&p);
}

static void
test_compose_subject(void **state)
{
	static const char *const subjects[] = {
	    "Gr\xc3\xbc\xc3\x9f"
	    "e aus K\xc3\xb6ln",
	    /* Long, with 2-, 3- and 4-octet characters everywhere. */
	    "\xe2\x9c\x85 Backup OK \xe2\x80\x94 \xf0\x9f\x92\xbe "
	    "sauvegard\xc3\xa9 \xc3\xa0 3h \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa"
	    "\x9e\xe3\x81\xae\xe4\xbb\xb6\xe5\x90\x8d \xf0\x9f\x98\x80"
	    "\xf0\x9f\x98\x81\xf0\x9f\x98\x82\xf0\x9f\x98\x83\xf0\x9f\x98"
	    "\x84\xf0\x9f\x98\x85 \xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
	    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9",
	    "plain but =?looks?= encoded",
	    "tab\tand \x01 control",
	};
	const char *to[] = {"bob@example.org"};
	char err[256];

	(void)state;
	for (size_t i = 0; i < N(subjects); i++) {
		struct msg_compose_opts o;
		struct msg_prepared p;
		char *v, *dec;
		const char *s, *e;

		compose_opts(&o, to, 1, subjects[i], "x\n");
		assert_int_equal(msg_compose(&o, &p, err, sizeof(err)), 0);
		assert_canonical(p.data, p.len);
		/* Every line of the field within 78 octets. */
		s = strstr(p.data, "\r\nSubject: ") + 2;
		do {
			e = strstr(s, "\r\n");
			assert_true(e - s <= 78);
			s = e + 2;
		} while (*s == ' ');
		v = header_get(p.data, p.len, "Subject");
		dec = rfc2047_decode(v);
		assert_string_equal(dec, subjects[i]);
		free(dec);
		free(v);
		msg_prepared_free(&p);
	}

	/* Long plain ASCII is folded, not encoded. */
	{
		char *subj = str_repeat("many words ", 30);
		struct msg_compose_opts o;
		struct msg_prepared p;
		char *v;

		subj[strlen(subj) - 1] = '\0';
		compose_opts(&o, to, 1, subj, "x\n");
		assert_int_equal(msg_compose(&o, &p, err, sizeof(err)), 0);
		assert_null(strstr(p.data, "=?"));
		v = header_get(p.data, p.len, "Subject");
		assert_string_equal(v, subj);
		for (const char *l = p.data; *l != '\0';) {
			const char *e = strstr(l, "\r\n");

			assert_true(e - l <= 78);
			l = e + 2;
		}
		free(v);
		free(subj);
		msg_prepared_free(&p);
	}
	/* Invalid UTF-8 is refused. */
	{
		struct msg_compose_opts o;
		struct msg_prepared p;

		compose_opts(&o, to, 1, "bad \xc3\x28", "x\n");
		assert_int_equal(msg_compose(&o, &p, err, sizeof(err)),
				 EX_DATAERR);
		assert_non_null(strstr(err, "UTF-8"));
	}
}

static void
test_compose_injection(void **state)
{
	static const struct {
		const char *to;
		const char *subject;
		const char *from;
		const char *why;
	} t[] = {
	    {"bob@example.org", "hi\r\nBcc: victim@example.org", NULL,
	     "subject"},
	    {"bob@example.org", "hi\nX: y", NULL, "subject"},
	    {"bob@example.org", "hi\r", NULL, "subject"},
	    {"bob@example.org\r\nRCPT TO:<x@y>", "hi", NULL, "to address"},
	    {"bob@example.org", "hi", "a@x.example\r\nBcc: v@y", "from"},
	};
	char err[256];

	(void)state;
	for (size_t i = 0; i < N(t); i++) {
		const char *to[] = {t[i].to};
		struct msg_compose_opts o;
		struct msg_prepared p;

		compose_opts(&o, to, 1, t[i].subject, "x\n");
		o.from = t[i].from;
		assert_int_equal(msg_compose(&o, &p, err, sizeof(err)),
				 EX_DATAERR);
		assert_non_null(strstr(err, "header injection"));
		assert_non_null(strstr(err, t[i].why));
		assert_null(p.data);
	}
	{
		struct msg_compose_opts o;
		struct msg_prepared p;

		compose_opts(&o, NULL, 0, "hi", "x\n");
		assert_int_equal(msg_compose(&o, &p, err, sizeof(err)),
				 EX_USAGE);
		assert_string_equal(err, "no recipients");
	}
}

static void
test_compose_from(void **state)
{
	static const struct {
		const char *from;
		const char *header; /* NULL: check the decoded name */
		const char *name;   /* decoded display name */
		const char *sender;
	} t[] = {
	    {"ops@x.example", "ops@x.example", NULL, "ops@x.example"},
	    {"Ops Team <ops@x.example>", "Ops Team <ops@x.example>", NULL,
	     "ops@x.example"},
	    {"\"Ops, Team\" <ops@x.example>", "\"Ops, Team\" <ops@x.example>",
	     NULL, "ops@x.example"},
	    {"robot", "robot@host.example", NULL, "robot@host.example"},
	    {"J\xc3\xb6rg <j@x.example>", NULL, "J\xc3\xb6rg", "j@x.example"},
	};
	const char *to[] = {"bob@example.org"};
	char err[256];

	(void)state;
	for (size_t i = 0; i < N(t); i++) {
		struct msg_compose_opts o;
		struct msg_prepared p;
		char *v;

		compose_opts(&o, to, 1, "s", "x\n");
		o.from = t[i].from;
		if (msg_compose(&o, &p, err, sizeof(err)) != 0)
			fail_msg("\"%s\": %s", t[i].from, err);
		v = header_get(p.data, p.len, "From");
		if (t[i].header != NULL) {
			assert_string_equal(v, t[i].header);
		} else {
			char *name;

			assert_non_null(strstr(v, " <j@x.example>"));
			*strstr(v, " <") = '\0';
			name = rfc2047_decode(v);
			assert_string_equal(name, t[i].name);
			free(name);
		}
		free(v);
		assert_string_equal(p.sender, t[i].sender);
		msg_prepared_free(&p);
	}
	{
		struct msg_compose_opts o;
		struct msg_prepared p;

		compose_opts(&o, to, 1, "s", "x\n");
		o.from = "a@x.example, b@x.example";
		assert_int_equal(msg_compose(&o, &p, err, sizeof(err)),
				 EX_DATAERR);
	}
}

static void
test_compose_body(void **state)
{
	char *longascii = str_repeat("0123456789", 120);
	static const char utf8[] = "h\xc3\xa9llo w\xc3\xb6rld\n";
	const struct {
		const char *body;
		size_t len;
		const char *cte;
		const char *canon; /* the body after line-end repair */
		int rc;
	} t[] = {
	    {"plain text\nsecond\n", 0, "7bit", "plain text\r\nsecond\r\n", 0},
	    {"no newline", 0, "7bit", "no newline\r\n", 0},
	    {"", 0, "7bit", "", 0},
	    {utf8, 0, "8bit", "h\xc3\xa9llo w\xc3\xb6rld\r\n", 0},
	    {longascii, 0, "quoted-printable", NULL, 0},
	    {"bad \xff\n", 0, NULL, NULL, EX_DATAERR},
	    {"nul \0 inside\n", 13, NULL, NULL, EX_DATAERR},
	};
	const char *to[] = {"bob@example.org"};
	char err[256];

	(void)state;
	for (size_t i = 0; i < N(t); i++) {
		struct msg_compose_opts o;
		struct msg_prepared p;
		char *v;
		int rc;

		compose_opts(&o, to, 1, "s", t[i].body);
		if (t[i].len)
			o.body_len = t[i].len;
		rc = msg_compose(&o, &p, err, sizeof(err));
		assert_int_equal(rc, t[i].rc);
		if (rc != 0)
			continue;
		assert_canonical(p.data, p.len);
		v = header_get(p.data, p.len, "Content-Transfer-Encoding");
		assert_string_equal(v, t[i].cte);
		free(v);
		if (t[i].canon != NULL) {
			assert_string_equal(body_of(p.data, p.len), t[i].canon);
		} else {
			const char *b = body_of(p.data, p.len);
			size_t dl;
			char *dec = qp_decode(b, strlen(b), &dl);

			assert_int_equal(dl, strlen(longascii) + 2);
			assert_memory_equal(dec, longascii, dl - 2);
			assert_memory_equal(dec + dl - 2, "\r\n", 2);
			free(dec);
		}
		msg_prepared_free(&p);
	}
	free(longascii);

	{
		struct msg_compose_opts o;
		struct msg_prepared p;

		compose_opts(&o, to, 1, "s", "a body of some length\n");
		o.max_size = 100;
		assert_int_equal(msg_compose(&o, &p, err, sizeof(err)),
				 EX_DATAERR);
		assert_non_null(strstr(err, "message too large"));
	}
}

static void
test_received_uid(void **state)
{
	char buf[MSG_RECEIVED_MAX];
	unsigned long uid = 7;
	int n;

	(void)state;
	n = msg_received_format(buf, sizeof(buf), 1000, "host", "abc", 0);
	assert_true(n > 0);
	assert_int_equal(msg_received_uid(buf, (size_t)n, &uid), 0);
	assert_int_equal(uid, 1000);
	n = msg_received_format(buf, sizeof(buf), 0, "host", "abc", 0);
	assert_int_equal(msg_received_uid(buf, (size_t)n, &uid), 0);
	assert_int_equal(uid, 0);
	/* anything else is not the field spoolctl writes */
	static const char *const bad[] = {
	    "Received: from userid  1 by x",
	    "Received: from userid 1",
	    "Received: from userid x by x",
	    "Received: from userid 99999999999 by x",
	    "received: from userid 1 by x",
	    "Subject: x\r\nReceived: from userid 1 by x",
	    "",
	};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		assert_int_equal(msg_received_uid(bad[k], strlen(bad[k]), &uid),
				 -ENOENT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_addr_valid),
	    cmocka_unit_test(test_addr_invalid),
	    cmocka_unit_test(test_addr_list),
	    cmocka_unit_test(test_headers_parse),
	    cmocka_unit_test(test_prepare_adds_headers),
	    cmocka_unit_test(test_prepare_keeps_headers),
	    cmocka_unit_test(test_prepare_removes),
	    cmocka_unit_test(test_prepare_line_ends),
	    cmocka_unit_test(test_prepare_rcpts),
	    cmocka_unit_test(test_prepare_refusals),
	    cmocka_unit_test(test_prepare_full_name_injection),
	    cmocka_unit_test(test_prepare_many_fields),
	    cmocka_unit_test(test_prepare_sender),
	    cmocka_unit_test(test_prepare_qualifies_headers),
	    cmocka_unit_test(test_prepare_merges_to),
	    cmocka_unit_test(test_prepare_mbox_from_line),
	    cmocka_unit_test(test_prepare_obsolete_from_field),
	    cmocka_unit_test(test_prepare_dots_kept),
	    cmocka_unit_test(test_prepare_long_line_qp),
	    cmocka_unit_test(test_prepare_long_line_multipart),
	    cmocka_unit_test(test_prepare_long_header),
	    cmocka_unit_test(test_prepare_long_obsolete_field),
	    cmocka_unit_test(test_prepare_max_size),
	    cmocka_unit_test(test_compose_ascii),
	    cmocka_unit_test(test_compose_subject),
	    cmocka_unit_test(test_compose_injection),
	    cmocka_unit_test(test_compose_from),
	    cmocka_unit_test(test_compose_body),
	    cmocka_unit_test(test_received_uid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

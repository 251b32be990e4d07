/*
 * test_mail2text.c - from mail to notification: MIME decoding (through
 * GMime), the choice of the part, HTML reduced to text, the clean-up,
 * the footer, and the cut to a service's limit on a character boundary.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mail2text.h"

/* 1 if s is well-formed UTF-8 with no control character but \n and \t. */
static int
clean_utf8(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;

	for (size_t i = 0; u[i];) {
		size_t n = u[i] < 0x80		   ? 1
			   : (u[i] & 0xe0) == 0xc0 ? 2
			   : (u[i] & 0xf0) == 0xe0 ? 3
			   : (u[i] & 0xf8) == 0xf0 ? 4
						   : 0;

		if (n == 0)
			return 0;
		if (n == 1 && u[i] < 0x20 && u[i] != '\n' && u[i] != '\t')
			return 0;
		for (size_t k = 1; k < n; k++)
			if ((u[i + k] & 0xc0) != 0x80)
				return 0;
		i += n;
	}
	return 1;
}

static const struct mail2text_opts plain_opts = {
    .footer = 1, .host = "node7", .sender = "env@host.example"};

static const struct {
	const char *name;
	const char *msg;
	const char *title;
	const char *text; /* without the footer */
	int urgent;
} cases[] = {
    {"quoted-printable ISO-8859-1",
     "From: a@b.example\r\nSubject: qp\r\nMIME-Version: 1.0\r\n"
     "Content-Type: text/plain; charset=iso-8859-1\r\n"
     "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
     "caf=E9 cr=E8me=\r\n br=FBl=E9e\r\n",
     "qp",
     "caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9"
     "e",
     0},
    {"base64 UTF-8",
     "From: a@b.example\r\nSubject: b64\r\nMIME-Version: 1.0\r\n"
     "Content-Type: text/plain; charset=utf-8\r\n"
     "Content-Transfer-Encoding: base64\r\n\r\n"
     "R3LDvMOfZSBhdXMgS8O2bG4K\r\n",
     "b64",
     "Gr\xc3\xbc\xc3\x9f"
     "e aus K\xc3\xb6ln",
     0},
    {"RFC 2047 subject, Q and B, two charsets",
     "From: =?UTF-8?Q?J=C3=BCrgen?= <j@b.example>\r\n"
     "Subject: =?UTF-8?Q?Disk_full_on_h=C3=B6st?= "
     "=?ISO-8859-1?B?KGNhZukp?=\r\n\r\nbody\r\n",
     "Disk full on h\xc3\xb6st(caf\xc3\xa9)", "body", 0},
    {"HTML only",
     "From: a@b.example\r\nSubject: html\r\nMIME-Version: 1.0\r\n"
     "Content-Type: text/html; charset=utf-8\r\n\r\n"
     "<html><head><title>t</title><style>p{color:red}</style></head>"
     "<body><p>Hello &amp; <b>world</b></p><script>x()</script>"
     "line2 &#8364; &lt;ok&gt; &#x263A;<br>end</body></html>\r\n",
     "html", "Hello & world\nline2 \xe2\x82\xac <ok> \xe2\x98\xba\nend", 0},
    {"multipart/alternative: the plain part wins",
     "From: a@b.example\r\nSubject: alt\r\nMIME-Version: 1.0\r\n"
     "Content-Type: multipart/alternative; boundary=XX\r\n\r\n"
     "--XX\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n"
     "--XX\r\nContent-Type: text/plain\r\n\r\nplain\r\n--XX--\r\n",
     "alt", "plain", 0},
    {"an attached text is not the body",
     "From: a@b.example\r\nSubject: att\r\nMIME-Version: 1.0\r\n"
     "Content-Type: multipart/mixed; boundary=YY\r\n\r\n"
     "--YY\r\nContent-Type: text/plain\r\n"
     "Content-Disposition: attachment; filename=log.txt\r\n\r\n"
     "attached\r\n"
     "--YY\r\nContent-Type: text/html\r\n\r\n<div>shown</div>\r\n"
     "--YY--\r\n",
     "att", "shown", 0},
    {"the fleet's alarm: 8-bit UTF-8, no MIME, no Date, urgent",
     "From: alarm@node7.example\r\nTo: ops@example.net\r\n"
     "Subject: [node7] nginx.service failed \xe2\x9c\x97\r\n"
     "Priority: urgent\r\n\r\n"
     "\xe2\x97\x8f nginx.service - A high performance web server\r\n"
     "     Active: failed (Result: exit-code)\r\n",
     "[node7] nginx.service failed \xe2\x9c\x97",
     "\xe2\x97\x8f nginx.service - A high performance web server\n"
     "     Active: failed (Result: exit-code)",
     1},
    {"bytes that are not UTF-8 read as ISO-8859-1",
     "From: a@b.example\r\nSubject: raw\r\nX-Priority: 1 (Highest)\r\n"
     "\r\nna\xefve\r\n",
     "raw", "na\xc3\xafve", 1},
    {"an encoded line break cannot split the title; controls go",
     "From: a@b.example\r\n"
     "Subject: =?UTF-8?Q?a=0D=0AX-Injected:_1?=\r\nX-Priority: 3\r\n"
     "\r\nx\x01y\x1b[31m\r\n",
     "a X-Injected: 1", "xy[31m", 0},
    {"no subject", "From: a@b.example\r\n\r\nonly a body\r\n", "(no subject)",
     "only a body", 0},
};

static void
test_cases(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mail2text_note n;
		char want[1024];

		assert_int_equal(mail2text(cases[i].msg, strlen(cases[i].msg),
					   &plain_opts, &n),
				 0);
		printf("# %s\n", cases[i].name);
		assert_string_equal(n.title, cases[i].title);
		snprintf(want, sizeof(want), "%s\n\n\xe2\x80\x94 ",
			 cases[i].text);
		if (strncmp(n.text, want, strlen(want)) != 0)
			fail_msg("%s: text \"%s\"", cases[i].name, n.text);
		assert_true(strstr(n.text, ", on node7") != NULL);
		assert_int_equal(n.urgent, cases[i].urgent);
		assert_true(clean_utf8(n.text));
		assert_true(clean_utf8(n.title));
		assert_null(strpbrk(n.title, "\r\n\t"));
		mail2text_note_free(&n);
	}
}

static void
test_from_and_date(void **state)
{
	const char *m = "From: =?UTF-8?Q?J=C3=BCrgen?= <j@b.example>\r\n"
			"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
			"Subject: s\r\n\r\nb\r\n";
	struct mail2text_note n;

	(void)state;
	assert_int_equal(mail2text(m, strlen(m), &plain_opts, &n), 0);
	assert_string_equal(n.from, "J\xc3\xbcrgen <j@b.example>");
	assert_non_null(n.date);
	assert_string_equal(n.date, "2026-11-24T10:00:00Z");
	assert_string_equal(n.text, "b\n\n\xe2\x80\x94 J\xc3\xbcrgen "
				    "<j@b.example>, on node7");
	mail2text_note_free(&n);
	/* no From: the envelope sender */
	m = "Subject: s\r\n\r\nb\r\n";
	assert_int_equal(mail2text(m, strlen(m), &plain_opts, &n), 0);
	assert_string_equal(n.from, "env@host.example");
	assert_null(n.date);
	mail2text_note_free(&n);
}

/* A body of count copies of ch, as a message. */
static char *
big_msg(const char *ch, size_t count)
{
	size_t cl = strlen(ch);
	const char *head = "From: a@b.example\r\nSubject: big\r\n"
			   "Content-Type: text/plain; charset=utf-8\r\n\r\n";
	char *m = malloc(strlen(head) + cl * count + 1), *p;

	assert_non_null(m);
	p = m + sprintf(m, "%s", head);
	for (size_t i = 0; i < count; i++, p += cl)
		memcpy(p, ch, cl);
	*p = '\0';
	return m;
}

/* Counts text units: bytes, or UTF-16 code units. */
static size_t
count_units(const char *s, int utf16)
{
	size_t n = 0;

	for (const unsigned char *u = (const unsigned char *)s; *u; u++) {
		if (!utf16)
			n++;
		else if ((*u & 0xc0) != 0x80)
			n += (*u & 0xf8) == 0xf0 ? 2 : 1;
	}
	return n;
}

static void
test_truncation(void **state)
{
	static const struct {
		const char *ch; /* 1 to 4 bytes */
		size_t count;
		size_t limit;
		int utf16;
	} t[] = {
	    {"a", 5000, 4096, 0},		 /* ntfy, ASCII */
	    {"\xc3\xa9", 3000, 4096, 0},	 /* ntfy, 2-byte */
	    {"\xe2\x82\xac", 2000, 4096, 0},	 /* ntfy, 3-byte */
	    {"\xf0\x9f\x98\x80", 1500, 4096, 0}, /* ntfy, 4-byte */
	    {"\xc3\xa9", 5000, 4096, 1},	 /* Telegram: characters */
	    {"\xf0\x9f\x98\x80", 3000, 4096, 1}, /* Telegram: 2 units each */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct mail2text_opts o = plain_opts;
		struct mail2text_note n;
		char *m = big_msg(t[i].ch, t[i].count);
		const char *foot;
		size_t cl = strlen(t[i].ch), body;

		o.limit = t[i].limit;
		o.limit_utf16 = t[i].utf16;
		o.footer = 1;
		assert_int_equal(mail2text(m, strlen(m), &o, &n), 0);
		assert_true(n.truncated);
		assert_true(clean_utf8(n.text));
		assert_true(count_units(n.text, t[i].utf16) <= t[i].limit);
		/* close to the limit: the cut wastes less than a character */
		assert_true(count_units(n.text, t[i].utf16) + 4 > t[i].limit);
		foot = strstr(n.text, MAIL2TEXT_CUT_MARK "\n\n\xe2\x80\x94 ");
		assert_non_null(foot);
		/* whole characters before the mark */
		body = (size_t)(foot - n.text);
		assert_int_equal(body % cl, 0);
		for (size_t k = 0; k < body; k += cl)
			assert_memory_equal(n.text + k, t[i].ch, cl);
		mail2text_note_free(&n);
		free(m);
	}
}

static void
test_cut_and_title_in_text(void **state)
{
	struct mail2text_opts o = plain_opts;
	struct mail2text_note n;
	const char *m = "From: a@b.example\r\nSubject: T\r\n\r\nbody\r\n";
	int cut;
	char *s;

	(void)state;
	o.title_in_text = 1;
	o.footer = 1;
	assert_int_equal(mail2text(m, strlen(m), &o, &n), 0);
	assert_string_equal(n.text,
			    "T\n\nbody\n\n\xe2\x80\x94 a@b.example, on node7");
	assert_false(n.truncated);
	mail2text_note_free(&n);
	o.footer = 0;
	assert_int_equal(mail2text(m, strlen(m), &o, &n), 0);
	assert_string_equal(n.text, "T\n\nbody");
	mail2text_note_free(&n);
	/* fits exactly: no cut */
	s = mail2text_cut("abcd", 4, 0, &cut);
	assert_string_equal(s, "abcd");
	assert_false(cut);
	free(s);
	/* the mark takes 3 bytes, or one character */
	s = mail2text_cut("abcde", 4, 0, &cut);
	assert_string_equal(s, "a" MAIL2TEXT_CUT_MARK);
	assert_true(cut);
	free(s);
	s = mail2text_cut("abcde", 4, 1, &cut);
	assert_string_equal(s, "abc" MAIL2TEXT_CUT_MARK);
	free(s);
}

static void
test_unparsable(void **state)
{
	static const char *const junk[] = {
	    "",
	    "\r\n\r\n",
	    "no header at all\n",
	    "Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n",
	    "Subject: =?x?Q?=ZZ?= =?UTF-8?B?!!!?=\r\n\r\n<",
	    "Content-Type: text/html\r\n\r\n<p>&#0; &#xFFFFFFFF; &#55296; &",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		struct mail2text_note n;

		assert_int_equal(
		    mail2text(junk[i], strlen(junk[i]), &plain_opts, &n), 0);
		assert_true(clean_utf8(n.text));
		assert_true(clean_utf8(n.title));
		mail2text_note_free(&n);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cases),
	    cmocka_unit_test(test_from_and_date),
	    cmocka_unit_test(test_truncation),
	    cmocka_unit_test(test_cut_and_title_in_text),
	    cmocka_unit_test(test_unparsable),
	};

	mail2text_global_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}

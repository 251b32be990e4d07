/*
 * fuzz_msg_prepare.c - what `spoolctl submit` and `sendmail` run on stdin:
 * msg_headers_parse on the raw input, then msg_prepare. The first input
 * byte picks the options (-t, -f "" or none, -F, a size limit, an argument
 * recipient); the rest is the message. An accepted message must be the
 * canonical form the rest of spoold relies on: CRLF only, no NUL, no line
 * over 998 octets, exactly one Date, From and Message-ID, no Bcc, within
 * max_size, with a sender and recipients that pass msg_addr_check.
 * Preparing that output again must give it back unchanged.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "spool/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LINE_MAX_OCTETS 998
#define OPT_EXTRACT 0x01
#define OPT_NULL_SENDER 0x02
#define OPT_FULL_NAME 0x04
#define OPT_MAX_SIZE 0x08
#define OPT_RCPT_ARG 0x10

static size_t
header_count(const struct msg_headers *hs, const char *name)
{
	size_t n = 0, len = strlen(name);

	for (size_t i = 0; i < hs->n; i++)
		if (hs->h[i].name_len == len &&
		    strncasecmp(hs->h[i].name, name, len) == 0)
			n++;
	return n;
}

static void
check_canonical(const struct msg_prepared *p, const struct msg_submit_opts *o)
{
	struct msg_headers hs;
	size_t line = 0;
	char err[256];

	if (p->data == NULL || p->sender == NULL || p->rcpt.n == 0)
		abort();
	if (o->max_size > 0 && p->len > o->max_size)
		abort();
	for (size_t i = 0; i < p->len; i++) {
		char c = p->data[i];

		if (c == '\0')
			abort();
		if (c == '\r') {
			if (i + 1 >= p->len || p->data[i + 1] != '\n')
				abort(); /* bare CR */
			if (line > LINE_MAX_OCTETS)
				abort();
			line = 0;
			i++;
			continue;
		}
		if (c == '\n')
			abort(); /* bare LF */
		line++;
	}
	if (line > LINE_MAX_OCTETS)
		abort();
	if (msg_headers_parse(p->data, p->len, &hs, err, sizeof(err)) != 0)
		abort();
	if (header_count(&hs, "Date") != 1 || header_count(&hs, "From") != 1 ||
	    header_count(&hs, "Message-ID") != 1 ||
	    header_count(&hs, "Bcc") != 0)
		abort();
	msg_headers_free(&hs);
	if (msg_addr_check(p->sender, 1, err, sizeof(err)) != 0)
		abort();
	for (size_t i = 0; i < p->rcpt.n; i++)
		if (msg_addr_check(p->rcpt.v[i], 0, err, sizeof(err)) != 0)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const rcpt_arg[] = {"rcpt@example.org"};
	struct msg_submit_opts o = {
	    .user = "alice",
	    .hostname = "host.example",
	};
	struct msg_prepared p = {0}, again = {0};
	struct msg_headers hs;
	char err[256];
	char *in;
	size_t len, nrcpt;
	unsigned opts;

	if (size < 1)
		return 0;
	opts = data[0];
	len = size - 1;
	/* Exactly len bytes: stdin is not NUL-terminated either. */
	in = malloc(len ? len : 1);
	if (in == NULL)
		return 0;
	memcpy(in, data + 1, len);

	if (msg_headers_parse(in, len, &hs, err, sizeof(err)) == 0) {
		if (hs.body_off > len)
			abort();
		for (size_t i = 0; i < hs.n; i++) {
			const struct msg_header *h = &hs.h[i];

			if (h->start < in || h->start + h->len > in + len ||
			    h->value < h->start ||
			    h->value + h->value_len > h->start + h->len)
				abort();
		}
		msg_headers_free(&hs);
	}

	o.extract_rcpts = (opts & OPT_EXTRACT) != 0;
	o.sender = (opts & OPT_NULL_SENDER) ? "" : NULL;
	o.full_name = (opts & OPT_FULL_NAME) ? "Alice \"A.\" Example" : NULL;
	o.max_size = (opts & OPT_MAX_SIZE) ? 4096 : 0;
	nrcpt = (opts & OPT_RCPT_ARG) ? 1 : 0;
	err[0] = '\0';
	if (msg_prepare(in, len, &o, rcpt_arg, nrcpt, &p, err, sizeof(err)) ==
	    0) {
		check_canonical(&p, &o);
		/* Canonical is a fixed point: nothing added, moved or
		 * re-encoded a second time. Bcc is gone by now, so the
		 * recipients are passed as arguments. */
		o.extract_rcpts = 0;
		if (msg_prepare(p.data, p.len, &o,
				(const char *const *)p.rcpt.v, p.rcpt.n, &again,
				err, sizeof(err)) != 0)
			abort();
		if (again.len != p.len || memcmp(again.data, p.data, p.len))
			abort();
		msg_prepared_free(&again);
		msg_prepared_free(&p);
	} else if (err[0] == '\0') {
		abort();
	}
	free(in);
	return 0;
}

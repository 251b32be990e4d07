/*
 * fuzz_mail2text.c - what a push transport does to every message it
 * sends: mail2text, from a hostile message to a notification. The first
 * input byte picks the service's shape (limit in bytes or UTF-16 units,
 * title in the text, footer); the rest is the message. Whatever comes in,
 * the title must be one line of clean UTF-8 within its limit, and the text
 * clean UTF-8 within the service's limit.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mail2text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Text units: bytes, or UTF-16 code units; -1 if s is not clean UTF-8
 * (well-formed, no control character but \n and \t; none in a title). */
static long
clean_units(const char *s, int utf16, int one_line)
{
	const unsigned char *u = (const unsigned char *)s;
	long n = 0;

	for (size_t i = 0; u[i];) {
		size_t len = u[i] < 0x80	     ? 1
			     : (u[i] & 0xe0) == 0xc0 ? 2
			     : (u[i] & 0xf0) == 0xe0 ? 3
			     : (u[i] & 0xf8) == 0xf0 ? 4
						     : 0;

		if (len == 0)
			return -1;
		if (len == 1 && (u[i] < 0x20 || u[i] == 0x7f) &&
		    (one_line || (u[i] != '\n' && u[i] != '\t')))
			return -1;
		for (size_t k = 1; k < len; k++)
			if ((u[i + k] & 0xc0) != 0x80)
				return -1;
		n += utf16 ? (len == 4 ? 2 : 1) : (long)len;
		i += len;
	}
	return n;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t limits[] = {0, 64, 4096, 32768};
	struct mail2text_opts o = {.host = "node7", .sender = "a@b.example"};
	struct mail2text_note n;
	long units;

	if (size < 1)
		return 0;
	o.limit = limits[data[0] & 3];
	o.limit_utf16 = (data[0] >> 2) & 1;
	o.title_in_text = (data[0] >> 3) & 1;
	o.footer = (data[0] >> 4) & 1;
	if (mail2text((const char *)data + 1, size - 1, &o, &n) < 0)
		return 0;
	units = clean_units(n.title, 0, 1);
	if (units < 0 || units > MAIL2TEXT_TITLE_MAX)
		abort();
	units = clean_units(n.text, o.limit_utf16, 0);
	if (units < 0 || (o.limit > 0 && (size_t)units > o.limit))
		abort();
	if (clean_units(n.from, 0, 1) < 0)
		abort();
	mail2text_note_free(&n);
	return 0;
}

/*
 * fuzz_addr.c - the address parsers: msg_addr_check (envelope addresses,
 * -f and recipients), msg_addr_list_parse (To/Cc/Bcc values, which are not
 * NUL-terminated inside a message) and msg__rcpt_arg (command-line
 * recipients, qualified with a host). The first input byte picks the
 * null-sender flag; the rest is the text. Whatever the lists yield as a
 * recipient must itself pass msg_addr_check and carry no control
 * character, since it becomes an SMTP command line and an envelope line.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spool/msg.h"
#include "msg_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
addr_must_be_clean(const char *a)
{
	char err[256];

	if (msg_addr_check(a, 0, err, sizeof(err)) != 0)
		abort();
	for (const unsigned char *p = (const unsigned char *)a; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			abort();
	if (strlen(a) > MSG_ADDR_MAX)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msg_strlist list = {0};
	char err[256];
	char *exact, *str;
	size_t len;
	int allow_empty;

	if (size < 1)
		return 0;
	allow_empty = data[0] & 1;
	data++;
	len = size - 1;
	/* exact: no terminator, so a read past len is an ASan report. */
	exact = malloc(len ? len : 1);
	str = malloc(len + 1);
	if (exact == NULL || str == NULL)
		goto out;
	memcpy(exact, data, len);
	memcpy(str, data, len);
	str[len] = '\0';

	err[0] = '\0';
	if (msg_addr_check(str, allow_empty, err, sizeof(err)) == 0) {
		if (str[0] != '\0')
			addr_must_be_clean(str);
	} else if (err[0] == '\0') {
		abort();
	}

	if (msg_addr_list_parse(exact, len, &list, err, sizeof(err)) == 0) {
		for (size_t i = 0; i < list.n; i++)
			if (list.v[i] == NULL)
				abort();
	}
	msg_strlist_free(&list);

	memset(&list, 0, sizeof(list));
	if (msg__rcpt_arg(&list, str, "host.example", NULL, "recipient", err,
			  sizeof(err)) == 0) {
		for (size_t i = 0; i < list.n; i++)
			addr_must_be_clean(list.v[i]);
	}
	msg_strlist_free(&list);
out:
	free(exact);
	free(str);
	return 0;
}

/*
 * fuzz_aliases.c - the aliases file parser (msg_aliases_parse) and the
 * expansion of every name it keeps (msg_local_resolve). What the parser
 * keeps must be usable: names are lower case, bounded and free of control
 * characters and white space; each target is an address that passes
 * msg_addr_check or a local name. Every name must then expand, loops and
 * deep chains included, into addresses that pass msg_addr_check, since
 * they become envelope lines and SMTP commands.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spool/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = {"localhost", "localhost.localdomain",
				    "host", "host.example.org"};

static void
name_must_be_clean(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len > MSG_LOCAL_MAX)
		abort();
	for (const unsigned char *p = (const unsigned char *)n; *p; p++)
		if (*p <= 0x20 || *p == 0x7f || isupper(*p) || *p == ':' ||
		    *p == '@' || *p == ',')
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msg_local l = {
	    .admin = "admin@example.org",
	    .domain = "host.example.org",
	    .names = names,
	    .nnames = sizeof(names) / sizeof(names[0]),
	};
	struct msg_aliases a;
	char err[256];

	/* the warning callback is NULL-safe; both ways are exercised */
	if (msg_aliases_parse((const char *)data, size, &a, NULL, NULL, err,
			      sizeof(err)) != 0)
		return 0;
	l.aliases = &a;
	for (size_t i = 0; i < a.n; i++) {
		struct msg_strlist out = {0};

		name_must_be_clean(a.v[i].name);
		if (i > 0 && strcmp(a.v[i - 1].name, a.v[i].name) >= 0)
			abort(); /* sorted, no name twice */
		if (msg_aliases_find(&a, a.v[i].name) != &a.v[i])
			abort();
		for (size_t t = 0; t < a.v[i].targets.n; t++) {
			const char *tg = a.v[i].targets.v[t];

			if (strchr(tg, '@') != NULL) {
				if (msg_addr_check(tg, 0, err, sizeof(err)))
					abort();
			} else {
				if (strlen(tg) > MSG_LOCAL_MAX)
					abort();
			}
		}
		if (msg_local_resolve(&l, a.v[i].name, &out, err,
				      sizeof(err)) != 0)
			abort();
		if (out.n == 0)
			abort(); /* mail to a name never vanishes */
		for (size_t r = 0; r < out.n; r++)
			if (msg_addr_check(out.v[r], 0, err, sizeof(err)) != 0)
				abort();
		msg_strlist_free(&out);
	}
	msg_aliases_free(&a);
	return 0;
}

/*
 * fuzz_spool_parse.c - the spool file envelope parser (spool_parse), which
 * spoold runs on every file found in new/ and which other programs may
 * write. Beyond not crashing, an accepted envelope must be one the daemon
 * can act on: the body offset inside the file, and each recipient's mark
 * offset pointing at the R/D/F byte that spool_file_mark later rewrites in
 * place, so a bad offset would corrupt the message rather than the mark.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spool/queue.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char
state_letter(enum queue_rcpt_state st)
{
	switch (st) {
	case QUEUE_RCPT_PENDING:
		return 'R';
	case QUEUE_RCPT_SENT:
		return 'D';
	case QUEUE_RCPT_FAILED:
		return 'F';
	}
	return '?';
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly size bytes, so ASan sees any read past len. */
	char *copy = malloc(size ? size : 1);
	struct spool_envelope env;
	size_t body_off = 0;
	char err[256];

	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	err[0] = '\0';
	if (spool_parse(copy, size, &env, &body_off, err, sizeof(err)) == 0) {
		if (body_off > size || env.sender == NULL || env.nrcpt == 0)
			abort();
		for (size_t i = 0; i < env.nrcpt; i++) {
			const struct spool_rcpt *r = &env.rcpt[i];

			if (r->mark_off < 0 || (size_t)r->mark_off >= body_off)
				abort();
			if (copy[r->mark_off] != state_letter(r->state))
				abort();
			if (r->address[0] == '\0' ||
			    strlen(r->address) > QUEUE_ADDR_MAX)
				abort();
		}
		spool_envelope_free(&env);
	} else if (err[0] == '\0') {
		abort(); /* every refusal must say why */
	}
	free(copy);
	return 0;
}

/*
 * fuzz_pickup_check.c - the check spoold applies to every file it picks
 * up from new/ (spool_pickup_check), whoever wrote it. Beyond not
 * crashing, an accepted file must be one submission would have made: at
 * most SPOOL_RCPT_MAX recipients, a message within max_size (+ the trace
 * header's room) without a NUL byte, and no envelope address that could
 * carry anything past the angle brackets of MAIL FROM or RCPT TO to a
 * relay (space, angle bracket, control character) or exceed the limits;
 * and a coalescing key that is one printable word of at most
 * SPOOL_KEY_MAX bytes, a window within its bounds.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spool/queue.h"

#define FUZZ_MAX_SIZE 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* No byte of a as SMTP could end the path or add a parameter. */
static int
addr_safe(const char *a)
{
	int quoted = a[0] == '"';

	if (strlen(a) > 254)
		return 0;
	for (const unsigned char *c = (const unsigned char *)a; *c; c++) {
		if (*c < 0x20 || *c == 0x7f)
			return 0;
		if (!quoted && (*c == ' ' || *c == '<' || *c == '>'))
			return 0;
	}
	return 1;
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
	if (spool_pickup_check(copy, size, FUZZ_MAX_SIZE, &env, &body_off, err,
			       sizeof(err)) == 0) {
		if (body_off > size || env.nrcpt == 0 ||
		    env.nrcpt > SPOOL_RCPT_MAX)
			abort();
		if (size - body_off > FUZZ_MAX_SIZE + SPOOL_TRACE_MAX ||
		    memchr(copy + body_off, '\0', size - body_off) != NULL)
			abort();
		if (!addr_safe(env.sender))
			abort();
		if (env.key != NULL &&
		    spool_key_problem(env.key, strlen(env.key)) != NULL)
			abort();
		if (env.every < 0 || env.every > SPOOL_EVERY_MAX ||
		    (env.urgent != 0 && env.urgent != 1))
			abort();
		for (size_t i = 0; i < env.nrcpt; i++)
			if (env.rcpt[i].address[0] == '\0' ||
			    !addr_safe(env.rcpt[i].address))
				abort();
		spool_envelope_free(&env);
	} else if (err[0] == '\0') {
		abort(); /* every refusal must say why */
	}
	free(copy);
	return 0;
}

/*
 * knob.c - test knobs: SPOOLD_TEST_* variables that shorten the daemon's
 * fixed periods (the rescan, the breaker's first cool-down), so that tests
 * check what happens after them without waiting minutes or depending on
 * the clock. conf.c ignores SPOOLD_TEST_* when it reads the environment.
 */
#include <stdlib.h>

#include "spool/util.h"
#include "spoold.h"

int64_t
spoold_knob(const char *name, int64_t dflt)
{
	const char *v = getenv(name);
	uint64_t u;

	if (v == NULL || parse_uint(v, 1, INT32_MAX, &u) < 0)
		return dflt;
	return (int64_t)u;
}

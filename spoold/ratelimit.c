/*
 * ratelimit.c - the token bucket of a transport's rate limit (see
 * ratelimit.h). No clock, no loop, no allocation: the caller passes the
 * time and owns the struct.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ratelimit.h"

/* Counts the tokens gained since at_ms, and the way back up from a
 * slow-down: a period with no refusal halves the divisor. */
static void
bucket_refill(struct rate_bucket *b, int64_t now_ms)
{
	if (now_ms <= b->at_ms)
		return;
	if (b->count > 0) {
		while (b->divisor > 1 &&
		       now_ms - b->slowed_ms >= b->period_ms) {
			b->divisor /= 2;
			b->slowed_ms += b->period_ms;
		}
		b->tokens += (double)(now_ms - b->at_ms) * b->count /
			     ((double)b->period_ms * b->divisor);
		if (b->tokens > b->burst)
			b->tokens = b->burst;
	}
	b->at_ms = now_ms;
}

void
rate_bucket_init(struct rate_bucket *b, unsigned count, int64_t period_ms,
		 unsigned burst, int64_t now_ms)
{
	memset(b, 0, sizeof(*b));
	b->divisor = 1;
	rate_bucket_set(b, count, period_ms, burst, now_ms);
	b->tokens = b->burst;
}

void
rate_bucket_set(struct rate_bucket *b, unsigned count, int64_t period_ms,
		unsigned burst, int64_t now_ms)
{
	bucket_refill(b, now_ms);
	b->count = count;
	b->period_ms = period_ms > 0 ? period_ms : 1;
	b->burst = burst > 0 ? burst : count;
	if (b->tokens > b->burst)
		b->tokens = b->burst;
	if (count == 0)
		b->divisor = 1;
	b->at_ms = now_ms;
}

size_t
rate_bucket_take(struct rate_bucket *b, size_t want, int64_t now_ms)
{
	double whole;
	size_t k;

	if (now_ms < b->paused_until_ms)
		return 0;
	if (b->count == 0)
		return want;
	bucket_refill(b, now_ms);
	/* a hair of slack: a token counted as 0.9999999 is a token */
	whole = floor(b->tokens + 1e-9);
	k = whole < (double)want ? (size_t)whole : want;
	b->tokens -= (double)k;
	if (b->tokens < 0)
		b->tokens = 0;
	return k;
}

int64_t
rate_bucket_wait_ms(struct rate_bucket *b, int64_t now_ms)
{
	int64_t pause =
	    b->paused_until_ms > now_ms ? b->paused_until_ms - now_ms : 0;
	int64_t wait;

	if (b->count == 0)
		return pause;
	bucket_refill(b, now_ms);
	if (b->tokens + 1e-9 >= 1.0)
		return pause;
	wait = (int64_t)ceil((1.0 - b->tokens) * (double)b->period_ms *
			     b->divisor / b->count);
	if (wait < 1)
		wait = 1;
	return wait > pause ? wait : pause;
}

int64_t
rate_bucket_refused(struct rate_bucket *b, int64_t now_ms,
		    int64_t first_pause_ms, int64_t asked_ms)
{
	int64_t pause;

	/* sessions that began before the pause end after it began: one
	 * storm of refusals is one refusal */
	if (now_ms < b->paused_until_ms)
		return b->paused_until_ms - now_ms;
	pause = b->pause_ms > 0 ? b->pause_ms * 2 : first_pause_ms;
	if (pause > RATE_PAUSE_MAX_MS)
		pause = RATE_PAUSE_MAX_MS;
	b->pause_ms = pause;
	if (asked_ms > pause)
		pause = asked_ms;
	b->paused_until_ms = now_ms + pause;
	if (b->count > 0) {
		bucket_refill(b, now_ms);
		if (b->divisor < RATE_SLOW_MAX)
			b->divisor *= 2;
		b->slowed_ms = now_ms;
		b->tokens = 0;
	}
	return pause;
}

void
rate_bucket_relieved(struct rate_bucket *b)
{
	b->pause_ms = 0;
}

const char *
rate_bucket_format(const struct rate_bucket *b, char *buf, size_t len)
{
	int64_t s = b->period_ms * b->divisor / 1000;

	if (b->count == 0)
		snprintf(buf, len, "none");
	else if (s % 86400 == 0)
		snprintf(buf, len, "%u/%lldd", b->count,
			 (long long)(s / 86400));
	else if (s % 3600 == 0)
		snprintf(buf, len, "%u/%lldh", b->count, (long long)(s / 3600));
	else if (s % 60 == 0)
		snprintf(buf, len, "%u/%lldm", b->count, (long long)(s / 60));
	else
		snprintf(buf, len, "%u/%llds", b->count, (long long)s);
	return buf;
}

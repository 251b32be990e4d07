/*
 * test_ratelimit.c - rate limits: parse_rate and the rate keys of a
 * transport section (with the line spoold prints for a bad value), the
 * token bucket of spoold/ratelimit.c (burst, refill, pauses and the
 * slow-down a relay's refusal imposes, the way back), and which replies
 * count as a relay's refusal for rate.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "spool/conf.h"
#include "spool/transport.h"
#include "spool/util.h"
#include "../../spoold/ratelimit.h"

static void
test_parse_rate(void **state)
{
	static const struct {
		const char *in;
		int rc;
		uint64_t count;
		int64_t period;
	} t[] = {
	    {"60/1m", 0, 60, 60},
	    {"1/5s", 0, 1, 5},
	    {"3600/1h", 0, 3600, 3600},
	    {"60/m", 0, 60, 60},
	    {"200/1d", 0, 200, 86400},
	    {"10/30", 0, 10, 30},
	    {"1000000/1s", 0, 1000000, 1},
	    {"60", -1, 0, 0},
	    {"/1m", -1, 0, 0},
	    {"60/", -1, 0, 0},
	    {"0/1m", -1, 0, 0},
	    {"-1/1m", -1, 0, 0},
	    {"60/0s", -1, 0, 0},
	    {"60/2w", -1, 0, 0},
	    {"1000001/1s", -1, 0, 0},
	    {"60/1x", -1, 0, 0},
	    {"60/1m/2", -1, 0, 0},
	    {"sixty/1m", -1, 0, 0},
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		uint64_t count = 0;
		int64_t period = 0;
		int rc = parse_rate(t[i].in, &count, &period);

		if (t[i].rc == 0) {
			assert_int_equal(rc, 0);
			assert_int_equal(count, t[i].count);
			assert_int_equal(period, t[i].period);
		} else {
			assert_true(rc < 0);
		}
	}
}

static char conf_path[] = "/tmp/test_ratelimit.XXXXXX";

static int
load(struct conf *cf, const char *transport_keys, char *err, size_t errlen)
{
	int fd = mkstemp(conf_path);
	FILE *fp;
	int rc;

	assert_true(fd >= 0);
	fp = fdopen(fd, "w");
	assert_non_null(fp);
	fprintf(fp,
		"[spool]\ndir = /tmp/x\n[delivery]\nroute = a\n"
		"[transport a]\nhost = h\n%s",
		transport_keys);
	fclose(fp);
	rc = conf_load(cf, conf_path, err, errlen);
	unlink(conf_path);
	strcpy(conf_path, "/tmp/test_ratelimit.XXXXXX");
	return rc;
}

static void
test_conf_keys(void **state)
{
	static const struct {
		const char *keys;
		const char *err; /* NULL: loads */
		unsigned count, burst;
		int64_t period;
		int next;
	} t[] = {
	    {"", NULL, 0, 0, 0, 0},
	    {"rate = 60/1m\n", NULL, 60, 60, 60, 0},
	    {"rate = 60/1m\nburst = 3600\nrate_overflow = next\n", NULL, 60,
	     3600, 60, 1},
	    {"rate = 1/5s\nrate_overflow = wait\n", NULL, 1, 1, 5, 0},
	    {"rate = 60 a minute\n",
	     ":7: [transport a] rate: \"60 a minute\" is not MESSAGES/DURATION "
	     "with 1 to 1000000 messages per 1s to 7d (e.g. 60/1m, 1/5s, "
	     "3600/1h)",
	     0, 0, 0, 0},
	    {"rate = 60/1m\nburst = 0\n",
	     ":8: [transport a] burst: \"0\" is not a number of messages from "
	     "1 to 1000000",
	     0, 0, 0, 0},
	    {"rate_overflow = later\n",
	     ":7: [transport a] rate_overflow: \"later\" is not wait or next",
	     0, 0, 0, 0},
	    {"burst = 10\n",
	     "[transport a] burst: needs rate (e.g. rate = "
	     "60/1m)",
	     0, 0, 0, 0},
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		struct conf cf;
		char err[1024] = "";
		int rc = load(&cf, t[i].keys, err, sizeof(err));

		if (t[i].err != NULL) {
			assert_int_equal(rc, EX_CONFIG);
			if (strstr(err, t[i].err) == NULL)
				fail_msg("%s: got \"%s\"", t[i].keys, err);
		} else {
			assert_int_equal(rc, 0);
			assert_int_equal(cf.transports[0].rate_count,
					 t[i].count);
			assert_int_equal(cf.transports[0].burst, t[i].burst);
			assert_int_equal(cf.transports[0].rate_period,
					 t[i].period);
			assert_int_equal(cf.transports[0].rate_overflow_next,
					 t[i].next);
		}
		conf_free(&cf);
	}
}

/* 20 per 10 s: a full bucket of 20, then one token per 500 ms. */
static void
test_bucket_burst_refill(void **state)
{
	struct rate_bucket b;

	(void)state;
	rate_bucket_init(&b, 20, 10000, 0, 1000);
	assert_int_equal(rate_bucket_wait_ms(&b, 1000), 0);
	/* a session takes no more than there are tokens */
	assert_int_equal(rate_bucket_take(&b, 50, 1000), 20);
	assert_int_equal(rate_bucket_take(&b, 50, 1000), 0);
	assert_int_equal(rate_bucket_wait_ms(&b, 1000), 500);
	assert_int_equal(rate_bucket_wait_ms(&b, 1200), 300);
	assert_int_equal(rate_bucket_take(&b, 50, 1499), 0);
	assert_int_equal(rate_bucket_take(&b, 50, 1500), 1);
	/* 10 s idle: full again, never more than the burst */
	assert_int_equal(rate_bucket_take(&b, 50, 60000), 20);
	/* partial demand leaves the rest */
	rate_bucket_init(&b, 60, 60000, 3600, 0);
	assert_int_equal(rate_bucket_take(&b, 50, 0), 50);
	assert_int_equal(rate_bucket_take(&b, 50, 0), 50);
	/* one token a second at 60/1m */
	rate_bucket_init(&b, 60, 60000, 1, 0);
	assert_int_equal(rate_bucket_take(&b, 5, 0), 1);
	assert_int_equal(rate_bucket_take(&b, 5, 999), 0);
	assert_int_equal(rate_bucket_take(&b, 5, 1000), 1);
	assert_int_equal(rate_bucket_take(&b, 5, 5000), 1); /* burst 1 */
}

/* Over 100 s at 20 per 10 s, taking whenever a token is due, never more
 * than 20 + 2 per second leave. */
static void
test_bucket_long_run(void **state)
{
	struct rate_bucket b;
	size_t total = 0;

	(void)state;
	rate_bucket_init(&b, 20, 10000, 0, 0);
	for (int64_t now = 0; now <= 100000;) {
		total += rate_bucket_take(&b, 50, now);
		now += rate_bucket_wait_ms(&b, now);
	}
	assert_int_equal(total, 20 + 200);
}

/* No configured rate: only a relay's refusal holds the transport back, 5 s
 * then twice as long per further refusal, and the relay's own Retry-After
 * if longer; a session with no refusal starts the doubling again. */
static void
test_bucket_refused_no_rate(void **state)
{
	struct rate_bucket b;

	(void)state;
	rate_bucket_init(&b, 0, 1000, 0, 0);
	assert_int_equal(rate_bucket_take(&b, 50, 0), 50);
	assert_int_equal(rate_bucket_refused(&b, 0, 5000, 0), 5000);
	assert_int_equal(rate_bucket_take(&b, 50, 4999), 0);
	assert_int_equal(rate_bucket_wait_ms(&b, 1000), 4000);
	/* a session begun before the pause: the same pause, not doubled */
	assert_int_equal(rate_bucket_refused(&b, 100, 5000, 0), 4900);
	assert_int_equal(rate_bucket_take(&b, 50, 5000), 50);
	assert_int_equal(rate_bucket_refused(&b, 5000, 5000, 0), 10000);
	assert_int_equal(rate_bucket_refused(&b, 15000, 5000, 0), 20000);
	/* the relay asks for longer */
	assert_int_equal(rate_bucket_refused(&b, 35000, 5000, 60000), 60000);
	rate_bucket_relieved(&b);
	assert_int_equal(rate_bucket_refused(&b, 95000, 5000, 0), 5000);
	/* capped */
	for (int64_t now = 100000; now < 10000000;)
		now += rate_bucket_refused(&b, now, 5000, 0);
	assert_int_equal(b.pause_ms, RATE_PAUSE_MAX_MS);
}

/* A configured rate is halved by a refusal (down to a sixteenth) and
 * doubles back per period with no refusal. */
static void
test_bucket_refused_slows(void **state)
{
	struct rate_bucket b;
	char buf[32];

	(void)state;
	rate_bucket_init(&b, 20, 10000, 0, 0);
	assert_string_equal(rate_bucket_format(&b, buf, sizeof(buf)), "20/10s");
	assert_int_equal(rate_bucket_take(&b, 5, 0), 5);
	assert_int_equal(rate_bucket_refused(&b, 0, 1000, 0), 1000);
	assert_string_equal(rate_bucket_format(&b, buf, sizeof(buf)), "20/20s");
	/* the tokens are gone, and come at half the rate after the pause */
	assert_int_equal(rate_bucket_take(&b, 5, 1000), 1);
	assert_int_equal(rate_bucket_wait_ms(&b, 1000), 1000);
	/* further refusals, each once the pause before it ended */
	for (int64_t i = 0, now = 1000; i < 4; i++)
		now += rate_bucket_refused(&b, now, 1000, 0);
	assert_int_equal(b.divisor, RATE_SLOW_MAX);
	/* four quiet periods: back to 20/10s */
	(void)rate_bucket_take(&b, 1, 1000000);
	assert_string_equal(rate_bucket_format(&b, buf, sizeof(buf)), "20/10s");
	/* a reload keeps the tokens, capped by the new burst */
	rate_bucket_init(&b, 60, 60000, 0, 0);
	rate_bucket_set(&b, 10, 60000, 0, 0);
	assert_int_equal(rate_bucket_take(&b, 50, 0), 10);
	rate_bucket_set(&b, 3600, 3600000, 0, 0);
	assert_int_equal(rate_bucket_take(&b, 50, 0), 0);
	assert_string_equal(rate_bucket_format(&b, buf, sizeof(buf)),
			    "3600/1h");
}

static void
test_reply_is_rate(void **state)
{
	static const struct {
		int code;
		const char *text;
		int rate;
	} t[] = {
	    {450, "450 4.7.0 rate limit exceeded", 1},
	    {451, "451 4.7.1 Ratelimit exceeded", 1},
	    {452, "452 4.5.3 Too many recipients", 1},
	    {421, "421 4.7.0 Error: too many connections from 127.0.0.1", 1},
	    {450, "450 4.7.1 Error: too much mail from 127.0.0.1", 1},
	    {450, "450 4.7.0 try again later", 1},
	    {451, "451-4.7.1 policy\r\n451 4.7.1 later", 1},
	    {450, "450 4.2.0 <a@b>: Recipient address rejected: Greylisted", 0},
	    {451, "451 4.7.1 Greylisting in action, please come back later", 0},
	    {451, "451 4.3.0 Local error in processing", 0},
	    {550, "550 5.7.1 rate limit exceeded", 0},
	    {250, "250 2.0.0 ok", 0},
	    {0, "", 0},
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(t); i++)
		if (transport_reply_is_rate(t[i].code, t[i].text) != t[i].rate)
			fail_msg("%s: want %d", t[i].text, t[i].rate);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_rate),
	    cmocka_unit_test(test_conf_keys),
	    cmocka_unit_test(test_bucket_burst_refill),
	    cmocka_unit_test(test_bucket_long_run),
	    cmocka_unit_test(test_bucket_refused_no_rate),
	    cmocka_unit_test(test_bucket_refused_slows),
	    cmocka_unit_test(test_reply_is_rate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

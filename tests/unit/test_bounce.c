/*
 * test_bounce.c - unit tests of spoold/bounce.c: the failure notice as
 * composed (RFC 3464 structure, statuses, the original headers in CRLF,
 * no notice for the null sender) and the two rate limits.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../spoold/bounce.h"

static const char headers[] = "From: App <app@example.org>\n"
			      "To: dead@example.net\r\n"
			      "Subject: disk full\n"
			      "Message-ID: <m1@example.org>\n"
			      "\n"
			      "Body: not a header\n";

static char *
compose(const struct bounce_rcpt *rc, size_t n, const char *sender)
{
	struct bounce_report r = {
	    .id = "0123456789abcdef01234567",
	    .sender = sender,
	    .hostname = "host.example",
	    .queued_at = 1764000000,
	    .failed_at = 1764000600,
	    .rcpt = rc,
	    .nrcpt = n,
	    .headers = headers,
	    .headers_len = sizeof(headers) - 1,
	};
	char *out = NULL;
	size_t len = 0;

	if (bounce_compose(&r, &out, &len) != 0)
		return NULL;
	assert_int_equal(strlen(out), len);
	return out;
}

static void
test_compose_structure(void **ctx)
{
	static const struct bounce_rcpt rc[] = {
	    {"dead@example.net", "550 5.1.1 <dead@example.net>: no such user",
	     0},
	    {"slow@example.net", "451 4.3.0 try later", 1},
	    {"odd@example.net", "550 rejected", 0},
	};
	char *m = compose(rc, 3, "app@example.org");
	const char *p;

	(void)ctx;
	assert_non_null(m);
	assert_non_null(strstr(m, "Content-Type: multipart/report; "
				  "report-type=delivery-status;"));
	assert_non_null(strstr(m, "\r\nTo: <app@example.org>\r\n"));
	assert_non_null(strstr(m, "\r\nAuto-Submitted: auto-replied\r\n"));
	assert_non_null(strstr(m, "Content-Type: message/delivery-status"));
	assert_non_null(strstr(m, "Content-Type: text/rfc822-headers"));
	assert_non_null(strstr(m, "Reporting-MTA: dns; host.example\r\n"));
	/* the enhanced code of the reply, expiry as 4.4.7, else the class */
	assert_non_null(strstr(m, "Final-Recipient: rfc822; dead@example.net"
				  "\r\nAction: failed\r\nStatus: 5.1.1\r\n"
				  "Diagnostic-Code: smtp; 550 5.1.1"));
	assert_non_null(strstr(m, "rfc822; slow@example.net\r\nAction: "
				  "failed\r\nStatus: 4.4.7\r\n"));
	assert_non_null(strstr(m, "rfc822; odd@example.net\r\nAction: "
				  "failed\r\nStatus: 5.0.0\r\n"));
	/* the original header section, CRLF, without its body */
	assert_non_null(strstr(m, "\r\n\r\nFrom: App <app@example.org>\r\n"
				  "To: dead@example.net\r\n"
				  "Subject: disk full\r\n"
				  "Message-ID: <m1@example.org>\r\n\r\n--"));
	assert_null(strstr(m, "Body: not a header"));
	/* every line ends in CRLF */
	for (p = m; (p = strchr(p, '\n')) != NULL; p++)
		assert_true(p > m && p[-1] == '\r');
	/* exactly one Date, From and Message-ID, so libESMTP adds none */
	assert_non_null(strstr(m, "\r\nDate: "));
	assert_true(
	    strncmp(m, "From: Mail Delivery System <MAILER-DAEMON@", 42) == 0);
	assert_non_null(strstr(m, "\r\nMessage-ID: <"));
	free(m);
}

static void
test_compose_refuses_null_sender(void **ctx)
{
	static const struct bounce_rcpt rc[] = {{"x@example.net", NULL, 0}};

	(void)ctx;
	assert_null(compose(rc, 1, ""));
	assert_null(compose(rc, 0, "app@example.org"));
}

static void
test_limit_per_sender(void **ctx)
{
	struct bounce_limiter *l;
	const char *why = NULL;
	int64_t t = 1764000000;

	(void)ctx;
	assert_int_equal(bounce_limiter_new(&l), 0);
	for (int i = 0; i < BOUNCE_SENDER_PER_HOUR; i++)
		assert_int_equal(
		    bounce_limiter_take(l, "a@x", t + i * 60, &why), 0);
	/* the next one within the hour is held back, case-blind */
	assert_int_equal(bounce_limiter_take(l, "A@X", t + 3000, &why), -EBUSY);
	assert_non_null(strstr(why, "an hour"));
	/* another sender is not */
	assert_int_equal(bounce_limiter_take(l, "b@x", t + 3000, &why), 0);
	/* an hour after the first, one more is allowed, then not */
	assert_int_equal(bounce_limiter_take(l, "a@x", t + 3600, &why), 0);
	assert_int_equal(bounce_limiter_take(l, "a@x", t + 3601, &why), -EBUSY);
	bounce_limiter_free(l);
}

/* n notices to the senders s0@x, s1@x, ..., step seconds apart from t:
 * each must be allowed. */
static void
take_distinct(struct bounce_limiter *l, int n, int64_t t, int step)
{
	const char *why = NULL;
	char sender[32];

	for (int i = 0; i < n; i++) {
		snprintf(sender, sizeof(sender), "s%d@x", i);
		assert_int_equal(
		    bounce_limiter_take(l, sender, t + step * i, &why), 0);
	}
}

static void
test_limit_total(void **ctx)
{
	struct bounce_limiter *l;
	const char *why = NULL;
	int64_t t = 1764000000;

	(void)ctx;
	assert_int_equal(bounce_limiter_new(&l), 0);
	take_distinct(l, BOUNCE_TOTAL_PER_MINUTE, t, 0);
	assert_int_equal(bounce_limiter_take(l, "new@x", t + 59, &why), -EBUSY);
	assert_non_null(strstr(why, "a minute"));
	/* a suppressed notice is not counted against its sender */
	assert_int_equal(bounce_limiter_take(l, "new@x", t + 60, &why), 0);
	bounce_limiter_free(l);
}

static void
test_limit_senders_table(void **ctx)
{
	struct bounce_limiter *l;
	const char *why = NULL;
	int64_t t = 1764000000;

	(void)ctx;
	assert_int_equal(bounce_limiter_new(&l), 0);
	/* 3 s apart (20 a minute) keeps the total limit out of the way */
	take_distinct(l, BOUNCE_SENDERS_MAX, t, 3);
	/* every slot holds a sender seen within the hour */
	assert_int_equal(bounce_limiter_take(l, "late@x", t + 3500, &why),
			 -EBUSY);
	assert_non_null(strstr(why, "senders"));
	/* an hour after the first sender, its slot is free again */
	assert_int_equal(bounce_limiter_take(l, "late@x", t + 3600, &why), 0);
	bounce_limiter_free(l);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_compose_structure),
	    cmocka_unit_test(test_compose_refuses_null_sender),
	    cmocka_unit_test(test_limit_per_sender),
	    cmocka_unit_test(test_limit_total),
	    cmocka_unit_test(test_limit_senders_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

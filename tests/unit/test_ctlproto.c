/*
 * test_ctlproto.c - the control socket's framing (ctl_reader_feed) and
 * grammar (ctl_request_parse), which spoold runs on whatever any local
 * user sends.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "spool/ctlproto.h"

static struct ctl_reader rd;

/* Feeds text in reads of step bytes; returns the last result. */
static int
feed(const char *text, size_t len, size_t step)
{
	int rc = 0;

	rd.len = 0;
	for (size_t off = 0; off < len && rc == 0; off += step)
		rc = ctl_reader_feed(&rd, text + off,
				     len - off < step ? len - off : step);
	return rc;
}

static void
test_reader_lines(void **state)
{
	(void)state;
	assert_int_equal(feed("PING\n", 5, 1), 1);
	assert_string_equal(rd.buf, "PING");
	assert_int_equal(rd.len, 4);
	/* one request per connection: what follows the newline is dropped */
	assert_int_equal(feed("PING\nDELETE x\n", 14, 14), 1);
	assert_string_equal(rd.buf, "PING");
	assert_int_equal(feed("PIN", 3, 2), 0);
}

static void
test_reader_cap(void **state)
{
	static char big[CTL_REQUEST_MAX + 1];

	(void)state;
	memset(big, 'A', sizeof(big));
	/* CTL_REQUEST_MAX - 1 bytes and the newline fit, one more does not */
	big[CTL_REQUEST_MAX - 1] = '\n';
	assert_int_equal(feed(big, CTL_REQUEST_MAX, 100), 1);
	assert_int_equal(rd.len, CTL_REQUEST_MAX - 1);
	big[CTL_REQUEST_MAX - 1] = 'A';
	big[CTL_REQUEST_MAX] = '\n';
	assert_int_equal(feed(big, CTL_REQUEST_MAX + 1, 4096), -E2BIG);
}

/* Parses line; returns the result, the request in *req, *why on error. */
static int
parse(const char *line, struct ctl_request *req, const char **why)
{
	size_t len = strlen(line);

	assert_int_equal(feed(line, len, len), 1);
	*why = NULL;
	return ctl_request_parse(rd.buf, rd.len, req, why);
}

static void
test_parse_accepts(void **state)
{
	struct ctl_request req;
	const char *why;

	(void)state;
	assert_int_equal(parse("PING\n", &req, &why), 0);
	assert_int_equal(req.verb, CTL_PING);
	assert_int_equal(req.nargs, 0);
	assert_int_equal(parse("PROBE\r\n", &req, &why), 0);
	assert_int_equal(req.verb, CTL_PROBE);
	assert_int_equal(parse("FLUSH\n", &req, &why), 0);
	assert_int_equal(req.verb, CTL_FLUSH);
	assert_int_equal(req.nargs, 0);
	assert_int_equal(parse(" HOLD\ta  b \t\n", &req, &why), 0);
	assert_int_equal(req.verb, CTL_HOLD);
	assert_int_equal(req.nargs, 2);
	assert_string_equal(req.args[0], "a");
	assert_string_equal(req.args[1], "b");
}

static void
test_parse_refuses(void **state)
{
	static const struct {
		const char *line, *why;
	} cases[] = {
	    {"\n", "empty request"},
	    {" \t \n", "empty request"},
	    {"delete x\n", "unknown request"},
	    {"PING now\n", "takes no argument"},
	    {"PROBE x\n", "takes no argument"},
	    {"HOLD \x1b[2Jx\n", "not printable ASCII"},
	    {"\x01\x02\xff\xfe HOLD x\n", "not printable ASCII"},
	    {"PING\r\r\n", "not printable ASCII"},
	};
	struct ctl_request req;
	const char *why;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(parse(cases[i].line, &req, &why), -EINVAL);
		assert_non_null(why);
		assert_non_null(strstr(why, cases[i].why));
	}
}

static void
test_parse_nul(void **state)
{
	struct ctl_request req;
	const char *why = NULL;

	(void)state;
	/* a NUL cannot hide the rest of a line from the checks */
	assert_int_equal(feed("PING\0 junk\n", 11, 11), 1);
	assert_int_equal(ctl_request_parse(rd.buf, rd.len, &req, &why),
			 -EINVAL);
	assert_non_null(why);
}

static void
test_parse_arg_cap(void **state)
{
	static char line[CTL_REQUEST_MAX];
	struct ctl_request req;
	const char *why;
	size_t n;

	(void)state;
	strcpy(line, "HOLD");
	for (n = 0; n < CTL_ARGS_MAX; n++)
		strcat(line, " x");
	strcat(line, "\n");
	assert_int_equal(parse(line, &req, &why), 0);
	assert_int_equal(req.nargs, CTL_ARGS_MAX);
	strcpy(line + strlen(line) - 1, " x\n");
	assert_int_equal(parse(line, &req, &why), -EINVAL);
	assert_non_null(strstr(why, "too many arguments"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reader_lines),
	    cmocka_unit_test(test_reader_cap),
	    cmocka_unit_test(test_parse_accepts),
	    cmocka_unit_test(test_parse_refuses),
	    cmocka_unit_test(test_parse_nul),
	    cmocka_unit_test(test_parse_arg_cap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

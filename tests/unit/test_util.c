/*
 * test_util.c - terminal-safe text: str_escape_terminal() on the sequences
 * a hostile relay, header or file name can carry, its cut at a character
 * boundary with the marker, and str_escape_json() on cJSON's output.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "spool/util.h"

/* Input as bytes (NUL allowed), with its length. */
struct bytes {
	const char *s;
	size_t len;
};
#define B(lit)                                                                 \
	{                                                                      \
		lit, sizeof(lit) - 1                                           \
	}

static void
test_escape_table(void **state)
{
	static const struct {
		struct bytes in;
		const char *want;
	} t[] = {
	    {B("250 2.0.0 Ok"), "250 2.0.0 Ok"},
	    /* ESC [ 2 J: clear the screen */
	    {B("\x1b[2J"), "\\x1b[2J"},
	    /* OSC 0: set the window title, ended by BEL */
	    {B("\x1b]0;owned\x07"), "\\x1b]0;owned\\x07"},
	    /* CSI as one raw C1 byte: not UTF-8, a byte */
	    {B("\x9b"
	       "31m"),
	     "\\x9b31m"},
	    /* CSI as a UTF-8 encoded C1 control */
	    {B("\xc2\x9b"
	       "31m"),
	     "\\u009b31m"},
	    {B("\xc2\x85"), "\\u0085"},
	    {B("bell\x07"), "bell\\x07"},
	    {B("del\x7f"), "del\\x7f"},
	    {B("a\rb\nc\td"), "a\\rb\\nc\\td"},
	    {B("nul\0x"), "nul\\x00x"},
	    {B("back\\slash"), "back\\\\slash"},
	    /* valid UTF-8 passes: 2, 3 and 4 bytes */
	    {B("M\xc3\xbcller"), "M\xc3\xbcller"},
	    {B("\xe2\x82\xac 5"), "\xe2\x82\xac 5"},
	    {B("\xf0\x9f\x93\xa7"), "\xf0\x9f\x93\xa7"},
	    /* U+00A0 is the first character past C1: it passes */
	    {B("\xc2\xa0"), "\xc2\xa0"},
	    /* invalid bytes, one escape each */
	    {B("\xff"), "\\xff"},
	    {B("\xfe\xff"), "\\xfe\\xff"},
	    {B("\x80"), "\\x80"},
	    {B("\xc3"), "\\xc3"},	   /* cut sequence at the end */
	    {B("\xc3x"), "\\xc3x"},	   /* cut sequence mid-text */
	    {B("\xe2\x82"), "\\xe2\\x82"}, /* 3-byte form, one short */
	    {B("\xc0\xaf"), "\\xc0\\xaf"}, /* overlong '/' */
	    {B("\xc1\x9b"), "\\xc1\\x9b"}, /* overlong CSI... */
	    {B("\xe0\x80\x9b"), "\\xe0\\x80\\x9b"}, /* ...in 3 bytes */
	    {B("\xf0\x80\x80\x9b"), "\\xf0\\x80\\x80\\x9b"},
	    {B("\xed\xa0\x80"), "\\xed\\xa0\\x80"},	     /* a surrogate */
	    {B("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80"}, /* > U+10FFFF */
	    /* bidirectional controls reorder what is shown */
	    {B("\xe2\x80\xae"
	       "evil"),
	     "\\u202eevil"},
	    {B("\xe2\x81\xa6"), "\\u2066"},
	    {B(""), ""},
	};
	char out[256];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		size_t n = str_escape_terminal(out, sizeof(out), t[i].in.s,
					       t[i].in.len);

		if (strcmp(out, t[i].want) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, out,
				 t[i].want);
		assert_int_equal(n, strlen(t[i].want));
	}
}

/* The output holds no byte a terminal acts on, whatever the input. */
static void
test_escape_all_bytes(void **state)
{
	char in[256 * 3], out[STR_ESCAPE_SIZE(sizeof(in))];
	size_t n = 0;

	(void)state;
	for (int c = 0; c < 256; c++) {
		in[n++] = (char)c;
		in[n++] = (char)0xc2; /* makes C1 pairs out of 0x80-0x9f */
		in[n++] = (char)c;
	}
	str_escape_terminal(out, sizeof(out), in, n);
	for (const unsigned char *p = (const unsigned char *)out; *p; p++) {
		assert_false(*p < 0x20 || *p == 0x7f);
		/* the only valid characters in the input are the
		 * pairs C2 xx: as C1 escaped, from U+00A0 on kept */
		assert_false(*p >= 0x80 && *p <= 0x9f);
	}
}

/* Cut after a whole character or escape, marked, within the buffer. */
static void
test_escape_cut(void **state)
{
	static const struct {
		const char *in;
		size_t size;
		const char *want;
	} t[] = {
	    {"abcdef", 7, "abcdef"},		     /* fits exactly */
	    {"abcdefg", 7, "abc..."},		     /* one too many */
	    {"\x1b\x1b\x1b", 13, "\\x1b\\x1b\\x1b"}, /* 12 and the NUL */
	    {"\x1b\x1b\x1b", 12, "\\x1b\\x1b..."},
	    /* never half an escape or half of a "ü" */
	    {"ab\x1b", 6, "ab..."},
	    {"\xc3\xbc\xc3\xbc\xc3\xbc\xc3\xbc", 8, "\xc3\xbc\xc3\xbc..."},
	    {"abcdef", 4, "..."},
	    {"abcdef", 3, ".."},
	    {"abcdef", 1, ""},
	};
	char out[64];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		memset(out, 'X', sizeof(out));
		str_escape_terminal(out, t[i].size, t[i].in, strlen(t[i].in));
		if (strcmp(out, t[i].want) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, out,
				 t[i].want);
		assert_int_equal(out[t[i].size], 'X'); /* nothing past it */
	}
}

static void
test_escape_json(void **state)
{
	static const struct {
		const char *in, *want;
	} t[] = {
	    /* cJSON already wrote C0 as \u001b: left alone */
	    {"{\"reply\":\"550 \\u001b[2J\"}",
	     "{\"reply\":\"550 \\u001b[2J\"}"},
	    {"[\"del\x7f\"]", "[\"del\\u007f\"]"},
	    {"[\"\xc2\x9b"
	     "31m\"]",
	     "[\"\\u009b31m\"]"},
	    {"[\"\x9b\"]", "[\"\\ufffd\"]"},
	    {"[\"\xff\xfe\"]", "[\"\\ufffd\\ufffd\"]"},
	    {"[\"\xe2\x80\xae\"]", "[\"\\u202e\"]"},
	    {"[\"M\xc3\xbcller \xe2\x82\xac\"]",
	     "[\"M\xc3\xbcller \xe2\x82\xac\"]"},
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		char *out = str_escape_json(t[i].in);

		assert_non_null(out);
		if (strcmp(out, t[i].want) != 0)
			fail_msg("case %zu: got %s, want %s", i, out,
				 t[i].want);
		free(out);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_escape_table),
	    cmocka_unit_test(test_escape_all_bytes),
	    cmocka_unit_test(test_escape_cut),
	    cmocka_unit_test(test_escape_json),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

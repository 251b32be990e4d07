/*
 * encode.c - byte-level building blocks of msg/: a growable buffer, UTF-8
 * validation, line-end normalisation, header folding and the MIME
 * encoders. Pure functions of their input; the only failure besides
 * -ENOMEM is -E2BIG from folding, which the caller turns into a refusal.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "msg_int.h"

int
msg__buf_add(struct msg_buf *b, const void *data, size_t n)
{
	if (n == 0 && b->p != NULL)
		return 0;
	/* One spare byte keeps the content NUL-terminated for callers that
	 * hand it on as a C string. */
	if (b->cap - b->len < n + 1) {
		size_t cap = b->cap ? b->cap : 256;
		char *np;

		while (cap - b->len < n + 1) {
			if (cap > SIZE_MAX / 2)
				return -ENOMEM;
			cap *= 2;
		}
		np = realloc(b->p, cap);
		if (np == NULL)
			return -ENOMEM;
		b->p = np;
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

int
msg__buf_str(struct msg_buf *b, const char *s)
{
	return msg__buf_add(b, s, strlen(s));
}

int
msg__buf_printf(struct msg_buf *b, const char *fmt, ...)
{
	char small[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	if ((size_t)n < sizeof(small))
		return msg__buf_add(b, small, (size_t)n);
	{
		char *big = malloc((size_t)n + 1);
		int rc;

		if (big == NULL)
			return -ENOMEM;
		va_start(ap, fmt);
		vsnprintf(big, (size_t)n + 1, fmt, ap);
		va_end(ap);
		rc = msg__buf_add(b, big, (size_t)n);
		free(big);
		return rc;
	}
}

void
msg__buf_free(struct msg_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

int
msg__err(char *err, size_t errlen, int code, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

int
msg__oom(char *err, size_t errlen)
{
	return msg__err(err, errlen, EX_OSERR, "out of memory");
}

void
msg__printable(char *dst, size_t dstlen, const char *s, size_t n)
{
	size_t i, o = 0;

	if (dstlen == 0)
		return;
	for (i = 0; i < n && o + 1 < dstlen; i++) {
		unsigned char c = (unsigned char)s[i];

		dst[o++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	/* Mark a cut so the reader knows the value went on. */
	if (i < n && o >= 4) {
		dst[o - 3] = '.';
		dst[o - 2] = '.';
		dst[o - 1] = '.';
	}
	dst[o] = '\0';
}

size_t
msg__utf8_char(const unsigned char *s, size_t len)
{
	uint32_t cp;
	size_t n, i;

	if (len == 0)
		return 0;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* Overlong forms, UTF-16 surrogates and code points past U+10FFFF
	 * are not UTF-8 (RFC 3629). */
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return n;
}

int
msg__utf8_valid(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;

	while (i < len) {
		size_t n = msg__utf8_char(u + i, len - i);

		if (n == 0)
			return 0;
		i += n;
	}
	return 1;
}

int
msg__crlf_append(struct msg_buf *b, const char *s, size_t len)
{
	size_t i = 0, run = 0;

	/* Copies runs between line ends in one call: bodies are megabytes. */
	while (i < len) {
		if (s[i] != '\r' && s[i] != '\n') {
			i++;
			continue;
		}
		if (msg__buf_add(b, s + run, i - run) < 0 ||
		    msg__buf_add(b, "\r\n", 2) < 0)
			return -ENOMEM;
		if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n')
			i++;
		i++;
		run = i;
	}
	return msg__buf_add(b, s + run, len - run);
}

size_t
msg__line_max(const char *s, size_t len)
{
	size_t max = 0, start = 0, i;

	for (i = 0; i < len; i++) {
		if (s[i] != '\r' && s[i] != '\n')
			continue;
		if (i - start > max)
			max = i - start;
		if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n')
			i++;
		start = i + 1;
	}
	if (len - start > max)
		max = len - start;
	return max;
}

static int
is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* A fold point p: white space that follows text, so the line before it
 * is not blank (RFC 5322 forbids folded lines of only white space). */
static int
fold_point(const char *line, size_t p)
{
	return is_wsp(line[p]) && !is_wsp(line[p - 1]);
}

/*
 * The first offset where line may be folded. A field's first line keeps
 * "Name:" (or the obsolete "Name :") whole: folded between the name and
 * its colon, the name would stand alone on a line that is no header
 * field, and the header would end there, every field after it falling
 * into the body. A continuation line (white space first) has no name.
 */
static size_t
fold_first(const char *line, size_t len)
{
	const char *colon;

	if (len == 0 || is_wsp(line[0]))
		return 1;
	colon = memchr(line, ':', len);
	return colon != NULL ? (size_t)(colon - line) + 1 : 1;
}

int
msg__fold_append(struct msg_buf *b, const char *line, size_t len, size_t soft)
{
	size_t start = 0, first = fold_first(line, len);

	while (len - start > soft) {
		size_t p, brk = 0;

		for (p = start + soft; p > start && p >= first; p--) {
			if (fold_point(line, p)) {
				brk = p;
				break;
			}
		}
		/* Nothing before the soft limit: break at the first chance
		 * after it instead. */
		for (p = start + soft + 1; brk == 0 && p < len; p++) {
			if (p >= first && fold_point(line, p))
				brk = p;
		}
		if (brk == 0)
			break;
		if (brk - start > MSG_LINE_MAX)
			return -E2BIG;
		if (msg__buf_add(b, line + start, brk - start) < 0 ||
		    msg__buf_add(b, "\r\n", 2) < 0)
			return -ENOMEM;
		start = brk;
	}
	if (len - start > MSG_LINE_MAX)
		return -E2BIG;
	if (msg__buf_add(b, line + start, len - start) < 0 ||
	    msg__buf_add(b, "\r\n", 2) < 0)
		return -ENOMEM;
	return 0;
}

static const char hexdig[] = "0123456789ABCDEF";

/* RFC 2045 6.7 rule 5: encoded lines are at most 76 octets. */
#define QP_LINE 76

int
msg__qp_encode(struct msg_buf *b, const char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		size_t eol = i, col = 0;
		int crlf;

		while (eol < len &&
		       !(s[eol] == '\r' && eol + 1 < len && s[eol + 1] == '\n'))
			eol++;
		crlf = eol < len;
		for (; i < eol; i++) {
			unsigned char c = (unsigned char)s[i];
			int last = i + 1 == eol;
			char tok[3];
			size_t n;

			/* White space at the end of a line would be
			 * stripped in transit (rule 3), so it is escaped. */
			if ((c >= 33 && c <= 126 && c != '=') ||
			    (is_wsp((char)c) && !last)) {
				tok[0] = (char)c;
				n = 1;
			} else {
				tok[0] = '=';
				tok[1] = hexdig[c >> 4];
				tok[2] = hexdig[c & 15];
				n = 3;
			}
			/* Keep room for the '=' of a soft break unless this
			 * token ends the line. */
			if (col + n > (last ? QP_LINE : QP_LINE - 1)) {
				if (msg__buf_add(b, "=\r\n", 3) < 0)
					return -ENOMEM;
				col = 0;
			}
			if (msg__buf_add(b, tok, n) < 0)
				return -ENOMEM;
			col += n;
		}
		if (crlf) {
			if (msg__buf_add(b, "\r\n", 2) < 0)
				return -ENOMEM;
			i = eol + 2;
		}
	}
	return 0;
}

/* Calls emit for each line of CRLF text: line without its CRLF, and
 * whether a CRLF followed. */
static int
wrap_lines(struct msg_buf *b, const char *s, size_t len,
	   int (*wrap)(struct msg_buf *b, const char *line, size_t n))
{
	size_t i = 0;

	while (i < len) {
		const char *nl = memchr(s + i, '\n', len - i);
		size_t eol = nl ? (size_t)(nl - s) : len;
		size_t n = eol - i;

		if (nl != NULL && n > 0 && s[eol - 1] == '\r')
			n--;
		if (wrap(b, s + i, n) < 0)
			return -ENOMEM;
		if (nl != NULL &&
		    msg__buf_add(b, s + i + n, eol + 1 - i - n) < 0)
			return -ENOMEM;
		i = nl ? eol + 1 : len;
	}
	return 0;
}

static int
qp_wrap_line(struct msg_buf *b, const char *line, size_t n)
{
	size_t start = 0;

	while (n - start > QP_LINE) {
		size_t p = start + QP_LINE - 1;

		/* Never split "=XX": back off to before the escape. */
		if (line[p - 1] == '=')
			p -= 1;
		else if (line[p - 2] == '=')
			p -= 2;
		if (msg__buf_add(b, line + start, p - start) < 0 ||
		    msg__buf_add(b, "=\r\n", 3) < 0)
			return -ENOMEM;
		start = p;
	}
	return msg__buf_add(b, line + start, n - start);
}

int
msg__qp_wrap(struct msg_buf *b, const char *s, size_t len)
{
	return wrap_lines(b, s, len, qp_wrap_line);
}

static int
b64_wrap_line(struct msg_buf *b, const char *line, size_t n)
{
	size_t start = 0;

	while (n - start > QP_LINE) {
		if (msg__buf_add(b, line + start, QP_LINE) < 0 ||
		    msg__buf_add(b, "\r\n", 2) < 0)
			return -ENOMEM;
		start += QP_LINE;
	}
	return msg__buf_add(b, line + start, n - start);
}

int
msg__b64_wrap(struct msg_buf *b, const char *s, size_t len)
{
	return wrap_lines(b, s, len, b64_wrap_line);
}

int
msg__b64_encode(struct msg_buf *b, const void *data, size_t len)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "abcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *s = data;
	size_t i;

	for (i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16;
		char q[4];

		if (i + 1 < len)
			v |= (uint32_t)s[i + 1] << 8;
		if (i + 2 < len)
			v |= s[i + 2];
		q[0] = tab[(v >> 18) & 63];
		q[1] = tab[(v >> 12) & 63];
		q[2] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
		q[3] = i + 2 < len ? tab[v & 63] : '=';
		if (msg__buf_add(b, q, 4) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* RFC 2047 section 2: an encoded word is at most 75 octets. */
#define EW_MAX 75
#define EW_OVERHEAD 12 /* "=?UTF-8?B?" and "?=" */

int
msg__rfc2047_append(struct msg_buf *b, const char *s, size_t len, size_t col)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;
	int first = 1;

	do {
		size_t room, raw = 0;

		/* The first word shares its line with the field name; when
		 * that leaves no useful space it moves to the next line. */
		room = EW_MAX;
		if (first && col + EW_MAX > MSG_LINE_SOFT) {
			if (col + EW_OVERHEAD + 8 <= MSG_LINE_SOFT)
				room = MSG_LINE_SOFT - col;
			else if (msg__buf_add(b, "\r\n ", 3) < 0)
				return -ENOMEM;
		} else if (!first) {
			if (msg__buf_add(b, "\r\n ", 3) < 0)
				return -ENOMEM;
		}
		/* Largest run of whole characters whose base64 fits. */
		while (i + raw < len) {
			size_t n = msg__utf8_char(u + i + raw, len - i - raw);

			if (n == 0)
				n = 1; /* callers validate; never loop */
			if (EW_OVERHEAD + (raw + n + 2) / 3 * 4 > room)
				break;
			raw += n;
		}
		if (raw == 0 && i < len)
			return -E2BIG; /* cannot happen with room >= 20 */
		if (msg__buf_str(b, "=?UTF-8?B?") < 0 ||
		    msg__b64_encode(b, s + i, raw) < 0 ||
		    msg__buf_str(b, "?=") < 0)
			return -ENOMEM;
		i += raw;
		first = 0;
	} while (i < len);
	return 0;
}

/* RFC 5322 atext, the characters of a display name that need no quotes. */
static int
is_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || strchr("!#$%&'*+-/=?^_`{|}~", c);
}

/* Longer names become encoded words, which can be folded. */
#define PHRASE_PLAIN_MAX 200

int
msg__phrase_append(struct msg_buf *b, const char *name, size_t col, char *err,
		   size_t errlen)
{
	size_t len = strlen(name), i;
	int plain = 1, atoms = 1;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c == '\r' || c == '\n')
			return msg__err(err, errlen, EX_DATAERR,
					"header injection: line break in a "
					"display name");
		if (c < 0x20 || c >= 0x7f)
			plain = 0;
		else if (!is_atext(c) && c != ' ')
			atoms = 0;
	}
	if (!msg__utf8_valid(name, len))
		return msg__err(err, errlen, EX_DATAERR,
				"display name is not valid UTF-8");
	/* "=?" would make a reader decode a plain name as an encoded word. */
	if (plain && strstr(name, "=?") == NULL && len <= PHRASE_PLAIN_MAX) {
		if (atoms && len > 0 && name[0] != ' ' &&
		    name[len - 1] != ' ' && strstr(name, "  ") == NULL)
			return msg__buf_add(b, name, len) < 0
				   ? msg__oom(err, errlen)
				   : 0;
		if (msg__buf_add(b, "\"", 1) < 0)
			return msg__oom(err, errlen);
		for (i = 0; i < len; i++) {
			if ((name[i] == '"' || name[i] == '\\') &&
			    msg__buf_add(b, "\\", 1) < 0)
				return msg__oom(err, errlen);
			if (msg__buf_add(b, name + i, 1) < 0)
				return msg__oom(err, errlen);
		}
		return msg__buf_add(b, "\"", 1) < 0 ? msg__oom(err, errlen) : 0;
	}
	if (msg__rfc2047_append(b, name, len, col) < 0)
		return msg__oom(err, errlen);
	return 0;
}

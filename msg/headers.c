/*
 * headers.c - splits a message into its header fields and body without
 * copying. Accepts any line ends (CRLF, LF, CR) because callers hand in
 * raw input; refuses only NUL bytes, which no mail path can carry. The
 * fields point into the caller's buffer, which must outlive them. Also
 * formats the Received line that names the submitting uid, the one
 * function both spoolctl and spoold use for it.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

#include "spool/util.h"
#include "msg_int.h"

/* "Name:" or the obsolete "Name :" (RFC 5322 4.5.8); name is printable
 * ASCII except ':'. Returns the name length, or 0 if not a field. */
static size_t
field_name(const char *s, size_t len, size_t *colon)
{
	size_t n = 0, i;

	while (n < len && s[n] >= 33 && s[n] <= 126 && s[n] != ':')
		n++;
	if (n == 0)
		return 0;
	for (i = n; i < len && (s[i] == ' ' || s[i] == '\t'); i++)
		;
	if (i == len || s[i] != ':')
		return 0;
	*colon = i;
	return n;
}

static int
headers_push(struct msg_headers *hs, const struct msg_header *h)
{
	if (hs->n == hs->cap) {
		size_t cap = hs->cap ? hs->cap * 2 : 16;
		struct msg_header *nh = realloc(hs->h, cap * sizeof(*nh));

		if (nh == NULL)
			return -ENOMEM;
		hs->h = nh;
		hs->cap = cap;
	}
	hs->h[hs->n++] = *h;
	return 0;
}

int
msg_headers_parse(const char *data, size_t len, struct msg_headers *out,
		  char *err, size_t errlen)
{
	size_t pos = 0;

	memset(out, 0, sizeof(*out));
	out->body_off = len;
	if (len > 0 && memchr(data, '\0', len) != NULL)
		return msg__err(err, errlen, EX_DATAERR,
				"message contains a NUL byte");
	while (pos < len) {
		size_t eol = pos, next, name_len, colon;

		while (eol < len && data[eol] != '\r' && data[eol] != '\n')
			eol++;
		next = eol;
		if (next < len)
			next += (data[next] == '\r' && next + 1 < len &&
				 data[next + 1] == '\n')
				    ? 2
				    : 1;
		if (eol == pos) {
			out->body_off = next;
			return 0;
		}
		if (data[pos] == ' ' || data[pos] == '\t') {
			struct msg_header *h;

			if (out->n == 0)
				break; /* text before any field: the body */
			h = &out->h[out->n - 1];
			h->len = next - (size_t)(h->start - data);
			h->value_len = eol - (size_t)(h->value - data);
		} else if ((name_len = field_name(data + pos, eol - pos,
						  &colon)) > 0) {
			struct msg_header h;
			size_t v = pos + colon + 1;

			while (v < eol && (data[v] == ' ' || data[v] == '\t'))
				v++;
			h.name = data + pos;
			h.name_len = name_len;
			h.value = data + v;
			h.value_len = eol - v;
			h.start = data + pos;
			h.len = next - pos;
			if (headers_push(out, &h) < 0) {
				msg_headers_free(out);
				return msg__oom(err, errlen);
			}
		} else {
			break;
		}
		pos = next;
	}
	out->body_off = pos;
	return 0;
}

void
msg_headers_free(struct msg_headers *hs)
{
	free(hs->h);
	hs->h = NULL;
	hs->n = hs->cap = 0;
}

const struct msg_header *
msg_headers_find(const struct msg_headers *hs, const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < hs->n; i++) {
		if (hs->h[i].name_len == len &&
		    strncasecmp(hs->h[i].name, name, len) == 0)
			return &hs->h[i];
	}
	return NULL;
}

/* ---- trace header ------------------------------------------------- */

static int
received_host_ok(const char *h)
{
	if (h == NULL || h[0] == '\0' || strlen(h) > 253)
		return 0;
	for (; *h != '\0'; h++)
		if (!isalnum((unsigned char)*h) && strchr(".-_", *h) == NULL)
			return 0;
	return 1;
}

int
msg_received_format(char *buf, size_t len, unsigned long uid, const char *host,
		    const char *id, time_t when)
{
	char date[RFC5322_DATE_LEN];
	int n;

	n = snprintf(buf, len,
		     "Received: from userid %lu by %s (spoold) id %s;\r\n\t%s"
		     "\r\n",
		     uid, received_host_ok(host) ? host : "localhost", id,
		     format_rfc5322_date(when, date));
	if (n < 0 || (size_t)n >= len)
		return -ERANGE;
	return n;
}

int
msg_received_uid(const char *msg, size_t len, unsigned long *uid)
{
	static const char lead[] = "Received: from userid ";
	size_t n = sizeof(lead) - 1, i = n;
	unsigned long v = 0;

	if (len <= n || memcmp(msg, lead, n) != 0)
		return -ENOENT;
	for (; i < len && i < n + 10 && msg[i] >= '0' && msg[i] <= '9'; i++)
		v = v * 10 + (unsigned long)(msg[i] - '0');
	if (i == n || i >= len || msg[i] != ' ' || v > UINT32_MAX)
		return -ENOENT;
	*uid = v;
	return 0;
}

/*
 * util.c - value parsers, time formatting, terminal-safe text and small
 * I/O helpers shared by both binaries. Parsers return -EINVAL / -ERANGE
 * and never print: the caller knows the key and the file line to report.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#include "spool/util.h"

/* Parses "<digits><unit?>" where unit multiplies; unit "" is 1. */
static int
parse_scaled(const char *s, const char *units, const uint64_t *mult,
	     uint64_t *out)
{
	const char *p = s;
	uint64_t v = 0;
	const char *u;

	while (isspace((unsigned char)*p))
		p++;
	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (*p != '\0' && !isspace((unsigned char)*p)) {
		u = strchr(units, tolower((unsigned char)*p));
		if (u == NULL)
			return -EINVAL;
		if (v > UINT64_MAX / mult[u - units])
			return -ERANGE;
		v *= mult[u - units];
		p++;
	}
	while (isspace((unsigned char)*p))
		p++;
	if (*p != '\0')
		return -EINVAL;
	*out = v;
	return 0;
}

int
parse_duration(const char *s, int64_t *out)
{
	static const uint64_t mult[] = {1, 60, 3600, 86400, 604800};
	uint64_t v;
	int rc = parse_scaled(s, "smhdw", mult, &v);

	if (rc < 0)
		return rc;
	if (v > (uint64_t)INT32_MAX * 100)
		return -ERANGE;
	*out = (int64_t)v;
	return 0;
}

int
parse_rate(const char *s, uint64_t *count, int64_t *period)
{
	char num[32], unit[32];
	const char *slash = strchr(s, '/');
	size_t len = slash != NULL ? (size_t)(slash - s) : 0;
	int64_t per;
	int rc;

	if (slash == NULL || len == 0 || len >= sizeof(num) ||
	    strlen(slash + 1) + 2 > sizeof(unit))
		return -EINVAL;
	memcpy(num, s, len);
	num[len] = '\0';
	/* "60/m" reads as "60/1m", as people say "60 a minute" */
	snprintf(unit, sizeof(unit), "%s%s",
		 isalpha((unsigned char)slash[1]) ? "1" : "", slash + 1);
	if ((rc = parse_uint(num, 1, RATE_COUNT_MAX, count)) < 0)
		return rc;
	if ((rc = parse_duration(unit, &per)) < 0)
		return rc;
	if (per < 1 || per > RATE_PERIOD_MAX)
		return -ERANGE;
	*period = per;
	return 0;
}

int
parse_size(const char *s, uint64_t *out)
{
	static const uint64_t mult[] = {1, 1024, 1024 * 1024,
					1024 * 1024 * 1024};
	return parse_scaled(s, "bkmg", mult, out);
}

int
parse_bool(const char *s, int *out)
{
	static const char *yes[] = {"yes", "true", "on", "1"};
	static const char *no[] = {"no", "false", "off", "0"};

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -EINVAL;
}

int
parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	static const uint64_t one[] = {1};
	uint64_t v;
	int rc = parse_scaled(s, "", one, &v);

	if (rc < 0)
		return rc;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

char *
format_rfc3339(time_t t, char buf[RFC3339_LEN])
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, RFC3339_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

char *
format_rfc5322_date(time_t t, char buf[RFC5322_DATE_LEN])
{
	static const char *days[] = {"Sun", "Mon", "Tue", "Wed",
				     "Thu", "Fri", "Sat"};
	static const char *months[] = {"Jan", "Feb", "Mar", "Apr",
				       "May", "Jun", "Jul", "Aug",
				       "Sep", "Oct", "Nov", "Dec"};
	struct tm tm;
	int off;

	/* Names by hand: strftime's %a/%b follow the locale, RFC 5322
	 * wants English. */
	localtime_r(&t, &tm);
	off = (int)(tm.tm_gmtoff / 60) % (24 * 60);
	snprintf(
	    buf, RFC5322_DATE_LEN, "%s, %d %s %d %02d:%02d:%02d %c%02d%02d",
	    days[tm.tm_wday % 7], tm.tm_mday % 32, months[tm.tm_mon % 12],
	    (tm.tm_year + 1900) % 10000, tm.tm_hour % 24, tm.tm_min % 60,
	    tm.tm_sec % 61, off < 0 ? '-' : '+', abs(off) / 60, abs(off) % 60);
	return buf;
}

size_t
str_copy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size > 0) {
		size_t n = len < size - 1 ? len : size - 1;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

int64_t
time_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
time_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
fsync_dir_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int
read_all_fd(int fd, size_t max, char **out, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap + 1);
	int rc = 0;

	if (buf == NULL)
		return -ENOMEM;
	for (;;) {
		ssize_t r;

		if (n == cap) {
			char *nb;

			if (cap > max) {
				rc = -EFBIG;
				break;
			}
			cap *= 2;
			nb = realloc(buf, cap + 1);
			if (nb == NULL) {
				rc = -ENOMEM;
				break;
			}
			buf = nb;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			break;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > max) {
			rc = -EFBIG;
			break;
		}
	}
	if (rc < 0) {
		/* Drain an over-long input so a writer into a pipe sees a
		 * refusal, not SIGPIPE. */
		while (rc == -EFBIG) {
			ssize_t r = read(fd, buf, cap);

			if (r == 0 || (r < 0 && errno != EINTR))
				break;
		}
		free(buf);
		return rc;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

/* ---- terminal-safe text ------------------------------------------------ */

/* Length (1-4) of the valid UTF-8 character at s, its code point in *cp;
 * 0 if s does not start one (RFC 3629: no overlong forms, no surrogates,
 * nothing over U+10FFFF). */
static size_t
utf8_decode(const unsigned char *s, size_t len, uint32_t *cp)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;
	uint32_t c;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		c = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		c = s[0] & 0x0f;
		lo = s[0] == 0xe0 ? 0xa0 : 0x80;
		hi = s[0] == 0xed ? 0x9f : 0xbf;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		c = s[0] & 0x07;
		lo = s[0] == 0xf0 ? 0x90 : 0x80;
		hi = s[0] == 0xf4 ? 0x8f : 0xbf;
	} else {
		return 0;
	}
	if (len < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	*cp = c;
	return n;
}

/* 1 for a code point past ASCII that a terminal may act on or that
 * reorders what is shown. */
static int
utf8_is_control(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || cp == 0x200e || cp == 0x200f ||
	       (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

size_t
str_escape_terminal(char *dst, size_t size, const char *src, size_t len)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t o = 0, safe = 0, cut = sizeof(STR_ESCAPE_CUT) - 1;

	if (size == 0)
		return 0;
	for (size_t i = 0; i < len;) {
		char esc[8];
		const char *unit = esc;
		size_t ulen, n;
		uint32_t cp = 0;

		n = utf8_decode(s + i, len - i, &cp);
		if (n == 1 && cp == '\\') {
			unit = "\\\\";
		} else if (n == 1 && cp == '\t') {
			unit = "\\t";
		} else if (n == 1 && cp == '\n') {
			unit = "\\n";
		} else if (n == 1 && cp == '\r') {
			unit = "\\r";
		} else if (n == 0 || (n == 1 && (cp < 0x20 || cp == 0x7f))) {
			snprintf(esc, sizeof(esc), "\\x%02x", s[i]);
			n = 1;
		} else if (utf8_is_control(cp)) {
			snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)cp);
		} else {
			unit = src + i;
		}
		ulen = unit == src + i ? n : strlen(unit);
		if (o + ulen > size - 1) {
			/* back to the last whole unit that leaves room for
			 * the marker */
			o = safe;
			for (size_t k = 0; k < cut && o < size - 1; k++)
				dst[o++] = STR_ESCAPE_CUT[k];
			break;
		}
		memcpy(dst + o, unit, ulen);
		o += ulen;
		if (o + cut <= size - 1)
			safe = o;
		i += n;
	}
	dst[o] = '\0';
	return o;
}

char *
str_escape_json(const char *json)
{
	const unsigned char *s = (const unsigned char *)json;
	size_t len = strlen(json), o = 0;
	/* worst case: each byte becomes "\ufffd" */
	char *out = malloc(len * 6 + 1);

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len;) {
		uint32_t cp = 0;
		size_t n = utf8_decode(s + i, len - i, &cp);

		if (n == 0) {
			memcpy(out + o, "\\ufffd", 6);
			o += 6;
			i++;
		} else if (cp == 0x7f || utf8_is_control(cp)) {
			o += (size_t)snprintf(out + o, 7, "\\u%04x",
					      (unsigned)cp);
			i += n;
		} else {
			memcpy(out + o, json + i, n);
			o += n;
			i += n;
		}
	}
	out[o] = '\0';
	return out;
}

/*
 * spool/util.h - small helpers shared by every module: value parsers for
 * configuration and command lines, time formatting, bounded strings.
 * No dependency beyond libc.
 */
#ifndef SPOOL_UTIL_H
#define SPOOL_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* "30s", "5m", "1h", "5d", "1w" or plain seconds -> seconds. 0 or -EINVAL. */
int parse_duration(const char *s, int64_t *out);

/* "60/1m", "1/5s", "3600/1h", "60/m": count per period (seconds); count
 * 1 to RATE_COUNT_MAX, period 1 s to RATE_PERIOD_MAX. 0, -EINVAL or
 * -ERANGE. */
#define RATE_COUNT_MAX 1000000
#define RATE_PERIOD_MAX (7 * 86400)
int parse_rate(const char *s, uint64_t *count, int64_t *period);

/* "10M", "512k", "1G" or plain bytes -> bytes. 0 or -EINVAL. */
int parse_size(const char *s, uint64_t *out);

/* "yes/no/true/false/on/off/1/0" -> 1/0. 0 or -EINVAL. */
int parse_bool(const char *s, int *out);

/* Non-negative decimal within [min, max]. 0, -EINVAL or -ERANGE. */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* RFC 3339 UTC ("2026-11-24T11:21:30Z") into buf (at least 21 bytes). */
#define RFC3339_LEN 21
char *format_rfc3339(time_t t, char buf[RFC3339_LEN]);

/* RFC 5322 date in local time ("Tue, 24 Nov 2026 11:21:30 +0000"). */
#define RFC5322_DATE_LEN 40
char *format_rfc5322_date(time_t t, char buf[RFC5322_DATE_LEN]);

/* Copies like strlcpy: always NUL-terminates; returns strlen(src). */
size_t str_copy(char *dst, const char *src, size_t size);

/* Microseconds since the epoch and since an arbitrary monotonic origin. */
int64_t time_now_us(void);
int64_t time_mono_ms(void);

/* fsync a directory by path or by descriptor. 0 or -errno. */
int fsync_dir_path(const char *path);

/* Reads all of fd into a malloc'd buffer, refusing more than max bytes
 * (-EFBIG; the input is then drained). 0 or -errno; *out NUL-terminated. */
int read_all_fd(int fd, size_t max, char **out, size_t *len);

/*
 * Terminal-safe text. Relay replies, headers, envelope addresses and file
 * names come from outside; printed raw, an ESC or C1 sequence in one
 * rewrites the operator's terminal. str_escape_terminal() writes src[0,
 * len) into dst (size bytes, always NUL-terminated) so that:
 *   - printable ASCII and valid UTF-8 characters pass unchanged;
 *   - a backslash becomes "\\", so every backslash shown starts an escape;
 *   - TAB, LF and CR become "\t", "\n", "\r"; other C0 controls, DEL and
 *     every byte that is not part of valid UTF-8 (stray continuation bytes,
 *     overlong forms, surrogates, over U+10FFFF, cut sequences) become
 *     "\xNN";
 *   - the C1 controls U+0080-U+009F and the bidirectional controls
 *     (U+200E, U+200F, U+202A-U+202E, U+2066-U+2069), though valid UTF-8,
 *     become "\u0085", "\u202e" and so on.
 * An escape or a character is never split: when the result does not fit,
 * it is cut after a whole character and ends with STR_ESCAPE_CUT (given
 * size >= 4). Returns strlen(dst). STR_ESCAPE_SIZE(len) bytes always hold
 * the whole result.
 */
#define STR_ESCAPE_CUT "..."
#define STR_ESCAPE_SIZE(len) ((len)*4 + 1)
size_t str_escape_terminal(char *dst, size_t size, const char *src, size_t len);

/*
 * The same guarantee for JSON text (cJSON escapes only C0 controls, the
 * quote and the backslash): returns a malloc'd copy of json in which DEL,
 * C1 and bidirectional controls are written "\u007f", "\u009b", ...
 * and bytes that are not valid UTF-8 "\ufffd" (JSON must be UTF-8). Only
 * bytes outside ASCII and DEL are touched, which in JSON text occur only
 * inside strings. NULL when out of memory.
 */
char *str_escape_json(const char *json);

#endif

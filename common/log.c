/*
 * log.c - event lines to stderr (foreground) or syslog.
 *
 * Each line is formatted into one buffer and written with one write(2), so
 * lines from delivery threads never interleave. A line too long for the
 * buffer is cut (it then ends in "..."), never dropped.
 *
 * Lines quote relay replies, addresses and file names that come from
 * outside; the whole line goes through str_escape_terminal(), so no
 * control character (ESC, CR, a second line) reaches the console or the
 * journal of an operator who reads it, whatever the caller passed.
 */
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "spool/log.h"
#include "spool/util.h"

#define LOG_LINE_MAX 2048

static const char *log_ident = "spool";
static int log_to_stderr = 1;
static enum log_level log_max = LOG_LEVEL_INFO;

void
log_init(const char *ident, int to_stderr, enum log_level max_level)
{
	log_ident = ident;
	log_to_stderr = to_stderr;
	log_max = max_level;
	if (!to_stderr)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	/* raw holds more than line can: a text that vsnprintf had to cut
	 * is cut again by the escape, which marks it */
	char raw[LOG_LINE_MAX + 1], line[LOG_LINE_MAX];
	size_t len;
	int n, off;

	if (level > log_max)
		return;
	n = vsnprintf(raw, sizeof(raw), fmt, ap);
	if (n < 0)
		return;
	len = (size_t)n < sizeof(raw) ? (size_t)n : sizeof(raw) - 1;
	if (!log_to_stderr) {
		str_escape_terminal(line, sizeof(line), raw, len);
		syslog(prio[level], "%s", line);
		return;
	}
	off = snprintf(line, sizeof(line), "%s[%ld]: ", log_ident,
		       (long)getpid());
	if (off < 0 || (size_t)off >= sizeof(line) / 2)
		return;
	/* one byte is kept for the newline */
	n = off + (int)str_escape_terminal(
		      line + off, sizeof(line) - (size_t)off - 1, raw, len);
	line[n++] = '\n';
	/* A failed log write has nowhere else to be reported. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

/*
 * log.c - event lines to stderr (foreground) or syslog.
 *
 * Each line is formatted into one buffer and written with one write(2), so
 * lines from delivery threads never interleave. A line too long for the
 * buffer is cut, never dropped.
 */
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "spool/log.h"

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
	char line[2048];
	int n;

	if (level > log_max)
		return;
	if (!log_to_stderr) {
		vsyslog(prio[level], fmt, ap);
		return;
	}
	n = snprintf(line, sizeof(line), "%s[%ld]: ", log_ident,
		     (long)getpid());
	if (n < 0)
		return;
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	n = (int)strlen(line);
	if ((size_t)n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
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

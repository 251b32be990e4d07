/*
 * spool/log.h - one line per event, to stderr in the foreground or syslog.
 *
 * Messages never contain secrets: callers pass addresses, ids and server
 * replies only. Thread-safe (one write(2) or syslog(3) call per line).
 */
#ifndef SPOOL_LOG_H
#define SPOOL_LOG_H

#include <stdarg.h>

enum log_level {
	LOG_LEVEL_ERR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG
};

/* ident names the program; to_stderr=0 sends lines to syslog (LOG_MAIL). */
void log_init(const char *ident, int to_stderr, enum log_level max_level);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#define log_err(...) log_msg(LOG_LEVEL_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif

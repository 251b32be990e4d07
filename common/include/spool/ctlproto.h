/*
 * spool/ctlproto.h - the control socket between spoolctl and spoold.
 *
 * SPOOL/ctl.sock, a Unix stream socket. The client sends one request line
 * ("FLUSH id id\n"), the daemon answers "OK text" or "ERR text" on the
 * first line, optionally followed by more lines, and closes. Requests that
 * change the queue are refused unless the peer (SO_PEERCRED) is root or
 * the owner of the spool directory.
 */
#ifndef SPOOL_CTLPROTO_H
#define SPOOL_CTLPROTO_H

#include <stddef.h>

#define CTL_SOCKET_NAME "ctl.sock"
#define CTL_REQUEST_MAX 65536
#define CTL_REPLY_MAX (16 * 1024 * 1024)

/*
 * Sends request (without its newline) to the daemon of spool_dir and reads
 * the whole reply into *reply (malloc'd, NUL-terminated). Returns 0,
 * -ENOENT or -ECONNREFUSED when no daemon listens, -ETIMEDOUT after
 * timeout_ms, or another -errno.
 */
int ctl_call(const char *spool_dir, const char *request, char **reply,
	     int timeout_ms);

#endif

/*
 * transport_int.h - shared by the transports, not part of the interface.
 */
#ifndef SPOOL_TRANSPORT_INT_H
#define SPOOL_TRANSPORT_INT_H

#include <stddef.h>
#include <sys/stat.h>

#include "spool/transport.h"

/* Sets a recipient's outcome; reply is cut at its first line end. */
void transport_set_reply(struct transport_rcpt *o, enum deliv_status st,
			 int code, const char *reply);

/*
 * Gives data with every line ending in CRLF (bare LF and bare CR become
 * CRLF, and a last line gets one). *out is NULL when data already is so,
 * else a malloc'd copy of *outlen bytes. 0 or -ENOMEM.
 */
int transport_crlf(const char *data, size_t len, char **out, size_t *outlen);

/*
 * Refuses a secret file that is missing, not a regular file, readable by
 * group or others, or owned by anyone but root and the user this process
 * runs as (its effective uid: the daemon's user, whichever it is): its
 * owner could read the secret or swap it. 0 or -errno with one line in
 * err that names path (as what, e.g. "password_file") and, for an owner,
 * the one found, the ones wanted and the chown that fixes it.
 */
int transport_secret_check(const char *what, const char *path, char *err,
			   size_t errlen);
/* The same checks on an open secret's fstat, at each use. */
int transport_secret_stat_check(const char *what, const char *path,
				const struct stat *sb, char *err,
				size_t errlen);

/* Reads a one-line secret (a token) from path now, re-checking the
 * file's type and mode: 0, or -errno with a reason in err that names key
 * and path but never holds the secret. buf is wiped on a refusal. */
int transport_secret_read(const char *path, const char *key, char *buf,
			  size_t len, char *err, size_t errlen);

#endif

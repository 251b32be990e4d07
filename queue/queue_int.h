/*
 * queue_int.h - declarations shared by the files of queue/ and its unit
 * tests only; nothing here is a stable interface.
 */
#ifndef SPOOL_QUEUE_INT_H
#define SPOOL_QUEUE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "spool/queue.h"

/* Version byte that starts every LMDB message record. */
#define QUEUE_RECORD_VERSION 1

/* Formats one line into err (when err is not NULL and errlen > 0). */
void queue__err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The name of folder d ("new", ...). */
const char *queue__dir_name(enum queue_dir d);

/* write() all of p, retrying EINTR. 0 or -errno (-ENOSPC: disk full). */
int queue__write_all(int fd, const char *p, size_t len);

/* spool_parse refusing more than max_rcpt recipient lines (-EINVAL). */
int queue__spool_parse(const char *data, size_t len, size_t max_rcpt,
		       struct spool_envelope *env, size_t *body_off, char *err,
		       size_t errlen);

/* Renames from/name to to/to_name, never over an existing file
 * (-EEXIST). 0 or -errno (-ENOSPC for a full disk or quota). */
int queue__rename_noreplace(int from, const char *name, int to,
			    const char *to_name);

/*
 * The record codec of state_lmdb.c. encode: a malloc'd buffer into *out,
 * 0 or -EINVAL (bad field) / -ENOMEM. decode: 0 or -EBADMSG for any
 * malformed record (never reads past len); out->id is left untouched.
 */
int queue__record_encode(const struct queue_msg_info *m, unsigned char **out,
			 size_t *outlen);
int queue__record_decode(const unsigned char *p, size_t len,
			 struct queue_msg_info *out);

#endif

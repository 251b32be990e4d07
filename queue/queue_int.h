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

/*
 * spool_submit with a caller-chosen id, so tests can prove that an existing
 * new/ID is never overwritten. Same contract as spool_submit.
 */
int queue__spool_submit_id(struct spool *sp, const char *id, const char *sender,
			   const char *const *rcpt, size_t nrcpt,
			   const char *msg, size_t len, char *err,
			   size_t errlen);

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

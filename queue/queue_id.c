/*
 * queue_id.c - queue ids and the names of queue states.
 *
 * An id is 14 lowercase hex digits of microseconds since the epoch followed
 * by 10 lowercase hex digits from getrandom(2): it sorts by creation time,
 * is unique across processes and hosts, and is a safe file name. Within
 * one process ids are strictly increasing even when the clock steps back.
 * Failure policy: queue_id_new returns -errno when the clock or the kernel
 * random source fails; nothing here aborts.
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "queue_int.h"

#define ID_TIME_DIGITS 14
#define ID_RAND_BYTES 5

static const char hexdig[] = "0123456789abcdef";

/* The last time stamp handed out by this process. */
static _Atomic int64_t id_last_us;

const char *
queue_msg_state_name(enum queue_msg_state s)
{
	switch (s) {
	case QUEUE_MSG_QUEUED:
		return "queued";
	case QUEUE_MSG_DEFERRED:
		return "deferred";
	case QUEUE_MSG_DELIVERING:
		return "delivering";
	case QUEUE_MSG_HELD:
		return "held";
	case QUEUE_MSG_FAILED:
		return "failed";
	}
	return "unknown";
}

const char *
queue_rcpt_state_name(enum queue_rcpt_state s)
{
	switch (s) {
	case QUEUE_RCPT_PENDING:
		return "pending";
	case QUEUE_RCPT_SENT:
		return "sent";
	case QUEUE_RCPT_FAILED:
		return "failed";
	}
	return "unknown";
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int
queue_id_valid(const char *s)
{
	size_t i;

	if (s == NULL)
		return 0;
	for (i = 0; i < QUEUE_ID_LEN; i++)
		if (hex_value(s[i]) < 0)
			return 0;
	return s[QUEUE_ID_LEN] == '\0';
}

/*
 * Strictly increasing microseconds for this process: two ids made in the
 * same microsecond, or after the clock stepped back, still sort in the
 * order they were made.
 */
static int
id_time_next(int64_t *out)
{
	struct timespec ts;
	int64_t now, last;

	if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
		return -errno;
	now = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	last = atomic_load(&id_last_us);
	do {
		if (now <= last)
			now = last + 1;
	} while (!atomic_compare_exchange_weak(&id_last_us, &last, now));
	*out = now;
	return 0;
}

int
queue_id_new(char out[QUEUE_ID_LEN + 1])
{
	unsigned char rnd[ID_RAND_BYTES];
	size_t got = 0;
	int64_t us = 0;
	int rc, i;

	rc = id_time_next(&us);
	if (rc < 0)
		return rc;
	while (got < sizeof(rnd)) {
		ssize_t n = getrandom(rnd + got, sizeof(rnd) - got, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	for (i = ID_TIME_DIGITS - 1; i >= 0; i--) {
		out[i] = hexdig[us & 0xf];
		us >>= 4;
	}
	for (i = 0; i < ID_RAND_BYTES; i++) {
		out[ID_TIME_DIGITS + 2 * i] = hexdig[rnd[i] >> 4];
		out[ID_TIME_DIGITS + 2 * i + 1] = hexdig[rnd[i] & 0xf];
	}
	out[QUEUE_ID_LEN] = '\0';
	return 0;
}

int64_t
queue_id_time_us(const char *id)
{
	int64_t us = 0;
	int i;

	if (!queue_id_valid(id))
		return -1;
	for (i = 0; i < ID_TIME_DIGITS; i++)
		us = (us << 4) | hex_value(id[i]);
	return us;
}

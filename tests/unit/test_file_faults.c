/*
 * test_file_faults.c - what the spool and the maildir transport do when the
 * kernel refuses a step that normally succeeds: an fsync of a folder after
 * a rename, a close of a written file, a write that returns 0, a read or a
 * mapping of a spool file.
 *
 * The faults come from fsync, close, write, pread and mmap defined here: the
 * executable's own definitions win over libc's for the libraries linked into
 * it, and only in this test program. Each one fails only while its counter
 * (or errno to fail with) is set, so cmocka and the set-up code see the real
 * calls.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "spool/queue.h"
#include "spool/transport.h"
#include "spool/util.h"

static int fail_fsync;	     /* fsyncs still to fail with EIO */
static int fail_close;	     /* closes still to fail with EIO */
static int zero_writes;	     /* 1: every write returns 0 */
static int zero_write_calls; /* writes that returned 0 */
static int fail_pread;	     /* errno for the next pread, then 0 */
static int fail_mmap;	     /* errno for the next mmap, then 0 */

int
fsync(int fd)
{
	if (fail_fsync > 0) {
		fail_fsync--;
		errno = EIO;
		return -1;
	}
	return (int)syscall(SYS_fsync, fd);
}

int
close(int fd)
{
	int rc = (int)syscall(SYS_close, fd);

	if (fail_close > 0 && rc == 0) {
		/* NFS reports a failed write-back at close, after the
		 * descriptor is gone */
		fail_close--;
		errno = EIO;
		return -1;
	}
	return rc;
}

ssize_t
write(int fd, const void *buf, size_t len)
{
	if (zero_writes) {
		/* a loop that retries forever must fail the test, not
		 * hang it */
		if (++zero_write_calls > 1000) {
			zero_writes = 0;
			fail_msg("write returning 0 is retried for ever");
		}
		return 0;
	}
	return syscall(SYS_write, fd, buf, len);
}

ssize_t
pread(int fd, void *buf, size_t len, off_t off)
{
	if (fail_pread != 0) {
		errno = fail_pread;
		fail_pread = 0;
		return -1;
	}
	return syscall(SYS_pread64, fd, buf, len, off);
}

void *
mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	if (fail_mmap != 0) {
		errno = fail_mmap;
		fail_mmap = 0;
		return MAP_FAILED;
	}
	return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* A rename that is done but whose folder could not be synced is reported
 * as done (the file is in its new folder), distinctly from a failure. */
static void
spool_move_rename_done_sync_failed(void **state)
{
	static const char *const rcpt[] = {"x@example.org"};
	char dir[] = "/tmp/test_file_faults.XXXXXX", err[256];
	char id[QUEUE_ID_LEN + 1];
	struct spool *sp;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(spool_open(&sp, dir, 1, err, sizeof(err)), 0);
	assert_int_equal(spool_submit(sp, "a@example.org", rcpt, 1,
				      "Subject: x\r\n\r\nbody\r\n", 20, id, err,
				      sizeof(err)),
			 0);
	fail_fsync = 1;
	assert_int_equal(spool_move(sp, id, QUEUE_DIR_NEW, QUEUE_DIR_FAILED),
			 SPOOL_MOVED_UNSYNCED);
	assert_int_equal(fail_fsync, 0);
	assert_int_equal(spool_stat(sp, QUEUE_DIR_FAILED, id, NULL, NULL), 0);
	assert_int_equal(spool_stat(sp, QUEUE_DIR_NEW, id, NULL, NULL),
			 -ENOENT);
	/* a move that did not happen is still an error */
	assert_true(spool_move(sp, id, QUEUE_DIR_NEW, QUEUE_DIR_CUR) < 0);
	spool_close(sp);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A file too big to read is mapped instead, and a read and a mapping that
 * fail for the same reason report the same error: the caller's choice
 * between waiting and giving up must not depend on the file's size. */
static void
spool_file_open_load_failures(void **state)
{
	static const char *const rcpt[] = {"x@example.org"};
	static const int errs[] = {EIO, ENOMEM, EDQUOT, EACCES};
	static const size_t sizes[] = {SPOOL_FILE_READ_MAX / 2,
				       4 * SPOOL_FILE_READ_MAX};
	char dir[] = "/tmp/test_file_faults.XXXXXX", err[256];
	char id[sizeof(sizes) / sizeof(sizes[0])][QUEUE_ID_LEN + 1];
	struct spool_file f;
	struct spool *sp;
	char *msg;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(spool_open(&sp, dir, 1, err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		msg = malloc(sizes[i]);
		assert_non_null(msg);
		memset(msg, 'x', sizes[i]);
		memcpy(msg, "Subject: x\r\n\r\n", 15);
		assert_int_equal(spool_submit(sp, "a@example.org", rcpt, 1, msg,
					      sizes[i], id[i], err,
					      sizeof(err)),
				 0);
		free(msg);
		assert_int_equal(
		    spool_move(sp, id[i], QUEUE_DIR_NEW, QUEUE_DIR_CUR), 0);
	}
	for (size_t e = 0; e < sizeof(errs) / sizeof(errs[0]); e++) {
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			int *fault = sizes[i] > SPOOL_FILE_READ_MAX
					 ? &fail_mmap
					 : &fail_pread;

			*fault = errs[e];
			assert_int_equal(spool_file_open(sp, QUEUE_DIR_CUR,
							 id[i], &f, err,
							 sizeof(err)),
					 -errs[e]);
			assert_int_equal(*fault, 0);
			assert_non_null(strstr(err, strerror(errs[e])));
			assert_int_equal(f.fd, -1);
			spool_file_close(&f); /* a failed open: a no-op */
		}
	}
	/* and with a kernel that behaves, both open */
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		assert_int_equal(spool_file_open(sp, QUEUE_DIR_CUR, id[i], &f,
						 err, sizeof(err)),
				 0);
		assert_int_equal(f.mapped, sizes[i] > SPOOL_FILE_READ_MAX);
		spool_file_close(&f);
	}
	spool_close(sp);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void
maildir_setup(struct transport **t, char *dir, char *path, size_t len)
{
	struct conf_transport cf = {0};
	char err[256];

	assert_non_null(mkdtemp(dir));
	snprintf(path, len, "%s/Maildir", dir);
	str_copy(cf.name, "box", sizeof(cf.name));
	cf.type = CONF_TRANSPORT_MAILDIR;
	cf.path = path;
	assert_int_equal(transport_create(t, &cf, err, sizeof(err)), 0);
}

static int
maildir_count_new(const char *path)
{
	char newdir[600];
	struct dirent *de;
	DIR *d;
	int n = 0;

	snprintf(newdir, sizeof(newdir), "%s/new", path);
	d = opendir(newdir);
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static void
maildir_deliver_one(struct transport *t, struct transport_rcpt *r,
		    struct transport_session *sess)
{
	struct transport_msg m = {0};

	memset(r, 0, sizeof(*r));
	r->address = "x@example.org";
	m.id = "0661ec7d806de6dac13e83c4";
	m.sender = "a@example.org";
	m.rcpt = r;
	m.nrcpt = 1;
	m.data = "Subject: x\r\n\r\nbody\r\n";
	m.len = strlen(m.data);
	assert_int_equal(transport_deliver(t, &m, 1, sess), 0);
}

/* A close that fails (NFS reports a lost write-back there) means the file
 * may not hold the message: it is not delivered. */
static void
maildir_close_failure_defers(void **state)
{
	char dir[] = "/tmp/test_file_faults.XXXXXX", path[512];
	struct transport_session sess;
	struct transport_rcpt r;
	struct transport *t;

	(void)state;
	maildir_setup(&t, dir, path, sizeof(path));
	fail_close = 1;
	maildir_deliver_one(t, &r, &sess);
	fail_close = 0;
	assert_int_equal(r.status, DELIV_TEMPFAIL);
	assert_true(sess.relay_failed);
	assert_non_null(strstr(r.reply, "maildir"));
	assert_int_equal(maildir_count_new(path), 0);
	/* and the next try, with a kernel that behaves, delivers */
	maildir_deliver_one(t, &r, &sess);
	assert_int_equal(r.status, DELIV_OK);
	assert_int_equal(maildir_count_new(path), 1);
	transport_destroy(t);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* write returning 0 makes no progress: an error, never an endless loop. */
static void
maildir_zero_write_fails(void **state)
{
	char dir[] = "/tmp/test_file_faults.XXXXXX", path[512];
	struct transport_session sess;
	struct transport_rcpt r;
	struct transport *t;

	(void)state;
	maildir_setup(&t, dir, path, sizeof(path));
	zero_write_calls = 0;
	zero_writes = 1;
	maildir_deliver_one(t, &r, &sess);
	zero_writes = 0;
	assert_int_equal(r.status, DELIV_TEMPFAIL);
	assert_true(sess.relay_failed);
	assert_int_equal(maildir_count_new(path), 0);
	transport_destroy(t);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(spool_move_rename_done_sync_failed),
	    cmocka_unit_test(spool_file_open_load_failures),
	    cmocka_unit_test(maildir_close_failure_defers),
	    cmocka_unit_test(maildir_zero_write_fails),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_queue.c - unit tests of queue/: ids, spool files (submission,
 * parsing, marks, moves, scans, cleanup) and the LMDB retry state.
 *
 * Every test works in its own directory made with mkdtemp under /tmp and
 * removed afterwards. The ENOSPC case mounts a 64 KiB tmpfs and is skipped
 * when mounting is not permitted.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spool/privs.h"
#include "spool/queue.h"
#include "../../queue/queue_int.h"

#define ERRLEN 256

struct fixture {
	char dir[64];
	char err[ERRLEN];
};

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void
rm_rf(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static int
setup(void **ctx)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (fx == NULL)
		return -1;
	strcpy(fx->dir, "/tmp/test_queue.XXXXXX");
	if (mkdtemp(fx->dir) == NULL) {
		free(fx);
		return -1;
	}
	*ctx = fx;
	return 0;
}

static int
teardown(void **ctx)
{
	struct fixture *fx = *ctx;

	rm_rf(fx->dir);
	free(fx);
	return 0;
}

static char *
path_of(const struct fixture *fx, const char *rel)
{
	static char buf[512];

	snprintf(buf, sizeof(buf), "%s/%s", fx->dir, rel);
	return buf;
}

/* Number of entries in dir other than "." and "..". */
static int
dir_count(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void
write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static struct spool *
open_spool(struct fixture *fx)
{
	struct spool *sp = NULL;

	assert_int_equal(spool_open(&sp, fx->dir, 1, fx->err, ERRLEN), 0);
	assert_non_null(sp);
	return sp;
}

static const char test_msg[] = "From: a@example.org\r\n"
			       "Subject: hi\r\n"
			       "\r\n"
			       "body\r\n";

static void
submit_one(struct spool *sp, char id[QUEUE_ID_LEN + 1], size_t nrcpt)
{
	static const char *const rcpt[] = {"x@example.org", "y@example.org",
					   "z@example.org"};
	char err[ERRLEN];

	assert_true(nrcpt <= 3);
	assert_int_equal(spool_submit(sp, "a@example.org", rcpt, nrcpt,
				      test_msg, strlen(test_msg), id, err,
				      sizeof(err)),
			 0);
}

/* ---- ids ------------------------------------------------------------ */

static int
cmp_id(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void
test_id_shape_unique_ordered(void **ctx)
{
	enum { N = 2000 };
	static char ids[N][QUEUE_ID_LEN + 1];
	static char sorted[N][QUEUE_ID_LEN + 1];
	struct timespec ts;
	int64_t before, after;
	int i, j;

	(void)ctx;
	clock_gettime(CLOCK_REALTIME, &ts);
	before = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	for (i = 0; i < N; i++) {
		assert_int_equal(queue_id_new(ids[i]), 0);
		assert_int_equal(strlen(ids[i]), QUEUE_ID_LEN);
		for (j = 0; j < QUEUE_ID_LEN; j++)
			assert_non_null(strchr("0123456789abcdef", ids[i][j]));
		assert_true(queue_id_valid(ids[i]));
		if (i > 0)
			assert_true(strcmp(ids[i - 1], ids[i]) < 0);
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	after = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	/* ids made in one microsecond are bumped by one each */
	assert_true(queue_id_time_us(ids[0]) >= before);
	assert_true(queue_id_time_us(ids[N - 1]) <= after + N);

	memcpy(sorted, ids, sizeof(ids));
	qsort(sorted, N, sizeof(sorted[0]), cmp_id);
	for (i = 1; i < N; i++)
		assert_true(strcmp(sorted[i - 1], sorted[i]) < 0);
	/* the random part differs: not all equal */
	for (i = 1; i < N; i++)
		if (strcmp(ids[i] + 14, ids[0] + 14) != 0)
			break;
	assert_true(i < N);

	assert_int_equal(queue_id_time_us("00000000000010ffffffffff"), 16);
}

static void
test_id_invalid(void **ctx)
{
	static const char *const bad[] = {
	    "",
	    "0123456789abcdef0123456",	 /* 23 */
	    "0123456789abcdef012345678", /* 25 */
	    "0123456789ABCDEF01234567",	 /* upper case */
	    "0123456789abcdeg01234567",
	    "0123456789abcdef0123456/",
	    "../3456789abcdef01234567",
	    "0123456789abcdef 1234567",
	};
	size_t i;

	(void)ctx;
	assert_false(queue_id_valid(NULL));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(queue_id_valid(bad[i]));
		assert_int_equal(queue_id_time_us(bad[i]), -1);
	}
	assert_true(queue_id_valid("0123456789abcdef01234567"));
	assert_string_equal(queue_msg_state_name(QUEUE_MSG_DEFERRED),
			    "deferred");
	assert_string_equal(queue_msg_state_name(QUEUE_MSG_HELD), "held");
	assert_string_equal(queue_rcpt_state_name(QUEUE_RCPT_SENT), "sent");
	assert_string_equal(queue_rcpt_state_name(QUEUE_RCPT_PENDING),
			    "pending");
}

/* ---- spool_open ----------------------------------------------------- */

static void
test_spool_open(void **ctx)
{
	static const char *const subs[] = {"tmp",    "new",  "cur",
					   "failed", "hold", "state"};
	static const mode_t modes[] = {03730, 03730, 0700, 0700, 0700, 0700};
	struct fixture *fx = *ctx;
	struct spool *sp = NULL;
	struct stat st;
	char dir[128];
	size_t i;

	snprintf(dir, sizeof(dir), "%s/missing", fx->dir);
	assert_int_equal(spool_open(&sp, dir, 0, fx->err, ERRLEN), -ENOENT);
	assert_null(sp);
	assert_non_null(strstr(fx->err, dir));
	assert_non_null(strstr(fx->err, "No such file"));

	/* create makes missing parents too */
	snprintf(dir, sizeof(dir), "%s/a/spool", fx->dir);
	assert_int_equal(spool_open(&sp, dir, 1, fx->err, ERRLEN), 0);
	assert_string_equal(spool_path(sp), dir);
	assert_int_equal(stat(dir, &st), 0);
	/* anyone may reach the drop folders; nothing else is open */
	assert_int_equal(st.st_mode & 07777, 0711);
	for (i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		char p[256];

		snprintf(p, sizeof(p), "%s/%s", dir, subs[i]);
		assert_int_equal(stat(p, &st), 0);
		assert_true(S_ISDIR(st.st_mode));
		assert_int_equal(st.st_mode & 07777, modes[i]);
	}
	assert_true(spool_dirfd(sp, QUEUE_DIR_NEW) >= 0);
	assert_int_equal(spool_dirfd(sp, (enum queue_dir)9), -EINVAL);
	spool_close(sp);
	spool_close(NULL);

	/* an existing spool opens without create */
	assert_int_equal(spool_open(&sp, dir, 0, fx->err, ERRLEN), 0);
	spool_close(sp);
	/* a spool missing a folder does not */
	snprintf(dir, sizeof(dir), "%s/a/spool/cur", fx->dir);
	assert_int_equal(rmdir(dir), 0);
	snprintf(dir, sizeof(dir), "%s/a/spool", fx->dir);
	assert_int_equal(spool_open(&sp, dir, 0, fx->err, ERRLEN), -ENOENT);
	assert_non_null(strstr(fx->err, "cur"));
}

/* ---- spool_own ------------------------------------------------------ */

/* owner, group and mode of path (lstat) as "uid:gid:mode" */
static const char *
own_of(const char *path, char buf[256])
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return "missing";
	snprintf(buf, 256, "%u:%u:%o", (unsigned)st.st_uid, (unsigned)st.st_gid,
		 (unsigned)(st.st_mode & 07777));
	return buf;
}

/* asserts the owner, group and mode of dir/rel ("" for dir itself) */
static void
expect_own(const char *dir, const char *rel, const char *want)
{
	char p[256], b[256];

	snprintf(p, sizeof(p), "%s%s%s", dir, rel[0] ? "/" : "", rel);
	assert_string_equal(own_of(p, b), want);
}

static void
make_file(const char *path, uid_t uid, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x", 1), 1);
	assert_int_equal(fchown(fd, uid, 0), 0);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

/* A spool of the earlier model (root's, tmp/ and new/ 1733 and writable
 * by all) becomes the daemon user's; planted links are left alone; a
 * second call changes nothing; a missing spool is made in the new model. */
static void
test_spool_own(void **ctx)
{
	/* the daemon's user and groups: ids of no account are fine here */
	const struct privs_ids ids = {
	    .uid = 4321, .gid = 4322, .submit_gid = 4323, .user = "daemon"};
	static const char *const subs[] = {"tmp",    "new",  "cur",
					   "failed", "hold", "state"};
	struct fixture *fx = *ctx;
	char d[128], p[256], b[256];
	int adopted = -1;

	if (geteuid() != 0)
		fail_msg("spool_own needs root (the test suite runs as root)");
	snprintf(d, sizeof(d), "%s/old", fx->dir);
	assert_int_equal(mkdir(d, 0711), 0);
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", d, subs[i]);
		assert_int_equal(mkdir(p, 0700), 0);
		assert_int_equal(chmod(p, i < 2 ? 01733 : 0700), 0);
	}
	snprintf(p, sizeof(p), "%s/new/users", d);
	make_file(p, 65534, 0600);
	snprintf(p, sizeof(p), "%s/cur/roots", d);
	make_file(p, 0, 0600);
	snprintf(p, sizeof(p), "%s/state/data.mdb", d);
	make_file(p, 0, 0600);
	snprintf(p, sizeof(p), "%s/spoold.pid", d);
	make_file(p, 0, 0644);
	/* planted by a user: a link to a file of root's, a second name */
	snprintf(p, sizeof(p), "%s/new/link", d);
	assert_int_equal(symlink("../spoold.pid", p), 0);
	snprintf(b, sizeof(b), "%s/new/hard", d);
	snprintf(p, sizeof(p), "%s/cur/roots", d);
	assert_int_equal(link(p, b), 0);

	assert_int_equal(spool_own(d, &ids, &adopted, fx->err, ERRLEN), 0);
	assert_int_equal(adopted, 1);
	expect_own(d, "", "4321:4322:711");
	expect_own(d, "new", "4321:4323:3730");
	expect_own(d, "tmp", "4321:4323:3730");
	expect_own(d, "state", "4321:4322:700");
	/* a waiting file keeps its owner, gets the group and 0640 */
	expect_own(d, "new/users", "65534:4323:640");
	expect_own(d, "state/data.mdb", "4321:4322:600");
	expect_own(d, "spoold.pid", "4321:4322:600");
	/* the link itself and the file with two names: untouched (the
	 * second name's file is cur/roots, so it stays root's too) */
	snprintf(p, sizeof(p), "%s/new/link", d);
	assert_true(strncmp(own_of(p, b), "0:0:", 4) == 0);
	expect_own(d, "cur/roots", "0:0:600");

	assert_int_equal(spool_own(d, &ids, &adopted, fx->err, ERRLEN), 0);
	assert_int_equal(adopted, 0);

	snprintf(d, sizeof(d), "%s/fresh/spool", fx->dir);
	assert_int_equal(spool_own(d, &ids, &adopted, fx->err, ERRLEN), 0);
	assert_int_equal(adopted, 0);
	expect_own(d, "", "4321:4322:711");
	expect_own(d, "new", "4321:4323:3730");
	expect_own(d, "cur", "4321:4322:700");
}

/* ---- submission ----------------------------------------------------- */

static void
test_submit_ok(void **ctx)
{
	static const char *const rcpt[] = {"x@example.org", "y@example.org"};
	struct fixture *fx = *ctx;
	struct spool *sp = open_spool(fx);
	char id[QUEUE_ID_LEN + 1], p[256];
	struct spool_file f;
	struct stat st;
	time_t now = time(NULL);

	assert_int_equal(spool_submit(sp, "a@example.org", rcpt, 2, test_msg,
				      strlen(test_msg), id, fx->err, ERRLEN),
			 0);
	assert_true(queue_id_valid(id));
	snprintf(p, sizeof(p), "%s/new/%s", fx->dir, id);
	assert_int_equal(stat(p, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(dir_count(path_of(fx, "tmp")), 0);
	assert_int_equal(dir_count(path_of(fx, "new")), 1);

	assert_int_equal(
	    spool_file_open(sp, QUEUE_DIR_NEW, id, &f, fx->err, ERRLEN), 0);
	assert_string_equal(f.id, id);
	assert_string_equal(f.env.sender, "a@example.org");
	assert_int_equal(f.env.nrcpt, 2);
	assert_string_equal(f.env.rcpt[0].address, "x@example.org");
	assert_string_equal(f.env.rcpt[1].address, "y@example.org");
	assert_int_equal(f.env.rcpt[0].state, QUEUE_RCPT_PENDING);
	assert_int_equal(f.data[f.env.rcpt[1].mark_off], 'R');
	assert_true(f.env.queued_at >= now - 1 && f.env.queued_at <= now + 1);
	assert_int_equal(f.size - f.body_off, strlen(test_msg));
	assert_memory_equal(f.data + f.body_off, test_msg, strlen(test_msg));
	assert_int_equal(f.size, (size_t)st.st_size);
	spool_file_close(&f);

	/* the null sender and an empty message are fine */
	assert_int_equal(
	    spool_submit(sp, "", rcpt, 1, NULL, 0, id, fx->err, ERRLEN), 0);
	assert_int_equal(
	    spool_file_open(sp, QUEUE_DIR_NEW, id, &f, fx->err, ERRLEN), 0);
	assert_string_equal(f.env.sender, "");
	assert_int_equal(f.body_off, f.size);
	spool_file_close(&f);
	spool_close(sp);
}

static void
test_submit_bad_input(void **ctx)
{
	static char longaddr[QUEUE_ADDR_MAX + 2];
	static const char *const r_ok[] = {"x@example.org"};
	static const char *const r_crlf[] = {"x@example.org\r\nRCPT TO:<y>"};
	static const char *const r_ctl[] = {"x\001@example.org"};
	static const char *const r_empty[] = {""};
	static const char *const r_null[] = {NULL};
	static const char *const r_long[] = {longaddr};
	static const char *const r_second_bad[] = {"x@example.org", "a\nb"};
	const struct {
		const char *sender;
		const char *const *rcpt;
		size_t nrcpt;
		const char *want;
	} t[] = {
	    {"a@b", r_ok, 0, "no recipient"},
	    {"a@b", NULL, 1, "no recipient"},
	    {"a@b", r_crlf, 1, "line break"},
	    {"a@b", r_ctl, 1, "control character"},
	    {"a@b", r_empty, 1, "empty address"},
	    {"a@b", r_null, 1, "empty address"},
	    {"a@b", r_long, 1, "too long"},
	    {"a@b", r_second_bad, 2, "recipient 2"},
	    {"a@b\r\nR evil@x", r_ok, 1, "sender"},
	    {NULL, r_ok, 1, "sender"},
	};
	struct fixture *fx = *ctx;
	struct spool *sp = open_spool(fx);
	char id[QUEUE_ID_LEN + 1];
	size_t i;

	memset(longaddr, 'a', sizeof(longaddr) - 1);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		fx->err[0] = '\0';
		assert_int_equal(spool_submit(sp, t[i].sender, t[i].rcpt,
					      t[i].nrcpt, test_msg,
					      strlen(test_msg), id, fx->err,
					      ERRLEN),
				 -EINVAL);
		if (strstr(fx->err, t[i].want) == NULL)
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, fx->err,
				 t[i].want);
	}
	assert_int_equal(dir_count(path_of(fx, "tmp")), 0);
	assert_int_equal(dir_count(path_of(fx, "new")), 0);
	spool_close(sp);
}

static void
test_submit_never_overwrites(void **ctx)
{
	static const char *const rcpt[] = {"x@example.org"};
	static const char id[] = "0123456789abcdef01234567";
	struct fixture *fx = *ctx;
	struct spool *sp = open_spool(fx);
	char p[256], buf[16] = {0};
	int fd;

	snprintf(p, sizeof(p), "%s/new/%s", fx->dir, id);
	write_file(p, "precious", 8);
	assert_int_equal(spool_submit_id(sp, id, "a@b", rcpt, 1, test_msg,
					 strlen(test_msg), fx->err, ERRLEN),
			 -EEXIST);
	assert_non_null(strstr(fx->err, id));
	assert_non_null(strstr(fx->err, "File exists"));
	fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf)), 8);
	close(fd);
	assert_string_equal(buf, "precious");
	assert_int_equal(dir_count(path_of(fx, "tmp")), 0);
	assert_int_equal(dir_count(path_of(fx, "new")), 1);
	spool_close(sp);
}

static void
test_submit_rename_fails(void **ctx)
{
	static const char *const rcpt[] = {"x@example.org"};
	struct fixture *fx = *ctx;
	struct spool *sp = open_spool(fx);
	char id[QUEUE_ID_LEN + 1];
	int devnull;

	/* new/ is no longer a directory: the move into it fails */
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(devnull >= 0);
	assert_true(dup2(devnull, spool_dirfd(sp, QUEUE_DIR_NEW)) >= 0);
	close(devnull);
	assert_int_equal(spool_submit(sp, "a@b", rcpt, 1, test_msg,
				      strlen(test_msg), id, fx->err, ERRLEN),
			 -ENOTDIR);
	assert_non_null(strstr(fx->err, "new/"));
	assert_int_equal(dir_count(path_of(fx, "tmp")), 0);
	assert_int_equal(dir_count(path_of(fx, "new")), 0);
	spool_close(sp);
}

static void
test_submit_enospc(void **ctx)
{
	static const char *const rcpt[] = {"x@example.org"};
	struct fixture *fx = *ctx;
	struct spool *sp = NULL;
	char mnt[128], sub[160], id[QUEUE_ID_LEN + 1];
	size_t big = 256 * 1024;
	char *msg;
	int rc;

	snprintf(mnt, sizeof(mnt), "%s/mnt", fx->dir);
	assert_int_equal(mkdir(mnt, 0700), 0);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=64k") < 0) {
		fprintf(stderr, "# cannot mount tmpfs (%s): skipped\n",
			strerror(errno));
		skip();
	}
	msg = malloc(big);
	assert_non_null(msg);
	memset(msg, 'x', big);
	rc = spool_open(&sp, mnt, 1, fx->err, ERRLEN);
	if (rc == 0)
		rc = spool_submit(sp, "a@b", rcpt, 1, msg, big, id, fx->err,
				  ERRLEN);
	free(msg);
	if (rc == -ENOSPC) {
		snprintf(sub, sizeof(sub), "%s/tmp", mnt);
		rc = dir_count(sub);
		snprintf(sub, sizeof(sub), "%s/new", mnt);
		rc += dir_count(sub);
		/* a small message still fits once the big one is gone */
		if (rc == 0 && spool_submit(sp, "a@b", rcpt, 1, test_msg,
					    strlen(test_msg), id, NULL, 0) != 0)
			rc = -1;
	} else {
		rc = 1000 - rc;
	}
	spool_close(sp);
	umount(mnt);
	assert_int_equal(rc, 0);
	assert_non_null(strstr(fx->err, "spool: write tmp/"));
	assert_non_null(strstr(fx->err, "No space left on device"));
}

/* ---- parsing -------------------------------------------------------- */

struct parse_case {
	const char *name;
	const char *data;
	size_t len; /* 0: strlen(data) */
	int rc;
	size_t nrcpt;
	const char *sender;
	size_t body_off;
	const char *why; /* part of the error text */
};

static void
parse_check(const struct parse_case *c)
{
	struct spool_envelope env;
	size_t len = c->len ? c->len : strlen(c->data), body = 12345;
	char err[ERRLEN] = "";
	char *copy;
	int rc;

	/* an exact-size heap copy lets the sanitizers see any overread */
	copy = malloc(len ? len : 1);
	assert_non_null(copy);
	memcpy(copy, c->data, len);
	rc = spool_parse(copy, len, &env, &body, err, sizeof(err));
	free(copy);
	if (rc != c->rc)
		fail_msg("%s: rc %d, want %d (%s)", c->name, rc, c->rc, err);
	if (rc < 0) {
		if (strstr(err, c->why) == NULL)
			fail_msg("%s: \"%s\" lacks \"%s\"", c->name, err,
				 c->why);
		assert_null(env.rcpt);
		assert_null(env.sender);
		return;
	}
	assert_int_equal(env.nrcpt, c->nrcpt);
	assert_string_equal(env.sender, c->sender);
	assert_int_equal(body, c->body_off);
	spool_envelope_free(&env);
}

static void
test_parse_table(void **ctx)
{
	static char longline[64 + QUEUE_ADDR_MAX];
	static const char nul_addr[] = "SPOOLD 1\nS a@b\nR x\0y\n\n";
	const struct parse_case t[] = {
	    {"minimal", "SPOOLD 1\nS a@b\nR c@d\n\nbody", 0, 0, 1, "a@b", 22,
	     NULL},
	    {"crlf", "SPOOLD 1\r\nS a@b\r\nR c@d\r\n\r\nbody", 0, 0, 1, "a@b",
	     26, NULL},
	    {"full", "SPOOLD 1\nT 1700000000\nS \nR a@x\nD b@x\nF c@x\n\n", 0,
	     0, 3, "", 44, NULL},
	    {"empty body", "SPOOLD 1\nS a@b\nR c@d\n\n", 0, 0, 1, "a@b", 22,
	     NULL},
	    {"empty", "", 0, -EINVAL, 0, NULL, 0, "empty"},
	    {"bad magic", "SPOOLD 2\nS a@b\nR c@d\n\n", 0, -EINVAL, 0, NULL, 0,
	     "not a spool file"},
	    {"magic prefix", "SPOOLD 10\nS a@b\nR c@d\n\n", 0, -EINVAL, 0, NULL,
	     0, "not a spool file"},
	    {"magic only", "SPOOLD 1", 0, -EINVAL, 0, NULL, 0, "empty line"},
	    {"no blank line", "SPOOLD 1\nS a@b\nR c@d\n", 0, -EINVAL, 0, NULL,
	     0, "empty line"},
	    {"cut in a line", "SPOOLD 1\nS a@b\nR c@", 0, -EINVAL, 0, NULL, 0,
	     "empty line"},
	    {"no sender", "SPOOLD 1\nR c@d\n\n", 0, -EINVAL, 0, NULL, 0,
	     "no sender"},
	    {"two senders", "SPOOLD 1\nS a@b\nS e@f\nR c@d\n\n", 0, -EINVAL, 0,
	     NULL, 0, "second sender"},
	    {"no recipient", "SPOOLD 1\nS a@b\n\n", 0, -EINVAL, 0, NULL, 0,
	     "no recipient"},
	    {"no space", "SPOOLD 1\nS a@b\nRc@d\n\n", 0, -EINVAL, 0, NULL, 0,
	     "line 3: not of the form"},
	    {"letter only", "SPOOLD 1\nS a@b\nR\n\n", 0, -EINVAL, 0, NULL, 0,
	     "not of the form"},
	    {"unknown type", "SPOOLD 1\nS a@b\nX c@d\n\n", 0, -EINVAL, 0, NULL,
	     0, "unknown line type"},
	    {"empty rcpt", "SPOOLD 1\nS a@b\nR \n\n", 0, -EINVAL, 0, NULL, 0,
	     "empty address"},
	    {"CR in rcpt", "SPOOLD 1\nS a@b\nR c\r@d\n\n", 0, -EINVAL, 0, NULL,
	     0, "line break"},
	    {"CR in sender", "SPOOLD 1\nS a\rb\nR c@d\n\n", 0, -EINVAL, 0, NULL,
	     0, "sender: line break"},
	    {"NUL in rcpt", nul_addr, sizeof(nul_addr) - 1, -EINVAL, 0, NULL, 0,
	     "NUL"},
	    {"long rcpt", longline, 0, -EINVAL, 0, NULL, 0, "too long"},
	    {"bad time", "SPOOLD 1\nT 12a\nS a@b\nR c@d\n\n", 0, -EINVAL, 0,
	     NULL, 0, "bad time"},
	    {"time overflow",
	     "SPOOLD 1\nT 99999999999999999999\nS a@b\nR c@d\n\n", 0, -EINVAL,
	     0, NULL, 0, "bad time"},
	    {"two times", "SPOOLD 1\nT 1\nT 2\nS a@b\nR c@d\n\n", 0, -EINVAL, 0,
	     NULL, 0, "second T"},
	};
	size_t i;
	int n;

	(void)ctx;
	n = snprintf(longline, sizeof(longline), "SPOOLD 1\nS a@b\nR ");
	memset(longline + n, 'a', QUEUE_ADDR_MAX + 1);
	strcpy(longline + n + QUEUE_ADDR_MAX + 1, "\n\n");
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		parse_check(&t[i]);
}

static void
test_parse_details(void **ctx)
{
	static const char data[] =
	    "SPOOLD 1\r\nT 1700000000\r\nS s@x\r\nR a@x\r\nD b@x\r\n"
	    "F c@x\r\n\r\nbody";
	struct spool_envelope env;
	char err[ERRLEN];
	size_t body, len = sizeof(data) - 1, i;

	(void)ctx;
	assert_int_equal(spool_parse(data, len, &env, &body, err, ERRLEN), 0);
	assert_int_equal(env.queued_at, 1700000000);
	assert_int_equal(env.nrcpt, 3);
	assert_string_equal(env.rcpt[0].address, "a@x");
	assert_int_equal(env.rcpt[0].state, QUEUE_RCPT_PENDING);
	assert_int_equal(env.rcpt[1].state, QUEUE_RCPT_SENT);
	assert_int_equal(env.rcpt[2].state, QUEUE_RCPT_FAILED);
	assert_int_equal(data[env.rcpt[0].mark_off], 'R');
	assert_int_equal(data[env.rcpt[1].mark_off], 'D');
	assert_int_equal(data[env.rcpt[2].mark_off], 'F');
	assert_string_equal(data + body, "body");
	spool_envelope_free(&env);

	/* every cut before the end of the envelope is refused */
	for (i = 0; i < body; i++) {
		char *copy = malloc(i ? i : 1);

		assert_non_null(copy);
		memcpy(copy, data, i);
		assert_int_equal(spool_parse(copy, i, &env, &body, err, ERRLEN),
				 -EINVAL);
		free(copy);
	}
}

/* Random damage never crashes the parser or makes it read out of bounds. */
static void
test_parse_mutations(void **ctx)
{
	static const char data[] = "SPOOLD 1\nT 17\nS s@x\nR a@x\nD b@x\n\nb";
	struct spool_envelope env;
	size_t len = sizeof(data) - 1, body;
	unsigned seed = 12345;
	int i, j, ok = 0;

	(void)ctx;
	for (i = 0; i < 20000; i++) {
		char *copy = malloc(len);
		int rc;

		assert_non_null(copy);
		memcpy(copy, data, len);
		for (j = 0; j < 3; j++) {
			seed = seed * 1103515245 + 12345;
			copy[(seed >> 8) % len] = (char)(seed >> 20);
		}
		rc = spool_parse(copy, len, &env, &body, NULL, 0);
		assert_true(rc == 0 || rc == -EINVAL);
		if (rc == 0) {
			assert_true(body <= len);
			assert_true(env.nrcpt > 0);
			spool_envelope_free(&env);
			ok++;
		}
		free(copy);
	}
	assert_true(ok > 0);
}

/* ---- open files, marks, moves, scans ------------------------------------ */

static void
test_file_open_errors(void **ctx)
{
	struct fixture *fx = *ctx;
	struct spool *sp = open_spool(fx);
	static const char id[] = "0123456789abcdef01234567";
	struct spool_file f;
	char p[256];

	assert_int_equal(
	    spool_file_open(sp, QUEUE_DIR_CUR, id, &f, fx->err, ERRLEN),
	    -ENOENT);
	assert_non_null(strstr(fx->err, "cur/0123456789abcdef01234567"));
	spool_file_close(&f); /* a failed open leaves nothing to close */
	assert_int_equal(
	    spool_file_open(sp, QUEUE_DIR_CUR, "../x", &f, fx->err, ERRLEN),
	    -EINVAL);

	snprintf(p, sizeof(p), "%s/cur/%s", fx->dir, id);
	write_file(p, "", 0);
	assert_int_equal(
	    spool_file_open(sp, QUEUE_DIR_CUR, id, &f, fx->err, ERRLEN),
	    -EINVAL);
	assert_non_null(strstr(fx->err, "empty"));
	write_file(p, "garbage\n", 8);
	assert_int_equal(
	    spool_file_open(sp, QUEUE_DIR_CUR, id, &f, fx->err, ERRLEN),
	    -EINVAL);
	assert_non_null(strstr(fx->err, "not a spool file"));
	spool_close(sp);
}

/* Files on either side of SPOOL_FILE_READ_MAX: read or mapped, the same
 * content, envelope and marks. */
static void
test_file_open_read_and_mapped(void **ctx)
{
	static const size_t sizes[] = {SPOOL_FILE_READ_MAX / 2,
				       SPOOL_FILE_READ_MAX + 1,
				       4 * SPOOL_FILE_READ_MAX};
	static const char *const rcpt[] = {"x@example.org"};
	struct fixture *fx = *ctx;
	struct spool *sp = open_spool(fx);

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		char id[QUEUE_ID_LEN + 1];
		struct spool_file f;
		size_t len = sizes[k];
		char *msg = malloc(len);

		assert_non_null(msg);
		memset(msg, 'a' + (int)k, len);
		memcpy(msg, "Subject: big\n\n", 15);
		msg[len - 1] = '\n';
		assert_int_equal(spool_submit(sp, "a@example.org", rcpt, 1, msg,
					      len, id, fx->err, ERRLEN),
				 0);
		assert_int_equal(
		    spool_move(sp, id, QUEUE_DIR_NEW, QUEUE_DIR_CUR), 0);
		assert_int_equal(
		    spool_file_open(sp, QUEUE_DIR_CUR, id, &f, fx->err, ERRLEN),
		    0);
		assert_int_equal(f.mapped, f.size > SPOOL_FILE_READ_MAX);
		/* the body is the message as submitted, after the Received
		 * line spool_submit adds */
		assert_true(f.size - f.body_off >= len);
		assert_memory_equal(f.data + f.size - len, msg, len);
		assert_string_equal(f.env.rcpt[0].address, "x@example.org");
		assert_int_equal(spool_file_mark(&f, 0, QUEUE_RCPT_SENT), 0);
		assert_int_equal(spool_file_sync(&f), 0);
		spool_file_close(&f);
		assert_int_equal(
		    spool_file_open(sp, QUEUE_DIR_CUR, id, &f, fx->err, ERRLEN),
		    0);
		assert_int_equal(f.env.rcpt[0].state, QUEUE_RCPT_SENT);
		spool_file_close(&f);
		free(msg);
	}
	spool_close(sp);
}

static void
test_mark_and_reopen(void **ctx)
{
	struct fixture *fx = *ctx;
	struct spool *sp = open_spool(fx);
	char id[QUEUE_ID_LEN + 1];
	struct spool_file f;

	submit_one(sp, id, 3);
	assert_int_equal(spool_move(sp, id, QUEUE_DIR_NEW, QUEUE_DIR_CUR), 0);
	assert_int_equal(
	    spool_file_open(sp, QUEUE_DIR_CUR, id, &f, fx->err, ERRLEN), 0);
	assert_int_equal(spool_file_mark(&f, 0, QUEUE_RCPT_SENT), 0);
	assert_int_equal(spool_file_mark(&f, 2, QUEUE_RCPT_FAILED), 0);
	assert_int_equal(spool_file_mark(&f, 3, QUEUE_RCPT_SENT), -EINVAL);
	assert_int_equal(spool_file_mark(&f, 1, (enum queue_rcpt_state)7),
			 -EINVAL);
	/* the kept state shows the marks at once; data, read at the open,
	 * does not */
	assert_false(f.mapped);
	assert_int_equal(f.data[f.env.rcpt[0].mark_off], 'R');
	assert_int_equal(f.env.rcpt[0].state, QUEUE_RCPT_SENT);
	assert_int_equal(f.env.rcpt[1].state, QUEUE_RCPT_PENDING);
	assert_int_equal(f.env.rcpt[2].state, QUEUE_RCPT_FAILED);
	assert_int_equal(spool_file_sync(&f), 0);
	spool_file_close(&f);

	assert_int_equal(
	    spool_file_open(sp, QUEUE_DIR_CUR, id, &f, fx->err, ERRLEN), 0);
	assert_int_equal(f.env.nrcpt, 3);
	assert_int_equal(f.env.rcpt[0].state, QUEUE_RCPT_SENT);
	assert_int_equal(f.env.rcpt[1].state, QUEUE_RCPT_PENDING);
	assert_int_equal(f.env.rcpt[2].state, QUEUE_RCPT_FAILED);
	assert_string_equal(f.env.rcpt[2].address, "z@example.org");
	/* marking back to pending is allowed (requeue) */
	assert_int_equal(spool_file_mark(&f, 2, QUEUE_RCPT_PENDING), 0);
	assert_int_equal(f.env.rcpt[2].state, QUEUE_RCPT_PENDING);
	spool_file_close(&f);
	assert_int_equal(
	    spool_file_open(sp, QUEUE_DIR_CUR, id, &f, fx->err, ERRLEN), 0);
	assert_int_equal(f.env.rcpt[2].state, QUEUE_RCPT_PENDING);
	spool_file_close(&f);
	spool_close(sp);
}

struct scan_ctx {
	char names[16][QUEUE_ID_LEN + 8];
	int n;
	int stop_at;
};

static int
scan_cb(const char *name, void *arg)
{
	struct scan_ctx *s = arg;

	if (s->n < 16)
		snprintf(s->names[s->n], sizeof(s->names[0]), "%s", name);
	s->n++;
	return s->n == s->stop_at ? 42 : 0;
}

static int
scan_has(const struct scan_ctx *s, const char *name)
{
	int i;

	for (i = 0; i < s->n && i < 16; i++)
		if (strcmp(s->names[i], name) == 0)
			return 1;
	return 0;
}

static void
test_move_remove_scan(void **ctx)
{
	struct fixture *fx = *ctx;
	struct spool *sp = open_spool(fx);
	char a[QUEUE_ID_LEN + 1], b[QUEUE_ID_LEN + 1], c[QUEUE_ID_LEN + 1];
	char p[256];
	struct scan_ctx s = {0};
	uint64_t size;
	int64_t mtime;

	submit_one(sp, a, 1);
	submit_one(sp, b, 2);
	submit_one(sp, c, 3);
	/* names that are not ids are skipped outside tmp/ */
	write_file(path_of(fx, "new/junk"), "x", 1);
	write_file(path_of(fx, "new/.hidden"), "x", 1);
	write_file(path_of(fx, "new/0123456789ABCDEF01234567"), "x", 1);
	assert_int_equal(spool_scan(sp, QUEUE_DIR_NEW, scan_cb, &s), 0);
	assert_int_equal(s.n, 3);
	assert_true(scan_has(&s, a) && scan_has(&s, b) && scan_has(&s, c));

	/* the callback's value stops the scan */
	memset(&s, 0, sizeof(s));
	s.stop_at = 2;
	assert_int_equal(spool_scan(sp, QUEUE_DIR_NEW, scan_cb, &s), 42);
	assert_int_equal(s.n, 2);

	assert_int_equal(spool_move(sp, a, QUEUE_DIR_NEW, QUEUE_DIR_CUR), 0);
	assert_int_equal(spool_move(sp, b, QUEUE_DIR_NEW, QUEUE_DIR_FAILED), 0);
	assert_int_equal(spool_move(sp, a, QUEUE_DIR_NEW, QUEUE_DIR_CUR),
			 -ENOENT);
	assert_int_equal(spool_move(sp, "junk", QUEUE_DIR_NEW, QUEUE_DIR_CUR),
			 -EINVAL);
	/* a move never replaces a file */
	snprintf(p, sizeof(p), "%s/cur/%s", fx->dir, c);
	write_file(p, "other", 5);
	assert_int_equal(spool_move(sp, c, QUEUE_DIR_NEW, QUEUE_DIR_CUR),
			 -EEXIST);
	assert_int_equal(spool_stat(sp, QUEUE_DIR_CUR, c, &size, NULL), 0);
	assert_int_equal(size, 5);
	assert_int_equal(spool_stat(sp, QUEUE_DIR_NEW, c, &size, &mtime), 0);
	assert_true(size > strlen(test_msg));
	assert_true(mtime > 0 && mtime <= time(NULL));

	memset(&s, 0, sizeof(s));
	assert_int_equal(spool_scan(sp, QUEUE_DIR_CUR, scan_cb, &s), 0);
	assert_int_equal(s.n, 2);
	assert_true(scan_has(&s, a) && scan_has(&s, c));
	memset(&s, 0, sizeof(s));
	assert_int_equal(spool_scan(sp, QUEUE_DIR_FAILED, scan_cb, &s), 0);
	assert_int_equal(s.n, 1);
	assert_true(scan_has(&s, b));

	assert_int_equal(spool_remove(sp, QUEUE_DIR_CUR, a), 0);
	assert_int_equal(spool_remove(sp, QUEUE_DIR_CUR, a), -ENOENT);
	assert_int_equal(spool_stat(sp, QUEUE_DIR_CUR, a, NULL, NULL), -ENOENT);
	assert_int_equal(spool_remove(sp, QUEUE_DIR_NEW, "../cur"), -EINVAL);

	/* tmp/ passes every regular file, whatever its name */
	write_file(path_of(fx, "tmp/partial.123"), "x", 1);
	assert_int_equal(mkdir(path_of(fx, "tmp/adir"), 0700), 0);
	memset(&s, 0, sizeof(s));
	assert_int_equal(spool_scan(sp, QUEUE_DIR_TMP, scan_cb, &s), 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.names[0], "partial.123");
	assert_int_equal(spool_remove(sp, QUEUE_DIR_TMP, "partial.123"), 0);
	spool_close(sp);
}

static void
age_file(const char *path, time_t age)
{
	struct timespec ts[2];

	ts[0].tv_sec = ts[1].tv_sec = time(NULL) - age;
	ts[0].tv_nsec = ts[1].tv_nsec = 0;
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void
test_clean_tmp(void **ctx)
{
	struct fixture *fx = *ctx;
	struct spool *sp = open_spool(fx);
	struct stat st;

	write_file(path_of(fx, "tmp/old1"), "x", 1);
	age_file(path_of(fx, "tmp/old1"), 7200);
	write_file(path_of(fx, "tmp/old2"), "x", 1);
	age_file(path_of(fx, "tmp/old2"), 3700);
	write_file(path_of(fx, "tmp/fresh"), "x", 1);
	age_file(path_of(fx, "tmp/fresh"), 60);
	/* old files elsewhere are not touched */
	write_file(path_of(fx, "new/0123456789abcdef01234567"), "x", 1);
	age_file(path_of(fx, "new/0123456789abcdef01234567"), 7200);

	assert_int_equal(spool_clean_tmp(sp, 3600), 2);
	assert_int_equal(dir_count(path_of(fx, "tmp")), 1);
	assert_int_equal(stat(path_of(fx, "tmp/fresh"), &st), 0);
	assert_int_equal(dir_count(path_of(fx, "new")), 1);
	assert_int_equal(spool_clean_tmp(sp, 3600), 0);
	assert_int_equal(spool_clean_tmp(sp, 0), 1);
	assert_int_equal(dir_count(path_of(fx, "tmp")), 0);
	assert_int_equal(spool_clean_tmp(sp, -1), -EINVAL);
	spool_close(sp);
}

/* ---- LMDB state ------------------------------------------------------- */

static struct state *
open_state(struct fixture *fx, int readonly)
{
	struct state *st = NULL;
	int rc;

	rc = state_open(&st, fx->dir, readonly, fx->err, ERRLEN);
	if (rc != 0)
		fail_msg("state_open: %d %s", rc, fx->err);
	return st;
}

/* A message with n recipients; strings are static, not to be freed. */
static void
make_msg(struct queue_msg_info *m, struct queue_rcpt_info *r, size_t n,
	 const char *id, enum queue_msg_state s, int64_t next)
{
	static const char *const addr[] = {"x@example.org", "y@example.org",
					   "z@example.org"};
	size_t i;

	memset(m, 0, sizeof(*m));
	snprintf(m->id, sizeof(m->id), "%s", id);
	m->state = s;
	m->queued_at = 1700000000;
	m->next_attempt = next;
	m->size = 1234;
	m->attempts = 2;
	m->sender = (char *)"a@example.org";
	m->last_error = (char *)"451 4.7.1 try later";
	m->transport = NULL;
	for (i = 0; i < n; i++) {
		r[i].address = (char *)addr[i % 3];
		r[i].state = (enum queue_rcpt_state)(i % 3);
		r[i].reply = i == 1 ? NULL : (char *)"250 2.0.0 Ok";
	}
	m->rcpt = r;
	m->nrcpt = n;
}

static void
put_msg(struct state *st, const struct queue_msg_info *m)
{
	struct state_txn *t;

	assert_int_equal(state_begin(st, 1, &t), 0);
	assert_int_equal(state_msg_put(t, m), 0);
	assert_int_equal(state_commit(t), 0);
}

static void
assert_msg_equal(const struct queue_msg_info *a, const struct queue_msg_info *b)
{
	size_t i;

	assert_string_equal(a->id, b->id);
	assert_int_equal(a->state, b->state);
	assert_int_equal(a->queued_at, b->queued_at);
	assert_int_equal(a->next_attempt, b->next_attempt);
	assert_int_equal(a->size, b->size);
	assert_int_equal(a->attempts, b->attempts);
#define STR_EQ(x, y)                                                           \
	do {                                                                   \
		if ((x) == NULL || (y) == NULL)                                \
			assert_ptr_equal((x), (y));                            \
		else                                                           \
			assert_string_equal((x), (y));                         \
	} while (0)
	STR_EQ(a->sender, b->sender);
	STR_EQ(a->last_error, b->last_error);
	STR_EQ(a->transport, b->transport);
	assert_int_equal(a->nrcpt, b->nrcpt);
	for (i = 0; i < a->nrcpt; i++) {
		STR_EQ(a->rcpt[i].address, b->rcpt[i].address);
		STR_EQ(a->rcpt[i].reply, b->rcpt[i].reply);
		assert_int_equal(a->rcpt[i].state, b->rcpt[i].state);
	}
#undef STR_EQ
}

static void
test_state_roundtrip(void **ctx)
{
	static const char id[] = "0123456789abcdef01234567";
	static const char id2[] = "0123456789abcdef0123456f";
	struct fixture *fx = *ctx;
	struct queue_msg_info m, m2, got;
	struct queue_rcpt_info r[3], r2[1];
	struct state *st = open_state(fx, 0);
	struct state_txn *t;

	make_msg(&m, r, 3, id, QUEUE_MSG_DEFERRED, 1700000600);
	m.transport = (char *)"mailu";
	make_msg(&m2, r2, 1, id2, QUEUE_MSG_HELD, 0);
	m2.sender = (char *)"";
	m2.last_error = NULL;
	r2[0].reply = NULL;
	put_msg(st, &m);
	put_msg(st, &m2);
	state_close(st);

	/* another open, read-only, sees the same records */
	st = open_state(fx, 1);
	assert_int_equal(state_begin(st, 1, &t), -EROFS);
	assert_int_equal(state_begin(st, 0, &t), 0);
	assert_int_equal(state_msg_get(t, id, &got), 0);
	assert_msg_equal(&got, &m);
	queue_msg_info_free(&got);
	assert_null(got.rcpt);
	assert_int_equal(state_msg_get(t, id2, &got), 0);
	assert_msg_equal(&got, &m2);
	queue_msg_info_free(&got);
	assert_int_equal(state_msg_get(t, "fedcba9876543210fedcba98", &got),
			 -ENOENT);
	assert_int_equal(state_msg_get(t, "nope", &got), -EINVAL);
	assert_int_equal(state_msg_put(t, &m), -EROFS);
	state_abort(t);
	state_close(st);

	st = open_state(fx, 0);
	assert_int_equal(state_begin(st, 1, &t), 0);
	/* replacing keeps one record */
	m.attempts = 3;
	m.transport = NULL;
	assert_int_equal(state_msg_put(t, &m), 0);
	assert_int_equal(state_msg_get(t, id, &got), 0);
	assert_msg_equal(&got, &m);
	queue_msg_info_free(&got);
	assert_int_equal(state_msg_del(t, id), 0);
	assert_int_equal(state_msg_del(t, id), -ENOENT);
	assert_int_equal(state_msg_get(t, id, &got), -ENOENT);
	/* refused fields */
	m.next_attempt = -1;
	assert_int_equal(state_msg_put(t, &m), -EINVAL);
	m.next_attempt = 0;
	r[1].address = NULL;
	assert_int_equal(state_msg_put(t, &m), -EINVAL);
	assert_int_equal(state_commit(t), 0);

	/* an aborted write leaves nothing */
	r[1].address = (char *)"y@example.org";
	assert_int_equal(state_begin(st, 1, &t), 0);
	assert_int_equal(state_msg_put(t, &m), 0);
	state_abort(t);
	assert_int_equal(state_begin(st, 0, &t), 0);
	assert_int_equal(state_msg_get(t, id, &got), -ENOENT);
	assert_int_equal(state_msg_get(t, id2, &got), 0);
	queue_msg_info_free(&got);
	assert_int_equal(state_commit(t), 0);
	state_close(st);
}

/* A message of the due-index tests: its id, state and next attempt. */
struct due_case {
	const char *id;
	enum queue_msg_state s;
	int64_t next;
};

/* Stores one single-recipient record per case in one transaction. */
static void
put_due_cases(struct state *st, const struct due_case *t, size_t n)
{
	struct queue_msg_info m;
	struct queue_rcpt_info r[1];
	struct state_txn *tx;

	assert_int_equal(state_begin(st, 1, &tx), 0);
	for (size_t i = 0; i < n; i++) {
		make_msg(&m, r, 1, t[i].id, t[i].s, t[i].next);
		assert_int_equal(state_msg_put(tx, &m), 0);
	}
	assert_int_equal(state_commit(tx), 0);
}

static void
test_state_due(void **ctx)
{
	static const struct due_case t[] = {
	    {"000000000000010000000000", QUEUE_MSG_DEFERRED, 300},
	    {"000000000000020000000000", QUEUE_MSG_QUEUED, 0},
	    {"000000000000030000000000", QUEUE_MSG_DEFERRED, 100},
	    {"000000000000040000000000", QUEUE_MSG_HELD, 50},
	    {"000000000000050000000000", QUEUE_MSG_FAILED, 60},
	    {"000000000000060000000000", QUEUE_MSG_DELIVERING, 70},
	    {"000000000000070000000000", QUEUE_MSG_DEFERRED, 100},
	    {"000000000000080000000000", QUEUE_MSG_DEFERRED, 500},
	};
	struct fixture *fx = *ctx;
	struct state *st = open_state(fx, 0);
	char ids[8][QUEUE_ID_LEN + 1];
	struct queue_msg_info m;
	struct queue_rcpt_info r[1];
	struct state_txn *tx;
	int64_t next;
	size_t n;

	assert_int_equal(state_begin(st, 0, &tx), 0);
	assert_int_equal(state_due(tx, 1000, 8, ids, &n, &next), 0);
	assert_int_equal(n, 0);
	assert_int_equal(next, 0);
	state_abort(tx);
	put_due_cases(st, t, sizeof(t) / sizeof(t[0]));

	assert_int_equal(state_begin(st, 0, &tx), 0);
	/* earliest first; only queued and deferred; ties in id order */
	assert_int_equal(state_due(tx, 200, 8, ids, &n, &next), 0);
	assert_int_equal(n, 3);
	assert_string_equal(ids[0], t[1].id);
	assert_string_equal(ids[1], t[2].id);
	assert_string_equal(ids[2], t[6].id);
	assert_int_equal(next, 300);
	/* a limit still reports the first time after now */
	assert_int_equal(state_due(tx, 200, 1, ids, &n, &next), 0);
	assert_int_equal(n, 1);
	assert_string_equal(ids[0], t[1].id);
	assert_int_equal(next, 300);
	assert_int_equal(state_due(tx, 0, 0, ids, &n, &next), 0);
	assert_int_equal(n, 0);
	assert_int_equal(next, 100);
	assert_int_equal(state_due(tx, 10000, 8, ids, &n, &next), 0);
	assert_int_equal(n, 5);
	assert_string_equal(ids[4], t[7].id);
	assert_int_equal(next, 0);
	state_abort(tx);

	/* state changes move messages out of and into the index */
	assert_int_equal(state_begin(st, 1, &tx), 0);
	make_msg(&m, r, 1, t[2].id, QUEUE_MSG_DELIVERING, 100);
	assert_int_equal(state_msg_put(tx, &m), 0);
	make_msg(&m, r, 1, t[3].id, QUEUE_MSG_DEFERRED, 150);
	assert_int_equal(state_msg_put(tx, &m), 0);
	make_msg(&m, r, 1, t[0].id, QUEUE_MSG_DEFERRED, 900);
	assert_int_equal(state_msg_put(tx, &m), 0);
	assert_int_equal(state_msg_del(tx, t[6].id), 0);
	assert_int_equal(state_due(tx, 10000, 8, ids, &n, &next), 0);
	assert_int_equal(n, 4);
	assert_string_equal(ids[0], t[1].id);
	assert_string_equal(ids[1], t[3].id);
	assert_string_equal(ids[2], t[7].id);
	assert_string_equal(ids[3], t[0].id);
	assert_int_equal(state_due(tx, 200, 8, ids, &n, &next), 0);
	assert_int_equal(n, 2);
	assert_int_equal(next, 500);
	assert_int_equal(state_commit(tx), 0);
	state_close(st);
}

/* A whole-queue flush in chunks: each call makes the next messages not
 * yet due due, earliest first, and leaves other states alone. */
static void
test_state_flush_later(void **ctx)
{
	static const struct due_case t[] = {
	    {"000000000000010000000000", QUEUE_MSG_DEFERRED, 300},
	    {"000000000000020000000000", QUEUE_MSG_QUEUED, 0},
	    {"000000000000030000000000", QUEUE_MSG_DEFERRED, 900},
	    {"000000000000040000000000", QUEUE_MSG_HELD, 800},
	    {"000000000000050000000000", QUEUE_MSG_DEFERRED, 250},
	    {"000000000000060000000000", QUEUE_MSG_DELIVERING, 700},
	    {"000000000000070000000000", QUEUE_MSG_DEFERRED, 200},
	};
	struct fixture *fx = *ctx;
	struct state *st = open_state(fx, 0);
	char ids[8][QUEUE_ID_LEN + 1];
	struct queue_msg_info m;
	struct state_txn *tx;
	int64_t next;
	size_t n, count;

	put_due_cases(st, t, sizeof(t) / sizeof(t[0]));
	assert_int_equal(state_begin(st, 0, &tx), 0);
	/* later than 200: three deferred ones, earliest first */
	assert_int_equal(state_due_after(tx, 200, 8, ids, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(ids[0], t[4].id);
	assert_string_equal(ids[1], t[0].id);
	assert_string_equal(ids[2], t[2].id);
	assert_int_equal(state_due_after(tx, INT64_MAX, 8, ids, &n), 0);
	assert_int_equal(n, 0);
	state_abort(tx);

	/* at 100: four wait (200, 250, 300, 900); two per transaction */
	assert_int_equal(state_begin(st, 1, &tx), 0);
	assert_int_equal(state_flush_later(tx, 100, 2, &count), 0);
	assert_int_equal(count, 2);
	assert_int_equal(state_commit(tx), 0);
	assert_int_equal(state_begin(st, 1, &tx), 0);
	assert_int_equal(state_due(tx, 100, 8, ids, &n, &next), 0);
	assert_int_equal(n, 3); /* the queued one and the two flushed */
	assert_int_equal(next, 300);
	assert_int_equal(state_flush_later(tx, 100, 2, &count), 0);
	assert_int_equal(count, 2);
	assert_int_equal(state_flush_later(tx, 100, 2, &count), 0);
	assert_int_equal(count, 0);
	assert_int_equal(state_due(tx, 100, 8, ids, &n, &next), 0);
	assert_int_equal(n, 5);
	assert_int_equal(next, 0);
	/* held and delivering are untouched */
	assert_int_equal(state_msg_get(tx, t[3].id, &m), 0);
	assert_int_equal(m.state, QUEUE_MSG_HELD);
	assert_int_equal(m.next_attempt, 800);
	queue_msg_info_free(&m);
	assert_int_equal(state_msg_get(tx, t[5].id, &m), 0);
	assert_int_equal(m.state, QUEUE_MSG_DELIVERING);
	queue_msg_info_free(&m);
	assert_int_equal(state_commit(tx), 0);
	state_close(st);
}

static int
foreach_cb(const struct queue_msg_info *m, void *arg)
{
	struct scan_ctx *s = arg;

	return scan_cb(m->id, s);
}

static void
test_state_foreach_count_meta(void **ctx)
{
	struct fixture *fx = *ctx;
	struct state *st = open_state(fx, 0);
	struct queue_msg_info m;
	struct queue_rcpt_info r[2];
	struct scan_ctx s = {0};
	struct state_txn *t;
	uint64_t counts[5];
	char id[QUEUE_ID_LEN + 1], buf[8];
	int i;

	assert_int_equal(state_begin(st, 1, &t), 0);
	for (i = 9; i >= 0; i--) {
		snprintf(id, sizeof(id), "%024d", i);
		make_msg(&m, r, 2, id, (enum queue_msg_state)(i % 5), i);
		assert_int_equal(state_msg_put(t, &m), 0);
	}
	assert_int_equal(state_foreach(t, foreach_cb, &s), 0);
	assert_int_equal(s.n, 10);
	for (i = 0; i < 10; i++)
		assert_int_equal(s.names[i][QUEUE_ID_LEN - 1], '0' + i);
	memset(&s, 0, sizeof(s));
	s.stop_at = 3;
	assert_int_equal(state_foreach(t, foreach_cb, &s), 42);
	assert_int_equal(s.n, 3);
	/* a walk in batches goes on after the last id it saw, present or
	 * gone meanwhile; "" starts from the first */
	memset(&s, 0, sizeof(s));
	assert_int_equal(state_foreach_after(t, "", foreach_cb, &s), 0);
	assert_int_equal(s.n, 10);
	memset(&s, 0, sizeof(s));
	snprintf(id, sizeof(id), "%024d", 3);
	assert_int_equal(state_foreach_after(t, id, foreach_cb, &s), 0);
	assert_int_equal(s.n, 6);
	assert_int_equal(s.names[0][QUEUE_ID_LEN - 1], '4');
	assert_int_equal(state_msg_del(t, id), 0);
	memset(&s, 0, sizeof(s));
	assert_int_equal(state_foreach_after(t, id, foreach_cb, &s), 0);
	assert_int_equal(s.n, 6);
	assert_int_equal(s.names[0][QUEUE_ID_LEN - 1], '4');
	memset(&s, 0, sizeof(s));
	snprintf(id, sizeof(id), "%024d", 9);
	assert_int_equal(state_foreach_after(t, id, foreach_cb, &s), 0);
	assert_int_equal(s.n, 0);
	snprintf(id, sizeof(id), "%024d", 3);
	make_msg(&m, r, 2, id, (enum queue_msg_state)3, 3);
	assert_int_equal(state_msg_put(t, &m), 0);
	assert_int_equal(state_count(t, counts), 0);
	for (i = 0; i < 5; i++)
		assert_int_equal(counts[i], 2);

	assert_int_equal(state_meta_get(t, "rebuilt", buf, sizeof(buf)),
			 -ENOENT);
	assert_int_equal(state_meta_put(t, "rebuilt", "12345"), 0);
	assert_int_equal(state_meta_get(t, "rebuilt", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "12345");
	assert_int_equal(state_meta_put(t, "rebuilt", "1234567"), 0);
	assert_int_equal(state_meta_get(t, "rebuilt", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "1234567");
	assert_int_equal(state_meta_put(t, "rebuilt", "12345678"), 0);
	assert_int_equal(state_meta_get(t, "rebuilt", buf, sizeof(buf)),
			 -ERANGE);
	assert_int_equal(state_meta_put(t, "", "x"), -EINVAL);
	assert_int_equal(state_commit(t), 0);
	state_close(st);
}

/* state_count over 100,000 messages stays well under a second. */
static void
test_state_count_large(void **ctx)
{
	enum { N = 100000 };
	struct fixture *fx = *ctx;
	struct state *st = open_state(fx, 0);
	struct queue_msg_info m;
	struct queue_rcpt_info r[1];
	struct state_txn *t;
	struct timespec a, b;
	uint64_t counts[5];
	char id[QUEUE_ID_LEN + 1];
	double secs;
	int i;

	assert_int_equal(state_begin(st, 1, &t), 0);
	for (i = 0; i < N; i++) {
		snprintf(id, sizeof(id), "%024x", i);
		make_msg(&m, r, 1, id,
			 i % 10 == 0 ? QUEUE_MSG_FAILED : QUEUE_MSG_DEFERRED,
			 1700000000 + i);
		assert_int_equal(state_msg_put(t, &m), 0);
	}
	assert_int_equal(state_commit(t), 0);
	assert_int_equal(state_begin(st, 0, &t), 0);
	clock_gettime(CLOCK_MONOTONIC, &a);
	assert_int_equal(state_count(t, counts), 0);
	clock_gettime(CLOCK_MONOTONIC, &b);
	state_abort(t);
	secs = (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
	assert_int_equal(counts[QUEUE_MSG_FAILED], N / 10);
	assert_int_equal(counts[QUEUE_MSG_DEFERRED], N - N / 10);
	assert_int_equal(counts[QUEUE_MSG_QUEUED], 0);
	/* generous: about 10 ms natively, slower under valgrind */
	assert_true(secs < 5.0);
	state_close(st);
}

static void
corrupt_and_check(struct fixture *fx, off_t keep, int garbage, const char *why)
{
	struct state *st = NULL;
	char p[256];
	int fd, i;

	snprintf(p, sizeof(p), "%s/state/data.mdb", fx->dir);
	fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	if (garbage) {
		unsigned char junk[4096];

		for (i = 0; i < (int)sizeof(junk); i++)
			junk[i] = (unsigned char)(i * 7 + 13);
		for (i = 0; i < 4; i++)
			assert_int_equal(write(fd, junk, sizeof(junk)),
					 (ssize_t)sizeof(junk));
	}
	assert_int_equal(ftruncate(fd, keep), 0);
	close(fd);

	fx->err[0] = '\0';
	assert_int_equal(state_open(&st, fx->dir, 0, fx->err, ERRLEN),
			 -EBADMSG);
	assert_null(st);
	assert_non_null(strstr(fx->err, "/state"));
	assert_non_null(strstr(fx->err, why));
	assert_int_equal(state_open(&st, fx->dir, 1, fx->err, ERRLEN),
			 -EBADMSG);

	/* removing the state lets it start afresh */
	assert_int_equal(state_remove(fx->dir), 0);
	st = open_state(fx, 0);
	{
		uint64_t counts[5];
		struct state_txn *t;

		assert_int_equal(state_begin(st, 0, &t), 0);
		assert_int_equal(state_count(t, counts), 0);
		assert_int_equal(counts[QUEUE_MSG_QUEUED], 0);
		state_abort(t);
	}
	state_close(st);
}

static void
fill_state(struct fixture *fx, int n)
{
	struct state *st = open_state(fx, 0);
	struct queue_msg_info m;
	struct queue_rcpt_info r[3];
	struct state_txn *t;
	char id[QUEUE_ID_LEN + 1];
	int i;

	assert_int_equal(state_begin(st, 1, &t), 0);
	for (i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "%024x", i);
		make_msg(&m, r, 3, id, QUEUE_MSG_QUEUED, i);
		assert_int_equal(state_msg_put(t, &m), 0);
	}
	assert_int_equal(state_commit(t), 0);
	state_close(st);
}

static void
test_state_corrupt(void **ctx)
{
	struct fixture *fx = *ctx;
	struct state *st = NULL;

	/* garbage over the whole file */
	fill_state(fx, 5);
	corrupt_and_check(fx, 16384, 1, "not an LMDB file");
	/* a file shorter than one page */
	fill_state(fx, 5);
	corrupt_and_check(fx, 100, 1, "not an LMDB file");
	/* cut after the meta pages: the tree pages are gone */
	fill_state(fx, 500);
	corrupt_and_check(fx, 3 * 4096, 0, "truncated");
	/* no state yet: a reader is told so, not handed an empty one */
	assert_int_equal(state_remove(fx->dir), 0);
	assert_int_equal(state_open(&st, fx->dir, 1, fx->err, ERRLEN), -ENOENT);
	assert_int_equal(state_remove(fx->dir), 0);
}

/* The "due" database's record in the main tree (every copy of it: each
 * meta page may point at its own) gets garbage for its page counts and
 * root: LMDB opens the state and reports that record as is, and only
 * refuses a transaction on it later. The check must call it damage. */
static void
test_state_verify_bad_db_record(void **ctx)
{
	struct fixture *fx = *ctx;
	unsigned char *data, junk[40];
	char p[256];
	struct stat sb;
	int fd, found = 0;

	fill_state(fx, 20);
	snprintf(p, sizeof(p), "%s/state/data.mdb", fx->dir);
	fd = open(p, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &sb), 0);
	data = malloc((size_t)sb.st_size);
	assert_non_null(data);
	assert_int_equal(read(fd, data, (size_t)sb.st_size), sb.st_size);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (unsigned char)(0xc3 + i * 29);
	/* the key, then the record: pad, flags and depth (8 bytes) stay,
	 * the page counts, entries and root (40 bytes) go */
	for (off_t off = 0; off + 3 + 48 <= sb.st_size; off++) {
		if (memcmp(data + off, "due", 3) != 0)
			continue;
		assert_int_equal(pwrite(fd, junk, sizeof(junk), off + 3 + 8),
				 (ssize_t)sizeof(junk));
		found++;
	}
	free(data);
	close(fd);
	assert_true(found > 0);
	fx->err[0] = '\0';
	assert_int_equal(state_verify(fx->dir, fx->err, ERRLEN), -EBADMSG);
	assert_non_null(strstr(fx->err, "corrupt"));
	assert_int_equal(state_remove(fx->dir), 0);
}

static void
test_state_map_growth(void **ctx)
{
	enum { N = 300 };
	struct fixture *fx = *ctx;
	struct state *st = NULL;
	struct queue_msg_info m, got;
	struct queue_rcpt_info r[3];
	struct state_txn *t;
	char id[QUEUE_ID_LEN + 1], big[2048];
	int i, full = 0, rc;
	uint64_t counts[5];

	setenv("SPOOL_STATE_MAPSIZE", "junk", 1);
	assert_int_equal(state_open(&st, fx->dir, 0, fx->err, ERRLEN), -EINVAL);
	assert_non_null(strstr(fx->err, "SPOOL_STATE_MAPSIZE"));
	setenv("SPOOL_STATE_MAPSIZE", "65536", 1);
	st = open_state(fx, 0);
	unsetenv("SPOOL_STATE_MAPSIZE");

	memset(big, 'e', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (i = 0; i < N; i++) {
		snprintf(id, sizeof(id), "%024x", i);
		make_msg(&m, r, 3, id, QUEUE_MSG_DEFERRED, i);
		m.last_error = big;
		assert_int_equal(state_begin(st, 1, &t), 0);
		rc = state_msg_put(t, &m);
		if (rc == 0) {
			rc = state_commit(t);
		} else {
			assert_int_equal(rc, -ENOSPC);
			assert_int_equal(state_commit(t), -ENOSPC);
		}
		if (rc == -ENOSPC) {
			/* the map grew: the retry fits */
			full++;
			assert_int_equal(state_begin(st, 1, &t), 0);
			assert_int_equal(state_msg_put(t, &m), 0);
			assert_int_equal(state_commit(t), 0);
		} else {
			assert_int_equal(rc, 0);
		}
	}
	assert_true(full >= 1);
	assert_int_equal(state_begin(st, 0, &t), 0);
	assert_int_equal(state_count(t, counts), 0);
	assert_int_equal(counts[QUEUE_MSG_DEFERRED], N);
	assert_int_equal(state_msg_get(t, id, &got), 0);
	assert_string_equal(got.last_error, big);
	queue_msg_info_free(&got);
	state_abort(t);
	state_close(st);
}

/* ---- record codec ----------------------------------------------------- */

static void
test_record_codec(void **ctx)
{
	static const char id[] = "0123456789abcdef01234567";
	struct queue_msg_info m, got;
	struct queue_rcpt_info r[3];
	unsigned char *rec, *copy;
	size_t len, i, j;
	unsigned seed = 7;

	(void)ctx;
	make_msg(&m, r, 3, id, QUEUE_MSG_DEFERRED, 99);
	assert_int_equal(queue__record_encode(&m, &rec, &len), 0);
	assert_int_equal(rec[0], QUEUE_RECORD_VERSION);
	memset(&got, 0, sizeof(got));
	snprintf(got.id, sizeof(got.id), "%s", id);
	assert_int_equal(queue__record_decode(rec, len, &got), 0);
	assert_msg_equal(&got, &m);
	queue_msg_info_free(&got);

	/* every truncation and an extra byte are refused */
	copy = malloc(len + 1);
	assert_non_null(copy);
	for (i = 0; i < len; i++) {
		memcpy(copy, rec, i);
		assert_int_equal(queue__record_decode(copy, i, &got), -EBADMSG);
	}
	memcpy(copy, rec, len);
	copy[len] = 0;
	assert_int_equal(queue__record_decode(copy, len + 1, &got), -EBADMSG);

	/* single field damage (offsets follow the documented layout) */
	{
		const struct {
			size_t off;
			unsigned char val;
		} t[] = {
		    {0, 2},	/* version */
		    {1, 5},	/* message state */
		    {30, 0x7f}, /* sender length far too big */
		    {33, 0xff}, /* sender length past the end */
		};

		for (j = 0; j < sizeof(t) / sizeof(t[0]); j++) {
			memcpy(copy, rec, len);
			copy[t[j].off] = t[j].val;
			assert_int_equal(queue__record_decode(copy, len, &got),
					 -EBADMSG);
		}
	}
	/* a NUL inside a string */
	memcpy(copy, rec, len);
	copy[34] = '\0';
	assert_int_equal(queue__record_decode(copy, len, &got), -EBADMSG);

	/* random damage: refused or decoded, never a crash or overread */
	for (i = 0; i < 20000; i++) {
		int rc;

		memcpy(copy, rec, len);
		for (j = 0; j < 2; j++) {
			seed = seed * 1103515245 + 12345;
			copy[(seed >> 8) % len] = (unsigned char)(seed >> 20);
		}
		rc = queue__record_decode(copy, len, &got);
		assert_true(rc == 0 || rc == -EBADMSG);
		if (rc == 0)
			queue_msg_info_free(&got);
	}
	free(copy);
	free(rec);

	m.state = (enum queue_msg_state)5;
	assert_int_equal(queue__record_encode(&m, &rec, &len), -EINVAL);
}

/* The attempt history: capped, kept in order, and optional on disk. */
static void
test_record_history(void **ctx)
{
	static const char id[] = "0123456789abcdef01234567";
	struct queue_msg_info m, got;
	struct queue_rcpt_info r[1];
	unsigned char *rec, *plain;
	size_t len, plainlen, i;
	char result[32];

	(void)ctx;
	make_msg(&m, r, 1, id, QUEUE_MSG_DEFERRED, 3);
	assert_int_equal(queue__record_encode(&m, &plain, &plainlen), 0);
	for (i = 0; i < QUEUE_HISTORY_MAX + 2; i++) {
		snprintf(result, sizeof(result), "deferred 1: try %zu", i);
		assert_int_equal(queue_msg_add_attempt(&m, (int64_t)(1000 + i),
						       "mailu", result),
				 0);
	}
	assert_int_equal(m.nhistory, QUEUE_HISTORY_MAX);
	assert_string_equal(m.history[0].result, "deferred 1: try 2");
	assert_int_equal(queue__record_encode(&m, &rec, &len), 0);
	assert_true(len > plainlen);
	memset(&got, 0, sizeof(got));
	assert_int_equal(queue__record_decode(rec, len, &got), 0);
	assert_int_equal(got.nhistory, QUEUE_HISTORY_MAX);
	for (i = 0; i < got.nhistory; i++) {
		assert_int_equal(got.history[i].at, m.history[i].at);
		assert_string_equal(got.history[i].transport, "mailu");
		assert_string_equal(got.history[i].result, m.history[i].result);
	}
	queue_msg_info_free(&got);
	/* a cut inside the history is refused, not read short */
	for (i = plainlen + 1; i < len; i++)
		assert_int_equal(queue__record_decode(rec, i, &got), -EBADMSG);
	/* a record written before histories existed still reads */
	assert_int_equal(queue__record_decode(plain, plainlen, &got), 0);
	assert_int_equal(got.nhistory, 0);
	queue_msg_info_free(&got);
	free(rec);
	free(plain);
	for (i = 0; i < m.nhistory; i++) {
		free(m.history[i].transport);
		free(m.history[i].result);
	}
	free(m.history);
}

/* The submitter's uid and the flags: kept with and without a history;
 * records without them read as 0. */
static void
test_record_owner(void **ctx)
{
	static const char id[] = "0123456789abcdef01234567";
	struct queue_msg_info m, got;
	struct queue_rcpt_info r[1];
	unsigned char *rec;
	size_t len, plainlen, i;

	(void)ctx;
	make_msg(&m, r, 1, id, QUEUE_MSG_DEFERRED, 3);
	assert_int_equal(queue__record_encode(&m, &rec, &plainlen), 0);
	free(rec);
	m.owner_uid = 65534;
	m.flags = QUEUE_MSG_F_FLUSHED;
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1)
			assert_int_equal(
			    queue_msg_add_attempt(&m, 1000, "local", "x"), 0);
		assert_int_equal(queue__record_encode(&m, &rec, &len), 0);
		memset(&got, 0, sizeof(got));
		assert_int_equal(queue__record_decode(rec, len, &got), 0);
		assert_int_equal(got.owner_uid, 65534);
		assert_int_equal(got.flags, QUEUE_MSG_F_FLUSHED);
		assert_int_equal(got.nhistory, (size_t)pass);
		queue_msg_info_free(&got);
		/* a cut inside what follows the recipients is refused,
		 * never read short */
		for (i = plainlen + 1; i < len; i++) {
			/* a history without the tail is a record of before */
			if (pass == 1 && i == len - 8)
				continue;
			assert_int_equal(queue__record_decode(rec, i, &got),
					 -EBADMSG);
		}
		free(rec);
	}
	free(m.history[0].transport);
	free(m.history[0].result);
	free(m.history);
}

/* ---- pickup: files of new/ read as hostile input ------------------------ */

static void
test_err_temporary(void **ctx)
{
	static const struct {
		int err, temporary;
	} t[] = {
	    {EMFILE, 1}, {ENFILE, 1}, {ENOMEM, 1},  {EAGAIN, 1},
	    {EIO, 1},	 {ENOSPC, 1}, {EDQUOT, 1},  {EINTR, 1},
	    {EINVAL, 0}, {ENOENT, 0}, {EACCES, 0},  {ELOOP, 0},
	    {EFBIG, 0},	 {EPERM, 0},  {EBADMSG, 0}, {0, 0},
	};

	(void)ctx;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		assert_int_equal(queue_err_temporary(-t[i].err),
				 t[i].temporary);
}

static void
test_pickup_check_table(void **ctx)
{
	static const struct {
		const char *img;
		size_t len;	 /* 0: strlen */
		const char *why; /* NULL: accepted */
	} t[] = {
	    {"SPOOLD 1\nS a@example.org\nR b@example.net\n\nSubject: x\r\n", 0,
	     NULL},
	    {"SPOOLD 1\nS \nR b@example.net\nD c@example.net\n\n", 0, NULL},
	    {"SPOOLD 1\nS a@vm> RET=FULL ENVID=X AUTH=<c@example.org>\n"
	     "R b@example.net\n\n",
	     0, "sender: bad address"},
	    {"SPOOLD 1\nS a@example.org\nR b@example.net> NOTIFY=NEVER\n\n", 0,
	     "recipient 1: bad address"},
	    {"SPOOLD 1\nS a@example.org\nR b@example.net\nR "
	     "<c@example.net>\n\n",
	     0, "recipient 2: bad address"},
	    {"SPOOLD 1\nS a b@example.org\nR b@example.net\n\n", 0,
	     "space in address"},
	    {"SPOOLD 1\nS a@example.org\nR unqualified\n\n", 0, "no @domain"},
	    {"SPOOLD 1\nS a@example.org\nR b@example.net\n\na\0b",
	     9 + 16 + 16 + 1 + 3, "NUL byte"},
	    {"SPOOLD 1\nS a@example.org\nR b\x1b[31m@example.net\n\n", 0,
	     "control character"},
	};
	struct spool_envelope env;
	char err[ERRLEN];
	size_t off;

	(void)ctx;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t len = t[i].len ? t[i].len : strlen(t[i].img);
		int rc = spool_pickup_check(t[i].img, len, 1024, &env, &off,
					    err, sizeof(err));

		if (t[i].why == NULL) {
			assert_int_equal(rc, 0);
			spool_envelope_free(&env);
			continue;
		}
		assert_int_equal(rc, -EINVAL);
		if (strstr(err, t[i].why) == NULL)
			fail_msg("case %zu: \"%s\", want \"%s\"", i, err,
				 t[i].why);
	}
}

/* An envelope of n recipients and a body of body_len 'x' bytes. */
static char *
pickup_image(size_t n, size_t body_len, size_t *len)
{
	size_t cap = 64 + n * 32 + body_len, off;
	char *buf = malloc(cap);

	assert_non_null(buf);
	off = (size_t)snprintf(buf, cap, "SPOOLD 1\nS a@example.org\n");
	for (size_t i = 0; i < n; i++)
		off += (size_t)snprintf(buf + off, cap - off,
					"R r%zu@example.net\n", i);
	buf[off++] = '\n';
	memset(buf + off, 'x', body_len);
	*len = off + body_len;
	return buf;
}

static void
test_pickup_check_bounds(void **ctx)
{
	struct spool_envelope env;
	char err[ERRLEN], *img;
	size_t len, off;

	(void)ctx;
	img = pickup_image(SPOOL_RCPT_MAX, 10, &len);
	assert_int_equal(
	    spool_pickup_check(img, len, 1024, &env, &off, err, sizeof(err)),
	    0);
	assert_int_equal(env.nrcpt, SPOOL_RCPT_MAX);
	spool_envelope_free(&env);
	free(img);
	img = pickup_image(SPOOL_RCPT_MAX + 1, 10, &len);
	assert_int_equal(
	    spool_pickup_check(img, len, 1024, &env, &off, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "more than 1000 recipients"));
	free(img);
	/* max_size, and room for a Received line added after its check */
	img = pickup_image(1, 1024 + SPOOL_TRACE_MAX, &len);
	assert_int_equal(
	    spool_pickup_check(img, len, 1024, &env, &off, err, sizeof(err)),
	    0);
	spool_envelope_free(&env);
	assert_int_equal(
	    spool_pickup_check(img, len, 1023, &env, &off, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "over max_size"));
	free(img);
}

static void
test_pickup_read(void **ctx)
{
	struct fixture *fx = *ctx;
	struct spool *sp = open_spool(fx);
	static const char img[] = "SPOOLD 1\nS a@example.org\nR b@example.net\n"
				  "\nSubject: x\r\n\r\nbody\r\n";
	static const char trace[] = "Received: from userid 7 by h (spoold) "
				    "id X;\r\n\tdate\r\n";
	static const char *const ids[] = {
	    "0123456789abcdef01234560", "0123456789abcdef01234561",
	    "0123456789abcdef01234562", "0123456789abcdef01234563",
	    "0123456789abcdef01234564"};
	struct spool_pickup p;
	struct spool_file f;
	char path[512], want[512], got[512];
	int fd;

	/* the spool owner's own file: taken as it is */
	snprintf(path, sizeof(path), "%s/new/%s", fx->dir, ids[0]);
	write_file(path, img, strlen(img));
	assert_int_equal(spool_pickup_read(sp, QUEUE_DIR_NEW, ids[0], 1024, &p,
					   fx->err, ERRLEN),
			 0);
	assert_true(p.trusted);
	assert_int_equal(p.uid, geteuid());
	assert_int_equal(p.len, strlen(img));
	spool_pickup_free(&p);
	/* writable by the group: copied, never mapped */
	assert_int_equal(chmod(path, 0620), 0);
	assert_int_equal(spool_pickup_read(sp, QUEUE_DIR_NEW, ids[0], 1024, &p,
					   fx->err, ERRLEN),
			 0);
	assert_false(p.trusted);
	assert_int_equal(
	    spool_file_open(sp, QUEUE_DIR_NEW, ids[0], &f, fx->err, ERRLEN),
	    -EPERM);
	assert_non_null(strstr(fx->err, "writable by group or others"));
	assert_int_equal(spool_pickup_stage(sp, QUEUE_DIR_CUR, ids[0], &p,
					    trace, fx->err, ERRLEN),
			 0);
	assert_int_equal(spool_pickup_place(sp, QUEUE_DIR_CUR, ids[0], 0), 0);
	spool_pickup_free(&p);
	/* the copy: the envelope, the trace line first in the header */
	snprintf(want, sizeof(want),
		 "SPOOLD 1\nS a@example.org\nR b@example.net\n\n%s"
		 "Subject: x\r\n\r\nbody\r\n",
		 trace);
	snprintf(path, sizeof(path), "%s/cur/%s", fx->dir, ids[0]);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, got, sizeof(got)), (ssize_t)strlen(want));
	close(fd);
	assert_memory_equal(got, want, strlen(want));
	assert_int_equal(
	    spool_file_open(sp, QUEUE_DIR_CUR, ids[0], &f, fx->err, ERRLEN), 0);
	spool_file_close(&f);
	/* placing over an existing file: refused, the copy removed */
	snprintf(path, sizeof(path), "%s/new/%s", fx->dir, ids[0]);
	assert_int_equal(spool_pickup_read(sp, QUEUE_DIR_NEW, ids[0], 1024, &p,
					   fx->err, ERRLEN),
			 0);
	assert_int_equal(spool_pickup_stage(sp, QUEUE_DIR_CUR, ids[0], &p, NULL,
					    fx->err, ERRLEN),
			 0);
	spool_pickup_free(&p);
	assert_int_equal(spool_pickup_place(sp, QUEUE_DIR_CUR, ids[0], 0),
			 -EEXIST);
	assert_int_equal(dir_count(path_of(fx, "cur")), 1);
	/* a symlink, a FIFO, a directory: refused unopened */
	snprintf(path, sizeof(path), "%s/new/%s", fx->dir, ids[1]);
	assert_int_equal(symlink("/etc/passwd", path), 0);
	snprintf(path, sizeof(path), "%s/new/%s", fx->dir, ids[2]);
	assert_int_equal(mkfifo(path, 0600), 0);
	snprintf(path, sizeof(path), "%s/new/%s", fx->dir, ids[3]);
	assert_int_equal(mkdir(path, 0700), 0);
	for (int i = 1; i <= 3; i++) {
		assert_int_equal(spool_pickup_read(sp, QUEUE_DIR_NEW, ids[i],
						   1024, &p, fx->err, ERRLEN),
				 -EINVAL);
		assert_non_null(strstr(fx->err, "not a regular file"));
	}
	/* a sparse file: refused by its size, nothing read */
	snprintf(path, sizeof(path), "%s/new/%s", fx->dir, ids[4]);
	write_file(path, img, strlen(img));
	assert_int_equal(truncate(path, 1 << 30), 0);
	assert_int_equal(spool_pickup_read(sp, QUEUE_DIR_NEW, ids[4], 1024, &p,
					   fx->err, ERRLEN),
			 -EFBIG);
	assert_null(p.data);
	assert_int_equal(spool_pickup_read(sp, QUEUE_DIR_NEW,
					   "0123456789abcdef0123456f", 1024, &p,
					   fx->err, ERRLEN),
			 -ENOENT);
	/* a crash's leftover copy is cleaned */
	snprintf(path, sizeof(path), "%s/cur/.%s", fx->dir, ids[4]);
	write_file(path, "x", 1);
	assert_int_equal(spool_pickup_clean(sp, QUEUE_DIR_CUR), 1);
	spool_close(sp);
}

static void
test_submit_rcpt_cap(void **ctx)
{
	struct fixture *fx = *ctx;
	struct spool *sp = open_spool(fx);
	const char **rcpt = calloc(SPOOL_RCPT_MAX + 1, sizeof(*rcpt));
	char id[QUEUE_ID_LEN + 1];

	assert_non_null(rcpt);
	for (size_t i = 0; i <= SPOOL_RCPT_MAX; i++)
		rcpt[i] = "r@example.net";
	assert_int_equal(spool_submit(sp, "a@b", rcpt, SPOOL_RCPT_MAX + 1,
				      test_msg, strlen(test_msg), id, fx->err,
				      ERRLEN),
			 -EINVAL);
	assert_non_null(strstr(fx->err, "at most 1000"));
	assert_int_equal(dir_count(path_of(fx, "new")), 0);
	free(rcpt);
	spool_close(sp);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_id_shape_unique_ordered),
	    cmocka_unit_test(test_err_temporary),
	    cmocka_unit_test(test_pickup_check_table),
	    cmocka_unit_test(test_pickup_check_bounds),
	    cmocka_unit_test_setup_teardown(test_pickup_read, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_submit_rcpt_cap, setup,
					    teardown),
	    cmocka_unit_test(test_id_invalid),
	    cmocka_unit_test_setup_teardown(test_spool_open, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_spool_own, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_submit_ok, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_submit_bad_input, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_submit_never_overwrites, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_submit_rename_fails, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_submit_enospc, setup,
					    teardown),
	    cmocka_unit_test(test_parse_table),
	    cmocka_unit_test(test_parse_details),
	    cmocka_unit_test(test_parse_mutations),
	    cmocka_unit_test_setup_teardown(test_file_open_errors, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_file_open_read_and_mapped,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mark_and_reopen, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_move_remove_scan, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_clean_tmp, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_state_roundtrip, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_state_due, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_state_flush_later, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_state_foreach_count_meta,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_state_count_large, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_state_corrupt, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_state_verify_bad_db_record,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_state_map_growth, setup,
					    teardown),
	    cmocka_unit_test(test_record_codec),
	    cmocka_unit_test(test_record_history),
	    cmocka_unit_test(test_record_owner),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * spool_fs.c - the spool directory: durable submission, parsing and marking
 * of spool files, moves between the message folders, scans.
 *
 * The spool files are the truth; everything else is rebuilt from them. A
 * file appears in new/ only once its bytes and its directory entry are on
 * disk, and nothing ever replaces an existing spool file. All access goes
 * through O_DIRECTORY descriptors and *at() calls, so functions are safe
 * to call from several threads for distinct ids.
 *
 * Failure policy: every function returns -errno (never exits); a full disk
 * or quota is always reported as -ENOSPC so callers can turn it into a
 * temporary failure. A failed submission leaves nothing behind in tmp/ or
 * new/. Spool files are mapped read-only and never truncated by this code;
 * only files that no one but root and the spool's owner can write are
 * mapped, since a truncation under the mapping would crash the reader.
 * Files in new/ are read by spool_pickup.c instead, which trusts none.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "queue_int.h"

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

#define SPOOL_MAGIC "SPOOLD 1"
#define SPOOL_NDIRS 5

static const char *const spool_dir_names[SPOOL_NDIRS] = {
    [QUEUE_DIR_TMP] = "tmp",   [QUEUE_DIR_NEW] = "new",
    [QUEUE_DIR_CUR] = "cur",   [QUEUE_DIR_FAILED] = "failed",
    [QUEUE_DIR_HOLD] = "hold",
};

/* The drop folders are written by the owner and the submit group
 * (setgid: files get that group; sticky: only a file's owner may remove
 * it; the group may not list); the rest private. */
static const mode_t spool_dir_modes[SPOOL_NDIRS + 1] = {
    [QUEUE_DIR_TMP] = 03730, [QUEUE_DIR_NEW] = 03730,
    [QUEUE_DIR_CUR] = 0700,  [QUEUE_DIR_FAILED] = 0700,
    [QUEUE_DIR_HOLD] = 0700, [SPOOL_NDIRS] = 0700, /* state/ */
};
#define SPOOL_ROOT_MODE 0711

struct spool {
	char *path;
	int dfd;
	uid_t owner; /* of the spool directory: the daemon's user */
	int sub[SPOOL_NDIRS];
};

void
queue__err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* A full disk and an exhausted quota mean the same to every caller. For
 * the steps that take space (write, create, link, rename, sync); a read, an
 * open or a stat passes its errno on as it is. */
static int
spool_errno(int e)
{
	if (e == EDQUOT)
		return -ENOSPC;
	return -e;
}

int
queue_err_temporary(int rc)
{
	switch (-rc) {
	case EMFILE:
	case ENFILE:
	case ENOMEM:
	case ENOBUFS:
	case EAGAIN:
#if EWOULDBLOCK != EAGAIN
	case EWOULDBLOCK:
#endif
	case EINTR:
	case EIO:
	case ENOSPC:
	case EDQUOT:
	case EBUSY:
	case ETXTBSY:
		return 1;
	default:
		return 0;
	}
}

static int
spool_dir_ok(enum queue_dir d)
{
	return (unsigned)d < SPOOL_NDIRS;
}

const char *
queue__dir_name(enum queue_dir d)
{
	return spool_dir_ok(d) ? spool_dir_names[d] : "?";
}

/*
 * Names accepted in a folder: queue ids everywhere, and in tmp/ any single
 * path component (other programs write their own names there).
 */
static int
spool_name_ok(enum queue_dir d, const char *name)
{
	if (d != QUEUE_DIR_TMP)
		return queue_id_valid(name);
	if (name == NULL || name[0] == '\0' || strchr(name, '/') != NULL)
		return 0;
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return 0;
	return strlen(name) <= NAME_MAX;
}

/* mkdir -p: missing parents get 0755, the last component gets mode. */
static int
spool_mkdir_p(const char *path, mode_t mode)
{
	char *tmp, *p;
	int rc = 0;

	tmp = strdup(path);
	if (tmp == NULL)
		return -ENOMEM;
	for (p = tmp + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) < 0 && errno != EEXIST) {
			rc = -errno;
			goto out;
		}
		*p = '/';
	}
	if (mkdir(tmp, mode) == 0)
		rc = 1;
	else if (errno != EEXIST)
		rc = -errno;
out:
	free(tmp);
	return rc;
}

/* Makes a directory entry just created in path's parent survive a crash. */
static int
spool_sync_parent(const char *path)
{
	char *tmp = strdup(path), *slash;
	int fd, rc = 0;

	if (tmp == NULL)
		return -ENOMEM;
	slash = strrchr(tmp, '/');
	if (slash == tmp)
		slash[1] = '\0';
	else if (slash != NULL)
		*slash = '\0';
	fd =
	    open(slash != NULL ? tmp : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	free(tmp);
	return rc;
}

/* The umask only takes bits away; the owner makes the mode exact. */
static void
spool_fix_mode(int dfd, const char *name, mode_t mode)
{
	struct stat st;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISDIR(st.st_mode) && st.st_uid == geteuid() &&
	    (st.st_mode & 07777) != mode)
		(void)fchmodat(dfd, name, mode, 0);
}

/* A folder this process may not read is opened for path operations. */
static int
spool_open_dir(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 && errno == EACCES)
		fd = openat(dfd, name, O_PATH | O_DIRECTORY | O_CLOEXEC);
	return fd;
}

int
spool_open(struct spool **out, const char *dir, int create, char *err,
	   size_t errlen)
{
	struct spool *sp;
	struct stat st;
	int i, rc, made = 0;

	*out = NULL;
	if (dir == NULL || dir[0] == '\0') {
		queue__err(err, errlen, "spool: no spool directory given");
		return -EINVAL;
	}
	sp = calloc(1, sizeof(*sp));
	if (sp == NULL) {
		queue__err(err, errlen, "spool: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	sp->dfd = -1;
	for (i = 0; i < SPOOL_NDIRS; i++)
		sp->sub[i] = -1;
	sp->path = strdup(dir);
	if (sp->path == NULL) {
		rc = -ENOMEM;
		queue__err(err, errlen, "spool: %s", strerror(ENOMEM));
		goto fail;
	}
	if (create) {
		rc = spool_mkdir_p(dir, SPOOL_ROOT_MODE);
		if (rc == 1)
			rc = spool_sync_parent(dir);
		if (rc < 0) {
			queue__err(err, errlen, "spool: create %s: %s", dir,
				   strerror(-rc));
			goto fail;
		}
		spool_fix_mode(AT_FDCWD, dir, SPOOL_ROOT_MODE);
	}
	sp->dfd = spool_open_dir(AT_FDCWD, dir);
	if (sp->dfd < 0 || fstat(sp->dfd, &st) < 0) {
		rc = -errno;
		queue__err(err, errlen, "spool: open %s: %s", dir,
			   strerror(-rc));
		goto fail;
	}
	sp->owner = st.st_uid;
	for (i = 0; i <= SPOOL_NDIRS; i++) {
		/* state/ is made here too but is opened by state_open */
		const char *name =
		    i < SPOOL_NDIRS ? spool_dir_names[i] : "state";
		struct stat sub;

		/* a folder that exists is not made again: under systemd's
		 * RestrictSUIDSGID= even a mkdir that would fail with EEXIST
		 * is refused (EPERM) for the setgid mode of tmp/ and new/ */
		if (create &&
		    fstatat(sp->dfd, name, &sub, AT_SYMLINK_NOFOLLOW) == 0) {
			/* there: only its mode may need fixing below */
		} else if (create &&
			   mkdirat(sp->dfd, name, spool_dir_modes[i]) == 0) {
			made = 1;
		} else if (create && errno != EEXIST) {
			rc = spool_errno(errno);
			queue__err(err, errlen, "spool: create %s/%s: %s", dir,
				   name, strerror(-rc));
			goto fail;
		}
		if (create)
			spool_fix_mode(sp->dfd, name, spool_dir_modes[i]);
		if (i == SPOOL_NDIRS)
			break;
		sp->sub[i] = spool_open_dir(sp->dfd, name);
		if (sp->sub[i] < 0) {
			rc = -errno;
			queue__err(err, errlen, "spool: open %s/%s: %s", dir,
				   name, strerror(-rc));
			goto fail;
		}
	}
	/* make freshly created folders survive a crash (a submitter that
	 * may not read the spool relies on its owner having done so); a
	 * spool that was complete already costs no sync */
	if (made && fsync(sp->dfd) < 0 && errno != EBADF) {
		rc = spool_errno(errno);
		queue__err(err, errlen, "spool: fsync %s: %s", dir,
			   strerror(-rc));
		goto fail;
	}
	*out = sp;
	return 0;
fail:
	spool_close(sp);
	return rc;
}

void
spool_close(struct spool *sp)
{
	int i;

	if (sp == NULL)
		return;
	for (i = 0; i < SPOOL_NDIRS; i++)
		if (sp->sub[i] >= 0)
			close(sp->sub[i]);
	if (sp->dfd >= 0)
		close(sp->dfd);
	free(sp->path);
	free(sp);
}

const char *
spool_path(const struct spool *sp)
{
	return sp->path;
}

int
spool_dirfd(const struct spool *sp, enum queue_dir d)
{
	if (!spool_dir_ok(d))
		return -EINVAL;
	return sp->sub[d];
}

uid_t
spool_owner(const struct spool *sp)
{
	return sp->owner;
}

const char *
spool_file_untrusted(const struct spool *sp, const struct stat *st)
{
	if (!S_ISREG(st->st_mode))
		return "not a regular file";
	if (st->st_uid != sp->owner)
		return "not owned by the spool's owner";
	if (st->st_nlink != 1)
		return "has more than one link";
	if (st->st_mode & (S_IWGRP | S_IWOTH))
		return "writable by group or others";
	return NULL;
}

/* ---- parsing ------------------------------------------------------- */

void
spool_envelope_free(struct spool_envelope *env)
{
	size_t i;

	if (env == NULL)
		return;
	for (i = 0; i < env->nrcpt; i++)
		free(env->rcpt[i].address);
	free(env->rcpt);
	free(env->sender);
	free(env->key);
	memset(env, 0, sizeof(*env));
}

const char *
spool_key_problem(const char *key, size_t len)
{
	if (key == NULL || len == 0)
		return "empty key";
	if (len > SPOOL_KEY_MAX)
		return "key longer than 128 bytes";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)key[i];

		if (c <= ' ' || c >= 0x7f)
			return "key with a space, control character or "
			       "non-ASCII byte";
		if (c == '"' || c == '\\')
			return "key with a quote or backslash";
	}
	return NULL;
}

/*
 * An envelope address: at most QUEUE_ADDR_MAX bytes and no control
 * character, since no SMTP address may hold one and a CR or LF would let
 * an address inject commands or envelope lines. Returns NULL or why not.
 */
static const char *
spool_addr_problem(const char *a, size_t len, int allow_empty)
{
	size_t i;

	if (len == 0 && !allow_empty)
		return "empty address";
	if (len > QUEUE_ADDR_MAX)
		return "address too long";
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)a[i];

		if (c == '\0')
			return "NUL byte in address";
		if (c == '\r' || c == '\n')
			return "line break in address";
		if (c < 0x20 || c == 0x7f)
			return "control character in address";
	}
	return NULL;
}

static int
spool_rcpt_add(struct spool_envelope *env, size_t *cap, const char *a,
	       size_t len, enum queue_rcpt_state st, size_t mark_off)
{
	struct spool_rcpt *r;
	char *copy;

	if (env->nrcpt == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4;

		if (ncap > SIZE_MAX / sizeof(*r))
			return -ENOMEM;
		r = realloc(env->rcpt, ncap * sizeof(*r));
		if (r == NULL)
			return -ENOMEM;
		env->rcpt = r;
		*cap = ncap;
	}
	copy = strndup(a, len);
	if (copy == NULL)
		return -ENOMEM;
	r = &env->rcpt[env->nrcpt++];
	r->address = copy;
	r->state = st;
	r->mark_off = (off_t)mark_off;
	return 0;
}

static int
spool_parse_time(const char *s, size_t len, int64_t *out)
{
	int64_t v = 0;
	size_t i;

	if (len == 0 || len > 19)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		if (v > (INT64_MAX - (s[i] - '0')) / 10)
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int
spool_parse(const char *data, size_t len, struct spool_envelope *env,
	    size_t *body_off, char *err, size_t errlen)
{
	return queue__spool_parse(data, len, SIZE_MAX, env, body_off, err,
				  errlen);
}

int
queue__spool_parse(const char *data, size_t len, size_t max_rcpt,
		   struct spool_envelope *env, size_t *body_off, char *err,
		   size_t errlen)
{
	struct spool_envelope e = {0};
	size_t pos = 0, cap = 0, lineno = 0;
	int have_time = 0, have_every = 0, have_prio = 0, rc = -EINVAL;
	const char *why;

	memset(env, 0, sizeof(*env));
	if (data == NULL || len == 0) {
		queue__err(err, errlen, "spool file is empty");
		return -EINVAL;
	}
	for (;;) {
		const char *line = data + pos, *nl, *arg;
		size_t start = pos, llen, alen;
		enum queue_rcpt_state st;

		lineno++;
		nl = memchr(line, '\n', len - pos);
		if (nl == NULL) {
			queue__err(err, errlen,
				   "spool file line %zu: envelope does not end "
				   "with an empty line",
				   lineno);
			goto fail;
		}
		llen = (size_t)(nl - line);
		pos += llen + 1;
		if (llen > 0 && line[llen - 1] == '\r')
			llen--;
		if (lineno == 1) {
			if (llen != strlen(SPOOL_MAGIC) ||
			    memcmp(line, SPOOL_MAGIC, llen) != 0) {
				queue__err(
				    err, errlen,
				    "spool file line 1: not a spool file "
				    "(want \"%s\")",
				    SPOOL_MAGIC);
				goto fail;
			}
			continue;
		}
		if (llen == 0)
			break;
		if (llen < 2 || line[1] != ' ') {
			queue__err(err, errlen,
				   "spool file line %zu: not of the form "
				   "\"X value\"",
				   lineno);
			goto fail;
		}
		arg = line + 2;
		alen = llen - 2;
		switch (line[0]) {
		case 'T':
			if (have_time) {
				queue__err(err, errlen,
					   "spool file line %zu: second T line",
					   lineno);
				goto fail;
			}
			if (spool_parse_time(arg, alen, &e.queued_at) < 0) {
				queue__err(err, errlen,
					   "spool file line %zu: bad time",
					   lineno);
				goto fail;
			}
			have_time = 1;
			continue;
		case 'K':
			why = e.key != NULL ? "second K line"
					    : spool_key_problem(arg, alen);
			if (why != NULL) {
				queue__err(err, errlen,
					   "spool file line %zu: %s", lineno,
					   why);
				goto fail;
			}
			e.key = strndup(arg, alen);
			if (e.key == NULL) {
				rc = -ENOMEM;
				queue__err(err, errlen, "spool file: %s",
					   strerror(ENOMEM));
				goto fail;
			}
			continue;
		case 'E':
			if (have_every ||
			    spool_parse_time(arg, alen, &e.every) < 0 ||
			    e.every < 1 || e.every > SPOOL_EVERY_MAX) {
				queue__err(err, errlen,
					   "spool file line %zu: bad or second "
					   "E line (seconds, 1 to %d)",
					   lineno, SPOOL_EVERY_MAX);
				goto fail;
			}
			have_every = 1;
			continue;
		case 'P':
			if (have_prio ||
			    !((alen == 6 && memcmp(arg, "urgent", 6) == 0) ||
			      (alen == 6 && memcmp(arg, "normal", 6) == 0))) {
				queue__err(err, errlen,
					   "spool file line %zu: bad or second "
					   "P line (urgent or normal)",
					   lineno);
				goto fail;
			}
			have_prio = 1;
			e.urgent = arg[0] == 'u';
			continue;
		case 'S':
			if (e.sender != NULL) {
				queue__err(err, errlen,
					   "spool file line %zu: second sender "
					   "line",
					   lineno);
				goto fail;
			}
			why = spool_addr_problem(arg, alen, 1);
			if (why != NULL) {
				queue__err(err, errlen,
					   "spool file line %zu: sender: %s",
					   lineno, why);
				goto fail;
			}
			e.sender = strndup(arg, alen);
			if (e.sender == NULL) {
				rc = -ENOMEM;
				queue__err(err, errlen, "spool file: %s",
					   strerror(ENOMEM));
				goto fail;
			}
			continue;
		case 'R':
			st = QUEUE_RCPT_PENDING;
			break;
		case 'D':
			st = QUEUE_RCPT_SENT;
			break;
		case 'F':
			st = QUEUE_RCPT_FAILED;
			break;
		default:
			queue__err(err, errlen,
				   "spool file line %zu: unknown line type",
				   lineno);
			goto fail;
		}
		why = spool_addr_problem(arg, alen, 0);
		if (why != NULL) {
			queue__err(err, errlen,
				   "spool file line %zu: recipient: %s", lineno,
				   why);
			goto fail;
		}
		if (e.nrcpt == max_rcpt) {
			queue__err(err, errlen,
				   "spool file line %zu: more than %zu "
				   "recipients",
				   lineno, max_rcpt);
			goto fail;
		}
		if (spool_rcpt_add(&e, &cap, arg, alen, st, start) < 0) {
			rc = -ENOMEM;
			queue__err(err, errlen, "spool file: %s",
				   strerror(ENOMEM));
			goto fail;
		}
	}
	if (e.sender == NULL) {
		queue__err(err, errlen, "spool file: no sender line");
		goto fail;
	}
	if (e.nrcpt == 0) {
		queue__err(err, errlen, "spool file: no recipient");
		goto fail;
	}
	*env = e;
	if (body_off != NULL)
		*body_off = pos;
	return 0;
fail:
	spool_envelope_free(&e);
	return rc;
}

/* ---- submission ---------------------------------------------------- */

int
queue__write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return spool_errno(errno);
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Moves from/name to to/name but never over an existing file. Filesystems
 * without RENAME_NOREPLACE get link + unlink, which refuses an existing
 * target the same way; a crash in between leaves two names for one file,
 * which costs at most a repeated delivery.
 */
int
queue__rename_noreplace(int from, const char *name, int to, const char *to_name)
{
	if (syscall(SYS_renameat2, from, name, to, to_name, RENAME_NOREPLACE) ==
	    0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return spool_errno(errno);
	if (linkat(from, name, to, to_name, 0) < 0)
		return spool_errno(errno);
	if (unlinkat(from, name, 0) < 0) {
		int rc = spool_errno(errno);

		unlinkat(to, to_name, 0);
		return rc;
	}
	return 0;
}

static int
spool_rename_noreplace(int from, const char *name, int to)
{
	return queue__rename_noreplace(from, name, to, name);
}

static char *
spool_envelope_format(const char *id, const char *sender,
		      const char *const *rcpt, size_t nrcpt,
		      const struct spool_meta *meta, size_t *outlen)
{
	size_t need, i, off;
	char *buf;
	int n;

	/* magic, T line with up to 19 digits, S line, blank line; K, E
	 * (up to 19 digits) and P lines */
	need = sizeof(SPOOL_MAGIC) + 24 + strlen(sender) + 4;
	if (meta != NULL)
		need += (meta->key ? strlen(meta->key) + 3 : 0) + 22 + 9;
	for (i = 0; i < nrcpt; i++)
		need += strlen(rcpt[i]) + 3;
	buf = malloc(need + 1);
	if (buf == NULL)
		return NULL;
	n = snprintf(buf, need + 1, SPOOL_MAGIC "\nT %" PRId64 "\nS %s\n",
		     queue_id_time_us(id) / 1000000, sender);
	if (n >= 0 && meta != NULL && meta->key != NULL)
		n += snprintf(buf + n, need + 1 - (size_t)n, "K %s\n",
			      meta->key);
	if (n >= 0 && meta != NULL && meta->every > 0)
		n += snprintf(buf + n, need + 1 - (size_t)n, "E %" PRId64 "\n",
			      meta->every);
	if (n >= 0 && meta != NULL && meta->urgent)
		n += snprintf(buf + n, need + 1 - (size_t)n, "P urgent\n");
	if (n < 0 || (size_t)n > need) {
		free(buf);
		return NULL;
	}
	off = (size_t)n;
	for (i = 0; i < nrcpt; i++) {
		size_t l = strlen(rcpt[i]);

		buf[off++] = 'R';
		buf[off++] = ' ';
		memcpy(buf + off, rcpt[i], l);
		off += l;
		buf[off++] = '\n';
	}
	buf[off++] = '\n';
	*outlen = off;
	return buf;
}

/*
 * Makes a new entry of folder dfd durable. A submitter that may not read
 * new/ cannot open it to fsync it; it syncs the file system holding its
 * own file instead, which is slower but as durable. That goes through
 * file_fd, a descriptor of the file kept from before the rename: by now
 * spoold may have moved the file on to cur/, so opening it by name in
 * new/ would fail for a message that is queued and will be delivered.
 */
static int
spool_sync_entry(int dfd, int file_fd)
{
	if (fsync(dfd) == 0)
		return 0;
	if (errno != EBADF)
		return spool_errno(errno);
	if (syncfs(file_fd) < 0)
		return spool_errno(errno);
	return 0;
}

int
spool_submit_id(struct spool *sp, const char *id, const char *sender,
		const char *const *rcpt, size_t nrcpt, const char *msg,
		size_t len, char *err, size_t errlen)
{
	return spool_submit_meta(sp, id, sender, rcpt, nrcpt, NULL, msg, len,
				 err, errlen);
}

int
spool_submit_meta(struct spool *sp, const char *id, const char *sender,
		  const char *const *rcpt, size_t nrcpt,
		  const struct spool_meta *meta, const char *msg, size_t len,
		  char *err, size_t errlen)
{
	int tdfd = sp->sub[QUEUE_DIR_TMP], ndfd = sp->sub[QUEUE_DIR_NEW];
	int fd = -1, sync_fd = -1, rc, in_new = 0;
	const char *why, *step;
	char *head = NULL;
	size_t headlen, i;

	if (!queue_id_valid(id)) {
		queue__err(err, errlen, "spool: invalid queue id");
		return -EINVAL;
	}
	if (sender == NULL) {
		queue__err(err, errlen, "spool: no envelope sender given");
		return -EINVAL;
	}
	why = spool_addr_problem(sender, strlen(sender), 1);
	if (why != NULL) {
		queue__err(err, errlen, "spool: sender: %s", why);
		return -EINVAL;
	}
	if (nrcpt == 0 || rcpt == NULL) {
		queue__err(err, errlen, "spool: no recipient");
		return -EINVAL;
	}
	if (nrcpt > SPOOL_RCPT_MAX) {
		queue__err(err, errlen,
			   "spool: %zu recipients; at most %d per message",
			   nrcpt, SPOOL_RCPT_MAX);
		return -EINVAL;
	}
	for (i = 0; i < nrcpt; i++) {
		why = rcpt[i] == NULL
			  ? "empty address"
			  : spool_addr_problem(rcpt[i], strlen(rcpt[i]), 0);
		if (why != NULL) {
			queue__err(err, errlen, "spool: recipient %zu: %s",
				   i + 1, why);
			return -EINVAL;
		}
	}
	if (msg == NULL && len > 0) {
		queue__err(err, errlen, "spool: no message data");
		return -EINVAL;
	}
	if (meta != NULL && meta->key != NULL &&
	    (why = spool_key_problem(meta->key, strlen(meta->key))) != NULL) {
		queue__err(err, errlen, "spool: %s", why);
		return -EINVAL;
	}
	if (meta != NULL &&
	    (meta->every < 0 || meta->every > SPOOL_EVERY_MAX)) {
		queue__err(err, errlen, "spool: digest window out of range");
		return -EINVAL;
	}
	head = spool_envelope_format(id, sender, rcpt, nrcpt, meta, &headlen);
	if (head == NULL) {
		queue__err(err, errlen, "spool: %s", strerror(ENOMEM));
		return -ENOMEM;
	}

	step = "create";
	/* 0640: the daemon reads it through the folder's group; the
	 * submitter loses its way to it when its own process ends */
	fd = openat(tdfd, id, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0) {
		rc = spool_errno(errno);
		free(head);
		queue__err(err, errlen, "spool: %s tmp/%s: %s", step, id,
			   strerror(-rc));
		return rc;
	}
	/* the umask may only take bits away; make the mode exact */
	step = "chmod";
	if (fchmod(fd, 0640) < 0) {
		rc = spool_errno(errno);
		goto fail;
	}
	/* root's file goes to the spool's owner, so that the daemon may
	 * trust it as one only it and root can change (no copy at pickup) */
	step = "chown";
	if (getuid() == 0 && geteuid() == 0 && sp->owner != 0 &&
	    fchown(fd, sp->owner, (gid_t)-1) < 0) {
		rc = spool_errno(errno);
		goto fail;
	}
	step = "write";
	rc = queue__write_all(fd, head, headlen);
	if (rc == 0 && len > 0)
		rc = queue__write_all(fd, msg, len);
	if (rc < 0)
		goto fail;
	step = "fsync";
	if (fsync(fd) < 0) {
		rc = spool_errno(errno);
		goto fail;
	}
	/* a second descriptor outlives the close below, for
	 * spool_sync_entry after the rename */
	step = "dup";
	sync_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (sync_fd < 0) {
		rc = spool_errno(errno);
		goto fail;
	}
	/* close can report a deferred write error on network filesystems */
	step = "close";
	rc = close(fd);
	fd = -1;
	if (rc < 0) {
		rc = spool_errno(errno);
		goto fail;
	}
	step = "move into new/";
	rc = spool_rename_noreplace(tdfd, id, ndfd);
	if (rc < 0)
		goto fail;
	in_new = 1;
	if ((rc = spool_sync_entry(ndfd, sync_fd)) < 0)
		goto fail;
	close(sync_fd);
	free(head);
	return 0;
fail:
	if (in_new)
		queue__err(err, errlen, "spool: fsync new/ after adding %s: %s",
			   id, strerror(-rc));
	else
		queue__err(err, errlen, "spool: %s tmp/%s: %s", step, id,
			   strerror(-rc));
	if (fd >= 0)
		close(fd);
	if (sync_fd >= 0)
		close(sync_fd);
	/* the caller is told the submission failed: leave nothing to deliver */
	if (in_new)
		unlinkat(ndfd, id, 0);
	else
		unlinkat(tdfd, id, 0);
	free(head);
	return rc;
}

int
spool_submit(struct spool *sp, const char *sender, const char *const *rcpt,
	     size_t nrcpt, const char *msg, size_t len,
	     char id_out[QUEUE_ID_LEN + 1], char *err, size_t errlen)
{
	char id[QUEUE_ID_LEN + 1];
	int rc;

	rc = queue_id_new(id);
	if (rc < 0) {
		queue__err(err, errlen, "spool: make queue id: %s",
			   strerror(-rc));
		return rc;
	}
	rc =
	    spool_submit_id(sp, id, sender, rcpt, nrcpt, msg, len, err, errlen);
	if (rc == 0)
		memcpy(id_out, id, sizeof(id));
	return rc;
}

/* ---- open spool files ---------------------------------------------- */

/* The whole of fd's size bytes: read into memory if small, else mapped. */
static int
spool_file_load(int fd, size_t size, void **out, int *mapped)
{
	char *buf;
	size_t got = 0;

	if (size > SPOOL_FILE_READ_MAX) {
		buf = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
		if (buf == MAP_FAILED)
			return -errno;
		*out = buf;
		*mapped = 1;
		return 0;
	}
	buf = malloc(size);
	if (buf == NULL)
		return -ENOMEM;
	while (got < size) {
		ssize_t n = pread(fd, buf + got, size - got, (off_t)got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* shorter than its size a moment ago: only its owner
			 * can have cut it, and a cut file is no message. A
			 * read takes no space: its errno is passed on as the
			 * mapping's is, so both sizes fail alike. */
			int rc = n < 0 ? -errno : -EIO;

			free(buf);
			return rc;
		}
		got += (size_t)n;
	}
	*out = buf;
	*mapped = 0;
	return 0;
}

static void
spool_file_unload(void *data, size_t size, int mapped)
{
	if (mapped)
		munmap(data, size);
	else
		free(data);
}

int
spool_file_open(struct spool *sp, enum queue_dir d, const char *id,
		struct spool_file *out, char *err, size_t errlen)
{
	const char *dname, *untrusted;
	char perr[256];
	struct stat st;
	void *map = NULL;
	int fd, rc, mapped = 0;

	memset(out, 0, sizeof(*out));
	out->fd = -1;
	if (!spool_dir_ok(d) || !queue_id_valid(id)) {
		queue__err(err, errlen, "spool: invalid folder or queue id");
		return -EINVAL;
	}
	dname = spool_dir_names[d];
	/* O_NONBLOCK: neither a lease nor a FIFO can hold this thread */
	fd = openat(sp->sub[d], id,
		    O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		rc = -errno;
		queue__err(err, errlen, "spool: open %s/%s: %s", dname, id,
			   strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		queue__err(err, errlen, "spool: stat %s/%s: %s", dname, id,
			   strerror(-rc));
		goto fail;
	}
	/* Mapped only if no one but root and the spool's owner can write
	 * or truncate it: a truncation under a shared mapping is SIGBUS. */
	untrusted = spool_file_untrusted(sp, &st);
	if (untrusted != NULL) {
		rc = -EPERM;
		queue__err(err, errlen, "spool: %s/%s: %s", dname, id,
			   untrusted);
		goto fail;
	}
	if (st.st_size <= 0 || (uint64_t)st.st_size > SIZE_MAX) {
		rc = -EINVAL;
		queue__err(err, errlen, "spool: %s/%s: empty file", dname, id);
		goto fail;
	}
	rc = spool_file_load(fd, (size_t)st.st_size, &map, &mapped);
	if (rc < 0) {
		queue__err(err, errlen, "spool: read %s/%s: %s", dname, id,
			   strerror(-rc));
		goto fail;
	}
	rc = spool_parse(map, (size_t)st.st_size, &out->env, &out->body_off,
			 perr, sizeof(perr));
	if (rc < 0) {
		queue__err(err, errlen, "spool: %s/%s: %s", dname, id, perr);
		spool_file_unload(map, (size_t)st.st_size, mapped);
		goto fail;
	}
	memcpy(out->id, id, QUEUE_ID_LEN + 1);
	out->fd = fd;
	out->data = map;
	out->mapped = mapped;
	out->size = (size_t)st.st_size;
	out->owner = st.st_uid;
	return 0;
fail:
	close(fd);
	return rc;
}

void
spool_file_close(struct spool_file *f)
{
	/* data is set only by a successful open: a failed one is a no-op */
	if (f == NULL || f->data == NULL)
		return;
	spool_file_unload((void *)f->data, f->size, f->mapped);
	close(f->fd);
	spool_envelope_free(&f->env);
	memset(f, 0, sizeof(*f));
	f->fd = -1;
}

int
spool_file_mark(struct spool_file *f, size_t i, enum queue_rcpt_state st)
{
	static const char letter[] = {
	    [QUEUE_RCPT_PENDING] = 'R',
	    [QUEUE_RCPT_SENT] = 'D',
	    [QUEUE_RCPT_FAILED] = 'F',
	};
	ssize_t n;

	if (f == NULL || f->data == NULL || i >= f->env.nrcpt ||
	    (unsigned)st >= sizeof(letter))
		return -EINVAL;
	/* delivery marks each outcome as it comes and all of them again at
	 * the session's end, for any write that failed the first time */
	if (f->env.rcpt[i].state == st)
		return 0;
	do
		n = pwrite(f->fd, &letter[st], 1, f->env.rcpt[i].mark_off);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return spool_errno(errno);
	if (n != 1)
		return -EIO;
	f->env.rcpt[i].state = st;
	return 0;
}

int
spool_file_sync(struct spool_file *f)
{
	if (f == NULL || f->data == NULL)
		return -EINVAL;
	if (fdatasync(f->fd) < 0)
		return spool_errno(errno);
	return 0;
}

/* ---- folder operations --------------------------------------------- */

int
spool_move(struct spool *sp, const char *id, enum queue_dir from,
	   enum queue_dir to)
{
	int rc;

	if (!spool_dir_ok(from) || !spool_dir_ok(to) ||
	    !spool_name_ok(from, id) || !spool_name_ok(to, id))
		return -EINVAL;
	if (from == to)
		return 0;
	rc = spool_rename_noreplace(sp->sub[from], id, sp->sub[to]);
	if (rc < 0)
		return rc;
	/* the file has moved: saying it has not would leave its record
	 * pointing at a folder it is no longer in */
	if (fsync(sp->sub[to]) < 0)
		return SPOOL_MOVED_UNSYNCED;
	return 0;
}

int
spool_move_nosync(struct spool *sp, const char *id, enum queue_dir from,
		  enum queue_dir to)
{
	if (!spool_dir_ok(from) || !spool_dir_ok(to) ||
	    !spool_name_ok(from, id) || !spool_name_ok(to, id))
		return -EINVAL;
	if (from == to)
		return 0;
	return spool_rename_noreplace(sp->sub[from], id, sp->sub[to]);
}

int
spool_remove(struct spool *sp, enum queue_dir d, const char *id)
{
	if (!spool_dir_ok(d) || !spool_name_ok(d, id))
		return -EINVAL;
	if (unlinkat(sp->sub[d], id, 0) < 0)
		return -errno;
	return 0;
}

int
spool_stat(struct spool *sp, enum queue_dir d, const char *id, uint64_t *size,
	   int64_t *mtime)
{
	struct stat st;

	if (!spool_dir_ok(d) || !spool_name_ok(d, id))
		return -EINVAL;
	if (fstatat(sp->sub[d], id, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (size != NULL)
		*size = (uint64_t)st.st_size;
	if (mtime != NULL)
		*mtime = (int64_t)st.st_mtime;
	return 0;
}

static int
spool_is_regular(int dfd, const struct dirent *de)
{
	struct stat st;

	if (de->d_type == DT_REG)
		return 1;
	if (de->d_type != DT_UNKNOWN)
		return 0;
	if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	return S_ISREG(st.st_mode);
}

int
spool_scan(struct spool *sp, enum queue_dir d,
	   int (*cb)(const char *name, void *arg), void *arg)
{
	struct dirent *de;
	DIR *dir;
	int fd, rc = 0;

	if (!spool_dir_ok(d) || cb == NULL)
		return -EINVAL;
	/* a fresh open file description: a dup would share the position */
	fd = openat(sp->sub[d], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	dir = fdopendir(fd);
	if (dir == NULL) {
		rc = -errno;
		close(fd);
		return rc;
	}
	for (;;) {
		errno = 0;
		de = readdir(dir);
		if (de == NULL) {
			rc = errno ? -errno : 0;
			break;
		}
		if (de->d_name[0] == '.')
			continue;
		if (d == QUEUE_DIR_TMP) {
			if (!spool_is_regular(sp->sub[d], de))
				continue;
		} else if (!queue_id_valid(de->d_name)) {
			continue;
		}
		rc = cb(de->d_name, arg);
		if (rc != 0)
			break;
	}
	closedir(dir);
	return rc;
}

struct spool_clean_ctx {
	struct spool *sp;
	time_t cutoff;
	int count;
	int err;
};

static int
spool_clean_one(const char *name, void *arg)
{
	struct spool_clean_ctx *c = arg;
	int dfd = c->sp->sub[QUEUE_DIR_TMP];
	struct stat st;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0; /* gone meanwhile: renamed into new/ */
	if (st.st_mtime >= c->cutoff)
		return 0;
	if (unlinkat(dfd, name, 0) < 0) {
		if (errno != ENOENT && c->err == 0)
			c->err = -errno;
		return 0;
	}
	c->count++;
	return 0;
}

int
spool_clean_tmp(struct spool *sp, int64_t max_age)
{
	struct spool_clean_ctx c = {.sp = sp};
	int rc;

	if (max_age < 0)
		return -EINVAL;
	c.cutoff = time(NULL) - (time_t)max_age;
	rc = spool_scan(sp, QUEUE_DIR_TMP, spool_clean_one, &c);
	if (rc < 0)
		return rc;
	if (c.count == 0 && c.err < 0)
		return c.err;
	return c.count;
}

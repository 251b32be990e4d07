/*
 * submit.c - `spoolctl submit`: a message from stdin or from arguments
 * into the spool, durably, with no daemon needed; and --wait for callers
 * that learn of an outage only from the exit code.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "spool/ctlproto.h"
#include "spool/msg.h"
#include "spool/queue.h"
#include "spool/util.h"
#include "spoolctl.h"

#define WAIT_DEFAULT_S 60
#define WAIT_POLL_MS 100

/* The sysexits code for a spool error: full disk or quota is temporary,
 * a spool that cannot be made or entered is "cannot create". */
static int
spool_exit_code(int rc)
{
	switch (-rc) {
	case ENOSPC:
	case EDQUOT:
	case ENOMEM:
		return EX_TEMPFAIL;
	case EACCES:
	case EPERM:
	case ENOENT:
	case EROFS:
	case ENOTDIR:
		return EX_CANTCREAT;
	default:
		return EX_IOERR;
	}
}

/* Reads the message from fd: to its end, or with dot_ends to a line
 * holding a lone "." (sendmail without -i), which is not kept. Input over
 * max bytes is EX_DATAERR. */
static int
submit_read_input(int fd, size_t max, int dot_ends, char **out, size_t *len)
{
	size_t cap = 65536, n = 0, scanned = 0, line = 0;
	char *buf = malloc(cap + 1);

	*out = NULL;
	if (buf == NULL)
		goto nomem;
	for (;;) {
		ssize_t r;

		if (n == cap) {
			char *nb;

			if (cap > max) {
				free(buf);
				ctl_error("message too large (over %zu bytes)",
					  max);
				return EX_DATAERR;
			}
			cap *= 2;
			if ((nb = realloc(buf, cap + 1)) == NULL)
				goto nomem;
			buf = nb;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ctl_error("reading the message: %s", strerror(errno));
			free(buf);
			return EX_IOERR;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (!dot_ends)
			continue;
		/* look at each complete line once */
		for (char *nl; (nl = memchr(buf + scanned, '\n', n - scanned));
		     line = scanned) {
			size_t end = (size_t)(nl - buf);

			scanned = end + 1;
			if ((end - line == 1 && buf[line] == '.') ||
			    (end - line == 2 && buf[line] == '.' &&
			     buf[line + 1] == '\r')) {
				buf[line] = '\0';
				*out = buf;
				*len = line;
				return 0;
			}
		}
	}
	if (n > max) {
		free(buf);
		ctl_error("message too large (over %zu bytes)", max);
		return EX_DATAERR;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
nomem:
	free(buf);
	ctl_error("out of memory");
	return EX_OSERR;
}

/* The caller's login name and (host not NULL) the host name; a uid with
 * no passwd entry (a container's arbitrary uid) is uidNNN, never someone
 * else's name. */
static void
submit_identity(char *user, size_t ulen, char *host, size_t hlen)
{
	struct passwd *pw = getpwuid(getuid());

	if (pw != NULL)
		str_copy(user, pw->pw_name, ulen);
	else
		snprintf(user, ulen, "uid%u", (unsigned)getuid());
	if (host == NULL)
		return;
	if (gethostname(host, hlen - 1) < 0 || host[0] == '\0')
		str_copy(host, "localhost", hlen);
	host[hlen - 1] = '\0';
}

int
submit_spool(const struct conf *cf, const struct msg_prepared *p,
	     char id[QUEUE_ID_LEN + 1])
{
	struct spool *sp;
	char err[1024];
	int rc;

	rc = spool_open(&sp, cf->spool_dir, 1, err, sizeof(err));
	if (rc < 0) {
		ctl_error("%s", err);
		return spool_exit_code(rc);
	}
	rc = spool_submit(sp, p->sender, (const char *const *)p->rcpt.v,
			  p->rcpt.n, p->data, p->len, id, err, sizeof(err));
	spool_close(sp);
	if (rc < 0) {
		ctl_error("%s", err);
		return spool_exit_code(rc);
	}
	return 0;
}

/* Why a failed message failed, from the state, for one line on stderr. */
static void
failure_reason(const struct conf *cf, const char *id, char *buf, size_t len)
{
	struct queue_msg_info m;
	struct state_txn *txn;
	struct state *st;
	char err[256];

	str_copy(buf, "see spoolctl show", len);
	if (ctl_state_open(&st, cf->spool_dir, 1, err, sizeof(err)) < 0)
		return;
	if (state_begin(st, 0, &txn) == 0) {
		if (state_msg_get(txn, id, &m) == 0) {
			if (m.last_error != NULL)
				str_copy(buf, m.last_error, len);
			queue_msg_info_free(&m);
		}
		state_abort(txn);
	}
	state_close(st);
}

/*
 * The spool tree with its modes, as spoold makes it when it starts: for
 * container images and packages that must ship it before spoold first
 * runs, so that an unprivileged submitter never finds it missing.
 */
int
cmd_init(const char *conf_path, int argc, char **argv)
{
	struct conf cf;
	struct spool *sp;
	char err[1024];
	int rc;

	(void)argv;
	if (argc != 1) {
		ctl_error("usage: init");
		return EX_USAGE;
	}
	if ((rc = ctl_conf_load(&cf, conf_path)) != 0)
		return rc;
	rc = spool_open(&sp, cf.spool_dir, 1, err, sizeof(err));
	if (rc < 0) {
		ctl_error("%s", err);
		rc = spool_exit_code(rc);
	} else {
		spool_close(sp);
		printf("%s\n", cf.spool_dir);
		rc = 0;
	}
	conf_free(&cf);
	return rc;
}

/* Waits until id is delivered (0), failed (EX_UNAVAILABLE) or still
 * queued after seconds (EX_TEMPFAIL). The message stays queued. */
static int
submit_wait(const struct conf *cf, const char *id, long seconds)
{
	int64_t deadline = time_mono_ms() + (int64_t)seconds * 1000;
	char req[64], *reply = NULL, why[QUEUE_REPLY_MAX], err[512];
	struct spool *sp;
	int rc;

	/* the daemon sees new/ through inotify anyway; this only saves the
	 * wait for a message that was already due */
	snprintf(req, sizeof(req), "FLUSH %s", id);
	if (ctl_call(cf->spool_dir, req, &reply, 2000) == 0)
		free(reply);
	if ((rc = spool_open(&sp, cf->spool_dir, 0, err, sizeof(err))) < 0) {
		ctl_error("%s", err);
		return EX_IOERR;
	}
	for (;;) {
		if (spool_stat(sp, QUEUE_DIR_FAILED, id, NULL, NULL) == 0) {
			spool_close(sp);
			failure_reason(cf, id, why, sizeof(why));
			ctl_error("%s failed: %s", id, why);
			return EX_UNAVAILABLE;
		}
		if (spool_stat(sp, QUEUE_DIR_NEW, id, NULL, NULL) < 0 &&
		    spool_stat(sp, QUEUE_DIR_CUR, id, NULL, NULL) < 0 &&
		    spool_stat(sp, QUEUE_DIR_FAILED, id, NULL, NULL) < 0) {
			spool_close(sp);
			return 0;
		}
		if (time_mono_ms() >= deadline)
			break;
		usleep(WAIT_POLL_MS * 1000);
	}
	spool_close(sp);
	ctl_error("%s still queued after %lds", id, seconds);
	return EX_TEMPFAIL;
}

static int
parse_wait(const char *arg, long *out)
{
	int64_t secs;

	if (arg == NULL) {
		*out = WAIT_DEFAULT_S;
		return 0;
	}
	if (parse_duration(arg, &secs) < 0 || secs <= 0 || secs > 86400) {
		ctl_error("--wait: %s: want seconds or a duration such as 30s",
			  arg);
		return EX_USAGE;
	}
	*out = (long)secs;
	return 0;
}

struct submit_args {
	const char *sender;
	int extract;
	long wait; /* seconds, 0: no wait */
	struct msg_strlist to;
	const char *subject, *from, *body_file;
};

static int
submit_parse(int argc, char **argv, struct submit_args *a)
{
	static const struct option opts[] = {
	    {"wait", optional_argument, NULL, 'w'},
	    {"to", required_argument, NULL, 'T'},
	    {"subject", required_argument, NULL, 's'},
	    {"from", required_argument, NULL, 'F'},
	    {"body-file", required_argument, NULL, 'b'},
	    {NULL, 0, NULL, 0},
	};
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+f:ti", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			a->sender = optarg;
			break;
		case 't':
			a->extract = 1;
			break;
		case 'i':
			break; /* always so: input ends at its end */
		case 'w':
			if ((rc = parse_wait(optarg, &a->wait)) != 0)
				return rc;
			break;
		case 'T':
			if (msg_strlist_add(&a->to, optarg) < 0) {
				ctl_error("out of memory");
				return EX_OSERR;
			}
			break;
		case 's':
			a->subject = optarg;
			break;
		case 'F':
			a->from = optarg;
			break;
		case 'b':
			a->body_file = optarg;
			break;
		default:
			return EX_USAGE;
		}
	}
	if ((a->subject || a->from || a->body_file) && a->to.n == 0) {
		ctl_error("--subject, --from and --body-file need --to");
		return EX_USAGE;
	}
	if (a->to.n > 0 && a->extract) {
		ctl_error(
		    "-t reads recipients from a message; --to builds one");
		return EX_USAGE;
	}
	return 0;
}

/* --to/--subject: a MIME message built from the arguments. */
static int
submit_compose(const struct conf *cf, struct submit_args *a, int argc,
	       char **argv, struct msg_prepared *p)
{
	char user[256], err[512], *body = NULL;
	struct msg_compose_opts o = {0};
	struct ctl_local local;
	size_t len = 0;
	int fd = 0, rc;

	for (int i = optind; i < argc; i++)
		if (msg_strlist_add(&a->to, argv[i]) < 0) {
			ctl_error("out of memory");
			return EX_OSERR;
		}
	if (a->body_file != NULL &&
	    (fd = open(a->body_file, O_RDONLY | O_CLOEXEC)) < 0) {
		ctl_error("%s: %s", a->body_file, strerror(errno));
		return EX_NOINPUT;
	}
	rc = submit_read_input(fd, cf->max_size, 0, &body, &len);
	if (fd != 0)
		close(fd);
	if (rc != 0)
		return rc;
	if ((rc = ctl_local_init(&local, cf)) != 0) {
		free(body);
		return rc;
	}
	/* no host name: local.host.domain takes its place */
	submit_identity(user, sizeof(user), NULL, 0);
	o.to = (const char *const *)a->to.v;
	o.nto = a->to.n;
	o.subject = a->subject ? a->subject : "";
	o.from = a->from;
	o.body = body;
	o.body_len = len;
	o.user = user;
	o.hostname = local.host.domain;
	o.local = &local.local;
	o.max_size = cf->max_size;
	rc = msg_compose(&o, p, err, sizeof(err));
	ctl_local_free(&local);
	free(body);
	if (rc != 0)
		ctl_error("%s", err);
	return rc;
}

int
submit_raw(const struct conf *cf, const struct msg_submit_opts *in,
	   int dot_ends, const char *const *rcpt, size_t nrcpt,
	   struct msg_prepared *p)
{
	struct msg_submit_opts o = *in;
	char user[256], err[512], *raw = NULL;
	struct ctl_local local;
	size_t len = 0;
	int rc;

	/* the canonical form may be a little larger than the input (CRLF),
	 * so the exact check is msg_prepare's */
	rc = submit_read_input(0, cf->max_size + 65536, dot_ends, &raw, &len);
	if (rc != 0)
		return rc;
	if ((rc = ctl_local_init(&local, cf)) != 0) {
		free(raw);
		return rc;
	}
	/* no host name: local.host.domain takes its place */
	submit_identity(user, sizeof(user), NULL, 0);
	o.max_size = cf->max_size;
	o.user = user;
	/* bare senders and the added From and Message-ID take the domain */
	o.hostname = local.host.domain;
	o.local = &local.local;
	rc = msg_prepare(raw, len, &o, rcpt, nrcpt, p, err, sizeof(err));
	ctl_local_free(&local);
	free(raw);
	if (rc != 0)
		ctl_error("%s", err);
	return rc;
}

int
cmd_submit(const char *conf_path, int argc, char **argv)
{
	struct submit_args a = {0};
	struct msg_prepared p = {0};
	char id[QUEUE_ID_LEN + 1];
	struct conf cf;
	int rc;

	if ((rc = submit_parse(argc, argv, &a)) != 0) {
		msg_strlist_free(&a.to);
		return rc;
	}
	if ((rc = ctl_conf_load(&cf, conf_path)) != 0) {
		msg_strlist_free(&a.to);
		return rc;
	}
	if (a.to.n > 0) {
		rc = submit_compose(&cf, &a, argc, argv, &p);
	} else {
		struct msg_submit_opts o = {.sender = a.sender,
					    .extract_rcpts = a.extract};

		rc = submit_raw(&cf, &o, 0, (const char *const *)argv + optind,
				(size_t)(argc - optind), &p);
	}
	if (rc == 0)
		rc = submit_spool(&cf, &p, id);
	if (rc == 0) {
		printf("%s\n", id);
		fflush(stdout);
		if (a.wait > 0)
			rc = submit_wait(&cf, id, a.wait);
	}
	msg_prepared_free(&p);
	msg_strlist_free(&a.to);
	conf_free(&cf);
	return rc;
}

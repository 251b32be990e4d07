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
#include "spool/privs.h"
#include "spool/queue.h"
#include "spool/util.h"
#include "spoolctl.h"

#define WAIT_DEFAULT_S 60
/* past the deadline, how long the daemon has to answer */
#define WAIT_SLACK_MS 5000

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
	case EINVAL: /* an envelope the spool refuses: too many recipients */
		return EX_DATAERR;
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
void
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

/*
 * Root's message carries its own Received line naming uid 0, since the
 * file it writes is given to the spool's owner and so taken by spoold as
 * it is; spoold writes that line itself for every other user's file, from
 * the file's owner. *out is msg, or a malloc'd copy with the line first.
 */
static int
submit_trace(const struct msg_prepared *p, const char *id, char **out,
	     size_t *len)
{
	char user[256], host[256], trace[MSG_RECEIVED_MAX];
	int n;

	*out = p->data;
	*len = p->len;
	if (getuid() != 0)
		return 0;
	submit_identity(user, sizeof(user), host, sizeof(host));
	n = msg_received_format(trace, sizeof(trace), 0, host, id, time(NULL));
	if (n < 0 || (*out = malloc((size_t)n + p->len + 1)) == NULL) {
		ctl_error("out of memory");
		return EX_OSERR;
	}
	memcpy(*out, trace, (size_t)n);
	memcpy(*out + n, p->data, p->len);
	*len = (size_t)n + p->len;
	return 0;
}

int
submit_spool(const struct conf *cf, const struct msg_prepared *p,
	     char id[QUEUE_ID_LEN + 1])
{
	return submit_spool_meta(cf, p, NULL, id, NULL);
}

int
submit_spool_meta(const struct conf *cf, const struct msg_prepared *p,
		  const struct keyed_opts *o, char id[QUEUE_ID_LEN + 1],
		  int *keyed)
{
	struct spool *sp;
	struct spool_meta meta;
	char err[1024], *msg = NULL, key[SPOOL_KEY_MAX + 1];
	size_t len;
	int rc;

	if ((rc = keyed_meta(p, o, &meta, key)) != 0)
		return rc;
	if (keyed != NULL)
		*keyed = meta.key != NULL && !meta.urgent;

	if ((rc = queue_id_new(id)) < 0) {
		ctl_error("cannot make a queue id: %s", strerror(-rc));
		return EX_OSERR;
	}
	if ((rc = submit_trace(p, id, &msg, &len)) != 0)
		return rc;
	/* a setgid spoolctl holds its group for these calls alone */
	rc = ctl_setgid_raise();
	if (rc == 0)
		rc = spool_open(&sp, cf->spool_dir, 1, err, sizeof(err));
	if (rc == 0) {
		rc = spool_submit_meta(
		    sp, id, p->sender, (const char *const *)p->rcpt.v,
		    p->rcpt.n, &meta, msg, len, err, sizeof(err));
		spool_close(sp);
	}
	ctl_setgid_lower();
	if (msg != p->data)
		free(msg);
	if (rc > 0)
		return rc; /* ctl_setgid_raise said why */
	if (rc < 0) {
		ctl_error("%s", err);
		return spool_exit_code(rc);
	}
	return 0;
}

/*
 * The spool tree with its modes, as spoold makes it when it starts: for
 * container images and packages that must ship it before spoold first
 * runs, so that an unprivileged submitter never finds it missing. As root
 * it gives the spool to [spool] user (adopting one of the earlier model),
 * as spoold started by root does.
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
	if (geteuid() == 0) {
		/* root makes it the daemon's, as spoold does at start */
		struct privs_ids ids;
		int adopted;

		rc = privs_resolve(&ids, cf.spool_user, cf.submit_group,
				   cf.spool_dir, err, sizeof(err));
		if (rc == 0 && (rc = spool_own(cf.spool_dir, &ids, &adopted,
					       err, sizeof(err))) < 0)
			rc = spool_exit_code(rc);
		if (rc != 0)
			ctl_error("%s", err);
		else
			printf("%s\n", cf.spool_dir);
		conf_free(&cf);
		return rc;
	}
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

/*
 * Asks spoold how message id fares and waits, at most seconds, for an
 * outcome: 0 once every recipient was accepted, EX_UNAVAILABLE when it
 * failed or was deleted, EX_TEMPFAIL (with the reason) when it is still
 * queued, deferred or held at the deadline, or when no daemon answers.
 * The daemon answers its submitter (SO_PEERCRED), who may not read the
 * spool itself; it makes nothing due, so the wait costs no retry step.
 */
static int
submit_wait(const struct conf *cf, const char *id, long seconds)
{
	char req[64], *reply = NULL, state[16];
	unsigned attempts;
	int rc, off = 0;

	snprintf(req, sizeof(req), "WAIT %s %ld", id, seconds);
	rc = ctl_call(cf->spool_dir, req, &reply,
		      (int)seconds * 1000 + WAIT_SLACK_MS);
	if (rc == -ENOENT || rc == -ECONNREFUSED) {
		ctl_error("%s is queued, but spoold is not running: it is "
			  "sent once spoold starts",
			  id);
		return EX_TEMPFAIL;
	}
	if (rc < 0) {
		ctl_error("%s is queued, but spoold does not answer (%s): is "
			  "it stopped or hung?",
			  id, strerror(-rc));
		return EX_TEMPFAIL;
	}
	reply[strcspn(reply, "\n")] = '\0';
	if (reply[0] == '\0') {
		ctl_error("%s is queued; spoold stopped while it was waited "
			  "for",
			  id);
		rc = EX_TEMPFAIL;
	} else if (strncmp(reply, "ERR ", 4) == 0) {
		ctl_error("%s is queued; spoold cannot tell its fate: %s", id,
			  reply + 4);
		rc = strstr(reply, "no such message") ? EX_UNAVAILABLE
						      : EX_TEMPFAIL;
	} else if (sscanf(reply, "OK %15s %u %n", state, &attempts, &off) < 2) {
		ctl_error("%s is queued; spoold gave an unexpected reply", id);
		rc = EX_TEMPFAIL;
	} else if (strcmp(state, "sent") == 0) {
		rc = 0;
	} else if (strcmp(state, "failed") == 0 ||
		   strcmp(state, "deleted") == 0) {
		ctl_error("%s %s: %s", id, state,
			  reply[off] ? reply + off : "no reason recorded");
		rc = EX_UNAVAILABLE;
	} else {
		ctl_error(
		    "%s still queued (%s, %u attempt%s) after %lds%s%s", id,
		    strcmp(state, "held") == 0 ? "held by an operator" : state,
		    attempts, attempts == 1 ? "" : "s", seconds,
		    reply[off] ? ": " : "", reply + off);
		rc = EX_TEMPFAIL;
	}
	free(reply);
	return rc;
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
		ctl_error("--wait: %s: want seconds or a duration such as "
			  "30s, up to 1d (--wait=30s)",
			  arg);
		return EX_USAGE;
	}
	*out = (long)secs;
	return 0;
}

/*
 * --wait=N, or --wait N: the word after a bare --wait is its value
 * unless it is an option or an address (has an '@'), so a number is never
 * taken for a recipient and "--wait x" is refused, not read as a local
 * name. A bare --wait waits WAIT_DEFAULT_S.
 */
static int
submit_parse_wait(int argc, char **argv, long *out)
{
	const char *next = optind < argc ? argv[optind] : NULL;

	if (optarg != NULL)
		return parse_wait(optarg, out);
	if (next == NULL || next[0] == '-' || strchr(next, '@') != NULL)
		return parse_wait(NULL, out);
	optind++;
	return parse_wait(next, out);
}

struct submit_args {
	const char *sender;
	int extract;
	long wait; /* seconds, 0: no wait */
	struct keyed_opts keyed;
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
	    {"key", required_argument, NULL, 'k'},
	    {"every", required_argument, NULL, 'e'},
	    {"priority", required_argument, NULL, 'p'},
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
			if ((rc = submit_parse_wait(argc, argv, &a->wait)) != 0)
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
		case 'k':
			a->keyed.key = optarg;
			break;
		case 'e':
			if (keyed_parse_every(optarg, &a->keyed.every) < 0) {
				ctl_error("--every: %s: want a duration such "
					  "as 10m or 1h, up to 366d",
					  optarg);
				return EX_USAGE;
			}
			break;
		case 'p':
			if (keyed_parse_priority(optarg, &a->keyed.urgent) <
			    0) {
				ctl_error("--priority: %s: want urgent or "
					  "normal",
					  optarg);
				return EX_USAGE;
			}
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
submit_prepare(const struct conf *cf, const struct msg_submit_opts *in,
	       const char *raw, size_t len, const char *const *rcpt,
	       size_t nrcpt, struct msg_prepared *p, char *err, size_t errlen)
{
	struct msg_submit_opts o = *in;
	char user[256];
	struct ctl_local local;
	int rc;

	if ((rc = ctl_local_init(&local, cf)) != 0)
		return rc;
	/* no host name: local.host.domain takes its place */
	submit_identity(user, sizeof(user), NULL, 0);
	o.max_size = cf->max_size;
	o.user = user;
	/* bare senders and the added From and Message-ID take the domain */
	o.hostname = local.host.domain;
	o.local = &local.local;
	rc = msg_prepare(raw, len, &o, rcpt, nrcpt, p, err, errlen);
	ctl_local_free(&local);
	return rc;
}

int
submit_raw(const struct conf *cf, const struct msg_submit_opts *o, int dot_ends,
	   const char *const *rcpt, size_t nrcpt, struct msg_prepared *p)
{
	char err[512], *raw = NULL;
	size_t len = 0;
	int rc;

	/* the canonical form may be a little larger than the input (CRLF),
	 * so the exact check is msg_prepare's */
	rc = submit_read_input(0, cf->max_size + 65536, dot_ends, &raw, &len);
	if (rc != 0)
		return rc;
	rc = submit_prepare(cf, o, raw, len, rcpt, nrcpt, p, err, sizeof(err));
	free(raw);
	if (rc != 0)
		ctl_error("%s", err);
	return rc;
}

int
cmd_submit(const char *conf_path, int argc, char **argv)
{
	struct submit_args a = {.keyed.urgent = -1};
	struct msg_prepared p = {0};
	char id[QUEUE_ID_LEN + 1];
	struct conf cf;
	int rc, keyed = 0;

	if ((rc = submit_parse(argc, argv, &a)) != 0) {
		msg_strlist_free(&a.to);
		return rc;
	}
	if ((rc = ctl_conf_load_submit(&cf, conf_path)) != 0) {
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
		rc = submit_spool_meta(&cf, &p, &a.keyed, id, &keyed);
	if (rc == 0) {
		printf("%s\n", id);
		fflush(stdout);
		if (a.wait > 0)
			rc = submit_wait(&cf, id, a.wait);
		else if (keyed)
			rc = keyed_outcome(&cf, id);
	}
	msg_prepared_free(&p);
	msg_strlist_free(&a.to);
	conf_free(&cf);
	return rc;
}

/*
 * actions.c - hold, release, delete and requeue.
 *
 * With spoold running, the daemon applies them on its loop thread, where
 * no delivery can race them, after checking the caller's credentials.
 * With no daemon, spoolctl takes the spool lock that spoold itself holds
 * while it runs, so neither can start under the other, and applies them
 * directly.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "spool/ctlproto.h"
#include "spool/msg.h"
#include "spool/queue.h"
#include "spool/util.h"
#include "spoolctl.h"

#define ACT_BATCH 100 /* ids per control request */
#define ACT_TIMEOUT_MS 10000

static const char *const action_words[] = {
    [QUEUE_HOLD] = "HOLD",
    [QUEUE_RELEASE] = "RELEASE",
    [QUEUE_DELETE] = "DELETE",
    [QUEUE_REQUEUE] = "REQUEUE",
};

static const char *const action_done[] = {
    [QUEUE_HOLD] = "held",
    [QUEUE_RELEASE] = "released",
    [QUEUE_DELETE] = "deleted",
    [QUEUE_REQUEUE] = "requeued",
};

static int
exit_code(int rc)
{
	switch (-rc) {
	case 0:
		return 0;
	case ENOENT:
		return EX_NOINPUT;
	case EBUSY:
		return EX_TEMPFAIL;
	case EINVAL:
		return EX_DATAERR;
	case EACCES:
	case EPERM:
		return EX_NOPERM;
	default:
		return EX_IOERR;
	}
}

/* The ids of argv, "-" standing for those on stdin. */
static int
collect_ids(int argc, char **argv, struct msg_strlist *ids)
{
	char word[128];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-") != 0) {
			if (msg_strlist_add(ids, argv[i]) < 0)
				goto nomem;
			continue;
		}
		while (scanf("%127s", word) == 1)
			if (msg_strlist_add(ids, word) < 0)
				goto nomem;
	}
	for (size_t i = 0; i < ids->n; i++)
		if (!queue_id_valid(ids->v[i])) {
			ctl_error("%s: not a queue id", ids->v[i]);
			return EX_USAGE;
		}
	if (ids->n == 0) {
		ctl_error("no queue id given");
		return EX_USAGE;
	}
	return 0;
nomem:
	ctl_error("out of memory");
	return EX_OSERR;
}

struct act_tally {
	size_t done;
	int first_rc;
};

static void
tally_failure(struct act_tally *t, int rc, const char *why)
{
	ctl_error("%s", why);
	if (t->first_rc == 0)
		t->first_rc = rc;
}

/* One batch through the daemon: 0, or -ENOENT/-ECONNREFUSED when no
 * daemon listens. */
static int
act_online(const struct conf *cf, enum queue_action a, char **ids, size_t n,
	   struct act_tally *t)
{
	char *req, *reply = NULL, why[600];
	size_t len = strlen(action_words[a]) + 1, done, failed;
	int rc, err_rc, off = 0;

	for (size_t i = 0; i < n; i++)
		len += strlen(ids[i]) + 1;
	if ((req = malloc(len)) == NULL)
		return -ENOMEM;
	strcpy(req, action_words[a]);
	for (size_t i = 0; i < n; i++) {
		strcat(req, " ");
		strcat(req, ids[i]);
	}
	rc = ctl_call(cf->spool_dir, req, &reply, ACT_TIMEOUT_MS);
	free(req);
	if (rc < 0)
		return rc;
	reply[strcspn(reply, "\n")] = '\0';
	if (sscanf(reply, "OK %zu %zu %d %n", &done, &failed, &err_rc, &off) ==
	    3) {
		t->done += done;
		if (failed > 0) {
			snprintf(why, sizeof(why), "%s%s", reply + off,
				 failed > 1 ? " (and more)" : "");
			tally_failure(t, -err_rc, why);
		}
	} else if (strncmp(reply, "ERR ", 4) == 0) {
		tally_failure(t, strstr(reply, "permission") ? -EPERM : -EIO,
			      reply + 4);
	} else {
		tally_failure(t, -EIO, "spoold gave an unexpected reply");
	}
	free(reply);
	return 0;
}

/* The daemon's lock: held, no daemon can start while we act. */
static int
spool_lock_take(const struct conf *cf, int *fd_out)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/spoold.pid", cf->spool_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0 && (errno == EACCES || errno == EPERM))
		return ctl_denied(cf->spool_dir, "change");
	if (fd < 0) {
		ctl_error("%s: %s", path, strerror(errno));
		return EX_IOERR;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		close(fd);
		ctl_error("spoold runs on %s but its control socket does not "
			  "answer",
			  cf->spool_dir);
		return EX_TEMPFAIL;
	}
	*fd_out = fd;
	return 0;
}

static int
act_offline(const struct conf *cf, enum queue_action a,
	    const struct msg_strlist *ids, struct act_tally *t)
{
	struct spool *sp = NULL;
	struct state *st = NULL;
	struct state_txn *txn = NULL;
	char err[600];
	int lock = -1, rc;

	if ((rc = spool_lock_take(cf, &lock)) != 0)
		return rc;
	rc = spool_open(&sp, cf->spool_dir, 0, err, sizeof(err));
	if (rc == 0)
		rc = ctl_state_open(&st, cf->spool_dir, 0, err, sizeof(err));
	if (rc == 0 && (rc = state_begin(st, 1, &txn)) < 0)
		snprintf(err, sizeof(err), "state: %s", strerror(-rc));
	if (rc < 0) {
		ctl_error("%s", err);
		rc = exit_code(rc);
		goto out;
	}
	for (size_t i = 0; i < ids->n; i++) {
		int arc = queue_act(sp, txn, a, ids->v[i], (int64_t)time(NULL),
				    err, sizeof(err));

		if (arc == 0)
			t->done++;
		else
			tally_failure(t, arc, err);
	}
	rc = state_commit(txn);
	if (rc < 0) {
		ctl_error("state: %s", strerror(-rc));
		rc = EX_IOERR;
	}
out:
	state_close(st);
	spool_close(sp);
	close(lock);
	return rc;
}

static int
run_action(const char *conf_path, enum queue_action a, int argc, char **argv)
{
	struct msg_strlist ids = {0};
	struct act_tally t = {0};
	struct conf cf;
	int rc;

	if ((rc = collect_ids(argc, argv, &ids)) != 0)
		goto out_ids;
	if ((rc = ctl_conf_load(&cf, conf_path)) != 0)
		goto out_ids;
	for (size_t i = 0; i < ids.n; i += ACT_BATCH) {
		size_t n = ids.n - i < ACT_BATCH ? ids.n - i : ACT_BATCH;

		rc = act_online(&cf, a, ids.v + i, n, &t);
		if (rc == -ENOENT || rc == -ECONNREFUSED) {
			/* no daemon: do them all here */
			rc = i == 0 ? act_offline(&cf, a, &ids, &t)
				    : EX_TEMPFAIL;
			if (i > 0)
				ctl_error("spoold stopped while acting");
			break;
		}
		if (rc < 0) {
			ctl_error("spoold does not answer: %s", strerror(-rc));
			rc = EX_TEMPFAIL;
			break;
		}
	}
	printf("%zu message(s) %s\n", t.done, action_done[a]);
	if (rc == 0)
		rc = exit_code(t.first_rc);
	conf_free(&cf);
out_ids:
	msg_strlist_free(&ids);
	return rc;
}

int
cmd_hold(const char *conf_path, int argc, char **argv)
{
	return run_action(conf_path, QUEUE_HOLD, argc, argv);
}

int
cmd_release(const char *conf_path, int argc, char **argv)
{
	return run_action(conf_path, QUEUE_RELEASE, argc, argv);
}

int
cmd_delete(const char *conf_path, int argc, char **argv)
{
	return run_action(conf_path, QUEUE_DELETE, argc, argv);
}

int
cmd_requeue(const char *conf_path, int argc, char **argv)
{
	return run_action(conf_path, QUEUE_REQUEUE, argc, argv);
}

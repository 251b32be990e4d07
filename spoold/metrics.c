/*
 * metrics.c - the daemon's side of the metrics: counting outcomes in the
 * transaction that records them, the text for the control socket's
 * METRICS request, and the [metrics] textfile for node_exporter.
 *
 * The textfile is rewritten every [metrics] interval on the loop thread:
 * the whole text goes to PATH.tmp in the same folder (a name the textfile
 * collector, which reads *.prom only, never takes), then renamed over
 * PATH, so a reader sees the old text or the new one, never a part. No
 * fsync: a crash loses at most one interval of a file that is rewritten
 * at the next start. A file that cannot be written is logged once per
 * change of error and tried again each interval; delivery goes on.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spool/log.h"
#include "spool/util.h"
#include "spoold.h"

/* One daemon per process: the timer and what the last write said. */
static struct {
	uv_timer_t timer;
	int started;
	char *path;	     /* the textfile in use, NULL: none */
	char last_err[4608]; /* "" while writes succeed */
} metrics_file;

int
metrics_job_record(struct state_txn *txn, const struct job *job)
{
	static const char *const word[] = {"sent", "deferred", "failed"};
	const char *tname = job->gen->cf.transports[job->transport].name;
	uint64_t count[3] = {0};
	int rc = 0;

	for (size_t i = 0; i < job->n; i++)
		for (size_t r = 0; r < job->msgs[i].nrcpt; r++)
			if ((unsigned)job->msgs[i].rcpt[r].status < 3)
				count[job->msgs[i].rcpt[r].status]++;
	for (size_t s = 0; s < 3 && rc == 0; s++)
		rc = metrics_count_outcome(txn, tname, word[s], count[s]);
	/* a job whose files could not be read opened no session */
	if (rc == 0 && job->attempted)
		rc = metrics_observe_session(txn, tname,
					     time_mono_ms() - job->started_ms);
	return rc;
}

int
metrics_text(struct daemon *d, int up, char **out, size_t *len)
{
	const struct conf *cf = &d->gen->cf;
	struct metrics_transport t[CONF_MAX_TRANSPORTS];
	struct state_txn *txn;
	FILE *fp;
	int rc;

	*out = NULL;
	for (size_t i = 0; i < cf->transport_count; i++) {
		int64_t probe;

		t[i].name = cf->transports[i].name;
		t[i].up = health_state(d, t[i].name, &probe);
	}
	if ((rc = state_begin(d->state, 0, &txn)) < 0)
		return rc;
	fp = open_memstream(out, len);
	if (fp == NULL) {
		state_abort(txn);
		return -ENOMEM;
	}
	rc = metrics_render(fp, d->spool, txn, t, cf->transport_count, up,
			    (int64_t)time(NULL));
	state_abort(txn);
	if (fclose(fp) != 0 && rc == 0)
		rc = -ENOMEM;
	if (rc < 0) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

/* write() all of text; 0 or -1 with errno. */
static int
metrics_write_all(int fd, const char *text, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, text, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		text += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Writes text to path through path.tmp; 0 or -errno with err set. */
static int
metrics_file_put(const char *path, const char *text, size_t len, char *err,
		 size_t errlen)
{
	char tmp[4096];
	int fd, rc = 0;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		snprintf(err, errlen, "%.4000s: name too long", path);
		return -ENAMETOOLONG;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		  0644);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "cannot create %.4000s: %s", tmp,
			 strerror(-rc));
		return rc;
	}
	/* the collector's user reads it: not our umask's business */
	if (fchmod(fd, 0644) < 0 || metrics_write_all(fd, text, len) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		snprintf(err, errlen, "cannot write %.4000s: %s", path,
			 strerror(-rc));
		unlink(tmp);
	}
	return rc;
}

/* Writes the textfile now; logs a failure only when it differs from the
 * last one, and the recovery once. */
static void
metrics_file_write(struct daemon *d, int up)
{
	char err[sizeof(metrics_file.last_err)] = "", *text = NULL;
	size_t len = 0;
	int rc;

	if (metrics_file.path == NULL)
		return;
	rc = metrics_text(d, up, &text, &len);
	if (rc < 0)
		snprintf(err, sizeof(err), "cannot read the state: %s",
			 strerror(-rc));
	else
		metrics_file_put(metrics_file.path, text, len, err,
				 sizeof(err));
	free(text);
	if (strcmp(err, metrics_file.last_err) == 0)
		return;
	if (err[0] != '\0')
		log_err("metrics: %s; the [metrics] textfile is not updated "
			"until that is fixed (spoold --check-config tells "
			"what it needs)",
			err);
	else
		log_info("metrics: writing %s again", metrics_file.path);
	str_copy(metrics_file.last_err, err, sizeof(metrics_file.last_err));
}

static void
metrics_file_tick(uv_timer_t *t)
{
	metrics_file_write(t->data, 1);
}

void
metrics_file_reconf(struct daemon *d)
{
	const struct conf *cf = &d->gen->cf;
	uint64_t period = (uint64_t)cf->metrics_interval * 1000;

	if (!metrics_file.started) {
		uv_timer_init(d->loop, &metrics_file.timer);
		metrics_file.timer.data = d;
		metrics_file.started = 1;
	}
	if (metrics_file.path == NULL || cf->metrics_textfile == NULL ||
	    strcmp(metrics_file.path, cf->metrics_textfile) != 0)
		metrics_file.last_err[0] = '\0'; /* a new file: say again */
	free(metrics_file.path);
	metrics_file.path =
	    cf->metrics_textfile != NULL ? strdup(cf->metrics_textfile) : NULL;
	if (cf->metrics_textfile != NULL && metrics_file.path == NULL)
		log_err("metrics: out of memory; no textfile is written");
	uv_timer_stop(&metrics_file.timer);
	if (metrics_file.path == NULL)
		return;
	metrics_file_write(d, 1);
	uv_timer_start(&metrics_file.timer, metrics_file_tick, period, period);
}

void
metrics_file_stop(struct daemon *d)
{
	if (!metrics_file.started)
		return;
	uv_timer_stop(&metrics_file.timer);
	/* the last word: a collector reading it now sees spoold is down */
	metrics_file_write(d, 0);
	free(metrics_file.path);
	metrics_file.path = NULL;
}

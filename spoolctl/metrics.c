/*
 * metrics.c - spoolctl metrics: the Prometheus text format on stdout.
 *
 * While spoold answers, the text is the daemon's (METRICS on the control
 * socket, open to any local user like STATUS): the same text as its
 * [metrics] textfile, with each transport's live health. Otherwise it is
 * read from the spool and LMDB as root or the spool's owner may
 * (spoold_up 0, each transport's health as spoold last saved it); a user
 * who may not read them then gets spoold_up 0 alone, as status says the
 * queue is unknown. Counts and health only, never an address.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "spool/ctlproto.h"
#include "spool/queue.h"
#include "spool/util.h"
#include "spoolctl.h"

#define METRICS_TIMEOUT_MS 2000

/* The text from the spool and LMDB; 0, -EACCES when this user may not
 * read them, or a sysexits code after one line on stderr. */
static int
metrics_local(const struct conf *cf, struct spool *sp)
{
	struct metrics_transport t[CONF_MAX_TRANSPORTS];
	struct state *st = NULL;
	struct state_txn *txn = NULL;
	int rc;

	if ((rc = ctl_state_read(cf->spool_dir, &st, &txn)) != 0)
		return rc;
	for (size_t i = 0; i < cf->transport_count; i++) {
		t[i].name = cf->transports[i].name;
		t[i].up = metrics_health_saved(txn, t[i].name);
	}
	rc = metrics_render(stdout, sp, txn, t, cf->transport_count, 0,
			    (int64_t)time(NULL));
	if (txn != NULL)
		state_abort(txn);
	state_close(st);
	if (rc == -EACCES || rc == -EPERM)
		return -EACCES;
	if (rc < 0) {
		ctl_error("reading the queue: %s", strerror(-rc));
		return rc == -EIO ? EX_IOERR : EX_SOFTWARE;
	}
	return 0;
}

int
cmd_metrics(const char *conf_path, int argc, char **argv)
{
	struct spool *sp;
	struct conf cf;
	char err[512], *reply = NULL;
	int rc;

	(void)argv;
	if (argc != 1) {
		ctl_error("usage: metrics");
		return EX_USAGE;
	}
	if ((rc = ctl_conf_load(&cf, conf_path)) != 0)
		return rc;
	rc = spool_open(&sp, cf.spool_dir, 0, err, sizeof(err));
	if (rc < 0) {
		rc = rc == -ENOENT ? ctl_no_spool(cf.spool_dir)
				   : (ctl_error("%s", err), EX_NOINPUT);
		conf_free(&cf);
		return rc;
	}
	if (ctl_call(cf.spool_dir, "METRICS", &reply, METRICS_TIMEOUT_MS) ==
		0 &&
	    strncmp(reply, "OK\n", 3) == 0) {
		fputs(reply + 3, stdout);
		rc = 0;
	} else {
		rc = metrics_local(&cf, sp);
	}
	free(reply);
	if (rc == -EACCES) {
		/* what anyone may know while spoold does not answer */
		printf("# HELP spoold_up 1 if spoold runs and answers, else "
		       "0.\n# TYPE spoold_up gauge\nspoold_up 0\n");
		ctl_error("spoold does not answer; the queue's figures need "
			  "root or the owner of %s",
			  cf.spool_dir);
		rc = 0;
	}
	spool_close(sp);
	conf_free(&cf);
	if (rc == 0 && fflush(stdout) == EOF) {
		ctl_error("writing the metrics: %s", strerror(errno));
		rc = EX_IOERR;
	}
	return rc;
}

/*
 * main.c - spoold: options, start-up, signals and shutdown.
 *
 *   spoold [-c FILE] [-f|--foreground]
 *   spoold [-c FILE] --check-config
 *
 * Start-up refuses, with one line and a sysexits code, anything that would
 * make the daemon useless: a bad configuration, a spool it cannot create or
 * lock, a transport that cannot be built (e.g. a secret file readable by
 * others). After start-up nothing exits: failures become deferrals.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syslog.h>
#include <sysexits.h>
#include <unistd.h>

#include "spool/log.h"
#include "spool/privs.h"
#include "spool/probe.h"
#include "spool/util.h"
#include "bounce.h"
#include "ratelimit.h"
#include "spoold.h"

#define PID_FILE_NAME "spoold.pid"

static void
usage(FILE *fp)
{
	fprintf(fp, "usage: spoold [-c FILE] [-f|--foreground]\n"
		    "       spoold [-c FILE] --check-config\n"
		    "       spoold --version | --help\n");
}

void
generation_put(struct generation *g)
{
	if (g == NULL || --g->refs > 0)
		return;
	for (size_t i = 0; i < g->cf.transport_count; i++)
		transport_destroy(g->transports[i]);
	conf_free(&g->cf);
	free(g);
}

/* Loads the configuration and builds every transport it names. */
static int
generation_load(struct generation **out, const char *path, char *err,
		size_t errlen)
{
	struct generation *g = calloc(1, sizeof(*g));
	int rc;

	if (g == NULL) {
		snprintf(err, errlen, "out of memory");
		return EX_OSERR;
	}
	g->refs = 1;
	rc = conf_load(&g->cf, path, err, errlen);
	if (rc != 0) {
		free(g);
		return rc;
	}
	for (size_t i = 0; i < g->cf.transport_count; i++) {
		char terr[512];

		if (transport_create(&g->transports[i], &g->cf.transports[i],
				     terr, sizeof(terr)) < 0) {
			snprintf(err, errlen, "%s: %s", g->cf.source, terr);
			generation_put(g);
			return EX_CONFIG;
		}
	}
	*out = g;
	return 0;
}

/*
 * The POSIX lock and the pid in the lock file, once the process that keeps
 * them is known. The POSIX lock lets spoolctl status see the daemon with
 * F_GETLK, which takes nothing, so asking never keeps a daemon from
 * starting. Unlike the flock, it is not inherited across fork(): after
 * detaching, the child waits (wait) for the parent's to go with it.
 */
static int
spool_lock_update(int fd, int wait)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());

	while (fcntl(fd, wait ? F_SETLKW : F_SETLK, &fl) < 0)
		if (errno != EINTR)
			return -errno;
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n)
		return -errno;
	return 0;
}

/* One daemon per spool: an flock'd pid file says who owns it. */
static int
spool_lock(const char *dir, char *err, size_t errlen)
{
	char path[4096], buf[32];
	int fd, n;

	snprintf(path, sizeof(path), "%s/%s", dir, PID_FILE_NAME);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, errlen, "%.900s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK) {
			snprintf(err, errlen, "%.900s: lock: %s", path,
				 strerror(errno));
			close(fd);
			return -1;
		}
		n = (int)read(fd, buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		snprintf(err, errlen, "another spoold (pid %s) runs on %s",
			 buf[0] ? buf : "?", dir);
		close(fd);
		return -1;
	}
	if ((n = spool_lock_update(fd, 0)) < 0) {
		snprintf(err, errlen, "%.900s: %s", path, strerror(-n));
		close(fd);
		return -1;
	}
	return fd; /* held open, and so locked, for the daemon's life */
}

/*
 * Detaches into the background. syslog(3) drops every line without a word
 * when nothing listens on /dev/log (a container), so without that socket
 * the log stays on standard error, and says so once.
 */
static int
daemon_detach(void)
{
	struct stat sb;
	int to_stderr = stat(_PATH_LOG, &sb) < 0 || !S_ISSOCK(sb.st_mode);
	int null;

	if (to_stderr)
		log_warn("no syslog socket at %s: logging to standard error",
			 _PATH_LOG);
	if (daemon(0, to_stderr) < 0)
		return -errno;
	if (!to_stderr) {
		log_init("spoold", 0, LOG_LEVEL_INFO);
		return 0;
	}
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0 || dup2(null, STDIN_FILENO) < 0 ||
	    dup2(null, STDOUT_FILENO) < 0)
		return -errno;
	close(null);
	return 0;
}

/*
 * Who spoold runs as. Started as root, it gives the spool to [spool] user
 * (creating it, or adopting a spool of the earlier root-owned model) and
 * becomes that user for good, before it reads a spool file, opens LMDB,
 * reads a secret or opens a socket: nothing a local user or the network
 * feeds it is parsed by uid 0. Started as another user, it runs as that
 * user, who must own the spool. *adopted: the spool was someone else's.
 * 0 or a sysexits code with one line in err.
 */
static int
daemon_take_user(const char *conf_path, int *adopted, char *err, size_t errlen)
{
	struct privs_ids ids;
	struct conf cf;
	struct stat st;
	char who[64], owner[64];
	int rc;

	*adopted = 0;
	rc = conf_load(&cf, conf_path, err, errlen);
	if (rc != 0)
		return rc;
	if (geteuid() != 0) {
		/* the daemon's user must own the spool it writes */
		if (stat(cf.spool_dir, &st) == 0 && st.st_uid != geteuid()) {
			snprintf(
			    err, errlen,
			    "%.600s belongs to %s, not to %s that spoold "
			    "runs as: start spoold as root (it becomes "
			    "[spool] user, %.64s) or run spoolctl init as "
			    "root first",
			    cf.spool_dir,
			    privs_user_name(st.st_uid, owner, sizeof(owner)),
			    privs_user_name(geteuid(), who, sizeof(who)),
			    cf.spool_user);
			rc = EX_NOPERM;
		}
		conf_free(&cf);
		return rc;
	}
	rc = privs_resolve(&ids, cf.spool_user, cf.submit_group, cf.spool_dir,
			   err, errlen);
	if (rc == 0 && spool_own(cf.spool_dir, &ids, adopted, err, errlen) < 0)
		rc = EX_CANTCREAT;
	if (rc == 0 && privs_drop(&ids, err, errlen) < 0)
		rc = EX_OSERR;
	conf_free(&cf);
	return rc;
}

static void
on_done(uv_async_t *a)
{
	struct daemon *d = a->data;
	struct job *job = workers_take_done(d->workers);

	while (job != NULL) {
		struct job *next = job->next;

		sched_job_done(d, job);
		job = next;
	}
}

static void
on_new_file(uv_fs_event_t *h, const char *name, int events, int status)
{
	struct daemon *d = h->data;

	(void)events;
	if (status < 0) {
		log_warn("watching %s/new: %s", spool_path(d->spool),
			 uv_strerror(status));
		sched_pickup_soon(d, NULL);
		return;
	}
	/* A name is a hint only: pickup checks the file is there. */
	sched_pickup_soon(d, name);
}

static void
on_rescan(uv_timer_t *t)
{
	struct daemon *d = t->data;
	int n = spool_clean_tmp(d->spool, SPOOLD_TMP_MAX_AGE);

	if (n > 0)
		log_info("removed %d abandoned file(s) from tmp/", n);
	n = state_reader_check(d->state);
	if (n > 0)
		log_info("state: freed %d reader slot(s) of dead processes", n);
	else if (n < 0)
		log_warn("state: reader check: %s", strerror(-n));
	sched_repair(d);
	if ((n = sched_expire_failed(d)) < 0)
		log_warn("expiring failed messages: %s", strerror(-n));
	if ((n = sched_expire_keys(d)) < 0)
		log_warn("forgetting coalescing keys: %s", strerror(-n));
	sched_pickup_soon(d, NULL);
}

static void
on_watchdog(uv_timer_t *t)
{
	(void)t;
	notify_send("WATCHDOG=1");
}

/* Under WatchdogSec=, pings systemd at half the period from a timer on
 * the loop itself: a loop that stops turning (a busy cycle, a blocking
 * call) stops the pings, and systemd restarts the service. */
static void
daemon_watchdog_start(struct daemon *d)
{
	uint64_t usec = notify_watchdog_usec(), ms;

	if (usec == 0)
		return;
	ms = usec / 2000 > 0 ? usec / 2000 : 1;
	uv_timer_start(&d->watchdog_timer, on_watchdog, ms, ms);
	log_info("watchdog: pinging systemd every %llu ms",
		 (unsigned long long)ms);
}

static void
close_cb_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Ends the loop: at once if nothing is in flight, else when the last job
 * reports or the grace period ends. */
void
daemon_maybe_finish(struct daemon *d)
{
	if (d->jobs_running > 0 && uv_is_active((uv_handle_t *)&d->stop_timer))
		return;
	if (d->jobs_running > 0) {
		log_info("abandoning %u delivery session(s) in flight; they "
			 "are retried at the next start",
			 d->jobs_running);
		uv_stop(d->loop);
		return;
	}
	uv_walk(d->loop, close_cb_walk, NULL);
}

static void
on_stop_timer(uv_timer_t *t)
{
	struct daemon *d = t->data;

	uv_timer_stop(t);
	daemon_maybe_finish(d);
}

static void
on_term(uv_signal_t *s, int signum)
{
	struct daemon *d = s->data;

	if (d->stopping)
		return;
	d->stopping = 1;
	log_info("stopping on signal %d (%u session(s) in flight)", signum,
		 d->jobs_running);
	notify_send("STOPPING=1");
	uv_fs_event_stop(&d->new_watch);
	uv_timer_stop(&d->pickup_timer);
	uv_timer_stop(&d->due_timer);
	uv_timer_stop(&d->rescan_timer);
	control_stop(d);
	metrics_file_stop(d);
	probe_engine_close(d->probes);
	d->probes = NULL;
	health_close_all(d);
	rate_close(d);
	if (d->jobs_running > 0)
		uv_timer_start(&d->stop_timer, on_stop_timer,
			       SPOOLD_STOP_GRACE_MS, 0);
	daemon_maybe_finish(d);
}

static void
on_hup(uv_signal_t *s, int signum)
{
	struct daemon *d = s->data;
	struct generation *g;
	char err[1024];

	(void)signum;
	notify_send("RELOADING=1");
	if (generation_load(&g, d->conf_path, err, sizeof(err)) != 0) {
		log_err("reload refused, keeping the running configuration: "
			"%s",
			err);
		notify_send("READY=1");
		return;
	}
	if (strcmp(g->cf.spool_dir, d->gen->cf.spool_dir) != 0 ||
	    g->cf.concurrency != d->gen->cf.concurrency)
		log_warn("reload: a new spool dir or concurrency takes "
			 "effect at the next start only");
	/* the open spool, state and socket stay those of the start */
	{
		char *dir = g->cf.spool_dir;

		g->cf.spool_dir = d->gen->cf.spool_dir;
		d->gen->cf.spool_dir = dir;
	}
	g->cf.concurrency = d->gen->cf.concurrency;
	generation_put(d->gen);
	d->gen = g;
	d->failed_walk_after = 0; /* failed_keep may be shorter now */
	log_info("reloaded %s: %zu transport(s)", g->cf.source,
		 g->cf.transport_count);
	if (health_sync(d) < 0)
		log_err("reload: out of memory tracking transport health");
	if (rate_sync(d) < 0)
		log_err("reload: out of memory tracking rate limits");
	metrics_file_reconf(d);
	notify_send("READY=1");
	sched_run(d);
}

static int
daemon_open_state(struct daemon *d, char *err, size_t errlen)
{
	int rc = state_verify(d->gen->cf.spool_dir, err, errlen);

	if (rc == 0)
		rc =
		    state_open(&d->state, d->gen->cf.spool_dir, 0, err, errlen);
	if (rc == -EBADMSG) {
		log_warn("state unreadable (%s); rebuilding it from the spool",
			 err);
		rc = state_remove(d->gen->cf.spool_dir);
		if (rc == 0)
			rc = state_open(&d->state, d->gen->cf.spool_dir, 0, err,
					errlen);
	}
	return rc;
}

static int
daemon_start(struct daemon *d, char *err, size_t errlen)
{
	char path[4096];
	uint64_t rescan;
	int rc;

	rc = probe_engine_new(&d->probes, d->loop, err, errlen);
	if (rc < 0)
		return rc;
	rc = bounce_limiter_new(&d->bounces);
	if (rc < 0) {
		snprintf(err, errlen, "out of memory");
		return rc;
	}
	bounce_limiter_set_minute(
	    d->bounces, spoold_knob("SPOOLD_TEST_NOTICE_MINUTE_S", 60));
	rc = health_sync(d);
	if (rc == 0)
		rc = rate_sync(d);
	if (rc < 0) {
		snprintf(err, errlen, "out of memory");
		return rc;
	}
	rc = workers_start(&d->workers, d->gen->cf.concurrency, d->spool,
			   &d->done_async, err, errlen);
	if (rc < 0)
		return rc;
	rc = sched_start(d, err, errlen);
	if (rc < 0)
		return rc;
	snprintf(path, sizeof(path), "%s/new", spool_path(d->spool));
	rc = uv_fs_event_start(&d->new_watch, on_new_file, path, 0);
	if (rc < 0) {
		snprintf(err, errlen, "cannot watch %.900s: %s", path,
			 uv_strerror(rc));
		return rc;
	}
	rescan =
	    (uint64_t)spoold_knob("SPOOLD_TEST_RESCAN_MS", SPOOLD_RESCAN_MS);
	uv_timer_start(&d->rescan_timer, on_rescan, rescan, rescan);
	return control_start(d, err, errlen);
}

static void
daemon_handles_init(struct daemon *d)
{
	uv_timer_t *timers[] = {&d->pickup_timer, &d->due_timer,
				&d->rescan_timer, &d->stop_timer,
				&d->watchdog_timer};
	uv_signal_t *sigs[] = {&d->sig_term, &d->sig_int, &d->sig_hup};

	for (size_t i = 0; i < ARRAY_SIZE(timers); i++) {
		uv_timer_init(d->loop, timers[i]);
		timers[i]->data = d;
	}
	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++) {
		uv_signal_init(d->loop, sigs[i]);
		sigs[i]->data = d;
	}
	uv_signal_start(&d->sig_term, on_term, SIGTERM);
	uv_signal_start(&d->sig_int, on_term, SIGINT);
	uv_signal_start(&d->sig_hup, on_hup, SIGHUP);
	uv_fs_event_init(d->loop, &d->new_watch);
	d->new_watch.data = d;
	uv_async_init(d->loop, &d->done_async, on_done);
	d->done_async.data = d;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"foreground", no_argument, NULL, 'f'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {"check-config", no_argument, NULL, 'C'},
	    {NULL, 0, NULL, 0},
	};
	struct daemon d = {0};
	char err[1024];
	int opt, foreground = 0, check = 0, lock_fd, rc, adopted;
	unsigned busy;

	while ((opt = getopt_long(argc, argv, "c:fh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			d.conf_path = optarg;
			break;
		case 'f':
			foreground = 1;
			break;
		case 'C':
			check = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("spoold %s\n", SPOOL_VERSION);
			return 0;
		default:
			usage(stderr);
			return EX_USAGE;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return EX_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	umask(077);
	log_init("spoold", 1, LOG_LEVEL_INFO);
	if (transport_global_init(err, sizeof(err)) < 0) {
		log_err("%s", err);
		return EX_SOFTWARE;
	}
	if (check)
		return checkconf_run(d.conf_path);
	rc = daemon_take_user(d.conf_path, &adopted, err, sizeof(err));
	if (rc != 0) {
		log_err("%s", err);
		return rc;
	}
	/* from here on as the daemon's user: the configuration is read
	 * again as a reload would read it */
	rc = generation_load(&d.gen, d.conf_path, err, sizeof(err));
	if (rc != 0) {
		log_err("%s", err);
		return rc;
	}
	if (spool_open(&d.spool, d.gen->cf.spool_dir, 1, err, sizeof(err)) <
	    0) {
		log_err("%s", err);
		generation_put(d.gen);
		return EX_CANTCREAT;
	}
	/* before detaching, so that a second spoold says why it stops to
	 * whoever started it; the child keeps the lock */
	lock_fd = spool_lock(d.gen->cf.spool_dir, err, sizeof(err));
	rc = lock_fd < 0 ? EX_TEMPFAIL : 0;
	if (rc == 0 && !foreground) {
		/* before any thread or loop exists */
		int drc = daemon_detach();

		if (drc == 0)
			drc = spool_lock_update(lock_fd, 1);
		if (drc < 0) {
			snprintf(err, sizeof(err),
				 "cannot go to the background: %s",
				 strerror(-drc));
			close(lock_fd);
			rc = EX_OSERR;
		}
	}
	if (rc != 0) {
		log_err("%s", err);
		spool_close(d.spool);
		generation_put(d.gen);
		return rc;
	}
	if (adopted)
		log_info("adopted spool %s for user %s", d.gen->cf.spool_dir,
			 d.gen->cf.spool_user);
	if (daemon_open_state(&d, err, sizeof(err)) < 0) {
		log_err("%s", err);
		return EX_IOERR;
	}
	d.loop = uv_default_loop();
	daemon_handles_init(&d);
	if (daemon_start(&d, err, sizeof(err)) < 0) {
		log_err("%s", err);
		rc = EX_OSERR;
		d.stopping = 1;
		probe_engine_close(d.probes);
		health_close_all(&d);
		rate_close(&d);
		uv_walk(d.loop, close_cb_walk, NULL);
		uv_run(d.loop, UV_RUN_DEFAULT);
		goto out;
	}
	log_info("ready: spool %s, %zu transport(s), route %s%s, "
		 "concurrency %u",
		 d.gen->cf.spool_dir, d.gen->cf.transport_count,
		 d.gen->cf.transports[d.gen->cf.route[0]].name,
		 d.gen->cf.route_count > 1 ? ", ..." : "",
		 d.gen->cf.concurrency);
	notify_send("READY=1");
	daemon_watchdog_start(&d);
	metrics_file_reconf(&d);
	uv_run(d.loop, UV_RUN_DEFAULT);
	rc = 0;
out:
	busy = workers_stop(d.workers);
	if (busy == 0) {
		if (uv_loop_close(d.loop) != 0)
			log_warn("event loop closed with handles open");
		state_close(d.state);
		spool_close(d.spool);
		generation_put(d.gen);
	}
	/* else: threads still in a session hold the spool and the
	 * transports; the process exit releases them */
	free(d.pending);
	bounce_limiter_free(d.bounces);
	close(lock_fd);
	log_info("stopped");
	return rc;
}

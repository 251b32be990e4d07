/*
 * spoold.h - the daemon's private types. One libuv loop thread owns the
 * LMDB state, the schedule and every handle; delivery threads own one job
 * at a time and touch only that job's spool files.
 */
#ifndef SPOOLD_H
#define SPOOLD_H

#include <pthread.h>
#include <stdint.h>
#include <uv.h>

#include "spool/conf.h"
#include "spool/queue.h"
#include "spool/transport.h"

/* Messages handed to one session at most. */
#define SPOOLD_BATCH_MAX 50
/* In-flight deliveries are abandoned this long after SIGTERM. */
#define SPOOLD_STOP_GRACE_MS 8000
/* new/ is rescanned this often, in case inotify dropped an event. */
#define SPOOLD_RESCAN_MS 30000
#define SPOOLD_STUCK_MAX 64
/* Files left in tmp/ by a killed submitter are removed after this. */
#define SPOOLD_TMP_MAX_AGE (24 * 3600)

/* One configuration and the transports built from it. Jobs hold a
 * reference, so SIGHUP can swap it while sessions still run. */
struct generation {
	struct conf cf;
	struct transport *transports[CONF_MAX_TRANSPORTS];
	unsigned refs;
};

struct job_msg {
	char id[QUEUE_ID_LEN + 1];
	/* filled by the delivery thread */
	int gone;	  /* the spool file vanished (deleted meanwhile) */
	int bad;	  /* the spool file is bad in itself; see diag */
	int temp_error;	  /* a passing error kept it from being read */
	int finished;	  /* no recipient left pending */
	int any_failed;	  /* finished with a failed recipient */
	int moved_failed; /* the file now lives in failed/ */
	int file_error;	  /* marks could not be made durable */
	struct transport_rcpt *rcpt; /* the pending recipients and outcomes */
	size_t *index;		     /* each one's place in the spool file */
	size_t nrcpt;
	char diag[QUEUE_REPLY_MAX];
};

struct job {
	struct job *next;
	struct generation *gen;
	size_t transport; /* index into gen->cf.transports */
	size_t route_pos; /* position of that transport in the route */
	struct job_msg *msgs;
	size_t n;
	struct transport_session sess;
	int attempted; /* a session ran: sess says how the relay did */
	int64_t started_ms;
	/* the longest Retry-After of the transports tried before this one
	 * in the same attempt, seconds */
	int64_t retry_after;
};

struct workers;
struct health;
struct probe_engine;
struct probe_waiter;
struct bounce_limiter;
struct rates;
struct control;

struct daemon {
	uv_loop_t *loop;
	const char *conf_path;
	struct generation *gen;
	struct spool *spool;
	struct state *state;
	struct workers *workers;
	struct health *health;	     /* per transport, by name */
	struct probe_engine *probes; /* HTTP reachability probes */
	struct probe_waiter *probe_waiters;
	struct bounce_limiter *bounces; /* failure notice rate limits */
	struct rates *rates;		/* transport rate limits, by name */

	uv_fs_event_t new_watch;
	uv_timer_t pickup_timer; /* runs pickup once per loop turn */
	uv_timer_t due_timer;
	uv_timer_t rescan_timer;
	uv_timer_t stop_timer;
	uv_async_t done_async;
	uv_signal_t sig_term, sig_int, sig_hup;
	uv_timer_t watchdog_timer; /* WATCHDOG=1 to systemd, if it asks */
	struct control *control;   /* SPOOL/ctl.sock; NULL once stopped */

	int rescan_new;			   /* pickup must read all of new/ */
	char (*pending)[QUEUE_ID_LEN + 1]; /* ids seen in new/ */
	size_t npending, cap_pending;
	/* a pickup met a passing error (a lease, EMFILE, a failed commit):
	 * new/ is read again at pickup_retry_due (loop ms), the delay
	 * doubling from 1 s to SPOOLD_RESCAN_MS while errors go on */
	int pickup_retry;
	uint64_t pickup_retry_due, pickup_backoff_ms;
	/* entries of new/ that spoold can neither take nor move to failed/
	 * (another user's non-empty directory): said once, then passed over
	 * by rescans; a ring, so the oldest may be said again */
	char stuck[SPOOLD_STUCK_MAX][QUEUE_ID_LEN + 1];
	size_t stuck_next;

	unsigned jobs_running;
	/* a job's results could not be written: its records still say
	 * "delivering" until sched_repair runs with no job in flight */
	int state_repair;
	int stopping;
	int64_t due_armed; /* unix time the due timer is armed for, 0 none */
	/* monotonic ms before which failed messages are not looked for
	 * again (expire.c); 0 at the start and at each reload */
	uint64_t failed_walk_after;
};

/* scheduler.c */
int sched_start(struct daemon *d, char *err, size_t errlen);
void sched_pickup_soon(struct daemon *d, const char *name);
void sched_run(struct daemon *d);
/* With no job in flight, puts records left "delivering" back in the
 * queue if a job's results could not be written (state_repair). */
void sched_repair(struct daemon *d);
/* Picks up what new/ holds now, on the loop thread. */
void sched_pickup_now(struct daemon *d);

struct sched_act_result {
	size_t done, failed;
	int first_rc;  /* of the first failure */
	char err[512]; /* its reason */
};
/* Applies an operator action to ids; per-id failures go into res.
 * Returns -errno only when the state cannot be written at all. */
int sched_act(struct daemon *d, enum queue_action a, char **ids, size_t n,
	      struct sched_act_result *res);
void sched_job_done(struct daemon *d, struct job *job);
int sched_flush(struct daemon *d, char **ids, size_t n, char *err,
		size_t errlen);
void generation_put(struct generation *g);

/* worker.c */
int workers_start(struct workers **out, unsigned count, struct spool *spool,
		  uv_async_t *done, char *err, size_t errlen);
void workers_submit(struct workers *w, struct job *job);
/* Completed jobs, oldest first; the caller owns them. */
struct job *workers_take_done(struct workers *w);
/* Asks threads to exit after their current job; joins those that are
 * idle; returns the number still busy (their threads are left to die
 * with the process). */
unsigned workers_stop(struct workers *w);
void job_free(struct job *job);

/* health.c */
int health_sync(struct daemon *d);
int health_is_up(struct daemon *d, const char *name);
void health_report(struct daemon *d, const char *name, int relay_failed,
		   const char *diag);
/* Probes every transport now; done(arg) runs once all have answered. */
int health_probe_all(struct daemon *d, void (*done)(void *arg), void *arg);
/* One line per transport, malloc'd. */
char *health_describe(struct daemon *d);
/* 1 up, 0 down, -1 never judged (no probe answered, no session ended);
 * *last_probe gets the time of the last probe or 0. */
int health_state(struct daemon *d, const char *name, int64_t *last_probe);
void health_close_all(struct daemon *d);

/* control.c */
int control_start(struct daemon *d, char *err, size_t errlen);
void control_stop(struct daemon *d);
/* id was delivered to every recipient: WAIT answers "sent" for it, to
 * owner_uid, root and the spool's owner, for a while after its record
 * is gone. */
void control_msg_sent(struct daemon *d, const char *id, uint32_t owner_uid);
/* Message old_id was replaced by new_id (same key); owner_uid submitted
 * the old one and may still WAIT on it. */
void control_msg_replaced(struct daemon *d, const char *old_id,
			  const char *new_id, uint32_t owner_uid);
/* Answers the WAIT requests whose message has reached an outcome. */
void control_waiters_check(struct daemon *d);

/* expire.c: removes failed messages older than failed_keep; returns
 * how many, or -errno. */
int sched_expire_failed(struct daemon *d);
/* expire.c: forgets coalescing keys that no longer hold anything back
 * (coalesce_expire); returns how many, or -errno. */
int sched_expire_keys(struct daemon *d);

/* knob.c: the positive integer in the SPOOLD_TEST_* variable name, or
 * dflt when it is unset or not one. */
int64_t spoold_knob(const char *name, int64_t dflt);

/* notify.c: the service manager's notification socket. Sends state
 * ("READY=1"); 0 when no manager listens, else -errno. */
int notify_send(const char *state);
/* The watchdog period asked for this process in µs, 0 for none. */
uint64_t notify_watchdog_usec(void);

/* checkconf.c: spoold --check-config; 0 or a sysexits code. */
int checkconf_run(const char *path);

/* main.c */
void daemon_maybe_finish(struct daemon *d);

/* metrics.c: counts job's outcomes and session into txn, the write
 * transaction that records them; the metrics text (malloc'd) with
 * spoold_up set to up; the [metrics] textfile (re)started from the
 * configuration, and its last rewrite at stop. */
int metrics_job_record(struct state_txn *txn, const struct job *job);
int metrics_text(struct daemon *d, int up, char **out, size_t *len);
void metrics_file_reconf(struct daemon *d);
void metrics_file_stop(struct daemon *d);

#endif

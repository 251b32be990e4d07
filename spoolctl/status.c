/*
 * status.c - status, check and probe: how healthy is the mail path?
 *
 * The queue counts and each transport's last known health come from LMDB,
 * where spoold saves every change of health, so both answer while the
 * daemon is stopped or stuck. A user who may not read LMDB gets counts
 * and health (never an address) from the daemon's STATUS request.
 * Whether spoold runs comes from the lock on spoold.pid, whether it
 * answers from the control socket. check turns all of that into a Nagios
 * verdict.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "spool/ctlproto.h"
#include "spool/queue.h"
#include "spool/util.h"
#include "spoolctl.h"

#define STATUS_TIMEOUT_MS 2000

enum nagios { NAGIOS_OK, NAGIOS_WARNING, NAGIOS_CRITICAL, NAGIOS_UNKNOWN };

struct transport_status {
	const char *name;
	int up; /* 1 up, 0 down, -1 never judged */
	int64_t last_probe;
	char last_error[QUEUE_REPLY_MAX];
};

struct status {
	int running;	/* a process holds the spool's lock */
	int responding; /* and answered on the control socket in time */
	long pid;	/* 0: not known */
	int have_queue; /* the counts below are known */
	struct queue_summary q;
	struct transport_status t[CONF_MAX_TRANSPORTS];
	size_t nt;
};

static void
status_health(struct status *s, struct state_txn *txn)
{
	for (size_t i = 0; i < s->nt; i++) {
		struct transport_status *t = &s->t[i];
		char key[CONF_NAME_MAX + 16], value[QUEUE_REPLY_MAX + 64];
		long long probe;
		int up, off = 0;

		snprintf(key, sizeof(key), "health:%s", t->name);
		if (state_meta_get(txn, key, value, sizeof(value)) < 0)
			continue;
		if (sscanf(value, "%d %lld %n", &up, &probe, &off) < 2)
			continue;
		t->up = up < 0 ? -1 : up != 0;
		t->last_probe = probe;
		str_copy(t->last_error, value + off, sizeof(t->last_error));
	}
}

/*
 * Who holds the spool's lock: spoold takes a POSIX write lock on
 * spoold.pid next to its flock, which F_GETLK can see without taking
 * anything, so asking never stops a daemon from starting. Sets
 * s->running and s->pid.
 */
static void
status_lock_holder(struct status *s, const struct conf *cf)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/spoold.pid", cf->spool_dir);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) {
		s->running = 1;
		s->pid = fl.l_pid > 0 ? (long)fl.l_pid : 0;
	}
	close(fd);
}

/* Counts and health as spoold tells any local user (STATUS). */
static int
status_from_daemon(struct status *s, const char *reply)
{
	unsigned long long c[6];
	long long oldest, probe;
	char name[CONF_NAME_MAX];
	const char *line = strchr(reply, '\n');
	int up;

	if (line == NULL ||
	    sscanf(line + 1, "queue %llu %llu %llu %llu %llu %llu %lld", &c[0],
		   &c[1], &c[2], &c[3], &c[4], &c[5], &oldest) != 7)
		return -EPROTO;
	for (size_t i = 0; i < 5; i++)
		s->q.counts[i] = c[i];
	s->q.in_new = c[5];
	s->q.oldest = oldest;
	while ((line = strchr(line + 1, '\n')) != NULL)
		if (sscanf(line + 1, "transport %63s %d %lld", name, &up,
			   &probe) == 3)
			for (size_t i = 0; i < s->nt; i++)
				if (strcmp(s->t[i].name, name) == 0) {
					s->t[i].up = up < 0 ? -1 : up != 0;
					s->t[i].last_probe = probe;
				}
	s->have_queue = 1;
	return 0;
}

int
ctl_state_read(const char *spool_dir, struct state **st, struct state_txn **txn)
{
	char err[512];
	int rc;

	*st = NULL;
	*txn = NULL;
	rc = ctl_state_open(st, spool_dir, 1, err, sizeof(err));
	if (rc == -EACCES || rc == -EPERM)
		return -EACCES;
	if (rc < 0 && rc != -ENOENT) {
		ctl_error("%s", err);
		return EX_IOERR;
	}
	if (*st != NULL && (rc = state_begin(*st, 0, txn)) < 0) {
		state_close(*st);
		*st = NULL;
		ctl_error("reading the state: %s", strerror(-rc));
		return EX_IOERR;
	}
	return 0;
}

/* The queue read from the spool and LMDB: 0, -EACCES when this user may
 * not read them, or a sysexits code after one line on stderr. */
static int
status_read_local(struct status *s, struct spool *sp, const struct conf *cf)
{
	struct state *st = NULL;
	struct state_txn *txn = NULL;
	int rc;

	if ((rc = ctl_state_read(cf->spool_dir, &st, &txn)) != 0)
		return rc;
	rc = queue_summary_read(sp, txn, &s->q);
	if (rc == 0 && txn != NULL)
		status_health(s, txn);
	if (txn != NULL)
		state_abort(txn);
	state_close(st);
	if (rc == -EACCES || rc == -EPERM)
		return -EACCES;
	if (rc < 0) {
		ctl_error("reading the queue: %s", strerror(-rc));
		return EX_IOERR;
	}
	s->have_queue = 1;
	return 0;
}

/* Fills s; 0 or a sysexits code (an error line is printed). Counts that
 * this user may not read and no daemon tells are left unknown. */
static int
status_load(struct status *s, const struct conf *cf)
{
	struct spool *sp;
	char err[512], *reply = NULL;
	int rc;

	memset(s, 0, sizeof(*s));
	for (size_t i = 0; i < cf->route_count; i++) {
		s->t[s->nt].name = cf->transports[cf->route[i]].name;
		s->t[s->nt++].up = -1;
	}
	rc = spool_open(&sp, cf->spool_dir, 0, err, sizeof(err));
	if (rc == -ENOENT)
		return ctl_no_spool(cf->spool_dir);
	if (rc < 0) {
		ctl_error("%s", err);
		return EX_NOINPUT;
	}
	status_lock_holder(s, cf);
	if (ctl_call(cf->spool_dir, "PING", &reply, STATUS_TIMEOUT_MS) == 0 &&
	    strncmp(reply, "OK pid=", 7) == 0) {
		s->running = s->responding = 1;
		s->pid = strtol(reply + 7, NULL, 10);
	}
	free(reply);
	reply = NULL;
	rc = status_read_local(s, sp, cf);
	spool_close(sp);
	if (rc != -EACCES)
		return rc;
	/* not allowed to read the queue: the daemon tells what anyone may
	 * know, and with no daemon answering the counts stay unknown */
	rc = 0;
	if (s->responding &&
	    (ctl_call(cf->spool_dir, "STATUS", &reply, STATUS_TIMEOUT_MS) < 0 ||
	     status_from_daemon(s, reply) < 0)) {
		ctl_error("spoold gave no status: %s",
			  reply ? reply : "no answer in time");
		rc = EX_PROTOCOL;
	}
	free(reply);
	return rc;
}

static uint64_t
status_queued(const struct status *s)
{
	return s->q.counts[QUEUE_MSG_QUEUED] + s->q.in_new;
}

static const char *
status_up_word(int up)
{
	return up < 0 ? "unknown" : up ? "up" : "down";
}

static cJSON *
status_json(const struct status *s)
{
	cJSON *o = cJSON_CreateObject(), *d, *q, *ts;
	char buf[RFC3339_LEN];

	d = cJSON_AddObjectToObject(o, "daemon");
	cJSON_AddBoolToObject(d, "running", s->running);
	cJSON_AddBoolToObject(d, "responding", s->responding);
	if (s->pid > 0)
		cJSON_AddNumberToObject(d, "pid", (double)s->pid);
	else
		cJSON_AddNullToObject(d, "pid");
	if (s->have_queue) {
		q = cJSON_AddObjectToObject(o, "queue");
		cJSON_AddNumberToObject(q, "queued", (double)status_queued(s));
		cJSON_AddNumberToObject(
		    q, "deferred", (double)s->q.counts[QUEUE_MSG_DEFERRED]);
		cJSON_AddNumberToObject(
		    q, "delivering", (double)s->q.counts[QUEUE_MSG_DELIVERING]);
		cJSON_AddNumberToObject(q, "held",
					(double)s->q.counts[QUEUE_MSG_HELD]);
		cJSON_AddNumberToObject(q, "failed",
					(double)s->q.counts[QUEUE_MSG_FAILED]);
	} else {
		cJSON_AddNullToObject(o, "queue");
	}
	ts = cJSON_AddArrayToObject(o, "transports");
	for (size_t i = 0; i < s->nt; i++) {
		const struct transport_status *t = &s->t[i];
		cJSON *j = cJSON_CreateObject();

		cJSON_AddStringToObject(j, "name", t->name);
		if (t->up < 0)
			cJSON_AddNullToObject(j, "up");
		else
			cJSON_AddBoolToObject(j, "up", t->up);
		if (t->last_probe > 0)
			cJSON_AddStringToObject(
			    j, "last_probe",
			    format_rfc3339((time_t)t->last_probe, buf));
		else
			cJSON_AddNullToObject(j, "last_probe");
		if (t->last_error[0] != '\0')
			cJSON_AddStringToObject(j, "last_error", t->last_error);
		else
			cJSON_AddNullToObject(j, "last_error");
		cJSON_AddItemToArray(ts, j);
	}
	return o;
}

static void
status_print_daemon(const struct status *s)
{
	if (s->responding)
		printf("spoold: running (pid %ld)\n", s->pid);
	else if (s->running && s->pid > 0)
		printf("spoold: running, not responding (pid %ld)\n", s->pid);
	else if (s->running)
		printf("spoold: running, not responding\n");
	else
		printf("spoold: not running\n");
}

static void
status_print_text(const struct status *s, const struct conf *cf)
{
	char buf[RFC3339_LEN], a[CTL_ESC_MAX], b[CTL_ESC_MAX];

	status_print_daemon(s);
	if (s->have_queue)
		printf("queue: %llu queued, %llu deferred, %llu delivering, "
		       "%llu held, %llu failed\n",
		       (unsigned long long)status_queued(s),
		       (unsigned long long)s->q.counts[QUEUE_MSG_DEFERRED],
		       (unsigned long long)s->q.counts[QUEUE_MSG_DELIVERING],
		       (unsigned long long)s->q.counts[QUEUE_MSG_HELD],
		       (unsigned long long)s->q.counts[QUEUE_MSG_FAILED]);
	else
		printf("queue: unknown (only root and the owner of %s may "
		       "read it while spoold does not answer)\n",
		       ctl_esc(a, cf->spool_dir));
	for (size_t i = 0; i < s->nt; i++)
		printf("transport %s: %s, last probe %s%s%s\n",
		       ctl_esc(a, s->t[i].name), status_up_word(s->t[i].up),
		       s->t[i].last_probe
			   ? format_rfc3339((time_t)s->t[i].last_probe, buf)
			   : "never",
		       s->t[i].last_error[0] ? ", last error: " : "",
		       ctl_esc(b, s->t[i].last_error));
}

int
cmd_status(const char *conf_path, int argc, char **argv)
{
	struct status s;
	struct conf cf;
	int json = 0, rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") != 0) {
			ctl_error("usage: status [--json]");
			return EX_USAGE;
		}
		json = 1;
	}
	if ((rc = ctl_conf_load(&cf, conf_path)) != 0)
		return rc;
	rc = status_load(&s, &cf);
	if (rc == 0 && json) {
		cJSON *o = status_json(&s);
		char *text = cJSON_PrintUnformatted(o);

		rc = text != NULL ? ctl_json_print(text) : EX_OSERR;
		cJSON_free(text);
		cJSON_Delete(o);
	} else if (rc == 0) {
		status_print_text(&s, &cf);
	}
	conf_free(&cf);
	return rc;
}

/* The verdict and its reason; the reason is "" when all is well. */
static enum nagios
check_verdict(const struct status *s, int64_t max_age, int64_t oldest,
	      char *why, size_t len)
{
	size_t ndown = 0;

	/* a transport never judged is not counted down */
	for (size_t i = 0; i < s->nt; i++)
		ndown += s->t[i].up == 0;
	if (!s->running) {
		snprintf(why, len, "spoold is not running; ");
		return NAGIOS_CRITICAL;
	}
	if (!s->responding) {
		snprintf(why, len, "spoold is not responding (pid %ld); ",
			 s->pid);
		return NAGIOS_CRITICAL;
	}
	if (s->nt > 0 && ndown == s->nt) {
		snprintf(why, len, "no transport up; ");
		return NAGIOS_CRITICAL;
	}
	if (max_age > 0 && oldest > max_age) {
		snprintf(why, len, "a message is older than %llds; ",
			 (long long)max_age);
		return NAGIOS_CRITICAL;
	}
	if (ndown > 0) {
		snprintf(why, len, "a transport is down; ");
		return NAGIOS_WARNING;
	}
	if (s->q.counts[QUEUE_MSG_FAILED] > 0) {
		snprintf(why, len, "%llu failed message(s); ",
			 (unsigned long long)s->q.counts[QUEUE_MSG_FAILED]);
		return NAGIOS_WARNING;
	}
	return NAGIOS_OK;
}

int
cmd_check(const char *conf_path, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"max-age", required_argument, NULL, 'm'},
	    {NULL, 0, NULL, 0},
	};
	static const char *word[] = {"OK", "WARNING", "CRITICAL", "UNKNOWN"};
	struct status s;
	struct conf cf;
	int64_t max_age = 0, oldest = 0;
	enum nagios verdict;
	char why[256] = "", ups[512] = "";
	int opt, rc;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (opt != 'm' || parse_duration(optarg, &max_age) < 0) {
			printf("UNKNOWN: usage: check [--max-age DURATION]\n");
			return NAGIOS_UNKNOWN;
		}
	}
	if (ctl_conf_load(&cf, conf_path) != 0) {
		printf("UNKNOWN: bad configuration\n");
		return NAGIOS_UNKNOWN;
	}
	if ((rc = status_load(&s, &cf)) != 0) {
		printf("UNKNOWN: %s the queue in %s\n",
		       rc == EX_NOINPUT ? "no spool directory for"
					: "cannot read",
		       cf.spool_dir);
		conf_free(&cf);
		return NAGIOS_UNKNOWN;
	}
	if (s.q.oldest > 0)
		oldest = (int64_t)time(NULL) - s.q.oldest;
	for (size_t i = 0; i < s.nt; i++) {
		size_t len = strlen(ups);

		snprintf(ups + len, sizeof(ups) - len, ", %s %s", s.t[i].name,
			 status_up_word(s.t[i].up));
	}
	verdict = check_verdict(&s, max_age, oldest, why, sizeof(why));
	if (s.have_queue)
		printf("%s: %s%llu queued, oldest %llds%s\n", word[verdict],
		       why,
		       (unsigned long long)(status_queued(&s) +
					    s.q.counts[QUEUE_MSG_DEFERRED] +
					    s.q.counts[QUEUE_MSG_DELIVERING] +
					    s.q.counts[QUEUE_MSG_HELD]),
		       (long long)oldest, ups);
	else
		printf("%s: %squeue unknown%s\n", word[verdict], why, ups);
	conf_free(&cf);
	return verdict;
}

int
cmd_probe(const char *conf_path, int argc, char **argv)
{
	struct conf cf;
	char *reply = NULL;
	int rc;

	(void)argv;
	if (argc != 1) {
		ctl_error("usage: probe");
		return EX_USAGE;
	}
	if ((rc = ctl_conf_load(&cf, conf_path)) != 0)
		return rc;
	rc = ctl_call(cf.spool_dir, "PROBE", &reply, 60000);
	conf_free(&cf);
	if (rc == -ENOENT || rc == -ECONNREFUSED) {
		ctl_error("spoold is not running; probes run in the daemon");
		return EX_UNAVAILABLE;
	}
	if (rc < 0) {
		ctl_error("spoold does not answer: %s", strerror(-rc));
		return EX_TEMPFAIL;
	}
	if (strncmp(reply, "OK", 2) != 0) {
		reply[strcspn(reply, "\n")] = '\0';
		ctl_error("%s", reply);
		free(reply);
		return EX_SOFTWARE;
	}
	/* one line per transport, "NAME: up|down, ...": each shown escaped,
	 * as it quotes what the relay or the probe URL answered */
	rc = strstr(reply, ": down") != NULL ? EX_UNAVAILABLE : 0;
	for (char *line = strchr(reply, '\n'); line != NULL && line[1];) {
		char *end = strchr(++line, '\n');
		char a[CTL_ESC_MAX];

		if (end != NULL)
			*end = '\0';
		printf("%s\n", ctl_esc(a, line));
		line = end;
	}
	free(reply);
	return rc;
}

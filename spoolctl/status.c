/*
 * status.c - status, check and probe: how healthy is the mail path?
 *
 * The queue counts and each transport's last known health come from LMDB,
 * where spoold saves every change of health, so both answer while the
 * daemon is stopped or stuck. Whether it runs comes from its control
 * socket. check turns all of that into a Nagios verdict.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "spool/ctlproto.h"
#include "spool/queue.h"
#include "spool/util.h"
#include "spoolctl.h"

#define STATUS_TIMEOUT_MS 2000

enum nagios { NAGIOS_OK, NAGIOS_WARNING, NAGIOS_CRITICAL, NAGIOS_UNKNOWN };

struct transport_status {
	const char *name;
	int up;
	int known; /* the daemon has ever judged it */
	int64_t last_probe;
	char last_error[QUEUE_REPLY_MAX];
};

struct status {
	int running;
	long pid;
	uint64_t counts[5];
	uint64_t in_new; /* submitted, not yet taken by spoold */
	int64_t oldest;	 /* queued_at of the oldest unfinished message */
	struct transport_status t[CONF_MAX_TRANSPORTS];
	size_t nt;
};

static int
status_new_cb(const char *id, void *arg)
{
	struct status *s = arg;
	int64_t t = queue_id_time_us(id) / 1000000;

	s->in_new++;
	if (s->oldest == 0 || t < s->oldest)
		s->oldest = t;
	return 0;
}

/* The first unfinished record in id order is the oldest one. */
static int
status_oldest_cb(const struct queue_msg_info *m, void *arg)
{
	struct status *s = arg;

	if (m->state == QUEUE_MSG_FAILED)
		return 0;
	if (s->oldest == 0 || m->queued_at < s->oldest)
		s->oldest = m->queued_at;
	return 1;
}

static void
status_health(struct status *s, struct state_txn *txn)
{
	for (size_t i = 0; i < s->nt; i++) {
		struct transport_status *t = &s->t[i];
		char key[CONF_NAME_MAX + 16], value[QUEUE_REPLY_MAX + 64];
		long long probe;
		int up, off = 0;

		snprintf(key, sizeof(key), "health:%s", t->name);
		if (txn == NULL ||
		    state_meta_get(txn, key, value, sizeof(value)) < 0)
			continue;
		if (sscanf(value, "%d %lld %n", &up, &probe, &off) < 2)
			continue;
		t->known = 1;
		t->up = up;
		t->last_probe = probe;
		str_copy(t->last_error, value + off, sizeof(t->last_error));
	}
}

/* Fills s; 0 or a sysexits code (an error line is printed). */
static int
status_load(struct status *s, const struct conf *cf)
{
	struct spool *sp;
	struct state *st;
	struct state_txn *txn = NULL;
	char err[512], *reply = NULL;
	int rc;

	memset(s, 0, sizeof(*s));
	for (size_t i = 0; i < cf->route_count; i++) {
		s->t[s->nt].name = cf->transports[cf->route[i]].name;
		s->t[s->nt++].up = 1;
	}
	if (ctl_call(cf->spool_dir, "PING", &reply, STATUS_TIMEOUT_MS) == 0 &&
	    strncmp(reply, "OK pid=", 7) == 0) {
		s->running = 1;
		s->pid = strtol(reply + 7, NULL, 10);
	}
	free(reply);
	rc = spool_open(&sp, cf->spool_dir, 0, err, sizeof(err));
	if (rc == -ENOENT)
		return 0; /* nothing was ever queued */
	if (rc < 0) {
		ctl_error("%s", err);
		return EX_NOINPUT;
	}
	spool_scan(sp, QUEUE_DIR_NEW, status_new_cb, s);
	spool_close(sp);
	rc = ctl_state_open(&st, cf->spool_dir, 1, err, sizeof(err));
	if (rc == -ENOENT)
		return 0;
	if (rc == -EACCES || rc == -EPERM)
		return ctl_denied(cf->spool_dir, "inspect");
	if (rc < 0) {
		ctl_error("%s", err);
		return EX_IOERR;
	}
	rc = state_begin(st, 0, &txn);
	if (rc == 0)
		rc = state_count(txn, s->counts);
	if (rc == 0) {
		rc = state_foreach(txn, status_oldest_cb, s);
		rc = rc > 0 ? 0 : rc;
	}
	if (rc == 0)
		status_health(s, txn);
	if (txn != NULL)
		state_abort(txn);
	state_close(st);
	if (rc < 0) {
		ctl_error("reading the state: %s", strerror(-rc));
		return EX_IOERR;
	}
	return 0;
}

static cJSON *
status_json(const struct status *s)
{
	cJSON *o = cJSON_CreateObject(), *d, *q, *ts;
	char buf[RFC3339_LEN];

	d = cJSON_AddObjectToObject(o, "daemon");
	cJSON_AddBoolToObject(d, "running", s->running);
	if (s->running)
		cJSON_AddNumberToObject(d, "pid", (double)s->pid);
	else
		cJSON_AddNullToObject(d, "pid");
	q = cJSON_AddObjectToObject(o, "queue");
	cJSON_AddNumberToObject(
	    q, "queued", (double)(s->counts[QUEUE_MSG_QUEUED] + s->in_new));
	cJSON_AddNumberToObject(q, "deferred",
				(double)s->counts[QUEUE_MSG_DEFERRED]);
	cJSON_AddNumberToObject(q, "delivering",
				(double)s->counts[QUEUE_MSG_DELIVERING]);
	cJSON_AddNumberToObject(q, "held", (double)s->counts[QUEUE_MSG_HELD]);
	cJSON_AddNumberToObject(q, "failed",
				(double)s->counts[QUEUE_MSG_FAILED]);
	ts = cJSON_AddArrayToObject(o, "transports");
	for (size_t i = 0; i < s->nt; i++) {
		const struct transport_status *t = &s->t[i];
		cJSON *j = cJSON_CreateObject();

		cJSON_AddStringToObject(j, "name", t->name);
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
		char buf[RFC3339_LEN], a[CTL_ESC_MAX], b[CTL_ESC_MAX];

		if (s.running)
			printf("spoold: running (pid %ld)\n", s.pid);
		else
			printf("spoold: not running\n");
		printf(
		    "queue: %llu queued, %llu deferred, %llu delivering, "
		    "%llu held, %llu failed\n",
		    (unsigned long long)(s.counts[QUEUE_MSG_QUEUED] + s.in_new),
		    (unsigned long long)s.counts[QUEUE_MSG_DEFERRED],
		    (unsigned long long)s.counts[QUEUE_MSG_DELIVERING],
		    (unsigned long long)s.counts[QUEUE_MSG_HELD],
		    (unsigned long long)s.counts[QUEUE_MSG_FAILED]);
		for (size_t i = 0; i < s.nt; i++)
			printf(
			    "transport %s: %s, last probe %s%s%s\n",
			    ctl_esc(a, s.t[i].name), s.t[i].up ? "up" : "down",
			    s.t[i].last_probe
				? format_rfc3339((time_t)s.t[i].last_probe, buf)
				: "never",
			    s.t[i].last_error[0] ? ", last error: " : "",
			    ctl_esc(b, s.t[i].last_error));
	}
	conf_free(&cf);
	return rc;
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
	enum nagios verdict = NAGIOS_OK;
	char why[256] = "", ups[512] = "";
	size_t nup = 0;
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
		       rc == EX_NOPERM ? "not allowed to read" : "cannot read",
		       cf.spool_dir);
		conf_free(&cf);
		return NAGIOS_UNKNOWN;
	}
	if (s.oldest > 0)
		oldest = (int64_t)time(NULL) - s.oldest;
	for (size_t i = 0; i < s.nt; i++) {
		size_t len = strlen(ups);

		snprintf(ups + len, sizeof(ups) - len, ", %s %s", s.t[i].name,
			 s.t[i].up ? "up" : "down");
		nup += s.t[i].up;
	}
	if (!s.running) {
		verdict = NAGIOS_CRITICAL;
		snprintf(why, sizeof(why), "spoold is not running; ");
	} else if (nup == 0) {
		verdict = NAGIOS_CRITICAL;
		snprintf(why, sizeof(why), "no transport up; ");
	} else if (max_age > 0 && oldest > max_age) {
		verdict = NAGIOS_CRITICAL;
		snprintf(why, sizeof(why), "a message is older than %llds; ",
			 (long long)max_age);
	} else if (nup < s.nt) {
		verdict = NAGIOS_WARNING;
		snprintf(why, sizeof(why), "a transport is down; ");
	} else if (s.counts[QUEUE_MSG_FAILED] > 0) {
		verdict = NAGIOS_WARNING;
		snprintf(why, sizeof(why), "%llu failed message(s); ",
			 (unsigned long long)s.counts[QUEUE_MSG_FAILED]);
	}
	printf("%s: %s%llu queued, oldest %llds%s\n", word[verdict], why,
	       (unsigned long long)(s.counts[QUEUE_MSG_QUEUED] +
				    s.counts[QUEUE_MSG_DEFERRED] +
				    s.counts[QUEUE_MSG_DELIVERING] +
				    s.counts[QUEUE_MSG_HELD] + s.in_new),
	       (long long)oldest, ups);
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
	/* one line per transport: each shown escaped, as it quotes what
	 * the relay or the probe URL answered */
	for (char *line = strchr(reply, '\n'); line != NULL && line[1];) {
		char *end = strchr(++line, '\n');
		char a[CTL_ESC_MAX];

		if (end != NULL)
			*end = '\0';
		printf("%s\n", ctl_esc(a, line));
		line = end;
	}
	free(reply);
	return 0;
}

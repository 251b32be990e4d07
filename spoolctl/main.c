/*
 * main.c - spoolctl: the command table, and the inspection commands.
 *
 * Inspection (list, show) reads the spool and LMDB directly and so works
 * while spoold is stopped or stuck. Commands that change the queue go
 * through the daemon's control socket when it runs, so they are applied on
 * its loop thread; with no daemon they change LMDB directly, which LMDB's
 * own writer lock makes safe against a daemon starting meanwhile.
 *
 * Invoked as `sendmail` it is a sendmail-compatible submitter, as `mailq`
 * it lists the queue, as `newaliases` it checks the aliases file.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "spool/conf.h"
#include "spool/ctlproto.h"
#include "spool/queue.h"
#include "spool/util.h"
#include "spoolctl.h"

#define CTL_TIMEOUT_MS 10000

const char *ctl_progname = "spoolctl";

void
ctl_error(const char *fmt, ...)
{
	va_list ap;
	char *line = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (n < 0) {
		fprintf(stderr, "%s: out of memory\n", ctl_progname);
		return;
	}
	/* Messages quote arguments and replies; a line break or escape
	 * sequence in one must not make a second line or rewrite the
	 * terminal, so one failure stays one line. */
	for (char *c = line; *c != '\0'; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	fprintf(stderr, "%s: %s\n", ctl_progname, line);
	free(line);
}

int
ctl_denied(const char *spool_dir, const char *what)
{
	ctl_error("permission denied: only root and the owner of %s may "
		  "%s the queue",
		  spool_dir, what);
	return EX_NOPERM;
}

int
ctl_state_open(struct state **st, const char *spool_dir, int readonly,
	       char *err, size_t errlen)
{
	int rc = state_verify(spool_dir, err, errlen);

	*st = NULL;
	if (rc < 0)
		return rc;
	return state_open(st, spool_dir, readonly, err, errlen);
}

int
ctl_conf_load(struct conf *cf, const char *conf_path)
{
	char err[1024];
	int rc = conf_load(cf, conf_path, err, sizeof(err));

	if (rc != 0)
		ctl_error("%s", err);
	return rc;
}

/* ---- reading the queue --------------------------------------------- */

enum list_filter { LIST_QUEUE, LIST_ALL, LIST_FAILED, LIST_HELD };

struct queue_view {
	struct queue_msg_info *msgs;
	size_t n, cap;
	enum list_filter filter;
	const char *only_id; /* show: just this one */
};

static int
view_keep(const struct queue_view *v, const struct queue_msg_info *m)
{
	if (v->only_id != NULL)
		return strcmp(v->only_id, m->id) == 0;
	switch (v->filter) {
	case LIST_ALL:
		return 1;
	case LIST_FAILED:
		return m->state == QUEUE_MSG_FAILED;
	case LIST_HELD:
		return m->state == QUEUE_MSG_HELD;
	case LIST_QUEUE:
		return m->state != QUEUE_MSG_FAILED;
	}
	return 0;
}

static struct queue_msg_info *
view_slot(struct queue_view *v)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 64;
		void *p = realloc(v->msgs, cap * sizeof(*v->msgs));

		if (p == NULL)
			return NULL;
		v->msgs = p;
		v->cap = cap;
	}
	return &v->msgs[v->n];
}

static int
view_record_cb(const struct queue_msg_info *m, void *arg)
{
	struct queue_view *v = arg;
	struct queue_msg_info *slot;

	if (!view_keep(v, m))
		return 0;
	slot = view_slot(v);
	if (slot == NULL)
		return -ENOMEM;
	/* deep copy: m is only valid during the callback */
	memset(slot, 0, sizeof(*slot));
	*slot = *m;
	slot->sender = m->sender ? strdup(m->sender) : NULL;
	slot->last_error = m->last_error ? strdup(m->last_error) : NULL;
	slot->transport = m->transport ? strdup(m->transport) : NULL;
	slot->history = NULL;
	slot->nhistory = 0;
	for (size_t i = 0; i < m->nhistory; i++)
		if (queue_msg_add_attempt(slot, m->history[i].at,
					  m->history[i].transport,
					  m->history[i].result) < 0)
			return -ENOMEM;
	slot->rcpt = calloc(m->nrcpt ? m->nrcpt : 1, sizeof(*slot->rcpt));
	if (slot->rcpt == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < m->nrcpt; i++) {
		slot->rcpt[i].state = m->rcpt[i].state;
		slot->rcpt[i].address = strdup(m->rcpt[i].address);
		slot->rcpt[i].reply =
		    m->rcpt[i].reply ? strdup(m->rcpt[i].reply) : NULL;
	}
	v->n++;
	return 0;
}

/* Messages in new/ that spoold has not taken yet: queued, no record. */
static int
view_new_cb(const char *id, void *arg)
{
	struct queue_view *v = ((void **)arg)[0];
	struct spool *sp = ((void **)arg)[1];
	struct spool_file f;
	struct queue_msg_info m = {0};
	char err[256];

	if (v->only_id != NULL && strcmp(v->only_id, id) != 0)
		return 0;
	for (size_t i = 0; i < v->n; i++)
		if (strcmp(v->msgs[i].id, id) == 0)
			return 0;
	if (spool_file_open(sp, QUEUE_DIR_NEW, id, &f, err, sizeof(err)) < 0)
		return 0; /* taken by spoold meanwhile, or unreadable */
	str_copy(m.id, id, sizeof(m.id));
	m.state = QUEUE_MSG_QUEUED;
	m.queued_at =
	    f.env.queued_at ? f.env.queued_at : queue_id_time_us(id) / 1000000;
	m.next_attempt = m.queued_at;
	m.size = f.size - f.body_off;
	m.sender = f.env.sender;
	m.nrcpt = f.env.nrcpt;
	m.rcpt = calloc(f.env.nrcpt, sizeof(*m.rcpt));
	if (m.rcpt != NULL) {
		for (size_t i = 0; i < f.env.nrcpt; i++) {
			m.rcpt[i].address = f.env.rcpt[i].address;
			m.rcpt[i].state = f.env.rcpt[i].state;
		}
		view_record_cb(&m, v);
	}
	free(m.rcpt);
	spool_file_close(&f);
	return 0;
}

static void
view_free(struct queue_view *v)
{
	for (size_t i = 0; i < v->n; i++)
		queue_msg_info_free(&v->msgs[i]);
	free(v->msgs);
}

/* Reads LMDB (if spoold ever ran) and new/. 0 or a sysexits code. */
static int
view_load(struct queue_view *v, const struct conf *cf)
{
	struct spool *sp = NULL;
	struct state *st = NULL;
	struct state_txn *txn;
	char err[512];
	void *args[2];
	int rc;

	rc = spool_open(&sp, cf->spool_dir, 0, err, sizeof(err));
	if (rc == -ENOENT)
		return 0; /* nothing was ever queued */
	if (rc < 0) {
		ctl_error("%s", err);
		return EX_NOINPUT;
	}
	rc = ctl_state_open(&st, cf->spool_dir, 1, err, sizeof(err));
	if (rc == 0) {
		rc = state_begin(st, 0, &txn);
		if (rc == 0) {
			rc = state_foreach(txn, view_record_cb, v);
			state_abort(txn);
		}
		state_close(st);
		if (rc < 0) {
			ctl_error("reading the state: %s", strerror(-rc));
			spool_close(sp);
			return EX_IOERR;
		}
	} else if (rc == -EACCES || rc == -EPERM) {
		spool_close(sp);
		return ctl_denied(cf->spool_dir, "inspect");
	} else if (rc != -ENOENT) {
		/* the spool is still the truth: list what new/ holds */
		ctl_error("warning: state unreadable (%s)", err);
	}
	args[0] = v;
	args[1] = sp;
	if (v->filter != LIST_FAILED)
		spool_scan(sp, QUEUE_DIR_NEW, view_new_cb, args);
	spool_close(sp);
	return 0;
}

/* ---- output -------------------------------------------------------- */

static cJSON *
json_time(int64_t t)
{
	char buf[RFC3339_LEN];

	return t > 0 ? cJSON_CreateString(format_rfc3339((time_t)t, buf))
		     : cJSON_CreateNull();
}

static cJSON *
json_str(const char *s)
{
	return s != NULL ? cJSON_CreateString(s) : cJSON_CreateNull();
}

static cJSON *
msg_to_json(const struct queue_msg_info *m)
{
	cJSON *o = cJSON_CreateObject(), *rcpts = cJSON_CreateArray();

	cJSON_AddStringToObject(o, "id", m->id);
	cJSON_AddStringToObject(o, "state", queue_msg_state_name(m->state));
	cJSON_AddItemToObject(o, "queued_at", json_time(m->queued_at));
	cJSON_AddNumberToObject(o, "size", (double)m->size);
	cJSON_AddItemToObject(o, "sender", json_str(m->sender));
	for (size_t i = 0; i < m->nrcpt; i++) {
		cJSON *r = cJSON_CreateObject();

		cJSON_AddStringToObject(r, "address", m->rcpt[i].address);
		cJSON_AddStringToObject(
		    r, "state", queue_rcpt_state_name(m->rcpt[i].state));
		cJSON_AddItemToObject(r, "reply", json_str(m->rcpt[i].reply));
		cJSON_AddItemToArray(rcpts, r);
	}
	cJSON_AddItemToObject(o, "recipients", rcpts);
	cJSON_AddNumberToObject(o, "attempts", m->attempts);
	cJSON_AddItemToObject(o, "next_attempt", json_time(m->next_attempt));
	cJSON_AddItemToObject(o, "last_error", json_str(m->last_error));
	cJSON_AddItemToObject(o, "transport", json_str(m->transport));
	return o;
}

/* show --json adds the attempts, oldest first. */
static void
history_to_json(cJSON *o, const struct queue_msg_info *m)
{
	cJSON *h = cJSON_CreateArray();

	for (size_t i = 0; i < m->nhistory; i++) {
		cJSON *a = cJSON_CreateObject();

		cJSON_AddItemToObject(a, "at", json_time(m->history[i].at));
		cJSON_AddStringToObject(a, "transport",
					m->history[i].transport);
		cJSON_AddStringToObject(a, "result", m->history[i].result);
		cJSON_AddItemToArray(h, a);
	}
	cJSON_AddItemToObject(o, "history", h);
}

static int
print_json(cJSON *root)
{
	char *text = cJSON_PrintUnformatted(root);
	int rc = 0;

	cJSON_Delete(root);
	if (text == NULL) {
		ctl_error("out of memory");
		return EX_OSERR;
	}
	if (puts(text) == EOF || fflush(stdout) == EOF)
		rc = EX_IOERR;
	free(text);
	return rc;
}

static void
format_age(int64_t secs, char *buf, size_t len)
{
	if (secs < 0)
		secs = 0;
	if (secs < 120)
		snprintf(buf, len, "%llds", (long long)secs);
	else if (secs < 7200)
		snprintf(buf, len, "%lldm", (long long)secs / 60);
	else if (secs < 172800)
		snprintf(buf, len, "%lldh", (long long)secs / 3600);
	else
		snprintf(buf, len, "%lldd", (long long)secs / 86400);
}

static void
print_msg_text(const struct queue_msg_info *m, int64_t now)
{
	char age[32], next[32];

	format_age(now - m->queued_at, age, sizeof(age));
	printf("%s  %-10s %8llu  age %-5s attempts %u", m->id,
	       queue_msg_state_name(m->state), (unsigned long long)m->size, age,
	       m->attempts);
	if (m->next_attempt > 0) {
		format_age(m->next_attempt - now, next, sizeof(next));
		printf("  next in %s", next);
	}
	printf("\n  from <%s>\n", m->sender ? m->sender : "");
	for (size_t i = 0; i < m->nrcpt; i++)
		printf("  to   <%s> %s%s%s\n", m->rcpt[i].address,
		       queue_rcpt_state_name(m->rcpt[i].state),
		       m->rcpt[i].reply ? ": " : "",
		       m->rcpt[i].reply ? m->rcpt[i].reply : "");
	if (m->last_error != NULL)
		printf("  last error: %s\n", m->last_error);
}

/* ---- commands ------------------------------------------------------ */

int
cmd_list(const char *conf_path, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"all", no_argument, NULL, 'a'},
	    {"failed", no_argument, NULL, 'F'},
	    {"held", no_argument, NULL, 'H'},
	    {NULL, 0, NULL, 0},
	};
	struct queue_view v = {.filter = LIST_QUEUE};
	struct conf cf;
	int opt, json = 0, rc;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'j':
			json = 1;
			break;
		case 'a':
			v.filter = LIST_ALL;
			break;
		case 'F':
			v.filter = LIST_FAILED;
			break;
		case 'H':
			v.filter = LIST_HELD;
			break;
		default:
			return EX_USAGE;
		}
	}
	if (optind != argc) {
		ctl_error("list takes no arguments");
		return EX_USAGE;
	}
	if ((rc = ctl_conf_load(&cf, conf_path)) != 0)
		return rc;
	rc = view_load(&v, &cf);
	conf_free(&cf);
	if (rc != 0) {
		view_free(&v);
		return rc;
	}
	if (json) {
		cJSON *arr = cJSON_CreateArray();

		for (size_t i = 0; i < v.n; i++)
			cJSON_AddItemToArray(arr, msg_to_json(&v.msgs[i]));
		rc = print_json(arr);
	} else {
		int64_t now = (int64_t)time(NULL);

		for (size_t i = 0; i < v.n; i++)
			print_msg_text(&v.msgs[i], now);
		printf("-- %zu message(s)\n", v.n);
	}
	view_free(&v);
	return rc;
}

/* Prints the header section of the spooled message. */
static int
show_headers(const struct conf *cf, const char *id, cJSON *json)
{
	static const enum queue_dir dirs[] = {QUEUE_DIR_CUR, QUEUE_DIR_NEW,
					      QUEUE_DIR_FAILED};
	struct spool *sp;
	struct spool_file f;
	char err[256];
	int rc = -ENOENT;

	if (spool_open(&sp, cf->spool_dir, 0, err, sizeof(err)) < 0)
		return -ENOENT;
	for (size_t i = 0; i < ARRAY_SIZE(dirs) && rc == -ENOENT; i++)
		rc = spool_file_open(sp, dirs[i], id, &f, err, sizeof(err));
	if (rc == 0) {
		const char *h = f.data + f.body_off, *end = f.data + f.size;
		const char *sep = h;
		cJSON *arr =
		    json ? cJSON_AddArrayToObject(json, "headers") : NULL;

		/* the header section ends at the first empty line */
		while (sep < end) {
			const char *nl = memchr(sep, '\n', (size_t)(end - sep));
			size_t len =
			    nl ? (size_t)(nl - sep) : (size_t)(end - sep);

			if (len > 0 && sep[len - 1] == '\r')
				len--;
			if (len == 0)
				break;
			if (arr != NULL) {
				char *line = strndup(sep, len);

				if (line != NULL)
					cJSON_AddItemToArray(
					    arr, cJSON_CreateString(line));
				free(line);
			} else {
				printf("  | %.*s\n", (int)len, sep);
			}
			if (nl == NULL)
				break;
			sep = nl + 1;
		}
		spool_file_close(&f);
	}
	spool_close(sp);
	return rc;
}

static void
print_history(const struct queue_msg_info *m)
{
	char buf[RFC3339_LEN];

	if (m->nhistory > 0)
		printf("  history:\n");
	for (size_t i = 0; i < m->nhistory; i++)
		printf("    %s %s %s\n",
		       format_rfc3339((time_t)m->history[i].at, buf),
		       m->history[i].transport, m->history[i].result);
}

int
cmd_show(const char *conf_path, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {NULL, 0, NULL, 0},
	};
	struct queue_view v = {.filter = LIST_ALL};
	struct conf cf;
	int opt, json = 0, rc;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (opt != 'j')
			return EX_USAGE;
		json = 1;
	}
	if (optind + 1 != argc) {
		ctl_error("usage: show ID [--json]");
		return EX_USAGE;
	}
	if (!queue_id_valid(argv[optind])) {
		ctl_error("%s: not a queue id", argv[optind]);
		return EX_USAGE;
	}
	v.only_id = argv[optind];
	if ((rc = ctl_conf_load(&cf, conf_path)) != 0)
		return rc;
	rc = view_load(&v, &cf);
	if (rc == 0 && v.n == 0) {
		ctl_error("%s: no such message", v.only_id);
		rc = EX_NOINPUT;
	}
	if (rc == 0 && json) {
		cJSON *o = msg_to_json(&v.msgs[0]);

		history_to_json(o, &v.msgs[0]);
		show_headers(&cf, v.only_id, o);
		rc = print_json(o);
	} else if (rc == 0) {
		print_msg_text(&v.msgs[0], (int64_t)time(NULL));
		print_history(&v.msgs[0]);
		printf("  headers:\n");
		show_headers(&cf, v.only_id, NULL);
	}
	conf_free(&cf);
	view_free(&v);
	return rc;
}

/* With no daemon: make the messages due in LMDB directly. */
static int
flush_offline(const struct conf *cf, char **ids, size_t n)
{
	struct state *st;
	struct state_txn *txn;
	size_t count = 0;
	char err[512];
	int rc;

	rc = ctl_state_open(&st, cf->spool_dir, 0, err, sizeof(err));
	if (rc == -ENOENT) {
		if (n > 0) {
			ctl_error("%s: no such message", ids[0]);
			return EX_NOINPUT;
		}
		printf("0 message(s) due now (spoold is not running)\n");
		return 0;
	}
	if (rc == -EACCES || rc == -EPERM)
		return ctl_denied(cf->spool_dir, "change");
	if (rc < 0) {
		ctl_error("%s", err);
		return EX_IOERR;
	}
	rc = state_begin(st, 1, &txn);
	if (rc == 0) {
		rc = state_flush(txn, (const char *const *)ids, n,
				 (int64_t)time(NULL), &count, err, sizeof(err));
		if (rc == 0)
			rc = state_commit(txn);
		else
			state_abort(txn);
	} else {
		snprintf(err, sizeof(err), "state: %s", strerror(-rc));
	}
	state_close(st);
	if (rc < 0) {
		ctl_error("%s", err);
		return rc == -ENOENT ? EX_NOINPUT : EX_IOERR;
	}
	printf("%zu message(s) due now (spoold is not running)\n", count);
	return 0;
}

int
cmd_flush(const char *conf_path, int argc, char **argv)
{
	struct conf cf;
	char *req, *reply = NULL;
	size_t len = 6;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (!queue_id_valid(argv[i])) {
			ctl_error("%s: not a queue id", argv[i]);
			return EX_USAGE;
		}
		len += strlen(argv[i]) + 1;
	}
	if ((rc = ctl_conf_load(&cf, conf_path)) != 0)
		return rc;
	req = malloc(len + 1);
	if (req == NULL) {
		conf_free(&cf);
		ctl_error("out of memory");
		return EX_OSERR;
	}
	strcpy(req, "FLUSH");
	for (int i = 1; i < argc; i++) {
		strcat(req, " ");
		strcat(req, argv[i]);
	}
	rc = ctl_call(cf.spool_dir, req, &reply, CTL_TIMEOUT_MS);
	free(req);
	if (rc == -ENOENT || rc == -ECONNREFUSED) {
		rc = flush_offline(&cf, argv + 1, (size_t)argc - 1);
	} else if (rc < 0) {
		ctl_error("spoold does not answer: %s", strerror(-rc));
		rc = EX_TEMPFAIL;
	} else if (strncmp(reply, "OK ", 3) == 0) {
		printf("%ld message(s) due now\n", strtol(reply + 3, NULL, 10));
		rc = 0;
	} else {
		reply[strcspn(reply, "\n")] = '\0';
		ctl_error("%s",
			  strncmp(reply, "ERR ", 4) == 0 ? reply + 4 : reply);
		rc = strstr(reply, "permission") ? EX_NOPERM : EX_NOINPUT;
	}
	free(reply);
	conf_free(&cf);
	return rc;
}

/* ---- dispatch ------------------------------------------------------ */

static const struct {
	const char *name;
	int (*run)(const char *conf_path, int argc, char **argv);
	const char *usage;
} commands[] = {
    {"submit", cmd_submit,
     "submit [-f SENDER] [-t] [-i] [--wait[=SECONDS]] [RCPT...] < message\n"
     "       submit --to ADDR... --subject TEXT [--from ADDR] "
     "[--body-file F]"},
    {"list", cmd_list, "list [--json] [--all|--failed|--held]"},
    {"show", cmd_show, "show ID [--json]"},
    {"flush", cmd_flush, "flush [ID...]"},
    {"status", cmd_status, "status [--json]"},
    {"check", cmd_check, "check [--max-age DURATION]"},
    {"probe", cmd_probe, "probe"},
    {"hold", cmd_hold, "hold ID... (- reads ids from stdin)"},
    {"release", cmd_release, "release ID..."},
    {"delete", cmd_delete, "delete ID..."},
    {"requeue", cmd_requeue, "requeue ID..."},
    {"init", cmd_init, "init (create the spool directory tree)"},
    {"newaliases", cmd_newaliases,
     "newaliases (check the aliases file; also run as newaliases)"},
};

static void
usage(FILE *fp)
{
	fprintf(fp, "usage: spoolctl [-c FILE] COMMAND [ARGS]\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(fp, "       %s\n", commands[i].usage);
}

/* A usage error is one line like every other failure; --help has the
 * whole list. */
static int
usage_error(const char *why, const char *arg)
{
	ctl_error("%s%s; usage: spoolctl [-c FILE] COMMAND [ARGS] (spoolctl "
		  "--help lists the commands)",
		  why, arg);
	return EX_USAGE;
}

int
main(int argc, char **argv)
{
	const char *conf_path = NULL, *name = basename(argv[0]);
	int i = 1;

	if (strcmp(name, "sendmail") == 0) {
		ctl_progname = "sendmail";
		return cmd_sendmail(argc, argv);
	}
	if (strcmp(name, "mailq") == 0) {
		ctl_progname = "mailq";
		return cmd_list(NULL, argc, argv);
	}
	if (strcmp(name, "newaliases") == 0) {
		ctl_progname = "newaliases";
		return cmd_newaliases(NULL, argc, argv);
	}
	/* global options stop at the command name */
	while (i < argc && argv[i][0] == '-') {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			conf_path = argv[i + 1];
			i += 2;
		} else if (strcmp(argv[i], "-h") == 0 ||
			   strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "-c") == 0) {
			return usage_error("-c needs a FILE", "");
		} else {
			return usage_error("unknown option ", argv[i]);
		}
	}
	if (i == argc)
		return usage_error("no command", "");
	for (size_t c = 0; c < ARRAY_SIZE(commands); c++)
		if (strcmp(argv[i], commands[c].name) == 0)
			return commands[c].run(conf_path, argc - i, argv + i);
	return usage_error("unknown command ", argv[i]);
}

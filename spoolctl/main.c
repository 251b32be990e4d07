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
#include <sys/stat.h>
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
	{
		size_t size = STR_ESCAPE_SIZE((size_t)n);
		char *safe = malloc(size);

		if (safe != NULL)
			str_escape_terminal(safe, size, line, (size_t)n);
		fprintf(stderr, "%s: %s\n", ctl_progname,
			safe != NULL ? safe : "(out of memory)");
		free(safe);
	}
	free(line);
}

const char *
ctl_esc(char buf[CTL_ESC_MAX], const char *s)
{
	if (s == NULL)
		s = "";
	str_escape_terminal(buf, CTL_ESC_MAX, s, strlen(s));
	return buf;
}

int
ctl_json_print(const char *text)
{
	char *safe = str_escape_json(text);
	int rc = 0;

	if (safe == NULL) {
		ctl_error("out of memory");
		return EX_OSERR;
	}
	if (puts(safe) == EOF || fflush(stdout) == EOF)
		rc = EX_IOERR;
	free(safe);
	return rc;
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
ctl_no_spool(const char *spool_dir)
{
	struct stat st;

	if (stat(spool_dir, &st) == 0)
		ctl_error("%s is not a spool yet: no new/ or cur/ folder "
			  "(spoold makes them when it starts, spoolctl init "
			  "makes them now)",
			  spool_dir);
	else
		ctl_error("%s: no such spool directory (spoold makes it when "
			  "it starts, spoolctl init makes it now)",
			  spool_dir);
	return EX_NOINPUT;
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
	int rc = ctl_setgid_conf_check(conf_path);

	if (rc != 0)
		return rc;
	rc = conf_load(cf, conf_path, err, sizeof(err));
	if (rc != 0)
		ctl_error("%s", err);
	return rc;
}

static void
ctl_conf_warn(void *arg, int fatal, const char *line)
{
	(void)arg;
	if (!fatal)
		ctl_error("warning: %s (submit reads only [spool]; spoold "
			  "refuses this file)",
			  line);
}

int
ctl_conf_load_submit(struct conf *cf, const char *conf_path)
{
	const struct conf_opts o = {.spool_only = 1, .report = ctl_conf_warn};
	char err[1024];
	/* a setgid submitter takes only the system's file, as every command */
	int rc = ctl_setgid_conf_check(conf_path);

	if (rc != 0)
		return rc;
	rc = conf_load_opts(cf, conf_path, &o, err, sizeof(err));
	if (rc != 0)
		ctl_error("%s", err);
	return rc;
}

/* ---- reading the queue --------------------------------------------- */

/*
 * A listing holds one message at a time, whatever the size of the queue:
 * each message is printed as it is read, into a buffer that goes to
 * stdout between LMDB read transactions of at most WALK_BATCH records.
 * So a reader blocked on a slow pipe (list | less) pins no snapshot: LMDB
 * reuses no page that a live reader may see, and the file would grow with
 * every write meanwhile. Records come in id order, which is the order
 * they were queued in (an id starts with its time), then the messages in
 * new/ that spoold has not taken yet, in directory order. Like Postfix's
 * mailq, a listing is not one snapshot: a message that changes meanwhile
 * is shown as it was or as it is, once.
 */
#define WALK_BATCH 512
#define WALK_FLUSH_BYTES (64 * 1024)
/* a batch is full: not an error, the walk goes on in a new transaction */
#define WALK_PAUSE 1

enum list_filter { LIST_QUEUE, LIST_ALL, LIST_FAILED, LIST_HELD };

struct queue_walk;
/* Prints m into out; 0, or a sysexits code that stops the walk. m is
 * valid during the call only. */
typedef int queue_walk_print_fn(struct queue_walk *w,
				const struct queue_msg_info *m, FILE *out);

struct queue_walk {
	/* set by the caller */
	enum list_filter filter;
	const char *only_id; /* show: just this one */
	queue_walk_print_fn *print;
	void *arg;	/* for print */
	size_t count;	/* messages printed so far */
	uint64_t bytes; /* and their sizes */
	FILE *out;	/* the buffer print writes into */
	/* the walk's own */
	char *buf;
	size_t len;
	const struct conf *cf;
	struct spool *sp;
	struct state *st;	     /* NULL: no state, new/ alone */
	struct state_txn *txn;	     /* open during a batch */
	size_t batch;		     /* records read in txn */
	char last[QUEUE_ID_LEN + 1]; /* the last id read from LMDB */
	int rc;			     /* the first error, a sysexits code */
};

static int
walk_keep(const struct queue_walk *w, const struct queue_msg_info *m)
{
	switch (w->filter) {
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

/* The buffer for print; 0 or EX_OSERR after one line. */
static int
walk_open(struct queue_walk *w)
{
	w->out = open_memstream(&w->buf, &w->len);
	if (w->out == NULL) {
		ctl_error("out of memory");
		return EX_OSERR;
	}
	return 0;
}

/* Ends the batch's transaction and writes what was printed to stdout. */
static int
walk_flush(struct queue_walk *w)
{
	state_abort(w->txn);
	w->txn = NULL;
	w->batch = 0;
	if (fflush(w->out) == EOF) {
		ctl_error("out of memory");
		return w->rc = EX_OSERR;
	}
	if ((w->len > 0 && fwrite(w->buf, 1, w->len, stdout) != w->len) ||
	    fflush(stdout) == EOF) {
		ctl_error("writing the listing: %s", strerror(errno));
		return w->rc = EX_IOERR;
	}
	rewind(w->out);
	return 0;
}

/* Writes out what is left unless the walk failed; frees the buffer. */
static int
walk_close(struct queue_walk *w)
{
	if (w->out == NULL)
		return w->rc;
	if (w->rc == 0)
		walk_flush(w);
	fclose(w->out);
	free(w->buf);
	w->out = NULL;
	return w->rc;
}

/* One message read: printed if the filter keeps it; WALK_PAUSE when the
 * batch is full. */
static int
walk_one(struct queue_walk *w, const struct queue_msg_info *m)
{
	w->batch++;
	if (walk_keep(w, m)) {
		int rc = w->print(w, m, w->out);

		if (rc != 0)
			return w->rc = rc;
		w->count++;
		w->bytes += m->size;
	}
	if (w->batch >= WALK_BATCH || ftello(w->out) >= WALK_FLUSH_BYTES)
		return WALK_PAUSE;
	return 0;
}

static int
walk_record_cb(const struct queue_msg_info *m, void *arg)
{
	struct queue_walk *w = arg;

	memcpy(w->last, m->id, sizeof(w->last));
	return walk_one(w, m);
}

static int
walk_begin(struct queue_walk *w)
{
	int rc;

	if (w->txn != NULL || w->st == NULL)
		return 0;
	if ((rc = state_begin(w->st, 0, &w->txn)) < 0) {
		ctl_error("reading the state: %s", strerror(-rc));
		return w->rc = EX_IOERR;
	}
	return 0;
}

/* The records in LMDB, batch by batch; 0 or a sysexits code. */
static int
walk_records(struct queue_walk *w)
{
	int rc;

	do {
		if (walk_begin(w) != 0)
			return w->rc;
		if (w->only_id != NULL) {
			struct queue_msg_info m;

			rc = state_msg_get(w->txn, w->only_id, &m);
			if (rc == 0) {
				rc = walk_record_cb(&m, w);
				queue_msg_info_free(&m);
			} else if (rc == -ENOENT) {
				rc = 0;
			}
		} else {
			rc = state_foreach_after(w->txn, w->last,
						 walk_record_cb, w);
		}
		if (rc < 0) {
			ctl_error("reading the state: %s", strerror(-rc));
			return w->rc = EX_IOERR;
		}
		if (w->rc != 0 || walk_flush(w) != 0)
			return w->rc;
	} while (rc == WALK_PAUSE);
	return 0;
}

/* A message in new/ that spoold has not taken yet: queued, no record. */
static int
walk_new_cb(const char *id, void *arg)
{
	struct queue_walk *w = arg;
	struct queue_msg_info m = {0};
	struct spool_pickup f;
	char err[256];
	int rc;

	if (w->only_id != NULL && strcmp(w->only_id, id) != 0)
		return 0;
	/* one with a record was listed with the records */
	if (walk_begin(w) != 0)
		return w->rc;
	if (w->txn != NULL && state_msg_get(w->txn, id, &m) == 0) {
		queue_msg_info_free(&m);
		return 0;
	}
	/* read as spoold reads it: any user may have written it */
	if (spool_pickup_read(w->sp, QUEUE_DIR_NEW, id, w->cf->max_size, &f,
			      err, sizeof(err)) < 0)
		return 0; /* taken by spoold meanwhile, or unreadable */
	str_copy(m.id, id, sizeof(m.id));
	m.state = QUEUE_MSG_QUEUED;
	m.queued_at =
	    f.env.queued_at ? f.env.queued_at : queue_id_time_us(id) / 1000000;
	m.next_attempt = m.queued_at;
	m.size = f.len - f.body_off;
	m.sender = f.env.sender;
	m.key = f.env.key;
	m.repeats = f.env.key != NULL;
	m.every = f.env.every;
	m.flags = f.env.urgent ? QUEUE_MSG_F_URGENT : 0;
	m.nrcpt = f.env.nrcpt;
	m.rcpt = calloc(f.env.nrcpt ? f.env.nrcpt : 1, sizeof(*m.rcpt));
	rc = m.rcpt != NULL ? 0 : (ctl_error("out of memory"), EX_OSERR);
	for (size_t i = 0; rc == 0 && i < f.env.nrcpt; i++) {
		m.rcpt[i].address = f.env.rcpt[i].address;
		m.rcpt[i].state = f.env.rcpt[i].state;
	}
	if (rc == 0)
		rc = walk_one(w, &m);
	free(m.rcpt);
	spool_pickup_free(&f);
	if (rc == WALK_PAUSE)
		rc = walk_flush(w);
	return rc != 0 ? w->rc = rc : 0;
}

/*
 * Prints every message the filter keeps, through w->print into w->out
 * (which walk_open made): the records in LMDB (if spoold ever ran), then
 * new/. 0 or a sysexits code after one line; walk_close writes the rest.
 */
static int
walk_run(struct queue_walk *w, const struct conf *cf)
{
	char err[512];
	int rc;

	w->cf = cf;
	rc = spool_open(&w->sp, cf->spool_dir, 0, err, sizeof(err));
	if (rc == -ENOENT)
		return w->rc = ctl_no_spool(cf->spool_dir);
	if (rc < 0) {
		ctl_error("%s", err);
		return w->rc = EX_NOINPUT;
	}
	rc = ctl_state_open(&w->st, cf->spool_dir, 1, err, sizeof(err));
	if (rc == -EACCES || rc == -EPERM)
		w->rc = ctl_denied(cf->spool_dir, "inspect");
	else if (rc < 0 && rc != -ENOENT)
		/* the spool is still the truth: list what new/ holds */
		ctl_error("warning: state unreadable (%s)", err);
	if (w->rc == 0 && w->st != NULL)
		walk_records(w);
	if (w->rc == 0 && w->filter != LIST_FAILED) {
		if (w->only_id != NULL)
			walk_new_cb(w->only_id, w);
		else
			spool_scan(w->sp, QUEUE_DIR_NEW, walk_new_cb, w);
	}
	state_abort(w->txn);
	w->txn = NULL;
	state_close(w->st);
	w->st = NULL;
	spool_close(w->sp);
	w->sp = NULL;
	return w->rc;
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

/* Held for a digest of its key: no attempt yet, deferred to the window's
 * end. */
static int
msg_digest_held(const struct queue_msg_info *m)
{
	return (m->flags & QUEUE_MSG_F_DIGEST) && m->attempts == 0 &&
	       m->state == QUEUE_MSG_DEFERRED;
}

/* One message as list --json and show --json print it: a field is added
 * here, in the place it is to have in the object. */
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
	/* coalescing and priority */
	cJSON_AddItemToObject(o, "key", json_str(m->key));
	cJSON_AddNumberToObject(o, "repeats", m->key ? m->repeats : 0);
	cJSON_AddStringToObject(
	    o, "priority", m->flags & QUEUE_MSG_F_URGENT ? "urgent" : "normal");
	cJSON_AddItemToObject(o, "held_until",
			      msg_digest_held(m) ? json_time(m->next_attempt)
						 : cJSON_CreateNull());
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

/* Prints o (then deleted) into out as ctl_json_print does, without the
 * newline: one value of a document that may be longer. 0 or EX_OSERR. */
static int
json_put(FILE *out, cJSON *o)
{
	char *text = cJSON_PrintUnformatted(o);
	char *safe = text != NULL ? str_escape_json(text) : NULL;

	cJSON_Delete(o);
	cJSON_free(text);
	if (safe == NULL) {
		ctl_error("out of memory");
		return EX_OSERR;
	}
	fputs(safe, out);
	free(safe);
	return 0;
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
print_msg_text(FILE *out, const struct queue_msg_info *m, int64_t now)
{
	char age[32], next[32], a[CTL_ESC_MAX], b[CTL_ESC_MAX];

	format_age(now - m->queued_at, age, sizeof(age));
	/* the id of a file in new/ is its name, which anyone chose */
	fprintf(out, "%s  %-10s %8llu  age %-5s attempts %u", ctl_esc(a, m->id),
		queue_msg_state_name(m->state), (unsigned long long)m->size,
		age, m->attempts);
	if (m->next_attempt > 0 && m->next_attempt <= now) {
		/* due, and waiting for a delivery thread or a transport's
		 * rate limit (the last error says which) */
		fprintf(out, "  due now");
	} else if (m->next_attempt > 0) {
		format_age(m->next_attempt - now, next, sizeof(next));
		fprintf(out, "  next in %s", next);
	}
	fprintf(out, "\n  from <%s>\n", ctl_esc(a, m->sender));
	for (size_t i = 0; i < m->nrcpt; i++)
		fprintf(
		    out, "  to   <%s> %s%s%s\n", ctl_esc(a, m->rcpt[i].address),
		    queue_rcpt_state_name(m->rcpt[i].state),
		    m->rcpt[i].reply ? ": " : "", ctl_esc(b, m->rcpt[i].reply));
	if (m->last_error != NULL)
		fprintf(out, "  last error: %s\n", ctl_esc(a, m->last_error));
	if (m->flags & QUEUE_MSG_F_URGENT)
		fprintf(out, "  priority urgent\n");
	if (m->key != NULL) {
		char until[RFC3339_LEN];

		fprintf(out, "  key %s, repeats %u", ctl_esc(a, m->key),
			(unsigned)m->repeats);
		if (msg_digest_held(m))
			fprintf(out, ", held for digest until %s",
				format_rfc3339((time_t)m->next_attempt, until));
		fprintf(out, "\n");
	}
}

/* ---- commands ------------------------------------------------------ */

static int
list_print_json(struct queue_walk *w, const struct queue_msg_info *m, FILE *out)
{
	if (w->count > 0)
		fputc(',', out);
	return json_put(out, msg_to_json(m));
}

static int
list_print_text(struct queue_walk *w, const struct queue_msg_info *m, FILE *out)
{
	print_msg_text(out, m, *(const int64_t *)w->arg);
	return 0;
}

/* Runs w over the queue of the configuration in conf_path, between what
 * head and tail print into the buffer; 0 or a sysexits code. */
static int
walk_conf(struct queue_walk *w, const char *conf_path,
	  void (*head)(struct queue_walk *w),
	  void (*tail)(struct queue_walk *w))
{
	struct conf cf;
	int rc;

	if ((rc = ctl_conf_load(&cf, conf_path)) != 0)
		return rc;
	/* a listing reads every page of the state: dropped as it goes, they
	 * would otherwise stay resident, one more MB for every ~2,000
	 * messages; show reads one record */
	state_pages_release_set(w->only_id == NULL);
	if ((rc = walk_open(w)) == 0) {
		if (head != NULL)
			head(w);
		rc = walk_run(w, &cf);
		if (rc == 0 && tail != NULL)
			tail(w);
		rc = walk_close(w);
	}
	conf_free(&cf);
	return rc;
}

static void
list_json_head(struct queue_walk *w)
{
	fputc('[', w->out);
}

static void
list_json_tail(struct queue_walk *w)
{
	fputs("]\n", w->out);
}

static void
list_text_tail(struct queue_walk *w)
{
	fprintf(w->out, "-- %zu message(s)\n", w->count);
}

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
	int64_t now = (int64_t)time(NULL);
	struct queue_walk w = {
	    .filter = LIST_QUEUE, .print = list_print_text, .arg = &now};
	int opt, json = 0;

	ctl_setgid_drop(); /* sendmail -bp: a listing needs no group */
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'j':
			json = 1;
			break;
		case 'a':
			w.filter = LIST_ALL;
			break;
		case 'F':
			w.filter = LIST_FAILED;
			break;
		case 'H':
			w.filter = LIST_HELD;
			break;
		default:
			return EX_USAGE;
		}
	}
	if (optind != argc) {
		ctl_error("list takes no arguments");
		return EX_USAGE;
	}
	if (json) {
		w.print = list_print_json;
		return walk_conf(&w, conf_path, list_json_head, list_json_tail);
	}
	return walk_conf(&w, conf_path, NULL, list_text_tail);
}

/* ---- mailq: Postfix's format --------------------------------------- */

/*
 * Postfix's showq_compat layout, column for column, so that what parses
 * Postfix's mailq (monitoring's check_mailq -M postfix, scripts that count
 * "Requests") parses this one: a heading, a block per message, and the
 * "-- N Kbytes in N Requests." summary, or "Mail queue is empty".
 */
#define MAILQ_STRING_FORMAT "%-11s %7s %-20s %s\n"
#define MAILQ_SENDER_FORMAT "%-11s %7llu %-20.20s %s\n"

static int
mailq_print_msg(struct queue_walk *w, const struct queue_msg_info *m, FILE *out)
{
	char id[QUEUE_ID_LEN + 3], when[32], line[CTL_ESC_MAX];
	const char *saved = "";
	time_t t = (time_t)m->queued_at;
	struct tm tm;

	if (w->count == 0)
		fprintf(out, MAILQ_STRING_FORMAT, "-Queue ID-", "--Size--",
			"----Arrival Time----", "-Sender/Recipient-------");
	else
		fputc('\n', out);
	/* '*': being delivered (Postfix's active queue); '!': held */
	snprintf(id, sizeof(id), "%s%s", m->id,
		 m->state == QUEUE_MSG_DELIVERING ? "*"
		 : m->state == QUEUE_MSG_HELD	  ? "!"
						  : "");
	/* asctime's layout in the C locale, as Postfix prints it */
	if (localtime_r(&t, &tm) == NULL ||
	    strftime(when, sizeof(when), "%a %b %e %H:%M:%S", &tm) == 0)
		when[0] = '\0';
	fprintf(out, MAILQ_SENDER_FORMAT, id, (unsigned long long)m->size, when,
		m->sender != NULL && m->sender[0] != '\0'
		    ? ctl_esc(line, m->sender)
		    : "MAILER-DAEMON");
	for (size_t i = 0; i < m->nrcpt; i++) {
		const struct queue_rcpt_info *r = &m->rcpt[i];
		const char *why;

		if (r->state != QUEUE_RCPT_PENDING)
			continue; /* Postfix lists only who is still due */
		why = r->reply ? r->reply : m->last_error ? m->last_error : "";
		/* a reason line when it changes from the recipient before */
		if (strcmp(why, saved) != 0) {
			const char *show = *why ? why : "reason unavailable";
			int pad = 76 - (int)strlen(show);

			saved = why;
			fprintf(out, "%*s(%s)\n", pad > 0 ? pad : 0, "",
				ctl_esc(line, show));
		}
		fprintf(out, MAILQ_STRING_FORMAT, "", "", "",
			ctl_esc(line, r->address));
	}
	return 0;
}

/* The total, counted as the messages went by. */
static void
mailq_tail(struct queue_walk *w)
{
	if (w->count == 0)
		fprintf(w->out, "Mail queue is empty\n");
	else
		fprintf(w->out, "\n-- %llu Kbytes in %zu Request%s.\n",
			(unsigned long long)w->bytes / 1024, w->count,
			w->count == 1 ? "" : "s");
}

int
cmd_mailq(const char *conf_path)
{
	struct queue_walk w = {.filter = LIST_QUEUE, .print = mailq_print_msg};

	return walk_conf(&w, conf_path, NULL, mailq_tail);
}

/* Prints the header section of the spooled message, into out or into an
 * array "headers" of json. */
static int
show_headers(FILE *out, const struct conf *cf, const char *id, cJSON *json)
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
				size_t size = STR_ESCAPE_SIZE(len);
				char *line = malloc(size);

				if (line != NULL) {
					str_escape_terminal(line, size, sep,
							    len);
					fprintf(out, "  | %s\n", line);
				}
				free(line);
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
print_history(FILE *out, const struct queue_msg_info *m)
{
	char buf[RFC3339_LEN], a[CTL_ESC_MAX], b[CTL_ESC_MAX];

	if (m->nhistory > 0)
		fprintf(out, "  history:\n");
	for (size_t i = 0; i < m->nhistory; i++)
		fprintf(out, "    %s %s %s\n",
			format_rfc3339((time_t)m->history[i].at, buf),
			ctl_esc(a, m->history[i].transport),
			ctl_esc(b, m->history[i].result));
}

static int
show_print_json(struct queue_walk *w, const struct queue_msg_info *m, FILE *out)
{
	cJSON *o = msg_to_json(m);
	int rc;

	history_to_json(o, m);
	show_headers(out, w->cf, m->id, o);
	if ((rc = json_put(out, o)) == 0)
		fputc('\n', out);
	return rc;
}

static int
show_print_text(struct queue_walk *w, const struct queue_msg_info *m, FILE *out)
{
	print_msg_text(out, m, (int64_t)time(NULL));
	print_history(out, m);
	fprintf(out, "  headers:\n");
	show_headers(out, w->cf, m->id, NULL);
	return 0;
}

int
cmd_show(const char *conf_path, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {NULL, 0, NULL, 0},
	};
	struct queue_walk w = {.filter = LIST_ALL, .print = show_print_text};
	int opt, rc;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (opt != 'j')
			return EX_USAGE;
		w.print = show_print_json;
	}
	if (optind + 1 != argc) {
		ctl_error("usage: show ID [--json]");
		return EX_USAGE;
	}
	if (!queue_id_valid(argv[optind])) {
		ctl_error("%s: not a queue id", argv[optind]);
		return EX_USAGE;
	}
	w.only_id = argv[optind];
	rc = walk_conf(&w, conf_path, NULL, NULL);
	if (rc == 0 && w.count == 0) {
		ctl_error("%s: no such message", w.only_id);
		rc = EX_NOINPUT;
	}
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

	ctl_setgid_drop(); /* sendmail -q: a flush needs no group */
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
     "submit [-f SENDER] [-t] [-i] [--wait [SECONDS]] [--key KEY "
     "[--every DURATION]]\n"
     "       submit ... [--priority urgent|normal] [RCPT...] < message\n"
     "       submit --to ADDR... --subject TEXT [--from ADDR] "
     "[--body-file F]"},
    {"list", cmd_list, "list [--json] [--all|--failed|--held]"},
    {"show", cmd_show, "show ID [--json]"},
    {"flush", cmd_flush, "flush [ID...]"},
    {"status", cmd_status, "status [--json]"},
    {"check", cmd_check, "check [--max-age DURATION]"},
    {"probe", cmd_probe, "probe"},
    {"metrics", cmd_metrics, "metrics (Prometheus text format)"},
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
	fprintf(fp, "usage: spoolctl [-c FILE] COMMAND [ARGS] "
		    "(COMMAND --help: its usage; spoolctl --version)\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(fp, "       %s\n", commands[i].usage);
}

static const char sendmail_usage[] =
    "usage: sendmail [-t] [-i|-oi] [-f SENDER] [-F NAME] [-C FILE] [-v] "
    "[-B 7BIT|8BITMIME] [RCPT...] < message\n"
    "       sendmail -bs (SMTP on stdin/stdout), sendmail -bv RCPT... "
    "(check addresses)\n"
    "       sendmail -bp (list the queue), sendmail -q (retry now)\n"
    "       -N, -R, -V, -O, -L, -A, -G and other -o options are accepted "
    "and ignored (spoolctl(1))\n";

static const char mailq_usage[] =
    "usage: mailq [-C FILE] (the queue in Postfix's format; spoolctl list "
    "has filters and --json)\n";

/* --version and --help of the names spoolctl answers to; 1 if argv[1]
 * was one of them (printed), 0 if not. */
static int
version_or_help(int argc, char **argv, const char *name, const char *help)
{
	if (argc < 2)
		return 0;
	if (strcmp(argv[1], "--version") == 0) {
		printf("%s %s\n", name, SPOOL_VERSION);
		return 1;
	}
	if (strcmp(argv[1], "--help") == 0) {
		if (help != NULL)
			fputs(help, stdout);
		else
			usage(stdout);
		return 1;
	}
	return 0;
}

/* COMMAND --help anywhere before "--": that command's usage, on stdout.
 * Every command of the table has it, so a new one cannot lack it. */
static int
command_help(int argc, char **argv, const char *usage_line)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--help") == 0) {
			printf("usage: spoolctl [-c FILE] %s\n", usage_line);
			return 1;
		}
	return 0;
}

/* spoolctl's own options belong before the command; after it, say so
 * rather than let the command call them unknown. */
static int
misplaced_global(int argc, char **argv)
{
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "-c") == 0) {
			ctl_error("-c goes before the command: spoolctl -c "
				  "FILE %s",
				  argv[0]);
			return 1;
		}
	return 0;
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

/* 1 if this run queues a message: the only case that keeps the submit
 * group of a setgid spoolctl. */
static int
run_submits(const char *name, int argc, char **argv)
{
	int i = 1;

	if (strcmp(name, "mailq") == 0)
		return 0;
	if (strcmp(name, "sendmail") == 0) {
		for (; i < argc && argv[i][0] == '-'; i++)
			if (strncmp(argv[i], "-bp", 3) == 0 ||
			    strncmp(argv[i], "-q", 2) == 0)
				return 0;
		return 1;
	}
	while (i < argc && strcmp(argv[i], "-c") == 0)
		i += 2;
	return i < argc && strcmp(argv[i], "submit") == 0;
}

int
main(int argc, char **argv)
{
	const char *conf_path = NULL, *name = basename(argv[0]);
	int i = 1;

	ctl_setgid_init(run_submits(name, argc, argv));

	if (strcmp(name, "sendmail") == 0) {
		ctl_progname = "sendmail";
		if (version_or_help(argc, argv, "sendmail", sendmail_usage))
			return 0;
		return cmd_sendmail(argc, argv, 0);
	}
	/* Postfix's mailq is sendmail -bp, flags and all */
	if (strcmp(name, "mailq") == 0) {
		ctl_progname = "mailq";
		if (version_or_help(argc, argv, "mailq", mailq_usage))
			return 0;
		return cmd_sendmail(argc, argv, 1);
	}
	if (strcmp(name, "newaliases") == 0) {
		ctl_progname = "newaliases";
		return cmd_newaliases(NULL, argc, argv);
	}
	if (version_or_help(argc, argv, "spoolctl", NULL))
		return 0;
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
	for (size_t c = 0; c < ARRAY_SIZE(commands); c++) {
		if (strcmp(argv[i], commands[c].name) != 0)
			continue;
		if (command_help(argc - i, argv + i, commands[c].usage))
			return 0;
		if (misplaced_global(argc - i, argv + i))
			return EX_USAGE;
		return commands[c].run(conf_path, argc - i, argv + i);
	}
	return usage_error("unknown command ", argv[i]);
}

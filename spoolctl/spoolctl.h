/*
 * spoolctl.h - the commands of spoolctl, one function each. Every command
 * returns a sysexits code and prints one line on stderr when it fails.
 */
#ifndef SPOOLCTL_H
#define SPOOLCTL_H

#include <stddef.h>

#include "spool/conf.h"
#include "spool/msg.h"
#include "spool/queue.h"

/* Loads the configuration, printing one line on stderr on error. */
int ctl_conf_load(struct conf *cf, const char *conf_path);
/* For submit and sendmail, which need [spool] only: a problem elsewhere is
 * a warning on stderr and the message is still queued. */
int ctl_conf_load_submit(struct conf *cf, const char *conf_path);
/* Prints "PROG: message" on stderr as one line: control characters in
 * the message (quoted arguments, replies) are shown escaped, as
 * str_escape_terminal() does. */
void ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* s (NULL reads as "") escaped for the terminal into buf, which it
 * returns; a longer result is cut, ending in "...". Every text that comes
 * from outside (addresses, replies, headers, names) is printed through
 * it. */
#define CTL_ESC_MAX 2048
const char *ctl_esc(char buf[CTL_ESC_MAX], const char *s);
/* Prints JSON text on stdout, made terminal-safe (str_escape_json) and
 * ended by a newline; 0 or EX_IOERR / EX_OSERR. */
int ctl_json_print(const char *text);
extern const char *ctl_progname;
/* Says that only root and the spool's owner may do what ("inspect",
 * "change") to the queue; returns EX_NOPERM. */
int ctl_denied(const char *spool_dir, const char *what);
/* Says that the spool directory does not exist; returns EX_NOINPUT. A
 * missing spool is never shown as an empty queue. */
int ctl_no_spool(const char *spool_dir);
/* state_open after state_verify: a scribbled state is reported as
 * -EBADMSG instead of crashing spoolctl inside LMDB. */
int ctl_state_open(struct state **st, const char *spool_dir, int readonly,
		   char *err, size_t errlen);
/* The state opened read-only with a read transaction, for status and
 * metrics: 0 (both NULL when there is no state yet), -EACCES when this
 * user may not read it, or EX_IOERR after one line. */
int ctl_state_read(const char *spool_dir, struct state **st,
		   struct state_txn **txn);

/*
 * spoolctl installed setgid to the submit group (setgid.c). init: at
 * start; submits: the command queues a message (only then is the group
 * kept, with the caller's group effective until ctl_setgid_raise). raise:
 * the group for writing the spool file, 0 or EX_OSERR after one line;
 * lower: after that write, back to the caller's group, for good unless a
 * session is open; session(1): an SMTP session on stdin will write
 * several files, session(0) ends it and drops the group;
 * drop: gone for good (a no-op when not held). conf_check: 0, or
 * EX_CONFIG after one line for a configuration the caller may have
 * written while the group is held.
 */
void ctl_setgid_init(int submits);
int ctl_setgid_raise(void);
void ctl_setgid_drop(void);
void ctl_setgid_lower(void);
void ctl_setgid_session(int open);
int ctl_setgid_conf_check(const char *conf_path);

int cmd_submit(const char *conf_path, int argc, char **argv);

/* Submission pieces shared by submit and sendmail (submit.c); each
 * returns a sysexits code after one line on stderr. */
struct msg_submit_opts;
struct msg_prepared;
/* Reads the message on stdin as msg_prepare wants it; dot_ends: a lone
 * "." line ends it (sendmail without -i). */
int submit_raw(const struct conf *cf, const struct msg_submit_opts *o,
	       int dot_ends, const char *const *rcpt, size_t nrcpt,
	       struct msg_prepared *p);
/* msg_prepare with the caller's identity and [spool] max_size: the one
 * preparation every way in (submit, sendmail, sendmail -bs) goes through.
 * A sysexits code; err says why, nothing is printed. */
int submit_prepare(const struct conf *cf, const struct msg_submit_opts *o,
		   const char *raw, size_t len, const char *const *rcpt,
		   size_t nrcpt, struct msg_prepared *p, char *err,
		   size_t errlen);
/* The login name of the effective uid and the host name, as an added
 * From and unqualified addresses get them. */
void submit_identity(char *user, size_t ulen, char *host, size_t hlen);
/* Writes the message into the spool; id gets its queue id. */
int submit_spool(const struct conf *cf, const struct msg_prepared *p,
		 char id[QUEUE_ID_LEN + 1]);
struct keyed_opts;
/* spool_submit_meta's K, E and P lines for the message (NULL: from its
 * header fields only). */
int submit_spool_meta(const struct conf *cf, const struct msg_prepared *p,
		      const struct keyed_opts *o, char id[QUEUE_ID_LEN + 1],
		      int *keyed);
int cmd_init(const char *conf_path, int argc, char **argv);

/* Coalescing and priority of a submission (keyed.c). */
/* The exit code of a keyed submission that spoold merged into a queued
 * message of its key or held for a digest: the message is on disk and
 * stands in for others; 0 stays "queued as a message of its own". */
#define SUBMIT_EX_COALESCED 10
struct keyed_opts {
	const char *key; /* --key, or NULL */
	int64_t every;	 /* --every, 0: none */
	int urgent;	 /* --priority: 1 urgent, 0 normal, -1 not given */
};
struct spool_meta;
/* The key, window and priority of p: options first, else its header
 * fields. A bad key is EX_DATAERR, --every without a key EX_USAGE, each
 * after one line; key is the storage out->key points to. */
int keyed_meta(const struct msg_prepared *p, const struct keyed_opts *o,
	       struct spool_meta *out, char key[SPOOL_KEY_MAX + 1]);
/* 0, or -EINVAL for a duration out of 1 s to 366 d. */
int keyed_parse_every(const char *s, int64_t *out);
/* "urgent" or "normal": 0, else -EINVAL. */
int keyed_parse_priority(const char *s, int *urgent);
/* After a keyed message was written: asks the running spoold (a few
 * seconds at most) what it made of it. 0 queued, or no daemon;
 * SUBMIT_EX_COALESCED merged or held, said on stderr. */
int keyed_outcome(const struct conf *cf, const char *id);
/* Invoked as sendmail, or as mailq (as_mailq: sendmail -bp). */
int cmd_sendmail(int argc, char **argv, int as_mailq);
/* The queue in Postfix's mailq format (mailq, sendmail -bp). */
int cmd_mailq(const char *conf_path);

int cmd_newaliases(const char *conf_path, int argc, char **argv);

/* Mail for the host's own names at submission (local.c): the host's
 * names, the aliases file and the admin address of cf. cf must outlive
 * it. 0 or a sysexits code (printed). */
struct ctl_local {
	struct msg_host host;
	struct msg_aliases aliases;
	struct msg_local local;
};
int ctl_local_init(struct ctl_local *l, const struct conf *cf);
void ctl_local_free(struct ctl_local *l);
int cmd_list(const char *conf_path, int argc, char **argv);
int cmd_show(const char *conf_path, int argc, char **argv);
int cmd_flush(const char *conf_path, int argc, char **argv);
int cmd_status(const char *conf_path, int argc, char **argv);
int cmd_check(const char *conf_path, int argc, char **argv);
int cmd_probe(const char *conf_path, int argc, char **argv);
int cmd_metrics(const char *conf_path, int argc, char **argv);
int cmd_hold(const char *conf_path, int argc, char **argv);
int cmd_release(const char *conf_path, int argc, char **argv);
int cmd_delete(const char *conf_path, int argc, char **argv);
int cmd_requeue(const char *conf_path, int argc, char **argv);

#endif

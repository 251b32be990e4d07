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
/* Prints "PROG: message" on stderr as one line: control characters in
 * the message (quoted arguments, replies) are shown as '?'. */
void ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern const char *ctl_progname;
/* Says that only root and the spool's owner may do what ("inspect",
 * "change") to the queue; returns EX_NOPERM. */
int ctl_denied(const char *spool_dir, const char *what);
/* state_open after state_verify: a scribbled state is reported as
 * -EBADMSG instead of crashing spoolctl inside LMDB. */
int ctl_state_open(struct state **st, const char *spool_dir, int readonly,
		   char *err, size_t errlen);

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
/* Writes the message into the spool; id gets its queue id. */
int submit_spool(const struct conf *cf, const struct msg_prepared *p,
		 char id[QUEUE_ID_LEN + 1]);
int cmd_init(const char *conf_path, int argc, char **argv);
int cmd_sendmail(int argc, char **argv);
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
int cmd_hold(const char *conf_path, int argc, char **argv);
int cmd_release(const char *conf_path, int argc, char **argv);
int cmd_delete(const char *conf_path, int argc, char **argv);
int cmd_requeue(const char *conf_path, int argc, char **argv);

#endif

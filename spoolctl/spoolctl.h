/*
 * spoolctl.h - the commands of spoolctl, one function each. Every command
 * returns a sysexits code and prints one line on stderr when it fails.
 */
#ifndef SPOOLCTL_H
#define SPOOLCTL_H

#include "spool/conf.h"

/* Loads the configuration, printing one line on stderr on error. */
int ctl_conf_load(struct conf *cf, const char *conf_path);
/* Prints "PROG: message" on stderr. */
void ctl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern const char *ctl_progname;

int cmd_submit(const char *conf_path, int argc, char **argv);
int cmd_sendmail(int argc, char **argv);
int cmd_list(const char *conf_path, int argc, char **argv);
int cmd_show(const char *conf_path, int argc, char **argv);
int cmd_flush(const char *conf_path, int argc, char **argv);
int cmd_status(const char *conf_path, int argc, char **argv);
int cmd_check(const char *conf_path, int argc, char **argv);
int cmd_probe(const char *conf_path, int argc, char **argv);

#endif

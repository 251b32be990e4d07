/*
 * sendmail.c - spoolctl invoked as `sendmail`: the flags that scripts,
 * cron, PHP and systemd units pass to /usr/sbin/sendmail, mapped onto
 * submit. Success prints nothing, as sendmail does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "spool/msg.h"
#include "spool/queue.h"
#include "spoolctl.h"

struct sendmail_args {
	const char *conf_path; /* -C */
	struct msg_submit_opts o;
	int dot_ends; /* no -i / -oi */
	int verbose;
	enum { MODE_SEND, MODE_LIST, MODE_FLUSH } mode;
	int first_rcpt; /* argv index */
};

/* The value of a flag given as "-fADDR" or "-f ADDR". */
static const char *
flag_value(int argc, char **argv, int *i)
{
	if (argv[*i][2] != '\0')
		return argv[*i] + 2;
	if (*i + 1 < argc)
		return argv[++*i];
	ctl_error("%s needs a value", argv[*i]);
	return NULL;
}

static int
sendmail_parse(int argc, char **argv, struct sendmail_args *a)
{
	int i;

	a->dot_ends = 1;
	for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
		const char *f = argv[i];

		if (strcmp(f, "--") == 0) {
			i++;
			break;
		}
		switch (f[1]) {
		case 't':
			a->o.extract_rcpts = 1;
			break;
		case 'i':
			a->dot_ends = 0;
			break;
		case 'v':
			a->verbose = 1;
			break;
		case 'f':
		case 'r':
			if ((a->o.sender = flag_value(argc, argv, &i)) == NULL)
				return EX_USAGE;
			break;
		case 'F':
			if ((a->o.full_name = flag_value(argc, argv, &i)) ==
			    NULL)
				return EX_USAGE;
			break;
		case 'C':
			if ((a->conf_path = flag_value(argc, argv, &i)) == NULL)
				return EX_USAGE;
			break;
		case 'o':
			/* -oi is the only option with a meaning here; -odb,
			 * -odi and the rest are accepted and ignored */
			if (strcmp(f, "-oi") == 0)
				a->dot_ends = 0;
			break;
		case 'b':
			if (strcmp(f, "-bm") == 0)
				a->mode = MODE_SEND;
			else if (strcmp(f, "-bp") == 0)
				a->mode = MODE_LIST;
			else {
				ctl_error("%s: mode not supported", f);
				return EX_USAGE;
			}
			break;
		case 'q':
			a->mode = MODE_FLUSH;
			break;
		default:
			ctl_error("%s: unknown option", f);
			return EX_USAGE;
		}
	}
	a->first_rcpt = i;
	return 0;
}

int
cmd_sendmail(int argc, char **argv)
{
	struct sendmail_args a = {0};
	struct msg_prepared p = {0};
	char id[QUEUE_ID_LEN + 1];
	struct conf cf;
	int rc;

	if ((rc = sendmail_parse(argc, argv, &a)) != 0)
		return rc;
	if (a.mode == MODE_LIST) {
		char *list_argv[] = {"list", NULL};

		return cmd_list(a.conf_path, 1, list_argv);
	}
	if (a.mode == MODE_FLUSH) {
		char *flush_argv[] = {"flush", NULL};

		return cmd_flush(a.conf_path, 1, flush_argv);
	}
	if ((rc = ctl_conf_load_submit(&cf, a.conf_path)) != 0)
		return rc;
	rc = submit_raw(&cf, &a.o, a.dot_ends,
			(const char *const *)argv + a.first_rcpt,
			(size_t)(argc - a.first_rcpt), &p);
	if (rc == 0)
		rc = submit_spool(&cf, &p, id);
	if (rc == 0 && a.verbose)
		fprintf(stderr, "%s: queued as %s\n", ctl_progname, id);
	msg_prepared_free(&p);
	conf_free(&cf);
	return rc;
}

/*
 * sendmail.c - spoolctl invoked as `sendmail` (or `mailq`): the flags that
 * scripts, cron, PHP, mail(1) and mailer libraries pass to
 * /usr/sbin/sendmail, mapped onto submit. Success prints nothing, as
 * sendmail does.
 *
 * The flags are those of Postfix's and Exim's sendmail, parsed as getopt
 * does ("-ti", "-fADDR", "-f ADDR"). What spoold can honour is honoured;
 * the DSN requests (-N, -R, -V) and the options that tune a full MTA
 * (-O, -L, -A, -G, -h, -o*) are checked for sense and ignored, as Postfix
 * ignores what it has no use for. Only what would be unsafe (-X, a traffic
 * log written wherever the caller says) or meaningless (an unknown flag or
 * -b mode, a -B type other than 7BIT/8BITMIME) is refused, with 64.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

#include "spool/msg.h"
#include "spool/queue.h"
#include "smtp_stdin.h"
#include "spoolctl.h"

enum sendmail_mode {
	MODE_SEND,    /* -bm, the default */
	MODE_LIST,    /* -bp, mailq */
	MODE_FLUSH,   /* -q */
	MODE_SMTP,    /* -bs */
	MODE_VERIFY,  /* -bv */
	MODE_NOTHING, /* -bd, -bD, -bl, -bi, -I: nothing to do here */
};

struct sendmail_args {
	const char *conf_path; /* -C */
	struct msg_submit_opts o;
	int dot_ends; /* no -i / -oi */
	int verbose;
	enum sendmail_mode mode;
	int first_rcpt; /* argv index */
};

/* 1 if s is one of the words of list (case-insensitive, '|'-separated). */
static int
word_in(const char *s, const char *list)
{
	size_t n = strlen(s);

	for (const char *w = list; *w != '\0';) {
		size_t wl = strcspn(w, "|");

		if (wl == n && strncasecmp(s, w, n) == 0)
			return 1;
		w += wl + (w[wl] == '|');
	}
	return 0;
}

/* -N: "never" or a comma list of success, failure, delay. */
static int
dsn_notify_valid(const char *v)
{
	char *copy = strdup(v), *save = NULL, *w;
	int ok = copy != NULL && *v != '\0';

	if (ok && strcasecmp(v, "never") == 0) {
		free(copy);
		return 1;
	}
	for (w = ok ? strtok_r(copy, ",", &save) : NULL; ok && w != NULL;
	     w = strtok_r(NULL, ",", &save))
		ok = word_in(w, "success|failure|delay");
	free(copy);
	return ok;
}

static int
sendmail_mode_set(struct sendmail_args *a, const char *m)
{
	static const struct {
		const char *name;
		enum sendmail_mode mode;
	} modes[] = {
	    {"m", MODE_SEND},	 {"p", MODE_LIST},    {"s", MODE_SMTP},
	    {"v", MODE_VERIFY},	 {"d", MODE_NOTHING}, {"D", MODE_NOTHING},
	    {"l", MODE_NOTHING}, {"i", MODE_NOTHING},
	};

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (strcmp(m, modes[i].name) == 0) {
			a->mode = modes[i].mode;
			return 0;
		}
	ctl_error("-b%s: unknown mode (known: -bm, -bp, -bs, -bv, -bi, -bd, "
		  "-bD)",
		  m);
	return EX_USAGE;
}

/* One flag that takes a value; v is that value. */
static int
sendmail_flag_value(struct sendmail_args *a, char flag, const char *v)
{
	switch (flag) {
	case 'f':
	case 'r':
		a->o.sender = v;
		return 0;
	case 'F':
		a->o.full_name = v;
		return 0;
	case 'C':
		a->conf_path = v;
		return 0;
	case 'b':
		return sendmail_mode_set(a, v);
	case 'o':
		/* -oi is the only option with a meaning here; -oem, -odb,
		 * -odi and the rest are accepted and ignored */
		if (strcmp(v, "i") == 0)
			a->dot_ends = 0;
		return 0;
	case 'B':
		if (word_in(v, "7BIT|8BITMIME"))
			return 0; /* the message goes out as it came */
		ctl_error("-B %s: the body type is 7BIT or 8BITMIME", v);
		return EX_USAGE;
	case 'N':
		if (dsn_notify_valid(v))
			return 0;
		ctl_error("-N %s: want never, or success, failure and delay "
			  "separated by commas",
			  v);
		return EX_USAGE;
	case 'R':
		if (word_in(v, "full|hdrs"))
			return 0;
		ctl_error("-R %s: want full or hdrs", v);
		return EX_USAGE;
	case 'A':
		if (strcmp(v, "m") == 0 || strcmp(v, "c") == 0)
			return 0;
		ctl_error("-A%s: want -Am or -Ac", v);
		return EX_USAGE;
	case 'V': /* DSN envelope id */
	case 'O': /* option=value of a full MTA */
	case 'L': /* syslog label */
	case 'h': /* hop count */
		return 0;
	}
	return EX_SOFTWARE;
}

static int
sendmail_parse(int argc, char **argv, struct sendmail_args *a)
{
	int i, rc;

	a->dot_ends = 1;
	for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
		const char *f = argv[i];

		if (strcmp(f, "--") == 0) {
			i++;
			break;
		}
		/* getopt's way: flags without a value may be grouped ("-ti");
		 * a flag with one takes the rest of the word or the next */
		for (const char *c = f + 1; *c != '\0'; c++) {
			const char *v;

			switch (*c) {
			case 't':
				a->o.extract_rcpts = 1;
				continue;
			case 'i':
				a->dot_ends = 0;
				continue;
			case 'v':
				a->verbose = 1;
				continue;
			case 'G': /* a relay's submission, not a first one */
			case 'n': /* no aliasing: there are no aliases here */
			case 'm': /* "me too": always so */
				continue;
			case 'I':
				a->mode = MODE_NOTHING;
				continue;
			case 'q': /* an interval or selector after it: ignored
				   */
				a->mode = MODE_FLUSH;
				break;
			case 'X':
				ctl_error("-X (a traffic log in any file) is "
					  "refused: spoold logs each message "
					  "to syslog");
				return EX_USAGE;
			case 'f':
			case 'r':
			case 'F':
			case 'C':
			case 'b':
			case 'o':
			case 'B':
			case 'N':
			case 'R':
			case 'V':
			case 'O':
			case 'L':
			case 'A':
			case 'h':
				if (c[1] != '\0') {
					v = c + 1;
				} else if (i + 1 < argc) {
					v = argv[++i];
				} else {
					ctl_error("-%c needs a value", *c);
					return EX_USAGE;
				}
				rc = sendmail_flag_value(a, *c, v);
				if (rc != 0)
					return rc;
				break;
			default:
				ctl_error("-%c: unknown option (in %s)", *c, f);
				return EX_USAGE;
			}
			break; /* the rest of the word was a value */
		}
	}
	a->first_rcpt = i;
	return 0;
}

/* -bv: reports for each address whether it would be accepted, the way
 * submission reads it, and queues nothing. */
static int
sendmail_verify(char **rcpt, int n)
{
	char user[256], host[256], err[512];
	int rc = 0;

	if (n == 0) {
		ctl_error("-bv: no addresses to verify");
		return EX_USAGE;
	}
	submit_identity(user, sizeof(user), host, sizeof(host));
	for (int i = 0; i < n; i++) {
		struct msg_strlist l = {0};

		if (msg_rcpt_parse(&l, rcpt[i], host, err, sizeof(err)) != 0) {
			/* one line per address, whatever the input holds */
			for (const char *c = rcpt[i]; *c != '\0'; c++)
				putchar((unsigned char)*c < 0x20 || *c == 0x7f
					    ? '?'
					    : *c);
			printf("... undeliverable: %s\n", err);
			rc = EX_DATAERR;
		}
		for (size_t j = 0; j < l.n; j++)
			printf("%s... deliverable\n", l.v[j]);
		msg_strlist_free(&l);
	}
	if (fflush(stdout) == EOF)
		return EX_IOERR;
	return rc;
}

int
cmd_sendmail(int argc, char **argv, int as_mailq)
{
	struct sendmail_args a = {.mode = as_mailq ? MODE_LIST : MODE_SEND};
	struct msg_prepared p = {0};
	char id[QUEUE_ID_LEN + 1];
	struct conf cf;
	int rc, keyed = 0;

	if ((rc = sendmail_parse(argc, argv, &a)) != 0)
		return rc;
	switch (a.mode) {
	case MODE_LIST:
		return cmd_mailq(a.conf_path);
	case MODE_FLUSH: {
		char *flush_argv[] = {"flush", NULL};

		return cmd_flush(a.conf_path, 1, flush_argv);
	}
	case MODE_VERIFY:
		return sendmail_verify(argv + a.first_rcpt,
				       argc - a.first_rcpt);
	case MODE_NOTHING:
		return 0;
	case MODE_SEND:
	case MODE_SMTP:
		break;
	}
	if ((rc = ctl_conf_load_submit(&cf, a.conf_path)) != 0)
		return rc;
	if (a.mode == MODE_SMTP) {
		rc = smtp_stdin_run(&cf, a.o.full_name);
		conf_free(&cf);
		return rc;
	}
	rc = submit_raw(&cf, &a.o, a.dot_ends,
			(const char *const *)argv + a.first_rcpt,
			(size_t)(argc - a.first_rcpt), &p);
	if (rc == 0)
		rc = submit_spool_meta(&cf, &p, NULL, id, &keyed);
	if (rc == 0 && a.verbose)
		fprintf(stderr, "%s: queued as %s\n", ctl_progname, id);
	if (rc == 0 && keyed)
		rc = keyed_outcome(&cf, id);
	msg_prepared_free(&p);
	conf_free(&cf);
	return rc;
}

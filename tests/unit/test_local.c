/*
 * test_local.c - mail for the host's own names: the aliases file parser
 * (comments, continuation lines, quoted targets, what it skips and why),
 * the rewrite table of msg_local_resolve (bare names, @localhost and the
 * host's names to the admin address through the aliases, loops bounded),
 * the host's names and domain from mailname and hosts files, and
 * msg_prepare applying them to the envelope.
 */
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "spool/msg.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* The warnings of a parse, one string each "LINE: why". */
struct warnings {
	char text[16][256];
	size_t n;
};

static void
warn_cb(void *arg, unsigned line, const char *why)
{
	struct warnings *w = arg;

	if (w->n < N(w->text))
		snprintf(w->text[w->n], sizeof(w->text[0]), "%u: %s", line,
			 why);
	w->n++;
}

static int
warned(const struct warnings *w, const char *part)
{
	for (size_t i = 0; i < w->n && i < N(w->text); i++)
		if (strstr(w->text[i], part) != NULL)
			return 1;
	return 0;
}

static void
parse(const char *text, struct msg_aliases *a, struct warnings *w)
{
	char err[256];

	memset(w, 0, sizeof(*w));
	assert_int_equal(msg_aliases_parse(text, strlen(text), a, warn_cb, w,
					   err, sizeof(err)),
			 0);
}

/* The targets of name joined by ",", or NULL. */
static const char *
targets(const struct msg_aliases *a, const char *name)
{
	static char buf[1024];
	const struct msg_alias *al = msg_aliases_find(a, name);
	size_t used = 0;

	if (al == NULL)
		return NULL;
	buf[0] = '\0';
	for (size_t i = 0; i < al->targets.n; i++)
		used += (size_t)snprintf(buf + used, sizeof(buf) - used, "%s%s",
					 i ? "," : "", al->targets.v[i]);
	return buf;
}

static void
test_aliases_format(void **state)
{
	struct msg_aliases a;
	struct warnings w;

	(void)state;
	parse("# /etc/aliases\n"
	      "\n"
	      "mailer-daemon: postmaster\n"
	      "postmaster: root\r\n"
	      "ROOT:  admin@example.org ,ops@example.org\n"
	      "   # a comment inside an entry\n"
	      "  , oncall@example.org\n"
	      "\toncall2@example.org\n"
	      "www-data:root\n"
	      "last: \"quoted@example.org\"",
	      &a, &w);
	if (w.n != 0)
		fail_msg("warning: %s", w.text[0]);
	assert_int_equal(a.n, 5);
	assert_string_equal(targets(&a, "root"),
			    "admin@example.org,ops@example.org,"
			    "oncall@example.org,oncall2@example.org");
	/* names are case-insensitive, both ways */
	assert_string_equal(targets(&a, "Root"), targets(&a, "root"));
	assert_string_equal(targets(&a, "MAILER-DAEMON"), "postmaster");
	assert_string_equal(targets(&a, "www-data"), "root");
	assert_string_equal(targets(&a, "last"), "quoted@example.org");
	assert_int_equal(msg_aliases_find(&a, "root")->line, 5);
	assert_null(msg_aliases_find(&a, "nobody"));
	assert_null(msg_aliases_find(NULL, "root"));
	msg_aliases_free(&a);

	/* an empty file, and one with no final line end */
	parse("", &a, &w);
	assert_int_equal(a.n, 0);
	assert_null(msg_aliases_find(&a, "root"));
	parse("root: a@b.example", &a, &w);
	assert_string_equal(targets(&a, "root"), "a@b.example");
	msg_aliases_free(&a);
}

static void
test_aliases_skipped(void **state)
{
	struct msg_aliases a;
	struct warnings w;

	(void)state;
	parse("root: |/usr/bin/procmail, admin@example.org\n"
	      "logs: /var/log/mail.archive\n"
	      "team: :include:/etc/mail/team\n"
	      "cmd: \"|/bin/handler -x, -y\"\n"
	      "no colon here\n"
	      "bad name: x@example.org\n"
	      "root: second@example.org\n"
	      "broken: not an address@@\n"
	      "ok: fine@example.org\n",
	      &a, &w);
	/* usable targets of a partly usable entry are kept */
	assert_string_equal(targets(&a, "root"), "admin@example.org");
	assert_true(warned(&w, "1: root: skipped: a command"));
	assert_true(warned(&w, "2: logs: skipped: a file"));
	assert_true(warned(&w, "3: team: skipped: :include:"));
	/* a quoted command with a comma in it stays one target */
	assert_true(warned(&w, "4: cmd: skipped: a command"));
	assert_true(warned(&w, "5: skipped: not \"name: target\""));
	assert_true(warned(&w, "6: skipped: \"bad name\" is not a local name"));
	/* the first of a name given twice wins */
	assert_true(warned(&w, "7: root: skipped: already defined on line 1"));
	assert_true(warned(&w, "8: broken: skipped"));
	/* an entry left with nothing is said to have no alias */
	assert_true(warned(&w, "logs: no target"));
	assert_string_equal(targets(&a, "ok"), "fine@example.org");
	assert_string_equal(targets(&a, "logs"), "");
	msg_aliases_free(&a);

	/* a continuation with no entry before it, a NUL byte */
	{
		static const char text[] =
		    "  x@example.org\nroot: a@b.example\n"
		    "nul: a\0b@example.org\n";
		char err[128];

		memset(&w, 0, sizeof(w));
		assert_int_equal(msg_aliases_parse(text, sizeof(text) - 1, &a,
						   warn_cb, &w, err,
						   sizeof(err)),
				 0);
		assert_true(warned(&w, "1: skipped: a continuation line"));
		assert_true(warned(&w, "3: skipped: a NUL byte"));
		assert_string_equal(targets(&a, "root"), "a@b.example");
		assert_null(msg_aliases_find(&a, "nul"));
		msg_aliases_free(&a);
	}
}

static void
test_aliases_limits(void **state)
{
	struct msg_aliases a;
	struct warnings w;
	size_t big = 140000;
	char *text = malloc(big + 64);

	(void)state;
	assert_non_null(text);
	/* an entry over 64 KiB through its continuations is skipped whole,
	 * and the next entry still counts */
	strcpy(text, "huge: a@b.example\n");
	while (strlen(text) < big)
		strcat(text, " , c@d.example\n");
	strcat(text, "root: r@example.org\n");
	parse(text, &a, &w);
	assert_null(msg_aliases_find(&a, "huge"));
	assert_true(warned(&w, "the entry of line 1 is over"));
	assert_string_equal(targets(&a, "root"), "r@example.org");
	msg_aliases_free(&a);
	free(text);
}

static void
test_aliases_load(void **state)
{
	char path[] = "/tmp/test_local.XXXXXX", err[256];
	struct msg_aliases a;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "root: a@b.example\n", 18), 18);
	close(fd);
	assert_int_equal(
	    msg_aliases_load(path, &a, NULL, NULL, err, sizeof(err)), 0);
	assert_string_equal(targets(&a, "root"), "a@b.example");
	msg_aliases_free(&a);
	unlink(path);
	/* missing: no aliases, not an error */
	assert_int_equal(
	    msg_aliases_load(path, &a, NULL, NULL, err, sizeof(err)), 0);
	assert_int_equal(a.n, 0);
	/* a directory is not an aliases file */
	assert_int_equal(
	    msg_aliases_load("/tmp", &a, NULL, NULL, err, sizeof(err)),
	    EX_NOINPUT);
	assert_non_null(strstr(err, "not a regular file"));
}

/* ---- the rewrite table ---------------------------------------------- */

static const char *const host_names[] = {"localhost", "localhost.localdomain",
					 "pi4", "pi4.lab.example.org"};

/* The host pi4 of lab.example.org, local mail to admin@example.org. */
#define LAB_LOCAL                                                              \
	{                                                                      \
		.admin = "admin@example.org", .domain = "lab.example.org",     \
		.names = host_names, .nnames = N(host_names),                  \
	}

/* Resolves addr with l and returns the results joined by ",". */
static const char *
resolve(const struct msg_local *l, const char *addr)
{
	static char buf[1024];
	struct msg_strlist out = {0};
	char err[128];
	size_t used = 0;

	assert_int_equal(msg_local_resolve(l, addr, &out, err, sizeof(err)), 0);
	buf[0] = '\0';
	for (size_t i = 0; i < out.n; i++)
		used += (size_t)snprintf(buf + used, sizeof(buf) - used, "%s%s",
					 i ? "," : "", out.v[i]);
	msg_strlist_free(&out);
	return buf;
}

static void
test_local_table(void **state)
{
	struct msg_aliases a;
	struct warnings w;
	struct msg_local l = LAB_LOCAL;
	static const struct {
		const char *in, *out;
	} table[] = {
	    /* bare names, @localhost and the host's names are local */
	    {"nobody", "admin@example.org"},
	    {"nobody@localhost", "admin@example.org"},
	    {"nobody@LOCALHOST.localdomain", "admin@example.org"},
	    {"nobody@pi4", "admin@example.org"},
	    {"nobody@Pi4.Lab.Example.Org", "admin@example.org"},
	    /* the domain of bare senders is not this host */
	    {"nobody@lab.example.org", "nobody@lab.example.org"},
	    {"someone@example.net", "someone@example.net"},
	    /* through the aliases: addresses stay, local names go on */
	    {"root", "ops@example.org,admin@example.org"},
	    {"postmaster@localhost", "ops@example.org,admin@example.org"},
	    {"www-data@pi4", "ops@example.org,admin@example.org"},
	    {"cron", "cron-reports@example.org"},
	    /* a name that names itself ends there */
	    {"self", "admin@example.org,self-copy@example.org"},
	    /* a loop ends where a name comes again */
	    {"loop1", "admin@example.org"},
	    /* deeper than MSG_ALIAS_DEPTH: the name at the bound is local */
	    {"d0", "admin@example.org"},
	    {"d5", "end@example.org"},
	};

	(void)state;
	parse("root: ops@example.org, alice\n"
	      "alice: administrator\n"
	      "postmaster: root\n"
	      "www-data: postmaster\n"
	      "cron: cron-reports@example.org\n"
	      "self: self, self-copy@example.org\n"
	      "loop1: loop2\nloop2: loop3\nloop3: loop1\n"
	      "d0: d1\nd1: d2\nd2: d3\nd3: d4\nd4: d5\nd5: d6\nd6: d7\n"
	      "d7: d8\nd8: d9\nd9: d10\nd10: end@example.org\n",
	      &a, &w);
	assert_int_equal(w.n, 0);
	l.aliases = &a;
	for (size_t i = 0; i < N(table); i++) {
		const char *got = resolve(&l, table[i].in);

		if (strcmp(got, table[i].out) != 0)
			fail_msg("%s: got %s, want %s", table[i].in, got,
				 table[i].out);
	}

	/* with no admin, local names stay local, in the domain */
	l.admin = NULL;
	assert_string_equal(resolve(&l, "root"),
			    "ops@example.org,administrator@lab.example.org");
	assert_string_equal(resolve(&l, "nobody@localhost"),
			    "nobody@lab.example.org");
	msg_aliases_free(&a);

	/* names fanning out ten ways at each of eight levels would make
	 * 10^8 expansions: bounded, each address appears, quickly */
	{
		char text[4096];
		size_t used = 0;

		for (int lvl = 0; lvl < 8; lvl++) {
			used +=
			    (size_t)snprintf(text + used, sizeof(text) - used,
					     "f%d: f%d", lvl, lvl + 1);
			for (int k = 0; k < 9; k++)
				used += (size_t)snprintf(text + used,
							 sizeof(text) - used,
							 ", f%d", lvl + 1);
			used +=
			    (size_t)snprintf(text + used, sizeof(text) - used,
					     ", x%d@example.org\n", lvl);
		}
		parse(text, &a, &w);
		l.aliases = &a;
		l.admin = "admin@example.org";
		{
			struct msg_strlist out = {0};
			char err[128];
			int seen_x7 = 0;

			assert_int_equal(
			    msg_local_resolve(&l, "f0", &out, err, sizeof(err)),
			    0);
			assert_true(out.n < 200000);
			for (size_t i = 0; i < out.n; i++)
				seen_x7 |=
				    strcmp(out.v[i], "x7@example.org") == 0;
			assert_true(seen_x7);
			msg_strlist_free(&out);
		}
	}
	/* with no aliases at all */
	l.aliases = NULL;
	l.admin = "admin@example.org";
	assert_string_equal(resolve(&l, "root"), "admin@example.org");
	msg_aliases_free(&a);
}

/* ---- the host's names ------------------------------------------------ */

static void
write_file(char *path, const char *text)
{
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* The hosts file's FQDN for a host name without a dot, and what mailname
 * and the configured domain do to it. */
static void
check_host_names_dotless(const char *name)
{
	char hosts[] = "/tmp/test_local_hosts.XXXXXX";
	char mailname[] = "/tmp/test_local_mailname.XXXXXX";
	char text[2048], err[128];
	struct msg_host h;

	snprintf(text, sizeof(text),
		 "127.0.0.1 localhost\n"
		 "# 127.0.1.1 %s.wrong.example %s\n"
		 "127.0.2.1 %sfoo.example other\n"
		 "127.0.1.1 %s.lab.example.org %s # comment\n",
		 name, name, name, name, name);
	write_file(hosts, text);
	write_file(mailname, "mail.example.org\n");

	/* mailname wins, hosts gives the FQDN */
	assert_int_equal(
	    msg_host_init(&h, NULL, mailname, hosts, err, sizeof(err)), 0);
	assert_string_equal(h.name, name);
	snprintf(text, sizeof(text), "%s.lab.example.org", name);
	assert_string_equal(h.fqdn, text);
	assert_string_equal(h.domain, "mail.example.org");
	assert_string_equal(h.names[0], "localhost");
	assert_string_equal(h.names[3], text);
	/* the configured domain wins over both */
	assert_int_equal(msg_host_init(&h, "conf.example", mailname, hosts, err,
				       sizeof(err)),
			 0);
	assert_string_equal(h.domain, "conf.example");
	/* no mailname: the FQDN; a mailname that is no domain counts as
	 * none */
	unlink(mailname);
	assert_int_equal(
	    msg_host_init(&h, NULL, mailname, hosts, err, sizeof(err)), 0);
	assert_string_equal(h.domain, text);
	strcpy(mailname, "/tmp/test_local_mailname.XXXXXX");
	write_file(mailname, "not a domain!\n");
	assert_int_equal(
	    msg_host_init(&h, NULL, mailname, hosts, err, sizeof(err)), 0);
	assert_string_equal(h.domain, text);
	/* no FQDN in hosts: the host name */
	unlink(hosts);
	assert_int_equal(
	    msg_host_init(&h, NULL, mailname, hosts, err, sizeof(err)), 0);
	assert_string_equal(h.fqdn, name);
	assert_string_equal(h.domain, name);
	unlink(mailname);
}

/* A host name with a dot is its own FQDN: the hosts file is not read. */
static void
check_host_names_dotted(const char *name)
{
	char hosts[] = "/tmp/test_local_hosts.XXXXXX";
	char mailname[] = "/tmp/test_local_nomailname";
	char text[1024], err[128];
	struct msg_host h;

	snprintf(text, sizeof(text), "127.0.1.1 other.example %s\n", name);
	write_file(hosts, text);
	unlink(mailname);
	assert_int_equal(
	    msg_host_init(&h, NULL, mailname, hosts, err, sizeof(err)), 0);
	assert_string_equal(h.name, name);
	assert_string_equal(h.fqdn, name);
	assert_string_equal(h.domain, name);
	unlink(hosts);
}

static void
test_host_names(void **state)
{
	char name[HOST_NAME_MAX + 1];

	(void)state;
	/* Both kinds of host name, whatever this machine's is: in a UTS
	 * namespace of this process's own (root only), else the branch the
	 * machine's name takes. */
	if (unshare(CLONE_NEWUTS) == 0) {
		assert_int_equal(sethostname("spoold-unit", 11), 0);
		check_host_names_dotless("spoold-unit");
		assert_int_equal(sethostname("spoold-unit.example.net", 23), 0);
		check_host_names_dotted("spoold-unit.example.net");
	} else {
		assert_int_equal(gethostname(name, sizeof(name) - 1), 0);
		name[sizeof(name) - 1] = '\0';
		if (strchr(name, '.') != NULL)
			check_host_names_dotted(name);
		else
			check_host_names_dotless(name);
	}

	assert_true(msg_domain_ok("a.example-1.org"));
	assert_false(msg_domain_ok(""));
	assert_false(msg_domain_ok(".example"));
	assert_false(msg_domain_ok("a..example"));
	assert_false(msg_domain_ok("a b"));
}

/* ---- applied by msg_prepare ----------------------------------------- */

static void
test_prepare_local(void **state)
{
	static const char msg[] = "To: root, someone@example.net\n"
				  "Cc: alice@localhost\n"
				  "Subject: disk\n\nfull\n";
	static const char *const args[] = {"www-data"};
	struct msg_submit_opts o = {0};
	struct msg_prepared p;
	struct msg_aliases a;
	struct warnings w;
	struct msg_local l = LAB_LOCAL;
	char err[256];

	(void)state;
	parse("root: ops@example.org\nwww-data: root\n", &a, &w);
	l.aliases = &a;
	o.user = "cron";
	o.hostname = "lab.example.org";
	o.extract_rcpts = 1;
	o.local = &l;
	assert_int_equal(msg_prepare(msg, strlen(msg), &o, args, N(args), &p,
				     err, sizeof(err)),
			 0);
	/* the envelope is final: aliases applied, local names to admin,
	 * each once */
	assert_int_equal(p.rcpt.n, 3);
	assert_string_equal(p.rcpt.v[0], "ops@example.org");
	assert_string_equal(p.rcpt.v[1], "someone@example.net");
	assert_string_equal(p.rcpt.v[2], "admin@example.org");
	/* a bare sender is qualified with the domain */
	assert_string_equal(p.sender, "cron@lab.example.org");
	assert_non_null(strstr(p.data, "From: cron@lab.example.org\r\n"));
	msg_prepared_free(&p);

	/* an admin address that is not one refuses the message rather
	 * than queueing it for nobody */
	l.admin = "bad address@";
	assert_int_equal(
	    msg_prepare(msg, strlen(msg), &o, NULL, 0, &p, err, sizeof(err)),
	    EX_DATAERR);
	msg_aliases_free(&a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_aliases_format),
	    cmocka_unit_test(test_aliases_skipped),
	    cmocka_unit_test(test_aliases_limits),
	    cmocka_unit_test(test_aliases_load),
	    cmocka_unit_test(test_local_table),
	    cmocka_unit_test(test_host_names),
	    cmocka_unit_test(test_prepare_local),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * conf.c - the INI file, SPOOLD_* environment overrides and the embedded
 * default, merged into one struct conf.
 *
 * inih is fed through a line reader of ours so that every refusal can name
 * the file and line, a line longer than inih's buffer is refused instead of
 * cut, and indentation never turns a line into a continuation of the
 * previous value. Every value is checked where it is read, and every
 * problem is reported, not only the first: spoold --check-config lists them
 * all. For spoold the result is all or nothing; submit needs [spool] only,
 * so a problem elsewhere is a warning there and the alarm is still queued.
 */
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stddef.h>
#include <sysexits.h>
#include <unistd.h>

#include "spool/conf.h"
#include "spool/util.h"

extern char **environ;

/* Debian's inih reads lines into a 200-byte buffer. */
#define CONF_LINE_MAX 200

/* The transport of the embedded default configuration. */
#define CONF_EMBEDDED_NAME "local"

/* Test knob: the path read when neither -c nor $SPOOLD_CONFIG names one, so
 * that tests never read the host's own file. */
#define CONF_TEST_DEFAULT_ENV "SPOOLD_TEST_DEFAULT_CONFIG"

/* Sections and their keys, for "did you mean" hints. */
static const char *const conf_sections[] = {"spool", "delivery", "transport",
					    "metrics"};
static const char *const conf_spool_keys[] = {"dir", "max_size", "failed_keep",
					      "user", "submit_group"};
static const char *const conf_delivery_keys[] = {
    "route",  "concurrency", "retry",	"max_age",
    "bounce", "admin",	     "aliases", "domain"};
static const char *const conf_metrics_keys[] = {"textfile", "interval"};

struct conf_parser {
	struct conf *cf;
	const struct conf_opts *o; /* never NULL */
	const char *where;	   /* file name, or "environment" */
	unsigned line;		   /* current line, 0 for the environment */
	const char *var;	   /* current environment variable */
	char *route; /* the raw route value, resolved at the end */
	char *err;
	size_t errlen;
	int failed;	/* a refusal was reported */
	int unreadable; /* the file could not be opened */
	FILE *fp;
	/* The embedded default transport was added (there is no file). */
	int embedded_default;
	/* The section the reader is in, folded, for problems of a line. */
	char section[CONF_NAME_MAX + 16];
	/* The last refused transport name, reported once. */
	char bad_name[CONF_NAME_MAX + 16];
};

static void conf_fail(struct conf_parser *p, const char *section,
		      const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * One problem: a refusal, or with spool_only a warning when it lies outside
 * [spool]. section NULL is a problem of no section (an unknown variable, a
 * key before any section, the route), which submit can ignore as well.
 */
static void
conf_fail(struct conf_parser *p, const char *section, const char *key,
	  const char *fmt, ...)
{
	char why[320], at[32] = "", line[1024];
	int fatal = !p->o->spool_only ||
		    (section != NULL && strcmp(section, "spool") == 0);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	/* line 0: a judgement of the whole file, such as the route */
	if (p->line > 0)
		snprintf(at, sizeof(at), ":%u", p->line);
	if (p->var != NULL)
		snprintf(line, sizeof(line), "environment %s: %s", p->var, why);
	else if (key != NULL)
		snprintf(line, sizeof(line), "%s%s: [%s] %s: %s", p->where, at,
			 section, key, why);
	else
		snprintf(line, sizeof(line), "%s%s: %s", p->where, at, why);
	if (fatal && !p->failed)
		snprintf(p->err, p->errlen, "%s", line);
	p->failed |= fatal;
	if (p->o->report != NULL)
		p->o->report(p->o->arg, fatal, line);
}

/* Edit distance of two short words; a large number if either is long. */
static size_t
conf_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), d[CONF_NAME_MAX + 1];

	if (la > CONF_NAME_MAX || lb > CONF_NAME_MAX)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		d[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = d[0];

		d[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = d[j], best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (d[j - 1] + 1 < best)
				best = d[j - 1] + 1;
			diag = up;
			d[j] = best;
		}
	}
	return d[lb];
}

/* The known word nearest to word, if it looks like a typo of it. */
static const char *
conf_nearest(const char *word, const char *const *known, size_t n, size_t *dist)
{
	const char *best = NULL;
	size_t bd = 3;

	for (size_t i = 0; i < n; i++) {
		size_t dd = conf_distance(word, known[i]);

		if (dd < bd && dd < strlen(known[i])) {
			bd = dd;
			best = known[i];
		}
	}
	if (dist != NULL)
		*dist = bd;
	return best;
}

/* Upper-cases s into buf for an environment variable's name. */
static const char *
conf_upper(char *buf, size_t len, const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0' && i + 1 < len; i++)
		buf[i] = (char)toupper((unsigned char)s[i]);
	buf[i] = '\0';
	return buf;
}

/* "unknown key", with the known key it is probably a typo of. */
static void
conf_unknown_key(struct conf_parser *p, const char *section, const char *key,
		 const char *const *known, size_t n)
{
	const char *near = conf_nearest(key, known, n, NULL);
	char upk[CONF_NAME_MAX];

	if (near == NULL)
		conf_fail(p, section, key, "unknown key");
	else if (p->var != NULL)
		/* the variable's name up to its key, then the known key */
		conf_fail(p, section, key, "unknown key; did you mean %.*s%s?",
			  (int)(strlen(p->var) - strlen(key)), p->var,
			  conf_upper(upk, sizeof(upk), near));
	else
		conf_fail(p, section, key, "unknown key; did you mean %s?",
			  near);
}

static int
conf_set_str(char **dst, const char *value)
{
	char *s = strdup(value);

	if (s == NULL)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

/* A transport's name, or NULL after reporting why it is refused (once). */
static const char *
conf_transport_name_check(struct conf_parser *p, const char *name)
{
	const char *why = NULL;

	if (name[0] == '\0' || strlen(name) >= CONF_NAME_MAX)
		why = "a transport needs a name of 1 to 63 characters";
	for (const char *c = name; why == NULL && *c; c++)
		if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_')
			why = "transport names use letters, digits, - and _ "
			      "only";
	if (why == NULL)
		return name;
	if (strcmp(p->bad_name, name) != 0) {
		str_copy(p->bad_name, name, sizeof(p->bad_name));
		conf_fail(p, "transport", name, "%s", why);
	}
	return NULL;
}

/* The transport named name (already folded to lower case), made on first
 * use with the defaults. */
static struct conf_transport *
conf_transport_get(struct conf_parser *p, const char *name)
{
	struct conf *cf = p->cf;
	struct conf_transport *t;

	for (size_t i = 0; i < cf->transport_count; i++)
		if (strcmp(cf->transports[i].name, name) == 0)
			return &cf->transports[i];
	if (conf_transport_name_check(p, name) == NULL)
		return NULL;
	if (cf->transport_count == CONF_MAX_TRANSPORTS) {
		conf_fail(p, "transport", name, "more than %d transports",
			  CONF_MAX_TRANSPORTS);
		return NULL;
	}
	t = &cf->transports[cf->transport_count++];
	memset(t, 0, sizeof(*t));
	str_copy(t->name, name, sizeof(t->name));
	t->type = CONF_TRANSPORT_SMTP;
	t->tls = CONF_TLS_NONE;
	t->connect_timeout = 10;
	t->timeout = 60;
	t->probe_expect[0] = 200;
	t->probe_expect[1] = 204;
	t->probe_expect[2] = 301;
	t->probe_expect_count = 3;
	t->probe_interval = 30;
	t->probe_timeout = 5;
	t->probe_method = CONF_PROBE_HEAD;
	t->priority = -1;
	return t;
}

/* Splits a comma-separated list in place; returns the count or -ERANGE. */
static int
conf_split_list(char *s, char **items, size_t max)
{
	size_t n = 0;
	char *save = NULL;

	for (char *tok = strtok_r(s, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		char *end;

		while (isspace((unsigned char)*tok))
			tok++;
		end = tok + strlen(tok);
		while (end > tok && isspace((unsigned char)end[-1]))
			*--end = '\0';
		if (*tok == '\0')
			continue;
		if (n == max)
			return -ERANGE;
		items[n++] = tok;
	}
	return (int)n;
}

static int
conf_duration(struct conf_parser *p, const char *sec, const char *key,
	      const char *value, int64_t min, int64_t *out)
{
	int64_t v;

	if (parse_duration(value, &v) < 0 || v < min) {
		conf_fail(p, sec, key,
			  "\"%s\" is not a duration of at least %llds "
			  "(e.g. 30s, 5m, 1h, 5d)",
			  value, (long long)min);
		return -1;
	}
	*out = v;
	return 0;
}

/* [spool] user and submit_group: a user or group name; never root. */
static int
conf_spool_account(struct conf_parser *p, const char *key, const char *value)
{
	struct conf *cf = p->cf;
	size_t n = strlen(value);

	if (n == 0 || n > 32 ||
	    strspn(value, "abcdefghijklmnopqrstuvwxyz"
			  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != n ||
	    value[0] == '-') {
		conf_fail(p, "spool", key, "\"%s\" is not a user or group name",
			  value);
		return -1;
	}
	if (strcmp(value, "root") == 0) {
		conf_fail(p, "spool", key,
			  "root is refused: spoold runs as an unprivileged "
			  "user of its own (default %s)",
			  key[0] == 'u' ? CONF_DEFAULT_USER
					: CONF_DEFAULT_SUBMIT_GROUP);
		return -1;
	}
	return conf_set_str(key[0] == 'u' ? &cf->spool_user : &cf->submit_group,
			    value);
}

static int
conf_spool_key(struct conf_parser *p, const char *key, const char *value)
{
	struct conf *cf = p->cf;

	if (strcmp(key, "dir") == 0) {
		if (value[0] != '/') {
			conf_fail(p, "spool", key, "must be an absolute path");
			return -1;
		}
		return conf_set_str(&cf->spool_dir, value);
	}
	if (strcmp(key, "max_size") == 0) {
		if (parse_size(value, &cf->max_size) < 0 ||
		    cf->max_size < 1024 || cf->max_size > (1ULL << 30)) {
			conf_fail(p, "spool", key,
				  "\"%s\" is not a size from 1k to 1G", value);
			return -1;
		}
		return 0;
	}
	if (strcmp(key, "failed_keep") == 0)
		return conf_duration(p, "spool", key, value, 0,
				     &cf->failed_keep);
	if (strcmp(key, "user") == 0 || strcmp(key, "submit_group") == 0)
		return conf_spool_account(p, key, value);
	conf_unknown_key(p, "spool", key, conf_spool_keys,
			 ARRAY_SIZE(conf_spool_keys));
	return -1;
}

static int
conf_delivery_key(struct conf_parser *p, const char *key, const char *value)
{
	struct conf *cf = p->cf;
	uint64_t u;

	if (strcmp(key, "route") == 0)
		return conf_set_str(&p->route, value);
	if (strcmp(key, "concurrency") == 0) {
		if (parse_uint(value, 1, CONF_MAX_CONCURRENCY, &u) < 0) {
			conf_fail(p, "delivery", key,
				  "\"%s\" is not a number from 1 to 64", value);
			return -1;
		}
		cf->concurrency = (unsigned)u;
		return 0;
	}
	if (strcmp(key, "retry") == 0) {
		char *copy = strdup(value), *items[CONF_MAX_RETRY];
		int n;

		if (copy == NULL)
			return -ENOMEM;
		n = conf_split_list(copy, items, CONF_MAX_RETRY);
		if (n <= 0) {
			conf_fail(p, "delivery", key, "needs 1 to %d durations",
				  CONF_MAX_RETRY);
			free(copy);
			return -1;
		}
		for (int i = 0; i < n; i++) {
			if (conf_duration(p, "delivery", key, items[i], 1,
					  &cf->retry[i]) < 0) {
				free(copy);
				return -1;
			}
		}
		cf->retry_count = (size_t)n;
		free(copy);
		return 0;
	}
	if (strcmp(key, "max_age") == 0)
		return conf_duration(p, "delivery", key, value, 1,
				     &cf->max_age);
	if (strcmp(key, "bounce") == 0) {
		if (parse_bool(value, &cf->bounce) < 0) {
			conf_fail(p, "delivery", key, "must be yes or no");
			return -1;
		}
		return 0;
	}
	if (strcmp(key, "admin") == 0) {
		/* checked in full where it is used (msg_addr_check) */
		int bad = strchr(value, '@') == NULL || strlen(value) > 254;

		for (const char *c = value; *c != '\0'; c++)
			if ((unsigned char)*c <= 0x20 || *c == 0x7f ||
			    *c == '<' || *c == '>' || *c == ',')
				bad = 1;
		if (bad) {
			conf_fail(p, "delivery", key,
				  "\"%s\" is not an address (user@domain)",
				  value);
			return -1;
		}
		return conf_set_str(&cf->admin, value);
	}
	if (strcmp(key, "aliases") == 0) {
		if (value[0] != '/' && strcmp(value, "none") != 0) {
			conf_fail(p, "delivery", key,
				  "must be an absolute path or none");
			return -1;
		}
		if (strcmp(value, "none") == 0) {
			free(cf->aliases);
			cf->aliases = NULL;
			return 0;
		}
		return conf_set_str(&cf->aliases, value);
	}
	if (strcmp(key, "domain") == 0) {
		if (value[0] == '\0' || value[0] == '.' ||
		    strspn(value, "abcdefghijklmnopqrstuvwxyz"
				  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") !=
			strlen(value) ||
		    strlen(value) > 253) {
			conf_fail(p, "delivery", key,
				  "\"%s\" is not a domain name", value);
			return -1;
		}
		return conf_set_str(&cf->domain, value);
	}
	conf_unknown_key(p, "delivery", key, conf_delivery_keys,
			 ARRAY_SIZE(conf_delivery_keys));
	return -1;
}

static int
conf_expect_list(struct conf_parser *p, struct conf_transport *t,
		 const char *sec, const char *key, const char *value)
{
	char *copy = strdup(value), *items[CONF_MAX_EXPECT];
	int n;
	uint64_t code;

	if (copy == NULL)
		return -ENOMEM;
	n = conf_split_list(copy, items, CONF_MAX_EXPECT);
	if (n <= 0) {
		conf_fail(p, sec, key, "needs 1 to %d HTTP codes",
			  CONF_MAX_EXPECT);
		free(copy);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		if (parse_uint(items[i], 100, 599, &code) < 0) {
			conf_fail(p, sec, key,
				  "\"%s\" is not an HTTP status code",
				  items[i]);
			free(copy);
			return -1;
		}
		t->probe_expect[i] = (long)code;
	}
	t->probe_expect_count = (size_t)n;
	free(copy);
	return 0;
}

/* String keys of [transport NAME], by their offset in the struct. */
static const struct {
	const char *key;
	size_t off;
} conf_transport_strings[] = {
    {"host", offsetof(struct conf_transport, host)},
    {"ca_file", offsetof(struct conf_transport, ca_file)},
    {"user", offsetof(struct conf_transport, user)},
    {"password_file", offsetof(struct conf_transport, password_file)},
    {"from", offsetof(struct conf_transport, from)},
    {"helo", offsetof(struct conf_transport, helo)},
    {"probe_url", offsetof(struct conf_transport, probe_url)},
    {"path", offsetof(struct conf_transport, path)},
    {"url", offsetof(struct conf_transport, url)},
    {"token_file", offsetof(struct conf_transport, token_file)},
    {"room", offsetof(struct conf_transport, room)},
    {"chat_id", offsetof(struct conf_transport, chat_id)},
};

/* The `type =` words, by enum conf_transport_type. */
static const char *const conf_transport_types[] = {
    "smtp", "maildir", "ntfy", "gotify", "matrix", "telegram", "webhook",
};

const char *
conf_transport_type_name(enum conf_transport_type t)
{
	return (size_t)t < ARRAY_SIZE(conf_transport_types)
		   ? conf_transport_types[t]
		   : "unknown";
}

/* Every key of a transport section, for splitting environment names. */
static const char *const conf_transport_keys[] = {
    "type",	     "host",
    "port",	     "tls",
    "ca_file",	     "user",
    "password_file", "from",
    "helo",	     "connect_timeout",
    "timeout",	     "probe_url",
    "probe_expect",  "probe_interval",
    "probe_timeout", "path",
    "probe_method",  "url",
    "token_file",    "room",
    "chat_id",	     "priority",
    "rate",	     "burst",
    "rate_overflow",
};

/* rate = N/DURATION, burst = N, rate_overflow = wait|next. */
static int
conf_rate_key(struct conf_parser *p, struct conf_transport *t, const char *sec,
	      const char *key, const char *value)
{
	uint64_t u;

	if (strcmp(key, "rate_overflow") == 0) {
		if (strcmp(value, "wait") != 0 && strcmp(value, "next") != 0) {
			conf_fail(p, sec, key, "\"%s\" is not wait or next",
				  value);
			return -1;
		}
		t->rate_overflow_next = strcmp(value, "next") == 0;
		return 0;
	}
	if (strcmp(key, "burst") == 0) {
		if (parse_uint(value, 1, RATE_COUNT_MAX, &u) < 0) {
			conf_fail(p, sec, key,
				  "\"%s\" is not a number of messages from 1 "
				  "to %d",
				  value, RATE_COUNT_MAX);
			return -1;
		}
		t->burst = (unsigned)u;
		return 0;
	}
	if (parse_rate(value, &u, &t->rate_period) < 0) {
		conf_fail(p, sec, key,
			  "\"%s\" is not MESSAGES/DURATION with 1 to %d "
			  "messages per 1s to 7d (e.g. 60/1m, 1/5s, 3600/1h)",
			  value, RATE_COUNT_MAX);
		return -1;
	}
	t->rate_count = (unsigned)u;
	return 0;
}

static int
conf_transport_key(struct conf_parser *p, struct conf_transport *t,
		   const char *key, const char *value)
{
	char sec[CONF_NAME_MAX + 16];
	uint64_t u;

	snprintf(sec, sizeof(sec), "transport %s", t->name);
	for (size_t i = 0; i < ARRAY_SIZE(conf_transport_strings); i++) {
		if (strcmp(key, conf_transport_strings[i].key) == 0)
			return conf_set_str(
			    (char **)((char *)t +
				      conf_transport_strings[i].off),
			    value);
	}
	if (strcmp(key, "type") == 0) {
		for (size_t i = 0; i < ARRAY_SIZE(conf_transport_types); i++) {
			if (strcmp(value, conf_transport_types[i]) == 0) {
				t->type = (enum conf_transport_type)i;
				return 0;
			}
		}
		conf_fail(p, sec, key,
			  "\"%s\" is not smtp, maildir, ntfy, gotify, matrix, "
			  "telegram or webhook",
			  value);
		return -1;
	}
	if (strcmp(key, "priority") == 0) {
		if (parse_uint(value, 0, 10, &u) < 0) {
			conf_fail(p, sec, key,
				  "\"%s\" is not a priority from 0 to 10",
				  value);
			return -1;
		}
		t->priority = (int)u;
		return 0;
	}
	if (strcmp(key, "rate") == 0 || strcmp(key, "burst") == 0 ||
	    strcmp(key, "rate_overflow") == 0)
		return conf_rate_key(p, t, sec, key, value);
	if (strcmp(key, "port") == 0) {
		if (parse_uint(value, 1, 65535, &u) < 0) {
			conf_fail(p, sec, key, "\"%s\" is not a port", value);
			return -1;
		}
		t->port = (unsigned)u;
		return 0;
	}
	if (strcmp(key, "tls") == 0) {
		if (strcmp(value, "none") == 0)
			t->tls = CONF_TLS_NONE;
		else if (strcmp(value, "starttls") == 0)
			t->tls = CONF_TLS_STARTTLS;
		else if (strcmp(value, "implicit") == 0)
			t->tls = CONF_TLS_IMPLICIT;
		else {
			conf_fail(p, sec, key,
				  "\"%s\" is not none, starttls or implicit",
				  value);
			return -1;
		}
		return 0;
	}
	if (strcmp(key, "connect_timeout") == 0)
		return conf_duration(p, sec, key, value, 1,
				     &t->connect_timeout);
	if (strcmp(key, "timeout") == 0)
		return conf_duration(p, sec, key, value, 1, &t->timeout);
	if (strcmp(key, "probe_interval") == 0)
		return conf_duration(p, sec, key, value, 1, &t->probe_interval);
	if (strcmp(key, "probe_timeout") == 0)
		return conf_duration(p, sec, key, value, 1, &t->probe_timeout);
	if (strcmp(key, "probe_expect") == 0)
		return conf_expect_list(p, t, sec, key, value);
	if (strcmp(key, "probe_method") == 0) {
		if (strcasecmp(value, "HEAD") == 0)
			t->probe_method = CONF_PROBE_HEAD;
		else if (strcasecmp(value, "GET") == 0)
			t->probe_method = CONF_PROBE_GET;
		else {
			conf_fail(p, sec, key, "\"%s\" is not HEAD or GET",
				  value);
			return -1;
		}
		return 0;
	}
	conf_unknown_key(p, sec, key, conf_transport_keys,
			 ARRAY_SIZE(conf_transport_keys));
	return -1;
}

/* [metrics]: the file spoold keeps for node_exporter's textfile
 * collector, and how often it is rewritten. */
static int
conf_metrics_key(struct conf_parser *p, const char *key, const char *value)
{
	struct conf *cf = p->cf;

	if (strcmp(key, "textfile") == 0) {
		if (value[0] != '/' || value[strlen(value) - 1] == '/') {
			conf_fail(p, "metrics", key,
				  "must be the absolute path of a file");
			return -1;
		}
		return conf_set_str(&cf->metrics_textfile, value);
	}
	if (strcmp(key, "interval") == 0)
		return conf_duration(p, "metrics", key, value, 1,
				     &cf->metrics_interval);
	conf_unknown_key(p, "metrics", key, conf_metrics_keys,
			 ARRAY_SIZE(conf_metrics_keys));
	return -1;
}

/*
 * Folds a section header's text into out: trimmed, lower case, one space
 * between "transport" and the name. "[Transport  Mailu]" is
 * "transport mailu", so the environment's SPOOLD_TRANSPORT_MAILU_* and a
 * route naming Mailu or mailu all mean it.
 */
static void
conf_section_fold(const char *in, char *out, size_t len)
{
	size_t n = 0;
	int space = 0;

	while (isspace((unsigned char)*in))
		in++;
	for (; *in != '\0' && n + 1 < len; in++) {
		if (isspace((unsigned char)*in)) {
			space = 1;
			continue;
		}
		if (space && n + 2 < len)
			out[n++] = ' ';
		space = 0;
		out[n++] = (char)tolower((unsigned char)*in);
	}
	out[n] = '\0';
}

static int
conf_apply(struct conf_parser *p, const char *raw_section, const char *raw_key,
	   const char *raw_value)
{
	char section[CONF_NAME_MAX + 16], key[CONF_NAME_MAX], *value;
	size_t vlen = strlen(raw_value);
	int rc, quoted = 0;

	conf_section_fold(raw_section, section, sizeof(section));
	conf_section_fold(raw_key, key, sizeof(key));
	/* "localhost" or 'localhost' is localhost: nothing between the
	 * quotes is interpreted, not even '#' */
	if (vlen >= 2 && (raw_value[0] == '"' || raw_value[0] == '\'') &&
	    raw_value[vlen - 1] == raw_value[0]) {
		value = strndup(raw_value + 1, vlen - 2);
		quoted = 1;
	} else
		value = strdup(raw_value);
	if (value == NULL) {
		conf_fail(p, section, key, "out of memory");
		return -ENOMEM;
	}
	if (!quoted && strchr(value, '#') != NULL) {
		/* Debian's inih keeps a "# comment" after a value as part of
		 * it; refusing beats sending mail to "host # old relay". */
		conf_fail(p, section, key,
			  "'#' in a value; put comments on their own line, "
			  "or quote the value to keep the '#'");
		rc = -1;
	} else if (strcmp(section, "spool") == 0)
		rc = conf_spool_key(p, key, value);
	else if (strcmp(section, "delivery") == 0)
		rc = conf_delivery_key(p, key, value);
	else if (strcmp(section, "metrics") == 0)
		rc = conf_metrics_key(p, key, value);
	else if (strncmp(section, "transport ", 10) == 0) {
		struct conf_transport *t = conf_transport_get(p, section + 10);

		rc = t == NULL ? -1 : conf_transport_key(p, t, key, value);
	} else {
		char word[CONF_NAME_MAX + 16];
		const char *near;

		/* the first word only: [transprt mailu] is a transport */
		snprintf(word, sizeof(word), "%.*s", (int)strcspn(section, " "),
			 section);
		near = conf_nearest(word, conf_sections,
				    ARRAY_SIZE(conf_sections), NULL);

		if (strcmp(section, "transport") == 0)
			conf_fail(p, section, key,
				  "[transport] needs a name: [transport NAME]");
		else if (near != NULL)
			conf_fail(p, section, key,
				  "unknown section [%s]; did you mean [%s%s]?",
				  section, near,
				  strcmp(near, "transport") == 0 ? " NAME"
								 : "");
		else
			conf_fail(p, section, key,
				  "unknown section [%s] (known: [spool], "
				  "[delivery], [transport NAME], [metrics])",
				  section);
		rc = -1;
	}
	if (rc == -ENOMEM)
		conf_fail(p, section, key, "out of memory");
	free(value);
	return rc;
}

static int
conf_ini_handler(void *user, const char *section, const char *name,
		 const char *value)
{
	struct conf_parser *p = user;

	if (name == NULL)
		return 1; /* a section header alone */
	if (section[0] == '\0') {
		conf_fail(p, NULL, NULL,
			  "key \"%s\" outside a section; put it under "
			  "[spool], [delivery] or [transport NAME]",
			  name);
		return 1;
	}
	/* every problem is reported by conf_fail: inih's own error is
	 * kept for lines it cannot parse */
	conf_apply(p, section, name, value);
	return 1;
}

/*
 * Judges one line as inih will, so that a bad line is reported with its
 * section and the rest of the file is still read; returns the reason, or
 * NULL for a good line. A good section header sets p->section.
 */
static const char *
conf_line_check(struct conf_parser *p, const char *s)
{
	const char *end;
	char raw[CONF_LINE_MAX];

	if (*s == '\0' || *s == '\n' || *s == '\r' || *s == ';' || *s == '#')
		return NULL;
	if (*s != '[')
		return strpbrk(s, "=:") != NULL ? NULL
						: "not a valid INI line; "
						  "expected KEY = VALUE";
	end = strchr(s, ']');
	if (end == NULL)
		return "not a valid INI line; a section header needs a "
		       "closing ]";
	snprintf(raw, sizeof(raw), "%.*s", (int)(end - s - 1), s + 1);
	conf_section_fold(raw, p->section, sizeof(p->section));
	return NULL;
}

/* fgets for inih: counts lines, strips indentation and a byte order mark,
 * and reports and blanks a line that is too long or not INI. */
static char *
conf_ini_reader(char *str, int num, void *stream)
{
	struct conf_parser *p = stream;
	const char *why = NULL;
	size_t len;
	char *s;
	int c;

	if (fgets(str, num, p->fp) == NULL)
		return NULL;
	p->line++;
	len = strlen(str);
	if (len == (size_t)num - 1 && str[len - 1] != '\n' && !feof(p->fp)) {
		/* the rest of the line is dropped, never read as a line */
		while ((c = fgetc(p->fp)) != EOF && c != '\n')
			;
		why = "line longer than 198 bytes";
	}
	s = str;
	if (p->line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3;
	while (*s == ' ' || *s == '\t')
		s++;
	memmove(str, s, strlen(s) + 1);
	if (why == NULL)
		why = conf_line_check(p, str);
	if (why != NULL) {
		/* a broken header leaves the next keys in no known section:
		 * refused even for submit, they might be [spool]'s */
		conf_fail(p,
			  str[0] == '[' && strchr(str, ']') == NULL
			      ? "spool"
			      : p->section,
			  NULL, "%s", why);
		str[0] = '\n';
		str[1] = '\0';
	}
	return str;
}

static int
conf_parse_file(struct conf_parser *p, const char *path)
{
	int rc;

	p->fp = fopen(path, "r");
	if (p->fp == NULL) {
		snprintf(p->err, p->errlen, "%s: %s", path, strerror(errno));
		p->unreadable = 1;
		if (p->o->report != NULL)
			p->o->report(p->o->arg, 1, p->err);
		return EX_CONFIG;
	}
	p->where = path;
	rc = ini_parse_stream(conf_ini_reader, p, conf_ini_handler, p);
	fclose(p->fp);
	p->fp = NULL;
	if (rc != 0) {
		/* a line conf_line_check let through: refused everywhere */
		p->line = rc > 0 ? (unsigned)rc : p->line;
		conf_fail(p, "spool", NULL, "not a valid INI line");
	}
	return p->failed ? EX_CONFIG : 0;
}

/* For an unknown SPOOLD_TRANSPORT_<NAME>_<KEY>: the variable meant, if the
 * end of the name is a typo of a known key. */
static void
conf_env_transport_hint(const char *lower, char *hint, size_t len)
{
	size_t best = 3;

	hint[0] = '\0';
	for (const char *u = strchr(lower, '_'); u != NULL;
	     u = strchr(u + 1, '_')) {
		size_t d;
		const char *near =
		    conf_nearest(u + 1, conf_transport_keys,
				 ARRAY_SIZE(conf_transport_keys), &d);
		char name[CONF_NAME_MAX], key[CONF_NAME_MAX];

		if (near == NULL || d >= best || u == lower ||
		    (size_t)(u - lower) >= sizeof(name))
			continue;
		best = d;
		snprintf(name, sizeof(name), "%.*s", (int)(u - lower), lower);
		conf_upper(name, sizeof(name), name);
		conf_upper(key, sizeof(key), near);
		if (snprintf(hint, len,
			     "; did you mean SPOOLD_TRANSPORT_%s_%s?", name,
			     key) >= (int)len)
			hint[0] = '\0';
	}
}

/* SPOOLD_TRANSPORT_<NAME>_<KEY>: the longest known key wins the suffix,
 * so SPOOLD_TRANSPORT_MAILU_PASSWORD_FILE is mailu's password_file. */
static int
conf_env_transport(struct conf_parser *p, const char *rest, const char *value)
{
	char lower[256], section[CONF_NAME_MAX + 16], hint[160];
	size_t len = strlen(rest), best = 0;
	const char *key = NULL;

	if (len >= sizeof(lower)) {
		conf_fail(p, NULL, NULL, "name too long");
		return -1;
	}
	for (size_t i = 0; i <= len; i++)
		lower[i] = (char)tolower((unsigned char)rest[i]);
	for (size_t i = 0; i < ARRAY_SIZE(conf_transport_keys); i++) {
		size_t kl = strlen(conf_transport_keys[i]);

		if (kl + 1 < len && kl > best &&
		    strcmp(lower + len - kl, conf_transport_keys[i]) == 0 &&
		    lower[len - kl - 1] == '_') {
			best = kl;
			key = conf_transport_keys[i];
		}
	}
	if (key == NULL || len - best - 1 >= CONF_NAME_MAX) {
		conf_env_transport_hint(lower, hint, sizeof(hint));
		conf_fail(p, NULL, NULL,
			  "expected SPOOLD_TRANSPORT_<NAME>_<KEY> with a "
			  "known key%s",
			  hint);
		return -1;
	}
	snprintf(section, sizeof(section), "transport %.*s",
		 (int)(len - best - 1), lower);
	/* the embedded relay, set up from the environment, is meant */
	if (p->embedded_default &&
	    strcmp(section + 10, CONF_EMBEDDED_NAME) == 0)
		p->embedded_default = 0;
	return conf_apply(p, section, key, value);
}

static int
conf_parse_env(struct conf_parser *p)
{
	for (char **e = environ; *e != NULL; e++) {
		const char *eq = strchr(*e, '='), *rest;
		char var[256], section[16], key[64];

		if (strncmp(*e, "SPOOLD_", 7) != 0 || eq == NULL)
			continue;
		if ((size_t)(eq - *e) >= sizeof(var))
			continue;
		memcpy(var, *e, (size_t)(eq - *e));
		var[eq - *e] = '\0';
		if (strcmp(var, "SPOOLD_CONFIG") == 0)
			continue;
		p->var = var;
		rest = var + 7;
		if (strncmp(rest, "TRANSPORT_", 10) == 0) {
			conf_env_transport(p, rest + 10, eq + 1);
		} else if (strncmp(rest, "SPOOL_", 6) == 0 ||
			   strncmp(rest, "DELIVERY_", 9) == 0 ||
			   strncmp(rest, "METRICS_", 8) == 0) {
			const char *k = strchr(rest, '_') + 1;
			size_t sl = (size_t)(k - 1 - rest), i;

			for (i = 0; i < sl && i < sizeof(section) - 1; i++)
				section[i] =
				    (char)tolower((unsigned char)rest[i]);
			section[i] = '\0';
			for (i = 0; k[i] && i < sizeof(key) - 1; i++)
				key[i] = (char)tolower((unsigned char)k[i]);
			key[i] = '\0';
			conf_apply(p, section, key, eq + 1);
		} else if (strncmp(rest, "TEST_", 5) != 0) {
			conf_fail(p, NULL, NULL,
				  "unknown variable (expected SPOOLD_SPOOL_*, "
				  "SPOOLD_DELIVERY_*, SPOOLD_TRANSPORT_* or "
				  "SPOOLD_METRICS_*)");
		}
	}
	p->var = NULL;
	return p->failed ? EX_CONFIG : 0;
}

static int
conf_defaults(struct conf *cf)
{
	memset(cf, 0, sizeof(*cf));
	cf->spool_dir = strdup(CONF_DEFAULT_SPOOL);
	cf->spool_user = strdup(CONF_DEFAULT_USER);
	cf->submit_group = strdup(CONF_DEFAULT_SUBMIT_GROUP);
	cf->max_size = 10 * 1024 * 1024;
	cf->failed_keep = 30 * 86400;
	cf->metrics_interval = 15;
	cf->concurrency = 4;
	cf->retry[0] = 60;
	cf->retry[1] = 300;
	cf->retry[2] = 900;
	cf->retry[3] = 3600;
	cf->retry_count = 4;
	cf->max_age = 5 * 86400;
	cf->bounce = 0;
	cf->aliases = strdup(CONF_DEFAULT_ALIASES);
	return cf->spool_dir == NULL || cf->spool_user == NULL ||
		       cf->submit_group == NULL || cf->aliases == NULL
		   ? -ENOMEM
		   : 0;
}

/* The embedded default relay: the local MTA on 127.0.0.1:25. */
static int
conf_default_transport(struct conf_parser *p)
{
	struct conf_transport *t = conf_transport_get(p, CONF_EMBEDDED_NAME);

	if (t == NULL)
		return -1;
	t->port = 25;
	return conf_set_str(&t->host, "127.0.0.1");
}

/* The keys a push service cannot do without. */
static int
conf_push_check(struct conf_parser *p, const struct conf_transport *t,
		const char *sec)
{
	const char *missing = NULL;

	switch (t->type) {
	case CONF_TRANSPORT_SMTP:
	case CONF_TRANSPORT_MAILDIR:
		return 0;
	case CONF_TRANSPORT_MATRIX:
		missing = t->room == NULL ? "room" : NULL;
		break;
	case CONF_TRANSPORT_TELEGRAM:
		missing = t->chat_id == NULL ? "chat_id" : NULL;
		break;
	default:
		break;
	}
	if (missing == NULL && t->type != CONF_TRANSPORT_TELEGRAM &&
	    t->url == NULL)
		missing = "url";
	if (missing == NULL && t->token_file == NULL &&
	    (t->type == CONF_TRANSPORT_GOTIFY ||
	     t->type == CONF_TRANSPORT_MATRIX ||
	     t->type == CONF_TRANSPORT_TELEGRAM))
		missing = "token_file";
	if (missing == NULL)
		return 0;
	conf_fail(p, sec, missing, "a %s transport needs it",
		  conf_transport_type_name(t->type));
	return -1;
}

/* Resolves the route and checks what needs the whole file. Each problem
 * is reported; the route keeps the transports that exist. */
static void
conf_resolve(struct conf_parser *p)
{
	struct conf *cf = p->cf;

	p->where = cf->source;
	p->line = 0;
	if (p->route != NULL) {
		char *items[CONF_MAX_TRANSPORTS];
		int n = conf_split_list(p->route, items, CONF_MAX_TRANSPORTS);

		if (n < 0)
			conf_fail(p, "delivery", "route",
				  "names more than %d transports",
				  CONF_MAX_TRANSPORTS);
		for (int i = 0; i < n; i++) {
			const struct conf_transport *t;

			for (char *c = items[i]; *c; c++)
				*c = (char)tolower((unsigned char)*c);
			t = conf_transport_find(cf, items[i]);
			if (t == NULL)
				conf_fail(p, "delivery", "route",
					  "no [transport %s] section",
					  items[i]);
			else
				cf->route[cf->route_count++] =
				    (size_t)(t - cf->transports);
		}
		if (n == 0)
			conf_fail(p, "delivery", "route", "names no transport");
	} else {
		/*
		 * A sidecar configured from the environment alone names its
		 * transports there; the embedded relay to 127.0.0.1:25 stays
		 * nameable in a route, but is not tried unless named or set
		 * up there too: the container has no MTA behind that port.
		 */
		size_t first = p->embedded_default && cf->transport_count > 1;

		for (size_t j = first; j < cf->transport_count; j++)
			cf->route[cf->route_count++] = j;
		if (cf->route_count == 0)
			conf_fail(p, "delivery", "route",
				  "no transport configured");
	}
	for (size_t j = 0; j < cf->transport_count; j++) {
		struct conf_transport *t = &cf->transports[j];
		char sec[CONF_NAME_MAX + 16];

		snprintf(sec, sizeof(sec), "transport %s", t->name);
		if (t->type == CONF_TRANSPORT_SMTP && t->host == NULL)
			conf_fail(p, sec, "host", "an smtp transport needs it");
		if (t->type == CONF_TRANSPORT_MAILDIR &&
		    (t->path == NULL || t->path[0] != '/'))
			conf_fail(p, sec, "path",
				  "a maildir transport needs an absolute path");
		conf_push_check(p, t, sec);
		if (t->rate_count == 0 && t->burst != 0)
			conf_fail(p, sec, "burst",
				  "needs rate (e.g. rate = 60/1m)");
		if (t->burst == 0)
			t->burst = t->rate_count;
		if ((t->user == NULL) != (t->password_file == NULL))
			conf_fail(p, sec, t->user ? "password_file" : "user",
				  "user and password_file go together");
		/* Whoever answers on the relay's address would read the
		 * token: a local user who binds its port while it is down,
		 * or anyone on the path. Loopback is no exception. */
		if (t->type == CONF_TRANSPORT_SMTP && t->user != NULL &&
		    t->tls == CONF_TLS_NONE)
			conf_fail(p, sec, "tls",
				  "with user set, tls = none would send the "
				  "password in clear; set tls = starttls or "
				  "tls = implicit, or remove user and "
				  "password_file");
		if (t->port == 0)
			t->port = t->tls == CONF_TLS_IMPLICIT	? 465
				  : t->tls == CONF_TLS_STARTTLS ? 587
								: 25;
	}
}

int
conf_load(struct conf *out, const char *path, char *err, size_t errlen)
{
	return conf_load_opts(out, path, NULL, err, errlen);
}

int
conf_load_opts(struct conf *out, const char *path, const struct conf_opts *o,
	       char *err, size_t errlen)
{
	static const struct conf_opts strict = {0};
	struct conf_parser p = {
	    .cf = out, .o = o ? o : &strict, .err = err, .errlen = errlen};
	const char *env = getenv("SPOOLD_CONFIG");
	const char *dflt = getenv(CONF_TEST_DEFAULT_ENV);
	int rc;

	if (conf_defaults(out) < 0) {
		snprintf(err, errlen, "out of memory");
		conf_free(out);
		return EX_OSERR;
	}
	if (dflt == NULL || dflt[0] == '\0')
		dflt = CONF_DEFAULT_PATH;
	if (path == NULL && env != NULL && env[0] != '\0')
		path = env;
	if (path == NULL && access(dflt, F_OK) == 0)
		path = dflt;
	out->source = strdup(path ? path : "embedded default");
	if (out->source == NULL) {
		snprintf(err, errlen, "out of memory");
		conf_free(out);
		return EX_OSERR;
	}
	if (path != NULL)
		rc = conf_parse_file(&p, path);
	else {
		p.where = out->source;
		p.embedded_default = 1;
		rc = conf_default_transport(&p) < 0 ? EX_OSERR : 0;
	}
	/* a file that cannot be read is the one problem worth reporting */
	if (rc != EX_OSERR && !p.unreadable) {
		conf_parse_env(&p);
		conf_resolve(&p);
		rc = p.failed ? EX_CONFIG : 0;
	}
	free(p.route);
	if (rc != 0)
		conf_free(out);
	return rc;
}

void
conf_free(struct conf *cf)
{
	for (size_t i = 0; i < cf->transport_count; i++) {
		struct conf_transport *t = &cf->transports[i];

		for (size_t j = 0; j < ARRAY_SIZE(conf_transport_strings); j++)
			free(*(char **)((char *)t +
					conf_transport_strings[j].off));
	}
	free(cf->spool_dir);
	free(cf->spool_user);
	free(cf->submit_group);
	free(cf->source);
	free(cf->admin);
	free(cf->aliases);
	free(cf->domain);
	free(cf->metrics_textfile);
	memset(cf, 0, sizeof(*cf));
}

const struct conf_transport *
conf_transport_find(const struct conf *cf, const char *name)
{
	for (size_t i = 0; i < cf->transport_count; i++)
		if (strcmp(cf->transports[i].name, name) == 0)
			return &cf->transports[i];
	return NULL;
}

int64_t
conf_retry_delay(const struct conf *cf, unsigned attempt)
{
	size_t i = attempt == 0 ? 0 : attempt - 1;

	if (cf->retry_count == 0)
		return 60;
	if (i >= cf->retry_count)
		i = cf->retry_count - 1;
	return cf->retry[i];
}

/*
 * conf.c - the INI file, SPOOLD_* environment overrides and the embedded
 * default, merged into one struct conf.
 *
 * inih is fed through a line reader of ours so that every refusal can name
 * the file and line, a line longer than inih's buffer is refused instead of
 * cut, and indentation never turns a line into a continuation of the
 * previous value. Every value is checked where it is read; the result is
 * all or nothing.
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

struct conf_parser {
	struct conf *cf;
	const char *where; /* file name, or "environment" */
	unsigned line;	   /* current line, 0 for the environment */
	const char *var;   /* current environment variable */
	char *route;	   /* the raw route value, resolved at the end */
	char *err;
	size_t errlen;
	int failed;
	FILE *fp;
	/* The embedded default transport was added (there is no file). */
	int embedded_default;
};

static void conf_fail(struct conf_parser *p, const char *section,
		      const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
conf_fail(struct conf_parser *p, const char *section, const char *key,
	  const char *fmt, ...)
{
	char why[256], at[32] = "";
	va_list ap;

	if (p->failed)
		return;
	p->failed = 1;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	/* line 0: a judgement of the whole file, such as the route */
	if (p->line > 0)
		snprintf(at, sizeof(at), ":%u", p->line);
	if (p->var != NULL)
		snprintf(p->err, p->errlen, "environment %s: %s", p->var, why);
	else if (key != NULL)
		snprintf(p->err, p->errlen, "%s%s: [%s] %s: %s", p->where, at,
			 section, key, why);
	else
		snprintf(p->err, p->errlen, "%s%s: %s", p->where, at, why);
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

static struct conf_transport *
conf_transport_get(struct conf_parser *p, const char *name)
{
	struct conf *cf = p->cf;
	struct conf_transport *t;

	for (size_t i = 0; i < cf->transport_count; i++)
		if (strcmp(cf->transports[i].name, name) == 0)
			return &cf->transports[i];
	if (cf->transport_count == CONF_MAX_TRANSPORTS) {
		conf_fail(p, "transport", name, "more than %d transports",
			  CONF_MAX_TRANSPORTS);
		return NULL;
	}
	if (name[0] == '\0' || strlen(name) >= CONF_NAME_MAX) {
		conf_fail(p, "transport", name,
			  "a transport needs a name of 1 to %d characters",
			  CONF_NAME_MAX - 1);
		return NULL;
	}
	for (const char *c = name; *c; c++) {
		if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_') {
			conf_fail(p, "transport", name,
				  "transport names use letters, digits, - "
				  "and _ only");
			return NULL;
		}
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
	conf_fail(p, "spool", key, "unknown key");
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
	conf_fail(p, "delivery", key, "unknown key");
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
};

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
};

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
		if (strcmp(value, "smtp") == 0)
			t->type = CONF_TRANSPORT_SMTP;
		else if (strcmp(value, "maildir") == 0)
			t->type = CONF_TRANSPORT_MAILDIR;
		else {
			conf_fail(p, sec, key, "\"%s\" is not smtp or maildir",
				  value);
			return -1;
		}
		return 0;
	}
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
	conf_fail(p, sec, key, "unknown key");
	return -1;
}

static int
conf_apply(struct conf_parser *p, const char *section, const char *key,
	   const char *value)
{
	int rc;

	if (strchr(value, '#') != NULL) {
		/* Debian's inih keeps a "# comment" after a value as part of
		 * it; refusing beats sending mail to "host # old relay". */
		conf_fail(p, section, key,
			  "'#' in a value; put comments on their own line");
		return -1;
	}
	if (strcmp(section, "spool") == 0)
		rc = conf_spool_key(p, key, value);
	else if (strcmp(section, "delivery") == 0)
		rc = conf_delivery_key(p, key, value);
	else if (strncmp(section, "transport ", 10) == 0) {
		const char *name = section + 10;
		struct conf_transport *t;

		while (*name == ' ')
			name++;
		t = conf_transport_get(p, name);
		if (t == NULL)
			return -1;
		rc = conf_transport_key(p, t, key, value);
	} else {
		conf_fail(p, section, key, "unknown section [%s]", section);
		return -1;
	}
	if (rc == -ENOMEM)
		conf_fail(p, section, key, "out of memory");
	return rc;
}

static int
conf_ini_handler(void *user, const char *section, const char *name,
		 const char *value)
{
	struct conf_parser *p = user;

	if (p->failed)
		return 0;
	if (name == NULL)
		return 1; /* a section header alone */
	if (section[0] == '\0') {
		conf_fail(p, NULL, NULL, "key \"%s\" outside a section", name);
		return 0;
	}
	return conf_apply(p, section, name, value) == 0;
}

/* fgets for inih: counts lines, refuses long ones, strips indentation. */
static char *
conf_ini_reader(char *str, int num, void *stream)
{
	struct conf_parser *p = stream;
	size_t len;
	char *s;

	if (p->failed || fgets(str, num, p->fp) == NULL)
		return NULL;
	p->line++;
	len = strlen(str);
	if (len == (size_t)num - 1 && str[len - 1] != '\n' && !feof(p->fp)) {
		conf_fail(p, NULL, NULL, "line longer than %d bytes",
			  CONF_LINE_MAX - 2);
		return NULL;
	}
	for (s = str; *s == ' ' || *s == '\t'; s++)
		;
	memmove(str, s, strlen(s) + 1);
	return str;
}

static int
conf_parse_file(struct conf_parser *p, const char *path)
{
	int rc;

	p->fp = fopen(path, "r");
	if (p->fp == NULL) {
		snprintf(p->err, p->errlen, "%s: %s", path, strerror(errno));
		return EX_CONFIG;
	}
	p->where = path;
	rc = ini_parse_stream(conf_ini_reader, p, conf_ini_handler, p);
	fclose(p->fp);
	p->fp = NULL;
	if (p->failed)
		return EX_CONFIG;
	if (rc != 0) {
		p->line = rc > 0 ? (unsigned)rc : p->line;
		conf_fail(p, NULL, NULL, "not a valid INI line");
		return EX_CONFIG;
	}
	return 0;
}

/* SPOOLD_TRANSPORT_<NAME>_<KEY>: the longest known key wins the suffix,
 * so SPOOLD_TRANSPORT_MAILU_PASSWORD_FILE is mailu's password_file. */
static int
conf_env_transport(struct conf_parser *p, const char *rest, const char *value)
{
	char lower[256], name[CONF_NAME_MAX];
	size_t len = strlen(rest), best = 0;
	const char *key = NULL;
	struct conf_transport *t;

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
	if (key == NULL || len - best - 1 >= sizeof(name)) {
		conf_fail(p, NULL, NULL,
			  "expected SPOOLD_TRANSPORT_<NAME>_<KEY> with a "
			  "known key");
		return -1;
	}
	memcpy(name, lower, len - best - 1);
	name[len - best - 1] = '\0';
	/* the embedded relay, set up from the environment, is meant */
	if (p->embedded_default && strcmp(name, CONF_EMBEDDED_NAME) == 0)
		p->embedded_default = 0;
	t = conf_transport_get(p, name);
	if (t == NULL)
		return -1;
	return conf_transport_key(p, t, key, value);
}

static int
conf_parse_env(struct conf_parser *p)
{
	for (char **e = environ; *e != NULL && !p->failed; e++) {
		const char *eq = strchr(*e, '='), *rest;
		char var[256], section[16], key[64];
		int rc = 0;

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
			rc = conf_env_transport(p, rest + 10, eq + 1);
		} else if (strncmp(rest, "SPOOL_", 6) == 0 ||
			   strncmp(rest, "DELIVERY_", 9) == 0) {
			const char *k = strchr(rest, '_') + 1;
			size_t sl = (size_t)(k - 1 - rest), i;

			for (i = 0; i < sl && i < sizeof(section) - 1; i++)
				section[i] =
				    (char)tolower((unsigned char)rest[i]);
			section[i] = '\0';
			for (i = 0; k[i] && i < sizeof(key) - 1; i++)
				key[i] = (char)tolower((unsigned char)k[i]);
			key[i] = '\0';
			rc = conf_apply(p, section, key, eq + 1);
		} else if (strncmp(rest, "TEST_", 5) != 0) {
			conf_fail(p, NULL, NULL,
				  "unknown variable (expected SPOOLD_SPOOL_*, "
				  "SPOOLD_DELIVERY_* or SPOOLD_TRANSPORT_*)");
			rc = -1;
		}
		if (rc == -ENOMEM)
			conf_fail(p, NULL, NULL, "out of memory");
	}
	p->var = NULL;
	return p->failed ? EX_CONFIG : 0;
}

static int
conf_defaults(struct conf *cf)
{
	memset(cf, 0, sizeof(*cf));
	cf->spool_dir = strdup(CONF_DEFAULT_SPOOL);
	cf->max_size = 10 * 1024 * 1024;
	cf->concurrency = 4;
	cf->retry[0] = 60;
	cf->retry[1] = 300;
	cf->retry[2] = 900;
	cf->retry[3] = 3600;
	cf->retry_count = 4;
	cf->max_age = 5 * 86400;
	cf->bounce = 0;
	cf->aliases = strdup(CONF_DEFAULT_ALIASES);
	return cf->spool_dir == NULL || cf->aliases == NULL ? -ENOMEM : 0;
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

static int
conf_resolve(struct conf_parser *p)
{
	struct conf *cf = p->cf;

	p->where = cf->source;
	p->line = 0;
	if (p->route != NULL) {
		char *items[CONF_MAX_TRANSPORTS];
		int n = conf_split_list(p->route, items, CONF_MAX_TRANSPORTS);

		if (n <= 0) {
			conf_fail(p, "delivery", "route", "names no transport");
			return EX_CONFIG;
		}
		for (int i = 0; i < n; i++) {
			size_t j;

			for (j = 0; j < cf->transport_count; j++)
				if (strcmp(cf->transports[j].name, items[i]) ==
				    0)
					break;
			if (j == cf->transport_count) {
				conf_fail(p, "delivery", "route",
					  "no [transport %s] section",
					  items[i]);
				return EX_CONFIG;
			}
			cf->route[cf->route_count++] = j;
		}
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
	}
	if (cf->route_count == 0) {
		conf_fail(p, "delivery", "route", "no transport configured");
		return EX_CONFIG;
	}
	for (size_t j = 0; j < cf->transport_count; j++) {
		struct conf_transport *t = &cf->transports[j];
		char sec[CONF_NAME_MAX + 16];

		snprintf(sec, sizeof(sec), "transport %s", t->name);
		if (t->type == CONF_TRANSPORT_SMTP && t->host == NULL) {
			conf_fail(p, sec, "host", "an smtp transport needs it");
			return EX_CONFIG;
		}
		if (t->type == CONF_TRANSPORT_MAILDIR &&
		    (t->path == NULL || t->path[0] != '/')) {
			conf_fail(p, sec, "path",
				  "a maildir transport needs an absolute path");
			return EX_CONFIG;
		}
		if ((t->user == NULL) != (t->password_file == NULL)) {
			conf_fail(p, sec, t->user ? "password_file" : "user",
				  "user and password_file go together");
			return EX_CONFIG;
		}
		if (t->port == 0)
			t->port = t->tls == CONF_TLS_IMPLICIT	? 465
				  : t->tls == CONF_TLS_STARTTLS ? 587
								: 25;
	}
	return 0;
}

int
conf_load(struct conf *out, const char *path, char *err, size_t errlen)
{
	struct conf_parser p = {.cf = out, .err = err, .errlen = errlen};
	const char *env = getenv("SPOOLD_CONFIG");
	int rc;

	if (conf_defaults(out) < 0) {
		snprintf(err, errlen, "out of memory");
		conf_free(out);
		return EX_OSERR;
	}
	if (path == NULL && env != NULL && env[0] != '\0')
		path = env;
	if (path == NULL && access(CONF_DEFAULT_PATH, F_OK) == 0)
		path = CONF_DEFAULT_PATH;
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
	if (rc == 0)
		rc = conf_parse_env(&p);
	if (rc == 0)
		rc = conf_resolve(&p);
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
	free(cf->source);
	free(cf->admin);
	free(cf->aliases);
	free(cf->domain);
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

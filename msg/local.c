/*
 * local.c - mail for the host's own names: the aliases file, the admin
 * address, and the names that make an address local.
 *
 * A notification host has no mailboxes. Mail for root, for a cron job's
 * owner, for user@localhost or user@this-host goes through the aliases
 * file and, when a local name remains, to the admin address. This is
 * applied at submission, so the envelope stored in the spool is final and
 * spoold never rewrites it.
 *
 * The aliases file is root's, but it is read by every submitter and by
 * newaliases: the parser bounds every entry, skips what it cannot use
 * (commands, files, :include:) with a warning instead of refusing, and
 * never lets a broken line stop mail to the other names.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "msg_int.h"
#include "spool/util.h"

/* Entries are bounded so that a runaway continuation cannot grow
 * without limit; real entries are a few lines. */
#define ALIASES_ENTRY_MAX 65536
#define ALIASES_FILE_MAX (16 * 1024 * 1024)

/* ---- the aliases table ---------------------------------------------- */

void
msg_aliases_free(struct msg_aliases *a)
{
	for (size_t i = 0; i < a->n; i++) {
		free(a->v[i].name);
		msg_strlist_free(&a->v[i].targets);
	}
	free(a->v);
	memset(a, 0, sizeof(*a));
}

static void aliases_warn(msg_aliases_warn_fn *warn, void *arg, unsigned line,
			 const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
aliases_warn(msg_aliases_warn_fn *warn, void *arg, unsigned line,
	     const char *fmt, ...)
{
	char why[256];
	va_list ap;

	if (warn == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	for (char *c = why; *c != '\0'; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	warn(arg, line, why);
}

/* A local name: what may stand before the colon and be looked up. */
static int
aliases_name_ok(const char *s, size_t n)
{
	if (n == 0 || n > MSG_LOCAL_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c == 0x7f || c == '@' || c == ':' ||
		    c == ',' || c == '"' || c == '\\')
			return 0;
	}
	return 1;
}

/* A target spoold can deliver to: an address or a local name. */
static int
aliases_target_check(const char *t, char *why, size_t whylen)
{
	char probe[MSG_ADDR_MAX + 16];

	if (t[0] == '|')
		return snprintf(why, whylen,
				"a command (%.40s) is not "
				"delivered by spoold",
				t),
		       -1;
	if (t[0] == '/')
		return snprintf(why, whylen,
				"a file (%.40s) is not "
				"delivered by spoold",
				t),
		       -1;
	if (strncasecmp(t, ":include:", 9) == 0)
		return snprintf(why, whylen, ":include: is not supported"), -1;
	if (strchr(t, '@') != NULL)
		return msg_addr_check(t, 0, why, whylen) == 0 ? 0 : -1;
	if (!aliases_name_ok(t, strlen(t)))
		return snprintf(why, whylen,
				"\"%.40s\" is neither an "
				"address nor a local name",
				t),
		       -1;
	/* a local name must also make an address once qualified */
	snprintf(probe, sizeof(probe), "%s@localhost", t);
	return msg_addr_check(probe, 0, why, whylen) == 0 ? 0 : -1;
}

/* Splits the right side of an entry at commas and white space outside
 * double quotes and adds each usable target; the rest are warned about. */
static int
aliases_targets(const char *s, size_t n, struct msg_alias *al, unsigned line,
		msg_aliases_warn_fn *warn, void *arg)
{
	size_t i = 0;

	while (i < n) {
		size_t start, end;
		int quoted = 0;
		char *t, why[256];

		while (i < n && (isspace((unsigned char)s[i]) || s[i] == ','))
			i++;
		if (i == n)
			break;
		start = i;
		/* white space separates too: no target holds it unquoted */
		for (; i < n && (quoted || (s[i] != ',' &&
					    !isspace((unsigned char)s[i])));
		     i++)
			if (s[i] == '"')
				quoted = !quoted;
		end = i;
		while (end > start && isspace((unsigned char)s[end - 1]))
			end--;
		/* "|command args" and "/file" may be quoted */
		if (end - start >= 2 && s[start] == '"' && s[end - 1] == '"') {
			start++;
			end--;
		}
		t = strndup(s + start, end - start);
		if (t == NULL)
			return -ENOMEM;
		if (aliases_target_check(t, why, sizeof(why)) < 0)
			aliases_warn(warn, arg, line, "%s: skipped: %s",
				     al->name, why);
		else if (msg_strlist_add(&al->targets, t) < 0) {
			free(t);
			return -ENOMEM;
		}
		free(t);
	}
	return 0;
}

/* One entry, its continuation lines joined: "name: targets". */
static int
aliases_entry(struct msg_aliases *a, const char *s, size_t n, unsigned line,
	      msg_aliases_warn_fn *warn, void *arg)
{
	const char *colon = memchr(s, ':', n);
	size_t nlen;
	struct msg_alias *al;

	if (colon == NULL) {
		aliases_warn(warn, arg, line, "skipped: not \"name: target\"");
		return 0;
	}
	nlen = (size_t)(colon - s);
	while (nlen > 0 && isspace((unsigned char)s[nlen - 1]))
		nlen--;
	if (!aliases_name_ok(s, nlen)) {
		aliases_warn(warn, arg, line,
			     "skipped: \"%.*s\" is not a local name",
			     (int)(nlen > 40 ? 40 : nlen), s);
		return 0;
	}
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 16;
		struct msg_alias *nv = realloc(a->v, cap * sizeof(*nv));

		if (nv == NULL)
			return -ENOMEM;
		a->v = nv;
		a->cap = cap;
	}
	al = &a->v[a->n];
	memset(al, 0, sizeof(*al));
	al->line = line;
	if ((al->name = strndup(s, nlen)) == NULL)
		return -ENOMEM;
	for (char *c = al->name; *c != '\0'; c++)
		*c = (char)tolower((unsigned char)*c);
	a->n++;
	if (aliases_targets(colon + 1, n - (size_t)(colon + 1 - s), al, line,
			    warn, arg) < 0)
		return -ENOMEM;
	if (al->targets.n == 0)
		aliases_warn(warn, arg, line,
			     "%s: no target spoold can deliver to; mail for "
			     "it goes on as if it had no alias",
			     al->name);
	return 0;
}

static int
aliases_cmp(const void *x, const void *y)
{
	const struct msg_alias *a = x, *b = y;
	int c = strcmp(a->name, b->name);

	if (c != 0)
		return c;
	return a->line < b->line ? -1 : a->line > b->line;
}

/* Sorted by name for bsearch; of a name given twice the first wins, as
 * in every aliases file reader. */
static void
aliases_index(struct msg_aliases *a, msg_aliases_warn_fn *warn, void *arg)
{
	size_t keep = 0;

	if (a->n > 1)
		qsort(a->v, a->n, sizeof(*a->v), aliases_cmp);
	for (size_t i = 0; i < a->n; i++) {
		if (keep > 0 &&
		    strcmp(a->v[keep - 1].name, a->v[i].name) == 0) {
			aliases_warn(warn, arg, a->v[i].line,
				     "%s: skipped: already defined on line %u",
				     a->v[i].name, a->v[keep - 1].line);
			free(a->v[i].name);
			msg_strlist_free(&a->v[i].targets);
			continue;
		}
		a->v[keep++] = a->v[i];
	}
	a->n = keep;
}

int
msg_aliases_parse(const char *text, size_t len, struct msg_aliases *out,
		  msg_aliases_warn_fn *warn, void *arg, char *err,
		  size_t errlen)
{
	struct msg_buf entry = {0};
	unsigned line = 0, entry_line = 0;
	size_t i = 0;
	/* have: an entry is being read; skipping: the continuation lines
	 * of one refused for its size */
	int have = 0, skipping = 0, rc = 0;

	memset(out, 0, sizeof(*out));
	while (i < len && rc == 0) {
		const char *s = text + i, *nl = memchr(s, '\n', len - i);
		size_t n = nl ? (size_t)(nl - s) : len - i;
		size_t k = 0;

		i += n + (nl != NULL);
		line++;
		if (n > 0 && s[n - 1] == '\r')
			n--;
		if (memchr(s, '\0', n) != NULL) {
			aliases_warn(warn, arg, line, "skipped: a NUL byte");
			continue;
		}
		while (k < n && isspace((unsigned char)s[k]))
			k++;
		if (k == n || s[k] == '#')
			continue; /* empty or comment: no entry ends here */
		if (k > 0 && skipping)
			continue;
		if (k > 0 && have) {
			/* continuation: white space joins it to the entry */
			if (entry.len + n + 1 > ALIASES_ENTRY_MAX) {
				aliases_warn(warn, arg, line,
					     "skipped: the entry of line %u is "
					     "over %d bytes",
					     entry_line, ALIASES_ENTRY_MAX);
				have = 0;
				skipping = 1;
				continue;
			}
			if (msg__buf_add(&entry, " ", 1) < 0 ||
			    msg__buf_add(&entry, s + k, n - k) < 0)
				rc = -ENOMEM;
			continue;
		}
		if (k > 0) {
			aliases_warn(warn, arg, line,
				     "skipped: a continuation line with no "
				     "entry before it");
			continue;
		}
		if (have)
			rc = aliases_entry(out, entry.p, entry.len, entry_line,
					   warn, arg);
		entry.len = 0;
		have = 0;
		skipping = 0;
		if (rc == 0 && n > ALIASES_ENTRY_MAX) {
			aliases_warn(warn, arg, line, "skipped: over %d bytes",
				     ALIASES_ENTRY_MAX);
			skipping = 1;
			continue;
		}
		if (rc == 0 && msg__buf_add(&entry, s, n) < 0)
			rc = -ENOMEM;
		have = 1;
		entry_line = line;
	}
	if (rc == 0 && have)
		rc = aliases_entry(out, entry.p, entry.len, entry_line, warn,
				   arg);
	msg__buf_free(&entry);
	if (rc < 0) {
		msg_aliases_free(out);
		return msg__oom(err, errlen);
	}
	aliases_index(out, warn, arg);
	return 0;
}

int
msg_aliases_load(const char *path, struct msg_aliases *out,
		 msg_aliases_warn_fn *warn, void *arg, char *err, size_t errlen)
{
	struct msg_buf b = {0};
	struct stat st;
	int fd, rc;

	memset(out, 0, sizeof(*out));
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0)
		return msg__err(err, errlen, EX_NOINPUT, "%s: %s", path,
				strerror(errno));
	/* a FIFO or a device would block or never end */
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return msg__err(err, errlen, EX_NOINPUT,
				"%s: not a regular file", path);
	}
	if (st.st_size > ALIASES_FILE_MAX) {
		close(fd);
		return msg__err(err, errlen, EX_DATAERR, "%s: over %d bytes",
				path, ALIASES_FILE_MAX);
	}
	for (;;) {
		char chunk[8192];
		ssize_t r = read(fd, chunk, sizeof(chunk));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = msg__err(err, errlen, EX_IOERR, "%s: %s", path,
				      strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		if (b.len + (size_t)r > ALIASES_FILE_MAX) {
			rc = msg__err(err, errlen, EX_DATAERR,
				      "%s: over %d bytes", path,
				      ALIASES_FILE_MAX);
			goto out;
		}
		if (msg__buf_add(&b, chunk, (size_t)r) < 0) {
			rc = msg__oom(err, errlen);
			goto out;
		}
	}
	rc = msg_aliases_parse(b.p ? b.p : "", b.len, out, warn, arg, err,
			       errlen);
out:
	close(fd);
	msg__buf_free(&b);
	return rc;
}

static int
aliases_key_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct msg_alias *)elem)->name);
}

const struct msg_alias *
msg_aliases_find(const struct msg_aliases *a, const char *name)
{
	char key[MSG_LOCAL_MAX + 1];
	size_t n = strlen(name);

	if (a == NULL || a->n == 0 || n > MSG_LOCAL_MAX)
		return NULL;
	for (size_t i = 0; i <= n; i++)
		key[i] = (char)tolower((unsigned char)name[i]);
	return bsearch(key, a->v, a->n, sizeof(*a->v), aliases_key_cmp);
}

/* ---- resolving a recipient ------------------------------------------ */

/* The local part of addr if addr is local (no domain, or one of the
 * host's names), copied into buf; NULL otherwise. */
static const char *
local_part(const struct msg_local *l, const char *addr, char *buf,
	   size_t buflen)
{
	const char *at = strrchr(addr, '@');
	size_t n;

	if (at == NULL)
		return str_copy(buf, addr, buflen) < buflen ? buf : NULL;
	for (size_t i = 0; i < l->nnames; i++) {
		if (l->names[i] == NULL || l->names[i][0] == '\0' ||
		    strcasecmp(at + 1, l->names[i]) != 0)
			continue;
		n = (size_t)(at - addr);
		if (n == 0 || n >= buflen)
			return NULL;
		memcpy(buf, addr, n);
		buf[n] = '\0';
		return buf;
	}
	return NULL;
}

/* A local name with no alias left: the admin, or the name in domain. */
static int
local_final(const struct msg_local *l, const char *name,
	    struct msg_strlist *out)
{
	char *q;
	int rc;

	if (l->admin != NULL && l->admin[0] != '\0')
		return msg_strlist_add(out, l->admin);
	if (asprintf(&q, "%s@%s", name, l->domain) < 0)
		return -ENOMEM;
	rc = msg_strlist_add(out, q);
	free(q);
	return rc;
}

/* One resolution: path holds the names being expanded, outermost first
 * (a name met again is a loop, and ends as a local name does); visits
 * bounds the work of an aliases file whose names fan out at every level. */
struct expand {
	const struct msg_local *l;
	const char *path[MSG_ALIAS_DEPTH];
	size_t visits;
	struct msg_strlist *out;
};

static int
local_expand(struct expand *x, const char *addr, size_t depth)
{
	char name[MSG_LOCAL_MAX + 1];
	const struct msg_alias *al;
	int rc = 0;

	if (local_part(x->l, addr, name, sizeof(name)) == NULL) {
		if (strchr(addr, '@') != NULL)
			return msg_strlist_add(x->out, addr);
		/* a bare name too long to be an alias: qualified as is */
		return local_final(x->l, addr, x->out);
	}
	al = msg_aliases_find(x->l->aliases, name);
	if (al == NULL || al->targets.n == 0 || depth == MSG_ALIAS_DEPTH ||
	    ++x->visits > MSG_ALIAS_VISITS)
		return local_final(x->l, name, x->out);
	for (size_t i = 0; i < depth; i++)
		if (strcmp(x->path[i], al->name) == 0)
			return local_final(x->l, name, x->out);
	x->path[depth] = al->name;
	for (size_t i = 0; i < al->targets.n && rc == 0; i++)
		rc = local_expand(x, al->targets.v[i], depth + 1);
	return rc;
}

int
msg_local_resolve(const struct msg_local *l, const char *addr,
		  struct msg_strlist *out, char *err, size_t errlen)
{
	struct expand x = {.l = l, .out = out};

	if (local_expand(&x, addr, 0) < 0)
		return msg__oom(err, errlen);
	return 0;
}

/* ---- the host's names ----------------------------------------------- */

/* The first line of path, if it is a plausible domain. */
static int
host_mailname(const char *path, char *out, size_t outlen)
{
	char line[256];
	FILE *fp = fopen(path, "re");
	size_t n;

	if (fp == NULL)
		return -1;
	if (fgets(line, sizeof(line), fp) == NULL) {
		fclose(fp);
		return -1;
	}
	fclose(fp);
	n = strcspn(line, "\r\n");
	while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t'))
		n--;
	line[n] = '\0';
	if (!msg_domain_ok(line))
		return -1;
	str_copy(out, line, outlen);
	return 0;
}

/* The FQDN the hosts file gives name: a name on a line that names the
 * host, starting with "name.". No DNS: a submission must never wait on
 * the network, which is down exactly when alarms are sent. */
static int
host_fqdn(const char *path, const char *name, char *out, size_t outlen)
{
	char line[1024];
	size_t nlen = strlen(name);
	FILE *fp = fopen(path, "re");
	int found = -1;

	if (fp == NULL)
		return -1;
	while (found < 0 && fgets(line, sizeof(line), fp) != NULL) {
		char *save = NULL, *tok, *cand = NULL;
		int names_host = 0;

		line[strcspn(line, "#\n")] = '\0';
		tok = strtok_r(line, " \t", &save); /* the address */
		while (tok != NULL && (tok = strtok_r(NULL, " \t", &save))) {
			if (strcasecmp(tok, name) == 0)
				names_host = 1;
			else if (cand == NULL &&
				 strncasecmp(tok, name, nlen) == 0 &&
				 tok[nlen] == '.' && msg_domain_ok(tok))
				cand = tok;
		}
		if (names_host && cand != NULL) {
			str_copy(out, cand, outlen);
			found = 0;
		}
	}
	fclose(fp);
	return found;
}

int
msg_domain_ok(const char *d)
{
	size_t n = strlen(d), label = 0;

	if (n == 0 || n > 253 || d[0] == '.' || d[n - 1] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];

		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
			continue;
		}
		if (!isalnum(c) && c != '-' && c != '_')
			return 0;
		if (++label > 63)
			return 0;
	}
	return 1;
}

int
msg_host_init(struct msg_host *h, const char *domain, const char *mailname,
	      const char *hosts, char *err, size_t errlen)
{
	memset(h, 0, sizeof(*h));
	if (gethostname(h->name, sizeof(h->name) - 1) < 0 || h->name[0] == '\0')
		str_copy(h->name, "localhost", sizeof(h->name));
	if (strchr(h->name, '.') != NULL ||
	    host_fqdn(hosts ? hosts : "/etc/hosts", h->name, h->fqdn,
		      sizeof(h->fqdn)) < 0)
		str_copy(h->fqdn, h->name, sizeof(h->fqdn));
	if (domain != NULL && domain[0] != '\0') {
		if (str_copy(h->domain, domain, sizeof(h->domain)) >=
		    sizeof(h->domain))
			return msg__err(err, errlen, EX_CONFIG,
					"domain too long");
	} else if (host_mailname(mailname ? mailname : "/etc/mailname",
				 h->domain, sizeof(h->domain)) < 0) {
		str_copy(h->domain, h->fqdn, sizeof(h->domain));
	}
	h->names[0] = "localhost";
	h->names[1] = "localhost.localdomain";
	h->names[2] = h->name;
	h->names[3] = h->fqdn;
	return 0;
}

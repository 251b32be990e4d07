/*
 * spool/msg.h - RFC 5321/5322 handling for submission: address checks,
 * header parsing, and turning caller input into the canonical message that
 * the spool stores (CRLF line ends, exactly one Date, From and Message-ID,
 * no Bcc, no line over 998 octets).
 *
 * Functions that judge input return 0 or a sysexits code (EX_DATAERR for
 * bad input, EX_USAGE for a missing recipient, EX_SOFTWARE / EX_OSERR on
 * allocation failure) and write one human-readable line into err.
 */
#ifndef SPOOL_MSG_H
#define SPOOL_MSG_H

#include <stddef.h>
#include <time.h>

#define MSG_LOCAL_MAX 64
#define MSG_DOMAIN_MAX 255
#define MSG_ADDR_MAX 254 /* RFC 5321 path limit minus the angle brackets */

/*
 * Checks an envelope address (addr-spec, no angle brackets, no comment).
 * Refuses empty, CR/LF/NUL/control characters, spaces outside a quoted
 * local part, a missing or empty domain, over-long parts. UTF-8 is allowed
 * (SMTPUTF8-style) when well-formed. allow_empty: "" (null sender) is ok.
 */
int msg_addr_check(const char *addr, int allow_empty, char *err, size_t errlen);

/* A growable list of malloc'd strings. */
struct msg_strlist {
	char **v;
	size_t n;
	size_t cap;
};
int msg_strlist_add(struct msg_strlist *l, const char *s); /* copies s */
void msg_strlist_free(struct msg_strlist *l);

/*
 * Extracts the addr-specs of an address-list header value (To, Cc, Bcc):
 * display names, comments, angle brackets, groups and folding handled.
 * Appends each to out. 0 or EX_DATAERR.
 */
int msg_addr_list_parse(const char *value, size_t len, struct msg_strlist *out,
			char *err, size_t errlen);

/* One header field of a parsed message. name and value point into the
 * message; value excludes "Name:" and the final line end, and keeps folds. */
struct msg_header {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
	const char *start; /* the whole field, for copying */
	size_t len;	   /* including its line end */
};

struct msg_headers {
	struct msg_header *h;
	size_t n;
	size_t cap;
	size_t body_off; /* first byte after the blank line, or len if none */
};

/*
 * Splits the header section of data (any line ends). A message with no
 * blank line is all header if every line is a header field, else the
 * header ends before the first line that is not one (that line starts the
 * body). Refuses NUL bytes.
 */
int msg_headers_parse(const char *data, size_t len, struct msg_headers *out,
		      char *err, size_t errlen);
void msg_headers_free(struct msg_headers *hs);
/* The first header named name (case-insensitive), or NULL. */
const struct msg_header *msg_headers_find(const struct msg_headers *hs,
					  const char *name);

/*
 * Appends the recipients of arg (one address or a list, as a command line
 * or an SMTP RCPT gives it) to out exactly as msg_prepare reads its
 * recipient arguments: "@host" added when an address has no domain, each
 * checked with msg_addr_check. 0, EX_DATAERR (err says why) or EX_OSERR.
 */
int msg_rcpt_parse(struct msg_strlist *out, const char *arg, const char *host,
		   char *err, size_t errlen);
/* ---- mail for the host's own names (local.c) ---- */

/* How many aliases deep a name is expanded before it counts as a loop. */
#define MSG_ALIAS_DEPTH 8
/* How many aliases one address may go through in all; past it, names
 * are treated as having none. */
#define MSG_ALIAS_VISITS 1000

/* One entry of an aliases file: a local name and its targets (addresses
 * or local names), in the file's order. */
struct msg_alias {
	char *name; /* lower case */
	struct msg_strlist targets;
	unsigned line;
};

/* Sorted by name; owned by the caller, freed with msg_aliases_free. */
struct msg_aliases {
	struct msg_alias *v;
	size_t n;
	size_t cap;
};

/* Called for each line or target the parser skips (why: one line). */
typedef void msg_aliases_warn_fn(void *arg, unsigned line, const char *why);

/*
 * Parses text in /etc/aliases format: "name: target, target", lines
 * starting with '#' are comments, lines starting with white space
 * continue the entry before them, names are case-insensitive. Commands
 * ("|..."), files ("/..."), ":include:" and malformed entries are skipped
 * with a warning; of a name given twice the first wins. 0, or EX_OSERR
 * when out of memory (out is then empty).
 */
int msg_aliases_parse(const char *text, size_t len, struct msg_aliases *out,
		      msg_aliases_warn_fn *warn, void *arg, char *err,
		      size_t errlen);
/* The file at path; a missing file is an empty table. 0, EX_NOINPUT
 * (unreadable or not a regular file), EX_DATAERR (over 16 MB), EX_IOERR. */
int msg_aliases_load(const char *path, struct msg_aliases *out,
		     msg_aliases_warn_fn *warn, void *arg, char *err,
		     size_t errlen);
void msg_aliases_free(struct msg_aliases *a);
/* The entry of name (any case), or NULL. a may be NULL. */
const struct msg_alias *msg_aliases_find(const struct msg_aliases *a,
					 const char *name);

/* What makes a recipient local, and where local mail goes. */
struct msg_local {
	const char *admin;	  /* NULL: a local name becomes NAME@domain */
	const char *domain;	  /* qualifies bare names */
	const char *const *names; /* the host's own domains */
	size_t nnames;
	const struct msg_aliases *aliases; /* NULL: none */
};

/*
 * Appends to out where mail for addr goes. addr is local when it has no
 * domain or one of l->names: its local part goes through the aliases
 * (targets that are local again are expanded too, MSG_ALIAS_DEPTH deep and
 * MSG_ALIAS_VISITS aliases in all; a name met again ends there) and every local
 * name left becomes l->admin, or NAME@domain without one. Other addresses are
 * appended unchanged. Nothing is checked here: the caller checks what it
 * appends. 0 or EX_OSERR.
 */
int msg_local_resolve(const struct msg_local *l, const char *addr,
		      struct msg_strlist *out, char *err, size_t errlen);

/* The host's names, as submission uses them. */
struct msg_host {
	char name[256];	      /* gethostname() */
	char fqdn[256];	      /* the hosts file's "name.domain", else name */
	char domain[256];     /* qualifies bare senders and names */
	const char *names[4]; /* localhost, localhost.localdomain, name, fqdn */
};

/*
 * Fills h: domain is the given one, else the first line of mailname
 * (NULL: /etc/mailname), else the FQDN from hosts (NULL: /etc/hosts),
 * else the host name. Never asks DNS. 0 or EX_CONFIG.
 */
int msg_host_init(struct msg_host *h, const char *domain, const char *mailname,
		  const char *hosts, char *err, size_t errlen);

/* 1 if d is a plausible domain name: dot-separated labels of letters,
 * digits, '-' and '_', at most 63 each and 253 in all. */
int msg_domain_ok(const char *d);

/* What sendmail-style submission was asked for. */
struct msg_submit_opts {
	const char *sender;    /* -f, NULL: the From address or user@host */
	const char *full_name; /* -F, used only when From is added */
	int extract_rcpts;     /* -t: To, Cc, Bcc plus the argument list */
	size_t max_size;       /* of the canonical message; 0: no limit */
	const char *user;      /* login name, for an added From */
	const char *hostname;  /* for an added From and Message-ID */
	/* NULL: bare recipients get @hostname; else they and local
	 * addresses are resolved by msg_local_resolve */
	const struct msg_local *local;
};

/* The canonical message and its envelope. */
struct msg_prepared {
	char *data; /* CRLF, ready to spool */
	size_t len;
	char *sender;		 /* "" for <> */
	struct msg_strlist rcpt; /* de-duplicated, in order */
};
void msg_prepared_free(struct msg_prepared *p);

/*
 * Canonicalises a raw message: bare LF or CR become CRLF; Date,
 * Message-ID and From are added when missing; Bcc is removed; with
 * extract_rcpts, recipients come from To/Cc/Bcc plus rcpt_args; a body
 * line over 998 octets makes the body quoted-printable (the headers get
 * MIME-Version / Content-Transfer-Encoding to match). Refuses NUL bytes,
 * no recipient (EX_USAGE), a bad address (EX_DATAERR), a message over
 * max_size (EX_DATAERR, "message too large").
 */
int msg_prepare(const char *in, size_t len, const struct msg_submit_opts *o,
		const char *const *rcpt_args, size_t nrcpt_args,
		struct msg_prepared *out, char *err, size_t errlen);

/* What `spoolctl submit --to ... --subject ...` asks for. */
struct msg_compose_opts {
	const char *const *to;
	size_t nto;
	const char *subject; /* UTF-8; RFC 2047 encoded when not plain ASCII */
	const char *from;    /* NULL: user@hostname */
	const char *body;    /* UTF-8 text, any line ends */
	size_t body_len;
	const char *user;
	const char *hostname;
	size_t max_size;
	const struct msg_local *local; /* as in msg_submit_opts */
};

/*
 * Builds a complete MIME message (Date, Message-ID, From, To, Subject,
 * MIME-Version, Content-Type text/plain; charset=utf-8, and a
 * Content-Transfer-Encoding that keeps every line within 998 octets).
 * Refuses CR/LF in subject or addresses (header injection).
 */
int msg_compose(const struct msg_compose_opts *o, struct msg_prepared *out,
		char *err, size_t errlen);

/*
 * The trace header that records who submitted a message, as Postfix's
 * pickup does ("from userid 1000"): one field, folded, CRLF ended,
 *   Received: from userid UID by HOST (spoold) id ID;\r\n\tDATE\r\n
 * for the first line of the message's header. uid is the kernel's word
 * (getuid(), or the owner of a dropped file), never the message's. A host
 * name with a character outside letters, digits, '.', '-' and '_' is
 * written as "localhost". Returns the length written, or -ERANGE if buf
 * (MSG_RECEIVED_MAX is always enough) is too small.
 */
#define MSG_RECEIVED_MAX 512
int msg_received_format(char *buf, size_t len, unsigned long uid,
			const char *host, const char *id, time_t when);

/*
 * The uid in such a field when it is the first line of msg (len bytes):
 * 0 and *uid, or -ENOENT. Only for a file whose owner vouches for it (one
 * of the daemon's, written by root's spoolctl): any other file's first
 * line is the submitter's word.
 */
int msg_received_uid(const char *msg, size_t len, unsigned long *uid);

#endif

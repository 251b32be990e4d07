/*
 * spool/conf.h - the configuration of spoold and spoolctl.
 *
 * Sources, later ones winning key by key: the embedded default, the INI
 * file, then SPOOLD_<SECTION>_<KEY> environment variables (for a transport
 * section: SPOOLD_TRANSPORT_<NAME>_<KEY>). Every refusal names the file and
 * line (or the variable) and the key, and an unknown key near a known one
 * names it ("did you mean connect_timeout?").
 *
 * Section words, transport names and keys are case-insensitive (they are
 * folded to lower case, as the environment's names are); a value between
 * matching double or single quotes loses them, nothing inside is
 * interpreted, and only there may a value hold '#'.
 */
#ifndef SPOOL_CONF_H
#define SPOOL_CONF_H

#include <stddef.h>
#include <stdint.h>

#define CONF_DEFAULT_PATH "/etc/spoold/spoold.conf"
#define CONF_DEFAULT_SPOOL "/var/spool/spoold"
#define CONF_DEFAULT_USER "spoold"
#define CONF_DEFAULT_SUBMIT_GROUP "spoold-submit"
#define CONF_DEFAULT_ALIASES "/etc/aliases"
#define CONF_MAX_TRANSPORTS 16
#define CONF_MAX_RETRY 16
#define CONF_MAX_CONCURRENCY 64
#define CONF_MAX_EXPECT 16
#define CONF_NAME_MAX 64

enum conf_tls { CONF_TLS_NONE, CONF_TLS_STARTTLS, CONF_TLS_IMPLICIT };
enum conf_transport_type {
	CONF_TRANSPORT_SMTP,
	CONF_TRANSPORT_MAILDIR,
	/* push services: one HTTP request per message */
	CONF_TRANSPORT_NTFY,
	CONF_TRANSPORT_GOTIFY,
	CONF_TRANSPORT_MATRIX,
	CONF_TRANSPORT_TELEGRAM,
	CONF_TRANSPORT_WEBHOOK,
};

/* The `type =` word of t, e.g. "smtp", "ntfy". */
const char *conf_transport_type_name(enum conf_transport_type t);
enum conf_probe_method { CONF_PROBE_HEAD, CONF_PROBE_GET };

struct conf_transport {
	char name[CONF_NAME_MAX];
	enum conf_transport_type type;
	/* smtp */
	char *host;
	unsigned port;
	enum conf_tls tls;
	char *ca_file;	     /* NULL: the system store */
	char *user;	     /* NULL: no AUTH */
	char *password_file; /* read at each connection, never cached */
	char *from;	     /* envelope sender on this transport, or NULL */
	char *helo;	     /* EHLO name, NULL: the host name */
	int64_t connect_timeout; /* seconds */
	int64_t timeout;	 /* seconds, every SMTP stage */
	/* reachability probe */
	char *probe_url; /* NULL: no probe, health from connections only */
	long probe_expect[CONF_MAX_EXPECT];
	size_t probe_expect_count;
	int64_t probe_interval; /* seconds */
	int64_t probe_timeout;	/* seconds */
	enum conf_probe_method probe_method;
	/* maildir */
	char *path;
	/* push services (ntfy, gotify, matrix, telegram, webhook) */
	char *url;	  /* the service's URL; telegram: the API root */
	char *token_file; /* read at each delivery, never cached */
	char *room;	  /* matrix: the room id */
	char *chat_id;	  /* telegram: the chat */
	int priority;	  /* ntfy 1-5, gotify 0-10; -1: the service's */
	/* rate limit, a token bucket: rate_count messages per rate_period
	 * seconds (0: none), holding up to burst (default rate_count) */
	unsigned rate_count;
	int64_t rate_period;
	unsigned burst;
	int rate_overflow_next; /* the excess goes to the route's next */
};

struct conf {
	char *source; /* "embedded default" or the file's path, for messages */
	/* [spool] */
	char *spool_dir;
	uint64_t max_size;
	int64_t failed_keep; /* seconds a failed message is kept, 0: always */
	char *spool_user;    /* the daemon runs as this user, never as root */
	char *submit_group;  /* may write tmp/ and new/; spoolctl is setgid */
	/* [delivery] */
	size_t route[CONF_MAX_TRANSPORTS]; /* indexes into transports[] */
	size_t route_count;
	unsigned concurrency;
	int64_t retry[CONF_MAX_RETRY]; /* seconds; the last step repeats */
	size_t retry_count;
	int64_t max_age; /* seconds */
	int bounce;
	/* where mail for local names goes (NULL: NAME@domain), the aliases
	 * file in /etc/aliases format (NULL: none), and the domain of bare
	 * addresses (NULL: /etc/mailname, else the FQDN); applied by
	 * spoolctl at submission */
	char *admin;
	char *aliases;
	char *domain;
	/* [metrics] */
	char *metrics_textfile;	  /* NULL: no file is written */
	int64_t metrics_interval; /* seconds between rewrites */
	/* [transport NAME] */
	struct conf_transport transports[CONF_MAX_TRANSPORTS];
	size_t transport_count;
};

/*
 * Loads the configuration. path: the -c argument or NULL. With NULL,
 * $SPOOLD_CONFIG, then CONF_DEFAULT_PATH, then the embedded default;
 * a file named by -c or $SPOOLD_CONFIG that does not exist is an error.
 * Returns 0, or a sysexits code (EX_CONFIG, EX_OSERR) with a one-line
 * message in err. On error *out is left empty (safe to conf_free).
 */
int conf_load(struct conf *out, const char *path, char *err, size_t errlen);

/* How conf_load_opts treats the problems it finds. */
struct conf_opts {
	/*
	 * For submit, which needs [spool] only: a problem anywhere else is
	 * a warning (its value keeps the default) and the load succeeds.
	 */
	int spool_only;
	/* Called once per problem, in order, with one line naming file,
	 * line, section and key; fatal is 0 for a warning. */
	void (*report)(void *arg, int fatal, const char *line);
	void *arg;
};

/*
 * conf_load with options (o may be NULL): every problem is reported, not
 * only the first, and err holds the first refusal.
 */
int conf_load_opts(struct conf *out, const char *path,
		   const struct conf_opts *o, char *err, size_t errlen);

/* Frees what conf_load allocated; the struct may be reused. */
void conf_free(struct conf *cf);

/* The transport named name, or NULL. */
const struct conf_transport *conf_transport_find(const struct conf *cf,
						 const char *name);

/* The delay before retry number attempt (1-based), before jitter. */
int64_t conf_retry_delay(const struct conf *cf, unsigned attempt);

#endif

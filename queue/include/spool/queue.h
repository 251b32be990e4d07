/*
 * spool/queue.h - the message spool (files, the truth) and its retry state
 * (LMDB, derived and rebuildable). Used by spoold and spoolctl.
 *
 * Spool directory layout:
 *   tmp/     files being written; renamed into new/ once durable
 *   new/     submitted, not yet seen by spoold (other programs drop here)
 *   cur/     known to spoold, waiting for delivery or retry
 *   failed/  failed permanently (or unreadable); kept for the operator
 *   state/   LMDB environment (data.mdb, lock.mdb)
 *
 * Spool file format (the README documents it for other programs):
 *   "SPOOLD 1\n"                     magic and version
 *   "T <unix seconds>\n"             optional: time queued
 *   "S <sender>\n"                   envelope sender; "S \n" is <>
 *   "K <key>\n"                      optional: coalescing key
 *   "E <seconds>\n"                  optional: digest window of the key
 *   "P urgent\n"                     optional: priority (urgent|normal)
 *   "R <recipient>\n"                one per recipient, pending
 *   "\n"                             end of envelope
 *   message                          RFC 5322, CRLF (bare LF tolerated)
 * spoold marks a recipient done by overwriting its 'R' in place with
 * 'D' (accepted upstream) or 'F' (failed permanently), so a recipient
 * accepted once is never sent to again even if state/ is lost.
 *
 * Functions return 0 or -errno unless stated; err (when given) receives one
 * human-readable line. Nothing returned points into LMDB memory.
 */
#ifndef SPOOL_QUEUE_H
#define SPOOL_QUEUE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* 14 hex digits of microseconds since the epoch, then 10 random hex
 * digits: unique across processes and hosts, sorts by time, a safe file
 * name. */
#define QUEUE_ID_LEN 24
#define QUEUE_REPLY_MAX 512
#define QUEUE_ADDR_MAX 320
/* Recipients of one message, at submission and at pickup alike: enough
 * for any notification list, and it bounds what one file can make the
 * daemon parse, store and log. */
#define SPOOL_RCPT_MAX 1000
/* The most an envelope can take (magic, T, S and SPOOL_RCPT_MAX recipient
 * lines of QUEUE_ADDR_MAX): a file in new/ larger than max_size plus this
 * plus SPOOL_TRACE_MAX is refused by its size alone, before any read. */
#define SPOOL_ENVELOPE_MAX ((SPOOL_RCPT_MAX + 4) * (QUEUE_ADDR_MAX + 4))
/* Room for the trace header a submitter adds after its max_size check. */
#define SPOOL_TRACE_MAX 1024

/*
 * 1 if rc (a -errno) is a passing condition of the system rather than a
 * fault of the file at hand: EMFILE, ENFILE, ENOMEM, ENOBUFS, EAGAIN
 * (EWOULDBLOCK: a lease), EINTR, EIO, ENOSPC, EDQUOT, EBUSY, ETXTBSY. Such
 * an error defers a message or retries a pickup; it never fails one.
 */
int queue_err_temporary(int rc);

enum queue_dir {
	QUEUE_DIR_TMP,
	QUEUE_DIR_NEW,
	QUEUE_DIR_CUR,
	QUEUE_DIR_FAILED,
	QUEUE_DIR_HOLD
};

enum queue_msg_state {
	QUEUE_MSG_QUEUED,
	QUEUE_MSG_DEFERRED,
	QUEUE_MSG_DELIVERING,
	QUEUE_MSG_HELD,
	QUEUE_MSG_FAILED,
};

enum queue_rcpt_state {
	QUEUE_RCPT_PENDING,
	QUEUE_RCPT_SENT,
	QUEUE_RCPT_FAILED,
};

const char *queue_msg_state_name(enum queue_msg_state s);
const char *queue_rcpt_state_name(enum queue_rcpt_state s);

/* 1 if s is a well-formed queue id. */
int queue_id_valid(const char *s);
/* A fresh id into out (QUEUE_ID_LEN + 1 bytes). */
int queue_id_new(char out[QUEUE_ID_LEN + 1]);
/* The time an id was made, in microseconds since the epoch; -1 if id is
 * not valid. */
int64_t queue_id_time_us(const char *id);

/* ---- spool files -------------------------------------------------- */

struct spool; /* open directory handles; thread-safe for distinct ids */

/*
 * Opens dir; with create, makes dir and its subfolders and, when this
 * process owns them, sets their modes: the owner and the group of tmp/
 * and new/ may submit, no one else may read. The spool is 0711; tmp/ and
 * new/ are 03730 (setgid: files get the folder's group; sticky: a file is
 * removable only by its owner; the group may not list); cur/, failed/,
 * hold/ and state/ are 0700; submitted files are 0640. A folder this
 * process may not read is still opened (O_PATH) for what it may do there,
 * so an unprivileged submitter can write tmp/ and rename into new/.
 */
int spool_open(struct spool **out, const char *dir, int create, char *err,
	       size_t errlen);
void spool_close(struct spool *sp); /* NULL is a no-op */

struct privs_ids;
/*
 * Root only: makes dir the spool of ids->uid, creating what is missing and
 * bringing a spool of an earlier model (root's, tmp/ and new/ writable by
 * all) to this one: the spool 0711 and cur/, hold/, failed/, state/ 0700
 * with their files, the user's; tmp/ and new/ 03730 owned by the user and
 * the submit group, their files 0640 in that group, their owners kept.
 * The files of state/ and the pid file are given back at every call (root
 * may have made them while no daemon ran). Idempotent. *adopted: 1 if the spool
 * existed and belonged to someone else. 0 or -errno with one line in err.
 */
int spool_own(const char *dir, const struct privs_ids *ids, int *adopted,
	      char *err, size_t errlen);
const char *spool_path(const struct spool *sp);
int spool_dirfd(const struct spool *sp, enum queue_dir d);
/* The owner of the spool directory: the daemon's user. */
uid_t spool_owner(const struct spool *sp);
/*
 * NULL if st is a file only root and the spool's owner can change: a
 * regular file of the spool's owner with one link and no write bit for
 * group or others. Else why not ("not owned by the spool's owner", ...).
 */
const char *spool_file_untrusted(const struct spool *sp, const struct stat *st);

struct spool_rcpt {
	char *address;
	enum queue_rcpt_state state;
	off_t mark_off; /* offset of the state byte in the file */
};

struct spool_envelope {
	char *sender; /* "" for the null sender */
	struct spool_rcpt *rcpt;
	size_t nrcpt;
	int64_t queued_at; /* unix seconds; 0 if the file had no T line */
	char *key;	   /* coalescing key (K line), or NULL */
	int64_t every;	   /* digest window in seconds (E line), 0: none */
	int urgent;	   /* P urgent */
};

/*
 * A coalescing key: 1 to SPOOL_KEY_MAX bytes of printable ASCII without
 * space, quote or backslash, so it is one word in a log line and safe in
 * a header. A digest window (E) is 1 s to SPOOL_EVERY_MAX.
 */
#define SPOOL_KEY_MAX 128
#define SPOOL_EVERY_MAX (366 * 86400)
/* NULL if key (len bytes) is a valid key, else why not. */
const char *spool_key_problem(const char *key, size_t len);

/* What a submission asks of the daemon besides delivery: K, E, P lines. */
struct spool_meta {
	const char *key; /* NULL: none */
	int64_t every;	 /* seconds; 0: none */
	int urgent;
};

void spool_envelope_free(struct spool_envelope *env);

/*
 * Parses a spool file image. On success fills env (caller frees with
 * spool_envelope_free) and *body_off (offset of the message). Refuses a
 * bad magic, a line without "X " form or of unknown type, an address with
 * a control character (CR, NUL, ...) or over QUEUE_ADDR_MAX, an empty
 * recipient, no or two S lines, no recipient, or a missing blank line:
 * -EINVAL and err. Envelope lines may end in CRLF.
 * Never reads past len; data need not be NUL-terminated.
 */
int spool_parse(const char *data, size_t len, struct spool_envelope *env,
		size_t *body_off, char *err, size_t errlen);

/*
 * Durable submission: writes the envelope and msg to tmp/ID, fsyncs it,
 * renames it into new/ID (never over an existing file) and fsyncs new/.
 * Returns 0 only when all of that is on disk; on any error nothing is left
 * in tmp/ or new/. id_out gets the id (QUEUE_ID_LEN + 1 bytes). More than
 * SPOOL_RCPT_MAX recipients is -EINVAL. Run by root, the file is given to
 * the spool's owner before it enters new/, so the daemon can take it as
 * it is (see spool_pickup_read).
 */
int spool_submit(struct spool *sp, const char *sender, const char *const *rcpt,
		 size_t nrcpt, const char *msg, size_t len,
		 char id_out[QUEUE_ID_LEN + 1], char *err, size_t errlen);
/* spool_submit under an id the caller made with queue_id_new (e.g. for a
 * trace header naming it). An existing new/ID is never replaced. */
int spool_submit_id(struct spool *sp, const char *id, const char *sender,
		    const char *const *rcpt, size_t nrcpt, const char *msg,
		    size_t len, char *err, size_t errlen);
/* spool_submit_id with K, E and P lines from meta (NULL: none); a bad key
 * or window is -EINVAL with err, and nothing is written. */
int spool_submit_meta(struct spool *sp, const char *id, const char *sender,
		      const char *const *rcpt, size_t nrcpt,
		      const struct spool_meta *meta, const char *msg,
		      size_t len, char *err, size_t errlen);

/*
 * An open spool file, its whole content in data. Only a file that
 * spool_file_untrusted passes is opened (else -EPERM): the daemon's own
 * files in cur/, hold/ and failed/, which it wrote itself or took from
 * new/ only after spool_pickup_read found them safe, so no one else can
 * truncate the file under a mapping. The open does not block (O_NONBLOCK).
 *
 * A file of up to SPOOL_FILE_READ_MAX bytes is read into memory; a larger
 * one is mapped. Reading is cheaper for the small files that are nearly
 * all of a notification spool: a mapping costs page faults and, in a
 * threaded process, a TLB shootdown on every core at munmap. data is a
 * copy or a private view: it does not show marks written after the open
 * (env.rcpt[i].state does).
 */
#define SPOOL_FILE_READ_MAX (64 * 1024)

struct spool_file {
	char id[QUEUE_ID_LEN + 1];
	int fd;
	int mapped;	  /* data is a mapping (else a malloc'd copy) */
	const char *data; /* the whole file */
	size_t size;
	size_t body_off;
	struct spool_envelope env;
	uid_t owner; /* st_uid: the submitter, for a file from new/ */
};

/* Opens and parses dir/ID (read-write so marks can be written). */
int spool_file_open(struct spool *sp, enum queue_dir d, const char *id,
		    struct spool_file *out, char *err, size_t errlen);
void spool_file_close(struct spool_file *f);

/* Overwrites recipient i's state byte in place (no fsync); one the file
 * holds already (read so, or written by an earlier call) is not written
 * again. */
int spool_file_mark(struct spool_file *f, size_t i, enum queue_rcpt_state st);
/* fdatasync: makes marks durable. */
int spool_file_sync(struct spool_file *f);

/* ---- pickup: the daemon reads new/, where it trusts nothing ------- */

/* A file read from the spool into memory, checked. */
struct spool_pickup {
	char *data; /* the whole file, malloc'd */
	size_t len;
	size_t body_off;
	struct spool_envelope env;
	uid_t uid;   /* its owner, from fstat: who submitted it; -1 unknown */
	int trusted; /* spool_file_untrusted passed: taken as it is */
};

/*
 * Reads d/ID as the daemon must read a file anyone may have written:
 * opened O_RDONLY|O_NOFOLLOW|O_NONBLOCK|O_NOCTTY (a FIFO, device, symlink
 * or lease cannot block; a write lease is -EAGAIN), a regular file only,
 * over max_size + SPOOL_ENVELOPE_MAX + SPOOL_TRACE_MAX refused by its size
 * before any read, then read() whole (never mapped) and checked by
 * spool_pickup_check. 0 with out filled (free with spool_pickup_free);
 * -ENOENT gone; an error for which queue_err_temporary is true: try
 * again later; any other: the file is bad in itself, err says why.
 * out->uid is set whenever the file could be opened.
 */
int spool_pickup_read(struct spool *sp, enum queue_dir d, const char *id,
		      uint64_t max_size, struct spool_pickup *out, char *err,
		      size_t errlen);
void spool_pickup_free(struct spool_pickup *p); /* NULL is a no-op */

/*
 * The rules of submission applied to a spool file image: spool_parse,
 * then the sender and every recipient through msg_addr_check (no ESMTP
 * parameter, space, angle bracket, control character; length limits), at
 * most SPOOL_RCPT_MAX recipients, a message of at most max_size bytes
 * (+ SPOOL_TRACE_MAX) with no NUL byte. 0 with env and *body_off filled,
 * or -EINVAL (-ENOMEM) and err.
 */
int spool_pickup_check(const char *data, size_t len, uint64_t max_size,
		       struct spool_envelope *env, size_t *body_off, char *err,
		       size_t errlen);

/*
 * Writes p into a new file d/.ID of the daemon's own (O_EXCL, 0600),
 * with trace (may be NULL) as the first line of the message's header, and
 * fdatasyncs it. A leftover d/.ID of a crash is replaced. The copy is put
 * in place by spool_pickup_place. Never touches the original.
 */
int spool_pickup_stage(struct spool *sp, enum queue_dir d, const char *id,
		       const struct spool_pickup *p, const char *trace,
		       char *err, size_t errlen);
/* Renames d/.ID to d/ID: never over an existing d/ID unless replace
 * (-EEXIST, and the copy d/.ID is removed). No fsync. */
int spool_pickup_place(struct spool *sp, enum queue_dir d, const char *id,
		       int replace);
/* Removes the d/.ID files a crash left behind; returns the count. */
int spool_pickup_clean(struct spool *sp, enum queue_dir d);

/* rename(from/ID, to/ID) then fsync(to). Never replaces an existing
 * to/ID (-EEXIST): a spool file holds recipient marks. Returns 0, or
 * SPOOL_MOVED_UNSYNCED when the file is in to/ but to/ could not be synced
 * (a crash may bring it back to from/; callers follow it to to/ now), or
 * -errno when it has not moved. */
#define SPOOL_MOVED_UNSYNCED 1
int spool_move(struct spool *sp, const char *id, enum queue_dir from,
	       enum queue_dir to);
/* spool_move without the fsync, for a move that a crash may undo safely
 * (pickup: the file is found known in new/ and moved again). Never
 * replaces an existing to/ID (-EEXIST). 0 or -errno. */
int spool_move_nosync(struct spool *sp, const char *id, enum queue_dir from,
		      enum queue_dir to);
/* unlink d/ID; no fsync (a lost unlink only repeats a delivery). */
int spool_remove(struct spool *sp, enum queue_dir d, const char *id);
/* stat d/ID: 0 with size and mtime (either may be NULL), or -ENOENT. */
int spool_stat(struct spool *sp, enum queue_dir d, const char *id,
	       uint64_t *size, int64_t *mtime);

/* Calls cb for every well-formed id in d (other names are skipped; in tmp/
 * every name is passed). Stops and returns cb's value if it is non-zero. */
int spool_scan(struct spool *sp, enum queue_dir d,
	       int (*cb)(const char *name, void *arg), void *arg);

/* Removes files in tmp/ older than max_age seconds; returns the count. */
int spool_clean_tmp(struct spool *sp, int64_t max_age);

/* ---- retry state (LMDB in SPOOL/state) ----------------------------- */

struct queue_rcpt_info {
	char *address;
	enum queue_rcpt_state state;
	char *reply; /* last reply, or NULL */
};

/* One delivery attempt on one transport, for `spoolctl show`. */
struct queue_attempt {
	int64_t at;	 /* unix seconds */
	char *transport; /* its name */
	char *result;	 /* e.g. "sent 1, deferred 1: 451 4.2.0 busy" */
};
#define QUEUE_HISTORY_MAX 10 /* the most recent attempts are kept */

struct queue_msg_info {
	char id[QUEUE_ID_LEN + 1];
	enum queue_msg_state state;
	int64_t queued_at;    /* unix seconds */
	int64_t next_attempt; /* unix seconds; 0: none (held, failed) */
	uint64_t size;
	uint32_t attempts;
	char *sender;
	char *last_error; /* or NULL */
	char *transport;  /* last used, or NULL */
	struct queue_rcpt_info *rcpt;
	size_t nrcpt;
	struct queue_attempt *history; /* oldest first */
	size_t nhistory;
	/* who submitted it: the owner of its spool file when spoold took
	 * it (0 for root, and for records older than this field); that
	 * user may ask the daemon how its message fares */
	uint32_t owner_uid;
	uint32_t flags; /* QUEUE_MSG_F_* */
	/* coalescing (see spoold/coalesce.c): the key, or NULL; how many
	 * submissions this message stands for (1: itself alone; 0 in
	 * records without a key), the first and last of them, and the
	 * key's digest window in seconds */
	char *key;
	uint32_t repeats;
	int64_t first_at, last_at;
	int64_t every;
};

/* Made due by a flush: the attempt it causes does not count against the
 * retry schedule (a flush never costs a message a step). */
#define QUEUE_MSG_F_FLUSHED 0x1u
/* Priority urgent: due before every message that is not, and never held
 * or merged by coalescing. */
#define QUEUE_MSG_F_URGENT 0x2u
/* Held for a digest: deferred until next_attempt, the end of its key's
 * window, without an attempt made. */
#define QUEUE_MSG_F_DIGEST 0x4u

/* Appends an attempt, dropping the oldest beyond QUEUE_HISTORY_MAX. */
int queue_msg_add_attempt(struct queue_msg_info *m, int64_t at,
			  const char *transport, const char *result);

/* Frees the strings and the rcpt array, not m itself. */
void queue_msg_info_free(struct queue_msg_info *m);

struct state;
struct state_txn;

/*
 * Opens SPOOL/state. readonly: for inspection commands (still needs write
 * access to lock.mdb, as LMDB does). Runs mdb_reader_check to clear
 * readers of crashed processes. A corrupt or unreadable environment
 * returns -EBADMSG so the caller can remove it and rebuild. A readonly
 * open of a spool with no state yet is -ENOENT. The map starts at 256 MiB
 * and doubles when full; SPOOL_STATE_MAPSIZE (bytes) in the environment
 * sets the starting size, for tests only.
 */
int state_open(struct state **out, const char *spool_dir, int readonly,
	       char *err, size_t errlen);
void state_close(struct state *st);
/*
 * Reads every page of SPOOL/state in a child process, before the caller
 * opens it. LMDB trusts its pages: a scribbled tree can crash a reader
 * instead of returning an error, so a crash in the child, or a record that
 * does not decode, is -EBADMSG (remove and rebuild). Other problems (no
 * state yet, no access) are 0 here: state_open reports them. Forks, so
 * call it before any thread is started.
 */
int state_verify(const char *spool_dir, char *err, size_t errlen);
/*
 * Frees the reader slots of processes that died inside a read transaction
 * (a killed spoolctl): until then the pages they saw cannot be reused and
 * the file grows with every write. Returns the number freed.
 */
int state_reader_check(struct state *st);
/* Deletes the LMDB files of SPOOL/state (environment must be closed). */
int state_remove(const char *spool_dir);

/* A transaction; write transactions only on one thread at a time.
 * -EROFS for a write transaction on a readonly state. */
int state_begin(struct state *st, int write, struct state_txn **out);
/* Commits; on MDB_MAP_FULL grows the map once the txn is gone and
 * returns -ENOSPC so the caller retries (the txn is always freed). */
int state_commit(struct state_txn *txn);
void state_abort(struct state_txn *txn);

/* Copies the record of id into *out. -ENOENT if absent. */
int state_msg_get(struct state_txn *txn, const char *id,
		  struct queue_msg_info *out);
/* Inserts or replaces m, and keeps the due index in step: a message is in
 * the index iff its state is queued or deferred, keyed by next_attempt. */
int state_msg_put(struct state_txn *txn, const struct queue_msg_info *m);
/* Removes the record and its due entry. -ENOENT if absent. */
int state_msg_del(struct state_txn *txn, const char *id);

/* Up to max ids whose next_attempt <= now, urgent ones (QUEUE_MSG_F_URGENT)
 * first, then the others, each earliest first, into ids.
 * *n gets the count; *next_due the earliest next_attempt still > now
 * (0 if none). Reads the due index only. When *n == max more may be due:
 * *next_due is still the first time after now. */
int state_due(struct state_txn *txn, int64_t now, size_t max,
	      char (*ids)[QUEUE_ID_LEN + 1], size_t *n, int64_t *next_due);

/* Up to max ids whose next_attempt > after, earliest first, into ids;
 * *n gets the count. Reads the due index only. */
int state_due_after(struct state_txn *txn, int64_t after, size_t max,
		    char (*ids)[QUEUE_ID_LEN + 1], size_t *n);

/* Every record in id order; stops when cb returns non-zero (returned).
 * m and its strings are valid during the call only. */
int state_foreach(struct state_txn *txn,
		  int (*cb)(const struct queue_msg_info *m, void *arg),
		  void *arg);
/* state_foreach from the first id after `after` (NULL or "": from the
 * first): a long walk goes in batches, each in a short transaction of its
 * own, since a read transaction left open pins every page it sees and the
 * file grows with each write meanwhile. */
int state_foreach_after(struct state_txn *txn, const char *after,
			int (*cb)(const struct queue_msg_info *m, void *arg),
			void *arg);
/*
 * on: from now on, walks over a readonly state in this process and in
 * state_verify's child (state_foreach*, state_count, the check) drop the
 * pages they have read from the process's resident memory as they go
 * (the pages stay in the page cache), so that a walk over any queue needs
 * the same memory, at the cost of a page fault per page read. For a
 * listing; off by default.
 */
void state_pages_release_set(int on);

/* Counts per state (indexed by enum queue_msg_state). */
int state_count(struct state_txn *txn, uint64_t counts[5]);

/*
 * Makes messages due at now: the ids given, or with n == 0 every queued
 * or deferred one, marked QUEUE_MSG_F_FLUSHED so that the attempt this
 * causes takes no step of the retry schedule. Held, failed and delivering
 * messages are left alone.
 * *count gets how many were made due. An unknown id is -ENOENT with err
 * naming it. Built on the calls above (queue_ops.c).
 */
int state_flush(struct state_txn *txn, const char *const *ids, size_t n,
		int64_t now, size_t *count, char *err, size_t errlen);

/*
 * Makes up to max of the queued or deferred messages that are not due at
 * now due at now; *count gets how many. Called in fresh transactions until
 * *count < max, it flushes the whole queue with a bounded transaction
 * size: LMDB holds each page a transaction changes in memory until the
 * commit, and keeps those buffers for later transactions.
 */
int state_flush_later(struct state_txn *txn, int64_t now, size_t max,
		      size_t *count);

/* What `spoolctl status` and `check` show: counts and age, no address. */
struct queue_summary {
	uint64_t counts[5]; /* by enum queue_msg_state */
	uint64_t in_new;    /* submitted, not yet taken by spoold */
	int64_t oldest;	    /* queued_at of the oldest unfinished message */
};

/*
 * Fills *out from new/ (sp) and the records (txn; NULL when there is no
 * state yet). Records are read in id order, so only the first unfinished
 * one is decoded for the age.
 */
int queue_summary_read(struct spool *sp, struct state_txn *txn,
		       struct queue_summary *out);

/* What an operator does to a message. */
enum queue_action { QUEUE_HOLD, QUEUE_RELEASE, QUEUE_DELETE, QUEUE_REQUEUE };
const char *queue_action_name(enum queue_action a);

/*
 * Applies an operator action to id: the spool file first (hold: into
 * hold/, release: back to cur/, delete: removed, requeue: failed
 * recipients pending again and back to cur/, due at now and aged from
 * now), then its record in txn when it has one. Errors, with err: -ENOENT
 * no such message, -EBUSY being delivered (try again), -EINVAL the action
 * does not apply (release of a message not held, ...). Only one process
 * may act at a time: the daemon on its loop thread, or spoolctl holding
 * the spool lock while no daemon runs.
 */
int queue_act(struct spool *sp, struct state_txn *txn, enum queue_action a,
	      const char *id, int64_t now, char *err, size_t errlen);

/* Small key/value store for daemon metadata (e.g. "rebuilt"). Values are
 * copied into buf (NUL-terminated); -ENOENT if absent, -ERANGE if buf is
 * too small. */
int state_meta_get(struct state_txn *txn, const char *key, char *buf,
		   size_t buflen);
int state_meta_put(struct state_txn *txn, const char *key, const char *value);
/* In a write transaction: asks drop(key, value, arg) of each entry whose
 * key starts with prefix, in key order, and deletes the entries it
 * answers 1 for, at most max of them. drop may read the state through
 * txn. The number deleted, or -errno (drop's negative answer stops the
 * sweep and is returned). Keys over 511 bytes and values over 255 are
 * passed over. */
int state_meta_sweep(struct state_txn *txn, const char *prefix,
		     int (*drop)(const char *key, const char *value, void *arg),
		     void *arg, size_t max);

/* ---- metrics: counters kept with the records, Prometheus text ------ */

#include <stdio.h>

/*
 * Adds n to the counter under key (a string of 1 to 200 bytes) in the
 * state's metrics table, inside txn, a write transaction: a counter moves
 * with the outcome it counts, or not at all. The table also holds
 * "created" (the unix time counting started: a new or rebuilt state) and
 * "msgs:STATE", the number of records in each state, which state_msg_put
 * and state_msg_del keep in step so that state_count reads them instead
 * of walking the queue.
 */
int state_counter_add(struct state_txn *txn, const char *key, uint64_t n);
/* Every counter in key order; stops when cb returns non-zero (returned).
 * A state written before the table existed has none. */
int state_counter_foreach(struct state_txn *txn,
			  int (*cb)(const char *key, uint64_t value, void *arg),
			  void *arg);

/* queued_at of the first record in id order that has not failed (0 if
 * none): what queue_summary_read gives as the oldest. Reads the state
 * byte of the failed records before it, decodes none. */
int state_oldest(struct state_txn *txn, int64_t *queued_at);

#define METRICS_NAME_MAX 64 /* a transport's name with its NUL */
#define METRICS_BUCKETS 11  /* delivery duration bounds, 50 ms to 120 s */

/* What the caller knows of a configured transport. */
struct metrics_transport {
	const char *name;
	int up; /* 1 up, 0 down, -1 never judged (no sample is written) */
};

/*
 * Writes the Prometheus text format (0.0.4) to fp: spoold_up (up),
 * spoold_queue_messages by state, the oldest message's age at now, each
 * transport's health, and the counters of txn (NULL: no state yet, all
 * zero). Counts and health only, never an address or a reply. Reads
 * new/ of sp and the kept counts, never the whole queue. 0 or -errno.
 */
int metrics_render(FILE *fp, struct spool *sp, struct state_txn *txn,
		   const struct metrics_transport *t, size_t nt, int up,
		   int64_t now);
/* Copies in with Prometheus label escaping (\\, \", \n) into out,
 * NUL-terminated and cut to outlen; returns the length it needed. */
size_t metrics_label_escape(char *out, size_t outlen, const char *in);

/*
 * Counting, each in the write transaction that applies what it counts.
 * outcome: status "sent", "deferred" or "failed" for n recipients of an
 * attempt on transport; session: one delivery session on transport and
 * how long it took; coalesced: n messages merged into another of the same
 * key; rate_limited: n messages held back by transport's rate. 0 or
 * -errno (-EINVAL: an unknown status or a name no transport can have).
 */
int metrics_count_outcome(struct state_txn *txn, const char *transport,
			  const char *status, uint64_t n);
int metrics_observe_session(struct state_txn *txn, const char *transport,
			    int64_t duration_ms);
int metrics_count_coalesced(struct state_txn *txn, uint64_t n);
int metrics_count_rate_limited(struct state_txn *txn, const char *transport,
			       uint64_t n);
/* A transport's health as spoold last saved it: 1, 0, -1 never judged. */
int metrics_health_saved(struct state_txn *txn, const char *name);

#endif

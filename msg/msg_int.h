/*
 * msg_int.h - helpers shared by the files of msg/ only: a growable byte
 * buffer, UTF-8 checks, the MIME encoders (quoted-printable, base64,
 * RFC 2047) and the pieces of a generated header (Date, Message-ID, the
 * default identity). Buffer functions return 0 or -ENOMEM; the others
 * return a sysexits code and fill err like the public API.
 */
#ifndef SPOOL_MSG_INT_H
#define SPOOL_MSG_INT_H

#include <stddef.h>

#include "spool/msg.h"

/* RFC 5322 section 2.1.1: the hard limit of a line, CRLF excluded. */
#define MSG_LINE_MAX 998
/* The line length RFC 5322 recommends; folding aims for it. */
#define MSG_LINE_SOFT 78

struct msg_buf {
	char *p;
	size_t len;
	size_t cap;
};

int msg__buf_add(struct msg_buf *b, const void *data, size_t n);
int msg__buf_str(struct msg_buf *b, const char *s);
int msg__buf_printf(struct msg_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void msg__buf_free(struct msg_buf *b);

/* Writes one line into err and returns code. */
int msg__err(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* EX_OSERR with "out of memory". */
int msg__oom(char *err, size_t errlen);

/* Copies at most n bytes of s into dst for an error message, with every
 * control character shown as '?' so a hostile value cannot forge lines. */
void msg__printable(char *dst, size_t dstlen, const char *s, size_t n);

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0. */
size_t msg__utf8_char(const unsigned char *s, size_t len);
/* 1 if all of s is well-formed UTF-8. */
int msg__utf8_valid(const char *s, size_t len);

/* Appends s with every CRLF, bare LF and bare CR turned into CRLF. */
int msg__crlf_append(struct msg_buf *b, const char *s, size_t len);
/* The longest line of s in octets, its line end (CR and/or LF) excluded. */
size_t msg__line_max(const char *s, size_t len);

/*
 * Appends one header field line (no line end) folded before white space so
 * that lines stay within soft octets where the text allows it, never over
 * MSG_LINE_MAX, and never before the colon of a field's first line. Each
 * line gets CRLF. Returns 0, -ENOMEM, or -E2BIG when
 * some run without white space is longer than MSG_LINE_MAX.
 */
int msg__fold_append(struct msg_buf *b, const char *line, size_t len,
		     size_t soft);

/* Quoted-printable (RFC 2045 6.7) of CRLF text: CRLF stays a hard line
 * break, encoded lines are at most 76 octets. */
int msg__qp_encode(struct msg_buf *b, const char *s, size_t len);
/* Splits lines of text already quoted-printable with soft line breaks,
 * never inside an =XX escape. */
int msg__qp_wrap(struct msg_buf *b, const char *s, size_t len);
/* Splits lines of base64 text to 76 octets (decoders skip line breaks). */
int msg__b64_wrap(struct msg_buf *b, const char *s, size_t len);
int msg__b64_encode(struct msg_buf *b, const void *data, size_t len);

/*
 * Appends UTF-8 text s as RFC 2047 "=?UTF-8?B?...?=" words of at most 75
 * octets, split on character boundaries and separated by CRLF SP; col is
 * the column the first word starts at. s must be valid UTF-8.
 */
int msg__rfc2047_append(struct msg_buf *b, const char *s, size_t len,
			size_t col);

/* Appends a display name as an atom sequence, a quoted string or RFC 2047
 * words, whichever it needs. EX_DATAERR on CR/LF or bad UTF-8. */
int msg__phrase_append(struct msg_buf *b, const char *name, size_t col,
		       char *err, size_t errlen);

/* The user and host of a generated address: the given ones, else the
 * login name of the real uid and gethostname(). */
struct msg_ident {
	char user[256];
	char host[256];
};
int msg__ident(struct msg_ident *id, const char *user, const char *host,
	       char *err, size_t errlen);

/* "Date: ...\r\n" in local time and "Message-ID: <...@host>\r\n". */
int msg__date_append(struct msg_buf *b, char *err, size_t errlen);
int msg__msgid_append(struct msg_buf *b, const char *host, char *err,
		      size_t errlen);

/*
 * Walks an address-list header value (see msg_addr_list_parse) and calls
 * cb for each addr-spec, unfolded and not yet checked, with end, the
 * offset in value just past its last character (where "@domain" would go
 * if it has none). Stops at the first non-zero return of cb.
 */
typedef int msg__addr_cb(void *arg, const char *addr, size_t end, char *err,
			 size_t errlen);
int msg__addr_list_walk(const char *value, size_t len, msg__addr_cb *cb,
			void *arg, char *err, size_t errlen);

/*
 * Removes every address equal to an earlier one, keeping the order of
 * first appearance: the local part compares exactly, the domain without
 * regard to ASCII case. Sorts instead of comparing each pair, so that a
 * hostile list of a million recipients costs seconds, not hours. 0 or
 * -ENOMEM (l unchanged).
 */
int msg__rcpt_dedupe(struct msg_strlist *l);

/*
 * Appends the addresses of arg (one address or a list, as a command-line
 * argument) to l, each with "@host" when it has no domain (with local:
 * each resolved by msg_local_resolve instead) and checked with
 * msg_addr_check; msg__rcpt_dedupe removes repeats once all are in.
 * Control characters are refused before parsing. what names the argument
 * in err.
 */
int msg__rcpt_arg(struct msg_strlist *l, const char *arg, const char *host,
		  const struct msg_local *local, const char *what, char *err,
		  size_t errlen);

#endif

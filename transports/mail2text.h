/*
 * mail2text.h - from a mail message to one push notification: a title, a
 * text and the facts a webhook passes on. Part of the push transports, not
 * of the transport interface.
 *
 * The MIME parsing is GMime's (RFC 2047 words, quoted-printable, base64,
 * multipart, charsets through iconv); what is ours is the choice of the
 * part, the reduction of HTML to text, the clean-up of what a service
 * shows (UTF-8 only, no control characters, no line breaks in a title)
 * and the cut to the service's limit on a character boundary.
 * Safe on any thread once mail2text_global_init has run.
 */
#ifndef SPOOL_MAIL2TEXT_H
#define SPOOL_MAIL2TEXT_H

#include <stddef.h>

/* The visible mark of a text cut to fit, U+2026. */
#define MAIL2TEXT_CUT_MARK "\xe2\x80\xa6"
/* A title is cut to this many bytes: it is one line on a lock screen. */
#define MAIL2TEXT_TITLE_MAX 250

struct mail2text_opts {
	/* the service's limit on the text, 0: none */
	size_t limit;
	/* the limit counts UTF-16 code units (Telegram's characters),
	 * else bytes */
	int limit_utf16;
	/* the title opens the text (services without a title field) */
	int title_in_text;
	/* a last line with the sender and the host */
	int footer;
	/* this host's name, for the footer */
	const char *host;
	/* the envelope sender, when the message has no From */
	const char *sender;
};

/* One notification; every string is malloc'd, valid UTF-8, NUL-ended. */
struct mail2text_note {
	char *title;   /* the Subject, decoded; one line; "(no subject)" */
	char *text;    /* the body as text, within the limit */
	char *from;    /* the From field, decoded, or the envelope sender */
	char *date;    /* the Date field in RFC 3339, or NULL */
	int urgent;    /* Priority: urgent or X-Priority: 1 */
	int truncated; /* the text was cut to the limit */
};

/* GMime's set-up; call once before threads start (idempotent). */
void mail2text_global_init(void);

/*
 * Builds the notification of a message (any line ends). Never fails on
 * hostile input: what cannot be parsed shows as text. 0 or -ENOMEM (out
 * is then empty).
 */
int mail2text(const char *data, size_t len, const struct mail2text_opts *o,
	      struct mail2text_note *out);
void mail2text_note_free(struct mail2text_note *n);

/*
 * The helpers mail2text is made of, for the tests: HTML reduced to text,
 * text made clean UTF-8 (line ends to LF, bytes that are not UTF-8 read as
 * ISO-8859-1, control characters dropped; in a title, line breaks and tabs
 * become spaces), and a cut to limit on a character boundary ending in
 * MAIL2TEXT_CUT_MARK. Each returns a malloc'd string or NULL (no memory).
 */
char *mail2text_html(const char *html, size_t len);
char *mail2text_clean(const char *s, size_t len, int one_line);
char *mail2text_cut(const char *s, size_t limit, int utf16, int *cut);

#endif

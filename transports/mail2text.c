/*
 * mail2text.c - a mail message as one push notification.
 *
 * GMime parses (headers, RFC 2047, transfer encodings, multipart, iconv
 * for charsets); the text a service shows is then made here: the first
 * text/plain part that is not an attachment, else the first text/html
 * reduced to text, else nothing; cleaned to UTF-8 without control
 * characters; a footer naming the sender and the host; cut on a character
 * boundary with a visible mark. Every step is linear in the input, so a
 * hostile message costs its size, not more.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

#include "mail2text.h"

/* A growable string; on allocation failure it stays failed and empty. */
struct m2t_buf {
	char *p;
	size_t len, cap;
	int nomem;
};

static void
buf_add(struct m2t_buf *b, const char *s, size_t n)
{
	if (b->nomem)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;

		while (cap < b->len + n + 1)
			cap *= 2;
		if ((p = realloc(b->p, cap)) == NULL) {
			free(b->p);
			memset(b, 0, sizeof(*b));
			b->nomem = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
buf_str(struct m2t_buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void
buf_char(struct m2t_buf *b, char c)
{
	buf_add(b, &c, 1);
}

/* Hands over the string: "" for an empty one, NULL if memory ran out. */
static char *
buf_take(struct m2t_buf *b)
{
	if (b->nomem)
		return NULL;
	if (b->p == NULL)
		return strdup("");
	return b->p;
}

static void
buf_utf8(struct m2t_buf *b, unsigned long cp)
{
	char u[4];

	if (cp < 0x80) {
		buf_char(b, (char)cp);
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
		buf_add(b, u, 2);
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		buf_add(b, u, 3);
	} else {
		u[0] = (char)(0xf0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		buf_add(b, u, 4);
	}
}

/* Length of the well-formed UTF-8 sequence at s (no overlongs, no
 * surrogates, at most U+10FFFF), or 0. */
static size_t
utf8_len(const unsigned char *s, size_t len)
{
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		return len >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (s[0] >= 0xe0 && s[0] <= 0xef) {
		if (len < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if ((s[0] == 0xe0 && s[1] < 0xa0) ||
		    (s[0] == 0xed && s[1] >= 0xa0))
			return 0;
		return 3;
	}
	if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		if (len < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 ||
		    (s[3] & 0xc0) != 0x80)
			return 0;
		if ((s[0] == 0xf0 && s[1] < 0x90) ||
		    (s[0] == 0xf4 && s[1] >= 0x90))
			return 0;
		return 4;
	}
	return 0;
}

char *
mail2text_clean(const char *s, size_t len, int one_line)
{
	const unsigned char *u = (const unsigned char *)s;
	struct m2t_buf b = {0};

	for (size_t i = 0; i < len;) {
		size_t n = utf8_len(u + i, len - i);
		unsigned char c = u[i];

		if (n == 0) {
			/* not UTF-8: the byte as ISO-8859-1, never lost */
			if (c >= 0xa0)
				buf_utf8(&b, c);
			i++;
			continue;
		}
		if (n > 1) {
			/* C1 controls (U+0080..U+009F) are dropped too */
			if (!(n == 2 && u[i] == 0xc2 && u[i + 1] < 0xa0))
				buf_add(&b, s + i, n);
			i += n;
			continue;
		}
		i++;
		if (c == '\r') {
			if (i < len && u[i] == '\n')
				i++;
			c = '\n';
		}
		if (c == '\n' || c == '\t')
			buf_char(&b, one_line ? ' ' : (char)c);
		else if (c >= 0x20 && c != 0x7f)
			buf_char(&b, (char)c);
	}
	return buf_take(&b);
}

/* Text units of a UTF-8 sequence of n bytes: UTF-16 code units or
 * bytes. */
static size_t
units(size_t n, int utf16)
{
	if (!utf16)
		return n;
	return n == 4 ? 2 : 1;
}

/* The length of s in the units of a limit. */
static size_t
text_units(const char *s, int utf16)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t len = strlen(s), total = 0;

	for (size_t i = 0; i < len;) {
		size_t n = utf8_len(u + i, len - i);

		n = n ? n : 1;
		total += units(n, utf16);
		i += n;
	}
	return total;
}

char *
mail2text_cut(const char *s, size_t limit, int utf16, int *cut)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t len = strlen(s), keep = 0, mark, used = 0;
	struct m2t_buf b = {0};

	*cut = 0;
	if (limit == 0 || text_units(s, utf16) <= limit)
		return strdup(s);
	mark = text_units(MAIL2TEXT_CUT_MARK, utf16);
	if (limit < mark)
		return strdup("");
	for (size_t i = 0; i < len;) {
		size_t n = utf8_len(u + i, len - i), w;

		n = n ? n : 1;
		w = units(n, utf16);
		if (used + w + mark > limit)
			break;
		used += w;
		i += n;
		keep = i;
	}
	/* a cut after a space or a line end reads better than one before */
	while (keep > 0 && (s[keep - 1] == ' ' || s[keep - 1] == '\n'))
		keep--;
	buf_add(&b, s, keep);
	buf_str(&b, MAIL2TEXT_CUT_MARK);
	*cut = 1;
	return buf_take(&b);
}

/* ---- HTML to text ---------------------------------------------------- */

static int
isalnum_ascii(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9');
}

/* Tags whose end or start breaks the line. */
static int
html_block(const char *name, size_t n)
{
	static const char *const block[] = {
	    "br",	  "p",	 "div", "li", "tr", "h1", "h2",
	    "h3",	  "h4",	 "h5",	"h6", "ul", "ol", "table",
	    "blockquote", "pre", "hr",	"dt", "dd",
	};

	for (size_t i = 0; i < sizeof(block) / sizeof(block[0]); i++)
		if (strlen(block[i]) == n &&
		    strncasecmp(name, block[i], n) == 0)
			return 1;
	return 0;
}

/* Appends the entity at s (after '&'); returns the bytes it took, 0 if
 * it is none (the '&' is then literal). */
static size_t
html_entity(struct m2t_buf *b, const char *s, size_t len)
{
	static const struct {
		const char *name;
		unsigned long cp;
	} named[] = {
	    {"amp", '&'},      {"lt", '<'},	  {"gt", '>'},
	    {"quot", '"'},     {"apos", '\''},	  {"nbsp", 0xa0},
	    {"copy", 0xa9},    {"reg", 0xae},	  {"hellip", 0x2026},
	    {"ndash", 0x2013}, {"mdash", 0x2014}, {"euro", 0x20ac},
	};
	size_t end = 0;

	while (end < len && end < 12 && s[end] != ';')
		end++;
	if (end == len || s[end] != ';' || end == 0)
		return 0;
	if (s[0] == '#') {
		unsigned long cp = 0;
		size_t i = 1;
		int hex = end > 1 && (s[1] == 'x' || s[1] == 'X');

		for (i += (size_t)hex; i < end; i++) {
			int d;

			if (s[i] >= '0' && s[i] <= '9')
				d = s[i] - '0';
			else if (hex && s[i] >= 'a' && s[i] <= 'f')
				d = s[i] - 'a' + 10;
			else if (hex && s[i] >= 'A' && s[i] <= 'F')
				d = s[i] - 'A' + 10;
			else
				return 0;
			cp = cp * (hex ? 16 : 10) + (unsigned long)d;
			if (cp > 0x10ffff)
				return 0;
		}
		if (i == 1 + (size_t)hex || cp == 0 ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		buf_utf8(b, cp);
		return end + 1;
	}
	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
		if (strlen(named[i].name) == end &&
		    strncmp(s, named[i].name, end) == 0) {
			buf_utf8(b, named[i].cp);
			return end + 1;
		}
	}
	return 0;
}

char *
mail2text_html(const char *s, size_t len)
{
	struct m2t_buf b = {0};
	const char *skip_until = NULL; /* inside <script> or <style> */
	int space = 0;

	for (size_t i = 0; i < len;) {
		if (s[i] == '<') {
			size_t j = i + 1, n = 0;
			int closing = 0;
			const char *name;
			const char *gt = memchr(s + i, '>', len - i);

			if (gt == NULL)
				break; /* an unfinished tag is not text */
			if (j < len && s[j] == '/') {
				closing = 1;
				j++;
			}
			name = s + j;
			while (name + n < gt && isalnum_ascii(name[n]))
				n++;
			i = (size_t)(gt - s) + 1;
			if (skip_until != NULL) {
				if (closing && n == strlen(skip_until) &&
				    strncasecmp(name, skip_until, n) == 0)
					skip_until = NULL;
				continue;
			}
			if (!closing && n == 6 &&
			    strncasecmp(name, "script", 6) == 0)
				skip_until = "script";
			else if (!closing && n == 5 &&
				 strncasecmp(name, "style", 5) == 0)
				skip_until = "style";
			else if (!closing && n == 4 &&
				 strncasecmp(name, "head", 4) == 0)
				skip_until = "head";
			else if (html_block(name, n)) {
				/* at most one blank line in a row */
				if (!(b.len >= 2 && b.p[b.len - 1] == '\n' &&
				      b.p[b.len - 2] == '\n'))
					buf_char(&b, '\n');
				space = 0;
			} else if (n == 2 && strncasecmp(name, "td", 2) == 0)
				space = 1;
			continue;
		}
		if (skip_until != NULL) {
			i++;
			continue;
		}
		if (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' ||
		    s[i] == '\n') {
			space = 1;
			i++;
			continue;
		}
		if (space && b.len > 0 && b.p[b.len - 1] != '\n')
			buf_char(&b, ' ');
		space = 0;
		if (s[i] == '&') {
			size_t used = html_entity(&b, s + i + 1, len - i - 1);

			if (used > 0) {
				i += used + 1;
				continue;
			}
		}
		buf_char(&b, s[i++]);
	}
	return buf_take(&b);
}

/* ---- the message ------------------------------------------------------ */

static pthread_once_t mail2text_once = PTHREAD_ONCE_INIT;

static void
mail2text_init_once(void)
{
	g_mime_init();
}

void
mail2text_global_init(void)
{
	pthread_once(&mail2text_once, mail2text_init_once);
}

/* The parts mail2text looks for while GMime walks the tree. */
struct m2t_walk {
	GMimePart *plain, *html;
};

static void
m2t_walk_cb(GMimeObject *parent, GMimeObject *part, gpointer data)
{
	struct m2t_walk *w = data;
	GMimeContentType *ct;
	const char *disp;

	(void)parent;
	if (!GMIME_IS_PART(part))
		return;
	disp = g_mime_object_get_disposition(part);
	if (disp != NULL && strcasecmp(disp, "attachment") == 0)
		return;
	ct = g_mime_object_get_content_type(part);
	if (w->plain == NULL &&
	    g_mime_content_type_is_type(ct, "text", "plain"))
		w->plain = GMIME_PART(part);
	else if (w->html == NULL &&
		 g_mime_content_type_is_type(ct, "text", "html"))
		w->html = GMIME_PART(part);
}

/* The part's content without its transfer encoding, in UTF-8 when its
 * charset is known to iconv (else as it was: the clean-up reads bytes
 * that are not UTF-8 as ISO-8859-1). */
static char *
m2t_part_text(GMimePart *part, size_t *len)
{
	GMimeDataWrapper *w = g_mime_part_get_content(part);
	const char *charset = g_mime_object_get_content_type_parameter(
	    GMIME_OBJECT(part), "charset");
	GMimeStream *mem, *filtered;
	GByteArray *ba;
	char *out = NULL;

	*len = 0;
	if (w == NULL)
		return strdup("");
	mem = g_mime_stream_mem_new();
	filtered = g_mime_stream_filter_new(mem);
	if (charset != NULL && g_ascii_strcasecmp(charset, "utf-8") != 0 &&
	    g_ascii_strcasecmp(charset, "us-ascii") != 0) {
		GMimeFilter *f = g_mime_filter_charset_new(charset, "UTF-8");

		if (f != NULL) {
			g_mime_stream_filter_add(GMIME_STREAM_FILTER(filtered),
						 f);
			g_object_unref(f);
		}
	}
	if (g_mime_data_wrapper_write_to_stream(w, filtered) >= 0)
		g_mime_stream_flush(filtered);
	ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
	if ((out = malloc(ba->len + 1)) != NULL) {
		/* an empty array may have no data at all */
		if (ba->len > 0)
			memcpy(out, ba->data, ba->len);
		out[ba->len] = '\0';
		*len = ba->len;
	}
	g_object_unref(filtered);
	g_object_unref(mem);
	return out;
}

/* Priority: urgent (RFC 2156) or X-Priority: 1 (the mail clients'). */
static int
m2t_urgent(GMimeMessage *m)
{
	const char *p = g_mime_object_get_header(GMIME_OBJECT(m), "Priority");
	const char *x = g_mime_object_get_header(GMIME_OBJECT(m), "X-Priority");

	while (p != NULL && (*p == ' ' || *p == '\t'))
		p++;
	while (x != NULL && (*x == ' ' || *x == '\t'))
		x++;
	return (p != NULL && strncasecmp(p, "urgent", 6) == 0) ||
	       (x != NULL && x[0] == '1' && (x[1] < '0' || x[1] > '9'));
}

/* The body as text (see the file's head); NULL if memory ran out. */
static char *
m2t_body(GMimeMessage *m)
{
	struct m2t_walk w = {0};
	char *raw, *text;
	size_t len;

	g_mime_message_foreach(m, m2t_walk_cb, &w);
	if (w.plain == NULL && w.html == NULL)
		return strdup("");
	raw = m2t_part_text(w.plain ? w.plain : w.html, &len);
	if (raw == NULL || w.plain != NULL)
		return raw;
	/* the cleaned bytes first: an entity or tag must not hide behind
	 * bytes that are not UTF-8 */
	text = mail2text_clean(raw, len, 0);
	free(raw);
	if (text == NULL)
		return NULL;
	raw = mail2text_html(text, strlen(text));
	free(text);
	return raw;
}

/* Drops blank lines at either end and white space at the end of lines,
 * and keeps at most one blank line in a row; in place. */
static void
m2t_tidy(char *s)
{
	size_t w = 0, blank = 0;
	char *line = s;

	while (*line != '\0') {
		char *eol = strchr(line, '\n');
		size_t n = eol ? (size_t)(eol - line) : strlen(line);

		while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t'))
			n--;
		if (n == 0) {
			blank++;
		} else {
			if (w > 0)
				for (size_t i = 0; i < (blank ? 2 : 1); i++)
					s[w++] = '\n';
			memmove(s + w, line, n);
			w += n;
			blank = 0;
		}
		if (eol == NULL)
			break;
		line = eol + 1;
	}
	s[w] = '\0';
}

static char *
m2t_date(GMimeMessage *m)
{
	GDateTime *dt = g_mime_message_get_date(m);
	gchar *g;
	char *s;

	if (dt == NULL || (g = g_date_time_format_iso8601(dt)) == NULL)
		return NULL;
	s = strdup(g);
	g_free(g);
	return s;
}

static char *
m2t_from(GMimeMessage *m, const char *sender)
{
	InternetAddressList *l = g_mime_message_get_from(m);
	char *s = NULL, *clean;

	if (l != NULL && internet_address_list_length(l) > 0)
		s = internet_address_list_to_string(l, NULL, FALSE);
	if (s == NULL || s[0] == '\0') {
		g_free(s);
		return mail2text_clean(sender, strlen(sender), 1);
	}
	clean = mail2text_clean(s, strlen(s), 1);
	g_free(s);
	return clean;
}

/* The footer: the sender and the host; NULL if memory ran out. */
static char *
m2t_footer(const struct mail2text_note *n, const struct mail2text_opts *o)
{
	struct m2t_buf b = {0};
	char *cut;
	int dummy;

	buf_str(&b, "\n\n\xe2\x80\x94 ");
	buf_str(&b, n->from[0] ? n->from : "<>");
	if (o->host != NULL && o->host[0] != '\0') {
		buf_str(&b, ", on ");
		buf_str(&b, o->host);
	}
	if (b.nomem || o->limit == 0)
		return buf_take(&b);
	/* a hostile From gets half the room at most */
	cut = mail2text_cut(b.p, o->limit / 2, o->limit_utf16, &dummy);
	free(b.p);
	return cut;
}

/* Title, body and footer into one text within the limit. */
static int
m2t_compose(struct mail2text_note *n, const char *body,
	    const struct mail2text_opts *o)
{
	struct m2t_buf b = {0};
	char *foot = o->footer ? m2t_footer(n, o) : strdup("");
	size_t limit = o->limit;
	char *cut;

	if (foot == NULL)
		return -ENOMEM;
	if (limit > 0)
		limit -= text_units(foot, o->limit_utf16);
	if (o->title_in_text) {
		buf_str(&b, n->title);
		if (body[0] != '\0')
			buf_str(&b, "\n\n");
	}
	buf_str(&b, body);
	cut = b.nomem
		  ? NULL
		  : mail2text_cut(b.p, limit, o->limit_utf16, &n->truncated);
	free(b.p);
	b = (struct m2t_buf){0};
	if (cut != NULL) {
		buf_str(&b, cut);
		buf_str(&b, foot);
	}
	free(cut);
	free(foot);
	if (cut == NULL || (n->text = buf_take(&b)) == NULL)
		return -ENOMEM;
	return 0;
}

int
mail2text(const char *data, size_t len, const struct mail2text_opts *o,
	  struct mail2text_note *out)
{
	GMimeStream *stream;
	GMimeParser *parser;
	GMimeMessage *m = NULL;
	char *body = NULL, *clean;
	const char *subject = NULL;
	int rc = -ENOMEM, cut;

	memset(out, 0, sizeof(*out));
	mail2text_global_init();
	stream = g_mime_stream_mem_new_with_buffer(data, len);
	parser = g_mime_parser_new_with_stream(stream);
	g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
	m = g_mime_parser_construct_message(parser, NULL);
	g_object_unref(parser);
	g_object_unref(stream);
	if (m != NULL) {
		subject = g_mime_message_get_subject(m);
		out->urgent = m2t_urgent(m);
		out->date = m2t_date(m);
		out->from = m2t_from(m, o->sender ? o->sender : "");
		body = m2t_body(m);
	} else {
		/* not even a header: the bytes are the text */
		out->from =
		    mail2text_clean(o->sender ? o->sender : "",
				    strlen(o->sender ? o->sender : ""), 1);
		body = malloc(len + 1);
		if (body != NULL) {
			memcpy(body, data, len);
			body[len] = '\0';
		}
	}
	out->title = mail2text_clean(subject ? subject : "",
				     subject ? strlen(subject) : 0, 1);
	if (body == NULL || out->title == NULL || out->from == NULL)
		goto out;
	clean = mail2text_clean(body, strlen(body), 0);
	free(body);
	if ((body = clean) == NULL)
		goto out;
	m2t_tidy(body);
	/* a title of spaces is no title; a long one is cut */
	clean = strspn(out->title, " ") == strlen(out->title)
		    ? strdup("(no subject)")
		    : mail2text_cut(out->title, MAIL2TEXT_TITLE_MAX, 0, &cut);
	free(out->title);
	if ((out->title = clean) == NULL)
		goto out;
	rc = m2t_compose(out, body, o);
out:
	free(body);
	if (m != NULL)
		g_object_unref(m);
	if (rc < 0)
		mail2text_note_free(out);
	return rc;
}

void
mail2text_note_free(struct mail2text_note *n)
{
	free(n->title);
	free(n->text);
	free(n->from);
	free(n->date);
	memset(n, 0, sizeof(*n));
}

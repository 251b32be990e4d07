/*
 * push_services.c - each push service's request, from its published API:
 *
 *   ntfy      POST {url} (the topic URL), the text as body; Title,
 *             Priority (1-5), Tags headers; Authorization: Bearer with a
 *             token. A title that is not ASCII goes as an RFC 2047 word,
 *             which ntfy decodes.
 *   gotify    POST {url}/message, JSON {"title","message","priority"},
 *             X-Gotify-Key: the application token.
 *   matrix    PUT {url}/_matrix/client/v3/rooms/{room}/send/m.room.message
 *             /{txnId}, JSON {"msgtype":"m.text","body"}, Authorization:
 *             Bearer. txnId comes from the queue id, so a retry after a
 *             lost answer is the same transaction: Matrix makes one event.
 *   telegram  POST {url}/bot{token}/sendMessage, JSON {"chat_id","text"}:
 *             the token is in the path, so the URL shown is another.
 *   webhook   POST {url}, JSON {"id","from","sender","to","subject","date",
 *             "text","priority","host"}; Authorization: Bearer with a token.
 *
 * Limits on the text: ntfy 4,096 bytes and Telegram 4,096 characters
 * (their documented maxima); Matrix 32,768 bytes (an event is at most
 * 65,536 bytes with its JSON escapes); Gotify and webhooks 65,536 bytes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <glib.h>

#include "push_int.h"

/* Sets req->body to the JSON of o (consumed); 0 or -ENOMEM. */
static int
push_json_body(struct push_request *req, cJSON *o)
{
	char *s = o != NULL ? cJSON_PrintUnformatted(o) : NULL;

	cJSON_Delete(o);
	if (s == NULL)
		return -ENOMEM;
	/* cJSON's allocator is malloc: push_request_free may free it */
	req->body = s;
	req->len = strlen(s);
	return push_header(req, "Content-Type", "application/json");
}

static int
push_bearer(struct push_request *req, const char *token)
{
	char line[PUSH_TOKEN_MAX + 16];
	int rc;

	if (token[0] == '\0')
		return 0;
	snprintf(line, sizeof(line), "Bearer %s", token);
	rc = push_header(req, "Authorization", line);
	explicit_bzero(line, sizeof(line));
	return rc;
}

static int
push_urls(struct push_request *req, const char *method, char *url, char *shown)
{
	req->method = method;
	req->url = url;
	req->shown_url = shown;
	if (url == NULL || shown == NULL)
		return -ENOMEM;
	/* curl waits for a 100 Continue before a large body otherwise */
	return push_header(req, "Expect", "");
}

/* A title header: as it is if ASCII, else one RFC 2047 word. */
static int
push_title_header(struct push_request *req, const char *title)
{
	gchar *b64;
	char *word;
	int rc;

	for (const char *c = title; *c; c++)
		if ((unsigned char)*c >= 0x80)
			goto encode;
	return push_header(req, "Title", title);
encode:
	b64 = g_base64_encode((const guchar *)title, strlen(title));
	if (b64 == NULL || asprintf(&word, "=?UTF-8?B?%s?=", b64) < 0) {
		g_free(b64);
		return -ENOMEM;
	}
	g_free(b64);
	rc = push_header(req, "Title", word);
	free(word);
	return rc;
}

static int
ntfy_request(const struct push_transport *t, const struct transport_msg *m,
	     const struct mail2text_note *n, const char *token,
	     struct push_request *req)
{
	char prio[8];
	int rc;

	(void)m;
	snprintf(prio, sizeof(prio), "%d", push_priority(t, n));
	if ((rc = push_urls(req, "POST", strdup(t->url), strdup(t->url))) < 0 ||
	    (rc = push_title_header(req, n->title)) < 0 ||
	    (rc = push_header(req, "Priority", prio)) < 0 ||
	    (rc = push_header(req, "Tags",
			      n->urgent ? "rotating_light,email" : "email")) <
		0 ||
	    (rc = push_header(req, "Content-Type",
			      "text/plain; charset=utf-8")) < 0 ||
	    (rc = push_bearer(req, token)) < 0)
		return rc;
	if ((req->body = strdup(n->text)) == NULL)
		return -ENOMEM;
	req->len = strlen(req->body);
	return 0;
}

static int
gotify_request(const struct push_transport *t, const struct transport_msg *m,
	       const struct mail2text_note *n, const char *token,
	       struct push_request *req)
{
	cJSON *o = cJSON_CreateObject();
	char *url = NULL;
	int rc;

	(void)m;
	if (asprintf(&url, "%s/message", t->url) < 0)
		url = NULL;
	if ((rc = push_urls(req, "POST", url, url ? strdup(url) : NULL)) < 0 ||
	    (rc = push_header(req, "X-Gotify-Key", token)) < 0) {
		cJSON_Delete(o);
		return rc;
	}
	if (o == NULL || !cJSON_AddStringToObject(o, "title", n->title) ||
	    !cJSON_AddStringToObject(o, "message", n->text) ||
	    !cJSON_AddNumberToObject(o, "priority", push_priority(t, n))) {
		cJSON_Delete(o);
		return -ENOMEM;
	}
	return push_json_body(req, o);
}

static int
matrix_request(const struct push_transport *t, const struct transport_msg *m,
	       const struct mail2text_note *n, const char *token,
	       struct push_request *req)
{
	cJSON *o = cJSON_CreateObject();
	char *room = curl_easy_escape(NULL, t->room, 0), *url = NULL;
	int rc;

	/* txnId: the queue id, the same for every try of this message */
	if (room == NULL ||
	    asprintf(&url,
		     "%s/_matrix/client/v3/rooms/%s/send/m.room.message/"
		     "spoold.%s",
		     t->url, room, m->id) < 0)
		url = NULL;
	curl_free(room);
	if ((rc = push_urls(req, "PUT", url, url ? strdup(url) : NULL)) < 0 ||
	    (rc = push_bearer(req, token)) < 0) {
		cJSON_Delete(o);
		return rc;
	}
	if (o == NULL || !cJSON_AddStringToObject(o, "msgtype", "m.text") ||
	    !cJSON_AddStringToObject(o, "body", n->text)) {
		cJSON_Delete(o);
		return -ENOMEM;
	}
	return push_json_body(req, o);
}

static int
telegram_request(const struct push_transport *t, const struct transport_msg *m,
		 const struct mail2text_note *n, const char *token,
		 struct push_request *req)
{
	cJSON *o = cJSON_CreateObject();
	char *url = NULL, *shown = NULL;
	int rc;

	(void)m;
	if (asprintf(&url, "%s/bot%s/sendMessage", t->url, token) < 0)
		url = NULL;
	if (asprintf(&shown, "%s/bot***/sendMessage", t->url) < 0)
		shown = NULL;
	if ((rc = push_urls(req, "POST", url, shown)) < 0) {
		cJSON_Delete(o);
		return rc;
	}
	if (o == NULL || !cJSON_AddStringToObject(o, "chat_id", t->chat_id) ||
	    !cJSON_AddStringToObject(o, "text", n->text)) {
		cJSON_Delete(o);
		return -ENOMEM;
	}
	return push_json_body(req, o);
}

static int
webhook_request(const struct push_transport *t, const struct transport_msg *m,
		const struct mail2text_note *n, const char *token,
		struct push_request *req)
{
	cJSON *o = cJSON_CreateObject(), *to = NULL;
	int rc;

	if ((rc = push_urls(req, "POST", strdup(t->url), strdup(t->url))) < 0 ||
	    (rc = push_bearer(req, token)) < 0) {
		cJSON_Delete(o);
		return rc;
	}
	if (o == NULL || !cJSON_AddStringToObject(o, "id", m->id) ||
	    !cJSON_AddStringToObject(o, "from", n->from) ||
	    !cJSON_AddStringToObject(o, "sender", m->sender) ||
	    (to = cJSON_AddArrayToObject(o, "to")) == NULL)
		goto nomem;
	for (size_t r = 0; r < m->nrcpt; r++) {
		cJSON *a = cJSON_CreateString(m->rcpt[r].address);

		if (a == NULL || !cJSON_AddItemToArray(to, a)) {
			cJSON_Delete(a);
			goto nomem;
		}
	}
	if (!cJSON_AddStringToObject(o, "subject", n->title) ||
	    !(n->date ? cJSON_AddStringToObject(o, "date", n->date)
		      : cJSON_AddNullToObject(o, "date")) ||
	    !cJSON_AddStringToObject(o, "text", n->text) ||
	    !cJSON_AddStringToObject(o, "priority",
				     n->urgent ? "urgent" : "normal") ||
	    !cJSON_AddStringToObject(o, "host", t->host))
		goto nomem;
	return push_json_body(req, o);
nomem:
	cJSON_Delete(o);
	return -ENOMEM;
}

const struct push_service push_ntfy = {
    .type = "ntfy",
    .text = {.limit = 4096, .footer = 1},
    .has_priority = 1,
    .prio_min = 1,
    .prio_max = 5,
    .prio_default = 3,
    .prio_urgent = 5,
    .request = ntfy_request,
};

const struct push_service push_gotify = {
    .type = "gotify",
    .text = {.limit = 65536, .footer = 1},
    .has_priority = 1,
    .prio_min = 0,
    .prio_max = 10,
    .prio_default = 5,
    .prio_urgent = 10,
    .request = gotify_request,
};

const struct push_service push_matrix = {
    .type = "matrix",
    .text = {.limit = 32768, .title_in_text = 1, .footer = 1},
    .request = matrix_request,
};

const struct push_service push_telegram = {
    .type = "telegram",
    .default_url = "https://api.telegram.org",
    .text = {.limit = 4096, .limit_utf16 = 1, .title_in_text = 1, .footer = 1},
    .request = telegram_request,
};

const struct push_service push_webhook = {
    .type = "webhook",
    .text = {.limit = 65536},
    .request = webhook_request,
};

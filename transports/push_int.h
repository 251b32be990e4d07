/*
 * push_int.h - the push transports (ntfy, gotify, matrix, telegram,
 * webhook): push.c does what they share (configuration, the token, the
 * HTTP request through libcurl, the judgement of the answer); each
 * service is a struct push_service (push_services.c) that says how a
 * notification becomes its request.
 */
#ifndef SPOOL_PUSH_INT_H
#define SPOOL_PUSH_INT_H

#include <curl/curl.h>

#include "spool/transport.h"
#include "mail2text.h"

/* A token is one line of at most this many bytes. */
#define PUSH_TOKEN_MAX 1024

struct push_service;

struct push_transport {
	struct transport base;
	const struct push_service *svc;
	char *url;	  /* no trailing '/' */
	char *token_file; /* NULL: no token (ntfy, webhook) */
	char *room;	  /* matrix */
	char *chat_id;	  /* telegram */
	char *ca_file;	  /* NULL: the system store */
	int priority;	  /* the service's scale; the default if unset */
	int64_t connect_timeout, timeout;
	char host[256]; /* for the notification's footer */
};

/* One HTTP request, made by a service and freed by push.c (wiped: the
 * URL or a header may hold the token). */
struct push_request {
	const char *method; /* "POST" or "PUT" */
	char *url;
	char *shown_url; /* the URL for messages: never the token */
	struct curl_slist *headers;
	char *body;
	size_t len;
};

struct push_service {
	const char *type;	 /* the `type =` word */
	const char *default_url; /* NULL: url is required */
	/* how the text is made: its limit, whether the title opens it,
	 * the footer */
	struct mail2text_opts text;
	/* the priority scale, and the urgent value; has_priority 0: the
	 * service has none (the `priority` key is refused) */
	int has_priority, prio_min, prio_max, prio_default, prio_urgent;
	/* Fills req for message m and its notification n; token is ""
	 * without token_file. 0 or -ENOMEM. */
	int (*request)(const struct push_transport *t,
		       const struct transport_msg *m,
		       const struct mail2text_note *n, const char *token,
		       struct push_request *req);
};

extern const struct push_service push_ntfy, push_gotify, push_matrix,
    push_telegram, push_webhook;

/* Helpers for the services. */
/* Appends "Name: value" to req->headers; 0 or -ENOMEM. */
int push_header(struct push_request *req, const char *name, const char *value);
/* The notification's priority on the service's scale. */
int push_priority(const struct push_transport *t,
		  const struct mail2text_note *n);

#endif

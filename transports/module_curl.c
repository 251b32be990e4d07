/*
 * module_curl.c - the table of spoold-curl.so (module.h): SMTP over
 * implicit TLS, SMTP session probes and HTTP probes, all on libcurl.
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>

#include "module.h"
#include "smtp_int.h"

static int
curl_module_init(char *err, size_t errlen)
{
	CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);

	if (rc != CURLE_OK) {
		snprintf(err, errlen, "libcurl: %s", curl_easy_strerror(rc));
		return -EIO;
	}
	return 0;
}

const struct module_curl spool_module_curl = {
    .head = {SPOOL_MODULE_VERSION, sizeof(struct module_curl),
	     curl_module_init},
    .smtp_deliver = smtp_curl_deliver,
    .smtp_probe = smtp_probe,
    .smtp_probe_cancel_all = smtp_probe_cancel_all,
    .probe_new = probe_curl_new,
    .probe_start = probe_curl_start,
    .probe_close = probe_curl_close,
};

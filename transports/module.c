/*
 * module.c - loads the transports' modules (module.h) on first use, and
 * the daemon's side of what lives in them: the HTTP probe engine and the
 * cancelling of session probes.
 *
 * A module is looked for at SPOOL_MODULE_RELDIR from the directory of the
 * running executable: the installed layout (sbin/../lib/<arch>/spoold) and
 * the build tree's, which mirrors it, so a build never loads an installed
 * module nor the other way round. Once loaded a module stays (no
 * dlclose): its tables are used until the daemon exits.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool/log.h"
#include "spool/util.h"
#include "module.h"

struct module {
	const char *file;
	const char *symbol;
	size_t size;	   /* of the table the daemon was built with */
	const void *table; /* NULL until loaded */
};

static pthread_mutex_t module_lock = PTHREAD_MUTEX_INITIALIZER;
static struct module module_curl = {MODULE_CURL_FILE, "spool_module_curl",
				    sizeof(struct module_curl), NULL};
static struct module module_push = {MODULE_PUSH_FILE, "spool_module_push",
				    sizeof(struct module_push), NULL};
/* set by transport_probe_cancel_all, before or after the load */
static atomic_int module_probes_cancelled;

/* dir/SPOOL_MODULE_RELDIR/file, dir being the executable's. */
static int
module_path(const char *file, char *path, size_t len, char *err, size_t errlen)
{
	char exe[PATH_MAX], dir[PATH_MAX + 64];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;

	if (n < 0) {
		int rc = -errno;

		snprintf(err, errlen,
			 "cannot find spoold's own path (/proc/self/exe) to "
			 "load %s: %s; is /proc mounted?",
			 file, strerror(-rc));
		return rc;
	}
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (slash != NULL)
		*slash = '\0';
	if ((size_t)snprintf(dir, sizeof(dir), "%s/%s", exe,
			     SPOOL_MODULE_RELDIR) >= sizeof(dir)) {
		snprintf(err, errlen, "module path of %s: too long", file);
		return -ENAMETOOLONG;
	}
	/* without "sbin/..": a message names the file plainly */
	if (realpath(dir, exe) != NULL)
		str_copy(dir, exe, sizeof(dir));
	if ((size_t)snprintf(path, len, "%s/%s", dir, file) >= len) {
		snprintf(err, errlen, "module path of %s: too long", file);
		return -ENAMETOOLONG;
	}
	return 0;
}

/* Loads m once and runs its init; the table, or NULL with err. */
static const void *
module_get(struct module *m, char *err, size_t errlen)
{
	char path[PATH_MAX + 64];
	const struct module_head *head;
	const void *table = NULL;
	void *h;

	pthread_mutex_lock(&module_lock);
	if (m->table != NULL) {
		table = m->table;
		goto out;
	}
	if (module_path(m->file, path, sizeof(path), err, errlen) < 0)
		goto out;
	if ((h = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		const char *why = dlerror();
		size_t n = strlen(path);

		/* dlerror names the file too, mostly */
		if (strncmp(why, path, n) == 0 &&
		    strncmp(why + n, ": ", 2) == 0)
			why += n + 2;
		snprintf(err, errlen,
			 "cannot load %s: %s; reinstall spoold, whose "
			 "configuration needs this module",
			 path, why);
		goto out;
	}
	head = dlsym(h, m->symbol);
	if (head == NULL || head->size != m->size ||
	    strcmp(head->version, SPOOL_MODULE_VERSION) != 0) {
		snprintf(err, errlen,
			 "%s is not the module of this spoold %s (%s); "
			 "reinstall spoold",
			 path, SPOOL_MODULE_VERSION,
			 head == NULL ? "no table" : head->version);
		dlclose(h);
		goto out;
	}
	if (head->init(err, errlen) < 0) {
		dlclose(h);
		goto out;
	}
	table = m->table = head;
out:
	pthread_mutex_unlock(&module_lock);
	return table;
}

const struct module_curl *
module_curl_get(char *err, size_t errlen)
{
	const struct module_curl *c = module_get(&module_curl, err, errlen);

	if (c != NULL && atomic_load(&module_probes_cancelled))
		c->smtp_probe_cancel_all();
	return c;
}

const struct module_push *
module_push_get(char *err, size_t errlen)
{
	return module_get(&module_push, err, errlen);
}

void
transport_probe_cancel_all(void)
{
	const struct module_curl *c;

	atomic_store(&module_probes_cancelled, 1);
	pthread_mutex_lock(&module_lock);
	c = module_curl.table;
	pthread_mutex_unlock(&module_lock);
	if (c != NULL)
		c->smtp_probe_cancel_all();
}

/* ---- spool/probe.h: the engine loads libcurl at its first probe ------- */

struct probe_engine {
	uv_loop_t *loop;
	const struct module_curl *curl; /* NULL until the first probe */
	struct probe_curl *impl;
};

int
probe_engine_new(struct probe_engine **out, uv_loop_t *loop, char *err,
		 size_t errlen)
{
	if ((*out = calloc(1, sizeof(**out))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	(*out)->loop = loop;
	return 0;
}

int
probe_start(struct probe_engine *e, const struct probe_request *req,
	    probe_done_cb *cb, void *arg)
{
	char err[512];
	int rc;

	if (e->impl == NULL) {
		e->curl = module_curl_get(err, sizeof(err));
		if (e->curl == NULL) {
			log_err("probe of %s: %s", req->url, err);
			return -ENOENT;
		}
		rc = e->curl->probe_new(&e->impl, e->loop, err, sizeof(err));
		if (rc < 0) {
			log_err("probe of %s: %s", req->url, err);
			return rc;
		}
	}
	return e->curl->probe_start(e->impl, req, cb, arg);
}

void
probe_engine_close(struct probe_engine *e)
{
	if (e == NULL)
		return;
	if (e->impl != NULL)
		e->curl->probe_close(e->impl);
	free(e);
}

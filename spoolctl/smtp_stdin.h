/*
 * smtp_stdin.h - `sendmail -bs`: an SMTP server dialogue on stdin and
 * stdout, for mailer libraries that speak SMTP to a local sendmail
 * (Nextcloud's default, Symfony Mailer, Swift Mailer).
 */
#ifndef SPOOLCTL_SMTP_STDIN_H
#define SPOOLCTL_SMTP_STDIN_H

#include "spool/conf.h"

/*
 * Runs one session until QUIT or the end of stdin. Each message goes
 * through the same preparation and spool write as `spoolctl submit`
 * (submit_prepare, submit_spool) and is answered with its queue id.
 * full_name is -F, used only when a From header is added. Returns 0,
 * or EX_IOERR when stdout cannot be written; a refused message or a
 * spool that cannot take it is a reply in the session, not an exit code.
 */
int smtp_stdin_run(const struct conf *cf, const char *full_name);

#endif

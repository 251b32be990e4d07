#!/bin/bash
# t_local_names.sh - mail for the host's own names as submission stores
# it: root, NAME@localhost and NAME@<hostname> through the aliases file to
# [delivery] admin, bare senders in [delivery] domain, a uid with no
# passwd entry as uidNNN (never root), newaliases reporting skipped lines
# and an unreadable aliases file not stopping mail.
. "$(dirname "$0")/lib.sh"

write_conf 9 1h # no relay is needed: the spool file is the result
"$SPOOLCTL" -c "$CONF" init >/dev/null || fail "spoolctl init failed"
ALIASES="$T/aliases"
sed -i "/^\[delivery\]/a admin = admin@example.org\naliases = $ALIASES\ndomain = host.example.org" "$CONF"
cat >"$ALIASES" <<'END'
# the fleet's aliases
postmaster: root
root: administrator, ops@example.org
backup: "|/usr/local/bin/handle-backup"
END

# The envelope of the newest spool file: S and R lines.
envelope_of_last() {
	local f
	f=$(ls -t "$SPOOL"/new/* | head -n 1)
	sed -n '/^$/q; /^[SR] /p' "$f"
}
host=$(hostname)

printf 'Subject: t\n\nbody\n' |
	"$SENDMAIL" -C "$CONF" root postmaster@localhost "cron@$host" \
		someone@example.net || fail "sendmail to local names failed"
env=$(envelope_of_last)
want="S root@host.example.org
R admin@example.org
R ops@example.org
R someone@example.net"
[ "$env" = "$want" ] || fail "envelope: got
$env
want
$want"
log "local names resolved: $(echo "$env" | tr '\n' ' ')"

# the added From is in the domain too
f=$(ls -t "$SPOOL"/new/* | head -n 1)
grep -q '^From: root@host.example.org' "$f" ||
	fail "From not in the domain: $(grep '^From:' "$f")"

# a uid without a passwd entry: its own name, never root's
uid=54321
! getent passwd $uid >/dev/null || fail "uid $uid exists here"
chmod 755 "$T"
chmod 644 "$CONF"
# through the setgid sendmail, as every user submits
setgid_spoolctl
printf 'Subject: u\n\nbody\n' |
	setpriv --reuid=$uid --regid=$uid --clear-groups \
		"$SETGID_SENDMAIL" -C "$CONF" admin@example.org ||
	fail "sendmail as uid $uid failed"
env=$(envelope_of_last)
echo "$env" | grep -qx "S uid$uid@host.example.org" ||
	fail "sender of uid $uid: $env"
log "uid $uid sends as uid$uid@host.example.org"

# newaliases: the skipped command is reported, root's mail is shown
NEWALIASES="$(dirname "$SENDMAIL")/newaliases"
out=$(SPOOLD_CONFIG=$CONF "$NEWALIASES" 2>&1) || fail "newaliases: $out"
grep -q "aliases:4: backup: skipped: a command" <<<"$out" ||
	fail "newaliases did not report the command: $out"
grep -q "mail to root goes to admin@example.org, ops@example.org" <<<"$out" ||
	fail "newaliases summary: $out"
log "newaliases: $(tail -n 1 <<<"$out")"

# an unreadable aliases file: one warning, the mail still goes to admin
chmod 000 "$ALIASES"
printf 'Subject: w\n\nbody\n' |
	setpriv --reuid=$uid --regid=$uid --clear-groups \
		"$SETGID_SENDMAIL" -C "$CONF" root 2>"$T/warn.out" ||
	fail "sendmail with an unreadable aliases file failed"
grep -q "warning: aliases not applied" "$T/warn.out" ||
	fail "no warning: $(cat "$T/warn.out")"
envelope_of_last | grep -qx "R admin@example.org" ||
	fail "root's mail with no aliases: $(envelope_of_last)"
log "an unreadable aliases file: root's mail to admin, with a warning"

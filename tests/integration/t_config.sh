#!/bin/bash
# t_config.sh - a typo outside [spool] never costs an alarm: submit and
# sendmail warn and queue; spoold and spoold --check-config refuse the file
# with file, line, key and a "did you mean" hint; --check-config finds what
# spoold finds at start (secret modes, unreadable files, spool folder);
# quotes and the case of section names are handled alike by both.
. "$(dirname "$0")/lib.sh"

start_sink
write_conf "$SINK_PORT"
good=$(cat "$CONF")

# --- 1. a good file: configuration OK, exit 0 ---
out=$("$SPOOLD" -c "$CONF" --check-config 2>&1) ||
	fail "check-config refused a good file: $out"
[ "$out" = "$CONF: configuration OK" ] || fail "check-config said: $out"
# a transport no daemon has judged yet is neither up nor down
spoolctl init >/dev/null || fail "init failed"
spoolctl status --json | python3 -c '
import json, sys
t = json.load(sys.stdin)["transports"]
sys.exit(0 if t[0]["up"] is None else 1)' ||
	fail "a transport never judged shows up/down: $(spoolctl status --json)"
spoolctl status | grep -q "transport local: unknown" ||
	fail "status text: $(spoolctl status)"

# --- 2. typos in [transport] and [delivery], in the file and the
# environment ---
printf '%s\nconnect_timout = 5s\n[delivery]\nretrys = 1m\n' "$good" >"$CONF"
rc=0
out=$(SPOOLD_DELIVERY_RETRYS=1m "$SPOOLD" -c "$CONF" --check-config 2>&1) ||
	rc=$?
[ "$rc" = 78 ] || fail "check-config exit $rc on typos, want 78: $out"
[ "$(printf '%s\n' "$out" | wc -l)" = 3 ] ||
	fail "check-config: want one line per problem (3): $out"
echo "$out" | grep -qF "$CONF:18: [transport local] connect_timout: unknown key; did you mean connect_timeout?" ||
	fail "no file/line/key/hint for connect_timout: $out"
echo "$out" | grep -qF "[delivery] retrys: unknown key; did you mean retry?" ||
	fail "no hint for retrys: $out"
echo "$out" | grep -qF "environment SPOOLD_DELIVERY_RETRYS: unknown key; did you mean SPOOLD_DELIVERY_RETRY?" ||
	fail "no hint for SPOOLD_DELIVERY_RETRYS: $out"

# spoold refuses to start on it, with the same line
rc=0
SPOOLD_DELIVERY_RETRYS=1m "$SPOOLD" -c "$CONF" -f >"$T/refused.log" 2>&1 ||
	rc=$?
[ "$rc" = 78 ] || fail "spoold started on a typo (exit $rc)"
grep -qF "did you mean connect_timeout?" "$T/refused.log" ||
	fail "spoold's refusal lacks the hint: $(cat "$T/refused.log")"

# submit and sendmail warn, queue, exit 0
rc=0
id=$(printf 'Subject: alarm\n\nbody\n' |
	SPOOLD_DELIVERY_RETRYS=1m spoolctl submit admin@example.org \
		2>"$T/submit.err") || rc=$?
[ "$rc" = 0 ] || fail "submit refused to queue on a typo (exit $rc): $(cat "$T/submit.err")"
[ -f "$SPOOL/new/$id" ] || fail "submit printed $id but new/ lacks it"
[ "$(wc -l <"$T/submit.err")" = 3 ] ||
	fail "submit: want one warning line per problem: $(cat "$T/submit.err")"
grep -q "warning: .*connect_timout: unknown key; did you mean connect_timeout?" \
	"$T/submit.err" || fail "submit's warning lacks the hint"
rc=0
printf 'To: admin@example.org\nSubject: cron\n\nbody\n' |
	"$SENDMAIL" -C "$CONF" -t 2>"$T/sendmail.err" || rc=$?
[ "$rc" = 0 ] || fail "sendmail refused to queue on a typo (exit $rc): $(cat "$T/sendmail.err")"
grep -q "warning: " "$T/sendmail.err" || fail "sendmail did not warn"
[ "$(spool_files new)" = 2 ] || fail "want 2 messages in new/, $(spool_files new)"

# a problem in [spool] itself is refused by submit too: the message would
# land in the wrong spool
printf '%s\n' "$good" | sed 's/^dir = /dirr = /' >"$CONF"
rc=0
printf 'Subject: x\n\nbody\n' | spoolctl submit admin@example.org \
	2>"$T/submit2.err" || rc=$?
[ "$rc" = 78 ] || fail "submit accepted a typo in [spool] (exit $rc)"
grep -qF "[spool] dirr: unknown key; did you mean dir?" "$T/submit2.err" ||
	fail "submit's refusal: $(cat "$T/submit2.err")"

# --- 3. quotes and section-name case: both programs read them alike ---
cat >"$CONF" <<EOT
[SPOOL]
dir = "$SPOOL"
max_size = '1M'

[Delivery]
route = Local
retry = 1s

[Transport Local]
host = "127.0.0.1"
port = "$SINK_PORT"
EOT
out=$("$SPOOLD" -c "$CONF" --check-config 2>&1) ||
	fail "check-config refused quotes/case: $out"
start_spoold
wait_for_count 2 20
id=$(printf 'Subject: quoted\n\nbody\n' | spoolctl submit admin@example.org) ||
	fail "submit on the quoted file failed"
wait_for_count 3 20
spoolctl status | grep -q "transport local: up" ||
	fail "status does not show transport local: $(spoolctl status)"
stop_spoold

# --- 4. what spoold checks at start: a secret readable by others, an
# unreadable CA file, a spool folder it cannot write ---
echo token >"$T/token"
chmod 644 "$T/token"
cat >"$CONF" <<EOT
[spool]
dir = $T/ro/spool

[transport relay]
host = 127.0.0.1
port = $SINK_PORT
tls = starttls
user = u
password_file = $T/token

[transport box]
type = maildir
path = /proc/spoold-box
EOT
mkdir -p "$T/ro"
chmod 555 "$T/ro"
rc=0
out=$(runuser -u nobody -- "$SPOOLD" -c "$CONF" --check-config 2>&1) ||
	rc=$?
[ "$rc" = 78 ] || fail "check-config exit $rc, want 78: $out"
echo "$out" | grep -qF "[transport relay]: password_file $T/token: readable by group or others" ||
	fail "check-config missed the secret's mode: $out"
echo "$out" | grep -qF "[spool] dir: $T/ro: Permission denied (as uid $(id -u nobody)" ||
	fail "check-config missed the spool folder: $out"
echo "$out" | grep -qF "[transport box] path: /proc" ||
	fail "check-config missed the maildir folder: $out"
chmod 600 "$T/token"
out=$(runuser -u nobody -- "$SPOOLD" -c "$CONF" --check-config 2>&1) || true
echo "$out" | grep -qF "[transport relay] password_file: $T/token: Permission denied (as uid $(id -u nobody))" ||
	fail "check-config missed a secret the daemon's user cannot read: $out"
rc=0
"$SPOOLD" -c "$T/missing.conf" --check-config 2>"$T/missing.err" || rc=$?
[ "$rc" = 78 ] || fail "check-config on a missing file: exit $rc"
grep -qF "$T/missing.conf: No such file" "$T/missing.err" ||
	fail "missing file: $(cat "$T/missing.err")"
log "ok"

#!/bin/bash
# t_callers.sh - the fleet's callers, as written, through the sendmail
# name; submit --wait for delivered, timed-out and failed messages; and
# check reaching each Nagios state.
. "$(dirname "$0")/lib.sh"

start_sink --reject-rcpt bounce@example.net=550 \
	--reject-rcpt later@example.net=451
write_conf "$SINK_PORT" 1h
start_spoold
export SPOOLD_CONFIG=$CONF

# the body of the last captured message, LF line ends, for comparison
last_eml() {
	ls "$SINK_DIR"/*.eml | sort | tail -n 1
}
body_of() {
	python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); print(d.split(b"\r\n\r\n",1)[1].replace(b"\r\n",b"\n").decode(), end="")' "$1"
}
header_of() { # FILE NAME
	python3 -c 'import sys,email; m=email.message_from_binary_file(open(sys.argv[1],"rb")); print(m.get(sys.argv[2]) or "")' "$1" "$2"
}

# --- 1. the systemd OnFailure= alarm ---
"$SENDMAIL" -t <<'EOF' || fail "the alarm caller failed"
To: admin@example.org
From: systemd <no-reply@example.org>
Subject: [host1] unit backup.service failed
Content-Transfer-Encoding: 8bit
Content-Type: text/plain; charset=UTF-8

Der Dienst backup.service ist fehlgeschlagen — Prüfung nötig.
Status: failed ✗
EOF
wait_for_count 1 20
f=$(last_eml)
[ "$(body_of "$f")" = "Der Dienst backup.service ist fehlgeschlagen — Prüfung nötig.
Status: failed ✗" ] || fail "alarm body changed: $(body_of "$f")"
[ "$(header_of "$f" From)" = "systemd <no-reply@example.org>" ] ||
	fail "alarm From changed: $(header_of "$f" From)"
[ -n "$(header_of "$f" Date)" ] && [ -n "$(header_of "$f" Message-ID)" ] ||
	fail "Date or Message-ID not added"
sink_tool envelopes "$SINK_DIR" | grep -F "admin@example.org" >/dev/null ||
	fail "alarm not addressed to admin@example.org"

# --- 2. the heartbeat: only a Subject, the recipient as an argument ---
printf 'Subject: heartbeat host1\n\nalive\n' |
	"$SENDMAIL" -t admin@example.org || fail "the heartbeat caller failed"
wait_for_count 2 20
f=$(last_eml)
[ "$(body_of "$f")" = "alive" ] || fail "heartbeat body: $(body_of "$f")"
[ -n "$(header_of "$f" From)" ] || fail "heartbeat got no From"

# --- 3. PHP's sendmail_path = "/usr/sbin/sendmail -t -i": a lone dot
# is text, not the end ---
printf 'To: web@example.org\nSubject: contact form\n\nline one\n.\nline three\n' |
	"$SENDMAIL" -t -i || fail "the PHP caller failed"
wait_for_count 3 20
f=$(last_eml)
[ "$(body_of "$f")" = "line one
.
line three" ] || fail "PHP body changed: $(body_of "$f")"

# --- submit --wait ---
rc=0
printf 'Subject: w1\n\nx\n' | spoolctl submit --wait=20 ok@example.net \
	>/dev/null || rc=$?
[ "$rc" = 0 ] || fail "submit --wait of a deliverable message exited $rc"
rc=0
printf 'Subject: w2\n\nx\n' | spoolctl submit --wait=3 later@example.net \
	>/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 75 ] || fail "submit --wait of a deferred message exited $rc"
grep -q "still queued" "$T/err" || fail "no reason: $(cat "$T/err")"
rc=0
printf 'Subject: w3\n\nx\n' | spoolctl submit --wait=20 bounce@example.net \
	>/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 69 ] || fail "submit --wait of a rejected message exited $rc"
grep -q "550" "$T/err" || fail "no 550 in the reason: $(cat "$T/err")"

# --- check: every Nagios state ---
check_is() { # CODE ARGS...
	local want=$1 rc=0 out
	shift
	out=$(spoolctl check "$@") || rc=$?
	log "check $*: $out (exit $rc)"
	[ "$rc" = "$want" ] || fail "check $* exited $rc, want $want: $out"
}
check_is 1 # a failed message is kept: WARNING
spoolctl delete $(spoolctl list --failed --json |
	sink_tool json '" ".join(m["id"] for m in d)') >/dev/null
check_is 0
out=$(spoolctl check)
case $out in "OK: "*" queued, oldest "*"s, local up") ;;
*) fail "check summary: $out" ;; esac
sleep 2
check_is 2 --max-age 1s # the deferred message is older than that
stop_spoold
check_is 2 # no daemon
rc=0
"$SPOOLCTL" -c "$T/missing.conf" check >/dev/null || rc=$?
[ "$rc" = 3 ] || fail "check with a missing configuration exited $rc"
log "callers, --wait and check: ok"

#!/bin/bash
# t_mailu_wrong_token.sh - a wrong token never loses mail. With route
# "mailu, local" the message goes through the local relay; once the token
# in the same password_file is fixed, mail goes to Mailu again without a
# restart (credentials are read per connection). With route "mailu" alone
# the message stays queued (list --json shows it, no sink got it) and goes
# out once the token is fixed. Neither token appears in spoold's log or in
# spoolctl's output.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_mailu.sh"

# each failed AUTH costs 2 s in Dovecot, and a client may try PLAIN and
# then LOGIN
DELIVER_WITHIN=15
# the breaker's first cool-down is 10 s
BACK_WITHIN=20

mailu_setup
WRONG=$(new_token)

# submit_to mailu|local TAG: queues TAG, waits for it at that sink, and
# sets ID.
submit_to() {
	local out mid ms
	out=$(submit_msg "$2")
	ID=${out%% *}
	mid=${out#* }
	ms=$(wait_in_sink "$([ "$1" = mailu ] && echo "$MAILU_SINK_DIR" ||
		echo "$LOCAL_SINK_DIR")" "$mid" "$DELIVER_WITHIN")
	log "$2 ($ID) arrived at $1's sink after $ms ms"
	echo "$2 $mid $T/$2.eml" >>"$T/expect.$1"
}

# secrets_check TAG [ID]: neither token in spoolctl's output or the logs.
secrets_check() {
	local tok
	spoolctl status >"$T/out.$1.status" 2>&1 || true
	spoolctl status --json >"$T/out.$1.status.json" 2>&1 || true
	spoolctl list --json --all >"$T/out.$1.list.json" 2>&1 || true
	spoolctl list --all >"$T/out.$1.list" 2>&1 || true
	if [ -n "${2:-}" ]; then
		spoolctl show "$2" >"$T/out.$1.show" 2>&1 || true
		spoolctl show "$2" --json >"$T/out.$1.show.json" 2>&1 || true
	fi
	for tok in "$WRONG" "$MAILU_TOKEN"; do
		no_secret_in "$tok" "spoolctl's output" "$T"/out.*
		no_secret_in "$tok" "spoold's log" "$T"/spoold.*.log
	done
}

# ---- 1. route mailu, local; wrong token: the local relay gets it --------
mailu_client_token "$WRONG"
write_mailu_conf --tls starttls --route "mailu, local"
start_spoold
wait_probed mailu 10
mark=$(dovecot_log_mark)
submit_to local token-wrong-1
breaker_from=$(date +%s%N)
dovecot_log_since "$mark" >"$T/dovecot.1"
# auth_verbose: the auth process logs each mismatch at once; the
# "auth failed" summary only comes with the disconnect
grep -qE 'Password mismatch|auth failed' "$T/dovecot.1" ||
	fail "Dovecot logged no failed AUTH: $(cat "$T/dovecot.1")"
! grep 'Login: ' "$T/dovecot.1" || fail "Dovecot logged a login"
grep -qiE 'transport=mailu relay failed: .*auth' "$SPOOLD_LOG" ||
	fail "spoold's log does not name the AUTH failure"
log "spoold: $(grep -m1 'transport=mailu relay failed' "$SPOOLD_LOG")"
# the breaker keeps mailu down for 10 s after the failure; on a loaded
# machine the checks above may have used them up
if [ "$(ms_since "$breaker_from")" -lt 7000 ]; then
	wait_transport mailu False 2 >/dev/null
fi
secrets_check wrong-1 "$ID"

# ---- 2. token fixed in the same file, no restart: Mailu again ---------
pid=$SPOOLD_PID
mailu_client_token "$MAILU_TOKEN"
ms=$(wait_transport mailu True "$BACK_WITHIN")
log "mailu up ${ms} ms after the token was fixed"
submit_to mailu token-fixed-1
if [ "$SPOOLD_PID" != "$pid" ] || ! pid_alive "$pid"; then
	fail "spoold restarted"
fi
stop_spoold

# ---- 3. route mailu only; wrong token: the message stays queued -------
# implicit TLS here: the other SMTP engine (libcurl) reads the token too
mailu_client_token "$WRONG"
write_mailu_conf --tls implicit --route mailu --spool "$T/spool-only"
start_spoold
mark=$(dovecot_log_mark)
out=$(submit_msg token-wrong-2)
ID=${out%% *}
mid=${out#* }
err=$(wait_attempted "$ID" "$DELIVER_WITHIN")
log "queued with last_error: $err"
echo "$err" | grep -qi auth || fail "last_error does not name AUTH: $err"
sleep 3 # a retry (1s, 2s) has its chance to deliver wrongly
! in_sink "$MAILU_SINK_DIR" "$mid" || fail "Mailu got it with a wrong token"
! in_sink "$LOCAL_SINK_DIR" "$mid" || fail "the local relay got it"
[ "$(spoolctl list --json | sink_tool json \
	"[m['state'] for m in d if m['id'] == '$ID']")" != "[]" ] ||
	fail "the message left the queue: $(spoolctl list --json)"
dovecot_log_since "$mark" | grep -qE 'Password mismatch|auth failed' ||
	fail "Dovecot logged no failed AUTH over implicit TLS"
! dovecot_log_since "$mark" | grep 'Login: ' || fail "Dovecot logged a login"
secrets_check wrong-2 "$ID"

# the fixed token: the same message goes out at the next try
mailu_client_token "$MAILU_TOKEN"
rc=0
spoolctl flush "$ID" >/dev/null || rc=$?
# 66: a scheduled retry (1s, 2s) took the fixed token before the flush
[ "$rc" = 0 ] || { [ "$rc" = 66 ] && in_sink "$MAILU_SINK_DIR" "$mid"; } ||
	fail "spoolctl flush exited $rc"
wait_in_sink "$MAILU_SINK_DIR" "$mid" "$DELIVER_WITHIN" >/dev/null
echo "token-wrong-2 $mid $T/token-wrong-2.eml" >>"$T/expect.mailu"
log "token-wrong-2 ($ID) delivered to Mailu once the token was fixed"

sleep 1 # a duplicate would arrive now
verify_at local "$T/expect.local"
verify_at mailu "$T/expect.mailu"
[ "$(sink_count "$LOCAL_SINK_DIR")" = 1 ] ||
	fail "the local sink has $(sink_count "$LOCAL_SINK_DIR"), want 1"
[ "$(sink_count "$MAILU_SINK_DIR")" = 2 ] ||
	fail "Mailu's sink has $(sink_count "$MAILU_SINK_DIR"), want 2"
secrets_check end
stop_spoold
no_secret_in "$WRONG" "spoold's log" "$T"/spoold.*.log
no_secret_in "$MAILU_TOKEN" "spoold's log" "$T"/spoold.*.log
log "ok"

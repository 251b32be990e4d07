#!/usr/bin/env bash
# t_push_failover: route = mailu, local, ntfy. With Mailu (Dovecot) and
# the local relay both down, the alarm reaches ntfy within one probe
# interval (5 s here), readable; once Mailu is back and its breaker has
# cooled down, the next alarm goes by mail again and ntfy gets nothing
# more. No token in any log or output.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_mailu.sh"
. "$(dirname "$0")/lib_push.sh"

PROBE_INTERVAL=5

# push_setup runs nginx with the push services; the rest of mailu_setup
# (sinks, token, Dovecot) follows
mailu_require
push_setup
start_mailu_sinks
LOCAL_SINK_PID=$SINK_PID
MAILU_TOKEN=$(new_token)
mailu_server_token "$MAILU_TOKEN"
mailu_client_token "$MAILU_TOKEN"
start_dovecot
write_mailu_conf --route "mailu, local, ntfy" --retry 1h
sed -i "s/^probe_interval = .*/probe_interval = ${PROBE_INTERVAL}s/" "$CONF"
push_sections >>"$CONF"
start_spoold
wait_probed mailu 20

# alarm FILE MESSAGE-ID: the fleet's alarm with a Message-ID to find it
alarm() {
	push_alarm "$1"
	sed -i "1i Message-ID: $2" "$1"
}
alarm "$T/a1.eml" "<a1@node7.example.org>"
alarm "$T/a2.eml" "<a2@node7.example.org>"

# ---- both relays down: the push service gets the alarm ----------------
stop_dovecot
kill "$LOCAL_SINK_PID"
wait_gone "$LOCAL_SINK_PID" 10 || fail "the local sink did not stop"
port_closed "$LOCAL_SINK_PORT" || fail "the local relay still listens"
t0=$(date +%s%N)
spoolctl submit -f alarm@node7.example.org "$MAILU_RCPT" <"$T/a1.eml" \
	>/dev/null || fail "submit failed"
wait_push_event ntfy 1 $((PROBE_INTERVAL * 3))
ms=$(ms_since "$t0")
[ "$ms" -lt $((PROBE_INTERVAL * 1000)) ] ||
	fail "the alarm took $ms ms to reach ntfy, over one probe interval"
log "both relays down: the alarm reached ntfy after $ms ms"
grep -q 'transport=mailu relay failed' "$SPOOLD_LOG" ||
	fail "mailu was not tried first"
grep -q 'transport=local relay failed' "$SPOOLD_LOG" ||
	fail "local was not tried second"
python3 - "$PUSH_DIR/events.jsonl" "$PUSH_ALARM_SUBJECT" <<'PY' ||
import json, sys
e = [json.loads(l) for l in open(sys.argv[1])][0]
ok = e["title"] == sys.argv[2] and \
    e["text"].startswith("× nginx.service - A high performance web server\n")
sys.exit(0 if ok else 1)
PY
	fail "the alarm at ntfy is not readable"

# ---- Mailu back: the next alarm goes by mail --------------------------
start_dovecot
wait_transport mailu True 60 >/dev/null
spoolctl submit -f alarm@node7.example.org "$MAILU_RCPT" <"$T/a2.eml" \
	>/dev/null || fail "submit failed"
ms=$(wait_in_sink "$MAILU_SINK_DIR" "<a2@node7.example.org>" 30)
log "Mailu back: the next alarm arrived by mail after $ms ms"
[ "$(push_count ntfy)" = 1 ] ||
	fail "ntfy got $(push_count ntfy) requests, want 1"
in_sink "$MAILU_SINK_DIR" "<a1@node7.example.org>" &&
	fail "the first alarm also went by mail"
stop_spoold
push_no_violations
push_no_token_anywhere
no_secret_in "$MAILU_TOKEN" "spoold's logs" "$T"/spoold.*.log
log "PASS"

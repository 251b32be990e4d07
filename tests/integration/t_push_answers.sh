#!/usr/bin/env bash
# t_push_answers: what each answer of a push service does, counted at the
# stand-in (no storm, nothing lost):
#   429 + Retry-After  the message waits at least that long, then goes;
#                      the transport slows down and is never down
#   500                the next transport gets it in the same attempt
#   401 (bad token)    the transport's failure: next transport, never the
#                      message's; a fixed token works without a restart
#   413                this transport cannot carry it: the next one gets
#                      it, and the transport stays up
#   a hung server      the timeout, then the next transport
#   a wrong certificate refused before any request, the next transport
#   a lost answer to the Matrix PUT, then the retry: one event
# and no token in any log or output.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_mailu.sh"
. "$(dirname "$0")/lib_push.sh"

push_setup
push_alarm "$T/alarm.eml"

# conf ROUTE: the services, plus ntfy behind the untrusted certificate
conf() {
	write_push_conf "$1"
	cat >>"$CONF" <<CONF

[transport ntfybad]
type = ntfy
url = https://localhost:$PUSH_BAD_PORT/ntfy/alarms
token_file = $T/ntfy.token
ca_file = $MAILU_CA
timeout = 3s
CONF
}

submit_alarm() {
	spoolctl submit -f alarm@node7.example.org ops@example.net \
		<"$T/alarm.eml" | tr -d '[:space:]'
}

# expect SERVICE REQUESTS EVENTS: the stand-in's counts for SERVICE.
expect() {
	local r e
	r=$(push_count "$1")
	e=$(push_count "$1" events)
	[ "$r" = "$2" ] && [ "$e" = "$3" ] ||
		fail "$1: $r request(s) and $e notification(s), want $2 and $3"
}

# ---- 429 with Retry-After: the message waits at least that long ------
conf ntfy
# (the retry schedule alone would try again after 1 s)
push_control '{"ntfy": {"status": 429, "retry_after": "5", "times": 1}}'
start_spoold
submit_alarm >/dev/null
wait_push_event ntfy 1 30
expect ntfy 2 1
waited=$(python3 - "$PUSH_DIR/requests.jsonl" <<'PY'
import json, sys
t = [r["time"] for r in map(json.loads, open(sys.argv[1]))]
print("%.1f" % (t[1] - t[0]))
PY
)
python3 -c "import sys; sys.exit(float(sys.argv[1]) < 4.5)" "$waited" ||
	fail "429 with Retry-After: 5: tried again after ${waited}s"
# a refusal for rate: the service slows down, it is not down
! grep -q 'transport=ntfy health=down' "$SPOOLD_LOG" ||
	fail "429 marked ntfy down"
grep -q 'transport=ntfy slowed by the relay: paused for 5.0s' "$SPOOLD_LOG" ||
	fail "429: no slow-down logged"
stop_spoold
log "429: tried again after ${waited}s, 2 requests"

# ---- 500: the next transport, same attempt ----------------------------
conf "ntfy, webhook"
push_control '{"ntfy": {"status": 500, "times": 1}}'
start_spoold
submit_alarm >/dev/null
wait_push_event webhook 1 20
expect ntfy 3 1
[ "$(transport_field ntfy "t['up']")" = False ] || fail "500: ntfy still up"
stop_spoold

# ---- 413: the next transport; ntfy stays up --------------------------
push_control '{"ntfy": {"status": 413, "times": 1}}'
start_spoold
submit_alarm >/dev/null
wait_push_event webhook 2 20
expect ntfy 4 1
[ "$(transport_field ntfy "t['up']")" != False ] ||
	fail "413 marked ntfy down"
grep -q 'cannot carry the message' "$SPOOLD_LOG" ||
	fail "413: no 'cannot carry' in the log"
stop_spoold

# ---- hung server: the timeout, then the next transport ----------------
push_control '{"ntfy": {"hang": 20, "times": 1}}'
start_spoold
t0=$(date +%s%N)
submit_alarm >/dev/null
wait_push_event webhook 3 20
ms=$(ms_since "$t0")
[ "$ms" -lt 10000 ] || fail "hung ntfy held the alarm ${ms} ms"
expect ntfy 5 1
stop_spoold
log "hung server: next transport after $ms ms"

# ---- 401: a wrong token fails the transport, not the message ----------
push_control '{}'
conf "gotify, webhook"
push_client_token gotify "wrong-$(push_token gotify)"
start_spoold
id=$(submit_alarm)
wait_push_event webhook 4 20
expect gotify 1 0
[ "$(transport_field gotify "t['up']")" = False ] || fail "401: gotify up"
grep -q 'token was refused' "$SPOOLD_LOG" || fail "401: no reason logged"
spoolctl show "$id" >/dev/null 2>&1 && fail "401: $id still queued"
# the fixed token works at the next session, without a restart
push_client_token gotify "$(push_token gotify)"
stop_spoold
conf gotify
start_spoold
submit_alarm >/dev/null
wait_push_event gotify 1 20
expect gotify 2 1
stop_spoold

# ---- wrong certificate: nothing reaches the service --------------------
conf "ntfybad, webhook"
start_spoold
submit_alarm >/dev/null
wait_push_event webhook 5 20
expect ntfy 5 1
grep -q 'transport=ntfybad relay failed: ntfy https://localhost:[0-9]*/ntfy/alarms: .*certificate' \
	"$SPOOLD_LOG" || fail "wrong certificate: no TLS reason in the log"
stop_spoold

# ---- Matrix: a lost answer, then the retry: one event -----------------
conf matrix
push_control '{"matrix": {"drop_after_event": 1}}'
start_spoold
id=$(submit_alarm)
wait_push_event matrix 1 20
wait_spool_empty 30
expect matrix 2 1
python3 - "$PUSH_DIR/requests.jsonl" <<'PY' || fail "Matrix retry: not the same transaction"
import json, sys
paths = [r["path"] for r in map(json.loads, open(sys.argv[1]))
         if r["service"] == "matrix"]
sys.exit(0 if len(paths) == 2 and paths[0] == paths[1] else 1)
PY
stop_spoold

# nothing lost: every alarm arrived once somewhere, none failed
[ "$(spool_files new cur failed)" = 0 ] || fail "messages left in the spool"
[ "$(spoolctl list --all --json | sink_tool json 'len(d)')" = 0 ] ||
	fail "messages left in the queue"
push_no_violations
push_no_token_anywhere
log "PASS"

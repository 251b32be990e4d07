#!/bin/bash
# t_rate_limit.sh - per-transport rate limits against a relay that has one
# (capture_sink.py --rate-limit: "450 4.7.0 rate limit exceeded" to MAIL
# FROM beyond 20 messages per 10 s, a token bucket holding 20).
#  1. rate = 20/10s, burst = 15: 60 messages queued at once all arrive, the
#     relay refuses none, they take about two periods; meanwhile list says
#     the waiting ones wait for the rate limit and status shows the
#     transport up.
#  2. no rate: the relay's refusals slow the transport (40 messages: 20
#     go, then a pause of 5 s, 10, a pause of 10 s, 10); nothing is lost
#     or failed, and the transport is never down.
#  3. rate_overflow = next: the excess goes to the route's next transport.
# The retry schedule is 1h throughout: a message deferred by it instead of
# waiting for the limit would not arrive within the test.
. "$(dirname "$0")/lib.sh"

N=60

# storm N: queues N messages with spoold stopped (a first start makes
# the spool), then starts it, so that it finds them all at once. Sets T0
# to the start.
storm() {
	local i p pids=()
	start_spoold
	stop_spoold
	# eight submitters at a time: the storm, not the test, is the point
	for ((i = 1; i <= $1; i++)); do
		printf 'Subject: storm %d\n\nbody %d\n' "$i" "$i" |
			spoolctl submit "admin$i@example.org" >/dev/null &
		pids+=($!)
		[ "${#pids[@]}" -lt 8 ] && [ "$i" -lt "$1" ] && continue
		for p in "${pids[@]}"; do
			wait "$p" || fail "a submit failed"
		done
		pids=()
	done
	T0=$(date +%s%N)
	start_spoold
}

# up_of NAME: the transport's "up" in status --json (True, False, None)
up_of() {
	spoolctl status --json | python3 -c '
import json, sys
print([t["up"] for t in json.load(sys.stdin)["transports"]
       if t["name"] == sys.argv[1]][0])' "$1"
}

# rate_waiting: "COUNT ATTEMPTS": the messages whose list --json
# last_error says they wait for the rate limit of transport local, and the
# most attempts any message of the queue has had.
rate_waiting() {
	spoolctl list --json | python3 -c '
import json, sys
q = json.load(sys.stdin)
print(sum(1 for m in q
          if m["state"] in ("queued", "deferred") and
          m["last_error"] == "waiting for the rate limit of transport local"),
      max([m["attempts"] for m in q] or [0]))'
}

# watch_until_arrived WANT SECONDS DIR: polls until DIR holds WANT
# messages; fails if status ever shows transport local not up. Sets
# MAX_WAITING to the most messages list showed waiting for the limit and
# MAX_ATTEMPTS to the most attempts it showed for a message.
watch_until_arrived() {
	local want=$1 deadline=$(($(date +%s) + $2)) dir=$3 up w a
	MAX_WAITING=0 MAX_ATTEMPTS=0
	while [ "$(sink_count "$dir")" -lt "$want" ]; do
		[ "$(date +%s)" -lt "$deadline" ] ||
			fail "the sink has $(sink_count "$dir") of $want after $2 s"
		up=$(up_of local)
		[ "$up" != False ] || fail "transport local reported down: $(spoolctl status)"
		read -r w a < <(rate_waiting)
		if [ "$w" -gt 0 ] && [ -z "${LISTED_WAITING:-}" ]; then
			# the text listing says a waiting message is due, never
			# a time that has passed
			spoolctl list >"$T/list-waiting.txt"
			grep -q 'next in 0s\|next in -' "$T/list-waiting.txt" &&
				fail "list: $(cat "$T/list-waiting.txt")"
			grep -q 'due now' "$T/list-waiting.txt" ||
				fail "list shows no message due: $(cat "$T/list-waiting.txt")"
			LISTED_WAITING=1
		fi
		[ "$w" -le "$MAX_WAITING" ] || MAX_WAITING=$w
		[ "$a" -le "$MAX_ATTEMPTS" ] || MAX_ATTEMPTS=$a
		sleep 0.5
	done
}

# each_once REGEXP: fails if a queue id is logged twice on matching lines
each_once() {
	local dup
	dup=$(cat "$T"/spoold.*.log | grep -E -- "$1" |
		sed -n 's/.*id=\([^ ]*\).*/\1/p' | sort | uniq -d | head -n 3)
	[ -z "$dup" ] || fail "logged more than once for the same message: $dup"
}

# --- 1. rate = 20/10s: the relay never refuses -------------------------
start_sink --rate-limit 20/10 --refusals "$T/refusals1"
write_conf "$SINK_PORT" 1h
cat >>"$CONF" <<EOF
rate = 20/10s
; under the relay's 20: sessions that start late bunch messages up, and
; 5 tokens leave 2.5 s of room for that on a loaded machine
burst = 15
EOF
export SPOOLD_CONFIG=$CONF
spoolctl --help >/dev/null
"$SPOOLD" --check-config -c "$CONF" >/dev/null 2>&1 ||
	fail "the configuration with rate was refused: $("$SPOOLD" --check-config -c "$CONF" 2>&1)"
storm "$N"
watch_until_arrived "$N" 60 "$SINK_DIR"
took=$(ms_since "$T0")
log "$N messages arrived in $took ms; at most $MAX_WAITING listed as waiting for the rate limit"
[ "$(cat "$T/refusals1")" = 0 ] ||
	fail "the relay refused $(cat "$T/refusals1") message(s) for rate"
# 15 at once, then 2 a second: about 22.5 s; never all at once
[ "$took" -ge 15000 ] || fail "$N messages took only $took ms: no limit"
[ "$took" -le 45000 ] || fail "$N messages took $took ms: too slow"
[ "$MAX_ATTEMPTS" = 0 ] || fail "a message waiting for the limit has attempts"
[ "$MAX_WAITING" -ge 20 ] ||
	fail "list showed only $MAX_WAITING message(s) waiting for the rate limit"
[ "$(spoold_log_count 'transport=local rate limit 20/10s reached')" = 1 ] ||
	fail "reaching the limit is not logged once"
[ "$(spoold_log_count 'status=rate-limited')" -ge 20 ] ||
	fail "the messages held back are not logged as status=rate-limited"
each_once 'status=rate-limited'
[ "$(spoold_log_count 'health=down|status=failed|relay failed')" = 0 ] ||
	fail "a rate-limited transport was reported down or a message failed"
wait_spool_empty 10
stop_spoold
kill -TERM "$SINK_PID" # its exit is awaited at the end, with the others

# --- 2. no rate: the relay's refusals slow the transport ------------------
rm -rf "$SPOOL"
start_sink --rate-limit 20/10 --refusals "$T/refusals2"
write_conf "$SINK_PORT" 1h
storm 40
watch_until_arrived 40 60 "$SINK_DIR"
log "40 messages arrived in $(ms_since "$T0") ms through" \
	"$(cat "$T/refusals2") refusal(s) for rate"
[ "$(cat "$T/refusals2")" -gt 0 ] || fail "the relay never refused: no test"
[ "$MAX_WAITING" -ge 1 ] ||
	fail "list never showed a message waiting for the rate limit"
[ "$MAX_ATTEMPTS" = 0 ] ||
	fail "a refusal for rate counted as an attempt ($MAX_ATTEMPTS)"
[ "$(spoold_log_count 'transport=local slowed by the relay')" -ge 1 ] ||
	fail "the slow-down is not logged"
[ "$(spoold_log_count 'transport=local slowed by the relay')" -le 8 ] ||
	fail "the slow-down is logged per refusal, not per pause"
[ "$(spoold_log_count 'health=down|status=failed|relay failed')" = 0 ] ||
	fail "the relay's rate refusals marked the transport down or failed mail"
# one line per refusal at most, none while the messages wait
held=$(grep -c 'status=rate-limited' "$SPOOLD_LOG" || true)
[ "$held" -ge 1 ] && [ "$held" -le "$(cat "$T/refusals2")" ] ||
	fail "$held status=rate-limited lines for $(cat "$T/refusals2") refusals"
[ "$(spool_files failed)" = 0 ] || fail "a message failed"
wait_spool_empty 10
[ "$(sink_count)" = 40 ] || fail "$(sink_count) messages at the sink, not 40"
stop_spoold
kill -TERM "$SINK_PID"

# --- 3. rate_overflow = next: the excess goes to the second transport -----
rm -rf "$SPOOL"
start_sink --rate-limit 10/10 --refusals "$T/refusals3"
first_port=$SINK_PORT first_dir=$SINK_DIR
start_sink
write_conf "$first_port" 1h
sed -i 's/^route = local$/route = local, second/' "$CONF"
cat >>"$CONF" <<EOF
rate = 10/10s
rate_overflow = next

[transport second]
type = smtp
host = 127.0.0.1
port = $SINK_PORT
tls = none
EOF
storm 30
deadline=$(($(date +%s) + 20))
until [ $(($(sink_count "$first_dir") + $(sink_count "$SINK_DIR"))) -ge 30 ]; do
	[ "$(date +%s)" -lt "$deadline" ] ||
		fail "only $(sink_count "$first_dir") + $(sink_count "$SINK_DIR") of 30 arrived in 20 s"
	sleep 0.2
done
log "first transport: $(sink_count "$first_dir"), second: $(sink_count "$SINK_DIR")"
[ "$(cat "$T/refusals3")" = 0 ] || fail "the first relay refused for rate"
[ "$(sink_count "$first_dir")" -ge 10 ] &&
	[ "$(sink_count "$first_dir")" -le 13 ] ||
	fail "the first transport took $(sink_count "$first_dir") messages at 10/10s"
[ "$(spoold_log_count 'rate limit 10/10s reached: the excess goes to transport second')" = 1 ] ||
	fail "the overflow is not logged once"
stop_spoold

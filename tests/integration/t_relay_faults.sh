#!/bin/bash
# t_relay_faults.sh - a misbehaving relay (fault_relay.py) at every stage of
# the SMTP session, and what spoold makes of it by the delivery rules:
#
#  1. dropped after the payload, before its reply: the batch is retried
#     and delivered; the one message the relay kept arrives twice (counted:
#     10 messages, 11 copies, 1 duplicate, 0 lost).
#  2. every code (421 451 452 454 550 552 554) at every stage (greeting,
#     EHLO, MAIL, RCPT, DATA, after the payload): a relay failure or any
#     4xx, and a 5xx to the greeting, EHLO or MAIL, defers the message and
#     retries it (it is never failed; delivered once the relay behaves);
#     a 5xx to RCPT, DATA or the payload fails it at once, with no retry.
#  3. a relay that never greets and one that answers a byte a second: the
#     session ends after the configured timeout (5 s) as a relay failure,
#     the message is deferred, and `spoolctl status` answers in under a
#     second meanwhile.
#  4. not hammered: with route = bad, good and a relay refusing every
#     greeting, the breaker (10 s, doubling) lets at most 3 trial windows
#     (of at most `concurrency` sessions) reach it in 40 s while a message
#     every half second goes to the good relay; with route = bad only,
#     retry = 5s, each of 5 messages is tried at most once per 5 s (the
#     jitter only lengthens the delay): 1 + 40/5 tries, plus one for the
#     window's edges, and the relay sees no more than their sum.
. "$(dirname "$0")/lib.sh"

RELAY_PY="$T_LIB_DIR/fault_relay.py"
RELAY_N=0

# start_relay PORT [ARGS...]: fault_relay.py on PORT (a fresh capture
# directory each time). Sets RELAY_PID, RELAY_LOG, RELAY_DIR.
start_relay() {
	local port=$1
	shift
	RELAY_N=$((RELAY_N + 1))
	RELAY_DIR="$T/relay-$RELAY_N"
	RELAY_LOG="$T/relay-$RELAY_N.log"
	python3 "$RELAY_PY" --port "$port" --dir "$RELAY_DIR" "$@" \
		>"$RELAY_LOG" 2>&1 &
	RELAY_PID=$!
	T_PIDS+=("relay $RELAY_PID")
	wait_log_line "$RELAY_LOG" 'capture_sink ready' 10 "$RELAY_PID" ||
		fail "fault relay did not start on $port with: $*"
}

stop_relay() {
	kill -TERM "$RELAY_PID"
	wait_gone "$RELAY_PID" 5 || fail "fault relay $RELAY_PID did not stop"
	wait "$RELAY_PID" 2>/dev/null || true
}

# relay_connections [LOG]: connections the relay accepted so far.
relay_connections() {
	grep -c '^connection ' "${1:-$RELAY_LOG}" || true
}

# wait_until SECONDS WHAT CMD...: polls CMD until it succeeds.
wait_until() {
	local secs=$1 what=$2 deadline
	shift 2
	deadline=$(($(date +%s%N) + secs * 1000000000))
	until "$@"; do
		[ "$(date +%s%N)" -lt "$deadline" ] ||
			fail "not within ${secs}s: $what"
		sleep 0.1
	done
}

submit_one() { # SUBJECT [SENDER] -> id
	printf 'From: app@example.org\nSubject: %s\n\n%s\n' "$1" "$1" |
		spoolctl submit -f "${2:-app@example.org}" rcpt@example.net |
		tr -d '[:space:]'
}

logged() { # REGEXP: at least once in spoold's logs
	[ "$(spoold_log_count "$1")" -ge 1 ]
}

connections_at_least() { # N
	[ "$(relay_connections)" -ge "$1" ]
}

relay_has() { # N: transactions stored by the relay
	[ "$(sink_count "$RELAY_DIR")" -ge "$1" ]
}

# tally MIDS DIR: "messages=N copies=N duplicates=N lost=N" for the
# Message-IDs listed in MIDS against what DIR captured.
tally() {
	sink_tool msgids "$2" | awk -v list="$1" '
		BEGIN { while ((getline k < list) > 0) { want[k] = 1; n++ } }
		($2 in want) { got[$2] = $1; copies += $1; if ($1 > 1) dup += $1 - 1 }
		END { for (k in want) if (!(k in got)) lost++
		      printf "messages=%d copies=%d duplicates=%d lost=%d\n",
		             n, copies, dup, lost }'
}

# status_latency_ms: one `spoolctl status`, timed.
status_latency_ms() {
	local t0
	t0=$(date +%s%N)
	spoolctl status >/dev/null || fail "spoolctl status failed"
	ms_since "$t0"
}

# check_status_fast LABEL: five status calls in a row, each under 1 s.
check_status_fast() {
	local i ms max=0
	for i in 1 2 3 4 5; do
		ms=$(status_latency_ms)
		[ "$ms" -gt "$max" ] && max=$ms
		[ "$ms" -lt 1000 ] ||
			fail "$1: spoolctl status took ${ms} ms during the fault"
		sleep 0.3
	done
	log "$1: spoolctl status answered in at most ${max} ms (5 calls)"
}

PORT=$(free_port)
write_conf "$PORT" 1s

# ---- 1. dropped after the payload ----------------------------------------
# Queued while spoold is stopped, so that pickup takes all ten at once and
# they share one session: the drop cuts the whole batch off.
for i in $(seq 1 10); do
	make_msg "$T/drop.$i" "drop $i" 300 >>"$T/drop.mids"
	spoolctl submit -f app@example.org rcpt@example.net <"$T/drop.$i" \
		>/dev/null || fail "submit drop $i failed"
done
start_relay "$PORT" --drop-after-data 1
start_spoold
wait_until 20 "10 messages delivered after the drop" relay_has 11
wait_until 10 "queue empty" test "$(spool_files new cur)" = 0
grep -q 'dropped the connection after the payload' "$RELAY_LOG" ||
	fail "the relay never dropped a connection"
logged 'status=deferred' || fail "nothing was deferred after the drop"
t=$(tally "$T/drop.mids" "$RELAY_DIR")
log "drop after the payload: $t, $(relay_connections) connections"
# the relay kept the first message before it hung up: that one twice
[ "$t" = "messages=10 copies=11 duplicates=1 lost=0" ] ||
	fail "drop after the payload: $t"
stop_relay

# ---- 2. every code at every stage -----------------------------------------
# fault_case STAGE CODE: one message through a relay that answers CODE at
# STAGE on its first connection and behaves afterwards.
n_deferred=0
n_failed=0
fault_case() {
	local stage=$1 code=$2 id want=deferred
	case $stage:$code in
	rcpt:5* | data:5* | dot:5*) want=failed ;;
	esac
	start_relay "$PORT" --fault "$stage=$code" --faulty-connections 1
	id=$(submit_one "fault $stage $code") || fail "submit failed"
	if [ $want = failed ]; then
		wait_until 10 "$stage $code: $id failed" \
			logged "id=$id status=failed reply=\"$code "
		# over a retry period: a wrong retry would connect again
		sleep 1.5
		[ "$(relay_connections)" = 1 ] ||
			fail "$stage $code: retried a failed message" \
				"($(relay_connections) connections)"
		[ -f "$SPOOL/failed/$id" ] ||
			fail "$stage $code: $id not in failed/"
		n_failed=$((n_failed + 1))
	else
		wait_until 10 "$stage $code: $id delivered on the retry" \
			logged "id=$id to=<rcpt@example.net> transport=local status=sent"
		logged "id=$id to=<rcpt@example.net> transport=local status=deferred .*$code" ||
			fail "$stage $code: no deferred line naming $code"
		! logged "id=$id status=failed" ||
			fail "$stage $code: the message failed"
		[ "$(relay_connections)" = 2 ] ||
			fail "$stage $code: $(relay_connections) connections (want 2)"
		n_deferred=$((n_deferred + 1))
	fi
	[ "$(sink_count "$RELAY_DIR")" = "$([ $want = failed ] && echo 0 || echo 1)" ] ||
		fail "$stage $code: $(sink_count "$RELAY_DIR") copies at the relay"
	stop_relay
}
for stage in greeting ehlo mail rcpt data dot; do
	for code in 421 451 452 454 550 552 554; do
		fault_case "$stage" "$code"
	done
done
log "fault matrix: $n_deferred deferred and delivered on the retry," \
	"$n_failed failed without retry"
[ "$n_deferred.$n_failed" = 33.9 ] ||
	fail "matrix outcome counts: $n_deferred deferred, $n_failed failed"

# ---- 3. a silent relay and a slow one --------------------------------------
for mode in --no-greeting "--byte-delay 1"; do
	# shellcheck disable=SC2086 # two words on purpose
	start_relay "$PORT" $mode --faulty-connections 1
	id=$(submit_one "hung $mode") || fail "submit failed"
	wait_until 10 "$mode: connected" connections_at_least 1
	check_status_fast "relay $mode"
	wait_until 15 "$mode: the session ends at the timeout" \
		logged "id=$id .*status=deferred .*no complete reply within 5s"
	! logged "id=$id status=failed" || fail "$mode: the message failed"
	wait_until 10 "$mode: $id delivered on the retry" \
		logged "id=$id to=<rcpt@example.net> transport=local status=sent"
	stop_relay
done
[ "$(spool_files new cur failed)" = 9 ] ||
	fail "want only the 9 failed messages left: $(spoolctl list --all)"
stop_spoold

# ---- 4. not hammered ---------------------------------------------------------
# 4a: route = bad, good; bad refuses every greeting with 421.
BAD_PORT=$(free_port)
start_relay "$BAD_PORT" --fault greeting=421
BAD_LOG=$RELAY_LOG
BAD_PID=$RELAY_PID
start_sink
SPOOL="$T/spool-breaker"
CONF="$T/breaker.conf"
cat >"$CONF" <<EOF
[spool]
dir = $SPOOL

[delivery]
route = bad, good
concurrency = 4
retry = 1s
max_age = 1h

[transport bad]
type = smtp
host = 127.0.0.1
port = $BAD_PORT
timeout = 5s
connect_timeout = 2s

[transport good]
type = smtp
host = 127.0.0.1
port = $SINK_PORT
timeout = 5s
connect_timeout = 2s
EOF
start_spoold

# 4b, beside it: route = bad only, retry = 5s, five messages at once.
SOLO_PORT=$(free_port)
start_relay "$SOLO_PORT" --fault greeting=421
SOLO_LOG=$RELAY_LOG
SOLO_SPOOL="$T/spool-solo"
SOLO_CONF="$T/solo.conf"
sed -e "s|^dir = .*|dir = $SOLO_SPOOL|" -e 's/^route = .*/route = bad/' \
	-e 's/^retry = .*/retry = 5s/' -e "s/^port = $BAD_PORT/port = $SOLO_PORT/" \
	"$CONF" >"$SOLO_CONF"
for i in 1 2 3 4 5; do
	printf 'Subject: solo %s\n\nx\n' "$i" |
		"$SPOOLCTL" -c "$SOLO_CONF" submit -f app@example.org \
			rcpt@example.net >/dev/null || fail "solo submit failed"
done
"$SPOOLD" -c "$SOLO_CONF" -f >"$T/spoold-solo.log" 2>&1 &
SOLO_PID=$!
T_PIDS+=("spoold-solo $SOLO_PID")
wait_log_line "$T/spoold-solo.log" ready 10 "$SOLO_PID" ||
	fail "second spoold not ready"

WINDOW=40
t0=$(date +%s)
sent=0
: >"$T/stream.mids"
while [ $(($(date +%s) - t0)) -lt $WINDOW ]; do
	sent=$((sent + 1))
	make_msg "$T/stream.$sent" "stream $sent" 200 >>"$T/stream.mids"
	spoolctl submit -f app@example.org rcpt@example.net \
		<"$T/stream.$sent" >/dev/null || fail "stream submit failed"
	sleep 0.5
done
bad_conns=$(relay_connections "$BAD_LOG")
solo_conns=$(relay_connections "$SOLO_LOG")
solo_attempts=$("$SPOOLCTL" -c "$SOLO_CONF" list --json |
	sink_tool json 'max(m["attempts"] for m in d)')
wait_for_count "$sent" 20
t=$(tally "$T/stream.mids" "$SINK_DIR")
log "breaker: $sent messages in ${WINDOW}s, the bad relay saw $bad_conns" \
	"connections; at the good one: $t"
[ "$t" = "messages=$sent copies=$sent duplicates=0 lost=0" ] ||
	fail "stream through the good relay: $t"
log "retry schedule alone (5 messages, retry 5s): $solo_conns connections," \
	"at most $solo_attempts attempts per message in ${WINDOW}s"
# trial windows at 0, >= 10 and >= 30 s (10, then 20 s of cool-down), each
# letting at most `concurrency` sessions through before a failure closes it
[ "$bad_conns" -ge 1 ] || fail "the bad relay was never tried"
[ "$bad_conns" -le 12 ] ||
	fail "bad relay hammered: $bad_conns connections in ${WINDOW}s (max 12)"
# each message: its first try, then one per 5 s (jitter only lengthens it)
[ "$solo_attempts" -le $((1 + WINDOW / 5 + 1)) ] ||
	fail "a message was tried $solo_attempts times in ${WINDOW}s"
[ "$solo_conns" -le $((5 * (1 + WINDOW / 5 + 1))) ] ||
	fail "solo relay hammered: $solo_conns connections"
kill -TERM "$SOLO_PID"
wait_gone "$SOLO_PID" 10 || fail "second spoold did not stop"
stop_spoold
kill -TERM "$BAD_PID"
log "ok"

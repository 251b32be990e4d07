#!/bin/bash
# t_relay_endless.sh - a relay whose reply never ends: it streams "250-"
# continuation lines (fault_relay.py --endless), each one quickly, so no
# single read ever waits long. For both engines (libESMTP: tls = none;
# libcurl: tls = implicit) and at the EHLO, MAIL, RCPT and final-dot
# replies, slowly (a line every 50 ms) and as fast as spoold reads:
#
#  - the session ends within timeout + 1 s of the connection (measured at
#    the relay: its connection time to the moment spoold hung up);
#  - it counts as a relay failure: the message goes on to the next
#    transport in the same attempt and is delivered there once, the log
#    says why ("no complete reply within 2s", "a reply over 65536 bytes",
#    or a library's own limit when it comes first), and no message fails;
#  - an endless "250-" reply to the payload is no acceptance: the message
#    is not counted as sent by the endless relay.
. "$(dirname "$0")/lib.sh"

RELAY_PY="$T_LIB_DIR/fault_relay.py"
TIMEOUT=2
# libcurl's connect timeout spans the greeting and EHLO: set above the
# timeout, so that only the bound on a reply can end those in time
CONNECT_TIMEOUT=6

command -v openssl >/dev/null || fail "openssl is missing (tools/install-deps)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
	-keyout "$T/relay.key" -out "$T/relay.crt" -days 2 -subj /CN=localhost \
	-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
	>"$T/openssl.log" 2>&1 || fail "openssl: $(cat "$T/openssl.log")"

CASES=()
for engine in esmtp curl; do
	for stage in ehlo mail rcpt dot; do
		CASES+=("$engine $stage 0.05")
	done
	CASES+=("$engine ehlo 0" "$engine dot 0")
done

# relay_start N ENGINE STAGE INTERVAL: the endless relay of case N, on
# RELAY_PORT[N]; all start at once, as Python starts slowly.
RELAY_PORT=()
relay_start() {
	local n=$1 engine=$2 stage=$3 interval=$4 extra=()
	RELAY_PORT[n]=$(free_port)
	[ "$engine" = esmtp ] ||
		extra=(--tls-cert "$T/relay.crt" --tls-key "$T/relay.key")
	python3 "$RELAY_PY" --port "${RELAY_PORT[n]}" --dir "$T/relay-$n" \
		--endless "$stage" --endless-interval "$interval" "${extra[@]}" \
		>"$T/relay-$n.log" 2>&1 &
	T_PIDS+=("relay $!")
}

# endless_case N ENGINE STAGE INTERVAL
endless_case() {
	local n=$1 engine=$2 stage=$3 interval=$4 relay_log="$T/relay-$1.log"
	local tls="tls = none" host=127.0.0.1 t_conn t_cut dt id what
	what="$engine $stage every ${interval}s"
	if [ "$engine" = curl ]; then
		tls="tls = implicit
ca_file = $T/relay.crt"
		host=localhost
	fi
	wait_log_line "$relay_log" 'capture_sink ready' 30 ||
		fail "fault relay $n did not start"
	# a fresh spool each time: the first failure marks the transport down
	SPOOL="$T/spool-$n"
	CONF="$T/spoold-$n.conf"
	cat >"$CONF" <<EOF
[spool]
dir = $SPOOL

[delivery]
route = endless, good
retry = 1m
max_age = 1h

[transport endless]
type = smtp
host = $host
port = ${RELAY_PORT[n]}
$tls
timeout = ${TIMEOUT}s
connect_timeout = ${CONNECT_TIMEOUT}s

[transport good]
type = smtp
host = 127.0.0.1
port = $SINK_PORT
tls = none
timeout = 5s
EOF
	start_spoold
	id=$(printf 'Subject: endless %s\n\nbody\n' "$n" |
		spoolctl submit -f app@example.org rcpt@example.net |
		tr -d '[:space:]') || fail "submit failed"
	wait_log_line "$SPOOLD_LOG" "id=$id .*transport=good status=sent" 20 ||
		fail "$what: $id not delivered by good"
	wait_log_line "$relay_log" 'endless reply cut' 5 ||
		fail "$what: the relay never saw spoold hang up"
	t_conn=$(sed -n 's/^connection 1 .* at \([0-9.]*\)$/\1/p' "$relay_log")
	t_cut=$(sed -n 's/^endless reply cut .* at \([0-9.]*\)$/\1/p' "$relay_log")
	dt=$(awk -v a="$t_conn" -v b="$t_cut" 'BEGIN { printf "%.2f", b - a }')
	log "$what: cut after ${dt}s," \
		"$(grep -o 'after [0-9]* lines' "$relay_log")," \
		"$(grep -o 'relay failed: .*' "$SPOOLD_LOG" | head -1)"
	awk -v d="$dt" -v lim=$((TIMEOUT + 1)) 'BEGIN { exit !(d <= lim) }' ||
		fail "$what: the session lasted ${dt}s (timeout ${TIMEOUT}s)"
	grep -q "transport=endless relay failed: " "$SPOOLD_LOG" ||
		fail "$what: no relay failure logged"
	! grep -q "status=failed" "$SPOOLD_LOG" || fail "$what: a message failed"
	! grep -q "id=$id .*transport=endless status=sent" "$SPOOLD_LOG" ||
		fail "$what: counted as sent by the relay that never finished" \
			"its reply"
	stop_spoold
}

start_sink
for i in "${!CASES[@]}"; do
	# shellcheck disable=SC2086 # the words of a case, on purpose
	relay_start "$i" ${CASES[i]}
done
for i in "${!CASES[@]}"; do
	# shellcheck disable=SC2086
	endless_case "$i" ${CASES[i]}
done
[ "$(sink_count)" = "${#CASES[@]}" ] ||
	fail "the good relay holds $(sink_count) messages, want ${#CASES[@]}"
log "ok: ${#CASES[@]} endless replies cut, each message delivered once" \
	"by the next transport"

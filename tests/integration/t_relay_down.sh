#!/bin/bash
# t_relay_down.sh - with the relay down, messages are deferred (list --json
# shows state deferred and the error), and nothing is lost: once Postfix is
# back, `spoolctl flush` delivers them at once; with a short retry schedule
# they arrive on their own.
. "$(dirname "$0")/lib.sh"

start_sink
start_postfix_relay
stop_postfix

# wait_all_deferred N SECONDS: until list --json shows N messages, all
# deferred with a last_error.
wait_all_deferred() {
	local n=$1 deadline out
	deadline=$(($(date +%s) + $2))
	while :; do
		out=$(spoolctl list --json) || fail "spoolctl list --json failed"
		if [ "$(echo "$out" | sink_tool json \
			'len([m for m in d if m["state"] == "deferred" and m["last_error"] is not None and m["attempts"] >= 1])')" = "$n" ]; then
			log "all $n deferred; first error: $(echo "$out" |
				sink_tool json 'd[0]["last_error"]')"
			return 0
		fi
		[ "$(date +%s)" -lt "$deadline" ] ||
			fail "not $n deferred messages after $2 s: $out"
		sleep 0.2
	done
}

submit_batch() { # TAG COUNT
	local i
	for i in $(seq 1 "$2"); do
		make_msg "$T/$1.$i" "$1 $i" 500 >>"$T/$1.mids"
		spoolctl submit -f alarm@example.org "ops$i@example.net" \
			<"$T/$1.$i" >/dev/null || fail "submit $1 $i failed"
	done
}

# --- 1. long retry period: only flush can explain a prompt delivery ---
write_conf "$PF_PORT" 1h
start_spoold
submit_batch flush 5
wait_all_deferred 5 20
[ "$(spoold_log_count 'status=deferred')" -ge 5 ] ||
	fail "no status=deferred log lines"
start_postfix
sleep 3
[ "$(sink_count)" = 0 ] ||
	fail "delivered before flush with retry = 1h ($(sink_count))"
t0=$(date +%s%N)
spoolctl flush || fail "spoolctl flush exited $?"
wait_for_count 5 20
log "flush delivered 5 messages in $(ms_since "$t0") ms"

# --- 2. retry = 1s, no flush: the schedule alone brings them through ---
stop_postfix
stop_spoold
write_conf "$PF_PORT" 1s
start_spoold
submit_batch sched 5
wait_all_deferred 5 20
sleep 2 # a few more retries against the dead relay
start_postfix
t0=$(date +%s%N)
wait_for_count 10 60
log "retry schedule delivered 5 messages $(ms_since "$t0") ms after the relay came back"

sleep 2
[ "$(sink_count)" = 10 ] || fail "sink has $(sink_count) transactions, want 10"
dups=$(sink_tool msgids "$SINK_DIR" | awk '$1 != 1')
[ -z "$dups" ] || fail "duplicates: $dups"
for mid in $(cat "$T/flush.mids" "$T/sched.mids"); do
	[ -n "$(sink_tool find-msgid "$SINK_DIR" "$mid")" ] ||
		fail "$mid never arrived"
done
deadline=$(($(date +%s) + 10))
until [ "$(spoolctl list --json | sink_tool json 'len(d)')" = 0 ]; do
	[ "$(date +%s)" -lt "$deadline" ] ||
		fail "queue not empty: $(spoolctl list --json)"
	sleep 0.2
done
stop_spoold
log "ok"

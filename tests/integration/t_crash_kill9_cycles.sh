#!/bin/bash
# t_crash_kill9_cycles.sh - spoold killed with SIGKILL 25 times at random
# points, restarted after each kill:
#   10 kills while submitters keep queueing (pickup of new/),
#   10 kills while sessions run (the relay takes 50 ms per message),
#    5 kills after the relay sent its final 250 and before spoold read it
#      (the sink holds the 250 behind a gate; spoold is stopped with
#      SIGSTOP, the 250 is sent, then SIGKILL: deterministic).
# Every accepted submission is delivered; a message may arrive twice only
# if it had reached the relay and was still pending in the spool at a
# kill, once more per such kill. Prints the count line.
# SEED=N reproduces the random delays.
. "$(dirname "$0")/lib.sh"

SEED=${SEED:-$RANDOM}
RANDOM=$SEED
log "seed $SEED"
GATE="$T/gate"
start_sink --data-delay 0.05 --gate "$GATE"
write_conf "$SINK_PORT" 1s
: >"$T/mids"
: >"$T/allowed"
: >"$GATE.held"
: >"$GATE.replied"
make_msg "$T/msg" "crash" 3000 >/dev/null

# submit_range FIRST LAST: queues messages FIRST..LAST, recording the
# Message-ID of each accepted one.
submit_range() {
	local i m="$T/msg.$BASHPID"
	for i in $(seq "$1" "$2"); do
		sed "s/^Message-ID: .*/Message-ID: <crash.$i@spool-test.invalid>/" \
			"$T/msg" >"$m"
		if "$SPOOLCTL" -c "$CONF" submit -f app@example.org \
			"ops@example.net" <"$m" >/dev/null \
			2>>"$T/submit.err"; then
			echo "<crash.$i@spool-test.invalid>" >>"$T/mids"
		else
			echo "submit $i failed" >>"$T/submit.failed"
		fi
		sleep "0.0$((RANDOM % 5))"
	done
	rm -f "$m"
}

# start_run: starts spoold, noting where the sink's numbering stood.
start_run() {
	run_from=$(sink_count)
	start_spoold
}

# after_kill: lets the sink finish what the dead client had sent (its
# data delay), then records the messages the relay took during this run
# that the spool still has to deliver: the ones in flight at this kill.
after_kill() {
	sleep 0.5
	comm -12 <(sink_tool msgids "$SINK_DIR" --after "$run_from" |
		awk '{print $2}' | sort -u) \
		<(sink_tool spool-pending "$SPOOL" | sort -u) >"$T/inflight"
	cat "$T/inflight" >>"$T/allowed"
	log "in flight at the kill: $(wc -l <"$T/inflight")"
}

# random_ms LOW HIGH: a random delay in seconds (3 decimals).
random_delay() {
	local ms=$(($1 + RANDOM % ($2 - $1 + 1)))
	printf '%d.%03d' $((ms / 1000)) $((ms % 1000))
}

t0=$(date +%s)
kills=0

# 1: pickup of new submissions, submitters running throughout
submit_range 1 150 &
submitter=$!
for _ in $(seq 1 10); do
	start_run
	sleep "$(random_delay 50 700)"
	kill9_spoold
	kills=$((kills + 1))
	after_kill
done
wait "$submitter" || fail "submitter failed"
[ ! -s "$T/submit.failed" ] ||
	fail "submit failed without a crash: $(head -3 "$T/submit.err")"
picked=$(spool_files cur)
log "phase pickup: $(wc -l <"$T/mids") submitted, $(sink_count) at the" \
	"sink, $picked in cur/, $(spool_files new) in new/"

# top_up: keeps a backlog of at least 20 messages for the next run.
next=151
top_up() {
	[ "$(spool_files new cur)" -ge 20 ] && return 0
	submit_range "$next" $((next + 39))
	next=$((next + 40))
}

# 2: sessions running: a backlog, the relay takes 50 ms per message
for _ in $(seq 1 10); do
	top_up
	start_run
	deadline=$(($(date +%s) + 10))
	until [ "$(sink_count)" -gt "$run_from" ]; do
		[ "$(date +%s)" -lt "$deadline" ] ||
			fail "the relay got nothing within 10 s of start"
		sleep 0.02
	done
	sleep "$(random_delay 0 3000)"
	kill9_spoold
	kills=$((kills + 1))
	after_kill
done
log "phase data: $(sink_count) at the sink"

# 3: between the relay's 250 and spoold hearing of it
window_hits=0
for _ in $(seq 1 5); do
	top_up
	held_before=$(wc -l <"$GATE.held")
	touch "$GATE"
	start_run
	deadline=$(($(date +%s) + 20))
	until [ "$(wc -l <"$GATE.held")" -gt "$held_before" ]; do
		[ "$(date +%s)" -lt "$deadline" ] ||
			fail "no 250 held within 20 s"
		sleep 0.02
	done
	kill -STOP "$SPOOLD_PID"
	sleep 0.3 # data already in the socket reaches the sink's gate
	held=$(sed -n "$((held_before + 1)),\$p" "$GATE.held")
	rm -f "$GATE"
	for n in $held; do
		deadline=$(($(date +%s) + 10))
		until grep -qx "$n" "$GATE.replied" 2>/dev/null; do
			[ "$(date +%s)" -lt "$deadline" ] ||
				fail "sink did not send the held 250 of $n"
			sleep 0.02
		done
	done
	kill9_spoold
	kills=$((kills + 1))
	after_kill
	# each held message was stored by the relay, answered, and is still
	# pending in the spool: it must be sent again
	for n in $held; do
		mid=$(sink_tool body "$SINK_DIR" "$n" |
			sed -n 's/^Message-ID: *\(.*\)\r$/\1/p')
		grep -qxF "$mid" "$T/inflight" ||
			fail "transaction $n ($mid) was answered 250 but is not" \
				"pending after the kill: the window was missed"
		echo "$mid" >>"$T/window"
		window_hits=$((window_hits + 1))
	done
done

# recovery: one clean run delivers the rest
start_spoold
wait_spool_empty 120
sleep 1
stop_spoold

sink_tool msgids "$SINK_DIR" >"$T/got"
sink_tool spool-pending "$SPOOL" >"$T/queued"
rc=0
sink_tool tally "$T/mids" "$T/got" --queued "$T/queued" \
	--allowed "$T/allowed" >"$T/tally" || rc=$?
echo "crash_kill9_cycles: kills=$kills (window=$window_hits)" \
	"$(head -1 "$T/tally") seconds=$(($(date +%s) - t0)) seed=$SEED"
[ "$rc" = 0 ] || fail "$(tail -n +2 "$T/tally" | head -5)"
grep -q ' lost=0$' "$T/tally" || fail "lost messages: $(cat "$T/tally")"
grep -q ' queued=0 ' "$T/tally" || fail "messages left queued"
# Each accepted message is marked in its spool file as its 250 arrives, so
# a kill repeats at most the message each session (4) had in flight.
dups=$(sed -n 's/.*duplicates=\([0-9]*\).*/\1/p' "$T/tally" | head -1)
[ "$dups" -le $((kills * 4)) ] ||
	fail "$dups duplicates after $kills kills: more than one per session"
# the window messages were delivered at least twice
for mid in $(cat "$T/window"); do
	n=$(awk -v m="$mid" '$2 == m {print $1}' "$T/got")
	[ "${n:-0}" -ge 2 ] ||
		fail "$mid answered 250 before a kill but delivered ${n:-0} time(s)"
done
[ -z "$(ls -A "$SPOOL/tmp")" ] || fail "leftovers in tmp/: $(ls "$SPOOL/tmp")"
log "ok"

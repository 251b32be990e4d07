#!/bin/bash
# t_queue_race.sh - hold, release, delete and requeue racing active
# deliveries to a slow relay. A message being delivered refuses the change
# (75) and its delivery goes on. Hold: a held message is never delivered
# while held, and after release every message arrives exactly once.
# Delete: every message is either delivered once or reported deleted and
# never delivered. Requeue: each requeue of a failed message causes exactly
# one more attempt, and every message ends failed again.
. "$(dirname "$0")/lib.sh"

# one session at a time, 50 messages each: the first 50 are in flight for
# about 10 s while the rest wait
N=100
export SPOOLD_DELIVERY_CONCURRENCY=1
start_sink --data-delay 0.2
write_conf "$SINK_PORT" 1s

make_msg "$T/msg" race 300 >/dev/null

# submit_copies TAG COUNT RCPT IDS: COUNT copies of $T/msg, each with its
# own Message-ID <TAG.I@...> to RCPT with I appended; ids appended to IDS.
submit_copies() {
	local tag=$1 count=$2 rcpt=$3 ids=$4 i
	for i in $(seq 1 "$count"); do
		sed "s/^Message-ID: .*/Message-ID: <$tag.$i@spool-test.invalid>/" \
			"$T/msg" | spoolctl submit "$rcpt$i@example.net" >>"$ids" ||
			fail "submit $tag $i failed"
	done
}

submit_copies race "$N" r "$T/ids"
start_spoold
wait_for_count 1 20

# hold everything, repeatedly, while the first ones are in flight
held_total=0
for _ in 1 2 3; do
	rc=0
	spoolctl hold - <"$T/ids" >"$T/hold.out" 2>"$T/hold.err" || rc=$?
	case $rc in 0 | 66 | 75) ;; *) fail "hold exited $rc: $(cat "$T/hold.err")" ;; esac
	sleep 0.3
done
spoolctl list --held --json >"$T/held.json"
sink_tool json '"\n".join(m["id"] for m in d)' <"$T/held.json" >"$T/held"
sink_tool json '"\n".join(m["recipients"][0]["address"] for m in d)' \
	<"$T/held.json" >"$T/held.rcpt"
nheld=$(grep -c . "$T/held" || true)
log "held $nheld of $N; $(sink_count) delivered so far"
[ "$nheld" -gt 0 ] || fail "nothing could be held"

# the ones in flight finish; nothing held may arrive meanwhile
wait_for_count $((N - nheld)) 60
sleep 2
[ "$(sink_count)" = $((N - nheld)) ] ||
	fail "$(sink_count) delivered with $nheld of $N held"
if sink_tool envelopes "$SINK_DIR" | grep -Fwf "$T/held.rcpt" >"$T/leak"; then
	fail "held messages were delivered: $(cat "$T/leak")"
fi
for id in $(cat "$T/held"); do
	[ -f "$SPOOL/hold/$id" ] || fail "$id listed held but not in hold/"
done

spoolctl release - <"$T/held" >/dev/null || fail "release exited $?"
wait_for_count "$N" 120
sleep 1
[ "$(sink_count)" = "$N" ] || fail "$(sink_count) transactions for $N messages"
dups=$(sink_tool msgids "$SINK_DIR" | awk '$1 > 1' | wc -l)
[ "$dups" = 0 ] || fail "$dups messages delivered more than once"
log "hold race: $nheld held, none delivered while held, $N arrived once each"

# sum_done FILE: the sum of "N message(s) ..." lines in FILE.
sum_done() {
	awk '{n += $1} END {print n + 0}' "$1"
}

# --- delete racing deliveries ---
M=60
before=$(sink_count)
: >"$T/del.ids"
submit_copies del "$M" d "$T/del.ids"
wait_for_count $((before + 1)) 20
: >"$T/del.out"
for _ in 1 2 3; do
	rc=0
	spoolctl delete - <"$T/del.ids" >>"$T/del.out" 2>"$T/del.err" || rc=$?
	case $rc in 0 | 66 | 75) ;; *) fail "delete exited $rc: $(cat "$T/del.err")" ;; esac
	sleep 0.3
done
deleted=$(sum_done "$T/del.out")
[ "$deleted" -gt 0 ] || fail "nothing could be deleted"
wait_for_count $((before + M - deleted)) 60
sleep 2
[ "$(sink_count)" = $((before + M - deleted)) ] ||
	fail "$((  $(sink_count) - before )) delivered of $M with $deleted deleted"
[ "$(spoolctl list --all --json | sink_tool json 'len(d)')" = 0 ] ||
	fail "the queue is not empty: $(spoolctl list --all)"
dups=$(sink_tool msgids "$SINK_DIR" | awk '$1 > 1' | wc -l)
[ "$dups" = 0 ] || fail "$dups messages delivered more than once"
log "delete race: $deleted of $M deleted, the other $((M - deleted)) arrived once each"
stop_spoold

# --- requeue racing deliveries: the relay refuses every message (550
# after the data, slowly), so each attempt ends failed ---
start_sink --data-delay 0.2 --data-code 550
write_conf "$SINK_PORT" 1s
start_spoold
K=30
: >"$T/rq.ids"
submit_copies rq "$K" q "$T/rq.ids"
failed_now() { spoolctl list --failed --json | sink_tool json 'len(d)'; }
for _ in $(seq 1 300); do
	[ "$(failed_now)" = "$K" ] && break
	sleep 0.1
done
[ "$(failed_now)" = "$K" ] || fail "only $(failed_now) of $K failed"
: >"$T/rq.out"
for _ in 1 2 3 4; do
	rc=0
	spoolctl requeue - <"$T/rq.ids" >>"$T/rq.out" 2>"$T/rq.err" || rc=$?
	case $rc in 0 | 65 | 75) ;; *) fail "requeue exited $rc: $(cat "$T/rq.err")" ;; esac
	sleep 1
done
requeued=$(sum_done "$T/rq.out")
for _ in $(seq 1 600); do
	[ "$(failed_now)" = "$K" ] && break
	sleep 0.1
done
[ "$(failed_now)" = "$K" ] || fail "only $(failed_now) of $K failed in the end"
attempts=$(grep -c 'to=<q[0-9]*@example.net>.*status=failed' "$SPOOLD_LOG" || true)
[ "$attempts" = $((K + requeued)) ] ||
	fail "$attempts attempts for $K messages and $requeued requeues"
[ "$(sink_count)" = 0 ] || fail "the refusing relay stored a message"
stop_spoold
log "requeue race: $requeued requeues of $K failed messages, one attempt each"

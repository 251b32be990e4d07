#!/bin/bash
# t_hold_race.sh - hold and release racing active deliveries to a slow
# relay: a message being delivered refuses the hold (75) and goes out; a
# held one is never delivered while held; in the end every message arrives
# exactly once.
. "$(dirname "$0")/lib.sh"

# one session at a time, 50 messages each: the first 50 are in flight for
# about 10 s while the rest wait
N=100
export SPOOLD_DELIVERY_CONCURRENCY=1
start_sink --data-delay 0.2
write_conf "$SINK_PORT" 1s

make_msg "$T/msg" race 300 >/dev/null
for i in $(seq 1 "$N"); do
	sed "s/^Message-ID: .*/Message-ID: <race.$i@spool-test.invalid>/" \
		"$T/msg" | spoolctl submit "r$i@example.net" >>"$T/ids" ||
		fail "submit $i failed"
done
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
stop_spoold
log "hold race: $nheld held, none delivered while held, $N arrived once each"

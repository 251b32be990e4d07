#!/bin/bash
# t_kill9.sh - spoold killed with SIGKILL in the middle of delivering 300
# messages, then restarted: every message arrives (at-least-once); the
# number of duplicates caused by the crash is printed.
. "$(dirname "$0")/lib.sh"

N=300
start_sink
start_postfix_relay
write_conf "$PF_PORT" 1s

make_msg "$T/msg" "kill9" 2000 >/dev/null
for i in $(seq 1 "$N"); do
	echo "<kill9.$i@spool-test.invalid>" >>"$T/mids"
	sed "s/^Message-ID: .*/Message-ID: <kill9.$i@spool-test.invalid>/" \
		"$T/msg" | spoolctl submit -f batch@example.org \
		"batch@example.net" >/dev/null || fail "submit $i failed"
done
[ "$(spool_files new cur)" = "$N" ] || fail "expected $N spool files"

start_spoold
# kill once spoold has handed over some, but not all, of the messages
deadline=$(($(date +%s) + 60))
while :; do
	sent=$(spoold_log_count 'status=sent')
	[ "$sent" -ge 20 ] && break
	[ "$(date +%s)" -lt "$deadline" ] ||
		fail "only $sent sent after 60 s"
	sleep 0.01
done
kill9_spoold
sent=$(spoold_log_count 'status=sent')
log "killed after $sent of $N logged as sent"
[ "$sent" -lt "$N" ] ||
	fail "all $N were sent before the kill landed: the test proved nothing"

start_spoold
wait_for_count "$N" 120
sleep 3 # let stragglers (duplicates) in

sink_tool msgids "$SINK_DIR" >"$T/got"
distinct=$(wc -l <"$T/got")
total=$(sink_count)
extra=$(comm -13 <(sort "$T/mids") <(awk '{print $2}' "$T/got" | sort))
missing=$(comm -23 <(sort "$T/mids") <(awk '{print $2}' "$T/got" | sort))
echo "kill9: $total transactions, $distinct distinct Message-IDs," \
	"$((total - distinct)) duplicates"
[ -z "$missing" ] || fail "lost messages: $(echo "$missing" | head -5)"
[ -z "$extra" ] || fail "unknown messages at the sink: $(echo "$extra" | head -5)"
[ "$distinct" = "$N" ] || fail "$distinct distinct of $N"
# at-least-once allows a repeat of what was in flight, never more than that
awk '$1 > 2 { bad = 1 } END { exit bad }' "$T/got" ||
	fail "a message arrived more than twice"

deadline=$(($(date +%s) + 20))
until [ "$(spool_files new cur)" = 0 ]; do
	[ "$(date +%s)" -lt "$deadline" ] ||
		fail "spool still holds $(spool_files new cur) files"
	sleep 0.2
done
stop_spoold
log "ok"

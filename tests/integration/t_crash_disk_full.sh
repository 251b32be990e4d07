#!/bin/bash
# t_crash_disk_full.sh - the spool on a 2 MiB tmpfs that fills up.
#  submit: with the disk full, and with room for the envelope but not the
#   message, submit exits 75 (or 73) with one line on stderr and leaves
#   no file in tmp/ or new/.
#  spoold: 20 messages to two recipients each are queued; the relay
#   accepts one recipient and defers the other, and its first 250 is held
#   until the disk is full, so a session marks D lines while LMDB cannot
#   record the results (and no new session can start). spoold keeps running,
#   `spoolctl status` answers within a second throughout, and once the
#   space is freed and the relay accepts both, every recipient gets each
#   message exactly once (the D-marked one is never sent again).
# Needs root (mount).
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "mounting a tmpfs needs root"
N=20
SINK_PORT=$(free_port)
write_conf "$SINK_PORT" 1s
mkdir "$SPOOL"
mount -t tmpfs -o size=2m,mode=0755 tmpfs "$SPOOL" ||
	skip "cannot mount a tmpfs here"
unmount_spool() {
	# the spool is gone with it: keep what a failure needs
	cp -a "$SPOOL" "$T/spool-copy" 2>/dev/null
	umount "$SPOOL" 2>/dev/null || umount -l "$SPOOL"
}
T_CLEANUP_HOOKS+=(unmount_spool)

# fill LEAVE_BYTES: a filler file takes all but about LEAVE_BYTES.
fill() {
	local avail
	rm -f "$SPOOL/filler"
	avail=$(df -B1 --output=avail "$SPOOL" | tail -1 | tr -d ' ')
	if [ "$1" = 0 ]; then
		dd if=/dev/zero of="$SPOOL/filler" bs=4k 2>/dev/null || true
	else
		head -c $((avail - $1)) /dev/zero >"$SPOOL/filler"
	fi
	log "filled: $(df -B1 --output=avail "$SPOOL" | tail -1 | tr -d ' ')" \
		"bytes free"
}

# spool_names: every name in tmp/ and new/.
spool_names() {
	ls -A "$SPOOL/tmp" "$SPOOL/new" 2>/dev/null | grep -v ':$' |
		grep -v '^$' || true
}

make_msg "$T/small" "disk full small" 2000 >/dev/null
make_msg "$T/big" "disk full big" 300000 >/dev/null
spoolctl submit -f app@example.org first@example.net <"$T/small" \
	>/dev/null || fail "submit with room failed"
spoolctl list >/dev/null # the state exists before the disk fills
before=$(spool_names)
failed_submits=0
for leave in 0 60000; do
	fill "$leave"
	for m in small big; do
		[ "$leave" != 0 ] && [ "$m" = small ] && continue
		rc=0
		spoolctl submit -f app@example.org r@example.net <"$T/$m" \
			>"$T/out" 2>"$T/err" || rc=$?
		[ "$rc" = 75 ] || [ "$rc" = 73 ] ||
			fail "submit ($m, $leave bytes free) exited $rc, want 75" \
				"or 73: $(cat "$T/err")"
		[ "$(wc -l <"$T/err")" = 1 ] ||
			fail "want one line on stderr: $(cat "$T/err")"
		[ ! -s "$T/out" ] || fail "a failed submit printed an id"
		[ "$(spool_names)" = "$before" ] ||
			fail "a failed submit left a file: $(spool_names)"
		failed_submits=$((failed_submits + 1))
		log "submit ($m, $leave bytes free): $rc, $(cat "$T/err")"
	done
done
rm -f "$SPOOL/filler"

# the daemon: N messages queued while the relay is down
: >"$T/mids"
for i in $(seq 1 "$N"); do
	sed "s/^Message-ID: .*\r$/Message-ID: <full.$i@spool-test.invalid>\r/" \
		"$T/small" >"$T/m"
	spoolctl submit -f app@example.org now@example.net later@example.net \
		<"$T/m" >/dev/null || fail "submit $i failed"
	echo "<full.$i@spool-test.invalid>" >>"$T/mids"
done
start_spoold
pid=$SPOOLD_PID
deadline=$(($(date +%s) + 20))
until [ "$(spoolctl list --json | sink_tool json \
	'len([m for m in d if m["state"] == "deferred"])')" = $((N + 1)) ]; do
	[ "$(date +%s)" -lt "$deadline" ] ||
		fail "messages not deferred: $(spoolctl list | tail -3)"
	sleep 0.2
done

# the relay comes up, taking now@ and deferring later@; its first 250 is
# held until the disk is full, so the results land on a full disk
GATE="$T/gate"
touch "$GATE"
: >"$GATE.held"
python3 "$SINK_PY" --port "$SINK_PORT" --dir "$T/sink" --gate "$GATE" \
	--reject-rcpt later@example.net=451 >"$T/sink1.log" 2>&1 &
sink_pid=$!
T_PIDS+=("sink $sink_pid")
wait_log_line "$T/sink1.log" 'capture_sink ready' 10 "$sink_pid" ||
	fail "sink did not start"
wait_log_line "$GATE.held" . 20 || fail "no delivery reached the relay"
fill 0
rm "$GATE"
wait_log_line "$SPOOLD_LOG" 'cannot record|state write failed' 20 "$pid" ||
	fail "spoold did not report a state it could not write"
sent_full=$(sink_count "$T/sink")
log "the relay took $sent_full message(s) whose results met a full disk"
slowest=0
# several retry rounds on a full disk; the daemon answers throughout
for _ in $(seq 1 10); do
	t0=$(date +%s%N)
	timeout 5 "$SPOOLCTL" -c "$CONF" status >"$T/status" 2>&1 ||
		fail "status failed on a full disk: $(cat "$T/status")"
	ms=$(ms_since "$t0")
	[ "$ms" -gt "$slowest" ] && slowest=$ms
	pid_alive "$pid" || fail "spoold died on a full disk"
	sleep 0.5
done
[ "$slowest" -lt 1000 ] || fail "status took $slowest ms on a full disk"
grep -q 'Running\|running' "$T/status" || fail "status: $(cat "$T/status")"
full_errors=$(spoold_log_count 'cannot record|state write failed')
log "on a full disk: $full_errors error line(s), status within $slowest ms"
[ "$full_errors" -gt 0 ] || fail "spoold never met the full disk"

# space back, the relay takes everyone
rm -f "$SPOOL/filler"
kill -TERM "$sink_pid"
wait "$sink_pid" || true
python3 "$SINK_PY" --port "$SINK_PORT" --dir "$T/sink" \
	>"$T/sink2.log" 2>&1 &
sink_pid=$!
T_PIDS+=("sink $sink_pid")
wait_log_line "$T/sink2.log" 'capture_sink ready' 10 "$sink_pid" ||
	fail "sink did not start again"
wait_spool_empty 90
[ "$SPOOLD_PID" = "$pid" ] && pid_alive "$pid" || fail "spoold restarted"
sleep 1
stop_spoold

sink_tool rcpt-counts "$T/sink" >"$T/rcpts"
for r in now@example.net later@example.net; do
	n=$(awk -v r="$r" '$2 == r {print $1}' "$T/rcpts")
	[ "${n:-0}" = "$N" ] || fail "$r got ${n:-0} messages, want $N"
done
# per recipient: the messages to now@ and to later@ are keyed apart
: >"$T/got"
for r in now@example.net later@example.net; do
	for n in $(sink_tool envelopes "$T/sink" | grep "[=,]$r" |
		awk '{print $1}'); do
		echo "$r $(sink_tool body "$T/sink" "$n" |
			sed -n 's/^Message-ID: *\(.*\)\r$/\1/p')"
	done
done | sort | uniq -c | awk '{print $1, $2 "/" $3}' >"$T/got"
for r in now@example.net later@example.net; do
	sed "s|^|$r/|" "$T/mids"
done >"$T/keys"
rc=0
sink_tool tally "$T/keys" "$T/got" --allowed /dev/null >"$T/tally" || rc=$?
echo "crash_disk_full: failed_submits=$failed_submits status_max_ms=$slowest" \
	"results_on_full_disk=$sent_full" \
	"full_disk_errors=$full_errors (per recipient)" "$(head -1 "$T/tally")"
[ "$rc" = 0 ] || fail "$(tail -n +2 "$T/tally" | head -5)"
grep -q ' lost=0$' "$T/tally" || fail "lost: $(cat "$T/tally")"
log "ok"

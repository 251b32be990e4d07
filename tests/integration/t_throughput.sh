#!/bin/bash
# t_throughput.sh - 200 messages of ~5 KiB queued while spoold is stopped,
# then delivered to Postfix's smtp-sink. All must be accepted within 3 s of
# starting spoold: a per-message stall (e.g. Nagle's 40 ms delayed ACK on a
# message larger than the client's write buffer) would take ~9 s.
. "$(dirname "$0")/lib.sh"

N=200
LIMIT_MS=3000

start_fast_sink
write_conf "$FAST_SINK_PORT"

make_msg "$T/msg" "throughput" 5000 >/dev/null
for i in $(seq 1 "$N"); do
	# a distinct Message-ID per copy, as real notifications have
	sed "s/^Message-ID: <\(.*\)@/Message-ID: <\1.$i@/" "$T/msg" |
		spoolctl submit -f bench@example.org bench@example.net \
			>/dev/null || fail "submit $i failed"
done
[ "$(spool_files new cur)" = "$N" ] ||
	fail "expected $N spool files, found $(spool_files new cur)"
log "$N messages of $(stat -c %s "$T/msg") bytes queued"

t0=$(date +%s%N)
start_spoold
deadline=$((t0 + 60 * 1000000000))
while [ "$(fast_sink_count)" -lt "$N" ]; do
	[ "$(date +%s%N)" -lt "$deadline" ] ||
		fail "only $(fast_sink_count) of $N delivered after 60 s"
	sleep 0.02
done
ms=$(ms_since "$t0")
rate=$((N * 1000 / (ms > 0 ? ms : 1)))
echo "throughput: $N messages in $ms ms from spoold start ($rate msg/s)"

sleep 1
[ "$(fast_sink_count)" = "$N" ] ||
	fail "smtp-sink counted $(fast_sink_count) messages for $N queued"
[ "$(spoold_log_count 'status=sent')" -ge "$N" ] ||
	fail "spoold logged $(spoold_log_count 'status=sent') sent for $N"
deadline=$(($(date +%s) + 10))
until [ "$(spool_files new cur)" = 0 ]; do
	[ "$(date +%s)" -lt "$deadline" ] ||
		fail "spool still holds $(spool_files new cur) files"
	sleep 0.1
done
stop_spoold
[ "$ms" -le "$LIMIT_MS" ] ||
	fail "$N messages took $ms ms (limit $LIMIT_MS ms)"
log "ok"

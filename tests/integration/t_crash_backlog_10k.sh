#!/bin/bash
# t_crash_backlog_10k.sh - 10,000 messages queued while the relay is down
# (spoold running, picking them up and deferring them), then the relay
# (Postfix's smtp-sink) comes up: every message is delivered exactly
# once, counted two ways: smtp-sink's transaction count, and the queue
# ids spoold logs as sent (which shows a repeat). spoold's memory is
# sampled from /proc throughout: VmHWM must stay under 64 MB (512 MB for
# a sanitizer build, whose shadow memory counts too). N=... changes the
# count (default 10000). Messages go in through spoolctl submit, two at a
# time; a sanitizer build, where that takes minutes, writes the spool
# files directly as the README documents (SUBMIT=spoolctl forces it).
. "$(dirname "$0")/lib.sh"

N=${N:-10000}
command -v smtp-sink >/dev/null || skip "smtp-sink (postfix) missing"
RELAY_PORT=$(free_port)
write_conf "$RELAY_PORT" 3s
start_spoold
if ldd "$SPOOLD" 2>/dev/null | grep 'libasan\|libubsan' >/dev/null; then
	LIMIT_KB=$((512 * 1024))
else
	LIMIT_KB=$((64 * 1024))
fi

# sample_memory: VmRSS and VmHWM of spoold (kB), one line every 0.5 s.
sample_memory() {
	while pid_alive "$SPOOLD_PID"; do
		awk '/^VmRSS|^VmHWM/ {printf "%s %s ", $1, $2} END {print ""}' \
			"/proc/$SPOOLD_PID/status" 2>/dev/null || true
		sleep 0.5
	done
}
sample_memory >"$T/memory" &
sampler=$!

# drop_in N: queues N copies of $T/msg the way the README lets another
# program do it (tmp/ID, rename into new/), printing the ids; for builds
# where 10,000 spoolctl starts under a sanitizer take minutes.
drop_in() {
	python3 - "$SPOOL" "$1" "$T/msg" <<'EOF'
import os, sys, time
spool, n, msg = sys.argv[1], int(sys.argv[2]), open(sys.argv[3], "rb").read()
for _ in range(n):
    ident = "%014x%s" % (time.time_ns() // 1000, os.urandom(5).hex())
    tmp = os.path.join(spool, "tmp", ident)
    with open(tmp, "wb") as f:
        f.write(b"SPOOLD 1\nT %d\nS bulk@example.org\nR bulk@example.net\n\n"
                % time.time() + msg)
    os.rename(tmp, os.path.join(spool, "new", ident))
    print(ident)
EOF
}

make_msg "$T/msg" "backlog" 1000 >/dev/null
if [ -z "${SUBMIT:-}" ]; then
	SUBMIT=spoolctl
	[ "$LIMIT_KB" -le $((64 * 1024)) ] || SUBMIT=drop-in
fi
t0=$(date +%s)
if [ "$SUBMIT" = spoolctl ]; then
	# two submitters at a time; each prints the id it queued
	seq 1 "$N" | xargs -P 2 -n 100 sh -c '
		conf=$1 msg=$2
		shift 2
		for _ do
			"$0" -c "$conf" submit -f bulk@example.org \
				bulk@example.net <"$msg" || exit 255
		done' "$SPOOLCTL" "$CONF" "$T/msg" >"$T/ids" 2>"$T/submit.err" ||
		fail "a submit failed: $(head -3 "$T/submit.err")"
else
	drop_in "$N" >"$T/ids"
fi
[ "$(sort -u "$T/ids" | wc -l)" = "$N" ] ||
	fail "$(sort -u "$T/ids" | wc -l) distinct ids for $N submissions"
submit_s=$(($(date +%s) - t0))
# every message picked up and tried once against the dead relay
deadline=$(($(date +%s) + 120))
until [ "$(spool_files new)" = 0 ] &&
	[ "$(spoold_log_count 'status=deferred')" -ge "$N" ]; do
	[ "$(date +%s)" -lt "$deadline" ] ||
		fail "after 120 s: $(spool_files new) in new/," \
			"$(spoold_log_count 'status=deferred') deferred"
	sleep 0.5
done
log "$N queued in ${submit_s}s and deferred; $(spool_files cur) in cur/"

# the relay comes up
user=()
[ "$(id -u)" = 0 ] && user=(-u postfix)
FAST_SINK_OUT="$T/smtp-sink.out"
smtp-sink "${user[@]}" -c "127.0.0.1:$RELAY_PORT" 100 >"$FAST_SINK_OUT" \
	2>"$T/smtp-sink.log" &
T_PIDS+=("smtp-sink $!")
wait_port "$RELAY_PORT" 10 || fail "smtp-sink did not start"
t1=$(date +%s)
wait_spool_empty 150
deliver_s=$(($(date +%s) - t1))
sleep 2
stop_spoold
wait "$sampler" 2>/dev/null || true

grep -hE 'status=sent' "$T"/spoold.*.log |
	sed -n 's/.* id=\([0-9a-f]*\) .*/\1/p' | sort | uniq -c |
	awk '{print $1, $2}' >"$T/sent"
ls "$SPOOL/new" "$SPOOL/cur" | grep -E '^[0-9a-f]{24}$' >"$T/queued" || true
rc=0
sink_tool tally "$T/ids" "$T/sent" --queued "$T/queued" \
	--allowed /dev/null >"$T/tally" || rc=$?
relay=$(fast_sink_count)
hwm=$(awk '{for (i = 1; i < NF; i++) if ($i == "VmHWM:") v = $(i + 1)}
	END {print v + 0}' "$T/memory")
rss=$(awk '{for (i = 1; i < NF; i++) if ($i == "VmRSS:" && $(i + 1) > m)
	m = $(i + 1)} END {print m + 0}' "$T/memory")
echo "crash_backlog_10k: $(head -1 "$T/tally") relay_count=$relay" \
	"submitted_by=$SUBMIT" \
	"max_rss_kb=$rss hwm_kb=$hwm limit_kb=$LIMIT_KB samples=$(wc -l <"$T/memory")" \
	"submit_s=$submit_s deliver_s=$deliver_s"
[ "$rc" = 0 ] || fail "$(tail -n +2 "$T/tally" | head -5)"
grep -q ' lost=0$' "$T/tally" || fail "lost: $(head -1 "$T/tally")"
grep -q ' duplicates=0)' "$T/tally" || fail "duplicates: $(head -1 "$T/tally")"
[ "$relay" = "$N" ] || fail "the relay counted $relay transactions for $N"
[ "$hwm" -gt 0 ] || fail "no memory sample taken"
[ "$hwm" -lt "$LIMIT_KB" ] || fail "spoold peaked at $hwm kB (limit $LIMIT_KB)"
log "ok"

#!/bin/bash
# t_crash_submit_kill.sh - `spoolctl submit` killed with SIGKILL at random
# points, 40 runs: messages of 100 KB to 2 MB, half fed slowly through a
# pipe (killed while reading), half from a file (killed while writing,
# syncing or renaming). Each message is queued whole or not at all: every
# message the relay gets is byte for byte the one submitted, once; every
# submit that exited 0 is delivered. A tmp/ file left by a killed
# submitter is removed by the running spoold once it is older than a day
# (its periodic rescan, not only at start), and a fresh one is kept.
# RUNS=N and SEED=N change the run count and the random points.
. "$(dirname "$0")/lib.sh"

RUNS=${RUNS:-40}
SEED=${SEED:-$RANDOM}
RANDOM=$SEED
log "seed $SEED"
start_sink
write_conf "$SINK_PORT" 1s 4M
start_spoold

# feed_slowly FILE: writes FILE in 64 KiB pieces, 20 ms apart.
feed_slowly() {
	python3 - "$1" <<'EOF'
import sys, time
with open(sys.argv[1], "rb") as f:
    data = f.read()
out = sys.stdout.buffer
try:
    for i in range(0, len(data), 65536):
        out.write(data[i:i + 65536])
        out.flush()
        time.sleep(0.02)
except BrokenPipeError:
    pass
EOF
}

mkdir "$T/in"
: >"$T/accepted"
: >"$T/killed"
t0=$(date +%s)
for i in $(seq 1 "$RUNS"); do
	size=$((100000 + (RANDOM * 32768 + RANDOM) % 1900000))
	make_msg "$T/in/$i" "submit kill $i" "$size" >/dev/null
	sed -i "s/^Message-ID: .*\r$/Message-ID: <sk.$i@spool-test.invalid>\r/" \
		"$T/in/$i"
	if [ $((i % 2)) = 0 ]; then
		feed_slowly "$T/in/$i" |
			"$SPOOLCTL" -c "$CONF" submit -f app@example.org \
				ops@example.net >"$T/in/$i.id" 2>"$T/in/$i.err" &
		delay_ms=$((RANDOM % 800))
	else
		"$SPOOLCTL" -c "$CONF" submit -f app@example.org \
			ops@example.net <"$T/in/$i" >"$T/in/$i.id" \
			2>"$T/in/$i.err" &
		delay_ms=$((RANDOM % 40))
	fi
	pid=$!
	sleep "$(printf '0.%03d' "$delay_ms")"
	kill -KILL "$pid" 2>/dev/null || true
	rc=0
	wait "$pid" 2>/dev/null || rc=$?
	if [ "$rc" = 0 ]; then
		echo "<sk.$i@spool-test.invalid>" >>"$T/accepted"
	elif [ "$rc" = 137 ]; then
		echo "<sk.$i@spool-test.invalid>" >>"$T/killed"
	else
		fail "submit $i exited $rc: $(head -c 300 "$T/in/$i.err")"
	fi
done
leftover=$(find "$SPOOL/tmp" -maxdepth 1 -type f | wc -l)
log "$RUNS runs: $(wc -l <"$T/accepted") completed, $(wc -l <"$T/killed")" \
	"killed, $leftover file(s) left in tmp/"
[ -s "$T/killed" ] || fail "no submitter was killed: the test proved nothing"

# everything in the spool goes out; nothing half-written is in it
wait_spool_empty 120
sleep 1
sink_tool msgids "$SINK_DIR" >"$T/got"
# delivered: the accepted ones plus the killed ones that were already in
# new/ when the kill landed; each must be whole and there once
awk '{print $2}' "$T/got" | sort >"$T/got.mids"
sort -u "$T/accepted" "$T/killed" | comm -12 - "$T/got.mids" >"$T/queued.mids"
: >"$T/verify.list"
for mid in $(cat "$T/queued.mids"); do
	i=${mid#<sk.}
	i=${i%%@*}
	echo "run$i $mid $T/in/$i" >>"$T/verify.list"
done
sort -u "$T/accepted" "$T/queued.mids" >"$T/submitted"
rc=0
sink_tool tally "$T/submitted" "$T/got" --allowed /dev/null >"$T/tally" ||
	rc=$?
sink_tool verify "$SINK_DIR" "$T/verify.list" --strip-received \
	--from app@example.org \
	--rcpt ops@example.net >"$T/verify" || rc=$?
killed_queued=$(comm -12 <(sort "$T/killed") "$T/queued.mids" | wc -l)
echo "crash_submit_kill: runs=$RUNS killed=$(wc -l <"$T/killed")" \
	"(queued whole=$killed_queued, not queued=$(($(wc -l <"$T/killed") - \
	killed_queued))) tmp_leftovers=$leftover $(head -1 "$T/tally")" \
	"seconds=$(($(date +%s) - t0)) seed=$SEED"
[ "$rc" = 0 ] || fail "$(tail -n +2 "$T/tally"; head -5 "$T/verify")"
grep -q ' lost=0$' "$T/tally" || fail "lost: $(cat "$T/tally")"

# tmp/: a leftover older than a day goes at the next rescan (every 30 s)
# of the running daemon; a fresh one (a submitter still writing) stays
printf 'SPOOLD 1\nS a@b.example\nR c@d.example\n\nhalf' >"$SPOOL/tmp/0000old"
printf 'SPOOLD 1\nS a@b.example\nR c@d.example\n\nhalf' >"$SPOOL/tmp/0000new"
find "$SPOOL/tmp" -maxdepth 1 -type f ! -name 0000new \
	-exec touch -d '2 days ago' {} +
old=$(find "$SPOOL/tmp" -maxdepth 1 -type f ! -name 0000new | wc -l)
deadline=$(($(date +%s) + 45))
until [ ! -e "$SPOOL/tmp/0000old" ]; do
	[ "$(date +%s)" -lt "$deadline" ] ||
		fail "a tmp/ file two days old is still there after 45 s"
	sleep 0.5
done
[ "$(find "$SPOOL/tmp" -maxdepth 1 -type f ! -name 0000new | wc -l)" = 0 ] ||
	fail "old tmp/ files left: $(ls "$SPOOL/tmp")"
[ -e "$SPOOL/tmp/0000new" ] || fail "a fresh tmp/ file was removed"
grep -q "removed $old abandoned file" "$SPOOLD_LOG" ||
	fail "spoold did not log removing $old file(s) from tmp/"
[ "$(sink_count)" = "$(wc -l <"$T/submitted")" ] ||
	fail "the cleaned files were delivered"
rm "$SPOOL/tmp/0000new"
stop_spoold
log "ok: $old old tmp/ file(s) removed by the running daemon"

#!/bin/bash
# t_crash_lmdb_damage.sh - the LMDB state damaged while messages wait:
#  rounds of 10 deferred messages (relay down), spoold stopped, then
#  state/data.mdb truncated, overwritten with garbage, scribbled over in
#  its tree pages (3 seeds; LMDB trusts its pages, so this can crash a
#  reader), or lock.mdb filled with garbage, or both files deleted;
#  `spoolctl list` and `status` report it without dying; spoold starts,
#  rebuilds the state from the spool and delivers every message exactly
#  once.
#  A map of 64 KiB (SPOOL_STATE_MAPSIZE) with 200 messages: it fills and
#  grows, sometimes under a session's results, whose messages must then
#  be put back in the queue rather than stay "delivering". A reader slot
#  left by a process killed inside a read transaction pins old pages
#  while spoold keeps rewriting records; spoold clears the dead slot
#  itself (no spoolctl runs meanwhile), and delivers all once the relay
#  is back (SIGHUP). With the default map, which does not fill, the
#  periodic rescan (30 s) frees a dead reader.
. "$(dirname "$0")/lib.sh"

command -v mdb_stat >/dev/null || skip "mdb_stat (lmdb-utils) missing"
K=10
start_sink
DOWN_PORT=$(free_port)
: >"$T/mids"
round=0

# submit_batch N TAG: queues N messages, recording their Message-IDs.
submit_batch() {
	local i
	for i in $(seq 1 "$1"); do
		sed "s/^Message-ID: .*\r$/Message-ID: <$2.$i@spool-test.invalid>\r/" \
			"$T/msg" >"$T/m"
		spoolctl submit -f app@example.org ops@example.net <"$T/m" \
			>/dev/null || fail "submit $2.$i failed"
		echo "<$2.$i@spool-test.invalid>" >>"$T/mids"
	done
}

# wait_deferred N: until this run of spoold logged N deferrals.
wait_deferred() {
	local deadline=$(($(date +%s) + 30))
	until [ "$(grep -c 'status=deferred' "$SPOOLD_LOG")" -ge "$1" ]; do
		[ "$(date +%s)" -lt "$deadline" ] ||
			fail "only $(grep -c 'status=deferred' "$SPOOLD_LOG") of $1" \
				"deferred"
		sleep 0.1
	done
}

scribble() {
	python3 - "$SPOOL/state/data.mdb" "$1" <<'EOF'
import os, random, sys
path, seed = sys.argv[1], int(sys.argv[2])
random.seed(seed)
size = os.path.getsize(path)
with open(path, "r+b") as f:
    # the two meta pages stay valid: LMDB opens the file and trusts it
    for _ in range(20):
        f.seek(random.randrange(8192, size - 64))
        f.write(random.randbytes(random.randint(1, 64)))
EOF
}

damage() {
	local s="$SPOOL/state"
	case $1 in
	truncated) truncate -s $(($(stat -c %s "$s/data.mdb") / 2)) "$s/data.mdb" ;;
	garbage) head -c "$(stat -c %s "$s/data.mdb")" /dev/urandom >"$s/data.mdb" ;;
	scribble*) scribble "${1#scribble}" ;;
	lock-garbage) head -c 8192 /dev/urandom >"$s/lock.mdb" ;;
	deleted) rm -f "$s/data.mdb" "$s/lock.mdb" ;;
	*) fail "unknown damage $1" ;;
	esac
}

# dead_reader: leaves in the reader table the slot of a process killed
# inside a read transaction; sets reader to its pid.
dead_reader() {
	python3 - "$SPOOL/state" >"$T/reader.out" 2>&1 <<'EOF' &
import ctypes, ctypes.util, sys, time
# holds a read transaction open until killed: a reader that dies in one
lib = ctypes.CDLL(ctypes.util.find_library("lmdb") or "liblmdb.so.0")
env, txn = ctypes.c_void_p(), ctypes.c_void_p()
MDB_RDONLY, MDB_NOTLS = 0x20000, 0x200000
assert lib.mdb_env_create(ctypes.byref(env)) == 0
assert lib.mdb_env_open(env, sys.argv[1].encode(), MDB_RDONLY | MDB_NOTLS,
                        0o600) == 0
assert lib.mdb_txn_begin(env, None, MDB_RDONLY, ctypes.byref(txn)) == 0
print("holding", flush=True)
time.sleep(300)
EOF
	reader=$!
	wait_log_line "$T/reader.out" holding 10 "$reader" ||
		fail "could not hold a read transaction: $(cat "$T/reader.out")"
	kill -KILL "$reader"
	wait "$reader" 2>/dev/null || true
	has_reader "$reader" ||
		fail "no reader slot of $reader: $(cat "$T/readers")"
}

# has_reader PID: LMDB's reader table holds a slot of PID.
has_reader() {
	# mdb_stat exits 1 even when it listed the table
	mdb_stat -r "$SPOOL/state" >"$T/readers" 2>&1 || true
	grep -q 'Reader Table Status' "$T/readers" ||
		fail "mdb_stat -r: $(cat "$T/readers")"
	grep -qE "^ +$1 " "$T/readers"
}

make_msg "$T/msg" "lmdb damage" 1500 >/dev/null
rebuilt=0
inspect_errors=0
for kind in truncated garbage scribble1 scribble2 scribble3 lock-garbage \
	deleted; do
	round=$((round + 1))
	write_conf "$DOWN_PORT" 1s
	start_spoold
	submit_batch "$K" "$kind"
	wait_deferred "$K"
	stop_spoold
	damage "$kind"
	# with no daemon to rebuild it, inspection reports the state, it
	# does not die inside LMDB
	for cmd in list status; do
		rc=0
		spoolctl "$cmd" >"$T/$cmd.out" 2>"$T/$cmd.err" || rc=$?
		[ "$rc" -lt 128 ] ||
			fail "spoolctl $cmd died (status $rc) on a $kind state"
		[ "$rc" = 0 ] || inspect_errors=$((inspect_errors + 1))
	done
	write_conf "$SINK_PORT" 1s
	start_spoold
	wait_spool_empty 60
	# the repair path ran: the records of all K messages came back from
	# the spool files. A truncated, overwritten or deleted data.mdb
	# always needs it; a scribble or a damaged lock file may leave the
	# records readable, and if the damage was seen, the rebuild is whole.
	repaired_all=$(grep -c "rebuilt the state of $K message(s) from the spool" \
		"$SPOOLD_LOG" || true)
	case $kind in
	truncated | garbage | deleted)
		[ "$repaired_all" = 1 ] ||
			fail "$kind: no 'rebuilt the state of $K message(s)' line"
		;;
	esac
	if grep -q 'rebuilding it from the spool' "$SPOOLD_LOG"; then
		rebuilt=$((rebuilt + 1))
		[ "$repaired_all" = 1 ] ||
			fail "$kind: the damage was seen but $K records were" \
				"not rebuilt"
	fi
	stop_spoold
	log "$kind: $K delivered; $(grep -h 'rebuilding it' "$SPOOLD_LOG" |
		sed 's/^spoold[^ ]* //' | cut -c1-150)"
done

# a small map and a dead reader
write_conf "$DOWN_PORT" 1s
export SPOOL_STATE_MAPSIZE=65536
start_spoold
unset SPOOL_STATE_MAPSIZE
submit_batch 200 map
wait_deferred 200
dead_reader
size0=$(stat -c %s "$SPOOL/state/data.mdb")
# retry rounds rewrite every record; the dead reader pins the old pages
deadline=$(($(date +%s) + 60))
while has_reader "$reader"; do
	[ "$(date +%s)" -lt "$deadline" ] ||
		fail "the dead reader's slot is still there after 60 s;" \
			"data.mdb grew from $size0 to" \
			"$(stat -c %s "$SPOOL/state/data.mdb") bytes"
	sleep 0.5
done
size1=$(stat -c %s "$SPOOL/state/data.mdb")
log "dead reader cleared by spoold; data.mdb $size0 -> $size1 bytes"
pid_alive "$SPOOLD_PID" || fail "spoold died"
write_conf "$SINK_PORT" 1s
kill -HUP "$SPOOLD_PID"
wait_spool_empty 90
sleep 1
# a result that met the full map: its messages were put back, not left
# "delivering" (the queue above emptied, so they were retried)
unrecorded=$(grep -c 'cannot record delivery results' "$SPOOLD_LOG" || true)
repaired=$(grep -c 'back in the queue' "$SPOOLD_LOG" || true)
[ "$unrecorded" = 0 ] || [ "$repaired" -gt 0 ] ||
	fail "results not recorded $unrecorded time(s), never repaired"
stop_spoold

# the default map never fills: the periodic rescan frees a dead reader
write_conf "$DOWN_PORT" 1s
start_spoold
submit_batch 20 pinned
wait_deferred 20
dead_reader
wait_log_line "$SPOOLD_LOG" 'freed 1 reader slot' 45 "$SPOOLD_PID" ||
	fail "spoold did not free the dead reader within 45 s"
! has_reader "$reader" || fail "the dead reader's slot is still there"
write_conf "$SINK_PORT" 1s
kill -HUP "$SPOOLD_PID"
wait_spool_empty 60
sleep 1
stop_spoold

sink_tool msgids "$SINK_DIR" >"$T/got"
rc=0
sink_tool tally "$T/mids" "$T/got" --allowed /dev/null >"$T/tally" || rc=$?
echo "crash_lmdb_damage: rounds=$round rebuilt=$rebuilt" \
	"inspect_errors=$inspect_errors" \
	"map_messages=200 data_mdb=${size0}->${size1}" \
	"unrecorded_results=$unrecorded repaired=$repaired" \
	"$(head -1 "$T/tally")"
[ "$rc" = 0 ] || fail "$(tail -n +2 "$T/tally" | head -5)"
grep -q ' lost=0$' "$T/tally" || fail "lost: $(cat "$T/tally")"
[ "$rebuilt" -ge 2 ] || fail "only $rebuilt of $round rounds rebuilt the state"
log "ok"

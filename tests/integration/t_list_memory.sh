#!/bin/bash
# t_list_memory.sh - spoolctl list, list --json and mailq print the queue
# as they read it: their peak memory (max RSS, the listing process and the
# state check it forks) with BIG messages queued stays within a small bound
# of the peak with SMALL queued, and what they print is whole: every
# message once (records in id order, then new/), valid JSON, the totals
# counted as they went. The records are made the fast way: spool files
# written into cur/ while spoold is stopped, and spoold rebuilding LMDB
# from them at start (the README's "state/ can be deleted at any time").
# SMALL=... BIG=... change the counts (200 and 20,000; a sanitizer build
# lists 10,000 with its quarantine kept small, so that freed memory is
# reused as in the optimised build).
. "$(dirname "$0")/lib.sh"

SMALL=${SMALL:-200}
if ldd "$SPOOLCTL" 2>/dev/null | grep 'libasan' >/dev/null; then
	BIG=${BIG:-10000}
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=1"
	SLACK_KB=${SLACK_KB:-6144}
else
	BIG=${BIG:-20000}
	SLACK_KB=${SLACK_KB:-3072}
fi
command -v /usr/bin/time >/dev/null || fail "/usr/bin/time missing (package time)"
RELAY_PORT=$(free_port) # nothing listens: every message stays queued
write_conf "$RELAY_PORT" 1h
start_spoold
stop_spoold
mkdir -p "$T/bin"
ln -s "$SPOOLCTL" "$T/bin/mailq"

# queue_cur FROM TO: spool files bulkFROM..bulk(TO-1) into cur/, with a
# sender and a recipient that need escaping on a terminal and in JSON.
queue_cur() {
	python3 - "$SPOOL" "$1" "$2" <<'EOF'
import os, sys, time
spool, a, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
body = b"Subject: backlog\r\n\r\n" + b"x" * 1000 + b"\r\n"
for i in range(a, b):
    ident = "%014x%s" % (time.time_ns() // 1000, os.urandom(5).hex())
    with open(os.path.join(spool, "cur", ident), "wb") as f:
        f.write(b"SPOOLD 1\nT %d\nS bulk%d@example.org\n"
                b"R \"q\\\"uote\\\\d%d\"@example.net\n\n"
                % (time.time(), i, i) + body)
EOF
	spoold_owns "$SPOOL/cur"
}

# rebuild: spoold makes a record for every file in cur/, then stops.
rebuild() {
	rm -rf "$SPOOL/state"
	start_spoold
	stop_spoold
}

# peak_kb NAME ARGS...: runs spoolctl ARGS (or mailq, for NAME mailq)
# with its output in $T/NAME.out; prints its max RSS in kB.
peak_kb() {
	local name=$1
	shift
	local cmd=("$SPOOLCTL" -c "$CONF" "$@")
	[ "$name" != mailq ] || cmd=("$T/bin/mailq" -C "$CONF")
	/usr/bin/time -f %M -o "$T/$name.rss" "${cmd[@]}" >"$T/$name.out" ||
		fail "$name exited with status $?: $(tail -2 "$T/$name.rss")"
	tail -1 "$T/$name.rss"
}

# check_output N FRESH: the three listings of N messages, FRESH of them
# in new/ with no record, are whole.
check_output() {
	local n=$1
	[ "$(tail -1 "$T/list.out")" = "-- $n message(s)" ] ||
		fail "list ends with: $(tail -1 "$T/list.out")"
	[ "$(grep -c '^  from <bulk' "$T/list.out")" = "$n" ] ||
		fail "list shows $(grep -c '^  from <bulk' "$T/list.out") messages of $n"
	grep -qF '  to   <"q\\"uote\\\\d0"@example.net> pending' "$T/list.out" ||
		fail "list does not show a recipient escaped: $(sed -n 3p "$T/list.out")"
	python3 - "$T/json.out" "$n" "$SPOOL" "$2" <<'EOF' || fail "list --json"
import json, os, sys
path, n, spool = sys.argv[1], int(sys.argv[2]), sys.argv[3]
text = open(path, "rb").read()
assert text.endswith(b"]\n") and text.count(b"\n") == 1, "one line"
doc = json.loads(text)
assert len(doc) == n, "%d messages, not %d" % (len(doc), n)
ids = [m["id"] for m in doc]
assert len(set(ids)) == n, "a message twice"
# the records first, in id order, then what new/ alone holds
fresh = int(sys.argv[4])
assert ids[:n - fresh] == sorted(ids[:n - fresh]), "records out of order"
assert set(ids[n - fresh:]) <= set(os.listdir(os.path.join(spool, "new")))
keys = ["id", "state", "queued_at", "size", "sender", "recipients",
        "attempts", "next_attempt", "last_error", "transport", "key",
        "repeats", "priority", "held_until"]
assert all(list(m) == keys for m in doc), "fields: %s" % list(doc[0])
r = doc[0]["recipients"][0]
assert r["address"].startswith('"q\\"uote\\\\d'), r["address"]
EOF
	tail -1 "$T/mailq.out" | grep -q "^-- [0-9]* Kbytes in $n Requests\.$" ||
		fail "mailq ends with: $(tail -1 "$T/mailq.out")"
	[ "$(grep -c '^[0-9a-f]\{24\}' "$T/mailq.out")" = "$n" ] ||
		fail "mailq shows $(grep -c '^[0-9a-f]\{24\}' "$T/mailq.out") of $n"
}

# measure N FRESH: the max RSS of each listing into rss_NAME_N.
measure() {
	local name
	for name in list json mailq; do
		local args=(list)
		[ "$name" != json ] || args=(list --json)
		printf -v "rss_${name}_$1" %s "$(peak_kb "$name" "${args[@]}")"
	done
	check_output "$1" "$2"
	log "$1 queued: max RSS list $((rss_list_$1)) kB," \
		"list --json $((rss_json_$1)) kB, mailq $((rss_mailq_$1)) kB"
}

queue_cur 0 "$SMALL"
rebuild
measure "$SMALL" 0

# BIG: most in LMDB; a few in new/, one of which (picked up by a spoold
# killed before it could move it) has a record too and is listed once
queue_cur "$SMALL" $((BIG - 20))
rebuild
mv "$SPOOL/cur/$(ls "$SPOOL/cur" | head -1)" "$SPOOL/new/" 2>/dev/null ||
	fail "no file in cur/"
# the record of the moved file stays: it must not be listed twice
python3 - "$SPOOL" 20 <<'EOF'
import os, sys, time
spool, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    ident = "%014x%s" % (time.time_ns() // 1000, os.urandom(5).hex())
    with open(os.path.join(spool, "new", ident), "wb") as f:
        f.write(b"SPOOLD 1\nT %d\nS bulknew%d@example.org\n"
                b"R \"q\\\"uote\\\\d%d\"@example.net\n\nSubject: new\r\n\r\nx\r\n"
                % (time.time(), i, i))
EOF
measure "$BIG" 20

for name in list json mailq; do
	small=rss_${name}_$SMALL big=rss_${name}_$BIG
	[ "${!big}" -le $((${!small} + SLACK_KB)) ] ||
		fail "$name: max RSS ${!big} kB with $BIG queued, ${!small} kB" \
			"with $SMALL: the listing grows with the queue"
done
log "memory flat from $SMALL to $BIG queued (within $SLACK_KB kB)"

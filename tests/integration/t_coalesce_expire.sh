#!/bin/bash
# t_coalesce_expire.sh - a coalescing key's entry in the state is
# forgotten at a rescan once it holds nothing back (no message of the key
# waits, the window of the last one sent has passed), and kept while it
# does: keys made up per host or per path must not pile up in LMDB. After
# the entry goes, the key's next message leaves at once.
. "$(dirname "$0")/lib.sh"

command -v mdb_dump >/dev/null || fail "mdb_dump missing (package lmdb-utils)"
start_sink
write_conf "$SINK_PORT"
export SPOOLD_CONFIG=$CONF
# the rescan every 0.3 s instead of 30 s
export SPOOLD_TEST_RESCAN_MS=300
start_spoold

# key_entries: the coalescing entries of the state, one "uid key" a line
key_entries() {
	mdb_dump -p -s meta "$SPOOL/state" |
		sed -n 's/^ coalesce \([0-9]* [^ ]*\)$/\1/p' | sort
}

sub() {
	printf 'Subject: %s\n\nbody\n' "$2" |
		spoolctl submit --key "$1" --every "$3" -f alarm@example.org \
			ops@example.net >/dev/null
}

# two keys sent: "short" with a window of 2 s, "long" with one of 1 h
sub short s1 2s || fail "submit short"
sub long l1 1h || fail "submit long"
wait_for_count 2 20
[ "$(key_entries)" = "$(printf '0 long\n0 short')" ] ||
	fail "want both entries after the sends, have: $(key_entries | tr '\n' ,)"
# a message of "long" held in its window: its entry must stay
rc=0
sub long l2 1h || rc=$?
[ "$rc" = 10 ] || fail "second of long: want exit 10 (held), have $rc"

deadline=$(($(date +%s) + 15))
while key_entries | grep -qx '0 short'; do
	[ "$(date +%s)" -lt "$deadline" ] ||
		fail "the entry of short outlived its window: $(key_entries | tr '\n' ,)"
	sleep 0.3
done
log "short forgotten after its window"
sleep 1 # three more rescans
[ "$(key_entries)" = "0 long" ] ||
	fail "want only long's entry kept, have: $(key_entries | tr '\n' ,)"
[ "$(spoolctl list --json | sink_tool json 'len(d)')" = 1 ] ||
	fail "the held message of long is gone: $(spoolctl list)"

# short's next message is a first one again: it leaves at once
sub short s2 2s || fail "submit short again (held?)"
wait_for_count 3 20
stop_spoold
log "ok"

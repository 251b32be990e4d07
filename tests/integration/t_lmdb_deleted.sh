#!/bin/bash
# t_lmdb_deleted.sh - the LMDB state is derived: deleting SPOOL/state/*
# while messages are deferred loses nothing; spoold rebuilds it from the
# spool and delivers.
. "$(dirname "$0")/lib.sh"

N=5
start_sink
start_postfix_relay
stop_postfix
write_conf "$PF_PORT" 5s
start_spoold

for i in $(seq 1 "$N"); do
	make_msg "$T/m.$i" "state lost $i" 400 >>"$T/mids"
	spoolctl submit -f app@example.org "ops$i@example.net" <"$T/m.$i" \
		>/dev/null || fail "submit $i failed"
done
deadline=$(($(date +%s) + 20))
until [ "$(spoolctl list --json | sink_tool json \
	'len([m for m in d if m["state"] == "deferred"])')" = "$N" ]; do
	[ "$(date +%s)" -lt "$deadline" ] ||
		fail "messages not deferred: $(spoolctl list --json)"
	sleep 0.2
done
stop_spoold

ls -A "$SPOOL/state" | grep -q . || fail "SPOOL/state is empty before rm"
rm -rf "${SPOOL:?}"/state/*
log "removed SPOOL/state/*; spool holds $(spool_files new cur) files"
[ "$(spool_files new cur)" = "$N" ] || fail "spool lost files on stop"

start_postfix
start_spoold
wait_for_count "$N" 60
sleep 2
[ "$(sink_count)" = "$N" ] || fail "sink has $(sink_count) for $N"
for mid in $(cat "$T/mids"); do
	[ "$(sink_tool find-msgid "$SINK_DIR" "$mid" | wc -l)" = 1 ] ||
		fail "$mid not delivered exactly once"
done
deadline=$(($(date +%s) + 10))
until [ "$(spool_files new cur)" = 0 ]; do
	[ "$(date +%s)" -lt "$deadline" ] || fail "spool not emptied"
	sleep 0.2
done
stop_spoold
log "ok"

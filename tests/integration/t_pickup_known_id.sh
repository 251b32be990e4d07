#!/bin/bash
# t_pickup_known_id.sh - a file dropped into new/ under the id of a message
# already in cur/ never replaces it: cur/ID holds the marks of recipients
# already sent to, and replacing it would send to them again (or send
# something else in the message's name).
. "$(dirname "$0")/lib.sh"

# nothing listens there: the message is deferred and stays in cur/
write_conf "$(free_port)" 1h
start_spoold
id=$(printf 'Subject: kept\n\nthe original\n' |
	spoolctl submit admin@example.org) || fail "submit failed"
wait_log_line "$SPOOLD_LOG" "id=$id .*status=deferred" 20 "$SPOOLD_PID" ||
	fail "the message was not deferred"
[ -f "$SPOOL/cur/$id" ] || fail "cur/$id missing"
before=$(sha256sum <"$SPOOL/cur/$id")
stop_spoold

# another file, under the same id
id2=$(printf 'Subject: intruder\n\nreplacement\n' |
	spoolctl submit other@example.org) || fail "second submit failed"
mv "$SPOOL/new/$id2" "$SPOOL/new/$id"
start_spoold
wait_log_line "$SPOOLD_LOG" "id=$id cannot move to cur/: File exists" 20 \
	"$SPOOLD_PID" || fail "pickup did not refuse to replace cur/$id"
[ "$(sha256sum <"$SPOOL/cur/$id")" = "$before" ] ||
	fail "cur/$id was replaced by the file dropped into new/"
grep -q "the original" "$SPOOL/cur/$id" || fail "cur/$id lost its message"
stop_spoold
log "ok"

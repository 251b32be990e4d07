#!/bin/bash
# t_queue_control.sh - hold, release, delete and requeue, with spoold
# running and stopped: a held message is never delivered, a released one
# is, a deleted one is gone, a failed one comes back with requeue. An
# unprivileged user may submit but may not read or change the queue.
. "$(dirname "$0")/lib.sh"

start_sink --reject-rcpt bounce@example.net=550 \
	--reject-rcpt later@example.net=451
write_conf "$SINK_PORT" 1h

# state_of ID: its state in list --all --json, or "gone".
state_of() {
	spoolctl list --all --json | sink_tool json \
		"([m['state'] for m in d if m['id'] == '$1'] + ['gone'])[0]"
}

submit_one() { # RCPT TAG
	make_msg "$T/$2" "$2" 300 >/dev/null
	spoolctl submit "$1" <"$T/$2" || fail "submit $2 failed"
}

expect_state() { # ID STATE
	local got
	got=$(state_of "$1")
	[ "$got" = "$2" ] || fail "$1 is $got, want $2"
}

# --- offline: hold before the daemon ever sees the messages ---
a=$(submit_one ok1@example.net a)
b=$(submit_one ok2@example.net b)
c=$(submit_one ok3@example.net c)
spoolctl hold "$a" || fail "offline hold exited $?"
echo "$b" | spoolctl delete - || fail "offline delete from stdin exited $?"
[ "$(spool_files hold)" = 1 ] || fail "held file not in hold/"

start_spoold
wait_for_count 1 20
sleep 1
[ "$(sink_count)" = 1 ] || fail "sink has $(sink_count) messages, want 1 (c)"
expect_state "$a" held
expect_state "$b" gone
expect_state "$c" gone
[ "$(spoolctl list --held --json | sink_tool json 'len(d)')" = 1 ] ||
	fail "list --held does not show the held message"

# --- online: release delivers, hold of a delivered id fails cleanly ---
spoolctl release "$a" || fail "release exited $?"
wait_for_count 2 20
expect_state "$a" gone
rc=0
spoolctl release "$a" 2>"$T/err" || rc=$?
[ "$rc" = 66 ] || fail "release of a delivered message exited $rc, want 66"
grep -q "no such message" "$T/err" || fail "no reason given: $(cat "$T/err")"

# --- online: a failed message comes back with requeue ---
d=$(submit_one bounce@example.net d)
for _ in $(seq 100); do
	[ "$(state_of "$d")" = failed ] && break
	sleep 0.1
done
expect_state "$d" failed
rc=0
spoolctl hold "$d" 2>/dev/null || rc=$?
[ "$rc" = 65 ] || fail "hold of a failed message exited $rc, want 65"
spoolctl requeue "$d" || fail "requeue exited $?"
for _ in $(seq 100); do
	[ "$(state_of "$d")" = failed ] && break
	sleep 0.1
done
expect_state "$d" failed
n=$(grep -c "bounce@example.net.*status=failed" "$SPOOLD_LOG" || true)
[ "$n" = 2 ] || fail "the requeued recipient was tried $n times, want 2"
hist=$(spoolctl show "$d" --json | sink_tool json \
	'[h["transport"] + " " + h["result"] for h in d["history"]]')
log "history of $d: $hist"
case $hist in
*'"local failed 1: 550'*'"local failed 1: 550'*) ;;
*) fail "show --json history lacks the two attempts: $hist" ;;
esac
spoolctl delete "$d" || fail "delete of a failed message exited $?"
expect_state "$d" gone
[ "$(spool_files failed)" = 0 ] || fail "failed/ not empty after delete"

wait_state() { # ID STATE
	for _ in $(seq 100); do
		[ "$(state_of "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	expect_state "$1" "$2"
}
tries() { spoold_log_count "later@example.net.*status=deferred"; }

# --- online: a deferred message held is not tried while held ---
e=$(submit_one later@example.net e)
wait_state "$e" deferred
spoolctl hold "$e" || fail "hold of a deferred message exited $?"
expect_state "$e" held
n=$(tries)
spoolctl flush >/dev/null
sleep 2
[ "$(tries)" = "$n" ] || fail "a held message was tried"
stop_spoold
start_spoold
expect_state "$e" held
spoolctl release "$e" || fail "release after restart exited $?"
for _ in $(seq 100); do
	[ "$(tries)" -gt "$n" ] && break
	sleep 0.1
done
[ "$(tries)" -gt "$n" ] || fail "the released message was not tried"
wait_state "$e" deferred
spoolctl delete "$e" || fail "delete of a deferred message exited $?"

# --- the state is lost: hold survives through hold/ ---
f=$(submit_one later@example.net f)
wait_state "$f" deferred
spoolctl hold "$f" || fail "hold exited $?"
stop_spoold
rm -rf "$SPOOL/state"
start_spoold
expect_state "$f" held
before=$(sink_count)

# --- privileges: another user submits but cannot look or act ---
if id nobody >/dev/null 2>&1; then
	setgid_spoolctl
	asnobody() {
		setpriv --reuid=nobody --regid=nogroup --clear-groups \
			"$SETGID_SPOOLCTL" -c "$CONF" "$@"
	}
	chmod 755 "$T"
	chmod 644 "$CONF"
	g=$(printf 'Subject: from nobody\n\nhi\n' | asnobody submit ok7@example.net) ||
		fail "an unprivileged user cannot submit"
	rc=0
	asnobody list >/dev/null 2>&1 || rc=$?
	[ "$rc" = 77 ] || fail "unprivileged list exited $rc, want 77"
	# counts and health are anyone's, through the daemon
	asnobody status >/dev/null 2>&1 ||
		fail "unprivileged status exited $?, want 0"
	rc=0
	asnobody check >/dev/null 2>&1 || rc=$?
	[ "$rc" != 3 ] || fail "unprivileged check answered UNKNOWN"
	rc=0
	asnobody show "$g" >/dev/null 2>&1 || rc=$?
	[ "$rc" = 77 ] || fail "unprivileged show exited $rc, want 77"
	rc=0
	asnobody hold "$f" >/dev/null 2>&1 || rc=$?
	[ "$rc" = 77 ] || fail "unprivileged hold exited $rc, want 77"
	rc=0
	asnobody delete "$f" >/dev/null 2>&1 || rc=$?
	[ "$rc" = 77 ] || fail "unprivileged delete exited $rc, want 77"
	expect_state "$f" held
	wait_for_count $((before + 1)) 20
fi
stop_spoold
log "queue control: ok"

#!/bin/bash
# t_privileges.sh - the privilege model, with the files themselves: two
# unprivileged users submit into a root-owned spool; neither can list the
# queue, read, remove, rename or overwrite the other's queued file, or use
# spoolctl to show, hold or delete it; root's spoold delivers both.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root to act as other users"
for u in nobody daemon; do
	id "$u" >/dev/null 2>&1 || skip "no user $u"
done

start_sink
write_conf "$SINK_PORT" 1s
chmod 755 "$T"
chmod 644 "$CONF"
"$SPOOLCTL" -c "$CONF" init >/dev/null || fail "spoolctl init failed"

as() { # USER COMMAND...
	local u=$1
	shift
	setpriv --reuid="$u" --regid="$(id -g "$u")" --clear-groups "$@"
}
refused() { # WHAT USER COMMAND...: the command must fail
	local what=$1
	shift
	if as "$@" >/dev/null 2>&1; then
		fail "$2 could $what"
	fi
}
spoolctl_rc() { # USER ARGS...: prints spoolctl's exit status
	local u=$1 rc=0
	shift
	as "$u" "$SPOOLCTL" -c "$CONF" "$@" >/dev/null 2>&1 </dev/null || rc=$?
	echo "$rc"
}

a=$(printf 'Subject: from nobody\n\nsecret of nobody\n' |
	as nobody "$SPOOLCTL" -c "$CONF" submit a@example.net) ||
	fail "nobody cannot submit"
b=$(printf 'Subject: from daemon\n\nsecret of daemon\n' |
	as daemon "$SPOOLCTL" -c "$CONF" submit b@example.net) ||
	fail "daemon cannot submit"
f="$SPOOL/new/$a"
[ "$(stat -c '%U %a' "$f")" = "nobody 600" ] ||
	fail "the queued file is $(stat -c '%U %a' "$f"), want nobody 600"

refused "list new/" daemon ls "$SPOOL/new"
refused "list the spool" daemon ls "$SPOOL"
refused "read another's message" daemon cat "$f"
refused "remove another's message" daemon rm -f "$f"
refused "rename another's message" daemon mv "$f" "$SPOOL/new/mine"
refused "overwrite another's message" daemon sh -c "echo x >'$f'"
refused "read the state" daemon ls "$SPOOL/state"
[ -f "$f" ] && grep -q "secret of nobody" "$f" ||
	fail "nobody's queued file changed"
for cmd in "show $a" "delete $a" "hold $a" "list" "flush $a"; do
	# shellcheck disable=SC2086
	rc=$(spoolctl_rc daemon $cmd)
	[ "$rc" = 77 ] || fail "daemon: spoolctl $cmd exited $rc, want 77"
done
# the submitter does not own the queue either
rc=$(spoolctl_rc nobody delete "$a")
[ "$rc" = 77 ] || fail "nobody: spoolctl delete of its own exited $rc"

# with spoold running, changes go through the control socket: refused
start_spoold
spoolctl hold "$b" >/dev/null 2>&1 || true # may be delivered already
for cmd in "release $b" "delete $b" "hold $a" "flush"; do
	# shellcheck disable=SC2086
	rc=$(spoolctl_rc daemon $cmd)
	[ "$rc" = 77 ] || fail "daemon (spoold running): spoolctl $cmd exited $rc"
done
spoolctl release "$b" >/dev/null 2>&1 || true
wait_for_count 2 20
sink_tool envelopes "$SINK_DIR" | grep -F a@example.net >/dev/null ||
	fail "nobody's message was not delivered"
sink_tool envelopes "$SINK_DIR" | grep -F b@example.net >/dev/null ||
	fail "daemon's message was not delivered"
stop_spoold
log "ok"

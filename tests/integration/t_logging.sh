#!/bin/bash
# t_logging.sh - where spoold's log goes, and a second spoold that says why
# it stops: in the background with no syslog socket (a container) the log
# stays on standard error, which says so once; a second daemon on the same
# spool, in the background or not, names the first one's pid and exits 75
# before it detaches.
. "$(dirname "$0")/lib.sh"

start_sink
write_conf "$SINK_PORT"

# --- 1. a second spoold says why it stops, in either mode ---
start_spoold
for mode in -f ""; do
	rc=0
	# shellcheck disable=SC2086
	"$SPOOLD" -c "$CONF" $mode >"$T/second.out" 2>"$T/second.err" || rc=$?
	[ "$rc" = 75 ] ||
		fail "second spoold ($mode) exited $rc, want 75: $(cat "$T/second.err")"
	grep -qF "another spoold (pid $SPOOLD_PID) runs on $SPOOL" \
		"$T/second.err" ||
		fail "second spoold ($mode) did not say why: $(cat "$T/second.err")"
done
stop_spoold

# --- 2. in the background with no syslog socket: stderr ---
bg_pid=""
stop_bg() {
	[ -n "$bg_pid" ] && pid_alive "$bg_pid" || return 0
	kill -TERM "$bg_pid"
	wait_gone "$bg_pid" 10 || kill -KILL "$bg_pid"
}
T_CLEANUP_HOOKS+=(stop_bg)
run=("$SPOOLD" -c "$CONF")
if [ -e /dev/log ]; then
	# this host has one: hide it from spoold alone
	run=(unshare --mount --propagation private sh -c \
		'mount --bind /dev/null /dev/log && exec "$@"' sh "${run[@]}")
fi
rc=0
"${run[@]}" 2>"$T/bg.log" || rc=$?
[ "$rc" = 0 ] || fail "background spoold exited $rc: $(cat "$T/bg.log")"
wait_log_line "$T/bg.log" 'ready' 10 || fail "no ready line on stderr"
bg_pid=$(cat "$SPOOL/spoold.pid")
pid_alive "$bg_pid" || fail "spoold.pid names $bg_pid, which is not running"
[ "$(readlink "/proc/$bg_pid/exe")" = "$(readlink -f "$SPOOLD")" ] ||
	fail "spoold.pid names $bg_pid, not the detached daemon"
[ "$(grep -c 'no syslog socket at /dev/log: logging to standard error' \
	"$T/bg.log")" = 1 ] || fail "the fallback is not said once: $(cat "$T/bg.log")"
id=$(printf 'Subject: bg\n\nbody\n' | spoolctl submit admin@example.org) ||
	fail "submit failed"
wait_log_line "$T/bg.log" "id=$id .*status=sent" 20 ||
	fail "the delivery was not logged on stderr"
# the second one, now against a detached daemon
rc=0
"$SPOOLD" -c "$CONF" 2>"$T/second.err" || rc=$?
[ "$rc" = 75 ] && grep -qF "another spoold (pid $bg_pid)" "$T/second.err" ||
	fail "second spoold against the detached one: $rc $(cat "$T/second.err")"
stop_bg
log "ok"

#!/bin/bash
# t_watchdog.sh - WatchdogSec= in the unit works: started as systemd starts
# it (NOTIFY_SOCKET, WATCHDOG_USEC=2000000, WATCHDOG_PID = its own pid),
# spoold sends WATCHDOG=1 about every second from its loop; stopped
# (SIGSTOP, as a stuck loop would be) it sends none, and after SIGCONT
# the pings resume. A WATCHDOG_PID naming another process means the
# watchdog is not spoold's: it sends none.
. "$(dirname "$0")/lib.sh"

NOTIFY_LOG="$T/notify.log"
NOTIFY_SOCK="$T/notify.sock"
start_notify "$NOTIFY_SOCK" "$NOTIFY_LOG"

# pings_between T0 T1: WATCHDOG=1 datagrams received in [T0, T1)
pings_between() {
	awk -v a="$1" -v b="$2" '$2 == "WATCHDOG=1" && $1 >= a && $1 < b' \
		"$NOTIFY_LOG" | wc -l
}
mono() {
	python3 -c 'import time; print("%.3f" % time.monotonic())'
}

# start_watched PID_VALUE: spoold with the watchdog variables; PID_VALUE
# "self" gives it its own pid (the subshell's pid survives the exec)
start_watched() {
	SPOOLD_RUNS=$((SPOOLD_RUNS + 1))
	SPOOLD_LOG="$T/spoold.$SPOOLD_RUNS.log"
	(
		pid=$1
		[ "$pid" = self ] && pid=$BASHPID
		export NOTIFY_SOCKET="$NOTIFY_SOCK" WATCHDOG_USEC=2000000
		export WATCHDOG_PID="$pid"
		exec "$SPOOLD" -c "$CONF" -f
	) >"$SPOOLD_LOG" 2>&1 &
	SPOOLD_PID=$!
	wait_log_line "$SPOOLD_LOG" 'ready' 10 "$SPOOLD_PID" ||
		fail "spoold did not start"
}

start_sink
write_conf "$SINK_PORT"

# ---- a watchdog meant for another process: no pings ------------------------
start_watched 1
t0=$(mono)
sleep 3
n=$(pings_between "$t0" "$(mono)")
[ "$n" = 0 ] || fail "$n WATCHDOG=1 sent although WATCHDOG_PID is not spoold"
stop_spoold

# ---- spoold's own watchdog: a ping a second, none while stopped ------------
start_watched self
sleep 1
t0=$(mono)
sleep 5
t1=$(mono)
n=$(pings_between "$t0" "$t1")
# gaps between the pings of that window, in ms, shortest first
gaps=$(awk -v a="$t0" -v b="$t1" '$2 == "WATCHDOG=1" && $1 >= a && $1 < b {
	if (p) printf "%d\n", ($1 - p) * 1000; p = $1 }' "$NOTIFY_LOG" | sort -n)
short=$(head -n 1 <<<"$gaps") long=$(tail -n 1 <<<"$gaps")
log "WATCHDOG=1 sent $n times in $(awk -v a="$t0" -v b="$t1" \
	'BEGIN { printf "%.1f", b - a }') s; gaps $short to $long ms"
[ "$n" -ge 4 ] || fail "$n WATCHDOG=1 in 5 s with WATCHDOG_USEC=2000000"
[ "$short" -ge 400 ] && [ "$long" -le 1800 ] ||
	fail "WATCHDOG=1 gaps of $short to $long ms (want about 1000)"

# stopped: a loop that does not turn sends nothing
kill -STOP "$SPOOLD_PID"
sleep 0.3
t0=$(mono)
sleep 3
t1=$(mono)
kill -CONT "$SPOOLD_PID"
n=$(pings_between "$t0" "$t1")
[ "$n" = 0 ] || fail "$n WATCHDOG=1 while spoold was stopped"
sleep 2.5
n=$(pings_between "$t1" "$(mono)")
[ "$n" -ge 1 ] || fail "no WATCHDOG=1 after SIGCONT"
log "no ping while stopped; $n in the 2.5 s after SIGCONT"

# the daemon still works, and the pings do not disturb it
printf 'Subject: watched\n\nx\n' | spoolctl submit a@example.net >/dev/null
wait_for_count 1 20
stop_spoold

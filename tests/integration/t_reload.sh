#!/bin/bash
# t_reload.sh - what the systemd unit relies on: spoold tells
# $NOTIFY_SOCKET READY=1 once it runs, RELOADING=1 then READY=1 around a
# SIGHUP, STOPPING=1 on SIGTERM. SIGHUP re-reads the configuration (here:
# the relay moves to another port) without losing the queue; a broken file
# is refused and the running configuration kept.
. "$(dirname "$0")/lib.sh"

# the service manager's end of NOTIFY_SOCKET: one datagram a line
NOTIFY_LOG="$T/notify.log"
export NOTIFY_SOCKET="$T/notify.sock"
python3 - "$NOTIFY_SOCKET" "$NOTIFY_LOG" >"$T/notify.err" 2>&1 <<'EOF' &
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
# spoold started by root sends as its own user, as systemd's socket lets
os.chmod(sys.argv[1], 0o666)
with open(sys.argv[2], "a") as out:
    print("listening", file=out, flush=True)
    while True:
        msg = s.recv(4096).decode()
        print(msg.replace("\n", " "), file=out, flush=True)
EOF
T_PIDS+=("notify $!")
wait_log_line "$NOTIFY_LOG" listening 10 "$!" || fail "notify listener"

# notified N: the Nth datagram (1 = the first after "listening").
notified() {
	sed -n "$(($1 + 1))p" "$NOTIFY_LOG"
}
wait_notified() { # N WANT
	for _ in $(seq 100); do
		[ "$(notified "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	fail "notification $1 is '$(notified "$1")', want '$2'" \
		"($(tr '\n' '|' <"$NOTIFY_LOG"))"
}

start_sink --reject-rcpt later@example.net=451
A_DIR=$SINK_DIR
A_PORT=$SINK_PORT
start_sink
B_DIR=$SINK_DIR
B_PORT=$SINK_PORT
write_conf "$A_PORT" 1h
start_spoold
wait_notified 1 "READY=1"

later=$(printf 'Subject: later\n\nx\n' | spoolctl submit later@example.net)
printf 'Subject: a\n\nx\n' | spoolctl submit a@example.net >/dev/null
wait_for_count 1 20 "$A_DIR"
wait_log_line "$SPOOLD_LOG" "id=$later.*status=deferred" 10 "$SPOOLD_PID" ||
	fail "$later was not deferred at the first relay"

# the relay moves; SIGHUP
sed -i "s/^port = .*/port = $B_PORT/" "$CONF"
kill -HUP "$SPOOLD_PID"
wait_notified 2 "RELOADING=1"
wait_notified 3 "READY=1"
wait_log_line "$SPOOLD_LOG" "reloaded" 10 "$SPOOLD_PID" ||
	fail "spoold did not log the reload"
printf 'Subject: b\n\nx\n' | spoolctl submit b@example.net >/dev/null
wait_for_count 1 20 "$B_DIR"
# the deferred message was kept, and goes to the new relay when due
spoolctl flush "$later" >/dev/null
wait_for_count 2 20 "$B_DIR"
sink_tool envelopes "$B_DIR" | grep -F later@example.net >/dev/null ||
	fail "the queued message did not reach the new relay"

# a broken file is refused; the running configuration stays
cp "$CONF" "$CONF.good"
sed -i "s/^route = .*/route = nowhere/" "$CONF"
kill -HUP "$SPOOLD_PID"
wait_notified 4 "RELOADING=1"
wait_notified 5 "READY=1"
wait_log_line "$SPOOLD_LOG" "reload refused" 10 "$SPOOLD_PID" ||
	fail "spoold did not refuse the broken configuration"
grep "reload refused" "$SPOOLD_LOG" | grep -q "nowhere" ||
	fail "the refusal does not say what is wrong"
printf 'Subject: c\n\nx\n' | spoolctl -c "$CONF.good" submit c@example.net \
	>/dev/null
wait_for_count 3 20 "$B_DIR"
[ "$(sink_count "$A_DIR")" = 1 ] || fail "the old relay got mail after reload"

stop_spoold
wait_notified 6 "STOPPING=1"
log "ok"

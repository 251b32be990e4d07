#!/bin/bash
# t_breaker.sh - a transport's breaker, without waiting on the clock: the
# test knob SPOOLD_TEST_BREAKER_FIRST_MS sets its first cool-down. With no
# traffic, the end of the cool-down is recorded (status shows the transport
# up again, the log says so once); a new password_file ends it at once; and
# `spoolctl probe` opens a real session (no mail), prints the fresh result,
# exits 69 while the relay is down and re-arms the transport once it is up.
. "$(dirname "$0")/lib.sh"

# up_of NAME: the transport's "up" in status --json (True, False, None)
up_of() {
	spoolctl status --json | python3 -c '
import json, sys
print([t["up"] for t in json.load(sys.stdin)["transports"]
       if t["name"] == sys.argv[1]][0])' "$1"
}
# wait_up NAME WANT SECONDS
wait_up() {
	local deadline=$(($(date +%s) + $3))
	until [ "$(up_of "$1")" = "$2" ]; do
		[ "$(date +%s)" -lt "$deadline" ] ||
			fail "transport $1 not up=$2 after $3 s: $(spoolctl status)"
		sleep 0.1
	done
}

# nothing listens there: every session is a relay failure
write_conf "$(free_port)" 1h
export SPOOLD_CONFIG=$CONF

# --- 1. the cool-down ends with no traffic: recorded ---
export SPOOLD_TEST_BREAKER_FIRST_MS=1500
start_spoold
id=$(printf 'Subject: a\n\nbody\n' | spoolctl submit admin@example.org) ||
	fail "submit failed"
wait_log_line "$SPOOLD_LOG" "transport=local health=down" 20 "$SPOOLD_PID" ||
	fail "the refused connection did not open the breaker"
t0=$(date +%s%N)
wait_up local True 10
log "up again $(ms_since "$t0") ms after the breaker opened, no traffic"
[ "$(spoold_log_count 'transport=local health=up')" = 1 ] ||
	fail "the end of the cool-down is not logged once"
# the message was not retried for it: its schedule is its own (1h)
[ "$(spoold_log_count "id=$id .*status=deferred")" = 1 ] ||
	fail "the message was tried again"
stop_spoold

# --- 2. a new password_file ends the cool-down at once ---
echo old-token >"$T/token"
chmod 600 "$T/token"
cat >>"$CONF" <<EOT
tls = starttls
user = u
password_file = $T/token
EOT
sed -i '0,/^tls = none$/{/^tls = none$/d}' "$CONF"
export SPOOLD_TEST_BREAKER_FIRST_MS=600000
start_spoold
spoolctl flush >/dev/null || fail "flush failed"
wait_log_line "$SPOOLD_LOG" "transport=local health=down" 20 "$SPOOLD_PID" ||
	fail "the breaker did not open"
[ "$(up_of local)" = False ] || fail "local not down"
echo fixed-token >"$T/token.new"
chmod 600 "$T/token.new"
mv "$T/token.new" "$T/token"
t0=$(date +%s%N)
wait_up local True 5
log "re-armed $(ms_since "$t0") ms after the token changed"
[ "$(spoold_log_count 'transport=local password_file changed: trying it again')" = 1 ] ||
	fail "the re-arm is not logged"
stop_spoold

# --- 3. spoolctl probe: a real session, the fresh result, a re-arm ---
port=$(free_port)
write_conf "$port" 1h
start_spoold
id=$(printf 'Subject: c\n\nbody\n' | spoolctl submit admin@example.org) ||
	fail "submit failed"
wait_log_line "$SPOOLD_LOG" "id=$id .*status=deferred" 20 "$SPOOLD_PID" ||
	fail "the message was not deferred"
rc=0
out=$(spoolctl probe) || rc=$?
[ "$rc" = 69 ] || fail "probe with the relay down exited $rc, want 69: $out"
echo "$out" | grep -q "^local: down, no probe configured, session failed at .*127.0.0.1:$port" ||
	fail "probe with the relay down printed: $out"
python3 "$SINK_PY" --port "$port" --dir "$T/sink3" >"$T/sink3.log" 2>&1 &
T_PIDS+=("sink3 $!")
wait_log_line "$T/sink3.log" 'capture_sink ready' 10 || fail "no sink on $port"
out=$(spoolctl probe) || fail "probe with the relay up exited non-zero: $out"
echo "$out" | grep -q "^local: up, no probe configured, session ok at" ||
	fail "probe with the relay up printed: $out"
[ "$(up_of local)" = True ] || fail "probe did not re-arm local"
[ "$(spoold_log_count 'transport=local probe reached the relay: trying it again')" = 1 ] ||
	fail "the re-arm by probe is not logged"
[ "$(ls "$T/sink3" | grep -c '\.eml$' || true)" = 0 ] ||
	fail "the probe sent mail"
spoolctl flush >/dev/null || fail "flush failed"
wait_log_line "$SPOOLD_LOG" "id=$id .*status=sent" 20 "$SPOOLD_PID" ||
	fail "the message did not leave once the relay was up"
stop_spoold

# --- 4. a stop does not wait out a probe's session: a relay that never
# answers the SYN (a listener with a full backlog, loopback only) ---
port=$(free_port)
python3 - "$port" >"$T/blackhole.log" 2>&1 <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
l = socket.socket()
l.bind(("127.0.0.1", port))
l.listen(0)
fill = []
for _ in range(3):  # never accepted: the queue stays full
    c = socket.socket()
    c.setblocking(False)
    c.connect_ex(("127.0.0.1", port))
    fill.append(c)
print("blackhole ready", flush=True)
time.sleep(600)
PY
T_PIDS+=("blackhole $!")
wait_log_line "$T/blackhole.log" 'blackhole ready' 10 || fail "no blackhole"
write_conf "$port" 1h
sed -i 's/^connect_timeout = .*/connect_timeout = 60s/' "$CONF"
start_spoold
spoolctl probe >"$T/probe4.out" 2>&1 &
probe_pid=$!
# until the probe's SYN waits for an answer (state SYN_SENT, 02)
python3 - "$port" <<'PY' || fail "the probe never tried to connect"
import sys, time
port = "%04X" % int(sys.argv[1])
for _ in range(100):
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        f = line.split()
        if f[2].endswith(":" + port) and f[3] == "02":
            sys.exit(0)
    time.sleep(0.1)
sys.exit(1)
PY
stop_spoold # fails unless spoold exits within 10 s, with status 0
wait "$probe_pid" || true
log "ok"

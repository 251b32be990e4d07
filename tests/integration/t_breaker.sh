#!/bin/bash
# t_breaker.sh - a transport's breaker, without waiting on the clock: the
# test knob SPOOLD_TEST_BREAKER_FIRST_MS sets its first cool-down. With no
# traffic, the end of the cool-down is recorded (status shows the transport
# up again, the log says so once); a new password_file ends it at once.
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
log "ok"

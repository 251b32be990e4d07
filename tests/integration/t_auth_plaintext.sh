#!/bin/bash
# t_auth_plaintext.sh - AUTH never goes in clear. A transport with user and
# password_file and tls = none (set, or left to its default) is refused:
#
#  - at start: spoold exits 78 at once with one line naming the transport
#    and the way out (tls = starttls or implicit, or no user), and the
#    token is never sent: a listener that nobody bound on the relay's
#    unprivileged port (the relay being down) sees no connection;
#  - from the environment alone (a sidecar): the same;
#  - by spoolctl, which loads the same configuration: 78, the same line;
#  - on SIGHUP: the reload is refused with that line, the running
#    configuration stays, and mail still goes out through it.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root to act as nobody"
id nobody >/dev/null 2>&1 || skip "no user nobody"

TOKEN="plaintext-token-$RANDOM$RANDOM"
TOKEN_FILE="$T/relay.token"
(umask 077 && printf '%s\n' "$TOKEN" >"$TOKEN_FILE")

# the relay is down; nobody listens on its port instead
mkdir -p "$T/trap"
chown nobody "$T/trap"
TRAP_PORT=$(free_port)
# the system's python3: root's own (pyenv) may be out of nobody's reach
PY=$(PATH=/usr/bin:/bin command -v python3) || fail "no python3 in /usr/bin"
setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups \
	"$PY" "$T_LIB_DIR/fault_relay.py" --port "$TRAP_PORT" \
	--dir "$T/trap/mail" >"$T/trap.log" 2>&1 &
T_PIDS+=("trap $!")
wait_log_line "$T/trap.log" 'capture_sink ready' 30 $! ||
	fail "nobody's listener did not start"

start_sink
SPOOL="$T/spool"

# conf FILE TLS_LINE: a route to the trap's port with AUTH, then local.
conf() {
	cat >"$1" <<EOF
[spool]
dir = $SPOOL

[delivery]
route = relay, local
retry = 1m

[transport relay]
type = smtp
host = 127.0.0.1
port = $TRAP_PORT
$2
user = no-reply@example.org
password_file = $TOKEN_FILE
timeout = 2s

[transport local]
type = smtp
host = 127.0.0.1
port = $SINK_PORT
tls = none
EOF
}

WANT='\[transport relay\] tls: with user set, tls = none would send the password in clear; set tls = starttls or tls = implicit, or remove user and password_file'

# refused WHAT CMD...: exits 78 within 5 s, stderr one line matching WANT
refused() {
	local what=$1 rc=0 t0 ms
	shift
	t0=$(date +%s%N)
	timeout 10 "$@" >"$T/refused.out" 2>"$T/refused.err" </dev/null || rc=$?
	ms=$(ms_since "$t0")
	[ "$rc" = 78 ] ||
		fail "$what: exit status $rc, want 78: $(head -c 400 "$T/refused.err")"
	[ "$ms" -le 5000 ] || fail "$what: took $ms ms to refuse"
	[ "$(wc -l <"$T/refused.err")" = 1 ] ||
		fail "$what: not one line: $(cat "$T/refused.err")"
	grep -qE -- "$WANT" "$T/refused.err" ||
		fail "$what: unclear refusal: $(cat "$T/refused.err")"
	! grep -qF -- "$TOKEN" "$T/refused.err" "$T/refused.out" ||
		fail "$what: the token is in its output"
	log "$what: refused in $ms ms: $(cat "$T/refused.err")"
}

conf "$T/none.conf" "tls = none"
conf "$T/default.conf" ""
refused "spoold, tls = none" "$SPOOLD" -c "$T/none.conf" -f
refused "spoold, tls left to its default" "$SPOOLD" -c "$T/default.conf" -f
refused "spoolctl status" "$SPOOLCTL" -c "$T/none.conf" status
refused "spoolctl list" "$SPOOLCTL" -c "$T/default.conf" list
refused "spoold from the environment" env -i PATH="$PATH" \
	SPOOLD_SPOOL_DIR="$SPOOL" SPOOLD_DELIVERY_ROUTE=relay \
	SPOOLD_TRANSPORT_RELAY_HOST=127.0.0.1 \
	SPOOLD_TRANSPORT_RELAY_PORT="$TRAP_PORT" \
	SPOOLD_TRANSPORT_RELAY_USER=no-reply@example.org \
	SPOOLD_TRANSPORT_RELAY_PASSWORD_FILE="$TOKEN_FILE" \
	"$SPOOLD" -f

# SIGHUP: a running spoold keeps its configuration
cat >"$T/running.conf" <<EOF
[spool]
dir = $SPOOL

[delivery]
route = local
retry = 1m

[transport local]
type = smtp
host = 127.0.0.1
port = $SINK_PORT
tls = none
EOF
CONF="$T/running.conf"
start_spoold
conf "$T/running.conf" "tls = none"
kill -HUP "$SPOOLD_PID"
wait_log_line "$SPOOLD_LOG" 'reload refused, keeping the running configuration: .*\[transport relay\] tls: with user set' 10 ||
	fail "the reload was not refused: $(tail -n 5 "$SPOOLD_LOG")"
# spoolctl refuses the file spoold refused: submit with one like the
# configuration spoold still runs
cat >"$T/old.conf" <<EOF
[spool]
dir = $SPOOL

[transport local]
type = smtp
host = 127.0.0.1
port = $SINK_PORT
tls = none
EOF
printf 'Subject: after the reload\n\nbody\n' |
	"$SPOOLCTL" -c "$T/old.conf" submit rcpt@example.net >/dev/null ||
	fail "submit failed"
wait_for_count 1 20
stop_spoold

# nothing ever reached the port where the token would have gone
! grep -q '^connection ' "$T/trap.log" ||
	fail "the listener on the relay's port was reached: $(cat "$T/trap.log")"
log "ok: refused everywhere; the listener on the relay's port saw nothing"

#!/bin/bash
# t_caller_truth.sh - what spoolctl tells its callers and operators is
# true: submit --wait run by an unprivileged submitter exits 0 only for a
# delivered message, 75 with the reason for a deferred or held one, 69 for
# a failed one, 75 at once with no daemon, and costs no retry step; a flush
# takes no step either; "--wait 30 ADDR" waits, "--wait x ADDR" is refused;
# status and check tell a stopped (SIGSTOP) daemon from a dead one, a
# transport never judged from one that is up, and work for any local user;
# a missing spool is an error; --version and --help work everywhere.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root to act as nobody"
id nobody >/dev/null 2>&1 || skip "no user nobody"

start_sink --reject-rcpt bounce@example.net=550 \
	--reject-rcpt later@example.net=451
write_conf "$SINK_PORT" 1h
chmod 755 "$T"
chmod 644 "$CONF"
"$SPOOLCTL" -c "$CONF" init >/dev/null || fail "spoolctl init failed"
# nobody submits as every user does: through the setgid spoolctl
setgid_spoolctl

asnobody() {
	setpriv --reuid=nobody --regid=nogroup --clear-groups \
		"$SETGID_SPOOLCTL" -c "$CONF" "$@"
}
# wait_as_nobody SECONDS RCPT: submit --wait as nobody; sets RC, OUT
# (the id) and ERR (stderr), and MS (how long it took)
wait_as_nobody() {
	local t0
	t0=$(date +%s%N)
	RC=0
	printf 'Subject: wait\n\nbody\n' |
		asnobody submit --wait="$1" "$2" >"$T/w.out" 2>"$T/w.err" ||
		RC=$?
	MS=$(ms_since "$t0")
	OUT=$(cat "$T/w.out")
	ERR=$(cat "$T/w.err")
}
json_of() { # ID EXPR: EXPR over show ID --json
	"$SPOOLCTL" -c "$CONF" show "$1" --json | sink_tool json "$2"
}
state_of() { # ID
	"$SPOOLCTL" -c "$CONF" list --all --json | sink_tool json \
		"([m['state'] for m in d if m['id'] == '$1'] + ['gone'])[0]"
}
wait_state() { # ID STATE
	for _ in $(seq 100); do
		[ "$(state_of "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	fail "$1 is $(state_of "$1"), want $2"
}

# --- no daemon: submit --wait says so at once ---
wait_as_nobody 30 ok@example.net
[ "$RC" = 75 ] || fail "no daemon: --wait exited $RC, want 75 ($ERR)"
[ "$MS" -lt 2000 ] || fail "no daemon: --wait took $MS ms"
grep -q "not running" <<<"$ERR" || fail "no daemon: --wait said: $ERR"
queued_offline=$OUT

# --- no daemon: check as nobody is CRITICAL, status says not running ---
rc=0
asnobody check >"$T/out" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "nobody, no daemon: check exited $rc: $(cat "$T/out")"
grep -q "not running" "$T/out" || fail "nobody check: $(cat "$T/out")"
asnobody status --json >"$T/out" || fail "nobody, no daemon: status failed"
[ "$(sink_tool json 'd["daemon"]["running"], d["daemon"]["responding"]' \
	<"$T/out")" = "(False, False)" ] || fail "status: $(cat "$T/out")"

# --- a transport never judged is unknown, not up ---
cat >>"$CONF" <<EOF

[transport spare]
type = smtp
host = 127.0.0.1
port = $SINK_PORT
tls = none
EOF
sed -i 's/^route = local$/route = local, spare/' "$CONF"
start_spoold
wait_spool_empty 20 # the message queued offline leaves by local
spoolctl status --json >"$T/out" || fail "status failed"
[ "$(sink_tool json 'tuple(t["up"] for t in d["transports"])' \
	<"$T/out")" = "(True, None)" ] || fail "a transport never used: $(cat "$T/out")"
spoolctl status | grep -q "transport spare: unknown" ||
	fail "status text: $(spoolctl status)"
spoolctl check | grep -q "spare unknown" || fail "check: $(spoolctl check)"

# --- status and check for any local user, no address in them ---
asnobody status --json >"$T/out" || fail "nobody: status exited $?"
[ "$(sink_tool json 'd["daemon"]["responding"], d["queue"]["queued"]' \
	<"$T/out")" = "(True, 0)" ] || fail "nobody status: $(cat "$T/out")"
rc=0
asnobody check >"$T/out" || rc=$?
[ "$rc" = 0 ] || fail "nobody: check exited $rc: $(cat "$T/out")"

# --- submit --wait as nobody: delivered, deferred, failed, held ---
wait_as_nobody 20 ok@example.net
[ "$RC" = 0 ] || fail "delivered: --wait exited $RC ($ERR)"
wait_as_nobody 3 later@example.net
[ "$RC" = 75 ] || fail "deferred: --wait exited $RC, want 75 ($ERR)"
grep -q "deferred.*451" <<<"$ERR" || fail "deferred: --wait said: $ERR"
deferred=$OUT
[ "$(json_of "$deferred" 'd["attempts"]')" = 1 ] ||
	fail "--wait cost a retry step: $(spoolctl show "$deferred")"
wait_as_nobody 20 bounce@example.net
[ "$RC" = 69 ] || fail "failed: --wait exited $RC, want 69 ($ERR)"
grep -q "550" <<<"$ERR" || fail "failed: --wait said: $ERR"

# held while its submitter waits
printf 'Subject: held\n\nbody\n' | asnobody submit --wait=5 later@example.net \
	>"$T/h.out" 2>"$T/h.err" &
held_pid=$!
for _ in $(seq 50); do
	[ -s "$T/h.out" ] && break
	sleep 0.1
done
held=$(cat "$T/h.out")
wait_state "$held" deferred
spoolctl hold "$held" >/dev/null || fail "hold failed"
rc=0
wait "$held_pid" || rc=$?
[ "$rc" = 75 ] || fail "held: --wait exited $rc, want 75 ($(cat "$T/h.err"))"
grep -q "held" "$T/h.err" || fail "held: --wait said: $(cat "$T/h.err")"

# another user's message is not its to ask about
rc=0
setpriv --reuid=daemon --regid=daemon --clear-groups /usr/bin/python3 - \
	"$SPOOL/ctl.sock" "$deferred" >"$T/out" <<'EOF' || rc=$?
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"WAIT %s 0\n" % sys.argv[2].encode())
print(s.recv(4096).decode().strip())
EOF
grep -q "^ERR permission denied" "$T/out" ||
	fail "another user's WAIT: $(cat "$T/out")"

# --- a flush makes a deferred message due without a retry step ---
tries=$(json_of "$deferred" 'len(d["history"])')
next=$(json_of "$deferred" 'd["next_attempt"]')
spoolctl flush "$deferred" >/dev/null || fail "flush failed"
for _ in $(seq 100); do
	[ "$(json_of "$deferred" 'len(d["history"])')" -gt "$tries" ] &&
		[ "$(state_of "$deferred")" = deferred ] && break
	sleep 0.1
done
[ "$(json_of "$deferred" 'len(d["history"])')" -gt "$tries" ] ||
	fail "flush did not retry $deferred"
[ "$(json_of "$deferred" 'd["attempts"]')" = 1 ] ||
	fail "flush took a retry step: $(spoolctl show "$deferred")"
[ "$(json_of "$deferred" 'd["next_attempt"]')" \> "$(date -u -d '+50 min' \
	+%Y-%m-%dT%H:%M:%S)" ] ||
	fail "flushed: next attempt $(json_of "$deferred" 'd["next_attempt"]')" \
		"is not a first step (1h) away; before the flush: $next"

# --- "--wait N" with a space waits N; a bare number is no recipient ---
before=$(sink_count)
printf 'Subject: space\n\nbody\n' |
	spoolctl submit --wait 30 space@example.net >/dev/null ||
	fail "--wait 30 ADDR exited $?"
[ "$(sink_count)" -gt "$before" ] || fail "--wait 30: not delivered on return"
sink_tool envelopes "$SINK_DIR" | grep -q '30@' &&
	fail "--wait 30 made 30 a recipient"
rc=0
printf 'Subject: x\n\nbody\n' |
	spoolctl submit --wait x x@example.net >/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 64 ] || fail "--wait x ADDR exited $rc, want 64"
printf 'Subject: bare\n\nbody\n' |
	spoolctl submit --wait bare@example.net >/dev/null ||
	fail "bare --wait ADDR exited $?"

# --- a stopped daemon holds the lock but does not answer ---
pid=$SPOOLD_PID
kill -STOP "$pid"
rc=0
spoolctl status --json >"$T/out" || rc=$?
[ "$rc" = 0 ] || fail "stopped daemon: status exited $rc"
[ "$(sink_tool json \
	'd["daemon"]["running"], d["daemon"]["responding"], d["daemon"]["pid"]' \
	<"$T/out")" = "(True, False, $pid)" ] ||
	fail "stopped daemon: status --json: $(cat "$T/out")"
spoolctl status | grep -q "running, not responding (pid $pid)" ||
	{ kill -CONT "$pid"; fail "stopped daemon: status text"; }
rc=0
spoolctl check >"$T/out" || rc=$?
kill -CONT "$pid"
[ "$rc" = 2 ] || fail "stopped daemon: check exited $rc: $(cat "$T/out")"
grep -q "not responding" "$T/out" || fail "stopped: check: $(cat "$T/out")"
stop_spoold

# --- a missing spool directory is an error, never an empty queue ---
sed "s|^dir = .*|dir = $T/no-such-spool|" "$CONF" >"$T/missing.conf"
for cmd in list status "status --json" "show 0000000000000000000000aa"; do
	rc=0
	# shellcheck disable=SC2086
	"$SPOOLCTL" -c "$T/missing.conf" $cmd >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" = 66 ] || fail "missing spool: $cmd exited $rc, want 66"
	[ "$(wc -l <"$T/err")" = 1 ] && grep -q "no-such-spool" "$T/err" ||
		fail "missing spool: $cmd said: $(cat "$T/err")"
done
rc=0
SPOOLD_CONFIG=$T/missing.conf "$(dirname "$SPOOLCTL")/mailq" >/dev/null \
	2>&1 || rc=$?
[ "$rc" = 66 ] || fail "missing spool: mailq exited $rc, want 66"
rc=0
"$SPOOLCTL" -c "$T/missing.conf" check >"$T/out" 2>&1 || rc=$?
[ "$rc" = 3 ] || fail "missing spool: check exited $rc, want 3"
[ -e "$T/no-such-spool" ] && fail "an inspection made the spool"

# --- --version and --help everywhere ---
ver=$(sed -n 's/^project(spoold VERSION \([0-9.]*\).*/\1/p' \
	"$SPOOL_SRC/CMakeLists.txt")
for prog in "$SPOOLD" "$SPOOLCTL" "$SENDMAIL" "$(dirname "$SPOOLCTL")/mailq"; do
	out=$("$prog" --version) || fail "$prog --version exited $?"
	[ "$out" = "$(basename "$prog") $ver" ] ||
		fail "$prog --version printed '$out'"
	out=$("$prog" --help 2>"$T/err") || fail "$prog --help exited $?"
	grep -q "^usage:" <<<"$out" && [ ! -s "$T/err" ] ||
		fail "$prog --help: $out $(cat "$T/err")"
done
cmds=$("$SPOOLCTL" --help | sed -n 's/^ *\([a-z]\+\)\( .*\)\?$/\1/p' |
	grep -v -e '^usage$' -e '^spoolctl$' | sort -u)
[ "$(wc -w <<<"$cmds")" -ge 12 ] || fail "spoolctl --help lists: $cmds"
for c in $cmds; do
	out=$("$SPOOLCTL" -c "$CONF" "$c" --help 2>"$T/err") ||
		fail "spoolctl $c --help exited $?: $(cat "$T/err")"
	grep -q "usage: .*$c" <<<"$out" && [ ! -s "$T/err" ] ||
		fail "spoolctl $c --help printed: $out $(cat "$T/err")"
done
rc=0
spoolctl list -c "$CONF" >/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 64 ] && grep -q -- "-c goes before the command" "$T/err" ||
	fail "list -c FILE: exit $rc, $(cat "$T/err")"
log "caller truth: ok"

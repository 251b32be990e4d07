# shellcheck shell=bash
# lib.sh - shared harness for the end-to-end tests, sourced by each t_*.sh.
#
# Gives every test its own directory, its own loopback ports and its own
# servers (capture sink, Postfix's smtp-sink, a private Postfix instance,
# spoold), and tears all of them down on exit, whatever happened. A test
# that fails keeps its directory (as does KEEP=1) and prints its path and
# the tail of every log. The cleanup checks that no process started by the
# test is left running and fails the test if one is.
#
# Inputs (ctest sets them): SPOOLD, SPOOLCTL, SENDMAIL, SPOOL_SRC.
# Exit status 77 means "skipped" (e.g. Postfix cannot be run here).

set -euo pipefail

T_NAME=$(basename "$0" .sh)
T_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SPOOL_SRC=${SPOOL_SRC:-$(cd "$T_LIB_DIR/../.." && pwd)}
SINK_PY="$T_LIB_DIR/capture_sink.py"
SINK_TOOL="$T_LIB_DIR/sink_tool.py"

# T_NEEDS_SPOOL=0 before sourcing: the harness self-test runs without them.
for _v in SPOOLD SPOOLCTL SENDMAIL; do
	[ "${T_NEEDS_SPOOL:-1}" = 1 ] || break
	if [ -z "${!_v:-}" ] || [ ! -x "${!_v}" ]; then
		echo "$T_NAME: \$$_v='${!_v:-}' is not an executable:" \
			"build the spoold and spoolctl targets first" >&2
		exit 1
	fi
done
unset _v

# Postfix daemons run as the postfix user and spoold, started as root,
# as SPOOLD_USER: both must be able to enter the test directory, hence
# the mode.
T=$(mktemp -d "${TMPDIR:-/tmp}/spool-$T_NAME.XXXXXX")
chmod 755 "$T"
# spoold started by root becomes this user; spoolctl installed setgid to
# this group is how other users submit (dist/spoold-setup.in makes both)
SPOOLD_USER=spoold
SUBMIT_GROUP=spoold-submit
SUBMIT_GID=$(getent group "$SUBMIT_GROUP" | cut -d: -f3 || true)
if [ "${T_NEEDS_SPOOL:-1}" = 1 ] && [ "$(id -u)" = 0 ] &&
	! id -nG "$SPOOLD_USER" 2>/dev/null | grep -qw "$SUBMIT_GROUP"; then
	echo "$T_NAME: no user $SPOOLD_USER in group $SUBMIT_GROUP:" \
		"run tools/install-deps" >&2
	exit 1
fi
T_PORTS_DIR="${TMPDIR:-/tmp}/spool-itest-ports"
T_PIDS=()      # "name pid" of every background server
# reserved ports, one a line (a file: free_port runs in a subshell)
T_PORTS_FILE="$T/ports.reserved"
T_POSTFIX=()   # config dirs of started Postfix instances
# functions run first by the cleanup (e.g. lib_mailu.sh's server stops)
T_CLEANUP_HOOKS=()
T_FAILED=0
T_START=$(date +%s%N)
SPOOLD_PID=""
SPOOLD_RUNS=0
SPOOLD_ENV=() # start_spoold -: spoold's whole environment, NAME=VALUE

# ms_since NANOS: milliseconds elapsed since a $(date +%s%N) stamp.
ms_since() {
	echo $((($(date +%s%N) - $1) / 1000000))
}

log() {
	printf '[%s +%sms] %s\n' "$T_NAME" "$(ms_since "$T_START")" "$*" >&2
}

# Prints the last lines of every log the test wrote.
dump_logs() {
	local f
	for f in "$T"/*.log "$T"/pf*/maillog; do
		[ -s "$f" ] || continue
		echo "----- ${f#"$T"/} (last 25 lines) -----" >&2
		tail -n 25 "$f" | cut -c1-400 >&2
	done
	echo "----- end of logs -----" >&2
}

fail() {
	echo "FAIL [$T_NAME]: $*" >&2
	if [ "$T_FAILED" = 0 ]; then
		T_FAILED=1
		dump_logs
	fi
	exit 1
}

skip() {
	echo "SKIP [$T_NAME]: $*" >&2
	exit 77
}

# 1 while pid is a live process (a zombie counts as gone).
pid_alive() {
	local st
	[ -r "/proc/$1/stat" ] || return 1
	st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) ||
		return 1
	[ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# wait_gone PID SECONDS: 0 once pid has exited, 1 on timeout.
wait_gone() {
	local pid=$1 deadline
	deadline=$(($(date +%s%N) + $2 * 1000000000))
	while pid_alive "$pid"; do
		[ "$(date +%s%N)" -lt "$deadline" ] || return 1
		sleep 0.05
	done
	return 0
}

# Processes other than this shell whose command line or working directory
# lies in the test directory: whatever the test started and left behind.
leftover_pids() {
	local p cwd self=$$
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[ "$p" = "$self" ] && continue
		[ "$p" = "$BASHPID" ] && continue
		pid_alive "$p" || continue
		cwd=$(readlink "/proc/$p/cwd" 2>/dev/null) || continue
		if [ "$cwd" = "$T" ] || [[ "$cwd" == "$T/"* ]] ||
			[[ "$(readlink "/proc/$p/fd/1" 2>/dev/null)" == "$T/"* ]] ||
			[[ "$(readlink "/proc/$p/fd/2" 2>/dev/null)" == "$T/"* ]] ||
			tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null |
			grep -qF -- "$T/"; then
			# our own subshells inherit the test's cwd; skip them
			[ "$(readlink "/proc/$p/exe" 2>/dev/null)" = \
				"$(readlink /proc/$$/exe)" ] && continue
			echo "$p"
		fi
	done
}

t_cleanup() {
	local rc=$? entry pid dir left
	set +e
	trap - ERR
	if [ -n "$SPOOLD_PID" ] && pid_alive "$SPOOLD_PID"; then
		kill -TERM "$SPOOLD_PID" 2>/dev/null
		wait_gone "$SPOOLD_PID" 10 || kill -KILL "$SPOOLD_PID"
	fi
	for entry in "${T_CLEANUP_HOOKS[@]}"; do
		"$entry"
	done
	for dir in "${T_POSTFIX[@]}"; do
		postfix_stop_quiet "$dir"
	done
	for entry in "${T_PIDS[@]}"; do
		pid=${entry#* }
		pid_alive "$pid" || continue
		kill -TERM "$pid" 2>/dev/null
		wait_gone "$pid" 5 || kill -KILL "$pid" 2>/dev/null
	done
	left=$(leftover_pids)
	if [ -n "$left" ]; then
		echo "FAIL [$T_NAME]: processes left running after cleanup:" >&2
		for pid in $left; do
			echo "  $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline")" >&2
			kill -KILL "$pid" 2>/dev/null
		done
		[ "$rc" = 0 ] && rc=1
	fi
	if [ -f "$T_PORTS_FILE" ]; then
		while read -r entry; do
			rmdir "$T_PORTS_DIR/$entry" 2>/dev/null
		done <"$T_PORTS_FILE"
	fi
	if [ "$rc" != 0 ] && [ "$rc" != 77 ] && [ "$T_FAILED" = 0 ]; then
		T_FAILED=1
		echo "FAIL [$T_NAME]: exit status $rc" >&2
		dump_logs
	fi
	if [ "$rc" = 0 ] || [ "$rc" = 77 ]; then
		if [ "${KEEP:-0}" = 1 ]; then
			echo "[$T_NAME] kept test directory $T" >&2
		else
			rm -rf "$T"
		fi
	else
		echo "[$T_NAME] test directory kept: $T" >&2
	fi
	exit "$rc"
}
trap t_cleanup EXIT
trap 'echo "[$T_NAME] command failed (line $LINENO): $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

# free_port: a port on 127.0.0.1 nobody listens on, reserved for this test.
# Taken below the kernel's ephemeral range so outgoing connections cannot
# grab it; the reservation directory keeps parallel tests apart.
free_port() {
	local port
	mkdir -p "$T_PORTS_DIR"
	# a reservation older than an hour belongs to a test that was killed
	find "$T_PORTS_DIR" -mindepth 1 -maxdepth 1 -mmin +60 \
		-exec rmdir {} + 2>/dev/null || true
	for _ in $(seq 1 200); do
		port=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
		mkdir "$T_PORTS_DIR/$port" 2>/dev/null || continue
		if python3 -c '
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
' "$port"; then
			echo "$port" >>"$T_PORTS_FILE"
			echo "$port"
			return 0
		fi
		rmdir "$T_PORTS_DIR/$port"
	done
	fail "no free port found"
}

# wait_port PORT SECONDS: until something accepts connections there.
wait_port() {
	python3 - "$1" "$2" <<'EOF' || return 1
import socket, sys, time
port, limit = int(sys.argv[1]), float(sys.argv[2])
end = time.monotonic() + limit
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        if time.monotonic() > end:
            sys.exit(1)
        time.sleep(0.05)
EOF
}

# port_closed PORT: 0 if nothing listens on PORT.
port_closed() {
	! python3 -c '
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
' "$1" 2>/dev/null
}

# wait_log_line FILE PATTERN SECONDS PID: waits for an extended regexp in
# FILE; fails early if PID dies.
wait_log_line() {
	local file=$1 pat=$2 secs=$3 pid=${4:-} deadline
	deadline=$(($(date +%s%N) + secs * 1000000000))
	until grep -qE -- "$pat" "$file" 2>/dev/null; do
		if [ -n "$pid" ] && ! pid_alive "$pid"; then
			return 2
		fi
		[ "$(date +%s%N)" -lt "$deadline" ] || return 1
		sleep 0.05
	done
}

# ---- capture sink ---------------------------------------------------------

# start_sink [ARGS...]: starts capture_sink.py on a fresh port; ARGS go to
# the sink (e.g. --reject-rcpt x@y=550). Sets SINK_PORT, SINK_DIR, SINK_PID.
start_sink() {
	SINK_PORT=$(free_port)
	SINK_DIR="$T/sink-$SINK_PORT"
	python3 "$SINK_PY" --port "$SINK_PORT" --dir "$SINK_DIR" "$@" \
		>"$T/sink-$SINK_PORT.log" 2>&1 &
	SINK_PID=$!
	T_PIDS+=("sink $SINK_PID")
	wait_log_line "$T/sink-$SINK_PORT.log" 'capture_sink ready' 10 \
		"$SINK_PID" || fail "capture sink did not start on $SINK_PORT"
	log "capture sink on 127.0.0.1:$SINK_PORT -> $SINK_DIR"
}

# start_fast_sink: Postfix's smtp-sink (fast, stores nothing, counts).
# Sets FAST_SINK_PORT, FAST_SINK_PID, FAST_SINK_OUT.
start_fast_sink() {
	command -v smtp-sink >/dev/null || skip "smtp-sink (postfix) missing"
	local user=()
	[ "$(id -u)" = 0 ] && user=(-u postfix)
	FAST_SINK_PORT=$(free_port)
	FAST_SINK_OUT="$T/smtp-sink-$FAST_SINK_PORT.out"
	smtp-sink "${user[@]}" -c "127.0.0.1:$FAST_SINK_PORT" 100 \
		>"$FAST_SINK_OUT" 2>"$T/smtp-sink-$FAST_SINK_PORT.log" &
	FAST_SINK_PID=$!
	T_PIDS+=("smtp-sink $FAST_SINK_PID")
	wait_port "$FAST_SINK_PORT" 10 ||
		fail "smtp-sink did not start on $FAST_SINK_PORT"
	log "smtp-sink on 127.0.0.1:$FAST_SINK_PORT"
}

# fast_sink_count: messages smtp-sink has accepted so far.
fast_sink_count() {
	local n
	n=$(tr '\r' '\n' <"$FAST_SINK_OUT" 2>/dev/null |
		sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -n 1)
	echo "${n:-0}"
}

# sink_count [DIR]: transactions captured so far.
sink_count() {
	local dir=${1:-$SINK_DIR}
	[ -d "$dir" ] || {
		echo 0
		return
	}
	find "$dir" -maxdepth 1 -name '[0-9]*.env' | wc -l
}

# wait_for_count N SECONDS [DIR]: until the sink holds at least N
# transactions; fails with the count reached otherwise.
wait_for_count() {
	local want=$1 secs=$2 dir=${3:-$SINK_DIR} deadline n
	deadline=$(($(date +%s%N) + secs * 1000000000))
	while :; do
		n=$(sink_count "$dir")
		[ "$n" -ge "$want" ] && return 0
		[ "$(date +%s%N)" -lt "$deadline" ] ||
			fail "sink has $n of $want messages after ${secs}s"
		sleep 0.1
	done
}

# sink_tool CMD ARGS...: see sink_tool.py (envelopes, bodies, Message-IDs).
sink_tool() {
	python3 "$SINK_TOOL" "$@"
}

# ---- private Postfix relay ------------------------------------------------

postfix_usable() {
	command -v postfix >/dev/null || return 1
	[ "$(id -u)" = 0 ] || return 1
	getent passwd postfix >/dev/null || return 1
	getent group postdrop >/dev/null || return 1
}

# start_postfix_relay [--reject ADDR=CODE]...: a private Postfix instance
# listening on 127.0.0.1:PF_PORT that relays everything to the capture sink
# (start_sink first). Sets PF_DIR, PF_PORT, PF_CONF.
start_postfix_relay() {
	local rejects=() r
	while [ $# -gt 0 ]; do
		case $1 in
		--reject)
			rejects+=("$2")
			shift 2
			;;
		*) fail "start_postfix_relay: unknown option $1" ;;
		esac
	done
	postfix_usable || skip "Postfix needs root and the postfix package"
	[ -n "${SINK_PORT:-}" ] || fail "start_postfix_relay needs start_sink"
	PF_PORT=$(free_port)
	PF_DIR="$T/pf-$PF_PORT"
	PF_CONF="$PF_DIR/conf"
	mkdir -p "$PF_CONF" "$PF_DIR/queue" "$PF_DIR/data"
	# master takes its lock in data_directory as the mail owner
	chown postfix "$PF_DIR/data"
	chmod 700 "$PF_DIR/data"
	: >"$PF_CONF/rcpt_access"
	for r in "${rejects[@]}"; do
		printf '%s %s 5.1.1 rejected by test policy\n' \
			"${r%=*}" "${r##*=}" >>"$PF_CONF/rcpt_access"
	done
	cat >"$PF_CONF/main.cf" <<EOF
# private test instance: loopback only, relays everything to the sink
compatibility_level = 3.6
queue_directory = $PF_DIR/queue
data_directory = $PF_DIR/data
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.spool-test.invalid
mydomain = spool-test.invalid
myorigin = \$myhostname
inet_interfaces = loopback-only
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$SINK_PORT
local_transport = error:local delivery disabled
local_header_rewrite_clients =
alias_maps =
alias_database =
smtpd_recipient_restrictions =
	check_recipient_access texthash:$PF_CONF/rcpt_access,
	permit_mynetworks, reject
maillog_file = $PF_DIR/maillog
maillog_file_prefixes = $PF_DIR
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
smtp_connect_timeout = 5s
biff = no
EOF
	cat >"$PF_CONF/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup     unix  n - n 60 1 pickup
cleanup    unix  n - n -  0 cleanup
qmgr       unix  n - n 300 1 qmgr
rewrite    unix  - - n -  - trivial-rewrite
bounce     unix  - - n -  0 bounce
defer      unix  - - n -  0 bounce
trace      unix  - - n -  0 bounce
verify     unix  - - n -  1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -  - proxymap
proxywrite unix  - - n -  1 proxymap
smtp       unix  - - n -  - smtp
relay      unix  - - n -  - smtp
showq      unix  n - n -  - showq
error      unix  - - n -  - error
retry      unix  - - n -  - error
discard    unix  - - n -  - discard
anvil      unix  - - n -  1 anvil
scache     unix  - - n -  1 scache
postlog    unix-dgram n - n - 1 postlogd
EOF
	# postfix check creates the queue folders with the right owners
	if ! postfix -c "$PF_CONF" check >"$T/postfix-check.log" 2>&1; then
		fail "postfix check failed (see maillog)"
	fi
	T_POSTFIX+=("$PF_CONF")
	start_postfix
}

postfix_master_pid() {
	local f="$PF_DIR/queue/pid/master.pid" pid
	[ -r "$f" ] || return 1
	pid=$(tr -d ' \n' <"$f")
	[ -n "$pid" ] && pid_alive "$pid" && echo "$pid"
}

# start_postfix: (re)starts the instance made by start_postfix_relay.
start_postfix() {
	postfix -c "$PF_CONF" start >>"$T/postfix-ctl.log" 2>&1 ||
		fail "postfix -c $PF_CONF start failed"
	wait_port "$PF_PORT" 15 || fail "Postfix not listening on $PF_PORT"
	log "Postfix on 127.0.0.1:$PF_PORT (master $(postfix_master_pid))"
}

postfix_stop_quiet() {
	local conf=$1 qdir pid
	qdir=$(postconf -c "$conf" -h queue_directory 2>/dev/null) || return 0
	pid=$(tr -d ' \n' <"$qdir/pid/master.pid" 2>/dev/null) || pid=""
	[ -n "$pid" ] && pid_alive "$pid" || return 0
	postfix -c "$conf" stop >>"$T/postfix-ctl.log" 2>&1
	wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null
}

# stop_postfix: stops the instance and checks the master and its port are
# gone, so the next connection is refused.
stop_postfix() {
	local pid
	pid=$(postfix_master_pid) || fail "stop_postfix: Postfix is not running"
	postfix -c "$PF_CONF" stop >>"$T/postfix-ctl.log" 2>&1 ||
		fail "postfix stop failed"
	wait_gone "$pid" 15 || fail "Postfix master $pid still running"
	port_closed "$PF_PORT" || fail "port $PF_PORT still open after stop"
	log "Postfix stopped"
}

# ---- the service manager's end of NOTIFY_SOCKET ---------------------------

# start_notify SOCKET LOG: binds the datagram socket spoold's sd_notify
# writes to and appends each message to LOG as "SECONDS MESSAGE" (a
# monotonic clock; newlines inside become spaces); the first line is
# "0 listening".
start_notify() {
	python3 - "$1" "$2" >"$T/notify.err" 2>&1 <<'EOF' &
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
# spoold started by root sends as its own user, as systemd's socket lets
os.chmod(sys.argv[1], 0o666)
with open(sys.argv[2], "a") as out:
    print("0 listening", file=out, flush=True)
    while True:
        msg = s.recv(4096).decode()
        print("%.3f %s" % (time.monotonic(), msg.replace("\n", " ")),
              file=out, flush=True)
EOF
	T_PIDS+=("notify $!")
	wait_log_line "$2" listening 10 "$!" || fail "notify listener"
}

# ---- spoold / spoolctl ----------------------------------------------------

# write_conf PORT [RETRY] [MAX_SIZE]: writes $T/spoold.conf relaying to
# 127.0.0.1:PORT and sets CONF and SPOOL.
write_conf() {
	local port=$1 retry=${2:-1s} max_size=${3:-1M}
	SPOOL="$T/spool"
	CONF="$T/spoold.conf"
	cat >"$CONF" <<EOF
[spool]
dir = $SPOOL
max_size = $max_size

[delivery]
route = local
concurrency = 4
retry = $retry
max_age = 1h

[transport local]
type = smtp
host = 127.0.0.1
port = $port
tls = none
timeout = 5s
connect_timeout = 2s
EOF
	chmod 644 "$CONF" # spoold reads it again as SPOOLD_USER
}

# write_bench_conf PORT: writes $T/spoold.conf as bench/bench.py's
# Spoold.set_relay does (one plain SMTP transport to 127.0.0.1:PORT) and
# sets CONF and SPOOL.
write_bench_conf() {
	SPOOL="$T/spool"
	CONF="$T/spoold.conf"
	cat >"$CONF" <<EOF
[spool]
dir = $SPOOL

[delivery]
route = sink
retry = 1h
max_age = 1d

[transport sink]
type = smtp
host = 127.0.0.1
port = $1
tls = none
timeout = 10s
connect_timeout = 2s
EOF
	chmod 644 "$CONF"
}

spoolctl() {
	"$SPOOLCTL" -c "$CONF" "$@"
}

# spoold_owns PATH...: gives files spoold must read or write (a token, a
# Maildir) to the user spoold runs as once root started it.
spoold_owns() {
	[ "$(id -u)" = 0 ] || return 0
	chown -R "$SPOOLD_USER:" "$@"
}

# setgid_spoolctl: copies of spoolctl, sendmail and mailq as spoold-setup
# installs them (setgid SUBMIT_GROUP) in $T/bin, which must not be on a
# nosuid file system. Sets SETGID_SPOOLCTL and SETGID_SENDMAIL.
setgid_spoolctl() {
	mkdir -p "$T/bin"
	# SPOOLCTL_REAL: the binary when SPOOLCTL is a wrapper (valgrind's):
	# the kernel ignores a setgid bit on a script
	cp "${SPOOLCTL_REAL:-$SPOOLCTL}" "$T/bin/spoolctl"
	chown "root:$SUBMIT_GROUP" "$T/bin/spoolctl"
	chmod 2755 "$T/bin/spoolctl"
	ln -sf spoolctl "$T/bin/sendmail"
	ln -sf spoolctl "$T/bin/mailq"
	SETGID_SPOOLCTL="$T/bin/spoolctl"
	SETGID_SENDMAIL="$T/bin/sendmail"
}

# start_spoold [CONF]: runs spoold in the foreground in the background,
# its stderr in $T/spoold.N.log (N counts restarts); waits for "ready".
# CONF "-" runs it as a container would: no -c, and an environment of
# PATH, the sanitizers' options and the SPOOLD_ENV array alone.
start_spoold() {
	local conf=${1:-$CONF} rc=0
	local args=("$SPOOLD" -c "$conf" -f)
	if [ "$conf" = - ]; then
		local envs=(PATH="$PATH")
		[ -z "${ASAN_OPTIONS:-}" ] || envs+=(ASAN_OPTIONS="$ASAN_OPTIONS")
		[ -z "${UBSAN_OPTIONS:-}" ] || envs+=(UBSAN_OPTIONS="$UBSAN_OPTIONS")
		args=(env -i "${envs[@]}" "${SPOOLD_ENV[@]}" "$SPOOLD" -f)
	fi
	[ -z "$SPOOLD_PID" ] || ! pid_alive "$SPOOLD_PID" ||
		fail "start_spoold: already running ($SPOOLD_PID)"
	SPOOLD_RUNS=$((SPOOLD_RUNS + 1))
	SPOOLD_LOG="$T/spoold.$SPOOLD_RUNS.log"
	"${args[@]}" >"$SPOOLD_LOG" 2>&1 &
	SPOOLD_PID=$!
	wait_log_line "$SPOOLD_LOG" 'ready' 10 "$SPOOLD_PID" || rc=$?
	case $rc in
	0) ;;
	2) fail "spoold exited before it was ready" ;;
	*) fail "spoold not ready within 10 s" ;;
	esac
	log "spoold started (pid $SPOOLD_PID, run $SPOOLD_RUNS)"
}

# stop_spoold: SIGTERM; spoold must exit within 10 s, with status 0.
stop_spoold() {
	local rc=0 t0
	[ -n "$SPOOLD_PID" ] || fail "stop_spoold: not running"
	t0=$(date +%s%N)
	kill -TERM "$SPOOLD_PID"
	wait_gone "$SPOOLD_PID" 10 ||
		fail "spoold did not exit within 10 s of SIGTERM"
	wait "$SPOOLD_PID" || rc=$?
	log "spoold stopped in $((($(date +%s%N) - t0) / 1000000)) ms" \
		"(status $rc)"
	SPOOLD_PID=""
	[ "$rc" = 0 ] || fail "spoold exited with status $rc after SIGTERM"
}

kill9_spoold() {
	[ -n "$SPOOLD_PID" ] || fail "kill9_spoold: not running"
	kill -KILL "$SPOOLD_PID"
	wait "$SPOOLD_PID" 2>/dev/null || true
	log "spoold killed with SIGKILL"
	SPOOLD_PID=""
}

# spoold_log_count REGEXP: matching lines over every spoold run so far.
spoold_log_count() {
	cat "$T"/spoold.*.log 2>/dev/null | grep -cE -- "$1" || true
}

# spool_files [DIRS...]: number of message files in the given spool folders
# (default new and cur).
spool_files() {
	local d n=0
	[ $# -gt 0 ] || set -- new cur
	for d in "$@"; do
		[ -d "$SPOOL/$d" ] || continue
		n=$((n + $(find "$SPOOL/$d" -maxdepth 1 -type f | wc -l)))
	done
	echo "$n"
}

# wait_spool_empty SECONDS: until new/ and cur/ hold no message file.
wait_spool_empty() {
	local deadline=$(($(date +%s) + $1))
	until [ "$(spool_files new cur)" = 0 ]; do
		[ "$(date +%s)" -lt "$deadline" ] ||
			fail "spool still holds $(spool_files new cur) message(s)" \
				"after $1 s"
		sleep 0.2
	done
}

# make_msg FILE SUBJECT [BODY_BYTES]: writes a CRLF message with a unique
# Message-ID (printed) and a body of about BODY_BYTES bytes.
make_msg() {
	python3 - "$@" <<'EOF'
import sys, uuid
path, subject = sys.argv[1], sys.argv[2]
size = int(sys.argv[3]) if len(sys.argv) > 3 else 200
mid = "<%s@spool-test.invalid>" % uuid.uuid4().hex
lines = ["From: Sender <sender@example.org>",
         "To: rcpt@example.net",
         "Subject: " + subject,
         "Date: Tue, 24 Nov 2026 10:00:00 +0000",
         "Message-ID: " + mid,
         "MIME-Version: 1.0",
         "Content-Type: text/plain; charset=us-ascii",
         ""]
body, n = [], 0
while n < size:
    line = "%s line %d: the quick brown fox jumps over the lazy dog" % (
        subject, len(body))
    body.append(line)
    n += len(line) + 2
with open(path, "wb") as f:
    f.write(("\r\n".join(lines + body) + "\r\n").encode())
print(mid)
EOF
}

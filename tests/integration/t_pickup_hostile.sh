#!/bin/bash
# t_pickup_hostile.sh - files that user nobody, given the submit group,
# drops into new/ of a spool whose spoold root started (it runs as user
# spoold), as hostile as a local user can make them. Throughout, a
# PING on ctl.sock is answered within 1 s (measured every 100 ms), a
# message root submits in each phase is delivered exactly once, nothing
# injected reaches the relay, spoold never dies, and no message fails
# permanently unless its own file is bad:
#   - descriptors run out (prlimit --nofile to the lowest free one) while
#     a message waits for pickup and another for delivery: both deferred,
#     never failed, and delivered once the limit is raised (checked first,
#     with the relay still down, so the second is due while it lasts);
#   - names: Maildir style (1764000000.M123456P789.host), 250 bytes, with
#     ESC and newline, and ".hidden" (ignored): the loop does not spin and
#     every valid one is delivered with "Received: from userid 65534"
#     first, a forged "from userid 0" line below it;
#   - a read lease (F_SETLEASE F_RDLCK) held by nobody: picked up at once;
#     a write lease: retried, not failed, picked up once it goes;
#   - a file nobody keeps open and rewrites after pickup: what spoold
#     keeps in cur/ is unchanged (it is spoold's own copy);
#   - a file nobody truncates and extends in a loop while spoold reads it;
#   - a FIFO, a symlink and a device node (made by root): failed/ unread;
#   - a sparse 256 MiB file: refused by its size, spoold's VmHWM stays low;
#   - 200,000 R lines: refused by the recipient cap, in one log line (and
#     submit refuses 1,001 recipients, 65);
#   - ESMTP parameters in S or R ("a@b> RET=FULL ..."), a NUL byte in the
#     message: refused into failed/, never sent.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root to act as user nobody"
# The peak-RSS bound below is about what spoold keeps, not what a
# sanitizer does: ASan holds up to 256 MB of freed memory in quarantine,
# resident, and the control-socket pinger that runs through each phase
# opens thousands of connections a second, each about 8 KiB allocated and
# freed at its close (5 s of it: +158 MB under ASan, flat in the optimised
# build). Keep the quarantine small, as the optimised build reuses what it
# frees.
if ldd "$SPOOLD" 2>/dev/null | grep 'libasan' >/dev/null; then
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=1"
fi
id nobody >/dev/null 2>&1 || skip "no user nobody"
# python3 on root's PATH may live where nobody cannot reach it
PY=$(PATH=/usr/bin:/bin command -v python3) ||
	skip "no python3 in /usr/bin or /bin for user nobody"
NOBODY_UID=$(id -u nobody)
# ids of the attack files: made now (an id's time is the message's age
# when it has no T line): P, then four hex digits
P=$(printf '%014x' "$(date +%s%6N)")aaaaaa

# the relay is down at first: the descriptor phase needs a message that
# is due while spoold has no descriptor left
SINK_PORT=$(free_port)
SINK_DIR="$T/sink"
write_conf "$SINK_PORT" 1s 10M
chmod 755 "$T"
chmod 644 "$CONF"
start_spoold
BASE_HWM=$(awk '/^VmHWM/ {print $2}' "/proc/$SPOOLD_PID/status")

# nobody with the submit group: a raw writer of new/, as a bug in the
# setgid spoolctl would make a local user (without the group, nobody
# cannot enter new/ at all; t_privileges shows it)
as_nobody() {
	runuser -u nobody -G "$SUBMIT_GROUP" -- "$@"
}

# ---- helpers run as nobody -------------------------------------------------
cat >"$T/nb.py" <<'EOF'
import fcntl, os, signal, sys, time
# a lease break is signalled with SIGIO, which would end the holder
signal.signal(signal.SIGIO, signal.SIG_IGN)
spool, cmd, name = sys.argv[1], sys.argv[2], sys.argv[3].encode(
    "utf-8", "surrogateescape")
args = sys.argv[4:]
tmp = os.path.join(spool.encode(), b"tmp", b"nb-%d" % os.getpid())
new = os.path.join(spool.encode(), b"new", name)

def make(data, mode=os.O_RDWR):
    # 0640: the daemon reads a dropped file through the submit group
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | mode, 0o640)
    if data:
        os.write(fd, data)
    return fd

def data():
    return open(args[0], "rb").read()

if cmd == "drop":            # drop NAME FILE
    os.close(make(data()))
    os.rename(tmp, new)
elif cmd == "sparse":        # sparse NAME FILE: FILE, then 256 MiB of holes
    fd = make(data())
    os.ftruncate(fd, 256 << 20)
    os.close(fd)
    os.rename(tmp, new)
elif cmd == "lease":         # lease NAME FILE rd|wr STOPFILE
    os.close(make(data()))
    fd = os.open(tmp, os.O_RDONLY)
    fcntl.fcntl(fd, fcntl.F_SETLEASE,
                fcntl.F_RDLCK if args[1] == "rd" else fcntl.F_WRLCK)
    os.rename(tmp, new)
    print("leased", flush=True)
    while not os.path.exists(args[2]):
        time.sleep(0.05)
elif cmd == "rewrite":       # rewrite NAME FILE EVILFILE: after pickup
    fd = make(data())
    os.rename(tmp, new)
    while os.path.lexists(new):
        time.sleep(0.02)
    evil = open(args[1], "rb").read()
    os.lseek(fd, 0, 0)
    os.ftruncate(fd, 0)
    os.write(fd, evil)
    print("rewritten", flush=True)
elif cmd == "truncloop":     # truncloop NAME FILE SECONDS
    body = data()
    fd = make(body)
    os.rename(tmp, new)
    end = time.time() + float(args[1])
    n = 0
    while time.time() < end:
        os.ftruncate(fd, 0)
        os.ftruncate(fd, len(body) * 2)
        os.pwrite(fd, body, 0)
        os.ftruncate(fd, 7)
        n += 1
    os.ftruncate(fd, 0)
    print("truncated %d times" % n, flush=True)
else:
    sys.exit("unknown command " + cmd)
EOF
chmod 644 "$T/nb.py"
nb() {
	as_nobody "$PY" "$T/nb.py" "$SPOOL" "$@"
}
# input FILE: stdin into $T/in/FILE, readable by nobody
mkdir -p "$T/in"
chmod 755 "$T/in"
input() {
	cat >"$T/in/$1"
	chmod 644 "$T/in/$1"
}
# spoolfile TAG [RCPT]: a valid spool file from nobody, Subject TAG
spoolfile() {
	printf 'SPOOLD 1\nS nobody@example.org\nR %s\n\n' "${2:-$1@example.net}"
	printf 'Received: from userid 0 by forged.example (spoold) id x;\r\n'
	printf '\tMon, 1 Jan 2026 00:00:00 +0000\r\n'
	printf 'From: nobody@example.org\r\nSubject: %s\r\n' "$1"
	printf 'Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n'
	printf 'Message-ID: <%s@spool-test.invalid>\r\n\r\nbody of %s\r\n' "$1" "$1"
}

# ---- PING throughout --------------------------------------------------------
# pinger_start PHASE / pinger_stop: a PING every 100 ms as root; stop
# fails the test if one went unanswered or took 1 s or more.
pinger_start() {
	PHASE=$1
	rm -f "$T/ping.stop"
	"$PY" - "$SPOOL/ctl.sock" "$T/ping.stop" >"$T/ping.$PHASE.out" <<'EOF' &
import os, socket, sys, time
path, stop = sys.argv[1], sys.argv[2]
worst, n, bad = 0.0, 0, []
while not os.path.exists(stop):
    t0 = time.monotonic()
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(path)
        s.sendall(b"PING\n")
        reply = s.recv(4096)
        s.close()
        if not reply.startswith(b"OK"):
            bad.append("reply %r" % reply[:40])
    except OSError as e:
        bad.append(str(e))
    dt = time.monotonic() - t0
    worst = max(worst, dt)
    n += 1
    if dt >= 1.0:
        bad.append("%.0f ms" % (dt * 1000))
    time.sleep(0.1)
print("pings=%d worst_ms=%.1f bad=%d %s" % (n, worst * 1000, len(bad),
                                            "; ".join(bad[:3])))
EOF
	PINGER_PID=$!
	T_PIDS+=("pinger $PINGER_PID")
}
pinger_stop() {
	touch "$T/ping.stop"
	wait "$PINGER_PID" || true
	local out
	out=$(cat "$T/ping.$PHASE.out")
	log "$PHASE: $out"
	[[ "$out" == *" bad=0 "* ]] || fail "$PHASE: PING not answered in 1 s: $out"
	pid_alive "$SPOOLD_PID" || fail "$PHASE: spoold died"
}

# root_submit TAG: a message from root, Subject TAG
ROOT_TAGS=()
root_submit() {
	printf 'Subject: root-%s\n\nfrom root\n' "$1" |
		spoolctl submit "root-$1@example.net" >/dev/null ||
		fail "root could not submit $1"
	ROOT_TAGS+=("$1")
}

# state_of ID: queued|deferred|...|failed, or "none"
state_of() {
	spoolctl list --json --all | sink_tool json \
		"([m['state'] for m in d if m['id'] == '$1'] or ['none'])[0]"
}
# failed_reason_has TEXT: some failed message's last error holds TEXT
failed_count_with() {
	spoolctl list --json --failed | sink_tool json \
		"len([m for m in d if '''$1''' in (m['last_error'] or '')])"
}
wait_failed_with() {
	local deadline=$(($(date +%s) + $2))
	until [ "$(failed_count_with "$1")" -ge "${3:-1}" ]; do
		[ "$(date +%s)" -lt "$deadline" ] ||
			fail "no failed message with \"$1\" after $2 s"
		sleep 0.2
	done
}

# ---- descriptors run out ----------------------------------------------------
root_submit emfile-due
sleep 1.5 # picked up, and deferred: the relay is down
[ -n "$(ls "$SPOOL/cur")" ] || fail "emfile-due was not picked up"
# the lowest free descriptor number: no open succeeds below the limit
low=$("$PY" -c '
import os, sys
used = {int(x) for x in os.listdir("/proc/%s/fd" % sys.argv[1])}
print(next(i for i in range(65536) if i not in used))' "$SPOOLD_PID")
# the soft limit only: raising a hard limit back needs CAP_SYS_RESOURCE
# as spoold's own user: root here may lack CAP_SYS_RESOURCE, which
# another user's process would take
as_spoold() {
	runuser -u "$SPOOLD_USER" -- "$@"
}
old_limit=$(as_spoold prlimit --pid "$SPOOLD_PID" --nofile --raw --noheadings \
	--output=SOFT,HARD | awk '{print $1 ":" $2}')
as_spoold prlimit --pid "$SPOOLD_PID" --nofile="$low:${old_limit#*:}"
log "spoold limited to $low descriptors (was $old_limit)"
root_submit emfile-new
sleep 4 # retries of the pickup and of the delivery meet EMFILE
as_spoold prlimit --pid "$SPOOLD_PID" --nofile="$old_limit"
n=$(spoold_log_count 'Too many open files')
[ "$n" -gt 0 ] || fail "spoold never met EMFILE: the phase proves nothing"
[ "$(spoold_log_count 'status=failed')" = 0 ] ||
	fail "EMFILE failed a message: $(grep -h 'status=failed' "$T"/spoold.*.log | head -n 2)"
[ -z "$(ls "$SPOOL/failed")" ] || fail "EMFILE left files in failed/"
log "EMFILE: $n log lines, nothing failed"
# the relay comes up: both arrive
python3 "$SINK_PY" --port "$SINK_PORT" --dir "$SINK_DIR" \
	--reject-rcpt defer@example.net=451 >"$T/sink.log" 2>&1 &
T_PIDS+=("sink $!")
wait_log_line "$T/sink.log" 'capture_sink ready' 10 || fail "sink did not start"
spoolctl flush >/dev/null
wait_for_count 2 30

# ---- names ------------------------------------------------------------------
pinger_start names
root_submit names
long=$(head -c 250 /dev/zero | tr '\0' 'L')
spoolfile maildir | input maildir
spoolfile longname | input longname
spoolfile oddname | input oddname
spoolfile hidden | input hidden
nb drop "1764000000.M123456P789.host" "$T/in/maildir"
nb drop "$long" "$T/in/longname"
nb drop $'odd\x1b[31m\nname' "$T/in/oddname"
nb drop ".hidden" "$T/in/hidden"
wait_for_count 6 20
sleep 1 # a spinning loop would show now
cpu=$(awk '{print $14 + $15}' "/proc/$SPOOLD_PID/stat")
sleep 2
cpu=$(($(awk '{print $14 + $15}' "/proc/$SPOOLD_PID/stat") - cpu))
[ "$cpu" -lt 50 ] || fail "spoold used $cpu ticks of CPU in 2 s idle: spinning"
[ -e "$SPOOL/new/.hidden" ] || fail ".hidden was taken; names with . are not"
rm "$SPOOL/new/.hidden"
pinger_stop
for tag in maildir longname oddname; do
	f=$(grep -l "^Subject: $tag" "$SINK_DIR"/*.eml) ||
		fail "$tag was not delivered"
	head -n 1 "$f" | grep -qE "^Received: from userid $NOBODY_UID by \S+ \(spoold\) id [0-9a-f]{24};" ||
		fail "$tag: first line $(head -n 1 "$f")"
	sed -n 3p "$f" | grep -q '^Received: from userid 0 by forged' ||
		fail "$tag: the forged line is not second"
done
log "names: Maildir-style, 250 bytes and odd bytes delivered with" \
	"Received from userid $NOBODY_UID; .hidden left alone; CPU $cpu ticks"

# ---- leases -----------------------------------------------------------------
pinger_start leases
n0=$(sink_count)
root_submit leases
spoolfile rdlease | input rdlease
spoolfile wrlease | input wrlease
rm -f "$T/lease.stop"
nb lease ${P}1111 "$T/in/rdlease" rd "$T/lease.stop" \
	>"$T/rdlease.out" &
T_PIDS+=("rdlease $!")
nb lease ${P}2222 "$T/in/wrlease" wr "$T/lease.stop" \
	>"$T/wrlease.out" &
wr_pid=$!
T_PIDS+=("wrlease $wr_pid")
wait_log_line "$T/wrlease.out" leased 10 || fail "no write lease taken"
wait_for_count $((n0 + 2)) 10 # root's message and the read-leased one
grep -q '^Subject: rdlease' "$SINK_DIR"/*.eml ||
	fail "the read-leased file was not delivered at once"
sleep 2
[ -e "$SPOOL/new/${P}2222" ] ||
	fail "the write-leased file left new/ while leased"
[ "$(state_of ${P}2222)" != failed ] ||
	fail "a write lease failed the message"
touch "$T/lease.stop"
wait "$wr_pid" || true
wait_for_count $((n0 + 3)) 15
pinger_stop
log "leases: read lease delivered at once, write lease retried then delivered"

# ---- a file rewritten after pickup, and one truncated in a loop -------------
pinger_start rewrite
root_submit rewrite
spoolfile rewrite defer@example.net | input rewrite
printf 'SPOOLD 1\nS evil@example.org\nR evil@example.net\n\nSubject: EVIL\r\n\r\nEVIL\r\n' |
	input evil
big=$(head -c 300000 /dev/zero | tr '\0' 'b' | fold -w 70)
{ spoolfile truncloop; echo "$big"; } | input truncloop
# the relay defers defer@: the copy stays in cur/ to be looked at
nb rewrite ${P}3333 "$T/in/rewrite" "$T/in/evil" \
	>"$T/rewrite.out" &
rw_pid=$!
T_PIDS+=("rewrite $rw_pid")
nb truncloop ${P}4444 "$T/in/truncloop" 4 >"$T/trunc.out" &
tr_pid=$!
T_PIDS+=("truncloop $tr_pid")
wait "$tr_pid" || fail "the truncation loop failed"
log "truncation: $(cat "$T/trunc.out")"
wait_log_line "$T/rewrite.out" rewritten 20 || fail "nobody never rewrote"
sleep 1
pinger_stop
f="$SPOOL/cur/${P}3333"
[ -f "$f" ] || f="$SPOOL/new/${P}3333"
grep -q 'body of rewrite' "$f" && ! grep -q EVIL "$f" ||
	fail "the rewrite reached the queued file: $(head -c 200 "$f")"
[ "$(stat -c %U "$f")" = "$SPOOLD_USER" ] || fail "cur/ holds nobody's own file"
! grep -rq EVIL "$SINK_DIR" || fail "the rewritten content was delivered"
log "rewrite after pickup: cur/ holds spoold's unchanged copy"

# ---- files that are not files, sizes and counts beyond the bounds ------------
pinger_start refused
root_submit refused
as_nobody mkfifo "$SPOOL/new/${P}5555"
as_nobody ln -s /etc/passwd "$SPOOL/new/${P}6666"
mknod "$SPOOL/new/${P}7777" c 1 3
spoolfile sparse | input sparse
nb sparse ${P}8888 "$T/in/sparse"
"$PY" -c '
import sys
sys.stdout.write("SPOOLD 1\nS nobody@example.org\n")
for i in range(200000):
    sys.stdout.write("R r%d@example.net\n" % i)
sys.stdout.write("\nSubject: many\r\n\r\nmany\r\n")' | input many
nb drop ${P}9999 "$T/in/many"
printf 'SPOOLD 1\nS attacker@vm> RET=FULL ENVID=X AUTH=<ceo@example.org>\nR inject1@example.net\n\nSubject: inject1\r\n\r\nx\r\n' |
	input inject1
printf 'SPOOLD 1\nS nobody@example.org\nR inject2@example.net> NOTIFY=NEVER ORCPT=rfc822;x@y\n\nSubject: inject2\r\n\r\nx\r\n' |
	input inject2
printf 'SPOOLD 1\nS nobody@example.org\nR nul@example.net\n\nSubject: nul\r\n\r\na\0b\r\n' |
	input nul
nb drop ${P}aaaa "$T/in/inject1"
nb drop ${P}bbbb "$T/in/inject2"
nb drop ${P}cccc "$T/in/nul"
# submit holds to the same cap: 1,001 recipients are refused (65)
rc=0
printf 'Subject: cap\n\nx\n' | spoolctl submit $(seq -f 'c%g@example.net' 1 1001) \
	>/dev/null 2>"$T/cap.err" || rc=$?
[ "$rc" = 65 ] && grep -q 'at most 1000' "$T/cap.err" ||
	fail "submit of 1,001 recipients: status $rc, $(cat "$T/cap.err")"
wait_failed_with "not a regular file" 20 3
wait_failed_with "over max_size" 20
wait_failed_with "more than 1000 recipients" 20
wait_failed_with "sender: bad address" 20
wait_failed_with "recipient 1: bad address" 20
wait_failed_with "NUL byte in the message" 20
pinger_stop
n=$(spoold_log_count "r[0-9]+@example.net|${P}9999")
[ "$n" -le 2 ] || fail "200,000 R lines gave $n log lines"
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$SPOOLD_PID/status")
log "VmHWM ${BASE_HWM} kB at start, ${hwm} kB now"
[ "$hwm" -lt $((BASE_HWM + 65536)) ] ||
	fail "spoold's peak RSS grew by $((hwm - BASE_HWM)) kB"
[ -e /etc/passwd ] && [ -c "$SPOOL/failed/${P}7777" ] ||
	fail "the device node did not go to failed/"
log "FIFO, symlink, device, sparse 256 MiB, 200,000 R lines, ESMTP" \
	"parameters and a NUL byte refused into failed/"

# ---- what reached the relay -------------------------------------------------
# deferred for ever; the delete waits while an attempt is in flight
for _ in $(seq 1 50); do
	spoolctl delete ${P}3333 >/dev/null 2>&1 && break
	sleep 0.2
done
wait_spool_empty 30
for tag in "${ROOT_TAGS[@]}"; do
	n=$(grep -l "^Subject: root-$tag"$'\r' "$SINK_DIR"/*.eml | wc -l)
	[ "$n" = 1 ] || fail "root's $tag delivered $n times, want 1"
	f=$(grep -l "^Subject: root-$tag"$'\r' "$SINK_DIR"/*.eml)
	head -n 1 "$f" | grep -q '^Received: from userid 0 by' ||
		fail "root's $tag has no Received from userid 0 first"
done
bad=$(grep -lE 'RET=|NOTIFY=|ORCPT|attacker|EVIL|^Subject: (many|nul|sparse)' \
	"$SINK_DIR"/*.env "$SINK_DIR"/*.eml || true)
[ -z "$bad" ] || fail "injected mail reached the relay: $bad"
for id in $(spoolctl list --json --failed | sink_tool json "[m['id'] for m in d]" |
	tr -d '[]",'); do
	case $id in "$P"*) ;;
	*) fail "$id failed, but no attack file was its" ;;
	esac
done
log "root's ${#ROOT_TAGS[@]} messages delivered once each; nothing injected sent"
stop_spoold
log "ok"

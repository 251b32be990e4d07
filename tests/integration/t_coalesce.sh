#!/bin/bash
# t_coalesce.sh - coalescing by key and priority:
#  1. with the relay down, repeats of one key collapse into one message
#     that counts them (exit 10 for each merged submit), and two keys do
#     not mix;
#  2. with the relay up and --every 15s, the first goes at once and the
#     rest of the window arrive as one digest with the count and the last
#     body;
#  3. the key's state survives kill -9 and a restart: no second "first"
#     message, and the digest still counts every repeat;
#  4. sendmail -t with X-Spoold-Key/X-Spoold-Every headers; a user
#     submitting through the setgid spoolctl gets the same exit codes;
#  5. a hostile key is refused by submit (65) and, in a file dropped into
#     new/, at pickup (failed/);
#  6. an urgent message submitted behind a backlog of 200 arrives first.
. "$(dirname "$0")/lib.sh"

PORT=$(free_port)
SINK_DIR="$T/sink"

sink_up() {
	python3 "$SINK_PY" --port "$PORT" --dir "$SINK_DIR" \
		>>"$T/sink.log" 2>&1 &
	SINK_PID=$!
	T_PIDS+=("sink $SINK_PID")
	wait_port "$PORT" 10 || fail "sink did not start on $PORT"
	log "sink up on $PORT"
}

sink_down() {
	local e keep=()
	kill "$SINK_PID"
	wait "$SINK_PID" 2>/dev/null || true
	# off the cleanup's list: its pid may be another process's by then
	for e in "${T_PIDS[@]}"; do
		[ "$e" = "sink $SINK_PID" ] || keep+=("$e")
	done
	T_PIDS=("${keep[@]}")
	log "sink down"
}

# sub KEY SUBJECT [ARGS...]: submits a message of KEY; prints the exit code.
sub() {
	local key=$1 subj=$2 rc=0
	shift 2
	# printf, not make_msg: a python start per submit is slow on a
	# busy machine, and the windows below are short
	printf 'From: alarm@example.org\r\nTo: ops@example.net\r\nSubject: %s\r\n\r\n%s line 0: body\r\n' \
		"$subj" "$subj" >"$T/m.$subj"
	spoolctl submit --key "$key" "$@" -f alarm@example.org \
		ops@example.net <"$T/m.$subj" >/dev/null 2>"$T/sub.err" || rc=$?
	echo "$rc"
}

# list_json EXPR: evaluates EXPR over list --json.
list_json() {
	spoolctl list --json | sink_tool json "$1"
}

# subjects: the Subject of every captured transaction, unfolded, in order
# (one python for all: a process per message is slow on a busy machine).
subjects() {
	python3 - "$SINK_DIR" <<'EOF'
import os, re, sys
d = sys.argv[1]
names = {int(f[:-4]): f for f in os.listdir(d) if f.endswith(".eml")}
for n in sorted(names):
    head = open(os.path.join(d, names[n]), "rb").read().split(b"\r\n\r\n")[0]
    head = re.sub(rb"\r\n(?=[ \t])", b"", head)
    subj = [l for l in head.split(b"\r\n") if l.lower().startswith(b"subject:")]
    print(subj[0].decode() if subj else "")
EOF
}

write_conf "$PORT" 1h
sed -i 's/^concurrency = 4/concurrency = 1/' "$CONF"
start_spoold

# --- 1. relay down: repeats collapse, keys stay apart -----------------
[ "$(sub disk d1)" = 0 ] || fail "first of a key: want exit 0 ($(cat "$T/sub.err"))"
for i in 2 3 4 5; do
	rc=$(sub disk "d$i")
	[ "$rc" = 10 ] || fail "repeat $i of a queued key: exit $rc, want 10"
done
grep -q "stands for 5 submissions" "$T/sub.err" ||
	fail "merged submit said: $(cat "$T/sub.err")"
log "5 submitted"
[ "$(sub other o1)" = 0 ] || fail "another key was merged"
log "other submitted"
# a caller waiting on a message that a newer one of its key replaces
# follows the newer one: sent is 0, never "deleted" (69)
printf 'Subject: w1\r\n\r\nw1\r\n' >"$T/m.w1"
spoolctl submit --key waited --wait 60 ops@example.net <"$T/m.w1" \
	>/dev/null 2>"$T/w1.err" &
W1_PID=$!
for _ in $(seq 200); do
	[ "$(list_json 'len([m for m in d if m["key"] == "waited"])')" = 1 ] && break
	sleep 0.1
done
[ "$(list_json 'len([m for m in d if m["key"] == "waited"])')" = 1 ] ||
	fail "w1 was not queued: $(cat "$T/w1.err")"
[ "$(sub waited w2)" = 10 ] || fail "w2 did not replace w1"
[ "$(list_json 'len(d)')" = 3 ] || fail "want 3 queued: $(spoolctl list --json)"
[ "$(list_json '[m["repeats"] for m in d if m["key"] == "disk"][0]')" = 5 ] ||
	fail "repeat count: $(spoolctl list --json)"
# not a pipe into grep -q: under pipefail, spoolctl would fail writing
# to the grep that stopped reading
grep -q 'key disk, repeats 5' <<<"$(spoolctl list)" || fail "list: $(spoolctl list)"
[ "$(spool_files new cur)" = 3 ] || fail "replaced files left in the spool"
[ "$(spoold_log_count 'key=disk status=coalesced')" = 4 ] ||
	fail "want 4 status=coalesced log lines"
sink_up
spoolctl flush
wait_for_count 3 20
sleep 1
[ "$(sink_count)" = 3 ] || fail "want 3 messages, got $(sink_count)"
rc=0
wait "$W1_PID" || rc=$?
[ "$rc" = 0 ] || fail "submit --wait of a replaced message: exit $rc ($(cat "$T/w1.err"))"
subjects >"$T/subj1"
grep -q '^Subject: d5 (repeated 5 times between .* and .*)$' "$T/subj1" ||
	fail "digest subject: $(cat "$T/subj1")"
grep -qx 'Subject: o1' "$T/subj1" || fail "other key: $(cat "$T/subj1")"
n=$(grep -l "X-Spoold-Repeated: 5 times" "$SINK_DIR"/*.eml | wc -l)
[ "$n" = 1 ] || fail "no X-Spoold-Repeated: 5 times header"
grep -l 'X-Spoold-Repeated' "$SINK_DIR"/*.eml | xargs grep -q 'd5 line 0' ||
	fail "the digest does not carry the last body"
# root's digest says once, and truly, who submitted it
dig=$(grep -l "X-Spoold-Repeated: 5 times" "$SINK_DIR"/*.eml)
[ "$(grep -c '^Received: from userid' "$dig")" = 1 ] &&
	grep -q '^Received: from userid 0 ' "$dig" ||
	fail "the digest's Received lines: $(grep '^Received' "$dig")"
log "section 1 ok"

# --- 2. relay up, --every 15s: the first at once, then one digest -----
base=$(sink_count)
t0=$(date +%s)
[ "$(sub hb h1 --every 15s)" = 0 ] || fail "first heartbeat not exit 0"
wait_for_count $((base + 1)) 10
for i in 2 3 4; do
	rc=$(sub hb "h$i" --every 15s)
	[ "$rc" = 10 ] || fail "heartbeat $i in the window: exit $rc, want 10"
done
# the last one merged into the held digest (or, on a slow machine, found
# it being sent and started the next window): exit 10 either way
wait_for_count $((base + 2)) 20
elapsed=$(($(date +%s) - t0))
[ "$elapsed" -ge 14 ] || fail "digest after ${elapsed}s, before the 15 s window"
subjects >"$T/subj2"
grep -q '^Subject: h4 (repeated 3 times between' "$T/subj2" ||
	fail "digest: $(cat "$T/subj2")"
[ "$(grep -c '^Subject: h' "$T/subj2")" = 2 ] || fail "heartbeats: $(cat "$T/subj2")"
log "section 2 ok (digest after ${elapsed}s)"

# --- 3. kill -9 and a restart keep the key's state --------------------
base=$(sink_count)
[ "$(sub k9 k1 --every 15s)" = 0 ] || fail "first k9 not exit 0"
wait_for_count $((base + 1)) 10
t0=$(date +%s)
[ "$(sub k9 k2 --every 15s)" = 10 ] || fail "k2 not held"
[ "$(sub k9 k3 --every 15s)" = 10 ] || fail "k3 not merged"
kill9_spoold
start_spoold
[ "$(sub k9 k4 --every 15s)" = 10 ] || fail "k4 after restart: state lost"
sleep 2
[ "$(sink_count)" = $((base + 1)) ] || fail "a second first message after restart"
wait_for_count $((base + 2)) 25
subjects >"$T/subj3"
grep -q '^Subject: k4 (repeated 3 times between' "$T/subj3" ||
	fail "digest after kill -9: $(cat "$T/subj3")"
[ "$(grep -c '^Subject: k' "$T/subj3")" = 2 ] || fail "k9: $(cat "$T/subj3")"
log "section 3 ok ($(($(date +%s) - t0))s)"

# --- 4. sendmail -t headers; a user through the setgid spoolctl -------
base=$(sink_count)
hdr_msg() { # SUBJECT
	printf 'From: health@example.org\nTo: ops@example.net\nSubject: %s\nX-Spoold-Key: health-node7\nX-Spoold-Every: 1h\n\nunhealthy\n' "$1"
}
rc=0
hdr_msg s1 | "$SENDMAIL" -C "$CONF" -t -i || rc=$?
[ "$rc" = 0 ] || fail "sendmail -t first: exit $rc"
wait_for_count $((base + 1)) 10
rc=0
hdr_msg s2 | "$SENDMAIL" -C "$CONF" -t -i 2>/dev/null || rc=$?
[ "$rc" = 10 ] || fail "sendmail -t repeat: exit $rc, want 10"
[ "$(list_json '[m["key"] for m in d]')" = '["health-node7"]' ] ||
	fail "header key: $(spoolctl list --json)"
# held for the digest: deferred until the window's end, which list and
# show tell
[ "$(list_json '[m["state"] for m in d][0]')" = deferred ] ||
	fail "held state: $(spoolctl list --json)"
[ "$(list_json '[m["held_until"] is not None and m["repeats"] == 1 for m in d][0]')" = True ] ||
	fail "held_until: $(spoolctl list --json)"
grep -q 'key health-node7, repeats 1, held for digest until' \
	<<<"$(spoolctl show "$(list_json '[m["id"] for m in d][0]')")" ||
	fail "show lacks the hold: $(spoolctl show "$(list_json '[m["id"] for m in d][0]')")"
setgid_spoolctl
chmod 644 "$CONF"
usub() { # KEY SUBJECT
	make_msg "$T/u.$2" "$2" 100 >/dev/null
	chmod 644 "$T/u.$2"
	local rc=0
	runuser -u nobody -- "$SETGID_SPOOLCTL" -c "$CONF" submit --key "$1" \
		--every 1h -f alarm@example.org ops@example.net \
		<"$T/u.$2" >/dev/null 2>"$T/usub.err" || rc=$?
	echo "$rc"
}
[ "$(usub nob n1)" = 0 ] || fail "nobody first: $(cat "$T/usub.err")"
wait_for_count $((base + 2)) 10
[ "$(usub nob n2)" = 10 ] || fail "nobody repeat: $(cat "$T/usub.err")"
# keys are each submitter's own: nobody's message with root's key neither
# replaces root's held digest nor is held by root's window
[ "$(usub health-node7 n3)" = 0 ] ||
	fail "nobody with root's key: $(cat "$T/usub.err")"
wait_for_count $((base + 3)) 10
[ "$(list_json '[m["repeats"] for m in d if m["key"] == "health-node7"]')" = '[1]' ] ||
	fail "root's held message changed: $(spoolctl list --json)"
log "section 4 ok"

# --- 5. hostile keys -------------------------------------------------
rc=$(sub "$(printf 'a\001b')" x1)
[ "$rc" = 65 ] || fail "control character in --key: exit $rc"
[ "$(wc -l <"$T/sub.err")" = 1 ] || fail "not one line: $(cat "$T/sub.err")"
rc=$(sub "$(head -c 10240 /dev/zero | tr '\0' k)" x2)
[ "$rc" = 65 ] || fail "10 KB --key: exit $rc"
rc=$(sub k x3 --every 0s)
[ "$rc" = 64 ] || fail "--every 0s: exit $rc"
rc=0
printf 'From: a@example.org\nTo: ops@example.net\nSubject: x\nX-Spoold-Key: a"b\n\nx\n' |
	"$SENDMAIL" -C "$CONF" -t -i 2>/dev/null || rc=$?
[ "$rc" = 65 ] || fail "bad X-Spoold-Key: exit $rc"
nfail=$(spool_files failed)
for k in "$(printf 'a\tb')" "$(head -c 10240 /dev/zero | tr '\0' k)"; do
	f="$T/raw.$RANDOM"
	printf 'SPOOLD 1\nS a@example.org\nK %s\nR ops@example.net\n\nSubject: raw\r\n\r\nraw\r\n' "$k" >"$f"
	chgrp "$SUBMIT_GROUP" "$f"
	chmod 640 "$f"
	mv "$f" "$SPOOL/new/"
done
deadline=$(($(date +%s) + 10))
until [ "$(spool_files failed)" = $((nfail + 2)) ]; do
	[ "$(date +%s)" -lt "$deadline" ] ||
		fail "hostile raw keys not failed: $(ls -la "$SPOOL/new" "$SPOOL/failed")"
	sleep 0.2
done
[ "$(spoold_log_count 'status=failed reply="refused at pickup: spool file line 3: key')" = 2 ] ||
	fail "pickup refusal not logged"
log "section 5 ok"

# --- 6. urgent goes before a backlog -----------------------------------
sink_down
base=$(sink_count)
# 200 files dropped into new/ at once (a submit each would take long on a
# busy machine), then one urgent message through spoolctl
python3 - "$SPOOL" <<'EOF'
import os, sys
spool = sys.argv[1]
for i in range(200):
    name = "backlog.%03d" % i
    with open(os.path.join(spool, "tmp", name), "w") as f:
        f.write("SPOOLD 1\nS alarm@example.org\nR ops@example.net\n\n"
                "Subject: backlog %d\r\n\r\nb\r\n" % i)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(os.path.join(spool, "tmp", name), 0o640)
    os.rename(os.path.join(spool, "tmp", name), os.path.join(spool, "new", name))
EOF
deadline=$(($(date +%s) + 30))
until [ "$(list_json 'len([m for m in d if m["state"] == "deferred"])')" -ge 200 ]; do
	[ "$(date +%s)" -lt "$deadline" ] || fail "backlog not deferred: $(spoolctl list | tail -n 5)"
	sleep 0.5
done
printf 'Subject: URGENT\n\nu\n' |
	spoolctl submit --priority urgent -f alarm@example.org ops@example.net >/dev/null
deadline=$(($(date +%s) + 30))
until [ "$(list_json 'len([m for m in d if m["state"] == "deferred"])')" -ge 201 ]; do
	[ "$(date +%s)" -lt "$deadline" ] || fail "urgent not deferred"
	sleep 0.5
done
[ "$(list_json '[m["priority"] for m in d if m["priority"] == "urgent"]')" = '["urgent"]' ] ||
	fail "priority not listed"
sink_up
spoolctl flush
wait_for_count $((base + 203)) 60
pos=$(subjects | tail -n +$((base + 1)) | grep -n 'URGENT' | cut -d: -f1)
log "urgent arrived as number $pos of 203"
[ -n "$pos" ] && [ "$pos" = 1 ] || fail "urgent arrived as number ${pos:-none}"
stop_spoold
log "ok"

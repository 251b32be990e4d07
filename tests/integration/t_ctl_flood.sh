#!/bin/bash
# t_ctl_flood.sh - no local user can take the control socket, or the
# descriptors behind it, away from root and the deliveries.
#
# spoold runs with a soft limit of 1,024 descriptors (ulimit -Sn 1024).
#   - nobody opens 1,100 connections to ctl.sock and for 15 s re-makes
#     each one the daemon closes: it gets at most 8 at a time, the rest an
#     "ERR too many connections" line; throughout, root's PING answers
#     within 1 s and `spoolctl status` sees spoold; a message root submits
#     meanwhile is delivered once; nothing fails; the refusals are logged
#     once, not per connection;
#   - 8 slow-loris clients (one byte a second, never a newline) are cut
#     by the 5 s idle timeout;
#   - 40 PROBE requests from nobody start at most one probe round (counted
#     at the HTTP probe stub), and their replies name only transports and
#     up/down: no relay address, URL or error text; root's PROBE still
#     gets the details;
#   - with a soft limit of 128, root's own 120 idle connections leave the
#     reserve of descriptors free: the listener stops accepting, a message
#     is delivered meanwhile, and the listener resumes afterwards.
. "$(dirname "$0")/lib.sh"

SYS_PY=$(PATH=/usr/bin:/bin command -v python3) ||
	fail "python3 not found in /usr/bin:/bin"
FLOOD_PY="$T_LIB_DIR/ctl_flood.py"
as_nobody() {
	runuser -u nobody -- "$@"
}
# flood MODE N SECONDS [USER]: ctl_flood.py from stdin (nobody cannot be
# trusted to read the source tree), JSON on stdout
flood() {
	local run=(as_nobody)
	[ "${4:-nobody}" = root ] && run=()
	"${run[@]}" "$SYS_PY" - "$1" "$SPOOL/ctl.sock" "$2" "$3" <"$FLOOD_PY"
}
jget() { # FILE EXPR: a Python expression over the JSON object d
	"$SYS_PY" -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(eval(sys.argv[2]))' "$1" "$2"
}
spoold_fds() {
	find "/proc/$SPOOLD_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l
}
# status_ok WHEN: root's `spoolctl status` sees spoold running
status_ok() {
	spoolctl status >"$T/status.out" 2>&1 &&
		grep -q "^spoold: running" "$T/status.out" ||
		fail "$1: root's spoolctl status did not reach spoold:" \
			"$(tr '\n' ' ' <"$T/status.out")"
}
# pinger N SECONDS: root's PINGs, each timed (JSON on stdout)
pinger() {
	flood ping "$1" "$2" root
}
# pings_fast FILE WHEN: every PING of a pinger answered within 1 s
pings_fast() {
	[ "$(jget "$1" 'len(d["failed"])')" = 0 ] ||
		fail "$2: root's PING failed: $(jget "$1" 'd["failed"][:3]')"
	[ "$(jget "$1" 'd["max_ms"]')" -lt 1000 ] ||
		fail "$2: root's PING took $(jget "$1" 'd["max_ms"]') ms"
}

# ---- a probe stub counting what reaches it --------------------------------
PROBE_PORT=$(free_port)
PROBE_HITS="$T/probe-hits.log"
python3 - "$PROBE_PORT" "$PROBE_HITS" >"$T/probe-stub.log" 2>&1 <<'EOF' &
import http.server, sys
port, hits = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(hits, "a") as f:
            print(self.path, flush=True, file=f)
        code = 200 if self.path == "/ok" else 503
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
    do_HEAD = do_GET
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
print("probe stub ready", flush=True)
s.serve_forever()
EOF
T_PIDS+=("probe-stub $!")
wait_log_line "$T/probe-stub.log" "probe stub ready" 10 "$!" ||
	fail "probe stub did not start"
hits() { # PATH: requests the stub has seen for it
	grep -cx -- "$1" "$PROBE_HITS" 2>/dev/null || true
}

start_sink
write_conf "$SINK_PORT" 1m
sed -i "s/^route = .*/route = local, spare/" "$CONF"
cat >>"$CONF" <<EOF
probe_url = http://127.0.0.1:$PROBE_PORT/ok
probe_interval = 1h
probe_timeout = 2s

[transport spare]
type = smtp
host = 127.0.0.1
port = $SINK_PORT
tls = none
probe_url = http://127.0.0.1:$PROBE_PORT/bad
probe_interval = 1h
probe_timeout = 2s
EOF
ulimit -Sn 1024
start_spoold
ulimit -Sn "$(ulimit -Hn)"
wait_log_line "$SPOOLD_LOG" "transport=spare health=down" 10 "$SPOOLD_PID" ||
	fail "the spare transport's failing probe was not seen"
log "spoold: $(spoold_fds) descriptors open at rest," \
	"limit $(sed -n 's/^Max open files *\([0-9]*\).*/\1/p' \
		"/proc/$SPOOLD_PID/limits")"

# ---- 1,100 idle connections from nobody -----------------------------------
flood idle 1100 15 >"$T/idle.json" 2>"$T/idle.err" &
FLOOD_PID=$!
T_PIDS+=("flood $FLOOD_PID")
sleep 1
pinger 40 12 >"$T/ping.json" 2>"$T/ping.err" &
PINGER_PID=$!
T_PIDS+=("pinger $PINGER_PID")
make_msg "$T/during.eml" "during the flood" >"$T/during.mid"
n=0 max_fds=0 submitted=""
while pid_alive "$FLOOD_PID"; do
	status_ok "during the flood"
	n=$((n + 1))
	fds=$(spoold_fds)
	[ "$fds" -le "$max_fds" ] || max_fds=$fds
	if [ -z "$submitted" ] && [ "$n" -ge 2 ]; then
		submitted=$(spoolctl submit rcpt@example.net <"$T/during.eml") ||
			fail "root's submit during the flood failed"
		log "root submitted $submitted during the flood"
	fi
	sleep 0.3
done
wait "$FLOOD_PID" || fail "the flood client failed: $(cat "$T/idle.err")"
wait "$PINGER_PID" || fail "the pinger failed: $(cat "$T/ping.err")"
log "flood: $(cat "$T/idle.json")"
log "root during the flood: $n status answers; PING $(cat "$T/ping.json");" \
	"spoold held at most $max_fds descriptors"
pings_fast "$T/ping.json" "during the flood"
[ -n "$submitted" ] || fail "the flood ended before root submitted"
[ "$(jget "$T/idle.json" 'd["connects"]')" -ge 1100 ] ||
	fail "the flood made fewer than 1,100 connections: it proves nothing"
[ "$(jget "$T/idle.json" 'd["refused_err"]')" -gt 0 ] ||
	fail "no connection of the flood was refused"
jget "$T/idle.json" 'd["first_err"]' | grep -q "too many connections" ||
	fail "the refusal does not say why: $(jget "$T/idle.json" 'd["first_err"]')"
[ "$max_fds" -lt 200 ] ||
	fail "spoold held $max_fds descriptors during the flood"
refusals=$(spoold_log_count "control: uid 65534: refused")
[ "$refusals" -ge 1 ] && [ "$refusals" -le 2 ] ||
	fail "$refusals log lines for refused connections (want 1, at most 2)"
wait_for_count 1 30
[ "$(sink_tool find-msgid "$SINK_DIR" "$(cat "$T/during.mid")" | wc -l)" = 1 ] ||
	fail "root's message was not delivered exactly once"
wait_spool_empty 20
[ "$(spool_files failed)" = 0 ] ||
	fail "$(spool_files failed) message(s) failed during the flood"
[ "$(spoold_log_count 'status=failed')" = 0 ] ||
	fail "a delivery failed during the flood"
log "root's message delivered once; nothing failed"

# ---- slow loris ------------------------------------------------------------
flood loris 8 15 >"$T/loris.json" 2>"$T/loris.err" &
LORIS_PID=$!
T_PIDS+=("loris $LORIS_PID")
sleep 1
pinger 10 3 >"$T/ping-loris.json" || fail "the pinger failed"
pings_fast "$T/ping-loris.json" "beside the slow clients"
wait "$LORIS_PID" || fail "the slow-loris client failed: $(cat "$T/loris.err")"
log "slow loris: $(cat "$T/loris.json")"
[ "$(jget "$T/loris.json" 'd["connected"]')" = 8 ] ||
	fail "the slow clients could not all connect"
jget "$T/loris.json" \
	'all(t is not None and 4500 <= t <= 7500 for t in d["closed_after_ms"])' |
	grep -qx True ||
	fail "slow clients were not cut at the idle timeout:" \
		"$(jget "$T/loris.json" 'd["closed_after_ms"]')"

# ---- PROBE from nobody -----------------------------------------------------
ok0=$(hits /ok) bad0=$(hits /bad)
flood probe 40 4 >"$T/probe.json" 2>"$T/probe.err" ||
	fail "the PROBE client failed: $(cat "$T/probe.err")"
ok=$(($(hits /ok) - ok0)) bad=$(($(hits /bad) - bad0))
log "40 PROBE requests from nobody in 4 s: $ok + $bad probe requests sent"
[ "$ok" -le 1 ] && [ "$bad" -le 1 ] ||
	fail "nobody's PROBE spam sent $ok + $bad probe requests (want 1 each)"
[ "$ok" = 1 ] || fail "nobody's first PROBE ran no probe at all"
jget "$T/probe.json" 'len(d["replies"])' | grep -qx 40 ||
	fail "not every PROBE was answered"
jget "$T/probe.json" '"\n".join(d["replies"])' >"$T/probe.replies"
bad_lines=$(grep -vxE 'OK|(local|spare): (up|down)|' "$T/probe.replies" |
	sort -u | head -n 3) || true
[ -z "$bad_lines" ] || fail "nobody's PROBE reply says more: $bad_lines"
grep -q "127.0.0.1\|$PROBE_PORT\|http\|503" "$T/probe.replies" &&
	fail "nobody's PROBE reply names a relay or its error"
grep -qx "spare: down" "$T/probe.replies" ||
	fail "nobody's PROBE reply does not say spare is down"
# spare is down, so probe exits 69 (EX_UNAVAILABLE), with every detail
rc=0
root_reply=$(spoolctl probe) || rc=$?
[ "$rc" = 69 ] || fail "root's probe exited $rc, want 69 (spare is down)"
grep -q "503" <<<"$root_reply" ||
	fail "root's PROBE lost its details: $root_reply"
log "nobody's PROBE: rate limited, only up/down; root's has the details"

stop_spoold

# ---- the descriptor reserve, under a small limit ---------------------------
ulimit -Sn 128
start_spoold
ulimit -Sn "$(ulimit -Hn)"
flood idle 120 8 root >"$T/root-idle.json" 2>"$T/root-idle.err" &
FLOOD_PID=$!
T_PIDS+=("root-flood $FLOOD_PID")
# the fewest descriptors spoold has free while the flood lasts: the
# reserve keeps them for deliveries
min_free=128
for _ in $(seq 30); do
	free=$((128 - $(spoold_fds)))
	[ "$free" -ge "$min_free" ] || min_free=$free
	sleep 0.1
done
log "root's flood under a limit of 128: at least $min_free descriptors free"
[ "$min_free" -ge 32 ] ||
	fail "root's idle connections left spoold $min_free descriptors"
make_msg "$T/reserve.eml" "beside the reserve" >/dev/null
sent0=$(sink_count)
spoolctl submit rcpt@example.net <"$T/reserve.eml" >/dev/null ||
	fail "submit failed beside the reserve"
deadline=$(($(date +%s) + 20))
until [ "$(sink_count)" -gt "$sent0" ] || [ "$(spool_files failed)" != 0 ]; do
	[ "$(date +%s)" -lt "$deadline" ] ||
		fail "the message submitted beside the reserve was not sent"
	sleep 0.2
done
[ "$(spool_files failed)" = 0 ] ||
	fail "a message failed while the control socket was saturated:" \
		"$(grep -m1 'status=failed' "$SPOOLD_LOG")"
grep -q "Too many open files" "$SPOOLD_LOG" &&
	fail "spoold ran out of descriptors: $(grep -m1 'Too many' "$SPOOLD_LOG")"
grep -q "not accepting on ctl.sock" "$SPOOLD_LOG" ||
	fail "spoold did not stop accepting as its descriptors ran short"
wait "$FLOOD_PID" || fail "the root flood failed: $(cat "$T/root-idle.err")"
log "root's 120 connections: $(cat "$T/root-idle.json")"
status_ok "after the reserve flood"
wait_spool_empty 20
log "reserve kept: the message went out, the listener resumed"
stop_spoold

#!/bin/bash
# t_memory.sh - spoold maps only what its configuration uses. Idle in the
# bench's configuration (one plain SMTP transport) it maps no libcurl,
# GMime, GnuTLS or libsystemd and its RSS stays under a bound (the figures
# are printed); a probe_url loads libcurl, and a push transport GMime,
# when first needed, and both work.
. "$(dirname "$0")/lib.sh"

# Idle RSS bounds in kB, not applied under a sanitizer or valgrind. Each
# configuration took 15.1-15.7 MB when spoold mapped every library it can
# use; now plain SMTP takes 4.5 MB, with a probe_url (libcurl and what it
# maps) 10.3 MB, with a push transport (libcurl and GMime) 14.3 MB.
REPORT="$SPOOL_SRC/bench/memory.sh"

# mapped NAME: spoold maps a file whose name starts with NAME.
mapped() {
	grep -q "/$1[^/]*\$" "/proc/$SPOOLD_PID/maps"
}

# idle_check WHAT MAX_KB: prints spoold's memory, checks its RSS.
idle_check() {
	local rss max=$2
	sleep 2
	log "$1:"
	"$REPORT" --pid "$SPOOLD_PID" | head -n 14 >&2
	rss=$(awk '/^Rss:/ { print $2 }' "/proc/$SPOOLD_PID/smaps_rollup")
	if grep -qE 'libasan|vgpreload' "/proc/$SPOOLD_PID/maps"; then
		log "instrumented build: RSS $rss kB not held to a bound"
	elif [ "$rss" -gt "$max" ]; then
		fail "$1: idle RSS $rss kB, over $max kB"
	fi
}

make_msg "$T/m" "memory" >/dev/null

# ---- 1. the bench's configuration ------------------------------------------
start_sink
write_bench_conf "$SINK_PORT"
start_spoold
spoolctl submit -f bench@example.org rcpt@example.net <"$T/m" >/dev/null ||
	fail "submit failed"
wait_for_count 1 10
idle_check "plain SMTP, one message delivered" 8000
for lib in libcurl libgmime libglib libgnutls libsystemd; do
	! mapped "$lib" || fail "plain SMTP: spoold maps $lib"
done
stop_spoold

# ---- 2. a probe_url: libcurl, loaded at the first probe -------------------
HTTP_PORT=$(free_port)
mkdir -p "$T/www"
echo ok >"$T/www/health"
python3 -m http.server --bind 127.0.0.1 --directory "$T/www" "$HTTP_PORT" \
	>"$T/http.log" 2>&1 &
T_PIDS+=("http $!")
wait_port "$HTTP_PORT" 10 || fail "http server did not start"
cat >>"$CONF" <<EOT
probe_url = http://127.0.0.1:$HTTP_PORT/health
probe_expect = 200
probe_interval = 1h
EOT
start_spoold
out=$(spoolctl probe 2>&1) || fail "probe failed: $out"
echo "$out" | grep -q "^sink: up" || fail "probe: $out"
mapped libcurl || fail "probe_url: libcurl not loaded after a probe"
! mapped libgmime || fail "probe_url: spoold maps libgmime"
spoolctl submit -f bench@example.org rcpt@example.net <"$T/m" >/dev/null ||
	fail "submit failed"
wait_for_count 2 10
idle_check "plain SMTP with probe_url" 12500
stop_spoold

# ---- 3. a push transport: spoold-push.so, with GMime ----------------------
PUSH_PORT=$(free_port)
mkdir -p "$T/push"
echo '{}' >"$T/push/control.json"
python3 "$T_LIB_DIR/push_standin.py" --port "$PUSH_PORT" --dir "$T/push" \
	>"$T/push-standin.log" 2>&1 &
T_PIDS+=("push-standin $!")
wait_log_line "$T/push-standin.log" 'push_standin ready' 10 ||
	fail "the push stand-in did not start"
cat >>"$CONF" <<EOT

[transport hook]
type = webhook
url = http://127.0.0.1:$PUSH_PORT/webhook/hook
EOT
sed -i 's/^route = sink$/route = hook/' "$CONF"
start_spoold
spoolctl submit -f bench@example.org rcpt@example.net <"$T/m" >/dev/null ||
	fail "submit failed"
deadline=$(($(date +%s) + 20))
until [ -s "$T/push/events.jsonl" ]; do
	[ "$(date +%s)" -lt "$deadline" ] || fail "no push notification in 20 s"
	sleep 0.2
done
mapped libgmime || fail "push: GMime not loaded"
idle_check "a push transport, one notification sent" 18000
stop_spoold
log "ok"

#!/bin/bash
# t_failed_keep.sh - failed messages are kept for the operator until
# [spool] failed_keep, then removed from failed/ and the state at the
# rescan, one log line each (0 keeps them); and the image's HEALTHCHECK,
# as dist/Dockerfile writes it, is unhealthy only when mail cannot leave,
# not because a failed message is kept.
. "$(dirname "$0")/lib.sh"

start_sink --reject-rcpt bounce@example.net=550
write_conf "$SINK_PORT"
set_keep() {
	sed -i '/^failed_keep/d' "$CONF"
	sed -i "s/^max_size = .*/&\nfailed_keep = $1/" "$CONF"
}
set_keep 1h
export SPOOLD_CONFIG=$CONF
# the rescan every 0.5 s instead of 30 s
export SPOOLD_TEST_RESCAN_MS=500

# the Dockerfile's HEALTHCHECK command, run against this spool
health_cmd=$(python3 - "$SPOOL_SRC/dist/Dockerfile" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read().replace("\\\n", " ")
m = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])\s*$", text, re.M)
argv = json.loads(m.group(1))
assert argv[:2] == ["/bin/sh", "-c"], argv
print(argv[2])
PY
) || fail "no HEALTHCHECK CMD in dist/Dockerfile"
health_cmd=${health_cmd//\/usr\/bin\/spoolctl/$SPOOLCTL}
healthcheck() {
	sh -c "$health_cmd" >"$T/health.out" 2>&1
}

start_spoold
id=$(printf 'Subject: doomed\n\nbody\n' | spoolctl submit bounce@example.net) ||
	fail "submit failed"
wait_log_line "$SPOOLD_LOG" "id=$id .*status=failed" 20 "$SPOOLD_PID" ||
	fail "the message did not fail"
[ -f "$SPOOL/failed/$id" ] || fail "failed/$id missing"

# --- 1. a failed message kept: check warns, the container stays healthy ---
rc=0
spoolctl check >/dev/null || rc=$?
[ "$rc" = 1 ] || fail "check with a failed message exited $rc, want 1"
healthcheck || fail "HEALTHCHECK unhealthy with a failed message kept: $(cat "$T/health.out")"

# --- 2. past failed_keep it is removed, at the rescan, logged once ---
set_keep 1s
kill -HUP "$SPOOLD_PID"
wait_log_line "$SPOOLD_LOG" "id=$id expired: removed from failed/" 15 \
	"$SPOOLD_PID" || fail "the failed message did not expire"
[ ! -e "$SPOOL/failed/$id" ] || fail "failed/$id is still there"
[ "$(spoolctl list --failed --json)" = "[]" ] ||
	fail "its record is still there: $(spoolctl list --failed --json)"
sleep 1.5 # three more rescans: nothing more to say
[ "$(spoold_log_count "id=$id expired")" = 1 ] ||
	fail "the expiry was logged $(spoold_log_count "id=$id expired") times"
rc=0
spoolctl check >/dev/null || rc=$?
[ "$rc" = 0 ] || fail "check after the expiry exited $rc, want 0"

# --- 3. failed_keep = 0 keeps them for ever ---
set_keep 0
kill -HUP "$SPOOLD_PID"
for _ in $(seq 1 100); do
	[ "$(spoold_log_count 'reloaded')" = 2 ] && break
	sleep 0.1
done
[ "$(spoold_log_count 'reloaded')" = 2 ] || fail "the second reload is not logged"
id2=$(printf 'Subject: doomed 2\n\nbody\n' | spoolctl submit bounce@example.net) ||
	fail "submit failed"
wait_log_line "$SPOOLD_LOG" "id=$id2 .*status=failed" 20 "$SPOOLD_PID" ||
	fail "the second message did not fail"
sleep 2 # four rescans
[ -f "$SPOOL/failed/$id2" ] || fail "failed_keep = 0 removed failed/$id2"

# --- 4. mail cannot leave: the daemon is gone ---
stop_spoold
healthcheck && fail "HEALTHCHECK healthy with spoold stopped: $(cat "$T/health.out")"
log "ok"

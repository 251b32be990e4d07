#!/bin/bash
# t_sidecar.sh - spoold as the container sidecar runs it: configured from
# environment variables alone (no file, no -c), in the foreground logging
# to stderr, with no MTA beside it; the application "container" is another
# uid sharing the spool directory and submitting with spoolctl alone, as a
# member of the submit group (no setgid inside a container). Its
# mail reaches Mailu (the stand-in, STARTTLS and AUTH); the embedded relay
# to 127.0.0.1:25 is never tried; `spoolctl check`, the container's health
# check, says OK while Mailu is up and CRITICAL once its probe fails; and
# SIGTERM (docker stop) ends spoold cleanly.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_mailu.sh"

id nobody >/dev/null 2>&1 || skip "no user nobody"
mailu_setup

# the shared volume, mounted at the same path in both containers
VOLUME="$T/volume"
mkdir -p "$VOLUME"
chmod 755 "$VOLUME"
SPOOL="$VOLUME/spool"
# a container has no /etc/spoold/spoold.conf; this host may have one
SPOOLD_ENV=(
	SPOOLD_TEST_DEFAULT_CONFIG="$T/no-such-spoold.conf"
	SPOOLD_SPOOL_DIR="$SPOOL"
	SPOOLD_DELIVERY_RETRY="1s, 2s"
	SPOOLD_TRANSPORT_MAILU_HOST=localhost
	SPOOLD_TRANSPORT_MAILU_PORT="$DC_STARTTLS_PORT"
	SPOOLD_TRANSPORT_MAILU_TLS=starttls
	SPOOLD_TRANSPORT_MAILU_CA_FILE="$MAILU_CA"
	SPOOLD_TRANSPORT_MAILU_USER="$MAILU_USER"
	SPOOLD_TRANSPORT_MAILU_PASSWORD_FILE="$MAILU_TOKEN_FILE"
	SPOOLD_TRANSPORT_MAILU_FROM="$MAILU_USER"
	SPOOLD_TRANSPORT_MAILU_TIMEOUT=5s
	SPOOLD_TRANSPORT_MAILU_PROBE_URL="https://localhost:$NGINX_PORT/health"
	SPOOLD_TRANSPORT_MAILU_PROBE_EXPECT="200, 204"
	SPOOLD_TRANSPORT_MAILU_PROBE_INTERVAL=1s
	SPOOLD_TRANSPORT_MAILU_PROBE_TIMEOUT=1s
)

# spoolctl inside the sidecar container: the same environment as spoold,
# root. (lib.sh's helpers call spoolctl too.)
spoolctl() {
	env -i PATH="$PATH" "${SPOOLD_ENV[@]}" "$SPOOLCTL" "$@"
}
# app CMD...: spoolctl inside the application container: another uid,
# given the submit group by its number (compose's group_add: the way that
# works where setgid does not), and of the configuration only where the
# spool lies.
app() {
	env -i PATH="$PATH" SPOOLD_SPOOL_DIR="$SPOOL" \
		SPOOLD_TEST_DEFAULT_CONFIG="$T/no-such-spoold.conf" \
		setpriv --reuid=nobody --regid=nogroup --groups="$SUBMIT_GID" \
		"$SPOOLCTL" "$@"
}

# the image ships the spool tree (spoolctl init), so the application can
# queue mail before spoold has ever run
spoolctl init >/dev/null || fail "spoolctl init failed"
mid=$(make_msg "$T/app-0.eml" "app-0" 300)
chmod 644 "$T/app-0.eml"
app submit -f "$MAILU_SENDER" "$MAILU_RCPT" <"$T/app-0.eml" >/dev/null ||
	fail "the application cannot submit before spoold ran"
echo "app-0 $mid $T/app-0.eml" >"$T/sent"

start_spoold -
grep -q "route mailu, concurrency" "$SPOOLD_LOG" ||
	fail "the env-only route is not mailu alone: $(grep ready "$SPOOLD_LOG")"
wait_probed mailu 15

# the application submits as nobody, with the spool dir alone
N=6
for i in $(seq 1 $((N - 1))); do
	mid=$(make_msg "$T/app-$i.eml" "app-$i" 900)
	chmod 644 "$T/app-$i.eml"
	id=$(app submit -f "$MAILU_SENDER" "$MAILU_RCPT" <"$T/app-$i.eml") ||
		fail "the application's submit failed"
	echo "app-$i $mid $T/app-$i.eml" >>"$T/sent"
	log "app submitted $id"
done
while read -r tag mid _; do
	wait_in_sink "$MAILU_SINK_DIR" "$mid" 20 >/dev/null
done <"$T/sent"
sleep 1 # a duplicate would arrive now
verify_at mailu "$T/sent"
[ "$(sink_count "$LOCAL_SINK_DIR")" = 0 ] || fail "a message took another relay"
[ "$(grep -c 'transport=mailu status=sent' "$SPOOLD_LOG")" = "$N" ] ||
	fail "spoold's stderr does not log $N sends through mailu"
! grep -E 'transport=local|127\.0\.0\.1:25\b' "$SPOOLD_LOG" ||
	fail "spoold tried the embedded local relay"

# the application can neither read the queue nor change it
rc=0
app list >/dev/null 2>&1 || rc=$?
[ "$rc" = 77 ] || fail "the application's list exited $rc, want 77"

# the health check, as the sidecar's HEALTHCHECK runs it
out=$(spoolctl check) || fail "check said: $out"
case $out in
"OK: 0 queued"*"mailu up"*) ;;
*) fail "check said: $out" ;;
esac
log "healthy: $out"
stop_nginx
wait_transport mailu False 15 >/dev/null
rc=0
out=$(spoolctl check) || rc=$?
[ "$rc" = 2 ] || fail "check with Mailu down exited $rc ($out), want 2"
log "unhealthy: $out"

# docker stop: SIGTERM, a clean exit within 10 s
stop_spoold
no_secret_in "$MAILU_TOKEN" "spoold's log" "$T"/spoold.*.log
log "ok"

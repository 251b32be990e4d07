#!/bin/bash
# t_mailu_probe_failover.sh - the HTTPS probe decides the route: with
# Mailu's front (nginx) stopped, `status --json` shows mailu up:false within
# about one probe interval, and new mail goes to the local relay although
# Dovecot still answers; with nginx back, mailu is up:true again and new
# mail goes to Mailu. Nothing is lost or sent twice.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_mailu.sh"

# probe_interval 1s + probe_timeout 1s, and slack for a loaded machine
# (status is polled through python3, which can take a second to start)
DOWN_WITHIN=8
DELIVER_WITHIN=10

mailu_setup
write_mailu_conf --tls starttls --route "mailu, local"
start_spoold
wait_probed mailu 10

# submit_to mailu|local TAG: queues TAG and waits for it at that sink.
submit_to() {
	local out mid ms
	out=$(submit_msg "$2")
	mid=${out#* }
	ms=$(wait_in_sink "$([ "$1" = mailu ] && echo "$MAILU_SINK_DIR" ||
		echo "$LOCAL_SINK_DIR")" "$mid" "$DELIVER_WITHIN")
	log "$2 arrived at $1's sink after $ms ms"
	echo "$2 $mid $T/$2.eml" >>"$T/expect.$1"
}

# 1. everything up: Mailu
submit_to mailu up-1

# 2. nginx stopped: the probe fails, mailu is down, mail goes local
stop_nginx
ms=$(wait_transport mailu False "$DOWN_WITHIN")
log "mailu down ${ms} ms after nginx stopped"
err=$(transport_field mailu "t['last_error']")
log "mailu last_error: $err"
[ "$err" != None ] || fail "mailu is down without a last_error"
[ "$(transport_field mailu "t['last_probe'] is not None")" = True ] ||
	fail "no last_probe while down"
# local has no probe: until a session ends it is not judged (null), never down
[ "$(transport_field local "t['up']")" != False ] || fail "local is down"
submit_to local probe-down-1
submit_to local probe-down-2
# Dovecot was up all along: only the probe kept the mail away from it
pid_alive "$DC_PID" || fail "Dovecot died"

# 3. nginx back: mailu up again, mail goes to Mailu
start_nginx
ms=$(wait_transport mailu True "$DOWN_WITHIN")
log "mailu up ${ms} ms after nginx started"
submit_to mailu up-2

sleep 1 # a duplicate would arrive now
verify_at mailu "$T/expect.mailu"
verify_at local "$T/expect.local"
[ "$(sink_count "$MAILU_SINK_DIR")" = 2 ] ||
	fail "Mailu's sink has $(sink_count "$MAILU_SINK_DIR") messages, want 2"
[ "$(sink_count "$LOCAL_SINK_DIR")" = 2 ] ||
	fail "the local sink has $(sink_count "$LOCAL_SINK_DIR") messages, want 2"
[ "$(spoold_log_count 'transport=mailu health=down')" -ge 1 ] ||
	fail "spoold did not log mailu going down"
[ "$(spoold_log_count 'transport=mailu health=up')" -ge 1 ] ||
	fail "spoold did not log mailu coming back"
# the probe made the choice: no session to mailu failed
[ "$(spoold_log_count 'transport=mailu relay failed')" = 0 ] ||
	fail "spoold tried mailu while its probe failed"
[ "$(spoolctl list --json | sink_tool json 'len(d)')" = 0 ] ||
	fail "queue not empty: $(spoolctl list --json)"
stop_spoold
log "ok"

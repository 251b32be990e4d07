#!/bin/bash
# t_mailu_smtp_down.sh - Mailu's front answers its probe but Dovecot is
# stopped: the message still goes out through the local relay in the same
# attempt (retry = 1h, so a deferral would hold it for an hour), spoold
# logs the relay failure on mailu and the send on local, and mailu counts
# as down (its breaker) without the message paying for it. Mail sent while
# the breaker is open goes straight to local; once Dovecot is back and
# `spoolctl probe` has reached it (the end of a cool-down alone is
# t_breaker's), mail goes to Mailu again. The breaker's first cool-down is
# set far beyond the test's length (SPOOLD_TEST_BREAKER_FIRST_MS), so the
# checks made while it is open hold however slow the machine is.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_mailu.sh"

DELIVER_WITHIN=10
export SPOOLD_TEST_BREAKER_FIRST_MS=3600000
BACK_WITHIN=30

mailu_setup
write_mailu_conf --tls starttls --route "mailu, local" --retry 1h
start_spoold
wait_probed mailu 10

# The messages are made in advance: python3 can take seconds to start on a
# loaded machine.
make_msgs smtp-down 3 600 >"$T/msgs"

# submit_to mailu|local TAG: queues TAG (one of $T/msgs), waits for it at
# that sink, and sets ID.
submit_to() {
	local mid ms
	mid=$(awk -v t="$2" '$1 == t { print $2 }' "$T/msgs")
	ID=$(submit_file "$2")
	ms=$(wait_in_sink "$([ "$1" = mailu ] && echo "$MAILU_SINK_DIR" ||
		echo "$LOCAL_SINK_DIR")" "$mid" "$DELIVER_WITHIN")
	log "$2 ($ID) arrived at $1's sink after $ms ms"
	echo "$2 $mid $T/$2.eml" >>"$T/expect.$1"
}

# log_line_no REGEXP: the number of the first spoold log line matching.
log_line_no() {
	grep -nE -- "$1" "$SPOOLD_LOG" | head -n 1 | cut -d: -f1
}

stop_dovecot
[ "$(probe_endpoint)" = 204 ] || fail "the probe endpoint went away too"

# 1. the relay refuses the connection: local, in the same attempt
submit_to local smtp-down-1
ID1=$ID

# 2. while the breaker is open, mailu is down although its probe succeeds,
# and mail goes straight to local: no new session to the dead relay.
fails=$(spoold_log_count 'transport=mailu relay failed')
submit_to local smtp-down-2
[ "$(spoold_log_count "id=$ID .*transport=mailu")" = 0 ] ||
	fail "mailu was tried again while its breaker was open"
[ "$(spoold_log_count 'transport=mailu relay failed')" = "$fails" ] ||
	fail "a new session to mailu while it was down"
status=$(spoolctl status --json)
[ "$(echo "$status" | sink_tool json "[t['up'] for t in d['transports'] if t['name'] == 'mailu' and t['last_error']]")" = "[false]" ] ||
	fail "mailu not down with a last_error while its breaker is open: $status"
log "mailu: $(echo "$status" | sink_tool json "[t['last_error'] for t in d['transports'] if t['name'] == 'mailu']")"
ID=$ID1

failed_at=$(log_line_no 'transport=mailu relay failed')
sent_at=$(log_line_no "id=$ID .*transport=local status=sent")
[ -n "$failed_at" ] || fail "no 'transport=mailu relay failed' log line"
[ -n "$sent_at" ] || fail "no 'id=$ID ... transport=local status=sent' line"
[ "$failed_at" -lt "$sent_at" ] ||
	fail "mailu's failure was not logged before the local send"
log "spoold: $(sed -n "${failed_at}p" "$SPOOLD_LOG")"
log "spoold: $(sed -n "${sent_at}p" "$SPOOLD_LOG")"
[ "$(spoold_log_count "id=$ID .*status=failed")" = 0 ] ||
	fail "the message was failed for the relay's fault"
# attempts is not in the log: a message in the queue would show it, but
# this one left the queue in its first attempt
[ "$(spoolctl list --json | sink_tool json 'len(d)')" = 0 ] ||
	fail "queue not empty: $(spoolctl list --json)"

# 3. Dovecot back: a probe's session reaches it (STARTTLS, AUTH), which
# ends the breaker, and mailu gets the mail
start_dovecot
out=$(spoolctl probe) || fail "probe with Dovecot back: $out"
echo "$out" | grep -q "^mailu: up, .*session ok" || fail "probe said: $out"
ms=$(wait_transport mailu True "$BACK_WITHIN")
log "mailu up again ${ms} ms after Dovecot came back"
submit_to mailu smtp-down-3

sleep 1 # a duplicate would arrive now
verify_at local "$T/expect.local"
verify_at mailu "$T/expect.mailu"
[ "$(sink_count "$LOCAL_SINK_DIR")" = 2 ] ||
	fail "the local sink has $(sink_count "$LOCAL_SINK_DIR"), want 2"
[ "$(sink_count "$MAILU_SINK_DIR")" = 1 ] ||
	fail "Mailu's sink has $(sink_count "$MAILU_SINK_DIR"), want 1"
[ "$(spoold_log_count 'transport=local status=(deferred|failed)')" = 0 ] ||
	fail "the local relay deferred or failed a message"
stop_spoold
log "ok"

#!/bin/bash
# t_rcpt_5xx.sh - Postfix rejects one of three recipients with 550: the two
# others are delivered once, the rejected one is failed (never retried), and
# nobody gets two copies even after several retry periods.
. "$(dirname "$0")/lib.sh"

BAD=rejected@example.net
start_sink
start_postfix_relay --reject "$BAD=550"
write_conf "$PF_PORT" 1s
start_spoold

mid=$(make_msg "$T/msg" "one of three rejected" 800)
id=$(spoolctl submit -f app@example.org good1@example.net "$BAD" \
	good2@example.com <"$T/msg") || fail "submit failed"
id=$(echo "$id" | tr -d '[:space:]')
log "queued $id"

wait_for_count 1 30
# the failed recipient must show up as failed in the log
deadline=$(($(date +%s) + 20))
until [ "$(spoold_log_count "to=<?$BAD>?.*status=failed")" -ge 1 ]; do
	[ "$(date +%s)" -lt "$deadline" ] ||
		fail "no status=failed log line for $BAD"
	sleep 0.2
done
grep -hE "to=<?$BAD>?.*status=failed" "$T"/spoold.*.log | head -1 |
	grep -q '550' || fail "the failed line does not carry the 550 reply"

sleep 5 # several retry periods: a wrong retry would deliver again now

counts=$(sink_tool rcpt-counts "$SINK_DIR")
log "copies per recipient at the sink:"$'\n'"$counts"
[ "$counts" = "1 good1@example.net
1 good2@example.com" ] || fail "per-recipient copies wrong: $counts"
[ "$(sink_tool msgids "$SINK_DIR")" = "1 $mid" ] ||
	fail "Message-IDs at the sink: $(sink_tool msgids "$SINK_DIR")"

# Postfix saw the rejected recipient exactly once: a permanent failure is
# not retried
nreject=$(grep -c "reject: RCPT.*<$BAD>" "$PF_DIR/maillog" || true)
[ "$nreject" = 1 ] || fail "Postfix rejected $BAD $nreject times (want 1)"
[ "$(spoold_log_count "to=<?good1@example.net>?.*status=sent")" = 1 ] ||
	fail "good1 not logged as sent exactly once"
[ "$(spoold_log_count "to=<?good2@example.com>?.*status=sent")" = 1 ] ||
	fail "good2 not logged as sent exactly once"

# if the message is still listed (failed), its recipients carry their state
listed=$(spoolctl list --all --json) || fail "list --all --json failed"
log "list --all --json: $listed"
entry=$(echo "$listed" | sink_tool json "[m for m in d if m['id'] == '$id']")
if [ "$entry" != "[]" ]; then
	states=$(echo "$entry" | sink_tool json \
		'sorted(r["address"] + "=" + r["state"] for r in d[0]["recipients"])')
	[ "$states" = "[\"good1@example.net=sent\", \"good2@example.com=sent\", \"$BAD=failed\"]" ] ||
		fail "recipient states in list --json: $states"
	[ "$(echo "$entry" | sink_tool json 'd[0]["state"]')" = failed ] ||
		fail "message state is not failed: $entry"
fi
[ "$(spool_files new cur)" = 0 ] ||
	fail "message still queued for retry: $(spoolctl list --json)"
stop_spoold
log "ok"

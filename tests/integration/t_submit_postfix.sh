#!/bin/bash
# t_submit_postfix.sh - `spoolctl submit` and `sendmail -t` through spoold and
# a real Postfix to the capture sink: the envelope is right, Bcc is hidden
# but delivered, and the bytes at the sink (minus the Received: fields
# Postfix and root's submission put first) are exactly the bytes spooled.
# Nothing dropped, duplicated or added.
. "$(dirname "$0")/lib.sh"

start_sink
start_postfix_relay
write_conf "$PF_PORT"
# the spool as the package or spoold-setup makes it: root's files then
# go to spoold as they are, with spoolctl's Received field alone
"$SPOOLCTL" -c "$CONF" init >/dev/null || fail "spoolctl init failed"

# 1. plain submit with an explicit recipient; the daemon is not running yet,
# so the spooled files can be copied before anything is delivered
mid1=$(make_msg "$T/in1.eml" "submit via spoolctl" 3000)
id1=$(spoolctl submit -f sender1@example.org first@example.net <"$T/in1.eml") ||
	fail "spoolctl submit failed"
id1=$(echo "$id1" | tr -d '[:space:]')
[[ "$id1" =~ ^[0-9a-f]{24}$ ]] || fail "submit printed '$id1', not a queue id"
[ -f "$SPOOL/new/$id1" ] || fail "no spool file new/$id1 after submit"
cp "$SPOOL/new/$id1" "$T/spooled1"

# 2. sendmail -t: recipients from To, Cc and Bcc; Bcc must not be stored
cat >"$T/in2.eml" <<'MSG'
From: App <app@example.org>
To: To One <to1@example.net>, to2@example.net
Cc: "Cc, Person" <cc@example.com>
Bcc: hidden@example.com
Subject: sendmail -t with Cc and Bcc
Date: Tue, 24 Nov 2026 10:00:00 +0000
Message-ID: <sendmail-t-1@spool-test.invalid>

Hello from a PHP app.
.a line with a leading dot
MSG
before=$(ls "$SPOOL/new")
SPOOLD_CONFIG="$CONF" "$SENDMAIL" -t -i -f app@example.org <"$T/in2.eml" >"$T/sendmail.out" \
	2>"$T/sendmail.err" || fail "sendmail -t exited $?: $(cat "$T/sendmail.err")"
id2=$(comm -13 <(echo "$before") <(ls "$SPOOL/new"))
[ "$(echo "$id2" | wc -w)" = 1 ] || fail "expected one new spool file, got '$id2'"
cp "$SPOOL/new/$id2" "$T/spooled2"
sink_tool spool-message "$T/spooled2" >"$T/msg2"
grep -qi '^bcc:' "$T/msg2" && fail "Bcc header stored in the spool"
grep -q 'hidden@example.com' "$T/msg2" && fail "Bcc address stored in the message"
env2=$(sink_tool spool-envelope "$T/spooled2")
log "sendmail -t spooled envelope: $env2"
[ "$(echo "$env2" | sink_tool json 'sorted(d["rcpt"])')" = \
	'["cc@example.com", "hidden@example.com", "to1@example.net", "to2@example.net"]' ] ||
	fail "sendmail -t recipients wrong: $env2"
[ "$(echo "$env2" | sink_tool json 'd["sender"]')" = app@example.org ] ||
	fail "sendmail -f sender not used: $env2"
grep -q $'\r$' "$T/msg2" || fail "stored message is not CRLF"
grep -qv $'\r$' "$T/msg2" && fail "stored message has bare LF line ends"

# The first message already had Date, Message-ID and From and CRLF line
# ends: the spool must hold it unchanged.
# (root's submission puts its Received line first: from userid 0)
sink_tool spool-message "$T/spooled1" | head -n 1 |
	grep -q '^Received: from userid 0 by ' ||
	fail "root's message has no Received line from userid 0 first"
sink_tool spool-message "$T/spooled1" --strip-received >"$T/msg1"
cmp "$T/in1.eml" "$T/msg1" || fail "spoolctl submit changed a complete message"

start_spoold
wait_for_count 2 30
sleep 2 # anything extra (a duplicate) would arrive now
[ "$(sink_count)" = 2 ] || fail "expected 2 transactions, sink has $(sink_count)"
log "sink envelopes:"$'\n'"$(sink_tool envelopes "$SINK_DIR")"

# each Message-ID exactly once
msgids=$(sink_tool msgids "$SINK_DIR")
[ "$msgids" = "1 $mid1
1 <sendmail-t-1@spool-test.invalid>" ] ||
	[ "$msgids" = "1 <sendmail-t-1@spool-test.invalid>
1 $mid1" ] || fail "Message-IDs at the sink: $msgids"

check_delivery() { # spooled-file msgid
	local n env want_from want_rcpt got_from got_rcpt
	n=$(sink_tool find-msgid "$SINK_DIR" "$2")
	env=$(sink_tool spool-envelope "$1")
	want_from=$(echo "$env" | sink_tool json 'd["sender"]')
	want_rcpt=$(echo "$env" | sink_tool json 'sorted(d["rcpt"])')
	got_from=$(sink_tool json 'd["mail_from"]' <"$SINK_DIR/$n.env")
	got_rcpt=$(sink_tool json 'sorted(d["rcpt_to"])' <"$SINK_DIR/$n.env")
	[ "$got_from" = "$want_from" ] ||
		fail "$2: MAIL FROM <$got_from>, spooled <$want_from>"
	[ "$got_rcpt" = "$want_rcpt" ] ||
		fail "$2: RCPT TO $got_rcpt, spooled $want_rcpt"
	sink_tool spool-message "$1" --strip-received >"$T/want.$n"
	sink_tool body "$SINK_DIR" "$n" --strip-received >"$T/got.$n"
	if ! cmp "$T/want.$n" "$T/got.$n"; then
		diff <(cat -A "$T/want.$n") <(cat -A "$T/got.$n") | head -20 >&2
		fail "$2: bytes at the sink differ from the spooled message"
	fi
	[ "$(sink_tool body "$SINK_DIR" "$n" | grep -c '^Received: ')" = 2 ] ||
		fail "$2: expected two Received: fields (Postfix's, spoold's)"
}
check_delivery "$T/spooled1" "$mid1"
check_delivery "$T/spooled2" "<sendmail-t-1@spool-test.invalid>"
sink_tool body "$SINK_DIR" "$(sink_tool find-msgid "$SINK_DIR" \
	'<sendmail-t-1@spool-test.invalid>')" | grep -qi 'hidden@example.com' &&
	fail "the Bcc address is visible at the sink"

# spoold logged each recipient as sent and emptied the queue
for r in first@example.net to1@example.net to2@example.net cc@example.com \
	hidden@example.com; do
	[ "$(spoold_log_count "to=<?$r>?.*status=sent")" -ge 1 ] ||
		fail "no status=sent log line for $r"
done
deadline=$(($(date +%s) + 10))
until [ "$(spool_files new cur)" = 0 ]; do
	[ "$(date +%s)" -lt "$deadline" ] ||
		fail "spool still holds $(spool_files new cur) files after delivery"
	sleep 0.2
done
[ "$(spoolctl list --json | sink_tool json 'len(d)')" = 0 ] ||
	fail "list --json not empty after delivery: $(spoolctl list --json)"
stop_spoold
log "ok"

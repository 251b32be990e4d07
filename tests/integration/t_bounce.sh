#!/bin/bash
# t_bounce.sh - failure notices ([delivery] bounce = yes) at a capture sink
# that rejects dead@example.net with 550 and slow@example.net with 451:
#
#  1. bounce = no: 20 failed messages, no notice.
#  2. bounce = yes, a few senders: one notice per failed message (8), each
#     a well-formed RFC 3464 report (parsed with Python's email module):
#     multipart/report; report-type=delivery-status, a text part, a
#     message/delivery-status part naming each failed recipient (not the
#     delivered one) and text/rfc822-headers with the original Message-ID;
#     from <> to the sender. A message that expires (max_age) on a 451
#     gets one too, with Status 4.4.7. A null-sender message gets none, and
#     a notice that fails itself (its sender is dead too) causes none.
#  3. a flood: 200 failures (2 senders x 80, 10 senders x 1, 30 from <>)
#     and then 5 more senders: exactly the limits' worth of notices (10 per
#     sender per hour, 30 a minute in all), every other failure with a
#     sender logged as suppressed by the limit that held it, none twice.
. "$(dirname "$0")/lib.sh"

start_sink --reject-rcpt dead@example.net=550 --reject-rcpt dead2@example.net=550 \
	--reject-rcpt slow@example.net=451

# bounce_conf yes|no MAX_AGE: the configuration for the next spoold run
bounce_conf() {
	write_conf "$SINK_PORT" 1s
	sed -i -e "s/^max_age = .*/max_age = $2\nbounce = $1/" "$CONF"
}

submit_from() { # SENDER RCPT... (sender "" is <>)
	local s=$1
	shift
	printf 'From: app@example.org\nSubject: to %s\nMessage-ID: <%s.%s@t>\n\nx\n' \
		"$*" "$RANDOM$RANDOM" "$(date +%s%N)" |
		spoolctl submit -f "$s" "$@" | tr -d '[:space:]'
}

# failed_count: messages logged as failed so far (all runs).
failed_count() {
	spoold_log_count '^spoold\[[0-9]+\]: id=[0-9a-f]+ status=failed'
}

wait_failed() { # N SECONDS
	local deadline=$(($(date +%s) + $2))
	until [ "$(failed_count)" -ge "$1" ]; do
		[ "$(date +%s)" -lt "$deadline" ] ||
			fail "only $(failed_count) of $1 messages failed in $2 s"
		sleep 0.2
	done
}

# notices DIR: checks every transaction from <> in DIR as a notice and
# prints a JSON summary: count, per recipient, original Message-IDs,
# statuses, problems.
notices() {
	python3 - "$1" <<'EOF'
import email, json, os, sys
from email import policy
d = sys.argv[1]
out = {"count": 0, "to": {}, "orig": [], "status": [], "problems": []}
for n in sorted(x[:-4] for x in os.listdir(d) if x.endswith(".env")):
    env = json.load(open(os.path.join(d, n + ".env")))
    if env["mail_from"] != "":
        continue
    raw = open(os.path.join(d, n + ".eml"), "rb").read()
    m = email.message_from_bytes(raw, policy=policy.default)
    bad = lambda why: out["problems"].append("%s: %s" % (n, why))
    out["count"] += 1
    rcpt = env["rcpt_to"]
    if len(rcpt) != 1:
        bad("recipients %r" % rcpt)
    out["to"][rcpt[0]] = out["to"].get(rcpt[0], 0) + 1
    if [a.addr_spec for a in m["To"].addresses] != rcpt:
        bad("To %r" % m["To"])
    if m.get_content_type() != "multipart/report" or \
            m.get_param("report-type") != "delivery-status":
        bad("Content-Type %r" % m["Content-Type"])
    for h in ("Date", "From", "Message-ID", "Subject"):
        if len(m.get_all(h) or []) != 1:
            bad("not one %s" % h)
    parts = list(m.iter_parts())
    types = [p.get_content_type() for p in parts]
    if types != ["text/plain", "message/delivery-status",
                 "text/rfc822-headers"]:
        bad("parts %r" % types)
        continue
    text = parts[0].get_content()
    # the per-recipient groups follow the per-message one
    groups = parts[1].get_payload()
    if len(groups) < 2 or not groups[0]["Reporting-MTA"]:
        bad("no per-message fields")
        continue
    for g in groups[1:]:
        fr = g["Final-Recipient"]
        out["status"].append("%s %s" % (fr, g["Status"]))
        if g["Action"] != "failed":
            bad("Action %r" % g["Action"])
        if fr.split(";")[-1].strip() not in text:
            bad("%s not in the text part" % fr)
    orig = email.message_from_bytes(parts[2].get_payload(decode=True) or
                                    parts[2].get_content().encode())
    out["orig"].append(orig["Message-ID"])
print(json.dumps(out))
EOF
}

# ---- 1. bounce = no --------------------------------------------------------
bounce_conf no 1h
start_spoold
for i in $(seq 1 20); do
	submit_from app@example.org dead@example.net >/dev/null ||
		fail "submit $i failed"
done
wait_failed 20 30
sleep 1 # a notice would be queued with the failure, and sent at once
s=$(notices "$SINK_DIR")
[ "$(echo "$s" | sink_tool json 'd["count"]')" = 0 ] ||
	fail "bounce = no sent notices: $s"
[ "$(spoold_log_count 'notice')" = 0 ] || fail "bounce = no logged a notice"
stop_spoold
log "bounce = no: 20 failed, 0 notices"

# ---- 2. one notice per failed message ----------------------------------------
bounce_conf yes 3s
start_spoold
base=$(failed_count)
ids=()
for i in 1 2 3 4 5; do
	ids+=("$(submit_from "user$i@example.org" dead@example.net)")
done
# two recipients fail, one is delivered: one notice naming the two
ids+=("$(submit_from multi@example.org dead@example.net ok@example.net dead2@example.net)")
# expires on 451 after max_age (3 s)
ids+=("$(submit_from late@example.org slow@example.net)")
# its notice goes to a dead address and fails in turn: no notice of that
ids+=("$(submit_from dead2@example.net dead@example.net)")
# the null sender: never a notice
null_id=$(submit_from "" dead@example.net)
# 9 messages, and the notice to dead2 fails too
wait_failed $((base + 10)) 30
sleep 1
s=$(notices "$SINK_DIR")
log "notices: $s"
[ "$(echo "$s" | sink_tool json 'd["problems"]')" = "[]" ] ||
	fail "malformed notices: $s"
[ "$(echo "$s" | sink_tool json 'd["count"]')" = 7 ] ||
	fail "want 7 notices (8 failed with a sender, one of them undeliverable): $s"
[ "$(echo "$s" | sink_tool json 'sorted(d["to"].items())')" = \
	'[["late@example.org", 1], ["multi@example.org", 1], ["user1@example.org", 1], ["user2@example.org", 1], ["user3@example.org", 1], ["user4@example.org", 1], ["user5@example.org", 1]]' ] ||
	fail "notices per sender: $s"
st=$(echo "$s" | sink_tool json 'sorted(set(d["status"]))')
[ "$st" = '["rfc822; dead2@example.net 5.1.1", "rfc822; dead@example.net 5.1.1", "rfc822; slow@example.net 4.4.7"]' ] ||
	fail "statuses in the reports: $st"
echo "$s" | sink_tool json 'd["status"]' | grep -q ok@example.net &&
	fail "the delivered recipient is in a report"
[ "$(echo "$s" | sink_tool json 'len(set(d["orig"]) - {None})')" = 7 ] ||
	fail "original Message-IDs missing or repeated: $s"
for id in "${ids[@]}"; do
	[ "$(spoold_log_count "id=$id notice=.* status=queued")" = 1 ] ||
		fail "$id: not exactly one notice queued"
done
[ "$(spoold_log_count "id=$null_id notice")" = 0 ] ||
	fail "a notice for a null-sender message"
dead2_notice=$(grep -hoE "id=${ids[7]} notice=[0-9a-f]+" "$T"/spoold.*.log |
	sed 's/.*notice=//')
[ -n "$dead2_notice" ] || fail "no notice id for ${ids[7]}"
[ "$(spoold_log_count "id=$dead2_notice status=failed")" = 1 ] ||
	fail "the notice to dead2 did not fail"
[ "$(spoold_log_count "id=$dead2_notice notice")" = 0 ] ||
	fail "a failed notice caused a notice"
stop_spoold
log "one per failed message: 9 failed, 7 notices delivered, 1 notice" \
	"failed without a notice, 0 for <>"

# ---- 3. a flood --------------------------------------------------------------
# Queued with spoold stopped, so that it fails soon after the start, inside
# one window of the total limit, which the test knob stretches to an hour so
# that a slow machine counts the same: 2 senders x 80 hit the hourly limit
# (10 each), 10 senders x 1 fill the total limit (30 in all) exactly,
# whatever order the batches finish in; then 5 more senders find it used up.
bounce_conf yes 1h
rm -rf "${SINK_DIR:?}"/* # count this phase's notices alone
base=$(failed_count)
for i in $(seq 1 80); do
	for h in 1 2; do
		submit_from "heavy$h@example.org" dead@example.net >/dev/null
	done
done
for i in $(seq 1 10); do
	submit_from "light$i@example.org" dead@example.net >/dev/null
done
for i in $(seq 1 30); do
	submit_from "" dead@example.net >/dev/null
done
[ "$(spool_files new)" = 200 ] || fail "flood not queued: $(spool_files new)"
export SPOOLD_TEST_NOTICE_MINUTE_S=3600
start_spoold
wait_failed $((base + 200)) 40
for i in $(seq 1 5); do
	submit_from "late$i@example.org" dead@example.net >/dev/null
done
wait_failed $((base + 205)) 20
queued=$(grep -cE 'notice=.* status=queued' "$SPOOLD_LOG" || true)
per_sender=$(grep -cE 'status=suppressed reason="over 10 notices an hour' \
	"$SPOOLD_LOG" || true)
per_minute=$(grep -cE 'status=suppressed reason="over 30 notices a minute' \
	"$SPOOLD_LOG" || true)
wait_for_count "$queued" 30
sleep 1
s=$(notices "$SINK_DIR")
log "flood: 205 failed (30 from <>), $queued notices queued," \
	"$per_sender suppressed by the hourly limit, $per_minute by the" \
	"minute's; at the sink $(echo "$s" | sink_tool json 'd["count"]')" \
	"notices: $(echo "$s" | sink_tool json 'sorted(d["to"].items())')"
[ "$(echo "$s" | sink_tool json 'd["problems"]')" = "[]" ] ||
	fail "malformed notices: $s"
[ "$queued" = 30 ] || fail "want 30 notices queued, got $queued"
[ "$per_sender" = 140 ] ||
	fail "want 140 held back by the hourly limit (2 x 70), got $per_sender"
[ "$per_minute" = 5 ] ||
	fail "want the 5 late senders held back by the minute's limit: $per_minute"
[ "$(echo "$s" | sink_tool json 'd["count"]')" = 30 ] ||
	fail "want 30 notices at the sink: $s"
[ "$(echo "$s" | sink_tool json '[d["to"].get("heavy1@example.org"), d["to"].get("heavy2@example.org"), sorted(set(v for k, v in d["to"].items() if k.startswith("light"))), len(d["to"])]')" = "[10, 10, [1], 12]" ] ||
	fail "notices per sender: $s"
[ "$(echo "$s" | sink_tool json 'len(set(d["orig"]) - {None})')" = 30 ] ||
	fail "a message got two notices: $s"
stop_spoold
log "ok"

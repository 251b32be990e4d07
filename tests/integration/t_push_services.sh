#!/usr/bin/env bash
# t_push_services: the fleet's alarm (a `systemctl status` excerpt, UTF-8,
# 8-bit, no MIME header, no Date) reaches each push service readable,
# through nginx with TLS from the test CA, with the method, path, headers
# and JSON of the service's API exactly; an urgent message gets the
# service's highest priority; a text over the service's limit arrives cut
# on a character boundary with a mark; no token appears in any log or in
# list/show/status.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_mailu.sh"
. "$(dirname "$0")/lib_push.sh"

push_setup
HOST=$(hostname)
push_alarm "$T/alarm.eml"
printf '%s\n' "From: alarm@node7.example.org" "To: ops@example.net" \
	"Subject: =?UTF-8?Q?disk_full_on_n=C3=B6de7?=" "X-Priority: 1 (Highest)" \
	"MIME-Version: 1.0" "Content-Type: text/plain; charset=iso-8859-1" \
	"Content-Transfer-Encoding: quoted-printable" "" \
	"/var: 100% voll, Gr=FC=DFe" >"$T/urgent.eml"
# 3,000 two-byte characters: over ntfy's 4,096 bytes, under Telegram's
# 4,096 characters
python3 -c '
import sys
sys.stdout.write("From: a@node7.example.org\nSubject: big\n"
                 "Content-Type: text/plain; charset=utf-8\n\n" + "é" * 3000 + "\n")
' >"$T/big.eml"

for svc in ntfy gotify matrix telegram webhook; do
	write_push_conf "$svc"
	start_spoold
	spoolctl submit -f alarm@node7.example.org ops@example.net \
		<"$T/alarm.eml" >"$T/$svc.alarm.id" || fail "submit failed"
	n=1
	wait_push_event "$svc" $n 20
	if [ "$svc" = ntfy ] || [ "$svc" = gotify ]; then
		spoolctl submit ops@example.net <"$T/urgent.eml" >/dev/null ||
			fail "submit failed"
		n=$((n + 1))
		wait_push_event "$svc" $n 20
	fi
	if [ "$svc" = ntfy ] || [ "$svc" = telegram ]; then
		spoolctl submit ops@example.net <"$T/big.eml" >/dev/null ||
			fail "submit failed"
		n=$((n + 1))
		wait_push_event "$svc" $n 20
	fi
	wait_spool_empty 10
	stop_spoold
	log "$svc: $(push_count "$svc" events) notification(s)"
done

push_no_violations
python3 - "$PUSH_DIR" "$HOST" "$PUSH_ALARM_SUBJECT" "$PUSH_ROOM" \
	"$PUSH_CHAT" "$PUSH_TOKEN_NTFY" "$PUSH_TOKEN_MATRIX" \
	"$PUSH_TOKEN_WEBHOOK" "$PUSH_TOKEN_GOTIFY" "$(cat "$T/webhook.alarm.id")" \
	<<'PY' || fail "the notifications are not what the APIs and the alarm say"
import json, sys, urllib.parse
(d, host, subject, room, chat, tok_ntfy, tok_matrix, tok_webhook,
 tok_gotify, webhook_id) = sys.argv[1:11]
reqs = [json.loads(l) for l in open(d + "/requests.jsonl")]
evs = [json.loads(l) for l in open(d + "/events.jsonl")]
errors = []

def check(what, got, want):
    if got != want:
        errors.append("%s: got %r, want %r" % (what, got, want))

body = ("× nginx.service - A high performance web server\n"
        "     Loaded: loaded (/lib/systemd/system/nginx.service; enabled)\n"
        "     Active: failed (Result: exit-code) since Tue 2026-11-24 10:00:00 UTC\n"
        "    Process: 812 ExecStart=/usr/sbin/nginx (code=exited, status=1/FAILURE)\n"
        "Nov 24 10:00:00 node7 nginx[812]: bind() to 0.0.0.0:80 failed (98: Address already in use)")
foot = "\n\n— alarm@node7.example.org, on " + host
urgent_body = "/var: 100% voll, Grüße"
urgent_title = "disk full on nöde7"

def of(svc):
    return [r for r in reqs if r["service"] == svc], \
           [e for e in evs if e["service"] == svc]

# every request went through once: no retries, no storm
for svc, n in (("ntfy", 3), ("gotify", 2), ("matrix", 1), ("telegram", 2),
               ("webhook", 1)):
    r, e = of(svc)
    check(svc + " requests", len(r), n)
    check(svc + " notifications", len(e), n)
    for x in r:
        check(svc + " status", x["status"], 200)
        if "expect" in x["headers"]:
            errors.append(svc + ": an Expect header")

r, e = of("ntfy")
check("ntfy method", r[0]["method"], "POST")
check("ntfy path", r[0]["path"], "/ntfy/alarms")
h = r[0]["headers"]
check("ntfy Authorization", h.get("authorization"), "Bearer " + tok_ntfy)
check("ntfy Priority", h.get("priority"), "3")
check("ntfy Tags", h.get("tags"), "email")
check("ntfy Content-Type", h.get("content-type"), "text/plain; charset=utf-8")
check("ntfy title", e[0]["title"], subject)
check("ntfy text", e[0]["text"], body + foot)
check("ntfy urgent Priority", r[1]["headers"].get("priority"), "5")
check("ntfy urgent Tags", r[1]["headers"].get("tags"), "rotating_light,email")
check("ntfy urgent title", e[1]["title"], urgent_title)
check("ntfy urgent text", e[1]["text"], urgent_body + foot.replace(
    "alarm@node7.example.org", "alarm@node7.example.org"))
big = e[2]["text"]
cut = big.split("\n\n— ")[0]
check("ntfy cut: bytes within 4096", len(big.encode()) <= 4096, True)
check("ntfy cut: mark", cut.endswith("…"), True)
check("ntfy cut: whole characters", set(cut[:-1]), {"é"})
check("ntfy cut: close to the limit", len(big.encode()) > 4090, True)

r, e = of("gotify")
check("gotify method", r[0]["method"], "POST")
check("gotify path", r[0]["path"], "/gotify/message")
check("gotify key", r[0]["headers"].get("x-gotify-key"), tok_gotify)
check("gotify has no Authorization", "authorization" in r[0]["headers"], False)
check("gotify JSON", json.loads(r[0]["body"]),
      {"title": subject, "message": body + foot, "priority": 5})
check("gotify urgent JSON", json.loads(r[1]["body"]),
      {"title": urgent_title, "message": urgent_body + foot, "priority": 10})

r, e = of("matrix")
check("matrix method", r[0]["method"], "PUT")
want = ("/matrix/_matrix/client/v3/rooms/%s/send/m.room.message/spoold." %
        urllib.parse.quote(room, safe=""))
check("matrix path", r[0]["path"].startswith(want), True)
check("matrix Authorization", r[0]["headers"].get("authorization"),
      "Bearer " + tok_matrix)
check("matrix JSON", json.loads(r[0]["body"]),
      {"msgtype": "m.text", "body": subject + "\n\n" + body + foot})

r, e = of("telegram")
check("telegram method", r[0]["method"], "POST")
check("telegram has no Authorization", "authorization" in r[0]["headers"],
      False)
check("telegram JSON", json.loads(r[0]["body"]),
      {"chat_id": chat, "text": subject + "\n\n" + body + foot})
big = e[1]["text"]
check("telegram: 3,000 characters fit", "…" in big, False)
check("telegram: all of them", big.count("é"), 3000)

r, e = of("webhook")
check("webhook method", r[0]["method"], "POST")
check("webhook path", r[0]["path"], "/webhook/hook")
check("webhook Authorization", r[0]["headers"].get("authorization"),
      "Bearer " + tok_webhook)
j = json.loads(r[0]["body"])
date = j.pop("date")
check("webhook date (added at submit)", isinstance(date, str) and
      date.startswith("20"), True)
check("webhook JSON", j,
      {"id": webhook_id, "from": "alarm@node7.example.org",
       "sender": "alarm@node7.example.org", "to": ["ops@example.net"],
       "subject": subject, "text": body, "priority": "normal", "host": host})
for x in errors:
    print(x, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
grep -q 'transport=telegram status=sent' "$T"/spoold.*.log ||
	fail "no sent line for telegram"
grep -q 'bot\*\*\*/sendMessage' "$T"/spoold.*.log ||
	fail "the Telegram URL is not shown redacted in the log"
push_no_token_anywhere
log "PASS"

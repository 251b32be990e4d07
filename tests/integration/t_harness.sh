#!/bin/bash
# t_harness.sh - the harness on its own: Python smtplib -> private Postfix ->
# capture sink, envelope and bytes checked, Postfix's 550 map honoured, and
# a stopped Postfix really refuses connections. Needs no spoold.
T_NEEDS_SPOOL=0
. "$(dirname "$0")/lib.sh"

start_sink
start_postfix_relay --reject nobody@example.net=550

python3 - "$PF_PORT" "$T/sent.eml" <<'PY'
import smtplib, sys
port, path = int(sys.argv[1]), sys.argv[2]
msg = (b"From: a@example.org\r\nTo: b@example.net\r\nSubject: harness\r\n"
       b"Message-ID: <harness-1@example.org>\r\n"
       b"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\n"
       b"line one\r\n.line with a leading dot\r\n..two dots\r\n"
       b"caf\xc3\xa9 8bit\r\n")
open(path, "wb").write(msg)
s = smtplib.SMTP("127.0.0.1", port, timeout=10)
refused = s.sendmail("a@example.org",
                     ["b@example.net", "c@example.com", "nobody@example.net"],
                     msg)
s.quit()
if list(refused) != ["nobody@example.net"] or \
        refused["nobody@example.net"][0] != 550:
    sys.exit("unexpected refusals: %r" % refused)
PY

wait_for_count 1 20
sleep 1
[ "$(sink_count)" = 1 ] || fail "expected 1 transaction, got $(sink_count)"
env=$(sink_tool envelopes "$SINK_DIR")
log "envelope: $env"
[ "$(sink_tool rcpt-counts "$SINK_DIR")" = "1 b@example.net
1 c@example.com" ] || fail "wrong recipients: $env"
[[ "$env" == *"from=<a@example.org>"* ]] || fail "wrong sender: $env"
sink_tool body "$SINK_DIR" 000001 --strip-received >"$T/got.eml"
cmp "$T/sent.eml" "$T/got.eml" || fail "bytes changed between client and sink"
sink_tool body "$SINK_DIR" 000001 | head -n 1 | grep -q '^Received: ' ||
	fail "Postfix added no Received: field (is the sink behind Postfix?)"

stop_postfix
python3 -c '
import smtplib, sys
try:
    smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=3)
except OSError:
    sys.exit(0)
sys.exit("connection accepted while Postfix is stopped")
' "$PF_PORT"
start_postfix
log "ok"

#!/bin/bash
# t_mailu_hostile_body.sh - the bodies that trip SMTP clients, through both
# engines (libESMTP over STARTTLS, libcurl over implicit TLS) to the
# Mailu stand-in: lone dots and lines starting with dots, a final lone dot
# without a line end, bare CR, bare LF and mixed line ends, a 100,000-octet
# line, an 8-bit body. Each arrives at Mailu's sink (behind Dovecot, which
# reads the dot-stuffed DATA itself) exactly once and byte for byte as
# spoolctl queued it; the queued form is taken from a second spool that no
# daemon reads, so the comparison does not depend on timing.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_mailu.sh"

mailu_setup

# Inputs, each with its own Message-ID; their queued form is the expected.
python3 - "$T" <<'EOF'
import sys
t = sys.argv[1]
head = ("From: Sender <sender@example.org>\r\nTo: ops@example.net\r\n"
        "Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n")
bodies = {
    "dots": ".\r\n..\r\n.x\r\n. \r\n...\r\n.\r\nend\r\n.\r\n",
    "lastdot": "text\r\n.",
    "lineends": "a\rb\nc\r\n\n\r.\r..\rend\n.",
    "longline": (".x = y \t" * 12500) + "\r\n.\r\n",
}
for name, body in bodies.items():
    data = (head + "Subject: %s\r\nMessage-ID: <%s@spool-test.invalid>\r\n"
            "\r\n" % (name, name)).encode() + body.encode()
    open("%s/in-%s" % (t, name), "wb").write(data)
eight = (head + "Subject: eightbit\r\nMessage-ID: <eightbit@spool-test."
         "invalid>\r\n\r\n").encode() + b"Gr\xc3\xbc\xc3\x9fe \xe9\xff\r\n.\xe2\x82\xac\r\n"
open("%s/in-eightbit" % t, "wb").write(eight)
EOF
NAMES=(dots lastdot lineends longline eightbit)

write_mailu_conf --tls starttls --spool "$T/spool-expected"
EXPECT_CONF="$T/expected.conf"
mv "$CONF" "$EXPECT_CONF"
for n in "${NAMES[@]}"; do
	id=$("$SPOOLCTL" -c "$EXPECT_CONF" submit -f "$MAILU_SENDER" \
		"$MAILU_RCPT" <"$T/in-$n") || fail "$n: refused"
	sink_tool spool-message "$T/spool-expected/new/$id" \
		--strip-received >"$T/want-$n"
done
grep -q 'quoted-printable' "$T/want-longline" ||
	fail "the 100,000-octet line was not queued as quoted-printable"

for tls in starttls implicit; do
	write_mailu_conf --tls "$tls" --route mailu --spool "$T/spool-$tls"
	start_spoold
	wait_probed mailu 10
	before=$(sink_count "$MAILU_SINK_DIR")
	: >"$T/list-$tls"
	for n in "${NAMES[@]}"; do
		spoolctl submit -f "$MAILU_SENDER" "$MAILU_RCPT" <"$T/in-$n" \
			>/dev/null || fail "$tls: $n refused"
		echo "$tls-$n <$n@spool-test.invalid> $T/want-$n" >>"$T/list-$tls"
	done
	for n in "${NAMES[@]}"; do
		wait_in_sink "$MAILU_SINK_DIR" "<$n@spool-test.invalid>" 20 \
			>/dev/null
	done
	sleep 1 # a duplicate, or the rest of a message cut at a dot, shows now
	[ "$(sink_count "$MAILU_SINK_DIR")" = $((before + ${#NAMES[@]})) ] ||
		fail "$tls: $(($(sink_count "$MAILU_SINK_DIR") - before))" \
			"transactions, want ${#NAMES[@]}"
	verify_at mailu "$T/list-$tls"
	stop_spoold
	# the next mode's messages carry the same Message-IDs
	mkdir -p "$T/done-$tls"
	mv "$MAILU_SINK_DIR"/[0-9]* "$T/done-$tls/"
	log "$tls: ${#NAMES[@]} messages arrived as queued"
done
log "ok"

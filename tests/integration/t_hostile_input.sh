#!/bin/bash
# t_hostile_input.sh - input that is ugly or hostile but can be sent
# correctly is accepted and arrives at an SMTP sink byte-correct: bare LF,
# bare CR and mixed line ends become CRLF; lone dots and lines starting
# with dots are dot-stuffed on the wire and intact at the sink; a
# 100,000-octet body line is re-encoded as quoted-printable (decoding to
# the original) and a 100,000-octet header of words is folded; an 8-bit
# body passes unchanged; a message of exactly max_size octets, an empty
# message and messages with no header/body separator are delivered; a
# non-ASCII subject is RFC 2047 encoded, a non-ASCII -F name too; control
# characters and "Bcc:" inside arguments that are not line breaks stay
# inside their field; Bcc is delivered to but never shown; UTF-8
# addresses and addresses at the RFC 5321 limits (local part 64, address
# 254) reach the envelope unchanged. No message carries a line over 998
# octets, a bare CR or LF, or a recipient nobody asked for. Every message
# root submits arrives with "Received: from userid 0 ... (spoold)" as its
# first line (libESMTP keeps it), and otherwise as queued.
# What is refused instead is t_refused_input.sh's.
. "$(dirname "$0")/lib.sh"

start_sink
write_conf "$SINK_PORT" 1s 1M
# the same spool with a small max_size, for the exact-size message
CONF_SMALL="$T/small.conf"
sed 's/^max_size = .*/max_size = 4k/' "$CONF" >"$CONF_SMALL"
start_spoold

CASES=()   # name, one per case; the recipient is NAME@example.net
EXTRA=0    # transactions expected beyond one per case
submitted() {
	CASES+=("$1")
	log "queued case $1"
}
# sub NAME ARGS... < message: spoolctl submit NAME@example.net
sub() {
	local name=$1
	shift
	spoolctl submit "$@" "$name@example.net" >/dev/null ||
		fail "case $name: submit refused it"
	submitted "$name"
}
# sm NAME ARGS... < message: sendmail ARGS NAME@example.net
sm() {
	local name=$1
	shift
	SPOOLD_CONFIG="$CONF" "$SENDMAIL" "$@" "$name@example.net" ||
		fail "case $name: sendmail refused it"
	submitted "$name"
}
# compose NAME ARGS...: spoolctl submit --to NAME@example.net ARGS
compose() {
	local name=$1
	shift
	spoolctl submit --to "$name@example.net" "$@" >/dev/null ||
		fail "case $name: submit --to refused it"
	submitted "$name"
}
W="$T/want"
mkdir -p "$W"

# ---- line ends ------------------------------------------------------
sub lineends < <(printf 'Subject: ends\nX-Tag: a\r\rb1\rb2\nb3\r\nb4\n\rb6')
printf 'b1\r\nb2\r\nb3\r\nb4\r\n\r\nb6\r\n' >"$W/lineends.body"

# ---- dots: submit reads to the end; sendmail -i too ------------------
printf '.\n..\n.x\n...\n. \nend\n.' >"$T/dots"
sub dots < <(printf 'Subject: dots\n\n' | cat - "$T/dots")
sm dots-i -i < <(printf 'Subject: dots\n\n' | cat - "$T/dots")
printf '.\r\n..\r\n.x\r\n...\r\n. \r\nend\r\n.\r\n' >"$W/dots.body"
cp "$W/dots.body" "$W/dots-i.body"
# without -i a lone dot ends the input, as in sendmail; .x stays
sm dotend < <(printf 'Subject: dotend\n\n.x\nbefore\n.\nafter\n')
printf '.x\r\nbefore\r\n' >"$W/dotend.body"

# ---- a body line of 100,000 octets: quoted-printable -----------------
python3 - "$W/longline.decoded" <<'EOF'
import sys
# '=', trailing blanks, leading dots and 8-bit octets stress the encoder
unit = b".dot = sign =41 \t tab \xc3\xa4\xff "
line = (unit * (100000 // len(unit) + 1))[:100000]
open(sys.argv[1], "wb").write(line + b"\r\n.last line \r\n")
EOF
sub longline < <(printf 'Subject: long line\n\n'; cat "$W/longline.decoded")

# ---- a header of 100,000 octets with spaces: folded ------------------
python3 -c '
import sys
sys.stdout.write(" ".join("w%d" % i for i in range(20000))[:100000].strip())
' >"$W/longhdr.subject"
sub longhdr < <(printf 'Subject: '; cat "$W/longhdr.subject"; printf '\n\nbody\n')
printf 'body\r\n' >"$W/longhdr.body"

# ---- the same through submit --to: a subject with no place to fold
# becomes RFC 2047 words, a long body line quoted-printable
head -c 100000 /dev/zero | tr '\0' 'S' >"$W/longsubject.subject"
# submit --to takes UTF-8 text only, so no \xff here
tr -d '\377' <"$W/longline.decoded" >"$W/composelong.decoded"
compose longsubject --subject "$(cat "$W/longsubject.subject")" </dev/null
compose composelong --subject "long body line" \
	--body-file "$W/composelong.decoded"

# ---- an 8-bit body without MIME headers: passed unchanged -------------
printf 'Gr\xc3\xbc\xc3\x9fe \xe2\x82\xac\r\nlatin-1 \xe9\xe8\xff\r\n' \
	>"$W/eightbit.body"
sub eightbit < <(printf 'Subject: 8bit\r\n\r\n'; cat "$W/eightbit.body")

# ---- exactly max_size (4096) octets, queued as given ------------------
python3 - "$W/exactmax.whole" 4096 <<'EOF'
import sys
path, size = sys.argv[1], int(sys.argv[2])
head = (b"From: a@example.org\r\nTo: exactmax@example.net\r\n"
        b"Subject: exact size\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
        b"Message-ID: <exactmax@spool-test.invalid>\r\n\r\n")
body, left = b"", size - len(head)
while left > 0:
    n = min(70, left - 2)
    body += b"z" * n + b"\r\n"
    left -= n + 2
assert len(head + body) == size
open(path, "wb").write(head + body)
EOF
"$SPOOLCTL" -c "$CONF_SMALL" submit exactmax@example.net \
	<"$W/exactmax.whole" >/dev/null ||
	fail "a message of exactly max_size octets was refused"
submitted exactmax

# ---- empty, and no header/body separator -----------------------------
sub empty </dev/null
: >"$W/empty.body"
sub onlyheaders < <(printf 'Subject: only headers\nX-A: 1')
: >"$W/onlyheaders.body"
sub onlybody < <(printf 'no header here\nsecond: line\n')
printf 'no header here\r\nsecond: line\r\n' >"$W/onlybody.body"

# ---- arguments: non-ASCII, control characters, Bcc-like text -----------
subject='Störung: Festplatte /var zu 100 % voll — Ärger 🚨 ünd Œuvre '
subject="$subject$subject$subject$subject"
printf '%s' "$subject" >"$W/subjectutf8.subject"
# one transaction, two recipients
compose subjectutf8 --subject "$subject" --to x-only@example.net < <(printf 'K\xc3\xb6rper mit Umlauten\n')
printf 'K\xc3\xb6rper mit Umlauten\r\n' >"$W/subjectutf8.body"
ctrl=$'tab\there vt\x0bff\x0cbel\x07 Bcc: x@evil.example'
printf '%s' "$ctrl" >"$W/ctrlsubject.subject"
compose ctrlsubject --subject "$ctrl" </dev/null
compose spoofname --from '"Evil Bcc: x@evil.example" <a@example.org>' \
	--subject 'Bcc: x@evil.example' </dev/null
sm fullname -i -F 'Jörg Ünlü "the admin"' < <(printf 'Subject: full name\n\nhi\n')
printf 'Jörg Ünlü "the admin"' >"$W/fullname.fromname"
# -t: Bcc reaches its recipient but is not in the message
printf 'To: bcc-t@example.net\nBcc: bcc-hidden@example.net\nSubject: bcc\n\nhi\n' |
	SPOOLD_CONFIG="$CONF" "$SENDMAIL" -t -i || fail "sendmail -t refused"
submitted bcc-t

# ---- addresses: UTF-8 and at the RFC 5321 limits -----------------------
printf 'Subject: utf8 rcpt\n\nhi\n' |
	spoolctl submit 'jürgen@bücher.example' >/dev/null ||
	fail "a UTF-8 address was refused"
EXTRA=$((EXTRA + 1))
l64=$(printf 'l%.0s' $(seq 1 64))
a254="$(printf 's%.0s' $(seq 1 64))@$(printf 'd%.0s' $(seq 1 63)).$(printf 'd%.0s' $(seq 1 63)).$(printf 'd%.0s' $(seq 1 61))"
[ "${#a254}" = 254 ] || fail "test bug: ${#a254}"
printf 'Subject: limits\n\nhi\n' |
	spoolctl submit -f "$a254" "$l64@example.net" "$a254" >/dev/null ||
	fail "addresses at the RFC 5321 limits were refused"
EXTRA=$((EXTRA + 1))

want=$((${#CASES[@]} + EXTRA))
wait_for_count "$want" 60
sleep 1 # anything extra (a duplicate, an injected recipient) shows now
stop_spoold
[ "$(sink_count)" = "$want" ] ||
	fail "the sink holds $(sink_count) transactions, want $want"

# ---- checks at the sink ------------------------------------------------
python3 - "$SINK_DIR" "$W" "$l64" "$a254" "${CASES[@]}" <<'EOF'
import email.header
import json
import os
import re
import sys

sink, want_dir, l64, a254 = sys.argv[1:5]
cases = sys.argv[5:]
problems = []


def bad(case, what):
    problems.append("%s: %s" % (case, what))


tx = []
for n in sorted(x[:-4] for x in os.listdir(sink) if x.endswith(".env")):
    env = json.load(open(os.path.join(sink, n + ".env")))
    eml = open(os.path.join(sink, n + ".eml"), "rb").read()
    tx.append((env, eml))

# Every transaction: CRLF only, no line over 998, no header anyone could
# have injected, no recipient nobody asked for.
for env, eml in tx:
    tag = ",".join(env["rcpt_to"])
    if re.search(rb"\r(?!\n)", eml) or re.search(rb"(?<!\r)\n", eml):
        bad(tag, "bare CR or LF in the delivered bytes")
    if not eml.endswith(b"\r\n") and eml:
        bad(tag, "does not end in CRLF")
    longest = max(len(l) for l in eml.split(b"\r\n"))
    if longest > 998:
        bad(tag, "a line of %d octets" % longest)
    for r in env["rcpt_to"] + [env["mail_from"]]:
        if "evil.example" in r:
            bad(tag, "injected address %s in the envelope" % r)
    head = eml.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line.lower().startswith((b"bcc:", b"x-injected")):
            bad(tag, "header line %r" % line[:80])


def get(case):
    rcpt = case + "@example.net"
    found = [(e, m) for e, m in tx if rcpt in e["rcpt_to"]]
    if len(found) != 1:
        bad(case, "%d transactions, want 1" % len(found))
        return None, b"", b""
    env, eml = found[0]
    head, _, body = eml.partition(b"\r\n\r\n")
    return env, head + b"\r\n", body


def fields(head, name):
    """Unfolded values of the fields called name."""
    out = []
    for f in re.split(rb"\r\n(?![ \t])", head):
        if f.lower().startswith(name.lower().encode() + b":"):
            out.append(re.sub(rb"\r\n([ \t])", rb"\1", f[len(name) + 1:])
                       .strip(b" \t\r\n"))
    return out


def one(case, head, name):
    v = fields(head, name)
    if len(v) != 1:
        bad(case, "%d %s fields, want 1" % (len(v), name))
        return b""
    return v[0]


def decoded(raw):
    return str(email.header.make_header(
        email.header.decode_header(raw.decode("ascii"))))


def want(case, ext):
    return open(os.path.join(want_dir, case + "." + ext), "rb").read()


for case in cases:
    env, head, body = get(case)
    if env is None:
        continue
    for name in ("Date", "From", "Message-ID"):
        one(case, head, name)
    for line in head.split(b"\r\n"):
        if re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", line):
            bad(case, "control character in header line %r" % line[:60])
    if os.path.exists(os.path.join(want_dir, case + ".body")):
        if body != want(case, "body"):
            bad(case, "body %r, want %r" % (body[:120],
                                            want(case, "body")[:120]))
    # root's spoolctl puts "Received: from userid 0 ... (spoold) id ..."
    # first, and the relay keeps it there; the rest is as queued
    trace = re.match(rb"Received: from userid 0 by \S+ \(spoold\) id "
                     rb"[0-9a-f]{24};\r\n\t[^\r\n]+\r\n", head)
    if trace is None:
        bad(case, "no Received line from userid 0 first: %r" % head[:120])
    elif (case == "exactmax" and
          head[trace.end():] + b"\r\n" + body != want(case, "whole")):
        bad(case, "not delivered byte for byte as queued")
    if case in ("longline", "composelong"):
        cte = one(case, head, "Content-Transfer-Encoding").lower()
        if cte != b"quoted-printable":
            bad(case, "Content-Transfer-Encoding %r" % cte)
        if max(len(l) for l in body.split(b"\r\n")) > 76:
            bad(case, "quoted-printable line over 76 octets")
        if re.search(rb"=(?![0-9A-F]{2}|\r\n)", body):
            bad(case, "a bare '=' in quoted-printable")
        # soft breaks out first: a literal "=" is always =3D
        plain = re.sub(rb"=([0-9A-F]{2})",
                       lambda m: bytes([int(m.group(1), 16)]),
                       body.replace(b"=\r\n", b""))
        if plain != want(case, "decoded"):
            bad(case, "quoted-printable does not decode to the original")
    if case == "longhdr":
        if one(case, head, "Subject").decode() != want(case, "subject").decode():
            bad(case, "the folded Subject does not unfold to the original")
    if case in ("subjectutf8", "ctrlsubject", "longsubject"):
        raw = one(case, head, "Subject")
        for w in re.findall(rb"=\?[^?]*\?[bBqQ]\?[^?]*\?=", raw):
            if len(w) > 75:
                bad(case, "encoded word of %d octets" % len(w))
        if any(c > 127 for c in raw):
            bad(case, "raw 8-bit octets in Subject")
        if decoded(raw) != want(case, "subject").decode():
            bad(case, "Subject decodes to %r" % decoded(raw))
    if case == "subjectutf8":
        if sorted(env["rcpt_to"]) != ["subjectutf8@example.net",
                                      "x-only@example.net"]:
            bad(case, "recipients %s" % env["rcpt_to"])
    elif case == "bcc-t":
        if sorted(env["rcpt_to"]) != ["bcc-hidden@example.net",
                                      "bcc-t@example.net"]:
            bad(case, "recipients %s" % env["rcpt_to"])
        if b"bcc-hidden" in head:
            bad(case, "the Bcc recipient shows in the header")
    elif env["rcpt_to"] != [case + "@example.net"]:
        bad(case, "recipients %s" % env["rcpt_to"])
    if case == "spoofname":
        frm = decoded(one(case, head, "From"))
        if frm != '"Evil Bcc: x@evil.example" <a@example.org>':
            bad(case, "From: %r" % frm)
        if env["mail_from"] != "a@example.org":
            bad(case, "envelope sender %s" % env["mail_from"])
    if case == "fullname":
        frm = one(case, head, "From")
        if any(c > 127 for c in frm):
            bad(case, "raw 8-bit octets in From")
        name = decoded(frm).rsplit("<", 1)[0].strip()
        if name.startswith('"') and name.endswith('"'):
            name = name[1:-1].replace('\\"', '"')
        if name != want(case, "fromname").decode():
            bad(case, "From name decodes to %r" % name)
    if case == "onlyheaders" and one(case, head, "X-A") != b"1":
        bad(case, "X-A lost")

# The two address cases have no NAME@example.net recipient.
utf8 = [e for e, m in tx if "jürgen@bücher.example" in e["rcpt_to"]]
if len(utf8) != 1 or utf8[0]["rcpt_to"] != ["jürgen@bücher.example"]:
    bad("utf8 address", "envelopes %s" % [e["rcpt_to"] for e in utf8])
lim = [e for e, m in tx if e["mail_from"] == a254]
if len(lim) != 1 or sorted(lim[0]["rcpt_to"]) != sorted(
        [l64 + "@example.net", a254]):
    bad("limits", "envelopes %s" % [(e["mail_from"], e["rcpt_to"])
                                    for e in lim])
for p in problems:
    print(p)
print("%d transactions, %d cases, %d problems" % (len(tx), len(cases),
                                                  len(problems)),
      file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
[ "$(spool_files new cur hold failed)" = 0 ] ||
	fail "messages left in the spool: $(spool_files new cur hold failed)"
log "ok: ${#CASES[@]} cases, $want transactions delivered as checked"

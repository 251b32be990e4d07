#!/bin/bash
# t_sendmail_callers.sh - sendmail as its real callers invoke it: Debian's
# cron (-B8BITMIME -oem), cronie, every flag Postfix's and Exim's sendmail
# accept, -bv, the refusals (-X, unknown modes); `sendmail -bs` driven as
# a mailer library drives it; and mailq in Postfix's format, read by the
# real check_mailq -M postfix of monitoring-plugins.
. "$(dirname "$0")/lib.sh"

CHECK_MAILQ=/usr/lib/nagios/plugins/check_mailq
[ -x "$CHECK_MAILQ" ] || fail "$CHECK_MAILQ missing: run tools/install-deps" \
	"(monitoring-plugins-standard)"

start_sink --reject-rcpt later@example.net=451 \
	--reject-rcpt held@example.net=451
write_conf "$SINK_PORT" 1h 64K
export SPOOLD_CONFIG=$CONF
MAILQ="$(dirname "$SPOOLCTL")/mailq"
HOST=$(hostname)

# check_mailq as shipped, with its utils.pm pointing at this build's mailq
# instead of /usr/bin/mailq: the parsing is the plugin's own.
mkdir "$T/plugins"
cp "$CHECK_MAILQ" "$T/plugins/check_mailq"
sed "s|^\$PATH_TO_MAILQ *=.*|\$PATH_TO_MAILQ = \"$MAILQ\";|" \
	"$(dirname "$CHECK_MAILQ")/utils.pm" >"$T/plugins/utils.pm"
grep -qF "$MAILQ" "$T/plugins/utils.pm" || fail "utils.pm: no PATH_TO_MAILQ"
check_mailq_is() { # CODE ARGS...
	local want=$1 rc=0 out
	shift
	out=$(perl "$T/plugins/check_mailq" -M postfix "$@") || rc=$?
	log "check_mailq $*: $out (exit $rc)"
	[ "$rc" = "$want" ] || fail "check_mailq $* exited $rc, want $want: $out"
}
new_count() { find "$SPOOL/new" -maxdepth 1 -type f 2>/dev/null | wc -l; }

# --- mailq on an empty queue (a missing spool is an error, not empty) ---
"$MAILQ" >/dev/null 2>&1 && fail "mailq on a missing spool exited 0"
"$SPOOLCTL" init >/dev/null || fail "spoolctl init"
[ "$("$MAILQ")" = "Mail queue is empty" ] || fail "empty mailq: $("$MAILQ")"
[ "$("$SENDMAIL" -bp)" = "Mail queue is empty" ] || fail "empty sendmail -bp"
check_mailq_is 0 -w 1 -c 3

# --- Debian's cron (cron 3.0pl1-162), byte for byte ---
cat >"$T/cron.eml" <<EOF
From: root (Cron Daemon)
To: root
Subject: Cron <root@$HOST> /usr/local/bin/backup
MIME-Version: 1.0
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 8bit
X-Cron-Env: <SHELL=/bin/sh>
X-Cron-Env: <HOME=/root>

backup: Prüfung fehlgeschlagen ✗
.
done
EOF
"$SENDMAIL" -i -FCronDaemon -B8BITMIME -oem root <"$T/cron.eml" ||
	fail "Debian cron's invocation exited $?"
# --- cronie (Arch, Fedora) ---
sed 's/^To: root$/To: admin@example.org/' "$T/cron.eml" >"$T/cronie.eml"
"$SENDMAIL" -FCronDaemon -i -odi -oem -oi -t -f root <"$T/cronie.eml" ||
	fail "cronie's invocation exited $?"
[ "$(new_count)" = 2 ] || fail "cron mail not queued: $(new_count) in new/"
for f in "$SPOOL"/new/*; do
	sink_tool spool-message "$f" >"$T/queued.$(basename "$f").eml"
done

# --- mailq, not empty: Postfix's layout, and check_mailq's verdicts ---
"$MAILQ" >"$T/mailq.out" || fail "mailq exited $?"
python3 - "$T/mailq.out" "$HOST" <<'EOF' || fail "mailq format: $(cat "$T/mailq.out")"
import re, sys
lines = open(sys.argv[1]).read().split("\n")
host = sys.argv[2]
assert lines[0] == "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------", lines[0]
head = re.compile(r"^([0-9a-f]{24})[*!]? {1,7}(\d+) "
                  r"([A-Z][a-z]{2} [A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d) "
                  r" (\S+)$")
rcpts = []
i, n = 1, 0
while not lines[i].startswith("-- "):
    m = head.match(lines[i])
    assert m, "block head: %r" % lines[i]
    assert m.group(4) == "root@" + host, m.group(4)
    i += 1
    while lines[i].startswith(" " * 41):
        rcpts.append(lines[i][41:])
        i += 1
    n += 1
    assert lines[i] == "", "no blank line after a block: %r" % lines[i]
    i += 1
assert n == 2, n
assert sorted(rcpts) == sorted(["root@" + host, "admin@example.org"]), rcpts
assert re.fullmatch(r"-- \d+ Kbytes in 2 Requests\.", lines[i]), lines[i]
assert lines[i + 1:] == [""], lines[i + 1:]
EOF
check_mailq_is 1 -w 2 -c 5
check_mailq_is 0 -w 3 -c 5
check_mailq_is 2 -w 1 -c 2

start_spoold
wait_for_count 2 20
# delivered exactly as queued, and the queued message is the caller's with
# CRLF, the unqualified addresses qualified, and Date and Message-ID added
python3 - "$T" "$SINK_DIR" "$HOST" <<'EOF' || fail "cron mail changed on the way"
import glob, os, re, sys
t, sink, host = sys.argv[1:]
def strip_received(data):
    # spoolctl's own trace field, "Received: from userid 0 by ...", first
    m = re.match(rb"Received: from userid 0 by [^\r]*\r\n(?:[ \t][^\r]*\r\n)*", data)
    assert m, "no Received: from userid 0 first: %r" % data[:120]
    return data[m.end():]
queued = sorted(open(f, "rb").read() for f in glob.glob(t + "/queued.*.eml"))
got = sorted(open(f, "rb").read() for f in glob.glob(sink + "/*.eml"))
assert queued == got, "delivered bytes differ from the queued ones"
got = [strip_received(g) for g in got]
for name, to in (("cron", "root@" + host), ("cronie", "admin@example.org")):
    src = open(os.path.join(t, name + ".eml"), "rb").read()
    want = src.replace(b"\n", b"\r\n")
    want = want.replace(b"From: root (Cron", ("From: root@%s (Cron" % host).encode())
    want = want.replace(b"To: root\r\n", ("To: root@%s\r\n" % host).encode())
    match = [g for g in got
             if re.sub(rb"(?m)^(Date|Message-ID): .*\r\n", b"", g) == want]
    assert len(match) == 1, "%s: no delivered copy equals the input" % name
    assert re.search(rb"(?m)^Date: ", match[0]) and re.search(rb"(?m)^Message-ID: <", match[0])
EOF
sink_tool envelopes "$SINK_DIR" >"$T/env"
grep -qF "from=<root@$HOST> to=root@$HOST" "$T/env" || fail "cron envelope: $(cat "$T/env")"
grep -qF "from=<root@$HOST> to=admin@example.org" "$T/env" ||
	fail "cronie envelope: $(cat "$T/env")"
log "Debian cron and cronie: queued, delivered byte for byte"

# --- every flag that real callers pass is accepted ---
n=2
accepted=(
	"-B 8BITMIME" "-B7BIT" "-B 7bit" "-N success,delay" "-Nnever"
	"-N FAILURE" "-R hdrs" "-Rfull" "-V envid.123" "-Vx" "-O DeliveryMode=b"
	"-L mylabel" "-Lx" "-Am" "-Ac" "-A m" "-G" "-oem" "-oee" "-oep" "-oeq"
	"-oew" "-odb" "-h 20" "-n" "-m" "-bm" "-F Web" "-FName" "-ti"
	"-fweb@example.org" "-f web@example.org" "-r web@example.org"
	"-G -i -N never -B8BITMIME -Am -L cron"
)
for flags in "${accepted[@]}"; do
	n=$((n + 1))
	# shellcheck disable=SC2086 # the flags are words
	printf 'To: flags@example.org\nSubject: flags %s\n\nflags %s\n' \
		"$flags" "$flags" | "$SENDMAIL" $flags flags@example.org \
		2>"$T/err" || fail "sendmail $flags exited $?: $(cat "$T/err")"
	[ ! -s "$T/err" ] || fail "sendmail $flags said: $(cat "$T/err")"
done
wait_for_count "$n" 30
sink_tool envelopes "$SINK_DIR" | grep -c "from=<web@example.org> to=flags@example.org" |
	grep -qx 3 || fail "-f/-r did not set the sender: $(sink_tool envelopes "$SINK_DIR")"
grep -l "^Subject: flags -F Web" "$SINK_DIR"/*.eml | xargs grep -q \
	"^From: Web <" || fail "-F NAME did not name the added From"
log "${#accepted[@]} flag forms accepted"

# --- refused: one line, 64, nothing queued ---
refuse() { # WANT-IN-MESSAGE FLAGS...
	local want=$1 rc=0
	shift
	echo "Subject: x" | "$SENDMAIL" "$@" x@example.org >"$T/out" \
		2>"$T/err" || rc=$?
	[ "$rc" = 64 ] || fail "sendmail $* exited $rc, want 64"
	[ "$(wc -l <"$T/err")" = 1 ] || fail "sendmail $*: not one line: $(cat "$T/err")"
	grep -qF -- "$want" "$T/err" || fail "sendmail $*: $(cat "$T/err")"
}
stop_spoold # what is refused must not be queued: new/ shows it
refuse "-X" -X "$T/traffic.log"
refuse "-X" -oi -X"$T/traffic.log"
[ ! -e "$T/traffic.log" ] || fail "-X wrote its log file"
refuse "-bz: unknown mode" -bz
refuse "-B BINARYMIME" -B BINARYMIME
refuse "-N sometimes" -N sometimes
refuse "-R body" -R body
refuse "-Ax" -Ax
refuse "-Y: unknown option" -Y
rc=0
"$SENDMAIL" -t -f </dev/null 2>"$T/err" || rc=$?
[ "$rc" = 64 ] && grep -q -- "-f needs a value" "$T/err" ||
	fail "sendmail -f with no value exited $rc: $(cat "$T/err")"
[ "$(new_count)" = 0 ] || fail "a refused invocation queued a message"

# --- -bv checks and queues nothing; -bi, -bd, -bD, -I do nothing ---
out=$("$SENDMAIL" -bv root "Web <web@example.org>") || fail "-bv exited $?"
[ "$out" = "root@$HOST... deliverable
web@example.org... deliverable" ] || fail "-bv said: $out"
rc=0
out=$("$SENDMAIL" -bv ok@example.org "bad address@example.org") || rc=$?
[ "$rc" = 65 ] || fail "-bv of a bad address exited $rc"
case $out in "ok@example.org... deliverable
bad address@example.org... undeliverable: "*) ;;
*) fail "-bv of a bad address said: $out" ;;
esac
for mode in -bi -bd -bD -I; do
	"$SENDMAIL" "$mode" </dev/null || fail "sendmail $mode exited $?"
done
[ "$(new_count)" = 0 ] || fail "-bv, -bi or -bd queued a message"
start_spoold

# --- sendmail -bs, as Symfony Mailer and Nextcloud drive it ---
before=$(sink_count)
python3 - "$SENDMAIL" "$T" <<'EOF' || fail "the -bs session went wrong"
import subprocess, sys
sendmail, t = sys.argv[1:]
p = subprocess.Popen([sendmail, "-bs"], stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE)
def reply():
    lines = []
    while True:
        line = p.stdout.readline()
        assert line.endswith(b"\r\n"), "reply line %r" % line
        lines.append(line[:-2].decode())
        if line[3:4] == b" ":
            return lines
def cmd(line, code, text=None):
    p.stdin.write(line + b"\r\n")
    p.stdin.flush()
    r = reply()
    assert r[-1].startswith(str(code) + " "), "%r -> %r, want %d" % (line, r, code)
    assert text is None or text in r[-1], "%r -> %r, want %r" % (line, r, text)
    return r
g = reply()
assert g[0].startswith("220 "), g
r = cmd(b"EHLO [127.0.0.1]", 250)
assert "250-8BITMIME" in r and "250-SIZE 65536" in r, r
cmd(b"RCPT TO:<a@example.org>", 503, "5.5.1")
cmd(b"DATA", 503, "5.5.1")
cmd(b"FROB", 500, "5.5.2")
cmd(b"X" * 1200, 500, "5.5.2")
cmd(b"MAIL FROM:<app@example.org> AUTH=<>", 555, "5.5.4")
cmd(b"MAIL FROM:<app@example.org> SIZE=100000", 552, "5.3.4")
cmd(b"MAIL FROM:<app@example.org> SIZE=512 BODY=8BITMIME", 250, "2.1.0")
cmd(b"MAIL FROM:<x@example.org>", 503, "5.5.1")
cmd(b"RCPT TO:<one@example.org>", 250, "2.1.5")
cmd(b"RCPT TO:<bad address@example.org>", 553, "5.1.3")
cmd(b"RCPT TO:<two@example.org> NOTIFY=NEVER", 555, "5.5.4")
cmd(b"RCPT TO:<two@example.org>", 250, "2.1.5")
cmd(b"DATA", 354)
msg1 = (b"From: App <app@example.org>\r\nTo: one@example.org, two@example.org\r\n"
        b"Subject: bs one\r\nDate: Sun, 6 Dec 2026 00:00:00 +0000\r\n"
        b"Message-ID: <bs1@example.org>\r\n\r\n"
        b"first line\r\n.a stuffed dot\r\n..\r\nlast line\r\n")
stuffed = msg1.replace(b"\r\n.", b"\r\n..")
p.stdin.write(stuffed + b".\r\n")
p.stdin.flush()
r = reply()
assert r[-1].startswith("250 2.0.0 Ok: queued as "), r
open(t + "/bs1.eml", "wb").write(msg1)
cmd(b"NOOP", 250)
cmd(b"VRFY root", 252)
cmd(b"HELP", 214)
cmd(b"MAIL FROM:<>", 250)
cmd(b"RCPT TO:<dropped@example.org>", 250)
cmd(b"RSET", 250, "2.0.0")
cmd(b"RCPT TO:<dropped@example.org>", 503, "5.5.1")
cmd(b"MAIL FROM:<>", 250)
cmd(b"RCPT TO:<three@example.org>", 250)
cmd(b"DATA", 354)
msg2 = (b"To: three@example.org\r\nSubject: bs two\r\n"
        b"Date: Sun, 6 Dec 2026 00:00:01 +0000\r\nMessage-ID: <bs2@example.org>\r\n"
        b"From: app@example.org\r\n\r\nsecond\r\n")
p.stdin.write(msg2 + b".\r\n")
p.stdin.flush()
assert reply()[-1].startswith("250 2.0.0 Ok: queued as ")
open(t + "/bs2.eml", "wb").write(msg2)
# over [spool] max_size without SIZE=: read to its end, then refused
cmd(b"MAIL FROM:<app@example.org>", 250)
cmd(b"RCPT TO:<big@example.org>", 250)
cmd(b"DATA", 354)
p.stdin.write(b"Subject: big\r\n\r\n" + (b"x" * 900 + b"\r\n") * 100 + b".\r\n")
p.stdin.flush()
assert reply()[-1].startswith("552 5.3.4"), "no 552"
cmd(b"QUIT", 221)
assert p.stdout.read() == b""
assert p.wait() == 0, p.returncode
# the end of input alone ends a session too
q = subprocess.run([sendmail, "-bs"], input=b"EHLO x\r\nNOOP\r\n",
                   stdout=subprocess.PIPE)
assert q.returncode == 0 and q.stdout.endswith(b"250 2.0.0 Ok\r\n"), q
EOF
wait_for_count $((before + 2)) 20
python3 - "$T" "$SINK_DIR" <<'EOF' || fail "-bs messages changed on the way"
import glob, json, re, sys
t, sink = sys.argv[1:]
def strip_received(data):
    # spoolctl's own trace field, "Received: from userid 0 by ...", first
    m = re.match(rb"Received: from userid 0 by [^\r]*\r\n(?:[ \t][^\r]*\r\n)*", data)
    assert m, "no Received: from userid 0 first: %r" % data[:120]
    return data[m.end():]
found = {}
for f in glob.glob(sink + "/*.eml"):
    data = open(f, "rb").read()
    env = json.load(open(f[:-4] + ".env"))
    for name in ("bs1", "bs2"):
        if b"Message-ID: <%s@example.org>" % name.encode() in data:
            found.setdefault(name, []).append((data, env))
for name, sender, rcpts in (("bs1", "app@example.org", ["one@example.org", "two@example.org"]),
                            ("bs2", "", ["three@example.org"])):
    assert len(found.get(name, [])) == 1, "%s delivered %d times" % (name, len(found.get(name, [])))
    data, env = found[name][0]
    data = strip_received(data)
    want = open("%s/%s.eml" % (t, name), "rb").read()
    assert data == want, "%s: %r != %r" % (name, data, want)
    assert env["mail_from"] == sender and env["rcpt_to"] == rcpts, env
assert not any(b"Subject: big" in open(f, "rb").read() for f in glob.glob(sink + "/*.eml"))
EOF
log "sendmail -bs: two messages in one session delivered exactly"

# --- the same as an ordinary user, through the setgid sendmail: the
# group is needed for each message of the session, not only the first ---
setgid_spoolctl
before=$(sink_count)
{
	printf 'EHLO x\r\n'
	for i in 1 2 3; do
		printf 'MAIL FROM:<app@example.org>\r\nRCPT TO:<u%s@example.org>\r\n' $i
		printf 'DATA\r\nSubject: nobody bs %s\r\n\r\nbody %s\r\n.\r\n' $i $i
	done
	printf 'QUIT\r\n'
} >"$T/bs-nobody.in"
chmod 644 "$T/bs-nobody.in"
out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups \
	"$SETGID_SENDMAIL" -bs <"$T/bs-nobody.in") ||
	fail "setgid sendmail -bs as nobody exited $?: $out"
n=$(printf '%s\n' "$out" | grep -c '^250 2.0.0 Ok: queued as ') || true
[ "$n" = 3 ] || fail "setgid sendmail -bs as nobody queued $n of 3: $out"
wait_for_count $((before + 3)) 20
for i in 1 2 3; do
	grep -l "^Subject: nobody bs $i" "$SINK_DIR"/*.eml >/dev/null ||
		fail "nobody's -bs message $i did not arrive"
done
log "sendmail -bs as nobody through the setgid copy: three messages queued and delivered"
# the pickup log names who submitted: nobody's copied files by their
# owner, root's (given to spoold) by the uid its spoolctl recorded
n=$(spoold_log_count "uid=$(id -u nobody) from=<app@example.org> .*queued")
[ "$n" = 3 ] || fail "want 3 pickups logged as nobody's, got $n"
[ "$(spoold_log_count "uid=0 from=<.*queued")" -ge 3 ] ||
	fail "root's submissions are not logged as uid 0"
n=$(spoold_log_count "uid=$(id -u "$SPOOLD_USER") from=<.*queued")
[ "$n" = 0 ] || fail "$n submissions logged as spoold's own"

# --- mailq shows a deferred message's reason and a held one's mark ---
printf 'Subject: later\n\nx\n' | "$SENDMAIL" later@example.net
printf 'Subject: held\n\nx\n' | "$SENDMAIL" -f '<>' held@example.net
for rcpt in later held; do
	wait_log_line "$T/spoold.$SPOOLD_RUNS.log" \
		"to=<?$rcpt@example.net.*status=deferred" 20 "$SPOOLD_PID" ||
		fail "the message to $rcpt@example.net was never tried"
done
id=$(spoolctl list --json | sink_tool json \
	'[m["id"] for m in d if m["recipients"][0]["address"] == "held@example.net"][0]')
spoolctl hold "$id" >/dev/null
"$SENDMAIL" -bp >"$T/mailq.out" || fail "sendmail -bp exited $?"
grep -qE "^$id! +[0-9]+ .{20} MAILER-DAEMON$" "$T/mailq.out" ||
	fail "held mark or null sender: $(cat "$T/mailq.out")"
grep -qE '^ +\(.*451.*\)$' "$T/mailq.out" ||
	fail "no deferral reason: $(cat "$T/mailq.out")"
[ "$(grep -B1 -E '^ {41}later@example.net$' "$T/mailq.out" | head -n 1 |
	cut -c1)" = " " ] || fail "reason not before its recipient"
check_mailq_is 1 -w 2 -c 3
log "mailq: Postfix's format, parsed by check_mailq -M postfix"

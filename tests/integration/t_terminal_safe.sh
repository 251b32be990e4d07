#!/bin/bash
# t_terminal_safe.sh - text from outside never reaches an operator's
# terminal raw. Hostile pieces, each carrying ESC sequences (clear screen,
# set the window title with BEL), a raw C1 CSI byte (0x9b), a UTF-8 C1 CSI
# (U+009B), DEL, a bidirectional override (U+202E) and a valid "ü":
#
#  - a relay (first in the route) whose greeting is a 421 with them: the
#    transport's health reason, shown by `status`;
#  - a relay whose 550 to RCPT carries them: the recipient's reply and the
#    message's last error, shown by `list`, `show` and the log;
#  - a Subject with them, submitted by nobody with spoolctl;
#  - an envelope sender with the C1 ones, an invalid byte and the bidi
#    override (the spool parser refuses C0 and DEL in an address), and a
#    file name with an ESC, written raw into new/ by nobody (as any local
#    user may).
#
# Then `spoolctl list`, `list --json`, `show`, `show --json`, `status`,
# `status --json`, `mailq`, a refused `show` (its error line) and every
# line spoold logged must be valid UTF-8 with no byte below 0x20 but the
# line feeds, no DEL, no C1 control (raw or UTF-8) and no bidirectional
# control; and the hostile text must still be there, escaped ("\x1b[2J",
# "\u009b"), not dropped.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || skip "needs root to act as nobody"
id nobody >/dev/null 2>&1 || skip "no user nobody"

RELAY_PY="$T_LIB_DIR/fault_relay.py"
# Python escapes, decoded by fault_relay.py --reply and by printf %b
HOSTILE='\x1b[2J\x1b]0;owned\x07 \x9b31m \xc2\x9b32m del\x7f \xe2\x80\xaeevil M\xc3\xbcller'
ODD_SENDER='\x9b31mroot\xc2\x9b0m\xe2\x80\xae\xff'

# relay NAME ARGS...: fault_relay.py on a fresh port, NAME_PORT set.
relay() {
	local name=$1 port
	shift
	port=$(free_port)
	python3 "$RELAY_PY" --port "$port" --dir "$T/relay-$name" "$@" \
		>"$T/relay-$name.log" 2>&1 &
	T_PIDS+=("relay-$name $!")
	wait_log_line "$T/relay-$name.log" 'capture_sink ready' 30 $! ||
		fail "relay $name did not start"
	printf -v "${name}_PORT" '%s' "$port"
}
relay grumpy --reply "greeting=421 4.3.2 busy $HOSTILE"
relay hostile --reply "rcpt=550 5.1.1 unknown $HOSTILE"

SPOOL="$T/spool"
CONF="$T/spoold.conf"
cat >"$CONF" <<EOF
[spool]
dir = $SPOOL

[delivery]
route = grumpy, hostile
retry = 1h
max_age = 1d

[transport grumpy]
type = smtp
host = 127.0.0.1
port = $grumpy_PORT
tls = none
timeout = 5s

[transport hostile]
type = smtp
host = 127.0.0.1
port = $hostile_PORT
tls = none
timeout = 5s
EOF
chmod 644 "$CONF"
"$SPOOLCTL" -c "$CONF" init >/dev/null || fail "spoolctl init failed"
# nobody submits as every user does: through the setgid spoolctl
setgid_spoolctl

as_nobody() {
	setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups "$@"
}

# 1. the Subject, submitted by nobody
id1=$(printf 'From: app@example.org\nSubject: %b\n\nbody\n' "$HOSTILE" |
	as_nobody "$SETGID_SPOOLCTL" -c "$CONF" submit victim@example.net |
	tr -d '[:space:]') || fail "nobody cannot submit"

# 2. the relays: failover from grumpy's 421, hostile's 550 fails it
start_spoold
wait_log_line "$SPOOLD_LOG" "id=$id1 .*status=failed" 20 ||
	fail "$id1 was not failed by the hostile relay"
stop_spoold

# 3. an envelope sender and a file name, written raw into new/ by nobody
# as a member of the submission group (a container given the group)
raw() { # NAME SENDER
	setpriv --reuid=nobody --regid="$(id -g nobody)" --groups="$SUBMIT_GID" \
		sh -c 'umask 027; cat >"$1/tmp/$2" && mv "$1/tmp/$2" "$1/new/$2"' \
		sh "$SPOOL" "$1" || fail "nobody cannot write $1 into new/"
}
printf 'SPOOLD 1\nS %b@example.org\nR victim@example.net\n\nSubject: raw\r\n\r\nraw\r\n' \
	"$ODD_SENDER" | raw 0661ed00000000123456789a
id2=0661ed00000000123456789a
printf 'SPOOLD 1\nS app@example.org\nR victim@example.net\n\nSubject: odd name\r\n\r\nodd\r\n' |
	raw "$(printf 'odd\033[2Jname')"
# spoold refuses the odd sender at pickup (it fails, with the reason in
# the log and in show), and gives the odd name an id
start_spoold
wait_log_line "$SPOOLD_LOG" "id=$id2 .*status=failed" 20 ||
	fail "$id2 with an odd sender was not refused at pickup"
stop_spoold

# 4. every view, as the operator sees it
mkdir -p "$T/out"
view() { # NAME ARGS...
	local name=$1
	shift
	"$SPOOLCTL" -c "$CONF" "$@" >"$T/out/$name" 2>&1 ||
		fail "spoolctl $* failed: $(head -c 300 "$T/out/$name")"
}
view list list --all
view list.json list --all --json
view show1 show "$id1"
view show1.json show "$id1" --json
view show2 show "$id2"
view show2.json show "$id2" --json
view status status
view status.json status --json
MAILQ="$(dirname "$SPOOLCTL")/mailq"
SPOOLD_CONFIG="$CONF" "$MAILQ" >"$T/out/mailq" 2>&1 || fail "mailq failed"
"$SPOOLCTL" -c "$CONF" show "$(printf 'x\033[2J\xc2\x9b')" \
	>"$T/out/show-refused" 2>&1 && fail "show of a bad id succeeded"

# 5. the raw files' sender and name reached the log of the pickup above;
# the renamed one is delivered or failed by a last run
start_spoold
wait_spool_empty 20
sleep 1 # the outcome of the last session, logged
stop_spoold

# 6. nothing a terminal acts on, and the hostile text still shown
python3 - "$T"/out/* "$T"/spoold.*.log <<'EOF' || fail "unsafe output (above)"
import sys
BIDI = {0x200e, 0x200f, *range(0x202a, 0x202f), *range(0x2066, 0x206a)}
bad = 0
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        print("%s: not UTF-8 at byte %d: %r" % (path, e.start,
              data[max(0, e.start - 20):e.start + 20]), file=sys.stderr)
        bad += 1
        continue
    for i, ch in enumerate(text):
        c = ord(ch)
        if (c < 0x20 and ch != "\n") or c == 0x7f or 0x80 <= c <= 0x9f \
                or c in BIDI:
            print("%s: U+%04X at %d: %r" % (path, c, i, text[max(0, i - 30):
                  i + 10]), file=sys.stderr)
            bad += 1
            break
sys.exit(1 if bad else 0)
EOF
shown() { # FILE TEXT: the escaped form is in $T/out/FILE
	grep -qF -- "$2" "$T/out/$1" ||
		fail "$1 does not show '$2': $(head -c 800 "$T/out/$1")"
}
# text views: C0 as \xNN, C1 in UTF-8 as \u009b, invalid bytes as \xNN
for f in list show1; do
	shown "$f" '\x1b[2J\x1b]0;owned\x07 \x9b31m \u009b32m del\x7f \u202eevil Müller'
done
shown status 'busy \x1b[2J\x1b]0;owned\x07'
# JSON: cJSON's \u001b, and \u009b, \u007f, \ufffd for the invalid byte
for f in list.json show1.json; do
	shown "$f" '\u001b[2J\u001b]0;owned\u0007 \ufffd31m \u009b32m del\u007f \u202eevil Müller'
done
shown status.json 'busy \u001b[2J'
shown show-refused 'x\x1b[2J\u009b'
cat "$T"/spoold.*.log >"$T/out/spoold.log"
shown spoold.log 'unknown \x1b[2J\x1b]0;owned\x07 \x9b31m \u009b32m'
shown spoold.log 'busy \x1b[2J'
for f in list show2 spoold.log; do
	shown "$f" '\x9b31mroot\u009b0m\u202e\xff@example.org'
done
for f in list.json show2.json; do
	shown "$f" '\ufffd31mroot\u009b0m\u202e\ufffd@example.org'
done
log "ok: $(cat "$T"/out/* | wc -l) lines of output and log, none with" \
	"a control character"

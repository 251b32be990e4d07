#!/bin/bash
# t_refused_input.sh - bad input is refused with the sysexits code the
# contract names, exactly one line on stderr, and no trace in the spool.
. "$(dirname "$0")/lib.sh"

write_conf 25 1s 1M # no daemon: submission alone
make_msg "$T/good" "good" 300 >/dev/null
# one accepted message so the spool exists and is not trivially empty
spoolctl submit ok@example.net <"$T/good" >/dev/null ||
	fail "a valid submit failed"

spool_snapshot() {
	(cd "$SPOOL" && find tmp new cur -printf '%p %s %T@\n' | sort)
}

# expect NAME WANT_RC INPUT_FILE COMMAND...
expect() {
	local name=$1 want=$2 input=$3 rc=0 before after lines
	shift 3
	before=$(spool_snapshot)
	"$@" <"$input" >"$T/out" 2>"$T/err" || rc=$?
	after=$(spool_snapshot)
	lines=$(wc -l <"$T/err")
	log "$name: exit $rc, stderr: $(head -c 200 "$T/err")"
	[ "$rc" = "$want" ] || fail "$name: exit $rc, want $want"
	# one line: a newline-terminated line, or a single unterminated one
	if [ "$lines" != 1 ] &&
		! { [ "$lines" = 0 ] && [ -s "$T/err" ]; }; then
		fail "$name: $lines lines on stderr, want exactly 1"
	fi
	grep -q '[[:alnum:]]' "$T/err" || fail "$name: empty error message"
	[ "$before" = "$after" ] ||
		fail "$name: spool changed: $(diff <(echo "$before") <(echo "$after"))"
}

expect "no recipient" 64 "$T/good" "$SPOOLCTL" -c "$CONF" submit

expect "CR LF in recipient" 65 "$T/good" "$SPOOLCTL" -c "$CONF" submit \
	$'a@b\r\nRCPT TO:<x@y>'

expect "LF in sender" 65 "$T/good" "$SPOOLCTL" -c "$CONF" submit \
	-f $'a@b\nX-Injected: 1' ok@example.net

printf 'From: a@example.org\r\nSubject: nul\r\n\r\nab\0cd\r\n' >"$T/nul"
expect "NUL byte" 65 "$T/nul" "$SPOOLCTL" -c "$CONF" submit ok@example.net

python3 -c '
import sys
line = b"x" * 76 + b"\r\n"
body = line * ((1024 * 1024 + 4096) // len(line) + 1)
sys.stdout.buffer.write(b"From: a@example.org\r\nSubject: big\r\n\r\n" + body)
' >"$T/big"
expect "over max_size" 65 "$T/big" "$SPOOLCTL" -c "$CONF" submit ok@example.net

printf 'From: a@example.org\r\nSubject: nobody\r\n\r\nhi\r\n' >"$T/nordcpt"
expect "sendmail -t without recipients" 64 "$T/nordcpt" \
	env SPOOLD_CONFIG="$CONF" "$SENDMAIL" -t -i

expect "header injected through --subject" 65 /dev/null "$SPOOLCTL" \
	-c "$CONF" submit --to ok@example.net \
	--subject $'hello\r\nBcc: victim@example.com'

[ "$(spool_files new)" = 1 ] || fail "spool new/ should hold only the valid message"
log "ok"

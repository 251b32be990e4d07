#!/bin/bash
# t_refused_input.sh - bad input is refused with the sysexits code the
# contract names, exactly one line on stderr, and no trace in the spool:
# a line break (CR, LF, CRLF, CRLF "Bcc: ...") through every argument of
# submit and sendmail that reaches a header or the envelope, control
# characters and invalid UTF-8 in addresses, addresses one octet over the
# RFC 5321 limits, NUL bytes, a message one byte over max_size, a header
# line that cannot be folded, --wait values out of range, queue ids and
# command names with line breaks (the error line shows them as '?'), and
# configuration files with an over-long line, a '#' inside a value or a
# number that would overflow (78, naming file:line, for spoolctl and
# spoold). What is accepted instead is checked at a sink by
# t_hostile_input.sh.
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

# ---- header injection through every argument ---------------------------
# An argv string cannot hold NUL, so line breaks are what an argument can
# inject; NUL is covered by the message and --body-file cases below.
printf 'Subject: no from\r\n\r\nbody\r\n' >"$T/nofrom"
printf 'From: a@example.org\r\nSubject: with from\r\n\r\nbody\r\n' \
	>"$T/withfrom"
printf 'To: ok@example.net\r\nSubject: with to\r\n\r\nbody\r\n' >"$T/withto"
evil='Bcc: x@evil.example'
vectors=($'\r' $'\n' $'\r\n' $'\r\n'"$evil" $'\n'"$evil" $'\r'"$evil"
	$'\r\n\r\n'"$evil")
SC=("$SPOOLCTL" -c "$CONF")
SM=(env SPOOLD_CONFIG="$CONF" "$SENDMAIL")
n_inject=0
inject() { # WHAT INPUT COMMAND..., with $shown the vector
	local what=$1
	shift
	expect "injection $shown via $what" 65 "$@"
	# a CR would rewrite the caller's terminal line or log
	! grep -q $'\r' "$T/err" ||
		fail "injection via $what: raw CR in the error line"
	n_inject=$((n_inject + 1))
}
for v in "${vectors[@]}"; do
	shown=$(printf '%q' "$v")
	inject "submit RCPT" "$T/good" "${SC[@]}" submit "ok@example.net$v"
	inject "submit -f" "$T/good" "${SC[@]}" submit -f "a@example.org$v" \
		ok@example.net
	inject "submit -t RCPT" "$T/withto" "${SC[@]}" submit -t \
		"ok2@example.net$v"
	inject "submit --to" /dev/null "${SC[@]}" submit \
		--to "ok@example.net$v" --subject hi
	inject "submit --subject" /dev/null "${SC[@]}" submit \
		--to ok@example.net --subject "hello$v"
	inject "submit --from address" /dev/null "${SC[@]}" submit \
		--to ok@example.net --from "a@example.org$v"
	inject "submit --from name" /dev/null "${SC[@]}" submit \
		--to ok@example.net --from "Name$v <a@example.org>"
	inject "sendmail RCPT" "$T/good" "${SM[@]}" -i "ok@example.net$v"
	inject "sendmail -f ADDR" "$T/good" "${SM[@]}" -i \
		-f "a@example.org$v" ok@example.net
	inject "sendmail -fADDR" "$T/good" "${SM[@]}" -i \
		"-fa@example.org$v" ok@example.net
	inject "sendmail -r" "$T/good" "${SM[@]}" -i -r "a@example.org$v" \
		ok@example.net
	inject "sendmail -F (From added)" "$T/nofrom" "${SM[@]}" -i \
		-F "Name$v" ok@example.net
	inject "sendmail -F (message has From)" "$T/withfrom" "${SM[@]}" -i \
		-F "Name$v" ok@example.net
	inject "sendmail -t RCPT" "$T/withto" "${SM[@]}" -t -i \
		"ok2@example.net$v"
done
log "$n_inject injection attempts refused"
# error lines quote what they refuse: still one line, no raw escapes
for args in "show|x"$'\nsecond line\r\e[2J' "delete|x"$'\nDELETE y' \
	$'frob\nsecond line|x'; do
	expect "spoolctl $(printf '%q' "$args")" 64 /dev/null "${SC[@]}" \
		"${args%%|*}" "${args#*|}"
	! grep -q $'[\r\e]' "$T/err" || fail "raw CR or ESC in: $(cat -A "$T/err")"
done

# ---- addresses: control characters, bad UTF-8, one over the limits ------
# addr LOCAL_LEN DOMAIN_LEN: an address of those lengths, labels <= 63
addr() {
	python3 - "$1" "$2" <<'EOF'
import sys
local, dom = int(sys.argv[1]), int(sys.argv[2])
labels = []
while dom - len(".".join(labels + [""])) > 63:
    labels.append("d" * 63)
d = ".".join(labels + ["d" * (dom - len(".".join(labels + [""])))])
assert len(d) == dom, (len(d), dom)
print("l" * local + "@" + d)
EOF
}
l65=$(addr 65 11)     # local part one over 64
a255=$(addr 64 190)   # 255 octets: one over the 254 of a 256-octet path
label64="a@$(printf 'h%.0s' $(seq 1 64)).example"
[ "${#a255}" = 255 ] || fail "test bug: address of ${#a255} octets"
for bad in $'ok\t@example.net' $'ok\x01@example.net' $'ok\x7f@example.net' \
	$'ok\xff@example.net' $'\xc3\x28@example.net' \
	"$l65" "$a255" "$label64" 'a@b@example.net' \
	'ok@' '@example.net' 'ok@exa mple.net' 'a..b@example.net'; do
	shown=$(printf '%q' "$bad")
	expect "address $shown as RCPT" 65 "$T/good" "${SC[@]}" submit "$bad"
	# the limits are refused for the limit, not for something else
	case $bad in
	"$l65") why='local part longer than 64' ;;
	"$a255") why='address too long' ;;
	"$label64") why='label longer than 63' ;;
	*) why='' ;;
	esac
	grep -qF "$why" "$T/err" || fail "$shown: refused for another reason"
	expect "address $shown as -f" 65 "$T/good" "${SC[@]}" submit \
		-f "$bad" ok@example.net
	expect "address $shown as --to" 65 /dev/null "${SC[@]}" submit \
		--to "$bad" --subject hi
	# in a header a tab is folding white space, allowed around the @
	[[ "$bad" == *$'\t'* ]] && continue
	printf 'To: %s\r\nSubject: t\r\n\r\nbody\r\n' "$bad" >"$T/hdrto"
	expect "address $shown in To: with -t" 65 "$T/hdrto" "${SM[@]}" -t -i
done

for w in 0 -5 1e9 abc 86401 18446744073709551617; do
	expect "submit --wait=$w" 64 "$T/good" "${SC[@]}" submit --wait="$w" \
		ok@example.net
done

# ---- the message itself -------------------------------------------------
printf 'body with a \0 NUL\n' >"$T/nulbody"
expect "NUL in --body-file" 65 /dev/null "${SC[@]}" submit \
	--to ok@example.net --subject hi --body-file "$T/nulbody"
expect "NUL through sendmail" 65 "$T/nul" "${SM[@]}" -i ok@example.net
# A header field of 100,000 octets with no white space to fold at cannot
# be sent within SMTP's 998-octet line limit without changing it: refused
# (a body line that long is re-encoded instead, see t_hostile_input.sh).
python3 -c '
import sys
sys.stdout.buffer.write(b"From: a@example.org\r\nX-Long: " + b"x" * 100000 +
                        b"\r\nSubject: s\r\n\r\nbody\r\n")' >"$T/longhdr"
expect "unfoldable 100,000-octet header line" 65 "$T/longhdr" \
	"${SC[@]}" submit ok@example.net
grep -q 'X-Long' "$T/err" || fail "the error does not name the field"

# One byte over max_size, measured on the message as queued (CRLF, with
# Date, From and Message-ID): this one is queued exactly as given.
python3 - "$T/over" $((1024 * 1024 + 1)) <<'EOF'
import sys
path, size = sys.argv[1], int(sys.argv[2])
head = (b"From: a@example.org\r\nTo: ok@example.net\r\nSubject: size\r\n"
        b"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
        b"Message-ID: <size@spool-test.invalid>\r\n\r\n")
body, left = [], size - len(head)
while left > 0:
    n = min(78, left - 2) if left > 80 else left - 2
    body.append(b"y" * max(n, 0) + b"\r\n")
    left -= max(n, 0) + 2
data = head + b"".join(body)
assert len(data) == size, len(data)
open(path, "wb").write(data)
EOF
expect "max_size + 1 byte" 65 "$T/over" "${SC[@]}" submit ok@example.net
grep -q 'too large' "$T/err" || fail "max_size + 1: $(cat "$T/err")"

# ---- configuration ------------------------------------------------------
# conf_with LINE FILE: the test's configuration with LINE appended to its
# last section ([transport local]); sets LINENO_ADDED.
conf_with() {
	cp "$CONF" "$2"
	printf '%s\n' "$1" >>"$2"
	LINENO_ADDED=$(wc -l <"$2")
}
# the longest line inih reads whole is 198 octets plus the newline
long_ok="helo = $(printf 'h%.0s' $(seq 1 191))"
[ "${#long_ok}" = 198 ] || fail "test bug: ${#long_ok}"
conf_with "$long_ok" "$T/conf-198"
"$SPOOLCTL" -c "$T/conf-198" submit ok@example.net <"$T/good" \
	>/dev/null 2>"$T/err" ||
	fail "a 198-octet configuration line was refused: $(cat "$T/err")"
for c in long hash port timeout; do
	case $c in
	long) conf_with "${long_ok}h" "$T/conf-$c" ;;
	hash) conf_with "helo = relay.example # old name" "$T/conf-$c" ;;
	port) conf_with "port = 65561" "$T/conf-$c" ;;
	# 2^64 seconds: must not wrap around to a small number
	timeout) conf_with "timeout = 18446744073709551617s" "$T/conf-$c" ;;
	esac
	where="$T/conf-$c:$LINENO_ADDED:"
	# submit reads only [spool]: the mistake is a warning naming it, and
	# the alarm is queued all the same
	"$SPOOLCTL" -c "$T/conf-$c" submit ok@example.net <"$T/good" \
		>/dev/null 2>"$T/err" ||
		fail "conf $c: spoolctl did not queue: $(cat "$T/err")"
	[ "$(wc -l <"$T/err")" = 1 ] && grep -qF "$where" "$T/err" &&
		grep -q "warning" "$T/err" ||
		fail "conf $c: spoolctl does not warn of $where: $(cat "$T/err")"
	expect "conf $c: spoold" 78 /dev/null timeout 10 "$SPOOLD" \
		-c "$T/conf-$c" -f
	grep -qF "$where" "$T/err" ||
		fail "conf $c: spoold does not name $where: $(cat "$T/err")"
done

[ "$(spool_files new)" = 6 ] ||
	fail "spool new/ should hold the two valid messages and the four" \
		"queued despite a bad line outside [spool]"
log "ok"

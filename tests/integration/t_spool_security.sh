#!/bin/bash
# t_spool_security.sh - what an unprivileged local user can and cannot do
# to the spool of a spoold started by root (which runs as user spoold),
# and where secrets can and cannot go:
#   - no option of spoold, spoolctl or sendmail takes a password, and
#     neither the configuration nor the environment has a key for one
#     (only password_file): 64 or 78, and no "pass" in any --help;
#   - 4 x 50 submissions by nobody through the setgid spoolctl while
#     spoold picks them up at once all exit 0 and arrive once each (a
#     submitter that may not open new/ makes its rename durable through the
#     file it wrote, wherever spoold has moved it by then);
#   - with spoold and both submitters running under umask 000, after
#     submissions by root and by nobody and with messages queued,
#     deferred, held and failed, no file under the spool is readable or
#     writable by others, every file but those waiting in new/ is spoold's
#     own 0600, and every folder has the owner and mode the README lists;
#   - nobody, connected straight to SPOOL/ctl.sock (no spoolctl), is
#     refused HOLD, RELEASE, DELETE, REQUEUE and FLUSH and changes nothing
#     (same folders, same LMDB records), while PING answers (the refusal
#     is the credential check, not an unreachable socket) and root's HOLD
#     through the same client works; an over-long or binary request only
#     costs nobody the connection;
#   - symlink and FIFO entries that a member of the submit group drops
#     into new/ under queue ids (one pointing at a root-only file in spool
#     format) are moved to failed/ unread, a directory is never queued, and
#     nothing of the root-only file is delivered; nobody outside the group
#     cannot drop anything there.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || fail "needs root to act as another user"
id nobody >/dev/null 2>&1 || fail "no user nobody"
command -v setpriv >/dev/null || fail "setpriv (util-linux) missing"
# python3 on root's PATH may live where nobody cannot reach it
SYS_PY=$(PATH=/usr/bin:/bin command -v python3) ||
	skip "no python3 in /usr/bin or /bin for user nobody"

start_sink --reject-rcpt fail@example.net=550 \
	--reject-rcpt defer@example.net=451 --reject-rcpt defer2@example.net=451
write_conf "$SINK_PORT" 1h
setgid_spoolctl

as_nobody() {
	setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups "$@"
}
# a raw writer with the submit group: what a bug in the setgid spoolctl
# would give a local user
as_group_member() {
	setpriv --reuid=nobody --regid="$(id -g nobody)" \
		--groups="$(getent group "$SUBMIT_GROUP" | cut -d: -f3)" "$@"
}
# rc_of COMMAND...: prints the exit status, output to $T/out and $T/err
rc_of() {
	local rc=0
	"$@" >"$T/out" 2>"$T/err" </dev/null || rc=$?
	echo "$rc"
}

# ---- no secret on a command line or in the environment ------------------
for c in "$SPOOLD --password x" "$SPOOLD -p x" "$SPOOLCTL --password x status" \
	"$SPOOLCTL -c $CONF submit --password x a@example.net" \
	"$SPOOLCTL -c $CONF status --password x" \
	"$SENDMAIL -p x a@example.net" "$SENDMAIL -Ax a@example.net"; do
	# shellcheck disable=SC2086
	rc=$(rc_of env SPOOLD_CONFIG="$CONF" $c)
	[ "$rc" = 64 ] || fail "'$c' exited $rc, want 64 (usage)"
	# spoold adds its usage line to getopt's
	[ "$(wc -l <"$T/err")" = 1 ] || [[ "$c" == "$SPOOLD "* ]] ||
		fail "'$c': $(wc -l <"$T/err") lines on stderr, want 1"
done
cp "$CONF" "$T/pw.conf"
printf 'password = hunter2\n' >>"$T/pw.conf"
rc=$(rc_of "$SPOOLCTL" -c "$T/pw.conf" status)
if [ "$rc" != 78 ] || ! grep -q 'password: unknown key' "$T/err"; then
	fail "a password key in the file: exit $rc: $(cat "$T/err")"
fi
! grep -q hunter2 "$T/err" "$T/out" || fail "the password was echoed"
rc=$(rc_of env SPOOLD_TRANSPORT_LOCAL_PASSWORD=hunter2 "$SPOOLCTL" \
	-c "$CONF" status)
[ "$rc" = 78 ] || fail "SPOOLD_TRANSPORT_LOCAL_PASSWORD: exit $rc, want 78"
! grep -q hunter2 "$T/err" "$T/out" || fail "the password was echoed"
for c in "$SPOOLD --help" "$SPOOLCTL --help"; do
	# shellcheck disable=SC2086
	$c >"$T/help" 2>&1 || true
	grep -q usage "$T/help" || fail "'$c' printed no usage"
	! grep -qi pass "$T/help" || fail "'$c' mentions a password option"
done
log "no option, key or variable takes a password"

# ---- file modes under a permissive umask ---------------------------------
# check_modes WHEN: no file readable or writable by others; every file
# spoold's own, writable by it alone, but those waiting in tmp/ and new/
# (0640, group SUBMIT_GROUP; root's are already spoold's); folders with
# the owners and modes of the README's spool section.
check_modes() {
	local bad d want got u=$SPOOLD_USER g=$SUBMIT_GROUP
	bad=$(find "$SPOOL" -type f -perm /006 -printf '%m %u %P\n')
	[ -z "$bad" ] || fail "$1: open to others: $bad"
	bad=$(find "$SPOOL" -path "$SPOOL/new" -prune -o -path "$SPOOL/tmp" \
		-prune -o -type f \( -perm /027 -o ! -user "$u" \) \
		-printf '%m %u %P\n')
	[ -z "$bad" ] || fail "$1: files not spoold's alone: $bad"
	bad=$(find "$SPOOL/new" "$SPOOL/tmp" -type f \
		\( ! -perm 640 -o ! -group "$g" \) -printf '%m %u %g %P\n')
	[ -z "$bad" ] || fail "$1: waiting files not 0640 $g: $bad"
	for d in .:711:$u:$u tmp:3730:$u:$g new:3730:$u:$g cur:700:$u:$u \
		hold:700:$u:$u failed:700:$u:$u state:700:$u:$u; do
		want=${d#*:}
		got=$(stat -c %a:%U:%G "$SPOOL/${d%%:*}")
		[ "$got" = "$want" ] || fail "$1: ${d%%:*} is $got, want $want"
	done
	log "$1: $(find "$SPOOL" -type f | wc -l) files, none open to others;" \
		"owners and modes as documented"
}
umask 000
start_spoold
ids=()
for who in root nobody; do
	for r in ok defer fail; do
		if [ "$who" = root ]; then
			id=$(printf 'Subject: %s\n\nhi\n' "$who-$r" |
				"$SPOOLCTL" -c "$CONF" submit "$r@example.net")
		else
			id=$(printf 'Subject: %s\n\nhi\n' "$who-$r" |
				as_nobody "$SETGID_SPOOLCTL" -c "$CONF" \
					submit "$r@example.net")
		fi || fail "$who could not submit to $r"
		ids+=("$id")
	done
done
printf 'Subject: held\n\nhi\n' |
	as_nobody "$SETGID_SENDMAIL" -C "$CONF" -i defer2@example.net ||
	fail "nobody could not submit through sendmail"
umask 022
def=${ids[1]}
failid=${ids[5]}
# nobody's file is nobody's in new/ (group spoold-submit, 0640); what
# spoold keeps in cur/ is its own copy, which nobody can no longer write
# or truncate
own=$(stat -c '%U %G %a' "$SPOOL/new/${ids[4]}" 2>/dev/null) ||
	own="$(stat -c '%U %a' "$SPOOL/cur/${ids[4]}") cur"
[ "$own" = "nobody $SUBMIT_GROUP 640" ] || [ "$own" = "$SPOOLD_USER 600 cur" ] ||
	fail "nobody's message is $own, want nobody $SUBMIT_GROUP 640 in new/," \
		"$SPOOLD_USER 600 in cur/"

# queue_json: the queue as spoolctl list --json --all prints it
queue_json() {
	spoolctl list --json --all
}
# wait_queue EXPR SECONDS: until EXPR (python, d = queue_json) is true
wait_queue() {
	local deadline=$(($(date +%s) + $2))
	until [ "$(queue_json | sink_tool json "$1")" = True ]; do
		[ "$(date +%s)" -lt "$deadline" ] ||
			fail "queue never reached: $1"
		sleep 0.1
	done
}
wait_queue "len([m for m in d if m['state'] == 'failed']) == 2 and \
len([m for m in d if m['state'] == 'deferred' and m['attempts'] >= 1]) == 3" 30
wait_for_count 2 10
held=$(queue_json | sink_tool json \
	"[m['id'] for m in d if m['recipients'][0]['address'] == 'defer2@example.net'][0]")
spoolctl hold "$held" >/dev/null || fail "root could not hold $held"
check_modes "spoold running, messages queued, deferred, held and failed"

# nobody submitting while spoold picks the files up at once: a submitter
# that may not open new/ makes its rename durable after the file may have
# moved on to cur/, and must still exit 0 for a message that is queued
BURST=4x50
burst_pids=()
for j in 1 2 3 4; do
	for i in $(seq 1 50); do
		printf 'Subject: burst-%d-%d\n\nhi\n' "$j" "$i" |
			as_nobody "$SETGID_SPOOLCTL" -c "$CONF" submit ok@example.net \
			>/dev/null 2>>"$T/burst.err.$j" ||
			echo "burst-$j-$i" >>"$T/burst.failed"
	done &
	burst_pids+=($!)
done
wait "${burst_pids[@]}"
[ ! -s "$T/burst.failed" ] ||
	fail "$(wc -l <"$T/burst.failed") of $BURST submissions by nobody" \
		"failed: $(sort -u "$T"/burst.err.* | head -n 3)"
wait_for_count 202 60
n=$(cat "$SINK_DIR"/*.eml | grep -ac '^Subject: burst-')
u=$(cat "$SINK_DIR"/*.eml | grep -a '^Subject: burst-' | sort -u | wc -l)
[ "$n" = 200 ] && [ "$u" = 200 ] ||
	fail "burst: $n delivered, $u distinct, want 200 each"
log "burst: $BURST submissions by nobody while spoold ran: all exit 0," \
	"200 delivered once each"

# ---- the control socket, spoken to directly -------------------------------
# ctl USER REQUEST: sends REQUEST (bash $'...' escapes allowed) to
# SPOOL/ctl.sock as USER and prints the reply, or "CLOSED" if the daemon
# closed the connection without one.
ctl() {
	local who=$1
	shift
	local run=()
	[ "$who" = root ] || run=(setpriv --reuid="$who" \
		--regid="$(id -g "$who")" --clear-groups)
	"${run[@]}" "$SYS_PY" - "$SPOOL/ctl.sock" "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
req = sys.argv[2].encode("utf-8", "surrogateescape")
try:
    s.sendall(req if req.endswith(b"\n") or len(req) > 60000 else req + b"\n")
    reply = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        reply += b
except ConnectionError:
    reply = b""
print(reply.decode("utf-8", "replace").split("\n")[0] if reply else "CLOSED")
EOF
}
snapshot() {
	(cd "$SPOOL" && find new cur hold failed -printf '%p %s %m %u\n' | sort)
	queue_json | sink_tool json \
		"sorted((m['id'], m['state'], m['attempts'], m['next_attempt'], \
[(r['address'], r['state']) for r in m['recipients']]) for m in d)"
}
before=$(snapshot)
sent_before=$(sink_count)
reply=$(ctl nobody PING)
[[ "$reply" == OK* ]] ||
	fail "nobody cannot reach the daemon ($reply): the test proves nothing"
n_refused=0
for req in "HOLD $def" "DELETE $def" "FLUSH $def" "FLUSH" "RELEASE $held" \
	"DELETE $held" "REQUEUE $failid" "DELETE $failid" \
	"HOLD $def $held $failid" $'DELETE '"$def"$'\r' "delete $def" \
	"HOLD ../../etc/passwd"; do
	reply=$(ctl nobody "$req")
	case $reply in
	"ERR permission denied"* | "ERR unknown request"*) ;;
	*) fail "nobody's '$req' got: $reply" ;;
	esac
	n_refused=$((n_refused + 1))
done
# hostile framing: nothing but a closed connection or an error
reply=$(ctl nobody "$(head -c 70000 /dev/zero | tr '\0' 'A')")
[ "$reply" = CLOSED ] || fail "a 70,000-byte request got: $reply"
reply=$(ctl nobody $'\x01\x02\xff\xfe HOLD '"$def")
[[ "$reply" == ERR* ]] || fail "a binary request got: $reply"
after=$(snapshot)
[ "$before" = "$after" ] ||
	fail "nobody changed the queue: $(diff <(echo "$before") <(echo "$after"))"
[ "$(sink_count)" = "$sent_before" ] || fail "a refused FLUSH delivered mail"
ctl nobody PING | grep -q '^OK' || fail "spoold stopped answering"
log "nobody: $n_refused requests refused over the raw socket, queue unchanged"
# the same client as root works: the refusals above were the uid check
reply=$(ctl root "HOLD $def")
[[ "$reply" == OK* ]] || fail "root's HOLD over the raw socket: $reply"
[ -f "$SPOOL/hold/$def" ] || fail "root's HOLD did not move $def to hold/"
[ "$(ctl root "RELEASE $def")" != CLOSED ] || fail "root's RELEASE failed"

# ---- entries nobody drops into new/ ---------------------------------------
printf 'SPOOLD 1\nS root@example.org\nR thief@example.net\n\nSubject: x\r\n\r\nroot-only secret\r\n' \
	>"$T/root-only"
chmod 600 "$T/root-only"
base=$(queue_json | sink_tool json "sorted(m['id'] for m in d)[0]")
drops=("${base:0:20}aaaa" "${base:0:20}bbbb" "${base:0:20}cccc")
! as_nobody ln -s "$T/root-only" "$SPOOL/new/${drops[0]}" 2>/dev/null ||
	fail "nobody, outside the submit group, could drop a link into new/"
as_group_member ln -s "$T/root-only" "$SPOOL/new/${drops[0]}"
as_group_member mkfifo "$SPOOL/new/${drops[1]}"
as_group_member mkdir "$SPOOL/new/${drops[2]}"
for d in "${drops[0]}" "${drops[1]}"; do
	wait_queue "any(m['id'] == '$d' and m['state'] == 'failed' for m in d)" 40
done
# spoold, not root, may not move another user's folder (that would
# rewrite its ".."): it stays where it was dropped, never queued
queue_json | sink_tool json "any(m['id'] == '${drops[2]}' and \
m['state'] != 'failed' for m in d)" | grep -qx False ||
	fail "a folder dropped into new/ was queued"
ctl nobody PING | grep -q '^OK' || fail "spoold stopped answering"
! grep -rq 'root-only secret' "$SINK_DIR" ||
	fail "the root-only file was delivered"
log "symlink and FIFO in new/ failed unread, a folder never queued;" \
	"nobody alone could not drop them"

stop_spoold
check_modes "spoold stopped"
log "ok"

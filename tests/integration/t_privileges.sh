#!/bin/bash
# t_privileges.sh - the privilege model, with the files and the processes
# themselves:
#   - spoold started by root runs as user spoold for good: real, effective,
#     saved and file-system ids, groups spoold and spoold-submit only, no
#     capability; `[spool] user = root` and a missing user are refused with
#     one line (78); spoold started by another user on spoold's spool says
#     whose it is (77);
#   - nobody and daemon submit through a setgid copy of spoolctl (as
#     spoold-setup installs it); a queued file is its submitter's, group
#     spoold-submit, 0640, and then out of everyone's reach but spoold's:
#     neither user can list new/, read, remove, rename or overwrite a queued
#     file (its own included), enter cur/ or state/, or use spoolctl to
#     show, hold or delete it, with spoold stopped or through its socket;
#     without the setgid bit nobody cannot write the spool at all;
#   - the setgid spoolctl takes nothing from its caller: -c with a file
#     nobody wrote is refused (78), SPOOLD_SPOOL_DIR is ignored with one
#     warning line and the mail goes to the system's spool; submit --wait
#     says it cannot follow the message (75), never a false 0;
#   - a spool of the earlier model (root's, tmp/ and new/ 1733, queued
#     files 0600 of several users, a message in cur/) is adopted at the
#     first start (logged once; not again at the next), takes the new
#     owners and modes, and every message in it is delivered.
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || fail "needs root to act as other users"
for u in nobody daemon; do
	id "$u" >/dev/null 2>&1 || fail "no user $u"
done

start_sink
write_conf "$SINK_PORT" 1s
setgid_spoolctl

as() { # USER COMMAND...
	local u=$1
	shift
	setpriv --reuid="$u" --regid="$(id -g "$u")" --clear-groups "$@"
}
refused() { # WHAT USER COMMAND...: the command must fail
	local what=$1
	shift
	if as "$@" >/dev/null 2>&1; then
		fail "$2 could $what"
	fi
}
spoolctl_rc() { # USER ARGS...: prints the setgid spoolctl's exit status
	local u=$1 rc=0
	shift
	as "$u" "$SETGID_SPOOLCTL" -c "$CONF" "$@" >/dev/null 2>"$T/err" \
		</dev/null || rc=$?
	echo "$rc"
}
# ids_of PID: "Uid Gid Groups CapPrm CapEff CapBnd CapAmb" of a process
ids_of() {
	awk '/^(Uid|Gid|Groups|CapPrm|CapEff|CapAmb):/ {
		$1 = ""; printf "%s|", substr($0, 2) }' "/proc/$1/status"
}

# ---- the daemon's own user --------------------------------------------
uid=$(id -u "$SPOOLD_USER")
gid=$(id -g "$SPOOLD_USER")
sgid=$(getent group "$SUBMIT_GROUP" | cut -d: -f3)
start_spoold
got=$(ids_of "$SPOOLD_PID")
groups=$(printf '%s\n' "$gid" "$sgid" | sort -n | paste -sd' ')
nocap=0000000000000000
want="$uid $uid $uid $uid|$gid $gid $gid $gid|$groups|$nocap|$nocap|$nocap|"
[ "$got" = "$want" ] ||
	fail "spoold runs with Uid|Gid|Groups|CapPrm|CapEff|CapAmb '$got', want '$want'"
log "spoold: uid and gid $SPOOLD_USER everywhere, groups $gid $sgid, no capability"
[ "$(stat -c %U "$SPOOL")" = "$SPOOLD_USER" ] || fail "the spool is not spoold's"
stop_spoold

# spoold started by another user on spoold's spool: whose it is, 77
rc=0
as nobody "$SPOOLD" -c "$CONF" -f >"$T/other.log" 2>&1 || rc=$?
[ "$rc" = 77 ] && [ "$(wc -l <"$T/other.log")" = 1 ] &&
	grep -q "belongs to $SPOOLD_USER, not to nobody" "$T/other.log" ||
	fail "spoold as nobody: exit $rc: $(cat "$T/other.log")"
# root and missing users: one line, 78
for u in root no-such-spoold-user; do
	sed "s/^\[spool\]$/[spool]\nuser = $u/" "$CONF" >"$T/user.conf"
	rc=0
	"$SPOOLD" -c "$T/user.conf" -f >"$T/user.log" 2>&1 || rc=$?
	[ "$rc" = 78 ] && [ "$(wc -l <"$T/user.log")" = 1 ] ||
		fail "[spool] user = $u: exit $rc: $(cat "$T/user.log")"
done
grep -q "useradd --system" "$T/user.log" ||
	fail "a missing user is not explained: $(cat "$T/user.log")"
log "refused: spoold as another user (77), [spool] user root or missing (78)"

# ---- submission through the setgid spoolctl -----------------------------
a=$(printf 'Subject: from nobody\n\nsecret of nobody\n' |
	as nobody "$SETGID_SPOOLCTL" -c "$CONF" submit a@example.net) ||
	fail "nobody cannot submit"
b=$(printf 'Subject: from daemon\n\nsecret of daemon\n' |
	as daemon "$SETGID_SENDMAIL" -C "$CONF" -i b@example.net &&
	ls -t "$SPOOL/new" | grep -vx "$a" | head -n 1) ||
	fail "daemon cannot submit through sendmail"
f="$SPOOL/new/$a"
[ "$(stat -c '%U %G %a' "$f")" = "nobody $SUBMIT_GROUP 640" ] ||
	fail "the queued file is $(stat -c '%U %G %a' "$f"), want nobody $SUBMIT_GROUP 640"
# without the setgid bit, no way in
rc=0
printf 'Subject: x\n\nx\n' | as nobody "$SPOOLCTL" -c "$CONF" submit \
	c@example.net >/dev/null 2>&1 || rc=$?
[ "$rc" = 73 ] || fail "nobody without the setgid bit: exit $rc, want 73"

for u in nobody daemon; do
	refused "list new/" "$u" ls "$SPOOL/new"
	refused "list tmp/" "$u" ls "$SPOOL/tmp"
	refused "list the spool" "$u" ls "$SPOOL"
	refused "read a queued message" "$u" cat "$f"
	refused "remove a queued message" "$u" rm -f "$f"
	refused "rename a queued message" "$u" mv "$f" "$SPOOL/new/mine"
	refused "overwrite a queued message" "$u" sh -c "echo x >'$f'"
	refused "chmod a queued message" "$u" chmod 666 "$f"
	refused "enter cur/" "$u" ls "$SPOOL/cur"
	refused "read the state" "$u" ls "$SPOOL/state"
	refused "drop a file into new/" "$u" sh -c "echo x >'$SPOOL/new/x'"
done
[ -f "$f" ] && grep -q "secret of nobody" "$f" ||
	fail "nobody's queued file changed"
for u in nobody daemon; do
	for cmd in "show $a" "delete $a" "hold $a" "list" "flush $a"; do
		# shellcheck disable=SC2086
		rc=$(spoolctl_rc "$u" $cmd)
		[ "$rc" = 77 ] || fail "$u: spoolctl $cmd exited $rc, want 77"
	done
done
log "submitted as nobody and daemon; neither can reach a queued file"

# ---- no configuration from the caller ------------------------------------
cp "$CONF" "$T/nobody.conf"
chown nobody "$T/nobody.conf"
rc=0
printf 'Subject: x\n\nx\n' | as nobody "$SETGID_SPOOLCTL" -c "$T/nobody.conf" \
	submit c@example.net >/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 78 ] && [ "$(wc -l <"$T/err")" = 1 ] &&
	grep -q "not owned by root" "$T/err" ||
	fail "-c with nobody's file: exit $rc: $(cat "$T/err")"
rc=0
printf 'Subject: x\n\nx\n' | as nobody env SPOOLD_CONFIG="$T/nobody.conf" \
	"$SETGID_SPOOLCTL" submit c@example.net >/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 78 ] || fail "\$SPOOLD_CONFIG of nobody's: exit $rc: $(cat "$T/err")"
mkdir -m 755 "$T/elsewhere"
d=$(printf 'Subject: redirected\n\nx\n' | as nobody env \
	SPOOLD_SPOOL_DIR="$T/elsewhere" SPOOLD_SPOOL_MAX_SIZE=1G \
	"$SETGID_SPOOLCTL" -c "$CONF" submit d@example.net 2>"$T/err") ||
	fail "submit with SPOOLD_* set failed: $(cat "$T/err")"
[ "$(wc -l <"$T/err")" = 1 ] &&
	grep -q "warning: SPOOLD_SPOOL_DIR, SPOOLD_SPOOL_MAX_SIZE ignored" "$T/err" ||
	fail "no one-line warning for SPOOLD_*: $(cat "$T/err")"
[ -f "$SPOOL/new/$d" ] && [ -z "$(ls -A "$T/elsewhere")" ] ||
	fail "SPOOLD_SPOOL_DIR of nobody was followed"
# max_size is the system's (1M here), whatever the caller's environment
rc=0
head -c 1200000 /dev/zero | tr '\0' x | sed 's/^/Subject: big\n\n/' |
	as nobody env SPOOLD_SPOOL_MAX_SIZE=1G "$SETGID_SPOOLCTL" -c "$CONF" \
	submit e@example.net >/dev/null 2>&1 || rc=$?
[ "$rc" = 65 ] || fail "nobody's 1.2 MB message: exit $rc, want 65 (max_size)"
# --wait with no daemon: told so at once, never a false 0
rc=0
printf 'Subject: waited\n\nx\n' | as nobody "$SETGID_SPOOLCTL" -c "$CONF" \
	submit --wait=5 w@example.net >/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 75 ] && grep -q "spoold is not running" "$T/err" ||
	fail "nobody's submit --wait: exit $rc: $(cat "$T/err")"
log "-c and \$SPOOLD_CONFIG of nobody's refused, SPOOLD_* ignored, max_size held"

# ---- with spoold running: its socket refuses, it delivers ----------------
start_spoold
for u in nobody daemon; do
	for cmd in "release $b" "delete $b" "hold $a" "flush"; do
		# shellcheck disable=SC2086
		rc=$(spoolctl_rc "$u" $cmd)
		[ "$rc" = 77 ] || fail "$u (spoold running): spoolctl $cmd exited $rc"
	done
done
wait_for_count 4 20
for r in a b d w; do
	sink_tool envelopes "$SINK_DIR" | grep -F "$r@example.net" >/dev/null ||
		fail "the message to $r@example.net was not delivered"
done
grep -rqa "from userid $(id -u nobody)" "$SINK_DIR" ||
	fail "no Received: from userid of nobody"
stop_spoold
log "spoold delivered the four; its socket refused both users"

# ---- adoption of a spool of the earlier, root-owned model ----------------
OLD="$T/old"
mkdir -m 711 "$OLD"
for d in tmp new; do mkdir -m 1733 "$OLD/$d"; done
for d in cur hold failed state; do mkdir -m 700 "$OLD/$d"; done
chmod 1733 "$OLD/tmp" "$OLD/new"
n=0
for u in nobody daemon root; do
	n=$((n + 1))
	as "$u" sh -c "umask 077; printf 'SPOOLD 1\nS old@example.org\nR old-$u@example.net\n\nSubject: old $u\r\n\r\nqueued before\r\n' >'$OLD/new/old$n'" ||
		fail "cannot write the old spool as $u"
done
# a queue id of now, so that max_age does not fail it
cur_id=$(printf '%014x0000000001' "$(date +%s%6N)")
printf 'SPOOLD 1\nS old@example.org\nR old-cur@example.net\n\nSubject: old cur\r\n\r\nin cur\r\n' \
	>"$OLD/cur/$cur_id"
chmod 600 "$OLD/cur/$cur_id"
sed "s|^dir = .*|dir = $OLD|" "$CONF" >"$T/old.conf"
chmod 644 "$T/old.conf"
before=$(sink_count)
start_spoold "$T/old.conf"
grep -q "adopted spool $OLD for user $SPOOLD_USER" "$SPOOLD_LOG" ||
	fail "no adoption logged"
wait_for_count $((before + 4)) 30
for r in old-nobody old-daemon old-root old-cur; do
	sink_tool envelopes "$SINK_DIR" | grep -F "$r@example.net" >/dev/null ||
		fail "adopted spool: $r@example.net not delivered"
done
stop_spoold
for d in .:711:$SPOOLD_USER:$SPOOLD_USER tmp:3730:$SPOOLD_USER:$SUBMIT_GROUP \
	new:3730:$SPOOLD_USER:$SUBMIT_GROUP cur:700:$SPOOLD_USER:$SPOOLD_USER \
	state:700:$SPOOLD_USER:$SPOOLD_USER; do
	got=$(stat -c %a:%U:%G "$OLD/${d%%:*}")
	[ "$got" = "${d#*:}" ] || fail "adopted: ${d%%:*} is $got, want ${d#*:}"
done
bad=$(find "$OLD" ! -user "$SPOOLD_USER" -printf '%u %P\n')
[ -z "$bad" ] || fail "adopted spool: not spoold's: $bad"
start_spoold "$T/old.conf"
! grep -q adopted "$SPOOLD_LOG" || fail "adopted a second time"
stop_spoold
log "old-model spool adopted once, its 4 messages delivered"
log "ok"

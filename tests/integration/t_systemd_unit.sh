#!/bin/bash
# t_systemd_unit.sh - the unit that cmake --install puts in place passes
# systemd-analyze verify, names the spoold that was built, runs it as its
# own user with no capability, and its spool folder's tmpfiles.d lines
# make the tree that spoolctl init makes.
. "$(dirname "$0")/lib.sh"

command -v systemd-analyze >/dev/null || skip "systemd-analyze missing"
unit="$(dirname "$SPOOLD")/../dist/spoold.service"
[ -f "$unit" ] || fail "no configured unit at $unit"
# verify wants the commands to exist: point them at the built binaries
sed -e "s|^ExecStart=[^ ]*|ExecStart=$SPOOLD|" \
	-e "s|^ExecStartPre=+[^ ]*|ExecStartPre=+$SPOOLCTL|" \
	"$unit" >"$T/spoold.service"
grep -q "^Type=notify" "$T/spoold.service" || fail "the unit is not Type=notify"
grep -q "^ExecReload=.*HUP" "$T/spoold.service" || fail "no reload on SIGHUP"
# the privilege model: its own user, the submit group, no capability, and
# the spool made or adopted by root before the daemon starts
for line in User=spoold Group=spoold SupplementaryGroups=spoold-submit \
	CapabilityBoundingSet= AmbientCapabilities= NoNewPrivileges=yes \
	"ExecStartPre=+$SPOOLCTL init"; do
	grep -qxF -- "$line" "$T/spoold.service" || fail "the unit lacks $line"
done
# the man pages are checked by t_install
if ! systemd-analyze verify --man=no "$T/spoold.service" >"$T/verify.out" 2>&1; then
	fail "systemd-analyze verify: $(cat "$T/verify.out")"
fi
# warnings about the rest of the system are not the unit's
if grep -i "spoold.service" "$T/verify.out"; then
	fail "systemd-analyze verify complains: $(cat "$T/verify.out")"
fi
log "systemd unit verified"

# tmpfiles.d, applied to an empty root: the spool with the owners and
# modes of the README (the unit starts as spoold and cannot make it)
command -v systemd-tmpfiles >/dev/null || fail "systemd-tmpfiles missing"
mkdir -p "$T/root/etc"
cp /etc/passwd /etc/group "$T/root/etc/"
systemd-tmpfiles --create --root="$T/root" \
	"$SPOOL_SRC/dist/spoold.tmpfiles" >"$T/tmpfiles.out" 2>&1 ||
	fail "systemd-tmpfiles: $(cat "$T/tmpfiles.out")"
for d in .:711:spoold:spoold tmp:3730:spoold:spoold-submit \
	new:3730:spoold:spoold-submit cur:700:spoold:spoold \
	hold:700:spoold:spoold failed:700:spoold:spoold state:700:spoold:spoold; do
	got=$(stat -c %a:%U:%G "$T/root/var/spool/spoold/${d%%:*}")
	[ "$got" = "${d#*:}" ] || fail "tmpfiles: ${d%%:*} is $got, want ${d#*:}"
done
log "tmpfiles.d makes the spool as spoolctl init does"

#!/bin/bash
# t_systemd_unit.sh - the unit that cmake --install puts in place passes
# systemd-analyze verify, and names the spoold that was built.
. "$(dirname "$0")/lib.sh"

command -v systemd-analyze >/dev/null || skip "systemd-analyze missing"
unit="$(dirname "$SPOOLD")/../dist/spoold.service"
[ -f "$unit" ] || fail "no configured unit at $unit"
# verify wants ExecStart to exist: point it at the built binary
sed "s|^ExecStart=[^ ]*|ExecStart=$SPOOLD|" "$unit" >"$T/spoold.service"
grep -q "^Type=notify" "$T/spoold.service" || fail "the unit is not Type=notify"
grep -q "^ExecReload=.*HUP" "$T/spoold.service" || fail "no reload on SIGHUP"
# the man pages are checked by t_install
if ! systemd-analyze verify --man=no "$T/spoold.service" >"$T/verify.out" 2>&1; then
	fail "systemd-analyze verify: $(cat "$T/verify.out")"
fi
# warnings about the rest of the system are not the unit's
if grep -i "spoold.service" "$T/verify.out"; then
	fail "systemd-analyze verify complains: $(cat "$T/verify.out")"
fi
log "systemd unit verified"

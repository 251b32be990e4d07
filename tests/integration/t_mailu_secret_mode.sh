#!/bin/bash
# t_mailu_secret_mode.sh - a password_file readable by group or others is
# refused at start: spoold exits non-zero within a few seconds, and its
# stderr names the file and says "readable by group or others" (never the
# token). With mode 0600 the same configuration starts and delivers to
# Mailu; the token is in no log and no spoolctl output.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_mailu.sh"

REFUSE_WITHIN_MS=5000

mailu_setup
write_mailu_conf --tls starttls --route "mailu, local"

# refused MODE: spoold must not start with the token file in MODE.
refused() {
	local mode=$1 rc=0 t0 ms
	mailu_client_token "$MAILU_TOKEN" "$mode"
	t0=$(date +%s%N)
	# bounded: a spoold that wrongly starts is stopped after 10 s
	timeout 10 "$SPOOLD" -c "$CONF" -f >"$T/refused-$mode.out" \
		2>"$T/refused-$mode.log" || rc=$?
	ms=$(ms_since "$t0")
	[ "$rc" != 0 ] || fail "mode $mode: spoold exited 0"
	[ "$rc" != 124 ] || fail "mode $mode: spoold started (killed after 10 s)"
	[ "$ms" -le "$REFUSE_WITHIN_MS" ] ||
		fail "mode $mode: spoold took $ms ms to refuse"
	grep -qF -- "$MAILU_TOKEN_FILE" "$T/refused-$mode.log" ||
		fail "mode $mode: stderr does not name $MAILU_TOKEN_FILE:" \
			"$(cat "$T/refused-$mode.log")"
	grep -q 'readable by group or others' "$T/refused-$mode.log" ||
		fail "mode $mode: stderr does not say 'readable by group or" \
			"others': $(cat "$T/refused-$mode.log")"
	no_secret_in "$MAILU_TOKEN" "spoold's stderr" "$T/refused-$mode.log" \
		"$T/refused-$mode.out"
	log "mode $mode refused in $ms ms (status $rc):" \
		"$(head -c 300 "$T/refused-$mode.log")"
}

refused 644
refused 640
refused 604
refused 660

# 0600: starts and delivers
mailu_client_token "$MAILU_TOKEN" 600
start_spoold
wait_probed mailu 10
out=$(submit_msg secret-ok)
id=${out%% *}
mid=${out#* }
wait_in_sink "$MAILU_SINK_DIR" "$mid" 10 >/dev/null
check_delivery mailu secret-ok "$mid"
spoolctl status >"$T/out.status" 2>&1 || true
spoolctl status --json >"$T/out.status.json" 2>&1 || true
spoolctl list --json --all >"$T/out.list.json" 2>&1 || true
spoolctl show "$id" --json >"$T/out.show.json" 2>&1 || true
stop_spoold
no_secret_in "$MAILU_TOKEN" "spoolctl's output" "$T"/out.*
no_secret_in "$MAILU_TOKEN" "spoold's log" "$T"/spoold.*.log
log "ok"

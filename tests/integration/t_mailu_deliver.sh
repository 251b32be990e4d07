#!/bin/bash
# t_mailu_deliver.sh - through the Mailu stand-in (Dovecot submission with
# AUTH), over STARTTLS and over implicit TLS: 20 messages each, submitted
# one at a time, every one at Mailu's sink (none at the local relay) within
# 10 s (a STARTTLS stall would show here), with the queued bytes and the
# transport's envelope sender, and over TLS with AUTH (Dovecot's Received:
# says ESMTPSA; its log shows every login over TLS). The token never
# appears in spoold's log, in spoolctl's output, or in the command line or
# environment of spoold, spoolctl or any child of theirs while they run.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_mailu.sh"

N=20
# one message, from submit to Mailu's sink; libESMTP's STARTTLS over
# TLS 1.3 stalls until the read timeout (5 s here) and more
MAX_MS=10000

mailu_setup

# run_mode TLS: N messages in a row with tls = TLS, each checked.
run_mode() {
	local tls=$1 tag id mid ms max=0 mark before logins
	mark=$(dovecot_log_mark)
	before=$(sink_count "$MAILU_SINK_DIR")
	write_mailu_conf --tls "$tls" --spool "$T/spool-$tls"
	start_spoold
	wait_probed mailu 10
	# 800 bytes to 16 KiB: under libESMTP's 2 KiB buffer and over it
	make_msgs "$tls" "$N" 800 >"$T/msgs.$tls"
	while read -r tag mid; do
		id=$(submit_file "$tag")
		echo "$id" >>"$T/ids"
		ms=$(wait_in_sink "$MAILU_SINK_DIR" "$mid" $((MAX_MS / 1000)))
		[ "$ms" -gt "$max" ] && max=$ms
		echo "$tag $mid $T/$tag.eml" >>"$T/sent.$tls"
	done <"$T/msgs.$tls"
	log "$tls: $N messages one at a time, slowest $max ms"
	sleep 1 # a duplicate would arrive now
	[ "$(sink_count "$MAILU_SINK_DIR")" = $((before + N)) ] ||
		fail "$tls: Mailu's sink has $(sink_count "$MAILU_SINK_DIR")" \
			"transactions, want $((before + N))"
	[ "$(sink_count "$LOCAL_SINK_DIR")" = 0 ] ||
		fail "$tls: $(sink_count "$LOCAL_SINK_DIR") message(s) took the local relay"
	verify_at mailu "$T/sent.$tls"

	# Dovecot's view: every login over TLS, none refused, all relayed
	dovecot_log_since "$mark" >"$T/dovecot.$tls"
	logins=$(grep -c 'submission-login: Info: Login: ' "$T/dovecot.$tls" ||
		true)
	[ "$logins" -ge 1 ] || fail "$tls: Dovecot logged no login"
	! grep 'Login: ' "$T/dovecot.$tls" | grep -v ', TLS' ||
		fail "$tls: a login without TLS"
	! grep -Ei 'auth failed|Aborted login|SSL_accept|Error:' \
		"$T/dovecot.$tls" || fail "$tls: Dovecot logged a failure"
	[ "$(grep -c 'Successfully relayed' "$T/dovecot.$tls")" = "$N" ] ||
		fail "$tls: Dovecot did not relay $N messages"
	log "$tls: $logins Dovecot login(s), all over TLS"

	[ "$(grep -cE 'transport=mailu status=sent' "$SPOOLD_LOG")" = "$N" ] ||
		fail "$tls: spoold did not log $N sends through mailu"
	! grep -E 'transport=local|relay failed|status=(deferred|failed)' \
		"$SPOOLD_LOG" || fail "$tls: spoold logged a failure"
	secrets_check "$tls"
	stop_spoold
}

# secrets_check TAG: spoolctl's output and spoold's logs hold no token.
secrets_check() {
	local id
	spoolctl status >"$T/out.$1.status" 2>&1 || true
	spoolctl status --json >"$T/out.$1.status.json" 2>&1 || true
	spoolctl list --json --all >"$T/out.$1.list.json" 2>&1 || true
	spoolctl list --all >"$T/out.$1.list" 2>&1 || true
	# delivered messages may be gone: only the output is of interest
	while read -r id; do
		spoolctl show "$id" --json >>"$T/out.$1.show" 2>&1 || true
	done <"$T/ids"
	no_secret_in "$MAILU_TOKEN" "spoolctl's output" "$T"/out.*
	no_secret_in "$MAILU_TOKEN" "spoold's log" "$T"/spoold.*.log
}

watch_cmdlines_start "$MAILU_TOKEN"
run_mode starttls
run_mode implicit
watch_cmdlines_stop
no_secret_in "$MAILU_TOKEN" "Dovecot's log" "$T/dovecot.log"
log "ok"

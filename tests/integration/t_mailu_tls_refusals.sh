#!/bin/bash
# t_mailu_tls_refusals.sh - TLS fails closed. With route = mailu only, each
# of these keeps the message queued, gives Mailu's sink nothing, sends no
# AUTH and no MAIL (Dovecot logs no login, only "no auth attempts"), and
# spoold names the TLS reason:
#   starttls-absent     tls = starttls, Dovecot offers no STARTTLS (the AUTH
#                       it offers in the clear on loopback must not be used)
#   starttls-untrusted  tls = starttls, certificate from an unrelated CA
#   starttls-wrongname  tls = starttls, certificate for wrong.example
#   implicit-untrusted  tls = implicit, certificate from an unrelated CA
#   implicit-wrongname  tls = implicit, certificate for wrong.example
# Then, with the right certificate back, every one of them is delivered:
# nothing was lost, and the refusals were about TLS alone.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_mailu.sh"

ATTEMPT_WITHIN=15
TLS_WORDS='tls|ssl|certificate|starttls|handshake|verif'

mailu_setup
stop_nginx # the probe is not the subject here: mailu must be tried anyway

# refusal NAME TLS [start_dovecot options...]
refusal() {
	local name=$1 tls=$2 mark out id mid err line
	shift 2
	stop_dovecot
	start_dovecot "$@"
	mark=$(dovecot_log_mark)
	write_mailu_conf --tls "$tls" --route mailu --spool "$T/spool-$name"
	start_spoold
	out=$(submit_msg "$name")
	id=${out%% *}
	mid=${out#* }
	echo "$name $tls $id $mid" >>"$T/refused"
	err=$(wait_attempted "$id" "$ATTEMPT_WITHIN")
	log "$name: queued, last_error: $err"
	sleep 2 # retries (1s, 2s) get their chance to go wrong
	stop_spoold

	! in_sink "$MAILU_SINK_DIR" "$mid" || fail "$name: Mailu's sink got it"
	[ "$(sink_count "$MAILU_SINK_DIR")" = 0 ] ||
		fail "$name: Mailu's sink is not empty"
	[ "$(sink_count "$LOCAL_SINK_DIR")" = 0 ] ||
		fail "$name: the local relay got mail"
	[ "$(spool_files new cur)" = 1 ] ||
		fail "$name: $(spool_files new cur) spool files, want 1"
	echo "$err" | grep -qiE "$TLS_WORDS" ||
		fail "$name: last_error names no TLS reason: $err"
	line=$(grep -m1 'transport=mailu relay failed' "$SPOOLD_LOG") ||
		fail "$name: no 'transport=mailu relay failed' log line"
	echo "$line" | grep -qiE "$TLS_WORDS" ||
		fail "$name: spoold's log names no TLS reason: $line"
	log "$name: $line"

	# Dovecot's side: connections, never a login or a relayed message
	dovecot_log_since "$mark" >"$T/dovecot.$name"
	grep -q 'no auth attempts' "$T/dovecot.$name" ||
		fail "$name: Dovecot saw no connection given up before AUTH:" \
			"$(cat "$T/dovecot.$name")"
	! grep -E 'Login: |auth failed|Password mismatch|Successfully relayed' \
		"$T/dovecot.$name" || fail "$name: AUTH or mail reached Dovecot"
}

refusal starttls-absent starttls --no-starttls
refusal starttls-untrusted starttls --cert untrusted
refusal starttls-wrongname starttls --cert wrongname
refusal implicit-untrusted implicit --cert untrusted
refusal implicit-wrongname implicit --cert wrongname
no_secret_in "$MAILU_TOKEN" "spoold's log" "$T"/spoold.*.log

# The right certificate again: each queued message goes out to Mailu.
stop_dovecot
start_dovecot
while read -r name tls id mid; do
	write_mailu_conf --tls "$tls" --route mailu --spool "$T/spool-$name"
	start_spoold
	spoolctl flush >/dev/null || fail "spoolctl flush exited $?"
	wait_in_sink "$MAILU_SINK_DIR" "$mid" 10 >/dev/null
	echo "$name $mid $T/$name.eml" >>"$T/expect.mailu"
	stop_spoold
	log "$name ($id) delivered with the right certificate"
done <"$T/refused"
verify_at mailu "$T/expect.mailu"
log "ok"

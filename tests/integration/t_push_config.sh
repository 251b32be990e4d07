#!/usr/bin/env bash
# t_push_config: spoold refuses at start (78, one line naming the
# transport and key) a push transport it could not use safely: http:// to
# another host, a token_file readable by others, a missing room or chat_id,
# a priority off the service's scale, a priority for a service that has
# none; it accepts http:// to loopback. No server is needed: spoold stops
# before delivering anything.
. "$(dirname "$0")/lib.sh"

SPOOL="$T/spool"
(umask 077 && echo "tok-$(openssl rand -hex 8)" >"$T/ok.token")
cp "$T/ok.token" "$T/open.token"
chmod 644 "$T/open.token"
spoold_owns "$T/ok.token" "$T/open.token"

# refuse WANT SECTION-LINES...: spoold -c on a file with a transport t made
# of the lines must exit 78 with WANT (a regexp) in its one line.
refuse() {
	local want=$1 out rc=0
	shift
	printf '[spool]\ndir = %s\n\n[delivery]\nroute = t\n\n[transport t]\n' \
		"$SPOOL" >"$T/c.conf"
	printf '%s\n' "$@" >>"$T/c.conf"
	out=$(timeout 10 "$SPOOLD" -c "$T/c.conf" -f 2>&1) || rc=$?
	[ "$rc" = 78 ] || fail "exit $rc, want 78, for: $* ($out)"
	echo "$out" | grep -qE -- "$want" || fail "'$want' not in: $out"
	[ "$(echo "$out" | wc -l)" = 1 ] || fail "more than one line: $out"
	log "refused: $out"
}

refuse 'transport t: url: http:// is refused except to this host' \
	'type = ntfy' 'url = http://ntfy.example.org/alarms'
refuse 'transport t: url: http:// is refused' \
	'type = webhook' 'url = http://hooks.example.org/hook'
refuse 'not an https:// URL' 'type = ntfy' 'url = ftp://example.org/x'
refuse "open.token: readable by group or others" \
	'type = gotify' 'url = https://gotify.example.org' \
	"token_file = $T/open.token"
refuse '\[transport t\] room: a matrix transport needs it' \
	'type = matrix' 'url = https://matrix.example.org' \
	"token_file = $T/ok.token"
refuse '\[transport t\] chat_id: a telegram transport needs it' \
	'type = telegram' "token_file = $T/ok.token"
refuse '\[transport t\] token_file: a telegram transport needs it' \
	'type = telegram' 'chat_id = 42'
refuse 'priority: ntfy takes 1 to 5' \
	'type = ntfy' 'url = https://ntfy.example.org/a' 'priority = 7'
refuse 'priority: telegram has none' \
	'type = telegram' 'chat_id = 42' "token_file = $T/ok.token" \
	'priority = 3'
refuse 'is not smtp, maildir, ntfy, gotify, matrix, telegram or webhook' \
	'type = slack'

# http:// to loopback is fine: spoold starts
cat >"$T/ok.conf" <<CONF
[spool]
dir = $SPOOL

[delivery]
route = a, b

[transport a]
type = ntfy
url = http://127.0.0.1:9/alarms

[transport b]
type = webhook
url = http://localhost:9/hook
token_file = $T/ok.token
CONF
start_spoold "$T/ok.conf"
stop_spoold
log "PASS"

# shellcheck shell=bash
# lib_push.sh - the push services (ntfy, Gotify, Matrix, Telegram, a
# webhook) as push_standin.py behind the Mailu stand-in's nginx, which
# gives them TLS from the test CA: https://localhost:$NGINX_PORT/<service>/.
# A second nginx server on PUSH_BAD_PORT serves the same services with a
# certificate from an unrelated CA. Source it after lib.sh and
# lib_mailu.sh.

PUSH_STANDIN_PY="$T_LIB_DIR/push_standin.py"
PUSH_DIR="$T/push"
PUSH_ROOM='!alarms:example.org'
PUSH_CHAT=-1001234567
# the fleet's alarm, as a systemd OnFailure= script sends it: UTF-8,
# 8-bit, no MIME header, no Date
PUSH_ALARM_SUBJECT='[node7] nginx.service failed ✗'

push_require() {
	local c
	for c in nginx openssl curl python3; do
		command -v "$c" >/dev/null ||
			skip "$c missing (tools/install-deps installs it)"
	done
}

# _push_locations PORT: nginx locations proxying the services to PORT.
_push_locations() {
	cat <<NGX
    location ~ ^/(ntfy|gotify|matrix|telegram|webhook)/ {
      proxy_pass http://127.0.0.1:$1;
      proxy_http_version 1.1;
      proxy_next_upstream off;
      proxy_read_timeout 60s;
      client_max_body_size 2m;
      # the stand-in's log is the record; nginx's would hold the
      # Telegram token of the URL, as Telegram's own logs do
      access_log off;
    }
NGX
}

# push_setup: certificates, tokens (push_token SERVICE; token files
# $T/<service>.token, mode 600), the stand-in, and nginx with the good
# certificate on NGINX_PORT and the untrusted one on PUSH_BAD_PORT.
push_setup() {
	local s pid
	push_require
	[ -n "${PKI:-}" ] || mailu_make_pki
	PUSH_PORT=$(free_port)
	PUSH_BAD_PORT=$(free_port)
	mkdir -p "$PUSH_DIR"
	PUSH_TOKEN_NTFY=tk_$(openssl rand -hex 12)
	PUSH_TOKEN_GOTIFY=A$(openssl rand -hex 7)
	PUSH_TOKEN_MATRIX=syt_$(openssl rand -hex 16)
	PUSH_TOKEN_TELEGRAM=$((RANDOM + 100000)):AA$(openssl rand -hex 16)
	PUSH_TOKEN_WEBHOOK=wh-$(openssl rand -hex 16)
	for s in ntfy gotify matrix telegram webhook; do
		push_client_token "$s" "$(push_token "$s")"
	done
	push_control '{}'
	python3 "$PUSH_STANDIN_PY" --port "$PUSH_PORT" --dir "$PUSH_DIR" \
		>"$T/push-standin.log" 2>&1 &
	pid=$!
	T_PIDS+=("push-standin $pid")
	wait_log_line "$T/push-standin.log" 'push_standin ready' 10 "$pid" ||
		fail "the push stand-in did not start"
	NGINX_EXTRA_LOCATIONS=$(_push_locations "$PUSH_PORT")
	NGINX_EXTRA_SERVERS="  server {
    listen 127.0.0.1:$PUSH_BAD_PORT ssl;
    server_name localhost;
    ssl_certificate $PKI/untrusted.crt;
    ssl_certificate_key $PKI/untrusted.key;
$NGINX_EXTRA_LOCATIONS
  }"
	start_nginx
	wait_port "$PUSH_BAD_PORT" 10 || fail "nginx not on $PUSH_BAD_PORT"
}

# push_token SERVICE: the token the stand-in expects.
push_token() {
	local v="PUSH_TOKEN_${1^^}"
	echo "${!v}"
}

# push_client_token SERVICE TOKEN: spoold's token_file for SERVICE.
push_client_token() {
	(umask 077 && printf '%s\n' "$2" >"$T/$1.token.tmp")
	# the secret is the daemon's user's, as the README says
	spoold_owns "$T/$1.token.tmp"
	mv -f "$T/$1.token.tmp" "$T/$1.token"
}

# push_control FAULTS_JSON: the stand-in's tokens, room, chat and faults
# (e.g. '{"ntfy": {"status": 429, "retry_after": "4"}}').
push_control() {
	python3 - "$PUSH_DIR/control.json" "$1" "$PUSH_TOKEN_NTFY" \
		"$PUSH_TOKEN_GOTIFY" "$PUSH_TOKEN_MATRIX" "$PUSH_TOKEN_TELEGRAM" \
		"$PUSH_TOKEN_WEBHOOK" "$PUSH_ROOM" "$PUSH_CHAT" <<'PY'
import json, os, sys
a = sys.argv
d = {"tokens": dict(zip(("ntfy", "gotify", "matrix", "telegram", "webhook"),
                        a[3:8])),
     "rooms": {"matrix": a[8]}, "chats": {"telegram": a[9]},
     "fault": json.loads(a[2])}
with open(a[1] + ".tmp", "w") as f:
    json.dump(d, f)
os.replace(a[1] + ".tmp", a[1])
PY
}

# push_sections [PORT]: the [transport ...] sections of the five services
# at https://localhost:PORT (default NGINX_PORT).
push_sections() {
	local base="https://localhost:${1:-$NGINX_PORT}"
	cat <<CONF
[transport ntfy]
type = ntfy
url = $base/ntfy/alarms
token_file = $T/ntfy.token
ca_file = $MAILU_CA
timeout = 3s
connect_timeout = 2s

[transport gotify]
type = gotify
url = $base/gotify
token_file = $T/gotify.token
ca_file = $MAILU_CA
timeout = 3s

[transport matrix]
type = matrix
url = $base/matrix
room = $PUSH_ROOM
token_file = $T/matrix.token
ca_file = $MAILU_CA
timeout = 3s

[transport telegram]
type = telegram
url = $base/telegram
chat_id = $PUSH_CHAT
token_file = $T/telegram.token
ca_file = $MAILU_CA
timeout = 3s

[transport webhook]
type = webhook
url = $base/webhook/hook
token_file = $T/webhook.token
ca_file = $MAILU_CA
timeout = 3s
CONF
}

# write_push_conf ROUTE [RETRY] [PORT]: $T/spoold.conf with the five
# services; sets CONF and SPOOL.
write_push_conf() {
	SPOOL="$T/spool"
	CONF="$T/spoold.conf"
	{
		printf '[spool]\ndir = %s\n\n[delivery]\nroute = %s\n' \
			"$SPOOL" "$1"
		printf 'concurrency = 2\nretry = %s\nmax_age = 1h\n\n' \
			"${2:-1s, 2s}"
		push_sections "${3:-}"
	} >"$CONF"
}

# push_alarm FILE: writes the fleet's alarm to FILE.
push_alarm() {
	printf '%s\n' "From: alarm@node7.example.org" "To: ops@example.net" \
		"Subject: $PUSH_ALARM_SUBJECT" "" \
		"× nginx.service - A high performance web server" \
		"     Loaded: loaded (/lib/systemd/system/nginx.service; enabled)" \
		"     Active: failed (Result: exit-code) since Tue 2026-11-24 10:00:00 UTC" \
		"    Process: 812 ExecStart=/usr/sbin/nginx (code=exited, status=1/FAILURE)" \
		"Nov 24 10:00:00 node7 nginx[812]: bind() to 0.0.0.0:80 failed (98: Address already in use)" \
		>"$1"
}

# push_count SERVICE [events]: requests of SERVICE the stand-in saw, or
# the notifications it accepted.
push_count() {
	local f="$PUSH_DIR/${2:-requests}.jsonl"
	if [ -f "$f" ]; then
		grep -c "\"service\": \"$1\"" "$f" || true
	else
		echo 0
	fi
}

# wait_push_event SERVICE N SECONDS: until the stand-in holds N
# notifications of SERVICE.
wait_push_event() {
	local deadline=$(($(date +%s) + $3))
	until [ "$(push_count "$1" events)" -ge "$2" ]; do
		spoold_alive
		[ "$(date +%s)" -lt "$deadline" ] ||
			fail "$1: $(push_count "$1" events) notification(s)," \
				"not $2, after $3 s (queue: $(spoolctl list 2>&1 | tail -3))"
		sleep 0.1
	done
}

# push_no_violations: no request broke its service's API.
push_no_violations() {
	[ -f "$PUSH_DIR/requests.jsonl" ] || return 0
	python3 - "$PUSH_DIR/requests.jsonl" <<'PY' || fail "API violations"
import json, sys
bad = [r for r in map(json.loads, open(sys.argv[1])) if r["violations"]]
for r in bad:
    print("%s %s: %s" % (r["method"], r["path"], r["violations"]),
          file=sys.stderr)
sys.exit(1 if bad else 0)
PY
}

# push_no_token_anywhere: no token (nor its URL-encoded form) in any of
# spoold's logs, nor in list, show and status output.
push_no_token_anywhere() {
	local s tok id out="$T/outputs.txt"
	{
		spoolctl list --all || true
		spoolctl list --all --json || true
		spoolctl status || true
		spoolctl status --json || true
		for id in $(spoolctl list --all --json | sink_tool json \
			"' '.join(m['id'] for m in d)"); do
			spoolctl show "$id" || true
			spoolctl show "$id" --json || true
		done
	} >"$out" 2>&1
	for s in ntfy gotify matrix telegram webhook; do
		tok=$(push_token "$s")
		no_secret_in "$tok" "spoold's logs or spoolctl's output" \
			"$T"/spoold.*.log "$out"
		no_secret_in "${tok//:/%3A}" "spoold's logs or spoolctl's output" \
			"$T"/spoold.*.log "$out"
	done
}

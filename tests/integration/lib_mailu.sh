# shellcheck shell=bash
# lib_mailu.sh - a "Mailu stand-in" made of real Debian parts, for the
# TLS/AUTH/probe/failover tests. Source it after lib.sh.
#
# What Mailu's front offers a spoold, rebuilt on 127.0.0.1:
#   - Dovecot submission (what Mailu runs for 587/465): STARTTLS on
#     DC_STARTTLS_PORT, implicit TLS on DC_IMPLICIT_PORT, AUTH PLAIN/LOGIN
#     for MAILU_USER with a token from a passwd-file, relaying what it
#     accepts to the capture sink MAILU_SINK_DIR;
#   - nginx on NGINX_PORT: HTTPS, "/" answers 200 and "/health" 204;
#   - a test CA ($MAILU_CA) that signed a certificate for "localhost", plus
#     one certificate from an unrelated CA and one for a wrong host name;
#   - a second capture sink LOCAL_SINK_DIR playing the local relay.
# write_mailu_conf points spoold at all of it. Everything is stopped by
# lib.sh's cleanup (T_CLEANUP_HOOKS), whatever the test did.
#
# Needs root (Dovecot's master), dovecot-core, dovecot-submissiond,
# nginx-light, openssl and curl; mailu_require skips the test (77) without
# them.

MAILU_USER=no-reply@example.org
# distinct from MAILU_USER, so a test sees which sender a relay used
MAILU_SENDER=alarm@host.example.org
MAILU_RCPT=ops@example.net
DC_DIR="$T/dc"
DC_PID=""
NG_PID=""

# ---- requirements ---------------------------------------------------------

mailu_require() {
	[ "$(id -u)" = 0 ] || skip "the Mailu stand-in needs root (Dovecot)"
	local c
	for c in dovecot nginx openssl curl; do
		command -v "$c" >/dev/null ||
			skip "$c missing (tools/install-deps installs it)"
	done
	if [ ! -x /usr/lib/dovecot/submission ] ||
		[ ! -x /usr/lib/dovecot/submission-login ]; then
		skip "dovecot-submissiond missing"
	fi
	# Dovecot's own users, and the unprivileged owner of the mail session
	for c in dovecot dovenull nobody; do
		getent passwd "$c" >/dev/null || skip "no user $c"
	done
	getent group nogroup >/dev/null || skip "no group nogroup"
}

# ---- certificates ---------------------------------------------------------

# _pki_ca NAME SUBJECT: a self-signed CA in $PKI/NAME.{crt,key}.
_pki_ca() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-nodes -days 2 -subj "/CN=$2" \
		-keyout "$PKI/$1.key" -out "$PKI/$1.crt" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		>>"$T/openssl.log" 2>&1 || fail "openssl: CA $1"
}

# _pki_cert NAME CA SAN: a server certificate signed by CA for SAN.
_pki_cert() {
	local name=$1 ca=$2 san=$3 cn
	cn=${san%%,*}
	cn=${cn#DNS:}
	printf '%s\n' "subjectAltName=$san" \
		"basicConstraints=critical,CA:FALSE" \
		"keyUsage=critical,digitalSignature" \
		"extendedKeyUsage=serverAuth" >"$PKI/$name.ext"
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-nodes -subj "/CN=$cn" -keyout "$PKI/$name.key" \
		-out "$PKI/$name.csr" >>"$T/openssl.log" 2>&1 ||
		fail "openssl: request for $name"
	openssl x509 -req -in "$PKI/$name.csr" -days 2 \
		-CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
		-extfile "$PKI/$name.ext" -out "$PKI/$name.crt" \
		>>"$T/openssl.log" 2>&1 || fail "openssl: certificate $name"
}

# mailu_make_pki: generated per test, so nothing secret or expiring is
# checked in. Sets PKI and MAILU_CA. Certificates (in $PKI/NAME.crt):
#   localhost  test CA, SAN DNS:localhost, IP:127.0.0.1  (the good one)
#   untrusted  an unrelated CA, same names
#   wrongname  test CA, SAN DNS:wrong.example only
mailu_make_pki() {
	PKI="$T/pki"
	mkdir -p "$PKI"
	_pki_ca ca "spoold test CA"
	_pki_ca rogue "unrelated test CA"
	_pki_cert localhost ca "DNS:localhost,IP:127.0.0.1"
	_pki_cert untrusted rogue "DNS:localhost,IP:127.0.0.1"
	_pki_cert wrongname ca "DNS:wrong.example"
	MAILU_CA="$PKI/ca.crt"
	openssl verify -CAfile "$MAILU_CA" -verify_hostname localhost \
		"$PKI/localhost.crt" >>"$T/openssl.log" 2>&1 ||
		fail "the test CA does not verify its own localhost certificate"
}

# ---- tokens ---------------------------------------------------------------

# new_token: a random token, different in every test run.
new_token() {
	echo "tok-$(openssl rand -hex 16)"
}

# mailu_server_token TOKEN: the token Dovecot accepts for MAILU_USER.
# Dovecot re-reads a passwd-file only when its mtime (whole seconds) or
# size changed since the last read, so a same-length token written in the
# same second would go unnoticed: the mtime is moved on by hand then.
mailu_server_token() {
	local f="$DC_DIR/users" old=0 new
	mkdir -p "$DC_DIR"
	# Dovecot's auth process runs as user dovecot and must read the file,
	# whatever the umask
	chmod 755 "$DC_DIR"
	[ -f "$f" ] && old=$(stat -c %Y "$f")
	printf '%s:{PLAIN}%s::::::\n' "$MAILU_USER" "$1" >"$f.tmp"
	chmod 644 "$f.tmp"
	mv -f "$f.tmp" "$f"
	new=$(stat -c %Y "$f")
	[ "$new" != "$old" ] || touch -d "@$((old + 1))" "$f"
}

# mailu_client_token TOKEN [MODE]: spoold's password_file, written to a
# new file and renamed over the old one (the same path), as an operator's
# rotation would. MODE defaults to 600.
mailu_client_token() {
	MAILU_TOKEN_FILE="$T/mailu.token"
	(umask 077 && printf '%s\n' "$1" >"$MAILU_TOKEN_FILE.tmp")
	chmod "${2:-600}" "$MAILU_TOKEN_FILE.tmp"
	# the secret is the daemon's user's, as the README says
	spoold_owns "$MAILU_TOKEN_FILE.tmp"
	mv -f "$MAILU_TOKEN_FILE.tmp" "$MAILU_TOKEN_FILE"
}

# ---- capture sinks --------------------------------------------------------

# start_mailu_sinks: the sink behind Dovecot and the local relay's sink.
# Sets MAILU_SINK_PORT/DIR and LOCAL_SINK_PORT/DIR.
start_mailu_sinks() {
	start_sink
	MAILU_SINK_PORT=$SINK_PORT
	MAILU_SINK_DIR=$SINK_DIR
	start_sink
	LOCAL_SINK_PORT=$SINK_PORT
	LOCAL_SINK_DIR=$SINK_DIR
	log "Mailu's sink on $MAILU_SINK_PORT, the local relay's on $LOCAL_SINK_PORT"
}

# ---- Dovecot submission ---------------------------------------------------

# _dovecot_conf CERT SSL: writes $DC_CONF.
_dovecot_conf() {
	local cert=$1 ssl=$2 implicit=""
	# ssl = no takes STARTTLS away; an implicit-TLS listener then has no
	# TLS to offer, so it is left out
	if [ "$ssl" = yes ]; then
		implicit="
  inet_listener submissions {
    address = 127.0.0.1
    port = $DC_IMPLICIT_PORT
    ssl = yes
  }"
	fi
	cat >"$DC_CONF" <<EOF
# private Dovecot for $T_NAME: submission only, loopback only
base_dir = $DC_DIR/run
state_dir = $DC_DIR/state
instance_name = spool-$T_NAME
protocols = submission
listen = 127.0.0.1
log_path = $T/dovecot.log
auth_verbose = yes
auth_mechanisms = plain login
hostname = localhost
ssl = $ssl
ssl_cert = <$PKI/$cert.crt
ssl_key = <$PKI/$cert.key
ssl_dh = </usr/share/dovecot/dh.pem
# submission refuses to start without a mail location, though it never
# stores mail
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $DC_DIR/users
}
# the session after login runs as nobody: Dovecot refuses uid 0
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$DC_DIR/home
}
submission_relay_host = 127.0.0.1
submission_relay_port = $MAILU_SINK_PORT
submission_relay_trusted = yes
submission_relay_ssl = no
service submission-login {
  inet_listener submission {
    address = 127.0.0.1
    port = $DC_STARTTLS_PORT
  }$implicit
}
EOF
}

# start_dovecot [--cert localhost|untrusted|wrongname] [--no-starttls]:
# starts (or restarts with other options) the private Dovecot. Needs
# start_mailu_sinks, mailu_make_pki and mailu_server_token first. Sets
# DC_DIR, DC_CONF, DC_STARTTLS_PORT, DC_IMPLICIT_PORT, DC_PID. Its log is
# $T/dovecot.log (one for every run).
start_dovecot() {
	local cert=localhost ssl=yes
	while [ $# -gt 0 ]; do
		case $1 in
		--cert)
			cert=$2
			shift 2
			;;
		--no-starttls)
			ssl=no
			shift
			;;
		*) fail "start_dovecot: unknown option $1" ;;
		esac
	done
	[ -n "${MAILU_SINK_PORT:-}" ] || fail "start_dovecot needs start_mailu_sinks"
	[ -f "$PKI/$cert.crt" ] || fail "start_dovecot: no certificate $cert"
	[ -f "$DC_DIR/users" ] || fail "start_dovecot needs mailu_server_token"
	[ -z "$DC_PID" ] || fail "start_dovecot: already running ($DC_PID)"
	: "${DC_STARTTLS_PORT:=$(free_port)}"
	: "${DC_IMPLICIT_PORT:=$(free_port)}"
	DC_CONF="$DC_DIR/dovecot.conf"
	mkdir -p "$DC_DIR/run" "$DC_DIR/state" "$DC_DIR/home"
	chown nobody:nogroup "$DC_DIR/home"
	_dovecot_conf "$cert" "$ssl"
	# -F: no fork, so $! is the master and the test can wait for it
	dovecot -F -c "$DC_CONF" >>"$T/dovecot-stderr.log" 2>&1 &
	DC_PID=$!
	wait_port "$DC_STARTTLS_PORT" 10 ||
		fail "Dovecot not listening on $DC_STARTTLS_PORT"
	if [ "$ssl" = yes ]; then
		wait_port "$DC_IMPLICIT_PORT" 10 ||
			fail "Dovecot not listening on $DC_IMPLICIT_PORT"
	fi
	pid_alive "$DC_PID" || fail "Dovecot exited at start"
	log "Dovecot (pid $DC_PID, cert $cert, ssl = $ssl): STARTTLS on" \
		"$DC_STARTTLS_PORT, implicit TLS on $DC_IMPLICIT_PORT"
}

# _stop_tree PID: SIGTERM to a server's master, then to whatever of its
# children outlived it; SIGKILL after 10 s (master) and 5 s (children).
# 0 if nothing had to be killed. Dovecot's master does not wait for its
# children: a login process still holding a client (e.g. after a failed
# AUTH) keeps itself, anvil, log, config, stats and auth alive after the
# master is gone.
_stop_tree() {
	local master=$1 kids p left rc=0 deadline
	kids=$(pgrep -P "$master" || true)
	if pid_alive "$master"; then
		kill -TERM "$master" 2>/dev/null
		wait_gone "$master" 10 || {
			kill -KILL "$master" 2>/dev/null
			rc=1
		}
	fi
	wait "$master" 2>/dev/null || true
	for p in $kids; do
		pid_alive "$p" && kill -TERM "$p" 2>/dev/null
	done
	deadline=$(($(date +%s%N) + 5000000000))
	while :; do
		left=""
		for p in $kids; do
			pid_alive "$p" && left="$left $p"
		done
		[ -n "$left" ] || break
		if [ "$(date +%s%N)" -ge "$deadline" ]; then
			# shellcheck disable=SC2086 # a list of pids
			kill -KILL $left 2>/dev/null
			rc=1
			break
		fi
		sleep 0.05
	done
	return "$rc"
}

# _dovecot_stop: 0 once the master and every process it started are gone.
_dovecot_stop() {
	local rc=0
	[ -n "$DC_PID" ] || return 0
	_stop_tree "$DC_PID" || rc=$?
	DC_PID=""
	return "$rc"
}

# stop_dovecot: stops it and checks its ports are closed, so the next
# connection is refused.
stop_dovecot() {
	[ -n "$DC_PID" ] || fail "stop_dovecot: not running"
	_dovecot_stop || fail "Dovecot did not stop on SIGTERM"
	if ! port_closed "$DC_STARTTLS_PORT" ||
		! port_closed "$DC_IMPLICIT_PORT"; then
		fail "Dovecot's ports still open after stop"
	fi
	log "Dovecot stopped"
}

# dovecot_log_mark: the current length of Dovecot's log, for
# dovecot_log_since.
dovecot_log_mark() {
	if [ -f "$T/dovecot.log" ]; then
		wc -l <"$T/dovecot.log" | tr -d ' '
	else
		echo 0
	fi
}

# dovecot_log_since MARK: what Dovecot logged after the mark.
dovecot_log_since() {
	[ -f "$T/dovecot.log" ] || return 0
	tail -n "+$(($1 + 1))" "$T/dovecot.log"
}

# ---- nginx: the HTTPS probe endpoint --------------------------------------

_nginx_conf() {
	cat >"$NG_DIR/nginx.conf" <<EOF
# private nginx for $T_NAME: Mailu's front as far as the probe sees it
daemon off;
worker_processes 1;
pid $NG_DIR/nginx.pid;
error_log $T/nginx-error.log info;
events {
  worker_connections 64;
}
http {
  access_log $T/nginx-access.log;
  # the compiled-in temp paths lie under /var/lib/nginx
  client_body_temp_path $NG_DIR/tmp/body;
  proxy_temp_path $NG_DIR/tmp/proxy;
  fastcgi_temp_path $NG_DIR/tmp/fastcgi;
  uwsgi_temp_path $NG_DIR/tmp/uwsgi;
  scgi_temp_path $NG_DIR/tmp/scgi;
  server {
    listen 127.0.0.1:$NGINX_PORT ssl;
    server_name localhost;
    ssl_certificate $PKI/localhost.crt;
    ssl_certificate_key $PKI/localhost.key;
    location = /health {
      return 204;
    }
    location / {
      default_type text/plain;
      return 200 "Mailu stand-in\n";
    }
${NGINX_EXTRA_LOCATIONS:-}
  }
${NGINX_EXTRA_SERVERS:-}
}
EOF
}

# start_nginx: (re)starts nginx on NGINX_PORT (kept across restarts).
# NGINX_EXTRA_LOCATIONS (inside the server) and NGINX_EXTRA_SERVERS
# (inside http) add to its configuration (lib_push.sh's push services).
# Sets NG_DIR, NGINX_PORT, NG_PID.
start_nginx() {
	[ -n "${PKI:-}" ] || fail "start_nginx needs mailu_make_pki"
	[ -z "$NG_PID" ] || fail "start_nginx: already running ($NG_PID)"
	NG_DIR="$T/nginx"
	: "${NGINX_PORT:=$(free_port)}"
	mkdir -p "$NG_DIR/tmp"
	_nginx_conf
	# -e: the error log before the configuration is read; the compiled-in
	# /var/log/nginx/error.log may not be writable or may not exist
	nginx -p "$NG_DIR/" -c "$NG_DIR/nginx.conf" -e "$T/nginx-error.log" \
		>>"$T/nginx-stderr.log" 2>&1 &
	NG_PID=$!
	wait_port "$NGINX_PORT" 10 || fail "nginx not listening on $NGINX_PORT"
	pid_alive "$NG_PID" || fail "nginx exited at start"
	log "nginx (pid $NG_PID) on https://localhost:$NGINX_PORT/"
}

# _nginx_stop: SIGTERM (fast shutdown); the master exits after its worker.
_nginx_stop() {
	local rc=0
	[ -n "$NG_PID" ] || return 0
	_stop_tree "$NG_PID" || rc=$?
	NG_PID=""
	return "$rc"
}

stop_nginx() {
	[ -n "$NG_PID" ] || fail "stop_nginx: not running"
	_nginx_stop || fail "nginx did not stop on SIGTERM"
	port_closed "$NGINX_PORT" || fail "port $NGINX_PORT open after stop"
	log "nginx stopped"
}

# probe_endpoint: the HTTP status of /health as the probe would see it
# (000: no answer).
probe_endpoint() {
	curl -sS --max-time 3 --cacert "$MAILU_CA" -o /dev/null \
		-w '%{http_code}' "https://localhost:$NGINX_PORT/health" \
		2>/dev/null || true
}

# ---- everything at once ---------------------------------------------------

# mailu_setup: the usual stand-in: certificates, both sinks, a fresh token
# (MAILU_TOKEN) known to Dovecot and in spoold's password_file, Dovecot
# with the good certificate, nginx.
mailu_setup() {
	mailu_require
	mailu_make_pki
	start_mailu_sinks
	MAILU_TOKEN=$(new_token)
	mailu_server_token "$MAILU_TOKEN"
	mailu_client_token "$MAILU_TOKEN"
	start_dovecot
	start_nginx
	[ "$(probe_endpoint)" = 204 ] ||
		fail "nginx does not answer 204 on /health"
}

mailu_cleanup() {
	_dovecot_stop
	_nginx_stop
}
T_CLEANUP_HOOKS+=(mailu_cleanup)

# ---- spoold -----------------------------------------------------------------

# write_mailu_conf [--tls starttls|implicit] [--route ROUTE] [--retry LIST]
#                  [--spool DIR]:
# $T/spoold.conf with [transport mailu] (the stand-in, with TLS, AUTH and
# the probe) and [transport local] (LOCAL_SINK); sets CONF and SPOOL.
write_mailu_conf() {
	local tls=starttls route="mailu, local" retry="1s, 2s" port
	SPOOL="$T/spool"
	while [ $# -gt 0 ]; do
		case $1 in
		--tls)
			tls=$2
			shift 2
			;;
		--route)
			route=$2
			shift 2
			;;
		--retry)
			retry=$2
			shift 2
			;;
		--spool)
			SPOOL=$2
			shift 2
			;;
		*) fail "write_mailu_conf: unknown option $1" ;;
		esac
	done
	case $tls in
	starttls) port=$DC_STARTTLS_PORT ;;
	implicit) port=$DC_IMPLICIT_PORT ;;
	*) fail "write_mailu_conf: --tls $tls" ;;
	esac
	[ -f "${MAILU_TOKEN_FILE:-}" ] || fail "write_mailu_conf: no token file"
	CONF="$T/spoold.conf"
	cat >"$CONF" <<EOF
[spool]
dir = $SPOOL
max_size = 1M

[delivery]
route = $route
concurrency = 2
retry = $retry
max_age = 1h

; the stand-in: by name (the certificate names localhost), TLS, AUTH
[transport mailu]
type = smtp
host = localhost
port = $port
tls = $tls
ca_file = $MAILU_CA
user = $MAILU_USER
password_file = $MAILU_TOKEN_FILE
from = $MAILU_USER
timeout = 5s
; libcurl's connect timeout (implicit TLS) spans TLS, greeting, EHLO and
; AUTH, and Dovecot answers a wrong token after 2 s: 2s would race it
connect_timeout = 5s
probe_url = https://localhost:$NGINX_PORT/health
probe_expect = 200, 204
probe_interval = 1s
probe_timeout = 1s

[transport local]
type = smtp
host = 127.0.0.1
port = $LOCAL_SINK_PORT
tls = none
timeout = 5s
connect_timeout = 2s
EOF
	chmod 644 "$CONF" # spoold reads it again as SPOOLD_USER
}

# submit_msg TAG [SIZE]: makes $T/TAG.eml and queues it from MAILU_SENDER
# to MAILU_RCPT. Prints "ID MESSAGE-ID".
submit_msg() {
	local mid
	mid=$(make_msg "$T/$1.eml" "$1" "${2:-600}")
	echo "$(submit_file "$1") $mid"
}

# submit_file TAG: queues the existing $T/TAG.eml; prints the queue id.
submit_file() {
	local id
	id=$(spoolctl submit -f "$MAILU_SENDER" "$MAILU_RCPT" <"$T/$1.eml") ||
		fail "spoolctl submit $1 failed"
	echo "$id" | tr -d '[:space:]'
}

# make_msgs PREFIX N STEP: like make_msg, N messages $T/PREFIX-I.eml with
# bodies of I * STEP bytes, in one python3 run (a start can cost 0.3 s and
# far more on a loaded machine). Prints "PREFIX-I MESSAGE-ID" lines.
make_msgs() {
	python3 - "$T" "$@" <<'PY'
import sys, uuid
tdir, prefix = sys.argv[1], sys.argv[2]
n, step = int(sys.argv[3]), int(sys.argv[4])
for i in range(1, n + 1):
    tag = "%s-%d" % (prefix, i)
    mid = "<%s@spool-test.invalid>" % uuid.uuid4().hex
    head = ["From: Sender <sender@example.org>", "To: rcpt@example.net",
            "Subject: " + tag, "Date: Tue, 24 Nov 2026 10:00:00 +0000",
            "Message-ID: " + mid, "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=us-ascii", ""]
    body, size = [], 0
    while size < i * step:
        line = "%s line %d: the quick brown fox jumps over the lazy dog" % (
            tag, len(body))
        body.append(line)
        size += len(line) + 2
    with open("%s/%s.eml" % (tdir, tag), "wb") as f:
        f.write(("\r\n".join(head + body) + "\r\n").encode())
    print(tag, mid)
PY
}

# spoold_alive: fails the test at once if the spoold that start_spoold
# started has died (a wait would otherwise run out its time).
spoold_alive() {
	[ -z "$SPOOLD_PID" ] || pid_alive "$SPOOLD_PID" ||
		fail "spoold (pid $SPOOLD_PID) died; see ${SPOOLD_LOG#"$T"/}"
}

# transport_field NAME EXPR: EXPR (python, t = the transport's object in
# `spoolctl status --json`), e.g. "t['up']".
transport_field() {
	spoolctl status --json | sink_tool json \
		"(lambda t: $2)([t for t in d['transports'] if t['name'] == '$1'][0])"
}

# wait_transport NAME True|False SECONDS: until status --json shows the
# transport up (True) or down (False); prints the milliseconds it took.
wait_transport() {
	local name=$1 want=$2 deadline t0 got
	t0=$(date +%s%N)
	deadline=$((t0 + $3 * 1000000000))
	while :; do
		got=$(transport_field "$name" "t['up']" 2>/dev/null) || got="?"
		[ "$got" = "$want" ] && break
		spoold_alive
		[ "$(date +%s%N)" -lt "$deadline" ] ||
			fail "transport $name not up=$want after $3 s" \
				"(status: $(spoolctl status --json 2>&1))"
		sleep 0.1
	done
	ms_since "$t0"
}

# wait_probed NAME SECONDS: until the transport has been probed (a
# last_probe in status --json) and is up.
wait_probed() {
	local deadline
	deadline=$(($(date +%s) + $2))
	until [ "$(transport_field "$1" "t['last_probe'] is not None and t['up']" \
		2>/dev/null)" = True ]; do
		spoold_alive
		[ "$(date +%s)" -lt "$deadline" ] ||
			fail "transport $1 not probed and up after $2 s" \
				"(status: $(spoolctl status --json 2>&1))"
		sleep 0.1
	done
}

# wait_attempted ID SECONDS: until list --json shows ID tried at least
# once and still queued, with a last_error; prints that error.
wait_attempted() {
	local id=$1 deadline got
	deadline=$(($(date +%s) + $2))
	while :; do
		got=$(spoolctl list --json | sink_tool json \
			"[m['last_error'] for m in d if m['id'] == '$id' and m['attempts'] >= 1 and m['state'] in ('queued', 'deferred') and m['last_error']]") ||
			fail "spoolctl list --json failed"
		[ "$got" != "[]" ] && break
		spoold_alive
		[ "$(date +%s)" -lt "$deadline" ] ||
			fail "$id not attempted and queued after $2 s:" \
				"$(spoolctl list --json 2>&1 | head -c 800)"
		sleep 0.2
	done
	echo "$got" | sink_tool json 'd[0]'
}

# in_sink DIR MSGID: 0 if a message with MSGID arrived in the sink DIR.
# grep, not sink_tool: this runs in polling loops, and a python3 start
# can cost 0.3 s (a pyenv shim). The sink renames complete .eml files
# into place, so a match is a whole message.
in_sink() {
	grep -qslF -- "Message-ID: $2" "$1"/[0-9]*.eml
}

# wait_in_sink DIR MSGID SECONDS: until MSGID arrived in the sink DIR;
# prints the milliseconds it took.
wait_in_sink() {
	local dir=$1 mid=$2 deadline t0
	t0=$(date +%s%N)
	deadline=$((t0 + $3 * 1000000000))
	until in_sink "$dir" "$mid"; do
		spoold_alive
		[ "$(date +%s%N)" -lt "$deadline" ] ||
			fail "$mid not in ${dir#"$T"/} after $3 s" \
				"(queue: $(spoolctl list --json 2>&1 | head -c 600))"
		sleep 0.05
	done
	ms_since "$t0"
}

# verify_at mailu|local LIST: every "TAG MSGID FILE" line of LIST arrived
# exactly once at that sink with the bytes of FILE. At Mailu's: from
# MAILU_USER (the transport's from), through Dovecot with TLS and AUTH (its
# Received: field says ESMTPSA; a plaintext login on loopback, which
# Dovecot allows, would read ESMTPA). At the local relay's: from
# MAILU_SENDER (local has no from), unchanged.
verify_at() {
	local out rc=0
	case $1 in
	mailu)
		out=$(sink_tool verify "$MAILU_SINK_DIR" "$2" --from "$MAILU_USER" \
			--rcpt "$MAILU_RCPT" --strip-received \
			--received-with ESMTPSA) || rc=$?
		;;
	local)
		out=$(sink_tool verify "$LOCAL_SINK_DIR" "$2" \
			--from "$MAILU_SENDER" --rcpt "$MAILU_RCPT" \
			--strip-received) || rc=$?
		;;
	*) fail "verify_at: $1" ;;
	esac
	[ "$rc" = 0 ] || fail "deliveries at $1's sink:"$'\n'"$out"
}

# check_delivery mailu|local TAG MSGID: verify_at for one message of
# submit_msg.
check_delivery() {
	echo "$2 $3 $T/$2.eml" >"$T/check.list"
	verify_at "$1" "$T/check.list"
}

# no_secret_in TOKEN WHAT FILE...: fails if TOKEN appears in any FILE.
no_secret_in() {
	local token=$1 what=$2
	shift 2
	if grep -rlF -- "$token" "$@" 2>/dev/null; then
		fail "the token appears in $what"
	fi
}

# watch_cmdlines_start TOKEN: until watch_cmdlines_stop, looks at the
# command line and environment of every spoold and spoolctl process and
# of their children (a helper spoold might run) about a hundred times a
# second, and notes any that holds TOKEN: a secret in argv or the
# environment is visible to every user through ps and /proc.
watch_cmdlines_start() {
	WATCH_DIR="$T/cmdline-watch"
	mkdir -p "$WATCH_DIR"
	rm -f "$WATCH_DIR/stop"
	# the token goes through a file: in argv it would be in our own
	# command line
	(umask 077 && printf '%s' "$1" >"$WATCH_DIR/token")
	python3 - "$WATCH_DIR" "$SPOOLD" "$SPOOLCTL" \
		>"$WATCH_DIR/result" 2>"$WATCH_DIR/error.log" <<'PY' &
import os, sys, time
wdir, ours = sys.argv[1], {os.path.realpath(p) for p in sys.argv[2:4]}
token = open(os.path.join(wdir, "token"), "rb").read()
end = time.monotonic() + 600  # bounded, whatever the test does
sweeps, seen, hits = 0, {}, set()

def read(pid, name):
    try:
        with open("/proc/%s/%s" % (pid, name), "rb") as f:
            return f.read()
    except OSError:
        return None

while not os.path.exists(os.path.join(wdir, "stop")) and \
        time.monotonic() < end:
    procs = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        stat = read(pid, "stat")
        try:
            exe = os.readlink("/proc/%s/exe" % pid)
        except OSError:
            exe = ""
        if stat:
            procs[pid] = (stat.rsplit(b")", 1)[1].split()[1].decode(), exe)
    def watched(pid, depth=0):
        if pid not in procs or depth > 20:
            return False
        return procs[pid][1] in ours or watched(procs[pid][0], depth + 1)
    for pid, (ppid, exe) in procs.items():
        if not watched(pid):
            continue
        cmd, env = read(pid, "cmdline"), read(pid, "environ")
        if cmd is None:
            continue
        key = os.path.basename(exe)
        seen[key] = seen.get(key, 0) + 1
        if token in cmd or (env and token in env):
            hits.add("%s %s: %s" % (pid, exe, "token in argv"
                        if token in cmd else "token in the environment"))
    sweeps += 1
    time.sleep(0.01)
print("sweeps=%d %s" % (sweeps, " ".join("%s=%d" % kv
                                          for kv in sorted(seen.items()))))
for h in sorted(hits)[:20]:
    print("HIT " + h)
PY
	WATCH_PID=$!
	T_PIDS+=("cmdline-watch $WATCH_PID")
}

# watch_cmdlines_stop: ends the watch; fails if the token was seen in a
# command line or environment, or if the watch never saw spoold running.
watch_cmdlines_stop() {
	touch "$WATCH_DIR/stop"
	wait_gone "$WATCH_PID" 10 || fail "the command-line watch did not stop"
	wait "$WATCH_PID" 2>/dev/null ||
		fail "the command-line watch failed: $(cat "$WATCH_DIR/error.log")"
	log "command-line watch: $(head -n 1 "$WATCH_DIR/result")"
	! grep -q '^HIT ' "$WATCH_DIR/result" ||
		fail "the token is visible in ps: $(grep '^HIT ' "$WATCH_DIR/result")"
	grep -qE "(^| )$(basename "$SPOOLD")=[1-9]" "$WATCH_DIR/result" ||
		fail "the command-line watch never saw spoold"
}

#!/bin/bash
# t_probe_method.sh - probe_method: an endpoint that answers GET only (HEAD
# gets 501, as Python's http.server and some health endpoints do) marks
# the transport down with the default HEAD, and up with probe_method = GET,
# which really sends a GET.
. "$(dirname "$0")/lib.sh"

start_sink
HTTP_PORT=$(free_port)
python3 - "$HTTP_PORT" "$T/http.methods" >"$T/http.log" 2>&1 <<'PY' &
import http.server, sys
port, log = int(sys.argv[1]), sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(log, "a") as f:
            f.write("GET\n")
        body = b"ok\n" * 1000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
s = http.server.HTTPServer(("127.0.0.1", port), H)
print("http ready", flush=True)
s.serve_forever()
PY
T_PIDS+=("http $!")
wait_log_line "$T/http.log" 'http ready' 10 || fail "http stand-in did not start"

write_conf "$SINK_PORT"
cat >>"$CONF" <<EOT
probe_url = http://127.0.0.1:$HTTP_PORT/health
probe_expect = 200
probe_interval = 1h
EOT
export SPOOLD_CONFIG=$CONF

# --- 1. HEAD, the default: 501, down ---
start_spoold
out=$(spoolctl probe 2>&1) || true
echo "$out" | grep -q "^local: down.*unexpected HTTP status 501" ||
	fail "HEAD against a GET-only endpoint: $out"
stop_spoold

# --- 2. GET: up, and the request was a GET ---
echo "probe_method = GET" >>"$CONF"
"$SPOOLD" -c "$CONF" --check-config >/dev/null || fail "check-config refused GET"
start_spoold
out=$(spoolctl probe 2>&1) || fail "probe exited non-zero with GET: $out"
echo "$out" | grep -q "^local: up" || fail "GET probe: $out"
[ "$(grep -c GET "$T/http.methods")" -ge 1 ] || fail "no GET reached the endpoint"
id=$(printf 'Subject: a\n\nbody\n' | spoolctl submit admin@example.org) ||
	fail "submit failed"
wait_for_count 1 20
stop_spoold
log "ok"

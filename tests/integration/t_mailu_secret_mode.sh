#!/bin/bash
# t_mailu_secret_mode.sh - a password_file readable by group or others is
# refused at start: spoold exits non-zero within a few seconds, and its
# stderr names the file and says "readable by group or others" (never the
# token). So is a symlink to such a file (the mode that counts is the
# target's), and a password_file that is a FIFO, a directory, a device
# or missing (refused at once, without blocking on the FIFO), or that is
# owned by nobody, directly or as a symlink's target (refused with the
# owner found, the one wanted and the chown to run). With mode
# 0600 the same configuration starts and delivers to Mailu, and so it
# does through a symlink to a 0600 file (how Kubernetes and Docker mount
# secrets); the token is in no log and no spoolctl output.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_mailu.sh"

REFUSE_WITHIN_MS=5000

mailu_setup
write_mailu_conf --tls starttls --route "mailu, local"

# spoold_refuses WHAT REASON: spoold must not start with the password_file
# as it is now; its stderr names the file and says REASON.
spoold_refuses() {
	local what=$1 reason=$2 rc=0 t0 ms f
	f="$T/refused-${what// /-}"
	t0=$(date +%s%N)
	# bounded: a spoold that wrongly starts (or blocks) is stopped
	timeout 10 "$SPOOLD" -c "$CONF" -f >"$f.out" 2>"$f.log" || rc=$?
	ms=$(ms_since "$t0")
	[ "$rc" != 0 ] || fail "$what: spoold exited 0"
	[ "$rc" != 124 ] || fail "$what: spoold started (killed after 10 s)"
	[ "$ms" -le "$REFUSE_WITHIN_MS" ] ||
		fail "$what: spoold took $ms ms to refuse"
	grep -qF -- "$MAILU_TOKEN_FILE" "$f.log" ||
		fail "$what: stderr does not name $MAILU_TOKEN_FILE:" \
			"$(cat "$f.log")"
	grep -q "$reason" "$f.log" ||
		fail "$what: stderr does not say '$reason': $(cat "$f.log")"
	no_secret_in "$MAILU_TOKEN" "spoold's stderr" "$f.log" "$f.out"
	log "$what refused in $ms ms (status $rc): $(head -c 300 "$f.log")"
}

# refused MODE: spoold must not start with the token file in MODE.
refused() {
	mailu_client_token "$MAILU_TOKEN" "$1"
	spoold_refuses "mode $1" 'readable by group or others'
}

# token_link TARGET_MODE: the password_file becomes a symlink to a file
# with the token in TARGET_MODE.
token_link() {
	rm -rf "$MAILU_TOKEN_FILE" "$T/token-target"
	(umask 077 && printf '%s\n' "$MAILU_TOKEN" >"$T/token-target")
	chmod "$1" "$T/token-target"
	spoold_owns "$T/token-target"
	ln -s "$T/token-target" "$MAILU_TOKEN_FILE"
}

refused 644
refused 640
refused 604
refused 660
token_link 644
spoold_refuses "symlink to a 0644 file" 'readable by group or others'
rm -f "$MAILU_TOKEN_FILE"
mkfifo -m 600 "$MAILU_TOKEN_FILE"
spoold_refuses "FIFO" 'not a regular file'
rm -f "$MAILU_TOKEN_FILE"
mkdir -m 700 "$MAILU_TOKEN_FILE"
spoold_refuses "directory" 'not a regular file'
rmdir "$MAILU_TOKEN_FILE"
ln -s /dev/null "$MAILU_TOKEN_FILE"
spoold_refuses "symlink to a device" 'not a regular file'
rm -f "$MAILU_TOKEN_FILE"
spoold_refuses "missing file" 'No such file'
# owned by another user than root and spoold's user
NOBODY_UID=$(id -u nobody)
mailu_client_token "$MAILU_TOKEN" 600
chown nobody "$MAILU_TOKEN_FILE"
spoold_refuses "a file of nobody's" \
	"owned by nobody (uid $NOBODY_UID), not by root or by $SPOOLD_USER (uid $(id -u "$SPOOLD_USER")), the user spoold runs as; chown $SPOOLD_USER $MAILU_TOKEN_FILE"
token_link 600
chown nobody "$T/token-target"
spoold_refuses "symlink to a file of nobody's" \
	"owned by nobody (uid $NOBODY_UID), not by root"

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

# a symlink to a 0600 file, as Kubernetes and Docker mount secrets
token_link 600
start_spoold
wait_probed mailu 10
out=$(submit_msg secret-link)
mid=${out#* }
wait_in_sink "$MAILU_SINK_DIR" "$mid" 10 >/dev/null
check_delivery mailu secret-link "$mid"
stop_spoold

# a FIFO put in the token's place while spoold runs: the connection is
# refused at once (no thread waits for a writer) and the message waits
mailu_client_token "$MAILU_TOKEN" 600
write_mailu_conf --route mailu --retry 1h
start_spoold
wait_probed mailu 10
mkfifo -m 600 "$MAILU_TOKEN_FILE.fifo"
spoold_owns "$MAILU_TOKEN_FILE.fifo"
mv -f "$MAILU_TOKEN_FILE.fifo" "$MAILU_TOKEN_FILE"
out=$(submit_msg secret-fifo)
id=${out%% *}
mid=${out#* }
err=$(wait_attempted "$id" 20)
case $err in *"not a regular file"*) ;; *) fail "FIFO token: $err" ;; esac
t0=$(date +%s%N)
spoolctl status >/dev/null || fail "status failed with a FIFO token"
[ "$(ms_since "$t0")" -lt 1000 ] || fail "status slow with a FIFO token"
mailu_client_token "$MAILU_TOKEN" 600
spoolctl flush "$id" >/dev/null
wait_in_sink "$MAILU_SINK_DIR" "$mid" 20 >/dev/null

# given to nobody while spoold runs: refused at the next connection, and
# the message waits (never fails) until the owner is right again
chown nobody "$MAILU_TOKEN_FILE"
out=$(submit_msg secret-owner)
id=${out%% *}
mid=${out#* }
err=$(wait_attempted "$id" 20)
case $err in *"owned by nobody"*"chown $SPOOLD_USER"*) ;; *) fail "token of nobody's: $err" ;; esac
[ ! -e "$SPOOL/failed/$id" ] || fail "token of nobody's: $id failed"
chown "$SPOOLD_USER" "$MAILU_TOKEN_FILE"
spoolctl flush "$id" >/dev/null
wait_in_sink "$MAILU_SINK_DIR" "$mid" 20 >/dev/null
stop_spoold
no_secret_in "$MAILU_TOKEN" "spoolctl's output" "$T"/out.*
no_secret_in "$MAILU_TOKEN" "spoold's log" "$T"/spoold.*.log
log "ok"

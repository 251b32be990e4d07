#!/bin/bash
# t_metrics.sh - `spoolctl metrics` and the [metrics] textfile: both pass
# `promtool check metrics`, and their figures equal what `list --json` and
# the capture sink show, after deliveries, a permanent failure (550 to one
# recipient), a deferral (relay down), a restart, a kill -9, and with the
# LMDB state deleted (the counters start again and _created says so). As
# root and as nobody, with the daemon running and without. An unwritable
# textfile is one log line, not one per interval, and --check-config
# names it. Rate-limited and coalesced messages count as logged.
. "$(dirname "$0")/lib.sh"

command -v promtool >/dev/null || fail "promtool missing: run tools/install-deps"
[ "$(id -u)" = 0 ] || fail "run as root: the test runs spoolctl as nobody too"

BAD=rejected@example.net
start_sink --reject-rcpt "$BAD=550"
write_conf "$SINK_PORT" 1s
PROM_DIR="$T/prom"
PROM="$PROM_DIR/spoold.prom"
mkdir "$PROM_DIR"
spoold_owns "$PROM_DIR"
cat >>"$CONF" <<EOF

[metrics]
textfile = $PROM
interval = 1s
EOF
chmod 755 "$T"

# metric NAME{LABELS} FILE: the sample's value ("" if absent)
metric() {
	awk -v k="$1" '$1 == k { print $2 }' "$2"
}

# scrape OUT [USER]: spoolctl metrics (as USER if given) into OUT, which
# promtool must pass
scrape() {
	local out=$1 user=${2:-}
	if [ -n "$user" ]; then
		runuser -u "$user" -- "$SPOOLCTL" -c "$CONF" metrics >"$out" \
			2>"$out.err" || fail "metrics as $user: $(cat "$out.err")"
	else
		spoolctl metrics >"$out" 2>"$out.err" ||
			fail "metrics: $(cat "$out.err")"
	fi
	promtool check metrics <"$out" >"$out.lint" 2>&1 ||
		fail "promtool rejects spoolctl metrics${user:+ as $user}: $(cat "$out.lint")"
}

# check_textfile: promtool passes the textfile, and it is complete
check_textfile() {
	[ -f "$PROM" ] || fail "no textfile $PROM"
	promtool check metrics <"$PROM" >"$T/prom.lint" 2>&1 ||
		fail "promtool rejects the textfile: $(cat "$T/prom.lint")"
	[ -z "$(find "$PROM_DIR" -name '*.tmp')" ] ||
		fail "a temporary file is left in $PROM_DIR"
}

# recipients the sink accepted
sink_rcpts() {
	python3 - "$SINK_DIR" <<'EOF'
import glob, json, os, sys
n = 0
for p in glob.glob(os.path.join(sys.argv[1], "[0-9]*.env")):
    n += len(json.load(open(p))["rcpt_to"])
print(n)
EOF
}

# queue_matches OUT: spoold_queue_messages in OUT equals list --all --json
# state by state, and the oldest age is that of the oldest unfinished one
queue_matches() {
	local out=$1 listed state want got now oldest age s
	listed=$(spoolctl list --all --json) || fail "list --all --json failed"
	# a deferred message retried meanwhile may be delivering in one
	# and deferred in the other: those two are compared as a sum
	for state in queued held failed deferred+delivering; do
		want=$(echo "$listed" | sink_tool json \
			"len([m for m in d if m['state'] in '$state'.split('+')])")
		got=0
		for s in ${state//+/ }; do
			got=$((got + $(metric "spoold_queue_messages{state=\"$s\"}" "$out")))
		done
		[ "$got" = "$want" ] ||
			fail "queue $state: metrics say '$got', list --json $want"
	done
	# the time the figures were taken: the file's (the checks are slow)
	now=$(stat -c %Y "$out")
	oldest=$(echo "$listed" | sink_tool json \
		"min([m['queued_at'] for m in d if m['state'] != 'failed'] or [''])")
	age=$(metric spoold_queue_oldest_message_age_seconds "$out")
	if [ -z "$oldest" ]; then
		[ "$age" = 0 ] || fail "oldest age $age with nothing queued"
	else
		oldest=$(date -d "$oldest" +%s)
		[ $((now - oldest - age)) -ge -2 ] &&
			[ $((now - oldest - age)) -le 2 ] ||
			fail "oldest age $age in $out, list --json says $((now - oldest)): $listed"
	fi
}

# counters_are OUT SENT DEFERRED FAILED: DEFERRED may be a range LO..HI
# (a message retried while the relay is down is deferred again any time)
counters_are() {
	local out=$1 s got lo hi
	for s in sent:$2 deferred:$3 failed:$4; do
		got=$(metric "spoold_messages_total{transport=\"local\",status=\"${s%%:*}\"}" "$out")
		lo=${s#*:}
		hi=${lo#*..}
		lo=${lo%..*}
		[ -n "$got" ] && [ "$got" -ge "$lo" ] && [ "$got" -le "$hi" ] ||
			fail "spoold_messages_total ${s%%:*}: '$got', want ${s#*:}"
	done
}

# deferrals of d@ logged so far
deferrals() {
	spoold_log_count 'to=<?d@example.net>?.*status=deferred'
}

start_spoold
scrape "$T/m0"
[ "$(metric spoold_up "$T/m0")" = 1 ] || fail "spoold_up is not 1"
counters_are "$T/m0" 0 0 0
queue_matches "$T/m0"
created0=$(metric 'spoold_messages_created{transport="local",status="sent"}' "$T/m0")
[ -n "$created0" ] && [ "$created0" -gt 0 ] || fail "no _created: $created0"
[ "$(metric 'spoold_delivery_duration_seconds_count{transport="local"}' "$T/m0")" = 0 ] ||
	fail "a session counted before any delivery"
[ "$(metric spoold_coalesced_messages_total "$T/m0")" = 0 ] ||
	fail "spoold_coalesced_messages_total missing or not 0"
[ "$(metric 'spoold_rate_limited_messages_total{transport="local"}' "$T/m0")" = 0 ] ||
	fail "spoold_rate_limited_messages_total missing or not 0"

# deliveries: three messages, two recipients each
for i in 1 2 3; do
	make_msg "$T/msg$i" "metrics $i" >/dev/null
	spoolctl submit -f app@example.org "a$i@example.net" "b$i@example.net" \
		<"$T/msg$i" >/dev/null || fail "submit $i failed"
done
wait_for_count 3 30
wait_spool_empty 20
scrape "$T/m1"
[ "$(sink_rcpts)" = 6 ] || fail "sink has $(sink_rcpts) recipients, want 6"
counters_are "$T/m1" 6 0 0
queue_matches "$T/m1"
sessions=$(metric 'spoold_delivery_duration_seconds_count{transport="local"}' "$T/m1")
[ "$sessions" -ge 1 ] && [ "$sessions" -le 3 ] ||
	fail "sessions counted: $sessions (want 1 to 3 for 3 messages)"
[ "$(metric 'spoold_transport_up{transport="local"}' "$T/m1")" = 1 ] ||
	fail "transport local not up after deliveries"

# a permanent failure: one recipient refused with 550
make_msg "$T/msg4" "metrics 550" >/dev/null
spoolctl submit -f app@example.org c@example.net "$BAD" <"$T/msg4" \
	>/dev/null || fail "submit 4 failed"
wait_for_count 4 30
wait_spool_empty 20
scrape "$T/m2"
[ "$(sink_rcpts)" = 7 ] || fail "sink has $(sink_rcpts) recipients, want 7"
counters_are "$T/m2" 7 0 1
queue_matches "$T/m2"
[ "$(metric 'spoold_queue_messages{state="failed"}' "$T/m2")" = 1 ] ||
	fail "the failed message is not counted failed"

# the textfile says the same (it is rewritten every second)
sleep 2.5
check_textfile
counters_are "$PROM" 7 0 1
queue_matches "$PROM"
[ "$(stat -c %a "$PROM")" = 644 ] || fail "textfile mode $(stat -c %a "$PROM")"

# anyone may read counts and health from the daemon, never an address
scrape "$T/m2n" nobody
counters_are "$T/m2n" 7 0 1
queue_matches "$T/m2n"
! grep -q '@' "$T/m2n" || fail "metrics name an address for nobody"

# a deferral: the relay is down
kill -TERM "$SINK_PID"
wait_gone "$SINK_PID" 5 || fail "sink did not stop"
make_msg "$T/msg5" "metrics deferred" >/dev/null
spoolctl submit -f app@example.org d@example.net <"$T/msg5" >/dev/null ||
	fail "submit 5 failed"
deadline=$(($(date +%s) + 20))
until [ "$(spoold_log_count 'to=<?d@example.net>?.*status=deferred')" -ge 1 ]; do
	[ "$(date +%s)" -lt "$deadline" ] || fail "no deferral logged"
	sleep 0.2
done
lo=$(deferrals)
scrape "$T/m3"
counters_are "$T/m3" 7 "$lo..$(deferrals)" 1
queue_matches "$T/m3"
[ $(($(metric 'spoold_queue_messages{state="deferred"}' "$T/m3") +
	$(metric 'spoold_queue_messages{state="delivering"}' "$T/m3"))) = 1 ] ||
	fail "the deferred message is not counted deferred"
[ "$(metric 'spoold_transport_up{transport="local"}' "$T/m3")" = 0 ] ||
	fail "transport local not down with the relay down"

# a restart: the counters are kept, _created does not move
stop_spoold
check_textfile
[ "$(metric spoold_up "$PROM")" = 0 ] || fail "textfile says up after stop"
scrape "$T/m4"
[ "$(metric spoold_up "$T/m4")" = 0 ] || fail "spoold_up is not 0 when stopped"
counters_are "$T/m4" 7 "$(deferrals)" 1
queue_matches "$T/m4"
scrape "$T/m4n" nobody
[ "$(metric spoold_up "$T/m4n")" = 0 ] || fail "spoold_up for nobody, stopped"
[ "$(grep -vc '^#' "$T/m4n")" = 1 ] ||
	fail "nobody reads more than spoold_up with no daemon: $(cat "$T/m4n")"
start_spoold
lo=$(deferrals)
scrape "$T/m5"
counters_are "$T/m5" 7 "$lo..$(deferrals)" 1
[ "$(metric 'spoold_messages_created{transport="local",status="sent"}' "$T/m5")" = "$created0" ] ||
	fail "_created moved over a restart"

# kill -9: nothing counted is lost; then the relay is back
kill9_spoold
start_spoold
python3 "$SINK_PY" --port "$SINK_PORT" --dir "$SINK_DIR" \
	--reject-rcpt "$BAD=550" >>"$T/sink-$SINK_PORT.log" 2>&1 &
SINK_PID=$!
T_PIDS+=("sink $SINK_PID")
wait_port "$SINK_PORT" 10 || fail "sink did not restart"
spoolctl flush >/dev/null || fail "flush failed"
wait_for_count 5 30
wait_spool_empty 20
scrape "$T/m6"
[ "$(sink_rcpts)" = 8 ] || fail "sink has $(sink_rcpts) recipients, want 8"
counters_are "$T/m6" 8 "$(deferrals)" 1
queue_matches "$T/m6"
[ "$(metric 'spoold_messages_created{transport="local",status="sent"}' "$T/m6")" = "$created0" ] ||
	fail "_created moved over a kill -9"

# the state deleted: counting starts again, and _created says when
stop_spoold
rm -f "$SPOOL/state/data.mdb" "$SPOOL/state/lock.mdb"
sleep 1.1
start_spoold
scrape "$T/m7"
counters_are "$T/m7" 0 0 0
queue_matches "$T/m7"
created1=$(metric 'spoold_messages_created{transport="local",status="sent"}' "$T/m7")
[ "$created1" -gt "$created0" ] ||
	fail "_created $created1 not after $created0 with a new state"
[ "$(metric 'spoold_queue_messages{state="failed"}' "$T/m7")" = 1 ] ||
	fail "the rebuilt state lost the failed message's count"
stop_spoold

# an unwritable textfile: one log line over several intervals, no crash,
# and --check-config names it with the fix
sed -i "s|^textfile = .*|textfile = $T/missing/spoold.prom|" "$CONF"
rc=0
"$SPOOLD" -c "$CONF" --check-config >"$T/check.out" 2>&1 || rc=$?
[ "$rc" = 78 ] || fail "--check-config exit $rc for an unwritable textfile"
grep -q '\[metrics\] textfile' "$T/check.out" ||
	fail "--check-config does not name [metrics] textfile: $(cat "$T/check.out")"
start_spoold
sleep 3.5
n=$(grep -c 'metrics: cannot' "$SPOOLD_LOG" || true)
[ "$n" = 1 ] || fail "$n log lines for the unwritable textfile (want 1)"
scrape "$T/m8"
[ "$(metric spoold_up "$T/m8")" = 1 ] || fail "spoold down with a bad textfile"
# a reload takes the fixed path at once
rm -f "$PROM"
sed -i "s|^textfile = .*|textfile = $PROM|" "$CONF"
kill -HUP "$SPOOLD_PID"
deadline=$(($(date +%s) + 10))
until [ -f "$PROM" ]; do
	[ "$(date +%s)" -lt "$deadline" ] || fail "no textfile after SIGHUP"
	sleep 0.2
done
check_textfile
[ "$(metric spoold_up "$PROM")" = 1 ] || fail "textfile after SIGHUP: not up"

# rate limits and coalescing count as their log lines do: one token an
# hour, so all but the first message wait, and keyed ones merge meanwhile
sed -i '/^connect_timeout = /a rate = 1/1h\nburst = 1' "$CONF"
n=$(grep -c 'reloaded' "$SPOOLD_LOG" || true)
kill -HUP "$SPOOLD_PID"
deadline=$(($(date +%s) + 10))
until [ "$(grep -c 'reloaded' "$SPOOLD_LOG" || true)" -gt "$n" ]; do
	[ "$(date +%s)" -lt "$deadline" ] || fail "the reload is not logged"
	sleep 0.1
done
for i in 1 2 3; do
	make_msg "$T/rmsg$i" "rate $i" >/dev/null
	spoolctl submit -f app@example.org "r$i@example.net" <"$T/rmsg$i" \
		>/dev/null || fail "submit r$i failed"
done
for i in 1 2 3; do
	make_msg "$T/kmsg$i" "key $i" >/dev/null
	rc=0
	spoolctl submit --key disk-full -f app@example.org k@example.net \
		<"$T/kmsg$i" >/dev/null || rc=$?
	# 0 queued, 10 merged or held (spoolctl(1))
	[ "$rc" = 0 ] || [ "$rc" = 10 ] ||
		fail "submit --key $i: exit $rc"
done
deadline=$(($(date +%s) + 20))
until [ "$(spoold_log_count 'status=coalesced replaced=')" -ge 2 ] &&
	[ "$(spoold_log_count 'status=rate-limited')" -ge 2 ]; do
	[ "$(date +%s)" -lt "$deadline" ] ||
		fail "no merges or no rate-limited messages logged"
	sleep 0.2
done
lo=$(spoold_log_count 'status=rate-limited')
scrape "$T/m9"
hi=$(spoold_log_count 'status=rate-limited')
got=$(metric 'spoold_rate_limited_messages_total{transport="local"}' "$T/m9")
[ "$got" -ge "$lo" ] && [ "$got" -le "$hi" ] ||
	fail "spoold_rate_limited_messages_total $got, log says $lo..$hi"
[ "$(metric spoold_coalesced_messages_total "$T/m9")" = \
	"$(spoold_log_count 'status=coalesced replaced=')" ] ||
	fail "spoold_coalesced_messages_total $(metric spoold_coalesced_messages_total "$T/m9"), log says $(spoold_log_count 'status=coalesced replaced=')"
queue_matches "$T/m9"
stop_spoold
log "ok"

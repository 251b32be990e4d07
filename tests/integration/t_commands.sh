#!/bin/bash
# t_commands.sh - every spoolctl command against a running daemon and
# against a stopped one: list, show, status, check, flush, hold, release,
# requeue, delete, probe and submit (--wait too), with their exit codes and
# their effect on the queue; mailq lists the same queue.
. "$(dirname "$0")/lib.sh"

start_sink --reject-rcpt bounce@example.net=550 \
	--reject-rcpt later@example.net=451
write_conf "$SINK_PORT" 1h

submit_to() { # RCPT TAG: queues a message, prints its id
	make_msg "$T/$2.eml" "$2" 300 >/dev/null
	spoolctl submit "$1" <"$T/$2.eml" || fail "submit $2 failed"
}
state_of() { # ID: its state in list --all --json, or "gone"
	spoolctl list --all --json | sink_tool json \
		"([m['state'] for m in d if m['id'] == '$1'] + ['gone'])[0]"
}
tries_of() { # ID: the attempts in its history (a flushed one too)
	spoolctl show "$1" --json | sink_tool json 'len(d["history"])'
}
wait_state() { # ID STATE
	for _ in $(seq 100); do
		[ "$(state_of "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	fail "$1 is $(state_of "$1"), want $2"
}
expect_rc() { # CODE COMMAND...: runs spoolctl COMMAND, wants exit CODE
	local want=$1 rc=0
	shift
	spoolctl "$@" >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" = "$want" ] ||
		fail "spoolctl $* exited $rc, want $want: $(cat "$T/out" "$T/err")"
}
wait_tried_after() { # ID N WHY: until ID has been tried more than N times
	for _ in $(seq 100); do
		[ "$(tries_of "$1")" -gt "$2" ] && return 0
		sleep 0.1
	done
	fail "$1 $3"
}
in_list() { # ID ARGS...: 0 if list ARGS --json shows ID
	local id=$1
	shift
	[ "$(spoolctl list "$@" --json | sink_tool json \
		"len([m for m in d if m['id'] == '$id'])")" = 1 ]
}

# round MODE: one pass over the commands; MODE is running or stopped.
# Expects a deferred message $def and a failed one $bad in the queue.
round() {
	local mode=$1 n out
	log "--- spoold $mode ---"

	# inspection
	expect_rc 0 list
	grep -q "$def" "$T/out" || fail "$mode: list does not show $def"
	in_list "$def" || fail "$mode: list --json lacks $def"
	in_list "$bad" --failed || fail "$mode: list --failed lacks $bad"
	! in_list "$bad" || fail "$mode: list (no flag) shows a failed message"
	in_list "$bad" --all || fail "$mode: list --all lacks $bad"
	SPOOLD_CONFIG=$CONF "$(dirname "$SPOOLCTL")/mailq" >"$T/mailq" 2>&1 ||
		fail "$mode: mailq exited $?: $(cat "$T/mailq")"
	grep -q "$def" "$T/mailq" || fail "$mode: mailq does not show $def"
	expect_rc 0 show "$def"
	grep -q "later@example.net" "$T/out" || fail "$mode: show lacks the rcpt"
	[ "$(spoolctl show "$def" --json | sink_tool json \
		'" ".join(r["state"] for r in d["recipients"])')" = pending ] ||
		fail "$mode: show --json recipients: $(spoolctl show "$def" --json)"
	expect_rc 66 show 0000000000000000000000aa
	expect_rc 0 status --json
	want=$([ "$mode" = running ] && echo True || echo False)
	[ "$(sink_tool json 'd["daemon"]["running"]' <"$T/out")" = "$want" ] ||
		fail "$mode: status --json running is not $want: $(cat "$T/out")"
	[ "$(sink_tool json 'd["queue"]["failed"]' <"$T/out")" = 1 ] ||
		fail "$mode: status --json failed count: $(cat "$T/out")"
	if [ "$mode" = running ]; then
		expect_rc 1 check # a failed message is kept
		expect_rc 0 probe
		grep -q "local" "$T/out" || fail "probe names no transport"
	else
		expect_rc 2 check
		grep -q "not running" "$T/out" || fail "check: $(cat "$T/out")"
		expect_rc 69 probe
	fi

	# flush: the deferred message is tried again now
	n=$(tries_of "$def")
	expect_rc 0 flush "$def"
	grep -q "1 message(s) due now" "$T/out" ||
		fail "$mode: flush said $(cat "$T/out")"
	if [ "$mode" = running ]; then
		wait_tried_after "$def" "$n" "was not retried by flush"
		wait_state "$def" deferred
	fi

	# hold and release
	expect_rc 0 hold "$def"
	wait_state "$def" held
	in_list "$def" --held || fail "$mode: list --held lacks $def"
	expect_rc 0 release "$def"
	[ "$(state_of "$def")" != held ] || fail "$mode: $def still held"
	[ "$mode" != running ] || wait_state "$def" deferred

	# requeue a failed message; delete it
	expect_rc 0 requeue "$bad"
	if [ "$mode" = running ]; then
		wait_state "$bad" failed # the 550 again
	else
		[ "$(state_of "$bad")" = queued ] ||
			fail "requeued $bad is $(state_of "$bad")"
	fi
	expect_rc 0 delete "$bad"
	[ "$(state_of "$bad")" = gone ] || fail "$mode: $bad not deleted"
	expect_rc 66 delete "$bad"

	# submit, and submit --wait: running, it is delivered; stopped, it
	# waits on disk and --wait says so with 75
	if [ "$mode" = running ]; then
		printf 'Subject: w\n\nx\n' |
			spoolctl submit --wait=20 ok@example.net >/dev/null ||
			fail "submit --wait exited $?"
	else
		rc=0
		printf 'Subject: w\n\nx\n' |
			spoolctl submit --wait=1 ok@example.net >/dev/null \
				2>"$T/err" || rc=$?
		[ "$rc" = 75 ] || fail "stopped: submit --wait exited $rc, want 75"
	fi
}

start_spoold
def=$(submit_to later@example.net def)
bad=$(submit_to bounce@example.net bad)
wait_state "$def" deferred
wait_state "$bad" failed
round running

bad=$(submit_to bounce@example.net bad2)
wait_state "$bad" failed
before=$(sink_count)
stop_spoold
round stopped

# what was done offline holds once spoold runs again: the message
# submitted with --wait is delivered, the released one is tried at once
n=$(tries_of "$def")
start_spoold
wait_for_count $((before + 1)) 20
wait_tried_after "$def" "$n" \
	"released and flushed offline, was not tried at start"
log "ok"

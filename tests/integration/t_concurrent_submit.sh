#!/bin/bash
# t_concurrent_submit.sh - 50 `spoolctl submit` processes started at once
# (the first ones also race to create the spool): all succeed, each prints
# its own id, and the spool holds exactly those 50 files.
. "$(dirname "$0")/lib.sh"

N=50
write_conf 25 # never contacted: no daemon runs in this test
make_msg "$T/msg" "concurrent" 1500 >/dev/null
mkdir "$T/out"

pids=()
for i in $(seq 1 "$N"); do
	(
		rc=0
		timeout 60 "$SPOOLCTL" -c "$CONF" submit -f app@example.org \
			"r$i@example.net" <"$T/msg" >"$T/out/$i.id" \
			2>"$T/out/$i.err" || rc=$?
		echo "$rc" >"$T/out/$i.rc"
	) &
	pids+=($!)
done
for p in "${pids[@]}"; do
	wait "$p" || fail "submitter subshell $p failed"
done

for i in $(seq 1 "$N"); do
	rc=$(cat "$T/out/$i.rc")
	[ "$rc" = 0 ] ||
		fail "submit $i exited $rc: $(head -c 300 "$T/out/$i.err")"
	[ ! -s "$T/out/$i.err" ] ||
		fail "submit $i wrote to stderr: $(head -c 300 "$T/out/$i.err")"
done
cat "$T"/out/*.id | tr -d ' \r' | grep -v '^$' | sort >"$T/ids"
[ "$(wc -l <"$T/ids")" = "$N" ] || fail "$(wc -l <"$T/ids") ids printed"
grep -vqE '^[0-9a-f]{24}$' "$T/ids" && fail "malformed id: $(grep -vE '^[0-9a-f]{24}$' "$T/ids" | head -1)"
[ "$(sort -u "$T/ids" | wc -l)" = "$N" ] ||
	fail "ids not distinct: $(uniq -d "$T/ids" | head -3)"
ls "$SPOOL/new" | sort >"$T/files"
cmp -s "$T/ids" "$T/files" ||
	fail "spool new/ does not hold exactly the printed ids: $(diff "$T/ids" "$T/files" | head -5)"
[ -z "$(ls -A "$SPOOL/tmp")" ] || fail "leftovers in tmp/: $(ls "$SPOOL/tmp")"

# every file names the recipient its process submitted
for i in $(seq 1 "$N"); do
	id=$(tr -d ' \r\n' <"$T/out/$i.id")
	[ "$(sink_tool spool-envelope "$SPOOL/new/$id" |
		sink_tool json 'd["rcpt"]')" = "[\"r$i@example.net\"]" ] ||
		fail "new/$id does not hold r$i's message"
done
log "ok: $N concurrent submissions, $N distinct ids, $N files"

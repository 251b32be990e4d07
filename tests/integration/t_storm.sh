#!/bin/bash
# t_storm.sh - an alarm storm through a relay with a sending limit, with
# rate limiting, coalescing and priority together:
#   500 alarms from 50 keys (`--key K --every 30s`) within a minute, to a
#   relay that answers "450 4.7.0 rate limit exceeded" above 60 a minute
#   (capture_sink.py --rate-limit 60/60, a bucket of 60), with `rate =
#   60/1m` and a burst under the relay's;
#   - the relay refuses nothing;
#   - nothing is lost: for each key the first alarm arrives as it is, then
#     digests ("repeated N times"; an alarm alone in its window goes as it
#     is, at the window's end) whose counts add up to every alarm of the
#     key, the last one carrying the key's last body;
#   - an urgent message submitted while digests wait for the rate limit
#     arrives before every one of them;
#   - no transport is reported down and no message fails.
# Without `rate` the relay refuses part of the digests (they would still
# arrive, slowed by the refusals): the first check is what `rate` buys.
. "$(dirname "$0")/lib.sh"

KEYS=50
ROUNDS=10

start_sink --rate-limit 60/60 --refusals "$T/refusals"
write_conf "$SINK_PORT" 1h
cat >>"$CONF" <<EOF
rate = 60/1m
burst = 50
EOF
start_spoold

# alarm KEY ROUND: one alarm of KEY; prints submit's exit code
alarm() {
	local rc=0
	printf 'From: alarm@example.org\nTo: ops@example.net\nSubject: %s round %s\n\n%s body %s\n' \
		"$1" "$2" "$1" "$2" |
		spoolctl submit --key "$1" --every 30s -f alarm@example.org \
			ops@example.net >/dev/null 2>>"$T/submit.err" || rc=$?
	echo "$rc"
}

# --- the storm: round 1 goes at once, rounds 2..10 are held ---------
t0=$(date +%s)
for ((k = 1; k <= KEYS; k++)); do
	rc=$(alarm "k$k" 1)
	[ "$rc" = 0 ] || fail "first alarm of k$k: exit $rc: $(tail -1 "$T/submit.err")"
done
for ((r = 2; r <= ROUNDS; r++)); do
	for ((k = 1; k <= KEYS; k++)); do
		rc=$(alarm "k$k" "$r")
		[ "$rc" = 10 ] ||
			fail "alarm $r of k$k: exit $rc, want 10 (held): $(tail -1 "$T/submit.err")"
	done
done
log "$((KEYS * ROUNDS)) alarms submitted in $(($(date +%s) - t0)) s"
[ $(($(date +%s) - t0)) -lt 60 ] || log "note: the storm took over a minute"

# --- the digests fall due together and wait for tokens: an urgent
# message then goes before every one still waiting ---
waiting=
for _ in $(seq 900); do
	waiting=$(spoolctl list --json | python3 -c '
import json, sys
print(" ".join(sorted(m["key"] for m in json.load(sys.stdin)
                      if m.get("key") and "rate limit" in (m.get("last_error") or ""))))')
	# the windows end within a second or two of each other: wait until
	# a backlog has formed
	[ "$(wc -w <<<"$waiting")" -ge 5 ] && break
	sleep 0.1
done
[ "$(wc -w <<<"$waiting")" -ge 5 ] ||
	fail "no backlog of digests waiting for the rate limit: '$waiting'"
printf 'From: ops@example.org\nTo: oncall@example.net\nSubject: urgent: disk full\n\nnow\n' |
	spoolctl submit --priority urgent -f ops@example.org oncall@example.net \
		>/dev/null || fail "urgent submit"
# submitted: from here on it is in the queue (the submit itself may
# take a second on a loaded machine)
t_urgent=$(date +%s.%N)
log "urgent submitted while $(wc -w <<<"$waiting") digests wait for the rate limit"

# --- everything arrives ---
python3 - "$SINK_DIR" "$KEYS" "$ROUNDS" "$waiting" "$T/refusals" "$t_urgent" <<'EOF' ||
import os, re, sys, time
d, keys, rounds, waiting, refusals, t_urgent = sys.argv[1:]
keys, rounds, waiting = int(keys), int(rounds), waiting.split()
t_urgent = float(t_urgent)

def arrivals():
    out = []
    for f in sorted(os.listdir(d), key=lambda f: int(f.split(".")[0])):
        if not f.endswith(".eml"):
            continue
        data = open(os.path.join(d, f), "rb").read()
        head, _, body = data.partition(b"\r\n\r\n")
        head = re.sub(rb"\r\n[ \t]+", b" ", head).decode().replace("\r\n", "\n")
        subj = re.search(r"^Subject: (.*)$", head, re.M).group(1)
        rep = re.search(r"^X-Spoold-Repeated: (\d+) times", head, re.M)
        out.append((subj, int(rep.group(1)) if rep else 1, body,
                    os.stat(os.path.join(d, f)).st_mtime))
    return out

def complete(got):
    total = {}
    for subj, n, *_ in got:
        m = re.match(r"(k\d+) round", subj)
        if m:
            total[m.group(1)] = total.get(m.group(1), 0) + n
    return len(total) == keys and all(v == rounds for v in total.values())

deadline = time.time() + 300
got = arrivals()
while not complete(got) and time.time() < deadline:
    time.sleep(1)
    got = arrivals()
urgent = [i for i, a in enumerate(got) if a[0].startswith("urgent")]
assert len(urgent) == 1, "urgent arrived %d times" % len(urgent)
per_key = {}
for i, (subj, n, body, _) in enumerate(got):
    m = re.match(r"(k\d+) round (\d+)", subj)
    if m:
        per_key.setdefault(m.group(1), []).append((i, subj, n, body))
assert len(per_key) == keys, "keys seen: %d of %d" % (len(per_key), keys)
for k, msgs in per_key.items():
    first = msgs[0]
    assert first[1] == "%s round 1" % k and first[2] == 1, \
        "%s: first arrival %r" % (k, first[1])
    assert len(msgs) >= 2, "%s: no digest" % k
    for _, subj, n, _ in msgs[1:]:
        # a digest, or an alarm held alone in its window: as it was sent
        assert ("repeated %d times" % n in subj) if n > 1 else \
            "repeated" not in subj, "%s: %r" % (k, subj)
    total = sum(n for _, _, n, _ in msgs)
    assert total == rounds, "%s: %d of %d alarms accounted for" % (k, total, rounds)
    last = msgs[-1]
    assert ("%s body %d" % (k, rounds)).encode() in last[3], \
        "%s: the last digest does not carry the last body" % k
# Once the urgent is queued, a digest already claimed may still be on its
# way and the pickup may miss the token that falls due meanwhile (1 a
# second); beyond that, none of the digests waiting goes first.
assert len(waiting) > 2, "only %d digests waited" % len(waiting)
ahead = [got[i][0] for i in range(urgent[0]) if got[i][3] > t_urgent]
assert len(ahead) <= 2, "%d messages went between the urgent's submission " \
    "and its arrival: %r" % (len(ahead), ahead)
refused = int(open(refusals).read().strip() or 0) if os.path.exists(refusals) else 0
assert refused == 0, "the relay refused %d messages" % refused
print("%d messages for %d alarms; urgent arrived %d of %d; refusals 0"
      % (len(got), keys * rounds + 1, urgent[0] + 1, len(got)))
EOF
	fail "the storm's mail is not what was sent"
log "storm delivered: $(tail -1 "$T/refusals" 2>/dev/null || echo no) refusals file"
[ "$(spoold_log_count 'health=down')" = 0 ] || fail "a transport was reported down"
[ "$(spoold_log_count 'status=failed')" = 0 ] || fail "a message failed"
[ "$(spoolctl list --json | sink_tool json 'len(d)')" = 0 ] ||
	fail "messages left: $(spoolctl list)"
log "storm: nothing refused, lost or failed; urgent went first"

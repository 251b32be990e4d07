#!/bin/bash
# memory.sh - idle memory of spoold, in all and library by library.
#
#   bench/memory.sh [BUILD_DIR]     start spoold with the bench's
#                                   configuration (one smtp transport,
#                                   tls = none, relay 127.0.0.1), deliver
#                                   one message to a capturing sink, wait
#                                   2 s, print its memory
#   bench/memory.sh --pid PID       print the memory of a running process
#
# Figures are in kB, from /proc/PID/smaps_rollup (totals) and
# /proc/PID/smaps (each mapping's Rss and Pss summed per file; anonymous
# mappings, heap and stacks together as [anon]). PSS shares a page among
# the processes that map it, so it is only comparable on a quiet machine.
# Run as root, as the bench runs spoold. BUILD_DIR defaults to ./build.

# smaps_report PID: the totals, then one line per file, largest PSS first.
smaps_report() {
	local pid=$1
	awk '/^(Rss|Pss):/ { printf "total %s %s kB\n", $1, $2 }' \
		"/proc/$pid/smaps_rollup" || return 1
	awk '
	/^[0-9a-f]+-[0-9a-f]+ / {
		name = (NF >= 6) ? $6 : "[anon]"
		if (name ~ /^\[(heap|stack|anon)/) name = "[anon]"
		sub(/.*\//, "", name)
		next
	}
	/^Rss:/ { rss[name] += $2 }
	/^Pss:/ { pss[name] += $2 }
	END {
		for (n in pss)
			if (rss[n] > 0)
				printf "%8d %8d  %s\n", pss[n], rss[n], n
	}' "/proc/$pid/smaps" | sort -rn | {
		printf "%8s %8s  %s\n" "PSS kB" "RSS kB" "mapping"
		cat
	}
}

if [ "${1:-}" = --pid ]; then
	[ -n "${2:-}" ] || {
		echo "usage: memory.sh --pid PID" >&2
		exit 64
	}
	smaps_report "$2"
	exit
fi

BUILD=$(cd "${1:-build}" && pwd) || exit 66
export SPOOLD="$BUILD/spoold/spoold" SPOOLCTL="$BUILD/spoolctl/spoolctl"
export SENDMAIL="$BUILD/spoolctl/sendmail"
# the test harness gives a private directory, ports and a clean stop
# shellcheck source=../tests/integration/lib.sh
. "$(dirname "$0")/../tests/integration/lib.sh"

start_sink
write_bench_conf "$SINK_PORT"
start_spoold
make_msg "$T/m" "memory" >/dev/null
spoolctl submit -f bench@example.org rcpt@example.net <"$T/m" >/dev/null ||
	fail "submit failed"
wait_for_count 1 10
sleep 2
smaps_report "$SPOOLD_PID"
stop_spoold

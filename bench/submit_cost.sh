#!/usr/bin/env bash
# submit_cost.sh SPOOLCTL [RUNS [plain]]: the wall time of one
# `spoolctl submit`,
# as root and as user nobody, RUNS times each (default 200); prints each
# median and the 90th percentile in milliseconds. No daemon runs: this is
# the submitter's own cost (process start, configuration, durable write).
#
# nobody submits through a copy of SPOOLCTL in the test folder, made
# setgid spoold-submit as spoold-setup installs spoolctl, unless "plain"
# is given (a spoolctl of the earlier model, whose spool anyone could
# write). The spool is made by that spoolctl's `init` as root.
set -euo pipefail
[ "$(id -u)" = 0 ] || {
	echo "submit_cost.sh: run as root (it submits as nobody too)" >&2
	exit 77
}
spoolctl=$(realpath "${1:?usage: submit_cost.sh SPOOLCTL [RUNS [plain]]}")
runs=${2:-200}
plain=${3:-}
dir=$(mktemp -d /tmp/spool-submit-cost.XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 755 "$dir"
cp "$spoolctl" "$dir/spoolctl"
if [ "$plain" != plain ]; then
	chgrp spoold-submit "$dir/spoolctl"
	chmod 2755 "$dir/spoolctl"
fi
printf '[spool]\ndir = %s/spool\n[transport local]\nhost = 127.0.0.1\n' \
	"$dir" >"$dir/spoold.conf"
chmod 644 "$dir/spoold.conf"
"$dir/spoolctl" -c "$dir/spoold.conf" init >/dev/null
printf 'Subject: cost\n\n%s\n' "$(head -c 600 /dev/zero | tr '\0' x)" \
	>"$dir/msg"
chmod 644 "$dir/msg"

# measure WHO: RUNS submissions, one wall time (ns) a line
measure() {
	local who=$1 t0 t1 i run=()
	[ "$who" = root ] || run=(setpriv --reuid=nobody --regid=nogroup
		--clear-groups)
	for ((i = 0; i < runs; i++)); do
		t0=$(date +%s%N)
		"${run[@]}" "$dir/spoolctl" -c "$dir/spoold.conf" \
			submit cost@example.org <"$dir/msg" >/dev/null
		t1=$(date +%s%N)
		echo $((t1 - t0))
	done
}
for who in root nobody; do
	measure "$who" | sort -n | awk -v who="$who" '
		{ v[NR] = $1 }
		END { printf "%-6s runs %d  median %.2f ms  p90 %.2f ms\n", who,
			NR, v[int((NR + 1) / 2)] / 1e6, v[int(NR * 0.9)] / 1e6 }'
done

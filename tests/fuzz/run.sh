#!/usr/bin/env bash
# Bounded fuzz smoke run, as CI does it: builds the libFuzzer targets with
# clang in their own build directory and runs each one for a fixed time on
# a copy of its seed corpus (tests/fuzz/corpus/<target>), so the repository
# is never written to. Any crash, leak, sanitizer report, timeout or
# out-of-memory fails the run; the input that caused it is kept and its
# path printed.
#
#   tests/fuzz/run.sh [TARGET...]     default: every target
#   FUZZ_SECONDS   time per target (default 30)
#   FUZZ_BUILD_DIR build directory (default build-fuzz-smoke)
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${FUZZ_SECONDS:-30}
build=${FUZZ_BUILD_DIR:-build-fuzz-smoke}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	targets=(spool_parse pickup_check msg_prepare addr conf ctl_request
		mail2text aliases)
fi

if ! command -v clang >/dev/null; then
	echo "fuzz: clang not found (libFuzzer needs it; tools/install-deps" \
		"installs it)" >&2
	exit 1
fi

# Warnings are gcc's job in the two builds before this one (-Werror there);
# a warning only clang emits must not stop the fuzzing.
CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DSPOOL_FUZZ=ON \
	-DSPOOL_WERROR=OFF -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" \
	--target "${targets[@]/#/fuzz_}" >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/spool-fuzz.XXXXXX")
failed=0
for t in "${targets[@]}"; do
	mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
	cp tests/fuzz/corpus/"$t"/* "$work/$t/corpus/"
	log=$work/$t/log
	# -timeout: one input taking 5 s is a hang, not slowness; the RSS
	# limit turns unbounded growth into a failure instead of swap.
	if "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" \
		-rss_limit_mb=2048 -timeout=5 -print_final_stats=1 \
		-artifact_prefix="$work/$t/artifacts/" \
		"$work/$t/corpus" >"$log" 2>&1; then
		execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
		cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
		echo "fuzz: $t ok (${execs:-?} runs, $cov, ${seconds}s)"
	else
		failed=1
		echo "fuzz: $t FAILED; log and input kept in $work/$t" >&2
		grep -E 'ERROR|SUMMARY|Test unit written' "$log" >&2 || true
	fi
done
if [ "$failed" -ne 0 ]; then
	exit 1
fi
rm -rf "$work"

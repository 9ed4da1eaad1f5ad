#!/usr/bin/env bash
# Runs each libFuzzer binary of BUILD_DIR for SECONDS (or RUNS executions when
# FUZZ_RUNS is set) with its dictionary, one target at a time, then reports
# executions, speed, corpus growth and crashes per target. New inputs go to a
# scratch folder (never into fuzz/corpus/: seeds are chosen by hand); crash
# inputs to fuzz/crashes/<target>/, to be added to the corpus once fixed.
# Usage: fuzz/run_fuzzers.sh BUILD_DIR SECONDS TARGET...
set -uo pipefail

build_dir=$1 seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
scratch=${FUZZ_SCRATCH:-$build_dir/fuzz-scratch}
limit=(-max_total_time="$seconds")
if [ -n "${FUZZ_RUNS:-}" ]; then limit=(-runs="$FUZZ_RUNS"); fi

failed=0
report=()
for target in "$@"; do
  bin=$build_dir/fuzz/$target
  mkdir -p "$scratch/$target" "$here/crashes/$target"
  log=$scratch/$target.log
  extra=()
  # A header and a token body fit in far less than the default 4 KB; longer
  # inputs only make each run slower.
  if [ "$target" = auth_fuzzer ]; then extra=(-max_len=512); fi
  echo "fuzz: $target (${limit[*]})" >&2
  start=$SECONDS
  # -timeout: an input that takes this long is a bug (a request must not hang a thread).
  "$bin" -dict="$here/$target.dict" "${limit[@]}" "${extra[@]}" -timeout=25 -rss_limit_mb=2048 \
    -artifact_prefix="$here/crashes/$target/" -print_final_stats=1 \
    "$scratch/$target" "$here/corpus/$target" >"$log" 2>&1
  rc=$?
  elapsed=$((SECONDS - start))
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
  execs=$(stat number_of_executed_units) speed=$(stat average_exec_per_sec)
  secs=$(stat slowest_unit_time_sec)
  corpus=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  crashes=$(find "$here/crashes/$target" -type f | wc -l)
  report+=("$(printf '%-26s rc=%-3s execs=%-10s secs=%-5s exec/s=%-7s corpus=%-5s slowest=%ss crash files=%s' \
    "$target" "$rc" "${execs:-?}" "$elapsed" "${speed:-?}" "${corpus:-?}" "${secs:-?}" "$crashes")")
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    failed=1
    echo "fuzz: $target failed; see $log" >&2
    grep -m 20 -E 'ERROR|SUMMARY|runtime error|fuzz harness|_fuzzer:' "$log" >&2
  fi
done
printf '%s\n' "${report[@]}"
exit $failed

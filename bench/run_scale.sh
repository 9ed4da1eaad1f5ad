#!/usr/bin/env bash
# Scale benchmark: the whole query benchmark (run_query.sh: load, warm and cold
# latency, start-up, memory, disk, user deletes under a tracking load) at 1M
# and 10M events, and 100M with SCALE_100M=1, then one markdown table with a
# column per size (bench/scale_table.js). Each run's report, log and summary
# stay in SCALE_OUT. See bench/query_README.md.
#
#   bench/run_scale.sh                                   # 1M and 10M (~30 min on 2 cores)
#   SCALE_100M=1 KEEP_PREFIX=/var/tmp/nqs bench/run_scale.sh   # and 100M (hours), data kept per size
#   SIZES="1000000" bench/run_scale.sh                   # any list of sizes
#
# Every other setting of run_query.sh (NUCLEON_BIN, COLD_RESTARTS, DROP_CACHES,
# DELETES, ...) passes through to each run.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

SCALE_100M=${SCALE_100M:-0}
default_sizes="1000000 10000000"
[ "$SCALE_100M" = 1 ] && default_sizes="$default_sizes 100000000"
SIZES=${SIZES:-$default_sizes}
SCALE_OUT=${SCALE_OUT:-}
KEEP_PREFIX=${KEEP_PREFIX:-}
# The scaling probes are not in the table and take minutes: off unless asked.
export SCALING=${SCALING:-0}

log() { echo "run_scale: $*" >&2; }

if [ -z "$SCALE_OUT" ]; then
  SCALE_OUT=$(mktemp -d "${TMPDIR:-/tmp}/nucleon-scale.XXXXXX")
else
  mkdir -p "$SCALE_OUT"
fi
label() {  # 1000000 -> 1M
  local n=$1
  if [ $(( n % 1000000 )) = 0 ]; then echo "$(( n / 1000000 ))M"
  elif [ $(( n % 1000 )) = 0 ]; then echo "$(( n / 1000 ))k"
  else echo "$n"; fi
}

summaries=()
for size in $SIZES; do
  l=$(label "$size")
  keep=()
  [ -n "$KEEP_PREFIX" ] && keep=(KEEP_DATA="$KEEP_PREFIX-$l")
  # a rough guard: the server has stored about 170-200 bytes an event
  parent=${KEEP_PREFIX:+$(dirname "$KEEP_PREFIX")}
  parent=${parent:-${DATA_PARENT:-${TMPDIR:-/tmp}}}
  avail=$(df -Pk "$parent" | awk 'NR == 2 {print $4}')
  need=$(( size / 4 ))  # KiB: 256 bytes an event
  [ "$avail" -gt "$need" ] || log "WARNING: $parent has $(( avail / 1048576 )) GiB free; $l events may need $(( need / 1048576 )) GiB"
  log "$l events: report in $SCALE_OUT/report-$l.txt, progress in $SCALE_OUT/log-$l.txt ($(date -u +%H:%M:%S) UTC)"
  t0=$(date +%s)
  rm -f "$SCALE_OUT/summary-$l.json"
  if env EVENTS="$size" SUMMARY="$SCALE_OUT/summary-$l.json" "${keep[@]}" "$here/run_query.sh" \
      >"$SCALE_OUT/report-$l.txt" 2>"$SCALE_OUT/log-$l.txt"; then
    log "$l events: done in $(( $(date +%s) - t0 )) s"
  else
    log "$l events: run_query.sh failed after $(( $(date +%s) - t0 )) s (last lines of its log below); the table leaves it out"
    tail -n 15 "$SCALE_OUT/log-$l.txt" >&2
  fi
  [ -f "$SCALE_OUT/summary-$l.json" ] && summaries+=("$SCALE_OUT/summary-$l.json")
done

[ "${#summaries[@]}" -gt 0 ] || { log "no run finished"; exit 1; }
node "$here/scale_table.js" "${summaries[@]}" | tee "$SCALE_OUT/table.md"
log "table in $SCALE_OUT/table.md; reports, logs and summaries in $SCALE_OUT"

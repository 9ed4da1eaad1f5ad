#!/usr/bin/env bash
# Ingest benchmark: starts build/nucleon on a fresh data folder and a free
# loopback port, creates an app, runs nucleon_load R times per transport
# (HTTP and WebSocket, interleaved), prints the median acknowledged events per
# second of each, checks that every acknowledged event was stored, and stops
# the server. Talks only to 127.0.0.1; every step is bounded in time.
#
#   bench/run_ingest.sh [--runs 5] [--seconds 10] [--fsync full|normal] ...
#
# See bench/README.md for the flags and how to read the output.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

runs=5
seconds=10
warmup=2
drain=5
fsync=full
batch=50
devices=1000
http_connections=64
ws_connections=16
pipeline=4
client_threads=1
server_threads=""
deflate=""
modes="http ws"
out=""
nucleon_bin=${NUCLEON_BIN:-$root/build/nucleon}
load_bin=${NUCLEON_LOAD:-}
data_parent=${TMPDIR:-/tmp}

usage() {
  cat >&2 <<'EOF'
usage: bench/run_ingest.sh [options]
  --runs R                 runs per transport (default 5)
  --seconds S              measured seconds per run (default 10)
  --warmup S               unmeasured seconds before each run (default 2)
  --fsync full|normal      server durability mode (default full)
  --batch N                events per message (default 50)
  --devices D              simulated devices (default 1000)
  --http-connections N     HTTP keep-alive connections (default 64)
  --ws-connections N       WebSocket connections (default 16)
  --pipeline K             WebSocket messages in flight per connection (default 4)
  --client-threads T       nucleon_load io threads (default 1)
  --server-threads N       nucleon serve --threads (default: the server's own)
  --deflate                WebSocket clients offer permessage-deflate
  --modes "http ws"        which transports to run
  --data-parent DIR        where the temporary data folder goes (default $TMPDIR or /tmp);
                           put it on the disk you want to measure, not tmpfs
  --out FILE               also write every run's JSON line to FILE
  --nucleon PATH           server binary (default build/nucleon, env NUCLEON_BIN)
  --load PATH              nucleon_load binary (default: build/bench/nucleon_load if
                           present, else built standalone; env NUCLEON_LOAD)
EOF
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --fsync) fsync=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --devices) devices=$2; shift 2 ;;
    --http-connections) http_connections=$2; shift 2 ;;
    --ws-connections) ws_connections=$2; shift 2 ;;
    --pipeline) pipeline=$2; shift 2 ;;
    --client-threads) client_threads=$2; shift 2 ;;
    --server-threads) server_threads=$2; shift 2 ;;
    --deflate) deflate=--deflate; shift ;;
    --modes) modes=$2; shift 2 ;;
    --data-parent) data_parent=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --nucleon) nucleon_bin=$2; shift 2 ;;
    --load) load_bin=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "run_ingest: unknown option $1" >&2; usage ;;
  esac
done

log() { echo "run_ingest: $*" >&2; }
die() { log "$*"; exit 1; }

[ -x "$nucleon_bin" ] || die "no server binary at $nucleon_bin (build the project first)"
case "$fsync" in full|normal) ;; *) die "--fsync is full or normal" ;; esac

# The load generator: an explicit one, the project build's, or a standalone
# build of bench/ (never touches the project's build folder).
if [ -z "$load_bin" ]; then
  if [ -x "$root/build/bench/nucleon_load" ] &&
     [ "$root/build/bench/nucleon_load" -nt "$here/ingest_load.cc" ]; then
    load_bin=$root/build/bench/nucleon_load
  else
    bench_build=${NUCLEON_BENCH_BUILD:-${TMPDIR:-/tmp}/nucleon-bench-build}
    log "building nucleon_load in $bench_build"
    generator=()
    if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
    timeout 300 cmake -S "$here" -B "$bench_build" "${generator[@]}" \
      -DCMAKE_BUILD_TYPE=Release >/dev/null
    timeout 600 cmake --build "$bench_build" --target nucleon_load >/dev/null
    load_bin=$bench_build/nucleon_load
  fi
fi
[ -x "$load_bin" ] || die "no nucleon_load at $load_bin"

work=$(mktemp -d "${TMPDIR:-/tmp}/nucleon-ingest-bench.XXXXXX")
data=$(mktemp -d "$data_parent/nucleon-ingest-data.XXXXXX")
server_pid=""

stop_server() {
  [ -n "$server_pid" ] || return 0
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 150); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
      log "server did not stop within 15 s of SIGTERM; killing it"
      kill -KILL "$server_pid" 2>/dev/null || true
    fi
  fi
  wait "$server_pid" 2>/dev/null && server_rc=0 || server_rc=$?
  server_pid=""
}
cleanup() {
  stop_server
  rm -rf "$data" "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- machine
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem_gb=$(awk '/^MemTotal:/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)
data_fs=$(df -PT "$data" 2>/dev/null | awk 'NR == 2 {print $2}')
machine="$(nproc) CPUs, ${cpu_model:-unknown CPU}, ${mem_gb} GB RAM, Linux $(uname -r), data on ${data_fs:-?}"
# Client and server share the machine; anything else running skews the result.
load_before=$(cut -d' ' -f1 /proc/loadavg)
log "machine: $machine; load average before the runs $load_before"

# --- server on port 0: it logs the port it got
# Every load connection comes from 127.0.0.1: the per-address tracking rate
# limit would measure the limit, not the server, so it is off here.
server_args=(serve --data "$data" --listen 127.0.0.1:0 --fsync "$fsync" --track-rate 0)
[ -n "$server_threads" ] && server_args+=(--threads "$server_threads")
"$nucleon_bin" "${server_args[@]}" >"$work/server.log" 2>&1 &
server_pid=$!
port=""
for _ in $(seq 200); do
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; die "server exited at start"; }
  port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$work/server.log" | head -n 1)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { cat "$work/server.log" >&2; die "server did not log 'listening on' within 20 s"; }
log "server pid $server_pid on 127.0.0.1:$port, --fsync $fsync, data $data"

app_json=$(timeout 30 "$nucleon_bin" app create bench --data "$data")
app_id=$(printf '%s' "$app_json" | sed -n 's/.*"appId":"\([^"]*\)".*/\1/p')
[ -n "$app_id" ] || die "could not read appId from: $app_json"
sleep 1.2  # the server picks up new apps within a second

# --- runs, interleaved so that drift hits both transports alike
results=$work/results.jsonl
: >"$results"
run_timeout=$(awk -v w="$warmup" -v s="$seconds" -v d="$drain" 'BEGIN {printf "%d", w + s + d + 30}')
for r in $(seq "$runs"); do
  for mode in $modes; do
    case "$mode" in
      http) args=(--mode http --connections "$http_connections") ;;
      ws) args=(--mode ws --connections "$ws_connections" --pipeline "$pipeline" $deflate) ;;
      *) die "unknown mode $mode" ;;
    esac
    kill -0 "$server_pid" 2>/dev/null || { tail -n 30 "$work/server.log" >&2; die "server died"; }
    line=""
    if line=$(timeout "$run_timeout" "$load_bin" --target "127.0.0.1:$port" --app "$app_id" \
        "${args[@]}" --batch "$batch" --devices "$devices" --threads "$client_threads" \
        --seconds "$seconds" --warmup "$warmup" --drain "$drain" 2>"$work/load.err"); then
      :
    else
      log "run $r $mode: nucleon_load failed (exit $?)"
    fi
    sed 's/^/  /' "$work/load.err" >&2
    if [ -n "$line" ]; then
      printf '%s\n' "$line" >>"$results"
      log "run $r $mode: $(printf '%s' "$line" | sed -n 's/.*"events_per_sec":\([0-9.]*\).*/\1/p') events/s"
    fi
  done
done
[ -n "$out" ] && cp "$results" "$out"

# --- did everything acknowledged get stored?
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }
sum() { awk '{s += $1} END {printf "%d", s}'; }
acked_total=$(field events_acked_total <"$results" | sum)
sent_total=$(field events_sent <"$results" | sum)
# A ClickHouse store acks from its spool: wait (bounded) until the server has
# forwarded everything, and report how long that took after the last run.
drain_note=""
if [ "${NUCLEON_STORE:-sqlite}" = clickhouse ]; then
  drain_start=$(date +%s.%N)
  for _ in $(seq 1 1200); do
    backlog=$(curl -s "http://127.0.0.1:$port/metrics" | sed -n 's/^nucleon_spool_backlog_bytes \([0-9.e+]*\)$/\1/p')
    [ "$backlog" = "0" ] && break
    sleep 0.5
  done
  drain_s=$(awk -v a="$drain_start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  forwarded=$(curl -s "http://127.0.0.1:$port/metrics" | sed -n 's/^nucleon_spool_forwarded_events_total \([0-9.e+]*\)$/\1/p')
  drain_note="ClickHouse: the spool was forwarded ${drain_s} s after the last run (backlog ${backlog:-?} bytes left); ${forwarded:-?} events forwarded in all"
fi
stats=$(timeout 120 "$nucleon_bin" stats "$app_id" --data "$data" 2>&1 || true)
stored=$(printf '%s' "$stats" | field events)

stop_server
warnings=$(grep -c -E ' (warn|error) ' "$work/server.log" || true)

# --- report
median() { sort -n | awk '{v[NR] = $1} END {if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
echo "machine: $machine; load average before the runs $load_before"
[ -n "$drain_note" ] && echo "$drain_note"
echo "server:  nucleon serve --fsync $fsync${server_threads:+ --threads $server_threads}; $runs runs x ${seconds} s per transport, batch $batch, $devices devices"
summary="{\"fsync\":\"$fsync\",\"runs\":$runs,\"seconds\":$seconds,\"batch\":$batch"
for mode in $modes; do
  rates=$(grep "\"mode\":\"$mode\"" "$results" | field events_per_sec | tr '\n' ' ')
  med=$(grep "\"mode\":\"$mode\"" "$results" | field events_per_sec | median)
  p99=$(grep "\"mode\":\"$mode\"" "$results" | field p99_ack_ms | median)
  unacked=$(grep "\"mode\":\"$mode\"" "$results" | field events_unacked | awk '{s += $1} END {print s + 0}')
  case "$mode" in
    http) shape="http, $http_connections connections" ;;
    ws) shape="ws,   $ws_connections connections x pipeline $pipeline${deflate:+, deflate}" ;;
  esac
  printf '%-40s median %10.0f events/s  (runs: %s; median p99 ack %s ms; unacked %s)\n' \
    "$shape:" "$med" "${rates% }" "$p99" "$unacked"
  summary+=",\"${mode}_events_per_sec\":$med"
done
echo "stored:  ${stored:-?} events; acknowledged $acked_total of $sent_total sent"
if [ -n "$stored" ] && [ "$stored" -lt "$acked_total" ]; then
  echo "WARNING: the server acknowledged $((acked_total - stored)) events it did not store"
fi
if [ "${warnings:-0}" -gt 0 ]; then
  echo "server logged $warnings warnings/errors; first ones:"
  grep -E ' (warn|error) ' "$work/server.log" | head -n 5 | sed 's/^/  /'
fi
[ "${server_rc:-0}" -eq 0 ] || echo "WARNING: the server exited with status $server_rc on SIGTERM"
echo "$summary}"

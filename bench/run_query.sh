#!/usr/bin/env bash
# Query benchmark: loads a generated dataset (10M events by default) into
# build/nucleon through POST /app/:appId/track, measures p50/p95 latency of
# every API v1 read endpoint, the server's memory and disk use, and the restart
# time, prints the results and stops the server. Loopback only; every step is
# bounded in time. See bench/query_README.md.
#
#   bench/run_query.sh                          # 10M events in a temporary folder
#   EVENTS=1000000 bench/run_query.sh           # a quick run
#   KEEP_DATA=/var/tmp/nq10m bench/run_query.sh # load once, reuse on later runs
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

EVENTS=${EVENTS:-10000000}
USERS=${USERS:-}                       # default: EVENTS / 100 (100,000 for 10M), at least 1,000
DAYS=${DAYS:-90}
SEED=${SEED:-1}
CONNECTIONS=${CONNECTIONS:-4}
BATCH=${BATCH:-10000}
N=${N:-50}
OFFSETS=${OFFSETS:-0,330,-300}
RANGE_DAYS=${RANGE_DAYS:-30}
LIVE=${LIVE:-200}
LIVE_WARMUP=${LIVE_WARMUP:-6}          # seconds of live traffic before measuring (240: a full live window)
BUDGET=${BUDGET:-90}
SCALING=${SCALING:-1}
CHECKS=${CHECKS:-1}
RESTART=${RESTART:-1}
PROFILE=${PROFILE:-0}                  # 1: perf-profile each endpoint that missed its target
PROFILE_SECONDS=${PROFILE_SECONDS:-8}
PROFILE_LINES=${PROFILE_LINES:-0}      # 1: also by source line (slow: minutes per endpoint)
FSYNC=${FSYNC:-full}
THREADS=${THREADS:-}
KEEP_DATA=${KEEP_DATA:-}
DATA_PARENT=${DATA_PARENT:-${TMPDIR:-/tmp}}
LOAD_TIMEOUT=${LOAD_TIMEOUT:-7200}
OUT=${OUT:-}
NUCLEON_BIN=${NUCLEON_BIN:-$root/build/nucleon}

log() { echo "run_query: $*" >&2; }
die() { log "$*"; exit 1; }
ms_now() { date +%s%3N; }

[ -x "$NUCLEON_BIN" ] || die "no server binary at $NUCLEON_BIN (build the project first)"
command -v node >/dev/null || die "node is needed"
case "$FSYNC" in full|normal) ;; *) die "FSYNC is full or normal" ;; esac

work=$(mktemp -d "${TMPDIR:-/tmp}/nucleon-query-bench.XXXXXX")
# A private copy of the binary: a rebuild in build/ during the run cannot swap it.
cp "$NUCLEON_BIN" "$work/nucleon"
bin=$work/nucleon
bin_info="$NUCLEON_BIN ($(stat -c '%y' "$NUCLEON_BIN" | cut -d. -f1), sha256 $(sha256sum "$bin" | cut -c1-12))"

if [ -n "$KEEP_DATA" ]; then
  data=$KEEP_DATA
  mkdir -p "$data"
  remove_data=0
else
  data=$(mktemp -d "$DATA_PARENT/nucleon-query-data.XXXXXX")
  remove_data=1
fi

server_pid=""
stop_server() {  # stop_server -> sets stop_ms (time from SIGTERM to exit)
  stop_ms=""
  [ -n "$server_pid" ] || return 0
  local t0
  t0=$(ms_now)
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1200); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.05
    done
    if kill -0 "$server_pid" 2>/dev/null; then
      log "server did not stop within 60 s of SIGTERM; killing it"
      kill -KILL "$server_pid" 2>/dev/null || true
    fi
  fi
  wait "$server_pid" 2>/dev/null && server_rc=0 || server_rc=$?
  stop_ms=$(( $(ms_now) - t0 ))
  server_pid=""
}
cleanup() {
  stop_server
  [ "$remove_data" = 1 ] && rm -rf "$data"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- machine
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem_gb=$(awk '/^MemTotal:/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)
data_fs=$(df -PT "$data" 2>/dev/null | awk 'NR == 2 {print $2}')
machine="$(nproc) CPUs, ${cpu_model:-unknown CPU}, ${mem_gb} GB RAM, Linux $(uname -r), data on ${data_fs:-?}"
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
log "machine: $machine; load average $(loadavg)"
log "server binary: $bin_info"

port=$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
url=http://127.0.0.1:$port

start_server() {
  # The benchmark is one client with one token sending back-to-back requests:
  # the per-token API rate limit would measure the limit, not the queries.
  local args=(serve --data "$data" --listen "127.0.0.1:$port" --fsync "$FSYNC" --api-rate 0)
  [ -n "$THREADS" ] && args+=(--threads "$THREADS")
  "$bin" "${args[@]}" >>"$work/server.log" 2>&1 &
  server_pid=$!
}
wait_healthz() {  # wait_healthz SECONDS
  for _ in $(seq $(( $1 * 20 ))); do
    kill -0 "$server_pid" 2>/dev/null || { tail -n 30 "$work/server.log" >&2; die "server exited"; }
    curl -fsS -m 2 "$url/healthz" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  tail -n 30 "$work/server.log" >&2
  die "server did not answer /healthz within $1 s"
}
rss() {
  awk '/^VmRSS:/ {r=$2} /^VmHWM:/ {h=$2} /^RssAnon:/ {a=$2} /^RssFile:/ {f=$2}
       END {printf "%.0f MiB (anonymous %.0f, file %.0f; peak %.0f MiB)", r/1024, a/1024, f/1024, h/1024}' \
    "/proc/$server_pid/status"
}
disk() { du -sb "$data" | awk '{printf "%.0f MiB", $1 / 1048576}'; }
files() { (cd "$data" && ls -la | awk 'NR > 1 && $NF != "." && $NF != ".." {printf "%s %.1f MiB; ", $NF, $5 / 1048576}'); }

meta=$data/bench-meta.json
creds=$data/bench-app.json
loaded=0
cold_start=""
if [ -f "$meta" ] && [ -f "$creds" ]; then
  loaded=1
  app_id=$(sed -n 's/.*"appId":"\([^"]*\)".*/\1/p' "$creds")
  token=$(sed -n 's/.*"token":"\([^"]*\)".*/\1/p' "$creds")
  log "reusing the loaded data in $data (app $app_id); delete $meta to load again"
  age_h=$(node -e "const m=require('$meta');console.log(((Date.now()-m.load.now_ms)/3600e3).toFixed(1))")
  log "the dataset was generated ${age_h} h ago: its last hour of events is that much older than now"
  t0=$(ms_now)
  start_server
  cold_start=$(timeout 1200 node "$here/query_bench.js" ready --url "$url" --app "$app_id" --token "$token" \
    --t0-ms "$t0" --timeout 1100) || die "server not ready"
  log "start on the kept folder: $cold_start"
else
  rm -f "$meta"
  app_json=$(timeout 60 "$bin" app create bench --data "$data")
  printf '%s\n' "$app_json" >"$creds"
  app_id=$(printf '%s' "$app_json" | sed -n 's/.*"appId":"\([^"]*\)".*/\1/p')
  token=$(printf '%s' "$app_json" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  [ -n "$app_id" ] && [ -n "$token" ] || die "could not read appId/token from: $app_json"
  start_server
  wait_healthz 120
fi
log "server pid $server_pid on $url, --fsync $FSYNC, data $data"

# --- load
if [ "$loaded" = 0 ]; then
  log "loading $EVENTS events (load average $(loadavg))"
  load_args=(--url "$url" --app "$app_id" --events "$EVENTS" --days "$DAYS" --seed "$SEED"
             --connections "$CONNECTIONS" --batch "$BATCH" --meta "$work/meta.json" --timeout "$LOAD_TIMEOUT")
  [ -n "$USERS" ] && load_args+=(--users "$USERS")
  load_rc=0
  load_line=$(timeout $(( LOAD_TIMEOUT + 120 )) node --max-old-space-size=4096 "$here/query_dataset.js" \
    "${load_args[@]}") || load_rc=$?
  [ -n "$load_line" ] || { tail -n 30 "$work/server.log" >&2; die "the load failed (exit $load_rc)"; }
  [ "$load_rc" = 0 ] || log "WARNING: the load reported problems (exit $load_rc): $load_line"
  mv "$work/meta.json" "$meta"
fi
load_line=$(node -e "const m=require('$meta');const {generated,...l}=m.load;console.log(JSON.stringify(l))")
kill -0 "$server_pid" 2>/dev/null || { tail -n 30 "$work/server.log" >&2; die "server died"; }
sleep 2
rss_after_load=$(rss)
disk_after_load=$(disk)
files_after_load=$(files)
if [ "$loaded" = 0 ]; then rss_label="after load"; else rss_label="after start on the kept folder"; fi
log "$rss_label: RSS $rss_after_load, data folder $disk_after_load ($files_after_load)"

# --- measure
log "measuring (load average $(loadavg))"
load_before_measure=$(loadavg)
results=$work/results.json
timeout 3600 node "$here/query_bench.js" measure --url "$url" --app "$app_id" --token "$token" \
  --meta "$meta" --n "$N" --offsets "$OFFSETS" --range-days "$RANGE_DAYS" --live "$LIVE" --live-warmup "$LIVE_WARMUP" \
  --budget "$BUDGET" --scaling "$SCALING" --checks "$CHECKS" --pid "$server_pid" --out "$results" >"$work/tables.txt" \
  || { tail -n 30 "$work/server.log" >&2; die "the measurement failed"; }
load_after_measure=$(loadavg)
rss_after_measure=$(rss)
[ -n "$OUT" ] && cp "$results" "$OUT"

# --- profile the endpoints that missed their targets (opt-in; needs perf)
: >"$work/profiles.txt"
if [ "$PROFILE" = 1 ]; then
  if command -v perf >/dev/null 2>&1; then
    log "profiling the endpoints that missed their targets (perf, ${PROFILE_SECONDS} s each)"
    timeout 7200 node "$here/query_bench.js" profile --url "$url" --app "$app_id" --token "$token" \
      --results "$results" --pid "$server_pid" --seconds "$PROFILE_SECONDS" --dir "$work" \
      --srclines "$PROFILE_LINES" --out "$work/profiles.json" >"$work/profiles.txt" \
      || log "profiling failed (see above)"
  else
    log "PROFILE=1 but perf is not installed; skipping"
  fi
fi

# --- restart
restart=""
if [ "$RESTART" = 1 ]; then
  stop_server
  log "stopped with SIGTERM in ${stop_ms} ms (exit $server_rc)"
  stop_time=$stop_ms
  stop_rc=$server_rc
  t0=$(ms_now)
  start_server
  restart=$(timeout 1200 node "$here/query_bench.js" ready --url "$url" --app "$app_id" --token "$token" \
    --t0-ms "$t0" --timeout 1100) || { tail -n 30 "$work/server.log" >&2; die "server not ready after restart"; }
  rss_after_restart=$(rss)
  log "restart: $restart, RSS $rss_after_restart"
fi
stop_server
errors=$(grep -c -E ' (ERROR|WARN) ' "$work/server.log" || true)

# --- report
{
  echo
  echo "Nucleon query benchmark"
  echo "machine:  $machine"
  echo "binary:   $bin_info"
  echo "load avg: before measuring $load_before_measure, after $load_after_measure (2 CPUs: other work on the machine skews latency)"
  echo "dataset:  $load_line"
  echo "          $(node -e "const l=require('$meta').load;console.log(l.events+' events, '+l.users+' users, '+l.devices+' devices, '+l.sessions+' sessions over '+l.days+' days; load '+l.seconds+' s = '+l.events_per_sec+' events/s ('+l.connections+' connections, batches of '+l.batch+'; client CPU '+l.client_cpu_s+' s)')")$([ "$loaded" = 1 ] && echo ' [from the run that loaded the kept folder]')"
  echo "memory:   server RSS $rss_label $rss_after_load; after measuring $rss_after_measure"
  echo "disk:     data folder $disk_after_load ($files_after_load)"
  [ -n "$cold_start" ] && echo "start on the kept folder: $cold_start"
  if [ -n "$restart" ]; then
    echo "restart:  SIGTERM to exit ${stop_time} ms (exit $stop_rc); start to /healthz 200 and to first 30-day analytics answer: $restart; RSS after restart $rss_after_restart"
  fi
  echo "server log: $errors ERROR/WARN lines"
  cat "$work/tables.txt"
  cat "$work/profiles.txt"
} | tee "$work/report.txt"
[ "$errors" = 0 ] || { echo "server log ERROR/WARN lines (first 10):"; grep -E ' (ERROR|WARN) ' "$work/server.log" | head -n 10; }

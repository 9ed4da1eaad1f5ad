#!/usr/bin/env bash
# Query benchmark: loads a generated dataset (10M events by default) into
# build/nucleon through POST /app/:appId/track, measures p50/p95 latency of
# every API v1 read endpoint (warm, and cold: the first request after a
# restart), the server's memory and disk use, its start-up time, and the
# latency of user deletes and of tracking acks while they run; prints the
# results and stops the server. Loopback only; every step is bounded in time.
# See bench/query_README.md.
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
SERVER_ARGS=${SERVER_ARGS:-}           # more `nucleon serve` flags, e.g. "--cache-mb 128"
KEEP_DATA=${KEEP_DATA:-}
DATA_PARENT=${DATA_PARENT:-${TMPDIR:-/tmp}}
COLD_RESTARTS=${COLD_RESTARTS:-3}    # restarts for start-up and cold latency (with RESTART=1)
DROP_CACHES=${DROP_CACHES:-0}          # 1: drop the OS page cache before each restart (root only)
DELETES=${DELETES:-20}                 # users to delete (0: no delete measurement)
DELETE_RATE=${DELETE_RATE:-2000}       # events/s of tracking load while deleting
DELETE_WS=${DELETE_WS:-20}             # WebSockets of that load (half per app)
DELETE_QUIET=${DELETE_QUIET:-20}       # seconds of load without deletes before them
DELETE_AFTER_MAX=${DELETE_AFTER_MAX:-120}
DELETE_POOL=${DELETE_POOL:-200}        # delete candidates the generator records (a load setting)
OUT=${OUT:-}
SUMMARY=${SUMMARY:-}                   # also write the summary JSON (what run_scale.sh reads) here
NUCLEON_BIN=${NUCLEON_BIN:-$root/build/nucleon}
# Timeouts grow with the dataset: x1 up to 10M events, x10 at 100M.
scale=$(( (EVENTS + 9999999) / 10000000 ))
LOAD_TIMEOUT=${LOAD_TIMEOUT:-$(( EVENTS / 5000 > 7200 ? EVENTS / 5000 : 7200 ))}
START_TIMEOUT=${START_TIMEOUT:-$(( 1100 * scale ))}
MEASURE_TIMEOUT=${MEASURE_TIMEOUT:-$(( 3600 * scale ))}
SLOW_TIMEOUT=${SLOW_TIMEOUT:-$(( 300 * scale ))}
DELETE_TIMEOUT=${DELETE_TIMEOUT:-$(( 300 * scale ))}
# the generator holds the world in memory (about 12 bytes an event) and streams the events
gen_heap=$(( EVENTS / 25000 > 4096 ? EVENTS / 25000 : 4096 ))

log() { echo "run_query: $*" >&2; }
die() { log "$*"; exit 1; }
ms_now() { date +%s%3N; }

[ -x "$NUCLEON_BIN" ] || die "no server binary at $NUCLEON_BIN (build the project first)"
command -v node >/dev/null || die "node is needed"
case "$FSYNC" in full|normal) ;; *) die "FSYNC is full or normal" ;; esac
[ "$COLD_RESTARTS" -ge 1 ] 2>/dev/null || die "COLD_RESTARTS is 1 or more"

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
    for _ in $(seq $(( 1200 * scale ))); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.05
    done
    if kill -0 "$server_pid" 2>/dev/null; then
      log "server did not stop within $(( 60 * scale )) s of SIGTERM; killing it"
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

# Facts for the summary, one JSON object a line: {"k": KEY, "v": VALUE}.
notes=$work/notes.jsonl
: >"$notes"
json_str() { node -e 'process.stdout.write(JSON.stringify(process.argv[1]))' "$1"; }
note() { printf '{"k":"%s","v":%s}\n' "$1" "$2" >>"$notes"; }
note machine "$(json_str "$machine")"
note binary "$(json_str "$bin_info")"
if [ "$DROP_CACHES" = 1 ]; then
  if [ -w /proc/sys/vm/drop_caches ]; then
    caches="OS page cache dropped before each restart (sync; echo 3 > /proc/sys/vm/drop_caches)"
  else
    log "DROP_CACHES=1 needs root (/proc/sys/vm/drop_caches is not writable): restarts keep the page cache"
    DROP_CACHES=0
    caches="OS page cache kept (warm; DROP_CACHES=1 was asked but needs root)"
  fi
else
  caches="OS page cache kept (warm)"
fi
note caches "$(json_str "$caches")"
drop_caches() { [ "$DROP_CACHES" = 1 ] || return 0; sync; echo 3 >/proc/sys/vm/drop_caches; }

port=$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
url=http://127.0.0.1:$port

start_server() {
  # The benchmark is one client with one token sending back-to-back requests:
  # the per-token API rate limit would measure the limit, not the queries. Its
  # tracking loads come from one address standing in for many devices: the
  # per-address tracking limit would refuse them after a stall (the deletes).
  local args=(serve --data "$data" --listen "127.0.0.1:$port" --fsync "$FSYNC" --api-rate 0 --track-rate 0)
  [ -n "$THREADS" ] && args+=(--threads "$THREADS")
  # shellcheck disable=SC2206 # SERVER_ARGS: extra flags, split on spaces
  [ -n "$SERVER_ARGS" ] && args+=($SERVER_ARGS)
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
rss_json() {
  awk '/^VmRSS:/ {r=$2} /^VmHWM:/ {h=$2} /^RssAnon:/ {a=$2} /^RssFile:/ {f=$2}
       END {printf "{\"rss_kib\":%d,\"anon_kib\":%d,\"file_kib\":%d,\"hwm_kib\":%d}", r, a, f, h}' "/proc/$server_pid/status"
}
# note_disk LABEL: every file under the data folder (subfolders too) with its
# size and allocated bytes, and the server's own count of stored events
# (`nucleon stats`, on the stopped folder), for bytes per stored event.
note_disk() {
  local files stats
  files=$(find "$data" -type f -printf '%P\t%s\t%b\n' | awk -F'\t' \
    'BEGIN {printf "["} {printf "%s{\"name\":\"%s\",\"bytes\":%s,\"alloc\":%s}", (NR > 1 ? "," : ""), $1, $2, $3 * 512} END {printf "]"}')
  stats=$(timeout "$SLOW_TIMEOUT" "$bin" stats --data "$data" 2>/dev/null | tail -n 1) || stats=""
  case "$stats" in "{"*) ;; *) log "nucleon stats failed: bytes per event unknown"; stats=null ;; esac
  note disk "{\"label\":$(json_str "$1"),\"files\":$files,\"stats\":$stats}"
  log "disk $1: $(du -sb "$data" | cut -f1) bytes; stats $stats"
}
files() { (cd "$data" && ls -la | awk 'NR > 1 && $NF != "." && $NF != ".." {printf "%s %.1f MiB; ", $NF, $5 / 1048576}'); }

meta=$data/bench-meta.json
creds=$data/bench-app.json
creds2=$data/bench-app2.json   # a second app: the delete measurement tracks to it too
# create_app2: while no server runs on the folder (a running one picks new apps up only after a while)
create_app2() {
  [ -f "$creds2" ] && return 0
  timeout 60 "$bin" app create bench2 --data "$data" >"$creds2" || die "could not create the second app"
}
loaded=0
cold_start=""
if [ -f "$meta" ] && [ -f "$creds" ]; then
  loaded=1
  app_id=$(sed -n 's/.*"appId":"\([^"]*\)".*/\1/p' "$creds")
  token=$(sed -n 's/.*"token":"\([^"]*\)".*/\1/p' "$creds")
  log "reusing the loaded data in $data (app $app_id); delete $meta to load again"
  age_h=$(node -e "const m=require('$meta');console.log(((Date.now()-m.load.now_ms)/3600e3).toFixed(1))")
  log "the dataset was generated ${age_h} h ago: its last hour of events is that much older than now"
  create_app2
  t0=$(ms_now)
  start_server
  cold_start=$(timeout $(( START_TIMEOUT + 100 )) node "$here/query_bench.js" ready --url "$url" --app "$app_id" --token "$token" \
    --t0-ms "$t0" --timeout "$START_TIMEOUT") || die "server not ready"
  log "start on the kept folder: $cold_start"
  note kept true
  note kept_start "$cold_start"
else
  rm -f "$meta"
  app_json=$(timeout 60 "$bin" app create bench --data "$data")
  printf '%s\n' "$app_json" >"$creds"
  app_id=$(printf '%s' "$app_json" | sed -n 's/.*"appId":"\([^"]*\)".*/\1/p')
  token=$(printf '%s' "$app_json" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  [ -n "$app_id" ] && [ -n "$token" ] || die "could not read appId/token from: $app_json"
  rm -f "$creds2"
  create_app2
  start_server
  wait_healthz 120
fi
app2_id=$(sed -n 's/.*"appId":"\([^"]*\)".*/\1/p' "$creds2")
log "server pid $server_pid on $url, --fsync $FSYNC, data $data"

# --- load
if [ "$loaded" = 0 ]; then
  log "loading $EVENTS events (load average $(loadavg))"
  load_args=(--url "$url" --app "$app_id" --events "$EVENTS" --days "$DAYS" --seed "$SEED"
             --connections "$CONNECTIONS" --batch "$BATCH" --meta "$work/meta.json" --timeout "$LOAD_TIMEOUT"
             --delete-pool "$DELETE_POOL")
  [ -n "$USERS" ] && load_args+=(--users "$USERS")
  load_rc=0
  load_line=$(timeout $(( LOAD_TIMEOUT + 600 )) node --max-old-space-size="$gen_heap" "$here/query_dataset.js" \
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
store_metrics() {  # the store's own gauges (caches, hot buckets) from /metrics, one line
  curl -fsS -m 5 "$url/metrics" 2>/dev/null | awk '/^nucleon_(hot_buckets|bucket_cache_bytes|property_cache_bytes|day_cache_bytes|events_not_checkpointed|checkpoints_total) / {printf "%s=%s ", $1, $2}'
}
log "store gauges $rss_label: $(store_metrics)"
note rss_after_load "$(rss_json)"

# --- measure
log "measuring (load average $(loadavg))"
load_before_measure=$(loadavg)
results=$work/results.json
timeout "$MEASURE_TIMEOUT" node "$here/query_bench.js" measure --url "$url" --app "$app_id" --token "$token" \
  --meta "$meta" --n "$N" --offsets "$OFFSETS" --range-days "$RANGE_DAYS" --live "$LIVE" --live-warmup "$LIVE_WARMUP" \
  --budget "$BUDGET" --scaling "$SCALING" --checks "$CHECKS" --pid "$server_pid" --out "$results" \
  --slow-timeout "$SLOW_TIMEOUT" >"$work/tables.txt" \
  || { tail -n 30 "$work/server.log" >&2; die "the measurement failed"; }
load_after_measure=$(loadavg)
rss_after_measure=$(rss)
log "store gauges after measuring: $(store_metrics)"
note loadavg "$(json_str "before measuring $load_before_measure, after $load_after_measure")"
note rss_after_measure "$(rss_json)"
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

# --- restarts: start-up time and cold latency
# Each restart: SIGTERM and wait for the exit (graceful: the log is
# checkpointed), optionally drop the page cache, start, and time the start-up
# and the first request to every endpoint (query_bench.js cold). The data
# folder is measured at the first stop.
restart=""
if [ "$RESTART" = 1 ]; then
  for round in $(seq 1 "$COLD_RESTARTS"); do
    stop_server
    log "restart $round/$COLD_RESTARTS: stopped with SIGTERM in ${stop_ms} ms (exit $server_rc)"
    this_stop=$stop_ms
    this_rc=$server_rc
    if [ "$round" = 1 ]; then
      stop_time=$stop_ms
      stop_rc=$server_rc
      note_disk "after measuring, after a graceful stop"
    fi
    drop_caches
    t0=$(ms_now)
    start_server
    line=$(timeout $(( 2 * START_TIMEOUT + 100 )) node "$here/query_bench.js" cold --url "$url" --app "$app_id" --token "$token" \
      --meta "$meta" --results "$results" --t0-ms "$t0" --timeout "$START_TIMEOUT" --pid "$server_pid" --round "$(( round - 1 ))" \
      --range-days "$RANGE_DAYS" --slow-timeout "$SLOW_TIMEOUT") \
      || { tail -n 30 "$work/server.log" >&2; die "server not ready after restart $round"; }
    note restart "{\"stop_ms\":$this_stop,\"stop_rc\":$this_rc,${line#\{}"
    startup_line=$(node -e 'const x=JSON.parse(process.argv[1]);const {cold,mem_ready,mem_after,round,...s}=x;console.log(JSON.stringify(s))' "$line")
    log "restart $round: $startup_line"
    if [ "$round" = 1 ]; then
      restart=$startup_line
      rss_after_restart=$(rss)
      log "RSS after restart (and one request per endpoint): $rss_after_restart"
    fi
  done
fi

# --- user deletes under a tracking load
deletes_json=""
if [ "$DELETES" -gt 0 ]; then
  if ! node -e "process.exit(require('$meta').facts.deleteCandidates ? 0 : 1)"; then
    log "no delete candidates in $meta (loaded by an older query_dataset.js): deletes not measured; delete it to load again"
    note deletes_skipped "$(json_str "the folder was loaded without delete candidates; load it again")"
  else
    log "deleting $DELETES users under a tracking load of $DELETE_RATE events/s (load average $(loadavg))"
    if timeout $(( DELETES * DELETE_TIMEOUT + DELETE_QUIET + DELETE_AFTER_MAX + 600 )) node "$here/query_bench.js" deletes \
        --url "$url" --app "$app_id" --token "$token" --app2 "$app2_id" --meta "$meta" --k "$DELETES" \
        --rate "$DELETE_RATE" --ws "$DELETE_WS" --quiet "$DELETE_QUIET" --after-max "$DELETE_AFTER_MAX" \
        --delete-timeout "$DELETE_TIMEOUT" --slow-timeout "$SLOW_TIMEOUT" --pid "$server_pid" \
        --out "$work/deletes.json" >"$work/deletes.txt"; then
      deletes_json=$work/deletes.json
    else
      log "the delete measurement failed (see above)"
      note deletes_skipped "$(json_str "the delete measurement failed")"
    fi
  fi
fi
stop_server
log "stopped with SIGTERM in ${stop_ms} ms (exit $server_rc)"
note_disk "at the end$([ -n "$deletes_json" ] && echo ' (after the deletes)'), after a graceful stop"
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
  echo "disk:     data folder $disk_after_load, server running ($files_after_load); after a graceful stop: below"
  [ -n "$cold_start" ] && echo "start on the kept folder: $cold_start"
  if [ -n "$restart" ]; then
    echo "restart:  SIGTERM to exit ${stop_time} ms (exit $stop_rc); start to the first HTTP answer (listen_ms), /healthz 200 and the first 30-day analytics answer: $restart; RSS after restart (and one request per endpoint) $rss_after_restart"
  fi
  echo "server log: $errors ERROR/WARN lines"
  cat "$work/tables.txt"
  cat "$work/profiles.txt"
  summary_args=(--notes "$notes" --meta "$meta" --results "$results" --out "$work/summary.json")
  [ -n "$deletes_json" ] && summary_args+=(--deletes "$deletes_json")
  node "$here/query_bench.js" summary "${summary_args[@]}" || log "the summary failed"
} | tee "$work/report.txt"
[ -n "$SUMMARY" ] && [ -f "$work/summary.json" ] && cp "$work/summary.json" "$SUMMARY"
[ "$errors" = 0 ] || { echo "server log ERROR/WARN lines (first 10):"; grep -E ' (ERROR|WARN) ' "$work/server.log" | head -n 10; }

#!/usr/bin/env bash
# Start-up after a crash: on a data folder loaded by bench/run_query.sh
# (KEEP_DATA), tracks at full speed into the folder's second app with the
# time-based checkpoint turned off (so the tail is as long as the checkpoint
# triggers allow: up to 200,000 events), kills the server with SIGKILL, starts
# it again with the defaults and times the start to listening, to /healthz and
# to ready (the first 200 of the 30-day daily analytics, while the tail is
# replayed), with the tail the new process replayed. RUNS rounds; prints one
# line per round and the medians. Loopback only; every step is bounded in time.
#
#   bench/run_crash_start.sh /var/tmp/nq10m              # 3 rounds
#   RUNS=5 LOAD_SECONDS=4 bench/run_crash_start.sh DIR
#
# Each round adds the tracked events (a few hundred thousand) to the folder.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

data=${1:?usage: bench/run_crash_start.sh DATA_FOLDER (loaded by bench/run_query.sh with KEEP_DATA)}
RUNS=${RUNS:-3}
LOAD_SECONDS=${LOAD_SECONDS:-3}       # full-speed tracking before the kill
START_TIMEOUT=${START_TIMEOUT:-600}
NUCLEON_BIN=${NUCLEON_BIN:-$root/build/nucleon}
NUCLEON_LOAD=${NUCLEON_LOAD:-$root/build/bench/nucleon_load}

die() { echo "run_crash_start: $*" >&2; exit 1; }
log() { echo "run_crash_start: $*" >&2; }
[ -f "$data/bench-app.json" ] && [ -f "$data/bench-app2.json" ] || die "$data was not loaded by bench/run_query.sh (KEEP_DATA)"
[ -x "$NUCLEON_BIN" ] || die "no server binary at $NUCLEON_BIN (make build)"
[ -x "$NUCLEON_LOAD" ] || die "no load generator at $NUCLEON_LOAD (make build)"
command -v node >/dev/null || die "node is needed"

field() { sed -n "s/.*\"$2\":\"\\([^\"]*\\)\".*/\\1/p" "$1"; }
app=$(field "$data/bench-app.json" appId)
token=$(field "$data/bench-app.json" token)
app2=$(field "$data/bench-app2.json" appId)
port=$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
url=http://127.0.0.1:$port
log_file=$(mktemp "${TMPDIR:-/tmp}/crash-start.XXXXXX")
server_pid=""

stop() {
  [ -n "$server_pid" ] || return 0
  kill -TERM "$server_pid" 2>/dev/null || true
  for _ in $(seq 600); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
trap stop EXIT

start() {  # start [serve flags...]
  "$NUCLEON_BIN" serve --data "$data" --listen "127.0.0.1:$port" --api-rate 0 --track-rate 0 "$@" \
    >>"$log_file" 2>&1 &
  server_pid=$!
}
wait_ready() {
  for _ in $(seq $(( START_TIMEOUT * 10 ))); do
    kill -0 "$server_pid" 2>/dev/null || { tail -n 20 "$log_file" >&2; die "server exited"; }
    curl -fsS -m 2 "$url/healthz" 2>/dev/null | grep -q '"ready":true' && return 0
    sleep 0.1
  done
  die "not ready within $START_TIMEOUT s"
}
gauge() { curl -fsS -m 5 "$url/metrics" | awk -v k="$1" '$1 == k {print $2}'; }
ms_now() { date +%s%3N; }

rows=()
for round in $(seq "$RUNS"); do
  start --checkpoint-interval 3600
  wait_ready
  "$NUCLEON_LOAD" --target "127.0.0.1:$port" --app "$app2" --mode http --connections 16 \
    --seconds "$LOAD_SECONDS" --warmup 0 --drain 2 >>"$log_file" 2>&1 \
    || { tail -n 20 "$log_file" >&2; die "the load failed"; }
  tail_events=$(gauge nucleon_events_not_checkpointed)
  kill -KILL "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  t0=$(ms_now)
  start
  line=$(timeout $(( START_TIMEOUT + 60 )) node "$here/query_bench.js" ready --url "$url" --app "$app" \
    --token "$token" --t0-ms "$t0" --timeout "$START_TIMEOUT") || die "not ready after the crash"
  replayed=$(gauge nucleon_tail_replayed_events)
  rss=$(awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$server_pid/status")
  row=$(node -e "const s=JSON.parse(process.argv[1]);console.log(JSON.stringify({round:+process.argv[2],
    tail_at_kill:+process.argv[3],replayed:+process.argv[4],listen_ms:s.listen_ms,healthz_ms:s.healthz_ms,
    ready_ms:s.first_query_ms,api_503_before_ready:s.api_not_200,rss_mib_at_ready:+process.argv[5]}))" \
    "$line" "$round" "${tail_events:-0}" "${replayed:-0}" "$rss")
  echo "$row"
  rows+=("$row")
  stop
done

node -e '
const rows = process.argv.slice(1).map((r) => JSON.parse(r));
const med = (k) => { const v = rows.map((r) => r[k]).sort((a, b) => a - b); return v[Math.floor(v.length / 2)]; };
console.log(JSON.stringify({ median: { replayed: med("replayed"), listen_ms: med("listen_ms"),
  healthz_ms: med("healthz_ms"), ready_ms: med("ready_ms"), rss_mib_at_ready: med("rss_mib_at_ready") },
  rounds: rows.length }));' "${rows[@]}"
rm -f "$log_file"

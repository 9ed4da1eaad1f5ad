#!/usr/bin/env bash
# The ClickHouse backend beside the embedded store and plain ClickHouse SQL,
# in one run on one machine: a loaded data folder (bench/run_query.sh
# KEEP_DATA=...) is migrated into a throw-away clickhouse-server
# (tests/clickhouse/server.sh, loopback), then
#   1. every API read endpoint is timed on both backends (bench/query_bench.js
#      measure: p50/p95 of N requests after a warm-up), answers compared;
#   2. the 30-day daily analytics written as straightforward SQL over the raw
#      events (7 statements, as a hand-written ClickHouse dashboard would) is
#      timed on the same ClickHouse;
#   3. the ingest benchmark (bench/run_ingest.sh) runs with the ClickHouse
#      backend: events/s acknowledged, each durable in the node's spool, and
#      the time until ClickHouse holds them all.
# Everything started is stopped by PID; nothing listens beyond 127.0.0.1.
#
#   DATA=/var/tmp/nq1m bench/run_clickhouse.sh        # N=20 RUNS=3 SECONDS_PER_RUN=10
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
DATA=${DATA:?DATA=<a data folder loaded by bench/run_query.sh (KEEP_DATA)>}
N=${N:-20}
RUNS=${RUNS:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
nucleon=${NUCLEON_BIN:-$root/build/nucleon}
server_sh=$root/tests/clickhouse/server.sh

log() { echo "run_clickhouse: $*" >&2; }
[ -f "$DATA/bench-app.json" ] || { log "$DATA has no bench-app.json (load it with bench/run_query.sh)"; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/nucleon-chbench-XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  bash "$server_sh" stop "$work/ch" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ch_port=
for _ in $(seq 1 50); do
  p=$((20000 + RANDOM % 10000))
  if python3 -c "import socket,sys
for q in ($p,$p+1,$p+2):
  s=socket.socket(); s.bind(('127.0.0.1',q)); s.close()" 2>/dev/null; then ch_port=$p; break; fi
done
[ -n "$ch_port" ] || { log "no free ports"; exit 1; }
bash "$server_sh" start "$work/ch" "$ch_port" >/dev/null
ch=http://127.0.0.1:$ch_port
log "clickhouse-server $(curl -s "$ch/?query=SELECT%20version()") on $ch"

app=$(python3 -c "import json;print(json.load(open('$DATA/bench-app.json'))['appId'])")
token=$(python3 -c "import json;print(json.load(open('$DATA/bench-app.json'))['token'])")
cp -r "$DATA" "$work/sqlite"
start=$(date +%s.%N)
"$nucleon" migrate --data "$work/sqlite" --clickhouse "$ch" --clickhouse-database bench >"$work/migrate.json" 2>"$work/migrate.log"
log "migrated in $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s: $(cat "$work/migrate.json")"

serve() { # NAME PORT ARGS... -> starts, waits until the API answers
  local name=$1 port=$2
  shift 2
  "$nucleon" serve --listen "127.0.0.1:$port" --api-rate 0 --track-rate 0 "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 600); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: $token" \
      "http://127.0.0.1:$port/api/v1/apps/$app/analytics/quickglance" || true)
    [ "$code" = 200 ] && return 0
    sleep 0.5
  done
  log "$name did not answer"; exit 1
}
sq_port=$(free_port); chb_port=$(free_port)
serve sqlite "$sq_port" --data "$work/sqlite"
serve clickhouse "$chb_port" --data "$work/node" --store clickhouse --clickhouse "$ch" --clickhouse-database bench

echo "== 1. API read endpoints (p50/p95 ms, N=$N)"
for b in sqlite clickhouse; do
  port=$sq_port; [ $b = clickhouse ] && port=$chb_port
  echo "-- $b"
  node "$here/query_bench.js" measure --url "http://127.0.0.1:$port" --app "$app" --token "$token" \
    --meta "$DATA/bench-meta.json" --n "$N" --offsets 0 --live 0 --scaling 0 --budget 60 \
    --out "$work/$b.json" 2>&1 | grep -v '^\s*$' | tail -40
done
same=$(python3 - "$work" "$app" "$token" "$sq_port" "$chb_port" <<'EOF'
import json, sys, urllib.request
work, app, token, a, b = sys.argv[1:]
meta = json.load(open(f"{work}/sqlite/bench-meta.json"))
paths = ["analytics/quickglance", "users?page=3&limit=100"]
for days in (7, 30):
    end = int(meta.get("loadedUntilMs", 0) / 1000) or 1800000000
    q = f"start={end - days * 86400}&end={end}"
    paths += [f"analytics?{q}", f"analytics/events?{q}", f"analytics/errors?{q}", f"analytics/eventsprops?{q}"]
def get(port, p):
    r = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/apps/{app}/{p}", headers={"Authorization": token})
    return urllib.request.urlopen(r, timeout=600).read()
print(sum(get(a, p) == get(b, p) for p in paths), "of", len(paths))
EOF
)
echo "answers identical on both backends: $same"

echo "== 2. plain ClickHouse SQL: 30-day daily analytics over the raw events (ms, median of $N)"
end_ms=$(curl -s "$ch/?database=bench" --data-binary "SELECT max(time) FROM events WHERE app = '$app'")
from_ms=$((end_ms - 30 * 86400000))
w="app = '$app' AND time >= $from_ms AND time <= $end_ms"
day="intDiv(time, 86400000)"
queries=(
  "SELECT uniqExact(user_key) FROM events WHERE $w"
  "SELECT $day AS d, countIf(type = 1), uniqExact(user_key) FROM events WHERE $w GROUP BY d"
  "SELECT $day AS d, intDiv(time % 86400000, 3600000) AS h, count() FROM events WHERE $w AND type = 1 GROUP BY d, h"
  "SELECT d, count() FROM (SELECT user_key, intDiv(min(time), 86400000) AS d, min(time) AS c FROM events WHERE app = '$app' GROUP BY user_key) WHERE c >= $from_ms GROUP BY d"
  "SELECT platform_n, uniqExact(user_key) FROM events WHERE $w AND type = 1 GROUP BY platform_n"
  "SELECT version, uniqExact(user_key) FROM events WHERE $w AND type = 1 GROUP BY version"
  "SELECT d, avg(dur) FROM (SELECT intDiv(min(time), 86400000) AS d, (max(time) - min(time)) / 1000 AS dur FROM events WHERE $w GROUP BY sess_h) GROUP BY d"
)
total=0
for q in "${queries[@]}"; do
  ms=$(for _ in $(seq 1 "$N"); do
    s=$(date +%s%N); curl -s "$ch/?database=bench" --data-binary "$q" >/dev/null; e=$(date +%s%N)
    echo $(((e - s) / 1000000))
  done | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  total=$((total + ms))
  printf '  %5d  %s\n' "$ms" "${q:0:110}"
done
echo "  $total ms for the 7 statements"

echo "== 3. ingest into the ClickHouse backend ($RUNS runs of $SECONDS_PER_RUN s, HTTP)"
NUCLEON_STORE=clickhouse NUCLEON_CLICKHOUSE=$ch NUCLEON_CLICKHOUSE_DATABASE=ingest \
  bash "$here/run_ingest.sh" --runs "$RUNS" --seconds "$SECONDS_PER_RUN" --modes http 2>&1 | tail -8

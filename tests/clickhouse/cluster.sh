#!/usr/bin/env bash
# A throw-away ClickHouse cluster for the tests: 2 shards x 2 replicas (four
# clickhouse-server processes, each started through server.sh) and one
# ZooKeeper, all on 127.0.0.1, all in one folder, all stopped by the PIDs they
# wrote there.
#
#   cluster.sh start DIR BASE_PORT -> ZooKeeper on BASE_PORT, servers 1..4 with
#       HTTP ports BASE_PORT+10, +20, +30, +40 (each also takes the next two
#       ports: native TCP and interserver HTTP). Returns once every server
#       answers, sees ZooKeeper and the cluster `nucleon_test` can run a
#       replicated ON CLUSTER table end to end; then prints the four HTTP URLs
#       comma-separated on one line, in the order
#       shard1-replica1, shard1-replica2, shard2-replica1, shard2-replica2.
#   cluster.sh stop DIR            -> stops the servers, then ZooKeeper
#       (SIGTERM, SIGKILL if one outlives a bound); safe to repeat.
#   cluster.sh kill DIR N          -> SIGKILL server N (1..4) only.
#   cluster.sh restart DIR N       -> starts server N again, same data and
#       ports; returns once it answers, sees ZooKeeper and has taken back all
#       its replicated tables (after a kill that takes up to the ZooKeeper
#       session timeout, 8 s, plus ClickHouse's retry period); prints its URL.
#
# Layout of DIR: zk/ (zoo.cfg, data, log, pid), ch1..ch4/ (server.sh folders),
# chN.xml (the cluster part of server N's config), base_port, urls.
# The caller removes DIR; a failed start stops what it started and leaves DIR
# behind so its logs can be read.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
server_sh="$here/server.sh"
java=${JAVA:-java}
# Debian's zookeeper.jar lists its dependencies in its manifest; slf4j-simple
# only gives its log lines somewhere to go (without it they are dropped).
zk_classpath=${ZOOKEEPER_CLASSPATH:-/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar}
cluster=nucleon_test

cmd=${1:?start|stop|kill|restart}
dir=${2:?folder}

die() { echo "cluster.sh: $*" >&2; exit 1; }

http_port_of() { echo $((base + 10 * $1)); } # server N (1..4)
shard_of() { echo $(((($1 - 1) / 2) + 1)); } # 1,2 -> 1; 3,4 -> 2
replica_of() { echo $(((($1 - 1) % 2) + 1)); } # 1,3 -> 1; 2,4 -> 2

# True when something accepts connections on 127.0.0.1:$1.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Runs SQL on server N over HTTP and prints the answer. On an error it prints
# ClickHouse's message to stderr and fails. An optional third argument holds
# settings as URL parameters (name=value&...).
query() {
  local n=$1 sql=$2 params=${3:-}
  local out code
  out=$(mktemp)
  code=$(curl -sS -o "$out" -w '%{http_code}' --max-time 90 \
    "http://127.0.0.1:$(http_port_of "$n")/?$params" --data-binary "$sql" 2>&1) || code=000
  if [ "$code" = 200 ]; then
    cat "$out"
    rm -f "$out"
    return 0
  fi
  echo "server $n answered HTTP $code to: $sql" >&2
  head -c 2000 "$out" >&2
  rm -f "$out"
  return 1
}

# True once ZooKeeper serves sessions. "ruok" is not enough: it answers
# "imok" while the server still refuses sessions, and a clickhouse-server
# 18.16 whose first ZooKeeper connection fails can crash in its DDL worker.
# "srvr" reports a Mode only when requests are served (whitelisted in zoo.cfg).
zk_ok() {
  local r
  r=$( (exec 3<>"/dev/tcp/127.0.0.1/$base" && printf srvr >&3 && timeout 2 cat <&3) 2>/dev/null) || true
  [[ "$r" == *"Mode: standalone"* ]]
}

# Waits (bounded) until server N has a ZooKeeper session: a server started
# while ZooKeeper was unreachable, or whose session expired, reconnects lazily.
wait_server_sees_zk() {
  local n=$1
  for _ in $(seq 1 150); do
    if query "$n" "SELECT count() FROM system.zookeeper WHERE path = '/'" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  query "$n" "SELECT count() FROM system.zookeeper WHERE path = '/'" >/dev/null ||
    die "server $n does not reach ZooKeeper on port $base"
}

# Waits (bounded) until server N, running as PID, has taken back every one of
# its replicated tables: each replica's ephemeral is_active node holds
# "pid: PID, ..." of the process that owns it. Until then the replica neither
# fetches the parts it missed nor accepts inserts, and its log repeats
# "appears to be already active" (the killed process's session still holds it).
wait_replicas_active() {
  local n=$1 pid=$2 paths pending path value
  paths=$(query "$n" "SELECT replica_path FROM system.replicas") || die "server $n: cannot list replicas"
  pending=$paths
  for _ in $(seq 1 60); do
    local still=""
    for path in $pending; do
      value=$(query "$n" "SELECT value FROM system.zookeeper WHERE path = '$path' AND name = 'is_active'" 2>/dev/null) || value=""
      [[ "$value" == "pid: $pid,"* ]] || still+="$path "
    done
    pending=$still
    [ -z "$pending" ] && return 0
    sleep 1
  done
  die "server $n has not taken back its replicas within 60 s: $pending"
}

# The part of server N's config that makes it a member of the cluster.
write_server_xml() {
  local n=$1 shard replica
  shard=$(shard_of "$n")
  replica=$(replica_of "$n")
  {
    echo "<remote_servers><$cluster>"
    for s in 1 2; do
      echo "  <shard><internal_replication>true</internal_replication>"
      for r in 1 2; do
        # The native port of the server holding shard s, replica r.
        echo "    <replica><host>127.0.0.1</host><port>$(($(http_port_of $(((s - 1) * 2 + r))) + 1))</port></replica>"
      done
      echo "  </shard>"
    done
    echo "</$cluster></remote_servers>"
    # A server killed with SIGKILL leaves its ZooKeeper session (and the
    # ephemeral "is_active" node of each of its replicas) behind until the
    # session times out; the restarted server cannot take its replicas back
    # before that. 8 s instead of the default 30 s keeps `restart` short while
    # staying far above the pauses of a busy machine.
    echo "<zookeeper><node><host>127.0.0.1</host><port>$base</port></node><session_timeout_ms>8000</session_timeout_ms></zookeeper>"
    # Replica names only have to be unique within a shard's ZooKeeper path.
    echo "<macros><shard>0$shard</shard><replica>r$replica</replica></macros>"
  } >"$dir/ch$n.xml"
}

start_server() { # N -> runs server.sh, which prints the PID once it answers
  local n=$1
  bash "$server_sh" start "$dir/ch$n" "$(http_port_of "$n")" "$dir/ch$n.xml"
}

stop_zk() { # SIGTERM, SIGKILL after 15 s; by the PID in zk/pid
  local pid
  [ -f "$dir/zk/pid" ] || return 0
  pid=$(cat "$dir/zk/pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$dir/zk/pid"; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  rm -f "$dir/zk/pid"
}

stop_all() { # servers first (in parallel), so they don't wait on a gone ZooKeeper
  local pids=()
  for n in 1 2 3 4; do
    if [ -d "$dir/ch$n" ]; then
      bash "$server_sh" stop "$dir/ch$n" &
      pids+=($!)
    fi
  done
  for p in "${pids[@]}"; do wait "$p" || true; done
  stop_zk
}

check_server_number() {
  case "${1:-}" in 1 | 2 | 3 | 4) ;; *) die "server number must be 1..4, got '${1:-}'" ;; esac
}

read_base() {
  [ -f "$dir/base_port" ] || die "$dir holds no cluster (no base_port file)"
  base=$(cat "$dir/base_port")
}

case "$cmd" in
start)
  base=${3:?base port}
  if ! [[ "$base" =~ ^[0-9]+$ ]] || [ "$base" -lt 1024 ] || [ "$base" -gt 65490 ]; then
    die "base port must be a number in 1024..65490"
  fi
  [ -f "$dir/zk/pid" ] && die "$dir already holds a running cluster; stop it first"
  # A port already taken would either make a server fail late or, worse, let
  # the readiness checks talk to somebody else's ZooKeeper or ClickHouse.
  for p in "$base" $(for n in 1 2 3 4; do h=$((base + 10 * n)); echo "$h $((h + 1)) $((h + 2))"; done); do
    if port_in_use "$p"; then die "port $p on 127.0.0.1 is already in use"; fi
  done
  mkdir -p "$dir/zk/data"
  dir=$(cd "$dir" && pwd)
  echo "$base" >"$dir/base_port"
  # Whatever fails from here on, leave nothing running.
  on_exit() { if [ "$1" -ne 0 ]; then stop_all; fi; }
  trap 'on_exit $?' EXIT

  # ZooKeeper, standalone (no server.N lines): only its client port, no admin
  # HTTP server; "srvr" allowed so that readiness can be asked cheaply.
  cat >"$dir/zk/zoo.cfg" <<CFG
tickTime=2000
dataDir=$dir/zk/data
clientPort=$base
clientPortAddress=127.0.0.1
maxClientCnxns=200
admin.enableServer=false
4lw.commands.whitelist=srvr
CFG
  # A small heap is plenty for a handful of clients and little data.
  "$java" -Xms16m -Xmx256m -XX:+UseSerialGC \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
    -cp "$zk_classpath" org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zk/zoo.cfg" \
    >"$dir/zk/zookeeper.log" 2>&1 &
  echo $! >"$dir/zk/pid"
  zk_pid=$(cat "$dir/zk/pid")
  for _ in $(seq 1 300); do
    zk_ok && break
    kill -0 "$zk_pid" 2>/dev/null || { tail -20 "$dir/zk/zookeeper.log" >&2; die "ZooKeeper exited; see $dir/zk/zookeeper.log"; }
    sleep 0.1
  done
  zk_ok || die "ZooKeeper did not answer on port $base within 30 s"

  # The four servers start in parallel; server.sh bounds each wait.
  pids=()
  for n in 1 2 3 4; do
    write_server_xml "$n"
    start_server "$n" >"$dir/ch$n.start.out" 2>&1 &
    pids+=($!)
  done
  failed=0
  for n in 1 2 3 4; do
    if ! wait "${pids[$((n - 1))]}"; then
      echo "server $n failed to start:" >&2
      cat "$dir/ch$n.start.out" >&2
      failed=1
    fi
  done
  [ $failed = 0 ] || die "not all servers started"

  # Usable means: every server knows the 4 members of the cluster and has a
  # ZooKeeper session, and a replicated table created ON CLUSTER gets a row
  # across each shard's replicas (which exercises the DDL queue, the macros,
  # replication through interserver HTTP) and can be dropped again.
  for n in 1 2 3 4; do
    rows=$(query "$n" "SELECT count() FROM system.clusters WHERE cluster = '$cluster'")
    [ "$rows" = 4 ] || die "server $n lists $rows members of $cluster, not 4"
    wait_server_sees_zk "$n"
  done
  t=cluster_ready_check
  # ON CLUSTER waits for every member; bound that wait well below the default.
  ddl=distributed_ddl_task_timeout=60
  query 1 "DROP TABLE IF EXISTS default.$t ON CLUSTER $cluster" "$ddl" >/dev/null
  query 1 "CREATE TABLE default.$t ON CLUSTER $cluster (d Date, x UInt32)
    ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/$t', '{replica}')
    PARTITION BY d ORDER BY x" "$ddl" >/dev/null
  query 1 "INSERT INTO default.$t VALUES (today(), 1)" >/dev/null
  query 3 "INSERT INTO default.$t VALUES (today(), 2)" >/dev/null
  for n in 2 4; do
    got=
    for _ in $(seq 1 150); do
      got=$(query "$n" "SELECT count() FROM default.$t") || true
      [ "$got" = 1 ] && break
      sleep 0.2
    done
    [ "$got" = 1 ] || die "server $n did not receive its shard's row through replication"
  done
  query 1 "DROP TABLE default.$t ON CLUSTER $cluster" "$ddl" >/dev/null

  urls=$(for n in 1 2 3 4; do echo "http://127.0.0.1:$(http_port_of "$n")"; done | paste -sd,)
  echo "$urls" >"$dir/urls"
  echo "$urls"
  ;;
stop)
  [ -d "$dir" ] || exit 0
  stop_all
  ;;
kill)
  read_base
  check_server_number "${3:-}"
  bash "$server_sh" stop "$dir/ch$3" KILL
  ;;
restart)
  read_base
  check_server_number "${3:-}"
  dir=$(cd "$dir" && pwd)
  n=$3
  if [ -f "$dir/ch$n/pid" ] && kill -0 "$(cat "$dir/ch$n/pid")" 2>/dev/null; then
    die "server $n is still running (PID $(cat "$dir/ch$n/pid"))"
  fi
  # server.sh rewrites the same config from the same ports and XML, and keeps
  # the data folder, so the server comes back as the same replica.
  pid=$(start_server "$n")
  wait_server_sees_zk "$n"
  wait_replicas_active "$n" "$pid"
  echo "http://127.0.0.1:$(http_port_of "$n")"
  ;;
*)
  echo "usage: cluster.sh start DIR BASE_PORT | stop DIR | kill DIR N | restart DIR N" >&2
  exit 2
  ;;
esac

#!/usr/bin/env bash
# Starts and stops a throw-away ClickHouse server for the tests: loopback
# only, its own folder, its own ports, stopped by the PID it wrote.
#
#   server.sh start DIR HTTP_PORT [EXTRA_XML_FILE]  -> prints the PID once the
#       server answers SELECT 1 (TCP port HTTP_PORT+1, interserver HTTP_PORT+2);
#       EXTRA_XML_FILE is pasted inside <yandex> (remote_servers, zookeeper,
#       macros for a cluster)
#   server.sh stop DIR [KILL]                       -> SIGTERM (SIGKILL with KILL),
#       waits until the process is gone
set -euo pipefail

cmd=${1:?start|stop}
dir=${2:?folder}
server=${CLICKHOUSE_SERVER:-/usr/sbin/clickhouse-server}

case "$cmd" in
start)
  http_port=${3:?http port}
  extra=${4:-}
  mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/log"
  dir=$(cd "$dir" && pwd)
  extra_xml=""
  if [ -n "$extra" ]; then extra_xml=$(cat "$extra"); fi
  cat >"$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$dir/log/server.log</log><errorlog>$dir/log/error.log</errorlog><console>0</console></logger>
  <http_port>$http_port</http_port>
  <tcp_port>$((http_port + 1))</tcp_port>
  <interserver_http_port>$((http_port + 2))</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <listen_host>127.0.0.1</listen_host>
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <user_files_path>$dir/user_files/</user_files_path>
  <format_schema_path>$dir/format_schemas/</format_schema_path>
  <users_config>$dir/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>200</max_concurrent_queries>
  <keep_alive_timeout>2</keep_alive_timeout>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
$extra_xml
</yandex>
XML
  cat >"$dir/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
XML
  "$server" --config-file="$dir/config.xml" >"$dir/log/stdout.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/pid"
  for _ in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:$http_port/?query=SELECT%201" >/dev/null 2>&1; then
      echo "$pid"
      exit 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "clickhouse-server exited; see $dir/log" >&2
      tail -20 "$dir/log/stdout.log" "$dir/log/error.log" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.1
  done
  echo "clickhouse-server did not answer on port $http_port within 30 s" >&2
  kill -9 "$pid" 2>/dev/null || true
  exit 1
  ;;
stop)
  [ -f "$dir/pid" ] || exit 0
  pid=$(cat "$dir/pid")
  sig=TERM
  if [ "${3:-}" = KILL ]; then sig=KILL; fi
  kill -s "$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$dir/pid"; exit 0; }
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/pid"
  ;;
*)
  echo "usage: server.sh start DIR HTTP_PORT [EXTRA_XML] | stop DIR [KILL]" >&2
  exit 2
  ;;
esac

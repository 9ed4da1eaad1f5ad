// A throw-away ClickHouse server for the end-to-end suites, started and
// stopped through tests/clickhouse/server.sh: loopback only, in a temporary
// folder of its own that is removed when it stops.
//
//   const ch = await startClickHouse();   // -> {url, dir, pid, stop()}
//   ...
//   await ch.stop();
//
// And a throw-away cluster (2 shards x 2 replicas and a ZooKeeper, declared as
// `nucleon_test`), through tests/clickhouse/cluster.sh:
//
//   const cl = await startClickHouseCluster();
//   // -> {urls: [4 URLs], url: 'url1,...,url4', cluster, dir, stop(), kill(n), restart(n)}
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { testPortRange } = require('./ports');

const script = path.resolve(__dirname, '..', '..', 'clickhouse', 'server.sh');
const clusterScript = path.resolve(__dirname, '..', '..', 'clickhouse', 'cluster.sh');

// The cluster's name in cluster.sh's remote_servers.
const kClusterName = 'nucleon_test';

// Resolves true when `port` can be bound on the loopback address right now.
function portFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

// A port P such that P, P+1 and P+2 are free (server.sh takes the HTTP port
// and uses the next two for its native and interserver ports). Ports are drawn
// at random below the usual ephemeral range, where outgoing connections do not
// take them; the number of tries is bounded.
// NUCLEON_TEST_PORTS=LO-HI (lib/ports.js) narrows the draw to that block.
function drawPort(span) {
  const range = testPortRange();
  const lo = range ? range.lo : 20000, hi = range ? range.hi - span : 31999;
  return lo + Math.floor(Math.random() * (hi - lo + 1));
}

async function freePortTriple() {
  for (let i = 0; i < 200; i++) {
    const p = drawPort(2);
    if (await portFree(p) && await portFree(p + 1) && await portFree(p + 2)) return p;
  }
  throw new Error('no three consecutive free loopback ports found');
}

// A base port B such that B .. B+42 are all free on the loopback address
// (cluster.sh takes B for ZooKeeper and B+10*n .. B+10*n+2 for server n; the
// ports in between are checked too, so that the block is plainly ours).
// Drawn at random below the ephemeral range; the number of tries is bounded.
async function freePortBlock() {
  for (let i = 0; i < 100; i++) {
    const base = drawPort(42);
    let free = true;
    for (let p = base; p <= base + 42 && free; p++) free = await portFree(p);
    if (free) return base;
  }
  throw new Error('no block of 43 free loopback ports found');
}

// Runs server.sh (or `which` script) with `args`; resolves with its stdout,
// rejects with its stderr.
function runScript(args, timeoutMs, which = script) {
  return new Promise((resolve, reject) => {
    const p = spawn('bash', [which, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    // server.sh bounds its own waits (30 s each); this is the backstop.
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${path.basename(which)} ${args[0]} failed (${signal || `exit ${code}`}): ${err.trim()}`));
    });
  });
}

// The server outlives whoever started it (server.sh runs it in the
// background), so a process killed before it could call stop() (SIGKILL, a
// test timeout) would leave it running with its folder. A detached watchdog
// does that stop instead: it polls this process once a second (for at most a
// day) and, once it is gone, stops the server by its PID file and removes the
// folder. After a normal stop() it finds no PID file and only the folder to
// remove, which is already gone.
//
// For a cluster (`which` = cluster.sh) the same loop runs `cluster.sh stop`,
// which stops the four servers and ZooKeeper by their PID files (SIGTERM,
// then SIGKILL after its bounds).
function startWatchdog(dir, which = script) {
  const stop = which === script ? 'stop "$1" KILL' : 'stop "$1"';
  const loop = `for _ in $(seq 1 86400); do kill -0 ${process.pid} 2>/dev/null || break; sleep 1; done
if ! kill -0 ${process.pid} 2>/dev/null; then bash "$0" ${stop}; rm -rf "$1"; fi`;
  const w = spawn('bash', ['-c', loop, which, dir], { detached: true, stdio: 'ignore' });
  w.unref();
  return w;
}

// Starts a server. A port can be taken between the check and the server's
// bind, so a failed start is retried (a couple of times) on other ports.
async function startClickHouse({ attempts = 3 } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nucleon-clickhouse-'));
  const watchdog = startWatchdog(dir);
  let lastError;
  for (let i = 0; i < attempts; i++) {
    const port = await freePortTriple();
    try {
      const pid = Number((await runScript(['start', dir, String(port)], 60000)).trim());
      let stopping = null;
      return {
        url: `http://127.0.0.1:${port}`,
        dir,
        pid,
        // Stops the server by the PID server.sh wrote (SIGTERM, then SIGKILL if it
        // lingers) and removes its folder. Safe to call more than once.
        stop({ kill = false } = {}) {
          if (!stopping) {
            stopping = runScript(['stop', dir, ...(kill ? ['KILL'] : [])], 60000)
              .finally(() => { fs.rmSync(dir, { recursive: true, force: true }); watchdog.kill(); });
          }
          return stopping;
        },
      };
    } catch (e) {
      lastError = e;
      // A server that started but never answered was killed by server.sh; make sure.
      await runScript(['stop', dir, 'KILL'], 60000).catch(() => {});
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
  watchdog.kill();
  throw lastError;
}

// True when this machine can run the cluster: clickhouse-server, Java and
// Debian's ZooKeeper (the same overrides as cluster.sh).
function clusterAvailable() {
  const server = process.env.CLICKHOUSE_SERVER || '/usr/sbin/clickhouse-server';
  const zk = (process.env.ZOOKEEPER_CLASSPATH || '/usr/share/java/zookeeper.jar').split(':')[0];
  const java = process.env.JAVA ||
    (process.env.PATH || '').split(path.delimiter).map((d) => path.join(d, 'java')).find((f) => fs.existsSync(f));
  return fs.existsSync(server) && fs.existsSync(zk) && !!java && fs.existsSync(java);
}

// Starts the cluster. cluster.sh refuses ports in use and, when a start fails,
// stops what it started; a port can still be taken between our check and a
// bind, so a failed start is retried (a couple of times) in a fresh folder on
// other ports.
async function startClickHouseCluster({ attempts = 3 } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nucleon-clickhouse-cluster-'));
  const watchdog = startWatchdog(dir, clusterScript);
  // cluster.sh bounds each of its waits (ZooKeeper 30 s, each server 30 s,
  // the readiness checks, restart's replicas 60 s); these are the backstops.
  const run = (args, ms) => runScript(args, ms, clusterScript);
  let lastError;
  for (let i = 0; i < attempts; i++) {
    const base = await freePortBlock();
    try {
      const line = (await run(['start', dir, String(base)], 240000)).trim();
      const urls = line.split(',');
      let stopping = null;
      return {
        urls, // shard1-replica1, shard1-replica2, shard2-replica1, shard2-replica2
        url: line, // the value for --clickhouse
        cluster: kClusterName,
        dir,
        basePort: base,
        // Stops every server and ZooKeeper by their PIDs and removes the
        // folder. Safe to call more than once.
        stop() {
          if (!stopping) {
            stopping = run(['stop', dir], 120000)
              .finally(() => { fs.rmSync(dir, { recursive: true, force: true }); watchdog.kill(); });
          }
          return stopping;
        },
        // SIGKILLs server n (1..4) and resolves once it is gone.
        kill(n) { return run(['kill', dir, String(n)], 60000); },
        // Starts server n again on its data and ports; resolves (with its URL)
        // once it has taken back its replicated tables.
        async restart(n) { return (await run(['restart', dir, String(n)], 180000)).trim(); },
      };
    } catch (e) {
      lastError = e;
      // cluster.sh stopped what it started; make sure, then start afresh.
      await run(['stop', dir], 120000).catch(() => {});
      fs.rmSync(dir, { recursive: true, force: true });
      fs.mkdirSync(dir);
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
  watchdog.kill();
  throw lastError;
}

module.exports = { startClickHouse, startClickHouseCluster, clusterAvailable, kClusterName };

// A throw-away ClickHouse server for the end-to-end suites, started and
// stopped through tests/clickhouse/server.sh: loopback only, in a temporary
// folder of its own that is removed when it stops.
//
//   const ch = await startClickHouse();   // -> {url, dir, pid, stop()}
//   ...
//   await ch.stop();
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const script = path.resolve(__dirname, '..', '..', 'clickhouse', 'server.sh');

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
async function freePortTriple() {
  for (let i = 0; i < 200; i++) {
    const p = 20000 + Math.floor(Math.random() * 12000);
    if (await portFree(p) && await portFree(p + 1) && await portFree(p + 2)) return p;
  }
  throw new Error('no three consecutive free loopback ports found');
}

// Runs server.sh with `args`; resolves with its stdout, rejects with its stderr.
function runScript(args, timeoutMs) {
  return new Promise((resolve, reject) => {
    const p = spawn('bash', [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    // server.sh bounds its own waits (30 s each); this is the backstop.
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`server.sh ${args[0]} failed (${signal || `exit ${code}`}): ${err.trim()}`));
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
function startWatchdog(dir) {
  const loop = `for _ in $(seq 1 86400); do kill -0 ${process.pid} 2>/dev/null || break; sleep 1; done
if ! kill -0 ${process.pid} 2>/dev/null; then bash "$0" stop "$1" KILL; rm -rf "$1"; fi`;
  const w = spawn('bash', ['-c', loop, script, dir], { detached: true, stdio: 'ignore' });
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

module.exports = { startClickHouse };

// A simulated device running a real, published Nucleus SDK, for the end-to-end tests.
//
// Used two ways:
//  - as a module (by the tests): `startDevice()` forks this file as a child process with its own
//    HOME, so the SDK's module state and its `conf` store (queue, anonId, userId) are fresh and
//    private to that device; `TcpProxy` sits between a device and the server to hold back acks
//    or to survive a server restart; `expectedDeviceId4x()` computes the 4.x device id.
//  - as the child's entry point (`node lib/sdk_device.js`, config in NUCLEON_DEVICE_CONFIG):
//    drives the SDK, reports every WebSocket message it sends and receives to the parent over
//    IPC, polls the SDK's persisted queue until it is drained, then reports and exits.
//
// Every child is bounded by a watchdog; the parent kills it too if it outlives its deadline.
'use strict';

const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { fork } = require('node:child_process');

const nodeModules = path.resolve(__dirname, '..', 'node_modules');
const ENCRYPTION_KEY = 's0meR1nd0mK3y'; // the key both SDK generations give `conf`

// ---------------------------------------------------------------------------------------------
// Parent side
// ---------------------------------------------------------------------------------------------

// The hashed machine id node-machine-id returns (what 3.x sends as machineId and what 4.x
// hashes again with the OS user name into its deviceId).
function machineIdHash() {
  const { machineIdSync } = require(path.join(nodeModules, 'node-machine-id'));
  return machineIdSync();
}

// 4.x: deviceId = base64(sha256(machineId + username)).substring(0, 15)
function expectedDeviceId4x(username) {
  return crypto.createHash('sha256').update(machineIdHash() + username).digest('base64').substring(0, 15);
}

// Starts one simulated device. Returns a handle:
//   sent:   every message the SDK sent, parsed ({data:[...]}), with `at` (ms)
//   recv:   every message the SDK received, as raw text, with `isBinary`
//   done:   promise of the child's final report {drained, queue, ...} (rejects on crash/timeout)
//   kill(): ends the child
function startDevice({
  sdk, // 'v4' | 'v3'
  appId,
  endpoint,
  home, // the device's HOME (its conf store lives below it)
  simUser, // OS user name the SDK sees (4.x hashes it into deviceId)
  drainTimeoutMs = 10000,
  waitHeartbeat = false, // after draining, wait for the SDK to send a heartbeat
  hardTimeoutMs = drainTimeoutMs + 15000,
  log = false,
}) {
  const config = { sdk, appId, endpoint, simUser, drainTimeoutMs, waitHeartbeat };
  const env = { ...process.env, HOME: home, NUCLEON_DEVICE_CONFIG: JSON.stringify(config) };
  delete env.XDG_CONFIG_HOME;
  delete env.ELECTRON_IS_DEV;
  delete env.NODE_TEST_CONTEXT; // the child is a plain script, not a test file
  const child = fork(__filename, [], { env, cwd: home, stdio: ['ignore', 'pipe', 'pipe', 'ipc'], execArgv: [] });
  const handle = { child, sent: [], recv: [], stderr: '', stdout: '', report: null };
  child.stdout.on('data', (d) => { handle.stdout += d; if (log) process.stderr.write(`[device ${simUser}] ${d}`); });
  child.stderr.on('data', (d) => { handle.stderr += d; if (log) process.stderr.write(`[device ${simUser}] ${d}`); });
  child.on('message', (m) => {
    if (m.kind === 'sent') handle.sent.push(m);
    else if (m.kind === 'recv') handle.recv.push(m);
    else if (m.kind === 'done') handle.report = m;
  });
  handle.done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`device ${simUser} did not finish within ${hardTimeoutMs} ms\n${handle.stderr}`));
    }, hardTimeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (handle.report) resolve(handle.report);
      else reject(new Error(`device ${simUser} exited (${code ?? signal}) without a report\n${handle.stdout}\n${handle.stderr}`));
    });
  });
  handle.done.catch(() => {}); // the caller awaits it; never an unhandled rejection
  // From now on the device waits at most `ms` more for its queue to drain.
  handle.drainWithin = (ms) => { if (child.connected) child.send({ kind: 'deadline-in', ms }); };
  handle.kill = () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); };
  // All distinct events (by id) the SDK sent, excluding heartbeats, in first-sent order.
  handle.sentEvents = () => {
    const byId = new Map();
    for (const m of handle.sent) for (const e of m.data.data || []) {
      if (e.type === 'heartbeat') continue;
      if (!byId.has(e.id)) byId.set(e.id, e);
    }
    return [...byId.values()];
  };
  // How many times the SDK sent a message carrying event `id`.
  handle.timesSent = (id) => handle.sent.filter((m) => (m.data.data || []).some((e) => e.id === id)).length;
  return handle;
}

// A TCP proxy between an SDK and the server. While `holding`, everything the server sends
// after the HTTP upgrade response (i.e. the acks) is kept back, so the SDK keeps resending its
// queue; `release()` delivers it. `setTarget(null)` makes new connections fail (server down).
class TcpProxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.holding = false;
    this.pairs = new Set();
    this.connections = 0;
    this.server = net.createServer((client) => this._onClient(client));
  }

  listen() {
    return new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => {
      this.port = this.server.address().port;
      resolve(this.port);
    }));
  }

  get endpoint() { return `ws://127.0.0.1:${this.port}`; }

  setTarget(port) { this.targetPort = port; }

  hold() { this.holding = true; }

  release() {
    this.holding = false;
    for (const p of this.pairs) p.flush();
  }

  dropAll() { for (const p of this.pairs) p.destroy(); }

  close() {
    this.dropAll();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  _onClient(client) {
    this.connections += 1;
    if (!this.targetPort) { client.destroy(); return; }
    const upstream = net.connect(this.targetPort, '127.0.0.1');
    let headerDone = false;
    let headerBuf = Buffer.alloc(0);
    const held = [];
    const pair = {
      flush: () => { while (held.length) client.write(held.shift()); },
      destroy: () => { client.destroy(); upstream.destroy(); },
    };
    this.pairs.add(pair);
    const end = () => { this.pairs.delete(pair); pair.destroy(); };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => {
      if (!headerDone) {
        headerBuf = Buffer.concat([headerBuf, d]);
        const at = headerBuf.indexOf('\r\n\r\n');
        if (at < 0) return;
        headerDone = true;
        client.write(headerBuf.subarray(0, at + 4));
        d = headerBuf.subarray(at + 4);
        if (d.length === 0) return;
      }
      if (this.holding) held.push(d);
      else { pair.flush(); client.write(d); }
    });
  }
}

module.exports = { startDevice, TcpProxy, expectedDeviceId4x, machineIdHash, ENCRYPTION_KEY };

// ---------------------------------------------------------------------------------------------
// Child side
// ---------------------------------------------------------------------------------------------

function findFile(dir, name, depth = 6) {
  let entries;
  try { entries = fs.readdirSync(dir, { withFileTypes: true }); } catch (_) { return null; }
  for (const e of entries) if (e.isFile() && e.name === name) return path.join(dir, e.name);
  if (depth === 0) return null;
  for (const e of entries) if (e.isDirectory()) {
    const f = findFile(path.join(dir, e.name), name, depth - 1);
    if (f) return f;
  }
  return null;
}

async function childMain() {
  const config = JSON.parse(process.env.NUCLEON_DEVICE_CONFIG);
  const send = (m) => { if (process.connected) process.send(m); };
  const exitSoon = (code) => setTimeout(() => process.exit(code), 100);
  // Watchdog: the child never outlives its budget, whatever the SDK does.
  setTimeout(() => {
    send({ kind: 'done', drained: false, reason: 'watchdog' });
    exitSoon(0);
  }, config.drainTimeoutMs + 10000).unref(); // (a shortened deadline only makes it sooner)
  process.on('disconnect', () => process.exit(0)); // parent gone

  // A distinct OS user per simulated device: 4.x hashes the user name into its deviceId.
  if (config.simUser) {
    const realUserInfo = os.userInfo;
    os.userInfo = (...a) => ({ ...realUserInfo(...a), username: config.simUser });
  }

  const sdkDir = path.join(nodeModules, config.sdk === 'v3' ? 'nucleus-nodejs' : 'nucleus-analytics');
  // The `ws` and `conf` the SDK itself resolves (3.x has its own nested copies).
  const WebSocket = require(require.resolve('ws', { paths: [sdkDir] }));
  const Conf = require(require.resolve('conf', { paths: [sdkDir] }));

  // Record everything that goes over the SDK's socket.
  const realSend = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data, ...rest) {
    try { send({ kind: 'sent', at: Date.now(), data: JSON.parse(data.toString()) }); } catch (_) { /* not JSON */ }
    return realSend.call(this, data, ...rest);
  };
  const realEmit = WebSocket.prototype.emit;
  WebSocket.prototype.emit = function (event, ...a) {
    if (event === 'message') {
      const [data, isBinary] = a;
      send({ kind: 'recv', at: Date.now(), text: Buffer.isBuffer(data) ? data.toString('utf8') : String(data), isBinary: !!isBinary });
    }
    return realEmit.call(this, event, ...a);
  };

  const Nucleus = require(sdkDir);
  if (config.sdk === 'v3') {
    Nucleus.init(config.appId, { endpoint: config.endpoint, reportInterval: 1 });
    Nucleus.setUserId('bob');
    Nucleus.appStarted();
    Nucleus.track('SAVED', { kind: 'doc' });
    Nucleus.trackError('myCustomError', new Error('boom'));
  } else {
    Nucleus.init(config.appId, { endpoint: config.endpoint, reportInterval: 1 });
    Nucleus.identify('richard', { plan: 'pro', age: 34 });
    Nucleus.track('PLAYED_TRACK', { trackName: 'Song', duration: 120 });
    Nucleus.page('Cart', { count: 5 });
    Nucleus.trackError('myCustomError', new Error('boom'));
  }

  // Read the queue the SDK persisted, through `conf` with the SDK's own options.
  const home = os.homedir();
  let store = null;
  const readQueue = () => {
    if (!store) {
      const file = findFile(home, 'nucleus.json');
      if (!file) return null;
      store = new Conf({ cwd: path.dirname(file), configName: 'nucleus', encryptionKey: ENCRYPTION_KEY });
    }
    try { return store.get('nucleus-queue') || []; } catch (_) { return null; }
  };
  const realEvents = (q) => q.filter((e) => e && e.type !== 'heartbeat');

  let deadline = Date.now() + config.drainTimeoutMs;
  process.on('message', (m) => { if (m && m.kind === 'deadline-in') deadline = Date.now() + m.ms; });
  let seenNonEmpty = false;
  let queue = null;
  let drainedAt = null;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    queue = readQueue();
    if (!queue) continue;
    if (realEvents(queue).length > 0) seenNonEmpty = true;
    else if (seenNonEmpty) { drainedAt = Date.now(); break; }
  }
  if (drainedAt !== null && config.waitHeartbeat) {
    // The SDK has nothing left to send: the next report tick must be a heartbeat.
    let gotHeartbeat = false;
    const hbDeadline = Date.now() + 5000;
    const onSent = WebSocket.prototype.send;
    WebSocket.prototype.send = function (data, ...rest) {
      try { if (JSON.parse(data.toString()).data.some((e) => e.type === 'heartbeat')) gotHeartbeat = true; } catch (_) { /* ignore */ }
      return onSent.call(this, data, ...rest);
    };
    while (!gotHeartbeat && Date.now() < hbDeadline) await new Promise((r) => setTimeout(r, 100));
    // give the server a moment to process that heartbeat before the parent exports
    await new Promise((r) => setTimeout(r, 300));
  }
  send({ kind: 'done', drained: drainedAt !== null, seenNonEmpty, queue, drainedAt });
  exitSoon(0);
}

if (require.main === module) {
  childMain().catch((err) => {
    if (process.connected) process.send({ kind: 'done', drained: false, reason: String(err && err.stack) });
    setTimeout(() => process.exit(1), 100);
  });
}

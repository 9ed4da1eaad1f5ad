#!/usr/bin/env node
// Connection-scale benchmark: how many tracking WebSockets one server holds,
// what each costs, how fast a reconnect storm is absorbed, and how acks and the
// API behave meanwhile.
//
//   node bench/connection_scale.js [--connections 8000] [--processes 4] [--addresses 40]
//        [--deflate] [--rate 0] [--flow-seconds 30] [--events-per-sec 50000]
//        [--interval 20000] [--live-samples 20] [--warm-devices 0] [--client-nice 0]
//        [--server-arg ARG]... [--nucleon PATH] [--out FILE]
//
// Starts build/nucleon on a fresh temporary data folder and a free loopback
// port (within NUCLEON_TEST_PORTS=LO-HI when that is set) and creates an app.
// With --warm-devices N it then sends an `init` from each of N other devices
// over HTTP, so that the store's caches (bounded by --cache-mb) hold what a
// server that has been ingesting holds and the RSS growth below is the
// sockets' own. Then --processes client processes (connection_client.js),
// at scheduling priority --client-nice (0..19; with 19 they take only the CPU
// the server leaves, as devices on other machines would), each open their
// share of the sockets from their own slice of the source addresses
// 127.0.0.1..127.0.0.<addresses>, every device sending an `init`:
//   - with --rate 0 (a storm, as after a restart) every process opens all its
//     sockets at once; otherwise the total opening rate is --rate per second;
//   - meanwhile the driver times an API request (live/users/count) every 20 ms;
//   - once all are open and their inits acked: the server's RSS growth per
//     connection (VmRSS after, less VmRSS before, over the sockets open), the
//     setup rate (sockets opened over the slowest process's opening time);
//   - live/users/count and live/users latencies, --live-samples each;
//   - a flow phase: --events-per-sec events per second over all devices for
//     --flow-seconds, each device reporting once per --interval ms (its events
//     batched, or a heartbeat), as the SDKs do every 20 s: ack latency
//     percentiles and whether every message was acked.
// Then everything closes, the server gets SIGTERM and the folder is deleted.
// Talks to 127.0.0.x only; every phase is bounded in time. The per-address cap
// is raised with --server-arg --max-connections-per-ip=N when a process's
// share per address needs it. The last line of the output is a JSON summary.
'use strict';

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const readline = require('node:readline');
const { testPortRange } = require('../tests/node/lib/ports');

const root = path.resolve(__dirname, '..');

function parseArgs(argv) {
  const o = {
    connections: 8000, processes: 4, addresses: 40, deflate: false, rate: 0,
    flowSeconds: 30, eventsPerSec: 50000, interval: 20000, liveSamples: 20, warmDevices: 0, clientNice: 0,
    serverArgs: [],
    nucleon: process.env.NUCLEON_BIN || path.join(root, 'build', 'nucleon'), out: '',
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => argv[++i];
    if (k === '--connections') o.connections = Number(v());
    else if (k === '--processes') o.processes = Number(v());
    else if (k === '--addresses') o.addresses = Number(v());
    else if (k === '--deflate') o.deflate = true;
    else if (k === '--rate') o.rate = Number(v());
    else if (k === '--flow-seconds') o.flowSeconds = Number(v());
    else if (k === '--events-per-sec') o.eventsPerSec = Number(v());
    else if (k === '--interval') o.interval = Number(v());
    else if (k === '--live-samples') o.liveSamples = Number(v());
    else if (k === '--warm-devices') o.warmDevices = Number(v());
    else if (k === '--client-nice') o.clientNice = Number(v());
    else if (k === '--server-arg') o.serverArgs.push(v());
    else if (k === '--nucleon') o.nucleon = v();
    else if (k === '--out') o.out = v();
    else throw new Error(`unknown flag ${k} (see the header of bench/connection_scale.js)`);
  }
  if (o.addresses < o.processes || o.addresses > 254) throw new Error('--addresses must be in [processes, 254]');
  if (!(Number.isInteger(o.clientNice) && o.clientNice >= 0 && o.clientNice <= 19)) throw new Error('--client-nice must be in [0, 19]');
  return o;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (s) => process.stderr.write(`connection_scale: ${s}\n`);

function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

// CPU seconds (user + system) the process has used.
function cpuSeconds(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return Number(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))].toFixed(2));
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
// A request on the keep-alive agent: GET, or POST with a JSON body; resolves
// with the status, the time to the end of the answer and the body.
function send(port, pathName, token, body) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const headers = token ? { authorization: `Bearer ${token}` } : {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    const req = http.request({
      host: '127.0.0.1', port, path: pathName, agent, timeout: 10000,
      method: body === undefined ? 'GET' : 'POST', headers,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, ms: performance.now() - t0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout ${pathName}`)));
    req.on('error', reject);
    req.end(body);
  });
}

// An `init` from each of `devices` devices (each its own user and session),
// sent over HTTP in batches; every batch must be acked.
async function warmStore(port, appId, devices) {
  const batch = 1000;
  for (let first = 0; first < devices; first += batch) {
    const data = [];
    for (let i = first; i < Math.min(devices, first + batch); i++) {
      data.push({
        type: 'init', id: i + 1, date: Date.now(), sessionId: `warm-s${i}`, userId: `warm-u${i}`,
        deviceId: `warm-d${i}`, client: 'js', platform: 'Linux', osVersion: '6.1', locale: 'en',
        payload: { plan: 'free' },
      });
    }
    const r = await send(port, `/app/${appId}/track`, '', JSON.stringify({ data }));
    if (r.status !== 200 || !/reportedIds/.test(r.body)) throw new Error(`warm-up batch answered ${r.status}: ${r.body.slice(0, 200)}`);
  }
}

// The server's port: 0 (the kernel picks one, read back from the log) unless
// NUCLEON_TEST_PORTS=LO-HI asks for a free port within that range.
function bindFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', () => resolve(0));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(port)));
  });
}
async function listenPort() {
  const range = testPortRange();
  if (!range) return 0;
  for (let i = 0; i < 200; i++) {
    const port = await bindFree(range.lo + Math.floor(Math.random() * (range.hi - range.lo + 1)));
    if (port) return port;
  }
  throw new Error(`no free port in NUCLEON_TEST_PORTS ${process.env.NUCLEON_TEST_PORTS}`);
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nucleon-conn-'));
  const created = spawnSync(o.nucleon, ['app', 'create', 'bench', '--data', dir], { encoding: 'utf8', timeout: 30000 });
  if (created.status !== 0) throw new Error(`app create failed: ${created.stderr}`);
  const { appId, token } = JSON.parse(created.stdout);

  // The API rate limit is raised: the driver polls the API while it measures.
  const server = spawn(o.nucleon, ['serve', '--data', dir, '--listen', `127.0.0.1:${await listenPort()}`,
    '--api-rate', '100000', '--api-burst', '100000', ...o.serverArgs],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let serverLog = '';
  const keep = (d) => { serverLog = (serverLog + d).slice(-65536); };
  server.stdout.on('data', keep);
  server.stderr.on('data', keep);
  const clients = [];
  const cleanup = () => {
    for (const c of clients) c.kill('SIGKILL');
    server.kill('SIGKILL');
  };
  process.on('exit', cleanup);
  let port = 0;
  for (let i = 0; i < 400 && !port; i++) {
    const m = /listening on 127\.0\.0\.1:(\d+)/.exec(serverLog);
    if (m) port = Number(m[1]);
    else await sleep(50);
  }
  if (!port) throw new Error(`the server did not listen:\n${serverLog}`);
  const countPath = `/api/v1/apps/${appId}/live/users/count`;
  const usersPath = `/api/v1/apps/${appId}/live/users`;
  if (o.warmDevices > 0) {
    await warmStore(port, appId, o.warmDevices);
    await sleep(2000);
  }
  for (let i = 0; i < 20; i++) await send(port, countPath, token);
  await sleep(500);
  const rssBefore = rssKiB(server.pid);
  const cpuBefore = cpuSeconds(server.pid);

  // Clients: each process its own slice of the source addresses.
  const per = Math.floor(o.connections / o.processes);
  const addrPer = Math.floor(o.addresses / o.processes);
  const reports = new Map(); // phase -> [report]
  const waiters = [];
  const t0 = performance.now();
  for (let p = 0; p < o.processes; p++) {
    const n = p === o.processes - 1 ? o.connections - per * (o.processes - 1) : per;
    const first = 1 + p * addrPer;
    const last = p === o.processes - 1 ? o.addresses : first + addrPer - 1;
    const args = [path.join(__dirname, 'connection_client.js'), '--port', String(port), '--app', appId,
      '--connections', String(n), '--addresses', `${first}-${last}`, '--id', String(p),
      '--rate', String(o.rate / o.processes), '--interval', String(o.interval),
      '--max-seconds', String(120 + o.flowSeconds * 2)];
    if (o.deflate) args.push('--deflate');
    // Each client process raises its own open-file limit to the hard maximum
    // and runs at the priority asked for.
    const child = spawn('/bin/sh', ['-c', `ulimit -n "$(ulimit -Hn)" && exec nice -n ${o.clientNice} "$0" "$@"`,
      process.execPath, ...args],
      { stdio: ['pipe', 'pipe', 'inherit'] });
    clients.push(child);
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      let r;
      try { r = JSON.parse(line); } catch (_) { return; }
      if (!reports.has(r.phase)) reports.set(r.phase, []);
      reports.get(r.phase).push(r);
      for (const w of waiters.splice(0)) w();
    });
  }
  const waitPhase = async (phase, timeoutMs) => {
    const deadline = Date.now() + timeoutMs;
    while ((reports.get(phase) || []).length < o.processes && Date.now() < deadline) {
      await Promise.race([new Promise((r) => waiters.push(r)), sleep(200)]);
    }
    return reports.get(phase) || [];
  };

  // The API while the sockets open.
  const during = [];
  let connecting = true;
  const prober = (async () => {
    while (connecting) {
      try {
        const r = await send(port, countPath, token);
        during.push(r.status === 200 ? r.ms : 10000);
      } catch (_) { during.push(10000); }
      await sleep(20);
    }
  })();
  const connected = await waitPhase('connected', 180000);
  connecting = false;
  await prober;
  const wallMs = performance.now() - t0;
  const opened = connected.reduce((s, r) => s + r.opened, 0);
  const failed = connected.reduce((s, r) => s + r.failed, 0);
  const openWall = Math.max(...connected.map((r) => r.openWallMs));
  const rssConnected = rssKiB(server.pid);
  const cpuConnect = cpuSeconds(server.pid) - cpuBefore;
  await sleep(3000);
  const rssIdle = rssKiB(server.pid);
  during.sort((a, b) => a - b);

  // Live endpoints with every device present, and the floor of any API
  // request (the app's token checked, a small answer) for comparison.
  const live = { count: [], users: [], floor: [] };
  for (let i = 0; i < o.liveSamples; i++) live.floor.push((await send(port, `/api/v1/apps/${appId}/live/events?limit=1`, token)).ms);
  live.floor.sort((a, b) => a - b);
  let liveCount = null;
  let liveRows = null;
  for (let i = 0; i < o.liveSamples; i++) {
    const c = await send(port, countPath, token);
    live.count.push(c.ms);
    liveCount = JSON.parse(c.body).data;
    const u = await send(port, usersPath, token);
    live.users.push(u.ms);
    liveRows = JSON.parse(u.body).data.length;
  }
  live.count.sort((a, b) => a - b);
  live.users.sort((a, b) => a - b);

  // Events flow.
  let flow = [];
  if (o.flowSeconds > 0) {
    for (const c of clients) c.stdin.write(`flow ${o.flowSeconds} ${o.eventsPerSec / o.processes}\n`);
    flow = await waitPhase('flow', (o.flowSeconds + 60) * 1000);
  }
  const rssEnd = rssKiB(server.pid);
  for (const c of clients) c.stdin.write('quit\n');
  await sleep(500);
  server.kill('SIGTERM');
  await new Promise((r) => { server.once('close', r); setTimeout(r, 20000); });
  fs.rmSync(dir, { recursive: true, force: true });

  const merged = (key) => Math.max(...flow.map((r) => r[key] ?? 0));
  const summary = {
    connections: o.connections, processes: o.processes, addresses: o.addresses, deflate: o.deflate,
    warmDevices: o.warmDevices, clientNice: o.clientNice,
    rate: o.rate || 'storm', opened, failed,
    initsUnacked: connected.reduce((s, r) => s + r.unacked, 0),
    setupPerSec: Math.round(opened / (openWall / 1000)), openWallMs: openWall,
    allAckedWallMs: Math.max(...connected.map((r) => r.allAckedWallMs)), driverWallMs: Math.round(wallMs),
    setupP99Ms: Math.max(...connected.map((r) => r.setupP99Ms ?? 0)),
    // The server's own cost: CPU seconds to accept every socket and ack its
    // init, and so how many setups one core of it does per second.
    serverCpuSecondsConnect: cpuConnect,
    serverSetupsPerCoreSec: Math.round(opened / Math.max(0.01, cpuConnect)),
    rssBeforeKiB: rssBefore, rssConnectedKiB: rssConnected, rssIdleKiB: rssIdle, rssEndKiB: rssEnd,
    rssPerConnKiB: Number(((rssIdle - rssBefore) / Math.max(1, opened)).toFixed(2)),
    apiDuringConnectP50Ms: percentile(during, 50), apiDuringConnectP99Ms: percentile(during, 99),
    apiDuringConnectSamples: during.length,
    liveCount, liveRows, apiFloorP50Ms: percentile(live.floor, 50),
    liveCountP50Ms: percentile(live.count, 50), liveCountP99Ms: percentile(live.count, 99),
    liveUsersP50Ms: percentile(live.users, 50), liveUsersP99Ms: percentile(live.users, 99),
    flowEventsPerSec: flow.length ? Math.round(flow.reduce((s, r) => s + r.events, 0) / Math.max(...flow.map((r) => r.seconds))) : null,
    flowMessages: flow.reduce((s, r) => s + (r.messages || 0), 0),
    flowUnacked: flow.reduce((s, r) => s + (r.unacked || 0), 0),
    // Per process percentiles; the worst process is reported (an upper bound).
    ackP50Ms: flow.length ? Number(merged('ackP50Ms').toFixed(2)) : null,
    ackP99Ms: flow.length ? Number(merged('ackP99Ms').toFixed(2)) : null,
    ackMaxMs: flow.length ? Number(merged('ackMaxMs').toFixed(2)) : null,
  };
  const line = JSON.stringify(summary);
  if (o.out) fs.appendFileSync(o.out, `${line}\n`);
  process.stdout.write(`${line}\n`);
  process.exit(0);
}

main().catch((e) => { log(e.stack || String(e)); process.exit(1); });

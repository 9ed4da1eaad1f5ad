#!/usr/bin/env node
// One client process of the connection-scale benchmark (connection_scale.js
// starts several): opens --connections tracking WebSockets spread over the
// loopback source addresses 127.0.0.<first>..127.0.0.<last>, each device
// sending an `init` on open. It reports on stdout, one JSON line per phase,
// and takes its commands on stdin, so that the driver can sample the server
// between phases:
//   (start)  connect: all sockets at once (a storm) or at --rate per second;
//            reports {"phase":"connected", opened, failed, setupMs, firstAckMs...}
//   "flow S R"  for S seconds, send R events per second in total: every
//            device reports once per --interval ms (20 s, as the SDKs), its
//            events batched, or a heartbeat when it has none; reports ack
//            latency percentiles and whether every message was acked
//   "quit"   closes every socket and exits
// Every wait is bounded; the process exits by itself after --max-seconds.
'use strict';

const path = require('node:path');
const readline = require('node:readline');

let WebSocket;
for (const c of [path.join(__dirname, '..', 'tests', 'node', 'node_modules', 'ws'), 'ws']) {
  try { WebSocket = require(c); break; } catch (_) { /* next */ }
}
if (!WebSocket) throw new Error('the ws package is needed: run `make node-deps`');

function parseArgs(argv) {
  const o = {
    port: 0, app: '', connections: 100, first: 1, last: 1, deflate: false, rate: 0,
    interval: 20000, id: 0, maxSeconds: 600, ackTimeout: 30000,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => argv[++i];
    if (k === '--port') o.port = Number(v());
    else if (k === '--app') o.app = v();
    else if (k === '--connections') o.connections = Number(v());
    else if (k === '--addresses') [o.first, o.last] = v().split('-').map(Number);
    else if (k === '--deflate') o.deflate = true;
    else if (k === '--rate') o.rate = Number(v());
    else if (k === '--interval') o.interval = Number(v());
    else if (k === '--id') o.id = Number(v());
    else if (k === '--max-seconds') o.maxSeconds = Number(v());
    else throw new Error(`unknown flag ${k}`);
  }
  return o;
}

const o = parseArgs(process.argv.slice(2));
setTimeout(() => process.exit(3), o.maxSeconds * 1000).unref();
const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let nextId = 1;
const devices = [];
const latencies = [];
let unacked = 0; // messages sent and not acked yet
let sentMessages = 0;
let ackedMessages = 0;
let lateAcks = 0;

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

class Device {
  constructor(n) {
    this.n = n;
    this.deviceId = `d${o.id}-${n}`;
    this.sessionId = o.id * 1e6 + n;
    this.pending = new Map(); // last id of a message -> send time
    this.ws = null;
  }

  open() {
    const address = `127.0.0.${o.first + (this.n % (o.last - o.first + 1))}`;
    return new Promise((resolve) => {
      const started = performance.now();
      const ws = new WebSocket(`ws://127.0.0.1:${o.port}/app/${o.app}/track`, {
        localAddress: address, perMessageDeflate: o.deflate, handshakeTimeout: 30000,
      });
      this.ws = ws;
      ws.on('message', (m) => this.onAck(m));
      ws.on('error', () => {});
      ws.once('open', () => {
        this.openedMs = performance.now() - started;
        this.openedAt = performance.now();
        this.send([{
          type: 'init', id: nextId++, date: Date.now(), sessionId: this.sessionId,
          userId: `u${o.id}-${this.n % 5000}`, deviceId: this.deviceId, client: 'js',
          platform: 'Linux', osVersion: '6.1', locale: 'en', payload: { plan: 'free' },
        }]);
        resolve(true);
      });
      ws.once('close', (code) => { this.closeCode = code; resolve(false); });
    });
  }

  send(data) {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.pending.set(data[data.length - 1].id, performance.now());
    unacked++;
    sentMessages++;
    this.ws.send(JSON.stringify({ data }));
  }

  onAck(m) {
    let ids;
    try { ids = JSON.parse(m.toString()).reportedIds || []; } catch (_) { return; }
    const now = performance.now();
    for (const id of ids) {
      const t = this.pending.get(id);
      if (t === undefined) continue;
      this.pending.delete(id);
      unacked--;
      ackedMessages++;
      if (this.firstAckMs === undefined) this.firstAckMs = now - this.openedAt;
      if (recording) latencies.push(now - t);
      else lateAcks++;
    }
  }

  event(kind) {
    return kind === 'heartbeat'
      ? { type: 'heartbeat', id: nextId++, sessionId: this.sessionId, deviceId: this.deviceId }
      : { type: 'event', name: 'Tap', id: nextId++, date: Date.now(), sessionId: this.sessionId, deviceId: this.deviceId };
  }
}

let recording = false;

async function connect() {
  for (let n = 0; n < o.connections; n++) devices.push(new Device(n));
  const t0 = performance.now();
  const opens = [];
  for (let n = 0; n < devices.length; n++) {
    if (o.rate > 0) {
      const due = t0 + (n * 1000) / o.rate;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
    }
    opens.push(devices[n].open());
  }
  const results = await Promise.all(opens);
  const openedAt = performance.now();
  // The init of every device acked (bounded).
  const deadline = performance.now() + o.ackTimeout;
  while (unacked > 0 && performance.now() < deadline) await sleep(20);
  const setup = devices.filter((d) => d.openedMs !== undefined).map((d) => d.openedMs).sort((a, b) => a - b);
  const firstAcks = devices.filter((d) => d.firstAckMs !== undefined).map((d) => d.firstAckMs).sort((a, b) => a - b);
  out({
    phase: 'connected', id: o.id, opened: results.filter(Boolean).length,
    failed: results.filter((r) => !r).length,
    openWallMs: Math.round(openedAt - t0),
    allAckedWallMs: Math.round(performance.now() - t0),
    unacked,
    setupP50Ms: percentile(setup, 50), setupP99Ms: percentile(setup, 99),
    initAckP50Ms: percentile(firstAcks, 50), initAckP99Ms: percentile(firstAcks, 99),
    closeCodes: countCodes(),
  });
}

function countCodes() {
  const codes = {};
  for (const d of devices) if (d.closeCode !== undefined) codes[d.closeCode] = (codes[d.closeCode] || 0) + 1;
  return codes;
}

async function flow(seconds, eventsPerSec) {
  latencies.length = 0;
  lateAcks = 0;
  recording = true;
  const sent0 = sentMessages;
  const acked0 = ackedMessages;
  const open = devices.filter((d) => d.ws && d.ws.readyState === WebSocket.OPEN);
  if (open.length === 0) {
    out({ phase: 'flow', id: o.id, error: 'no open sockets' });
    return;
  }
  // As the SDKs report: every device sends what it queued once per report
  // interval (a heartbeat when it queued nothing), the devices' reports spread
  // evenly over the interval.
  const interval = o.interval;
  const perReport = (eventsPerSec * interval) / 1000 / open.length;
  const t0 = performance.now();
  let carry = 0;
  let events = 0;
  let reports = 0; // reports sent so far, over all devices
  while (performance.now() - t0 < seconds * 1000) {
    const due = Math.floor(((performance.now() - t0) / interval) * open.length);
    while (reports < due) {
      const d = open[reports++ % open.length];
      carry += perReport;
      const n = Math.floor(carry);
      carry -= n;
      const batch = [];
      for (let i = 0; i < n; i++) batch.push(d.event('event'));
      if (batch.length === 0) batch.push(d.event('heartbeat'));
      events += n;
      d.send(batch);
    }
    await sleep(10);
  }
  const sendWall = performance.now() - t0;
  const deadline = performance.now() + o.ackTimeout;
  while (unacked > 0 && performance.now() < deadline) await sleep(20);
  recording = false;
  latencies.sort((a, b) => a - b);
  out({
    phase: 'flow', id: o.id, seconds: sendWall / 1000, events, messages: sentMessages - sent0,
    acked: ackedMessages - acked0, unacked,
    ackP50Ms: percentile(latencies, 50), ackP90Ms: percentile(latencies, 90),
    ackP99Ms: percentile(latencies, 99), ackMaxMs: latencies.length ? latencies[latencies.length - 1] : null,
    closeCodes: countCodes(),
  });
}

async function quit() {
  for (const d of devices) if (d.ws) d.ws.terminate();
  await sleep(100);
  process.exit(0);
}

(async () => {
  await connect();
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const [cmd, a, b] = line.trim().split(/\s+/);
    if (cmd === 'flow') await flow(Number(a), Number(b));
    else if (cmd === 'codes') out({ phase: 'codes', id: o.id, unacked, closeCodes: countCodes() });
    else if (cmd === 'quit') await quit();
  }
  await quit();
})();

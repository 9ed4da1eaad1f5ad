// Load and fault-test helpers shared by crash.test.js and bad_input.test.js:
// SDK-like tracking clients (WebSocket and HTTP) that keep every unacked event
// in a queue and resend it until its id comes back in `reportedIds`, a raw HTTP
// request that survives a server answering early and closing, an export that
// is not limited to 1 MiB of output, and a SQLite integrity check.
//
// Every loop here is bounded: clients stop when told to or at their deadline,
// requests have timeouts, and reconnects are spaced by a delay.
'use strict';

const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { spawnSync } = require('node:child_process');
const WebSocket = require('ws');
const { binary, sleep } = require('./server');
// A small deterministic PRNG, so a failing run can be replayed with its seed.
const { mulberry32 } = require('./diff_scenario');

// A delay that does not keep the process alive (for bounding waits in races).
function grace(ms) { return new Promise((r) => setTimeout(r, ms).unref()); }

// An HTTP request on 127.0.0.1 that resolves with the response even when the
// server answers before the whole body was written and then closes (a 413 on
// a large body): a write error after the response arrived is ignored.
// Resolves {status, headers, text, json, raw}; rejects when no response came.
// With `holdBodyMs`, the body is sent only if no response came within that time.
function rawRequest(port, method, pathName, { body, headers = {}, timeout = 10000, agent = false, holdBodyMs = 0 } = {}) {
  return new Promise((resolve, reject) => {
    let settled = false;
    let gotResponse = false;
    const finish = (fn, v) => { if (!settled) { settled = true; clearTimeout(hardTimer); fn(v); } };
    const hdrs = { ...headers };
    const hasLength = Object.keys(hdrs).some((k) => /^(content-length|transfer-encoding)$/i.test(k));
    if (body !== undefined && !hasLength) hdrs['content-length'] = String(Buffer.byteLength(body));
    const req = http.request({ host: '127.0.0.1', port, method, path: pathName, headers: hdrs, agent });
    const hardTimer = setTimeout(() => {
      req.destroy();
      finish(reject, new Error(`timeout after ${timeout} ms: ${method} ${pathName}`));
    }, timeout);
    req.on('response', (res) => {
      gotResponse = true;
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      const done = () => {
        const raw = Buffer.concat(chunks);
        const text = raw.toString('utf8');
        let json;
        try { json = text ? JSON.parse(text) : undefined; } catch (_) { json = undefined; }
        finish(resolve, { status: res.statusCode, headers: res.headers, text, json, raw });
      };
      res.on('end', done);
      // The server may close right after a complete response; keep what came.
      res.on('aborted', done);
      res.on('error', done);
    });
    req.on('error', (e) => {
      if (gotResponse) return; // the response handler settles
      finish(reject, e);
    });
    if (body === undefined) {
      req.end();
    } else if (holdBodyMs > 0) {
      // Like curl with a large body: headers first, so that a server rejecting
      // on Content-Length can answer before the body is on the wire.
      req.flushHeaders();
      setTimeout(() => { if (!gotResponse && !settled) req.end(body); }, holdBodyMs);
    } else {
      req.end(body);
    }
  });
}

// `nucleon export APP_ID` without execFileSync's 1 MiB output limit.
function exportAll(dataDir, appId, { timeoutMs = 120000 } = {}) {
  const r = spawnSync(binary, ['export', appId, '--data', dataDir], {
    encoding: 'utf8',
    timeout: timeoutMs,
    maxBuffer: 1 << 30,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (r.error) throw new Error(`nucleon export failed: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`nucleon export exited ${r.status} (signal ${r.signal}): ${r.stderr}`);
  const out = [];
  const lines = r.stdout.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    if (l.trim() === '') continue;
    let record;
    try { record = JSON.parse(l); } catch (e) {
      throw new Error(`nucleon export line ${i + 1} is not JSON: ${l.slice(0, 200)}`);
    }
    // The events only, not the session ends and tombstones after them.
    if (record.type !== 'heartbeat' && record.type !== 'tombstone') out.push(record);
  }
  return out;
}

// `sqlite3 FILE "PRAGMA integrity_check"`; returns the trimmed output.
function sqliteIntegrity(file) {
  const r = spawnSync('sqlite3', [file, 'PRAGMA integrity_check'], {
    encoding: 'utf8', timeout: 60000, stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (r.error) return `error: ${r.error.message}`;
  return (r.stdout + (r.status === 0 ? '' : `\n(exit ${r.status}) ${r.stderr}`)).trim();
}

// The SQLite databases in a data folder (the file names the store uses).
function sqliteFilesIn(dataDir) {
  const found = [];
  const walk = (dir, depth) => {
    for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, ent.name);
      if (ent.isDirectory() && depth < 2) walk(p, depth + 1);
      else if (ent.isFile() && /\.(db|sqlite|sqlite3)$/.test(ent.name)) {
        const fd = fs.openSync(p, 'r');
        const head = Buffer.alloc(16);
        fs.readSync(fd, head, 0, 16, 0);
        fs.closeSync(fd);
        if (head.toString('latin1').startsWith('SQLite format 3')) found.push(p);
      }
    }
  };
  walk(dataDir, 0);
  return found.sort();
}

// The identity of a stored event for the dedupe checks.
function tripleKey(e) {
  return `${e.deviceId ?? e.machineId}|${String(e.sessionId)}|${e.id}`;
}
function fullKey(e) {
  return `${tripleKey(e)}|${e.type ?? 'event'}|${e.name ?? ''}`;
}

// Makes the events of one simulated device: unique ids 1..1e6 across all its
// sessions, a new session (starting with `init`) every `perSession` events.
class EventFactory {
  constructor(deviceId, rand, { perSession = 400 } = {}) {
    this.deviceId = deviceId;
    this.rand = rand;
    this.perSession = perSession;
    this.sessionId = 100000 + Math.floor(rand() * 800000);
    this.inSession = 0;
    this.nextId = 1;
  }

  next() {
    if (this.nextId > 1000000) return null;
    if (this.inSession >= this.perSession) { this.sessionId += 1; this.inSession = 0; }
    const id = this.nextId++;
    const base = { id, date: Date.now(), sessionId: this.sessionId, deviceId: this.deviceId };
    let ev;
    if (this.inSession === 0) {
      ev = { type: 'init', ...base, payload: { plan: 'crash' }, client: 'js', platform: 'Linux', osVersion: '6.1', locale: 'en-US' };
    } else if (this.rand() < 0.05) {
      ev = { type: 'error', name: 'crashTestError', ...base, payload: { message: `boom ${id}`, stack: `Error: boom ${id}\n    at crash.js:1:1` } };
    } else {
      ev = { type: 'event', name: `CRASH_EVT_${id % 7}`, ...base, payload: { seq: id, ok: true } };
    }
    this.inSession += 1;
    return ev;
  }
}

// State shared by both client kinds: the queue of unacked events and the record
// of acked ones.
class QueueingClient {
  constructor({ port, appId, deviceId, seed, queueCap = 1000, deadline }) {
    this.port = port;
    this.appId = appId;
    this.deviceId = deviceId;
    this.rand = mulberry32(seed);
    this.factory = new EventFactory(deviceId, this.rand);
    this.queue = new Map(); // id -> event, insertion order = oldest first
    this.sent = new Map(); // tripleKey -> event, every event ever generated
    this.acked = new Map(); // tripleKey -> event
    this.queueCap = queueCap;
    this.deadline = deadline || Date.now() + 10 * 60 * 1000;
    this.running = false;
    this.generating = false;
    this.ackMessages = 0;
    this.badAcks = []; // ack messages that were not {"reportedIds":[int...]}
    this.unknownAckIds = 0; // acked ids that were never sent by this client
  }

  get path() { return `/app/${encodeURIComponent(this.appId)}/track`; }

  generate(n) {
    if (!this.generating) return;
    for (let i = 0; i < n && this.queue.size < this.queueCap; i++) {
      const ev = this.factory.next();
      if (!ev) { this.generating = false; return; }
      this.queue.set(ev.id, ev);
      this.sent.set(tripleKey(ev), ev);
    }
  }

  onAckIds(ids) {
    for (const id of ids) {
      const ev = this.queue.get(id);
      if (ev) {
        this.queue.delete(id);
        this.acked.set(tripleKey(ev), ev);
      } else if (!this.sentIdExists(id)) {
        this.unknownAckIds += 1;
      }
    }
  }

  sentIdExists(id) { return Number.isInteger(id) && id >= 1 && id < this.factory.nextId; }

  stopGenerating() { this.generating = false; }
}

// A WebSocket client that behaves like the SDK: on every tick it adds a few
// events and sends its whole queue; after a reconnect it sends the whole queue
// at once; it drops an event only when its id comes back in `reportedIds`.
class WsLoadClient extends QueueingClient {
  constructor(opts) {
    super(opts);
    this.tickMs = opts.tickMs || 100;
    this.perTick = opts.perTick || 10;
    this.perMessageDeflate = opts.perMessageDeflate !== undefined ? opts.perMessageDeflate : true;
    this.ws = null;
    this.connects = 0;
    this.timer = null;
    this.reconnectTimer = null;
  }

  start() {
    this.running = true;
    this.generating = true;
    this.connect();
    this.timer = setInterval(() => this.tick(), this.tickMs);
  }

  connect() {
    this.reconnectTimer = null;
    if (!this.running || Date.now() > this.deadline) return;
    let ws;
    try {
      ws = new WebSocket(`ws://127.0.0.1:${this.port}${this.path}`, {
        handshakeTimeout: 3000,
        perMessageDeflate: this.perMessageDeflate,
      });
    } catch (_) {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.on('open', () => {
      this.connects += 1;
      this.sendQueue();
    });
    ws.on('message', (data) => this.onMessage(data));
    ws.on('error', () => { /* a close follows */ });
    ws.on('close', () => {
      if (this.ws === ws) this.ws = null;
      this.scheduleReconnect();
    });
  }

  scheduleReconnect() {
    if (!this.running || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => this.connect(), 20 + Math.floor(this.rand() * 60));
  }

  onMessage(data) {
    let msg;
    try { msg = JSON.parse(data.toString('utf8')); } catch (_) { msg = undefined; }
    const ok = msg && typeof msg === 'object' && !Array.isArray(msg) &&
      Object.keys(msg).length === 1 && Array.isArray(msg.reportedIds) &&
      msg.reportedIds.every((x) => Number.isInteger(x));
    if (!ok) {
      if (this.badAcks.length < 10) this.badAcks.push(data.toString('utf8').slice(0, 300));
      return;
    }
    this.ackMessages += 1;
    this.onAckIds(msg.reportedIds);
  }

  tick() {
    if (Date.now() > this.deadline) { this.stop(); return; }
    this.generate(this.perTick);
    this.sendQueue();
  }

  sendQueue() {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || this.queue.size === 0) return;
    if (ws.bufferedAmount > (1 << 20)) return; // the server is slow; do not pile up
    const events = [...this.queue.values()];
    for (let i = 0; i < events.length; i += 1000) {
      try { ws.send(JSON.stringify({ data: events.slice(i, i + 1000) }), () => {}); } catch (_) { return; }
    }
  }

  async stop() {
    this.running = false;
    this.generating = false;
    if (this.timer) { clearInterval(this.timer); this.timer = null; }
    if (this.reconnectTimer) { clearTimeout(this.reconnectTimer); this.reconnectTimer = null; }
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      const closed = new Promise((r) => ws.once('close', r));
      try { ws.terminate(); } catch (_) { /* already gone */ }
      await Promise.race([closed, grace(2000)]);
    }
  }
}

// An HTTP client that posts its queue in batches of `batchSize` (oldest
// first), adding `batchSize` new events per pass, and backs off on errors.
class HttpLoadClient extends QueueingClient {
  constructor(opts) {
    super(opts);
    this.batchSize = opts.batchSize || 50;
    this.pauseMs = opts.pauseMs || 50;
    this.statuses = {}; // status -> count
    this.errors = 0;
    this.loopDone = null;
  }

  start() {
    this.running = true;
    this.generating = true;
    this.loopDone = this.loop();
  }

  async loop() {
    while (this.running && Date.now() < this.deadline) {
      this.generate(this.batchSize);
      const events = [...this.queue.values()];
      let pause = this.pauseMs;
      for (let i = 0; i < events.length && this.running; i += this.batchSize) {
        const batch = events.slice(i, i + this.batchSize);
        let res;
        try {
          res = await rawRequest(this.port, 'POST', this.path, {
            body: JSON.stringify({ data: batch }),
            headers: { 'content-type': 'application/json' },
            timeout: 5000,
          });
        } catch (_) {
          this.errors += 1;
          pause = 20 + Math.floor(this.rand() * 60);
          break;
        }
        this.statuses[res.status] = (this.statuses[res.status] || 0) + 1;
        if (res.status === 200 && res.json && Array.isArray(res.json.reportedIds)) {
          this.ackMessages += 1;
          this.onAckIds(res.json.reportedIds);
        } else {
          if (res.status === 200 && this.badAcks.length < 10) this.badAcks.push(res.text.slice(0, 300));
          const ra = Number(res.headers['retry-after']);
          pause = res.status === 429 && ra > 0 ? Math.min(ra * 1000, 1000) : 50;
          break;
        }
      }
      await sleep(pause);
    }
  }

  async stop() {
    this.running = false;
    this.generating = false;
    if (this.loopDone) await Promise.race([this.loopDone, grace(6000)]);
  }
}

// A Sec-WebSocket-Key for hand-made upgrade requests.
function wsKey() { return crypto.randomBytes(16).toString('base64'); }

module.exports = {
  mulberry32, rawRequest, exportAll, sqliteIntegrity, sqliteFilesIn, tripleKey, fullKey,
  EventFactory, WsLoadClient, HttpLoadClient, wsKey,
};

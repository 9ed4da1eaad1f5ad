// Many tracking WebSockets with permessage-deflate, as SDKs open them: a few
// thousand sockets from several loopback addresses are all acked (small
// messages and batches big enough to be compressed both ways), the server
// holds no more connections than its caps (a socket over the per-address cap
// is refused with 429, over the total cap with 503), and a stop (SIGTERM)
// closes every socket with 1001 after acking what it had read, so that no
// stored batch goes unacked.
//
// Counts are bounded (fewer sockets under sanitizers), every wait has a
// deadline, and clients talk to 127.0.0.x only.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const WebSocket = require('ws');
const { Server, createApp, exportEvents, sleep, scaled, timeoutScale } = require('./lib/server');

const SOCKETS = timeoutScale > 1 ? 400 : 3000;
const PER_ADDRESS = 250;
const PER_IP_CAP = 260;
const TOTAL_CAP = SOCKETS + PER_IP_CAP + 100;

// The server's open sockets (its listener included), from /proc.
function serverSockets(pid) {
  let n = 0;
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) n++;
    } catch (_) { /* closed meanwhile */ }
  }
  return n;
}

// A device on its own socket: `send` resolves with the ack of that message.
class Device {
  constructor(url, localAddress, n) {
    this.url = url;
    this.localAddress = localAddress;
    this.n = n;
    this.waiting = new Map(); // last id of a message -> resolve
    this.acked = new Set();
    this.sent = [];
    this.closeCode = null;
  }

  // Resolves with null when open, or with the HTTP status that refused it.
  open() {
    return new Promise((resolve) => {
      const ws = new WebSocket(this.url, { localAddress: this.localAddress, perMessageDeflate: true });
      this.ws = ws;
      ws.on('message', (m) => {
        for (const id of JSON.parse(m.toString()).reportedIds || []) {
          this.acked.add(id);
          const done = this.waiting.get(id);
          if (done) { this.waiting.delete(id); done(); }
        }
      });
      ws.on('unexpected-response', (_req, res) => { res.resume(); resolve(res.statusCode); });
      ws.on('error', () => resolve(-1));
      ws.once('open', () => resolve(null));
      this.closed = new Promise((r) => ws.once('close', (code) => { this.closeCode = code; r(code); }));
    });
  }

  send(events) {
    const last = events[events.length - 1].id;
    for (const e of events) this.sent.push(e.id);
    const acked = new Promise((resolve) => this.waiting.set(last, resolve));
    this.ws.send(JSON.stringify({ data: events }));
    return acked;
  }
}

let nextId = 1;
const init = (d) => ({
  type: 'init', id: nextId++, date: Date.now(), sessionId: d.n + 1, userId: `u${d.n % 700}`,
  deviceId: `dev-${d.n}`, client: 'js', platform: 'Linux', osVersion: '6.1', locale: 'en', payload: { plan: 'free' },
});
const event = (d, name = 'Scale') => ({
  type: 'event', name, id: nextId++, date: Date.now(), sessionId: d.n + 1, deviceId: `dev-${d.n}`,
  payload: { screen: 'settings', step: d.n % 7 },
});

// Resolves with `promise`, or rejects after `ms` naming `what`.
function within(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), scaled(ms)); }),
  ]);
}

// A started server with an app; its devices' sockets are dropped and the
// server stopped when the test ends.
async function setUp(t, name, args = []) {
  const server = new Server({ args });
  const app = createApp(server.dataDir, name);
  await server.start();
  const devices = [];
  t.after(async () => {
    for (const d of devices) d.ws?.terminate();
    await server.stop();
  });
  return { server, app, devices, url: `${server.endpoint}/app/${app.appId}/track` };
}

test(`${SOCKETS} deflate WebSockets are all acked and the connection caps hold`, { timeout: scaled(300000) }, async (t) => {
  const { server, devices, url } = await setUp(t, 'ws-scale',
    ['--max-connections', String(TOTAL_CAP), '--max-connections-per-ip', String(PER_IP_CAP)]);
  const address = (i) => `127.0.0.${20 + Math.floor(i / PER_ADDRESS)}`;
  // What the server holds before any client: its listener (and any socket of its own).
  const own = serverSockets(server.proc.pid);
  let peak = 0;
  const sample = () => { peak = Math.max(peak, serverSockets(server.proc.pid) - own); };

  // Open in waves of 500, each device sending its init at once.
  for (let i = 0; i < SOCKETS; i += 500) {
    const wave = [];
    for (let k = i; k < Math.min(SOCKETS, i + 500); k++) {
      const d = new Device(url, address(k), k);
      devices.push(d);
      wave.push(d.open().then((refused) => {
        assert.equal(refused, null, `socket ${k} from ${d.localAddress} refused`);
        assert.match(d.ws.extensions, /permessage-deflate/);
        return d.send([init(d)]);
      }));
    }
    await within(Promise.all(wave), 60000, `wave of sockets from ${i}`);
    sample();
  }
  assert.ok(peak <= TOTAL_CAP, `server holds ${peak} connections, cap ${TOTAL_CAP}`);

  // Batches the client compresses (over ws's 1 KiB threshold), on every socket;
  // a few batches whose ack is big enough to be compressed too.
  await within(Promise.all(devices.map((d) => {
    const batch = [];
    for (let i = 0; i < (d.n % 500 === 0 ? 400 : 12); i++) batch.push(event(d));
    return d.send(batch);
  })), 120000, 'batches acked');
  for (const d of devices) {
    assert.equal(d.acked.size, d.sent.length, `device ${d.n}: every event acked`);
  }

  // The per-address cap: one address fills it, the next socket gets 429.
  const extra = [];
  for (let i = 0; i < PER_IP_CAP; i++) extra.push(new Device(url, '127.0.0.60', SOCKETS + i));
  devices.push(...extra);
  const opened = await within(Promise.all(extra.map((d) => d.open())), 60000, 'sockets up to the per-address cap');
  assert.deepEqual(opened.filter((r) => r !== null), [], 'sockets under the per-address cap are accepted');
  const overAddress = new Device(url, '127.0.0.60', -1);
  devices.push(overAddress);
  assert.equal(await within(overAddress.open(), 10000, 'socket over the per-address cap'), 429);

  // The total cap: more addresses until the server answers 503; it never holds more.
  let refusedTotal = null;
  for (let i = 0; i < 300 && refusedTotal === null; i++) {
    const d = new Device(url, `127.0.0.${61 + Math.floor(i / 100)}`, SOCKETS + PER_IP_CAP + i);
    devices.push(d);
    refusedTotal = await within(d.open(), 10000, 'socket towards the total cap');
  }
  assert.equal(refusedTotal, 503, 'a socket over the total cap is refused with 503');
  await sleep(1500); // refused sockets are lingering-closed within a second
  sample();
  assert.ok(peak <= TOTAL_CAP, `server holds ${peak} connections, cap ${TOTAL_CAP}`);

  // Still serving: a socket under the caps is acked after a close frees a place.
  devices[0].ws.close();
  await within(devices[0].closed, 10000, 'a close');
  const again = new Device(url, address(0), 0);
  devices.push(again);
  let status = null;
  for (let i = 0; i < 20; i++) {
    status = await again.open();
    if (status === null) break;
    await sleep(100); // the freed place is returned when the server's session ends
  }
  assert.equal(status, null);
  await within(again.send([event(again)]), 10000, 'ack on a socket opened after a close');
});

test('SIGTERM closes tracking sockets with 1001 after acking what they sent', { timeout: scaled(120000) }, async (t) => {
  const { server, app, devices, url } = await setUp(t, 'ws-going-away');
  const N = 200;
  for (let i = 0; i < N; i++) devices.push(new Device(url, `127.0.0.${20 + Math.floor(i / 100)}`, i));
  await within(Promise.all(devices.map(async (d) => {
    assert.equal(await d.open(), null);
    await d.send([init(d)]);
  })), 60000, 'sockets open');

  // Every device keeps a few batches in flight until its socket closes.
  let running = true;
  const senders = devices.map(async (d) => {
    while (running && d.closeCode === null) {
      const batch = [event(d), event(d), event(d)];
      d.send(batch);
      await sleep(50 + (d.n % 50));
    }
  });
  await sleep(1000);
  const stopped = server.stop();
  const codes = await within(Promise.all(devices.map((d) => d.closed)), 30000, 'sockets closed');
  running = false;
  await Promise.all(senders);
  const exit = await stopped;
  assert.equal(exit.code, 0);
  assert.deepEqual([...new Set(codes)], [1001], 'every socket closes with 1001 (going away)');

  // Every acked event is stored, and every stored event was acked: nothing the
  // server read went unacknowledged before it closed the socket.
  const stored = new Set(exportEvents(server.dataDir, app.appId).map((e) => e.id));
  let acked = 0;
  let unacked = 0;
  for (const d of devices) {
    for (const id of d.sent) {
      if (d.acked.has(id)) {
        acked++;
        assert.ok(stored.has(id), `acked event ${id} is stored`);
      } else {
        unacked++;
        assert.ok(!stored.has(id), `event ${id} stored without its ack`);
      }
    }
  }
  assert.ok(acked > N, `events acked during the run: ${acked} (${unacked} sent after the close began)`);
});

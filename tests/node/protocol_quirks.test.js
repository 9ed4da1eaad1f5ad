// End-to-end: every quirk of the tracking protocol (docs/api.md, "Tracking over HTTP" and
// "Tracking over WebSocket"; docs/semantics.md, section 1), driven
// with raw WebSocket (`ws`) and HTTP clients against the real nucleon binary. One test per quirk;
// each test has its own app so that `nucleon export` shows only what that test sent.
//
// Run alone: node --test tests/node/protocol_quirks.test.js
'use strict';

const { test: nodeTest, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const WebSocket = require('ws');

const { Server, createApp, exportEvents, cli, tempDir, sleep } = require('./lib/server.js');

// Every test is bounded; each wait inside is bounded tighter still.
const test = (name, fn) => nodeTest(name, { timeout: 30000 }, fn);

let server;
const appPool = [];
const openSockets = new Set();

// Apps are created before the server starts (the server picks up admin changes only within a
// second), one per test.
const APPS_NEEDED = 60;
function takeApp() {
  const app = appPool.shift();
  assert.ok(app, 'app pool exhausted: raise APPS_NEEDED');
  return app;
}

before(async () => {
  server = new Server();
  for (let i = 0; i < APPS_NEEDED; i++) appPool.push(createApp(server.dataDir, `quirks-${i}`));
  await server.start();
});

after(async () => {
  for (const ws of openSockets) ws.terminate();
  if (server) await server.stop();
  if (server) fs.rmSync(server.dataDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// helpers

let nextId = 1000;
const newId = () => ++nextId;

// A 4.x-shaped event (deviceId, numeric date); override anything.
function ev(overrides = {}) {
  return {
    type: 'event',
    name: 'CLICKED',
    id: newId(),
    date: Date.now() - 60000,
    sessionId: 424242,
    userId: 'quirk-user',
    deviceId: 'quirk-device',
    payload: { a: 1 },
    ...overrides,
  };
}

function drop(obj, ...keys) {
  const copy = { ...obj };
  for (const k of keys) delete copy[k];
  return copy;
}

// A raw WebSocket client that collects every server message.
class RawClient {
  constructor(ws) {
    this.ws = ws;
    this.messages = [];
    this.waiters = [];
    ws.on('message', (data, isBinary) => {
      const m = { text: Buffer.from(data).toString('utf8'), isBinary };
      const w = this.waiters.shift();
      if (w) w(m); else this.messages.push(m);
    });
  }

  static connect(pathName, { perMessageDeflate = true, timeoutMs = 5000 } = {}) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${server.port}${pathName}`, { perMessageDeflate, handshakeTimeout: timeoutMs });
      openSockets.add(ws);
      ws.once('open', () => {
        ws.on('error', () => {}); // a late error surfaces as a missing ack, never as a crash
        resolve(new RawClient(ws));
      });
      ws.once('unexpected-response', (req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      ws.once('error', reject);
    });
  }

  static forApp(appId, opts) { return RawClient.connect(`/app/${appId}/track`, opts); }

  send(message, { binary = false } = {}) {
    const text = typeof message === 'string' ? message : JSON.stringify(message);
    this.ws.send(binary ? Buffer.from(text, 'utf8') : text, { binary });
  }

  next(timeoutMs = 5000) {
    if (this.messages.length) return Promise.resolve(this.messages.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`no message from the server within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (m) => { clearTimeout(timer); resolve(m); };
      this.waiters.push(waiter);
    });
  }

  // Sends one message and returns the parsed ack, after checking its exact shape.
  async request(message, opts) {
    this.send(message, opts);
    const m = await this.next();
    assert.equal(m.isBinary, false, `the ack must be a text message, got binary: ${m.text}`);
    return parseAck(m.text);
  }

  close() {
    openSockets.delete(this.ws);
    this.ws.close();
  }
}

// An ack is exactly {"reportedIds":[...]}: no other key (Swift decodes [String:[Int]]).
function parseAck(text) {
  let ack;
  assert.doesNotThrow(() => { ack = JSON.parse(text); }, `ack is not JSON: ${text}`);
  assert.ok(ack && typeof ack === 'object' && !Array.isArray(ack), `ack is not an object: ${text}`);
  assert.deepEqual(Object.keys(ack), ['reportedIds'], `ack must hold only reportedIds: ${text}`);
  assert.ok(Array.isArray(ack.reportedIds), `reportedIds is not an array: ${text}`);
  return ack;
}

// Same members, any order; values compared with their JSON type (5 !== "5").
function assertSameIds(actual, expected, msg) {
  const key = (v) => JSON.stringify(v);
  assert.deepEqual([...actual].map(key).sort(), [...expected].map(key).sort(), msg);
}

const exported = (appId) => exportEvents(server.dataDir, appId);

function findStored(rows, { id, deviceId, sessionId }) {
  return rows.filter((x) => x.id === id && x.deviceId === deviceId
    && (sessionId === undefined || String(x.sessionId) === String(sessionId)));
}

// ---------------------------------------------------------------------------------------------
// Transports and framing

test('text frame: a batch is acked with every id and stored', async () => {
  const { appId } = takeApp();
  const c = await RawClient.forApp(appId);
  const batch = [ev({ name: 'A' }), ev({ name: 'B' }), ev({ type: 'init', name: undefined, payload: { plan: 'pro' } })];
  const ack = await c.request({ data: batch });
  assertSameIds(ack.reportedIds, batch.map((e) => e.id));
  c.close();
  const rows = exported(appId);
  assert.equal(rows.length, 3, JSON.stringify(rows));
  for (const e of batch) {
    const [x] = findStored(rows, e);
    assert.ok(x, `event ${e.id} stored`);
    assert.equal(x.type, e.type);
    assert.equal(x.name ?? null, e.name ?? null);
    assert.equal(x.userId, 'quirk-user');
    assert.equal(String(x.sessionId), '424242');
    assert.equal(Date.parse(x.time), e.date);
    assert.deepEqual(x.payload, e.payload);
  }
});

test('binary frame (Swift sends binary): accepted, and the ack comes back as a text frame', async () => {
  const { appId } = takeApp();
  const c = await RawClient.forApp(appId);
  const batch = [ev({ name: 'FROM_BINARY' })];
  const ack = await c.request({ data: batch }, { binary: true }); // request() checks the ack is text
  assertSameIds(ack.reportedIds, [batch[0].id]);
  c.close();
  const rows = exported(appId);
  assert.equal(rows.length, 1);
  assert.equal(rows[0].name, 'FROM_BINARY');
});

test('permessage-deflate is negotiated and compressed messages are decoded', async () => {
  const { appId } = takeApp();
  const c = await RawClient.forApp(appId, { perMessageDeflate: { threshold: 0 } }); // compress every frame
  assert.match(c.ws.extensions, /permessage-deflate/, `server did not accept permessage-deflate (extensions: "${c.ws.extensions}")`);
  const batch = Array.from({ length: 40 }, (_, i) => ev({ name: `BIG_${i}`, payload: { text: 'la '.repeat(300), i } }));
  const ack = await c.request({ data: batch });
  assertSameIds(ack.reportedIds, batch.map((e) => e.id));
  // a small compressed message too, and a binary compressed one
  const small = ev({ name: 'SMALL' });
  assertSameIds((await c.request({ data: [small] })).reportedIds, [small.id]);
  const bin = ev({ name: 'SMALL_BIN' });
  assertSameIds((await c.request({ data: [bin] }, { binary: true })).reportedIds, [bin.id]);
  // acks over 512 bytes (sent compressed) and small ones (sent plain), in turn
  for (const n of [150, 1, 150, 1]) {
    const b = Array.from({ length: n }, () => ev({ name: 'ACK_SIZES' }));
    assertSameIds((await c.request({ data: b })).reportedIds, b.map((e) => e.id), `a batch of ${n}`);
  }
  c.close();
  const rows = exported(appId);
  assert.equal(rows.length, 42 + 302);
  const x = rows.find((r) => r.name === 'BIG_7');
  assert.deepEqual(x.payload, { text: 'la '.repeat(300), i: 7 });
});

test('permessage-deflate with other offered parameters (no context takeover, small windows) works over several messages', async () => {
  const { appId } = takeApp();
  const offers = [
    { threshold: 0, clientNoContextTakeover: true, serverNoContextTakeover: true },
    { threshold: 0, serverMaxWindowBits: 9, clientMaxWindowBits: 9 },
    { threshold: 0, clientMaxWindowBits: true },
  ];
  let n = 0;
  for (const offer of offers) {
    const c = await RawClient.forApp(appId, { perMessageDeflate: offer });
    assert.match(c.ws.extensions, /permessage-deflate/, `offer ${JSON.stringify(offer)} not accepted`);
    for (let i = 0; i < 3; i++) {
      const batch = [ev({ name: 'DEFLATE_PARAMS', payload: { text: 'abc '.repeat(200 + i), i } })];
      assertSameIds((await c.request({ data: batch })).reportedIds, [batch[0].id], `offer ${JSON.stringify(offer)} message ${i}`);
      n++;
    }
    c.close();
  }
  assert.equal(exported(appId).length, n);
});

test('a client that does not offer permessage-deflate works too', async () => {
  const { appId } = takeApp();
  const c = await RawClient.forApp(appId, { perMessageDeflate: false });
  assert.equal(c.ws.extensions, '');
  const e = ev();
  assertSameIds((await c.request({ data: [e] })).reportedIds, [e.id]);
  c.close();
  assert.equal(exported(appId).length, 1);
});

test('both WebSocket paths work: /app/:appId/track and /:appId/', async () => {
  const { appId } = takeApp();
  const a = await RawClient.connect(`/app/${appId}/track`);
  const e1 = ev({ name: 'VIA_APP_TRACK' });
  assertSameIds((await a.request({ data: [e1] })).reportedIds, [e1.id]);
  a.close();
  const b = await RawClient.connect(`/${appId}/`);
  const e2 = ev({ name: 'VIA_SHORT_PATH' });
  assertSameIds((await b.request({ data: [e2] })).reportedIds, [e2.id]);
  b.close();
  const rows = exported(appId);
  assert.deepEqual(rows.map((r) => r.name).sort(), ['VIA_APP_TRACK', 'VIA_SHORT_PATH']);
});

test('a message split into continuation frames (fragmented) is reassembled: text, binary, and compressed', async () => {
  const { appId } = takeApp();
  const variants = [
    ['text', { perMessageDeflate: false, binary: false }],
    ['binary', { perMessageDeflate: false, binary: true }],
    ['deflate', { perMessageDeflate: { threshold: 0 }, binary: false }],
    ['empty_first', { perMessageDeflate: false, binary: false, split: [0, 1] }],
  ];
  for (const [label, opts] of variants) {
    const c = await RawClient.forApp(appId, { perMessageDeflate: opts.perMessageDeflate });
    const batch = [ev({ name: `FRAG_${label}_1`, payload: { pad: 'p'.repeat(500) } }), ev({ name: `FRAG_${label}_2` })];
    const text = JSON.stringify({ data: batch });
    const [a, b] = opts.split || [7, 300]; // an empty first fragment, then a single byte, with split [0, 1]
    const parts = [text.slice(0, a), text.slice(a, b), text.slice(b)];
    parts.forEach((part, i) => c.ws.send(Buffer.from(part), { binary: opts.binary, fin: i === parts.length - 1 }));
    const m = await c.next();
    assert.equal(m.isBinary, false);
    assertSameIds(parseAck(m.text).reportedIds, batch.map((e) => e.id), `${label} fragmented message`);
    c.close();
  }
  assert.equal(exported(appId).length, 8);
});

test('WebSocket ping is answered with a pong', async () => {
  const { appId } = takeApp();
  const c = await RawClient.forApp(appId);
  const pong = new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no pong within 3 s')), 3000);
    c.ws.once('pong', (data) => { clearTimeout(t); resolve(data.toString()); });
  });
  c.ws.ping('are-you-there');
  assert.equal(await pong, 'are-you-there');
  c.close();
});

test('WebSocket upgrade from a browser page (any Origin header) is accepted', async () => {
  const { appId } = takeApp();
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/app/${appId}/track`, { origin: 'https://some-site.example', handshakeTimeout: 5000 });
  openSockets.add(ws);
  const c = await new Promise((resolve, reject) => {
    ws.once('open', () => { ws.on('error', () => {}); resolve(new RawClient(ws)); });
    ws.once('unexpected-response', (req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.once('error', reject);
  });
  const e = ev({ name: 'FROM_BROWSER' });
  assertSameIds((await c.request({ data: [e] })).reportedIds, [e.id]);
  c.close();
});

test('UTF-8 names, ids and payload values round-trip unchanged (raw and \\u-escaped)', async () => {
  const { appId } = takeApp();
  const e1 = ev({ name: 'café ☕ 日本', payload: { city: 'Zürich', emoji: '🎵', quote: 'say "hi"\n' }, userId: 'jürgen' });
  const c = await RawClient.forApp(appId);
  assertSameIds((await c.request({ data: [e1] })).reportedIds, [e1.id]);
  const e2 = ev({ name: 'ESCAPED' });
  const raw = JSON.stringify({ data: [e2] }).replace('"ESCAPED"', '"\\u00e9t\\u00e9 \\ud83c\\udfb5"');
  assertSameIds((await c.request(raw)).reportedIds, [e2.id]);
  c.close();
  const byId = Object.fromEntries(exported(appId).map((r) => [r.id, r]));
  assert.equal(byId[e1.id].name, 'café ☕ 日本');
  assert.deepEqual(byId[e1.id].payload, e1.payload);
  assert.equal(byId[e1.id].userId, 'jürgen');
  assert.equal(byId[e2.id].name, 'été 🎵');
});

test('a large batch (about 1.5 MB, 3000 events) in one message is acked and stored in full', async () => {
  const { appId } = takeApp();
  const batch = Array.from({ length: 3000 }, (_, i) => ev({ name: 'BULK', id: i + 1, payload: { i, pad: 'x'.repeat(400) } }));
  const c = await RawClient.forApp(appId, { perMessageDeflate: false });
  c.send({ data: batch });
  const m = await c.next(20000);
  assertSameIds(parseAck(m.text).reportedIds, batch.map((e) => e.id));
  c.close();
  // (the export would overflow the harness's 1 MB output buffer: count with `nucleon stats`)
  const stats = JSON.parse(cli(server.dataDir, ['stats', appId]).trim());
  assert.equal(stats.events, 3000, JSON.stringify(stats));
});

// ---------------------------------------------------------------------------------------------
// Acks

test('ack is exactly {"reportedIds":[...]}: each id echoed as it arrived, with its type; one ack per message', async () => {
  const { appId } = takeApp();
  const c = await RawClient.forApp(appId);
  const ids = [1, 999999, '42', 'k7', 1000000];
  const batch = ids.map((id, i) => ev({ id, name: `ID_${i}` }));
  const raw = await (async () => { c.send({ data: batch }); return c.next(); })();
  assert.equal(raw.isBinary, false);
  const ack = parseAck(raw.text);
  assertSameIds(ack.reportedIds, ids, `ids must come back exactly as sent: ${raw.text}`);
  assert.ok(ack.reportedIds.includes('42') && !ack.reportedIds.includes(42), 'a string id comes back a string');
  assert.ok(ack.reportedIds.includes(1) && !ack.reportedIds.includes('1'), 'a number id comes back a number');

  // Three messages back to back: three acks, in order, each naming its own ids.
  const m1 = [ev(), ev()];
  const m2 = [ev()];
  const m3 = [ev(), ev(), ev()];
  c.send({ data: m1 });
  c.send({ data: m2 }, { binary: true });
  c.send({ data: m3 });
  for (const m of [m1, m2, m3]) {
    const got = await c.next();
    assertSameIds(parseAck(got.text).reportedIds, m.map((e) => e.id));
  }
  await assert.rejects(c.next(500), /no message/, 'no extra message after the three acks');
  c.close();
  assert.equal(exported(appId).length, 5 + 6);
});

test('unusual ids are echoed with their value and type: 0, negative, fractional, strings with escapes', async () => {
  const { appId } = takeApp();
  const ids = [0, -5, 1.5, 'a"b', 'é', ''];
  const batch = ids.map((id, i) => ev({ id, name: `ODD_ID_${i}` }));
  const c = await RawClient.forApp(appId);
  const ack = await c.request({ data: batch });
  assertSameIds(ack.reportedIds, ids, JSON.stringify(ack));
  c.close();
});

test('duplicates (same device, session and id) are acked every time but stored once', async () => {
  const { appId } = takeApp();
  const batch = [ev({ name: 'DUP_1' }), ev({ name: 'DUP_2', type: 'error', payload: { message: 'x', stack: 'y' } })];
  const c = await RawClient.forApp(appId);
  for (let i = 0; i < 3; i++) {
    assertSameIds((await c.request({ data: batch })).reportedIds, batch.map((e) => e.id), `ack #${i + 1}`);
  }
  c.close();
  // and again on a new connection (an SDK reconnecting), and over HTTP
  const c2 = await RawClient.forApp(appId);
  assertSameIds((await c2.request({ data: batch })).reportedIds, batch.map((e) => e.id), 'ack after reconnect');
  c2.close();
  const r = await server.request('POST', `/app/${appId}/track`, {
    body: JSON.stringify({ data: batch }), headers: { 'content-type': 'application/json' },
  });
  assert.equal(r.status, 200, r.text);
  assertSameIds(parseAck(r.text).reportedIds, batch.map((e) => e.id));

  const rows = exported(appId);
  assert.equal(rows.length, 2, `each event once: ${JSON.stringify(rows)}`);
  for (const e of batch) assert.equal(findStored(rows, e).length, 1);
});

test('the same event twice inside one message is stored once (both copies acked)', async () => {
  const { appId } = takeApp();
  const e = ev({ name: 'TWICE_IN_BATCH' });
  const c = await RawClient.forApp(appId);
  const ack = await c.request({ data: [e, { ...e }] });
  assert.ok(ack.reportedIds.includes(e.id));
  assert.ok(ack.reportedIds.every((id) => id === e.id), JSON.stringify(ack));
  c.close();
  assert.equal(exported(appId).length, 1);
});

test('the same batch sent at the same moment on several connections is stored once', async () => {
  const { appId } = takeApp();
  const batch = Array.from({ length: 10 }, (_, i) => ev({ name: `RACE_${i}`, deviceId: 'race-device' }));
  const clients = await Promise.all(Array.from({ length: 6 }, () => RawClient.forApp(appId)));
  for (const c of clients) c.send({ data: batch });
  const acks = await Promise.all(clients.map((c) => c.next()));
  for (const a of acks) assertSameIds(parseAck(a.text).reportedIds, batch.map((e) => e.id));
  for (const c of clients) c.close();
  const rows = exported(appId);
  assert.equal(rows.length, batch.length, `each event once: ${JSON.stringify(rows.map((r) => r.name))}`);
});

test('the same device, session and id in two different apps is stored in each app', async () => {
  const a = takeApp();
  const b = takeApp();
  const e = ev({ name: 'TWO_APPS' });
  for (const { appId } of [a, b]) {
    const c = await RawClient.forApp(appId);
    assertSameIds((await c.request({ data: [e] })).reportedIds, [e.id]);
    c.close();
  }
  assert.equal(exported(a.appId).length, 1);
  assert.equal(exported(b.appId).length, 1);
});

test('an empty batch {"data":[]} (4.x sends it after a heartbeat) is acked with {"reportedIds":[]}', async () => {
  const { appId } = takeApp();
  const c = await RawClient.forApp(appId);
  const ack = await c.request({ data: [] });
  assert.deepEqual(ack, { reportedIds: [] });
  c.close();
  assert.equal(exported(appId).length, 0);
});

// ---------------------------------------------------------------------------------------------
// Python SDK quirks (nucleus-python 0.3)

function pyIsoLocal(ms) {
  // what datetime.datetime.now().isoformat() prints: no offset, microseconds
  return new Date(ms).toISOString().replace('Z', '') + '123';
}

function pyEvent(overrides = {}) {
  return {
    type: 'event',
    name: 'PY_EVENT',
    date: pyIsoLocal(Date.now() - 3600000),
    appId: 'ignored',
    id: Math.floor(Math.random() * 10000) + 1,
    userId: null,
    machineId: 'py-machine-1',
    sessionId: 5555,
    payload: null,
    ...overrides,
  };
}

test('Python: an ISO date without an offset is read as UTC', async () => {
  const { appId } = takeApp();
  const when = Date.now() - 2 * 86400000; // two days ago
  const date = pyIsoLocal(when); // e.g. 2026-11-24T10:38:04.549123
  assert.doesNotMatch(date, /Z|[+-]\d\d:\d\d$/);
  const e = pyEvent({ name: 'PY_DATED', date, id: 17 });
  const c = await RawClient.forApp(appId);
  assertSameIds((await c.request({ data: [e] })).reportedIds, [17]);
  c.close();
  const [x] = exported(appId);
  assert.ok(x, 'stored');
  const t = Date.parse(x.time);
  assert.ok(Math.abs(t - when) <= 1, `time ${x.time} must be ${new Date(when).toISOString()} (date ${date} taken as UTC)`);
});

test('ISO dates with an offset, with Z, and without fractional seconds are read exactly', async () => {
  const { appId } = takeApp();
  const base = Date.UTC(2026, 0, 15, 10, 38, 4, 549); // a fixed past instant
  const cases = [
    ['OFFSET_PLUS', '2026-01-15T12:38:04.549+02:00', base],
    ['OFFSET_MINUS', '2026-01-15T05:38:04.549-05:00', base],
    ['ZULU', '2026-01-15T10:38:04.549Z', base],
    ['NO_FRACTION_Z', '2026-01-15T10:38:04Z', base - 549],
    ['NO_FRACTION_NO_OFFSET', '2026-01-15T10:38:04', base - 549],
  ];
  const batch = cases.map(([name, date]) => ev({ name, date }));
  const c = await RawClient.forApp(appId);
  assertSameIds((await c.request({ data: batch })).reportedIds, batch.map((e) => e.id));
  c.close();
  const byName = Object.fromEntries(exported(appId).map((r) => [r.name, r]));
  for (const [name, date, want] of cases) {
    assert.ok(byName[name], `${name} stored`);
    assert.equal(Date.parse(byName[name].time), want, `${name}: ${date} stored as ${byName[name].time}, want ${new Date(want).toISOString()}`);
  }
});

test('Python: init with arch as an integer (64), null name and payload, is accepted and stored', async () => {
  const { appId } = takeApp();
  const init = pyEvent({
    type: 'init', name: null, id: 4321, payload: null,
    client: 'python', platform: 'Linux', osVersion: '6.1.0', totalRam: 15.5, version: '0.0.0',
    locale: 'en_US', arch: 64, moduleVersion: '0.1.0',
  });
  const c = await RawClient.forApp(appId);
  assertSameIds((await c.request({ data: [init] })).reportedIds, [4321]);
  c.close();
  const rows = exported(appId);
  assert.equal(rows.length, 1, JSON.stringify(rows));
  assert.equal(rows[0].type, 'init');
  assert.equal(rows[0].deviceId, 'py-machine-1', 'machineId is the device');
  assert.equal(rows[0].userId, 'py-machine-1', 'no userId nor anonId: the device id is the user key');
});

test('Python: {"event":"nucleus:heartbeat","machineId":...} is a heartbeat: acked, not stored', async () => {
  const { appId } = takeApp();
  const c = await RawClient.forApp(appId);
  const init = pyEvent({ type: 'init', name: null, id: 11, client: 'python', arch: 64 });
  assertSameIds((await c.request({ data: [init] })).reportedIds, [11]);
  const ack = await c.request({ data: [{ event: 'nucleus:heartbeat', machineId: 'py-machine-1' }] });
  assert.deepEqual(ack, { reportedIds: [] });
  c.close();
  const rows = exported(appId);
  assert.deepEqual(rows.map((r) => r.type), ['init'], `only the init is stored: ${JSON.stringify(rows)}`);
});

test('Python: type "userid" with a payload is a props update', async () => {
  const { appId, token } = takeApp();
  const c = await RawClient.forApp(appId);
  const base = { machineId: 'py-machine-props', userId: 'py-user', sessionId: 6001 };
  const init = pyEvent({ ...base, type: 'init', name: null, id: 1, payload: null, client: 'python', arch: 64, date: pyIsoLocal(Date.now() - 5000) });
  const props = pyEvent({ ...base, type: 'userid', name: null, id: 2, payload: { plan: 'gold', seats: 3 }, date: pyIsoLocal(Date.now() - 4000) });
  assertSameIds((await c.request({ data: [init, props] })).reportedIds, [1, 2]);
  c.close();
  const rows = exported(appId);
  assert.equal(rows.length, 2, JSON.stringify(rows));
  for (const r of rows) assert.equal(r.userId, 'py-user');

  const r = await server.request('GET', `/api/v1/apps/${appId}/users/py-user`, { headers: { Authorization: token } });
  assert.equal(r.status, 200, `GET user details: ${r.status} ${r.text}`);
  const user = r.json && r.json.user;
  assert.ok(user, r.text);
  assert.equal(user.props && user.props.plan, 'gold', `props from the userid payload: ${r.text}`);
  assert.equal(user.props && user.props.seats, 3, `props from the userid payload: ${r.text}`);
});

test('Python: ids 1..10000 reused in another session (or on another device) are not deduplicated', async () => {
  const { appId } = takeApp();
  const c = await RawClient.forApp(appId);
  const ids = [1, 2, 3];
  const s1 = ids.map((id) => pyEvent({ id, sessionId: 1111, name: `S1_${id}` }));
  const s2 = ids.map((id) => pyEvent({ id, sessionId: 2222, name: `S2_${id}` }));
  const d2 = ids.map((id) => pyEvent({ id, sessionId: 1111, machineId: 'py-machine-2', name: `D2_${id}` }));
  for (const batch of [s1, s2, d2]) assertSameIds((await c.request({ data: batch })).reportedIds, ids);
  c.close();
  const rows = exported(appId);
  assert.equal(rows.length, 9, `9 distinct events: ${JSON.stringify(rows.map((r) => r.name))}`);
  assert.deepEqual(rows.map((r) => r.name).sort(), [...s1, ...s2, ...d2].map((e) => e.name).sort());
});

// ---------------------------------------------------------------------------------------------
// Swift SDK quirks (NucleusSwift, macOS)

test('Swift: binary frames, millisecond dates (fractional), platform macOS, serial machineId; ack decodes as [String:[Int]]', async () => {
  const { appId } = takeApp();
  const serial = 'C02XK1ZZJGH5';
  const t0 = Date.now() - 10000;
  const swift = (o) => ({ appId, machineId: serial, sessionId: 8123, ...o });
  const init = swift({
    id: 17, date: t0 + 0.4521, type: 'init', client: 'cocoa', platform: 'macOS', osVersion: '14.5',
    totalRam: 16, version: '1.2.0', locale: 'en-US', moduleVersion: '0.1.0',
  });
  const userid = swift({ id: 9001, date: t0 + 1000, type: 'userid', userId: 'swift-user' });
  const event = swift({ id: 10000, date: t0 + 2000, type: 'event', name: 'OPENED', userId: 'swift-user', payload: { tab: 'home' } });
  const c = await RawClient.forApp(appId);
  const ack = await c.request({ data: [init, userid, event] }, { binary: true });
  for (const [k, v] of Object.entries(ack)) {
    assert.equal(typeof k, 'string');
    assert.ok(Array.isArray(v) && v.every(Number.isInteger), `Swift cannot decode ${JSON.stringify(ack)}`);
  }
  assertSameIds(ack.reportedIds, [17, 9001, 10000]);
  // Swift heartbeat: only type and machineId, binary
  const hb = await c.request({ data: [{ type: 'heartbeat', machineId: serial }] }, { binary: true });
  assert.deepEqual(hb, { reportedIds: [] });
  c.close();

  const rows = exported(appId);
  assert.equal(rows.length, 3, JSON.stringify(rows));
  for (const r of rows) assert.equal(r.deviceId, serial);
  const byId = Object.fromEntries(rows.map((r) => [r.id, r]));
  assert.ok(Math.abs(Date.parse(byId[17].time) - t0) <= 1, `fractional ms date: ${byId[17].time} vs ${new Date(t0).toISOString()}`);
  assert.equal(Date.parse(byId[9001].time), t0 + 1000);
  assert.equal(Date.parse(byId[10000].time), t0 + 2000);
  assert.equal(byId[10000].name, 'OPENED');
  assert.deepEqual(byId[10000].payload, { tab: 'home' });
  assert.equal(byId[10000].userId, 'swift-user');
});

// ---------------------------------------------------------------------------------------------
// Field quirks

test('"event" key is an alias of the event name (type defaults to "event")', async () => {
  const { appId } = takeApp();
  const e = drop(ev({ event: 'ALIASED_NAME' }), 'name', 'type');
  const c = await RawClient.forApp(appId);
  assertSameIds((await c.request({ data: [e] })).reportedIds, [e.id]);
  c.close();
  const rows = exported(appId);
  assert.equal(rows.length, 1, JSON.stringify(rows));
  assert.equal(rows[0].type, 'event');
  assert.equal(rows[0].name, 'ALIASED_NAME');
});

test('sessionId as a string or as a number is the same session', async () => {
  const { appId } = takeApp();
  const c = await RawClient.forApp(appId);
  const e = ev({ sessionId: 4242, name: 'SID' });
  assertSameIds((await c.request({ data: [e] })).reportedIds, [e.id]);
  // the same event again with the session as a string: a duplicate
  assertSameIds((await c.request({ data: [{ ...e, sessionId: '4242' }] })).reportedIds, [e.id]);
  // another event of the same session, sessionId as a string
  const f = ev({ sessionId: '4242', name: 'SID_STRING' });
  assertSameIds((await c.request({ data: [f] })).reportedIds, [f.id]);
  c.close();
  const rows = exported(appId);
  assert.equal(rows.length, 2, `the string/number duplicate is stored once: ${JSON.stringify(rows)}`);
  assert.deepEqual([...new Set(rows.map((r) => String(r.sessionId)))], ['4242']);
  const stats = JSON.parse(cli(server.dataDir, ['stats', appId]).trim());
  assert.equal(stats.sessions, 1, `one session: ${JSON.stringify(stats)}`);
});

test('events without an id are stored (every time: never deduplicated) and contribute nothing to the ack', async () => {
  const { appId } = takeApp();
  const e = drop(ev({ name: 'NO_ID' }), 'id');
  const c = await RawClient.forApp(appId);
  assert.deepEqual(await c.request({ data: [e] }), { reportedIds: [] });
  assert.deepEqual(await c.request({ data: [e] }), { reportedIds: [] });
  c.close();
  const rows = exported(appId);
  assert.equal(rows.length, 2, `the id-less event sent twice is stored twice: ${JSON.stringify(rows)}`);
  for (const r of rows) {
    assert.equal(r.name, 'NO_ID');
    assert.ok(!('id' in r) || r.id === null, `no id in the export: ${JSON.stringify(r)}`);
  }
});

test('no date: the event time is the server receive time', async () => {
  const { appId } = takeApp();
  const e = drop(ev({ name: 'NO_DATE' }), 'date');
  const c = await RawClient.forApp(appId);
  const before = Date.now();
  assertSameIds((await c.request({ data: [e] })).reportedIds, [e.id]);
  const afterAck = Date.now();
  c.close();
  const [x] = exported(appId);
  const t = Date.parse(x.time);
  // receive time lies between send and ack (1 s slack for a server that keeps whole seconds)
  assert.ok(t >= before - 1000 && t <= afterAck + 1000, `time ${x.time} not within [${new Date(before).toISOString()}, ${new Date(afterAck).toISOString()}]`);
});

test('a date more than 24 h in the future is replaced by the receive time; one within 24 h is kept', async () => {
  const { appId } = takeApp();
  const far = ev({ name: 'FAR_FUTURE', date: Date.now() + 48 * 3600000 });
  const farIso = ev({ name: 'FAR_FUTURE_ISO', date: new Date(Date.now() + 30 * 86400000).toISOString() });
  const near = ev({ name: 'NEAR_FUTURE', date: Date.now() + 2 * 3600000 });
  const c = await RawClient.forApp(appId);
  const before = Date.now();
  assertSameIds((await c.request({ data: [far, farIso, near] })).reportedIds, [far.id, farIso.id, near.id]);
  const afterAck = Date.now();
  c.close();
  const rows = exported(appId);
  const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
  for (const n of ['FAR_FUTURE', 'FAR_FUTURE_ISO']) {
    assert.ok(byName[n], `${n} stored`);
    const t = Date.parse(byName[n].time);
    assert.ok(t >= before - 1000 && t <= afterAck + 1000, `${n}: time ${byName[n].time} should be the receive time`);
  }
  assert.equal(Date.parse(byName.NEAR_FUTURE.time), near.date, 'a date 2 h ahead is kept');
});

test('heartbeats (4.x, 3.x and browser shapes) are acked but never stored as events', async () => {
  const { appId } = takeApp();
  const c = await RawClient.forApp(appId);
  const init = ev({ type: 'init', name: undefined, sessionId: 777, deviceId: 'hb-device', payload: {} });
  assertSameIds((await c.request({ data: [init] })).reportedIds, [init.id]);
  const shapes = [
    { type: 'heartbeat', sessionId: 777, userId: 'quirk-user', anonId: 'abcdefghijkl', deviceId: 'hb-device' }, // 4.x
    { type: 'heartbeat', machineId: 'hb-machine' }, // 3.x
    { type: 'heartbeat', sessionId: 777 }, // browser
  ];
  for (const hb of shapes) assert.deepEqual(await c.request({ data: [hb] }), { reportedIds: [] }, JSON.stringify(hb));
  c.close();
  const rows = exported(appId);
  assert.deepEqual(rows.map((r) => r.type), ['init'], `only the init is stored: ${JSON.stringify(rows)}`);
});

test('type absent: the event is an "event"', async () => {
  const { appId } = takeApp();
  const e = drop(ev({ name: 'TYPELESS' }), 'type');
  const c = await RawClient.forApp(appId);
  assertSameIds((await c.request({ data: [e] })).reportedIds, [e.id]);
  c.close();
  const rows = exported(appId);
  assert.equal(rows.length, 1);
  assert.equal(rows[0].type, 'event');
  assert.equal(rows[0].name, 'TYPELESS');
});

test('a heartbeat and events in one batch: the events are stored and acked, the heartbeat is not stored', async () => {
  const { appId } = takeApp();
  const e1 = ev({ name: 'BEFORE_HB' });
  const e2 = ev({ name: 'AFTER_HB' });
  const hb = { type: 'heartbeat', sessionId: e1.sessionId, deviceId: e1.deviceId };
  const c = await RawClient.forApp(appId);
  assertSameIds((await c.request({ data: [e1, hb, e2] })).reportedIds, [e1.id, e2.id]);
  c.close();
  assert.deepEqual(exported(appId).map((r) => r.name).sort(), ['AFTER_HB', 'BEFORE_HB']);
});

test('null fields (3.x sends them) are treated as absent', async () => {
  const { appId } = takeApp();
  const e = {
    type: 'event', name: 'NULLS', date: null, appId: null, id: newId(), userId: null, anonId: null,
    deviceId: null, machineId: 'nulls-machine', sessionId: 31337, payload: null,
    client: null, platform: null, osVersion: null, totalRam: null, version: null, locale: null, arch: null,
  };
  const init = { ...e, type: 'init', name: null, id: newId(), date: new Date(Date.now() - 5000).toISOString() };
  const c = await RawClient.forApp(appId);
  const before = Date.now();
  assertSameIds((await c.request({ data: [init, e] })).reportedIds, [init.id, e.id]);
  const afterAck = Date.now();
  c.close();
  const rows = exported(appId);
  assert.equal(rows.length, 2, JSON.stringify(rows));
  for (const r of rows) {
    assert.equal(r.deviceId, 'nulls-machine', 'machineId is the device when deviceId is null');
    assert.equal(r.userId, 'nulls-machine', 'null userId and anonId: the device is the user key');
    assert.ok(r.payload === undefined || r.payload === null || Object.keys(r.payload).length === 0, JSON.stringify(r));
  }
  const x = rows.find((r) => r.name === 'NULLS');
  const t = Date.parse(x.time);
  assert.ok(t >= before - 1000 && t <= afterAck + 1000, `date null: receive time expected, got ${x.time}`);
});

test('user key: userId, else anonId, else the device id', async () => {
  const { appId } = takeApp();
  const a = ev({ name: 'WITH_USER', userId: 'u-1', anonId: 'anon-1' });
  const b = drop(ev({ name: 'WITH_ANON', anonId: 'anon-2' }), 'userId');
  const d = drop(ev({ name: 'DEVICE_ONLY', deviceId: 'dev-only' }), 'userId');
  const c = await RawClient.forApp(appId);
  assertSameIds((await c.request({ data: [a, b, d] })).reportedIds, [a.id, b.id, d.id]);
  c.close();
  const byName = Object.fromEntries(exported(appId).map((r) => [r.name, r]));
  assert.equal(byName.WITH_USER.userId, 'u-1');
  assert.equal(byName.WITH_ANON.userId, 'anon-2');
  assert.equal(byName.DEVICE_ONLY.userId, 'dev-only');
});

test('invalid events inside a batch are acked but not stored; the valid ones of the batch are stored', async () => {
  const { appId } = takeApp();
  const valid1 = ev({ name: 'VALID_1' });
  const noDevice = drop(ev({ name: 'NO_DEVICE' }), 'deviceId');
  const noSession = drop(ev({ name: 'NO_SESSION' }), 'sessionId');
  const noName = drop(ev(), 'name');
  const payloadString = ev({ name: 'PAYLOAD_STRING', payload: 'not an object' });
  const payloadNumber = ev({ name: 'PAYLOAD_NUMBER', payload: 42 });
  const payloadArray = ev({ name: 'PAYLOAD_ARRAY', payload: [1, 2] });
  const valid2 = ev({ name: 'VALID_2', type: 'nucleus:view' });
  const batch = [valid1, noDevice, noSession, noName, payloadString, payloadNumber, payloadArray, valid2];
  const c = await RawClient.forApp(appId);
  const ack = await c.request({ data: batch });
  assertSameIds(ack.reportedIds, batch.map((e) => e.id), 'every id is acked, so the SDK drops the bad events');
  // the connection survives
  const after = ev({ name: 'AFTER' });
  assertSameIds((await c.request({ data: [after] })).reportedIds, [after.id]);
  c.close();
  const rows = exported(appId);
  assert.deepEqual(rows.map((r) => r.name).sort(), ['AFTER', 'VALID_1', 'VALID_2'], `stored: ${JSON.stringify(rows)}`);
});

test('entries of "data" that are not objects are skipped; the valid events of the batch are stored and acked', async () => {
  const { appId } = takeApp();
  const v1 = ev({ name: 'OK_1' });
  const v2 = ev({ name: 'OK_2' });
  const c = await RawClient.forApp(appId);
  const ack = await c.request({ data: [null, v1, 'junk', 42, [1, 2], true, v2] });
  assertSameIds(ack.reportedIds, [v1.id, v2.id]);
  c.close();
  assert.deepEqual(exported(appId).map((r) => r.name).sort(), ['OK_1', 'OK_2']);
});

test('a message that is not JSON does not hurt the server: the next connection is served', async () => {
  const { appId } = takeApp();
  const c = await RawClient.forApp(appId);
  c.send('this is { not json');
  c.send(Buffer.from([0xff, 0xfe, 0x00, 0x01]), { binary: true });
  await sleep(200);
  c.ws.terminate();
  const c2 = await RawClient.forApp(appId);
  const e = ev({ name: 'AFTER_GARBAGE' });
  assertSameIds((await c2.request({ data: [e] })).reportedIds, [e.id]);
  c2.close();
  assert.equal(server.proc.exitCode, null, 'the server is still running');
  assert.deepEqual(exported(appId).map((r) => r.name), ['AFTER_GARBAGE']);
});

// ---------------------------------------------------------------------------------------------
// HTTP transport

test('HTTP POST /app/:appId/track with application/json returns {"reportedIds":[...]} and stores', async () => {
  const { appId } = takeApp();
  const batch = [ev({ name: 'HTTP_JSON_1' }), ev({ name: 'HTTP_JSON_2', id: '77' })];
  const r = await server.request('POST', `/app/${appId}/track`, {
    body: JSON.stringify({ data: batch }), headers: { 'content-type': 'application/json' },
  });
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers['content-type'] || '', /application\/json/);
  assertSameIds(parseAck(r.text).reportedIds, batch.map((e) => e.id));
  const rows = exported(appId);
  assert.deepEqual(rows.map((r2) => r2.name).sort(), ['HTTP_JSON_1', 'HTTP_JSON_2']);
});

test('HTTP POST with a text/plain body (sendBeacon style) is read as JSON too', async () => {
  const { appId } = takeApp();
  const batch = [ev({ name: 'HTTP_TEXT' })];
  const r = await server.request('POST', `/app/${appId}/track`, {
    body: JSON.stringify({ data: batch }), headers: { 'content-type': 'text/plain;charset=UTF-8' },
  });
  assert.equal(r.status, 200, r.text);
  assertSameIds(parseAck(r.text).reportedIds, [batch[0].id]);
  assert.deepEqual(exported(appId).map((x) => x.name), ['HTTP_TEXT']);
});

test('CORS: the POST answers Access-Control-Allow-Origin for any Origin, and the OPTIONS preflight is allowed', async () => {
  const { appId } = takeApp();
  const origin = 'https://some-app.example';
  const allowsOrigin = (h) => h['access-control-allow-origin'] === '*' || h['access-control-allow-origin'] === origin;

  const pre = await server.request('OPTIONS', `/app/${appId}/track`, {
    headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
  });
  assert.ok(pre.status === 200 || pre.status === 204, `preflight status ${pre.status} ${pre.text}`);
  assert.ok(allowsOrigin(pre.headers), `preflight Access-Control-Allow-Origin: ${pre.headers['access-control-allow-origin']}`);
  const methods = pre.headers['access-control-allow-methods'] || '';
  assert.ok(methods === '*' || /\bPOST\b/i.test(methods), `preflight Access-Control-Allow-Methods: "${methods}"`);
  const hdrs = pre.headers['access-control-allow-headers'] || '';
  assert.ok(hdrs === '*' || /content-type/i.test(hdrs), `preflight Access-Control-Allow-Headers: "${hdrs}"`);

  const e = ev({ name: 'CORS' });
  const r = await server.request('POST', `/app/${appId}/track`, {
    body: JSON.stringify({ data: [e] }), headers: { 'content-type': 'application/json', Origin: origin },
  });
  assert.equal(r.status, 200, r.text);
  assert.ok(allowsOrigin(r.headers), `POST Access-Control-Allow-Origin: ${r.headers['access-control-allow-origin']}`);
  assertSameIds(parseAck(r.text).reportedIds, [e.id]);
});

test('HTTP POST with a body that is not JSON answers 400 with a JSON error', async () => {
  const { appId } = takeApp();
  const r = await server.request('POST', `/app/${appId}/track`, {
    body: '{"data": [ this is not json', headers: { 'content-type': 'application/json' },
  });
  assert.equal(r.status, 400, r.text);
  assert.ok(r.json && typeof r.json.error === 'string', `JSON error body: ${r.text}`);
  assert.equal(exported(appId).length, 0);
});

// ---------------------------------------------------------------------------------------------
// Unknown app

test('unknown app: HTTP POST answers 404 with a JSON error', async () => {
  const r = await server.request('POST', '/app/no-such-app-123/track', {
    body: JSON.stringify({ data: [ev()] }), headers: { 'content-type': 'application/json' },
  });
  assert.equal(r.status, 404, r.text);
  assert.ok(r.json && typeof r.json.error === 'string' && r.json.error.length > 0, `JSON error body: ${r.text}`);
});

test('unknown app: the WebSocket upgrade is refused with 404 before upgrading (both paths)', async () => {
  for (const p of ['/app/no-such-app-123/track', '/no-such-app-123/']) {
    const res = await new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${server.port}${p}`, { handshakeTimeout: 5000 });
      openSockets.add(ws);
      ws.once('open', () => { ws.terminate(); resolve({ upgraded: true }); });
      ws.once('unexpected-response', (req, response) => {
        const chunks = [];
        response.on('data', (d) => chunks.push(d));
        response.on('end', () => { ws.terminate(); resolve({ status: response.statusCode, body: Buffer.concat(chunks).toString() }); });
        response.on('error', () => resolve({ status: response.statusCode }));
      });
      ws.once('error', (err) => { if (!/Unexpected server response/.test(err.message)) reject(err); });
    });
    assert.notEqual(res.upgraded, true, `${p}: the upgrade must be refused`);
    assert.equal(res.status, 404, `${p}: status ${res.status} ${res.body}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Durability of acks (own server: these kill it)

test('every acked event survives a SIGKILL right after its ack (acks leave only after the commit)', async () => {
  const dataDir = tempDir('quirks-crash');
  const { appId } = createApp(dataDir, 'crash');
  const srv = new Server({ dataDir });
  await srv.start();
  const acked = [];
  try {
    const clients = await Promise.all([0, 1, 2].map(() => new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/app/${appId}/track`);
      openSockets.add(ws);
      ws.once('open', () => { ws.on('error', () => {}); resolve(new RawClient(ws)); });
      ws.once('error', reject);
    })));
    // three connections pipelining 20 messages each, then SIGKILL on the last ack
    const sends = clients.map(async (c, ci) => {
      const batches = Array.from({ length: 20 }, (_, bi) => Array.from({ length: 5 }, (_, k) => ev({ name: 'DURABLE', deviceId: `crash-dev-${ci}`, id: bi * 10 + k + 1 })));
      for (const b of batches) c.send({ data: b });
      for (let i = 0; i < batches.length; i++) {
        const m = await c.next(10000);
        for (const id of parseAck(m.text).reportedIds) acked.push(`crash-dev-${ci}|${id}`);
      }
    });
    await Promise.all(sends);
    await srv.kill9();
    for (const c of clients) c.ws.terminate();
  } finally {
    await srv.kill9();
  }
  assert.equal(acked.length, 300);
  const restarted = new Server({ dataDir });
  await restarted.start();
  const rows = exportEvents(dataDir, appId);
  const { code } = await restarted.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
  const stored = new Set(rows.map((r) => `${r.deviceId}|${r.id}`));
  const lost = acked.filter((k) => !stored.has(k));
  assert.deepEqual(lost, [], `${lost.length} acked events lost after SIGKILL`);
  assert.equal(rows.length, 300);
  assert.equal(code, 0, 'SIGTERM exits 0');
});

test('SIGTERM: what was received is committed and acknowledged, and the server exits 0', async () => {
  const dataDir = tempDir('quirks-term');
  const { appId } = createApp(dataDir, 'term');
  const srv = new Server({ dataDir });
  await srv.start();
  const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/app/${appId}/track`);
  openSockets.add(ws);
  const c = await new Promise((resolve, reject) => {
    ws.once('open', () => { ws.on('error', () => {}); resolve(new RawClient(ws)); });
    ws.once('error', reject);
  });
  const batches = Array.from({ length: 10 }, (_, bi) => Array.from({ length: 10 }, (_, k) => ev({ name: 'TERM', deviceId: 'term-dev', id: bi * 10 + k + 1 })));
  for (const b of batches) c.send({ data: b });
  const first = await c.next(10000); // at least one message is in flight or done
  const acked = [...parseAck(first.text).reportedIds];
  const stopping = srv.stop();
  for (;;) {
    let m;
    try { m = await c.next(3000); } catch (_) { break; }
    acked.push(...parseAck(m.text).reportedIds);
  }
  const { code, signal } = await stopping;
  assert.equal(signal, null, 'not killed');
  assert.equal(code, 0, `exit code after SIGTERM:\n${srv.log}`);
  const rows = exportEvents(dataDir, appId);
  fs.rmSync(dataDir, { recursive: true, force: true });
  const stored = new Set(rows.map((r) => r.id));
  for (const id of acked) assert.ok(stored.has(id), `acked id ${id} stored`);
  assert.equal(new Set(acked).size, acked.length, 'no id acked twice');
});

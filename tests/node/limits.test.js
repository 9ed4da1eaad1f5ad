// Limits under abuse, against the real binary: slow clients are held to their
// deadlines while a normal client is still served; a client over its rate gets
// 429 (and what it got 429 for is not stored) while other clients do not
// notice; a silent WebSocket is closed; connections per address are capped.
//
// The server listens on 127.0.0.1; clients pick their source address in
// 127.0.0.0/8 (all of it is loopback on Linux) to act as distinct addresses.
// Every loop is bounded in count and time; short limits are set by flags.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const WebSocket = require('ws');
const { Server, createApp, cli, exportEvents, httpRequest, sleep } = require('./lib/server');

// One HTTP request from `localAddress`, on its own connection; its deadline is
// exact (the "answered within a second" checks rely on it).
const request = (port, { method = 'GET', path, body, headers = {}, localAddress, timeout = 10000 }) =>
  httpRequest(port, method, path, { body, headers, localAddress, timeout, exactTimeout: true });

const track = (port, appId, body, localAddress, timeout) => request(port, {
  method: 'POST', path: `/app/${appId}/track`, body, localAddress, timeout,
  headers: { 'content-type': 'application/json' },
});

const oneEvent = (device, id) => JSON.stringify({
  data: [{ type: 'event', name: 'LIMITS', id, sessionId: 1, deviceId: device }],
});

// Resolves when `cond()` holds, checking every 50 ms; rejects after `ms`.
async function until(cond, ms, what) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function expect429(r, what) {
  assert.equal(r.status, 429, `${what}: ${r.text}`);
  assert.ok(/^\d+$/.test(r.headers['retry-after'] || ''), `${what}: Retry-After ${r.headers['retry-after']}`);
  assert.ok(Number(r.headers['retry-after']) >= 1);
  assert.equal(typeof r.json?.error, 'string', `${what}: JSON error body ${r.text}`);
}

// Sends `count` requests, the i-th at `i * intervalMs` from the start (catching
// up when timers run late, so the average rate holds on a busy machine),
// without waiting for answers; resolves with every answer (or error) in order.
async function paced(count, intervalMs, send) {
  const pending = [];
  const start = Date.now();
  for (let i = 0; i < count; i++) {
    const wait = start + i * intervalMs - Date.now();
    if (wait > 0) await sleep(wait);
    pending.push(send(i).then((r) => r, (err) => ({ error: err })));
  }
  return Promise.all(pending);
}

test('1,000 slow sockets do not keep a normal client waiting, and the limits close them', { timeout: 120000 }, async (t) => {
  const server = new Server({
    args: ['--header-timeout', '10', '--body-timeout', '10', '--body-min-rate', '1024',
      '--ws-idle-timeout', '10'],
  });
  const app = createApp(server.dataDir, 'slow-sockets');
  await server.start();
  const sockets = [];
  const wsClients = [];
  t.after(async () => {
    for (const s of sockets) s.destroy();
    for (const w of wsClients) w.terminate();
    await server.stop();
  });

  // 100 per source address, under the default cap of 256 per address.
  const source = (i) => `127.0.0.${10 + Math.floor(i / 100)}`;
  const HALF_HEADERS = 400;
  const SLOW_BODIES = 300;
  const IDLE_WS = 300;
  const state = []; // per raw socket: {kind, received, closed}

  const openRaw = (i, kind, first) => new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: server.port, localAddress: source(i) });
    const st = { kind, received: '', closed: false };
    state.push(st);
    sockets.push(s);
    s.setEncoding('utf8');
    s.on('data', (d) => { st.received += d; });
    s.on('close', () => { st.closed = true; });
    s.on('error', () => {});
    s.once('connect', () => { s.write(first); resolve(s); });
    s.once('error', reject);
  });

  let i = 0;
  const opening = [];
  for (let k = 0; k < HALF_HEADERS; k++, i++) {
    opening.push(openRaw(i, 'header', `POST /app/${app.appId}/track HTTP/1.1\r\nHost: x\r\nContent-Ty`));
  }
  for (let k = 0; k < SLOW_BODIES; k++, i++) {
    opening.push(openRaw(i, 'body', `POST /app/${app.appId}/track HTTP/1.1\r\nHost: x\r\n` +
      'Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"data":['));
  }
  for (let k = 0; k < IDLE_WS; k++, i++) {
    opening.push(new Promise((resolve, reject) => {
      const ws = new WebSocket(`${server.endpoint}/app/${app.appId}/track`, { localAddress: source(i) });
      ws.closed = false;
      ws.on('close', () => { ws.closed = true; });
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
      wsClients.push(ws);
    }));
  }
  await Promise.all(opening);
  // The slow bodies keep trickling, well under the minimum rate.
  const trickle = setInterval(() => {
    for (let k = 0; k < sockets.length; k++) {
      if (state[k].kind === 'body' && !state[k].closed) sockets[k].write('{');
    }
  }, 1000);
  t.after(() => clearInterval(trickle));

  const openCount = () => state.filter((s) => !s.closed).length + wsClients.filter((w) => !w.closed).length;
  assert.equal(openCount(), 1000, 'every slow socket is open');

  // A normal client (127.0.0.1) is answered within a second, each time.
  for (let round = 1; round <= 3; round++) {
    const tr = await track(server.port, app.appId, oneEvent('normal', round), undefined, 1000);
    assert.equal(tr.status, 200, tr.text);
    assert.deepEqual(tr.json, { reportedIds: [round] });
    const api = await request(server.port, {
      path: `/api/v1/apps/${app.appId}/analytics/quickglance`,
      headers: { authorization: app.token }, timeout: 1000,
    });
    assert.equal(api.status, 200, api.text);
  }
  assert.equal(openCount(), 1000, 'the slow sockets were still open while the normal client was served');

  // Then the deadlines close every one of them.
  await until(() => openCount() === 0, 60000, 'the slow sockets to be closed');
  const bodies = state.filter((s) => s.kind === 'body');
  const headers = state.filter((s) => s.kind === 'header');
  assert.ok(bodies.every((s) => s.received.startsWith('HTTP/1.1 408')), 'slow bodies are answered 408');
  assert.ok(bodies.every((s) => /"error":/.test(s.received)), 'with a JSON error');
  assert.ok(headers.every((s) => s.received.startsWith('HTTP/1.1 408')), 'half-sent headers are answered 408');

  const metrics = (await request(server.port, { path: '/metrics' })).text;
  assert.match(metrics, new RegExp(`nucleon_slow_requests_closed_total ${HALF_HEADERS + SLOW_BODIES}\\n`));
  assert.match(metrics, new RegExp(`nucleon_websockets_idle_closed_total ${IDLE_WS}\\n`));
  const stored = exportEvents(server.dataDir, app.appId);
  assert.deepEqual(stored.map((e) => e.id), [1, 2, 3], 'only the normal client\'s events are stored');
});

test('tracking at twice the rate: the excess gets 429 and is not stored, another client does not notice', { timeout: 60000 }, async (t) => {
  const RATE = 20;
  const server = new Server({ args: ['--track-rate', String(RATE), '--track-burst', String(RATE)] });
  const app = createApp(server.dataDir, 'track-rate');
  await server.start();
  t.after(() => server.stop());

  // A (127.0.0.2) at twice its rate for 3 s, B (127.0.0.3) at half the rate, at the same time.
  const [a, b] = await Promise.all([
    paced(3 * 2 * RATE, 1000 / (2 * RATE), (i) => track(server.port, app.appId, oneEvent('A', i + 1), '127.0.0.2')),
    paced(3 * RATE / 2, 2000 / RATE, (i) => track(server.port, app.appId, oneEvent('B', i + 1), '127.0.0.3')),
  ]);
  for (const r of [...a, ...b]) assert.equal(r.error, undefined, String(r.error));

  const aOk = a.filter((r) => r.status === 200);
  const aRefused = a.filter((r) => r.status !== 200);
  assert.ok(aOk.length >= RATE, `A got its burst through (${aOk.length})`);
  assert.ok(aRefused.length > 0, 'A got 429 for its excess');
  for (const r of aRefused) {
    expect429(r, 'A over its rate');
    assert.equal(r.headers['access-control-allow-origin'], '*');
  }
  for (const r of b) assert.equal(r.status, 200, `B: ${r.text}`);

  // Exactly what was acked is stored: nothing A got 429 for.
  const stored = exportEvents(server.dataDir, app.appId);
  const ids = (device) => stored.filter((e) => e.deviceId === device).map((e) => e.id).sort((x, y) => x - y);
  const ackedA = aOk.map((r) => r.json.reportedIds[0]).sort((x, y) => x - y);
  assert.deepEqual(ids('A'), ackedA);
  assert.deepEqual(ids('B'), b.map((_, i) => i + 1));

  const metrics = (await request(server.port, { path: '/metrics' })).text;
  assert.match(metrics, new RegExp(`nucleon_tracking_rate_limited_total ${aRefused.length}\\n`));
});

test('API at twice the rate of a token: the excess gets 429, another token does not notice', { timeout: 60000 }, async (t) => {
  const RATE = 10;
  const server = new Server({ args: ['--api-rate', String(RATE), '--api-burst', String(RATE)] });
  const app = createApp(server.dataDir, 'api-rate');
  const other = JSON.parse(cli(server.dataDir, ['token', 'create', app.appId]).trim());
  await server.start();
  t.after(() => server.stop());

  const get = (token) => request(server.port, {
    path: `/api/v1/apps/${app.appId}/analytics/quickglance`, headers: { authorization: token },
  });
  // Both tokens from the same address: the limit is per token.
  const [a, b] = await Promise.all([
    paced(3 * 2 * RATE, 1000 / (2 * RATE), () => get(app.token)),
    paced(3 * RATE / 2, 2000 / RATE, () => get(other.token)),
  ]);
  for (const r of [...a, ...b]) assert.equal(r.error, undefined, String(r.error));
  const aOk = a.filter((r) => r.status === 200);
  const aRefused = a.filter((r) => r.status !== 200);
  assert.ok(aOk.length >= RATE, `the first token got its burst through (${aOk.length})`);
  assert.ok(aRefused.length > 0, 'the first token got 429 for its excess');
  for (const r of aRefused) expect429(r, 'token over its rate');
  for (const r of b) assert.equal(r.status, 200, `other token: ${r.text}`);
});

test('a tracking WebSocket that sends nothing is closed; one that sends heartbeats stays', { timeout: 60000 }, async (t) => {
  // Set through the environment, as every flag can be.
  const server = new Server({ env: { NUCLEON_WS_IDLE_TIMEOUT: '2' } });
  const app = createApp(server.dataDir, 'ws-idle');
  await server.start();
  const url = `${server.endpoint}/app/${app.appId}/track`;
  const open = () => new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.closed = false;
    ws.on('close', () => { ws.closed = true; });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
  const silent = await open();
  const talking = await open();
  const heartbeat = JSON.stringify({ data: [{ type: 'heartbeat', sessionId: 1, deviceId: 'hb' }] });
  const beat = setInterval(() => talking.send(heartbeat), 500);
  t.after(async () => {
    clearInterval(beat);
    silent.terminate();
    talking.terminate();
    await server.stop();
  });

  await until(() => silent.closed, 30000, 'the silent WebSocket to be closed');
  // Well past the idle timeout, the one that keeps talking is still open and acked.
  await sleep(3000);
  assert.equal(talking.closed, false);
  // The heartbeats' own acks may come first: wait for the one that names 7.
  const ack = new Promise((resolve) => talking.on('message', (m) => {
    const answer = JSON.parse(m.toString());
    if (answer.reportedIds?.includes(7)) resolve(answer);
  }));
  talking.send(JSON.stringify({ data: [{ type: 'event', name: 'E', id: 7, sessionId: 1, deviceId: 'hb' }] }));
  assert.deepEqual(await ack, { reportedIds: [7] });
});

test('connections per address are capped; other addresses are not', { timeout: 60000 }, async (t) => {
  const server = new Server({ args: ['--max-connections-per-ip', '5'] });
  await server.start();
  const held = [];
  t.after(async () => {
    for (const s of held) s.destroy();
    await server.stop();
  });
  const connect = (localAddress) => new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: server.port, localAddress });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
    held.push(s);
  });
  for (let k = 0; k < 5; k++) await connect('127.0.0.4');
  let refused;
  for (let attempt = 0; attempt < 20; attempt++) {
    const r = await request(server.port, { path: '/healthz', localAddress: '127.0.0.4' }).catch((e) => ({ error: e }));
    if (r.status === 429) { refused = r; break; }
    await sleep(100);
  }
  assert.ok(refused, 'the sixth connection from one address is refused');
  expect429(refused, 'over the connection cap');
  const other = await request(server.port, { path: '/healthz', localAddress: '127.0.0.5' });
  assert.equal(other.status, 200);
  // A place is given back when a connection closes.
  for (const s of held) s.destroy();
  let again;
  for (let attempt = 0; attempt < 40; attempt++) {
    again = await request(server.port, { path: '/healthz', localAddress: '127.0.0.4' });
    if (again.status === 200) break;
    await sleep(100);
  }
  assert.equal(again.status, 200);
});

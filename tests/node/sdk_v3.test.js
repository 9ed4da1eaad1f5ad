// End-to-end: the previous SDK generation, `nucleus-nodejs@3.0.9` (still shipped in Electron
// apps), unchanged, against the real nucleon binary. Each simulated device is a child process
// with its own HOME (see lib/sdk_device.js); what was stored is read back with `nucleon export`.
//
// 3.x sends ISO 8601 date strings and names the device `machineId` (node-machine-id's hash,
// the same for every process on this machine: devices here differ by session).
//
// Run alone: node --test tests/node/sdk_v3.test.js
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');

const { Server, createApp, exportEvents, cli, tempDir, freePort, sleep } = require('./lib/server.js');
const { startDevice, TcpProxy, machineIdHash } = require('./lib/sdk_device.js');

const SDK_TYPES = ['init', 'event', 'error'];

let server;
const apps = {};
const cleanup = [];

async function waitFor(what, predicate, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await predicate();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

function newHome() {
  const dir = tempDir('home3');
  cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function device(opts) {
  const d = startDevice({ sdk: 'v3', ...opts });
  cleanup.push(() => d.kill());
  return d;
}

function checkAcks(d) {
  assert.ok(d.recv.length > 0, 'the SDK received no ack at all');
  for (const m of d.recv) {
    assert.equal(m.isBinary, false, `ack must be a text message: ${m.text}`);
    const ack = JSON.parse(m.text);
    assert.deepEqual(Object.keys(ack), ['reportedIds'], `ack must hold only reportedIds: ${m.text}`);
    for (const id of ack.reportedIds) assert.ok(Number.isInteger(id), `non-integer id in ack ${m.text}`);
  }
  const acked = new Set(d.recv.flatMap((m) => JSON.parse(m.text).reportedIds));
  for (const e of d.sentEvents()) assert.ok(acked.has(e.id), `event ${e.type} id ${e.id} was never acked`);
}

function checkStoredOnce(exported, d, { userKey, deviceId }) {
  const sent = d.sentEvents();
  assert.ok(sent.length > 0, 'the device sent no event');
  for (const e of sent) {
    const label = `${e.type}${e.name ? ' ' + e.name : ''} id=${e.id} session=${e.sessionId}`;
    assert.equal(e.machineId, deviceId, `${label}: the SDK sent machineId`);
    assert.equal(typeof e.date, 'string', '3.x sends ISO date strings');
    const matches = exported.filter((x) => x.id === e.id && x.deviceId === deviceId
      && String(x.sessionId) === String(e.sessionId));
    assert.equal(matches.length, 1, `${label} stored ${matches.length} times, expected once`);
    const x = matches[0];
    assert.equal(x.type, e.type, `${label}: type`);
    assert.equal(x.name ?? null, e.name ?? null, `${label}: name`);
    assert.equal(x.userId, userKey, `${label}: user key`);
    assert.equal(Date.parse(x.time), Date.parse(e.date), `${label}: time ${x.time} vs date ${e.date}`);
    assertPayload(x.payload, e.payload, label);
  }
}

// The stored payload equals the sent one. Only a string value longer than 1 KiB (an error
// stack from a deep path) may come back cut to a prefix: the server caps value sizes.
function assertPayload(stored, sent, label) {
  if (sent === undefined || sent === null || (typeof sent === 'object' && Object.keys(sent).length === 0)) {
    assert.ok(stored === undefined || stored === null || Object.keys(stored).length === 0,
      `${label}: unexpected payload ${JSON.stringify(stored)}`);
    return;
  }
  assert.ok(stored && typeof stored === 'object', `${label}: payload missing`);
  assert.deepEqual(Object.keys(stored).sort(), Object.keys(sent).sort(), `${label}: payload keys`);
  for (const [k, v] of Object.entries(sent)) {
    if (typeof v === 'string' && Buffer.byteLength(v) > 1024 && typeof stored[k] === 'string'
        && stored[k].length > 0 && v.startsWith(stored[k])) continue;
    assert.deepEqual(stored[k], v, `${label}: payload.${k}`);
  }
}

function checkExportShape(exported) {
  for (const x of exported) assert.notEqual(x.type, 'heartbeat', 'a heartbeat was stored as an event');
  for (let i = 1; i < exported.length; i++) {
    assert.ok(Date.parse(exported[i - 1].time) <= Date.parse(exported[i].time), 'export is not oldest first');
  }
}

function checkDrained(report, d) {
  const left = (report.queue || []).map((e) => `${e.type}:${e.id}`).join(', ');
  assert.equal(report.drained, true,
    `the SDK queue did not drain (${report.reason || 'timeout'}); still queued: [${left}]; `
    + `sent ${d.sent.length} messages, received ${JSON.stringify(d.recv.map((m) => m.text)).slice(0, 500)}`);
}

before(async () => {
  server = new Server();
  for (const name of ['single', 'multi', 'delayed', 'offline']) apps[name] = createApp(server.dataDir, `v3-${name}`);
  await server.start();
});

after(async () => {
  for (const f of cleanup.reverse()) { try { await f(); } catch (_) { /* best effort */ } }
  if (server) await server.stop();
  if (server) fs.rmSync(server.dataDir, { recursive: true, force: true });
});

test('3.x: setUserId/appStarted/track/trackError: queue drains, each event stored once under machineId with its ISO date', { timeout: 45000 }, async () => {
  const appId = apps.single.appId;
  const d = device({ appId, endpoint: server.endpoint, home: newHome(), simUser: 'v3-solo' });
  const report = await d.done;
  checkDrained(report, d);

  const sent = d.sentEvents();
  assert.deepEqual(sent.map((e) => e.type).sort(), [...SDK_TYPES].sort(), 'the SDK sent init, event, error');
  checkAcks(d);

  const deviceId = machineIdHash();
  const exported = exportEvents(server.dataDir, appId);
  checkExportShape(exported);
  checkStoredOnce(exported, d, { userKey: 'bob', deviceId });
  assert.equal(exported.length, sent.length, `export holds exactly the ${sent.length} events sent:\n${JSON.stringify(exported, null, 1)}`);

  const byType = Object.fromEntries(exported.map((x) => [x.type, x]));
  assert.equal(byType.init.name ?? null, null, 'init has no name');
  assert.equal(byType.event.name, 'SAVED');
  assert.deepEqual(byType.event.payload, { kind: 'doc' });
  assert.equal(byType.error.name, 'myCustomError');
  assert.equal(byType.error.payload.message, 'boom');
  assert.match(byType.error.payload.stack, /^Error: boom\n/);
  for (const x of exported) {
    assert.equal(x.deviceId, deviceId, 'machineId is the device');
    assert.equal(x.userId, 'bob');
  }
  assert.equal(new Set(exported.map((x) => String(x.sessionId))).size, 1, 'one session');
});

test('3.x: three app launches at once (one machine, own HOMEs): three sessions of one device, each event once', { timeout: 45000 }, async () => {
  const appId = apps.multi.appId;
  const devs = ['v3-a', 'v3-b', 'v3-c'].map((u) => device({ appId, endpoint: server.endpoint, home: newHome(), simUser: u }));
  const reports = await Promise.all(devs.map((d) => d.done));
  reports.forEach((r, i) => checkDrained(r, devs[i]));
  devs.forEach(checkAcks);

  const deviceId = machineIdHash();
  const sessions = devs.map((d) => String(d.sentEvents()[0].sessionId));
  assert.equal(new Set(sessions).size, 3, 'three random session ids');

  const exported = exportEvents(server.dataDir, appId);
  checkExportShape(exported);
  for (const d of devs) checkStoredOnce(exported, d, { userKey: 'bob', deviceId });
  assert.equal(exported.length, 3 * SDK_TYPES.length, `export holds exactly 9 events:\n${JSON.stringify(exported, null, 1)}`);
  assert.deepEqual([...new Set(exported.map((x) => String(x.sessionId)))].sort(), [...sessions].sort());

  const stats = JSON.parse(cli(server.dataDir, ['stats', appId]).trim());
  assert.equal(stats.events, 9, `stats: ${JSON.stringify(stats)}`);
  assert.equal(stats.sessions, 3, `stats: ${JSON.stringify(stats)}`);
  assert.equal(stats.devices, 1, `stats: ${JSON.stringify(stats)}`);
  assert.equal(stats.users, 1, `stats: ${JSON.stringify(stats)}`);
});

test('3.x: acks held back, so the SDK resends its queue on every tick: each event stored once', { timeout: 60000 }, async () => {
  const appId = apps.delayed.appId;
  const proxy = new TcpProxy(server.port);
  await proxy.listen();
  cleanup.push(() => proxy.close());
  proxy.hold();

  const d = device({ appId, endpoint: proxy.endpoint, home: newHome(), simUser: 'v3-slow', drainTimeoutMs: 30000 });
  await waitFor('the 3 events to be sent 3 times each', () => {
    const sent = d.sentEvents();
    return sent.length === SDK_TYPES.length && sent.every((e) => d.timesSent(e.id) >= 3);
  }, 15000);
  await waitFor('the server to store the 3 events', () => exportEvents(server.dataDir, appId).length >= SDK_TYPES.length, 10000);
  assert.equal(d.recv.length, 0, 'no ack reached the SDK while held');

  proxy.release();
  d.drainWithin(10000);
  const report = await d.done;
  checkDrained(report, d);
  checkAcks(d);

  const exported = exportEvents(server.dataDir, appId);
  checkExportShape(exported);
  checkStoredOnce(exported, d, { userKey: 'bob', deviceId: machineIdHash() });
  assert.equal(exported.length, SDK_TYPES.length);
});

test('3.x: events queued offline are delivered by the next launch, with their own session and ISO time', { timeout: 60000 }, async () => {
  const appId = apps.offline.appId;
  const home = newHome();
  const deadPort = await freePort();
  const offline = device({ appId, endpoint: `ws://127.0.0.1:${deadPort}`, home, simUser: 'v3-off', drainTimeoutMs: 3000 });
  const r1 = await offline.done;
  assert.equal(r1.drained, false);
  const queued = (r1.queue || []).filter((e) => e.type !== 'heartbeat');
  assert.equal(queued.length, SDK_TYPES.length, `the 3 events are persisted in the SDK queue: ${JSON.stringify(r1.queue)}`);
  assert.equal(exportEvents(server.dataDir, appId).length, 0);

  const online = device({ appId, endpoint: server.endpoint, home, simUser: 'v3-off' });
  const r2 = await online.done;
  checkDrained(r2, online);
  checkAcks(online);
  const sent = online.sentEvents();
  assert.equal(sent.length, 2 * SDK_TYPES.length, 'old queue plus the new launch');

  const exported = exportEvents(server.dataDir, appId);
  checkExportShape(exported);
  checkStoredOnce(exported, online, { userKey: 'bob', deviceId: machineIdHash() });
  assert.equal(exported.length, 2 * SDK_TYPES.length);
  for (const e of queued) {
    const x = exported.find((y) => y.id === e.id && String(y.sessionId) === String(e.sessionId));
    assert.ok(x, `late event ${e.type} ${e.id} stored in its original session`);
    assert.equal(Date.parse(x.time), Date.parse(e.date), 'late event keeps its ISO time');
  }
});

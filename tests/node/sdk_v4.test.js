// End-to-end: the published `nucleus-analytics@4.0.3` SDK, unchanged, against the real nucleon
// binary. Each simulated device is a child process with its own HOME (see lib/sdk_device.js);
// what was stored is read back with `nucleon export`.
//
// Run alone: node --test tests/node/sdk_v4.test.js
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');

const { Server, createApp, exportEvents, tempDir, freePort, sleep } = require('./lib/server.js');
const { startDevice, TcpProxy, expectedDeviceId4x } = require('./lib/sdk_device.js');

const SDK_TYPES = ['init', 'userid', 'props', 'event', 'nucleus:view', 'error'];

let server;
const apps = {};
const cleanup = []; // functions run after all tests (devices, proxies, extra servers, temp dirs)

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
  const dir = tempDir('home');
  cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function device(opts) {
  const d = startDevice({ sdk: 'v4', ...opts });
  cleanup.push(() => d.kill());
  return d;
}

// Every ack the SDK received is exactly {"reportedIds":[integers]} as a text message.
function checkAcks(d) {
  assert.ok(d.recv.length > 0, 'the SDK received no ack at all');
  for (const m of d.recv) {
    assert.equal(m.isBinary, false, `ack must be a text message: ${m.text}`);
    const ack = JSON.parse(m.text);
    assert.deepEqual(Object.keys(ack), ['reportedIds'], `ack must hold only reportedIds: ${m.text}`);
    assert.ok(Array.isArray(ack.reportedIds), m.text);
    for (const id of ack.reportedIds) assert.ok(Number.isInteger(id), `non-integer id in ack ${m.text}`);
  }
  const acked = new Set(d.recv.flatMap((m) => JSON.parse(m.text).reportedIds));
  for (const e of d.sentEvents()) assert.ok(acked.has(e.id), `event ${e.type} id ${e.id} was never acked`);
}

// Each event the device sent is in `exported` exactly once, with the right fields.
function checkStoredOnce(exported, d, { userKey }) {
  const sent = d.sentEvents();
  assert.ok(sent.length > 0, 'the device sent no event');
  for (const e of sent) {
    const label = `${e.type}${e.name ? ' ' + e.name : ''} id=${e.id} device=${e.deviceId}`;
    const matches = exported.filter((x) => x.id === e.id && x.deviceId === e.deviceId
      && String(x.sessionId) === String(e.sessionId));
    assert.equal(matches.length, 1, `${label} stored ${matches.length} times, expected once`);
    const x = matches[0];
    assert.equal(x.type, e.type, `${label}: type`);
    assert.equal(x.name ?? null, e.name ?? null, `${label}: name`);
    assert.equal(x.userId, userKey, `${label}: user key`);
    assert.equal(Date.parse(x.time), e.date, `${label}: time ${x.time} vs date ${new Date(e.date).toISOString()}`);
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
  for (const name of ['single', 'multi', 'delayed', 'offline']) apps[name] = createApp(server.dataDir, `v4-${name}`);
  await server.start();
});

after(async () => {
  for (const f of cleanup.reverse()) { try { await f(); } catch (_) { /* best effort */ } }
  if (server) await server.stop();
  if (server) fs.rmSync(server.dataDir, { recursive: true, force: true });
});

test('4.x: one device, init/identify/track/page/trackError: queue drains and each event is stored once', { timeout: 45000 }, async () => {
  const appId = apps.single.appId;
  const d = device({ appId, endpoint: server.endpoint, home: newHome(), simUser: 'v4-solo', waitHeartbeat: true });
  const report = await d.done;
  checkDrained(report, d);

  const sent = d.sentEvents();
  assert.deepEqual(sent.map((e) => e.type).sort(), [...SDK_TYPES].sort(), 'the SDK sent the expected event types');
  const deviceId = expectedDeviceId4x('v4-solo');
  for (const e of sent) assert.equal(e.deviceId, deviceId, 'SDK deviceId as computed');
  assert.ok(d.sent.some((m) => m.data.data.some((e) => e.type === 'heartbeat')), 'the SDK sent a heartbeat after draining');
  checkAcks(d);

  const exported = exportEvents(server.dataDir, appId);
  checkExportShape(exported);
  checkStoredOnce(exported, d, { userKey: 'richard' });
  assert.equal(exported.length, sent.length, `export holds exactly the ${sent.length} events sent:\n${JSON.stringify(exported, null, 1)}`);
  const byType = Object.fromEntries(exported.map((x) => [x.type, x]));
  assert.deepEqual(byType.init.payload, { plan: 'pro', age: 34 });
  assert.equal(byType.event.name, 'PLAYED_TRACK');
  assert.deepEqual(byType.event.payload, { trackName: 'Song', duration: 120 });
  assert.equal(byType['nucleus:view'].name, 'Cart');
  assert.deepEqual(byType['nucleus:view'].payload, { count: 5 });
  assert.equal(byType.error.name, 'myCustomError');
  assert.equal(byType.error.payload.message, 'boom');
  assert.match(byType.error.payload.stack, /^Error: boom\n/);
  for (const x of exported) assert.equal(x.deviceId, deviceId);
  assert.equal(new Set(exported.map((x) => String(x.sessionId))).size, 1, 'one session');
});

test('4.x: three devices at once, each with its own HOME, each event stored once under its own device', { timeout: 45000 }, async () => {
  const appId = apps.multi.appId;
  const users = ['v4-dev-a', 'v4-dev-b', 'v4-dev-c'];
  const devs = users.map((u) => device({ appId, endpoint: server.endpoint, home: newHome(), simUser: u }));
  const reports = await Promise.all(devs.map((d) => d.done));
  reports.forEach((r, i) => checkDrained(r, devs[i]));

  const deviceIds = users.map(expectedDeviceId4x);
  assert.equal(new Set(deviceIds).size, 3, 'three distinct device ids');
  const anonIds = new Set();
  devs.forEach((d, i) => {
    const sent = d.sentEvents();
    assert.deepEqual(sent.map((e) => e.type).sort(), [...SDK_TYPES].sort());
    for (const e of sent) assert.equal(e.deviceId, deviceIds[i]);
    anonIds.add(sent[0].anonId);
    checkAcks(d);
  });
  assert.equal(anonIds.size, 3, 'each HOME got its own anonId');

  const exported = exportEvents(server.dataDir, appId);
  checkExportShape(exported);
  for (const d of devs) checkStoredOnce(exported, d, { userKey: 'richard' });
  assert.equal(exported.length, 3 * SDK_TYPES.length, `export holds exactly 18 events:\n${JSON.stringify(exported, null, 1)}`);
  devs.forEach((d, i) => {
    const mine = exported.filter((x) => x.deviceId === deviceIds[i]);
    assert.equal(mine.length, SDK_TYPES.length, `device ${users[i]} has its 6 events`);
    assert.deepEqual([...new Set(mine.map((x) => String(x.sessionId)))], [String(d.sentEvents()[0].sessionId)]);
  });
});

test('4.x: acks held back, so the SDK resends its queue several times: each event stored once', { timeout: 60000 }, async () => {
  const appId = apps.delayed.appId;
  const proxy = new TcpProxy(server.port);
  await proxy.listen();
  cleanup.push(() => proxy.close());
  proxy.hold();

  const d = device({ appId, endpoint: proxy.endpoint, home: newHome(), simUser: 'v4-slow-acks', drainTimeoutMs: 30000, waitHeartbeat: true });
  // The SDK sends its whole queue on every 1 s tick until the ids come back.
  await waitFor('the 6 events to be sent 3 times each', () => {
    const sent = d.sentEvents();
    return sent.length === SDK_TYPES.length && sent.every((e) => d.timesSent(e.id) >= 3);
  }, 15000);
  // The server has the first copy and must not have stored the copies.
  await waitFor('the server to store the 6 events', () => exportEvents(server.dataDir, appId).length >= SDK_TYPES.length, 10000);
  assert.equal(d.recv.length, 0, 'no ack reached the SDK while held');

  proxy.release();
  d.drainWithin(10000);
  const report = await d.done;
  checkDrained(report, d);
  checkAcks(d);
  const sent = d.sentEvents();
  for (const e of sent) assert.ok(d.timesSent(e.id) >= 3, `event ${e.id} was sent ${d.timesSent(e.id)} times`);
  // Copies are acked too (the exact one-ack-per-message rule is pinned in protocol_quirks):
  // the copies sent long before the release have their acks in the flushed backlog.
  const ackedCount = d.recv.flatMap((m) => JSON.parse(m.text).reportedIds).filter((id) => sent.some((e) => e.id === id)).length;
  assert.ok(ackedCount >= 2 * sent.length, `resent copies are acked again (got ${ackedCount} id acks for ${sent.length} events)`);

  const exported = exportEvents(server.dataDir, appId);
  checkExportShape(exported);
  checkStoredOnce(exported, d, { userKey: 'richard' });
  assert.equal(exported.length, sent.length);
});

test('4.x: server killed (SIGKILL) after storing but before its acks arrive, restarted: the SDK resends, each event stored once', { timeout: 75000 }, async () => {
  const dataDir = tempDir('data-restart');
  cleanup.push(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const { appId } = createApp(dataDir, 'v4-restart');
  const first = new Server({ dataDir });
  cleanup.push(() => first.kill9());
  await first.start();

  const proxy = new TcpProxy(first.port);
  await proxy.listen();
  cleanup.push(() => proxy.close());
  proxy.hold();

  const d = device({ appId, endpoint: proxy.endpoint, home: newHome(), simUser: 'v4-restart', drainTimeoutMs: 30000 });
  await waitFor('the server to store the 6 events', () => exportEvents(dataDir, appId).length >= SDK_TYPES.length, 12000);
  await waitFor('the queue to be sent twice', () => {
    const sent = d.sentEvents();
    return sent.length === SDK_TYPES.length && sent.every((e) => d.timesSent(e.id) >= 2);
  }, 15000);
  assert.equal(d.recv.length, 0, 'no ack reached the SDK');

  // Crash: the acks the server wrote are lost with the connection.
  proxy.setTarget(null);
  await first.kill9();
  proxy.dropAll();
  await sleep(1500); // the SDK tries (and fails) to reconnect in the meantime

  const restartedAt = Date.now();
  const second = new Server({ dataDir });
  cleanup.push(() => second.stop());
  await second.start();
  proxy.setTarget(second.port);
  proxy.release();
  d.drainWithin(12000);

  const report = await d.done;
  checkDrained(report, d);
  checkAcks(d);
  const sent = d.sentEvents();
  for (const e of sent) {
    assert.ok(d.sent.some((m) => m.at >= restartedAt && m.data.data.some((x) => x.id === e.id)),
      `event ${e.id} was resent after the restart`);
  }
  await second.stop();
  const exported = exportEvents(dataDir, appId);
  checkExportShape(exported);
  checkStoredOnce(exported, d, { userKey: 'richard' });
  assert.equal(exported.length, sent.length, `export holds exactly the ${sent.length} events:\n${JSON.stringify(exported, null, 1)}`);
});

test('4.x: events queued offline survive an app restart and are delivered late with their own session and time', { timeout: 60000 }, async () => {
  const appId = apps.offline.appId;
  const home = newHome();
  const deadPort = await freePort(); // nothing listens there
  const offline = device({ appId, endpoint: `ws://127.0.0.1:${deadPort}`, home, simUser: 'v4-offline', drainTimeoutMs: 3000 });
  const r1 = await offline.done;
  assert.equal(r1.drained, false, 'nothing can drain while offline');
  const queued = (r1.queue || []).filter((e) => e.type !== 'heartbeat');
  assert.equal(queued.length, SDK_TYPES.length, `the 6 events are persisted in the SDK queue: ${JSON.stringify(r1.queue)}`);
  assert.equal(exportEvents(server.dataDir, appId).length, 0);

  // Same HOME, same OS user: the same device starting again, now online.
  const online = device({ appId, endpoint: server.endpoint, home, simUser: 'v4-offline' });
  const r2 = await online.done;
  checkDrained(r2, online);
  checkAcks(online);

  const sent = online.sentEvents();
  assert.equal(sent.length, 2 * SDK_TYPES.length, 'old queue plus the new session');
  const oldIds = new Set(queued.map((e) => e.id));
  const oldSession = String(queued[0].sessionId);
  const newSession = String(sent.find((e) => !oldIds.has(e.id)).sessionId);
  assert.notEqual(oldSession, newSession);

  const exported = exportEvents(server.dataDir, appId);
  checkExportShape(exported);
  checkStoredOnce(exported, online, { userKey: 'richard' });
  assert.equal(exported.length, 2 * SDK_TYPES.length);
  const deviceId = expectedDeviceId4x('v4-offline');
  for (const x of exported) assert.equal(x.deviceId, deviceId);
  for (const e of queued) {
    const x = exported.find((y) => y.id === e.id && String(y.sessionId) === oldSession);
    assert.ok(x, `late event ${e.type} ${e.id} stored in its original session`);
    assert.equal(Date.parse(x.time), e.date, 'late event keeps its own time');
  }
});

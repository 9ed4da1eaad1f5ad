// A full disk: the data folder lives on a small tmpfs; a filler file takes the
// remaining space while SDK-like clients keep sending. Then tracking answers
// 503 with a JSON error, WebSocket messages get no ack, /healthz answers 503,
// and the API keeps answering from memory. When the filler is deleted, the
// server notices by itself within seconds (no restart): /healthz is 200 again
// and the clients' queued events are acked. In the end every acked event is
// stored exactly once, an event never acked is not stored, and the files pass
// `PRAGMA integrity_check` after a restart.
//
// Needs root (it mounts a tmpfs); without it the test fails and says so.
//
//   node --test tests/node/disk_full.test.js
//   NUCLEON_KEEP_DATA=1 keeps the (unmounted) data folder's copy
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const WebSocket = require('ws');
const { Server, tempDir, createApp, sleep, scaled, logTail } = require('./lib/server');
const {
  mulberry32, rawRequest, exportAll, sqliteIntegrity, sqliteFilesIn, tripleKey,
  WsLoadClient, HttpLoadClient,
} = require('./lib/load_client');

const TMPFS_MB = 12;
const SEED = Number(process.env.DISK_FULL_SEED) || (Date.now() % 2147483647);

function run(cmd, args) {
  return spawnSync(cmd, args, { encoding: 'utf8', timeout: 30000, stdio: ['ignore', 'pipe', 'pipe'] });
}

function freeBytes(dir) {
  const s = fs.statfsSync(dir);
  return s.bavail * s.bsize;
}

// Writes zeros into `file` until the filesystem has at most `leave` bytes free.
function fillUp(file, leave) {
  const fd = fs.openSync(file, 'a');
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (let i = 0; i < 100000; i++) {
      const free = freeBytes(path.dirname(file));
      if (free <= leave) break;
      const n = Math.min(chunk.length, free - leave);
      try { fs.writeSync(fd, chunk, 0, n); } catch (e) { if (e.code === 'ENOSPC') break; throw e; }
    }
  } finally {
    fs.closeSync(fd);
  }
}

// Polls `probe` until it holds or `ms` (stretched for sanitizer builds) passed.
async function until(ms, probe, stepMs = 100) {
  const deadline = Date.now() + scaled(ms);
  for (;;) {
    let ok = false;
    try { ok = await probe(); } catch (_) { ok = false; }
    if (ok) return true;
    if (Date.now() > deadline) return false;
    await sleep(stepMs);
  }
}

function track(port, appId, events) {
  return rawRequest(port, 'POST', `/app/${appId}/track`, {
    body: JSON.stringify({ data: events }), headers: { 'content-type': 'application/json' }, timeout: 10000,
  });
}

test('a full disk stops acks (503), the API keeps answering, ingest resumes by itself when space returns', { timeout: scaled(3 * 60 * 1000) }, async (t) => {
  assert.equal(typeof process.getuid === 'function' && process.getuid(), 0,
    'this test needs root: it mounts a small tmpfs as the data folder (run it as root, as CI does)');
  const mountPoint = tempDir('diskfull');
  const mounted = run('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_MB}m,mode=0700`, 'tmpfs', mountPoint]);
  assert.equal(mounted.status, 0,
    `this test needs root and a working "mount -t tmpfs" (it mounts a small tmpfs as the data folder): ${mounted.stderr || mounted.error}`);
  const dataDir = path.join(mountPoint, 'data');
  const filler = path.join(mountPoint, 'filler');
  const server = new Server({ dataDir });
  const clients = [];
  let passed = false;
  t.diagnostic(`seed ${SEED}, tmpfs ${mountPoint} (${TMPFS_MB} MiB)`);

  t.after(async () => {
    await Promise.all(clients.map((c) => c.stop()));
    await server.kill9();
    if (!passed) logTail(t, server);
    if (process.env.NUCLEON_KEEP_DATA) {
      const copy = tempDir('diskfull-kept');
      fs.cpSync(dataDir, copy, { recursive: true });
      t.diagnostic(`kept a copy of the data folder in ${copy}`);
    }
    let um = run('umount', [mountPoint]);
    for (let i = 0; i < 20 && um.status !== 0; i++) { await sleep(250); um = run('umount', [mountPoint]); }
    if (um.status !== 0) um = run('umount', ['-l', mountPoint]);
    fs.rmSync(mountPoint, { recursive: true, force: true });
  });

  const { appId, token } = createApp(dataDir, 'disk-full-app');
  await server.start();
  const { port } = server;
  const deadline = Date.now() + scaled(150 * 1000);
  for (let i = 0; i < 2; i++) {
    clients.push(new WsLoadClient({ port, appId, deviceId: `full-ws-${i}`, seed: SEED + i, deadline, tickMs: 50, perTick: 10 }));
  }
  clients.push(new HttpLoadClient({ port, appId, deviceId: 'full-http-0', seed: SEED + 50, deadline, batchSize: 50, pauseMs: 30 }));
  for (const c of clients) c.start();
  const ackedNow = () => clients.reduce((n, c) => n + c.acked.size, 0);
  assert.ok(await until(15000, () => ackedNow() > 500), 'no acks before the disk filled up');
  const ackedBeforeFill = ackedNow();

  // Take all the space away.
  fillUp(filler, 0);
  t.diagnostic(`filled: ${freeBytes(mountPoint)} bytes free, ${ackedBeforeFill} events acked before`);

  // Ingest fails: HTTP tracking answers 503 with a JSON error.
  const rand = mulberry32(SEED);
  let probeId = 1;
  const probeEvents = () => {
    const events = [];
    for (let i = 0; i < 40; i++) {
      events.push({ type: 'event', name: 'FULL_PROBE', id: probeId++, date: Date.now(), sessionId: 77, deviceId: 'full-probe',
        payload: { pad: 'x'.repeat(200 + Math.floor(rand() * 200)) } });
    }
    return events;
  };
  const probeAcked = new Set();
  const probeSent = new Set();
  // A commit may still succeed for a moment after the fill: SQLite restarts
  // its write-ahead log from the beginning once everything in it was copied,
  // reusing space the log file already holds (such an ack is durable; the
  // check at the end holds it to that). The disk counts as full once a batch
  // is refused and /healthz says so too; space a truncated log gives back is
  // taken again on the way.
  let refused;
  const full = await until(30000, async () => {
    fillUp(filler, 0);
    const events = probeEvents();
    for (const e of events) probeSent.add(e.id);
    const r = await track(port, appId, events);
    if (r.status === 200) for (const id of r.json.reportedIds) probeAcked.add(id);
    if (r.status !== 503) return false;
    refused = r;
    return (await server.request('GET', '/healthz')).status === 503;
  }, 50);
  assert.ok(full, `tracking and /healthz never both answered 503 with the disk full (last answers acked ${probeAcked.size} probe events)`);
  assert.equal(typeof refused.json?.error, 'string', `a 503 needs a JSON error body: ${refused.text}`);
  assert.match(refused.headers['content-type'] || '', /application\/json/);
  t.diagnostic(`503: ${refused.text}`);

  // From now on nothing is acked while the disk stays full (after a moment for
  // acks of commits that were durable before the disk filled to arrive).
  await sleep(500);
  const ackedAtFull = ackedNow();
  const logAtFull = server.log.length;
  const health = await server.request('GET', '/healthz');
  assert.equal(health.status, 503, `healthz with a full disk: ${health.status} ${health.text}`);
  assert.equal(health.json?.status, 'unavailable');

  // A WebSocket message gets no ack.
  const ws = new WebSocket(`ws://127.0.0.1:${port}/app/${appId}/track`);
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const wsAnswers = [];
  ws.on('message', (d) => wsAnswers.push(d.toString()));
  const unacked = [];
  for (let i = 0; i < 3; i++) {
    const events = [];
    for (let j = 0; j < 20; j++) {
      events.push({ type: 'event', name: 'NEVER_ACKED', id: 1000 + i * 100 + j, date: Date.now(), sessionId: 91, deviceId: 'full-ws-raw' });
    }
    unacked.push(...events);
    ws.send(JSON.stringify({ data: events }));
    await sleep(300);
  }

  // The API answers from memory while ingest is refused.
  const auth = { authorization: token };
  const nowS = Math.floor(Date.now() / 1000);
  for (const p of [`/analytics?start=${nowS - 3600}&end=${nowS + 60}`, '/analytics/quickglance',
    `/analytics/events?start=${nowS - 3600}&end=${nowS + 60}`, '/users?limit=10', '/users/full-http-0',
    '/live/users', '/live/users/count', '/live/events?limit=5']) {
    const r = await server.request('GET', `/api/v1/apps/${appId}${p}`, { headers: auth });
    assert.equal(r.status, 200, `GET ${p} with a full disk: ${r.status} ${r.text}`);
  }
  const users = await server.request('GET', `/api/v1/apps/${appId}/users?limit=10`, { headers: auth });
  assert.ok(users.json.total >= 3, `users while full: ${users.text}`);

  // Still full a while later: still nothing acked, still 503.
  await sleep(2500);
  const again = await track(port, appId, probeEvents());
  assert.equal(again.status, 503, `tracking while still full: ${again.status} ${again.text}`);
  assert.equal((await server.request('GET', '/healthz')).status, 503);
  const ackedWhileFull = ackedNow() - ackedAtFull;
  assert.equal(ackedWhileFull, 0, `${ackedWhileFull} events were acked with the disk full:\n${server.log.slice(logAtFull).split('\n').filter((l) => !/warn/.test(l)).slice(-20).join('\n')}`);
  assert.deepEqual(wsAnswers, [], 'a WebSocket message was answered with the disk full');
  assert.equal(server.proc.exitCode, null, 'the server exited with the disk full');

  // Space returns: the server recovers by itself.
  fs.rmSync(filler);
  const spaceBack = Date.now();
  assert.ok(await until(20000, async () => (await server.request('GET', '/healthz')).status === 200),
    `healthz not 200 within 20 s of space returning:\n${server.log.slice(-2000)}`);
  const resumed = await until(20000, async () => {
    const r = await track(port, appId, probeEvents());
    if (r.status === 200) for (const id of r.json.reportedIds) probeAcked.add(id);
    return r.status === 200 && ackedNow() > ackedAtFull;
  }, 100);
  assert.ok(resumed, 'ingest did not resume within 20 s of space returning');
  t.diagnostic(`recovered ${((Date.now() - spaceBack) / 1000).toFixed(1)} s after the filler was removed`);
  assert.deepEqual(wsAnswers, [], 'an unacked message was acked later without being resent');
  ws.terminate();

  // Drain every client's queue.
  for (const c of clients) c.stopGenerating();
  let pending = Infinity;
  await until(30000, () => (pending = clients.reduce((n, c) => n + c.queue.size, 0)) === 0);
  assert.equal(pending, 0, `queues did not drain after space returned (${pending} events unacked)`);

  // Restart on the same folder, then check what is stored.
  assert.deepEqual(await server.stop(), { code: 0, signal: null }, 'SIGTERM must exit 0');
  await Promise.all(clients.map((c) => c.stop()));
  await server.start();
  const after = await server.request('GET', `/api/v1/apps/${appId}/users?limit=10`, { headers: auth });
  assert.equal(after.status, 200);
  assert.deepEqual(await server.stop(), { code: 0, signal: null });

  const acked = new Map();
  for (const c of clients) for (const [k, e] of c.acked) acked.set(k, e);
  for (const id of probeAcked) acked.set(`full-probe|77|${id}`, { id });
  const stored = exportAll(dataDir, appId);
  const count = new Map();
  for (const e of stored) count.set(tripleKey(e), (count.get(tripleKey(e)) || 0) + 1);
  const missing = [...acked.keys()].filter((k) => !count.has(k));
  const twice = [...count].filter(([, n]) => n > 1).map(([k, n]) => `${k} x${n}`);
  const neverAcked = unacked.filter((e) => count.has(tripleKey(e))).map(tripleKey);
  const refusedStored = stored.filter((e) => e.deviceId === 'full-probe' && !probeAcked.has(e.id)).map(tripleKey);
  t.diagnostic(`acked ${acked.size} (${ackedBeforeFill} before the fill), stored ${stored.length}`);
  assert.deepEqual(missing.slice(0, 20), [], `${missing.length} acked events are not stored`);
  assert.deepEqual(twice.slice(0, 20), [], 'events stored more than once');
  assert.deepEqual(neverAcked, [], 'events of a message that was never acked were stored');
  assert.deepEqual(refusedStored.slice(0, 20), [], 'events of a refused (503) HTTP batch were stored');
  for (const f of sqliteFilesIn(dataDir)) {
    assert.equal(sqliteIntegrity(f), 'ok', `PRAGMA integrity_check on ${path.basename(f)}`);
  }
  passed = true;
});

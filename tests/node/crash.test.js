// Durability under kill -9: an ack leaves only after a durable commit, resends
// are deduplicated, and killing the server at any moment loses nothing that was
// acked. Several SDK-like clients (WebSocket and HTTP) send events with unique
// (deviceId, sessionId, id) while the server is SIGKILLed at random moments and
// restarted on the same data folder and port. At the end every acked event
// must be stored exactly once, nothing stored twice, and the SQLite files must
// pass `PRAGMA integrity_check`. The server checkpoints its aggregates every
// 20 ms here (`--checkpoint-interval`), so many kills land in or next to a
// checkpoint; afterwards the API's counts (per event name and day, app starts
// and active users per day, users in all) must equal those counted from the
// exported events.
//
//   node --test tests/node/crash.test.js
//   CRASH_CYCLES=50 CRASH_SEED=1234 node --test tests/node/crash.test.js
//   NUCLEON_KEEP_DATA=1 keeps the data folder; NUCLEON_FSYNC=normal is passed
//   on to the server (the harness gives it this process's environment).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { Server, tempDir, createApp, sleep, logTail } = require('./lib/server');
const {
  mulberry32, exportAll, sqliteIntegrity, sqliteFilesIn, tripleKey, fullKey,
  WsLoadClient, HttpLoadClient,
} = require('./lib/load_client');

const CYCLES = Math.max(1, Math.min(1000, Number(process.env.CRASH_CYCLES) || 20));
const SEED = Number(process.env.CRASH_SEED) || (Date.now() % 2147483647);
const WS_CLIENTS = 4;
const HTTP_CLIENTS = 2;
const DRAIN_MS = 45000;
// The store files the contract names; any other SQLite file found in the data
// folder is checked too.
const EXPECTED_DB_FILES = ['events.db', 'catalog.db'];

function sample(list, n = 10) {
  return list.slice(0, n).join('\n  ') + (list.length > n ? `\n  ... (${list.length} in all)` : '');
}

test(`kill -9 in ${CYCLES} random cycles loses no acked event and stores none twice`, { timeout: 15 * 60 * 1000 }, async (t) => {
  const started = Date.now();
  const rand = mulberry32(SEED);
  const dataDir = tempDir('crash');
  const { appId, token } = createApp(dataDir, 'crash-app');
  const server = new Server({ dataDir, args: ['--checkpoint-interval', '0.02', '--api-rate', '0'] });
  const clients = [];
  let passed = false;
  t.diagnostic(`seed ${SEED} (CRASH_SEED=${SEED} replays the kill timings), data ${dataDir}`);

  t.after(async () => {
    await Promise.all(clients.map((c) => c.stop()));
    await server.kill9();
    if (!passed) logTail(t, server);
    if (process.env.NUCLEON_KEEP_DATA) t.diagnostic(`kept data folder ${dataDir}`);
    else fs.rmSync(dataDir, { recursive: true, force: true });
  });

  await server.start();
  const { port } = server;
  // A hard bound for every client loop, whatever happens below.
  const deadline = Date.now() + 10 * 60 * 1000;
  for (let i = 0; i < WS_CLIENTS; i++) {
    clients.push(new WsLoadClient({
      port, appId, deviceId: `crash-ws-${i}`, seed: SEED + 1 + i, deadline,
      tickMs: 50, perTick: 20, perMessageDeflate: i % 2 === 0,
    }));
  }
  for (let i = 0; i < HTTP_CLIENTS; i++) {
    clients.push(new HttpLoadClient({
      port, appId, deviceId: `crash-http-${i}`, seed: SEED + 101 + i, deadline,
      batchSize: 50, pauseMs: 20,
    }));
  }
  for (const c of clients) c.start();

  const ackedNow = () => clients.reduce((n, c) => n + c.acked.size, 0);
  const cycleAcks = [];
  const modes = { running: 0, 'in-shutdown': 0, 'in-startup': 0 };
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const before = ackedNow();
    await sleep(50 + Math.floor(rand() * 351));
    // Most kills hit a running server; every 4th lands during a graceful
    // shutdown (SIGTERM, then SIGKILL 0-50 ms later).
    if (cycle % 4 === 3) {
      modes['in-shutdown'] += 1;
      server.proc.kill('SIGTERM');
      await sleep(Math.floor(rand() * 51));
    } else {
      modes.running += 1;
    }
    await server.kill9();
    cycleAcks.push(ackedNow() - before);
    // Sometimes stay down a little, so that clients meet refused connections.
    await sleep(Math.floor(rand() * 150));
    // Every 4th restart is itself killed 0-100 ms after spawning, during
    // start-up and recovery, before the real restart.
    if (cycle % 4 === 1) {
      modes['in-startup'] += 1;
      const early = server.start({ timeoutMs: 60000 }).catch(() => {});
      await sleep(Math.floor(rand() * 101));
      await server.kill9();
      await server.start();
      await early; // its health poll is answered by the new process
    } else {
      // Same data folder and port.
      await server.start();
    }
  }
  const ackedDuringCycles = ackedNow();
  t.diagnostic(`${CYCLES} kill -9 cycles in ${((Date.now() - started) / 1000).toFixed(1)} s (${JSON.stringify(modes)}); ` +
    `acks per cycle: ${cycleAcks.join(',')}`);

  // Last restart done: stop producing, let every queue drain.
  for (const c of clients) c.stopGenerating();
  const drainDeadline = Date.now() + DRAIN_MS;
  let pending = Infinity;
  while (Date.now() < drainDeadline) {
    pending = clients.reduce((n, c) => n + c.queue.size, 0);
    if (pending === 0) break;
    await sleep(100);
  }

  const alive = server.proc.exitCode === null && server.proc.signalCode === null;
  // Graceful stop with the WebSocket clients still connected.
  const exit = await server.stop();
  await Promise.all(clients.map((c) => c.stop()));

  const sent = new Map();
  const acked = new Map();
  for (const c of clients) {
    for (const [k, e] of c.sent) sent.set(k, e);
    for (const [k, e] of c.acked) acked.set(k, e);
  }
  const summary = clients.map((c) => `${c.deviceId}: sent ${c.sent.size}, acked ${c.acked.size}, queued ${c.queue.size}` +
    (c.connects !== undefined ? `, connects ${c.connects}` : `, statuses ${JSON.stringify(c.statuses)}, errors ${c.errors}`));
  for (const line of summary) t.diagnostic(line);

  assert.ok(alive, `the server died after the last restart:\n${server.log.slice(-3000)}`);
  assert.ok(ackedDuringCycles > 0, 'no event was acked during the kill cycles: the test proved nothing');
  assert.equal(pending, 0, `queues did not drain within ${DRAIN_MS} ms after the last restart (${pending} events unacked)`);
  assert.deepEqual(exit, { code: 0, signal: null }, `SIGTERM must exit 0:\n${server.log.slice(-3000)}`);

  for (const c of clients) {
    assert.deepEqual(c.badAcks, [], `${c.deviceId} got answers that are not {"reportedIds":[int...]}`);
    assert.equal(c.unknownAckIds, 0, `${c.deviceId} got acks for ids it never sent`);
    if (c.statuses) {
      const bad = Object.keys(c.statuses).filter((s) => s >= 400 && s < 500 && s !== '429');
      assert.deepEqual(bad, [], `${c.deviceId} had valid batches rejected: ${JSON.stringify(c.statuses)}`);
    }
  }

  const stored = exportAll(dataDir, appId);
  const byTriple = new Map();
  const byFull = new Map();
  for (const e of stored) {
    byTriple.set(tripleKey(e), (byTriple.get(tripleKey(e)) || 0) + 1);
    byFull.set(fullKey(e), (byFull.get(fullKey(e)) || 0) + 1);
  }
  const missing = [];
  const twiceAcked = [];
  for (const k of acked.keys()) {
    const n = byTriple.get(k) || 0;
    if (n === 0) missing.push(k);
    else if (n > 1) twiceAcked.push(`${k} x${n}`);
  }
  const dupFull = [...byFull].filter(([, n]) => n > 1).map(([k, n]) => `${k} x${n}`);
  const dupTriple = [...byTriple].filter(([, n]) => n > 1).map(([k, n]) => `${k} x${n}`);
  const phantom = [...byTriple.keys()].filter((k) => !sent.has(k));
  const mismatched = [];
  for (const e of stored) {
    const s = sent.get(tripleKey(e));
    if (s && ((e.type ?? 'event') !== s.type || (s.name !== undefined && e.name !== s.name))) {
      mismatched.push(`${tripleKey(e)} stored as ${e.type}/${e.name}, sent as ${s.type}/${s.name}`);
    }
  }
  t.diagnostic(`sent ${sent.size}, acked ${acked.size} (${ackedDuringCycles} during the cycles), stored ${stored.length}`);

  assert.deepEqual(missing, [], `acked events lost after kill -9 (${missing.length}):\n  ${sample(missing)}`);
  assert.deepEqual(dupFull, [], `events stored more than once by (deviceId, sessionId, id, type, name):\n  ${sample(dupFull)}`);
  assert.deepEqual(dupTriple, [], `events stored more than once by (deviceId, sessionId, id):\n  ${sample(dupTriple)}`);
  assert.deepEqual(twiceAcked, []);
  assert.deepEqual(phantom, [], `stored events that no client sent:\n  ${sample(phantom)}`);
  assert.deepEqual(mismatched, [], `stored events whose type/name differ from what was sent:\n  ${sample(mismatched)}`);
  // Every queue drained, so every event sent was acked and must be stored.
  assert.equal(acked.size, sent.size, 'every sent event must have been acked once the queues drained');
  assert.equal(stored.length, sent.size, 'the export must hold exactly the events sent');

  const dbFiles = sqliteFilesIn(dataDir);
  const names = dbFiles.map((f) => path.relative(dataDir, f));
  t.diagnostic(`SQLite files in the data folder: ${names.join(', ') || '(none)'}`);
  for (const want of EXPECTED_DB_FILES) {
    assert.ok(names.includes(want), `expected ${want} in the data folder, found: ${names.join(', ')}`);
  }
  for (const f of dbFiles) {
    assert.equal(sqliteIntegrity(f), 'ok', `PRAGMA integrity_check on ${path.relative(dataDir, f)}`);
  }

  // The aggregates went through every kill too: they must count exactly the stored events.
  const day = (e) => e.time.slice(0, 10);
  const perName = {};
  const inits = {};
  const activeSets = {};
  const users = new Set();
  let minMs = Infinity, maxMs = -Infinity;
  for (const e of stored) {
    const ms = Date.parse(e.time);
    minMs = Math.min(minMs, ms);
    maxMs = Math.max(maxMs, ms);
    users.add(e.userId);
    (activeSets[day(e)] ||= new Set()).add(e.userId);
    if (e.type === 'event') {
      perName[e.name] ||= {};
      perName[e.name][day(e)] = (perName[e.name][day(e)] || 0) + 1;
    }
    if (e.type === 'init') inits[day(e)] = (inits[day(e)] || 0) + 1;
  }
  const active = Object.fromEntries(Object.entries(activeSets).map(([d, set]) => [d, set.size]));
  await server.start();
  const range = `start=${Math.floor(minMs / 1000)}&end=${Math.floor(maxMs / 1000)}`;
  const auth = { headers: { authorization: token } };
  const events = await server.request('GET', `/api/v1/apps/${appId}/analytics/events?${range}`, auth);
  assert.equal(events.status, 200, events.text);
  const sortKeys = (o) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));
  assert.deepEqual(Object.fromEntries(Object.entries(events.json.data).map(([k, v]) => [k, sortKeys(v)])),
    Object.fromEntries(Object.entries(perName).map(([k, v]) => [k, sortKeys(v)])),
    'events per name and day (API) = counted from the export');
  const daily = await server.request('GET', `/api/v1/apps/${appId}/analytics?${range}`, auth);
  assert.equal(daily.status, 200, daily.text);
  assert.deepEqual(daily.json.data.usage, sortKeys(inits), 'app starts per day (API) = counted from the export');
  assert.deepEqual(daily.json.data.activeUsers, sortKeys(active), 'active users per day (API) = counted from the export');
  assert.equal(daily.json.data.totalNumbers.users, users.size, 'users in range (API) = counted from the export');
  await server.stop();
  t.diagnostic(`total ${((Date.now() - started) / 1000).toFixed(1)} s`);
  passed = true;
});

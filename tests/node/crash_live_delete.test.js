// kill -9 with live-state queries and user deletions in flight. Background
// SDK-like clients (WebSocket and HTTP) send events while other clients poll
// the live endpoints; every cycle a new "victim" user sends events (HTTP and
// its own WebSocket, so it is live), then is deleted with DELETE
// /users/:userId, and the server is SIGKILLed either while that delete is in
// flight or after its answer. Afterwards:
//   - a delete answered 204 left no trace of the user: no event in the export,
//     404 for the user, absent from the users list and the live endpoints, its
//     events counted nowhere; resends of its events are acked and stay gone
//     (tombstones);
//   - a delete without an answer happened entirely or not at all: all of the
//     victim's acked events are stored (and the user answers 200), or none is
//     (and the user answers 404); resends after the restart do not change that;
//   - everything else acked is stored exactly once (a bystander user sharing
//     the victim's device included), and no stored event was never sent;
//   - the live endpoints never answer an error (other than 503 while shutting
//     down); after a restart they show only the devices that reconnected, and
//     never an event of a deleted user;
//   - the analytics and users endpoints agree with the export, before and
//     after a restart, and the SQLite files pass `PRAGMA integrity_check`.
//
// Ordering: only the victim's events acked before its DELETE was sent are
// checked against the delete. An event sent while the delete is in flight may
// legitimately be committed after it (the user then exists again), so victims
// send nothing between their DELETE and its answer; resends come after the
// answer (or after the restart, for a delete without one).
//
//   node --test tests/node/crash_live_delete.test.js
//   CYCLES=200 CRASH_SEED=1234 node --test tests/node/crash_live_delete.test.js
//   NUCLEON_KEEP_DATA=1 keeps the data folder.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const WebSocket = require('ws');
const { Server, tempDir, createApp, cli, sleep, scaled, logTail } = require('./lib/server');
const {
  mulberry32, rawRequest, exportAll, sqliteIntegrity, sqliteFilesIn, tripleKey,
  WsLoadClient, HttpLoadClient,
} = require('./lib/load_client');

const CYCLES = Math.max(1, Math.min(1000, Number(process.env.CYCLES) || 20));
const SEED = Number(process.env.CRASH_SEED) || (Date.now() % 2147483647);
const WS_CLIENTS = 3;
const HTTP_CLIENTS = 1;
const LIVE_POLLERS = 2;
const DRAIN_MS = scaled(45000);
// A hard bound for the whole loop. A cycle takes about 1 s on a fresh folder
// and about 3 s at 200 cycles on a busy 2-core machine (each restart and each
// deletion rebuilds the index from a growing file).
const LOOP_MS = scaled(Math.min(2 * 60 * 60 * 1000, 60000 + CYCLES * 5000));

function sample(list, n = 10) {
  return list.slice(0, n).join('\n  ') + (list.length > n ? `\n  ... (${list.length} in all)` : '');
}

const grace = (ms) => new Promise((r) => setTimeout(r, ms).unref());

test(`kill -9 in ${CYCLES} cycles with live queries and user deletions in flight`, { timeout: LOOP_MS + 5 * 60 * 1000 }, async (t) => {
  const started = Date.now();
  const rand = mulberry32(SEED);
  const dataDir = tempDir('crash-live-delete');
  const { appId, token } = createApp(dataDir, 'crash-live-delete');
  // The pollers have their own token: API rate limits are per token.
  const pollToken = JSON.parse(cli(dataDir, ['token', 'create', appId])).token;
  const server = new Server({ dataDir });
  const clients = [];
  const victimSockets = new Set();
  let pollersRunning = true;
  let passed = false;
  t.diagnostic(`seed ${SEED} (CRASH_SEED=${SEED} replays the timings), data ${dataDir}`);

  t.after(async () => {
    pollersRunning = false;
    for (const ws of victimSockets) ws.terminate();
    await Promise.all(clients.map((c) => c.stop()));
    await server.kill9();
    if (!passed) logTail(t, server);
    if (process.env.NUCLEON_KEEP_DATA) t.diagnostic(`kept data folder ${dataDir}`);
    else fs.rmSync(dataDir, { recursive: true, force: true });
  });

  await server.start();
  const { port } = server;
  const auth = { authorization: token };
  const once = (method, p, opts = {}) => rawRequest(port, method, `/api/v1/apps/${appId}${p}`,
    { timeout: 10000, ...opts, headers: { ...auth, ...(opts.headers || {}) } });
  const retryAfterMs = (r) => Math.min(1000, Math.max(100, Number(r.headers['retry-after']) * 1000 || 0));
  // An API read; a 429 (rate limited) is waited out as a client would, a bounded number of times.
  const api = async (method, p, opts = {}) => {
    for (let i = 0; ; i++) {
      const r = await once(method, p, opts);
      if (r.status !== 429 || i >= 30) return r;
      await sleep(retryAfterMs(r));
    }
  };
  const loopDeadline = Date.now() + LOOP_MS;

  // Background traffic whose acked events must all survive exactly once.
  const wsDevices = [];
  for (let i = 0; i < WS_CLIENTS; i++) {
    wsDevices.push(`cld-ws-${i}`);
    clients.push(new WsLoadClient({
      port, appId, deviceId: `cld-ws-${i}`, seed: SEED + 1 + i, deadline: loopDeadline + DRAIN_MS,
      tickMs: 50, perTick: 10, perMessageDeflate: i % 2 === 0,
    }));
  }
  for (let i = 0; i < HTTP_CLIENTS; i++) {
    clients.push(new HttpLoadClient({
      port, appId, deviceId: `cld-http-${i}`, seed: SEED + 101 + i, deadline: loopDeadline + DRAIN_MS,
      batchSize: 50, pauseMs: 30,
    }));
  }
  for (const c of clients) c.start();

  // Live pollers: always some live request in flight, so kills land on them.
  const pollStats = { answers: 0, errors: 0, statuses: {} };
  const pollProblems = [];
  const liveRequests = [
    ['GET', '/live/users', undefined],
    ['GET', '/live/users/count', undefined],
    ['GET', '/live/events?limit=200', undefined],
    ['POST', '/live/users', JSON.stringify({ token: pollToken })],
    ['POST', '/live/events', JSON.stringify({ token: pollToken, limit: 50 })],
  ];
  const checkLiveShape = (p, r) => {
    if ((r.status === 503 || r.status === 429) && r.json && typeof r.json.error === 'string') return null;
    if (r.status !== 200 || !r.json) return `${p}: ${r.status} ${r.text.slice(0, 200)}`;
    if (p.startsWith('/live/users/count')) return Number.isInteger(r.json.data) && r.json.data >= 0 ? null : `${p}: ${r.text}`;
    if (!Array.isArray(r.json.data)) return `${p}: ${r.text.slice(0, 200)}`;
    return null;
  };
  const pollers = [];
  for (let i = 0; i < LIVE_POLLERS; i++) {
    pollers.push((async () => {
      let k = i;
      while (pollersRunning && Date.now() < loopDeadline + DRAIN_MS) {
        const [method, p, body] = liveRequests[k++ % liveRequests.length];
        try {
          const r = body === undefined
            ? await rawRequest(port, method, `/api/v1/apps/${appId}${p}`, { headers: { authorization: pollToken }, timeout: 5000 })
            : await rawRequest(port, method, `/api/v1/apps/${appId}${p}`, { body, headers: { 'content-type': 'application/json' }, timeout: 5000 });
          pollStats.answers += 1;
          pollStats.statuses[r.status] = (pollStats.statuses[r.status] || 0) + 1;
          const problem = checkLiveShape(p, r);
          if (problem && pollProblems.length < 20) pollProblems.push(problem);
          if (r.status === 429) await sleep(retryAfterMs(r));
        } catch (_) {
          pollStats.errors += 1; // the server was killed or is starting
          await sleep(20);
        }
        await sleep(5 + Math.floor(Math.random() * 20));
      }
    })());
  }

  // ---- Victims ----
  const victims = [];
  const bystanders = []; // acked events of users sharing a victim's device
  const postUntilAcked = async (events, ms = 20000) => {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      try {
        const r = await rawRequest(port, 'POST', `/app/${appId}/track`, {
          body: JSON.stringify({ data: events }), headers: { 'content-type': 'application/json' }, timeout: 5000 });
        if (r.status === 200 && r.json && Array.isArray(r.json.reportedIds) &&
            events.every((e) => r.json.reportedIds.includes(e.id))) return true;
      } catch (_) { /* down: retry */ }
      await sleep(50);
    }
    return false;
  };
  const makeVictimEvents = (v) => {
    const now = Date.now();
    const base = { deviceId: v.device, userId: v.user };
    const evs = [{ type: 'init', id: 1, date: now, sessionId: v.session, ...base, platform: 'Linux', locale: 'de-DE', version: '9.9.9', payload: { victim: true } }];
    for (let i = 0; i < 8; i++) evs.push({ type: 'event', name: 'VICTIM_EVT', id: 2 + i, date: now + 1 + i, sessionId: v.session, ...base, payload: { n: i } });
    evs.push({ type: 'error', name: 'victimError', id: 10, date: now + 20, sessionId: v.session, ...base, payload: { message: 'm', stack: 'Error: m\n    at v.js:1:1' } });
    evs.push({ type: 'props', id: 11, date: now + 21, sessionId: v.session, ...base, payload: { secretPlan: 'victim' } });
    return evs;
  };
  const makeBystanderEvents = (v) => {
    const now = Date.now();
    const base = { deviceId: v.device, userId: `bystander-${v.n}`, sessionId: v.session + 1 };
    return [{ type: 'init', id: 1, date: now, ...base }, { type: 'event', name: 'BYSTANDER_EVT', id: 2, date: now + 1, ...base }];
  };
  const wsVictimEvents = (v) => {
    const now = Date.now();
    return [3, 4, 5].map((j) => ({ type: 'event', name: 'VICTIM_EVT', id: 100 + j, date: now + j, sessionId: v.session + 2, deviceId: v.device, userId: v.user }));
  };
  // Sends the victim's live events over its own socket; resolves when acked.
  const victimSocket = (v, events) => new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/app/${appId}/track`, { handshakeTimeout: 3000 });
    victimSockets.add(ws);
    const timer = setTimeout(() => resolve(false), 10000);
    ws.on('open', () => ws.send(JSON.stringify({ data: events })));
    ws.on('message', (d) => {
      try {
        const ids = JSON.parse(d.toString()).reportedIds;
        if (events.every((e) => ids.includes(e.id))) { clearTimeout(timer); resolve(true); }
      } catch (_) { /* not an ack */ }
    });
    ws.on('error', () => {});
    ws.on('close', () => { victimSockets.delete(ws); clearTimeout(timer); resolve(false); });
  });
  const liveProblemsFor = async (label, { forbiddenUsers = [], allowedDevices = null } = {}) => {
    const problems = [];
    const users = await api('GET', '/live/users');
    const count = await api('GET', '/live/users/count');
    const events = await api('GET', '/live/events?limit=1000');
    for (const [p, r] of [['/live/users', users], ['/live/users/count', count], ['/live/events', events]]) {
      if (r.status !== 200) problems.push(`${label}: ${p} answered ${r.status} ${r.text.slice(0, 200)}`);
    }
    if (problems.length) return problems;
    for (const row of users.json.data) {
      if (forbiddenUsers.includes(row.userId)) problems.push(`${label}: deleted user ${row.userId} is live`);
      if (allowedDevices && !allowedDevices.includes(row.deviceId)) problems.push(`${label}: device ${row.deviceId} is live (did not reconnect)`);
    }
    // At most the load clients' sockets and, before a kill, the victim's.
    const most = allowedDevices ? allowedDevices.length : WS_CLIENTS + 1;
    if (count.json.data > most || users.json.data.length > most) {
      problems.push(`${label}: live users count ${count.json.data}, ${users.json.data.length} live devices (at most ${most})`);
    }
    for (const e of events.json.data) {
      if (forbiddenUsers.includes(e.user_id)) problems.push(`${label}: live event of deleted user ${e.user_id}`);
    }
    return problems;
  };

  const liveProblems = [];
  const deleteStatuses = {};
  const modes = { 'delete-in-flight': 0, 'delete-answered': 0, 'in-shutdown': 0 };
  const cycleTimes = [];
  const ackedNow = () => clients.reduce((n, c) => n + c.acked.size, 0);
  const answeredDeleted = () => victims.filter((v) => v.deleteStatus === 204).map((v) => v.user);
  let ackedBeforeLoop = ackedNow();

  for (let cycle = 0; cycle < CYCLES && Date.now() < loopDeadline; cycle++) {
    const cycleStart = Date.now();
    const v = { n: cycle, user: `victim-${cycle}`, device: `victim-dev-${cycle}`, session: 5000 + cycle * 10, events: [], deleteStatus: null };
    victims.push(v);

    // The victim's events, acked before its DELETE is sent.
    const httpEvents = makeVictimEvents(v);
    v.setupOk = await postUntilAcked(httpEvents);
    const by = makeBystanderEvents(v);
    if (await postUntilAcked(by)) bystanders.push(...by);
    const liveEvents = wsVictimEvents(v);
    const liveOk = v.setupOk && await victimSocket(v, liveEvents);
    v.events = v.setupOk ? httpEvents.concat(liveOk ? liveEvents : []) : [];
    if (!v.setupOk) { v.deleteStatus = 'not-sent'; continue; }

    await sleep(Math.floor(rand() * 250));
    const answered = cycle % 2 === 1;
    v.deleteSentAt = Date.now();
    const del = once('DELETE', `/users/${encodeURIComponent(v.user)}`, { timeout: 30000 })
      .then((r) => { v.deleteStatus = r.status; v.deleteText = r.text; return r; })
      .catch((e) => { v.deleteStatus = 'no-answer'; v.deleteError = e.message; return null; });
    if (answered) {
      modes['delete-answered'] += 1;
      const r = await del;
      if (r && r.status === 204) {
        // Gone from every read at once, and resends stay gone.
        const u = await api('GET', `/users/${encodeURIComponent(v.user)}`);
        if (u.status !== 404) liveProblems.push(`cycle ${cycle}: deleted user answers ${u.status}`);
        liveProblems.push(...await liveProblemsFor(`cycle ${cycle} after delete`, { forbiddenUsers: [v.user] }));
        v.resent = await postUntilAcked(httpEvents, 10000);
        const u2 = await api('GET', `/users/${encodeURIComponent(v.user)}`);
        if (u2.status !== 404) liveProblems.push(`cycle ${cycle}: deleted user answers ${u2.status} after resends`);
      }
      await sleep(Math.floor(rand() * 150));
    } else {
      modes['delete-in-flight'] += 1;
      // 0-50 ms after sending, mostly early: before it is read, during its
      // transaction, while the index is rebuilt, or just after the answer.
      await sleep(Math.floor(rand() * rand() * 50));
    }

    if (cycle % 4 === 3) {
      modes['in-shutdown'] += 1;
      server.proc.kill('SIGTERM');
      await sleep(Math.floor(rand() * 51));
    }
    await server.kill9();
    await Promise.race([del, grace(2000)]);
    for (const ws of victimSockets) ws.terminate();
    await sleep(Math.floor(rand() * 100));
    await server.start();

    // After the restart live state is empty until devices reconnect: never a
    // victim, only load clients' sockets.
    liveProblems.push(...await liveProblemsFor(`cycle ${cycle} after restart`, { forbiddenUsers: answeredDeleted(), allowedDevices: wsDevices }));
    // Resend the victim's events, as an SDK's queue would: after a 204 they
    // stay gone; after a delete without an answer, whether it happened or
    // not, the outcome stays all or nothing.
    v.resent = await postUntilAcked(httpEvents, 10000) && (v.resent !== false);
    cycleTimes.push(Date.now() - cycleStart);
  }
  const loopSeconds = (Date.now() - started) / 1000;
  const ackedDuringCycles = ackedNow() - ackedBeforeLoop;
  const cyclesRun = cycleTimes.length;

  // Every load client reconnects: the live count reaches all of them.
  const liveCountOk = await (async () => {
    const until = Date.now() + 15000;
    while (Date.now() < until) {
      const r = await api('GET', '/live/users/count').catch(() => null);
      if (r && r.status === 200 && r.json.data === WS_CLIENTS) return true;
      await sleep(100);
    }
    return false;
  })();
  const finalLive = await api('GET', '/live/users');
  pollersRunning = false;
  await Promise.all(pollers);

  // Drain the load clients.
  for (const c of clients) c.stopGenerating();
  const drainDeadline = Date.now() + DRAIN_MS;
  let pending = Infinity;
  while (Date.now() < drainDeadline) {
    pending = clients.reduce((n, c) => n + c.queue.size, 0);
    if (pending === 0) break;
    await sleep(100);
  }

  // What the API says now, and again after a restart (the index rebuilt from the file).
  const range = `start=${Math.floor(started / 1000) - 60}&end=${Math.floor(Date.now() / 1000) + 3600}`;
  const readApi = async () => {
    const out = {};
    out.daily = await api('GET', `/analytics?${range}`);
    out.events = await api('GET', `/analytics/events?${range}`);
    out.errors = await api('GET', `/analytics/errors?${range}`);
    out.users = await api('GET', '/users?limit=1000');
    out.victims = {};
    for (const v of victims) out.victims[v.user] = (await api('GET', `/users/${encodeURIComponent(v.user)}`)).status;
    return out;
  };
  const before = await readApi();
  const exit = await server.stop();
  await Promise.all(clients.map((c) => c.stop()));
  await server.start();
  const afterRestart = await readApi();
  const exit2 = await server.stop();

  const summary = clients.map((c) => `${c.deviceId}: sent ${c.sent.size}, acked ${c.acked.size}, queued ${c.queue.size}` +
    (c.connects !== undefined ? `, connects ${c.connects}` : `, statuses ${JSON.stringify(c.statuses)}, errors ${c.errors}`));
  for (const line of summary) t.diagnostic(line);
  const deleteOutcomes = {};
  for (const v of victims) deleteOutcomes[v.deleteStatus] = (deleteOutcomes[v.deleteStatus] || 0) + 1;
  Object.assign(deleteStatuses, deleteOutcomes);
  t.diagnostic(`${cyclesRun} cycles in ${loopSeconds.toFixed(1)} s (${JSON.stringify(modes)}); ` +
    `events acked during the cycles ${ackedDuringCycles}; delete answers ${JSON.stringify(deleteStatuses)}; ` +
    `live polls ${JSON.stringify(pollStats)}`);

  assert.equal(cyclesRun, CYCLES, `only ${cyclesRun} of ${CYCLES} cycles ran within ${LOOP_MS} ms`);
  assert.ok(ackedDuringCycles > 0, 'no event was acked during the cycles: the test proved nothing');
  assert.equal(pending, 0, `queues did not drain within ${DRAIN_MS} ms (${pending} events unacked)`);
  assert.deepEqual(exit, { code: 0, signal: null }, 'SIGTERM must exit 0');
  assert.deepEqual(exit2, { code: 0, signal: null }, 'SIGTERM must exit 0');
  assert.deepEqual(pollProblems, [], 'live endpoints answered wrongly while the server was killed');
  assert.deepEqual(liveProblems, [], 'live state or deletions inconsistent');
  assert.ok(liveCountOk, `the live users count never reached the ${WS_CLIENTS} reconnected sockets: ${finalLive.text}`);
  assert.deepEqual(finalLive.json.data.map((r) => r.deviceId).sort(), [...wsDevices].sort(), 'live devices after the last restart');
  for (const c of clients) {
    assert.deepEqual(c.badAcks, [], `${c.deviceId} got answers that are not {"reportedIds":[int...]}`);
    assert.equal(c.unknownAckIds, 0, `${c.deviceId} got acks for ids it never sent`);
  }

  // ---- The export against what was acked ----
  const stored = exportAll(dataDir, appId);
  const count = new Map();
  for (const e of stored) count.set(tripleKey(e), (count.get(tripleKey(e)) || 0) + 1);
  const twice = [...count].filter(([, n]) => n > 1).map(([k, n]) => `${k} x${n}`);
  assert.deepEqual(twice, [], `events stored more than once:\n  ${sample(twice)}`);

  const acked = new Map();
  const sent = new Map();
  for (const c of clients) {
    for (const [k, e] of c.acked) acked.set(k, e);
    for (const [k, e] of c.sent) sent.set(k, e);
  }
  for (const e of bystanders) acked.set(tripleKey(e), e);
  const missing = [...acked.keys()].filter((k) => !count.has(k));
  assert.deepEqual(missing, [], `acked events lost:\n  ${sample(missing)}`);

  const victimKeys = new Map(); // tripleKey -> victim
  for (const v of victims) {
    for (const e of makeVictimEvents(v)) victimKeys.set(tripleKey(e), v);
    for (const e of wsVictimEvents(v)) victimKeys.set(tripleKey(e), v);
  }
  const bystanderKeys = new Set(bystanders.map(tripleKey));
  const allBystanderKeys = new Set();
  for (const v of victims) for (const e of makeBystanderEvents(v)) allBystanderKeys.add(tripleKey(e));
  const phantom = stored.filter((e) => {
    const k = tripleKey(e);
    return !sent.has(k) && !victimKeys.has(k) && !allBystanderKeys.has(k) && !bystanderKeys.has(k);
  }).map(tripleKey);
  assert.deepEqual(phantom, [], `stored events that nobody sent:\n  ${sample(phantom)}`);

  const storedByUser = new Map();
  for (const e of stored) storedByUser.set(e.userId, (storedByUser.get(e.userId) || 0) + 1);
  const victimProblems = [];
  let survivors = 0;
  for (const v of victims) {
    const keys = v.events.map(tripleKey);
    const present = keys.filter((k) => count.has(k)).length;
    const inExport = storedByUser.get(v.user) || 0;
    const status = before.victims[v.user];
    const status2 = afterRestart.victims[v.user];
    if (v.deleteStatus === 'not-sent') continue;
    if (v.deleteStatus === 204) {
      if (inExport !== 0) victimProblems.push(`${v.user}: delete answered 204 but ${inExport} events stored`);
      if (status !== 404 || status2 !== 404) victimProblems.push(`${v.user}: delete answered 204 but GET answers ${status}/${status2}`);
      if (!v.resent) victimProblems.push(`${v.user}: resends after the delete were not acked`);
    } else {
      // No 2xx answer: all or nothing.
      if (present !== 0 && present !== keys.length) {
        victimProblems.push(`${v.user}: delete (${v.deleteStatus}) half done: ${present} of ${keys.length} acked events stored`);
      }
      if (inExport !== present) victimProblems.push(`${v.user}: ${inExport} events stored, ${present} of them acked`);
      const expect = present === 0 ? 404 : 200;
      if (status !== expect || status2 !== expect) {
        victimProblems.push(`${v.user}: ${present} events stored but GET answers ${status}/${status2}`);
      }
      if (present > 0) survivors += 1;
    }
  }
  t.diagnostic(`victims ${victims.length}: deleted ${victims.length - survivors - (deleteStatuses['not-sent'] || 0)}, ` +
    `kept (delete killed before it happened) ${survivors}`);
  assert.deepEqual(victimProblems, [], 'deletions');

  // ---- The API against the export, before and after the restart ----
  const sumDays = (m) => Object.values(m || {}).reduce((a, b) => a + b, 0);
  const exportCount = (type, name) => stored.filter((e) => e.type === type && e.name === name).length;
  for (const [label, r] of [['before restart', before], ['after restart', afterRestart]]) {
    for (const k of ['daily', 'events', 'errors', 'users']) assert.equal(r[k].status, 200, `${label} ${k}: ${r[k].text.slice(0, 300)}`);
    assert.equal(r.users.json.total, storedByUser.size, `${label}: users total vs distinct users in the export`);
    assert.equal(r.daily.json.data.totalNumbers.users, storedByUser.size, `${label}: analytics users vs the export`);
    const listed = new Set(r.users.json.data.map((u) => u.userId));
    for (const v of victims) {
      if (v.deleteStatus === 204) assert.ok(!listed.has(v.user), `${label}: deleted ${v.user} is in the users list`);
    }
    assert.equal(sumDays(r.events.json.data.VICTIM_EVT), exportCount('event', 'VICTIM_EVT'), `${label}: VICTIM_EVT count`);
    assert.equal(sumDays(r.events.json.data.BYSTANDER_EVT), exportCount('event', 'BYSTANDER_EVT'), `${label}: BYSTANDER_EVT count`);
    assert.equal(sumDays(r.errors.json.data.victimError), exportCount('error', 'victimError'), `${label}: victimError count`);
    const inits = stored.filter((e) => e.type === 'init').length;
    assert.equal(sumDays(r.daily.json.data.usage), inits, `${label}: app starts vs inits in the export`);
  }
  assert.deepEqual(afterRestart.events.json, before.events.json, 'events per day differ after the restart');
  assert.deepEqual(afterRestart.daily.json.data.totalNumbers, before.daily.json.data.totalNumbers);

  for (const f of sqliteFilesIn(dataDir)) {
    assert.equal(sqliteIntegrity(f), 'ok', `PRAGMA integrity_check on ${path.relative(dataDir, f)}`);
  }
  t.diagnostic(`acked ${acked.size} load and bystander events, stored ${stored.length}; total ${((Date.now() - started) / 1000).toFixed(1)} s`);
  passed = true;
});

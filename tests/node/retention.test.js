// Retention end to end (docs/semantics.md §11): `nucleon app set APP_ID
// --retain-days N` on a running server (shown by `app list`) removes exactly
// the events before the cut, and the answers then equal the reference model's
// with the same cut; events dated before the cut that arrive afterwards are
// acknowledged and not stored; tracking keeps being acknowledged while a
// backlog of tens of thousands of events is removed; a server default
// (--retain-days, NUCLEON_RETAIN_DAYS) applies to the apps without their own
// setting.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { Server, cli, createApp, sleep, timeoutScale, testStore } = require('./lib/server');
const { ReferenceModel } = require('./lib/reference_model');
const { apiRequest } = require('./lib/diff_client');
const { mulberry32 } = require('./lib/diff_scenario');

const DAY = 86400000;
const fast = ['--api-rate', '0', '--track-rate', '0'];
// A backlog large enough to take many removal steps (fewer under a sanitizer).
const kEvents = timeoutScale > 1 ? 12000 : 60000;

async function metrics(server) {
  const r = await server.request('GET', '/metrics');
  return Object.fromEntries([...r.text.matchAll(/^(\w+) (\S+)$/gm)].map((m) => [m[1], Number(m[2])]));
}

// Waits until the store counted a change of retention since `before` and has
// nothing left to remove (bounded).
async function retentionDone(server, before) {
  const deadline = Date.now() + 120000 * timeoutScale;
  for (;;) {
    const m = await metrics(server);
    if (m.nucleon_retention_changes_total > before && !m.nucleon_retention_pending_apps) return m;
    assert.ok(Date.now() < deadline, `retention not done: ${JSON.stringify(m)}`);
    await sleep(50);
  }
}

// Tracking messages of `devices` devices over the last `days` days, with ids
// and dates: sessions of an init and a few events or errors, some of them
// across a midnight, users that identify within a session.
function history(nowMs, events, { days = 20, devices = 300, seed = 1 } = {}) {
  const rand = mulberry32(seed);
  const int = (a, b) => a + Math.floor(rand() * (b - a + 1));
  const messages = [];
  let items = [];
  let id = 0;
  const push = (it) => {
    items.push(it);
    if (items.length === 500) { messages.push({ data: items }); items = []; }
  };
  while (id < events) {
    const dev = `dev-${int(0, devices - 1)}`;
    const sessionId = int(1, 1e9);
    let t = nowMs - days * DAY + int(0, days * DAY - 3 * 3600000);
    const n = int(2, 12);
    const identifies = rand() < 0.2;
    for (let i = 0; i < n && id < events; i++) {
      const base = { id: ++id, date: t, deviceId: dev, sessionId };
      if (identifies && i >= n / 2) base.userId = `user-${dev}`;
      if (i === 0) {
        push({ ...base, type: 'init', platform: int(0, 1) ? 'linux' : 'darwin', osVersion: '6.1',
          version: `1.${int(0, 3)}`, locale: int(0, 1) ? 'en-GB' : 'de-DE', totalRam: int(4, 32),
          payload: { plan: int(0, 1) ? 'pro' : 'free' } });
      } else if (i % 5 === 4) {
        push({ ...base, type: 'error', name: 'TypeError', payload: { message: 'x is undefined', stack: 'TypeError\n    at f (a.js:1:1)' } });
      } else {
        push({ ...base, type: 'event', name: int(0, 1) ? 'SAVED' : 'OPENED', payload: { size: int(0, 3) } });
      }
      t += int(1000, 2 * 3600000);
    }
  }
  if (items.length) messages.push({ data: items });
  return messages;
}

async function track(server, appId, message) {
  const r = await server.request('POST', `/app/${appId}/track`, { body: JSON.stringify(message), timeout: 60000 });
  assert.equal(r.status, 200, r.text);
  return r;
}

// On ClickHouse, until the node's spool is forwarded (a read waits for it
// for 2 s at most, and a backlog of tens of thousands of events takes longer).
async function forwarded(server) {
  const deadline = Date.now() + 120000 * timeoutScale;
  while ((await metrics(server)).nucleon_spool_backlog_bytes > 0) {
    assert.ok(Date.now() < deadline, 'the spool was not forwarded within two minutes');
    await sleep(100);
  }
}

// The server's answers to every endpoint but the live ones and the quick
// glance (which depends on the request's instant) equal the model's.
async function compareWithModel(server, app, model, nowMs, what) {
  await forwarded(server);
  const fromS = Math.floor((nowMs - 25 * DAY) / 1000);
  const toS = Math.floor(nowMs / 1000) + 3600;
  const requests = [];
  for (const utcOffset of ['0', '330', '-300']) {
    const params = { start: String(fromS), end: String(toS), utcOffset };
    for (const segments of [['analytics'], ['analytics', 'events'], ['analytics', 'errors'], ['analytics', 'eventsprops']]) {
      requests.push([segments, params]);
    }
  }
  const cutS = Math.floor((nowMs - 8 * DAY) / 1000);
  requests.push([['analytics'], { start: String(cutS - 7200), end: String(cutS + 86400) }]);
  requests.push([['analytics', 'events', 'init', 'plan'], { start: String(fromS), end: String(toS) }]);
  requests.push([['analytics', 'events', 'SAVED', 'size'], { start: String(fromS), end: String(toS) }]);
  requests.push([['users'], { limit: '1000' }]);
  const v = model.derived(app.appId);
  const keys = [...v.users.keys()].sort().filter((_, i) => i % 7 === 0);
  for (const key of keys) {
    requests.push([['users', key], {}]);
    const sessions = [...v.users.get(key).sessions].map((sk) => v.sessions.get(sk).sessionId);
    requests.push([['users', key, 'session', sessions[0]], {}]);
  }
  for (const [segments, params] of requests) {
    const want = model.request(app.appId, { segments, params });
    const got = await apiRequest(server.port, app.appId, app.token, segments, params);
    assert.equal(got.status, want.status, `${what}: ${got.path}`);
    assert.deepEqual(got.json, want.body, `${what}: ${got.path}`);
  }
  return requests.length;
}

test('app set --retain-days removes exactly the older events while tracking goes on', { timeout: 600000 * timeoutScale }, async (t) => {
  const server = new Server({ args: fast });
  const app = createApp(server.dataDir);
  const other = createApp(server.dataDir, 'kept');
  await server.start();
  t.after(() => server.stop());
  const model = new ReferenceModel();
  const nowMs = Date.now();
  if (nowMs % DAY > DAY - 15 * 60000) t.diagnostic('close to midnight UTC: the cut may move during the test');

  const messages = history(nowMs, kEvents);
  for (const m of messages) {
    await track(server, app.appId, m);
    model.receive(app.appId, m, { receivedMs: Date.now() });
  }
  const otherMessages = history(nowMs, 2000, { seed: 2 });
  for (const m of otherMessages) await track(server, other.appId, m);
  await compareWithModel(server, app, model, nowMs, 'before retention');

  // A client keeps tracking while the removal runs: every message is acked.
  let tracking = true;
  let acked = 0;
  const sent = [];
  const tracker = (async () => {
    for (let i = 0; tracking || i < 5; i++) {
      const message = { data: [
        { type: 'init', id: `t${i}`, date: Date.now(), deviceId: 'live-device', sessionId: `live-${i}`, platform: 'linux' },
        { type: 'event', name: 'LIVE', id: `t${i}e`, date: Date.now(), deviceId: 'live-device', sessionId: `live-${i}` },
      ] };
      await track(server, app.appId, message);
      sent.push(message);
      acked += 1;
      await sleep(10);
    }
  })();

  const before = (await metrics(server)).nucleon_retention_changes_total;
  const set = JSON.parse(cli(server.dataDir, ['app', 'set', app.appId, '--retain-days', '7']));
  assert.deepEqual(set, { appId: app.appId, retainDays: 7 });
  const listed = cli(server.dataDir, ['app', 'list']).trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(listed.map((a) => [a.appId, a.retainDays]), [[app.appId, 7], [other.appId, null]]);
  const done = await retentionDone(server, before);
  tracking = false;
  await tracker;
  assert.ok(acked >= 5, `${acked} tracking messages acked while the removal ran`);

  const today = Math.floor(Date.now() / DAY);
  assert.equal(today, Math.floor(nowMs / DAY), 'midnight UTC passed during the test: run it again');
  const removed = model.applyRetention(app.appId, (today - 7) * DAY);
  for (const m of sent) model.receive(app.appId, m, { receivedMs: Date.now() });
  assert.ok(removed > kEvents / 3, `${removed} events before the cut`);
  if (testStore !== 'clickhouse') {
    assert.equal(done.nucleon_retention_events_removed_total, removed);
    assert.ok(done.nucleon_retention_steps_total >= Math.floor(removed / 1000), JSON.stringify(done));
  }
  const compared = await compareWithModel(server, app, model, nowMs, 'after retention');
  t.diagnostic(`${kEvents} events, ${removed} removed, ${acked} tracking messages acked meanwhile, ` +
    `${compared} answers equal to the model's` +
    (done.nucleon_retention_steps_total ? `, ${done.nucleon_retention_steps_total} steps in ` +
      `${done.nucleon_retention_seconds_total.toFixed(2)} s` : ''));

  // The old messages again (an SDK's offline queue): acked, nothing stored.
  for (const m of messages.slice(0, 5)) {
    await track(server, app.appId, m);
    model.receive(app.appId, m, { receivedMs: Date.now() });
  }
  await compareWithModel(server, app, model, nowMs, 'after old events came again');

  // The other app keeps everything.
  const otherUsers = await apiRequest(server.port, other.appId, other.token, ['analytics', 'events'],
    { start: String(Math.floor((nowMs - 25 * DAY) / 1000)), end: String(Math.floor(nowMs / 1000) + 3600) });
  assert.equal(otherUsers.status, 200, otherUsers.text);
  assert.ok(Object.values(otherUsers.json.data).some((days) => Object.keys(days).some((d) => Date.parse(d) < (today - 7) * DAY)),
    `the app without retention keeps its old days: ${otherUsers.text.slice(0, 300)}`);

  // off: the app's own setting goes.
  assert.deepEqual(JSON.parse(cli(server.dataDir, ['app', 'set', app.appId, '--retain-days', 'off'])), { appId: app.appId, retainDays: null });
  assert.equal(JSON.parse(cli(server.dataDir, ['app', 'list']).trim().split('\n')[0]).retainDays, null);
});

test('the server default applies to the apps without their own retention', { timeout: 120000 * timeoutScale }, async (t) => {
  const server = new Server({ args: fast, env: { NUCLEON_RETAIN_DAYS: '2' } });
  const a = createApp(server.dataDir, 'default');
  const b = createApp(server.dataDir, 'own');
  cli(server.dataDir, ['app', 'set', b.appId, '--retain-days', '30']);
  await server.start();
  t.after(() => server.stop());
  const now = Date.now();
  const message = { data: [
    { type: 'init', id: 1, date: now - 10 * DAY, deviceId: 'd1', sessionId: 1 },
    { type: 'init', id: 2, date: now - 1000, deviceId: 'd2', sessionId: 2 },
  ] };
  // Dated before the cut: not stored, though acked (the policy holds from the start).
  for (const app of [a, b]) await track(server, app.appId, message);
  const users = async (app) => (await apiRequest(server.port, app.appId, app.token, ['users'], {})).json.total;
  assert.equal(await users(a), 1);
  assert.equal(await users(b), 2);
  // Usage errors.
  assert.throws(() => cli(server.dataDir, ['app', 'set', a.appId, '--retain-days', 'soon']), /--retain-days takes/);
  assert.throws(() => cli(server.dataDir, ['app', 'set', a.appId]), /app set takes/);
  assert.throws(() => cli(server.dataDir, ['app', 'set', 'no-such-app', '--retain-days', '3']), /unknown app/);
});

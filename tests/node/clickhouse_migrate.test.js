// `nucleon migrate`: an embedded data folder copied into ClickHouse gives the
// same answer on every endpoint. The folder is filled through the real
// tracking endpoint with what makes answers hard to keep: contexts on inits,
// properties of every kind, errors, heartbeats with and without a session id
// (extending sessions past their last event), resends, a user who identifies
// in the middle of a shared session, and deleted users (whose late resends
// must stay dropped after the move). Then the server stops, the folder is
// migrated into a throw-away clickhouse-server, a `--store clickhouse` server
// starts on it, and every answer is compared byte for byte. Skipped when
// clickhouse-server is not installed.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { Server, tempDir, cli, createApp, sleep } = require('./lib/server');
const { startClickHouse } = require('./lib/clickhouse');
const { mulberry32 } = require('./lib/diff_scenario');

const haveClickHouse = fs.existsSync(process.env.CLICKHOUSE_SERVER || '/usr/sbin/clickhouse-server');
const T0 = Date.UTC(2026, 10, 2, 8, 0, 0);
const START = Math.floor(T0 / 1000) - 86400;
const END = START + 40 * 86400;

// A deterministic history: `devices` devices, each with a few sessions over
// several days. Returns the tracking messages in the order they are sent.
function history(seed, devices = 24) {
  const rnd = mulberry32(seed);
  const pick = (a) => a[Math.floor(rnd() * a.length)];
  const messages = [];
  let id = 0;
  for (let d = 0; d < devices; d++) {
    const device = `dev-${d}`;
    const user = d % 5 === 0 ? undefined : `user-${d % 17}`;
    for (let s = 0; s < 3; s++) {
      const session = `${d * 10 + s}`;
      let t = T0 + Math.floor(rnd() * 30) * 86400000 + Math.floor(rnd() * 86400000);
      const base = { deviceId: device, sessionId: session, ...(user ? { userId: user } : {}) };
      const items = [{
        type: 'init', id: ++id, date: t, ...base,
        platform: pick(['darwin', 'win32', 'linux']), osVersion: pick(['10', '11', '14.1']),
        locale: pick(['en-US', 'fr_FR', 'de']), version: pick(['1.0', '1.1']),
        totalRam: pick([8, 15.6, 32]), arch: 'x64', payload: { plan: pick(['free', 'pro']) },
      }];
      const n = 2 + Math.floor(rnd() * 6);
      for (let i = 0; i < n; i++) {
        t += 1000 + Math.floor(rnd() * 60000);
        const r = rnd();
        if (r < 0.15) {
          items.push({ type: 'error', name: 'TypeError', id: ++id, date: t, ...base,
            payload: { message: `bad ${i % 3}`, stack: 'TypeError\n    at f (a.js:1:1)' } });
        } else if (r < 0.25) {
          items.push({ type: 'props', id: ++id, date: t, ...base, payload: { tier: pick([1, 2, 'gold']), beta: rnd() < 0.5 } });
        } else {
          items.push({ type: 'event', name: pick(['OPEN', 'SAVE', 'EXPORT']), id: ++id, date: t, ...base,
            payload: { size: Math.floor(rnd() * 100), format: pick(['png', 'pdf']), ok: rnd() < 0.7 } });
        }
      }
      // An anonymous user who identifies mid-session: the session is shared.
      if (!user && s === 1) {
        items.push({ type: 'userid', id: ++id, date: t + 500, deviceId: device, sessionId: session,
          userId: `named-${d}`, payload: { email: 'x' } });
      }
      messages.push({ data: items });
      // Heartbeats arrive now (their receive time), so they extend the session.
      messages.push({ data: [{ type: 'heartbeat', deviceId: device, sessionId: session }] });
      if (s === 2) messages.push({ data: [{ type: 'heartbeat', deviceId: device }] });
    }
  }
  return messages;
}

async function track(server, appId, body) {
  const r = await server.request('POST', `/app/${appId}/track`, {
    body: JSON.stringify(body), headers: { 'content-type': 'application/json' },
  });
  assert.equal(r.status, 200, r.text);
}

// Every question worth asking of the history, as API paths.
async function questions(server, cred) {
  const get = async (rest) => {
    const r = await server.request('GET', `/api/v1/apps/${cred.appId}/${rest}`,
      { headers: { authorization: cred.token } });
    return `${r.status} ${r.text}`;
  };
  const paths = [];
  for (const off of [0, 330, -420]) {
    const q = `start=${START}&end=${END}&utcOffset=${off}`;
    paths.push(`analytics?${q}`, `analytics/events?${q}`, `analytics/errors?${q}`, `analytics/eventsprops?${q}`);
  }
  const q = `start=${START + 5 * 86400}&end=${START + 20 * 86400 + 3333}`;
  paths.push(`analytics?${q}`, `analytics/events/OPEN/format?${q}`, `analytics/events/init/plan?${q}`,
    `analytics/events/SAVE/ok?${q}`, 'users?limit=7&page=1', 'users?limit=7&page=3', 'users?limit=1000');
  const users = JSON.parse((await get('users?limit=1000')).slice(4)).data;
  for (const u of users) {
    paths.push(`users/${encodeURIComponent(u.userId)}`);
    const details = JSON.parse((await get(`users/${encodeURIComponent(u.userId)}`)).slice(4));
    for (const s of details.sessions.slice(0, 2)) {
      paths.push(`users/${encodeURIComponent(u.userId)}/session/${s.session}`);
    }
  }
  paths.push('users/user-3', 'users/nobody');
  const answers = {};
  for (const p of paths) answers[p] = await get(p);
  return answers;
}

test('an embedded folder migrated to ClickHouse answers every question the same',
  { skip: !haveClickHouse && 'clickhouse-server is not installed' }, async (t) => {
    const dir = tempDir('migrate-src');
    const cred = createApp(dir, 'migrated');
    const revoked = JSON.parse(cli(dir, ['token', 'create', cred.appId]).trim());
    cli(dir, ['token', 'revoke', revoked.token.slice(0, 12)]);
    const embedded = new Server({ dataDir: dir, args: ['--api-rate', '0', '--track-rate', '0'] });
    await embedded.start();
    const messages = history(7);
    for (const m of messages) {
      await track(embedded, cred.appId, m);
      if (m.data[0].type === 'heartbeat') await sleep(2);
    }
    // Two users deleted; then their batches come again (late resends).
    for (const key of ['user-3', 'user-11']) {
      const del = await embedded.request('DELETE', `/api/v1/apps/${cred.appId}/users/${key}`,
        { headers: { authorization: cred.token } });
      assert.equal(del.status, 204, del.text);
    }
    for (const m of messages.filter((x) => x.data.some((i) => i.userId === 'user-3'))) {
      await track(embedded, cred.appId, m);
    }
    const before = await questions(embedded, cred);
    await embedded.stop();

    const ch = await startClickHouse();
    t.after(() => ch.stop());
    const target = ['--clickhouse', ch.url, '--clickhouse-database', 'migrated'];
    const report = JSON.parse(cli(dir, ['migrate', ...target], { timeout: 120000 }).trim());
    assert.equal(report.apps, 1);
    assert.equal(report.tokens, 2, 'the revoked token too');
    assert.ok(report.tombstones > 0, 'the deleted users\' tombstones');

    const scaled = new Server({ dataDir: tempDir('migrate-node'),
      args: ['--store', 'clickhouse', ...target, '--api-rate', '0', '--track-rate', '0'] });
    await scaled.start();
    t.after(() => scaled.stop());
    const after = await questions(scaled, cred);
    assert.deepEqual(Object.keys(after).sort(), Object.keys(before).sort());
    for (const p of Object.keys(before)) assert.equal(after[p], before[p], `GET ${p}`);

    // The revoked token stays revoked; a deleted user's late resend stays dropped.
    const refused = await scaled.request('GET', `/api/v1/apps/${cred.appId}/users`,
      { headers: { authorization: revoked.token } });
    assert.equal(refused.status, 401);
    for (const m of messages.filter((x) => x.data.some((i) => i.userId === 'user-11'))) {
      await track(scaled, cred.appId, m);
    }
    const gone = await scaled.request('GET', `/api/v1/apps/${cred.appId}/users/user-11`,
      { headers: { authorization: cred.token } });
    assert.equal(gone.status, 404, 'not brought back by a resend after the move');
  });

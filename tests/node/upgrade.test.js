// Upgrade in place: a data folder written by the release before the storage format change
// (schema version 3, tests/upgrade/v3-folder.tar.gz) is opened by the binary under test,
// which migrates it, and every answer must be exactly what that release answered on the same
// folder (tests/upgrade/v3-expected.json, recorded by tests/upgrade/make_fixture.js). Every
// vN-folder.tar.gz / vN-expected.json pair in tests/upgrade runs the same way.
//
// Then, on the migrated folder: `nucleon export` prints what the release printed, the API
// tokens still work (the revoked one does not), resent events of the deleted user and of
// live users store nothing, and a new event is stored and counted. The server is stopped and
// started again on the now migrated folder, and every answer is checked once more.
//
// Answers are compared as JSON values, with object keys in the same order (day maps and
// event names are ordered in the API's contract); the first differences are printed.
//
// Run:   node --test tests/node/upgrade.test.js
// Env:   NUCLEON_BIN   the binary (default build/nucleon)
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const WebSocket = require('ws');

const { Server, cli, tempDir, scaled, sleep, logTail } = require('./lib/server.js');
const { httpParams } = require('../upgrade/make_fixture.js');

const FIXTURE_DIR = path.resolve(__dirname, '..', 'upgrade');
// The schema versions that have a fixture: v3-folder.tar.gz + v3-expected.json, ...
const VERSIONS = fs.readdirSync(FIXTURE_DIR).map((f) => /^v(\d+)-expected\.json$/.exec(f)).filter(Boolean).map((m) => Number(m[1])).sort((a, b) => a - b);

// No API rate limit: the test sends several hundred requests per round with one token.
const SERVER_ARGS = ['--api-rate', '0', '--track-rate', '0'];
// A migration of a large folder may take a while; the wait is bounded all the same.
const READY_TIMEOUT_MS = 120000;
const MAX_SHOWN_REQUESTS = 8;
const MAX_DIFFS_PER_REQUEST = 6;

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const short = (v) => { const t = JSON.stringify(v); return t === undefined ? 'undefined' : t.length > 240 ? `${t.slice(0, 240)}...` : t; };
const userDbId = (appId, userKey) => crypto.createHash('sha256').update(`${appId}/${userKey}`).digest('hex').slice(0, 24);

// The differences between two JSON values (at most `max`), each "path: what".
function differences(expected, actual, where = '$', out = [], max = MAX_DIFFS_PER_REQUEST) {
  if (out.length >= max) return out;
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) { out.push(`${where}: expected an array, got ${short(actual)}`); return out; }
    if (expected.length !== actual.length) out.push(`${where}: expected ${expected.length} items, got ${actual.length}`);
    for (let i = 0; i < Math.min(expected.length, actual.length); i++) differences(expected[i], actual[i], `${where}[${i}]`, out, max);
    return out;
  }
  if (isObject(expected)) {
    if (!isObject(actual)) { out.push(`${where}: expected an object, got ${short(actual)}`); return out; }
    const ek = Object.keys(expected);
    const ak = Object.keys(actual);
    const missing = ek.filter((k) => !(k in actual));
    const extra = ak.filter((k) => !(k in expected));
    if (missing.length) out.push(`${where}: missing key(s) ${short(missing)}`);
    if (extra.length) out.push(`${where}: unexpected key(s) ${short(extra)} = ${short(Object.fromEntries(extra.map((k) => [k, actual[k]])))}`);
    if (!missing.length && !extra.length && ek.join('\u0000') !== ak.join('\u0000')) {
      out.push(`${where}: same keys in another order: expected ${short(ek)}, got ${short(ak)}`);
    }
    for (const k of ek) if (k in actual) differences(expected[k], actual[k], `${where}.${k}`, out, max);
    return out;
  }
  if (!Object.is(expected, actual)) out.push(`${where}: expected ${short(expected)}, got ${short(actual)}`);
  return out;
}

// ------------------------------------------------------------------------------------------

// A fixture: the recorded answers and the archive of the folder they were recorded on, with
// the corrections of vN-corrections.json applied: answers where the release that wrote the
// folder was wrong (the file says why), each naming the one request and JSON pointer it
// changes and the value the release answered, so a correction can never drift silently.
function loadFixture(version) {
  const expected = JSON.parse(fs.readFileSync(path.join(FIXTURE_DIR, `v${version}-expected.json`), 'utf8'));
  const fx = { version, archive: path.join(FIXTURE_DIR, `v${version}-folder.tar.gz`), ...expected };
  const file = path.join(FIXTURE_DIR, `v${version}-corrections.json`);
  if (!fs.existsSync(file)) return fx;
  const { why, corrections } = JSON.parse(fs.readFileSync(file, 'utf8'));
  assert.ok(typeof why === 'string' && why.length > 0, `${file} must say why the recorded answers are corrected`);
  for (const c of corrections) {
    const matches = fx.requests.filter((r) => r.app === c.app && r.method === c.method && r.path === c.path
      && (r.auth || undefined) === c.auth && (r.label || undefined) === c.label);
    assert.equal(matches.length, 1, `correction ${JSON.stringify(c)} must match exactly one recorded request`);
    const keys = c.pointer.split('/').slice(1).map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'));
    let node = matches[0].body;
    for (const k of keys.slice(0, -1)) node = node[k];
    const last = keys[keys.length - 1];
    assert.deepEqual(node[last], c.was, `correction ${c.path} ${c.pointer}: the recorded answer is not ${JSON.stringify(c.was)}`);
    node[last] = c.now;
  }
  return fx;
}

function extractFixture(fx) {
  const dir = tempDir('upgrade');
  const r = spawnSync('tar', ['-xzf', fx.archive, '-C', dir], { encoding: 'utf8', timeout: scaled(60000) });
  assert.equal(r.status, 0, `tar -xzf ${fx.archive}: ${r.stderr || r.error}`);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['catalog.db', 'events.db']);
  return dir;
}

const apiPath = (fx, key, p) => `/api/v1/apps/${fx.apps[key].appId}${p}`;
const auth = (token) => ({ headers: { Authorization: token } });

// Starts the server on `dataDir` and waits until it answers daily analytics with 200: a server
// may answer 503 (with Retry-After) while it migrates or loads the folder.
async function startServer(fx, dataDir) {
  const server = new Server({ dataDir, args: SERVER_ARGS });
  await server.start({ timeoutMs: READY_TIMEOUT_MS });
  const whole = fx.requests.find((r) => r.app === 'big' && r.path.startsWith('/analytics?'));
  const deadline = Date.now() + scaled(READY_TIMEOUT_MS);
  let last = null;
  while (Date.now() < deadline) {
    try {
      last = await server.request('GET', apiPath(fx, 'big', whole.path), auth(fx.apps.big.tokens.primary));
      if (last.status === 200) return server;
      if (last.status !== 503) break;
      const wait = Math.min(5, Math.max(0.1, Number(last.headers['retry-after']) || 1));
      await sleep(wait * 1000);
    } catch (_) {
      await sleep(200); // not accepting yet
    }
  }
  await server.stop();
  throw new Error(`the server did not answer daily analytics with 200 within ${READY_TIMEOUT_MS} ms (scaled): `
    + `${last ? `${last.status} ${last.text.slice(0, 300)}` : 'no answer'}\n${server.log.slice(-4000)}`);
}

// Runs every recorded request and returns the failures as readable text ('' when none).
// `expectedFor(req)` may replace a recorded answer that the test itself changed.
async function checkAnswers(fx, server, expectedFor = (req) => req) {
  const failures = [];
  for (const req of fx.requests) {
    const want = expectedFor(req);
    const { headers, body } = httpParams(req, fx.apps[req.app].tokens);
    const res = await server.request(req.method, apiPath(fx, req.app, req.path), { headers, body, timeout: 30000 });
    const diffs = [];
    if (res.status !== want.status) diffs.push(`status: expected ${want.status}, got ${res.status}`);
    if (res.json === undefined) diffs.push(`body: not JSON: ${short(res.text)}`);
    else differences(want.body, res.json, '$', diffs);
    if (diffs.length) failures.push({ req, diffs });
  }
  if (!failures.length) return '';
  const shown = failures.slice(0, MAX_SHOWN_REQUESTS).map(({ req, diffs }) => [
    `${req.app} app: ${req.method} ${req.path}${req.auth ? ` (${req.auth})` : ''}${req.label ? ` [${req.label}]` : ''}`,
    ...diffs.map((d) => `    ${d}`),
  ].join('\n'));
  return `${failures.length} of ${fx.requests.length} answers differ from the release that wrote the folder`
    + `${failures.length > shown.length ? ` (first ${shown.length} shown)` : ''}:\n${shown.join('\n')}`;
}

// `nucleon export` prints the recorded lines (each with the fields added
// since after the ones the release wrote), then exactly the events (type,
// name) of `extraLines`, which this test tracked, then the session ends and
// tombstones.
function checkExport(fx, dataDir, key, extraLines = []) {
  const got = cli(dataDir, ['export', fx.apps[key].appId], { timeout: 120000 }).split('\n');
  const want = fx.exports[key];
  for (let i = 0; i < want.length; i++) {
    const head = want[i].slice(0, -1);
    const ok = got[i] !== undefined && got[i].startsWith(head) && (got[i][head.length] === ',' || got[i][head.length] === '}');
    if (!ok) {
      assert.fail(`nucleon export ${key} app: line ${i + 1} differs from the release's\n  expected: ${want[i]}\n  got:      ${got[i]}`);
    }
  }
  const rest = got.slice(want.length).filter((l) => l !== '').map((l) => JSON.parse(l))
    .filter((e) => e.type !== 'heartbeat' && e.type !== 'tombstone');
  assert.deepEqual(rest.map((e) => [e.type, e.name ?? null]), extraLines,
    `nucleon export ${key} app: after the recorded lines, expected exactly the events tracked by this test`);
}

function trackingSocket(server, appId) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${server.endpoint}/app/${appId}/track`, { handshakeTimeout: scaled(5000) });
    ws.once('open', () => { ws.on('error', () => {}); resolve(ws); });
    ws.once('error', reject);
  });
}

// Sends one tracking message (HTTP or WebSocket, text or binary) and checks its ack lists
// every id sent.
async function track(server, appId, message, transport) {
  const body = JSON.stringify(message);
  const ids = message.data.filter((e) => isObject(e) && e.id !== undefined).map((e) => JSON.stringify(e.id)).sort();
  let ack;
  if (transport === 'http') {
    const r = await server.request('POST', `/app/${appId}/track`, { body, headers: { 'Content-Type': 'application/json' } });
    assert.equal(r.status, 200, `tracking POST: ${r.status} ${r.text}`);
    ack = r.json;
  } else {
    const ws = await trackingSocket(server, appId);
    try {
      const got = new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no ack on the tracking WebSocket')), scaled(15000));
        ws.once('message', (d) => { clearTimeout(timer); resolve(JSON.parse(d.toString('utf8'))); });
      });
      ws.send(transport === 'ws-binary' ? Buffer.from(body, 'utf8') : body, { binary: transport === 'ws-binary' });
      ack = await got;
    } finally {
      ws.close();
      await Promise.race([new Promise((r) => ws.once('close', r)), sleep(scaled(3000))]);
    }
  }
  assert.deepEqual(ack.reportedIds.map((x) => JSON.stringify(x)).sort(), ids, `ack ${JSON.stringify(ack)}`);
}

// ------------------------------------------------------------------------------------------
// After the recorded answers are checked, the test adds one user to the small app: a new
// device, an init and an event, two hours before now (so neither live nor outside the quick
// glance window, and far from the recorded 2025 ranges).

const NEW_USER = 'after-upgrade';
const NEW_DEVICE = 'UpgradeCheckDevice';

function newUserMessage(t0) {
  const base = { sessionId: 271828, userId: NEW_USER, anonId: 'upgradeAnon1', deviceId: NEW_DEVICE };
  return { data: [
    { type: 'init', id: 1, date: t0, payload: { plan: 'upgraded' }, ...base, client: 'js', platform: 'Linux', osVersion: '6.1.0', locale: 'en-US', version: '3.0.0', moduleVersion: '4.0.3' },
    { type: 'event', name: 'AFTER_UPGRADE', id: 2, date: t0 + 1000, payload: { ok: true }, ...base },
  ] };
}

// What the users list and the quick glance of the small app must answer once the new user
// exists; every other recorded answer is unchanged.
function withNewUser(fx, t0) {
  const { appId } = fx.apps.small;
  const newUser = {
    _id: userDbId(appId, NEW_USER), userId: NEW_USER, createdAt: new Date(t0).toISOString(), lastSeen: new Date(t0 + 1000).toISOString(),
    devices: [{ _id: NEW_DEVICE, lastSeen: new Date(t0 + 1000).toISOString(), platform: 'linux', osVersion: '6.1.0', version: '3.0.0' }],
    props: { locale: 'en', plan: 'upgraded' },
  };
  const full = fx.requests.find((r) => r.app === 'small' && r.path === '/users?page=1&limit=1000');
  assert.ok(full && full.body.total <= 1000, 'the recorded answers hold the whole users list of the small app');
  // The list is ordered by lastSeen, newest first. Heartbeats stamped the sessions they
  // extended with the time the fixture was written, so the new user is not always first.
  const users = [...full.body.data];
  const at = users.findIndex((u) => u.lastSeen < newUser.lastSeen);
  users.splice(at < 0 ? users.length : at, 0, newUser);
  return (req) => {
    if (req.app !== 'small' || req.status !== 200) return req;
    const m = /^\/users(?:\?(.*))?$/.exec(req.path);
    if (m) {
      const params = new URLSearchParams(m[1] || '');
      const page = Number(params.get('page') || 1);
      const limit = Number(params.get('limit') || 100);
      return { ...req, body: { total: full.body.total + 1, data: users.slice((page - 1) * limit, page * limit) } };
    }
    if (req.path === '/analytics/quickglance') {
      return { ...req, body: { data: { installs: 1, users: 1, appStarts: 1, errors: 0, previousInstalls: 0, previousUsers: 0, previousAppStarts: 0, previousErrors: 0 } } };
    }
    return req;
  };
}

// ------------------------------------------------------------------------------------------

test('tests/upgrade holds at least one fixture', () => {
  assert.ok(VERSIONS.includes(3), `fixtures found for schema versions [${VERSIONS}]; expected v3-expected.json`);
});

for (const version of VERSIONS) {
  test(`a data folder written by the release before the storage format change (schema ${version}) is migrated and answers exactly as that release did`, { timeout: scaled(300000) }, async (t) => {
    const fx = loadFixture(version);
    const dataDir = extractFixture(fx);
    let server = null;
    t.after(async () => {
      if (server) await server.stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    });
    const { big, small } = fx.apps;
    const { deleted } = fx;
    const t0 = Date.now() - 2 * 3600000;
    const expectedAfter = withNewUser(fx, t0);

    server = await startServer(fx, dataDir);

    await t.test('every recorded request answers as recorded (first start: migrated)', async (st) => {
      const problems = await checkAnswers(fx, server);
      if (problems) { logTail(st, server); assert.fail(problems); }
    });

    await t.test('nucleon export prints what the release printed', () => {
      for (const key of Object.keys(fx.exports)) checkExport(fx, dataDir, key);
    });

    await t.test('the API tokens still work; the revoked one is refused', async () => {
      for (const token of [big.tokens.primary, big.tokens.second]) {
        const r = await server.request('GET', apiPath(fx, 'big', '/users?limit=1'), auth(token));
        assert.equal(r.status, 200, `token ${token.slice(0, 12)}: ${r.status} ${r.text}`);
      }
      const r = await server.request('GET', apiPath(fx, 'small', '/users?limit=1'), auth(small.tokens.primary));
      assert.equal(r.status, 200, r.text);
      const revoked = await server.request('GET', apiPath(fx, 'big', '/users?limit=1'), auth(big.tokens.revoked));
      assert.equal(revoked.status, 401, `revoked token: ${revoked.status} ${revoked.text}`);
      assert.deepEqual(revoked.json, { error: 'unknown API token' });
      const other = await server.request('GET', apiPath(fx, 'big', '/users?limit=1'), auth(small.tokens.primary));
      assert.equal(other.status, 404, `a token of the other app: ${other.status} ${other.text}`);
    });

    await t.test('resent events store nothing: the deleted user stays deleted, the others are not stored twice', async () => {
      const deletedAppId = fx.apps[deleted.app].appId;
      for (const message of deleted.resend) {
        await track(server, deletedAppId, message, 'http');
        await track(server, deletedAppId, message, 'ws');
      }
      for (const { app, transport, message } of fx.resendStored) await track(server, fx.apps[app].appId, message, transport);
      await sleep(scaled(250)); // closed sockets leave the live state right after the close handshake
      const r = await server.request('GET', apiPath(fx, deleted.app, `/users/${encodeURIComponent(deleted.user)}`), auth(fx.apps[deleted.app].tokens.primary));
      assert.equal(r.status, 404, `the deleted user came back: ${r.status} ${r.text.slice(0, 300)}`);
      // The numbers are unchanged: every recorded answer is still the same.
      const problems = await checkAnswers(fx, server);
      if (problems) assert.fail(`after the resends: ${problems}`);
      for (const key of Object.keys(fx.exports)) checkExport(fx, dataDir, key);
    });

    await t.test('a new event is stored and counted', async () => {
      await track(server, small.appId, newUserMessage(t0), 'http');
      const a = auth(small.tokens.primary);
      const qg = await server.request('GET', apiPath(fx, 'small', '/analytics/quickglance'), a);
      assert.equal(qg.status, 200, qg.text);
      assert.deepEqual(qg.json, expectedAfter({ app: 'small', path: '/analytics/quickglance', status: 200 }).body);
      const day = new Date(t0).toISOString().slice(0, 10);
      const range = `start=${Math.floor(t0 / 1000) - 3600}&end=${Math.floor(t0 / 1000) + 3600}`;
      const daily = await server.request('GET', apiPath(fx, 'small', `/analytics?${range}`), a);
      assert.equal(daily.status, 200, daily.text);
      assert.deepEqual(daily.json.data.totalNumbers, { users: 1, installs: 1 });
      assert.deepEqual(daily.json.data.usage, { [day]: 1 });
      const events = await server.request('GET', apiPath(fx, 'small', `/analytics/events?${range}`), a);
      assert.deepEqual(events.json, { data: { AFTER_UPGRADE: { [day]: 1 } } });
      const user = await server.request('GET', apiPath(fx, 'small', `/users/${NEW_USER}`), a);
      assert.equal(user.status, 200, user.text);
      assert.deepEqual(user.json.sessions.map((x) => [x.session, x.device, x.actions, x.errors]), [['271828', NEW_DEVICE, 2, 0]]);
      const problems = await checkAnswers(fx, server, expectedAfter);
      if (problems) assert.fail(`after the new event: ${problems}`);
      checkExport(fx, dataDir, 'small', [['init', null], ['event', 'AFTER_UPGRADE']]);
    });

    await t.test('stopped and started again on the migrated folder: the same answers', async (st) => {
      const res = await server.stop();
      server = null;
      assert.equal(res.code, 0, `the server did not stop cleanly: ${JSON.stringify(res)}`);
      server = await startServer(fx, dataDir);
      const problems = await checkAnswers(fx, server, expectedAfter);
      if (problems) { logTail(st, server); assert.fail(`after the restart: ${problems}`); }
      checkExport(fx, dataDir, 'big');
      checkExport(fx, dataDir, 'small', [['init', null], ['event', 'AFTER_UPGRADE']]);
      const revoked = await server.request('GET', apiPath(fx, 'big', '/users?limit=1'), auth(big.tokens.revoked));
      assert.equal(revoked.status, 401, revoked.text);
    });
  });
}

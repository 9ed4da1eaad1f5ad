// `nucleon migrate`: an embedded data folder copied into ClickHouse gives the
// same answer on every endpoint. The folder is filled through the real
// tracking endpoint with what makes answers hard to keep: contexts on inits,
// properties of every kind, errors, heartbeats with and without a session id
// (extending sessions past their last event), resends, a user who identifies
// in the middle of a shared session, and deleted users (whose late resends
// must stay dropped after the move), and each app's retention setting. Then
// the server stops, the folder is migrated into a throw-away
// clickhouse-server, a `--store clickhouse` server starts on it, and every
// answer is compared byte for byte; the dashboard's accounts come along (same
// passwords, roles and apps), and `nucleon user` keeps managing them on
// ClickHouse. Skipped when clickhouse-server is not
// installed.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { Server, tempDir, cli, createApp, sleep } = require('./lib/server');
const { startClickHouse } = require('./lib/clickhouse');
const { history, track, questions } = require('./lib/rich_history');

const haveClickHouse = fs.existsSync(process.env.CLICKHOUSE_SERVER || '/usr/sbin/clickhouse-server');

test('an embedded folder migrated to ClickHouse answers every question the same',
  { skip: !haveClickHouse && 'clickhouse-server is not installed' }, async (t) => {
    const dir = tempDir('migrate-src');
    const cred = createApp(dir, 'migrated');
    const revoked = JSON.parse(cli(dir, ['token', 'create', cred.appId]).trim());
    cli(dir, ['token', 'revoke', revoked.token.slice(0, 12)]);
    process.env.NUCLEON_PASSWORD = 'migrated-password';
    cli(dir, ['user', 'add', 'boss@example.com', '--role', 'admin']);
    cli(dir, ['user', 'add', 'watcher@example.com', '--role', 'viewer', '--apps', cred.appId]);
    delete process.env.NUCLEON_PASSWORD;
    // The app's own retention (long enough to keep the whole history) moves
    // too; an app without one stays without.
    const other = createApp(dir, 'no-retention');
    cli(dir, ['app', 'set', cred.appId, '--retain-days', '36500']);
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
    assert.equal(report.apps, 2);
    assert.equal(report.tokens, 3, 'the revoked token too');
    assert.ok(report.tombstones > 0, 'the deleted users\' tombstones');
    assert.equal(report.accounts, 2);

    const listed = cli(tempDir('migrate-list'), ['app', 'list', '--store', 'clickhouse', ...target])
      .trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(listed.map((a) => [a.appId, a.retainDays]).sort(),
      [[cred.appId, 36500], [other.appId, null]].sort(), 'each app\'s retention setting');

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

    // The accounts moved with their passwords, roles and apps.
    const users = () => cli(dir, ['user', 'list', '--store', 'clickhouse', ...target]).trim().split('\n')
      .map((l) => JSON.parse(l)).map((a) => [a.email, a.role, a.apps]);
    assert.deepEqual(users(), [['boss@example.com', 'admin', []], ['watcher@example.com', 'viewer', [cred.appId]]]);
    const signIn = await scaled.request('POST', '/api/session', { headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'watcher@example.com', password: 'migrated-password' }) });
    assert.equal(signIn.status, 200, signIn.text);
    assert.deepEqual(signIn.json.data.apps.map((a) => a.appId), [cred.appId]);
    // And `nucleon user` manages them there.
    process.env.NUCLEON_PASSWORD = 'another-password';
    cli(dir, ['user', 'add', 'new@example.com', '--role', 'viewer', '--store', 'clickhouse', ...target]);
    delete process.env.NUCLEON_PASSWORD;
    cli(dir, ['user', 'remove', 'watcher@example.com', '--store', 'clickhouse', ...target]);
    assert.deepEqual(users(), [['boss@example.com', 'admin', []], ['new@example.com', 'viewer', []]]);
    const cookie = signIn.headers['set-cookie'];
    const ended = await scaled.request('GET', '/api/session',
      { headers: { cookie: String(cookie).split(';')[0] } });
    assert.equal(ended.status, 401, 'a removed account is signed out at once');
  });

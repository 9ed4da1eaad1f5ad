// The admin CLI against a running server: apps and tokens created or revoked
// by `nucleon app|token` take effect in the server within a second; tokens are
// shown once; `serve --demo` prints how to point an SDK at the server.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const { Server, binary, cli, createApp, tempDir, freePort, httpRequest, sleep, scaled } = require('./lib/server');

const batch = (id) => JSON.stringify({ data: [{ type: 'init', id, sessionId: 1, deviceId: 'd1', date: Date.now() }] });

async function within(ms, probe) {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await probe();
    if (ok) return Date.now();
    if (Date.now() > deadline) return null;
    await sleep(20);
  }
}

test('apps and tokens changed by the CLI take effect in a running server within a second', { timeout: 60000 }, async (t) => {
  const server = new Server();
  await server.start();
  t.after(() => server.stop());

  // Counted from the CLI's exit (the change is committed by then): a
  // sanitizer build takes longer to start the CLI itself.
  const app = createApp(server.dataDir, 'late app');
  assert.match(app.appId, /^[0-9a-f]{24}$/);
  assert.match(app.token, /^nct_[A-Za-z0-9_-]{43}$/);
  const tracked = await within(scaled(1000 + 200), async () =>
    (await server.request('POST', `/app/${app.appId}/track`, { body: batch(1) })).status === 200);
  assert.ok(tracked, 'tracking to a new app still 404 after a second');

  const users = () => server.request('GET', `/api/v1/apps/${app.appId}/users`, { headers: { authorization: app.token } });
  assert.ok(await within(scaled(1200), async () => (await users()).status === 200), 'new token not accepted within a second');

  const second = JSON.parse(cli(server.dataDir, ['token', 'create', app.appId]));
  assert.equal(second.appId, app.appId);
  assert.notEqual(second.token, app.token);
  assert.ok(await within(scaled(1200), async () => (await server.request('GET', `/api/v1/apps/${app.appId}/users`,
    { headers: { authorization: second.token } })).status === 200));

  const listed = cli(server.dataDir, ['app', 'list']).trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(listed.map((a) => [a.appId, a.name, a.tokens]), [[app.appId, 'late app', 2]]);

  const revoked = JSON.parse(cli(server.dataDir, ['token', 'revoke', app.token.slice(0, 12)]));
  assert.equal(revoked.revoked, 1);
  const gone = await within(scaled(1200), async () => (await users()).status === 401);
  assert.ok(gone, 'revoked token still accepted after a second');
  // The other token still works.
  assert.equal((await server.request('GET', `/api/v1/apps/${app.appId}/users`, { headers: { authorization: second.token } })).status, 200);

  // That tokens exist only as hashes (in no file of the data folder, in no
  // log) is checked by privacy.test.js.
});

test('usage errors exit 2, runtime errors exit 1', () => {
  const dir = tempDir('cli');
  const run = (args) => new Promise((resolve) => {
    const p = spawn(binary, [...args, '--data', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => { err += d; });
    p.on('exit', (code) => resolve({ code, err }));
  });
  return (async () => {
    assert.equal((await run(['frobnicate'])).code, 2);
    assert.equal((await run(['app'])).code, 2);
    assert.equal((await run(['serve', '--listen', 'nonsense'])).code, 2);
    assert.equal((await run(['token', 'revoke', 'nct_'])).code, 2);
    const missing = await run(['token', 'create', 'ffffffffffffffffffffffff']);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /unknown app/);
  })();
});

test('serve --demo creates a demo app once and prints the SDK snippet', { timeout: 30000 }, async () => {
  const dir = tempDir('demo');
  const port = await freePort();
  const start = () => new Promise((resolve, reject) => {
    const p = spawn(binary, ['serve', '--demo', '--data', dir, '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    const timer = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`no snippet: ${out}`)); }, 15000);
    const check = setInterval(async () => {
      if (!out.includes('Nucleus.init(')) return;
      clearInterval(check);
      clearTimeout(timer);
      const health = await httpRequest(port, 'GET', '/healthz');
      p.kill('SIGTERM');
      p.on('exit', (code) => resolve({ out, code, health }));
    }, 50);
  });
  const first = await start();
  assert.equal(first.code, 0);
  assert.equal(first.health.status, 200);
  const appId = /app id:\s+([0-9a-f]{24})/.exec(first.out)[1];
  const token = /API token:\s+(nct_\S+)/.exec(first.out)[1];
  assert.ok(first.out.includes(`Nucleus.init('${appId}', { endpoint: 'ws://127.0.0.1:${port}' })`), first.out);
  const second = await start();
  assert.ok(second.out.includes(appId), 'the demo app is reused');
  assert.ok(!second.out.includes(token), 'the token is shown once');
  const apps = cli(dir, ['app', 'list']).trim().split('\n');
  assert.equal(apps.length, 1);
});

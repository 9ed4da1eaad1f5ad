// Live events are stored events (docs/semantics.md §8): a restart, graceful or
// kill -9, does not empty /live/events. Events of the last ten minutes come
// back, newest first, exactly as before the restart; older ones and events
// dated ahead of the clock are not live.
//
//   node --test tests/node/live_restart.test.js
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');

const { Server, tempDir, createApp, sleep, scaled } = require('./lib/server.js');

test('live events are the same after a graceful restart and after kill -9', { timeout: 120000 }, async (t) => {
  const dataDir = tempDir('live-restart');
  const { appId, token } = createApp(dataDir, 'live');
  const server = new Server({ dataDir, args: ['--api-rate', '0'] });
  t.after(async () => {
    await server.kill9();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  await server.start();
  const now = Date.now();
  const event = (id, dt, name) => ({
    type: 'event', name, id, date: now + dt, deviceId: 'live-dev', sessionId: 7, anonId: 'anon-live', payload: { n: id },
  });
  const send = async (data) => {
    const r = await server.request('POST', `/app/${appId}/track`, {
      headers: { 'content-type': 'application/json' }, body: JSON.stringify({ data }),
    });
    assert.equal(r.status, 200, r.text);
  };
  await send([
    { type: 'init', id: 1, date: now - 60000, deviceId: 'live-dev', sessionId: 7, anonId: 'anon-live', platform: 'linux', version: '1.0.0' },
    event(2, -50000, 'SEEN'),
    event(3, -30 * 60000, 'TOO_OLD'),
    event(4, -20000, 'SEEN_TOO'),
    event(5, +3600000, 'AHEAD'),
  ]);
  const live = async () => {
    const r = await server.request('GET', `/api/v1/apps/${appId}/live/events`, { headers: { authorization: token } });
    assert.equal(r.status, 200, r.text);
    return r.json.data.map((e) => [e.type, e.name, e.time, e.platform, e.version]);
  };
  // After a start the live window is filled from the store once the store
  // answers (in the background): wait for it, up to a bound.
  const liveOnceSeeded = async (expectLength) => {
    const deadline = Date.now() + scaled(15000);
    let got = await live();
    while (got.length < expectLength && Date.now() < deadline) {
      await sleep(50);
      got = await live();
    }
    return got;
  };
  const before = await live();
  assert.deepEqual(before.map((e) => e[1]), ['SEEN_TOO', 'SEEN', null], 'newest first; not the old one, not the one ahead');
  assert.equal(before[0][3], 'linux', 'context from the session init');

  await server.stop();
  await server.start();
  assert.deepEqual(await liveOnceSeeded(before.length), before, 'after a graceful restart');

  // Killed before its next checkpoint (every 5 s by default): the restart
  // replays what was written since the last one.
  await send([event(7, -15000, 'BEFORE_KILL')]);
  await server.kill9();
  await server.start();
  const after = await liveOnceSeeded(before.length + 1);
  assert.deepEqual(after.filter((e) => e[1] !== 'BEFORE_KILL'), before, 'after kill -9');
  assert.equal(after[0][1], 'BEFORE_KILL');
  const metrics = (await server.request('GET', '/metrics')).text;
  assert.match(metrics, /\nnucleon_store_ready 1\n/);
  const replayed = Number(/\nnucleon_tail_replayed_events (\d+)\n/.exec(metrics)?.[1]);
  assert.ok(replayed >= 1, `the events written after the last checkpoint were replayed at start: ${replayed}`);

  // New events join the ones from before the restart.
  await send([event(6, -10000, 'AFTER')]);
  await sleep(50);
  assert.deepEqual((await live()).map((e) => e[1]), ['AFTER', 'BEFORE_KILL', 'SEEN_TOO', 'SEEN', null]);
});

// End-to-end: the published 4.x SDK (identify, track with props, page,
// trackError) against the real server, then every API endpoint read back and
// checked against what the SDK sent.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { Server, createApp, tempDir } = require('./lib/server.js');
const { startDevice, expectedDeviceId4x } = require('./lib/sdk_device.js');

test('4.x SDK events read back through every API endpoint', { timeout: 60000 }, async (t) => {
  const server = new Server();
  const app = createApp(server.dataDir, 'readback');
  await server.start();
  const home = tempDir('home');
  t.after(async () => { await server.stop(); fs.rmSync(home, { recursive: true, force: true }); });

  const d = startDevice({ sdk: 'v4', appId: app.appId, endpoint: server.endpoint, home, simUser: 'v4-readback' });
  const report = await d.done;
  assert.equal(report.drained, true, 'the SDK queue drained');
  const sent = d.sentEvents();
  const deviceId = expectedDeviceId4x('v4-readback');
  const session = String(sent[0].sessionId);
  const day = new Date(sent.find((e) => e.type === 'init').date).toISOString().slice(0, 10);

  const A = `/api/v1/apps/${app.appId}`;
  const get = async (p) => {
    const r = await server.request('GET', `${A}/${p}`, { headers: { authorization: app.token } });
    assert.equal(r.status, 200, `${p}: ${r.text}`);
    return r.json;
  };
  const now = Math.floor(Date.now() / 1000);
  const range = `start=${now - 3600}&end=${now + 60}`;

  const qg = (await get('analytics/quickglance')).data;
  assert.deepEqual([qg.installs, qg.users, qg.appStarts, qg.errors], [1, 1, 1, 1]);

  const daily = (await get(`analytics?${range}`)).data;
  assert.deepEqual(daily.totalNumbers, { users: 1, installs: 1 });
  assert.deepEqual(daily.usage, { [day]: 1 });
  assert.deepEqual(daily.newUsers, { [day]: 1 });
  assert.deepEqual(daily.activeUsers, { [day]: 1 });
  assert.deepEqual(daily.platforms, [{ value: 'linux', count: 1 }]);
  assert.equal(daily.hours[day].reduce((a, b) => a + b, 0), 1);
  assert.ok(day in daily.avgSessionDuration);

  assert.deepEqual((await get(`analytics/events?${range}`)).data, { PLAYED_TRACK: { [day]: 1 } });
  assert.deepEqual((await get(`analytics/errors?${range}`)).data, { myCustomError: { [day]: 1 } });
  const props = (await get(`analytics/eventsprops?${range}`)).data;
  for (const want of [
    { event: 'PLAYED_TRACK', keys: ['duration'], type: 'number' },
    { event: 'PLAYED_TRACK', keys: ['trackName'], type: 'string' },
    { event: 'init', keys: ['age'], type: 'number' },
    { event: 'init', keys: ['plan'], type: 'string' },
  ]) assert.ok(props.some((p) => JSON.stringify(p) === JSON.stringify(want)), `eventsprops has ${JSON.stringify(want)}: ${JSON.stringify(props)}`);
  assert.deepEqual((await get(`analytics/events/PLAYED_TRACK/trackName?${range}`)).data, [{ value: 'Song', count: 1 }]);
  assert.deepEqual((await get(`analytics/events/PLAYED_TRACK/duration?${range}`)).data, [{ value: '120', count: 1 }]);

  const users = await get('users');
  assert.equal(users.total, 1);
  const u = users.data[0];
  assert.equal(u.userId, 'richard');
  assert.equal(u.props.plan, 'pro');
  assert.equal(u.props.age, 34);
  assert.deepEqual(u.devices.map((x) => [x._id, x.platform]), [[deviceId, 'linux']]);

  const details = await get('users/richard');
  assert.equal(details.user._id, u._id);
  assert.equal(details.user.appId, app.appId);
  assert.equal(details.sessions.length, 1);
  assert.equal(details.sessions[0].session, session);
  assert.equal(details.sessions[0].device, deviceId);
  assert.equal(details.sessions[0].actions, sent.length);
  assert.equal(details.sessions[0].errors, 1);

  const events = (await get(`users/richard/session/${session}?device=${encodeURIComponent(deviceId)}`)).data;
  assert.deepEqual(events.map((e) => e.type).sort(), sent.map((e) => e.type).sort());
  const init = events.find((e) => e.type === 'init');
  assert.equal(init.first_time, true);
  assert.equal(init.platform, 'linux');
  assert.equal(events.find((e) => e.type === 'event').name, 'PLAYED_TRACK');
  assert.match(events.find((e) => e.type === 'error').error_hash, /^[0-9a-f]{32}$/);
  for (let i = 1; i < events.length; i++) assert.ok(events[i - 1].time <= events[i].time, 'oldest first');

  const live = (await get('live/events')).data;
  assert.equal(live.length, sent.length, 'every event is within the live window');
  assert.equal((await get('live/users/count')).data, 0, 'the SDK process ended, so no device is live');

  const del = await server.request('DELETE', `${A}/users/richard`, { headers: { authorization: app.token } });
  assert.equal(del.status, 204);
  assert.equal((await get('users')).total, 0);
  assert.deepEqual((await get(`analytics/events?${range}`)).data, {});
  assert.deepEqual((await get('live/events')).data, []);
});

// Countries from IP addresses: the client address (or, behind a trusted proxy,
// the forwarded one) becomes an ISO country code at ingest. That the address
// itself is kept nowhere is checked by privacy.test.js. Needs Debian's
// tor-geoipdb (installed by scripts/install-deps).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const WebSocket = require('ws');
const { Server, createApp } = require('./lib/server');

const fixture = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'geo_addresses.json'), 'utf8'));
const haveGeo = fs.existsSync('/usr/share/tor/geoip') && fs.existsSync('/usr/share/tor/geoip6');

test('countries come from the client address, or the one a trusted proxy forwards', { skip: !haveGeo && 'tor-geoipdb is not installed', timeout: 60000 }, async (t) => {
  const server = new Server({ args: ['--trust-proxy', '127.0.0.0/8,::1'] });
  const untrusted = new Server();
  const app = createApp(server.dataDir, 'geo');
  const app2 = createApp(untrusted.dataDir, 'geo-untrusted');
  await server.start();
  await untrusted.start();
  t.after(async () => { await server.stop(); await untrusted.stop(); });

  const base = Date.UTC(2026, 0, 10, 12) ;
  let n = 0;
  for (const [i, a] of fixture.addresses.entries()) {
    const body = JSON.stringify({ data: [
      { type: 'init', id: ++n, date: base + i * 1000, sessionId: 100 + i, deviceId: `device-${i}`, userId: `user-${i}`, platform: 'Linux', locale: 'en-US' },
      { type: 'event', name: 'OPENED', id: ++n, date: base + i * 1000 + 500, sessionId: 100 + i, deviceId: `device-${i}`, userId: `user-${i}` },
    ] });
    // Through the trusted proxy (loopback), with a multi-hop header: the right-most
    // untrusted address is the client.
    const r = await server.request('POST', `/app/${app.appId}/track`, {
      body, headers: { 'content-type': 'application/json', 'x-forwarded-for': `10.9.9.9, ${a.ip}, 127.0.0.1` } });
    assert.equal(r.status, 200, r.text);
    // Same header to a server that trusts no proxy: ignored, the peer (loopback) has no country.
    const r2 = await untrusted.request('POST', `/app/${app2.appId}/track`, {
      body, headers: { 'content-type': 'application/json', 'x-forwarded-for': a.ip, 'x-real-ip': a.ip } });
    assert.equal(r2.status, 200, r2.text);
  }

  // A live WebSocket through the proxy shows the country of its connection.
  const live = new WebSocket(`${server.endpoint}/app/${app.appId}/track`, { headers: { 'X-Real-IP': fixture.addresses[0].ip } });
  await new Promise((resolve, reject) => { live.on('open', resolve); live.on('error', reject); });
  live.send(JSON.stringify({ data: [{ type: 'heartbeat', deviceId: 'device-0', userId: 'user-0' }] }));
  await new Promise((resolve) => live.once('message', resolve));

  const auth = { authorization: app.token };
  const range = `start=${Math.floor(base / 1000) - 10}&end=${Math.floor(base / 1000) + 100}`;
  const daily = await server.request('GET', `/api/v1/apps/${app.appId}/analytics?${range}`, { headers: auth });
  assert.equal(daily.status, 200, daily.text);
  const expected = {};
  for (const a of fixture.addresses) expected[a.country] = (expected[a.country] || 0) + 1;
  const want = Object.entries(expected).map(([value, count]) => ({ value, count }))
    .sort((x, y) => y.count - x.count || (x.value < y.value ? -1 : 1));
  assert.deepEqual(daily.json.data.countries, want);

  for (const [i, a] of fixture.addresses.entries()) {
    const user = await server.request('GET', `/api/v1/apps/${app.appId}/users/user-${i}`, { headers: auth });
    assert.equal(user.status, 200, user.text);
    assert.equal(user.json.user.props.country, a.country, `user-${i}`);
    const events = await server.request('GET', `/api/v1/apps/${app.appId}/users/user-${i}/session/${100 + i}`, { headers: auth });
    assert.equal(events.status, 200, events.text);
    assert.deepEqual(events.json.data.map((e) => e.country), [a.country, a.country]);
  }
  const liveUsers = await server.request('GET', `/api/v1/apps/${app.appId}/live/users`, { headers: auth });
  assert.equal(liveUsers.json.data.length, 1);
  assert.equal(liveUsers.json.data[0].country, fixture.addresses[0].country);
  live.close();

  const untrustedDaily = await untrusted.request('GET', `/api/v1/apps/${app2.appId}/analytics?${range}`, { headers: { authorization: app2.token } });
  assert.deepEqual(untrustedDaily.json.data.countries, []);

  // That the addresses appear nowhere afterwards (data folder, logs) is
  // checked by privacy.test.js.
});

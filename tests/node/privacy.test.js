// Secrets and privacy after a realistic run: no client IP address and no raw
// API token in any file of the data folder (binary-safe, -wal and -shm
// included, while the server runs and after it stopped) or in the server's
// stdout/stderr; a revoked token stops working within a second while the
// others keep working.
//
// The session: SDK-like traffic over WebSocket and HTTP from a distinctive
// loopback address (127.0.0.77, an untrusted peer whose forwarding headers
// must be ignored), traffic through a trusted proxy (127.0.0.1) that forwards
// distinctive public IPv4 and IPv6 addresses, bad requests and invalid events
// that get logged, API calls with the token in the header (raw and bearer),
// in a JSON and a form body, in the query string (ignored), with unknown
// tokens, and a revocation through the CLI.
//
// Token comparison itself is constant-time (CRYPTO_memcmp on the SHA-256 of
// the token); that is pinned by the unit tests in src/core/core_test.cc.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const WebSocket = require('ws');
const { Server, cli, createApp, httpRequest, sleep } = require('./lib/server');

const CLIENT_IP = '127.0.0.77'; // the SDK's own address (an untrusted peer)
const PROXY_IP = '127.0.0.1'; // the trusted proxy
const FORWARDED_IP = '81.2.69.160'; // the client behind the proxy (GB)
const FORWARDED_IP6 = '2001:67c:2e8:22::c100:68b'; // another, over IPv6 (NL)
const SPOOFED_IP = '193.0.6.139'; // sent by the untrusted peer: ignored
const haveGeo = fs.existsSync('/usr/share/tor/geoip') && fs.existsSync('/usr/share/tor/geoip6');

// Every form an IPv4 address could be written in: dotted text, the 32-bit
// number in decimal and hex, and its 4 bytes in network and host order.
function ipv4Needles(ip) {
  const bytes = ip.split('.').map(Number);
  const n = ((bytes[0] << 24) >>> 0) + (bytes[1] << 16) + (bytes[2] << 8) + bytes[3];
  return [
    [`${ip} (text)`, Buffer.from(ip)],
    [`${ip} (decimal ${n})`, Buffer.from(String(n))],
    [`${ip} (hex)`, Buffer.from(n.toString(16).padStart(8, '0'))],
    [`${ip} (4 bytes, network order)`, Buffer.from(bytes)],
    [`${ip} (4 bytes, host order)`, Buffer.from([...bytes].reverse())],
  ];
}

function ipv6Bytes(ip) {
  const [head, tail] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.from(groups.flatMap((g) => { const v = parseInt(g, 16); return [v >> 8, v & 255]; }));
}

function ipv6Needles(ip) {
  const bytes = ipv6Bytes(ip);
  const full = [];
  for (let i = 0; i < 16; i += 2) full.push(bytes.readUInt16BE(i).toString(16).padStart(4, '0'));
  return [
    [`${ip} (text)`, Buffer.from(ip)],
    [`${ip} (expanded)`, Buffer.from(full.join(':'))],
    [`${ip} (16 bytes)`, bytes],
    [`${ip} (first 8 bytes)`, bytes.subarray(0, 8)],
  ];
}

// Every file under `dir`, read whole (binary), with the needles it holds.
function grepTree(dir, needles) {
  const hits = [];
  const walk = (d) => {
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      const file = path.join(d, ent.name);
      if (ent.isDirectory()) { walk(file); continue; }
      if (!ent.isFile()) continue;
      let data;
      try { data = fs.readFileSync(file); } catch (e) { if (e.code === 'ENOENT') continue; throw e; }
      for (const [label, n] of needles) {
        const at = data.indexOf(n);
        if (at >= 0) hits.push(`${path.relative(dir, file)} holds ${label} at byte ${at}`);
      }
    }
  };
  walk(dir);
  return hits;
}

function listFiles(dir) {
  const out = [];
  const walk = (d) => {
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, ent.name);
      if (ent.isDirectory()) walk(p); else out.push(path.relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

// An HTTP request to the server from a chosen local address.
function request(port, method, pathName, { body, headers = {}, localAddress = PROXY_IP, timeout = 10000 } = {}) {
  const hdrs = { ...headers };
  if (body !== undefined) hdrs['content-length'] = String(Buffer.byteLength(body));
  return httpRequest(port, method, pathName, { body, headers: hdrs, localAddress, timeout, exactTimeout: true });
}

// A WebSocket from a chosen local address that sends `messages` one after
// the other, each once the previous one was acked.
async function wsSession(port, appId, messages, { localAddress = CLIENT_IP, headers = {} } = {}) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/app/${appId}/track`, { localAddress, headers, handshakeTimeout: 5000 });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const acks = [];
  for (const m of messages) {
    const ack = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no ack within 10 s')), 10000);
      ws.once('message', (d) => { clearTimeout(timer); resolve(JSON.parse(d.toString())); });
    });
    ws.send(JSON.stringify({ data: m }));
    acks.push(await ack);
  }
  return { ws, acks };
}

test('no client address and no raw token in the data folder or the logs; revoked tokens stop within a second', { timeout: 120000 }, async (t) => {
  const server = new Server({ args: ['--trust-proxy', `${PROXY_IP}/32`] });
  const { appId, token } = createApp(server.dataDir, 'privacy');
  const second = JSON.parse(cli(server.dataDir, ['token', 'create', appId])).token;
  const unknownToken = `nct_${crypto.randomBytes(32).toString('base64url')}`;
  const queryToken = `nct_${crypto.randomBytes(32).toString('base64url')}`;
  await server.start();
  const sockets = [];
  t.after(async () => {
    for (const ws of sockets) ws.terminate();
    await server.kill9();
    fs.rmSync(server.dataDir, { recursive: true, force: true });
  });
  const { port } = server;
  const base = Date.now() - 60000;
  let id = 0;
  const ev = (o) => ({ id: ++id, date: base + id * 100, ...o });

  // 1. The SDK on 127.0.0.77 over WebSocket: a session with an init, events,
  //    an error, props and heartbeats; its spoofed forwarding header is ignored.
  const direct = { deviceId: 'priv-device-direct', sessionId: 4242, userId: 'priv-user-direct' };
  const ws1 = await wsSession(port, appId, [
    [ev({ type: 'init', ...direct, platform: 'Linux', osVersion: '6.1.0', locale: 'en-GB', version: '1.0.0', payload: { plan: 'free' } })],
    [ev({ type: 'event', name: 'OPENED_FILE', ...direct, payload: { kind: 'pdf' } }),
      ev({ type: 'error', name: 'TypeError', ...direct, payload: { message: 'x is undefined', stack: 'TypeError: x\n    at main.js:1:1' } }),
      ev({ type: 'props', ...direct, payload: { beta: true } })],
    [{ type: 'heartbeat', deviceId: direct.deviceId, sessionId: direct.sessionId, userId: direct.userId }],
  ], { localAddress: CLIENT_IP, headers: { 'X-Forwarded-For': SPOOFED_IP, 'X-Real-IP': SPOOFED_IP } });
  sockets.push(ws1.ws);
  for (const a of ws1.acks) assert.ok(Array.isArray(a.reportedIds), JSON.stringify(a));

  // The same device over HTTP (an SDK flushing its queue), with a spoofed header.
  let r = await request(port, 'POST', `/app/${appId}/track`, {
    localAddress: CLIENT_IP,
    headers: { 'content-type': 'application/json', 'x-forwarded-for': SPOOFED_IP },
    body: JSON.stringify({ data: [ev({ type: 'event', name: 'SAVED', ...direct }), ev({ type: 'nucleus:view', name: 'Settings', ...direct })] }),
  });
  assert.equal(r.status, 200, r.text);

  // 2. Behind the trusted proxy: one client over HTTP (IPv4), one over a
  //    WebSocket (IPv6), both with a country when the geo database is installed.
  const proxied = { deviceId: 'priv-device-proxied', sessionId: 777, userId: 'priv-user-proxied' };
  r = await request(port, 'POST', `/app/${appId}/track`, {
    localAddress: PROXY_IP,
    headers: { 'content-type': 'application/json', 'x-forwarded-for': `${FORWARDED_IP}, ${PROXY_IP}` },
    body: JSON.stringify({ data: [ev({ type: 'init', ...proxied, platform: 'Windows_NT', locale: 'en-GB' }), ev({ type: 'event', name: 'PROXIED', ...proxied })] }),
  });
  assert.equal(r.status, 200, r.text);
  const proxied6 = { deviceId: 'priv-device-proxied6', sessionId: 778, anonId: 'priv-anon-6' };
  const ws2 = await wsSession(port, appId, [[ev({ type: 'init', ...proxied6, platform: 'darwin' }), ev({ type: 'event', name: 'PROXIED6', ...proxied6 })]],
    { localAddress: PROXY_IP, headers: { 'X-Real-IP': FORWARDED_IP6 } });
  sockets.push(ws2.ws);

  // 3. Requests that get logged, from the untrusted peer.
  for (const [p, body] of [
    [`/app/${appId}/track`, '{"data": [ {"type": "event", '], // malformed JSON
    [`/app/${appId}/track`, JSON.stringify({ data: [{ type: 'event', name: 'NO_SESSION', id: 99999, deviceId: 'priv-device-direct' }] })], // invalid event, acked and dropped
    ['/app/ffffffffffffffffffffffff/track', JSON.stringify({ data: [] })], // unknown app
    [`/app/${appId}/track`, JSON.stringify({ nodata: true })],
  ]) {
    await request(port, 'POST', p, { localAddress: CLIENT_IP, body, headers: { 'content-type': 'application/json', 'x-forwarded-for': SPOOFED_IP } });
  }
  const badWs = new WebSocket(`ws://127.0.0.1:${port}/app/unknown-app-id/track`, { localAddress: CLIENT_IP });
  await new Promise((resolve) => { badWs.on('error', resolve); badWs.on('close', resolve); badWs.on('unexpected-response', resolve); });
  badWs.terminate();

  // 4. The API, every way a token can travel.
  const api = (method, p, opts = {}) => request(port, method, `/api/v1/apps/${appId}${p}`, { localAddress: CLIENT_IP, ...opts });
  const readers = {
    header: await api('GET', '/users', { headers: { authorization: token } }),
    bearer: await api('GET', '/live/users', { headers: { authorization: `Bearer ${token}` } }),
    json: await api('POST', '/analytics/quickglance', { body: JSON.stringify({ token }), headers: { 'content-type': 'application/json' } }),
    form: await api('POST', '/users/priv-user-direct', { body: `token=${encodeURIComponent(token)}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } }),
    second: await api('GET', `/users/priv-user-direct/session/${direct.sessionId}`, { headers: { authorization: second } }),
  };
  for (const [how, res] of Object.entries(readers)) assert.equal(res.status, 200, `token in ${how}: ${res.status} ${res.text}`);
  assert.equal((await api('GET', `/users?token=${queryToken}`)).status, 401, 'a token in the query string is ignored');
  assert.equal((await api('GET', '/users', { headers: { authorization: unknownToken } })).status, 401);
  assert.equal((await api('POST', '/users', { body: JSON.stringify({ token: unknownToken }) })).status, 401);
  assert.equal((await api('DELETE', '/users/nobody', { headers: { authorization: `Bearer ${unknownToken}` } })).status, 401);

  // Countries, never addresses, in what the API shows.
  const users = await api('GET', '/users?limit=100', { headers: { authorization: token } });
  const live = await api('GET', '/live/users', { headers: { authorization: token } });
  const liveEvents = await api('GET', '/live/events?limit=100', { headers: { authorization: token } });
  const session = await api('GET', `/users/priv-user-direct/session/${direct.sessionId}`, { headers: { authorization: token } });
  const byUser = Object.fromEntries(users.json.data.map((u) => [u.userId, u]));
  assert.equal(byUser['priv-user-direct'].props.country, undefined, 'a spoofed header from an untrusted peer gave a country');
  if (haveGeo) {
    assert.equal(byUser['priv-user-proxied'].props.country, 'GB', 'the trusted proxy\'s client address gave no country');
    assert.equal(byUser['priv-anon-6'].props.country, 'NL');
  }
  const ipTexts = [CLIENT_IP, FORWARDED_IP, FORWARDED_IP6, SPOOFED_IP];
  for (const res of [users, live, liveEvents, session, ...Object.values(readers)]) {
    for (const ip of ipTexts) assert.ok(!res.text.includes(ip), `an API answer shows ${ip}: ${res.text.slice(0, 300)}`);
  }

  // 5. Revocation: the first token stops working within a second; the second keeps working.
  const prefix = token.slice(0, 12);
  const revoked = JSON.parse(cli(server.dataDir, ['token', 'revoke', prefix]));
  assert.equal(revoked.revoked, 1);
  const revokedAt = Date.now();
  let refusedAt = null;
  while (Date.now() - revokedAt < 3000) {
    const res = await api('GET', '/users', { headers: { authorization: token } });
    if (res.status === 401) { refusedAt = Date.now(); break; }
    assert.equal(res.status, 200);
    await sleep(100);
  }
  assert.ok(refusedAt !== null, 'the revoked token still works after 3 s');
  t.diagnostic(`revoked token refused ${refusedAt - revokedAt} ms after the CLI returned`);
  assert.ok(refusedAt - revokedAt <= 1000, `the revoked token worked for ${refusedAt - revokedAt} ms after its revocation`);
  for (const how of [{ headers: { authorization: `Bearer ${token}` } }, { method: 'POST', body: JSON.stringify({ token }) }]) {
    const res = await api(how.method || 'GET', '/live/users/count', how);
    assert.equal(res.status, 401, 'a revoked token in any position is refused');
  }
  assert.equal((await api('GET', '/live/users/count', { headers: { authorization: second } })).status, 200, 'the other token stops working');

  // 6. More traffic after the revocation, then look at every file while the
  //    server runs (the -wal and -shm files are there now), and after a stop.
  ws1.ws.send(JSON.stringify({ data: [ev({ type: 'event', name: 'LATE', ...direct })] }));
  await new Promise((resolve) => ws1.ws.once('message', resolve));
  const needles = [
    ...ipv4Needles(CLIENT_IP), ...ipv4Needles(FORWARDED_IP), ...ipv4Needles(SPOOFED_IP), ...ipv6Needles(FORWARDED_IP6),
  ];
  for (const [name, tok] of [['token', token], ['second token', second], ['unknown token', unknownToken], ['query-string token', queryToken]]) {
    needles.push([`the ${name}`, Buffer.from(tok)], [`the secret part of the ${name}`, Buffer.from(tok.slice(12))],
      [`a piece of the ${name}`, Buffer.from(tok.slice(20, 36))]);
  }
  // The search itself finds every form when it is there.
  const canaryDir = fs.mkdtempSync(path.join(server.dataDir, '..', 'nucleon-privacy-canary-'));
  fs.writeFileSync(path.join(canaryDir, 'canary'), Buffer.concat(needles.flatMap(([, n]) => [Buffer.from('..'), n])));
  const found = grepTree(canaryDir, needles).length;
  fs.rmSync(canaryDir, { recursive: true, force: true });
  assert.equal(found, needles.length, 'the search misses needles that are present');

  const filesRunning = listFiles(server.dataDir);
  t.diagnostic(`files while running: ${filesRunning.join(', ')}`);
  assert.ok(filesRunning.some((f) => f.endsWith('-wal')), 'expected a -wal file while the server runs');
  assert.deepEqual(grepTree(server.dataDir, needles), [], 'secrets in the data folder while the server runs');

  for (const ws of sockets) ws.close();
  assert.deepEqual(await server.stop(), { code: 0, signal: null });
  assert.deepEqual(grepTree(server.dataDir, needles), [], 'secrets in the data folder after the server stopped');
  const log = Buffer.from(server.log);
  const inLog = needles.filter(([, n]) => log.includes(n)).map(([label]) => label);
  assert.deepEqual(inLog, [], `secrets in the server's stdout/stderr:\n${server.log.slice(-3000)}`);
  assert.ok(server.log.length > 0 && /invalid event|malformed|not JSON|JSON/i.test(server.log),
    `the run was meant to produce log lines about the bad requests:\n${server.log}`);
});

// Deleting a user leaves no trace in any file: not in the database's free
// space, not in the write-ahead log, not in the tombstones (hashes only).
test('a deleted user leaves no bytes behind in the data folder', { timeout: 120000 }, async (t) => {
  const server = new Server();
  const { appId, token } = createApp(server.dataDir, 'forget');
  await server.start();
  t.after(async () => {
    await server.kill9();
    fs.rmSync(server.dataDir, { recursive: true, force: true });
  });
  const { port } = server;
  const gone = { deviceId: 'forget-device-5c1e9a', sessionId: 777001, userId: 'forget-user-b7d2f3' };
  const kept = { deviceId: 'kept-device-0a4c11', sessionId: 777002, userId: 'kept-user-93e6aa' };
  const base = Date.now() - 60000;
  let id = 0;
  const ev = (who, o) => ({ id: ++id, date: base + id * 10, ...who, ...o });
  const batch = (who) => [
    ev(who, { type: 'init', platform: 'Linux', version: '2.0.0', payload: { email: `${who.userId}@mail.example` } }),
    ...Array.from({ length: 200 }, (_, i) => ev(who, { type: 'event', name: 'CLICKED', payload: { note: `${who.userId}-note-${i}` } })),
    ev(who, { type: 'props', payload: { nickname: `${who.userId}-nick` } }),
  ];
  for (const who of [gone, kept]) {
    const r = await request(port, 'POST', `/app/${appId}/track`, {
      localAddress: PROXY_IP, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ data: batch(who) }),
    });
    assert.equal(r.status, 200, r.text);
  }
  const needles = (who) => [[`user id of ${who.userId}`, Buffer.from(who.userId)], [`device id of ${who.userId}`, Buffer.from(who.deviceId)]];
  // Before the delete both users are in the files (so the search can find them).
  assert.ok(grepTree(server.dataDir, needles(gone)).length > 0, 'the user was expected in the files before the delete');

  const del = await request(port, 'DELETE', `/api/v1/apps/${appId}/users/${gone.userId}`, { localAddress: PROXY_IP, headers: { authorization: token } });
  assert.ok(del.status >= 200 && del.status < 300, `delete answered ${del.status} ${del.text}`);
  assert.deepEqual(grepTree(server.dataDir, needles(gone)), [],
    `the deleted user is still in the files while the server runs; server log:\n${server.log.slice(-2000)}`);
  assert.deepEqual(await server.stop(), { code: 0, signal: null });
  assert.deepEqual(grepTree(server.dataDir, needles(gone)), [], 'the deleted user is still in the files after the server stopped');
  assert.ok(grepTree(server.dataDir, needles(kept)).length > 0, 'the other user must still be stored');
});

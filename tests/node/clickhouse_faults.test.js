// The ClickHouse backend under faults, against a clickhouse-server of the
// test's own (tests/clickhouse/server.sh, loopback, stopped by PID):
//
// - ClickHouse down and restarted while clients send: tracking keeps acking
//   (into each node's spool), the API answers 503 meanwhile, and once
//   ClickHouse is back every acknowledged event is there exactly once.
// - Nucleon killed (kill -9) between its insert and its ack, the client then
//   resending everything to another node: every event is stored once.
// - A user deleted, then the user's old batches resent (to both nodes): the
//   user stays deleted and nothing is counted again.
// - Two nodes on one ClickHouse give identical answers, an app created on one
//   is known to the other within a second.
// - Live across nodes: a device connected to one node is in the other's live
//   users within 2 s, with its events in the other's live events; it leaves
//   both once it disconnects, once its user is deleted through the other
//   node, and once its node is killed.
//
// Skipped when clickhouse-server is not installed (scripts/install-deps
// installs it).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { spawn } = require('node:child_process');
const path = require('node:path');
const { Server, tempDir, cli, sleep, logTail, scaled } = require('./lib/server');
const WebSocket = require('ws');
const { startClickHouse } = require('./lib/clickhouse');

const haveClickHouse = fs.existsSync(process.env.CLICKHOUSE_SERVER || '/usr/sbin/clickhouse-server');
const script = path.resolve(__dirname, '..', 'clickhouse', 'server.sh');
const T0 = Date.UTC(2026, 10, 20, 9, 0, 0);
const START = Math.floor(T0 / 1000) - 86400;
const END = START + 10 * 86400;

// Runs server.sh without blocking the event loop (requests stay in flight).
function serverScript(args) {
  return new Promise((resolve, reject) => {
    const p = spawn('bash', [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => p.kill('SIGKILL'), 60000);
    p.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(); else reject(new Error(`server.sh ${args[0]}: ${err}`));
    });
  });
}

function stopClickHouse(ch, { kill = false } = {}) {
  return serverScript(['stop', ch.dir, ...(kill ? ['KILL'] : [])]);
}

// Stops (or kills) the ClickHouse server and starts it again on its folder
// and port, as an operator's restart does.
async function restartClickHouse(ch, { kill = false, downMs = 0 } = {}) {
  await stopClickHouse(ch, { kill });
  await sleep(downMs);
  await serverScript(['start', ch.dir, new URL(ch.url).port]);
}

function storeArgs(ch, database) {
  return ['--store', 'clickhouse', '--clickhouse', ch.url, '--clickhouse-database', database];
}

// A batch of one device's session: an init and `n` events, ids unique per
// (device, session); `user` sends them.
function batch(device, session, user, n, from = 0) {
  const data = [];
  if (from === 0) {
    data.push({ type: 'init', id: `${session}-0`, deviceId: device, sessionId: session, userId: user,
      platform: 'linux', version: '1.0', date: T0 });
  }
  for (let i = Math.max(1, from); i <= from + n; i++) {
    data.push({ type: 'event', name: 'CLICK', id: `${session}-${i}`, deviceId: device, sessionId: session,
      userId: user, payload: { n: i }, date: T0 + i * 1000 });
  }
  return { data };
}

async function track(server, appId, body, { timeout = 5000 } = {}) {
  return server.request('POST', `/app/${appId}/track`, {
    body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, timeout,
  });
}

// A tracking WebSocket of one device (as the SDKs hold it): `send` resolves
// with the ack of one message.
async function trackingSocket(server, appId) {
  const ws = new WebSocket(`${server.endpoint}/app/${appId}/track`);
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const acks = [];
  ws.on('message', (m) => { const next = acks.shift(); if (next) next(JSON.parse(m.toString())); });
  return {
    send(data) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no ack within 10 s')), scaled(10000));
        acks.push((ack) => { clearTimeout(timer); resolve(ack); });
        ws.send(JSON.stringify({ data }));
      });
    },
    close() { ws.close(); },
  };
}

async function api(server, appId, token, rest) {
  return server.request('GET', `/api/v1/apps/${appId}/${rest}`, { headers: { authorization: token } });
}

// Polls `fn` until it returns true, at most `ms`.
async function eventually(fn, ms) {
  const deadline = Date.now() + scaled(ms);
  for (;;) {
    if (await fn()) return true;
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
}

const DAILY = `analytics?start=${START}&end=${END}`;

test('the ClickHouse backend under faults', { skip: !haveClickHouse && 'clickhouse-server is not installed' },
  async (t) => {
    const ch = await startClickHouse();
    const servers = [];
    t.after(async () => {
      for (const s of servers) await s.stop().catch(() => {});
      await ch.stop();
    });
    const database = 'faults';
    const dirA = tempDir('ch-node-a');
    const dirB = tempDir('ch-node-b');
    const cred = JSON.parse(cli(dirA, ['app', 'create', 'faults', ...storeArgs(ch, database)]).trim());
    const nodeA = new Server({ dataDir: dirA, args: [...storeArgs(ch, database), '--track-rate', '0', '--api-rate', '0'] });
    const nodeB = new Server({ dataDir: dirB, args: [...storeArgs(ch, database), '--track-rate', '0', '--api-rate', '0'] });
    servers.push(nodeA, nodeB);
    await nodeA.start();
    await nodeB.start();

    await t.test('two nodes answer alike; an app made on one is known to the other', async () => {
      const other = JSON.parse(cli(dirB, ['app', 'create', 'second', ...storeArgs(ch, database)]).trim());
      assert.ok(await eventually(async () => (await api(nodeA, other.appId, other.token, DAILY)).status === 200, 3000),
        'node A knows the app created through node B within the registry poll');
      const r = await track(nodeA, cred.appId, batch('d1', 's1', 'u1', 5));
      assert.equal(r.status, 200);
      const a = await api(nodeA, cred.appId, cred.token, DAILY);
      const b = await api(nodeB, cred.appId, cred.token, DAILY);
      assert.equal(a.status, 200);
      assert.equal(a.text, b.text, 'identical answers from both nodes');
      assert.equal(a.json.data.totalNumbers.users, 1);
    });

    await t.test('ClickHouse down: tracking acked, API 503, everything there once it is back', async (tt) => {
      await stopClickHouse(ch, { kill: true });
      // Acked while ClickHouse is down: into the nodes' spools.
      for (let i = 0; i < 5; i++) {
        const r = await track(i % 2 ? nodeB : nodeA, cred.appId, batch(`down-${i}`, `sd${i}`, `down-user-${i}`, 20));
        assert.equal(r.status, 200, `batch ${i} acked while ClickHouse is down: ${r.text}`);
        assert.equal(r.json.reportedIds.length, 21);
      }
      const during = await api(nodeA, cred.appId, cred.token, DAILY);
      assert.equal(during.status, 503, `the API answers 503 without ClickHouse, not ${during.status} ${during.text}`);
      assert.ok(during.json && typeof during.json.error === 'string', 'with a JSON error');
      await restartClickHouse(ch, { downMs: 500 });
      const ok = await eventually(async () => {
        const r = await api(nodeB, cred.appId, cred.token, DAILY);
        return r.status === 200 && r.json.data.totalNumbers.users === 6;
      }, 20000);
      if (!ok) { logTail(tt, nodeA); logTail(tt, nodeB); }
      assert.ok(ok, 'the spooled events reach ClickHouse once it is back');
      const users = await api(nodeA, cred.appId, cred.token, 'users/down-user-3');
      assert.equal(users.status, 200);
      assert.equal(users.json.sessions[0].actions, 21, 'each spooled event exactly once');
    });

    await t.test('ClickHouse restarted while clients send: every ack counts once', async () => {
      const sends = [];
      let acked = 0;
      const restart = sleep(300).then(() => restartClickHouse(ch, { downMs: 1000 }));
      for (let i = 0; i < 40; i++) {
        sends.push(track(i % 2 ? nodeA : nodeB, cred.appId, batch(`rs-${i}`, `rs${i}`, `rs-user-${i % 10}`, 10))
          .then((r) => { if (r.status === 200) acked++; }));
        await sleep(50);
      }
      await Promise.all(sends);
      await restart;
      assert.equal(acked, 40, 'every batch acked, ClickHouse or not');
      const ok = await eventually(async () => {
        const r = await api(nodeA, cred.appId, cred.token, `analytics/events?start=${START}&end=${END}`);
        if (r.status !== 200) return false;
        const day = new Date(T0).toISOString().slice(0, 10);
        // 5 CLICKs from the first test, 5 x 20 while down, 40 x 10 now.
        return (r.json.data.CLICK || {})[day] === 5 + 100 + 400;
      }, 20000);
      assert.ok(ok, 'every acknowledged event counted exactly once');
    });

    await t.test('a node killed between insert and ack; the client resends to the other node', async () => {
      const sent = [];
      for (let i = 0; i < 30; i++) sent.push(batch(`kill-${i}`, `k${i}`, 'kill-user', 10));
      // Batches in flight when node A dies: some were written and acked,
      // some written and never acked, some never written.
      const inflight = sent.map((b) => track(nodeA, cred.appId, b, { timeout: 3000 }).catch(() => null));
      await sleep(20);
      await nodeA.kill9();
      await Promise.all(inflight);
      // The SDK resends what it has no ack for; resending all is the worst case.
      for (const b of sent) assert.equal((await track(nodeB, cred.appId, b)).status, 200);
      // Node A comes back and forwards what its spool still holds.
      const restarted = new Server({ dataDir: dirA, port: nodeA.port, args: nodeA.args });
      servers.push(restarted);
      await restarted.start();
      const ok = await eventually(async () => {
        const r = await api(restarted, cred.appId, cred.token, 'users/kill-user');
        return r.status === 200 && r.json.sessions.length === 30 &&
          r.json.sessions.every((s) => s.actions === 11);
      }, 20000);
      const r = await api(restarted, cred.appId, cred.token, 'users/kill-user');
      const off = (r.json.sessions || []).filter((s) => s.actions !== 11).map((s) => `${s.session}:${s.actions}`);
      assert.ok(ok, `every session holds its 11 events exactly once: ${r.json.sessions.length} sessions, ` +
        `off: ${off.join(' ')}`);
      servers[0] = restarted;
    });

    await t.test('a deleted user stays deleted when its old batches are resent to any node', async () => {
      const a = servers[0];
      const old = [batch('del-d', 'del-s', 'del-user', 8), batch('del-d', 'del-s', 'del-user', 4, 8)];
      for (const b of old) assert.equal((await track(a, cred.appId, b)).status, 200);
      // Read through the node that took the batches (it answers once they are
      // in ClickHouse; another node may answer before they get there).
      const before = await api(a, cred.appId, cred.token, DAILY);
      const del = await a.request('DELETE', `/api/v1/apps/${cred.appId}/users/del-user`,
        { headers: { authorization: cred.token } });
      assert.equal(del.status, 204, del.text);
      // Gone from the other node's answers at once.
      assert.equal((await api(nodeB, cred.appId, cred.token, 'users/del-user')).status, 404);
      for (const b of old) {
        assert.equal((await track(a, cred.appId, b)).status, 200);
        assert.equal((await track(nodeB, cred.appId, b)).status, 200);
      }
      await sleep(500);
      assert.equal((await api(a, cred.appId, cred.token, 'users/del-user')).status, 404, 'not resurrected');
      const after = await api(nodeB, cred.appId, cred.token, DAILY);
      assert.equal(after.json.data.totalNumbers.users, before.json.data.totalNumbers.users - 1);
      const fromA = await api(a, cred.appId, cred.token, DAILY);
      assert.equal(fromA.text, after.text, 'both nodes agree after the delete');
    });

    await t.test('live users and events across nodes', async (tt) => {
      const a = servers[0];
      const liveDevices = async (node) => {
        const r = await api(node, cred.appId, cred.token, 'live/users');
        assert.equal(r.status, 200, r.text);
        return r.json.data.map((d) => d.deviceId).sort();
      };
      const init = (device, user) => ({ type: 'init', id: `${device}-0`, deviceId: device, sessionId: `${device}-s`,
        userId: user, platform: 'linux', version: '1.0', date: Date.now() });
      const event = (device, user, n) => ({ type: 'event', name: 'LIVE', id: `${device}-${n}`, deviceId: device,
        sessionId: `${device}-s`, userId: user, date: Date.now() });

      const onA = await trackingSocket(a, cred.appId);
      const onB = await trackingSocket(nodeB, cred.appId);
      assert.deepEqual((await onA.send([init('live-a', 'live-user-a'), event('live-a', 'live-user-a', 1)])).reportedIds,
        ['live-a-0', 'live-a-1']);
      const sentAt = Date.now();
      let seenAfter = null;
      const shown = await eventually(async () => {
        const ok = (await liveDevices(nodeB)).includes('live-a');
        if (ok) seenAfter = Date.now() - sentAt;
        return ok;
      }, 5000);
      if (!shown) { logTail(tt, a); logTail(tt, nodeB); }
      assert.ok(shown, 'a device on node A is in node B\'s live users');
      tt.diagnostic(`node B showed node A's device ${seenAfter} ms after its ack`);
      const users = await api(nodeB, cred.appId, cred.token, 'live/users');
      const row = users.json.data.find((d) => d.deviceId === 'live-a');
      assert.equal(row.userId, 'live-user-a');
      assert.equal(row.platform, 'linux');
      const events = await api(nodeB, cred.appId, cred.token, 'live/events');
      assert.equal(events.status, 200);
      assert.deepEqual(events.json.data.filter((e) => e.machine_id === 'live-a').map((e) => e.type).sort(),
        ['event', 'init'], 'node A\'s events are in node B\'s live events');

      await onB.send([init('live-b', 'live-user-b')]);
      assert.ok(await eventually(async () => {
        const [fromA, fromB] = [await liveDevices(a), await liveDevices(nodeB)];
        return fromA.join() === 'live-a,live-b' && fromB.join() === 'live-a,live-b';
      }, 5000), 'both nodes list both devices');
      const count = await api(a, cred.appId, cred.token, 'live/users/count');
      assert.equal(count.json.data, 2);

      // Deleted through node A: node B's own device of that user leaves both
      // lists, and comes back with its next activity.
      const del = await a.request('DELETE', `/api/v1/apps/${cred.appId}/users/live-user-b`,
        { headers: { authorization: cred.token } });
      assert.equal(del.status, 204, del.text);
      assert.deepEqual(await liveDevices(nodeB), ['live-a'], 'node B hides the user deleted through node A at once');
      assert.ok(await eventually(async () => (await liveDevices(a)).join() === 'live-a', 3000));
      await onB.send([event('live-b', 'live-user-b', 2)]);
      assert.ok(await eventually(async () => (await liveDevices(a)).includes('live-b'), 5000),
        'active again after the delete: live again');

      // Disconnected from node A: gone from node B too.
      onA.close();
      assert.ok(await eventually(async () => !(await liveDevices(nodeB)).includes('live-a'), 5000),
        'a closed device leaves the other node\'s list');

      // Node B killed: its devices leave node A's list within seconds.
      await nodeB.kill9();
      onB.close();
      assert.ok(await eventually(async () => (await liveDevices(a)).length === 0, 10000),
        'a killed node\'s devices leave the other nodes\' lists');
    });
  });

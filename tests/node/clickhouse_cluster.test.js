// Nucleon on a ClickHouse cluster of its own (tests/clickhouse/cluster.sh: two
// shards of two replicas and a ZooKeeper, loopback only, stopped by PID), with
// two `nucleon serve` nodes in front of it, as docs/scale-out.md describes:
//
// - Read your writes: a node answers with what it acknowledged just before,
//   whichever replica of a shard the read reaches.
// - One replica of shard 1 killed (kill -9): every answer is unchanged, on both
//   nodes, while tracking (into another app) goes on being acknowledged and
//   counted; the replica catches up when it is back.
// - Both replicas of shard 2 killed: tracking is still acknowledged (into the
//   nodes' spools), the API answers 503 with a JSON error (never a partial
//   answer, never a 500); once the shard is back, every acknowledged event is
//   there exactly once.
// - A user deleted on the cluster is gone on both nodes at once, and a resend
//   of its old batches to either node does not bring it back.
//
// Skipped when the cluster cannot run here (clickhouse-server, Java and
// Debian's zookeeper.jar are needed; scripts/install-deps installs them).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { Server, tempDir, cli, sleep, logTail, scaled, httpRequest } = require('./lib/server');
const { startClickHouseCluster, clusterAvailable } = require('./lib/clickhouse');

const DATABASE = 'cluster_e2e';
const T0 = Date.UTC(2026, 10, 20, 9, 0, 0);
const START = Math.floor(T0 / 1000) - 86400;
const END = START + 10 * 86400;
const RANGE = `start=${START}&end=${END}`;
// The event names sent, so that a count per name can be checked.
const NAMES = ['CLICK', 'SAVED', 'SHARED'];
// The replicated local tables whose rows the two replicas of a shard must
// both hold before an answer can be expected not to depend on the replica.
const LOCAL_TABLES = ['events_local', 'identities_local', 'heartbeats_local', 'deletions_local', 'session_resets_local'];

// The store flags of a node or CLI call; `urls` in the order it tries them.
function storeArgs(cl, urls = cl.urls) {
  return ['--store', 'clickhouse', '--clickhouse', urls.join(','), '--clickhouse-cluster', cl.cluster,
    '--clickhouse-database', DATABASE];
}

// How many of each name a session sends, different per user so that a lost
// or doubled batch shows in the counts.
function countsFor(i) {
  return { CLICK: 2 + (i % 3), SAVED: 1 + (i % 2), SHARED: i % 4 === 0 ? 1 : 0 };
}

// One device's session as one batch: an init, then the events of `counts`
// (name -> how many), ids unique per session, one second apart from `t`.
function sessionBatch({ user, device, session, t, counts }) {
  const data = [{ type: 'init', id: `${session}-0`, deviceId: device, sessionId: session, userId: user,
    platform: 'linux', version: '1.0', locale: 'en-US', date: t }];
  let i = 1;
  for (const name of NAMES) {
    for (let k = 0; k < (counts[name] || 0); k++, i++) {
      data.push({ type: 'event', name, id: `${session}-${i}`, deviceId: device, sessionId: session,
        userId: user, payload: { k }, date: t + i * 1000 });
    }
  }
  return { data };
}

async function track(server, appId, body) {
  return server.request('POST', `/app/${appId}/track`, {
    body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, timeout: 10000,
  });
}

// Sends a batch and checks the ack: HTTP 200 and every id reported, in order.
async function trackAcked(server, appId, body, what) {
  const r = await track(server, appId, body);
  assert.equal(r.status, 200, `${what}: acked, not ${r.status} ${r.text}`);
  assert.deepEqual(r.json.reportedIds, body.data.filter((e) => e.id !== undefined).map((e) => e.id),
    `${what}: every id reported`);
}

function api(server, appId, token, rest) {
  return server.request('GET', `/api/v1/apps/${appId}/${rest}`, { headers: { authorization: token } });
}

// Adds a batch's events to `sent` (name -> count).
function addSent(sent, body) {
  for (const e of body.data) if (e.type === 'event') sent[e.name] = (sent[e.name] || 0) + 1;
}

// The app's event counts per name over the whole range, as the API answers
// them (null when it does not answer 200).
async function countsOf(server, appId, token) {
  const r = await api(server, appId, token, `analytics/events?${RANGE}`);
  if (r.status !== 200) return null;
  const out = {};
  for (const [name, days] of Object.entries(r.json.data)) {
    out[name] = Object.values(days).reduce((a, b) => a + b, 0);
  }
  return out;
}

// Polls `fn` until it returns true, at most `ms` (stretched under sanitizers).
async function eventually(fn, ms) {
  const deadline = Date.now() + scaled(ms);
  for (;;) {
    if (await fn()) return true;
    if (Date.now() > deadline) return false;
    await sleep(200);
  }
}

// SQL straight to ClickHouse server n (1..4); the answer's text, or null when
// the server does not answer 200.
async function clickhouse(cl, n, sql) {
  const r = await httpRequest(Number(new URL(cl.urls[n - 1]).port), 'POST', '/', { body: sql, timeout: 10000 })
    .catch(() => null);
  return r && r.status === 200 ? r.text.trim() : null;
}

// True when both replicas of each shard hold the same number of rows in every
// one of Nucleon's replicated tables (a replica that was down has fetched
// what it missed).
async function replicasInSync(cl) {
  for (const table of LOCAL_TABLES) {
    const c = [];
    for (const n of [1, 2, 3, 4]) c.push(await clickhouse(cl, n, `SELECT count() FROM ${DATABASE}.${table}`));
    if (c.includes(null) || c[0] !== c[1] || c[2] !== c[3]) return false;
  }
  return true;
}

test('Nucleon on a ClickHouse cluster (2 shards x 2 replicas)',
  { skip: !clusterAvailable() && 'the ClickHouse cluster needs clickhouse-server, java and zookeeper.jar' },
  async (t) => {
    const cl = await startClickHouseCluster();
    const nodes = [];
    const dirA = tempDir('ch-cluster-a');
    const dirB = tempDir('ch-cluster-b');
    t.after(async () => {
      for (const s of nodes) await s.stop().catch(() => {});
      await cl.stop();
      // The nodes' folders hold only their spools, meaningless without the cluster.
      for (const d of [dirA, dirB]) fs.rmSync(d, { recursive: true, force: true });
    });
    const main = JSON.parse(cli(dirA, ['app', 'create', 'cluster-main', ...storeArgs(cl)]).trim());
    const busy = JSON.parse(cli(dirA, ['app', 'create', 'cluster-busy', ...storeArgs(cl)]).trim());
    const rate = ['--track-rate', '0', '--api-rate', '0'];
    // Node B tries the servers in another order: its first choice is server
    // 2, the replica the first fault kills, so its failover is exercised too.
    const [u1, u2, u3, u4] = cl.urls;
    const nodeA = new Server({ dataDir: dirA, args: [...storeArgs(cl), ...rate] });
    const nodeB = new Server({ dataDir: dirB, args: [...storeArgs(cl, [u2, u1, u4, u3]), ...rate] });
    nodes.push(nodeA, nodeB);
    await nodeA.start({ timeoutMs: 60000 });
    await nodeB.start({ timeoutMs: 60000 });
    const both = [nodeA, nodeB];
    const diagnose = (tt) => { logTail(tt, nodeA); logTail(tt, nodeB); };

    // What each app was sent (and acknowledged), per event name.
    const sentMain = {};
    const sentBusy = {};
    // The main app's users: u0..u11, one device and one session each, taking
    // turns between the nodes; 12 sessions spread over both shards (checked
    // below, since the shard follows a hash of the session).
    const baseline = [];
    for (let i = 0; i < 12; i++) {
      baseline.push(sessionBatch({ user: `u${i}`, device: `d${i}`, session: `s${i}`, t: T0 + i * 60000, counts: countsFor(i) }));
    }
    // The answers compared before and after each fault.
    const paths = [`analytics?${RANGE}`, `analytics/events?${RANGE}`, 'users?limit=1000', 'users/u0', 'users/u5',
      'users/u11', 'users/u5/session/s5?device=d5', 'users/u8/session/s8'];
    const snapshot = async (server) => {
      const out = {};
      for (const p of paths) {
        const r = await api(server, main.appId, main.token, p);
        out[p] = `${r.status} ${r.text}`;
      }
      return out;
    };

    await t.test('read your writes: a node answers with what it has just acknowledged', async (tt) => {
      // Each batch is read back at once through the node that acked it; the
      // read may reach either replica of the batch's shard.
      const misses = [];
      for (let i = 0; i < baseline.length; i++) {
        const node = both[i % 2];
        await trackAcked(node, main.appId, baseline[i], `batch of u${i}`);
        addSent(sentMain, baseline[i]);
        const user = await api(node, main.appId, main.token, `users/u${i}`);
        const actions = user.status === 200 ? user.json.sessions.map((s) => s.actions).join(',') : '';
        if (actions !== String(baseline[i].data.length)) misses.push(`users/u${i}: ${user.status} actions ${actions || '-'}`);
        const list = await api(node, main.appId, main.token, 'users?limit=1000');
        if (list.status !== 200 || list.json.total !== i + 1) {
          misses.push(`users after u${i}: ${list.status} total ${list.json && list.json.total}, expected ${i + 1}`);
        }
      }
      if (misses.length) diagnose(tt);
      assert.deepEqual(misses, [], 'every read after an ack sees the acknowledged events');
    });

    // From here on the baseline is settled: every replica holds every row.
    const settled = await eventually(() => replicasInSync(cl), 30000);
    assert.ok(settled, 'the replicas of each shard hold the same rows');
    const rows = [];
    for (const n of [1, 3]) rows.push(Number(await clickhouse(cl, n, `SELECT count() FROM ${DATABASE}.events_local`)));
    assert.ok(rows[0] > 0 && rows[1] > 0, `both shards hold some of the events (${rows.join(' and ')})`);
    assert.deepEqual(await countsOf(nodeA, main.appId, main.token), sentMain, 'every baseline event counted once');
    const before = await snapshot(nodeA);
    assert.deepEqual(await snapshot(nodeB), before, 'both nodes answer alike');
    for (const p of paths) assert.match(before[p], /^200 /, `${p} answers 200`);

    await t.test('one replica of shard 1 killed: answers unchanged, tracking acked', async (tt) => {
      await cl.kill(2);
      try {
        // Tracking into the busy app goes on; the main app's answers must not move.
        for (let i = 0; i < 10; i++) {
          const body = sessionBatch({ user: `b${i}`, device: `bd${i}`, session: `bs${i}`, t: T0 + i * 1000, counts: countsFor(i) });
          await trackAcked(both[i % 2], busy.appId, body, `busy batch ${i} with server 2 down`);
          addSent(sentBusy, body);
          if (i % 3 === 0) {
            for (const node of both) {
              assert.deepEqual(await snapshot(node), before, `node on port ${node.port}: answers unchanged with server 2 down`);
            }
          }
        }
        for (const node of both) {
          assert.deepEqual(await countsOf(node, busy.appId, busy.token), sentBusy,
            `node on port ${node.port}: every event tracked with server 2 down is counted once`);
        }
      } catch (e) {
        diagnose(tt);
        throw e;
      } finally {
        // The replica comes back and fetches from its peer what it missed.
        await cl.restart(2);
      }
      assert.ok(await eventually(() => replicasInSync(cl), 60000), 'server 2 caught up with its peer');
      for (const node of both) {
        assert.deepEqual(await snapshot(node), before, `node on port ${node.port}: answers unchanged after the restart`);
        assert.deepEqual(await countsOf(node, busy.appId, busy.token), sentBusy,
          `node on port ${node.port}: the busy app's events once each after the restart`);
      }
    });

    await t.test('both replicas of shard 2 killed: tracking acked, API 503, every event there once it is back', async (tt) => {
      await Promise.all([cl.kill(3), cl.kill(4)]);
      const sentDown = [];
      try {
        // Reads: 503 with a JSON error, before and after batches are spooled.
        const checkReads = async (when) => {
          for (const node of both) {
            for (const p of [`analytics?${RANGE}`, 'users?limit=1000', 'users/u0', 'users/u5/session/s5?device=d5']) {
              const r = await api(node, main.appId, main.token, p);
              assert.equal(r.status, 503, `${when}, node on port ${node.port}: ${p} answers 503, not ${r.status} ${r.text.slice(0, 300)}`);
              assert.ok(r.json && typeof r.json.error === 'string', `${when}: ${p} carries a JSON error: ${r.text.slice(0, 300)}`);
              assert.ok(r.headers['retry-after'], `${when}: ${p} carries Retry-After`);
            }
          }
        };
        await checkReads('shard 2 down');
        for (let i = 0; i < 10; i++) {
          const body = sessionBatch({ user: `down${i}`, device: `dd${i}`, session: `ds${i}`, t: T0 + 3600000 + i * 60000,
            counts: countsFor(i + 1) });
          await trackAcked(both[i % 2], main.appId, body, `batch ${i} with shard 2 down`);
          sentDown.push(body);
        }
        await checkReads('shard 2 down, batches spooled');
      } catch (e) {
        diagnose(tt);
        throw e;
      } finally {
        await Promise.all([cl.restart(3), cl.restart(4)]);
      }
      for (const body of sentDown) addSent(sentMain, body);
      let last = null;
      const ok = await eventually(async () => {
        last = [await countsOf(nodeA, main.appId, main.token), await countsOf(nodeB, main.appId, main.token)];
        return last.every((c) => c !== null && NAMES.every((n) => (c[n] || 0) === (sentMain[n] || 0)));
      }, 90000);
      if (!ok) diagnose(tt);
      assert.ok(ok, `every acked event there once the shard is back: sent ${JSON.stringify(sentMain)}, ` +
        `counted ${JSON.stringify(last)}`);
      // Exactly once, session by session.
      for (let i = 0; i < sentDown.length; i++) {
        const r = await api(both[(i + 1) % 2], main.appId, main.token, `users/down${i}`);
        assert.equal(r.status, 200, `users/down${i}: ${r.text}`);
        assert.deepEqual(r.json.sessions.map((s) => s.actions), [sentDown[i].data.length], `down${i}: each event once`);
      }
      const list = await api(nodeA, main.appId, main.token, 'users?limit=1000');
      assert.equal(list.json.total, 22, '12 users before, 10 while shard 2 was down');
    });

    await t.test('a user deleted on the cluster stays deleted on both nodes', async (tt) => {
      const victim = 4;
      const old = baseline[victim];
      const beforeCounts = await countsOf(nodeA, main.appId, main.token);
      const beforeTotal = (await api(nodeA, main.appId, main.token, 'users?limit=1000')).json.total;
      const del = await nodeA.request('DELETE', `/api/v1/apps/${main.appId}/users/u${victim}`,
        { headers: { authorization: main.token } });
      assert.equal(del.status, 204, `DELETE answers 204, not ${del.status} ${del.text}`);
      assert.equal(del.text, '', 'with an empty body');
      const expected = { ...beforeCounts };
      for (const e of old.data) if (e.type === 'event') expected[e.name] -= 1;
      for (const name of Object.keys(expected)) if (expected[name] === 0) delete expected[name];
      const check = async (when) => {
        for (const node of both) {
          const r = await api(node, main.appId, main.token, `users/u${victim}`);
          assert.equal(r.status, 404, `${when}, node on port ${node.port}: the user is 404, not ${r.status} ${r.text.slice(0, 300)}`);
          assert.deepEqual(await countsOf(node, main.appId, main.token), expected, `${when}: its events left the counts`);
          const list = await api(node, main.appId, main.token, 'users?limit=1000');
          assert.equal(list.json.total, beforeTotal - 1, `${when}: one user fewer`);
        }
      };
      try {
        await check('right after the delete');
        // The user's old batch arrives again at both nodes (a device that
        // never got the ack): acked, and dropped.
        for (const node of both) await trackAcked(node, main.appId, old, `resend to the node on port ${node.port}`);
        await check('after the resends');
        assert.deepEqual(await snapshot(nodeA), await snapshot(nodeB), 'both nodes agree after the delete');
      } catch (e) {
        diagnose(tt);
        throw e;
      }
    });
  });

// Data lifecycle: `nucleon export` holds every field an SDK sent (with session
// ends and deleted users' tombstones); importing it into an empty folder
// answers every question as the original did, and importing it again stores
// nothing; the API export needs the token, honours its range, gzips, and
// streams a large app in bounded memory (the server's resident memory is
// printed, not asserted); `nucleon backup` taken while a load runs gives a
// folder that serves the state at the moment of the backup.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const zlib = require('node:zlib');
const { Server, binary, cli, createApp, tempDir, scaled, timeoutScale } = require('./lib/server');
const { T0, history, track, questions } = require('./lib/rich_history');
const geo = require('./fixtures/geo_addresses.json');

const haveGeo = fs.existsSync('/usr/share/tor/geoip') && fs.existsSync('/usr/share/tor/geoip6');
// A million events (fewer under a sanitizer, which is several times slower).
const kLargeEvents = Number(process.env.NUCLEON_EXPORT_EVENTS) || (timeoutScale > 1 ? 200000 : 1000000);
const fast = ['--api-rate', '0', '--track-rate', '0'];

const records = (text) => text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));

// Events without an id (stored each time they come), string ids, ISO dates and
// the fields only some SDKs send.
function extras() {
  const base = { deviceId: 'dev-x', sessionId: 'sx', anonId: 'anon-x' };
  return {
    data: [
      { type: 'init', id: 's-1', date: new Date(T0 + 3600000).toISOString(), ...base, platform: 'linux',
        osVersion: '6.1', version: '2.0', locale: 'en', arch: 'arm64', totalRam: 16.5,
        moduleVersion: '4.0.1', client: 'nucleus-js', payload: { a: 1, nested: { b: [1, 2] } } },
      { type: 'event', name: 'NOID', date: T0 + 3600500, ...base, payload: { k: 'v' } },
      { type: 'event', name: 'NOID', date: T0 + 3600500, ...base, payload: { k: 'v' } },
      { type: 'nucleus:view', name: '/home', id: 's-2', date: T0 + 3601000, ...base },
    ],
  };
}

async function fill(server, cred) {
  const sent = [];
  const messages = [...history(11), extras()];
  for (const [i, m] of messages.entries()) {
    const headers = haveGeo ? { 'x-forwarded-for': geo.addresses[i % geo.addresses.length].ip } : {};
    await track(server, cred.appId, m, headers);
    for (const item of m.data) {
      if (item.type !== 'heartbeat') sent.push({ ...item, country: haveGeo ? geo.addresses[i % geo.addresses.length].country : undefined });
    }
  }
  const del = await server.request('DELETE', `/api/v1/apps/${cred.appId}/users/user-3`,
    { headers: { authorization: cred.token } });
  assert.equal(del.status, 204, del.text);
  return { messages, sent: sent.filter((e) => e.userId !== 'user-3') };
}

test('export holds every field sent; export -> import answers the same; a second import stores nothing', { timeout: 300000 }, async (t) => {
  const dir = tempDir('lifecycle-src');
  const cred = createApp(dir, 'lifecycle');
  const original = new Server({ dataDir: dir, args: [...fast, '--trust-proxy', '127.0.0.0/8'] });
  await original.start();
  t.after(() => original.stop());
  const { messages, sent } = await fill(original, cred);
  const before = await questions(original, cred);

  // Exported while the server runs.
  const text = cli(dir, ['export', cred.appId]);
  const out = records(text);
  const events = out.filter((r) => r.type !== 'heartbeat' && r.type !== 'tombstone');
  assert.equal(events.length, sent.length, 'one record per stored event');
  for (const s of sent) {
    const r = events.find((e) => e.deviceId === s.deviceId && e.sessionId === `${s.sessionId}` &&
      e.type === s.type && (s.id === undefined ? e.id === undefined : e.id === s.id) &&
      e.name === (s.type === 'init' || s.type === 'props' || s.type === 'userid' ? undefined : s.name));
    assert.ok(r, `exported: ${JSON.stringify(s)}`);
    assert.equal(r.time, new Date(s.date).toISOString());
    // The date as sent where the store keeps it, else the identity it is part of.
    if (r.date !== undefined) assert.deepEqual(r.date, s.date, 'the date as sent');
    else if (s.id !== undefined) assert.match(r.ident, /^-?\d+$/, 'the identity hash');
    for (const f of ['platform', 'osVersion', 'locale', 'version', 'arch', 'totalRam', 'moduleVersion', 'client', 'anonId', 'country']) {
      assert.equal(r[f], s[f], `${f} of ${JSON.stringify(s)}`);
    }
    assert.deepEqual(r.payload, s.payload || {});
    assert.equal(r.userId, s.userId || s.anonId || s.deviceId);
    assert.equal(r.identified, s.userId ? true : undefined);
    if (s.type === 'error') assert.match(r.errorHash, /^[0-9a-f]+$/);
  }
  const sessions = (rs) => [...new Set(rs.map((r) => `${r.deviceId}/${r.sessionId}`))].sort();
  assert.deepEqual(sessions(out.filter((r) => r.type === 'heartbeat')), sessions(events), 'a session end per session');
  assert.ok(out.some((r) => r.type === 'tombstone'), 'the deleted user\'s tombstones');

  // CSV: the documented columns, a row per record.
  const csv = cli(dir, ['export', cred.appId, '--format', 'csv']).split('\n').filter((l) => l !== '');
  assert.equal(csv[0], 'type,name,id,deviceId,sessionId,userId,time,payload,date,ident,identified,anonId,platform,'
    + 'osVersion,locale,version,moduleVersion,arch,client,country,totalRam,errorHash,hash');
  assert.equal(csv.filter((l) => /^(init|event|error|userid|props|nucleus:view|heartbeat|tombstone),/.test(l)).length, out.length);

  // Into an empty folder: the app is created with its id and a new token.
  const file = path.join(tempDir('lifecycle-file'), 'export.ndjson');
  fs.writeFileSync(file, text);
  const copy = tempDir('lifecycle-copy');
  const first = JSON.parse(cli(copy, ['import', cred.appId, file], { timeout: 120000 }));
  assert.equal(first.stored, events.length);
  assert.equal(first.already, 0);
  assert.ok(first.tombstones > 0);
  assert.equal(first.appId, cred.appId);
  const second = JSON.parse(cli(copy, ['import', cred.appId, file], { timeout: 120000 }));
  assert.equal(second.stored, 0, 'the second import stores nothing');
  assert.equal(second.already, events.length);
  assert.equal(second.token, undefined, 'the app exists now');

  const restored = new Server({ dataDir: copy, args: fast });
  await restored.start();
  t.after(() => restored.stop());
  const after = await questions(restored, { appId: cred.appId, token: first.token });
  assert.deepEqual(Object.keys(after).sort(), Object.keys(before).sort());
  for (const p of Object.keys(before)) assert.equal(after[p], before[p], `GET ${p}`);
  // The export of the copy is the export of the original.
  const again = cli(copy, ['export', cred.appId]).split('\n');
  const lines = text.split('\n');
  const at = lines.findIndex((l, i) => l !== again[i]);
  assert.equal(at, -1, `line ${at + 1} of the copy's export:\n  ${again[at]}\nthe original's:\n  ${lines[at]}`);
  assert.equal(again.length, lines.length);

  // A deleted user's late resend stays dropped in the copy.
  for (const m of messages.filter((x) => x.data.some((i) => i.userId === 'user-3'))) {
    await track(restored, cred.appId, m);
  }
  const gone = await restored.request('GET', `/api/v1/apps/${cred.appId}/users/user-3`,
    { headers: { authorization: first.token } });
  assert.equal(gone.status, 404, 'not brought back by a resend after the import');
});

// `count` events over 100 days as export records, written to `file`.
function writeLargeExport(file, count) {
  const fd = fs.openSync(file, 'w');
  const day0 = Date.UTC(2025, 0, 1);
  let lines = [];
  for (let i = 0; i < count; i++) {
    const device = `d${i % 5000}`;
    const session = `${i % 20000}`;
    const time = new Date(day0 + Math.floor(i / count * 100 * 86400000)).toISOString();
    lines.push(i % 20000 === i ? JSON.stringify({ type: 'init', id: i, deviceId: device, sessionId: session, userId: device, time, payload: {}, platform: 'linux' })
      : JSON.stringify({ type: 'event', name: `E${i % 7}`, id: i, deviceId: device, sessionId: session, userId: device, time, payload: { n: i % 13 } }));
    if (lines.length === 10000) {
      fs.writeSync(fd, `${lines.join('\n')}\n`);
      lines = [];
    }
  }
  if (lines.length) fs.writeSync(fd, `${lines.join('\n')}\n`);
  fs.closeSync(fd);
  return { from: Math.floor(day0 / 1000) + 10 * 86400, to: Math.floor(day0 / 1000) + 20 * 86400 - 1, day0 };
}

const rssKb = (pid) => Number((/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8')) || [])[1] || 0);

// GET that counts lines and bytes without keeping the body.
function streamGet(port, pathName, headers) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: pathName, headers, timeout: scaled(300000) }, (res) => {
      let lines = 0;
      let bytes = 0;
      res.on('data', (c) => {
        bytes += c.length;
        for (let i = c.indexOf(10); i !== -1; i = c.indexOf(10, i + 1)) lines++;
      });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, lines, bytes, complete: res.complete }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

test('the API export needs the token, honours the range, gzips and streams a large app', { timeout: 600000 }, async (t) => {
  const dir = tempDir('lifecycle-large');
  const file = path.join(dir, 'large.ndjson');
  const appId = 'a1b2c3d4e5f6a1b2c3d4e5f6';
  const { from, to, day0 } = writeLargeExport(file, kLargeEvents);
  let started = Date.now();
  const imported = JSON.parse(cli(dir, ['import', appId, file], { timeout: 600000 }));
  fs.unlinkSync(file);
  t.diagnostic(`imported ${imported.stored} events in ${Date.now() - started} ms`);
  assert.equal(imported.stored, kLargeEvents);
  const token = imported.token;
  const other = createApp(dir, 'other');

  const server = new Server({ dataDir: dir, args: fast });
  await server.start();
  t.after(() => server.stop());
  const base = `/api/v1/apps/${appId}/export`;
  assert.equal((await server.request('GET', base)).status, 401, 'no token');
  assert.equal((await server.request('GET', base, { headers: { authorization: 'nct_wrong' } })).status, 401);
  assert.equal((await server.request('GET', base, { headers: { authorization: other.token } })).status, 404,
    'a token of another app');
  assert.equal((await server.request('GET', `${base}?format=xml`, { headers: { authorization: token } })).status, 400);

  // The range: every event within it, and exactly those.
  const ranged = await server.request('GET', `${base}?start=${from}&end=${to}`, { headers: { authorization: token }, timeout: 120000 });
  assert.equal(ranged.status, 200);
  assert.match(ranged.headers['content-type'], /ndjson/);
  const got = records(ranged.text).filter((r) => r.type !== 'heartbeat');
  const inRange = (i) => { const ms = day0 + Math.floor(i / kLargeEvents * 100 * 86400000); return ms >= from * 1000 && ms <= to * 1000 + 999; };
  let expected = 0;
  for (let i = 0; i < kLargeEvents; i++) if (inRange(i)) expected++;
  assert.equal(got.length, expected);
  for (const r of got) assert.ok(Date.parse(r.time) >= from * 1000 && Date.parse(r.time) <= to * 1000 + 999, r.time);

  // Gzip when accepted: the same bytes once inflated.
  const zipped = await new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: server.port, path: `${base}?start=${from}&end=${to}`,
      headers: { authorization: token, 'accept-encoding': 'gzip' } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ headers: res.headers, body: Buffer.concat(chunks) }));
    }).on('error', reject);
  });
  assert.equal(zipped.headers['content-encoding'], 'gzip');
  assert.equal(zlib.gunzipSync(zipped.body).toString('utf8'), ranged.text);

  // Everything, streamed: the server's memory is sampled while it sends.
  const idle = rssKb(server.proc.pid);
  let peak = idle;
  const sampler = setInterval(() => { peak = Math.max(peak, rssKb(server.proc.pid)); }, 20);
  started = Date.now();
  const all = await streamGet(server.port, base, { authorization: token });
  clearInterval(sampler);
  assert.equal(all.status, 200);
  assert.equal(all.headers['transfer-encoding'], 'chunked');
  assert.ok(all.complete);
  assert.ok(all.lines >= kLargeEvents, `${all.lines} lines`);

  const report = `API export of ${kLargeEvents} events: ${all.lines} lines, ${(all.bytes / 1048576).toFixed(1)} MiB in ${Date.now() - started} ms; server RSS ${(idle / 1024).toFixed(1)} MiB before, peak ${(peak / 1024).toFixed(1)} MiB while streaming`;
  t.diagnostic(report);

  // A reader that goes away mid-stream stops the export; the server goes on.
  const partial = (onFirstData) => new Promise((resolve) => {
    let lines = 0;
    const req = http.get({ host: '127.0.0.1', port: server.port, path: base, headers: { authorization: token } }, (res) => {
      let first = true;
      res.on('data', (c) => {
        for (let i = c.indexOf(10); i !== -1; i = c.indexOf(10, i + 1)) lines++;
        if (first) { first = false; onFirstData(req); }
      });
      res.on('close', () => resolve({ complete: res.complete, lines }));
      res.on('error', () => resolve({ complete: false, lines }));
    });
    req.on('error', () => resolve({ complete: false, lines }));
  });
  assert.equal((await partial((req) => req.destroy())).complete, false);
  assert.equal((await server.request('GET', '/healthz')).status, 200);
  // Stopping the server mid-stream: the answer ends within the shutdown's
  // grace, whole or cut (then without its last chunk, so never complete-looking),
  // and the server exits cleanly.
  let stopped;
  const during = await partial(() => { stopped = server.stop(); });
  if (during.complete) assert.equal(during.lines, all.lines, 'a complete answer is the whole export');
  t.diagnostic(`stopped mid-stream: ${during.complete ? 'finished within the grace' : `cut after ${during.lines} lines`}`);
  assert.equal((await stopped).code, 0);
});

test('a backup taken while a load runs serves the state at the backup', { timeout: 300000 }, async (t) => {
  const dir = tempDir('lifecycle-live');
  const cred = createApp(dir, 'busy');
  const server = new Server({ dataDir: dir, args: fast });
  await server.start();
  t.after(() => server.stop());
  const load = history(5, 150).filter((m) => m.data[0].type !== 'heartbeat');
  const dest = path.join(tempDir('lifecycle-backup'), 'copy');

  // The load runs; the backup starts after a third of it and runs beside it.
  let backup = null;
  let sentWhenStarted = 0;
  for (const [i, m] of load.entries()) {
    if (i === Math.floor(load.length / 3)) {
      sentWhenStarted = i;
      backup = new Promise((resolve, reject) => {
        const p = spawn(binary, ['backup', dest, '--data', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
        let err = '';
        p.stderr.on('data', (d) => { err += d; });
        p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`backup exit ${code}: ${err}`))));
      });
    }
    await track(server, cred.appId, m);
  }
  await backup;
  t.diagnostic(`backup started after ${sentWhenStarted} of ${load.length} messages`);

  // The copy holds exactly the messages acked before some moment: a prefix.
  const ids = new Set(records(cli(dest, ['export', cred.appId])).filter((r) => r.id !== undefined).map((r) => r.id));
  const held = load.map((m) => m.data.filter((e) => ids.has(e.id)).length);
  const k = held.findIndex((n, i) => n !== load[i].data.length);
  const prefix = k === -1 ? load.length : k;
  assert.ok(held.slice(prefix).every((n) => n === 0), 'each message whole or not at all, in the order acked');
  assert.ok(prefix >= sentWhenStarted, `the copy holds ${prefix} messages, ${sentWhenStarted} were acked before it started`);
  t.diagnostic(`the backup holds ${prefix} of ${load.length} messages`);

  // Served, it answers as a folder that received exactly those messages (as
  // the SDK sent them, imported in the raw batch format).
  const copy = new Server({ dataDir: dest, args: fast });
  await copy.start();
  t.after(() => copy.stop());
  const replayDir = tempDir('lifecycle-replay');
  const batches = path.join(replayDir, 'batches.ndjson');
  fs.writeFileSync(batches, load.slice(0, prefix).map((m) => `${JSON.stringify(m)}\n`).join(''));
  const replayed = JSON.parse(cli(replayDir, ['import', cred.appId, batches], { timeout: 120000 }));
  const reference = new Server({ dataDir: replayDir, args: fast });
  await reference.start();
  t.after(() => reference.stop());
  const want = await questions(reference, { appId: cred.appId, token: replayed.token });
  const got = await questions(copy, cred);
  assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort());
  for (const p of Object.keys(want)) assert.equal(got[p], want[p], `GET ${p}`);

  // A backup never overwrites.
  assert.throws(() => cli(dir, ['backup', dest]), /exists/);
});

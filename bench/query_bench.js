#!/usr/bin/env node
// Query benchmark, part 2: latency of every API v1 read endpoint over a loaded
// dataset (see query_dataset.js), with live traffic running; start-up and
// cold latency after a restart; user deletes under a tracking load.
//
//   node bench/query_bench.js measure --url http://127.0.0.1:PORT --app APP --token TOKEN \
//        --meta META.json [--n 50] [--offsets 0,330,-300] [--range-days 30] \
//        [--live 200] [--live-warmup 6] [--budget 90] [--scaling 1] [--out RESULTS.json]
//   node bench/query_bench.js ready --url ... --app APP --token TOKEN --t0-ms MS [--timeout 600]
//   node bench/query_bench.js cold --url ... --app APP --token TOKEN --t0-ms MS --meta META.json \
//        --results RESULTS.json [--round 0] [--pid PID]
//   node bench/query_bench.js deletes --url ... --app APP --token TOKEN --app2 APP2 --meta META.json \
//        [--k 20] [--rate 2000] [--ws 20] [--quiet 20] [--after-max 120] [--pid PID] [--out DELETES.json]
//   node bench/query_bench.js summary --notes NOTES.jsonl --meta META.json [--results RESULTS.json] \
//        [--deletes DELETES.json] [--out SUMMARY.json]
//
// measure:
//   1. checks: totals over the dataset's range (up to when it was loaded) against what the generator sent
//      (users, installs, app starts, events per name, errors per name, users
//      total; less what the users deleted by earlier runs on the folder
//      took with them); mismatches are reported, not fatal;
//   2. live traffic: --live devices from the dataset connect over the tracking
//      WebSocket (as the SDKs do): 75 % start a session (init) and send events
//      every few seconds, 25 % only send heartbeats; they run during step 3;
//   3. latency: every endpoint --n times (the /analytics ones --n times per
//      utcOffset, with start/end the last --range-days days ending now), after
//      3 unmeasured warm-up requests, sequentially on one keep-alive connection,
//      timed from sending the request to the last byte of the response; an
//      endpoint stops early after --budget seconds;
//   4. scaling (with --scaling 1): p50 of the range endpoints over 1/7/30/90-day
//      ranges, bucket-aligned or not, and of the users list by page and limit,
//      and of user details by the user's number of sessions: cheap profile
//      evidence of what the cost grows with.
//   Prints the tables and writes everything to --out (with the users and
//   sessions `cold` asks for).
// ready: the start-up times of a server started at --t0-ms: to its first
//   HTTP answer of any status, to /healthz 200, and to the first 200 of the
//   30-day daily analytics ("ready"); one JSON line.
// cold: the same start-up times, then the first request to every endpoint of
//   `measure` after the start (its latency is the cold one); one JSON line.
// deletes: deletes --k users (from the generator's delete candidates)
//   one after the other while a tracking load of --rate events/s runs over
//   HTTP and WebSocket for two apps; times the deletes and the tracking acks
//   before, during and after them; checks the users are gone; records them in
//   the meta file.
// summary: the start-up, memory, disk, warm/cold and delete sections of the
//   report, from what run_query.sh noted; writes them as one JSON object for
//   scale_table.js.
// profile --results RESULTS.json --pid PID [--seconds 8] [--all] [--dir TMP]:
//   for each endpoint of a measure run that missed its target (every endpoint
//   with --all), records the server with `perf record` while requesting that
//   endpoint in a loop and prints the top symbols and source lines.
'use strict';

const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const { mulberry32 } = require('./query_dataset');

let WebSocket = null;
function loadWs() {
  if (WebSocket) return WebSocket;
  const candidates = [path.join(__dirname, '..', 'tests', 'node', 'node_modules', 'ws'), 'ws'];
  for (const c of candidates) {
    try { WebSocket = require(c); return WebSocket; } catch (_) { /* next */ }
  }
  throw new Error('the ws package is needed for live traffic: run `make node-deps` (tests/node/node_modules/ws)');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (s) => process.stderr.write(`query_bench: ${s}\n`);

// ---------------------------------------------------------------- HTTP

class Client {
  constructor(base, token) {
    this.base = base.replace(/\/$/, '');
    this.token = token;
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }
  // {status, ms, bytes, text, headers}; ms from the request to the last byte.
  get(p, opts) { return this.request('GET', p, opts); }
  request(method, p, { timeoutMs = 60000, auth = true } = {}) {
    return new Promise((resolve, reject) => {
      const headers = auth ? { authorization: this.token } : {};
      const t0 = process.hrtime.bigint();
      const req = http.request(this.base + p, { method, agent: this.agent, headers }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const ms = Number(process.hrtime.bigint() - t0) / 1e6;
          const buf = Buffer.concat(chunks);
          resolve({ status: res.statusCode, ms, bytes: buf.length, text: buf.toString('utf8'), headers: res.headers });
        });
        res.on('error', reject);
      });
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms: GET ${p}`)));
      req.on('error', reject);
      req.end();
    });
  }
  async json(p, opts) {
    const r = await this.get(p, opts);
    if (r.status !== 200) throw new Error(`GET ${p}: HTTP ${r.status} ${r.text.slice(0, 200)}`);
    return JSON.parse(r.text);
  }
  close() { this.agent.destroy(); }
}

function quantile(sorted, q) {
  if (sorted.length === 0) return NaN;
  // nearest-rank
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

function summarize(ms) {
  const s = [...ms].sort((a, b) => a - b);
  return {
    n: s.length,
    p50: quantile(s, 0.5),
    p95: quantile(s, 0.95),
    p99: quantile(s, 0.99),
    max: s.length ? s[s.length - 1] : NaN,
    mean: s.length ? s.reduce((a, b) => a + b, 0) / s.length : NaN,
  };
}

// ---------------------------------------------------------------- live traffic

// One tracking event of device d as its SDK sends it (4.x or 3.x), dated now.
function trackingEvent(d, app, type, name, payload, withContext, id) {
  const now = Date.now();
  const e = { type };
  if (d.sdk === 4) {
    if (name !== undefined) e.name = name;
    e.id = id;
    e.date = now;
    e.sessionId = d.session;
    if (d.userId) e.userId = d.userId;
    e.anonId = d.anonId;
    e.deviceId = d.deviceId;
    if (withContext) Object.assign(e, { client: 'js', platform: d.platform, osVersion: d.osVersion, locale: d.locale, version: d.version, moduleVersion: '4.0.3' });
  } else {
    e.name = name === undefined ? null : name;
    e.date = new Date(now).toISOString();
    e.appId = app;
    e.id = id;
    e.userId = d.userId;
    e.machineId = d.deviceId;
    e.sessionId = d.session;
    if (withContext) Object.assign(e, { client: 'nodejs', platform: d.platform, osVersion: d.osVersion, totalRam: d.ram, version: d.version, locale: d.locale, arch: d.arch, moduleVersion: '3.0.9' });
  }
  if (payload) e.payload = payload;
  return e;
}

class LiveSim {
  constructor(base, app, devices, count, seed) {
    this.url = base.replace(/^http/, 'ws').replace(/\/$/, '') + `/app/${encodeURIComponent(app)}/track`;
    this.app = app;
    this.devices = devices.slice(0, count);
    this.rand = mulberry32(seed);
    this.sockets = [];
    this.timers = [];
    this.stopped = false;
    this.stats = { connected: 0, messages: 0, events: 0, heartbeats: 0, acks: 0, errors: 0, closes: 0 };
    this.names = [['PLAYED_TRACK', 'trackName', 'Track '], ['ITEM_SAVED', 'format', 'fmt'], ['SEARCH', 'query', 'q '],
      ['ITEM_OPENED', 'source', 'src-'], ['FILE_EXPORTED', 'format', 'fmt'], ['LIVE_PING', 'screen', 'screen.']];
    this.nextSession = 1000001;
    this.nextId = 1;
  }

  event(d, type, name, payload, withContext) {
    return trackingEvent(d, this.app, type, name, payload, withContext, this.nextId++);
  }

  heartbeat(d) {
    if (d.sdk === 4) {
      const h = { type: 'heartbeat', sessionId: d.session, deviceId: d.deviceId, anonId: d.anonId };
      if (d.userId) h.userId = d.userId;
      return h;
    }
    return { type: 'heartbeat', machineId: d.deviceId };
  }

  send(ws, items) {
    if (ws.readyState !== 1) return;
    ws.send(JSON.stringify({ data: items }));
    this.stats.messages++;
  }

  tick(ws, d) {
    if (this.stopped) return;
    if (d.active && this.rand() < 0.6) {
      const k = 1 + Math.floor(this.rand() * 3);
      const items = [];
      for (let i = 0; i < k; i++) {
        const [name, key, prefix] = this.names[Math.floor(this.rand() * this.rand() * this.names.length)];
        items.push(this.event(d, 'event', name, { [key]: prefix + Math.floor(this.rand() * this.rand() * 200) }, false));
      }
      this.stats.events += k;
      this.send(ws, items);
    } else {
      this.stats.heartbeats++;
      this.send(ws, [this.heartbeat(d)]);
    }
    const every = d.active ? 3000 + this.rand() * 4000 : 15000 + this.rand() * 10000;
    const t = setTimeout(() => this.tick(ws, d), every);
    this.timers.push(t);
  }

  async start() {
    const W = loadWs();
    const opened = [];
    for (let i = 0; i < this.devices.length; i++) {
      const d = { ...this.devices[i], session: this.nextSession++, active: this.rand() < 0.75 };
      const ws = new W(this.url, { perMessageDeflate: true, handshakeTimeout: 10000 });
      this.sockets.push(ws);
      ws.on('message', () => { this.stats.acks++; });
      ws.on('error', () => { this.stats.errors++; });
      ws.on('close', () => { this.stats.closes++; });
      opened.push(new Promise((resolve) => {
        ws.on('open', () => {
          this.stats.connected++;
          if (d.active) {
            this.send(ws, [this.event(d, 'init', undefined, { plan: 'pro' }, true)]);
            this.stats.events++;
          } else {
            this.send(ws, [this.heartbeat(d)]);
            this.stats.heartbeats++;
          }
          const t = setTimeout(() => this.tick(ws, d), 1000 + this.rand() * 4000);
          this.timers.push(t);
          resolve();
        });
        ws.on('error', resolve);
        ws.on('close', resolve);
      }));
      if (i % 20 === 19) await sleep(50);
    }
    await Promise.race([Promise.all(opened), sleep(20000)]);
  }

  async stop() {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    for (const ws of this.sockets) { try { ws.close(); } catch (_) { /* closed */ } }
    await sleep(300);
    for (const ws of this.sockets) { try { ws.terminate(); } catch (_) { /* gone */ } }
  }
}

// ---------------------------------------------------------------- checks

// Requests over the whole dataset (the checks) may take long on a big one.
let slowTimeoutMs = 300000;

// What the users deleted from this folder took with them, from the
// generator's tallies of the delete candidates.
function deletedTotals(meta) {
  const out = { users: 0, devices: 0, inits: 0, events: 0, byName: {}, byError: {} };
  const deleted = new Set(meta.deleted || []);
  for (const c of meta.facts.deleteCandidates || []) {
    if (!deleted.has(c.key)) continue;
    out.users++;
    out.devices += c.devices;
    out.inits += c.inits;
    out.events += c.events;
    for (const [k, v] of Object.entries(c.byName)) out.byName[k] = (out.byName[k] || 0) + v;
    for (const [k, v] of Object.entries(c.byError)) out.byError[k] = (out.byError[k] || 0) + v;
  }
  return out;
}
function minus(a, b) {
  const out = {};
  for (const [k, v] of Object.entries(a)) if (v - (b[k] || 0) > 0) out[k] = v - (b[k] || 0);
  return out;
}

async function checks(c, app, meta) {
  const out = [];
  const g = meta.load.generated;
  const f = meta.facts;
  // Users deleted by earlier runs on this folder (see `deletes`): the totals
  // lose exactly what the generator sent for them.
  const gone = deletedTotals(meta);
  if (gone.users) log(`checks: ${gone.users} users were deleted by earlier runs on this folder; the expected totals leave out their ${gone.events} events`);
  const fUsers = f.users - gone.users;
  const fDevices = f.devices - gone.devices;
  const byName = minus(g.byName, gone.byName);
  const byError = minus(g.byError, gone.byError);
  const note = (ok, what, got, want) => {
    out.push({ ok, what, got, want });
    log(`check ${ok ? 'ok  ' : 'FAIL'} ${what}: got ${got}${ok ? '' : `, expected ${want}`}`);
  };
  // The whole dataset and nothing after it: the range ends when the load
  // started, before any live traffic of this or an earlier run (on a kept folder).
  const start = Math.floor(g.firstEventMs / 1000) - 86400;
  const end = Math.floor(meta.load.now_ms / 1000);
  const q = `start=${start}&end=${end}&utcOffset=0`;
  const a = `/api/v1/apps/${app}`;
  const daily = (await c.json(`${a}/analytics?${q}`, { timeoutMs: slowTimeoutMs })).data;
  note(daily.totalNumbers.users === fUsers, 'daily totalNumbers.users over all data', daily.totalNumbers.users, fUsers);
  note(daily.totalNumbers.installs === fDevices, 'daily totalNumbers.installs over all data (devices)', daily.totalNumbers.installs, fDevices);
  const usage = Object.values(daily.usage).reduce((x, y) => x + y, 0);
  note(usage === g.inits - gone.inits, 'sum of usage (app starts)', usage, g.inits - gone.inits);
  let hoursOk = true;
  for (const [day, hours] of Object.entries(daily.hours)) {
    if (hours.length !== 24 || hours.reduce((x, y) => x + y, 0) !== daily.usage[day]) hoursOk = false;
  }
  note(hoursOk, 'hours[day] has 24 entries summing to usage[day]', hoursOk, true);
  const newUsers = Object.values(daily.newUsers).reduce((x, y) => x + y, 0);
  note(newUsers === fUsers, 'sum of newUsers over all data', newUsers, fUsers);
  const events = (await c.json(`${a}/analytics/events?${q}`, { timeoutMs: slowTimeoutMs })).data;
  let bad = [];
  for (const [name, n] of Object.entries(byName)) {
    const got = Object.values(events[name] || {}).reduce((x, y) => x + y, 0);
    if (got !== n) bad.push(`${name} ${got}/${n}`);
  }
  note(bad.length === 0 && Object.keys(events).length === Object.keys(byName).length,
    'events per name over all data', bad.length ? bad.slice(0, 5).join(', ') : `${Object.keys(events).length} names`, `${Object.keys(byName).length} names, exact counts`);
  const errors = (await c.json(`${a}/analytics/errors?${q}`, { timeoutMs: slowTimeoutMs })).data;
  bad = [];
  for (const [name, n] of Object.entries(byError)) {
    const got = Object.values(errors[name] || {}).reduce((x, y) => x + y, 0);
    if (got !== n) bad.push(`${name} ${got}/${n}`);
  }
  note(bad.length === 0, 'errors per name over all data', bad.length ? bad.join(', ') : `${Object.keys(errors).length} names`, 'exact counts');
  const users = await c.json(`${a}/users?limit=1`);
  note(users.total === fUsers, 'users total', users.total, fUsers);
  const qg = (await c.json(`${a}/analytics/quickglance`)).data;
  note(qg.users > 0 && qg.appStarts > 0, 'quick glance has data in the last 24 h', JSON.stringify(qg), 'users > 0, appStarts > 0');
  return out;
}

// ---------------------------------------------------------------- measurement

// The measured endpoints, in order; paths(i) is the path of the i-th request
// (the /analytics* ones cycle through the utcOffsets).
function endpointRows(a, f, picks, rangeDays, offsets) {
  const { users, sessions, lastPage } = picks;
  const ranged = (name, sub, target) => ({
    name, target, ranged: true,
    paths: (i) => `${a}${sub}${sub.includes('?') ? '&' : '?'}${rangeQuery(rangeDays, offsets[i % offsets.length], false)}`,
  });
  const attr = f.topEvent;
  return [
    { name: 'analytics/quickglance', target: 10, paths: () => `${a}/analytics/quickglance` },
    ranged('analytics (daily)', '/analytics', 20),
    ranged('analytics/events', '/analytics/events', 20),
    ranged('analytics/eventsprops', '/analytics/eventsprops', 20),
    ranged(`analytics/events/${attr.event}/${attr.attr}`, `/analytics/events/${encodeURIComponent(attr.event)}/${encodeURIComponent(attr.attr)}`, 20),
    ranged('analytics/errors', '/analytics/errors', 20),
    { name: 'users (page 1)', target: 20, targetNote: 'assumed', paths: () => `${a}/users` },
    { name: `users (page ${lastPage}, last)`, target: 20, targetNote: 'assumed', paths: () => `${a}/users?page=${lastPage}` },
    { name: 'users/:userId', target: 10, paths: (i) => `${a}/users/${encodeURIComponent(users[i % users.length])}` },
    { name: 'users/:userId/session/:sessionId', target: 10, targetNote: 'assumed', paths: (i) => { const s = sessions[i % sessions.length]; return `${a}/users/${encodeURIComponent(s.user)}/session/${encodeURIComponent(s.session)}?device=${encodeURIComponent(s.device)}`; } },
    { name: 'live/events', target: 10, paths: () => `${a}/live/events` },
    { name: 'live/users/count', target: 10, paths: () => `${a}/live/users/count` },
    { name: 'live/users', target: 10, paths: () => `${a}/live/users` },
  ];
}

function rangeQuery(days, offset, aligned) {
  let end = Math.floor(Date.now() / 1000);
  if (aligned) end = Math.floor(end / 3600) * 3600 - 1;  // ends at a whole hour (UTC)
  const start = end - days * 86400 + (aligned ? 1 : 0);
  return `start=${start}&end=${end}&utcOffset=${offset}`;
}

async function timeOne(c, p, expectStatus = 200) {
  const r = await c.get(p);
  if (r.status !== expectStatus) throw new Error(`GET ${p}: HTTP ${r.status} ${r.text.slice(0, 200)}`);
  return r;
}

// CPU time (user + system, ms) the server process has used so far, or NaN.
let serverPid = 0;
const CLK_TCK = 100;  // Linux USER_HZ
function serverCpuMs() {
  if (!serverPid) return NaN;
  try {
    const stat = fs.readFileSync(`/proc/${serverPid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;  // utime, stime
  } catch (_) { return NaN; }
}

async function measureRow(c, row, n, budgetS) {
  // row.paths(i) -> path of the i-th request
  for (let i = 0; i < 3; i++) await timeOne(c, row.paths(i));
  const ms = [];
  let bytes = 0;
  const deadline = Date.now() + budgetS * 1000;
  const cpu0 = serverCpuMs();
  for (let i = 0; i < n; i++) {
    const r = await timeOne(c, row.paths(i));
    ms.push(r.ms);
    bytes = r.bytes;
    if (Date.now() > deadline) break;
  }
  // server CPU per request (includes the live traffic's share, small)
  const cpu = (serverCpuMs() - cpu0) / ms.length;
  return { ...summarize(ms), bytes, cut: ms.length < n, samples: ms, cpu };
}

function fmt(x, d = 1) { return Number.isFinite(x) ? x.toFixed(d) : '-'; }

function table(headers, rows) {
  const w = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (r) => r.map((x, i) => (i === 0 ? String(x).padEnd(w[i]) : String(x).padStart(w[i]))).join('  ');
  return [line(headers), w.map((x) => '-'.repeat(x)).join('  '), ...rows.map(line)].join('\n');
}

async function measure(o) {
  serverPid = o.pid;
  const meta = JSON.parse(fs.readFileSync(o.meta, 'utf8'));
  const c = new Client(o.url, o.token);
  const a = `/api/v1/apps/${encodeURIComponent(o.app)}`;
  const f = meta.facts;
  const result = { started: new Date().toISOString(), options: { n: o.n, offsets: o.offsets, rangeDays: o.rangeDays, live: o.live } };

  if (o.checks) {
    const t = Date.now();
    result.checks = await checks(c, encodeURIComponent(o.app), meta);
    log(`checks took ${((Date.now() - t) / 1000).toFixed(1)} s`);
  }

  // Users to ask about: the generator's random sample; their sessions for the session endpoint.
  const users = f.sampleUsers.slice(0, Math.max(o.n, 10));
  const sessions = [];
  const rand = mulberry32(7);
  for (const u of users.slice(0, o.n)) {
    const d = await c.json(`${a}/users/${encodeURIComponent(u)}`);
    const s = d.sessions[Math.floor(rand() * d.sessions.length)];
    sessions.push({ user: u, session: s.session, device: s.device, actions: s.actions, count: d.sessions.length });
  }
  const usersTotal = (await c.json(`${a}/users?limit=1`)).total;
  const lastPage = Math.max(1, Math.ceil(usersTotal / 100));

  let live = null;
  if (o.live > 0) {
    live = new LiveSim(o.url, o.app, f.liveDevices, o.live, 11);
    const t = Date.now();
    live.started = t;
    await live.start();
    log(`live traffic: ${live.stats.connected}/${o.live} devices connected in ${Date.now() - t} ms`);
    await sleep(o.liveWarmup * 1000);  // let the devices send their first messages (or fill the live window)
  }

  const offsets = o.offsets;
  const rows = endpointRows(a, f, { users, sessions, lastPage }, o.rangeDays, offsets);
  // what `cold` asks for after a restart: the same endpoints, other users
  result.picks = { users: f.sampleUsers.slice(-20), sessions: sessions.slice(0, 20), lastPage };
  result.rows = [];
  result.perOffset = [];
  for (const row of rows) {
    const n = row.ranged ? o.n * offsets.length : o.n;
    if (live && row.name === 'live/events') live.eventsAtMeasure = live.stats.events;
    const t = Date.now();
    let r;
    try {
      r = await measureRow(c, row, n, o.budget);
    } catch (e) {
      log(`${row.name}: ${e.message}`);
      result.rows.push({ name: row.name, target: row.target, error: e.message });
      continue;
    }
    const { samples, ...stats } = r;
    result.rows.push({ name: row.name, target: row.target, targetNote: row.targetNote, ...stats, pass: r.p50 <= row.target,
      paths: Array.from({ length: Math.min(n, 6) }, (_, i) => row.paths(i)) });
    log(`${row.name}: n=${r.n} p50=${fmt(r.p50)} ms p95=${fmt(r.p95)} ms max=${fmt(r.max)} ms, ${r.bytes} bytes (${((Date.now() - t) / 1000).toFixed(1)} s)`);
    if (row.ranged) {
      offsets.forEach((off, j) => {
        const { n: cnt, p50, p95, max } = summarize(samples.filter((_, i) => i % offsets.length === j));
        result.perOffset.push({ name: row.name, offset: off, n: cnt, p50, p95, max });
      });
    }
  }
  // the heaviest user (informational)
  try {
    const hu = f.heavyUser.key;
    const { samples, ...r } = await measureRow(c, { paths: () => `${a}/users/${encodeURIComponent(hu)}` }, Math.min(o.n, 20), o.budget);
    result.heavyUser = { user: hu, sessions: f.heavyUser.sessions, ...r };
  } catch (e) { result.heavyUser = { error: e.message }; }
  result.sessionPicks = { avgActions: sessions.reduce((x, s) => x + s.actions, 0) / Math.max(1, sessions.length) };
  result.sample = {
    quickglance: (await c.json(`${a}/analytics/quickglance`)).data,
    liveCount: (await c.json(`${a}/live/users/count`)).data,
    liveUsersRows: (await c.json(`${a}/live/users`)).data.length,
    liveEventsRows: (await c.json(`${a}/live/events`)).data.length,
  };

  if (o.scaling) result.scaling = await scaling(c, a, o, f, lastPage);

  if (live) {
    // live/events again, now that the live traffic has run longer (its cost
    // grows with the events of the last 10 minutes the server keeps, up to 10,000)
    const before = live.stats.events;
    const { samples, ...r } = await measureRow(c, { paths: () => `${a}/live/events` }, o.n, o.budget);
    const k = (await c.json(`${a}/live/events?limit=1000`)).data.length;
    result.liveLate = { liveEventsSent: before, secondsSinceStart: Math.round((Date.now() - live.started) / 1000), rowsAtLimit1000: k, ...r };
    const early = result.rows.find((x) => x.name === 'live/events');
    if (early) early.liveEventsSent = live.eventsAtMeasure;
  }

  if (live) {
    result.live = { ...live.stats };
    await live.stop();
  }
  c.close();
  result.finished = new Date().toISOString();
  if (o.out) fs.writeFileSync(o.out, JSON.stringify(result, null, 1));
  print(result, o);
}

async function scaling(c, a, o, f, lastPage) {
  const out = [];
  const deadline = Date.now() + o.scalingBudget * 1000;
  const k = o.scalingN;
  const probe = async (label, paths) => {
    if (Date.now() > deadline) return;
    try {
      const r = await measureRow(c, { paths }, k, 30);
      out.push({ label, p50: r.p50, p95: r.p95, n: r.n, bytes: r.bytes, cpu: r.cpu });
      log(`scaling ${label}: p50 ${fmt(r.p50)} ms`);
    } catch (e) { out.push({ label, error: e.message }); }
  };
  const attr = f.topEvent;
  const eps = [
    ['daily', '/analytics'], ['events', '/analytics/events'], ['eventsprops', '/analytics/eventsprops'],
    ['attribute', `/analytics/events/${encodeURIComponent(attr.event)}/${encodeURIComponent(attr.attr)}`],
    ['errors', '/analytics/errors'],
  ];
  for (const [name, sub] of eps) {
    for (const days of [1, 7, 30, 90]) {
      for (const [aligned, off] of [[false, 0], [true, 0], [true, 330], [false, 330]]) {
        await probe(`${name} ${days}d ${aligned ? 'hour-aligned' : 'unaligned'} utcOffset=${off}`, () => `${a}${sub}?${rangeQuery(days, off, aligned)}`);
      }
    }
  }
  // the other attribute endpoints (less frequent events, other value types)
  for (const ae of f.attrEvents) {
    await probe(`attribute ${ae.event}/${ae.attr} (${ae.type}) 30d unaligned`, () => `${a}/analytics/events/${encodeURIComponent(ae.event)}/${encodeURIComponent(ae.attr)}?${rangeQuery(30, 0, false)}`);
  }
  await probe('quickglance', () => `${a}/analytics/quickglance`);
  for (const [page, limit] of [[1, 1], [1, 100], [1, 1000], [10, 100], [Math.ceil(lastPage / 2), 100], [lastPage, 100], [Math.max(1, Math.floor(lastPage / 10)), 1000]]) {
    await probe(`users page=${page} limit=${limit}`, () => `${a}/users?page=${page}&limit=${limit}`);
  }
  return out;
}

function print(r, o) {
  const lines = [];
  lines.push('');
  lines.push(`Latency (ms), ${o.rangeDays}-day range ending now, utcOffsets ${o.offsets.join(', ')} round-robin for /analytics*; ` +
    `${o.live} live WebSocket devices; sequential requests on one keep-alive connection`);
  lines.push(table(['endpoint', 'n', 'p50', 'p95', 'max', 'srv CPU/req', 'bytes', 'target p50', 'result'],
    r.rows.map((x) => x.error ? [x.name, 0, '-', '-', '-', '-', '-', `<= ${x.target}`, `ERROR ${x.error.slice(0, 60)}`]
      : [x.name, x.n + (x.cut ? '*' : ''), fmt(x.p50), fmt(x.p95), fmt(x.max), fmt(x.cpu), x.bytes, `<= ${x.target}${x.targetNote ? ' (' + x.targetNote + ')' : ''}`, x.pass ? 'pass' : 'FAIL'])));
  lines.push('srv CPU/req: server process CPU time (user+system, /proc/PID/stat, 10 ms ticks) over the measured requests / their number; it includes the live traffic\'s small share');
  if (r.rows.some((x) => x.cut)) lines.push(`* stopped early: the endpoint's --budget of ${o.budget} s ran out`);
  if (r.heavyUser && !r.heavyUser.error) {
    lines.push(`users/:userId for the most active user (${r.heavyUser.sessions} sessions): p50 ${fmt(r.heavyUser.p50)} ms, p95 ${fmt(r.heavyUser.p95)} ms, ${r.heavyUser.bytes} bytes`);
  }
  if (r.perOffset.length) {
    lines.push('');
    lines.push('By utcOffset (p50 / p95 ms):');
    const names = [...new Set(r.perOffset.map((x) => x.name))];
    lines.push(table(['endpoint', ...o.offsets.map((x) => `utcOffset=${x}`)],
      names.map((nm) => [nm, ...o.offsets.map((off) => { const x = r.perOffset.find((y) => y.name === nm && y.offset === off); return x ? `${fmt(x.p50)} / ${fmt(x.p95)}` : '-'; })])));
  }
  if (r.scaling) {
    lines.push('');
    lines.push('Scaling probes (p50 / p95 ms):');
    lines.push(table(['probe', 'n', 'p50', 'p95', 'srv CPU/req', 'bytes'], r.scaling.map((x) => x.error ? [x.label, 0, 'ERROR', x.error.slice(0, 50), '', ''] : [x.label, x.n, fmt(x.p50), fmt(x.p95), fmt(x.cpu), x.bytes])));
  }
  if (r.checks) {
    const bad = r.checks.filter((x) => !x.ok);
    lines.push('');
    lines.push(`Checks: ${r.checks.length - bad.length}/${r.checks.length} ok${bad.length ? '' : ''}`);
    for (const b of bad) lines.push(`  FAIL ${b.what}: got ${b.got}, expected ${b.want}`);
  }
  if (r.liveLate) {
    const e = r.rows.find((x) => x.name === 'live/events');
    lines.push(`live/events as the live traffic goes on: p50 ${fmt(e && e.p50)} ms after ${e && e.liveEventsSent} live events were sent; ` +
      `p50 ${fmt(r.liveLate.p50)} ms (p95 ${fmt(r.liveLate.p95)}, srv CPU/req ${fmt(r.liveLate.cpu)}) after ${r.liveLate.liveEventsSent} (${r.liveLate.secondsSinceStart} s of live traffic)`);
  }
  if (r.live) lines.push(`Live traffic: ${JSON.stringify(r.live)}; live/users/count ${r.sample.liveCount}, live/users ${r.sample.liveUsersRows} rows, live/events ${r.sample.liveEventsRows} rows`);
  lines.push(`Quick glance: ${JSON.stringify(r.sample.quickglance)}`);
  process.stdout.write(lines.join('\n') + '\n');
}

// ---------------------------------------------------------------- profile

// For every row of --results that missed its target: `perf record` the server
// for --seconds while requesting that endpoint in a loop, then the flat profile
// by symbol and by source line. Needs perf and a server built with symbols.
async function profile(o) {
  const { spawn, spawnSync } = require('node:child_process');
  const res = JSON.parse(fs.readFileSync(o.results, 'utf8'));
  const c = new Client(o.url, o.token);
  const out = [];
  const rows = res.rows.filter((r) => !r.error && (o.all || !r.pass));
  if (res.liveLate && !rows.some((r) => r.name === 'live/events') && res.liveLate.p50 > 10) {
    const lr = res.rows.find((r) => r.name === 'live/events');
    if (lr) rows.push(lr);
  }
  for (const row of rows) {
    const file = path.join(o.dir, `perf-${row.name.replace(/[^A-Za-z0-9]+/g, '_')}.data`);
    const perf = spawn('perf', ['record', '-F', '499', '-g', '-p', String(o.pid), '-o', file, '--', 'sleep', String(o.seconds)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let perfErr = '';
    perf.stderr.on('data', (d) => { perfErr += d; });
    const exited = new Promise((resolve) => perf.on('exit', resolve));
    let n = 0, running = true;
    exited.then(() => { running = false; });
    const deadline = Date.now() + (o.seconds + 20) * 1000;
    await sleep(300);
    // paths are rebuilt with a fresh "now" so ranges keep ending now
    const refresh = (p) => p.replace(/start=(\d+)&end=(\d+)/, (m, st, en) => {
      const now = Math.floor(Date.now() / 1000);
      return `start=${now - (Number(en) - Number(st))}&end=${now}`;
    });
    while (running && Date.now() < deadline) {
      try { await c.get(refresh(row.paths[n % row.paths.length]), { timeoutMs: 30000 }); } catch (_) { /* keep going */ }
      n++;
    }
    const code = await Promise.race([exited, sleep(30000).then(() => 'timeout')]);
    if (code !== 0) {
      out.push({ name: row.name, error: `perf record failed (${code}): ${perfErr.trim().split('\n').slice(-2).join(' ')}` });
      continue;
    }
    const report = (sort, limit) => {
      const r = spawnSync('perf', ['report', '-i', file, '--stdio', '--no-children', '-g', 'none', '--percent-limit', String(limit), '--sort', sort],
        { encoding: 'utf8', timeout: 600000, maxBuffer: 64 << 20 });
      return (r.stdout || '').split('\n').filter((l) => /%/.test(l) && !l.startsWith('#')).map((l) => l.trim().replace(/\s+/g, ' ').slice(0, 200)).slice(0, 12);
    };
    const entry = { name: row.name, requests: n, symbols: report('dso,sym', 2), lines: o.srclines ? report('srcline', 2) : [] };
    out.push(entry);
    fs.rmSync(file, { force: true });
    log(`profiled ${row.name} (${n} requests)`);
  }
  c.close();
  const lines = ['', `Profiles (perf record -F 499 for ${o.seconds} s per endpoint while requesting it in a loop; self time):`];
  for (const e of out) {
    lines.push(`* ${e.name}${e.requests ? ` (${e.requests} requests)` : ''}`);
    if (e.error) { lines.push(`    ${e.error}`); continue; }
    for (const l of e.symbols) lines.push(`    ${l}`);
    if (e.lines.length) {
      lines.push('    by source line:');
      for (const l of e.lines) lines.push(`      ${l}`);
    }
  }
  process.stdout.write(lines.join('\n') + '\n');
  if (o.out) fs.writeFileSync(o.out, JSON.stringify(out, null, 1));
}

// ---------------------------------------------------------------- start-up

// VmRSS, RssAnon, RssFile and VmHWM (peak) of a process in KiB, or null.
function procMemory(pid) {
  try {
    const t = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const k = (name) => { const m = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(t); return m ? Number(m[1]) : null; };
    return { rss_kib: k('VmRSS'), anon_kib: k('RssAnon'), file_kib: k('RssFile'), hwm_kib: k('VmHWM') };
  } catch (_) { return null; }
}

// Start-up of a server launched at --t0-ms, in ms since then:
//   listen_ms       the first HTTP answer of any status to GET /healthz (the
//                   socket accepts and the server answers; a server that
//                   refuses connections until it is ready has listen_ms = healthz_ms);
//   healthz_ms      the first 200 from /healthz;
//   first_query_ms  "ready": the first 200 answer of the 30-day daily
//                   analytics, asked from when /healthz answered 200 and again
//                   while it answers anything else (503 + Retry-After while a
//                   server's read side loads: the Retry-After is recorded, not
//                   obeyed, so readiness is timed to 25 ms).
// Polls every 10 ms while connections are refused, every 25 ms after an
// answer. A request that connected is waited for until the deadline (no short
// timeout): a server that accepts before it can answer is timed when it answers.
async function startup(c, o) {
  const deadline = o.t0Ms + o.timeout * 1000;
  const left = () => Math.max(1000, deadline - Date.now());
  const out = {
    listen_ms: null, healthz_ms: null, first_query_ms: null, first_query_latency_ms: null,
    refused: 0, healthz_not_200: 0, api_not_200: 0, api_statuses: {}, retry_after: null,
  };
  while (Date.now() < deadline) {
    let r = null;
    try { r = await c.get('/healthz', { timeoutMs: left(), auth: false }); } catch (_) { out.refused++; }
    if (r) {
      if (out.listen_ms === null) out.listen_ms = Date.now() - o.t0Ms;
      if (r.status === 200) { out.healthz_ms = Date.now() - o.t0Ms; break; }
      out.healthz_not_200++;
    }
    await sleep(r ? 25 : 10);
  }
  if (out.healthz_ms === null) throw new Error(`/healthz did not answer 200 within ${o.timeout} s (${JSON.stringify(out)})`);
  const a = `/api/v1/apps/${encodeURIComponent(o.app)}`;
  while (Date.now() < deadline) {
    let r = null;
    try { r = await c.get(`${a}/analytics?${rangeQuery(30, 0, false)}`, { timeoutMs: left() }); } catch (_) { /* retry */ }
    if (r && r.status === 200) {
      out.first_query_ms = Date.now() - o.t0Ms;
      out.first_query_latency_ms = Number(r.ms.toFixed(1));
      break;
    }
    if (r) {
      out.api_not_200++;
      out.api_statuses[r.status] = (out.api_statuses[r.status] || 0) + 1;
      if (out.retry_after === null && r.headers['retry-after'] !== undefined) out.retry_after = r.headers['retry-after'];
    }
    await sleep(25);
  }
  if (out.first_query_ms === null) throw new Error(`the first analytics query did not answer 200 within ${o.timeout} s (${JSON.stringify(out)})`);
  return out;
}

// ready: the start-up times as one JSON line.
async function ready(o) {
  const c = new Client(o.url, o.token);
  const s = await startup(c, o);
  c.close();
  process.stdout.write(JSON.stringify(s) + '\n');
}

// cold: the start-up times, then one request to every measured endpoint: the
// first request each endpoint gets after the start. The 30-day daily
// analytics is first (its first 200 is "ready"); the others follow in the
// order of `measure`, rotated by --round so that no endpoint always comes
// last (an endpoint asked earlier may have warmed what a later one reads).
// A 503 is retried every 25 ms and counted; the 200's latency is the cold one.
// Users and sessions come from the measure run's picks, a different one each
// round. Prints one JSON line.
async function cold(o) {
  const meta = JSON.parse(fs.readFileSync(o.meta, 'utf8'));
  const res = JSON.parse(fs.readFileSync(o.results, 'utf8'));
  if (!res.picks) throw new Error(`${o.results} has no picks: it was written by an older query_bench.js`);
  const c = new Client(o.url, o.token);
  const s = await startup(c, o);
  const memReady = o.pid ? procMemory(o.pid) : null;
  const a = `/api/v1/apps/${encodeURIComponent(o.app)}`;
  const r = o.round;
  const rot = (xs) => xs.map((_, i) => xs[(i + r) % xs.length]);
  const picks = { users: rot(res.picks.users), sessions: rot(res.picks.sessions), lastPage: res.picks.lastPage };
  const rows = endpointRows(a, meta.facts, picks, o.rangeDays, [0]);
  const out = [{ name: 'analytics (daily)', ms: s.first_query_latency_ms, not200: s.api_not_200 }];
  const rest = rot(rows.filter((x) => x.name !== 'analytics (daily)'));
  const deadline = Date.now() + o.timeout * 1000;
  for (const row of rest) {
    const p = row.paths(0);
    const e = { name: row.name, ms: null, not200: 0 };
    while (Date.now() < deadline) {
      let x = null;
      try { x = await c.get(p, { timeoutMs: slowTimeoutMs }); } catch (err) { e.error = err.message; break; }
      if (x.status === 200) { e.ms = Number(x.ms.toFixed(1)); e.bytes = x.bytes; break; }
      e.not200++;
      if (x.status !== 503) { e.error = `HTTP ${x.status} ${x.text.slice(0, 100)}`; break; }
      await sleep(25);
    }
    out.push(e);
  }
  c.close();
  const memAfter = o.pid ? procMemory(o.pid) : null;
  process.stdout.write(JSON.stringify({ round: r, ...s, mem_ready: memReady, mem_after: memAfter, cold: out }) + '\n');
}

// ---------------------------------------------------------------- deletes

// A steady tracking load over HTTP and WebSocket, for app 1 from the
// dataset's live devices (existing users, none of them a delete candidate)
// and for app 2 from devices of its own: half of --rate events/s over HTTP
// (one POST per app every 100 ms), half over --ws WebSockets (half per app,
// one message a second each, staggered). Messages go out on schedule whatever
// the answers, so a stalled server shows in the ack latencies instead of
// slowing the load, up to a bound: at most 160 HTTP requests in flight (8 s
// of requests; with the WebSockets and the API client that stays under the
// server's 256 connections per address) and 64 unacknowledged messages per
// WebSocket (where the server stops reading one). A message due beyond that
// is not sent (an SDK would keep the events for later) and is counted as
// such, rather than queued in the client, where its wait would grow without
// bound while the server stays stalled. Every ack is timed from its message's
// send to its arrival and counted in the window its message was sent in.
class TrackLoad {
  constructor(o, f) {
    this.base = o.url.replace(/\/$/, '');
    this.rate = o.rate;
    this.runSession = 2000000 + (Math.floor(Date.now() / 1000) % 1000000);  // not a session id of the dataset
    this.rand = mulberry32(23);
    const ctx = { platform: 'Linux', osVersion: '6.8.0', locale: 'en-US', version: '9.9.9', ram: 15.6, arch: 'x64' };
    const app2 = [];
    for (let i = 0; i < 500; i++) {
      app2.push({ sdk: 4, deviceId: `dl-device-${i}`, anonId: `dl-anon-${i}`, userId: i % 2 ? `dl-user-${i}` : null, ...ctx });
    }
    const own = (d) => ({ ...d, session: this.runSession, id: 0, started: false });
    this.apps = [
      { id: o.app, devices: f.liveDevices.map(own) },
      { id: o.app2, devices: app2.map(own) },
    ];
    this.wsPerApp = Math.max(1, Math.floor(o.ws / 2));
    this.samples = [];          // {t, ms, via, app}
    this.rejected = [];         // {t, via, status}
    this.pending = new Map();   // `${socket}:${id}` -> {t, ids}
    this.inflight = 0;
    this.skipped = [];          // {t, via}: due but not sent (see above)
    this.timers = [];
    this.sockets = [];
    this.marks = [];
    this.stats = { httpRequests: 0, wsMessages: 0, events: 0, wsErrors: 0, wsCloses: 0, httpErrors: {} };
  }

  nextId(d) { d.id = (d.id % 1000000) + 1; return d.id; }

  // k events of device d (an init first, the first time it is used)
  events(app, d, k) {
    const out = [];
    if (!d.started) {
      d.started = true;
      out.push(trackingEvent(d, app.id, 'init', undefined, { plan: 'pro' }, true, this.nextId(d)));
    }
    while (out.length < k) {
      out.push(trackingEvent(d, app.id, 'event', 'DELETE_LOAD', { n: Math.floor(this.rand() * 100) }, false, this.nextId(d)));
    }
    return out;
  }

  mark(name) { this.marks.push({ name, t: Date.now() }); }

  postBatch(ai, k) {
    if (this.inflight >= 160) { this.skipped.push({ t: Date.now(), via: 'http' }); return; }
    const app = this.apps[ai];
    const items = [];
    // a few devices per batch, the next ones each time (after the WebSocket ones)
    const first = this.wsPerApp;
    const span = Math.max(1, app.devices.length - first);
    while (items.length < k) {
      app.cursor = ((app.cursor || 0) + 1) % span;
      const d = app.devices[first + app.cursor] || app.devices[0];
      items.push(...this.events(app, d, Math.min(5, k - items.length)));
    }
    const body = JSON.stringify({ data: items });
    const t = Date.now();
    const t0 = process.hrtime.bigint();
    this.inflight++;
    this.stats.httpRequests++;
    this.stats.events += items.length;
    const req = http.request(`${this.base}/app/${encodeURIComponent(app.id)}/track`, {
      method: 'POST', agent: this.agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      res.resume();
      res.on('end', () => {
        this.inflight--;
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        if (res.statusCode === 200) this.samples.push({ t, ms, via: 'http', app: ai });
        else this.rejected.push({ t, via: 'http', status: res.statusCode });
      });
    });
    req.setTimeout(120000, () => req.destroy(new Error('timeout')));
    req.on('error', (e) => {
      this.inflight--;
      this.stats.httpErrors[e.code || e.message] = (this.stats.httpErrors[e.code || e.message] || 0) + 1;
      this.rejected.push({ t, via: 'http', status: e.code || 'error' });
    });
    req.end(body);
  }

  wsSend(sock, k) {
    if (sock.ws.readyState !== 1) return;
    if (sock.unacked >= 64) { this.skipped.push({ t: Date.now(), via: 'ws' }); return; }
    sock.unacked++;
    const items = this.events(sock.app, sock.d, k);
    const rec = { t: Date.now(), t0: process.hrtime.bigint(), acked: false };
    for (const e of items) this.pending.set(`${sock.n}:${e.id}`, rec);
    sock.ws.send(JSON.stringify({ data: items }));
    this.stats.wsMessages++;
    this.stats.events += items.length;
    sock.sent.push(rec);
  }

  wsAck(sock, text) {
    let ids = [];
    try { ids = JSON.parse(text).reportedIds || []; } catch (_) { return; }
    const now = process.hrtime.bigint();
    for (const id of ids) {
      const rec = this.pending.get(`${sock.n}:${id}`);
      if (!rec) continue;
      this.pending.delete(`${sock.n}:${id}`);
      if (rec.acked) continue;
      rec.acked = true;
      sock.unacked--;
      this.samples.push({ t: rec.t, ms: Number(now - rec.t0) / 1e6, via: 'ws', app: sock.ai });
    }
  }

  async start() {
    const W = loadWs();
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 160 });
    const opened = [];
    let n = 0;
    for (let ai = 0; ai < 2; ai++) {
      const app = this.apps[ai];
      const url = this.base.replace(/^http/, 'ws') + `/app/${encodeURIComponent(app.id)}/track`;
      for (let i = 0; i < this.wsPerApp && i < app.devices.length; i++) {
        const sock = { n: n++, ai, app, d: app.devices[i], ws: new W(url, { perMessageDeflate: true, handshakeTimeout: 10000 }), sent: [], unacked: 0 };
        this.sockets.push(sock);
        sock.ws.on('message', (m) => this.wsAck(sock, m.toString()));
        sock.ws.on('error', () => { this.stats.wsErrors++; });
        sock.ws.on('close', () => { this.stats.wsCloses++; });
        opened.push(new Promise((resolve) => { sock.ws.on('open', resolve); sock.ws.on('error', resolve); sock.ws.on('close', resolve); }));
      }
    }
    await Promise.race([Promise.all(opened), sleep(20000)]);
    // schedule: a 10 ms loop sends whatever is due; fractional events carry over
    const t0 = Date.now();
    const httpShare = this.rate / 4;                       // events/s per app over HTTP
    const wsShare = this.rate / 2 / this.sockets.length;   // events/s per socket
    const chans = [];
    for (let ai = 0; ai < 2; ai++) chans.push({ period: 100, next: t0, acc: 0, perSec: httpShare, send: (k) => this.postBatch(ai, k) });
    this.sockets.forEach((sock, i) => chans.push({
      period: 1000, next: t0 + (i * 1000) / this.sockets.length, acc: 0, perSec: wsShare, send: (k) => this.wsSend(sock, k),
    }));
    const loop = setInterval(() => {
      const now = Date.now();
      for (const ch of chans) {
        while (now >= ch.next) {
          ch.acc += (ch.perSec * ch.period) / 1000;
          const k = Math.floor(ch.acc);
          if (k >= 1) { ch.acc -= k; ch.send(k); }
          ch.next += ch.period;
        }
      }
    }, 10);
    this.timers.push(loop);
  }

  // Stops sending, waits up to 30 s for the answers still due, closes.
  async stop() {
    for (const t of this.timers) clearInterval(t);
    const until = Date.now() + 30000;
    while ((this.inflight > 0 || this.sockets.some((s) => s.sent.some((r) => !r.acked))) && Date.now() < until) await sleep(50);
    for (const s of this.sockets) {
      for (const r of s.sent) if (!r.acked) this.rejected.push({ t: r.t, via: 'ws', status: 'no ack' });
      try { s.ws.close(); } catch (_) { /* closed */ }
    }
    await sleep(300);
    for (const s of this.sockets) { try { s.ws.terminate(); } catch (_) { /* gone */ } }
    this.agent.destroy();
  }

  // Ack latencies of the messages of a window between marks `from` and `to`:
  // those sent in it, except that a message sent before the deletes and
  // still waiting for its ack when they start belongs to `during` (held up
  // by a delete), not to `before`. Messages not sent or not acked count by
  // when they were due or sent.
  window(from, to) {
    const at = (nm) => this.marks.find((x) => x.name === nm).t;
    const a = at(from);
    const b = at(to);
    const d = at('during');
    const mine = from === 'before' ? (x) => x.t >= a && x.t + x.ms < d
      : from === 'during' ? (x) => x.t >= at('before') && x.t < b && x.t + x.ms >= d
        : (x) => x.t >= a && x.t < b;
    const out = { seconds: Number(((b - a) / 1000).toFixed(1)) };
    for (const via of ['http', 'ws', 'all']) {
      const ms = this.samples.filter((x) => mine(x) && (via === 'all' || x.via === via)).map((x) => x.ms);
      const rej = this.rejected.filter((x) => x.t >= a && x.t < b && (via === 'all' || x.via === via));
      const notSent = this.skipped.filter((x) => x.t >= a && x.t < b && (via === 'all' || x.via === via)).length;
      const { n, p50, p99, max } = summarize(ms);
      out[via] = { n, p50, p99, max, notSent, notAcked: rej.length, notAckedBy: rej.reduce((m, x) => { m[x.status] = (m[x.status] || 0) + 1; return m; }, {}) };
    }
    return out;
  }

  // Per second since the first mark: messages sent and their slowest ack,
  // to see when the server stalled.
  timeline() {
    const t0 = this.marks[0].t;
    const out = [];
    for (const x of this.samples) {
      const i = Math.floor((x.t - t0) / 1000);
      if (i < 0) continue;
      const b = out[i] || (out[i] = { s: i, n: 0, maxMs: 0 });
      b.n++;
      if (x.ms > b.maxMs) b.maxMs = Math.round(x.ms);
    }
    return Array.from(out, (b, i) => b || { s: i, n: 0, maxMs: 0 });
  }
}

// deletes: deletes --k users from the delete candidates the generator chose
// (users with up to 1,000 events, spread over the sizes; the ones earlier
// runs deleted are skipped), one after the other, while TrackLoad runs:
//   warm-up (3 s) | before: --quiet s without deletes | during: the deletes |
//   after: as long as the deletes took (5 s to --after-max s) without deletes.
// Then checks that every deleted user answers 404 and that the users total
// dropped by the number deleted, and records the deleted users in the meta
// file (the checks of later runs on the folder leave them out).
async function deletes(o) {
  const meta = JSON.parse(fs.readFileSync(o.meta, 'utf8'));
  const f = meta.facts;
  if (!f.deleteCandidates) throw new Error('this dataset has no delete candidates (loaded by an older query_dataset.js): load it again to measure deletes');
  const already = new Set(meta.deleted || []);
  const picked = f.deleteCandidates.filter((x) => !already.has(x.key)).slice(0, o.k);
  if (picked.length < o.k) log(`only ${picked.length} of the ${f.deleteCandidates.length} delete candidates are left (earlier runs deleted the others): load again for more`);
  if (picked.length === 0) throw new Error('no delete candidate left');
  const c = new Client(o.url, o.token);
  const a = `/api/v1/apps/${encodeURIComponent(o.app)}`;
  const totalBefore = (await c.json(`${a}/users?limit=1`, { timeoutMs: slowTimeoutMs })).total;
  const load = new TrackLoad(o, f);
  await load.start();
  log(`tracking load: ${o.rate} events/s, ${load.sockets.length} WebSockets and HTTP, apps ${o.app} and ${o.app2}`);
  await sleep(3000);
  load.mark('before');
  await sleep(o.quiet * 1000);
  load.mark('during');
  const t = Date.now();
  const rows = [];
  // the meta file learns each deleted user at once: a run cut short leaves
  // the checks of the next run on the folder right
  const deleted = [...already];
  const record = (key) => {
    deleted.push(key);
    if (!o.updateMeta) return;
    meta.deleted = deleted;
    fs.writeFileSync(`${o.meta}.tmp`, JSON.stringify(meta, null, 1));
    fs.renameSync(`${o.meta}.tmp`, o.meta);
  };
  for (const u of picked) {
    let r;
    try {
      r = await c.request('DELETE', `${a}/users/${encodeURIComponent(u.key)}`, { timeoutMs: o.deleteTimeout * 1000 });
    } catch (e) {
      rows.push({ key: u.key, events: u.events, error: e.message });
      log(`delete ${u.key} (${u.events} events): ${e.message}`);
      continue;
    }
    rows.push({ key: u.key, events: u.events, sessions: u.sessions, ms: Number(r.ms.toFixed(1)), status: r.status });
    // 204, or 404: deleted before, by a run cut short before recording it
    if (r.status === 204 || r.status === 404) record(u.key);
    log(`delete ${u.key} (${u.events} events, ${u.sessions} sessions): HTTP ${r.status} in ${r.ms.toFixed(1)} ms`);
  }
  const spanMs = Date.now() - t;
  load.mark('after');
  await sleep(Math.min(o.afterMax * 1000, Math.max(5000, spanMs)));
  load.mark('end');
  await load.stop();

  // afterwards: every deleted user is gone and the total dropped by as many
  const ok = rows.filter((x) => x.status === 204);
  const after = [];
  for (const u of picked) {
    const r = await c.get(`${a}/users/${encodeURIComponent(u.key)}`, { timeoutMs: slowTimeoutMs });
    after.push({ key: u.key, status: r.status });
  }
  const totalAfter = (await c.json(`${a}/users?limit=1`, { timeoutMs: slowTimeoutMs })).total;
  c.close();
  const gone = after.filter((x) => x.status === 404).length;
  const checksOut = [
    { ok: ok.length === picked.length, what: 'every DELETE answered 204', got: `${ok.length}/${picked.length}` },
    { ok: gone === picked.length, what: 'every deleted user answers 404 afterwards', got: `${gone}/${picked.length}` },
    { ok: totalBefore - totalAfter === ok.length, what: 'users total dropped by the number deleted', got: `${totalBefore} -> ${totalAfter}`, want: `-${ok.length}` },
  ];
  for (const x of checksOut) log(`check ${x.ok ? 'ok  ' : 'FAIL'} ${x.what}: ${x.got}`);
  const done = rows.filter((x) => x.ms !== undefined);
  const result = {
    k: picked.length, rate: o.rate, webSockets: load.sockets.length,
    deletes: { ...summarize(done.map((x) => x.ms)), seconds: Number((spanMs / 1000).toFixed(1)) },
    events: { min: Math.min(...picked.map((x) => x.events)), max: Math.max(...picked.map((x) => x.events)), sum: picked.reduce((s, x) => s + x.events, 0) },
    rows, checks: checksOut, usersTotal: { before: totalBefore, after: totalAfter },
    ack: { before: load.window('before', 'during'), during: load.window('during', 'after'), after: load.window('after', 'end') },
    load: load.stats,
    marks: load.marks.map((m) => ({ name: m.name, s: (m.t - load.marks[0].t) / 1000 })),
    timeline: load.timeline(),
    memory: o.pid ? procMemory(o.pid) : null,
  };
  if (o.out) fs.writeFileSync(o.out, JSON.stringify(result, null, 1));
  process.stdout.write(deletesReport(result).join('\n') + '\n');
}

function deletesReport(r) {
  const lines = [''];
  const d = r.deletes;
  lines.push(`User deletes: ${r.k} users with ${r.events.min}-${r.events.max} events (${r.events.sum} in all), one after the other: ` +
    `p50 ${fmt(d.p50)} ms, p95 ${fmt(d.p95)} ms, max ${fmt(d.max)} ms (${d.seconds} s in all)`);
  const bySize = [...r.rows].filter((x) => x.ms !== undefined).sort((x, y) => x.events - y.events);
  lines.push(`  by events: ${bySize.map((x) => `${x.events}:${fmt(x.ms, 0)}`).join(' ')} (events:ms)`);
  lines.push(`Ack latency of a tracking load of ${r.rate} events/s (apps 1 and 2; HTTP POSTs and ${r.webSockets} WebSockets), by when the message was sent (ms; one still waiting when the deletes start counts in "during"):`);
  const cell = (x) => (x.n ? `${fmt(x.p50)} / ${fmt(x.p99)} / ${fmt(x.max)}` : '-') + (x.notAcked ? ` (${x.notAcked} not acked: ${JSON.stringify(x.notAckedBy)})` : '');
  const ns = (x) => (x.notSent === undefined ? '-' : x.notSent);
  lines.push(table(['window', 'seconds', 'HTTP acked', 'HTTP p50 / p99 / max', 'not sent', 'WS acked', 'WS p50 / p99 / max', 'not sent'],
    [['before the deletes', r.ack.before, ''], ['during the deletes', r.ack.during, ''], ['after, as long, no deletes', r.ack.after, '']].map(([nm, w]) =>
      [nm, w.seconds, w.http.n, cell(w.http), ns(w.http), w.ws.n, cell(w.ws), ns(w.ws)])));
  lines.push('not sent: messages due while 160 HTTP requests were in flight, or 64 messages of their WebSocket were unacknowledged');
  if (r.timeline && r.marks) {
    const at = (nm) => r.marks.find((m) => m.name === nm).s;
    // a second (of sending) in which a delete started counts as during
    const [d, af, e] = [at('during'), at('after'), at('end')];
    const slow = (f) => { const xs = r.timeline.filter(f); return `${xs.filter((x) => x.maxMs > 1000).length}/${xs.length}`; };
    lines.push(`Seconds with an ack slower than 1 s: before ${slow((x) => x.s + 1 <= d)}, during ${slow((x) => x.s + 1 > d && x.s < af)}, ` +
      `after ${slow((x) => x.s >= af && x.s < e)} (per-second timeline in the JSON)`);
  }
  lines.push(`Delete checks: ${r.checks.map((x) => `${x.ok ? 'ok' : 'FAIL'} ${x.what} (${x.got})`).join('; ')}`);
  return lines;
}

// ---------------------------------------------------------------- summary

function readNotes(file) {
  const out = {};
  if (!fs.existsSync(file)) return out;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const { k, v } = JSON.parse(line);
    if (k === 'restart' || k === 'disk') (out[k] || (out[k] = [])).push(v);
    else out[k] = v;
  }
  return out;
}

const median = (xs) => { const s = xs.filter(Number.isFinite).sort((a, b) => a - b); return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN; };
const mib = (kib) => (Number.isFinite(kib) ? `${(kib / 1024).toFixed(0)} MiB` : '-');
const memText = (m) => (m ? `${mib(m.rss_kib)} (anonymous ${mib(m.anon_kib)}, file ${mib(m.file_kib)}; peak ${mib(m.hwm_kib)})` : '-');

// summary: the start-up, memory, disk, warm/cold and delete sections of the
// report, from what run_query.sh noted (--notes), the measure results
// (--results) and the deletes results (--deletes); prints them and writes
// everything as one JSON object (--out) for run_scale.sh.
function summary(o) {
  const n = readNotes(o.notes);
  const res = o.results && fs.existsSync(o.results) ? JSON.parse(fs.readFileSync(o.results, 'utf8')) : null;
  const del = o.deletes && fs.existsSync(o.deletes) ? JSON.parse(fs.readFileSync(o.deletes, 'utf8')) : null;
  const meta = JSON.parse(fs.readFileSync(o.meta, 'utf8'));
  const lines = [];
  const restarts = n.restart || [];
  const S = { machine: n.machine, binary: n.binary, caches: n.caches, loadavg: n.loadavg, events: meta.load.events, users: meta.load.users, load: null, startup: null, memory: {}, disk: [], endpoints: [], deletes: null };
  const { generated, ...load } = meta.load;
  S.load = { ...load, fromKeptFolder: !!n.kept };

  if (restarts.length) {
    const med = (k) => median(restarts.map((x) => x[k]));
    S.startup = {
      restarts: restarts.length, caches: n.caches, listen_ms: med('listen_ms'), healthz_ms: med('healthz_ms'), ready_ms: med('first_query_ms'),
      stop_ms: med('stop_ms'), samples: restarts.map(({ cold: _c, ...x }) => x),
    };
    lines.push('');
    lines.push(`Start-up (ms from starting \`nucleon serve\`; ${restarts.length} restart${restarts.length > 1 ? 's' : ''} after a graceful stop; ${n.caches}):`);
    lines.push(table(['restart', 'SIGTERM to exit', 'listening (any answer)', '/healthz 200', 'ready (30-day daily 200)', 'its latency', 'non-200 before ready', 'RSS at ready'],
      [...restarts.map((x) => [x.round + 1, x.stop_ms, x.listen_ms, x.healthz_ms, x.first_query_ms, fmt(x.first_query_latency_ms), `${x.healthz_not_200} healthz, ${x.api_not_200} API${x.retry_after !== null ? ` (Retry-After ${x.retry_after})` : ''}`, mib(x.mem_ready && x.mem_ready.rss_kib)]),
        ['median', S.startup.stop_ms, S.startup.listen_ms, S.startup.healthz_ms, S.startup.ready_ms, fmt(med('first_query_latency_ms')), '', mib(median(restarts.map((x) => x.mem_ready && x.mem_ready.rss_kib)))]]));
    if (n.kept_start) lines.push(`(start on the kept folder before measuring, page cache as found: ${JSON.stringify(n.kept_start)})`);
  }

  S.memory = {
    afterLoad: n.rss_after_load, afterMeasure: n.rss_after_measure,
    afterRestart: restarts.length ? restarts[0].mem_ready : null, afterRestartAndColdRequests: restarts.length ? restarts[0].mem_after : null,
    afterDeletes: del ? del.memory : null,
  };
  lines.push('');
  lines.push(`Memory (server VmRSS, RssAnon, RssFile, VmHWM): ${n.kept ? 'after the start on the kept folder' : 'after the load'} ${memText(n.rss_after_load)}; after measuring ${memText(n.rss_after_measure)}` +
    (restarts.length ? `; after a restart, at ready ${memText(restarts[0].mem_ready)}, after one request per endpoint ${memText(restarts[0].mem_after)}` : '') +
    (del ? `; after the deletes ${memText(del.memory)}` : ''));

  for (const d of n.disk || []) {
    const data = d.files.filter((x) => !/^bench-/.test(x.name));
    const bytes = data.reduce((s, x) => s + x.bytes, 0);
    const alloc = data.reduce((s, x) => s + x.alloc, 0);
    const events = d.stats && Number.isFinite(d.stats.events) ? d.stats.events : null;
    const e = { label: d.label, bytes, allocated: alloc, events, bytesPerEvent: events ? bytes / events : null, files: data, stats: d.stats };
    S.disk.push(e);
    lines.push(`Disk ${d.label}: ${(bytes / 2 ** 20).toFixed(1)} MiB in ${data.length} files (${(alloc / 2 ** 20).toFixed(1)} MiB allocated)` +
      (events ? `, ${events} stored events (nucleon stats, all apps) = ${(bytes / events).toFixed(1)} bytes/event` : ', stored events unknown (nucleon stats failed)'));
    // live traffic and the delete-time tracking load add events dated now; on
    // a kept folder they pile up run after run
    if (events && events > 1.05 * meta.load.events) {
      lines.push(`  (${events - meta.load.events} events more than the load stored: the live traffic and tracking loads of this${n.kept ? ' and earlier runs' : ' run'}, less the deleted users)`);
    }
    lines.push(`  ${data.sort((x, y) => y.bytes - x.bytes).map((x) => `${x.name} ${(x.bytes / 2 ** 20).toFixed(1)} MiB`).join('; ')}`);
  }

  if (res) {
    const names = res.rows.map((x) => x.name);
    for (const nm of names) {
      const w = res.rows.find((x) => x.name === nm);
      const cs = restarts.map((x) => (x.cold || []).find((y) => y.name === nm)).filter((x) => x && x.ms !== null);
      S.endpoints.push({
        name: nm, warm: w.error ? null : { n: w.n, p50: w.p50, p95: w.p95 },
        cold: cs.length ? { n: cs.length, median: median(cs.map((x) => x.ms)), max: Math.max(...cs.map((x) => x.ms)), samples: cs.map((x) => x.ms), not200: cs.reduce((s, x) => s + x.not200, 0) } : null,
      });
    }
    if (restarts.length) {
      lines.push('');
      lines.push(`Warm and cold latency (ms). Warm: the measurement above. Cold: the first request to the endpoint after a restart (the daily analytics first, then the others in a rotated order), median and max of ${restarts.length}; ${n.caches}:`);
      lines.push(table(['endpoint', 'warm p50', 'warm p95', 'cold median', 'cold max', 'cold samples'],
        S.endpoints.map((x) => [x.name, x.warm ? fmt(x.warm.p50) : '-', x.warm ? fmt(x.warm.p95) : '-', x.cold ? fmt(x.cold.median) : '-', x.cold ? fmt(x.cold.max) : '-', x.cold ? x.cold.samples.map((v) => fmt(v)).join(', ') + (x.cold.not200 ? ` (${x.cold.not200} x 503 first)` : '') : '-'])));
    }
  }
  if (del) {
    S.deletes = del;
    lines.push(...deletesReport(del));
  } else if (n.deletes_skipped) {
    lines.push('');
    lines.push(`User deletes: not measured (${n.deletes_skipped})`);
  }
  if (o.out) fs.writeFileSync(o.out, JSON.stringify(S, null, 1));
  process.stdout.write(lines.join('\n') + '\n');
}

// ---------------------------------------------------------------- main

function parse(argv) {
  const o = {
    cmd: argv[2], url: null, app: null, token: null, meta: null, out: null, n: 50, offsets: [0, 330, -300],
    rangeDays: 30, live: 200, budget: 90, scaling: true, scalingN: 10, scalingBudget: 600, checks: true,
    t0Ms: 0, timeout: 900, pid: 0, liveWarmup: 6, results: null, dir: '/tmp', seconds: 8, all: false, srclines: true,
    slowTimeout: 300, round: 0, app2: null, k: 20, rate: 2000, ws: 20, quiet: 20, afterMax: 120, deleteTimeout: 600,
    updateMeta: true, notes: null, deletes: null,
  };
  for (let i = 3; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    switch (a) {
      case '--url': o.url = v(); break;
      case '--app': o.app = v(); break;
      case '--token': o.token = v(); break;
      case '--meta': o.meta = v(); break;
      case '--out': o.out = v(); break;
      case '--n': o.n = Number(v()); break;
      case '--offsets': o.offsets = v().split(',').map(Number); break;
      case '--range-days': o.rangeDays = Number(v()); break;
      case '--live': o.live = Number(v()); break;
      case '--live-warmup': o.liveWarmup = Number(v()); break;
      case '--budget': o.budget = Number(v()); break;
      case '--scaling': o.scaling = v() !== '0'; break;
      case '--scaling-n': o.scalingN = Number(v()); break;
      case '--scaling-budget': o.scalingBudget = Number(v()); break;
      case '--checks': o.checks = v() !== '0'; break;
      case '--t0-ms': o.t0Ms = Number(v()); break;
      case '--timeout': o.timeout = Number(v()); break;
      case '--pid': o.pid = Number(v()); break;
      case '--results': o.results = v(); break;
      case '--dir': o.dir = v(); break;
      case '--seconds': o.seconds = Number(v()); break;
      case '--all': o.all = true; break;
      case '--srclines': o.srclines = v() !== '0'; break;
      case '--slow-timeout': o.slowTimeout = Number(v()); break;
      case '--round': o.round = Number(v()); break;
      case '--app2': o.app2 = v(); break;
      case '--k': o.k = Number(v()); break;
      case '--rate': o.rate = Number(v()); break;
      case '--ws': o.ws = Number(v()); break;
      case '--quiet': o.quiet = Number(v()); break;
      case '--after-max': o.afterMax = Number(v()); break;
      case '--delete-timeout': o.deleteTimeout = Number(v()); break;
      case '--update-meta': o.updateMeta = v() !== '0'; break;
      case '--notes': o.notes = v(); break;
      case '--deletes': o.deletes = v(); break;
      default: throw new Error(`unknown option ${a}`);
    }
  }
  if (o.cmd === 'summary') {
    if (!o.meta || !o.notes) throw new Error('summary needs --meta and --notes');
    return o;
  }
  if (!o.url || !o.app || !o.token) throw new Error('--url, --app and --token are required');
  if (o.cmd === 'measure' && !o.meta) throw new Error('measure needs --meta');
  if ((o.cmd === 'ready' || o.cmd === 'cold') && !o.t0Ms) throw new Error(`${o.cmd} needs --t0-ms`);
  if (o.cmd === 'cold' && (!o.meta || !o.results)) throw new Error('cold needs --meta and --results');
  if (o.cmd === 'deletes' && (!o.meta || !o.app2)) throw new Error('deletes needs --meta and --app2');
  slowTimeoutMs = o.slowTimeout * 1000;
  return o;
}

async function main() {
  const o = parse(process.argv);
  if (o.cmd === 'measure') return measure(o);
  if (o.cmd === 'ready') return ready(o);
  if (o.cmd === 'cold') return cold(o);
  if (o.cmd === 'deletes') return deletes(o);
  if (o.cmd === 'summary') return summary(o);
  if (o.cmd === 'profile') {
    if (!o.results || !o.pid) throw new Error('profile needs --results and --pid');
    return profile(o);
  }
  throw new Error('usage: query_bench.js measure|ready|cold|deletes|summary|profile ...');
}

main().then(() => process.exit(process.exitCode || 0)).catch((e) => { process.stderr.write(`query_bench: ${e.stack || e}\n`); process.exit(1); });

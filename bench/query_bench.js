#!/usr/bin/env node
// Query benchmark, part 2: latency of every API v1 read endpoint over a loaded
// dataset (see query_dataset.js), with live traffic running.
//
//   node bench/query_bench.js measure --url http://127.0.0.1:PORT --app APP --token TOKEN \
//        --meta META.json [--n 50] [--offsets 0,330,-300] [--range-days 30] \
//        [--live 200] [--live-warmup 6] [--budget 90] [--scaling 1] [--out RESULTS.json]
//   node bench/query_bench.js ready --url ... --app APP --token TOKEN --t0-ms MS [--timeout 600]
//
// measure:
//   1. checks: totals over the dataset's range (up to when it was loaded) against what the generator sent
//      (users, installs, app starts, events per name, errors per name, users
//      total); mismatches are reported, not fatal;
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
//   Prints the tables and writes everything to --out.
// ready: polls /healthz until 200, then the daily analytics of the last 30
//   days until 200; prints the times since --t0-ms (when the server was started).
// profile --results RESULTS.json --pid PID [--seconds 8] [--all] [--dir TMP]:
//   for each endpoint of a measure run that missed its target (every endpoint
//   with --all), records the server with `perf record` while requesting that
//   endpoint in a loop and prints the top symbols and source lines.
'use strict';

const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');

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

function mulberry32(seed) {
  let a = seed >>> 0;
  return function rand() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------- HTTP

class Client {
  constructor(base, token) {
    this.base = base.replace(/\/$/, '');
    this.token = token;
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }
  // {status, ms, bytes, text}; ms from the request to the last byte.
  get(p, { timeoutMs = 60000, auth = true } = {}) {
    return new Promise((resolve, reject) => {
      const headers = auth ? { authorization: this.token } : {};
      const t0 = process.hrtime.bigint();
      const req = http.request(this.base + p, { method: 'GET', agent: this.agent, headers }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const ms = Number(process.hrtime.bigint() - t0) / 1e6;
          const buf = Buffer.concat(chunks);
          resolve({ status: res.statusCode, ms, bytes: buf.length, text: buf.toString('utf8') });
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
    max: s.length ? s[s.length - 1] : NaN,
    mean: s.length ? s.reduce((a, b) => a + b, 0) / s.length : NaN,
  };
}

// ---------------------------------------------------------------- live traffic

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
    const now = Date.now();
    const e = { type };
    if (d.sdk === 4) {
      if (name !== undefined) e.name = name;
      e.id = this.nextId++;
      e.date = now;
      e.sessionId = d.session;
      if (d.userId) e.userId = d.userId;
      e.anonId = d.anonId;
      e.deviceId = d.deviceId;
      if (withContext) Object.assign(e, { client: 'js', platform: d.platform, osVersion: d.osVersion, locale: d.locale, version: d.version, moduleVersion: '4.0.3' });
    } else {
      e.name = name === undefined ? null : name;
      e.date = new Date(now).toISOString();
      e.appId = this.app;
      e.id = this.nextId++;
      e.userId = d.userId;
      e.machineId = d.deviceId;
      e.sessionId = d.session;
      if (withContext) Object.assign(e, { client: 'nodejs', platform: d.platform, osVersion: d.osVersion, totalRam: d.ram, version: d.version, locale: d.locale, arch: d.arch, moduleVersion: '3.0.9' });
    }
    if (payload) e.payload = payload;
    return e;
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

async function checks(c, app, meta) {
  const out = [];
  const g = meta.load.generated;
  const f = meta.facts;
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
  const daily = (await c.json(`${a}/analytics?${q}`, { timeoutMs: 300000 })).data;
  note(daily.totalNumbers.users === f.users, 'daily totalNumbers.users over all data', daily.totalNumbers.users, f.users);
  note(daily.totalNumbers.installs === f.devices, 'daily totalNumbers.installs over all data (devices)', daily.totalNumbers.installs, f.devices);
  const usage = Object.values(daily.usage).reduce((x, y) => x + y, 0);
  note(usage === g.inits, 'sum of usage (app starts)', usage, g.inits);
  let hoursOk = true;
  for (const [day, hours] of Object.entries(daily.hours)) {
    if (hours.length !== 24 || hours.reduce((x, y) => x + y, 0) !== daily.usage[day]) hoursOk = false;
  }
  note(hoursOk, 'hours[day] has 24 entries summing to usage[day]', hoursOk, true);
  const newUsers = Object.values(daily.newUsers).reduce((x, y) => x + y, 0);
  note(newUsers === f.users, 'sum of newUsers over all data', newUsers, f.users);
  const events = (await c.json(`${a}/analytics/events?${q}`, { timeoutMs: 300000 })).data;
  let bad = [];
  for (const [name, n] of Object.entries(g.byName)) {
    const got = Object.values(events[name] || {}).reduce((x, y) => x + y, 0);
    if (got !== n) bad.push(`${name} ${got}/${n}`);
  }
  note(bad.length === 0 && Object.keys(events).length === Object.keys(g.byName).length,
    'events per name over all data', bad.length ? bad.slice(0, 5).join(', ') : `${Object.keys(events).length} names`, `${Object.keys(g.byName).length} names, exact counts`);
  const errors = (await c.json(`${a}/analytics/errors?${q}`, { timeoutMs: 300000 })).data;
  bad = [];
  for (const [name, n] of Object.entries(g.byError)) {
    const got = Object.values(errors[name] || {}).reduce((x, y) => x + y, 0);
    if (got !== n) bad.push(`${name} ${got}/${n}`);
  }
  note(bad.length === 0, 'errors per name over all data', bad.length ? bad.join(', ') : `${Object.keys(errors).length} names`, 'exact counts');
  const users = await c.json(`${a}/users?limit=1`);
  note(users.total === f.users, 'users total', users.total, f.users);
  const qg = (await c.json(`${a}/analytics/quickglance`)).data;
  note(qg.users > 0 && qg.appStarts > 0, 'quick glance has data in the last 24 h', JSON.stringify(qg), 'users > 0, appStarts > 0');
  return out;
}

// ---------------------------------------------------------------- measurement

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
  const ranged = (name, sub, target) => ({
    name, target, ranged: true,
    paths: (i) => `${a}${sub}${sub.includes('?') ? '&' : '?'}${rangeQuery(o.rangeDays, offsets[i % offsets.length], false)}`,
  });
  const attr = f.topEvent;
  const rows = [
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

// ---------------------------------------------------------------- ready

async function ready(o) {
  const c = new Client(o.url, o.token);
  const deadline = o.t0Ms + o.timeout * 1000;
  let healthz = null;
  while (Date.now() < deadline) {
    try {
      const r = await c.get('/healthz', { timeoutMs: 2000, auth: false });
      if (r.status === 200) { healthz = Date.now() - o.t0Ms; break; }
    } catch (_) { /* not up yet */ }
    await sleep(10);
  }
  if (healthz === null) throw new Error(`/healthz did not answer 200 within ${o.timeout} s`);
  const a = `/api/v1/apps/${encodeURIComponent(o.app)}`;
  let first = null, latency = null;
  while (Date.now() < deadline) {
    try {
      const r = await c.get(`${a}/analytics?${rangeQuery(30, 0, false)}`, { timeoutMs: 60000 });
      if (r.status === 200) { first = Date.now() - o.t0Ms; latency = r.ms; break; }
    } catch (_) { /* retry */ }
    await sleep(10);
  }
  c.close();
  if (first === null) throw new Error(`the first analytics query did not answer 200 within ${o.timeout} s`);
  process.stdout.write(JSON.stringify({ healthz_ms: healthz, first_query_ms: first, first_query_latency_ms: Number(latency.toFixed(1)) }) + '\n');
}

// ---------------------------------------------------------------- main

function parse(argv) {
  const o = {
    cmd: argv[2], url: null, app: null, token: null, meta: null, out: null, n: 50, offsets: [0, 330, -300],
    rangeDays: 30, live: 200, budget: 90, scaling: true, scalingN: 10, scalingBudget: 600, checks: true,
    t0Ms: 0, timeout: 900, pid: 0, liveWarmup: 6, results: null, dir: '/tmp', seconds: 8, all: false, srclines: true,
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
      default: throw new Error(`unknown option ${a}`);
    }
  }
  if (!o.url || !o.app || !o.token) throw new Error('--url, --app and --token are required');
  if (o.cmd === 'measure' && !o.meta) throw new Error('measure needs --meta');
  if (o.cmd === 'ready' && !o.t0Ms) throw new Error('ready needs --t0-ms');
  return o;
}

async function main() {
  const o = parse(process.argv);
  if (o.cmd === 'measure') return measure(o);
  if (o.cmd === 'ready') return ready(o);
  if (o.cmd === 'profile') {
    if (!o.results || !o.pid) throw new Error('profile needs --results and --pid');
    return profile(o);
  }
  throw new Error('usage: query_bench.js measure|ready|profile ...');
}

main().then(() => process.exit(process.exitCode || 0)).catch((e) => { process.stderr.write(`query_bench: ${e.stack || e}\n`); process.exit(1); });

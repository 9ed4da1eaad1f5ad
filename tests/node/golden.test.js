// Golden end-to-end tests of the Nucleus API v1 (tests/golden/*.json).
//
// Each case file holds a fixture (tracking messages sent through the real
// tracking endpoint, over HTTP or WebSocket) and a list of API requests with
// the exact status and JSON response expected. The expected values were
// computed by hand from docs/semantics.md and docs/api-decisions.md
// (authentication variants: docs/openapi.json)
// (each case carries its reasoning in "notes"). The cases are backend-neutral:
// the same files run against every storage backend. See tests/golden/README.md
// for the file format and its placeholders.
//
// One server for the whole run, one app per case (created before the server
// starts), one subtest per case, run one after another.
//
// Run:   node --test tests/node/golden.test.js
// Env:   NUCLEON_BIN                  the binary (default build/nucleon)
//        NUCLEON_GOLDEN_SERVER_ARGS   extra `nucleon serve` arguments (whitespace separated,
//                                     or a JSON array), e.g. to select another backend
//        NUCLEON_GOLDEN_FILTER        only the case files whose name contains this text
//        NUCLEON_GOLDEN_SETTLE_MS     wait this long after each fixture before the requests
//                                     (for backends that are not read-after-ack consistent)
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const util = require('node:util');
const WebSocket = require('ws');

const { Server, createApp, tempDir, httpRequest, sleep } = require('./lib/server.js');

const GOLDEN_DIR = path.resolve(__dirname, '..', 'golden');
const FILTER = process.env.NUCLEON_GOLDEN_FILTER || '';
const SETTLE_MS = Number(process.env.NUCLEON_GOLDEN_SETTLE_MS || 0);
const CLOSE_SETTLE_MS = 250; // after closing tracking sockets, before the next request

function serverArgs() {
  const raw = (process.env.NUCLEON_GOLDEN_SERVER_ARGS || '').trim();
  if (!raw) return [];
  if (raw.startsWith('[')) return JSON.parse(raw);
  return raw.split(/\s+/);
}

const caseFiles = fs.readdirSync(GOLDEN_DIR)
  .filter((f) => /^\d{4}_.+\.json$/.test(f) && f.includes(FILTER))
  .sort();

// ------------------------------------------------------------------------------------------
// Placeholders

const isPlainObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
// A placeholder is an object with exactly one key that starts with "$" (a "$day:" key is a
// day-key placeholder, resolved by resolveKey, not a value placeholder).
function placeholderOf(v) {
  if (!isPlainObject(v)) return null;
  const keys = Object.keys(v);
  if (keys.length !== 1 || !keys[0].startsWith('$') || keys[0].startsWith('$day:')) return null;
  return { op: keys[0], arg: v[keys[0]] };
}

function parseIso(iso) {
  const ms = Date.parse(iso);
  if (!Number.isFinite(ms)) throw new Error(`bad ISO date in a case file: ${iso}`);
  return ms;
}

// Local ISO without offset, as the Python SDK sends it: the UTC clock time, no "Z".
const isoNoOffset = (ms) => new Date(ms).toISOString().replace(/Z$/, '');

function userDbId(appId, userKey) {
  return crypto.createHash('sha256').update(`${appId}/${userKey}`).digest('hex').slice(0, 24);
}

// The utcOffset (minutes) that puts `now` at local 12:00 (rounded down to the minute), so that
// events a few hours around now fall on one local day whatever the time the suite runs.
function noonUtcOffset(now) {
  const d = new Date(now);
  return 720 - (d.getUTCHours() * 60 + d.getUTCMinutes());
}

function localDay(ms, utcOffsetMin) {
  return new Date(ms + utcOffsetMin * 60000).toISOString().slice(0, 10);
}

// Values sent in fixtures.
function resolveFixture(v, ctx) {
  const ph = placeholderOf(v);
  if (ph) {
    switch (ph.op) {
      case '$ms': return parseIso(ph.arg);                       // ISO -> ms number
      case '$now': return ctx.now + ph.arg;                      // ms relative to the run's now
      case '$now_iso': return new Date(ctx.now + ph.arg).toISOString();
      case '$now_iso_nooffset': return isoNoOffset(ctx.now + ph.arg);
      default: throw new Error(`unknown fixture placeholder ${ph.op}`);
    }
  }
  if (Array.isArray(v)) return v.map((x) => resolveFixture(x, ctx));
  if (isPlainObject(v)) {
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = resolveFixture(x, ctx);
    return out;
  }
  return v;
}

// Query parameter values.
function resolveQueryValue(v, ctx) {
  const ph = placeholderOf(v);
  if (ph) {
    switch (ph.op) {
      case '$s': return String(Math.floor(parseIso(ph.arg) / 1000));      // ISO -> Unix seconds
      case '$now_s': return String(Math.floor((ctx.now + ph.arg) / 1000));
      case '$noon_utc_offset': return String(noonUtcOffset(ctx.now));
      default: throw new Error(`unknown query placeholder ${ph.op}`);
    }
  }
  return substitute(String(v), ctx);
}

// Strings in paths, query values, headers and bodies.
function substitute(s, ctx) {
  return s.replace(/:appId\b/g, ctx.appId).replace(/:otherToken\b/g, ctx.otherToken).replace(/:token\b/g, ctx.token);
}

// Expected values: exact placeholders are replaced by their value; matchers ($any, $iso_near,
// $range) are kept as Matcher objects and checked by `matches`.
class Matcher {
  constructor(op, arg, describe, test) { this.op = op; this.arg = arg; this.describe = describe; this.test = test; }
  [util.inspect.custom]() { return `<${this.describe}>`; }
  toJSON() { return `<${this.describe}>`; }
}

function resolveKey(k, ctx) {
  // "$day:<msRelativeToNow>:<utcOffset|noon>" -> the local day of now+ms.
  const m = /^\$day:(-?\d+):(-?\d+|noon)$/.exec(k);
  if (!m) return k;
  const off = m[2] === 'noon' ? noonUtcOffset(ctx.now) : Number(m[2]);
  return localDay(ctx.now + Number(m[1]), off);
}

function resolveExpected(v, ctx) {
  const ph = placeholderOf(v);
  if (ph) {
    switch (ph.op) {
      case '$user_id': return userDbId(ctx.appId, ph.arg);
      case '$iso_now': return new Date(ctx.now + ph.arg).toISOString();
      case '$iso': return new Date(parseIso(ph.arg)).toISOString();
      case '$any': {
        const type = ph.arg;
        return new Matcher(ph.op, type, `any ${type}`, (x) => (type === 'any' ? x !== undefined
          : type === 'null' ? x === null : type === 'array' ? Array.isArray(x)
            : type === 'object' ? isPlainObject(x) : typeof x === type));
      }
      case '$iso_near': {
        const [offset, tol] = ph.arg;
        const center = ctx.now + offset;
        return new Matcher(ph.op, ph.arg, `ISO date within ${tol} ms of ${new Date(center).toISOString()}`,
          (x) => typeof x === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(x)
            && Math.abs(Date.parse(x) - center) <= tol);
      }
      case '$same': {
        // Every value tagged with the same name must be equal; values of different tags must differ.
        const tag = ph.arg;
        return new Matcher(ph.op, tag, `the value tagged "${tag}" (equal within the tag, distinct across tags)`, (x) => {
          if (x === undefined || x === null) return false;
          const key = JSON.stringify(x);
          if (ctx.bindings.has(tag)) return ctx.bindings.get(tag) === key;
          for (const v of ctx.bindings.values()) if (v === key) return false;
          ctx.bindings.set(tag, key);
          return true;
        });
      }
      case '$range': {
        const [lo, hi] = ph.arg;
        return new Matcher(ph.op, ph.arg, `number in [${lo}, ${hi}]`, (x) => typeof x === 'number' && x >= lo && x <= hi);
      }
      default: throw new Error(`unknown expected-value placeholder ${ph.op}`);
    }
  }
  if (v === ':appId') return ctx.appId;
  if (Array.isArray(v)) return v.map((x) => resolveExpected(x, ctx));
  if (isPlainObject(v)) {
    const out = {};
    for (const [k, x] of Object.entries(v)) out[resolveKey(k, ctx)] = resolveExpected(x, ctx);
    return out;
  }
  return v;
}

// Exact JSON equality (object key order ignored, array order and key presence compared),
// with matchers. Returns null when equal, else the path and a reason of the first difference.
function firstDifference(expected, actual, where = '$') {
  if (expected instanceof Matcher) {
    return expected.test(actual) ? null : `${where}: expected ${expected.describe}, got ${JSON.stringify(actual)}`;
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return `${where}: expected an array, got ${JSON.stringify(actual)}`;
    for (let i = 0; i < Math.min(expected.length, actual.length); i++) {
      const d = firstDifference(expected[i], actual[i], `${where}[${i}]`);
      if (d) return d;
    }
    if (expected.length !== actual.length) return `${where}: expected ${expected.length} items, got ${actual.length}`;
    return null;
  }
  if (isPlainObject(expected)) {
    if (!isPlainObject(actual)) return `${where}: expected an object, got ${JSON.stringify(actual)}`;
    const missing = Object.keys(expected).filter((k) => !(k in actual));
    const extra = Object.keys(actual).filter((k) => !(k in expected));
    if (missing.length) return `${where}: missing key(s) ${missing.map((k) => JSON.stringify(k)).join(', ')}`;
    if (extra.length) return `${where}: unexpected key(s) ${extra.map((k) => JSON.stringify(k)).join(', ')}`;
    for (const k of Object.keys(expected)) {
      const d = firstDifference(expected[k], actual[k], `${where}.${k}`);
      if (d) return d;
    }
    return null;
  }
  if (expected === actual) return null;
  return `${where}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`;
}

const pretty = (v) => JSON.stringify(v, null, 2);

// ------------------------------------------------------------------------------------------
// Fixture delivery

class TrackingSocket {
  constructor(ws) {
    this.ws = ws;
    this.messages = [];
    this.waiters = [];
    this.closed = new Promise((resolve) => ws.once('close', resolve));
    ws.on('message', (data) => {
      const text = data.toString('utf8');
      const w = this.waiters.shift();
      if (w) w(text); else this.messages.push(text);
    });
    ws.on('error', () => {});
  }

  static open(port, appId) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/app/${appId}/track`, { handshakeTimeout: 5000 });
      ws.once('open', () => resolve(new TrackingSocket(ws)));
      ws.once('unexpected-response', (req, res) => reject(new Error(`WebSocket upgrade refused: ${res.statusCode}`)));
      ws.once('error', reject);
    });
  }

  next(timeoutMs = 10000) {
    if (this.messages.length) return Promise.resolve(this.messages.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`no ack within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (m) => { clearTimeout(timer); resolve(m); };
      this.waiters.push(waiter);
    });
  }

  async close(timeoutMs = 5000) {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close();
    const t = sleep(timeoutMs).then(() => this.ws.terminate());
    await Promise.race([this.closed, t]);
  }
}

// Gives events without an "id" a unique one (ids >= 100000; case files use smaller ones), and
// removes "id": null (an event sent without id).
function withIds(events, ctx) {
  return events.map((e) => {
    if (!isPlainObject(e)) return e;
    if (!('id' in e)) return { ...e, id: 100000 + ctx.nextId++ };
    if (e.id === null) { const { id, ...rest } = e; return rest; }
    return e;
  });
}

function checkAck(text, events, where) {
  let ack;
  try { ack = JSON.parse(text); } catch (_) { assert.fail(`${where}: ack is not JSON: ${text}`); }
  assert.ok(isPlainObject(ack) && Array.isArray(ack.reportedIds), `${where}: bad ack ${text}`);
  const sent = events.filter((e) => isPlainObject(e) && e.id !== undefined).map((e) => JSON.stringify(e.id)).sort();
  const got = ack.reportedIds.map((id) => JSON.stringify(id)).sort();
  assert.deepEqual(got, sent, `${where}: the ack does not list every id sent: ${text}`);
}

// Sends tracking messages in order. Sockets are named per case (`socket`), so a later step can
// reuse a socket a fixture left open.
async function sendMessages(messages, ctx, where0) {
  for (let i = 0; i < messages.length; i++) {
    const msg = messages[i];
    const where = `${where0}[${i}]`;
    const events = withIds(resolveFixture(msg.data, ctx), ctx);
    const body = JSON.stringify({ data: events });
    if ((msg.transport || 'http') === 'http') {
      let r;
      for (let attempt = 0; ; attempt++) {
        r = await httpRequest(ctx.port, 'POST', `/app/${ctx.appId}/track`, {
          body, headers: { 'Content-Type': 'application/json' },
        });
        // HTTP tracking is rate-limited per IP: honour Retry-After (bounded) rather than fail.
        if (r.status !== 429 || attempt >= 5) break;
        await sleep(Math.min(5000, 1000 * (Number(r.headers['retry-after']) || 1)));
      }
      assert.equal(r.status, 200, `${where}: tracking POST answered ${r.status}: ${r.text}`);
      checkAck(r.text, events, where);
    } else if (msg.transport === 'ws') {
      const name = msg.socket || `${where}`;
      let entry = ctx.sockets.get(name);
      if (!entry || entry.sock.ws.readyState !== WebSocket.OPEN) {
        entry = { sock: await TrackingSocket.open(ctx.port, ctx.appId), keepOpen: false };
        ctx.sockets.set(name, entry);
        ctx.openSockets.push(entry.sock);
      }
      if (msg.keepOpen) entry.keepOpen = true;
      entry.sock.ws.send(body);
      checkAck(await entry.sock.next(), events, where);
    } else {
      throw new Error(`${where}: unknown transport ${msg.transport}`);
    }
  }
  // Sockets not marked keepOpen are closed (and the close completed) before the requests.
  let closed = 0;
  for (const [name, entry] of ctx.sockets) {
    if (!entry.keepOpen) { await entry.sock.close(); ctx.sockets.delete(name); closed++; }
  }
  // The server drops a closed socket from its live state right after the close handshake, not
  // necessarily before the client sees it complete: give it a moment.
  if (closed) await sleep(CLOSE_SETTLE_MS);
}

// ------------------------------------------------------------------------------------------
// Requests

const BAD_TOKEN = `nct_${'A'.repeat(43)}`;

function buildRequest(req, ctx) {
  let p = substitute(req.path, ctx);
  const q = req.query || {};
  const pairs = Object.entries(q).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(resolveQueryValue(v, ctx))}`);
  if (pairs.length) p += (p.includes('?') ? '&' : '?') + pairs.join('&');
  const headers = {};
  switch (req.auth || 'header') {
    case 'header': headers.Authorization = ctx.token; break;
    case 'none': break;
    case 'empty': headers.Authorization = ''; break;
    case 'bad': headers.Authorization = BAD_TOKEN; break;
    case 'bearer': headers.Authorization = `Bearer ${ctx.token}`; break;
    case 'other': headers.Authorization = ctx.otherToken; break;
    default: throw new Error(`unknown auth mode ${req.auth}`);
  }
  for (const [k, v] of Object.entries(req.headers || {})) headers[k] = substitute(String(v), ctx);
  let body;
  if (req.body !== undefined) {
    body = typeof req.body === 'string' ? substitute(req.body, ctx) : substitute(JSON.stringify(req.body), ctx);
    if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['Content-Type'] = 'application/json';
  }
  return { method: req.method || 'GET', path: p, headers, body };
}

async function runRequest(req, idx, ctx, file) {
  const r = buildRequest(req, ctx);
  const res = await httpRequest(ctx.port, r.method, r.path, { headers: r.headers, body: r.body, timeout: 15000 });
  const expected = req.response === null || req.response === undefined ? null : resolveExpected(req.response, ctx);
  let problem = null;
  if (res.status !== req.status) problem = `status: expected ${req.status}, got ${res.status}`;
  let actual;
  if (expected === null) {
    actual = res.text;
    if (!problem && res.text !== '') problem = `body: expected an empty body, got ${JSON.stringify(res.text)}`;
  } else {
    actual = res.json;
    if (res.json === undefined) {
      actual = res.text;
      problem = problem || `body: not JSON: ${JSON.stringify(res.text)}`;
    } else if (!problem) {
      problem = firstDifference(expected, res.json);
    }
  }
  if (problem) {
    const shownReq = { method: r.method, path: r.path, auth: req.auth || 'header', headers: req.headers, body: req.body };
    return [
      `${file} requests[${idx}]${req.description ? ` (${req.description})` : ''}`,
      `  first difference: ${problem}`,
      `  request: ${pretty(shownReq).replace(/\n/g, '\n  ')}`,
      `  expected: status ${req.status}`,
      `  ${expected === null ? '(empty body)' : pretty(expected).replace(/\n/g, '\n  ')}`,
      `  actual: status ${res.status}`,
      `  ${typeof actual === 'string' ? JSON.stringify(actual) : pretty(actual).replace(/\n/g, '\n  ')}`,
    ].join('\n');
  }
  return null;
}

// ------------------------------------------------------------------------------------------

let server;
let dataDir;
let other;
const apps = new Map(); // file -> {appId, token}
const cases = new Map(); // file -> parsed case

before(async () => {
  for (const f of caseFiles) {
    const kase = JSON.parse(fs.readFileSync(path.join(GOLDEN_DIR, f), 'utf8'));
    for (const k of ['description', 'notes', 'requests']) {
      if (!(k in kase)) throw new Error(`${f}: missing "${k}"`);
    }
    cases.set(f, kase);
  }
  dataDir = tempDir('golden');
  // Apps exist before the server starts, so no wait for the registry to pick them up.
  other = createApp(dataDir, 'golden-other-app');
  for (const f of caseFiles) apps.set(f, createApp(dataDir, `golden-${f.replace(/\.json$/, '')}`));
  server = new Server({ dataDir, args: serverArgs() });
  await server.start();
});

after(async () => {
  if (server) await server.stop();
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

test('golden API cases', { timeout: 300000 }, async (t) => {
  for (const f of caseFiles) {
    await t.test(f.replace(/\.json$/, ''), { timeout: 60000 }, async () => {
      const kase = cases.get(f);
      const { appId, token } = apps.get(f);
      const ctx = { appId, token, otherToken: other.token, port: server.port, now: Date.now(), nextId: 0, openSockets: [], sockets: new Map(), bindings: new Map() };
      try {
        await sendMessages(kase.fixture || [], ctx, `${f} fixture`);
        const wait = Math.max(SETTLE_MS, kase.settleMs || 0);
        if (wait) await sleep(wait);
        const failures = [];
        for (let i = 0; i < kase.requests.length; i++) {
          const step = kase.requests[i];
          if (step.close) { // close a socket left open, and wait for the close to complete
            const entry = ctx.sockets.get(step.close);
            if (!entry) throw new Error(`${f} requests[${i}]: no open socket named ${step.close}`);
            await entry.sock.close();
            ctx.sockets.delete(step.close);
            await sleep(Math.max(CLOSE_SETTLE_MS, step.settleMs || 0));
            continue;
          }
          if (step.send) { // a tracking step between requests
            await sendMessages(step.send, ctx, `${f} requests[${i}].send`);
            if (step.settleMs || SETTLE_MS) await sleep(Math.max(SETTLE_MS, step.settleMs || 0));
            continue;
          }
          const problem = await runRequest(step, i, ctx, f);
          if (problem) failures.push(problem);
        }
        if (failures.length) {
          assert.fail(`${failures.length} of ${kase.requests.length} request(s) of ${f} differ` +
            ` (case: ${kase.description})\n\n${failures.join('\n\n')}`);
        }
      } finally {
        for (const s of ctx.openSockets) await s.close();
      }
    });
  }
});

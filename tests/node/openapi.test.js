// Contract test of docs/openapi.json against the real server.
//
// Starts `nucleon serve` on a loopback port with a fresh data folder, sends a fixture that
// exercises every field the API can show (init with props from both SDK generations, events
// with string/number/boolean props, views, errors, userid and props events, one user on two
// devices, an anonymous user, a device-only user, a zero-length session, heartbeats, an
// invalid event, and live WebSocket connections kept open), then calls every endpoint of the
// document, successes and error cases, and validates each real response body against the
// schema the document gives for that path, method and status (JSON Schema 2020-12, Ajv strict
// mode). It also checks that every documented operation was exercised with a success, that
// every observed status is documented for its operation, that every response carries the CORS
// header, and that GET /api/v1/openapi.json serves exactly docs/openapi.json.
//
// Run (from the repository root):  node --test tests/node/openapi.test.js
// Env:  NUCLEON_BIN  the binary (default build/nucleon)
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const Ajv2020 = require('ajv/dist/2020');
const addFormats = require('ajv-formats');
const WebSocket = require('ws');

const { Server, createApp, tempDir, repoRoot } = require('./lib/server.js');

const DOC_PATH = path.join(repoRoot, 'docs', 'openapi.json');
const doc = JSON.parse(fs.readFileSync(DOC_PATH, 'utf8'));

const HOUR = 3600000;
const DAY = 24 * HOUR;
const STEP_TIMEOUT = 30000;

// ------------------------------------------------------------------------------------------
// The document as validators

const SCHEMAS_ID = 'urn:nucleon:openapi-schemas';

// Component schema refs (#/components/schemas/X) point into one registered schema's $defs.
function rewriteRefs(v) {
  if (Array.isArray(v)) return v.map(rewriteRefs);
  if (v && typeof v === 'object') {
    const out = {};
    for (const [k, x] of Object.entries(v)) {
      if (k === '$ref' && typeof x === 'string' && x.startsWith('#/components/schemas/')) {
        out[k] = `${SCHEMAS_ID}#/$defs/${x.slice('#/components/schemas/'.length)}`;
      } else {
        out[k] = rewriteRefs(x);
      }
    }
    return out;
  }
  return v;
}

const ajv = new Ajv2020({ strict: true, allErrors: true, allowUnionTypes: true });
addFormats(ajv);
ajv.addSchema({ $id: SCHEMAS_ID, $defs: rewriteRefs(doc.components.schemas) });

const validators = new Map();
function validatorFor(schema) {
  const key = JSON.stringify(schema);
  if (!validators.has(key)) validators.set(key, ajv.compile(rewriteRefs(schema)));
  return validators.get(key);
}

// Follows a local "#/..." reference inside the document.
function deref(obj) {
  let cur = obj;
  for (let hops = 0; cur && cur.$ref; hops++) {
    assert.ok(hops < 10, `reference loop at ${cur.$ref}`);
    assert.ok(cur.$ref.startsWith('#/'), `only local references are used: ${cur.$ref}`);
    let target = doc;
    for (const part of cur.$ref.slice(2).split('/')) {
      target = target?.[part.replace(/~1/g, '/').replace(/~0/g, '~')];
    }
    assert.ok(target !== undefined, `unresolved reference ${cur.$ref}`);
    cur = target;
  }
  return cur;
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

// The path template of the document that a concrete path matches (the one with the fewest
// parameters when several match, as OpenAPI requires).
function templateOf(urlPath) {
  const segs = urlPath.split('/');
  let best = null;
  let bestParams = Infinity;
  for (const template of Object.keys(doc.paths)) {
    const tsegs = template.split('/');
    if (tsegs.length !== segs.length) continue;
    let params = 0;
    let ok = true;
    for (let i = 0; i < tsegs.length && ok; i++) {
      if (/^\{[^}]+\}$/.test(tsegs[i])) {
        params++;
        ok = segs[i] !== '';
      } else {
        ok = tsegs[i] === segs[i];
      }
    }
    if (ok && params < bestParams) { best = template; bestParams = params; }
  }
  return best;
}

const observed = []; // {template, method, status}
const samples = new Map(); // "method template status" -> a real JSON body that validated

function short(text, n = 600) {
  return text.length > n ? `${text.slice(0, n)}... (${text.length} chars)` : text;
}

// Checks one real response against the document. `method` is the HTTP method sent.
function checkResponse(method, target, res, { expectStatus } = {}) {
  const where = `${method} ${target} -> ${res.status}`;
  if (expectStatus !== undefined) {
    assert.equal(res.status, expectStatus, `${where}: expected status ${expectStatus}; body: ${short(res.text || '')}`);
  }
  assert.equal(res.headers['access-control-allow-origin'], '*', `${where}: CORS header missing`);
  const urlPath = target.split('?')[0];
  const template = templateOf(urlPath);
  assert.ok(template, `${where}: no path of the document matches ${urlPath}`);
  const item = doc.paths[template];
  let op = item[method.toLowerCase()];
  if (!op) {
    // A method the path does not answer: it must be a 405 as documented on the path's operations.
    assert.equal(res.status, 405, `${where}: ${method} is not an operation of ${template}, so only 405 is right`);
    op = METHODS.map((m) => item[m]).find((o) => o && o.responses && o.responses['405']);
    assert.ok(op, `${where}: ${template} documents no 405`);
  }
  const responses = op.responses;
  assert.ok(String(res.status) in responses,
    `${where}: status ${res.status} is not documented for ${method.toLowerCase()} ${template} (documented: ${Object.keys(responses).join(', ')}); body: ${short(res.text || '')}`);
  const documented = deref(responses[String(res.status)]);
  observed.push({ template, method: method.toLowerCase(), status: res.status });

  if (!documented.content) {
    assert.equal(res.text || '', '', `${where}: documented without a body, but got one: ${short(res.text)}`);
    return;
  }
  const contentType = String(res.headers['content-type'] || '');
  const mediaKeys = Object.keys(documented.content);
  const media = mediaKeys.find((k) => k.split(';')[0].trim() === contentType.split(';')[0].trim());
  assert.ok(media, `${where}: content type "${contentType}" is not documented (${mediaKeys.join(', ')})`);
  const schema = documented.content[media].schema;
  assert.ok(schema, `${where}: no schema for ${media}`);
  let body;
  if (media.startsWith('application/json')) {
    assert.ok(res.json !== undefined, `${where}: body is not JSON: ${short(res.text || '')}`);
    body = res.json;
  } else {
    body = res.text;
  }
  const validate = validatorFor(schema);
  if (!validate(body)) {
    assert.fail(`${where}: response does not match the documented schema:\n${ajv.errorsText(validate.errors, { separator: '\n' })}\nbody: ${short(JSON.stringify(body), 2000)}`);
  }
  if (media.startsWith('application/json')) {
    // Keep the richest answer of each kind for the strictness test.
    const key = `${method.toLowerCase()} ${template} ${res.status}`;
    const size = JSON.stringify(body).length;
    if (!samples.has(key) || samples.get(key).size < size) samples.set(key, { schema, body, size });
  }
}

// ------------------------------------------------------------------------------------------
// Server, fixture, client helpers

let server;
let dataDir;
let app; // {appId, token}
let other; // {appId, token}
let ctx; // fixture facts: now, ids
const sockets = [];

function within(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

// One API call, validated. `auth`: 'raw' | 'bearer' | 'none' | a literal header value.
async function call(method, target, { auth = 'raw', token, json, form, headers = {}, expectStatus } = {}) {
  const h = { ...headers };
  const tok = token || app.token;
  if (auth === 'raw') h.authorization = tok;
  else if (auth === 'bearer') h.authorization = `Bearer ${tok}`;
  else if (auth !== 'none') h.authorization = auth;
  let body;
  if (json !== undefined) { body = JSON.stringify(json); h['content-type'] = 'application/json'; }
  if (form !== undefined) { body = new URLSearchParams(form).toString(); h['content-type'] = 'application/x-www-form-urlencoded'; }
  if (body !== undefined) h['content-length'] = Buffer.byteLength(body);
  const res = await server.request(method, target, { body, headers: h, timeout: 10000 });
  checkResponse(method, target, res, { expectStatus });
  return res;
}

// A request written on a raw socket (a body announced but never sent, for the 413s): returns
// {status, headers, text, json} parsed from what the server wrote before closing.
function rawRequest(head) {
  return within(new Promise((resolve, reject) => {
    const sock = net.connect(server.port, '127.0.0.1');
    const chunks = [];
    sock.on('connect', () => sock.write(head));
    sock.on('data', (c) => chunks.push(c));
    sock.on('error', reject);
    sock.on('close', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const split = raw.indexOf('\r\n\r\n');
      if (split < 0) return reject(new Error(`no HTTP response: ${JSON.stringify(raw)}`));
      const lines = raw.slice(0, split).split('\r\n');
      const status = Number(lines[0].split(' ')[1]);
      const headers = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      const text = raw.slice(split + 4);
      let parsed;
      try { parsed = JSON.parse(text); } catch (_) { parsed = undefined; }
      resolve({ status, headers, text, json: parsed });
    });
  }), 10000, 'raw request');
}

// A tracking WebSocket: collects the server's messages and validates each as a TrackAck.
class Socket {
  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.waiters = [];
    ws.on('message', (data) => {
      const w = this.waiters.shift();
      if (w) w(data.toString('utf8')); else this.queue.push(data.toString('utf8'));
    });
    ws.on('error', () => {});
  }

  static open(target) {
    return within(new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${server.port}${target}`, { handshakeTimeout: 5000 });
      ws.once('open', () => resolve(new Socket(ws)));
      ws.once('unexpected-response', (req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      ws.once('error', reject);
    }), 10000, `WebSocket ${target}`);
  }

  // Sends one message and returns the parsed ack (validated against the document's TrackAck).
  async send(message, { binary = false } = {}) {
    this.ws.send(JSON.stringify(message), { binary });
    const text = await within(new Promise((resolve) => {
      if (this.queue.length) resolve(this.queue.shift()); else this.waiters.push(resolve);
    }), 10000, 'WebSocket ack');
    const ack = JSON.parse(text);
    const validate = validatorFor({ $ref: '#/components/schemas/TrackAck' });
    assert.ok(validate(ack), `WebSocket ack ${text}: ${ajv.errorsText(validate.errors)}`);
    return ack;
  }
}

// A WebSocket upgrade the server refuses: the HTTP answer, validated.
function refusedUpgrade(target) {
  return within(new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}${target}`, { handshakeTimeout: 5000 });
    ws.once('open', () => { ws.terminate(); reject(new Error(`upgrade to ${target} was accepted`)); });
    ws.once('unexpected-response', (req, res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed;
        try { parsed = JSON.parse(text); } catch (_) { parsed = undefined; }
        req.destroy();
        resolve({ status: res.statusCode, headers: res.headers, text, json: parsed });
      });
    });
    ws.once('error', () => {});
  }), 10000, `refused upgrade ${target}`);
}

// The JSON pointer of the first difference between two JSON values, or null.
function firstDifference(a, b, where = '') {
  if (a === b) return null;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object' || Array.isArray(a) !== Array.isArray(b)) {
    return `${where || '/'} (${short(JSON.stringify(a), 80)} vs ${short(JSON.stringify(b), 80)})`;
  }
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) {
    if (!(k in a) || !(k in b)) return `${where}/${k} (only in ${k in a ? 'the repository' : 'the served'} copy)`;
    const d = firstDifference(a[k], b[k], `${where}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`);
    if (d) return d;
  }
  return null;
}

const q = (params) => `?${new URLSearchParams(params).toString()}`;

// Fixture -----------------------------------------------------------------------------------

const DEV_A = 'CiF9fH5XFVjD7Xo'; // 4.x, user richard
const DEV_B = '0035969e4a1bd8370f'; // 3.x, user richard
const DEV_C = 'x7Qm2Lr9TzVb1Kp'; // 4.x, anonymous user
const DEV_D = 'c0ffee00c0ffee00'; // 3.x, no user id: the device is the user
const DEV_E = 'dOoMeD0000000e1'; // 4.x, user doomed (deleted by the tests)
const ANON = 'Vd3kq0PzL1xA';

function fixtureBatches(now, appId) {
  let id = 1000;
  const a = (sid, extra) => ({ sessionId: sid, userId: 'richard', anonId: 'hGzKvaoI5Mno', deviceId: DEV_A, ...extra });
  const mac = { client: 'js', platform: 'Darwin', osVersion: '14.5.0', locale: 'en-US', version: '2.3.0', moduleVersion: '4.0.3' };
  const win3 = { client: 'nodejs', platform: 'win32', osVersion: '10.0.22631', totalRam: 15.6, version: '2.2.1', locale: 'en_US.UTF-8', arch: 'x64', moduleVersion: '3.0.9' };
  const iso = (ms) => new Date(ms).toISOString();
  return [
    // richard, device A, three days ago: the install, a session with a boolean prop.
    [
      { type: 'init', id: ++id, date: now - 3 * DAY, payload: { plan: 'free' }, ...a(111201, mac), version: '2.2.0' },
      { type: 'event', name: 'PLAYED_TRACK', id: ++id, date: now - 3 * DAY + 60000, payload: { trackName: 'Intro', duration: 95, liked: true }, ...a(111201) },
    ],
    // device D (3.x, no userId), two days ago: an init-only (zero-length) session, locale C.
    [
      { type: 'init', name: null, date: iso(now - 2 * DAY), appId, id: ++id, machineId: DEV_D, sessionId: 4242, payload: {}, client: 'nodejs', platform: 'Linux', osVersion: '6.8.0', totalRam: 7.7, version: '2.1.0', locale: 'C', arch: 'arm64', moduleVersion: '3.0.9' },
    ],
    // richard, device B (3.x), yesterday.
    [
      { type: 'init', name: null, date: iso(now - DAY), appId, id: ++id, userId: 'richard', machineId: DEV_B, sessionId: 126166, payload: {}, ...win3 },
      { type: 'event', name: 'SAVED', date: iso(now - DAY + 5000), appId, id: ++id, userId: 'richard', machineId: DEV_B, sessionId: 126166, payload: { kind: 'doc', pages: 3 } },
      { type: 'error', name: 'windowError', date: iso(now - DAY + 6000), appId, id: ++id, userId: 'richard', machineId: DEV_B, sessionId: 126166, payload: { stack: 'Error: x\n    at a (b.js:1:1)', message: 'x' }, ...win3 },
    ],
    // richard, device A, an hour ago: every event type.
    [
      { type: 'init', id: ++id, date: now - HOUR, payload: { plan: 'pro', age: 34 }, ...a(490330, mac) },
      { type: 'userid', id: ++id, date: now - HOUR + 500, payload: { team: 'audio' }, ...a(490330) },
      { type: 'props', id: ++id, date: now - HOUR + 600, payload: { beta: true, seats: 5 }, ...a(490330) },
      { type: 'event', name: 'PLAYED_TRACK', id: ++id, date: now - HOUR + 1000, payload: { trackName: 'Song', duration: 120 }, ...a(490330) },
      { type: 'event', name: 'PLAYED_TRACK', id: ++id, date: now - HOUR + 200000, payload: { trackName: 'Song', duration: 120, liked: false }, ...a(490330) },
      { type: 'nucleus:view', name: 'Cart', id: ++id, date: now - HOUR + 240000, payload: { count: 5 }, ...a(490330) },
      { type: 'error', name: 'uncaughtException', id: ++id, date: now - HOUR + 300000, payload: { stack: 'TypeError: x is undefined\n    at play (player.js:10:5)', message: 'x is undefined' }, ...a(490330, mac) },
    ],
    // The anonymous user (anonId only), device C, half an hour ago; a string id; a resend.
    [
      { type: 'init', id: 'c-1', date: now - 30 * 60000, payload: { plan: 'free' }, sessionId: '7311', anonId: ANON, deviceId: DEV_C, client: 'js', platform: 'Windows_NT', osVersion: '10.0.19045', locale: 'fr-FR', version: '2.3.0', moduleVersion: '4.0.3' },
      { type: 'event', name: 'PLAYED_TRACK', id: 'c-2', date: now - 29 * 60000, payload: { trackName: 'Chanson', duration: 200 }, sessionId: '7311', anonId: ANON, deviceId: DEV_C },
      { type: 'event', name: 'PLAYED_TRACK', id: 'c-2', date: now - 29 * 60000, payload: { trackName: 'Chanson', duration: 200 }, sessionId: '7311', anonId: ANON, deviceId: DEV_C },
      { type: 'error', name: 'unhandledRejection', id: 'c-3', date: now - 28 * 60000, payload: { stack: 'Error: fetch failed\n    at load (net.js:3:1)', message: 'fetch failed' }, sessionId: '7311', anonId: ANON, deviceId: DEV_C, client: 'js', platform: 'Windows_NT', osVersion: '10.0.19045', locale: 'fr-FR' },
    ],
    // The user the tests delete, device E, with a Python-style heartbeat (no sessionId: it
    // extends the device's latest session); an invalid event (no device) acked and dropped.
    [
      { type: 'init', id: ++id, date: now - 2 * HOUR, payload: { plan: 'trial' }, sessionId: 55, userId: 'doomed', deviceId: DEV_E, client: 'js', platform: 'Linux', osVersion: '6.1', locale: 'de-DE', version: '2.3.0' },
      { type: 'event', name: 'SAVED', id: ++id, date: now - 2 * HOUR + 1000, payload: { kind: 'doc' }, sessionId: 55, userId: 'doomed', deviceId: DEV_E },
      { type: 'event', name: 'ORPHAN', id: ++id, date: now - 2 * HOUR, sessionId: 1 },
      { event: 'nucleus:heartbeat', machineId: DEV_E },
    ],
  ];
}

before(async () => {
  dataDir = tempDir('openapi');
  app = createApp(dataDir, 'openapi-app');
  other = createApp(dataDir, 'other-app');
  server = new Server({ dataDir });
  await server.start();
  const now = Date.now();
  ctx = { now };
  for (const batch of fixtureBatches(now, app.appId)) {
    const res = await call('POST', `/app/${app.appId}/track`, { auth: 'none', json: { data: batch }, expectStatus: 200 });
    const ids = batch.filter((e) => e.id !== undefined).map((e) => e.id);
    assert.deepEqual(res.json.reportedIds, ids, 'every id is acked as it arrived');
  }
  // Live: device A on the SDK path with a fresh event and a heartbeat; device C on the short
  // path with a binary heartbeat frame. Both stay open until the end.
  const wsA = await Socket.open(`/app/${app.appId}/track`);
  sockets.push(wsA);
  observed.push({ template: '/app/{appId}/track', method: 'get', status: 101 });
  const live = { type: 'event', name: 'ITEM_SAVED', id: 9001, date: Date.now(), payload: { format: 'mp3', bitrate: 320, lossless: false }, sessionId: 490330, userId: 'richard', anonId: 'hGzKvaoI5Mno', deviceId: DEV_A };
  assert.deepEqual(await wsA.send({ data: [live] }), { reportedIds: [9001] });
  assert.deepEqual(await wsA.send({ data: [{ type: 'heartbeat', sessionId: 490330, userId: 'richard', anonId: 'hGzKvaoI5Mno', deviceId: DEV_A }] }), { reportedIds: [] });
  const wsC = await Socket.open(`/${app.appId}/`);
  sockets.push(wsC);
  observed.push({ template: '/{appId}', method: 'get', status: 101 });
  assert.deepEqual(await wsC.send({ data: [{ type: 'heartbeat', sessionId: 7311, anonId: ANON, deviceId: DEV_C }] }, { binary: true }), { reportedIds: [] });
}, { timeout: 60000 });

after(async () => {
  for (const s of sockets) s.ws.terminate();
  if (server) await server.stop();
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
}, { timeout: 30000 });

// ------------------------------------------------------------------------------------------
// The document itself

test('the document is OpenAPI 3.1 and every schema compiles in Ajv strict mode', () => {
  assert.equal(doc.openapi, '3.1.0');
  assert.ok(doc.info && doc.info.title && doc.info.version);
  const scheme = doc.components.securitySchemes.apiToken;
  assert.deepEqual([scheme.type, scheme.in, scheme.name], ['apiKey', 'header', 'Authorization']);
  for (const name of Object.keys(doc.components.schemas)) {
    assert.doesNotThrow(() => validatorFor({ $ref: `#/components/schemas/${name}` }), `schema ${name}`);
  }
  // Every local reference resolves.
  (function walk(v, where) {
    if (Array.isArray(v)) return v.forEach((x, i) => walk(x, `${where}/${i}`));
    if (v && typeof v === 'object') {
      if (typeof v.$ref === 'string') assert.doesNotThrow(() => deref(v), `${where}: ${v.$ref}`);
      for (const [k, x] of Object.entries(v)) walk(x, `${where}/${k}`);
    }
  }(doc, '#'));
  const operationIds = new Set();
  for (const [template, item] of Object.entries(doc.paths)) {
    const names = [...template.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      assert.ok(op.operationId && !operationIds.has(op.operationId), `${method} ${template}: unique operationId`);
      operationIds.add(op.operationId);
      assert.ok(op.responses && Object.keys(op.responses).length, `${method} ${template}: responses`);
      const params = [...(item.parameters || []), ...(op.parameters || [])].map(deref);
      for (const p of params) {
        assert.ok(p.schema, `${method} ${template}: parameter ${p.name} has a schema`);
        assert.doesNotThrow(() => validatorFor(p.schema), `${method} ${template}: parameter ${p.name}`);
      }
      for (const n of names) {
        const p = params.find((x) => x.in === 'path' && x.name === n);
        assert.ok(p && p.required === true, `${method} ${template}: path parameter ${n} declared and required`);
      }
      for (const [status, r] of Object.entries(op.responses)) {
        const resp = deref(r);
        assert.ok(resp.description, `${method} ${template} ${status}: description`);
        if (/^[45]/.test(status) && resp.content && resp.content['application/json'] && !(template === '/healthz' && status === '503')) {
          assert.deepEqual(resp.content['application/json'].schema, { $ref: '#/components/schemas/Error' }, `${method} ${template} ${status}: the error schema`);
        }
        if (resp.content) {
          for (const media of Object.values(resp.content)) assert.doesNotThrow(() => validatorFor(media.schema));
        }
      }
    }
  }
  // The error schema is exactly {"error": string}.
  const err = validatorFor({ $ref: '#/components/schemas/Error' });
  assert.ok(err({ error: 'x' }));
  assert.ok(!err({ error: 'x', code: 1 }));
  assert.ok(!err({}));
});

test('the served document is docs/openapi.json', { timeout: STEP_TIMEOUT }, async (t) => {
  const res = await call('GET', '/api/v1/openapi.json', { auth: 'none', expectStatus: 200 });
  const served = JSON.parse(res.text);
  if (served.paths && Object.keys(served.paths).length === 0 && Object.keys(doc.paths).length > 0) {
    t.skip('the binary still embeds the old placeholder document (empty paths): rebuild it (CMake reads docs/openapi.json at configure time) to compare');
    return;
  }
  const diff = firstDifference(doc, served);
  assert.equal(diff, null, `GET /api/v1/openapi.json differs from docs/openapi.json at ${diff}: rebuild the binary (CMake embeds docs/openapi.json)`);
});

// ------------------------------------------------------------------------------------------
// Successes

test('analytics endpoints answer as documented (GET and POST)', { timeout: STEP_TIMEOUT }, async () => {
  const A = `/api/v1/apps/${app.appId}`;
  const start = Math.floor((ctx.now - 4 * DAY) / 1000);
  const end = Math.floor(Date.now() / 1000) + 60;
  const range = { start, end, utcOffset: 480 };

  const qg = await call('GET', `${A}/analytics/quickglance`, { expectStatus: 200 });
  assert.ok(qg.json.data.appStarts >= 2 && qg.json.data.errors >= 2, 'the fixture shows in quick glance');
  await call('POST', `${A}/analytics/quickglance`, { auth: 'none', json: { token: app.token }, expectStatus: 200 });

  const daily = await call('GET', `${A}/analytics${q(range)}`, { auth: 'bearer', expectStatus: 200 });
  const d = daily.json.data;
  assert.ok(Object.keys(d.hours).length >= 3, 'several days');
  assert.ok(d.ram.length > 0 && d.languages.length > 0 && d.platforms.length > 0 && d.versions.length > 0, 'breakdowns filled');
  assert.ok(Object.values(d.avgSessionDuration).includes(0), 'a zero-length session day is present with 0');
  await call('POST', `${A}/analytics`, { auth: 'none', json: { token: app.token, start, end, utcOffset: -300 }, expectStatus: 200 });
  await call('POST', `${A}/analytics`, { auth: 'none', form: { token: app.token, start: String(start), end: String(end) }, expectStatus: 200 });
  // A range with nothing in it: every map empty.
  await call('GET', `${A}/analytics${q({ start: 0, end: 1000 })}`, { expectStatus: 200 });

  const events = await call('GET', `${A}/analytics/events${q(range)}`, { expectStatus: 200 });
  assert.ok(events.json.data.PLAYED_TRACK, 'PLAYED_TRACK counted');
  await call('POST', `${A}/analytics/events${q(range)}`, { expectStatus: 200 });

  const props = await call('GET', `${A}/analytics/eventsprops${q(range)}`, { expectStatus: 200 });
  const types = new Set(props.json.data.map((p) => p.type));
  assert.deepEqual([...types].sort(), ['boolean', 'number', 'string'], 'every value type shows');
  await call('POST', `${A}/analytics/eventsprops`, { auth: 'none', form: { token: app.token, start: String(start), end: String(end) }, expectStatus: 200 });

  for (const attr of ['trackName', 'duration', 'liked', 'nothing']) {
    await call('GET', `${A}/analytics/events/PLAYED_TRACK/${attr}${q(range)}`, { expectStatus: 200 });
  }
  await call('GET', `${A}/analytics/events/init/plan${q(range)}`, { expectStatus: 200 });
  await call('GET', `${A}/analytics/events/${encodeURIComponent('nucleus:view')}/count${q(range)}`, { expectStatus: 200 });
  await call('POST', `${A}/analytics/events/SAVED/kind`, { auth: 'none', json: { token: app.token, start, end }, expectStatus: 200 });

  const errors = await call('GET', `${A}/analytics/errors${q(range)}`, { expectStatus: 200 });
  assert.ok(errors.json.data.uncaughtException && errors.json.data.unhandledRejection, 'both error kinds counted');
  await call('POST', `${A}/analytics/errors${q(range)}`, { expectStatus: 200 });

  const groups = await call('GET', `${A}/analytics/errors/groups${q(range)}`, { expectStatus: 200 });
  assert.deepEqual(groups.json.data.map((g) => g.name).sort(), Object.keys(errors.json.data).sort(), 'one group per error name');
  for (const g of groups.json.data) {
    assert.equal(g.count, Object.values(errors.json.data[g.name]).reduce((a, b) => a + b, 0), `${g.name}: the counts agree`);
  }
  await call('POST', `${A}/analytics/errors/groups`, { auth: 'none', json: { token: app.token, start, end }, expectStatus: 200 });
  await call('GET', `${A}/analytics/errors/groups${q({ start: 5, end: 1 })}`, { expectStatus: 400 });

  const sessions = await call('GET', `${A}/analytics/sessions${q(range)}`, { expectStatus: 200 });
  assert.ok(Object.keys(sessions.json.data.sessions).length > 0, 'the fixture has sessions');
  assert.deepEqual(Object.keys(sessions.json.data.sessions), Object.keys(sessions.json.data.avgSessionDuration), 'the same days');
  assert.deepEqual(sessions.json.data.avgSessionDuration, daily.json.data.avgSessionDuration, 'the daily answer\'s mean durations');
  await call('POST', `${A}/analytics/sessions`, { auth: 'none', json: { token: app.token, start, end, utcOffset: 60 }, expectStatus: 200 });
  await call('GET', `${A}/analytics/sessions${q({ start: 5, end: 1 })}`, { expectStatus: 400 });
  await call('GET', `${A}/analytics/sessions${q({ start, end, utcOffset: 900 })}`, { expectStatus: 400 });
});

test('users endpoints answer as documented (GET and POST)', { timeout: STEP_TIMEOUT }, async () => {
  const A = `/api/v1/apps/${app.appId}`;
  const users = await call('GET', `${A}/users`, { expectStatus: 200 });
  assert.equal(users.json.total, 4, 'richard, the anonymous user, the device-only user, doomed');
  await call('GET', `${A}/users${q({ page: 2, limit: 1 })}`, { expectStatus: 200 });
  await call('GET', `${A}/users${q({ page: 99 })}`, { expectStatus: 200 });
  await call('POST', `${A}/users`, { auth: 'none', form: { token: app.token, page: '1', limit: '2' }, expectStatus: 200 });
  const found = await call('GET', `${A}/users${q({ search: 'RICH' })}`, { expectStatus: 200 });
  assert.deepEqual(found.json.data.map((u) => u.userId), ['richard'], 'search: part of the id, either case');
  assert.equal(found.json.total, 1);
  await call('POST', `${A}/users`, { auth: 'none', json: { token: app.token, search: 'zzz-nobody' }, expectStatus: 200 });
  await call('GET', `${A}/users${q({ search: 'x'.repeat(257) })}`, { expectStatus: 400 });

  for (const u of ['richard', ANON, DEV_D]) {
    await call('GET', `${A}/users/${encodeURIComponent(u)}`, { expectStatus: 200 });
  }
  await call('POST', `${A}/users/richard`, { auth: 'none', json: { token: app.token }, expectStatus: 200 });

  const ev = await call('GET', `${A}/users/richard/session/490330${q({ device: DEV_A })}`, { expectStatus: 200 });
  const kinds = new Set(ev.json.data.map((e) => e.type));
  for (const k of ['init', 'event', 'error', 'userid', 'props', 'nucleus:view']) assert.ok(kinds.has(k), `session shows a ${k} event`);
  await call('GET', `${A}/users/richard/session/126166`, { expectStatus: 200 }); // 3.x: avail_ram, arch
  await call('GET', `${A}/users/${ANON}/session/7311`, { expectStatus: 200 });
  await call('GET', `${A}/users/${DEV_D}/session/4242`, { expectStatus: 200 });
  await call('POST', `${A}/users/richard/session/111201`, { auth: 'none', form: { token: app.token, device: DEV_A }, expectStatus: 200 });
});

test('the export answers as documented (GET only)', { timeout: STEP_TIMEOUT }, async () => {
  const A = `/api/v1/apps/${app.appId}`;
  const all = await call('GET', `${A}/export`, { expectStatus: 200 });
  assert.ok(all.text.split('\n').some((l) => l.startsWith('{"type":"init"')), 'the inits are exported');
  await call('GET', `${A}/export${q({ format: 'csv', start: Math.floor(ctx.now / 1000) - 86400 * 400 })}`, { expectStatus: 200 });
  await call('GET', `${A}/export${q({ format: 'xml' })}`, { expectStatus: 400 });
  await call('POST', `${A}/export`, { expectStatus: 405 });
});

test('live endpoints answer as documented (GET and POST)', { timeout: STEP_TIMEOUT }, async () => {
  const A = `/api/v1/apps/${app.appId}`;
  const ev = await call('GET', `${A}/live/events`, { expectStatus: 200 });
  assert.ok(ev.json.data.some((e) => e.name === 'ITEM_SAVED'), 'the WebSocket event is live');
  await call('GET', `${A}/live/events${q({ limit: 1 })}`, { expectStatus: 200 });
  await call('POST', `${A}/live/events`, { auth: 'none', json: { token: app.token, limit: 1000 }, expectStatus: 200 });

  const count = await call('GET', `${A}/live/users/count`, { expectStatus: 200 });
  assert.equal(count.json.data, 2, 'richard and the anonymous user are live');
  await call('POST', `${A}/live/users/count`, { auth: 'none', form: { token: app.token }, expectStatus: 200 });

  const users = await call('GET', `${A}/live/users`, { expectStatus: 200 });
  assert.equal(users.json.data.length, 2, 'one row per live device');
  await call('POST', `${A}/live/users`, { auth: 'bearer', expectStatus: 200 });
});

test('health, metrics, root and tracking answer as documented', { timeout: STEP_TIMEOUT }, async () => {
  await call('GET', '/healthz', { auth: 'none', expectStatus: 200 });
  const metrics = await call('GET', '/metrics', { auth: 'none', expectStatus: 200 });
  assert.match(metrics.text, /^nucleon_events_stored_total [1-9]\d*$/m);
  await call('GET', '/', { auth: 'none', expectStatus: 200 });
  // A resend: acked again, stored once.
  const again = fixtureBatches(ctx.now, app.appId)[0];
  await call('POST', `/app/${app.appId}/track`, { auth: 'none', json: { data: again }, expectStatus: 200 });
  // Heartbeats only: an empty ack.
  const hb = await call('POST', `/app/${app.appId}/track`, { auth: 'none', json: { data: [{ type: 'heartbeat', deviceId: DEV_E }] }, expectStatus: 200 });
  assert.deepEqual(hb.json, { reportedIds: [] });
});

// RFC 9110 section 9.3.2: a response to HEAD carries no content. Written on a raw socket so that
// a body sent anyway shows as such (Node's client would fail to parse the next response).
test('HEAD /healthz answers 200 without a body', { timeout: STEP_TIMEOUT }, async () => {
  const res = await rawRequest('HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
  checkResponse('HEAD', '/healthz', res, { expectStatus: 200 });
});

test('user deletion answers 204 and the user is gone', { timeout: STEP_TIMEOUT }, async () => {
  const A = `/api/v1/apps/${app.appId}`;
  await call('DELETE', `${A}/users/doomed`, { expectStatus: 204 });
  await call('GET', `${A}/users/doomed`, { expectStatus: 404 });
  await call('GET', `${A}/users/doomed/session/55`, { expectStatus: 404 });
  await call('DELETE', `${A}/users/doomed`, { expectStatus: 404 });
  const users = await call('GET', `${A}/users`, { auth: 'bearer', expectStatus: 200 });
  assert.ok(!users.json.data.some((u) => u.userId === 'doomed'));
});

// ------------------------------------------------------------------------------------------
// Errors

test('authentication errors: 401 without or with an unknown token, 404 for an app not granted', { timeout: STEP_TIMEOUT }, async () => {
  const A = `/api/v1/apps/${app.appId}`;
  for (const method of ['GET', 'POST']) {
    await call(method, `${A}/analytics/quickglance`, { auth: 'none', expectStatus: 401 });
    await call(method, `${A}/users`, { auth: 'nct_notatoken', expectStatus: 401 });
    await call(method, `${A}/analytics/events/x/y`, { auth: 'Bearer nct_notatoken', expectStatus: 401 });
  }
  await call('POST', `${A}/users`, { auth: 'none', json: { token: 'nct_nope' }, expectStatus: 401 });
  // A token in the query string is ignored (docs/api-decisions.md): 401.
  await call('GET', `${A}/live/users/count${q({ token: app.token })}`, { auth: 'none', expectStatus: 401 });
  await call('POST', `${A}/users${q({ token: app.token })}`, { auth: 'none', expectStatus: 401 });
  await call('DELETE', `${A}/users/richard${q({ token: app.token })}`, { auth: 'none', expectStatus: 401 });
  // The header wins over a token in the body.
  await call('POST', `${A}/users`, { auth: 'nct_nope', json: { token: app.token }, expectStatus: 401 });
  // A JSON body labelled as a form carries no token.
  {
    const body = JSON.stringify({ token: app.token });
    const res = await server.request('POST', `${A}/users`, { body, headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } });
    checkResponse('POST', `${A}/users`, res, { expectStatus: 401 });
  }
  await call('DELETE', `${A}/users/richard`, { auth: 'none', expectStatus: 401 });
  // 401 comes before anything about the app.
  await call('GET', '/api/v1/apps/nope/users', { auth: 'none', expectStatus: 401 });
  // A valid token of another app: the app looks unknown.
  await call('GET', `${A}/users`, { token: other.token, expectStatus: 404 });
  await call('GET', `/api/v1/apps/${other.appId}/users/richard`, { expectStatus: 404 });
  await call('DELETE', `${A}/users/richard`, { token: other.token, expectStatus: 404 });
  await call('GET', '/api/v1/apps/nope/live/users', { expectStatus: 404 });
});

test('parameter errors: 400 naming the parameter', { timeout: STEP_TIMEOUT }, async () => {
  const A = `/api/v1/apps/${app.appId}`;
  const cases = [
    [`${A}/analytics`, {}, 'start is required'],
    [`${A}/analytics/events`, { start: 1 }, 'end is required'],
    [`${A}/analytics/eventsprops`, { start: 'abc', end: 2 }, 'start must be a Unix timestamp in seconds'],
    [`${A}/analytics/errors`, { start: 1, end: '2.5' }, 'end must be a Unix timestamp in seconds'],
    [`${A}/analytics/events/PLAYED_TRACK/duration`, { start: 10, end: 5 }, 'end must not be before start'],
    [`${A}/analytics`, { start: 1, end: 2, utcOffset: 900 }, 'utcOffset must be an integer between -720 and 840'],
    [`${A}/analytics`, { start: 1, end: 2, utcOffset: 'x' }, 'utcOffset must be an integer between -720 and 840'],
    [`${A}/users`, { page: 0 }, 'page must be an integer of at least 1'],
    [`${A}/users`, { limit: 1001 }, 'limit must be an integer between 1 and 1000'],
    [`${A}/live/events`, { limit: 0 }, 'limit must be an integer between 1 and 1000'],
  ];
  for (const [p, params, message] of cases) {
    const res = await call('GET', `${p}${Object.keys(params).length ? q(params) : ''}`, { expectStatus: 400 });
    assert.equal(res.json.error, message);
  }
  const res = await call('POST', `${A}/analytics`, { auth: 'none', json: { token: app.token, start: 'yesterday', end: 2 }, expectStatus: 400 });
  assert.equal(res.json.error, 'start must be a Unix timestamp in seconds');
});

test('tracking errors: 400 malformed, 404 unknown app, 405 GET without upgrade', { timeout: STEP_TIMEOUT }, async () => {
  const track = `/app/${app.appId}/track`;
  for (const body of ['', '{"data":', '{"events":[]}', '[1,2]']) {
    const res = await server.request('POST', track, { body, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } });
    checkResponse('POST', track, res, { expectStatus: 400 });
  }
  await call('POST', '/app/nope/track', { auth: 'none', json: { data: [] }, expectStatus: 404 });
  await call('GET', track, { auth: 'none', expectStatus: 405 });
  // WebSocket upgrades refused before the handshake.
  for (const target of ['/app/nope/track', '/nope', '/api/v1/apps']) {
    const res = await refusedUpgrade(target);
    checkResponse('GET', target === '/api/v1/apps' ? '/nope' : target, res, { expectStatus: 404 });
  }
});

test('unknown paths: 404; wrong methods: 405', { timeout: STEP_TIMEOUT }, async () => {
  const A = `/api/v1/apps/${app.appId}`;
  for (const p of [`${A}/nothing`, `${A}/analytics/quickglance/extra`, `${A}/users/richard/session`]) {
    const res = await server.request('GET', p, { headers: { authorization: app.token } });
    assert.equal(res.status, 404, `${p}`);
    // Not a path of the document: validate against the generic error schema.
    const v = validatorFor({ $ref: '#/components/schemas/Error' });
    assert.ok(v(res.json), `${p}: ${res.text}`);
    assert.equal(res.headers['access-control-allow-origin'], '*');
  }
  await call('GET', `${A}/users/nobody`, { expectStatus: 404 });
  await call('GET', `${A}/users/nobody/session/1`, { expectStatus: 404 });
  await call('GET', `${A}/users/richard/session/999`, { expectStatus: 404 });
  await call('GET', `${A}/users/richard/session/490330${q({ device: 'elsewhere' })}`, { expectStatus: 404 });
  await call('POST', `${A}/users/nobody`, { auth: 'none', json: { token: app.token }, expectStatus: 404 });

  await call('PUT', `${A}/analytics/quickglance`, { expectStatus: 405 });
  await call('DELETE', `${A}/analytics${q({ start: 1, end: 2 })}`, { expectStatus: 405 });
  await call('DELETE', `${A}/users`, { expectStatus: 405 });
  await call('PATCH', `${A}/users/richard`, { expectStatus: 405 });
  await call('PUT', `${A}/live/users/count`, { auth: 'none', expectStatus: 405 }); // 405 before 401
  await call('POST', '/api/v1/openapi.json', { auth: 'none', expectStatus: 405 });
  await call('POST', '/healthz', { auth: 'none', expectStatus: 405 });
  await call('DELETE', '/metrics', { auth: 'none', expectStatus: 405 });
  await call('PUT', `/app/${app.appId}/track`, { auth: 'none', expectStatus: 405 });
});

test('body too large: 413', { timeout: STEP_TIMEOUT }, async () => {
  const A = `/api/v1/apps/${app.appId}`;
  // Announced bodies over --max-body (5 MiB by default) are refused before they are read.
  for (const target of [`${A}/analytics/quickglance`, `/app/${app.appId}/track`]) {
    const res = await rawRequest(`POST ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAuthorization: ${app.token}\r\nContent-Length: 6000000\r\n\r\n`);
    checkResponse('POST', target, res, { expectStatus: 413 });
  }
  // A tracking message of more than 10000 events.
  const many = { data: Array.from({ length: 10001 }, (_, i) => ({ type: 'event', name: 'X', id: i + 1, deviceId: 'big', sessionId: 1 })) };
  await call('POST', `/app/${app.appId}/track`, { auth: 'none', json: many, expectStatus: 413 });
});

// ------------------------------------------------------------------------------------------
// Strictness: real answers with one shape mistake each must fail their schema.

test('the schemas reject shape mistakes in real answers', () => {
  const A = '/api/v1/apps/{appId}';
  const first = (obj) => Object.keys(obj)[0];
  const mutations = {
    [`get ${A}/analytics/quickglance 200`]: [
      (b) => { delete b.data.installs; },
      (b) => { b.data.sessions = 1; },
      (b) => { b.data.users = '2'; },
      (b) => { b.data.errors = -1; },
    ],
    [`get ${A}/analytics 200`]: [
      (b) => { b.data.hours[first(b.data.hours)].pop(); },
      (b) => { b.data.hours[first(b.data.hours)].push(0); },
      (b) => { b.data.hours[first(b.data.hours)][0] = 0.5; },
      (b) => { b.data.usage['2024-1-1'] = 1; },
      (b) => { b.data.usage[first(b.data.usage)] = 0; },
      (b) => { b.data.newUsers.total = 1; },
      (b) => { b.data.platforms[0].users = 1; },
      (b) => { b.data.platforms[0].count = '1'; },
      (b) => { delete b.data.countries; },
      (b) => { b.data.avgSessionDuration[first(b.data.avgSessionDuration)] = null; },
      (b) => { b.data.totalNumbers.sessions = 3; },
      (b) => { b.data.ram = {}; },
    ],
    [`get ${A}/analytics/events 200`]: [
      (b) => { b.data.PLAYED_TRACK[first(b.data.PLAYED_TRACK)] = '3'; },
      (b) => { b.data.PLAYED_TRACK.today = 3; },
      (b) => { b.data.X = 1; },
      (b) => { b.data = []; },
    ],
    [`get ${A}/analytics/eventsprops 200`]: [
      (b) => { b.data[0].type = 'object'; },
      (b) => { b.data[0].keys = []; },
      (b) => { b.data[0].count = 1; },
      (b) => { delete b.data[0].event; },
    ],
    [`get ${A}/analytics/events/{event}/{attr} 200`]: [
      (b) => { b.data[0].value = 120; },
      (b) => { b.data[0].count = 0; },
      (b) => { b.data = {}; },
    ],
    [`get ${A}/users 200`]: [
      (b) => { delete b.total; },
      (b) => { b.data[0].appId = 'x'; },
      (b) => { b.data[0]._id = 'not-hex'; },
      (b) => { b.data[0].devices[0].platform = 5; },
      (b) => { delete b.data[0].devices[0].version; },
      (b) => { b.data[0].devices = []; },
      (b) => { b.data[0].createdAt = 'yesterday'; },
      (b) => { b.data[0].props.nested = { a: 1 }; },
    ],
    [`get ${A}/users/{userId} 200`]: [
      (b) => { b.user.__v = 1; },
      (b) => { delete b.user.updatedAt; },
      (b) => { b.sessions[0].actions = '1'; },
      (b) => { b.sessions[0].session = 490330; },
      (b) => { b.sessions[0].duration = 1; },
    ],
    [`get ${A}/users/{userId}/session/{sessionId} 200`]: [
      (b) => { delete b.data[0].name; },
      (b) => { b.data[0].avail_ram = '16'; },
      (b) => { b.data[0].renderer = 'electron'; },
      (b) => { b.data[0].type = 'heartbeat'; },
      (b) => { b.data[0].first_time = 'false'; },
      (b) => { b.data[0].data = null; },
      (b) => { b.data[0].time = 1795685879840; },
      (b) => { b.data[0].sessionId = '1'; },
    ],
    [`get ${A}/live/users/count 200`]: [
      (b) => { b.data = '2'; },
      (b) => { b.count = 2; },
    ],
    [`get ${A}/live/users 200`]: [
      (b) => { b.data[0].country = 1; },
      (b) => { delete b.data[0].userDbId; },
      (b) => { b.data[0].lastSeen = null; },
    ],
    [`get ${A}/users/{userId} 404`]: [
      (b) => { b.error = ''; },
      (b) => { b.status = 404; },
      (b) => { b.message = b.error; delete b.error; },
    ],
    [`post /app/{appId}/track 200`]: [
      (b) => { b.reportedIds = [null]; },
      (b) => { b.confirmation = true; },
    ],
  };
  for (const [key, list] of Object.entries(mutations)) {
    const sample = samples.get(key);
    assert.ok(sample, `no real answer was captured for ${key}`);
    const validate = validatorFor(sample.schema);
    assert.ok(validate(sample.body), `${key}: the real answer validates`);
    list.forEach((mutate, i) => {
      const body = structuredClone(sample.body);
      mutate(body);
      assert.ok(!validate(body), `${key}: mutation #${i + 1} (${mutate.toString()}) should not validate`);
    });
  }
});

// ------------------------------------------------------------------------------------------
// Coverage

test('every documented operation was exercised with a success', () => {
  const seen = new Set(observed.filter((o) => o.status < 300 || o.status === 101).map((o) => `${o.method} ${o.template}`));
  const missing = [];
  for (const [template, item] of Object.entries(doc.paths)) {
    for (const method of METHODS) {
      if (item[method] && !seen.has(`${method} ${template}`)) missing.push(`${method} ${template}`);
    }
  }
  assert.deepEqual(missing, [], 'operations never answered with a success');
  // Statuses documented but not triggerable against a healthy local server.
  const untested = new Set();
  const hit = new Set(observed.map((o) => `${o.method} ${o.template} ${o.status}`));
  for (const [template, item] of Object.entries(doc.paths)) {
    for (const method of METHODS) {
      if (!item[method]) continue;
      for (const status of Object.keys(item[method].responses)) {
        if (status !== 'default' && !hit.has(`${method} ${template} ${status}`)) untested.add(status);
      }
    }
  }
  for (const s of untested) {
    // 429 (rate limiting) and 503 (storage unavailable) cannot be produced here; every other
    // documented status must have been seen on at least one operation.
    if (s === '429' || s === '503') continue;
    assert.ok(observed.some((o) => String(o.status) === s), `status ${s} is documented but was never observed`);
  }
});

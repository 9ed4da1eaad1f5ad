// Bad input on the tracking endpoints, table-driven: each row is a request and
// the answer it must get (status + JSON error shape, or an ack), plus, where it
// matters, what must (not) be stored, checked with `nucleon export` at the end.
// After all rows a normal batch must still work and /healthz must answer ok.
//
//   node --test tests/node/bad_input.test.js     (NUCLEON_KEEP_DATA=1 keeps the data folder)
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const crypto = require('node:crypto');
const WebSocket = require('ws');
const { Server, tempDir, createApp, sleep } = require('./lib/server');
const { rawRequest, exportAll, wsKey } = require('./lib/load_client');

const MAX_BODY = 5 * 1024 * 1024; // the default --max-body
const MAX_DEPTH = 32; // the top-level value counts as depth 1
const MAX_EVENTS = 10000;
const NAME_CAP = 256;
const KEYS_CAP = 64;
const VALUE_CAP = 1024;
const DEVICE = 'bad-input-device';
const SESSION = 424242;

let nextId = 1000;
const nid = () => nextId++;

// A valid 4.x event; `over` replaces fields, a field set to undefined is removed.
function ev(over = {}) {
  const e = { type: 'event', name: 'OK_EVENT', id: nid(), date: Date.now(), sessionId: SESSION, deviceId: DEVICE, payload: { k: 'v' }, ...over };
  for (const k of Object.keys(e)) if (e[k] === undefined) delete e[k];
  return e;
}
const batch = (...events) => JSON.stringify({ data: events });

// Pads a JSON object text with spaces before its closing brace to exactly `size` bytes.
function padTo(text, size) {
  const len = Buffer.byteLength(text);
  assert.ok(len <= size && text.endsWith('}'));
  return text.slice(0, -1) + ' '.repeat(size - len) + '}';
}

// Nesting depth of a JSON text: the deepest count of open containers, the
// top-level object or array being depth 1.
function depthOf(text) {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') max = Math.max(max, ++depth);
    else if (c === '}' || c === ']') depth--;
  }
  return max;
}

// A batch whose single event has a payload nested so that the whole document
// is `depth` deep: {data:[{payload:{n:{n:...}}}]} is 1 (top) + 1 (data) + 1
// (event) + the payload's levels.
function nestedBatch(depth, id) {
  const levels = depth - 3;
  const payload = '{"n":'.repeat(levels - 1) + '{"v":1}' + '}'.repeat(levels - 1);
  const head = JSON.stringify(ev({ id, payload: {} })).replace('"payload":{}', `"payload":${payload}`);
  const text = `{"data":[${head}]}`;
  assert.equal(depthOf(text), depth);
  return text;
}

function manyEvents(n) {
  const events = [];
  for (let i = 0; i < n; i++) events.push({ type: 'event', name: 'MANY', id: nid(), sessionId: SESSION, deviceId: DEVICE });
  return events;
}

// --- the rows --------------------------------------------------------------

// A row is {name, kind, request | message(s), expect, stored | storedApp}:
// kind     'http' (default): one request {method, path (default the app's
//          track path), body, headers}; 'http-chunked': the body sent with
//          Transfer-Encoding: chunked; 'http-repeat': sent `repeat` times with
//          no pause between headers and body; 'ws-upgrade': a hand-made upgrade
//          request to `path`; 'ws-messages': `messages` then `valid` on one
//          socket; 'ws-close': `message` on a fresh socket (`repeat` times;
//          with `holdMs` the frame header goes first, the payload after holdMs).
// expect   {status, error: true}: that status and a JSON error
//            {"error": "<non-empty>"} with Content-Type application/json;
//          {statusIn: [..], error: true}: any of these, with a JSON error;
//          {status: 200, acked: [ids]}: an ack whose reportedIds hold the ids;
//          {jsonAnswer: true, ackedIfOk: [ids]}: valid JSON, an ack or an error;
//          ws: {acked, notAcked} (every server message must be exactly
//            {"reportedIds":[int...]}) or {closeCode}.
// stored(byId)   checks on `nucleon export` of the main app, run after the
//                server stopped (byId: client id -> stored events);
// storedApp(events) with ownApp: the row has an app of its own, exported alone.
const rows = [];
const TRACK = (appId) => `/app/${appId}/track`;
const post = (body, extra = {}) => ({ method: 'POST', body, headers: { 'content-type': 'application/json', ...extra } });

// Malformed or shapeless bodies.
rows.push({ name: 'malformed JSON body', request: post('{"data":[{"type":"event","name":"X"'), expect: { status: 400, error: true } });
rows.push({ name: 'malformed JSON: trailing garbage', request: post('{"data":[]} xyz'), expect: { status: 400, error: true } });
rows.push({ name: 'body {} (no data array)', request: post('{}'), expect: { status: 400, error: true } });
rows.push({ name: 'body {"data":{}}', request: post('{"data":{}}'), expect: { status: 400, error: true } });
rows.push({ name: 'body {"data":null}', request: post('{"data":null}'), expect: { status: 400, error: true } });
rows.push({ name: 'body [] (top-level array)', request: post('[]'), expect: { status: 400, error: true } });
rows.push({ name: 'body "x" (top-level string)', request: post('"x"'), expect: { status: 400, error: true } });
rows.push({ name: 'empty body', request: post('', { 'content-length': '0' }), expect: { status: 400, error: true } });
{
  const id = nid();
  const body = Buffer.concat([
    Buffer.from('{"data":[{"type":"event","name":"bad'),
    Buffer.from([0xff, 0xfe, 0xc3, 0x28]),
    Buffer.from(`","id":${id},"sessionId":${SESSION},"deviceId":"${DEVICE}"}]}`),
  ]);
  rows.push({ name: 'invalid UTF-8 in the body', request: post(body), expect: { status: 400, error: true }, stored: notStored(id) });
}

// Unknown app and wrong method.
rows.push({ name: 'unknown app (HTTP POST)', request: { ...post(batch(ev())), path: '/app/no-such-app-0000/track' }, expect: { status: 404, error: true } });
rows.push({ name: 'unknown app (WebSocket upgrade refused before upgrading)', kind: 'ws-upgrade', path: '/app/no-such-app-0000/track', expect: { status: 404, error: true } });
rows.push({ name: 'PUT on /app/:id/track', request: { ...post(batch(ev())), method: 'PUT' }, expect: { status: 405, error: true } });
rows.push({ name: 'DELETE on /app/:id/track', request: { method: 'DELETE' }, expect: { status: 405, error: true } });

// Body size.
{
  const id = nid();
  const text = padTo(batch(ev({ id })), MAX_BODY);
  rows.push({ name: 'body of exactly 5 MiB is accepted', request: post(text), expect: { status: 200, acked: [id] }, stored: storedOnce(id) });
}
{
  const id = nid();
  rows.push({ name: 'body of 5 MiB + 1 (Content-Length) -> 413', request: post(padTo(batch(ev({ id })), MAX_BODY + 1)), expect: { status: 413, error: true }, stored: notStored(id) });
}
{
  const id = nid();
  rows.push({ name: 'body of 5 MiB + 1 (chunked, no Content-Length) -> 413', kind: 'http-chunked', request: post(padTo(batch(ev({ id })), MAX_BODY + 1)), expect: { status: 413, error: true }, stored: notStored(id) });
}

// Nesting depth.
{
  const id = nid();
  rows.push({ name: `nesting exactly ${MAX_DEPTH} deep is accepted`, request: post(nestedBatch(MAX_DEPTH, id)), expect: { status: 200, acked: [id] } });
}
{
  const id = nid();
  rows.push({ name: `nesting ${MAX_DEPTH + 1} deep -> 400`, request: post(nestedBatch(MAX_DEPTH + 1, id)), expect: { status: 400, error: true }, stored: notStored(id) });
}
{
  const id = nid();
  const deep = `{"data":[{"type":"event","name":"DEEP","id":${id},"sessionId":${SESSION},"deviceId":"${DEVICE}","payload":{"a":${'['.repeat(200000)}${']'.repeat(200000)}}}]}`;
  rows.push({ name: 'nesting 200000 deep (stack exhaustion) -> 400', request: post(deep), expect: { status: 400, error: true }, stored: notStored(id) });
}

// Batch size.
{
  const events = manyEvents(MAX_EVENTS);
  const ids = events.map((e) => e.id);
  rows.push({ name: `exactly ${MAX_EVENTS} events in one batch are accepted`, request: post(batch(...events)), expect: { status: 200, acked: ids }, stored: storedOnce(ids[0], ids[ids.length - 1]) });
}
{
  const events = manyEvents(MAX_EVENTS + 1);
  const ids = events.map((e) => e.id);
  rows.push({ name: `${MAX_EVENTS + 1} events in one batch -> 413 or 400`, request: post(batch(...events)), expect: { statusIn: [400, 413], error: true }, stored: notStoredRange(ids[0], ids[ids.length - 1]) });
}

// Caps: truncated, stored and acked.
{
  const long = 'N'.repeat(300);
  const id = nid();
  rows.push({
    name: 'name of 300 characters is truncated to 256', request: post(batch(ev({ id, name: long }))), expect: { status: 200, acked: [id] },
    stored: (byId) => { const e = one(byId, id); assert.equal(e.name, long.slice(0, NAME_CAP)); },
  });
}
{
  const exact = 'E'.repeat(NAME_CAP);
  const id = nid();
  rows.push({
    name: 'name of exactly 256 characters is kept', request: post(batch(ev({ id, name: exact }))), expect: { status: 200, acked: [id] },
    stored: (byId) => { assert.equal(one(byId, id).name, exact); },
  });
}
{
  const long = 'é名'.repeat(200); // 400 characters, 1000 bytes of UTF-8
  const id = nid();
  rows.push({
    name: 'multi-byte name over the cap is cut on a character boundary', request: post(batch(ev({ id, name: long }))), expect: { status: 200, acked: [id] },
    stored: (byId) => {
      const n = one(byId, id).name;
      assert.equal(typeof n, 'string');
      assert.ok(n.length > 0 && [...n].length <= NAME_CAP, `stored name has ${[...n].length} characters`);
      assert.ok(long.startsWith(n), `stored name is not a prefix of the sent one (cut inside a character?): ${JSON.stringify(n.slice(-8))}`);
    },
  });
}
{
  const payload = {};
  for (let i = 0; i < 100; i++) payload[`key${String(i).padStart(3, '0')}`] = i;
  const id = nid();
  rows.push({
    name: 'payload of 100 keys is capped to 64 keys', request: post(batch(ev({ id, payload }))), expect: { status: 200, acked: [id] },
    stored: (byId) => {
      const p = one(byId, id).payload;
      assert.equal(typeof p, 'object');
      assert.equal(Object.keys(p).length, KEYS_CAP);
      for (const [k, v] of Object.entries(p)) assert.equal(v, payload[k], `payload key ${k}`);
    },
  });
}
{
  const payload = {};
  for (let i = 0; i < KEYS_CAP; i++) payload[`k${i}`] = `v${i}`;
  const id = nid();
  rows.push({
    name: 'payload of exactly 64 keys is kept', request: post(batch(ev({ id, payload }))), expect: { status: 200, acked: [id] },
    stored: (byId) => { assert.deepEqual(one(byId, id).payload, payload); },
  });
}
{
  const big = 'V'.repeat(2000);
  const id = nid();
  rows.push({
    name: 'payload value of 2000 bytes is truncated to 1 KiB', request: post(batch(ev({ id, payload: { big, small: 'ok', n: 7 } }))), expect: { status: 200, acked: [id] },
    stored: (byId) => {
      const p = one(byId, id).payload;
      assert.equal(p.big, big.slice(0, VALUE_CAP));
      assert.equal(p.small, 'ok');
      assert.equal(p.n, 7);
    },
  });
}
{
  const exact = 'W'.repeat(VALUE_CAP);
  const id = nid();
  rows.push({
    name: 'payload value of exactly 1 KiB is kept', request: post(batch(ev({ id, payload: { exact } }))), expect: { status: 200, acked: [id] },
    stored: (byId) => { assert.equal(one(byId, id).payload.exact, exact); },
  });
}

// Invalid events: acked (so the SDK drops them) but not stored.
const invalid = [
  ['no deviceId and no machineId', { deviceId: undefined }],
  ['no sessionId', { sessionId: undefined }],
  ['type event without a name', { type: 'event', name: undefined }],
  ['type error without a name', { type: 'error', name: undefined, payload: { message: 'm', stack: 's' } }],
  ['payload that is an array', { payload: [1, 2, 3] }],
  ['payload that is a string', { payload: 'text' }],
  ['payload that is a number', { payload: 42 }],
];
for (const [what, over] of invalid) {
  const id = nid();
  rows.push({ name: `invalid event (${what}) is acked but not stored`, request: post(batch(ev({ id, name: `INVALID_${id}`, ...over }))), expect: { status: 200, acked: [id] }, stored: notStored(id) });
}
{
  const good = ev({ name: 'MIXED_GOOD' });
  const good3x = ev({ name: 'MIXED_GOOD_3X', deviceId: undefined, machineId: 'bad-input-machine' });
  const bad = invalid.map(([, over]) => ev({ name: 'MIXED_BAD', ...over }));
  rows.push({
    name: 'mixed batch: every id acked, only the valid events stored', request: post(batch(good, ...bad, good3x)),
    expect: { status: 200, acked: [good.id, good3x.id, ...bad.map((e) => e.id)] },
    stored: (byId) => {
      one(byId, good.id);
      one(byId, good3x.id);
      notStored(...bad.map((e) => e.id))(byId);
    },
  });
}

// WebSocket.
{
  const truncatedId = nid();
  const validId = nid();
  rows.push({
    name: 'WebSocket: malformed messages are not acked, the socket stays open, a later valid message is acked',
    kind: 'ws-messages',
    messages: [
      'this is not json {',
      `{"data":[{"type":"event","name":"TRUNC","id":${truncatedId},"sessionId":${SESSION},"deviceId":"${DEVICE}"`,
      '{}',
      '{"data":{}}',
      '[]',
    ],
    valid: batch(ev({ id: validId, name: 'WS_AFTER_MALFORMED' })),
    expect: { notAcked: [truncatedId], acked: [validId] },
    stored: (byId) => { one(byId, validId); notStored(truncatedId)(byId); },
  });
}
{
  const id = nid();
  rows.push({
    name: 'WebSocket: a message of exactly 5 MiB is acked', kind: 'ws-messages', perMessageDeflate: false,
    messages: [], valid: padTo(batch(ev({ id })), MAX_BODY), expect: { acked: [id] }, stored: storedOnce(id),
  });
}
{
  const id = nid();
  rows.push({
    name: 'WebSocket: a message of 5 MiB + 1 closes the socket with 1009', kind: 'ws-close', perMessageDeflate: false, holdMs: 300,
    message: padTo(batch(ev({ id })), MAX_BODY + 1), expect: { closeCode: 1009 }, stored: notStored(id),
  });
}
{
  const id = nid();
  rows.push({
    name: 'WebSocket: a compressed message inflating to 5 MiB + 1 closes the socket with 1009', kind: 'ws-close', perMessageDeflate: true,
    message: padTo(batch(ev({ id })), MAX_BODY + 1), expect: { closeCode: 1009 }, stored: notStored(id),
  });
}

// Extra rows, beyond the list: other error paths, and inputs that
// real clients produce or that must not poison what is stored.
rows.push({ name: 'extra: unknown path -> 404 JSON', request: { method: 'GET', path: '/no/such/endpoint' }, expect: { status: 404, error: true } });
rows.push({ name: 'extra: PATCH on /app/:id/track -> 405', request: { ...post('{}'), method: 'PATCH' }, expect: { status: 405, error: true } });
{
  const id = nid();
  rows.push({
    name: 'extra: the 413 reaches a client that writes the whole 5 MiB + 1 body at once (10 tries; RFC 9112 9.6 lingering close)',
    kind: 'http-repeat', repeat: 10, request: post(padTo(batch(ev({ id })), MAX_BODY + 1)), expect: { status: 413, error: true }, stored: notStored(id),
  });
}
{
  const id = nid();
  rows.push({
    name: 'extra: the 1009 reaches a client that writes the whole 5 MiB + 1 message at once (10 tries)',
    kind: 'ws-close', repeat: 10, perMessageDeflate: false,
    message: padTo(batch(ev({ id })), MAX_BODY + 1), expect: { closeCode: 1009 }, stored: notStored(id),
  });
}
{
  // What JSON.stringify emits for a string cut inside an emoji: a lone
  // surrogate escape, valid JSON by RFC 8259's grammar (section 8.2). The SDK
  // sends its whole queue in one message, so refusing the message would keep
  // every event of that device unacked until they expire.
  const cut = 'Hello \u{1F600}'.slice(0, 7);
  const good = ev({ name: 'BEFORE_CUT_EMOJI' });
  const bad = ev({ name: 'CUT_EMOJI', payload: { title: cut } });
  rows.push({
    name: 'extra: a lone surrogate escape in a payload (a cut emoji from JSON.stringify) does not block the batch (HTTP)',
    request: post(batch(good, bad)), expect: { status: 200, acked: [good.id, bad.id] }, stored: (byId) => { one(byId, good.id); },
  });
  const good2 = ev({ name: 'BEFORE_CUT_EMOJI_WS' });
  const bad2 = ev({ name: `CUT_${cut}`, payload: { title: cut } });
  rows.push({
    name: 'extra: a lone surrogate escape in a name/payload does not block the SDK queue (WebSocket)',
    kind: 'ws-messages', messages: [], valid: batch(good2, bad2), expect: { acked: [good2.id, bad2.id] }, stored: (byId) => { one(byId, good2.id); },
  });
}
{
  const good = ev({ name: 'INF_ID_GOOD' });
  const text = `{"data":[${JSON.stringify(good)},{"type":"event","name":"INF_ID","id":1e400,"sessionId":${SESSION},"deviceId":"${DEVICE}"}]}`;
  rows.push({
    name: 'extra: an id of 1e400 (beyond a double): the answer is valid JSON, the export stays valid JSON', ownApp: true,
    request: post(text), expect: { jsonAnswer: true, ackedIfOk: [good.id] }, storedApp: () => {},
  });
}
{
  const id = nid();
  const text = `{"data":[{"type":"event","name":"INF_PAYLOAD","id":${id},"sessionId":${SESSION},"deviceId":"${DEVICE}","payload":{"v":1e400,"w":-1e400,"ok":1}}]}`;
  rows.push({
    name: 'extra: a payload number of 1e400: the answer is valid JSON, the export stays valid JSON', ownApp: true,
    request: post(text), expect: { jsonAnswer: true, ackedIfOk: [id] }, storedApp: () => {},
  });
}

function one(byId, id) {
  const found = byId.get(id) || [];
  assert.equal(found.length, 1, `event id ${id} must be stored exactly once, found ${found.length}`);
  return found[0];
}
// Checks that none of the given ids is stored.
function notStored(...ids) {
  return (byId) => {
    const found = ids.filter((id) => (byId.get(id) || []).length > 0);
    assert.deepEqual(found, [], 'these ids must not be stored');
  };
}
function notStoredRange(from, to) { return notStored(...range(from, to)); }
function storedOnce(from, to = from) {
  return (byId) => {
    const wrong = range(from, to).filter((id) => (byId.get(id) || []).length !== 1);
    assert.deepEqual(wrong.slice(0, 20), [], `ids not stored exactly once (${wrong.length})`);
  };
}
function range(from, to) { const r = []; for (let i = from; i <= to; i++) r.push(i); return r; }

// --- running a row ---------------------------------------------------------

function assertJsonError(res, what) {
  assert.match(String(res.headers['content-type'] || ''), /^application\/json\b/i, `${what}: Content-Type must be application/json (body ${JSON.stringify(res.text.slice(0, 200))})`);
  assert.ok(res.json && typeof res.json === 'object' && !Array.isArray(res.json), `${what}: body must be a JSON object, got ${JSON.stringify(res.text.slice(0, 200))}`);
  assert.deepEqual(Object.keys(res.json), ['error'], `${what}: body must be {"error": ...}, got ${res.text.slice(0, 200)}`);
  assert.equal(typeof res.json.error, 'string');
  assert.ok(res.json.error.length > 0, `${what}: error message must not be empty`);
}

function assertExpect(res, expect, what) {
  if (expect.jsonAnswer) {
    // Either an ack or a JSON error, but in any case valid JSON.
    assert.ok(res.json !== undefined, `${what}: the answer is not valid JSON: ${JSON.stringify(res.text.slice(0, 200))}`);
    if (res.status !== 200) return assertJsonError(res, what);
    assert.ok(Array.isArray(res.json.reportedIds), `${what}: expected {"reportedIds":[...]}, got ${res.text.slice(0, 200)}`);
    for (const id of expect.ackedIfOk || []) assert.ok(res.json.reportedIds.includes(id), `${what}: id ${id} not acked`);
    return undefined;
  }
  if (expect.statusIn) assert.ok(expect.statusIn.includes(res.status), `${what}: status ${res.status}, expected one of ${expect.statusIn} (body ${res.text.slice(0, 200)})`);
  else assert.equal(res.status, expect.status, `${what}: status (body ${JSON.stringify(res.text.slice(0, 300))})`);
  if (expect.error) assertJsonError(res, what);
  if (expect.acked) {
    assert.ok(res.json && Array.isArray(res.json.reportedIds), `${what}: expected {"reportedIds":[...]}, got ${res.text.slice(0, 200)}`);
    const got = new Set(res.json.reportedIds);
    const missing = expect.acked.filter((id) => !got.has(id));
    assert.deepEqual(missing.slice(0, 20), [], `${what}: ids missing from reportedIds (${missing.length})`);
  }
}

// Retries while rate limited (429), a bounded number of times.
async function request(port, { method, path, body, headers }, { chunked = false } = {}) {
  for (let attempt = 0; ; attempt++) {
    const big = body !== undefined && body.length > (1 << 20);
    const res = chunked ? await chunkedRequest(port, method, path, body, headers)
      : await rawRequest(port, method, path, { body, headers, timeout: 30000, holdBodyMs: big ? 300 : 0 });
    if (res.status !== 429 || attempt >= 10) return res;
    await sleep(Math.min(Number(res.headers['retry-after']) * 1000 || 500, 3000));
  }
}

// Sends the body with Transfer-Encoding: chunked, in 64 KiB chunks.
function chunkedRequest(port, method, pathName, body, headers) {
  return new Promise((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => { req.destroy(); if (!done) { done = true; reject(new Error('timeout')); } }, 30000);
    const req = http.request({ host: '127.0.0.1', port, method, path: pathName, headers: { ...headers, 'transfer-encoding': 'chunked' }, agent: false });
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      const end = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString('utf8');
        let json; try { json = JSON.parse(text); } catch (_) { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      };
      res.on('end', end); res.on('aborted', end); res.on('error', end);
    });
    req.on('error', (e) => { if (!done && !req.res) { done = true; clearTimeout(timer); reject(e); } });
    const buf = Buffer.from(body);
    let off = 0;
    const pump = () => {
      while (off < buf.length && !done && !req.destroyed) {
        const chunk = buf.subarray(off, off + 65536);
        off += chunk.length;
        if (!req.write(chunk)) { req.once('drain', pump); return; }
      }
      if (!done && !req.destroyed) req.end();
    };
    pump();
  });
}

// A hand-made upgrade request: resolves {upgraded: true} on 101, else the response.
function upgradeRequest(port, pathName) {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port, method: 'GET', path: pathName, agent: false,
      headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': wsKey() },
    });
    const timer = setTimeout(() => { req.destroy(); reject(new Error('upgrade timeout')); }, 10000);
    req.on('upgrade', (res, socket) => { clearTimeout(timer); socket.destroy(); resolve({ upgraded: true, status: res.statusCode }); });
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString('utf8');
        let json; try { json = JSON.parse(text); } catch (_) { json = undefined; }
        resolve({ upgraded: false, status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on('error', (e) => { clearTimeout(timer); reject(e); });
    req.end();
  });
}

// Writes one masked text frame on the client's socket: the header at once, the
// payload only after `holdMs` (and only if the socket is still open), so that a
// server refusing on the declared length can close before the payload is on
// the wire. The ws client still parses what the server sends back.
function sendFrameHeaderFirst(ws, payload, holdMs) {
  const sock = ws._socket;
  const len = payload.length;
  let header;
  if (len < 126) { header = Buffer.alloc(2); header[1] = 0x80 | len; }
  else if (len < 65536) { header = Buffer.alloc(4); header[1] = 0x80 | 126; header.writeUInt16BE(len, 2); }
  else { header = Buffer.alloc(10); header[1] = 0x80 | 127; header.writeBigUInt64BE(BigInt(len), 2); }
  header[0] = 0x81; // FIN, text
  const mask = crypto.randomBytes(4);
  const masked = Buffer.allocUnsafe(len);
  for (let i = 0; i < len; i++) masked[i] = payload[i] ^ mask[i & 3];
  sock.write(Buffer.concat([header, mask]));
  setTimeout(() => { if (!sock.destroyed && ws.readyState === WebSocket.OPEN) sock.write(masked, () => {}); }, holdMs);
}

// Opens a tracking WebSocket and records every message and the close.
function openWs(port, appId, { perMessageDeflate = true } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${TRACK(appId)}`, { perMessageDeflate, handshakeTimeout: 5000 });
    const state = { ws, messages: [], bad: [], acked: new Set(), closed: null, waiters: [] };
    const notify = () => { for (const w of state.waiters.splice(0)) w(); };
    ws.on('message', (data) => {
      const text = data.toString('utf8');
      state.messages.push(text);
      let m; try { m = JSON.parse(text); } catch (_) { m = undefined; }
      // What the Swift SDK can decode: exactly {"reportedIds":[int...]}.
      if (m && typeof m === 'object' && !Array.isArray(m) && Object.keys(m).length === 1 && Array.isArray(m.reportedIds) && m.reportedIds.every(Number.isInteger)) {
        for (const id of m.reportedIds) state.acked.add(id);
      } else state.bad.push(text.slice(0, 300));
      notify();
    });
    ws.on('close', (code, reason) => { state.closed = { code, reason: reason.toString() }; notify(); });
    ws.on('error', (e) => { state.error = e; });
    ws.once('open', () => resolve(state));
    ws.once('unexpected-response', (req, res) => { req.destroy(); reject(new Error(`upgrade answered ${res.statusCode}`)); });
    ws.once('error', reject);
  });
}

async function waitFor(state, pred, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (!pred() && Date.now() < deadline) {
    await new Promise((r) => { state.waiters.push(r); setTimeout(r, Math.min(200, Math.max(1, deadline - Date.now()))); });
  }
  return pred();
}

async function runRow(row, ctx) {
  const { port } = ctx;
  const appId = row.appId || ctx.appId;
  const kind = row.kind || 'http';
  if (kind === 'http-repeat') {
    // No pause between headers and body: a plain client writing everything.
    const r = { path: TRACK(appId), ...row.request };
    const outcomes = [];
    for (let i = 0; i < row.repeat; i++) {
      try {
        const res = await rawRequest(port, r.method, r.path, { body: r.body, headers: r.headers, timeout: 30000 });
        if (res.status === 429) { await sleep(500); continue; }
        try { assertExpect(res, row.expect, `${r.method} ${r.path}`); outcomes.push('ok'); } catch (e) { outcomes.push(`status ${res.status}`); }
      } catch (e) {
        outcomes.push(`${e.code || e.message} before any response`);
      }
    }
    const bad = outcomes.filter((o) => o !== 'ok');
    assert.deepEqual(bad, [], `${bad.length} of ${outcomes.length} tries did not get the ${row.expect.status}: ${outcomes.join(', ')}`);
    return;
  }
  if (kind === 'http' || kind === 'http-chunked') {
    const r = { path: TRACK(appId), ...row.request };
    const res = await request(port, r, { chunked: kind === 'http-chunked' });
    assertExpect(res, row.expect, `${r.method} ${r.path}`);
  } else if (kind === 'ws-upgrade') {
    const res = await upgradeRequest(port, row.path);
    assert.equal(res.upgraded, false, 'the upgrade must be refused, not accepted');
    assertExpect(res, row.expect, `upgrade GET ${row.path}`);
  } else if (kind === 'ws-messages') {
    const s = await openWs(port, appId, { perMessageDeflate: row.perMessageDeflate ?? true });
    try {
      for (const m of row.messages) s.ws.send(m);
      s.ws.send(row.valid);
      const ok = await waitFor(s, () => row.expect.acked.every((id) => s.acked.has(id)) || s.closed, 10000);
      assert.equal(s.closed, null, `the socket was closed: ${JSON.stringify(s.closed)}`);
      assert.ok(ok, `no ack for ${row.expect.acked} within 10 s; messages: ${JSON.stringify(s.messages.slice(0, 5))}`);
      assert.deepEqual(s.bad, [], 'every server message must be exactly {"reportedIds":[int...]}');
      for (const id of row.expect.notAcked || []) assert.ok(!s.acked.has(id), `id ${id} of a malformed message was acked`);
      await sleep(200);
      assert.equal(s.closed, null, `the socket was closed after the ack: ${JSON.stringify(s.closed)}`);
      assert.equal(s.ws.readyState, WebSocket.OPEN);
    } finally {
      s.ws.terminate();
    }
  } else if (kind === 'ws-close') {
    const codes = [];
    for (let i = 0; i < (row.repeat || 1); i++) {
      const s = await openWs(port, appId, { perMessageDeflate: row.perMessageDeflate });
      try {
        // A compressed row whose compression was not negotiated sends its
        // message uncompressed: then header first, like the plain row.
        const plain = row.perMessageDeflate && !String(s.ws.extensions).includes('permessage-deflate');
        if (row.holdMs || plain) sendFrameHeaderFirst(s.ws, Buffer.from(row.message), row.holdMs || 300);
        else s.ws.send(row.message, () => {});
        const closed = await waitFor(s, () => s.closed, 20000);
        assert.ok(closed, 'the socket was not closed within 20 s');
        codes.push(s.closed.code);
      } finally {
        s.ws.terminate();
      }
    }
    const wrong = codes.filter((c) => c !== row.expect.closeCode);
    assert.deepEqual(wrong, [], `${wrong.length} of ${codes.length} closes were not ${row.expect.closeCode}: ${codes.join(',')}`);
  } else {
    throw new Error(`unknown row kind ${kind}`);
  }
}

// --- the test ----------------------------------------------------------------

describe('bad input on the tracking endpoints', { timeout: 10 * 60 * 1000 }, () => {
  const ctx = {};
  let server;
  let dataDir;
  let stopped = null;
  let exported = null;
  let failures = 0;

  before(async () => {
    dataDir = tempDir('bad-input');
    ctx.appId = createApp(dataDir, 'bad-input-app').appId;
    rows.filter((r) => r.ownApp).forEach((r, i) => { r.appId = createApp(dataDir, `bad-input-own-${i}`).appId; });
    server = new Server({ dataDir });
    await server.start();
    ctx.port = server.port;
  });

  after(async () => {
    if (server) await server.kill9();
    if (failures > 0 && server) console.error(`bad_input: server log tail:\n${server.log.slice(-3000)}`);
    if (process.env.NUCLEON_KEEP_DATA) console.error(`bad_input: kept ${dataDir}`);
    else fs.rmSync(dataDir, { recursive: true, force: true });
  });

  const serverAlive = () => server.proc && server.proc.exitCode === null && server.proc.signalCode === null;

  // A row that kills the server fails; the server is then restarted on the
  // same data folder so that the later rows still say something, and the
  // final health check fails.
  const crashes = [];
  for (const row of rows) {
    it(row.name, async () => {
      try {
        if (!serverAlive()) await server.start();
        try {
          await runRow(row, ctx);
        } finally {
          await sleep(20);
          if (!serverAlive()) {
            const { code, signal } = await server.exited;
            crashes.push(`${row.name}: exit ${code} signal ${signal}`);
            assert.fail(`the server died (exit ${code}, signal ${signal}):\n${server.log.slice(-2000)}`);
          }
        }
      } catch (e) { failures++; throw e; }
    });
  }

  it('after all rows a normal batch still works and the server is healthy', async () => {
    try {
      assert.ok(serverAlive(), `the server is not running:\n${server.log.slice(-2000)}`);
      const init = ev({ type: 'init', name: undefined, payload: { plan: 'pro' }, client: 'js', platform: 'Linux', locale: 'en-US' });
      const track = ev({ name: 'FINAL_OK', payload: { n: 1 } });
      const err = ev({ type: 'error', name: 'finalError', payload: { message: 'm', stack: 'Error: m\n    at x' } });
      const res = await request(ctx.port, { ...post(batch(init, track, err)), path: TRACK(ctx.appId) });
      assertExpect(res, { status: 200, acked: [init.id, track.id, err.id] }, 'final valid batch');
      ctx.finalIds = [init.id, track.id, err.id];

      const s = await openWs(ctx.port, ctx.appId);
      const wsEv = ev({ name: 'FINAL_WS' });
      s.ws.send(batch(wsEv));
      const acked = await waitFor(s, () => s.acked.has(wsEv.id) || s.closed, 10000);
      s.ws.terminate();
      assert.ok(acked && s.acked.has(wsEv.id), 'final WebSocket message not acked');
      ctx.finalIds.push(wsEv.id);

      const h = await request(ctx.port, { method: 'GET', path: '/healthz' });
      assert.equal(h.status, 200);
      assert.deepEqual(h.json, { status: 'ok', ready: true });
      assert.deepEqual(crashes, [], 'the server died during the rows (it was restarted to run the rest)');
    } catch (e) { failures++; throw e; }
  });

  it('SIGTERM stops the server with exit status 0', async () => {
    try {
      stopped = await server.stop();
      assert.deepEqual(stopped, { code: 0, signal: null }, server.log.slice(-2000));
    } catch (e) { failures++; throw e; }
  });

  const getExport = () => {
    if (!exported) {
      const events = exportAll(dataDir, ctx.appId);
      const byId = new Map();
      for (const e of events) {
        if (!byId.has(e.id)) byId.set(e.id, []);
        byId.get(e.id).push(e);
      }
      exported = byId;
    }
    return exported;
  };

  it('stored: the final valid events', () => {
    try {
      for (const id of ctx.finalIds || []) one(getExport(), id);
      assert.ok(ctx.finalIds, 'the final batch did not run');
    } catch (e) { failures++; throw e; }
  });

  for (const row of rows.filter((r) => r.storedApp)) {
    it(`stored: ${row.name}`, () => {
      try {
        // exportAll fails on any line that is not JSON.
        row.storedApp(exportAll(dataDir, row.appId));
      } catch (e) { failures++; throw e; }
    });
  }

  for (const row of rows.filter((r) => r.stored)) {
    it(`stored: ${row.name}`, () => {
      try { row.stored(getExport()); } catch (e) { failures++; throw e; }
    });
  }
});

// A reference model of the Nucleus API v1 numbers: small, slow and meant to be
// obviously correct. It follows docs/semantics.md rule by rule (every function
// names the section it implements) and shares no code with the server.
//
// Input: what the server received, in order:
//   model.receive(appId, message, {receivedMs, country})  a tracking message
//                                                         ({data: [...]}, as sent)
//   model.deleteUser(appId, userKey)                      DELETE /users/:userId
//   model.applyRetention(appId, cutMs)                    retention with that cut (§11)
// Output: model.request(appId, {segments, params}, {nowMs}) is the {status, body}
// the server must answer for GET /api/v1/apps/:appId/<segments...>?<params>
// (authentication is the caller's business).
//
// The model keeps only the stored events (§1.9), the heartbeats credited to
// sessions (§1.8), the tombstones (§7) and creation orders (§3.2, §3.3); every
// answer is recomputed from them. `receivedMs` is the server's receive time of
// the message (§1.1), which only the caller can know (by observing it).
'use strict';

const crypto = require('node:crypto');

const DAY_MS = 86400000;
const HOUR_MS = 3600000;
const FUTURE_LIMIT_MS = 24 * HOUR_MS; // §1.6
const NAME_CAP = 256; // §1.2 code points
const PAYLOAD_KEYS_CAP = 64; // §1.7
const VALUE_BYTES_CAP = 1024; // §1.7
const RANGE_LIMIT_S = 95000000000n; // §2.2, §9

// ------------------------------------------------------------------------------------
// Small helpers

// Byte order of §0: compare by UTF-8 bytes (JavaScript's < compares UTF-16 units).
function byteCompare(a, b) {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

const isPlainObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

// §2.1: ISO 8601 in UTC with milliseconds.
function iso(ms) { return new Date(ms).toISOString(); }

// §1.2: first 256 code points.
function capChars(s, n = NAME_CAP) {
  const cps = Array.from(s);
  return cps.length > n ? cps.slice(0, n).join('') : s;
}

// §1.7: first 1024 bytes, never inside a UTF-8 sequence.
function capBytes(s, n = VALUE_BYTES_CAP) {
  const b = Buffer.from(s, 'utf8');
  if (b.length <= n) return s;
  let cut = n;
  while (cut > 0 && (b[cut] & 0xc0) === 0x80) cut--;
  return b.subarray(0, cut).toString('utf8');
}

// §1.7: numbers as JavaScript writes them.
const numberText = (n) => String(n);

// §1.2: a text field.
function textOf(v) {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return numberText(v);
  return '';
}

// The member of an item (§1.2: the last occurrence of a name wins, as in a parsed object).
const field = (o, k) => (Object.prototype.hasOwnProperty.call(o, k) ? o[k] : undefined);

// ------------------------------------------------------------------------------------
// §1.3 Type and name

const TYPE_NAMES = new Map([
  ['init', 'init'], ['event', 'event'], ['error', 'error'], ['userid', 'userid'],
  ['props', 'props'], ['nucleus:view', 'nucleus:view'],
  ['heartbeat', 'heartbeat'], ['nucleus:heartbeat', 'heartbeat'],
]);

function typeAndName(o) {
  let typeText = textOf(field(o, 'type'));
  let name = textOf(field(o, 'name'));
  const alias = textOf(field(o, 'event'));
  if (alias !== '') {
    if (typeText === '' && TYPE_NAMES.has(alias)) typeText = alias;
    else if (name === '') name = alias;
  }
  if (typeText === '') typeText = 'event';
  let type = TYPE_NAMES.get(typeText);
  if (!type) {
    type = 'event';
    if (name === '') name = typeText;
  }
  return { type, name: capChars(name) };
}

// ------------------------------------------------------------------------------------
// §1.6 Event time

function daysInMonth(y, m) {
  if (m === 2) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28;
  return [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1];
}

// §1.6: the ISO 8601 forms the server reads; null when the text does not read.
function parseIsoDate(s) {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?$/.exec(s);
  if (!m) return null;
  const [, y, mo, d, hh, mi, ss, frac, , sign, oh, om] = m; // (`Z` is an offset of 0)
  const year = Number(y), month = Number(mo), day = Number(d);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return null;
  const hour = hh === undefined ? 0 : Number(hh);
  const minute = mi === undefined ? 0 : Number(mi);
  const second = ss === undefined ? 0 : Number(ss);
  if (hour > 23 || minute > 59 || second > 60) return null;
  const millis = frac === undefined ? 0 : Number((frac + '00').slice(0, 3));
  let offsetMin = 0;
  if (sign) {
    const h = Number(oh), mm = om === undefined ? 0 : Number(om);
    if (h > 23 || mm > 59) return null;
    offsetMin = (h * 60 + mm) * (sign === '-' ? -1 : 1);
  }
  return Date.UTC(year, month - 1, day, 0, 0, 0, 0) +
    ((hour * 60 + minute) * 60 + second) * 1000 + millis - offsetMin * 60000;
}

// §1.6: the instant a `date` value reads as, or null.
function readDate(v) {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return null;
    if (Number.isInteger(v)) return v;
    return Math.abs(v) <= 9e15 ? Math.floor(v) : null;
  }
  if (typeof v === 'string') {
    if (/^\d{1,16}$/.test(v)) return Number(v);
    return parseIsoDate(v);
  }
  return null;
}

// §1.6
function eventTime(date, receivedMs) {
  if (date === undefined || date === null) return receivedMs;
  const d = readDate(date);
  return d !== null && d <= receivedMs + FUTURE_LIMIT_MS ? d : receivedMs;
}

// ------------------------------------------------------------------------------------
// §1.7 Payload, properties, context, error hash

function withinLimits(p) {
  const keys = Object.keys(p);
  if (keys.length > PAYLOAD_KEYS_CAP) return false;
  for (const k of keys) {
    if (Buffer.byteLength(k, 'utf8') > NAME_CAP) return false;
    const v = p[k];
    if (typeof v === 'string' ? Buffer.byteLength(v, 'utf8') > VALUE_BYTES_CAP
      : v !== null && typeof v === 'object') return false;
  }
  return true;
}

// §1.7: the payload as stored.
function capPayload(p) {
  if (withinLimits(p)) return p;
  const out = {};
  let kept = 0;
  for (const [k0, v] of Object.entries(p)) {
    if (kept === PAYLOAD_KEYS_CAP) break;
    const k = capChars(k0);
    if (typeof v === 'string') out[k] = capBytes(v);
    else if (v !== null && typeof v === 'object') {
      if (Buffer.byteLength(JSON.stringify(v), 'utf8') > VALUE_BYTES_CAP) continue;
      out[k] = v;
    } else out[k] = v;
    kept++;
  }
  return out;
}

// §1.7: the properties of a payload: [{key, kind, text, value}].
function propertiesOf(payload) {
  const out = [];
  for (const [key, v] of Object.entries(payload)) {
    if (typeof v === 'string') out.push({ key, kind: 'string', text: v, value: v });
    else if (typeof v === 'boolean') out.push({ key, kind: 'boolean', text: String(v), value: v });
    else if (typeof v === 'number' && Number.isFinite(v)) out.push({ key, kind: 'number', text: numberText(v), value: v });
  }
  return out;
}

// §1.7: totalRam reads as a number, or a string that is entirely a finite number.
function readRam(v) {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'string' && /^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v)) {
    const n = Number(v);
    return Number.isFinite(n) ? n : null;
  }
  return null;
}

// §1.7: the line's text without leading spaces/tabs/CR and trailing spaces/CR.
function stripLine(line) {
  return line.replace(/^[ \t\r]+/, '').replace(/[ \r]+$/, '');
}

// §1.7: error_hash.
function errorHash(name, rawPayload) {
  const p = isPlainObject(rawPayload) ? rawPayload : {};
  const message = textOf(field(p, 'message'));
  const stack = textOf(field(p, 'stack'));
  const lines = stack.split('\n');
  let frame = lines.map(stripLine).find((l) => l.startsWith('at '));
  if (frame === undefined) frame = lines.length > 1 ? stripLine(lines[1]) : '';
  return crypto.createHash('sha256').update(Buffer.from(`${name}\0${message}\0${frame}`, 'utf8'))
    .digest('hex').slice(0, 32);
}

// ------------------------------------------------------------------------------------
// §1.2-§1.8 Decoding one item

// Returns {kind: 'invalid'} | {kind: 'heartbeat', deviceId, sessionId} | {kind: 'event', event}.
// `ackId` is the item's id as acknowledged (or undefined).
function decodeItem(item, receivedMs, country) {
  if (!isPlainObject(item)) return { kind: 'invalid' };
  const rawId = field(item, 'id');
  const ackId = typeof rawId === 'string' || (typeof rawId === 'number' && Number.isFinite(rawId)) ? rawId : undefined;
  const { type, name } = typeAndName(item);
  // §1.4
  let deviceId = textOf(field(item, 'deviceId'));
  if (deviceId === '') deviceId = textOf(field(item, 'machineId'));
  deviceId = capChars(deviceId);
  const sessionId = capChars(textOf(field(item, 'sessionId')));
  const userId = capChars(textOf(field(item, 'userId')));
  const anonId = capChars(textOf(field(item, 'anonId')));
  const userKey = userId !== '' ? userId : anonId !== '' ? anonId : deviceId;
  // §1.8, §1.5
  if (type === 'heartbeat') {
    if (deviceId === '') return { kind: 'invalid', ackId };
    return { kind: 'heartbeat', ackId, deviceId, sessionId, userKey };
  }
  if (deviceId === '' || sessionId === '') return { kind: 'invalid', ackId };
  if (name === '' && (type === 'event' || type === 'error' || type === 'nucleus:view')) return { kind: 'invalid', ackId };
  const rawPayload = field(item, 'payload');
  if (rawPayload !== undefined && rawPayload !== null && !isPlainObject(rawPayload)) return { kind: 'invalid', ackId };
  const payload = isPlainObject(rawPayload) ? capPayload(rawPayload) : {};
  let locale = textOf(field(item, 'locale'));
  if (locale === '') locale = textOf(field(item, 'language'));
  const date = field(item, 'date');
  const event = {
    type, name, deviceId, sessionId, userKey,
    time: eventTime(date, receivedMs), // §1.6
    // §1.9: identity (only for events with an id)
    identity: ackId === undefined ? null : JSON.stringify([
      deviceId, sessionId, typeof ackId === 'string' ? JSON.stringify(ackId) : numberText(ackId),
      type, name, date === undefined ? null : JSON.stringify(date)]),
    payload,
    props: propertiesOf(payload),
    ctx: { // §1.7 context
      platform: capChars(textOf(field(item, 'platform'))),
      osVersion: capChars(textOf(field(item, 'osVersion'))),
      locale: capChars(locale),
      version: capChars(textOf(field(item, 'version'))),
      moduleVersion: capChars(textOf(field(item, 'moduleVersion'))),
      arch: capChars(textOf(field(item, 'arch'))),
      totalRam: readRam(field(item, 'totalRam')),
      country: country || '',
    },
    errorHash: type === 'error' ? errorHash(name, rawPayload) : null,
  };
  return { kind: 'event', ackId, event };
}

// ------------------------------------------------------------------------------------
// §4 Value normalisation

function normalizePlatform(p) { // §4.1
  const l = p.replace(/[A-Z]/g, (c) => c.toLowerCase());
  if (l === 'darwin' || l === 'mac' || l === 'macos') return 'mac';
  if (l === 'windows_nt' || l === 'win32' || l === 'windows') return 'win';
  return l;
}

function languageOf(locale) { // §4.2
  const m = /^[A-Za-z]*/.exec(locale)[0];
  if (m.length < 2 || m.length > 8) return '';
  if (m.length < locale.length && !'-_.@'.includes(locale[m.length])) return '';
  const lang = m.toLowerCase();
  return lang === 'posix' ? '' : lang;
}

function ramOf(totalRam) { // §4.3; null when unknown
  if (totalRam === null || totalRam === undefined || !Number.isFinite(totalRam) || totalRam < 0) return null;
  return Math.floor(totalRam + 0.5);
}

// §2.3
function localDay(t, offsetMin) { return iso(t + offsetMin * 60000).slice(0, 10); }
function localHour(t, offsetMin) {
  const h = Math.floor((t + offsetMin * 60000) / HOUR_MS) % 24;
  return h < 0 ? h + 24 : h;
}

// ------------------------------------------------------------------------------------
// The model

const sessionKeyOf = (deviceId, sessionId) => `${deviceId}\u0000${sessionId}`;

class AppState {
  constructor(appId) {
    this.appId = appId;
    this.events = []; // stored events, in storage order (§1.9); each gets .seq
    this.identities = new Set(); // identities of stored events
    this.tombstones = new Set(); // §7
    this.heartbeats = new Map(); // session key -> latest credited heartbeat (§1.8)
    this.sessionCreated = new Map(); // session key -> creation order (§3.3.4)
    this.userCreated = new Map(); // user key -> creation order (§3.2.5)
    this.seq = 0;
    this.cut = -Infinity; // §11: events before it are not stored
    this.view = null; // derived entities, dropped on every change
  }

  clone() {
    const c = new AppState(this.appId);
    c.events = this.events.slice();
    c.identities = new Set(this.identities);
    c.tombstones = new Set(this.tombstones);
    c.heartbeats = new Map(this.heartbeats);
    c.sessionCreated = new Map(this.sessionCreated);
    c.userCreated = new Map(this.userCreated);
    c.seq = this.seq;
    c.cut = this.cut;
    return c;
  }
}

class ReferenceModel {
  constructor() {
    this.apps = new Map();
  }

  app(appId) {
    let a = this.apps.get(appId);
    if (!a) { a = new AppState(appId); this.apps.set(appId, a); }
    return a;
  }

  // §1.1-§1.9: one tracking message. Returns what happened to each item:
  // {acks, items: [{kind, outcome, event?, sessionKey?, endBefore?}]}.
  receive(appId, message, { receivedMs, country = '' }) {
    return receiveInto(this.app(appId), message, receivedMs, country);
  }

  // The same, without changing the model (to plan what to observe).
  // `after` holds the derived entities as they would be afterwards.
  dryRun(appId, message, { receivedMs, country = '' }) {
    const copy = this.app(appId).clone();
    const result = receiveInto(copy, message, receivedMs, country);
    result.after = derive(copy);
    return result;
  }

  // §7
  deleteUser(appId, userKey) {
    return deleteUserFrom(this.app(appId), userKey);
  }

  // §11
  applyRetention(appId, cutMs) {
    return retentionOf(this.app(appId), cutMs);
  }

  // The answer to GET /api/v1/apps/:appId/<segments> with `params` (strings).
  request(appId, { segments, params = {} }, { nowMs } = {}) {
    return route(this.app(appId), segments, params, nowMs);
  }

  // Derived entities, for tests that want to look inside (read-only).
  derived(appId) { return derive(this.app(appId)); }
}

// §1.1, §1.8, §1.9
function receiveInto(app, message, receivedMs, country) {
  const result = { acks: [], items: [] };
  const data = isPlainObject(message) && Array.isArray(message.data) ? message.data : null;
  if (!data) throw new Error('the model only takes well-formed tracking messages');
  for (const item of data) {
    const d = decodeItem(item, receivedMs, country);
    if (d.ackId !== undefined) result.acks.push(d.ackId);
    if (d.kind === 'invalid') { result.items.push({ kind: 'invalid' }); continue; }
    if (d.kind === 'heartbeat') {
      const v = derive(app);
      let target = null;
      if (d.sessionId !== '') {
        const key = sessionKeyOf(d.deviceId, d.sessionId);
        if (v.sessions.has(key)) target = key;
      } else {
        const dev = v.devices.get(d.deviceId);
        if (dev) target = latestSession(dev.sessions).key;
      }
      const endBefore = target ? v.sessions.get(target).end : null;
      if (target && !(app.heartbeats.get(target) >= receivedMs)) {
        app.heartbeats.set(target, receivedMs);
        app.view = null;
      }
      result.items.push({ kind: 'heartbeat', outcome: target ? 'credited' : 'dropped', sessionKey: target, endBefore });
      continue;
    }
    const e = d.event;
    if (e.time < app.cut) { // §11: older than the app's retention
      result.items.push({ kind: 'event', outcome: 'expired', event: e });
      continue;
    }
    if (e.identity !== null && app.tombstones.has(e.identity)) {
      result.items.push({ kind: 'event', outcome: 'tombstoned', event: e });
      continue;
    }
    if (e.identity !== null && app.identities.has(e.identity)) {
      result.items.push({ kind: 'event', outcome: 'resend', event: e });
      continue;
    }
    e.seq = ++app.seq;
    const sk = sessionKeyOf(e.deviceId, e.sessionId);
    if (!app.sessionCreated.has(sk)) app.sessionCreated.set(sk, e.seq);
    if (!app.userCreated.has(e.userKey)) app.userCreated.set(e.userKey, e.seq);
    if (e.identity !== null) app.identities.add(e.identity);
    app.events.push(e);
    app.view = null;
    result.items.push({ kind: 'event', outcome: 'stored', event: e });
  }
  return result;
}

// §7
function deleteUserFrom(app, userKey) {
  const v = derive(app);
  const user = v.users.get(userKey);
  if (!user) return 404;
  for (const e of user.events) if (e.identity !== null) app.tombstones.add(e.identity);
  // §7.2: the sessions of the user lose their credited heartbeats.
  for (const sk of user.sessions) app.heartbeats.delete(sk);
  app.events = app.events.filter((e) => e.userKey !== userKey);
  app.identities = new Set(app.events.filter((e) => e.identity !== null).map((e) => e.identity));
  const remaining = new Set(app.events.map((e) => sessionKeyOf(e.deviceId, e.sessionId)));
  for (const sk of [...app.sessionCreated.keys()]) if (!remaining.has(sk)) app.sessionCreated.delete(sk);
  app.userCreated.delete(userKey);
  app.view = null;
  return 204;
}

// §11: the events before the cut go; sessions, devices and users without
// events go with them (a session that keeps events keeps its credited
// heartbeats); from now on no event before the cut is stored.
function retentionOf(app, cutMs) {
  app.cut = Math.max(app.cut, cutMs);
  const before = app.events.length;
  app.events = app.events.filter((e) => e.time >= app.cut);
  app.identities = new Set(app.events.filter((e) => e.identity !== null).map((e) => e.identity));
  const sessions = new Set(app.events.map((e) => sessionKeyOf(e.deviceId, e.sessionId)));
  for (const sk of [...app.sessionCreated.keys()]) if (!sessions.has(sk)) app.sessionCreated.delete(sk);
  for (const sk of [...app.heartbeats.keys()]) if (!sessions.has(sk)) app.heartbeats.delete(sk);
  const users = new Set(app.events.map((e) => e.userKey));
  for (const k of [...app.userCreated.keys()]) if (!users.has(k)) app.userCreated.delete(k);
  app.view = null;
  return before - app.events.length;
}

// ------------------------------------------------------------------------------------
// §3 Derived entities

function latestSession(sessions) { // latest start, then created later (§3.3.4)
  let best = null;
  for (const s of sessions) {
    if (!best || s.start > best.start || (s.start === best.start && s.created > best.created)) best = s;
  }
  return best;
}

// §3.5: the context of a session (or null), and its init context (or null).
function sessionContexts(events) {
  let init = null;
  let carrying = null;
  for (const e of events) { // storage order
    if (e.type === 'init') {
      if (!init || e.time < init.time) init = e; // equal: stored first
    } else if (e.ctx.platform !== '' || e.ctx.locale !== '' || e.ctx.version !== '') {
      if (!carrying || e.time >= carrying.time) carrying = e; // equal: stored last
    }
  }
  return { context: init ? init.ctx : carrying ? carrying.ctx : null, initContext: init ? init.ctx : null };
}

function derive(app) {
  if (app.view) return app.view;
  const sessions = new Map();
  const devices = new Map();
  const users = new Map();
  for (const e of app.events) {
    const sk = sessionKeyOf(e.deviceId, e.sessionId);
    let s = sessions.get(sk);
    if (!s) {
      s = { key: sk, deviceId: e.deviceId, sessionId: e.sessionId, events: [], users: new Set(), created: app.sessionCreated.get(sk) };
      sessions.set(sk, s);
    }
    s.events.push(e);
    s.users.add(e.userKey);
    let u = users.get(e.userKey);
    if (!u) {
      u = { key: e.userKey, events: [], sessions: new Set(), created: app.userCreated.get(e.userKey) };
      users.set(e.userKey, u);
    }
    u.events.push(e);
    u.sessions.add(sk);
  }
  for (const s of sessions.values()) {
    // §3.3.1, §3.3.2
    const inits = s.events.filter((e) => e.type === 'init');
    s.start = Math.min(...(inits.length ? inits : s.events).map((e) => e.time));
    s.end = Math.max(...s.events.map((e) => e.time));
    const hb = app.heartbeats.get(s.key);
    if (hb !== undefined && hb > s.end) s.end = hb;
    s.duration = Math.floor((s.end - s.start) / 1000); // §3.3.3
    const c = sessionContexts(s.events);
    s.context = c.context;
    s.initContext = c.initContext;
    let d = devices.get(s.deviceId);
    if (!d) { d = { deviceId: s.deviceId, sessions: [] }; devices.set(s.deviceId, d); }
    d.sessions.push(s);
  }
  // §3.4: installs.
  for (const d of devices.values()) {
    let first = null;
    for (const s of d.sessions) {
      if (!first || s.start < first.start || (s.start === first.start && s.created < first.created)) first = s;
    }
    d.install = first;
    for (const s of d.sessions) s.isInstall = s === first;
  }
  // §3.2
  for (const u of users.values()) {
    u.createdAt = Math.min(...u.events.map((e) => e.time));
    u.lastSeen = Math.max(...[...u.sessions].map((sk) => sessions.get(sk).end));
  }
  app.view = { sessions, devices, users };
  return app.view;
}

// ------------------------------------------------------------------------------------
// §5 Analytics endpoints

const inRange = (t, r) => t >= r.fromMs && t <= r.toMs; // §2.2

function sortValueCounts(list) { // §10: count desc, then value in byte order
  return list.sort((a, b) => (b.count - a.count) || byteCompare(a.value, b.value));
}

function sortedDayMap(m) { // days ascending, only non-zero values
  const out = {};
  for (const day of [...m.keys()].sort()) if (m.get(day) !== 0) out[day] = m.get(day);
  return out;
}

const inc = (m, k, n = 1) => m.set(k, (m.get(k) || 0) + n);

// §5.1
function quickGlance(app, nowMs) {
  const v = derive(app);
  const windowCounts = (from, to) => {
    const r = { fromMs: from, toMs: to };
    const users = new Set();
    let appStarts = 0, errors = 0, installs = 0;
    for (const e of app.events) {
      if (!inRange(e.time, r)) continue;
      users.add(e.userKey);
      if (e.type === 'init') appStarts++;
      if (e.type === 'error') errors++;
    }
    for (const d of v.devices.values()) if (inRange(d.install.start, r)) installs++;
    return { installs, users: users.size, appStarts, errors };
  };
  const cur = windowCounts(nowMs - DAY_MS, nowMs - 1);
  const prev = windowCounts(nowMs - 2 * DAY_MS, nowMs - DAY_MS - 1);
  return {
    data: {
      installs: cur.installs, users: cur.users, appStarts: cur.appStarts, errors: cur.errors,
      previousInstalls: prev.installs, previousUsers: prev.users,
      previousAppStarts: prev.appStarts, previousErrors: prev.errors,
    },
  };
}

// §5.2
// §5.2.9 and §5.8: the sessions whose start is in range, by the local day of
// their start: how many, and the mean of their durations.
function sessionDays(v, r) {
  const durations = new Map(); // day -> [sum, n]
  for (const s of v.sessions.values()) {
    if (!inRange(s.start, r)) continue;
    const day = localDay(s.start, r.utcOffset);
    const acc = durations.get(day) || [0, 0];
    acc[0] += s.duration;
    acc[1] += 1;
    durations.set(day, acc);
  }
  const count = {}, avg = {};
  for (const day of [...durations.keys()].sort()) {
    const [sum, n] = durations.get(day);
    count[day] = n;
    avg[day] = sum / n;
  }
  return { count, avg };
}

// §5.8 (a Nucleon extension)
function sessionsPerDay(app, r) {
  const { count, avg } = sessionDays(derive(app), r);
  return { data: { sessions: count, avgSessionDuration: avg } };
}

function daily(app, r) {
  const v = derive(app);
  const off = r.utcOffset;
  const E = app.events.filter((e) => inRange(e.time, r));
  const users = new Set(E.map((e) => e.userKey)); // 5.2.1
  let installs = 0; // 5.2.2
  for (const d of v.devices.values()) if (inRange(d.install.start, r)) installs++;
  const usage = new Map(); // 5.2.3
  const hours = new Map(); // 5.2.7
  const active = new Map(); // 5.2.5: day -> Set(user)
  for (const e of E) {
    const day = localDay(e.time, off);
    if (!active.has(day)) active.set(day, new Set());
    active.get(day).add(e.userKey);
    if (e.type === 'init') {
      inc(usage, day);
      if (!hours.has(day)) hours.set(day, new Array(24).fill(0));
      hours.get(day)[localHour(e.time, off)]++;
    }
  }
  const newUsers = new Map(); // 5.2.4
  for (const u of v.users.values()) if (inRange(u.createdAt, r)) inc(newUsers, localDay(u.createdAt, off));
  const activeCounts = new Map([...active].map(([d, s]) => [d, s.size]));
  const nonNew = new Map(); // 5.2.6
  for (const [day, n] of activeCounts) {
    const x = n - (newUsers.get(day) || 0);
    if (x > 0) nonNew.set(day, x);
  }
  // 5.2.8: distinct users per normalised value over the inits in range.
  const dims = { platforms: new Map(), languages: new Map(), versions: new Map(), countries: new Map(), ram: new Map() };
  const add = (dim, value, user) => {
    if (value === '' || value === null) return;
    if (!dims[dim].has(value)) dims[dim].set(value, new Set());
    dims[dim].get(value).add(user);
  };
  for (const e of E) {
    if (e.type !== 'init') continue;
    add('platforms', e.ctx.platform === '' ? '' : normalizePlatform(e.ctx.platform), e.userKey);
    add('languages', languageOf(e.ctx.locale), e.userKey);
    add('versions', e.ctx.version, e.userKey);
    add('countries', e.ctx.country, e.userKey);
    const ram = ramOf(e.ctx.totalRam);
    add('ram', ram === null ? null : String(ram), e.userKey);
  }
  const breakdown = (dim) => sortValueCounts([...dims[dim]].map(([value, s]) => ({ value, count: s.size })));
  const { avg } = sessionDays(v, r); // 5.2.9
  const hoursOut = {};
  for (const day of [...hours.keys()].sort()) hoursOut[day] = hours.get(day);
  return {
    data: {
      totalNumbers: { users: users.size, installs },
      usage: sortedDayMap(usage),
      newUsers: sortedDayMap(newUsers),
      activeUsers: sortedDayMap(activeCounts),
      nonNewUsers: sortedDayMap(nonNew),
      hours: hoursOut,
      platforms: breakdown('platforms'),
      ram: breakdown('ram'),
      languages: breakdown('languages'),
      versions: breakdown('versions'),
      countries: breakdown('countries'),
      avgSessionDuration: avg,
    },
  };
}

// §5.3 (type 'event') and §5.4 (type 'error')
function countsByName(app, r, type) {
  const byName = new Map();
  for (const e of app.events) {
    if (e.type !== type || !inRange(e.time, r)) continue;
    if (!byName.has(e.name)) byName.set(e.name, new Map());
    inc(byName.get(e.name), localDay(e.time, r.utcOffset));
  }
  const data = {};
  for (const name of [...byName.keys()].sort(byteCompare)) data[name] = sortedDayMap(byName.get(name));
  return { data };
}

// §5.7 (a Nucleon extension): per error name, its users, first and last time
// and its latest event.
function errorGroups(app, r) {
  const groups = new Map();
  for (const e of app.events) {
    if (e.type !== 'error' || !inRange(e.time, r)) continue;
    let g = groups.get(e.name);
    if (!g) groups.set(e.name, (g = { count: 0, users: new Set(), first: e.time, latest: e }));
    g.count++;
    g.users.add(e.userKey);
    g.first = Math.min(g.first, e.time);
    if (e.time > g.latest.time || (e.time === g.latest.time && e.seq > g.latest.seq)) g.latest = e;
  }
  const text = (e, key) => {
    const p = e.props.find((x) => x.key === key);
    return p ? p.text : '';
  };
  const data = [...groups].map(([name, g]) => ({
    name,
    count: g.count,
    users: g.users.size,
    firstSeen: iso(g.first),
    lastSeen: iso(g.latest.time),
    sample: {
      time: iso(g.latest.time), userId: g.latest.userKey, sessionId: g.latest.sessionId, deviceId: g.latest.deviceId,
      message: text(g.latest, 'message'), stack: text(g.latest, 'stack'),
    },
  }));
  data.sort((a, b) => (b.count - a.count) || byteCompare(a.name, b.name));
  return { data };
}

// §6.1 search (a Nucleon extension): the key contains the text, ASCII letters
// lowercased on both sides.
function asciiLower(s) {
  return s.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

// §5.5: the name an event's properties are filed under, or null.
function propsName(e) {
  if (e.type === 'init') return 'init';
  if (e.type === 'event') return e.name;
  return null;
}

function eventsProps(app, r) {
  const groups = new Map(); // JSON [name, kind] -> Set(keys)
  for (const e of app.events) {
    const name = propsName(e);
    if (name === null || !inRange(e.time, r)) continue;
    for (const p of e.props) {
      const k = JSON.stringify([name, p.kind]);
      if (!groups.has(k)) groups.set(k, new Set());
      groups.get(k).add(p.key);
    }
  }
  const data = [...groups].map(([k, keys]) => {
    const [event, type] = JSON.parse(k);
    return { event, keys: [...keys].sort(byteCompare), type };
  });
  data.sort((a, b) => byteCompare(a.event, b.event) || byteCompare(a.type, b.type));
  return { data };
}

// §5.6
function eventAttribute(app, r, event, attr) {
  const counts = new Map();
  for (const e of app.events) {
    if (propsName(e) !== event || !inRange(e.time, r)) continue;
    for (const p of e.props) if (p.key === attr) inc(counts, p.text);
  }
  return { data: sortValueCounts([...counts].map(([value, count]) => ({ value, count }))) };
}

// ------------------------------------------------------------------------------------
// §6 Users endpoints

function userDbId(appId, userKey) { // §3.2.1
  return crypto.createHash('sha256').update(Buffer.from(`${appId}/${userKey}`, 'utf8')).digest('hex').slice(0, 24);
}

const orNull = (s) => (s === '' || s === undefined || s === null ? null : s);

// §6.1: one user as the users list shows it.
function userSummary(app, v, u) {
  const mine = [...u.sessions].map((sk) => v.sessions.get(sk));
  const byDevice = new Map();
  for (const s of mine) {
    if (!byDevice.has(s.deviceId)) byDevice.set(s.deviceId, []);
    byDevice.get(s.deviceId).push(s);
  }
  const devices = [...byDevice].map(([deviceId, list]) => {
    const latest = latestSession(list);
    const c = latest.context;
    return {
      _id: deviceId,
      lastSeenMs: Math.max(...list.map((s) => s.end)),
      platform: c && c.platform !== '' ? normalizePlatform(c.platform) : null,
      osVersion: c ? orNull(c.osVersion) : null,
      version: c ? orNull(c.version) : null,
    };
  });
  devices.sort((a, b) => (a.lastSeenMs - b.lastSeenMs) || byteCompare(a._id, b._id));
  // §6.1.3
  const props = {};
  const newest = latestSession(mine);
  if (newest.context) {
    if (newest.context.country !== '') props.country = newest.context.country;
    const lang = languageOf(newest.context.locale);
    if (lang !== '') props.locale = lang;
  }
  const setters = u.events.filter((e) => e.type === 'init' || e.type === 'props' || e.type === 'userid');
  setters.sort((a, b) => (a.time - b.time) || (a.seq - b.seq));
  for (const e of setters) for (const p of e.props) props[p.key] = p.value;
  return {
    _id: userDbId(app.appId, u.key),
    userId: u.key,
    createdAt: iso(u.createdAt),
    lastSeen: iso(u.lastSeen),
    devices: devices.map((d) => ({ _id: d._id, lastSeen: iso(d.lastSeenMs), platform: d.platform, osVersion: d.osVersion, version: d.version })),
    props,
  };
}

function usersList(app, page, limit, search = '') {
  const v = derive(app);
  const needle = asciiLower(search);
  const all = [...v.users.values()].filter((u) => asciiLower(u.key).includes(needle))
    .sort((a, b) => (b.lastSeen - a.lastSeen) || (b.created - a.created));
  const slice = all.slice((page - 1) * limit, page * limit);
  return { total: all.length, data: slice.map((u) => userSummary(app, v, u)) };
}

// §6.2
function userDetails(app, userKey) {
  const v = derive(app);
  const u = v.users.get(userKey);
  if (!u) return null;
  const s = userSummary(app, v, u);
  const user = {
    _id: s._id, appId: app.appId, userId: s.userId, __v: 0, createdAt: s.createdAt, lastSeen: s.lastSeen,
    devices: s.devices, props: s.props, updatedAt: s.lastSeen,
  };
  const sessions = [...u.sessions].map((sk) => v.sessions.get(sk));
  sessions.sort((a, b) => (b.start - a.start) || byteCompare(b.sessionId, a.sessionId) || byteCompare(b.deviceId, a.deviceId));
  return {
    user,
    sessions: sessions.map((x) => ({
      session: x.sessionId,
      device: x.deviceId,
      start: iso(x.start),
      end: iso(x.end),
      actions: x.events.length,
      errors: x.events.filter((e) => e.type === 'error').length,
    })),
  };
}

// §6.3: one event as session events show it.
function eventView(app, s, e) {
  const ic = s.initContext;
  const complete = (k) => (e.ctx[k] !== '' ? e.ctx[k] : ic ? ic[k] : '');
  const totalRam = e.ctx.totalRam !== null ? e.ctx.totalRam : ic ? ic.totalRam : null;
  const platform = complete('platform');
  return {
    app_id: app.appId,
    platform: platform === '' ? null : normalizePlatform(platform),
    user_id: e.userKey,
    machine_id: e.deviceId,
    version: orNull(complete('version')),
    locale: orNull(languageOf(complete('locale'))),
    renderer: null,
    module_version: orNull(complete('moduleVersion')),
    avail_ram: ramOf(totalRam),
    type: e.type,
    time: iso(e.time),
    country: orNull(complete('country')),
    arch: orNull(complete('arch')),
    first_time: e.type === 'init' && s.isInstall,
    session_id: e.sessionId,
    error_hash: e.type === 'error' ? e.errorHash : null,
    os_version: orNull(complete('osVersion')),
    data: e.payload,
    duration: null,
    name: orNull(e.name),
  };
}

function sessionEvents(app, userKey, sessionId, device) {
  const v = derive(app);
  const u = v.users.get(userKey);
  if (!u) return { status: 404, body: { error: `unknown user ${userKey}` } };
  const selected = [...u.sessions].map((sk) => v.sessions.get(sk))
    .filter((s) => s.sessionId === sessionId && (!device || s.deviceId === device));
  if (selected.length === 0) return { status: 404, body: { error: `unknown session ${sessionId}` } };
  const rows = [];
  for (const s of selected) for (const e of s.events) rows.push({ s, e });
  rows.sort((a, b) => (a.e.time - b.e.time) || (a.e.seq - b.e.seq));
  return { status: 200, body: { data: rows.map(({ s, e }) => eventView(app, s, e)) } };
}

// ------------------------------------------------------------------------------------
// §9 Parameters and routing

// A plain decimal integer within [min, max], else null.
function intParam(text, min, max) {
  if (typeof text !== 'string' || !/^-?\d+$/.test(text)) return null;
  const n = BigInt(text);
  if (n < BigInt(min) || n > BigInt(max)) return null;
  return Number(n);
}

function bad(message) { return { status: 400, body: { error: message } }; }

// §2.2, §2.3, §9.6
function rangeParams(params) {
  const bounds = [];
  for (const name of ['start', 'end']) {
    const text = params[name];
    if (text === undefined || text === '') return { error: bad(`${name} is required`) };
    const n = intParam(text, -RANGE_LIMIT_S, RANGE_LIMIT_S);
    if (n === null) return { error: bad(`${name} must be a Unix timestamp in seconds`) };
    bounds.push(n);
  }
  if (bounds[1] < bounds[0]) return { error: bad('end must not be before start') };
  let utcOffset = 0;
  if (params.utcOffset !== undefined) {
    utcOffset = intParam(params.utcOffset, -720, 840);
    if (utcOffset === null) return { error: bad('utcOffset must be an integer between -720 and 840') };
  }
  return { range: { fromMs: bounds[0] * 1000, toMs: bounds[1] * 1000 + 999, utcOffset } };
}

const ok = (body) => ({ status: 200, body });

function route(app, seg, params, nowMs) {
  const n = seg.length;
  const ranged = (fn) => {
    const r = rangeParams(params);
    return r.error || ok(fn(r.range));
  };
  if (n === 2 && seg[0] === 'analytics' && seg[1] === 'quickglance') {
    if (typeof nowMs !== 'number') throw new Error('quick glance needs nowMs');
    return ok(quickGlance(app, nowMs));
  }
  if (n === 1 && seg[0] === 'analytics') return ranged((r) => daily(app, r));
  if (n === 2 && seg[0] === 'analytics' && seg[1] === 'events') return ranged((r) => countsByName(app, r, 'event'));
  if (n === 2 && seg[0] === 'analytics' && seg[1] === 'errors') return ranged((r) => countsByName(app, r, 'error'));
  if (n === 3 && seg[0] === 'analytics' && seg[1] === 'errors' && seg[2] === 'groups') return ranged((r) => errorGroups(app, r));
  if (n === 2 && seg[0] === 'analytics' && seg[1] === 'sessions') return ranged((r) => sessionsPerDay(app, r));
  if (n === 2 && seg[0] === 'analytics' && seg[1] === 'eventsprops') return ranged((r) => eventsProps(app, r));
  if (n === 4 && seg[0] === 'analytics' && seg[1] === 'events') return ranged((r) => eventAttribute(app, r, seg[2], seg[3]));
  if (n === 1 && seg[0] === 'users') {
    let page = 1, limit = 100;
    if (params.page !== undefined) {
      page = intParam(params.page, 1, 2147483647);
      if (page === null) return bad('page must be an integer of at least 1');
    }
    if (params.limit !== undefined) {
      limit = intParam(params.limit, 1, 1000);
      if (limit === null) return bad('limit must be an integer between 1 and 1000');
    }
    const search = params.search ?? '';
    if (Buffer.byteLength(search, 'utf8') > 256) return bad('search must be at most 256 bytes');
    return ok(usersList(app, page, limit, search));
  }
  if (n === 2 && seg[0] === 'users') {
    const d = userDetails(app, seg[1]);
    return d ? ok(d) : { status: 404, body: { error: `unknown user ${seg[1]}` } };
  }
  if (n === 4 && seg[0] === 'users' && seg[2] === 'session') {
    return sessionEvents(app, seg[1], seg[3], params.device || '');
  }
  return { status: 404, body: { error: 'no such endpoint' } };
}

module.exports = {
  ReferenceModel,
  // Exposed for the test's own checks and diagnostics.
  byteCompare, iso, localDay, parseIsoDate, readDate, userDbId, normalizePlatform, languageOf,
  errorHash, sessionKeyOf,
};

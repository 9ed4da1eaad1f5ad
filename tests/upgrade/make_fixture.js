#!/usr/bin/env node
// Writes the "upgrade in place" fixture: a data folder produced by a real
// release of the server, and the answers that release gives on it.
//
//   node tests/upgrade/make_fixture.js --bin PATH/TO/nucleon --out DIR
//   node tests/upgrade/make_fixture.js --compare A/vN-expected.json B/vN-expected.json
//
// The first form starts `PATH/TO/nucleon serve --data DIR/data` on a loopback
// port, sends a varied, deterministic dataset through the real tracking
// endpoints (HTTP and WebSocket), deletes a user, stops the server (SIGTERM),
// starts it again on the same folder and records the status and JSON of a list
// of API requests covering every API v1 endpoint, plus `nucleon export` of each
// app. It writes DIR/vN-folder.tar.gz (events.db and catalog.db, N being the
// schema version the release wrote) and DIR/vN-expected.json.
//
// The second form compares two expected files written by two runs: app ids,
// tokens and user _ids differ from run to run, and so does everything that
// heartbeats touched (a heartbeat carries no date: the server stamps it with
// its own clock, so it extends a session up to the moment the fixture was
// written). Both are masked; anything else that differs is printed.
//
// Every event date is fixed (February and March 2025), so the answers do not
// depend on the day the fixture is written or read, except the heartbeats'.
// See tests/upgrade/README.md.
'use strict';

const { spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const zlib = require('node:zlib');

const NODE_TESTS = path.join(__dirname, '..', 'node');

// ------------------------------------------------------------------------------------------
// Command line

function usage(msg) {
  if (msg) process.stderr.write(`make_fixture: ${msg}\n`);
  process.stderr.write('usage: make_fixture.js --bin PATH --out DIR\n'
    + '       make_fixture.js --compare A.json B.json\n');
  process.exit(2);
}

function parseArgs(argv) {
  const o = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--bin' || a === '--out') o[a.slice(2)] = argv[++i];
    else if (a === '--compare') { o.compare = [argv[++i], argv[++i]]; }
    else usage(`unknown argument ${a}`);
  }
  return o;
}

// ------------------------------------------------------------------------------------------
// Deterministic randomness: every choice of the dataset comes from this one seeded generator,
// consumed in a fixed order, so two runs build the very same messages.
const { mulberry32 } = require(path.join(NODE_TESTS, 'lib', 'diff_scenario.js'));

class Rng {
  constructor(seed) { this.next = mulberry32(seed); }
  int(lo, hi) { return lo + Math.floor(this.next() * (hi - lo + 1)); } // inclusive
  pick(list) { return list[Math.floor(this.next() * list.length)]; }
  chance(p) { return this.next() < p; }
  chars(n, alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789') {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[Math.floor(this.next() * alphabet.length)];
    return s;
  }
}

const sha256hex = (s) => crypto.createHash('sha256').update(s).digest('hex');
const userDbId = (appId, userKey) => sha256hex(`${appId}/${userKey}`).slice(0, 24);

// ------------------------------------------------------------------------------------------
// Time: the dataset lives between PERIOD_START and PERIOD_END (UTC). It crosses the end of
// February (a 28-day month) and has events on day, hour and 15-minute boundaries.

const DAY = 86400000;
const HOUR = 3600000;
const MIN = 60000;
const PERIOD_START = Date.UTC(2025, 1, 17); // 2025-02-17T00:00:00Z
const PERIOD_DAYS = 21; // to 2025-03-09 included
const PERIOD_END = PERIOD_START + PERIOD_DAYS * DAY - 1;

const iso = (ms) => new Date(ms).toISOString();
// What Python's datetime.now().isoformat() prints: no offset, microseconds. The machines in
// this dataset run on UTC, so the text is the UTC clock time.
const pyIso = (ms, micros) => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, `.$1${String(micros).padStart(3, '0')}`);

// Addresses whose country is stable in Debian's tor-geoipdb range files; the fixture server
// trusts a loopback proxy, so these become the events' countries. null: the loopback peer
// itself, which has no country.
// Events built invalid on purpose (acked and dropped by the server), for the composition counts.
const INVALID = new WeakSet();

const ADDRESSES = [null, '8.8.8.8', '193.0.6.139', '81.2.69.160', '2001:67c:2e8:22::c100:68b'];

// ------------------------------------------------------------------------------------------
// Devices: one class per SDK family, each writing events exactly in its SDK's shape (field
// names, date format, which fields ride on init and error, nulls).

class Device {
  constructor(rng, o) {
    Object.assign(this, o);
    this.rng = rng;
    this.address = o.address === undefined ? rng.pick(ADDRESSES) : o.address;
    this.transport = o.transport || 'ws';
  }

  // A new client id for one event: 4.x and 3.x draw from 1..1e6, Python and Swift 1..10000.
  newId() { return this.rng.int(1, this.profile === 'v4' || this.profile === 'v3' ? 1000000 : 10000); }

  // One event of `type` at time `t` (ms) in session `sid` for user `userId` (null: none).
  event(type, t, { sid, userId = null, name, payload, id, noId = false, extra = {} }) {
    const withCtx = type === 'init' || type === 'error';
    const cid = noId ? undefined : (id === undefined ? this.newId() : id);
    let e;
    switch (this.profile) {
      case 'v4': {
        e = { type };
        if (name !== undefined) e.name = name;
        if (cid !== undefined) e.id = cid;
        e.date = t;
        if (payload !== undefined) e.payload = payload;
        e.sessionId = sid;
        if (userId) e.userId = userId;
        e.anonId = this.anonId;
        e.deviceId = this.id;
        if (withCtx) {
          Object.assign(e, { client: 'js', platform: this.platform, osVersion: this.osVersion, locale: this.locale });
          if (this.version) e.version = this.version;
          e.moduleVersion = '4.0.3';
        }
        break;
      }
      case 'v3': {
        e = { type, name: name === undefined ? null : name, date: iso(t), appId: this.appId };
        if (cid !== undefined) e.id = cid;
        Object.assign(e, { userId, machineId: this.id, sessionId: sid, payload: payload === undefined ? {} : payload });
        if (withCtx) {
          Object.assign(e, {
            client: 'nodejs', platform: this.platform, osVersion: this.osVersion, totalRam: this.totalRam,
            version: this.version, locale: this.locale, arch: this.arch, moduleVersion: '3.0.9',
          });
        }
        break;
      }
      case 'py': {
        // nucleus-python names custom events with the "event" key, not "name"/"type".
        e = type === 'event' && name !== undefined ? { event: name } : { type, name: name === undefined ? null : name };
        e.date = pyIso(t, this.rng.int(0, 999));
        e.appId = this.appId;
        if (cid !== undefined) e.id = cid;
        Object.assign(e, { userId, machineId: this.id, sessionId: sid, payload: payload === undefined ? null : payload });
        if (type === 'init') {
          Object.assign(e, {
            client: 'python', platform: this.platform, osVersion: this.osVersion, totalRam: this.totalRam,
            version: this.version, locale: this.locale, arch: 64, moduleVersion: '0.3.0',
          });
        }
        break;
      }
      case 'swift': {
        // Fractional milliseconds: Swift's Date().timeIntervalSince1970 * 1000.
        e = { appId: this.appId, machineId: this.id, sessionId: sid };
        if (cid !== undefined) e.id = cid;
        e.date = t + this.rng.int(1, 9999) / 10000;
        e.type = type;
        if (name !== undefined) e.name = name;
        if (userId) e.userId = userId;
        if (payload !== undefined) e.payload = payload;
        if (type === 'init') {
          Object.assign(e, {
            client: 'cocoa', platform: 'macOS', osVersion: this.osVersion, totalRam: this.totalRam,
            version: this.version, locale: this.locale, moduleVersion: '0.1.0',
          });
        }
        break;
      }
      default: throw new Error(`unknown profile ${this.profile}`);
    }
    return Object.assign(e, extra);
  }

  // The heartbeat of this SDK family (no date: the server stamps it on arrival).
  heartbeat(sid, userId) {
    switch (this.profile) {
      case 'v4': return { type: 'heartbeat', sessionId: sid, ...(userId ? { userId } : {}), anonId: this.anonId, deviceId: this.id };
      case 'v3': return { type: 'heartbeat', machineId: this.id };
      case 'py': return { event: 'nucleus:heartbeat', machineId: this.id };
      case 'swift': return { type: 'heartbeat', machineId: this.id };
      default: throw new Error(this.profile);
    }
  }
}

// Payload makers: strings, integers, floats (1.5, 1e21), booleans, null, nested objects and
// arrays, unicode and emoji, long strings.
const TRACKS = ['Song', 'Intro', 'Chanson', 'Lied 🎶', '曲', 'Ünïcødé', 'Outro'];
const LONG_TEXT = `${'Lorem ipsum dolor sit amet, ça va? 😀 '.repeat(40)}`; // > 1024 bytes: cut at ingest
function payloadFor(rng, name) {
  switch (name) {
    case 'PLAYED_TRACK': return { trackName: rng.pick(TRACKS), duration: rng.int(30, 400), rating: rng.pick([1.5, 4.5, 3, 0.25]), explicit: rng.chance(0.3) };
    case 'SAVED': return { kind: rng.pick(['doc', 'image', 'audio']), sizeKb: rng.int(1, 90000), compressed: rng.chance(0.5) };
    case 'SEARCHED': {
      const p = { query: rng.pick(['jazz', 'rock', 'müsli', '🎸 solo', 'a "quoted" \\ query']), results: rng.int(0, 50), filters: { genre: rng.pick(['rock', 'pop']), years: [1999, 2001] }, tags: ['a', 'b'], cursor: null };
      if (rng.chance(0.1)) p.query = LONG_TEXT;
      return p;
    }
    case 'ITEM_SHARED': return { via: rng.pick(['link', 'email', 'qr']), big: 1e21, ratio: 1 / 3, negative: -42, zero: 0 };
    case 'Opened Settings': return { tab: rng.pick(['audio', 'video', 'account']), firstTime: rng.chance(0.2) };
    case 'café_ordered': return { size: rng.pick(['grand', 'petit']), sugar: rng.int(0, 3), price: rng.pick([3.5, 4, 2.75]), currency: '€' };
    case '🎵 played': return { emoji: rng.pick(['🎉', '🔥', '👍🏽']), count: rng.int(1, 9) };
    case 'export:pdf': return { format: rng.pick(['A4', 'Letter']), pages: rng.int(1, 300) };
    default: return { n: rng.int(0, 9) };
  }
}
const EVENT_NAMES = ['PLAYED_TRACK', 'PLAYED_TRACK', 'PLAYED_TRACK', 'SAVED', 'SAVED', 'SEARCHED', 'ITEM_SHARED', 'Opened Settings', 'café_ordered', '🎵 played', 'export:pdf'];
const VIEW_NAMES = ['Home', 'Cart', 'Settings/Audio', 'Library'];
const ERRORS = [
  ['uncaughtException', 'TypeError: x is undefined\n    at play (player.js:10:5)\n    at main (main.js:3:1)', 'x is undefined'],
  ['uncaughtException', 'RangeError: Invalid array length\n    at grow (buffer.js:88:11)', 'Invalid array length'],
  ['unhandledRejection', 'Error: ECONNRESET\n    at TLSSocket.onread (net.js:1:1)', 'ECONNRESET'],
  ['windowError', 'ReferenceError: foo is not defined\n    at https://app.example/main.js:1:99', 'foo is not defined'],
  ['PaymentFailed', 'PaymentFailed: card declined\n    at pay (checkout.js:42:7)', 'card declined'],
];
const initProps = (rng) => ({ plan: rng.pick(['free', 'pro', 'team']), age: rng.int(18, 70), beta: rng.chance(0.4), referrer: null });
// What each SDK puts in an init's payload: 4.x and Swift the user props; 3.x {} or the props set
// before the app started; Python null.
function initPayload(dev, rng, props) {
  if (dev.profile === 'v4' || dev.profile === 'swift') return props || initProps(rng);
  if (dev.profile === 'v3') return props || (rng.chance(0.5) ? initProps(rng) : {});
  return props || null;
}

// ------------------------------------------------------------------------------------------
// The dataset: a list of steps run one after another, so that the server sees the same
// sequence every time. A step is {send: {app, device, events, transport}}, {delete: {app,
// user}}, or {heartbeats: [...]}. `notes` tells the composition.

class DatasetBuilder {
  constructor(seed) {
    this.rng = new Rng(seed);
    this.messages = []; // {app, device, events, at} before ordering
    this.late = []; // steps that run after the ordered messages (resends after the delete, heartbeats)
  }

  device(app, o) { return new Device(this.rng, { appId: app, ...o }); }

  // Builds the events of one session of `dev`: its init (unless `init` is false), then `count`
  // events of a random mix (custom events, views, errors, props), with an identify() in the
  // middle when `identifyAs` is given.
  session(dev, { start, sid, userId = null, init = true, count, identifyAs = null, props = null, noIdShare = 0 }) {
    const rng = this.rng;
    const events = [];
    let t = start;
    let user = userId;
    if (init) events.push(dev.event('init', t, { sid, userId: user, payload: initPayload(dev, rng, props) }));
    const n = count === undefined ? rng.int(2, 22) : count;
    for (let i = 0; i < n; i++) {
      t += rng.int(1, 600) * 1000 + rng.int(0, 999);
      const noId = noIdShare > 0 && rng.chance(noIdShare);
      if (identifyAs && i === Math.floor(n / 2)) {
        // 4.x identify(): a userid event, then the props, and every later event carries the userId.
        user = identifyAs;
        events.push(dev.event('userid', t, { sid, userId: user }));
        t += rng.int(5, 90);
        events.push(dev.event('props', t, { sid, userId: user, payload: { plan: 'pro', seats: rng.int(1, 5), verified: true } }));
        continue;
      }
      const r = rng.next();
      const views = dev.profile === 'v4' || dev.profile === 'swift'; // page() exists in those SDKs only
      if (r < 0.62 || (r < 0.78 && !views)) {
        const name = rng.pick(EVENT_NAMES);
        events.push(dev.event('event', t, { sid, userId: user, name, payload: payloadFor(rng, name), noId }));
      } else if (r < 0.78) {
        events.push(dev.event('nucleus:view', t, { sid, userId: user, name: rng.pick(VIEW_NAMES), payload: { count: rng.int(0, 9) }, noId }));
      } else if (r < 0.84) {
        const [name, stack, message] = rng.pick(ERRORS);
        events.push(dev.event('error', t, { sid, userId: user, name, payload: { stack, message }, noId }));
      } else if (r < 0.91 && dev.profile === 'v4') {
        events.push(dev.event('props', t, { sid, userId: user, payload: { theme: rng.pick(['dark', 'light']), volume: rng.int(0, 100) / 10 } }));
      } else if (r < 0.93 && dev.profile === 'py') {
        // nucleus-python's set_props: a userid event with the props as payload.
        events.push(dev.event('userid', t, { sid, userId: user, payload: { plan: rng.pick(['gold', 'silver']), seats: rng.int(1, 9) } }));
      } else {
        const name = rng.pick(EVENT_NAMES);
        events.push(dev.event('event', t, { sid, userId: user, name, payload: payloadFor(rng, name), noId }));
      }
    }
    return { events };
  }

  // Queues a session's events as 1..3 messages (an SDK flushes its queue every report tick).
  queue(app, dev, events, { transport } = {}) {
    const parts = events.length > 6 ? this.rng.int(1, 3) : 1;
    const size = Math.ceil(events.length / parts);
    const out = [];
    for (let i = 0; i < events.length; i += size) {
      const chunk = events.slice(i, i + size);
      const m = { app, device: dev, events: chunk, at: lastDate(chunk), transport: transport || dev.transport };
      this.messages.push(m);
      out.push(m);
    }
    return out;
  }
}

function dateMs(e) {
  if (typeof e.date === 'number') return e.date;
  if (typeof e.date === 'string') return Date.parse(/Z$|[+-]\d\d:\d\d$/.test(e.date) ? e.date : `${e.date.slice(0, 23)}Z`);
  return 0;
}
const lastDate = (events) => Math.max(...events.map(dateMs));

function buildDataset() {
  const b = new DatasetBuilder(20250217);
  const rng = b.rng;
  const BIG = 'big';
  const SMALL = 'small';
  const notes = [];
  const special = {}; // names the test and the request list refer to

  const v4 = (app, o = {}) => b.device(app, {
    profile: 'v4', id: o.id || rng.chars(15), anonId: o.anonId || rng.chars(12),
    platform: o.platform || rng.pick(['Darwin', 'Windows_NT', 'Linux']),
    osVersion: o.osVersion || rng.pick(['14.5.0', '10.0.19045', '6.8.0-45-generic', '23.1.0']),
    locale: o.locale || rng.pick(['en-US', 'fr-FR', 'de-DE', 'pt-BR', 'ja-JP', 'C']),
    version: o.version === undefined ? rng.pick(['2.1.0', '2.2.0', '2.3.0', '2.4.0-beta.1']) : o.version,
    ...o,
  });
  const v3 = (app, o = {}) => b.device(app, {
    profile: 'v3', id: o.id || sha256hex(`machine-${rng.chars(8)}`),
    platform: o.platform || rng.pick(['win32', 'darwin', 'linux']),
    osVersion: o.osVersion || rng.pick(['10.0.22631', '22.6.0', '5.15.0']),
    locale: o.locale || rng.pick(['en_US.UTF-8', 'en-GB', 'es-ES', 'C', 'POSIX']),
    version: o.version || rng.pick(['1.9.3', '2.0.0', '2.2.1']),
    totalRam: o.totalRam || rng.pick([7.7, 15.6, 31.2, 3.9, 64]),
    arch: o.arch || rng.pick(['x64', 'arm64', 'ia32']),
    ...o,
  });
  const py = (app, o = {}) => b.device(app, {
    profile: 'py', id: o.id || sha256hex(`py-${rng.chars(8)}`).slice(0, 32),
    platform: o.platform || rng.pick(['Linux', 'Windows', 'Darwin']),
    osVersion: o.osVersion || rng.pick(['6.1.0', '10', '23.0.0']),
    locale: o.locale || rng.pick(['en_US', 'de_DE', 'nl_NL']),
    version: o.version || '0.9.0', totalRam: o.totalRam || rng.pick([15.5, 8.0]),
    ...o,
  });
  const swift = (app, o = {}) => b.device(app, {
    profile: 'swift', id: o.id || `C02${rng.chars(9, 'ABCDEFGHJKLMNPQRSTUVWXYZ0123456789')}`,
    osVersion: o.osVersion || rng.pick(['14.5', '13.6.7']), locale: o.locale || rng.pick(['en-US', 'it-IT']),
    version: o.version || '1.2.0', totalRam: o.totalRam || rng.pick([16, 8, 32]),
    ...o, transport: 'ws-binary', // NucleusSwift sends every message as a binary frame
  });
  const sessionId = (dev) => (dev.profile === 'v4' || dev.profile === 'v3' ? rng.int(100000, 999999)
    : dev.profile === 'py' ? rng.int(1000, 9999) : rng.int(1, 10000));
  const randomStart = (fromDay = 0, toDay = PERIOD_DAYS - 1) => PERIOD_START + rng.int(fromDay, toDay) * DAY + rng.int(0, DAY / 1000 - 7200) * 1000 + rng.int(0, 999);

  // --- The big app: users of every SDK family, random sessions over the period. ---------------
  const makers = [v4, v4, v4, v4, v4, v3, v3, v3, py, swift];
  const FIRST = ['ana', 'ben', 'chloé', 'dmitri', 'eva', 'farid', 'greta', 'hiro', 'inès', 'jon', 'kofi', 'lena', 'mateo', 'nadia', 'omar', 'priya', 'quinn', 'rosa', 'sven', 'tomás', 'uma', 'vik', 'wen', 'xena', 'yusuf', 'zoë', 'aiko', 'bruno', 'carla', 'dev', 'elif', 'femi', 'gus', 'hana', 'ivo', 'jade', 'kai', 'lio', 'mira', 'nils'];
  for (let u = 0; u < FIRST.length; u++) {
    const make = makers[u % makers.length];
    const identified = rng.chance(0.7);
    const userId = identified ? `${FIRST[u]}${u % 3 === 0 ? '@example.com' : ''}` : null;
    const nDevices = rng.pick([1, 1, 1, 2, 2, 3]);
    for (let d = 0; d < nDevices; d++) {
      const dev = make(BIG, { transport: rng.pick(['ws', 'ws', 'http', 'ws-root']) });
      const nSessions = rng.int(1, 4);
      for (let s = 0; s < nSessions; s++) {
        const { events } = b.session(dev, {
          start: randomStart(), sid: sessionId(dev), userId,
          init: rng.chance(0.88), // some sessions never got their init to the server
          noIdShare: dev.profile === 'v3' && u % 4 === 1 ? 0.3 : 0, // a custom integration without ids
        });
        b.queue(BIG, dev, events);
      }
    }
  }
  notes.push('big app: 40 users of the 4.x, 3.x, Python and Swift SDK shapes, 1-3 devices each, 1-4 sessions per device at random times, about one session in eight without its init; some 3.x events without ids');

  // Anonymous, then identified (4.x): two anonymous sessions, then identify() in the third.
  {
    const dev = v4(BIG, { id: 'AnonToIdentDev', anonId: 'Vd3kq0PzL1xA', platform: 'Windows_NT', locale: 'fr-FR', version: '2.3.0' });
    let t = Date.UTC(2025, 1, 18, 9, 15, 0, 250);
    for (let s = 0; s < 2; s++) {
      const { events } = b.session(dev, { start: t, sid: 7311 + s, count: 6 });
      b.queue(BIG, dev, events);
      t += 2 * DAY + 3 * HOUR;
    }
    const { events } = b.session(dev, { start: t, sid: 7313, count: 10, identifyAs: 'carol' });
    b.queue(BIG, dev, events);
    // and carol's next sessions carry her userId from the init on
    const { events: e4 } = b.session(dev, { start: t + 3 * DAY, sid: 7314, userId: 'carol', count: 5 });
    b.queue(BIG, dev, e4);
    special.anonThenIdentified = { anonKey: 'Vd3kq0PzL1xA', userKey: 'carol', device: dev.id };
    notes.push('an anonymous 4.x user (anonId Vd3kq0PzL1xA) who identifies as "carol" in the middle of her third session');
  }

  // One 3.x machine shared by two users, and one of them on a second machine.
  {
    const family = v3(BIG, { id: sha256hex('family-pc'), platform: 'win32', locale: 'en_US.UTF-8', totalRam: 15.6, arch: 'x64' });
    const laptop = v4(BIG, { id: 'AliceLaptop0001', platform: 'Darwin', locale: 'en-GB' });
    let t = Date.UTC(2025, 1, 19, 18, 0, 5, 0);
    for (let s = 0; s < 4; s++) {
      const who = s % 2 === 0 ? 'alice' : 'bob';
      const { events } = b.session(family, { start: t, sid: 500000 + s, userId: who, count: 5 });
      b.queue(BIG, family, events, { transport: 'http' });
      t += DAY + 2 * HOUR + 7 * MIN;
    }
    const { events } = b.session(laptop, { start: Date.UTC(2025, 1, 21, 7, 59, 58, 0), sid: 600001, userId: 'alice', count: 8 });
    b.queue(BIG, laptop, events);
    special.sharedDevice = { device: family.id, users: ['alice', 'bob'] };
    notes.push('a 3.x machine shared by "alice" and "bob" (alternating sessions); alice also on a 4.x laptop');
  }

  // Out-of-order arrival: frank's offline queue flushes his latest session first, then the
  // older ones, and the init of one session arrives after its events.
  {
    const dev = v4(BIG, { id: 'FrankOfflineDev', platform: 'Linux', locale: 'de-DE', version: '2.2.0' });
    const sessions = [];
    let t = Date.UTC(2025, 1, 24, 22, 40, 0, 0);
    for (let s = 0; s < 3; s++) {
      sessions.push(b.session(dev, { start: t, sid: 424200 + s, userId: 'frank', count: 7 }).events);
      t += DAY + 5 * HOUR;
    }
    // Queued now, ordered later: marked so that the ordering step sends them in this order.
    const order = [sessions[2], sessions[0], sessions[1].slice(1), sessions[1].slice(0, 1)];
    special.outOfOrder = order.map((events) => ({ app: BIG, device: dev, events, transport: 'http', at: Date.UTC(2025, 2, 1, 12) }));
    notes.push('out-of-order arrival: "frank"\'s three sessions arrive newest first, and the init of the middle one after its other events');
  }

  // Python: set_props via userid, "event" alias, ISO dates without an offset, session ids reused
  // on two machines of one user.
  {
    const m1 = py(BIG, { id: 'py-machine-one', platform: 'Linux', locale: 'en_US' });
    const m2 = py(BIG, { id: 'py-machine-two', platform: 'Windows', locale: 'de_DE' });
    const a = b.session(m1, { start: Date.UTC(2025, 1, 26, 14, 59, 59, 500), sid: 4242, userId: 'py-user', count: 6 });
    const c = b.session(m2, { start: Date.UTC(2025, 2, 2, 3, 30, 0, 0), sid: 4242, userId: 'py-user', count: 6 });
    b.queue(BIG, m1, a.events);
    b.queue(BIG, m2, c.events);
    special.pythonSharedSessionId = { user: 'py-user', session: '4242', devices: [m1.id, m2.id] };
    notes.push('Python-shaped events of "py-user" on two machines that both used session id 4242');
  }

  // Boundaries: events on a day boundary, an hour boundary and 15-minute boundaries.
  {
    const dev = v4(BIG, { id: 'BoundaryDevice1', platform: 'Darwin', locale: 'ja-JP', version: '2.4.0' });
    const sid = 880088;
    const times = [
      Date.UTC(2025, 1, 28, 23, 44, 59, 999), Date.UTC(2025, 1, 28, 23, 45, 0, 0),
      Date.UTC(2025, 1, 28, 23, 59, 59, 999), Date.UTC(2025, 2, 1, 0, 0, 0, 0),
      Date.UTC(2025, 2, 1, 0, 14, 59, 999), Date.UTC(2025, 2, 1, 0, 15, 0, 0), Date.UTC(2025, 2, 1, 0, 59, 59, 999),
      Date.UTC(2025, 2, 1, 1, 0, 0, 0),
    ];
    const events = [dev.event('init', times[0] - 1000, { sid, userId: 'midnight', payload: { plan: 'pro', age: 41, beta: false } })];
    for (const t of times) events.push(dev.event('event', t, { sid, userId: 'midnight', name: 'TICK', payload: { at: iso(t) } }));
    events.push(dev.event('error', times[3] + 1, { sid, userId: 'midnight', name: 'uncaughtException', payload: { stack: ERRORS[0][1], message: ERRORS[0][2] } }));
    b.queue(BIG, dev, events);
    // A second init right after midnight on another device: starts on each side of the boundary.
    const dev2 = v3(BIG, { id: sha256hex('boundary-two'), platform: 'linux', locale: 'en-US', totalRam: 31.2, arch: 'arm64' });
    const e2 = [dev2.event('init', Date.UTC(2025, 2, 1, 0, 0, 0, 1), { sid: 990099, userId: 'midnight' }),
      dev2.event('event', Date.UTC(2025, 2, 1, 0, 7, 30, 0), { sid: 990099, userId: 'midnight', name: 'TICK', payload: { at: 'after midnight' } })];
    b.queue(BIG, dev2, e2, { transport: 'http' });
    special.boundaryTimes = times;
    notes.push('"midnight": events at 23:44:59.999, 23:45, 23:59:59.999, 00:00, 00:14:59.999, 00:15, 00:59:59.999 and 01:00 UTC across the end of February');
  }

  // Edge values: a long event name (cut to 256 characters), a string cut at 1024 bytes in the
  // middle of emoji, a payload of 70 keys (the first 64 kept), an object value over 1024 bytes
  // (dropped), a user key with a slash, spaces, a percent sign and accents, string ids and a
  // string session id, and ISO dates with an offset.
  {
    const dev = v4(BIG, { id: 'EdgeCaseDevice1', platform: 'Linux', locale: 'pt-BR', version: '2.3.0' });
    const user = 'José Ñ/ü 100%';
    const t0 = Date.UTC(2025, 2, 4, 11, 11, 11, 111);
    const wide = {};
    for (let i = 0; i < 70; i++) wide[`k${String(i).padStart(2, '0')}`] = i % 3 === 0 ? `v${i}` : i % 3 === 1 ? i : i % 2 === 0;
    const events = [
      dev.event('init', t0, { sid: '0042', userId: user, payload: { plan: 'free', 'clé': 'välue', '': 'empty key' } }),
      dev.event('event', t0 + 1000, { sid: '0042', userId: user, name: `LONG_${'N'.repeat(300)}`, payload: { ok: true } }),
      dev.event('event', t0 + 2000, { sid: '0042', userId: user, name: 'LONG_VALUE', payload: { text: `a${'😀'.repeat(300)}`, short: 'ok' } }),
      dev.event('event', t0 + 3000, { sid: '0042', userId: user, name: 'WIDE', payload: wide }),
      dev.event('event', t0 + 4000, { sid: '0042', userId: user, name: 'BIG_OBJECT', payload: { blob: { list: Array.from({ length: 400 }, (_, i) => i) }, kept: 'yes' } }),
      dev.event('event', t0 + 5000, { sid: '0042', userId: user, name: 'STRING_ID', id: 'a-17', payload: { s: '1' } }),
      { ...dev.event('event', 0, { sid: '0042', userId: user, name: 'ISO_OFFSET', payload: { tz: '+02:00' } }), date: '2025-03-04T13:11:17.111+02:00' },
      { ...dev.event('event', 0, { sid: '0042', userId: user, name: 'ISO_NO_FRACTION', payload: {} }), date: '2025-03-04T11:11:18Z' },
      dev.event('nucleus:view', t0 + 8000, { sid: '0042', userId: user, name: 'Settings/Audio', payload: { count: 0 } }),
      dev.event('event', t0 + 9000, { sid: 42, userId: user, name: 'NUMERIC_SESSION_42', payload: { note: 'session 42 is not session "0042"' } }),
    ];
    b.queue(BIG, dev, events, { transport: 'ws' });
    special.edgeUser = user;
    notes.push('edge values for "José Ñ/ü 100%": a 300-character name, a 1200-byte emoji string, 70 payload keys, a 1 KB+ object value, a string id, a string session id "0042" beside a numeric 42, ISO dates with an offset and without fraction');
  }

  // Swift-shaped device (binary frames) of an identified user.
  {
    const dev = swift(BIG, { id: 'C02XK1ZZJGH5' });
    for (let s = 0; s < 2; s++) {
      const { events } = b.session(dev, { start: Date.UTC(2025, 2, 5 + s * 2, 20, 5, 0, 0), sid: 8123 + s, userId: 'swift-user', count: 6 });
      b.queue(BIG, dev, events, { transport: 'ws-binary' });
    }
  }

  // The user who will be deleted: two devices, one of them shared with "erin".
  {
    const own = v4(BIG, { id: 'DaveOwnDevice01', platform: 'Darwin', locale: 'en-US', version: '2.2.0' });
    const shared = v3(BIG, { id: sha256hex('dave-and-erin'), platform: 'linux', locale: 'en_GB.UTF-8', totalRam: 7.7, arch: 'x64' });
    const daveMsgs = [];
    for (let s = 0; s < 3; s++) {
      const { events } = b.session(own, { start: Date.UTC(2025, 1, 20 + s * 4, 8, 30, 0, 0), sid: 313100 + s, userId: 'dave', count: 6 });
      daveMsgs.push(...b.queue(BIG, own, events));
    }
    const { events: ds } = b.session(shared, { start: Date.UTC(2025, 1, 22, 19, 0, 0, 0), sid: 313200, userId: 'dave', count: 5 });
    daveMsgs.push(...b.queue(BIG, shared, ds, { transport: 'http' }));
    for (let s = 0; s < 2; s++) {
      const { events } = b.session(shared, { start: Date.UTC(2025, 1, 23 + s * 3, 19, 0, 0, 0), sid: 313300 + s, userId: 'erin', count: 5 });
      b.queue(BIG, shared, events, { transport: 'http' });
    }
    // After the delete: dave's SDKs resend part of what they had queued (same ids), over
    // both transports. These must stay gone.
    b.late.push({ delete: { app: BIG, user: 'dave' } });
    const resend = [daveMsgs[0], daveMsgs[daveMsgs.length - 1]];
    for (const m of resend) b.late.push({ send: { ...m, transport: m.transport === 'http' ? 'http' : 'ws' } });
    special.deleted = { app: BIG, user: 'dave', devices: [own.id, shared.id], resend: resend.map((m) => ({ data: m.events })) };
    notes.push('"dave" (two devices, one shared with "erin") is deleted, then part of his events is resent with the same ids');
  }

  // Invalid events inside good messages: acked and dropped (nothing of them is stored).
  {
    const dev = v4(BIG, { id: 'InvalidMixDev01', platform: 'Linux', locale: 'en-US' });
    const t = Date.UTC(2025, 2, 6, 10, 0, 0, 0);
    const good = b.session(dev, { start: t, sid: 777001, userId: 'grace', count: 3 }).events;
    const bad = [
      { type: 'event', name: 'NO_DEVICE', id: 91, date: t + 10, sessionId: 777001 },
      { type: 'event', name: 'NO_SESSION', id: 92, date: t + 20, deviceId: dev.id },
      { type: 'event', id: 93, date: t + 30, sessionId: 777001, deviceId: dev.id },
      { type: 'event', name: 'PAYLOAD_STRING', id: 94, date: t + 40, sessionId: 777001, deviceId: dev.id, payload: 'nope' },
      'not an object',
    ];
    for (const e of bad) if (typeof e === 'object') INVALID.add(e);
    b.messages.push({ app: BIG, device: dev, events: [good[0], bad[0], good[1], bad[1], bad[2], bad[3], bad[4], good[2], good[3]], at: t + 50, transport: 'http' });
    notes.push('a message mixing valid events of "grace" with invalid ones (no device, no session, no name, a string payload, a non-object)');
  }

  // --- The small app: a handful of users, the heartbeats, and a device id shared with the big app.
  const smallDevices = {};
  {
    const hbUser = v4(SMALL, { id: 'NotesMacBook001', anonId: 'hbAnon000001', platform: 'Darwin', locale: 'en-US', version: '0.9.1' });
    const a = b.session(hbUser, { start: Date.UTC(2025, 2, 3, 8, 0, 0, 0), sid: 11, userId: 'nora', count: 4 });
    const c = b.session(hbUser, { start: Date.UTC(2025, 2, 7, 8, 0, 0, 0), sid: 12, userId: 'nora', count: 4 });
    b.queue(SMALL, hbUser, a.events);
    b.queue(SMALL, hbUser, c.events);
    smallDevices.nora = hbUser;
    const oldMachine = v3(SMALL, { id: sha256hex('notes-old-pc'), platform: 'win32', locale: 'C', totalRam: 3.9, arch: 'ia32' });
    const o = b.session(oldMachine, { start: Date.UTC(2025, 2, 1, 23, 30, 0, 0), sid: 21, count: 3 });
    b.queue(SMALL, oldMachine, o.events, { transport: 'http' });
    smallDevices.oldMachine = oldMachine;
    const pyBox = py(SMALL, { id: 'notes-py-box', platform: 'Linux', locale: 'nl_NL' });
    const p = b.session(pyBox, { start: Date.UTC(2025, 2, 2, 6, 0, 0, 0), sid: 31, userId: 'pieter', count: 4 });
    b.queue(SMALL, pyBox, p.events);
    smallDevices.pyBox = pyBox;
    for (let u = 0; u < 6; u++) {
      const dev = (u % 2 ? v3 : v4)(SMALL, {});
      for (let k = 0; k < 2; k++) {
        const { events } = b.session(dev, { start: randomStart(4, 18), sid: sessionId(dev), userId: u === 3 ? null : `writer${u}`, count: rng.int(3, 20) });
        b.queue(SMALL, dev, events);
      }
    }
    // The same device, session and client ids as an event of the big app: stored in each app.
    const twin = v4(SMALL, { id: 'AliceLaptop0001', anonId: 'twinAnon0001', platform: 'Darwin', locale: 'en-GB' });
    const tw = b.session(twin, { start: Date.UTC(2025, 1, 21, 7, 59, 58, 0), sid: 600001, userId: 'alice', count: 3 });
    b.queue(SMALL, twin, tw.events, { transport: 'ws' });
    notes.push('small app: "nora" (4.x, heartbeats), a 3.x machine without a user, "pieter" (Python), six writers (one anonymous), and "alice" with the same device and session ids as in the big app');

    // Heartbeats, after everything else: 4.x with sessionId (an older session of nora, not her
    // latest), 3.x and Python without one (their device's most recent session), one for a
    // session that does not exist and one for an unknown device (both change nothing).
    b.late.push({ heartbeats: { app: SMALL, messages: [
      [hbUser.heartbeat(11, 'nora')],
      [oldMachine.heartbeat()],
      [pyBox.heartbeat()],
      [hbUser.heartbeat(99, 'nora')],
      [{ type: 'heartbeat', deviceId: 'never-seen-device', sessionId: 5 }],
    ] } });
    notes.push('heartbeats (small app): 4.x with a sessionId, 3.x and Python without one; one for an unknown session and one for an unknown device');
  }
  // A heartbeat in the big app too, in a message with an event: frank's 4.x heartbeat names his
  // first session.
  b.late.push({ heartbeats: { app: BIG, messages: [[{ type: 'heartbeat', sessionId: 424200, userId: 'frank', anonId: 'x', deviceId: 'FrankOfflineDev' }]] } });

  // --- Arrival order: by the date of each message's last event (what a live SDK does), then the
  // out-of-order flush, then resends: about one message in ten comes again a few messages later
  // (an SDK that did not get its ack in time), and one resend repeats half a message with new
  // events added.
  const ordered = b.messages.map((m, i) => ({ ...m, seq: i })).sort((x, y) => x.at - y.at || x.seq - y.seq);
  const steps = [];
  const pendingResends = [];
  for (let i = 0; i < ordered.length; i++) {
    const m = ordered[i];
    steps.push({ send: m });
    if (i === Math.floor(ordered.length / 2)) for (const o of special.outOfOrder) steps.push({ send: o });
    if (rng.chance(0.1)) pendingResends.push({ due: i + rng.int(1, 12), m });
    for (let k = pendingResends.length - 1; k >= 0; k--) {
      if (pendingResends[k].due <= i) { steps.push({ send: { ...pendingResends[k].m, resend: true } }); pendingResends.splice(k, 1); }
    }
  }
  for (const p of pendingResends) steps.push({ send: { ...p.m, resend: true } });
  // The same event twice inside one message, and a resend of half a message plus new events.
  {
    const m = ordered.find((x) => x.app === BIG && x.events.length >= 4 && x.device.profile === 'v4');
    steps.push({ send: { ...m, events: [...m.events.slice(0, 2), m.events[0]], resend: true } });
    const dev = m.device;
    const sid = m.events[0].sessionId;
    const extra = [dev.event('event', m.at + 1000, { sid, userId: m.events[0].userId || null, name: 'AFTER_RESEND', payload: { n: 1 } })];
    steps.push({ send: { ...m, events: [...m.events.slice(Math.floor(m.events.length / 2)), ...extra], resend: true } });
  }
  // An id-less message sent twice (an integration without ids): stored twice.
  {
    const dev = v3(BIG, { id: sha256hex('no-id-integration'), platform: 'linux', locale: 'en-US', totalRam: 15.6, arch: 'x64' });
    const t = Date.UTC(2025, 2, 8, 16, 20, 0, 0);
    const events = [dev.event('init', t, { sid: 123123, userId: 'ida', noId: true }), dev.event('event', t + 500, { sid: 123123, userId: 'ida', name: 'SAVED', payload: { kind: 'doc' }, noId: true })];
    steps.push({ send: { app: BIG, device: dev, events, transport: 'http', at: t } });
    steps.push({ send: { app: BIG, device: dev, events, transport: 'http', at: t, resend: true } });
    notes.push('"ida": an init and an event without ids, sent twice (so stored twice)');
  }
  steps.push(...b.late);

  // Messages a reader of the folder can send again: the first one of each SDK shape in the big
  // app (all events with ids, none of the deleted user). Resending them must store nothing.
  special.resendStored = [];
  for (const profile of ['v4', 'v3', 'py', 'swift']) {
    const m = steps.map((x) => x.send).find((x) => x && x.app === BIG && x.device.profile === profile
      && x.events.every((e) => e && typeof e === 'object' && e.id !== undefined && e.userId !== 'dave' && !INVALID.has(e)));
    special.resendStored.push({ app: BIG, transport: m.transport, message: { data: m.events } });
  }
  return { steps, notes, special };
}

// ------------------------------------------------------------------------------------------
// Requests: what is recorded. Paths are relative to /api/v1/apps/:appId.

const s = (ms) => Math.floor(ms / 1000);
const OFFSETS = [0, 60, 330, -300, 840, -720, 7];

function rangeList(special) {
  const day = (y, m, d) => [s(Date.UTC(y, m, d)), s(Date.UTC(y, m, d + 1)) - 1];
  const r = {
    whole: [s(PERIOD_START - 2 * DAY), s(PERIOD_END + 2 * DAY)],
    'day 2025-02-20': day(2025, 1, 20),
    'day 2025-02-28': day(2025, 1, 28),
    'day 2025-03-01': day(2025, 2, 1),
    'mid-bucket 02-24 10:07:30 .. 02-27 18:52:11': [s(Date.UTC(2025, 1, 24, 10, 7, 30)), s(Date.UTC(2025, 1, 27, 18, 52, 11))],
    'mid-hour 03-03 09:30 .. 14:29:59': [s(Date.UTC(2025, 2, 3, 9, 30)), s(Date.UTC(2025, 2, 3, 14, 29, 59))],
    'across midnight 02-28 23:52:30 .. 03-01 00:22:30': [s(Date.UTC(2025, 1, 28, 23, 52, 30)), s(Date.UTC(2025, 2, 1, 0, 22, 30))],
    'head to 02-21 06:00': [s(PERIOD_START - 2 * DAY), s(Date.UTC(2025, 1, 21, 6))],
    'tail from 03-06 17:17:17': [s(Date.UTC(2025, 2, 6, 17, 17, 17)), s(PERIOD_END + 2 * DAY)],
    'empty 2024-06': [s(Date.UTC(2024, 5, 1)), s(Date.UTC(2024, 6, 1)) - 1],
  };
  // One-second ranges at event times: the last millisecond of February, midnight, a
  // 15-minute boundary, frank's first init and an event dated without milliseconds.
  for (const t of [special.boundaryTimes[2], special.boundaryTimes[3], special.boundaryTimes[5], Date.UTC(2025, 1, 24, 22, 40), Date.UTC(2025, 2, 4, 11, 11, 18)]) {
    r[`one second at ${iso(t)}`] = [s(t), s(t)];
  }
  return r;
}

// The attribute pairs asked for, per app.
const ATTRS = {
  big: [['init', 'plan'], ['init', 'age'], ['init', 'beta'], ['init', 'referrer'], ['PLAYED_TRACK', 'trackName'], ['PLAYED_TRACK', 'duration'],
    ['PLAYED_TRACK', 'rating'], ['PLAYED_TRACK', 'explicit'], ['SEARCHED', 'query'], ['SEARCHED', 'filters'], ['ITEM_SHARED', 'big'],
    ['ITEM_SHARED', 'ratio'], ['café_ordered', 'currency'], ['🎵 played', 'emoji'], ['export:pdf', 'pages'], ['WIDE', 'k63'], ['WIDE', 'k66'],
    ['LONG_VALUE', 'text'], ['Cart', 'count'], ['NO_SUCH_EVENT', 'x'], ['TICK', 'at']],
  small: [['init', 'plan'], ['PLAYED_TRACK', 'trackName'], ['SAVED', 'kind'], ['SEARCHED', 'results']],
};

const q = (o) => Object.entries(o).map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');
const enc = encodeURIComponent;

// The requests whose answers do not depend on the users present (the users' ones are added
// once the users list is known).
function staticRequests(appKey, special) {
  const out = [];
  const add = (path, extra = {}) => out.push({ app: appKey, method: 'GET', path, ...extra });
  const ranges = rangeList(special);
  add('/analytics/quickglance');
  for (const [label, [start, end]] of Object.entries(ranges)) {
    const offsets = label === 'whole' ? OFFSETS
      : /^(mid|day 2025-02-28|across)/.test(label) ? OFFSETS
        : label.startsWith('one second') ? [0, 330] : [0];
    for (const utcOffset of offsets) {
      const qs = q(utcOffset === 0 && label !== 'whole' ? { start, end } : { start, end, utcOffset });
      for (const ep of ['', '/events', '/errors']) add(`/analytics${ep}?${qs}`, { label });
      if (utcOffset === 0 || label === 'whole') add(`/analytics/eventsprops?${qs}`, { label });
    }
  }
  const [ws, we] = ranges.whole;
  const [ms, me] = ranges['mid-bucket 02-24 10:07:30 .. 02-27 18:52:11'];
  const [ds, de] = ranges['day 2025-02-28'];
  for (const [event, attr] of ATTRS[appKey]) {
    const base = `/analytics/events/${enc(event)}/${enc(attr)}`;
    add(`${base}?${q({ start: ws, end: we })}`);
    add(`${base}?${q({ start: ws, end: we, utcOffset: 330 })}`);
    add(`${base}?${q({ start: ds, end: de })}`);
    add(`${base}?${q({ start: ms, end: me, utcOffset: -300 })}`);
  }
  // Other ways to authenticate and pass parameters: the same answers.
  add(`/analytics?${q({ start: ws, end: we })}`, { auth: 'bearer' });
  out.push({ app: appKey, method: 'POST', path: '/analytics/errors', auth: 'json-body', params: { start: ws, end: we, utcOffset: -300 } });
  out.push({ app: appKey, method: 'POST', path: '/analytics/events', auth: 'form-body', params: { start: String(ms), end: String(me), utcOffset: '840' } });
  if (appKey === 'big') add(`/analytics/eventsprops?${q({ start: ws, end: we })}`, { token: 'second' });
  for (const lq of ['', '?page=1&limit=1000', '?limit=1', '?page=2&limit=5', '?page=3&limit=7', '?limit=10', '?page=1000', '?page=2&limit=1000']) add(`/users${lq}`);
  add('/live/events');
  add('/live/events?limit=5');
  add('/live/users/count');
  add('/live/users');
  return out;
}

// User details for every user of the list, session events for a chosen set of sessions, and
// the 404s.
function userRequests(appKey, users, details, special) {
  const out = [];
  const add = (path) => out.push({ app: appKey, method: 'GET', path });
  for (const u of users) add(`/users/${enc(u.userId)}`);
  add('/users/no-such-user');
  const chosen = new Set(appKey === 'small' ? users.map((u) => u.userId)
    : ['carol', 'Vd3kq0PzL1xA', 'alice', 'bob', 'erin', 'frank', 'py-user', 'swift-user', 'midnight', special.edgeUser, 'grace', 'ida']);
  if (appKey === 'big') users.forEach((u, i) => { if (i % 5 === 0) chosen.add(u.userId); });
  for (const u of users) {
    if (!chosen.has(u.userId)) continue;
    const d = details.get(u.userId);
    // Every session id once without ?device=; with it, each device of an id that several
    // devices used, and the user's latest session.
    const devicesOf = new Map();
    for (const sess of d.sessions) devicesOf.set(sess.session, [...(devicesOf.get(sess.session) || []), sess.device]);
    for (const [sid, devices] of devicesOf) {
      add(`/users/${enc(u.userId)}/session/${enc(sid)}`);
      const withDevice = devices.length > 1 ? devices : sid === d.sessions[0].session ? devices : [];
      for (const dev of withDevice) add(`/users/${enc(u.userId)}/session/${enc(sid)}?device=${enc(dev)}`);
    }
    const first = d.sessions[0];
    if (first) add(`/users/${enc(u.userId)}/session/${enc(first.session)}?device=not-this-device`);
  }
  if (appKey === special.deleted.app) {
    add(`/users/${enc(special.deleted.user)}`);
    add(`/users/${enc(special.deleted.user)}/session/313100`);
    add(`/users/${enc(special.deleted.user)}/session/313100?device=${enc(special.deleted.devices[0])}`);
  }
  return out;
}

// ------------------------------------------------------------------------------------------
// Running it against a server

function httpParams(req, tokens) {
  const token = tokens[req.token || 'primary'];
  const headers = {};
  let body;
  switch (req.auth || 'header') {
    case 'header': headers.Authorization = token; break;
    case 'bearer': headers.Authorization = `Bearer ${token}`; break;
    case 'json-body': body = JSON.stringify({ token, ...req.params }); headers['Content-Type'] = 'application/json'; break;
    case 'form-body': body = q({ token, ...req.params }); headers['Content-Type'] = 'application/x-www-form-urlencoded'; break;
    default: throw new Error(`unknown auth ${req.auth}`);
  }
  return { headers, body };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.compare) return compare(...args.compare);
  if (!args.bin || !args.out) usage('--bin and --out are required');
  // The harness reads the binary from NUCLEON_BIN when it is loaded.
  process.env.NUCLEON_BIN = path.resolve(args.bin);
  const { Server, cli, createApp, httpRequest, sleep } = require(path.join(NODE_TESTS, 'lib', 'server.js'));
  const WebSocket = require(require.resolve('ws', { paths: [NODE_TESTS] }));

  if (!fs.existsSync('/usr/share/tor/geoip')) {
    throw new Error('tor-geoipdb is not installed (scripts/install-deps installs it): the fixture needs countries');
  }
  const out = path.resolve(args.out);
  const dataDir = path.join(out, 'data');
  if (fs.existsSync(dataDir)) throw new Error(`${dataDir} exists: give a new --out folder`);
  fs.mkdirSync(dataDir, { recursive: true });

  const dataset = buildDataset();

  // Apps and tokens first (the server reads the catalog when it starts): a second token for
  // the big app, and a third one that is revoked.
  const big = createApp(dataDir, 'Acme Player');
  const small = createApp(dataDir, 'Tiny Notes');
  const second = JSON.parse(cli(dataDir, ['token', 'create', big.appId]).trim());
  const revoked = JSON.parse(cli(dataDir, ['token', 'create', big.appId]).trim());
  const rv = JSON.parse(cli(dataDir, ['token', 'revoke', revoked.token.slice(0, 12)]).trim());
  if (rv.revoked !== 1) throw new Error(`token revoke: ${JSON.stringify(rv)}`);
  const apps = {
    big: { appId: big.appId, name: 'Acme Player', tokens: { primary: big.token, second: second.token, revoked: revoked.token } },
    small: { appId: small.appId, name: 'Tiny Notes', tokens: { primary: small.token } },
  };
  const appIdOf = (k) => apps[k].appId;

  // No rate limits (the fixture is sent as fast as acks come back); a trusted loopback proxy so
  // that X-Forwarded-For / X-Real-IP give the events countries.
  const serverArgs = ['--api-rate', '0', '--track-rate', '0', '--trust-proxy', '127.0.0.0/8,::1'];
  const writtenAt = new Date().toISOString();
  let server = new Server({ dataDir, args: serverArgs });
  await server.start();

  // --- Send the dataset, one message at a time, each acked before the next. ------------------
  const stats = { messages: { http: 0, ws: 0, 'ws-root': 0, 'ws-binary': 0 }, resentMessages: 0, eventsSent: 0, eventsWithoutId: 0, invalid: 0, heartbeats: 0, deletes: 0, sentByType: {} };
  const sockets = new Map();
  async function socketFor(appKey, device, transport) {
    const key = `${appKey}/${device ? device.id : '-'}/${transport}`;
    let ws = sockets.get(key);
    if (ws && ws.readyState === WebSocket.OPEN) return ws;
    const url = transport === 'ws-root' ? `${server.endpoint}/${appIdOf(appKey)}/` : `${server.endpoint}/app/${appIdOf(appKey)}/track`;
    const headers = device && device.address ? { 'X-Real-IP': device.address } : {};
    ws = await new Promise((resolve, reject) => {
      const w = new WebSocket(url, { headers, handshakeTimeout: 5000 });
      w.once('open', () => resolve(w));
      w.once('error', reject);
    });
    ws.on('error', () => {});
    sockets.set(key, ws);
    return ws;
  }
  function ackOf(ws) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no ack within 15 s')), 15000);
      ws.once('message', (d) => { clearTimeout(timer); resolve(JSON.parse(d.toString('utf8'))); });
    });
  }
  async function closeSockets() {
    for (const ws of sockets.values()) ws.close();
    for (const ws of sockets.values()) {
      if (ws.readyState !== WebSocket.CLOSED) await Promise.race([new Promise((r) => ws.once('close', r)), sleep(3000)]);
    }
    sockets.clear();
  }
  async function send(appKey, device, events, transport) {
    const body = JSON.stringify({ data: events });
    const wantIds = events.filter((e) => e && typeof e === 'object' && !Array.isArray(e) && e.id !== undefined).map((e) => JSON.stringify(e.id));
    let ack;
    if (transport === 'http') {
      const headers = { 'Content-Type': 'application/json' };
      if (device && device.address) headers['X-Forwarded-For'] = device.address;
      const r = await httpRequest(server.port, 'POST', `/app/${appIdOf(appKey)}/track`, { body, headers });
      if (r.status !== 200) throw new Error(`tracking POST answered ${r.status}: ${r.text}`);
      ack = r.json;
    } else {
      const ws = await socketFor(appKey, device, transport);
      const got = ackOf(ws);
      ws.send(transport === 'ws-binary' ? Buffer.from(body, 'utf8') : body, { binary: transport === 'ws-binary' });
      ack = await got;
    }
    const gotIds = (ack.reportedIds || []).map((x) => JSON.stringify(x));
    if (JSON.stringify([...gotIds].sort()) !== JSON.stringify([...wantIds].sort())) {
      throw new Error(`ack ${JSON.stringify(ack)} does not list the ids sent (${wantIds.join(', ')})`);
    }
    stats.messages[transport]++;
  }

  for (const step of dataset.steps) {
    if (step.send) {
      const m = step.send;
      await send(m.app, m.device, m.events, m.transport);
      if (m.resend) stats.resentMessages++;
      for (const e of m.events) {
        stats.eventsSent++;
        if (!e || typeof e !== 'object' || INVALID.has(e)) { stats.invalid++; continue; }
        if (e.id === undefined) stats.eventsWithoutId++;
        const type = e.type || (e.event && e.event !== 'nucleus:heartbeat' ? 'event' : e.event);
        stats.sentByType[type] = (stats.sentByType[type] || 0) + 1;
      }
    } else if (step.delete) {
      await closeSockets(); // the deleted user's sockets are gone before the delete
      const { app, user } = step.delete;
      const r = await httpRequest(server.port, 'DELETE', `/api/v1/apps/${appIdOf(app)}/users/${enc(user)}`, { headers: { Authorization: apps[app].tokens.primary } });
      if (r.status !== 204) throw new Error(`DELETE ${user}: ${r.status} ${r.text}`);
      stats.deletes++;
    } else if (step.heartbeats) {
      for (const msg of step.heartbeats.messages) {
        await send(step.heartbeats.app, null, msg, 'ws');
        stats.heartbeats += msg.length;
        await sleep(20); // distinct receive times, so that the heartbeats' order is kept
      }
    }
  }
  await closeSockets();
  await sleep(300); // the server forgets closed sockets right after the close handshake

  // --- Requests recorded on the loading server (compared below with the restarted one). ------
  async function runAll(requests) {
    const answers = [];
    for (const req of requests) {
      const app = apps[req.app];
      const { headers, body } = httpParams(req, app.tokens);
      const r = await httpRequest(server.port, req.method, `/api/v1/apps/${app.appId}${req.path}`, { headers, body, timeout: 30000 });
      if (r.json === undefined) throw new Error(`${req.method} ${req.path}: not JSON: ${r.status} ${r.text}`);
      answers.push({ status: r.status, body: r.json });
    }
    return answers;
  }
  async function buildRequests() {
    const all = [];
    for (const appKey of ['big', 'small']) {
      all.push(...staticRequests(appKey, dataset.special));
      const app = apps[appKey];
      const list = await httpRequest(server.port, 'GET', `/api/v1/apps/${app.appId}/users?limit=1000`, { headers: { Authorization: app.tokens.primary } });
      if (list.status !== 200 || list.json.total > 1000) throw new Error(`users list: ${list.status} ${list.text.slice(0, 200)}`);
      const details = new Map();
      for (const u of list.json.data) {
        const r = await httpRequest(server.port, 'GET', `/api/v1/apps/${app.appId}/users/${enc(u.userId)}`, { headers: { Authorization: app.tokens.primary } });
        if (r.status !== 200) throw new Error(`user ${u.userId}: ${r.status} ${r.text}`);
        details.set(u.userId, r.json);
      }
      all.push(...userRequests(appKey, list.json.data, details, dataset.special));
    }
    return all;
  }
  const requests = await buildRequests();
  const beforeRestart = await runAll(requests);
  await server.stop();

  // --- Restart on the folder and record. ------------------------------------------------------
  server = new Server({ dataDir, args: serverArgs });
  await server.start();
  const answers = await runAll(requests);
  const exportsText = {};
  for (const k of ['big', 'small']) exportsText[k] = cli(dataDir, ['export', apps[k].appId], { timeout: 120000 });
  const storeStats = {};
  for (const k of ['big', 'small']) storeStats[k] = JSON.parse(cli(dataDir, ['stats', apps[k].appId]).trim());
  const code = await server.stop();
  if (code.code !== 0) throw new Error(`the server did not stop cleanly: ${JSON.stringify(code)}`);

  // What the release answered differently before and after its own restart (quick glance and
  // live are about "now" and may legitimately move): printed, for whoever regenerates.
  const restartDiffs = [];
  requests.forEach((req, i) => {
    if (JSON.stringify(beforeRestart[i]) !== JSON.stringify(answers[i])) restartDiffs.push(`${req.app} ${req.method} ${req.path}`);
  });
  if (restartDiffs.length) {
    process.stderr.write(`make_fixture: ${restartDiffs.length} answer(s) changed across the release's own restart:\n  ${restartDiffs.slice(0, 20).join('\n  ')}\n`);
  }

  // --- The folder: events.db and catalog.db after a clean stop, no write-ahead log left. ------
  const sqlite = (db, sql) => {
    const r = spawnSync('sqlite3', [db, sql], { encoding: 'utf8', timeout: 60000 });
    if (r.status !== 0) throw new Error(`sqlite3 ${db} ${sql}: ${r.stderr}`);
    return r.stdout.trim();
  };
  const names = fs.readdirSync(dataDir).sort();
  for (const db of ['events.db', 'catalog.db']) {
    if (!names.includes(db)) throw new Error(`no ${db} in ${dataDir}: ${names.join(', ')}`);
    const wal = path.join(dataDir, `${db}-wal`);
    if (fs.existsSync(wal) && fs.statSync(wal).size > 0) {
      process.stderr.write(`make_fixture: ${db}-wal holds ${fs.statSync(wal).size} bytes after the stop; checkpointing it\n`);
      sqlite(path.join(dataDir, db), 'PRAGMA wal_checkpoint(TRUNCATE);');
    }
    for (const suffix of ['-wal', '-shm']) fs.rmSync(path.join(dataDir, `${db}${suffix}`), { force: true });
  }
  const others = fs.readdirSync(dataDir).filter((n) => n !== 'events.db' && n !== 'catalog.db');
  if (others.length) throw new Error(`unexpected files in the data folder: ${others.join(', ')}`);
  const schemaVersion = Number(sqlite(path.join(dataDir, 'events.db'), 'PRAGMA user_version'));
  const catalogVersion = Number(sqlite(path.join(dataDir, 'catalog.db'), 'PRAGMA user_version'));
  const archive = path.join(out, `v${schemaVersion}-folder.tar.gz`);
  // A reproducible archive: fixed owner and dates, sorted, gzip without a timestamp.
  const tar = spawnSync('tar', ['--create', '--file', '-', '--directory', dataDir, '--sort=name', '--owner=0', '--group=0',
    '--numeric-owner', '--mtime=2025-03-10 00:00:00Z', '--mode=u=rw,go=r', 'catalog.db', 'events.db'], { maxBuffer: 1 << 30, timeout: 60000 });
  if (tar.status !== 0) throw new Error(`tar: ${tar.stderr}`);
  fs.writeFileSync(archive, zlib.gzipSync(tar.stdout, { level: 9 }));

  // --- The dataset's composition, from what was stored. ---------------------------------------
  const stored = {};
  for (const k of ['big', 'small']) {
    const lines = exportsText[k].split('\n').filter((l) => l !== '');
    const byType = {};
    for (const l of lines) { const t = JSON.parse(l).type; byType[t] = (byType[t] || 0) + 1; }
    stored[k] = { ...storeStats[k], byType };
  }

  const exportsLines = {};
  for (const k of ['big', 'small']) {
    const text = exportsText[k];
    if (!text.endsWith('\n')) throw new Error(`export of ${k} does not end with a newline`);
    exportsLines[k] = text.slice(0, -1).split('\n');
  }
  const expected = {
    description: 'Answers of the release that wrote the data folder in the archive beside this file, recorded on that folder after a restart. See README.md.',
    schemaVersion,
    catalogSchemaVersion: catalogVersion,
    writtenAt,
    dataset: { notes: dataset.notes, sent: stats, stored },
    apps,
    deleted: { app: dataset.special.deleted.app, user: dataset.special.deleted.user, resend: dataset.special.deleted.resend },
    resendStored: dataset.special.resendStored,
    requests: requests.map((req, i) => ({ ...req, status: answers[i].status, body: answers[i].body })),
    exports: exportsLines,
  };
  const expectedFile = path.join(out, `v${schemaVersion}-expected.json`);
  fs.writeFileSync(expectedFile, formatExpected(expected));
  process.stdout.write(`${JSON.stringify({ archive, archiveBytes: fs.statSync(archive).size, expected: expectedFile, expectedBytes: fs.statSync(expectedFile).size, schemaVersion, catalogSchemaVersion: catalogVersion, requests: requests.length, sent: stats, stored }, null, 2)}\n`);
  return undefined;
}

// One request per line and one export line per line: readable diffs when regenerated.
function formatExpected(e) {
  const parts = [];
  for (const [k, v] of Object.entries(e)) {
    if (k === 'requests') {
      parts.push(`  "requests": [\n${v.map((r) => `    ${JSON.stringify(r)}`).join(',\n')}\n  ]`);
    } else if (k === 'exports') {
      const inner = Object.entries(v).map(([app, lines]) => `    ${JSON.stringify(app)}: [\n${lines.map((l) => `      ${JSON.stringify(l)}`).join(',\n')}\n    ]`);
      parts.push(`  "exports": {\n${inner.join(',\n')}\n  }`);
    } else {
      parts.push(`  ${JSON.stringify(k)}: ${JSON.stringify(v, null, 2).replace(/\n/g, '\n  ')}`);
    }
  }
  return `{\n${parts.join(',\n')}\n}\n`;
}

// ------------------------------------------------------------------------------------------
// --compare: are two runs' answers the same, once what legitimately differs is masked?

function normalise(expected) {
  const ids = new Map(); // appId -> app key
  for (const [k, a] of Object.entries(expected.apps)) ids.set(a.appId, k);
  const written = Date.parse(expected.writtenAt);
  const periodSeconds = PERIOD_DAYS * 86400;
  const walk = (v, appId, key) => {
    if (Array.isArray(v)) return v.map((x) => walk(x, appId, key));
    if (v && typeof v === 'object') {
      const o = {};
      for (const [k, x] of Object.entries(v)) {
        if ((k === '_id' && typeof v.userId === 'string' && x === userDbId(appId, v.userId))
          || (k === 'userDbId' && x === userDbId(appId, v.userId))) o[k] = '<user _id>';
        else if (key === 'avgSessionDuration' && typeof x === 'number' && x > periodSeconds) o[k] = '<a session extended by a heartbeat>';
        else o[k] = walk(x, appId, k);
      }
      return o;
    }
    if (typeof v === 'string') {
      if (ids.has(v)) return `<app ${ids.get(v)}>`;
      if (/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(v) && Date.parse(v) >= written) return '<heartbeat receive time>';
    }
    return v;
  };
  return expected.requests.map((r) => ({ ...r, body: walk(r.body, expected.apps[r.app].appId, null) }));
}

function compare(fileA, fileB) {
  const a = JSON.parse(fs.readFileSync(fileA, 'utf8'));
  const b = JSON.parse(fs.readFileSync(fileB, 'utf8'));
  const na = normalise(a);
  const nb = normalise(b);
  const problems = [];
  if (na.length !== nb.length) problems.push(`${na.length} requests in ${fileA}, ${nb.length} in ${fileB}`);
  for (let i = 0; i < Math.min(na.length, nb.length); i++) {
    const x = JSON.stringify(na[i]);
    const y = JSON.stringify(nb[i]);
    if (x !== y) problems.push(`requests[${i}] ${na[i].app} ${na[i].method} ${na[i].path}\n  A: ${x.slice(0, 600)}\n  B: ${y.slice(0, 600)}`);
  }
  for (const k of Object.keys(a.exports)) {
    if (JSON.stringify(a.exports[k]) !== JSON.stringify(b.exports[k])) problems.push(`export of ${k} differs`);
  }
  if (JSON.stringify(a.dataset) !== JSON.stringify(b.dataset)) problems.push('dataset composition differs');
  if (problems.length) {
    process.stdout.write(`${problems.length} difference(s):\n${problems.slice(0, 30).join('\n')}\n`);
    process.exitCode = 1;
  } else {
    process.stdout.write(`same answers: ${na.length} requests, ${Object.keys(a.exports).length} exports (app ids, user _ids and heartbeat times masked)\n`);
  }
}

module.exports = { httpParams }; // the test builds its requests the same way

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`make_fixture: ${err.stack || err}\n`);
    process.exit(1);
  });
}

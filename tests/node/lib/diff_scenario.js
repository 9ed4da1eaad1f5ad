// Random but realistic scenarios for the differential test (differential.test.js):
// a seed becomes a list of operations on two apps, as a real server sees them
// from a population of SDKs.
//
// What the streams hold, and why:
//   - devices of each SDK generation (4.x: deviceId, ms dates, anonId, identify;
//     3.x: machineId, ISO dates, totalRam, arch; Python: ISO dates without an
//     offset, `event` alias, userid with props, sessionless heartbeats; Swift:
//     binary frames, macOS), over WebSocket (both paths) or HTTP, with or
//     without a country (a forwarded address, when the server can look it up);
//   - sessions with and without init, a second init now and then, events, views,
//     errors (with and without a V8 frame), props and userid events, payloads of
//     every value type (numbers vs strings with the same text, booleans, null,
//     nested values, long strings, too many keys), invalid items;
//   - identities that move: anonymous users that identify in the middle of a
//     session, devices shared by two users, one user on several devices, session
//     ids reused by other devices, the same user keys in both apps;
//   - delivery as SDKs do it: messages in chunks, late offline queues (old
//     dates after newer ones), resends of already sent messages (lost acks),
//     heartbeats (with and without a session id, for unknown sessions too),
//     events without a date or dated too far ahead (their time is the receive
//     time, which the driver observes), events without an id;
//   - user deletes, repeated deletes, late resends of a deleted user's events
//     and new events from the same key afterwards;
//   - restarts: graceful, SIGKILL between operations, SIGKILL while messages
//     or a delete are in flight;
//   - checkpoints, where the driver compares every endpoint with the model.
//
// Times: most sessions are placed on calendar days counted from today's UTC
// midnight (so a replay of a seed on another day cuts days and hours the same
// way); the recent ones (quick glance windows, heartbeats) from the real now.
// Every event of an app gets its own millisecond, except now and then two items
// of one session: ties between sessions, devices or users would make answers
// depend on the order in which concurrent messages were stored, which the
// driver cannot know when a kill leaves a message in flight; ties inside one
// session exercise the tie rules of docs/semantics.md §10.
'use strict';

const DAY = 86400000;
const HOUR = 3600000;
const MIN = 60000;

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

class Rng {
  constructor(seed) { this.r = mulberry32(seed); }
  next() { return this.r(); }
  chance(p) { return this.r() < p; }
  int(lo, hi) { return lo + Math.floor(this.r() * (hi - lo + 1)); } // inclusive
  pick(list) { return list[Math.floor(this.r() * list.length)]; }
  weighted(pairs) { // [[value, weight], ...]
    const total = pairs.reduce((s, [, w]) => s + w, 0);
    let x = this.r() * total;
    for (const [v, w] of pairs) { x -= w; if (x < 0) return v; }
    return pairs[pairs.length - 1][0];
  }
  id(n, alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789') {
    let s = '';
    for (let i = 0; i < n; i++) s += alphabet[Math.floor(this.r() * alphabet.length)];
    return s;
  }
  hex(n) { return this.id(n, '0123456789abcdef'); }
  shuffle(list) {
    for (let i = list.length - 1; i > 0; i--) {
      const j = Math.floor(this.r() * (i + 1));
      [list[i], list[j]] = [list[j], list[i]];
    }
    return list;
  }
}

// User ids people really use, some awkward in URLs or in byte order.
const USER_NAMES = [
  'richard', 'sue', 'bob', 'alice', 'zoë', 'jane doe@example.com', 'c++', 'a/b', 'Ünïcödé',
  'user_42', '10', '9', 'B', 'b', 'olga', '日本語ユーザー',
];
const EVENT_NAMES = [
  'PLAYED_TRACK', 'SAVED', 'Item Played', 'a/b', 'ünï 🎵', 'CHECKOUT', 'uncaughtException', '10', '9', 'Z',
];
const VIEW_NAMES = ['Cart', 'Home', '/settings', 'Über'];
const ERROR_NAMES = ['uncaughtException', 'unhandledRejection', 'windowError', 'myCustomError'];
const LOCALES = ['en-US', 'fr-FR', 'en_US.UTF-8', 'C', 'POSIX', 'de', 'pt_BR', 'zh-Hans-CN', '', 'sv-SE', 'EN', 'en@euro', 'es_ES.utf8', '1x'];
const PLATFORMS = {
  '4x': ['Linux', 'Darwin', 'Windows_NT'],
  '3x': ['linux', 'darwin', 'win32'],
  py: ['linux', 'darwin', 'win32', 'Windows'],
  swift: ['macOS'],
  odd: ['FreeBSD', 'SunOS', 'macos', 'Windows', 'MAC', ''],
};

// A number that C++ and JavaScript would write differently (the known bug
// "number-text" of differential.test.js keeps them out when listed).
const EXPONENT_NUMBERS = [0.0001, 1e-7, 1e20, 0.00002];

class Scenario {
  constructor(seed, { nowMs, countries = [], knownBugs = new Set() }) {
    this.seed = seed;
    this.rng = new Rng(seed);
    this.nowMs = nowMs;
    this.anchor = Math.floor(nowMs / DAY) * DAY; // today's UTC midnight
    this.countries = countries; // [{ip, country}] the server can look up; [] when none
    this.knownBugs = knownBugs;
    this.usedTimes = [new Set(), new Set()]; // per app
    this.idCounter = 0;
    this.rtCounter = 0;
    this.messages = []; // {app, dev, conn, items, sortKey, heartbeat?, probe?}
    this.ops = [];
  }

  // A millisecond not used yet in this app (see the header: no ties).
  time(app, t) {
    t = Math.floor(t);
    while (this.usedTimes[app].has(t)) t += 1;
    this.usedTimes[app].add(t);
    return t;
  }

  // A session start: calendar days in the past (mostly the last two), the last
  // 48 hours (quick glance), a few minutes ago (heartbeats), or a bit ahead
  // (a fast clock, within the 24-hour rule).
  sessionStart(app) {
    const r = this.rng;
    const kind = r.weighted([['calendar', 5], ['recent', 3], ['now', 2], ['ahead', 0.4]]);
    let t;
    if (kind === 'calendar') t = this.anchor - r.int(1, 9) * DAY * (r.chance(0.5) ? 1 : 0.3) + r.int(0, DAY - 1);
    else if (kind === 'recent') t = this.nowMs - r.int(30 * MIN, 50 * HOUR);
    else if (kind === 'now') t = this.nowMs - r.int(2 * MIN, 40 * MIN);
    else t = this.nowMs + r.int(MIN, 3 * HOUR);
    return { t: this.time(app, t), recent: kind === 'now' };
  }

  nextId(dev) {
    // 4.x draws ids at random (1..1e6); Python and Swift count from 1 in every
    // session (ids are unique only within one device's queue: identity includes the
    // session); 3.x counts; a few ids are strings.
    const r = this.rng;
    this.idCounter += 1;
    if (r.chance(0.05)) return `s${this.idCounter}`;
    if (dev.sdk === 'py' || dev.sdk === 'swift') return (dev.sessionCounter = (dev.sessionCounter || 0) + 1);
    return dev.sdk === '4x' ? r.int(1, 1000000) * 1000 + (this.idCounter % 1000) : this.idCounter;
  }

  // ----------------------------------------------------------------------------------
  // Devices and users

  makeDevice(app, shared = null) {
    const r = this.rng;
    const sdk = r.weighted([['4x', 4], ['3x', 3], ['py', 1.5], ['swift', 1]]);
    const deviceId = shared || (sdk === '4x' ? r.id(15) : sdk === '3x' ? r.hex(r.chance(0.5) ? 64 : 18)
      : sdk === 'py' ? `py-${r.hex(12)}` : `C02${r.id(8, 'ABCDEFGHJKLMNPQRSTUVWXYZ0123456789')}`);
    const platform = r.chance(0.1) ? r.pick(PLATFORMS.odd) : r.pick(PLATFORMS[sdk]);
    const dev = {
      app, sdk, deviceId, platform,
      osVersion: r.pick(['6.1.0', '23.0.0', '10.0.19045', '14.5', '13.2.1', '']),
      locale: r.pick(LOCALES),
      version: sdk === '4x' ? (r.chance(0.5) ? r.pick(['2.2.0', '2.3.0']) : null) : r.pick(['1.0.0', '1.1.0', '0.9.0', '2.0.0']),
      moduleVersion: sdk === '4x' ? '4.0.3' : sdk === '3x' ? '3.0.9' : sdk === 'swift' ? '0.3.2' : null,
      totalRam: sdk === '3x' ? r.pick([15.6, 7.5, 31.9, 3.2, 16.4, 0.4]) : sdk === 'py' ? r.pick([16, '8.0', 4, 2.5]) : null,
      arch: sdk === '3x' ? 'x64' : sdk === 'py' ? 64 : null,
      anonId: sdk === '4x' ? r.id(12, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-') : null,
      userId: sdk === '4x' ? null : r.chance(0.6) ? this.userName() : null,
      conn: this.makeConn(app, sdk),
      sessionIds: new Set(),
    };
    return dev;
  }

  makeConn(app, sdk) {
    const r = this.rng;
    const transport = r.chance(0.3) ? 'http' : 'ws';
    const geo = this.countries.length && r.chance(0.7) ? r.pick(this.countries) : null;
    return {
      transport,
      socket: `s${this.rng.id(6)}`,
      wsPath: r.pick(['track', 'track', 'root', 'rootSlash']),
      binary: sdk === 'swift',
      deflate: r.chance(0.5),
      ip: geo ? geo.ip : null,
      country: geo ? geo.country : '',
    };
  }

  // A user id: mostly names, now and then a number (read as its text, §1.2) or
  // one longer than the 256-code-point cap.
  userName() {
    const r = this.rng;
    if (r.chance(0.04)) return 42;
    if (r.chance(0.02)) return `long-${'ü'.repeat(300)}`;
    return r.pick(USER_NAMES);
  }

  // The user key of an item as the server reads it (§1.2, §1.4): text, at most
  // 256 code points.
  userKeyOf(item) {
    const text = (v) => (typeof v === 'number' ? String(v) : typeof v === 'string' ? v : '');
    const key = text(item.userId) || text(item.anonId) || text(item.deviceId) || text(item.machineId);
    return Array.from(key).slice(0, 256).join('');
  }

  // ----------------------------------------------------------------------------------
  // Payloads

  number() {
    const r = this.rng;
    if (!this.knownBugs.has('number-text') && r.chance(0.03)) return r.pick(EXPONENT_NUMBERS);
    return r.weighted([[r.int(0, 300), 5], [r.int(0, 3000) / 4, 2], [-r.int(1, 50), 1], [0, 1], [1234567.5, 0.3]]);
  }

  eventPayload() {
    const r = this.rng;
    const p = {};
    const n = r.int(0, 4);
    for (let i = 0; i < n; i++) {
      const k = r.pick(['trackName', 'duration', 'ok', 'count', 'plan type', 'ü', 'kind', 'n', 'o', 'arr', 'ratio']);
      switch (k) {
        case 'trackName': p[k] = r.pick(['Song', 'Intro', 'Chanson', '', 'ünï']); break;
        case 'duration': p[k] = r.chance(0.25) ? String(r.pick([120, 95, 200])) : r.pick([120, 95, 200, 120.5]); break;
        case 'ok': p[k] = r.chance(0.25) ? r.pick(['true', 'false']) : r.chance(0.5); break;
        case 'count': p[k] = this.number(); break;
        case 'ratio': p[k] = this.number(); break;
        case 'n': p[k] = null; break;
        case 'o': p[k] = { x: r.int(0, 9), y: 'z' }; break;
        case 'arr': p[k] = [1, 'two', false]; break;
        default: p[k] = r.pick(['pro plus', 'free', 'x', '10', '9']);
      }
    }
    // Rare shapes that hit the payload caps (§1.7).
    if (r.chance(0.02)) p.long = r.chance(0.5) ? 'x'.repeat(1500) : 'é'.repeat(700) + '🎵';
    if (r.chance(0.01)) p.big = { blob: 'y'.repeat(2000) };
    if (r.chance(0.01)) for (let i = 0; i < 70; i++) p[`k${String(i).padStart(2, '0')}`] = i;
    return p;
  }

  userProps() {
    const r = this.rng;
    const p = {};
    if (r.chance(0.6)) p.plan = r.pick(['free', 'pro', 'team']);
    if (r.chance(0.4)) p.age = r.int(18, 70);
    if (r.chance(0.3)) p.beta = r.chance(0.5);
    if (r.chance(0.1)) p.seats = String(r.int(1, 9));
    if (r.chance(0.05)) p.locale = 'xx'; // a custom prop named like the session's locale
    return p;
  }

  errorPayload(name) {
    const r = this.rng;
    const message = r.pick(['boom', 'x is undefined', 'timeout']);
    const frame = r.pick(['at main (app.js:1:1)', 'at helper (util.js:5:5)', '    at play (player.js:10:5)']);
    const stack = r.chance(0.2) ? `${name}: ${message}\nsecond line\nthird` : `Error: ${message}\n    ${frame}\n    at more (x.js:${r.int(1, 9)}:1)`;
    return { stack, message };
  }

  // ----------------------------------------------------------------------------------
  // Items of one device

  // The fields every item of the device carries for the current identity.
  base(dev, sessionId) {
    const b = {};
    if (sessionId !== undefined) b.sessionId = sessionId;
    // The same session id as a number in one item and a string in the next (§1.2).
    if (dev.sdk === '4x' && /^\d+$/.test(String(sessionId)) && this.rng.chance(0.1)) {
      b.sessionId = typeof sessionId === 'number' ? String(sessionId) : Number(sessionId);
    }
    if (dev.sdk === '4x') {
      b.deviceId = dev.deviceId;
      if (dev.userId) b.userId = dev.userId;
      b.anonId = dev.anonId;
    } else {
      b.machineId = dev.deviceId;
      if (dev.userId) b.userId = dev.userId;
      if (dev.sdk === '3x') b.appId = 'ignored-app-id';
    }
    return b;
  }

  context(dev) {
    const c = { platform: dev.platform, osVersion: dev.osVersion, locale: dev.locale };
    if (dev.version) c.version = dev.version;
    if (dev.moduleVersion) c.moduleVersion = dev.moduleVersion;
    if (dev.totalRam !== null) c.totalRam = dev.totalRam;
    if (dev.arch !== null) c.arch = dev.arch;
    c.client = dev.sdk === '4x' ? 'js' : dev.sdk === '3x' ? 'nodejs' : dev.sdk === 'py' ? 'python' : 'cocoa';
    // 3.x sends nulls for fields it lacks; 4.x leaves them out.
    if (dev.sdk === '3x' && !dev.version) c.version = null;
    if (dev.sdk === 'py' && this.rng.chance(0.3)) { c.language = c.locale; delete c.locale; }
    return c;
  }

  date(dev, t) {
    const r = this.rng;
    switch (dev.sdk) {
      case '3x': return new Date(t).toISOString();
      case 'py': return new Date(t).toISOString().replace(/Z$/, '') + String(r.int(0, 999)).padStart(3, '0');
      default:
        if (r.chance(0.03)) return String(t); // digits as a string
        if (r.chance(0.03)) { // an ISO date with an offset east of UTC
          const local = new Date(t + 330 * MIN).toISOString().replace(/Z$/, '');
          return `${local}+05:30`;
        }
        return t;
    }
  }

  item(dev, sessionId, type, t, extra = {}) {
    const it = { type, ...this.base(dev, sessionId) };
    if (dev.sdk === 'py' && type !== 'init' && this.rng.chance(0.5)) {
      // Python: `event` as the alias of the type or name.
      delete it.type;
      it.event = type === 'event' ? extra.name : type;
      if (type === 'event') delete extra.name;
    }
    it.id = this.nextId(dev);
    it.date = this.date(dev, t);
    Object.assign(it, extra);
    it._t = t; // the intended time (stripped before sending)
    return it;
  }

  // One session: its items in time order, and whether it is recent (heartbeats).
  session(dev, deviceSessions) {
    const r = this.rng;
    const app = dev.app;
    let sid;
    if (r.chance(0.12) && deviceSessions.length) sid = r.pick(deviceSessions).sid; // another device's id
    else sid = dev.sdk === 'py' ? r.int(1000, 9999) : dev.sdk === 'swift' ? r.int(1, 10000) : r.int(1, 1000000);
    if (dev.sessionIds.has(String(sid))) sid = `${sid}9`;
    dev.sessionIds.add(String(sid));
    if (dev.sdk === '4x' && r.chance(0.15)) sid = String(sid); // "may arrive as a string"
    dev.sessionCounter = 0;
    const { t: start, recent } = this.sessionStart(app);
    const items = [];
    let t = start;
    const withInit = r.chance(0.88);
    if (withInit && r.chance(0.05)) {
      // An item dated before the session's init (a clock step, an early error):
      // the session still starts at its init (§3.3).
      items.push(this.item(dev, sid, 'event', this.time(app, start - r.int(1000, 30000)), { name: 'EARLY', payload: {} }));
    }
    if (withInit) {
      const extra = { ...this.context(dev), payload: dev.sdk === '4x' ? this.userProps() : r.chance(0.3) ? this.userProps() : {} };
      if (dev.sdk === '3x') extra.name = null;
      items.push(this.item(dev, sid, 'init', t, extra));
    }
    const n = r.int(0, 7);
    for (let i = 0; i < n; i++) {
      // Now and then two items of the session share a millisecond (an identify right
      // after a start): ties inside one session follow storage order (§10).
      if (items.length && !this.knownBugs.has('session-event-ties') && r.chance(0.05)) t = items[items.length - 1]._t;
      else t = this.time(app, t + r.weighted([[r.int(200, 5000), 3], [r.int(5000, 10 * MIN), 3], [r.int(10 * MIN, 50 * MIN), 1]]));
      const kind = r.weighted([['event', 12], ['view', 2], ['error', 2], ['props', 1], ['identify', 1.2], ['switch', 0.3], ['invalid', 0.6], ['init2', 0.6], ['eventInit', 0.15]]);
      if (kind === 'identify' || kind === 'switch') {
        // identify(): from now on the device's items carry the userId (4.x keeps
        // the anonId); 'switch' is another person logging in on the same device.
        if (kind === 'identify' && dev.userId) continue;
        dev.userId = this.userName();
        const extra = {};
        if (dev.sdk === 'py' || r.chance(0.3)) extra.payload = { team: r.pick(['blue', 'red']) };
        items.push(this.item(dev, sid, 'userid', t, extra));
        continue;
      }
      if (kind === 'event') {
        const name = r.chance(0.02) ? `LONG_${'x'.repeat(300)}` : r.pick(EVENT_NAMES);
        const it = this.item(dev, sid, 'event', t, { name, ...(r.chance(0.85) ? { payload: this.eventPayload() } : {}) });
        // An older client's way: the name in `type` (an unknown type is an event named by it, §1.3).
        if (r.chance(0.03) && it.type === 'event') { it.type = 'LEGACY_CLICK'; delete it.name; }
        items.push(it);
      }
      else if (kind === 'eventInit') items.push(this.item(dev, sid, 'event', t, { name: 'init', payload: { plan: 'custom' } }));
      else if (kind === 'view') items.push(this.item(dev, sid, 'nucleus:view', t, { name: r.pick(VIEW_NAMES), payload: { count: r.int(0, 5) } }));
      else if (kind === 'props') items.push(this.item(dev, sid, 'props', t, { payload: this.userProps() }));
      else if (kind === 'init2') {
        // A second init in the same session (a restart that kept the session id), often
        // with another context: the session's context is its earliest init's (§3.5).
        const ctx = this.context(dev);
        if (r.chance(0.7)) { ctx.version = '9.9.9'; ctx.osVersion = 'changed'; ctx.platform = r.pick(PLATFORMS.odd.filter(Boolean)); }
        items.push(this.item(dev, sid, 'init', t, { ...ctx, payload: {} }));
      }
      else if (kind === 'error') {
        const name = r.pick(ERROR_NAMES);
        const ctx = r.chance(0.8) ? this.context(dev) : {};
        if (!withInit && r.chance(0.5)) ctx.osVersion = `${dev.osVersion}-e`;
        items.push(this.item(dev, sid, 'error', t, { name, payload: this.errorPayload(name), ...ctx }));
      } else {
        // Invalid items are acked and dropped (§1.5): no session, no device, no name, a bad payload.
        const it = this.item(dev, sid, 'event', t, { name: 'INVALID', payload: {} });
        const how = r.pick(['session', 'device', 'name', 'payload']);
        if (how === 'session') delete it.sessionId;
        if (how === 'device') { delete it.deviceId; delete it.machineId; }
        if (how === 'name') { delete it.name; delete it.event; }
        if (how === 'payload') it.payload = 'not an object';
        it._invalid = true;
        items.push(it);
      }
    }
    // A device that has been upgraded shows a new version in later sessions.
    if (dev.version && r.chance(0.2)) dev.version = r.pick(['2.4.0', '1.2.0']);
    return { sid, start, recent, items, dev };
  }

  // ----------------------------------------------------------------------------------
  // Messages and their order of arrival

  message(dev, items, sortKey, extra = {}) {
    const m = { app: dev.app, dev, conn: dev.conn, items, sortKey, ...extra };
    this.messages.push(m);
    return m;
  }

  build() {
    const r = this.rng;
    const devicesPerApp = [r.int(8, 12), r.int(2, 4)];
    const allDevices = [];
    for (let app = 0; app < 2; app++) {
      for (let i = 0; i < devicesPerApp[app]; i++) {
        // The small app reuses a device id of the main one now and then: apps never mix.
        const shared = app === 1 && allDevices.length && r.chance(0.3) ? r.pick(allDevices.filter((d) => d.app === 0)).deviceId : null;
        allDevices.push(this.makeDevice(app, shared));
      }
    }
    const sessions = [];
    for (const dev of allDevices) {
      const n = r.weighted([[1, 3], [2, 3], [3, 2], [4, 1], [5, 0.5]]);
      for (let i = 0; i < n; i++) sessions.push(this.session(dev, sessions.filter((x) => x.dev.app === dev.app && x.dev !== dev)));
    }
    // Messages: each session's items in chunks, sent soon after their last item
    // (chronological arrival), or much later (an offline queue: late arrival).
    for (const ses of sessions) {
      const { items, dev } = ses;
      if (!items.length) continue;
      const late = r.chance(0.15) ? r.int(HOUR, 3 * DAY) : 0;
      const chunks = [];
      for (let i = 0; i < items.length;) {
        const k = r.int(1, 5);
        chunks.push(items.slice(i, i + k));
        i += k;
      }
      if (chunks.length > 1 && r.chance(0.15)) r.shuffle(chunks); // out of order within the session
      chunks.forEach((chunk, i) => {
        const last = Math.max(...chunk.map((it) => it._t));
        this.message(dev, chunk, Math.min(last, this.nowMs) + late + i);
      });
      // Heartbeats after the session's messages: for sessions happening now, and
      // rarely for an old one.
      if (ses.recent || r.chance(0.03)) {
        const hbs = r.int(1, 2);
        for (let i = 0; i < hbs; i++) this.message(dev, [this.heartbeat(dev, ses)], Math.min(ses.start + HOUR, this.nowMs) + late + 10 + i, { heartbeat: true });
      }
    }
    // Items whose time is the receive time (§1.6): no date, a date 30 h ahead,
    // an unreadable date. Each alone in its message, with a marker to find it.
    const nProbes = r.int(1, 3);
    for (let i = 0; i < nProbes; i++) {
      const ses = r.pick(sessions);
      const how = r.pick(['none', 'ahead', 'bad']);
      const type = r.weighted([['event', 4], ['error', 1], ['init', 0.5]]);
      const extra = { payload: { rt: ++this.rtCounter } };
      if (type !== 'init') extra.name = type === 'error' ? 'probeError' : 'PROBE';
      const it = this.item(ses.dev, ses.sid, type, 0, extra);
      if (it.event && type === 'event') { it.event = 'PROBE'; delete it.name; }
      if (how === 'none') delete it.date;
      else if (how === 'ahead') it.date = this.nowMs + 30 * HOUR;
      else it.date = 'yesterday';
      delete it._t;
      it._rt = this.rtCounter;
      this.message(ses.dev, [it], this.nowMs - r.int(0, 2 * DAY), { probe: true });
    }
    // Events without an id (never deduplicated, §1.9).
    for (const m of this.messages) {
      if (m.heartbeat || m.probe) continue;
      for (const it of m.items) if (r.chance(0.02)) { delete it.id; it._noId = true; }
    }
    // Heartbeats that reach nothing: an unknown device, an unknown session.
    const someDev = r.pick(allDevices);
    this.message(someDev, [{ type: 'heartbeat', deviceId: `ghost-${r.id(6)}`, userId: 'ghost' }], this.nowMs - r.int(0, DAY), { heartbeat: true });
    this.message(someDev, [{ type: 'heartbeat', sessionId: 424242, ...this.base(someDev) }], this.nowMs - r.int(0, DAY), { heartbeat: true });

    // Arrival order: by send time.
    let order = this.messages.slice().sort((a, b) => a.sortKey - b.sortKey);
    // Now and then one HTTP message carries two devices' events (a relay), or the
    // same item twice (the second is a resend within the message, §1.9).
    const merged = [];
    for (let i = 0; i < order.length; i++) {
      const m = order[i];
      const next = order[i + 1];
      if (next && !m.heartbeat && !m.probe && !next.heartbeat && !next.probe && next.app === m.app && next.dev !== m.dev && r.chance(0.04)) {
        merged.push({ ...m, conn: { ...m.conn, transport: 'http' }, items: [...m.items, ...next.items], merged: true });
        i++;
        continue;
      }
      if (!m.heartbeat && !m.probe && r.chance(0.02)) {
        const dup = m.items.find((it) => !it._noId && !it._invalid);
        if (dup) { merged.push({ ...m, items: [...m.items, dup] }); continue; }
      }
      merged.push(m);
    }
    order = merged;
    this.schedule(order);
    return this;
  }

  heartbeat(dev, ses) {
    const r = this.rng;
    if (dev.sdk === '4x') {
      const hb = { type: 'heartbeat', sessionId: ses.sid, ...this.base(dev) };
      if (r.chance(0.3)) hb.id = this.nextId(dev);
      return hb;
    }
    if (dev.sdk === 'py') return { event: 'nucleus:heartbeat', machineId: dev.deviceId };
    if (r.chance(0.3)) return { type: 'heartbeat', sessionId: ses.sid, machineId: dev.deviceId }; // browser-like
    return { type: 'heartbeat', machineId: dev.deviceId };
  }

  // Turns the ordered messages into operations, adding resends, deletes,
  // restarts and checkpoints.
  schedule(order) {
    const r = this.rng;
    const ops = [];
    const sent = []; // messages sent so far
    const keysSent = [new Set(), new Set()];
    const n = order.length;
    const at = (f) => Math.floor(n * f);
    const checkpoints = new Set([at(0.45), at(0.75)]);
    const restartAt = new Map([[at(0.5 + r.next() * 0.1), r.pick(['graceful', 'kill'])], [at(0.8 + r.next() * 0.1), r.pick(['graceful', 'kill'])]]);
    const killSendAt = at(0.3 + r.next() * 0.5);
    let killed = false;
    const killDeleteAt = r.chance(0.5) ? at(0.4 + r.next() * 0.5) : -1;
    const deleteAt = new Set([at(0.35 + r.next() * 0.2), at(0.6 + r.next() * 0.3), ...(r.chance(0.5) ? [at(0.9)] : [])]);
    const pendingResends = []; // [position, message]
    const deleted = [[], []];

    const send = (m, why) => {
      ops.push({ kind: 'send', app: m.app, conn: m.conn, items: m.items, why, heartbeat: !!m.heartbeat, probe: !!m.probe });
      sent.push(m);
      for (const it of m.items) if (!m.heartbeat && !it._invalid) keysSent[m.app].add(this.userKeyOf(it));
    };

    // `order` grows when a deleted key comes back (below): walk it to its end.
    for (let i = 0; i < order.length; i++) {
      const m = order[i];
      const killable = (x) => !x.heartbeat && !x.probe && !x.merged && !x.done && x.items.every((it) => !it._noId);
      if (i >= killSendAt && !killed && killable(m)) {
        killed = true;
        // Messages in flight when the server is killed, one per device (an SDK sends
        // its whole queue as one message); each SDK resends its own after the restart.
        // Devices differ so that no number depends on which of them was stored first.
        const group = [m];
        for (let j = i + 1; j < Math.min(order.length, i + 6) && group.length < 3; j++) {
          const x = order[j];
          if (x.app === m.app && killable(x) && group.every((g) => g.dev.deviceId !== x.dev.deviceId)) group.push(x);
        }
        ops.push({ kind: 'killSend', app: m.app, messages: group.map((x) => ({ conn: x.conn, items: x.items })), delayMs: r.int(0, 25) });
        for (const x of group) {
          sent.push(x);
          for (const it of x.items) if (!it._invalid) keysSent[x.app].add(this.userKeyOf(it));
          x.done = true;
        }
      } else if (!m.done) {
        send(m, 'first');
      }
      // Lost acks: the SDK sends the same message again later.
      if (!m.heartbeat && !m.probe && r.chance(0.12)) pendingResends.push([i + r.int(1, 30), m]);
      for (const [, x] of pendingResends.filter(([p]) => p === i)) {
        // An exact resend, or the queue grown by a newer item of the same device.
        const grown = r.chance(0.3) ? sent.filter((y) => y.dev === x.dev && y !== x && !y.heartbeat && !y.probe).slice(-1) : [];
        const items = grown.length ? [...x.items, ...grown[0].items] : x.items;
        // (An item without an id is stored again: it cannot be recognised, §1.9.)
        ops.push({ kind: 'send', app: x.app, conn: x.conn, items, why: 'resend', heartbeat: false, probe: false });
      }
      if (deleteAt.has(i) || i === killDeleteAt) {
        const app = r.chance(0.8) ? 0 : 1;
        const keys = [...keysSent[app]];
        if (keys.length) {
          const key = r.pick(keys);
          ops.push({ kind: i === killDeleteAt ? 'killDelete' : 'delete', app, userKey: key, delayMs: r.int(0, 20) });
          deleted[app].push(key);
          // Late resends of the deleted user's messages (same ids): never stored again.
          const theirs = sent.filter((y) => y.app === app && !y.heartbeat && !y.probe && y.items.some((it) => this.userKeyOf(it) === key));
          for (const y of r.shuffle(theirs.slice()).slice(0, r.int(1, 3))) pendingResends.push([i + r.int(1, 20), y]);
          // Sometimes the same key comes back with a new session (a new user).
          if (r.chance(0.4)) {
            const dev = r.pick(sent.filter((y) => y.app === app && y.items.some((it) => this.userKeyOf(it) === key))).dev;
            const ses = this.session(dev, []);
            for (const it of ses.items) {
              // The items carry exactly the deleted key as their user key.
              if (key === dev.anonId) { delete it.userId; it.anonId = key; } else if (key === dev.deviceId) { delete it.userId; delete it.anonId; } else it.userId = key;
            }
            if (ses.items.length) order.splice(Math.min(order.length, i + r.int(2, 15)), 0, { app, dev, conn: dev.conn, items: ses.items, sortKey: 0 });
          }
        }
        if (r.chance(0.3)) ops.push({ kind: 'delete', app, userKey: `nobody-${r.id(4)}` });
        if (deleted[app].length && r.chance(0.4)) ops.push({ kind: 'delete', app, userKey: r.pick(deleted[app]) });
      }
      if (restartAt.has(i)) ops.push({ kind: 'restart', how: restartAt.get(i) });
      if (checkpoints.has(i)) ops.push({ kind: 'checkpoint' });
      if (r.chance(0.02)) ops.push({ kind: 'closeSockets' });
    }
    // Remaining resends, then the final checkpoint.
    for (const [, x] of pendingResends.filter(([p]) => p >= order.length)) {
      ops.push({ kind: 'send', app: x.app, conn: x.conn, items: x.items, why: 'resend', heartbeat: false, probe: false });
    }
    ops.push({ kind: 'checkpoint' });
    this.ops = ops;
  }
}

// The item as it goes on the wire (without the generator's own fields).
function wireItem(it) {
  const out = {};
  for (const [k, v] of Object.entries(it)) if (!k.startsWith('_')) out[k] = v;
  return out;
}

function generateScenario(seed, opts) {
  return new Scenario(seed, opts).build();
}

module.exports = { generateScenario, wireItem, mulberry32, Rng, DAY, HOUR, MIN };

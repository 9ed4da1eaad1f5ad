#!/usr/bin/env node
// Query benchmark, part 1: a generated, realistic Nucleus dataset, loaded
// through the real tracking endpoint (POST /app/:appId/track).
//
//   node bench/query_dataset.js --url http://127.0.0.1:PORT --app APP_ID \
//        --events 10000000 [--users N] [--days 90] [--seed 1] \
//        [--connections 4] [--batch 10000] [--meta OUT.json] \
//        [--delete-pool 200] [--delete-max-events 1000]
//   node bench/query_dataset.js --dry-run --events N [--meta OUT.json]   # no server
//
// The dataset (deterministic for a given seed, events, users, days and --now-ms):
//   - `users` user keys (default 100,000 per 10M events, at least 1,000):
//       60 % identified (userId), 30 % anonymous on the 4.x SDK (anonId),
//       10 % anonymous on the 3.x SDK (the machineId is the user key);
//       among identified users 20 % use 2 devices and 5 % 3 or 4 (so several
//       devices per user); each device speaks 4.x (deviceId, ms dates,
//       anonId, client js) or 3.x (machineId, ISO dates, name:null on init,
//       appId, totalRam, arch, client nodejs);
//   - activity skewed across users (Pareto-like weights): each user's sessions
//     come at a steady rate over its active span (exponential, a third stay to
//     the end); a quarter of the users are there from the start, the others
//     arrive over the period (a growing app); a day/night rhythm in the user's
//     own time zone;
//   - sessions: an `init` carrying platform/osVersion/locale/version (and
//     totalRam/arch on 3.x) and user props, then events (mean ~20 per session,
//     geometric) a few seconds to minutes apart: custom events (Zipf over 50
//     names), page views, errors (~1.5 %, 8 names, a few hundred hashes), a
//     `userid` on identified devices' first session, occasional `props`;
//   - payload properties: 1-4 per event name, each Zipf over a few hundred
//     values (strings, numbers, booleans; a few numbers sent as strings);
//   - event dates over the last `days` days up to one hour before the load
//     starts; unique ids within each (device, session); a sessionId unique per
//     device (sometimes sent as a string by 4.x); a small share of events resent
//     in a later batch (duplicates, as the SDKs do);
//   - heartbeats (4.x with sessionId, 3.x with only machineId, Python-style
//     `event: nucleus:heartbeat`) for the sessions of the last hour, sent last.
// Batches go out with up to --batch events (and at most ~4.5 MB) over
// --connections keep-alive connections; 503/429/network errors are retried.
// Only the world (users, devices and sessions: about 12 bytes an event, 1.2 GB
// at 100M events) is held in memory; the events are generated batch by batch
// as the load sends them.
// Prints progress to stderr and one JSON summary line to stdout, and writes
// --meta (facts the measurement needs: users to ask about, live devices, the
// expected totals, the distribution of events per user, and --delete-pool
// users with up to --delete-max-events events that a run may delete, with
// their exact event counts and what they add to the totals).
'use strict';

const http = require('node:http');
const fs = require('node:fs');

// ---------------------------------------------------------------- utilities

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

// Zipf(s) over n ranks: sample() returns 0..n-1, rank 0 the most frequent.
function zipf(n, s, rand) {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) { sum += 1 / Math.pow(i + 1, s); cdf[i] = sum; }
  for (let i = 0; i < n; i++) cdf[i] /= sum;
  return function sample(r = rand()) {
    let lo = 0, hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < r) lo = mid + 1; else hi = mid;
    }
    return lo;
  };
}

function pick(arr, rand) { return arr[Math.floor(rand() * arr.length)]; }

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
function token(len, rand, alphabet = ALNUM) {
  let s = '';
  for (let i = 0; i < len; i++) s += alphabet[Math.floor(rand() * alphabet.length)];
  return s;
}

function geometric(mean, rand) {
  // number of failures before a success, mean `mean`
  const p = 1 / (mean + 1);
  return Math.floor(Math.log(1 - rand()) / Math.log(1 - p));
}

function exponential(mean, rand) { return -Math.log(1 - rand()) * mean; }

const HOUR = 3600e3;
const DAY = 86400e3;

// ---------------------------------------------------------------- catalogue

const EVENT_NAMES = [
  'PLAYED_TRACK', 'ITEM_SAVED', 'ITEM_OPENED', 'SEARCH', 'FILE_EXPORTED', 'FILE_IMPORTED',
  'SETTINGS_CHANGED', 'THEME_CHANGED', 'LOGIN', 'LOGOUT', 'SIGNUP', 'UPGRADE_CLICKED',
  'CHECKOUT_STARTED', 'CHECKOUT_COMPLETED', 'SHARE', 'INVITE_SENT', 'NOTIFICATION_CLICKED',
  'SYNC_STARTED', 'SYNC_FINISHED', 'TAB_OPENED', 'TAB_CLOSED', 'WINDOW_RESIZED', 'SHORTCUT_USED',
  'COMMAND_PALETTE', 'PLUGIN_INSTALLED', 'PLUGIN_REMOVED', 'UPDATE_DOWNLOADED', 'UPDATE_INSTALLED',
  'FEEDBACK_SENT', 'TUTORIAL_STEP', 'TUTORIAL_DONE', 'PROJECT_CREATED', 'PROJECT_DELETED',
  'DOCUMENT_PRINTED', 'COPY', 'PASTE', 'UNDO', 'REDO', 'ZOOM', 'FULLSCREEN', 'PLAYLIST_CREATED',
  'TRACK_LIKED', 'TRACK_SKIPPED', 'VOLUME_CHANGED', 'DOWNLOAD_STARTED', 'DOWNLOAD_FINISHED',
  'ERROR_DIALOG_SHOWN', 'HELP_OPENED', 'ACCOUNT_DELETED', 'REFERRAL_USED',
];

// Property keys: type and number of distinct values (each Zipf-distributed).
const PROP_KEYS = [
  { key: 'trackName', type: 'string', n: 400, prefix: 'Track ' },
  { key: 'source', type: 'string', n: 300, prefix: 'src-' },
  { key: 'query', type: 'string', n: 500, prefix: 'q ' },
  { key: 'format', type: 'string', n: 200, prefix: 'fmt' },
  { key: 'tab', type: 'string', n: 250, prefix: 'tab/' },
  { key: 'plugin', type: 'string', n: 350, prefix: 'plugin-' },
  { key: 'screen', type: 'string', n: 200, prefix: 'screen.' },
  { key: 'shortcut', type: 'string', n: 300, prefix: 'Ctrl+' },
  { key: 'duration', type: 'number', n: 600 },
  { key: 'count', type: 'number', n: 300, asStringShare: 0.02 },
  { key: 'sizeKb', type: 'number', n: 500 },
  { key: 'step', type: 'number', n: 200 },
  { key: 'success', type: 'boolean', n: 2 },
  { key: 'premium', type: 'boolean', n: 2 },
  { key: 'fromMenu', type: 'boolean', n: 2 },
];

const VIEWS = ['Home', 'Library', 'Settings', 'Search', 'Player', 'Cart', 'Account', 'Help', 'Editor', 'Projects'];

const ERRORS = [
  { name: 'uncaughtException', messages: 60 },
  { name: 'unhandledRejection', messages: 50 },
  { name: 'windowError', messages: 30 },
  { name: 'NetworkError', messages: 20 },
  { name: 'SyncFailed', messages: 15 },
  { name: 'RenderError', messages: 25 },
  { name: 'DiskFull', messages: 3 },
  { name: 'AuthExpired', messages: 5 },
];
const FRAMES = [];
for (let i = 0; i < 24; i++) FRAMES.push(`at ${['render', 'sync', 'load', 'save', 'fetchJson', 'onClick', 'parse', 'draw'][i % 8]} (app/${['main', 'renderer', 'store', 'net'][i % 4]}.js:${100 + i * 37}:${5 + (i % 9)})`);

const LOCALES = [ // [locale, utc offset in minutes used for the day/night rhythm]
  ['en-US', -300], ['en-GB', 0], ['de-DE', 60], ['fr-FR', 60], ['en_US.UTF-8', -360], ['es-ES', 60],
  ['pt-BR', -180], ['ja-JP', 540], ['zh-CN', 480], ['ru-RU', 180], ['it-IT', 60], ['nl-NL', 60],
  ['en-IN', 330], ['pl-PL', 60], ['ko-KR', 540], ['C', 0], ['tr-TR', 180], ['sv-SE', 60],
  ['de_DE.UTF-8', 60], ['en', -480], ['fr', 60], ['uk-UA', 120], ['cs-CZ', 60], ['hi-IN', 330],
  ['id-ID', 420], ['vi-VN', 420], ['es-MX', -360], ['en-AU', 600], ['da-DK', 60], ['fi-FI', 120],
  ['nb-NO', 60], ['he-IL', 120], ['ar-SA', 180], ['th-TH', 420], ['el-GR', 120], ['hu-HU', 60],
  ['ro-RO', 120], ['en-CA', -300], ['POSIX', 0], ['fa-IR', 210],
];

const PLATFORMS = [ // [platform as sent, share, os versions]
  ['Windows_NT', 0.48, ['10.0.19045', '10.0.22631', '10.0.22621', '10.0.26100', '6.3.9600', '6.1.7601']],
  ['Darwin', 0.28, ['23.4.0', '22.6.0', '24.1.0', '21.6.0', '23.6.0']],
  ['Linux', 0.17, ['6.8.0-45-generic', '5.15.0-122-generic', '6.18.44', '6.1.0-26-amd64', '6.10.14-arch1-1']],
  ['win32', 0.04, ['10.0.19045', '10.0.22631']],
  ['mac', 0.02, ['14.4', '13.6']],
  ['linux', 0.01, ['6.8.0']],
];
const RAMS = [7.7, 15.6, 3.8, 31.2, 7.9, 15.9, 63.7, 31.8, 1.9, 11.6];
const ARCHS = [['x64', 0.8], ['arm64', 0.18], ['ia32', 0.02]];

// ---------------------------------------------------------------- the world

function buildWorld(opt) {
  const rand = mulberry32(opt.seed);
  const nowMs = opt.nowMs;
  const lastStart = nowMs - HOUR;             // sessions start at least an hour before the load
  const firstMs = nowMs - opt.days * DAY;
  const U = opt.users;

  const versions = [];                         // [released at ms, name]
  const nVersions = 14;
  for (let i = 0; i < nVersions; i++) {
    versions.push([firstMs - 30 * DAY + (i * (opt.days + 30) * DAY) / nVersions, `${1 + Math.floor(i / 6)}.${i % 6}.${i % 3}`]);
  }

  const localeZ = zipf(LOCALES.length, 1.1, rand);
  const ramZ = zipf(RAMS.length, 0.9, rand);

  // Users
  const userKind = new Uint8Array(U);          // 0 identified, 1 anon 4.x, 2 anon 3.x
  const userWeight = new Float64Array(U);
  const userFirst = new Float64Array(U);
  const userLast = new Float64Array(U);
  const userTz = new Int16Array(U);
  const userLocale = new Uint8Array(U);
  const userKey = new Array(U);
  const userDevices = new Array(U);
  const devices = [];                          // {user, key, sdk, anonId, platform, osVersion, ram, arch, sessions}
  let wsum = 0;
  for (let u = 0; u < U; u++) {
    const r = rand();
    const kind = r < 0.6 ? 0 : r < 0.9 ? 1 : 2;
    userKind[u] = kind;
    // Pareto-like activity weight (capped so no single user dominates)
    const w = Math.min(200, Math.pow(1 - rand(), -0.75));
    userWeight[u] = w;
    wsum += w;
    // an established app: a quarter of the users were there before the period
    // (their first event in it comes within days), the others arrive
    // over the period, somewhat more of them lately
    const d = rand() < 0.25 ? Math.min(opt.days, exponential(7, rand)) : Math.pow(rand(), 0.8) * opt.days;
    userFirst[u] = Math.min(lastStart, firstMs + d * DAY);
    userLast[u] = Math.min(lastStart, userFirst[u] + exponential(45 * DAY, rand) + (rand() < 0.35 ? opt.days * DAY : 0));
    const li = localeZ();
    userLocale[u] = li;
    userTz[u] = LOCALES[li][1];
    let nd = 1;
    if (kind === 0) { const x = rand(); nd = x < 0.2 ? 2 : x < 0.25 ? 3 + (rand() < 0.3 ? 1 : 0) : 1; }
    const devs = [];
    for (let j = 0; j < nd; j++) {
      const sdk = kind === 1 ? 4 : kind === 2 ? 3 : (rand() < 0.7 ? 4 : 3);
      let pr = rand(), pi = 0;
      while (pi < PLATFORMS.length - 1 && pr > PLATFORMS[pi][1]) { pr -= PLATFORMS[pi][1]; pi++; }
      let ar = rand(), ai = 0;
      while (ai < ARCHS.length - 1 && ar > ARCHS[ai][1]) { ar -= ARCHS[ai][1]; ai++; }
      const dev = {
        user: u,
        key: sdk === 4 ? token(15, rand) : token(64, rand, '0123456789abcdef'),
        sdk,
        anonId: sdk === 4 ? token(12, rand) : null,
        platform: PLATFORMS[pi][0],
        osVersion: pick(PLATFORMS[pi][2], rand),
        ram: RAMS[ramZ()],
        arch: ARCHS[ai][0],
        sessions: 0,
        salt: Math.floor(rand() * 900000),
      };
      devs.push(devices.length);
      devices.push(dev);
    }
    userDevices[u] = devs;
    if (kind === 0) userKey[u] = `user-${u}-${token(6, rand)}`;
    else if (kind === 1) userKey[u] = devices[devs[0]].anonId;
    else userKey[u] = devices[devs[0]].key;
  }

  // Sessions: one per user at least, the rest by activity weight.
  const meanLen = opt.meanSessionEvents;
  const S = Math.max(U, Math.round(opt.events / meanLen));
  const userSessions = new Uint32Array(U);
  // A user's sessions come at a steady rate (its weight) over its active
  // span, so a late arrival does not pack a long history into a few days.
  let esum = 0;
  const eff = new Float64Array(U);
  for (let u = 0; u < U; u++) {
    eff[u] = userWeight[u] * (0.25 + Math.max(0, userLast[u] - userFirst[u]) / DAY);
    esum += eff[u];
  }
  let assigned = 0;
  for (let u = 0; u < U; u++) {
    const x = (eff[u] / esum) * (S - U);
    const n = 1 + Math.floor(x) + (rand() < x - Math.floor(x) ? 1 : 0);
    userSessions[u] = n;
    assigned += n;
  }
  const nS = assigned;
  const sStart = new Float64Array(nS);
  const sDevice = new Uint32Array(nS);
  const sIndex = new Uint32Array(nS);          // index of the session within its device
  const sLen = new Uint32Array(nS);
  const sSeed = new Uint32Array(nS);
  const sFirstOfDevice = new Uint8Array(nS);
  // day/night rhythm: weight per local hour
  const hourW = [1, 0.6, 0.4, 0.3, 0.3, 0.4, 0.8, 1.5, 2.5, 3.5, 4, 4.2, 4, 4.2, 4.3, 4.2, 4, 3.8, 3.5, 3.3, 3.2, 3, 2.4, 1.6];
  const hourZ = (() => { const c = []; let s = 0; for (const w of hourW) { s += w; c.push(s); } return (r) => { r *= s; let i = 0; while (c[i] < r) i++; return i; }; })();

  let si = 0;
  for (let u = 0; u < U; u++) {
    const n = userSessions[u];
    const devs = userDevices[u];
    const a = userFirst[u], b = Math.max(userFirst[u], userLast[u]);
    const starts = [a];
    for (let k = 1; k < n; k++) {
      let t = a;
      for (let tries = 0; tries < 4; tries++) {
        // a day in the user's span, an hour by the rhythm in the user's zone
        const day = Math.floor((a + rand() * (b - a) + userTz[u] * 60e3) / DAY);
        t = day * DAY + hourZ(rand()) * HOUR + rand() * HOUR - userTz[u] * 60e3;
        if (t >= a && t <= b) break;
        t = a + rand() * (b - a);
      }
      starts.push(t);
    }
    starts.sort((x, y) => x - y);
    // device of each session: the primary first, the others from some session on
    const devOrder = new Uint32Array(n);
    for (let k = 1; k < n; k++) devOrder[k] = devs.length === 1 || rand() < 0.65 ? 0 : 1 + Math.floor(rand() * (devs.length - 1));
    const seen = new Uint8Array(devs.length);
    for (let k = 0; k < n; k++) {
      const dv = devs[devOrder[k]];
      sStart[si] = starts[k];
      sDevice[si] = dv;
      sIndex[si] = devices[dv].sessions++;
      sFirstOfDevice[si] = seen[devOrder[k]] ? 0 : 1;
      seen[devOrder[k]] = 1;
      sLen[si] = 1 + geometric(meanLen - 1, rand);
      sSeed[si] = Math.floor(rand() * 4294967296);
      si++;
    }
  }
  // Exactly opt.events events: trim or extend random sessions.
  let total = 0;
  for (let i = 0; i < nS; i++) total += sLen[i];
  while (total > opt.events) {
    const i = Math.floor(rand() * nS);
    if (sLen[i] > 1) { const cut = Math.min(sLen[i] - 1, total - opt.events, 1 + Math.floor(rand() * 5)); sLen[i] -= cut; total -= cut; }
  }
  while (total < opt.events) {
    const i = Math.floor(rand() * nS);
    const add = Math.min(opt.events - total, 1 + Math.floor(rand() * 5));
    sLen[i] += add; total += add;
  }
  const order = new Uint32Array(nS);
  for (let i = 0; i < nS; i++) order[i] = i;
  order.sort((x, y) => sStart[x] - sStart[y]);

  return {
    opt, nowMs, lastStart, versions, userKind, userKey, userDevices, userLocale, userSessions, devices,
    nS, sStart, sDevice, sIndex, sLen, sSeed, sFirstOfDevice, order,
  };
}

// The event-name catalogue: per name, its property keys (1-4, fixed per name).
function buildCatalogue(seed) {
  const rand = mulberry32(seed ^ 0x5eed);
  const names = EVENT_NAMES.map((name) => {
    const k = 1 + Math.floor(rand() * 4);
    const keys = new Set();
    while (keys.size < k) keys.add(Math.floor(rand() * PROP_KEYS.length));
    return { name, keys: [...keys].map((i) => PROP_KEYS[i]) };
  });
  const valueZ = new Map();
  for (const p of PROP_KEYS) valueZ.set(p.key, zipf(p.n, 1.05, rand));
  return { names, valueZ };
}

// ---------------------------------------------------------------- events

class Stream {
  constructor(world, opt) {
    this.w = world;
    this.opt = opt;
    this.cat = buildCatalogue(opt.seed);
    const r = mulberry32(opt.seed ^ 0xabcdef);
    this.nameZ = zipf(EVENT_NAMES.length, 1.0, r);
    this.viewZ = zipf(VIEWS.length, 1.0, r);
    this.errZ = zipf(ERRORS.length, 1.2, r);
    this.msgZ = ERRORS.map((e) => zipf(e.messages, 1.1, r));
    this.frameZ = zipf(FRAMES.length, 1.3, r);
    this.planZ = zipf(3, 1.5, r);
    this.sourceZ = zipf(60, 1.2, r);
    this.pos = 0;                                // next session in time order
    this.pending = [];                           // events of the current session (JSON strings)
    this.recent = [];                            // sessions whose last event is within the last hour
    this.heartbeatsDone = false;
    // user index -> tally of what is sent for that user (the delete
    // candidates: a run that deletes them knows what the totals lose)
    this.tally = new Map();
    this.stats = {
      events: 0, sessions: 0, byType: {}, byName: {}, byError: {}, inits: 0, heartbeats: 0,
      resent: 0, firstEventMs: Infinity, lastEventMs: -Infinity,
    };
  }

  propValue(p, rand) {
    const i = this.cat.valueZ.get(p.key)(rand());
    if (p.type === 'string') return p.prefix + i;
    if (p.type === 'boolean') return i === 0;
    if (p.asStringShare && rand() < p.asStringShare) return String(i);
    return i;
  }

  // All events of session `s` (index in the world), as JSON strings, and its last time.
  session(s) {
    const w = this.w;
    const rand = mulberry32(w.sSeed[s]);
    const dev = w.devices[w.sDevice[s]];
    const u = dev.user;
    const kind = w.userKind[u];
    const userId = kind === 0 ? w.userKey[u] : null;
    const sessionNum = 100000 + ((dev.salt + w.sIndex[s] * 104729) % 900000);
    const sessionId = dev.sdk === 4 && (w.sSeed[s] & 31) === 0 ? String(sessionNum) : sessionNum;
    const n = w.sLen[s];
    let t = w.sStart[s];
    // version in use: the latest released, or one or two behind
    let vi = 0;
    while (vi + 1 < w.versions.length && w.versions[vi + 1][0] <= t) vi++;
    vi = Math.max(0, vi - (rand() < 0.3 ? 1 : 0) - (rand() < 0.1 ? 1 : 0));
    const version = w.versions[vi][1];
    const locale = LOCALES[w.userLocale[u]][0];
    let id = Math.floor(rand() * 1e6);
    const nextId = () => { id = (id + 1) % 1000000; return id + 1; };
    const out = [];
    const st = this.stats;
    const ut = this.tally.get(u);
    const count = (type, name) => {
      if (ut) {
        ut.events++;
        if (type === 'event') ut.byName[name] = (ut.byName[name] || 0) + 1;
        if (type === 'error') ut.byError[name] = (ut.byError[name] || 0) + 1;
        if (type === 'init') ut.inits++;
      }
      st.events++;
      st.byType[type] = (st.byType[type] || 0) + 1;
      if (type === 'event') st.byName[name] = (st.byName[name] || 0) + 1;
      if (type === 'error') st.byError[name] = (st.byError[name] || 0) + 1;
      if (type === 'init') st.inits++;
      if (t < st.firstEventMs) st.firstEventMs = t;
      if (t > st.lastEventMs) st.lastEventMs = t;
    };
    const base = (type, name) => {
      const e = { type };
      if (dev.sdk === 4) {
        if (name !== undefined) e.name = name;
        e.id = nextId();
        e.date = Math.floor(t);
        e.sessionId = sessionId;
        if (userId) e.userId = userId;
        e.anonId = dev.anonId;
        e.deviceId = dev.key;
      } else {
        e.name = name === undefined ? null : name;
        e.date = new Date(Math.floor(t)).toISOString();
        e.appId = this.opt.app;
        e.id = nextId();
        e.userId = userId;
        e.machineId = dev.key;
        e.sessionId = sessionId;
      }
      return e;
    };
    const context = (e) => {
      if (dev.sdk === 4) {
        e.client = 'js';
        e.platform = dev.platform;
        e.osVersion = dev.osVersion;
        e.locale = locale;
        e.version = version;
        e.moduleVersion = '4.0.3';
      } else {
        e.client = 'nodejs';
        e.platform = dev.platform;
        e.osVersion = dev.osVersion;
        e.totalRam = dev.ram;
        e.version = version;
        e.locale = locale;
        e.arch = dev.arch;
        e.moduleVersion = '3.0.9';
      }
      return e;
    };
    const userProps = () => {
      const p = { plan: ['free', 'pro', 'team'][this.planZ(rand())], signupSource: `campaign-${this.sourceZ(rand())}` };
      if (rand() < 0.5) p.seats = 1 + Math.floor(rand() * rand() * 300);
      if (rand() < 0.3) p.beta = rand() < 0.2;
      return p;
    };

    // 1 % of sessions lost their init (it never arrived)
    const withInit = rand() >= 0.01;
    let k = 0;
    if (withInit) {
      const e = context(base('init'));
      e.payload = userProps();
      count('init');
      out.push(JSON.stringify(e));
      k++;
    }
    if (k < n && userId && w.sFirstOfDevice[s] && dev.sdk === 4) {
      t += 200 + rand() * 800;
      const e = base('userid');
      if (rand() < 0.3) e.payload = userProps();
      count('userid');
      out.push(JSON.stringify(e));
      k++;
    }
    for (; k < n; k++) {
      t += rand() < 0.05 ? exponential(240e3, rand) : exponential(20e3, rand);
      if (t > w.nowMs - 1000) t = w.nowMs - 1000;  // long sessions end before the load
      const r = rand();
      let e;
      if (r < 0.015) {
        const ei = this.errZ(rand());
        const er = ERRORS[ei];
        const mi = this.msgZ[ei](rand());
        const frame = FRAMES[this.frameZ(rand())];
        e = context(base('error', er.name));
        e.payload = { message: `${er.name} #${mi}: ${['cannot read properties of undefined', 'timeout', 'ECONNRESET', 'invalid state', 'quota exceeded'][mi % 5]}`, stack: `Error: ${er.name} #${mi}\n    ${frame}\n    at process (node:internal/process:${mi})` };
        count('error', er.name);
      } else if (r < 0.095) {
        e = base('nucleus:view', VIEWS[this.viewZ(rand())]);
        e.payload = rand() < 0.3 ? { count: Math.floor(rand() * 20) } : {};
        count('nucleus:view');
      } else if (r < 0.098) {
        e = base('props');
        e.payload = { plan: ['free', 'pro', 'team'][this.planZ(rand())] };
        count('props');
      } else {
        const ci = this.nameZ(rand());
        const c = this.cat.names[ci];
        e = base('event', c.name);
        const payload = {};
        for (const p of c.keys) if (rand() < 0.92) payload[p.key] = this.propValue(p, rand);
        e.payload = payload;
        count('event', c.name);
      }
      out.push(JSON.stringify(e));
    }
    st.sessions++;
    if (t > this.w.nowMs - HOUR) this.recent.push(s);
    return out;
  }

  heartbeats() {
    const out = [];
    for (const s of this.recent) {
      const dev = this.w.devices[this.w.sDevice[s]];
      const u = dev.user;
      if (dev.sdk === 4) {
        const sessionNum = 100000 + ((dev.salt + this.w.sIndex[s] * 104729) % 900000);
        const hb = { type: 'heartbeat', sessionId: sessionNum, deviceId: dev.key, anonId: dev.anonId };
        if (this.w.userKind[u] === 0) hb.userId = this.w.userKey[u];
        out.push(JSON.stringify(hb));
      } else if ((this.w.sSeed[s] & 3) === 0) {
        out.push(JSON.stringify({ event: 'nucleus:heartbeat', machineId: dev.key }));  // Python style
      } else {
        out.push(JSON.stringify({ type: 'heartbeat', machineId: dev.key }));
      }
      this.stats.heartbeats++;
    }
    return out;
  }

  // Next batch: {body, events (new), resent, heartbeats} or null at the end.
  next() {
    const maxEvents = this.opt.batch;
    const maxBytes = this.opt.maxBytes;
    const items = [];
    let bytes = 20;
    let fresh = 0;
    // resends of the previous batch (SDK queues re-sent before their ack)
    if (this.prev && this.opt.dupRate > 0) {
      const rand = this.dupRand || (this.dupRand = mulberry32(this.opt.seed ^ 0xd0d0));
      const k = Math.floor(this.prev.length * this.opt.dupRate);
      for (let i = 0; i < k; i++) {
        const j = Math.floor(rand() * this.prev.length);
        items.push(this.prev[j]);
        bytes += this.prev[j].length + 1;
      }
    }
    const resent = items.length;
    const cur = [];
    while (items.length < maxEvents) {
      if (this.pending.length === 0) {
        if (this.pos >= this.w.nS) break;
        this.pending = this.session(this.w.order[this.pos++]);
        this.pendingAt = 0;
      }
      const e = this.pending[this.pendingAt];
      if (bytes + e.length + 1 > maxBytes && items.length > 0) break;
      items.push(e);
      cur.push(e);
      bytes += e.length + 1;
      fresh++;
      if (++this.pendingAt >= this.pending.length) this.pending = [];
    }
    let hb = 0;
    if (items.length === resent && !this.heartbeatsDone) {
      this.heartbeatsDone = true;
      const h = this.heartbeats();
      if (h.length > 0) {
        hb = h.length;
        items.push(...h.slice(0, maxEvents - items.length));
      }
    }
    if (fresh === 0 && hb === 0) return null;
    this.stats.resent += resent;
    this.prev = cur;
    return { body: `{"data":[${items.join(',')}]}`, events: fresh, resent, heartbeats: hb, count: items.length };
  }
}

// ---------------------------------------------------------------- facts for the measurement

// Users and devices the measurement asks about. Only the world is needed, so
// they are picked before the events are generated (the same picks as after).
function picks(world) {
  const w = world;
  const rand = mulberry32(w.opt.seed ^ 0xfac7);
  const sampleUsers = [];
  for (let i = 0; i < 200; i++) sampleUsers.push(w.userKey[Math.floor(rand() * w.opt.users)]);
  let heavy = 0;
  for (let u = 1; u < w.opt.users; u++) if (w.userSessions[u] > w.userSessions[heavy]) heavy = u;
  // devices to bring live: the latest device of random users
  const live = [];
  const used = new Set();
  while (live.length < Math.min(2000, w.devices.length) && used.size < w.devices.length) {
    const d = Math.floor(rand() * w.devices.length);
    if (used.has(d)) continue;
    used.add(d);
    const dev = w.devices[d];
    if (dev.sessions === 0) continue;  // a device its user never used
    const u = dev.user;
    live.push({
      sdk: dev.sdk, deviceId: dev.key, anonId: dev.anonId, userId: w.userKind[u] === 0 ? w.userKey[u] : null,
      userKey: w.userKey[u], platform: dev.platform, osVersion: dev.osVersion, locale: LOCALES[w.userLocale[u]][0],
      ram: dev.ram, arch: dev.arch, version: w.versions[w.versions.length - 1][1],
      user: u,
    });
  }
  return { sampleUsers, heavy, live };
}

// Events per user (the sum of its sessions' lengths: what a delete removes).
function userEventCounts(world) {
  const w = world;
  const n = new Uint32Array(w.opt.users);
  for (let s = 0; s < w.nS; s++) n[w.devices[w.sDevice[s]].user] += w.sLen[s];
  return n;
}

// Users a run may delete: --delete-pool users with 1..--delete-max-events
// events, none of them asked about by the measurement or brought live (so the
// measurement and the live traffic never touch a deleted user), spread over
// the sizes: round-robin over power-of-two classes of event counts (1, 2-3,
// 4-7, ... 512-1000), a random user within each. Their per-name tallies are
// collected while the events are generated, so checks on a folder where some
// were deleted still know the exact totals.
function deleteCandidates(world, p, counts) {
  const w = world;
  const o = w.opt;
  const exclude = new Set();
  const sampled = new Set(p.sampleUsers);
  for (let u = 0; u < o.users; u++) if (sampled.has(w.userKey[u])) exclude.add(u);
  exclude.add(p.heavy);
  for (const d of p.live) exclude.add(d.user);
  const classes = [];
  for (let u = 0; u < o.users; u++) {
    const n = counts[u];
    if (n < 1 || n > o.deleteMaxEvents || exclude.has(u)) continue;
    const c = 31 - Math.clz32(n);
    (classes[c] || (classes[c] = [])).push(u);
  }
  const rand = mulberry32(o.seed ^ 0xde1e7e);
  const pools = classes.filter(Boolean);
  const out = [];
  while (out.length < o.deletePool && pools.some((x) => x.length > 0)) {
    for (const pool of pools) {
      if (out.length >= o.deletePool || pool.length === 0) continue;
      const i = Math.floor(rand() * pool.length);
      out.push(pool[i]);
      pool[i] = pool[pool.length - 1];
      pool.pop();
    }
  }
  return out;
}

function quantilesOf(counts) {
  const s = Array.from(counts).sort((a, b) => a - b);
  const q = (x) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(x * s.length) - 1))];
  let upTo1000 = 0;
  for (const n of s) if (n <= 1000) upTo1000++;
  return { p50: q(0.5), p90: q(0.9), p99: q(0.99), max: s[s.length - 1], upTo1000 };
}

function facts(world, stream, p, candidates, counts) {
  const w = world;
  // the most frequent event and its first property (for /analytics/events/:event/:attr)
  const names = Object.entries(stream.stats.byName).sort((a, b) => b[1] - a[1]);
  const top = stream.cat.names.find((c) => c.name === names[0][0]);
  const attrEvents = [];
  for (const [name] of names.slice(0, 3)) {
    const c = stream.cat.names.find((x) => x.name === name);
    attrEvents.push({ event: name, attr: c.keys[0].key, type: c.keys[0].type });
  }
  return {
    users: w.opt.users,
    devices: w.devices.filter((d) => d.sessions > 0).length,  // devices with at least one session
    sessions: w.nS,
    sampleUsers: p.sampleUsers,
    heavyUser: { key: w.userKey[p.heavy], sessions: w.userSessions[p.heavy] },
    liveDevices: p.live.map(({ user, ...d }) => d),
    topEvent: { event: top.name, attr: top.keys[0].key },
    attrEvents,
    eventNames: EVENT_NAMES.length,
    // events per user over the whole dataset
    userEvents: quantilesOf(counts),
    // users a run may delete, in the order runs take them (see deleteCandidates);
    // `events` is exactly what the server stored for the user, and the rest
    // what the checks' totals lose when it is deleted
    deleteCandidates: candidates.map((u) => {
      const t = stream.tally.get(u);
      // the generator's own bookkeeping: a candidate's tally is what its sessions hold
      if (stream.pos >= w.nS && t.events !== counts[u]) throw new Error(`user ${w.userKey[u]}: ${t.events} events sent, ${counts[u]} counted`);
      return {
        key: w.userKey[u], events: counts[u], sessions: w.userSessions[u],
        devices: w.userDevices[u].filter((d) => w.devices[d].sessions > 0).length,
        inits: t.inits, byName: t.byName, byError: t.byError,
      };
    }),
  };
}

// ---------------------------------------------------------------- loader

function parseArgs(argv) {
  const o = {
    url: null, app: null, events: 10000000, users: 0, days: 90, seed: 1, connections: 4,
    batch: 10000, maxBytes: 4500000, meanSessionEvents: 20, dupRate: 0.005, meta: null,
    timeoutS: 7200, nowMs: 0, dryRun: false, deletePool: 200, deleteMaxEvents: 1000,
  };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    switch (a) {
      case '--url': o.url = v(); break;
      case '--app': o.app = v(); break;
      case '--events': o.events = Number(v()); break;
      case '--users': o.users = Number(v()); break;
      case '--days': o.days = Number(v()); break;
      case '--seed': o.seed = Number(v()); break;
      case '--connections': o.connections = Number(v()); break;
      case '--batch': o.batch = Number(v()); break;
      case '--max-bytes': o.maxBytes = Number(v()); break;
      case '--dup-rate': o.dupRate = Number(v()); break;
      case '--meta': o.meta = v(); break;
      case '--timeout': o.timeoutS = Number(v()); break;
      case '--now-ms': o.nowMs = Number(v()); break;
      case '--dry-run': o.dryRun = true; break;
      case '--delete-pool': o.deletePool = Number(v()); break;
      case '--delete-max-events': o.deleteMaxEvents = Number(v()); break;
      default: throw new Error(`unknown option ${a}`);
    }
  }
  if (!o.users) o.users = Math.max(1000, Math.round(o.events / 100));
  if (!o.nowMs) o.nowMs = Date.now();
  if (o.batch < 1 || o.batch > 10000) throw new Error('--batch must be 1..10000');
  if (!o.dryRun && (!o.url || !o.app)) throw new Error('--url and --app are required');
  if (o.dryRun && !o.app) o.app = 'dryrun';
  return o;
}

function post(agent, url, body, timeoutMs) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`request timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

function get(url, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function metrics(base) {
  const r = await get(`${base}/metrics`);
  const out = {};
  for (const line of r.text.split('\n')) {
    const m = /^(nucleon_[a-z_]+) (\d+)$/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const o = parseArgs(process.argv);
  const log = (s) => process.stderr.write(`query_dataset: ${s}\n`);
  const t0 = Date.now();
  const world = buildWorld(o);
  const stream = new Stream(world, o);
  const p = picks(world);
  const counts = userEventCounts(world);
  const candidates = deleteCandidates(world, p, counts);
  for (const u of candidates) stream.tally.set(u, { events: 0, inits: 0, byName: {}, byError: {} });
  // The world (users, devices, sessions: about 12 bytes a stored event) stays
  // in memory; the events are generated batch by batch as the load sends them.
  log(`world: ${o.users} users, ${world.devices.filter((d) => d.sessions > 0).length} devices, ${world.nS} sessions, ${o.events} events over ${o.days} days (built in ${Date.now() - t0} ms, heap ${(process.memoryUsage().heapUsed / 2 ** 20).toFixed(0)} MiB); ${candidates.length} delete candidates`);
  const deadline = Date.now() + o.timeoutS * 1000;

  if (o.dryRun) {
    let n = 0, bytes = 0, batches = 0;
    const g0 = process.hrtime.bigint();
    for (let b; (b = stream.next());) { n += b.count; bytes += b.body.length; batches++; }
    const s = Number(process.hrtime.bigint() - g0) / 1e9;
    log(`dry run: ${batches} batches, ${n} items, ${(bytes / 1e6).toFixed(0)} MB generated in ${s.toFixed(1)} s`);
    const f = facts(world, stream, p, candidates, counts);
    if (o.meta) fs.writeFileSync(o.meta, JSON.stringify({ dryRun: true, stats: stream.stats, facts: f }, null, 1));
    process.stdout.write(JSON.stringify({ stats: stream.stats, facts: f }).slice(0, 4000) + '\n');
    return;
  }

  const base = o.url.replace(/\/$/, '');
  const target = `${base}/app/${encodeURIComponent(o.app)}/track`;
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.connections });
  const before = await metrics(base);
  let sent = 0, acked = 0, batches = 0, retries = 0, failures = 0, bytes = 0, genNs = 0n;
  const errors = {};
  let done = false;
  const start = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  let lastLog = Date.now();
  const next = () => {
    const g = process.hrtime.bigint();
    const b = stream.next();
    genNs += process.hrtime.bigint() - g;
    return b;
  };
  async function worker() {
    for (;;) {
      if (done) return;
      const b = next();
      if (!b) { done = true; return; }
      batches++;
      bytes += b.body.length;
      for (let attempt = 0; ; attempt++) {
        if (Date.now() > deadline) throw new Error(`load did not finish within ${o.timeoutS} s`);
        let r;
        try {
          r = await post(agent, target, b.body, 300000);
        } catch (e) {
          errors[e.code || e.message] = (errors[e.code || e.message] || 0) + 1;
          r = null;
        }
        if (r && r.status === 200) {
          let ids = -1;
          try { ids = JSON.parse(r.text).reportedIds.length; } catch (_) { /* counted below */ }
          if (ids !== b.count - b.heartbeats && ids !== b.count) {
            errors[`ack count ${ids} for ${b.count}`] = (errors[`ack count ${ids} for ${b.count}`] || 0) + 1;
          }
          sent += b.events;
          acked += b.events;
          break;
        }
        if (r) errors[`HTTP ${r.status}: ${r.text.slice(0, 120)}`] = (errors[`HTTP ${r.status}: ${r.text.slice(0, 120)}`] || 0) + 1;
        if (attempt >= 20 || (r && r.status !== 503 && r.status !== 429)) { failures++; sent += b.events; break; }
        retries++;
        const ra = r && Number(r.headers['retry-after']);
        await sleep(ra > 0 ? Math.min(ra * 1000, 10000) : Math.min(5000, 100 * 2 ** attempt));
      }
      if (Date.now() - lastLog > 10000) {
        lastLog = Date.now();
        const s = Number(process.hrtime.bigint() - start) / 1e9;
        log(`${acked} events acked (${(100 * acked / o.events).toFixed(1)} %), ${(acked / s).toFixed(0)} events/s, ${retries} retries, ${failures} failed batches`);
      }
    }
  }
  await Promise.all(Array.from({ length: o.connections }, worker));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  agent.destroy();
  await sleep(200);
  const after = await metrics(base);
  const delta = (k) => (after[k] || 0) - (before[k] || 0);
  const summary = {
    events: o.events,
    users: o.users,
    devices: world.devices.filter((d) => d.sessions > 0).length,
    sessions: world.nS,
    days: o.days,
    seed: o.seed,
    connections: o.connections,
    batch: o.batch,
    batches,
    mb_sent: Math.round(bytes / 1e6),
    seconds: Number(seconds.toFixed(2)),
    events_per_sec: Math.round(o.events / seconds),
    client_cpu_s: Number(((cpu.user + cpu.system) / 1e6).toFixed(1)),
    client_generate_s: Number((Number(genNs) / 1e9).toFixed(1)),
    retries,
    failed_batches: failures,
    errors,
    stored: delta('nucleon_events_stored_total'),
    duplicates: delta('nucleon_events_duplicate_total'),
    invalid: delta('nucleon_events_invalid_total'),
    heartbeats: delta('nucleon_heartbeats_total'),
    resent: stream.stats.resent,
    generated: {
      byType: stream.stats.byType, inits: stream.stats.inits, heartbeats: stream.stats.heartbeats,
      byName: stream.stats.byName, byError: stream.stats.byError,
      firstEventMs: stream.stats.firstEventMs, lastEventMs: stream.stats.lastEventMs,
    },
    now_ms: o.nowMs,
  };
  if (o.meta) {
    fs.writeFileSync(o.meta, JSON.stringify({ load: summary, facts: facts(world, stream, p, candidates, counts), app: o.app }, null, 1));
  }
  log(`loaded ${o.events} events in ${seconds.toFixed(1)} s: ${summary.events_per_sec} events/s; server stored ${summary.stored}, duplicates ${summary.duplicates}, invalid ${summary.invalid}, heartbeats ${summary.heartbeats}; ${retries} retries, ${failures} failed batches`);
  const { generated, ...line } = summary;
  process.stdout.write(JSON.stringify(line) + '\n');
  if (failures > 0 || summary.stored !== o.events) process.exitCode = 3;
}

if (require.main === module) {
  main().catch((e) => { process.stderr.write(`query_dataset: ${e.stack || e}\n`); process.exit(1); });
}

module.exports = { mulberry32, zipf, buildWorld };

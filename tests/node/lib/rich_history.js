// A deterministic tracking history that makes answers hard to keep, and the
// API questions that read it back: contexts on inits (every field an SDK
// sends), properties of every kind, errors, heartbeats with and without a
// session id (extending sessions past their last event), a user who
// identifies in the middle of a shared session. Shared by the suites that
// move data (nucleon migrate, export/import, backup) and compare every answer
// before and after.
'use strict';

const assert = require('node:assert/strict');
const { mulberry32 } = require('./diff_scenario');

const T0 = Date.UTC(2026, 10, 2, 8, 0, 0);
const START = Math.floor(T0 / 1000) - 86400;
const END = START + 40 * 86400;

// `devices` devices, each with a few sessions over several days. Returns the
// tracking messages in the order they are sent.
function history(seed, devices = 24) {
  const rnd = mulberry32(seed);
  const pick = (a) => a[Math.floor(rnd() * a.length)];
  const messages = [];
  let id = 0;
  for (let d = 0; d < devices; d++) {
    const device = `dev-${d}`;
    const user = d % 5 === 0 ? undefined : `user-${d % 17}`;
    for (let s = 0; s < 3; s++) {
      const session = `${d * 10 + s}`;
      let t = T0 + Math.floor(rnd() * 30) * 86400000 + Math.floor(rnd() * 86400000);
      const base = { deviceId: device, sessionId: session, ...(user ? { userId: user } : {}) };
      const items = [{
        type: 'init', id: ++id, date: t, ...base,
        platform: pick(['darwin', 'win32', 'linux']), osVersion: pick(['10', '11', '14.1']),
        locale: pick(['en-US', 'fr_FR', 'de']), version: pick(['1.0', '1.1']),
        totalRam: pick([8, 15.6, 32]), arch: 'x64', payload: { plan: pick(['free', 'pro']) },
      }];
      const n = 2 + Math.floor(rnd() * 6);
      for (let i = 0; i < n; i++) {
        t += 1000 + Math.floor(rnd() * 60000);
        const r = rnd();
        if (r < 0.15) {
          items.push({ type: 'error', name: 'TypeError', id: ++id, date: t, ...base,
            payload: { message: `bad ${i % 3}`, stack: 'TypeError\n    at f (a.js:1:1)' } });
        } else if (r < 0.25) {
          items.push({ type: 'props', id: ++id, date: t, ...base, payload: { tier: pick([1, 2, 'gold']), beta: rnd() < 0.5 } });
        } else {
          items.push({ type: 'event', name: pick(['OPEN', 'SAVE', 'EXPORT']), id: ++id, date: t, ...base,
            payload: { size: Math.floor(rnd() * 100), format: pick(['png', 'pdf']), ok: rnd() < 0.7 } });
        }
      }
      // An anonymous user who identifies mid-session: the session is shared.
      if (!user && s === 1) {
        items.push({ type: 'userid', id: ++id, date: t + 500, deviceId: device, sessionId: session,
          userId: `named-${d}`, payload: { email: 'x' } });
      }
      messages.push({ data: items });
      // Heartbeats arrive now (their receive time), so they extend the session.
      messages.push({ data: [{ type: 'heartbeat', deviceId: device, sessionId: session }] });
      if (s === 2) messages.push({ data: [{ type: 'heartbeat', deviceId: device }] });
    }
  }
  return messages;
}

async function track(server, appId, body, headers = {}) {
  const r = await server.request('POST', `/app/${appId}/track`, {
    body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers },
  });
  assert.equal(r.status, 200, r.text);
}

// Every question worth asking of the history, as API paths -> "status body".
async function questions(server, cred) {
  const get = async (rest) => {
    const r = await server.request('GET', `/api/v1/apps/${cred.appId}/${rest}`,
      { headers: { authorization: cred.token } });
    return `${r.status} ${r.text}`;
  };
  const paths = [];
  for (const off of [0, 330, -420]) {
    const q = `start=${START}&end=${END}&utcOffset=${off}`;
    paths.push(`analytics?${q}`, `analytics/events?${q}`, `analytics/errors?${q}`, `analytics/eventsprops?${q}`);
  }
  const q = `start=${START + 5 * 86400}&end=${START + 20 * 86400 + 3333}`;
  paths.push(`analytics?${q}`, `analytics/events/OPEN/format?${q}`, `analytics/events/init/plan?${q}`,
    `analytics/events/SAVE/ok?${q}`, 'users?limit=7&page=1', 'users?limit=7&page=3', 'users?limit=1000');
  const users = JSON.parse((await get('users?limit=1000')).slice(4)).data;
  for (const u of users) {
    paths.push(`users/${encodeURIComponent(u.userId)}`);
    const details = JSON.parse((await get(`users/${encodeURIComponent(u.userId)}`)).slice(4));
    for (const s of details.sessions.slice(0, 2)) {
      paths.push(`users/${encodeURIComponent(u.userId)}/session/${s.session}`);
    }
  }
  paths.push('users/user-3', 'users/nobody');
  const answers = {};
  for (const p of paths) answers[p] = await get(p);
  return answers;
}

module.exports = { T0, START, END, history, track, questions };

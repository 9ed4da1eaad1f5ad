// The dashboard in a real browser: Debian's chromium (headless) driven by
// playwright-core, against the real server with a fixture sent through the
// real tracking endpoint. Checks that every number the Overview (cards,
// charts, sessions per day, the hour × day and hour × weekday heatmaps), Events (counts,
// property keys, value distributions) and Errors (counts, users, first and
// last seen, the latest stack) pages show equals the API's answer for the
// same range, in two time zones and at two widths; that the Users page lists
// and searches the API's users, shows a user's devices and sessions and a
// session's events as the API does, and an admin deletes one after
// confirming; that the Live page updates by itself when a WebSocket client
// sends events; that Settings creates an app, creates and revokes tokens, and
// adds, changes and removes accounts; that a viewer sees only its apps and
// can neither open Settings, call the admin endpoints nor delete; and that
// state-changing calls without the CSRF token and a wrong password are
// refused. Screenshots of every page (light and dark, wide and narrow) go to
// <build>/dashboard-screenshots.
//
// Run (from the repository root): node --test tests/node/dashboard.test.js
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const WebSocket = require('ws');
const { chromium } = require('playwright-core');
const { Server, binary, cli, createApp, tempDir, scaled, logTail } = require('./lib/server');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.NUCLEON_SCREENSHOTS || path.join(path.dirname(binary), 'dashboard-screenshots');
const PASSWORD = 'correct-horse-battery';
const DAY = 86400000;

// Minutes east of UTC of `zone` now (what the page must send as utcOffset).
function zoneOffset(zone) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-US', {
    timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit',
  }).formatToParts(new Date()).map((p) => [p.type, p.value]));
  const now = Math.floor(Date.now() / 1000) * 1000;
  const local = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour, +parts.minute, +parts.second);
  return Math.round((local - now) / 60000);
}

// Six users over the last five days on three platforms and two versions,
// with custom events and an error.
function fixture() {
  const now = Date.now();
  const data = [];
  const users = [
    { user: 'ada', device: 'dev-ada', platform: 'Darwin', version: '1.2.0', locale: 'en-US', days: [4, 2, 0] },
    { user: 'bob', device: 'dev-bob', platform: 'win32', version: '1.2.0', locale: 'fr-FR', days: [3, 1] },
    { user: 'cy', device: 'dev-cy', platform: 'linux', version: '1.1.0', locale: 'de-DE', days: [2] },
    { user: 'dee', device: 'dev-dee', platform: 'Windows_NT', version: '1.2.0', locale: 'en-GB', days: [1, 0] },
    { user: 'eve', device: 'dev-eve', platform: 'Darwin', version: '1.1.0', locale: 'en-US', days: [0] },
    { user: 'old', device: 'dev-old', platform: 'linux', version: '1.0.0', locale: 'es-ES', days: [12] },
  ];
  let n = 0;
  for (const u of users) {
    for (const d of u.days) {
      const t = now - d * DAY - 3 * 3600000;
      const base = { deviceId: u.device, userId: u.user, sessionId: `${u.user}-${d}`, platform: u.platform,
        osVersion: '1', version: u.version, locale: u.locale, moduleVersion: '4.0.3' };
      data.push({ ...base, type: 'init', id: `e${n++}`, date: t });
      data.push({ ...base, type: 'event', name: 'PLAYED_TRACK', id: `e${n++}`, date: t + 60000, payload: { n: d } });
      if (d % 2 === 0) data.push({ ...base, type: 'event', name: 'SAVED', id: `e${n++}`, date: t + 120000 });
      if (u.user === 'bob') data.push({ ...base, type: 'error', name: 'TypeError', id: `e${n++}`, date: t + 5000, payload: { message: 'x is undefined', stack: 'at f (a.js:1)' } });
      data.push({ ...base, type: 'heartbeat', date: t + 600000 });
    }
  }
  return { data: data.filter((e) => e.type !== 'heartbeat') };
}

async function api(server, token, appId, route, params = {}) {
  const q = new URLSearchParams(params).toString();
  const r = await server.request('GET', `/api/v1/apps/${appId}/${route}${q ? '?' + q : ''}`, { headers: { authorization: token } });
  assert.equal(r.status, 200, r.text);
  return r.json.data;
}

const sum = (m) => Object.values(m).reduce((a, b) => a + b, 0);
const num = (s) => Number(String(s).replace(/[,\s]/g, ''));

async function signIn(page, base, email, password = PASSWORD) {
  await page.goto(base + '/');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

test('the dashboard shows the API numbers, live updates, and enforces accounts', { timeout: scaled(240000) }, async (t) => {
  fs.mkdirSync(SHOTS, { recursive: true });
  const dataDir = tempDir('dashboard');
  const app = createApp(dataDir, 'Fixture app');
  const empty = createApp(dataDir, 'Empty app');
  process.env.NUCLEON_PASSWORD = PASSWORD;
  cli(dataDir, ['user', 'add', 'admin@example.com', '--role', 'admin']);
  cli(dataDir, ['user', 'add', 'viewer@example.com', '--role', 'viewer', '--apps', app.appId]);
  delete process.env.NUCLEON_PASSWORD;
  const listed = cli(dataDir, ['user', 'list']).trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(listed.map((a) => [a.email, a.role, a.apps]),
    [['admin@example.com', 'admin', []], ['viewer@example.com', 'viewer', [app.appId]]]);

  const server = await new Server({ dataDir }).start();
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  t.after(async () => {
    await browser.close();
    await server.stop();
  });
  try {
    const sent = await server.request('POST', `/app/${app.appId}/track`, { body: JSON.stringify(fixture()), headers: { 'content-type': 'application/json' } });
    assert.equal(sent.status, 200, sent.text);
    const base = server.httpBase;

    // Wrong password: refused, no session.
    const ctx0 = await browser.newContext();
    const p0 = await ctx0.newPage();
    await signIn(p0, base, 'admin@example.com', 'wrong-password');
    await p0.getByTestId('signin-error').waitFor();
    assert.match(await p0.getByTestId('signin-error').textContent(), /wrong email or password/);
    assert.equal((await ctx0.cookies()).length, 0);
    await ctx0.close();

    // The admin signs in once; the session is reused by every view below.
    const ctxA = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    const pA = await ctxA.newPage();
    await signIn(pA, base, 'admin@example.com');
    await pA.getByTestId('whoami').waitFor();
    const cookie = (await ctxA.cookies()).find((c) => c.name === 'nucleon_session');
    assert.ok(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', JSON.stringify(cookie));
    const state = await ctxA.storageState();

    // CSRF: a delete with the cookie but without the token is refused, and
    // nothing is deleted; with the token (the page's own call) it works.
    const noCsrf = await pA.evaluate(async (appId) => (await fetch(`/api/v1/apps/${appId}/users/old`, { method: 'DELETE' })).status, app.appId);
    assert.equal(noCsrf, 403);
    const adminNoCsrf = await pA.evaluate(async () => {
      const made = await fetch('/api/admin/apps', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"name":"csrf"}' });
      const removed = await fetch('/api/admin/accounts/viewer%40example.com', { method: 'DELETE' });
      return [made.status, removed.status, (await made.json()).error];
    });
    assert.deepEqual(adminNoCsrf, [403, 403, 'missing or wrong CSRF token (X-CSRF-Token)']);
    assert.doesNotMatch(cli(dataDir, ['app', 'list']), /"csrf"/);
    assert.equal((await server.request('GET', `/api/v1/apps/${app.appId}/users/old`, { headers: { authorization: app.token } })).status, 200);

    const views = [
      { zone: 'America/New_York', width: 1440, scheme: 'light' },
      { zone: 'America/New_York', width: 375, scheme: 'dark' },
      { zone: 'Asia/Tokyo', width: 1440, scheme: 'dark' },
      { zone: 'Asia/Tokyo', width: 375, scheme: 'light' },
    ];
    for (const v of views) {
      const tag = `${v.zone.replace('/', '-')}-${v.width}-${v.scheme}`;
      const ctx = await browser.newContext({ storageState: state, timezoneId: v.zone, colorScheme: v.scheme,
        viewport: { width: v.width, height: v.width < 500 ? 800 : 900 } });
      const page = await ctx.newPage();
      const opened = Date.now();
      await page.goto(`${base}/?app=${app.appId}`);
      await page.getByTestId('card-users-value').waitFor();
      t.diagnostic(`${tag}: overview shown ${Date.now() - opened} ms after navigation started`);
      // Each part is drawn when its own answer is in: wait for the last one.
      await page.waitForFunction(() => document.querySelectorAll('[aria-busy="true"]').length === 0);
      const main = page.locator('main');
      const range = { start: await main.getAttribute('data-start'), end: await main.getAttribute('data-end'),
        utcOffset: await main.getAttribute('data-utc-offset') };
      assert.equal(Number(range.utcOffset), zoneOffset(v.zone), tag);
      assert.equal(Number(range.end) - Number(range.start) + 1, 7 * 86400, tag);
      const cur = await api(server, app.token, app.appId, 'analytics', range);
      const len = 7 * 86400;
      const prev = await api(server, app.token, app.appId, 'analytics',
        { start: Number(range.start) - len, end: Number(range.start) - 1, utcOffset: range.utcOffset });
      const cards = { users: cur.totalNumbers.users, 'new-users': sum(cur.newUsers), installs: cur.totalNumbers.installs, 'app-starts': sum(cur.usage) };
      for (const [id, want] of Object.entries(cards)) {
        assert.equal(num(await page.getByTestId(`card-${id}-value`).textContent()), want, `${tag} card ${id}`);
      }
      assert.ok(cards.users >= 5, `${tag}: the fixture is in range`);
      // Usable at this width: nothing wider than the window.
      assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), `${tag}: no sideways scrolling`);
      assert.match(await page.getByTestId('card-users').textContent(), new RegExp(`vs previous ${prev.totalNumbers.users}`));
      for (const k of ['platforms', 'versions', 'languages']) {
        for (const { value, count } of cur[k]) {
          assert.equal(num(await page.getByTestId(`bar-${k}-${value}`).textContent()), count, `${tag} ${k} ${value}`);
        }
      }
      // The chart's numbers as a table: one row per day of the range.
      await page.getByTestId('toggle-daily').click();
      const rows = await page.getByTestId('table-daily').locator('tbody tr').allTextContents();
      assert.equal(rows.length, 7, tag);
      const tableStarts = await page.getByTestId('table-daily').locator('tbody tr td:nth-child(4)').allTextContents();
      assert.equal(tableStarts.map(num).reduce((a, b) => a + b, 0), sum(cur.usage), tag);
      await page.getByTestId('toggle-daily').click();
      // Sessions per day (a Nucleon extension): the chart's table and title
      // against the API, day by day; their mean durations are the daily answer's.
      const perDay = await api(server, app.token, app.appId, 'analytics/sessions', range);
      assert.ok(sum(perDay.sessions) >= 5, `${tag}: the fixture's sessions are in range`);
      assert.deepEqual(perDay.avgSessionDuration, cur.avgSessionDuration, tag);
      assert.match(await page.getByTestId('panel-sessions').locator('h2').textContent(), new RegExp(`\\(${sum(perDay.sessions)} in the range\\)`), tag);
      await page.getByTestId('toggle-sessions').click();
      const sessionRows = await page.getByTestId('table-sessions').locator('tbody tr')
        .evaluateAll((trs) => trs.map((tr) => [tr.querySelector('th').textContent, tr.querySelector('td').textContent]));
      assert.equal(sessionRows.length, 7, tag);
      const shownSessions = Object.fromEntries(sessionRows.map(([d, n]) => [d, num(n)]).filter(([, n]) => n > 0));
      assert.deepEqual(shownSessions, perDay.sessions, `${tag} sessions per day`);
      await page.getByTestId('toggle-sessions').click();
      await page.getByTestId('panel-sessions').locator('canvas').first().waitFor();
      // App starts by hour: per day, and summed per weekday; both add up to the range's app starts.
      const cells = async (id) => (await page.getByTestId(id).locator('tbody td').allTextContents()).map((c) => num(c || '0'));
      const byDay = await cells('heatmap-day');
      assert.equal(byDay.reduce((a, b) => a + b, 0), sum(cur.usage), `${tag} heatmap by day`);
      assert.equal(byDay.length, Object.keys(cur.hours).length * 24, tag);
      await page.getByTestId('hours-by-weekday').click();
      const byWeekday = await cells('heatmap-weekday');
      assert.equal(byWeekday.length, 7 * 24, tag);
      const wantWeek = Array(7 * 24).fill(0);
      for (const [d, hours] of Object.entries(cur.hours)) {
        const w = (new Date(d + 'T00:00:00Z').getUTCDay() + 6) % 7;
        hours.forEach((n, h) => (wantWeek[w * 24 + h] += n));
      }
      assert.deepEqual(byWeekday, wantWeek, `${tag} heatmap by weekday`);
      await page.screenshot({ path: path.join(SHOTS, `overview-${tag}.png`), fullPage: true });
      await page.getByTestId('hours-by-day').click();

      await page.getByTestId('nav-events').click();
      await page.getByTestId('events-table').waitFor();
      const events = await api(server, app.token, app.appId, 'analytics/events', range);
      for (const [name, days] of Object.entries(events)) {
        assert.equal(num(await page.getByTestId(`event-total-${name}`).textContent()), sum(days), `${tag} event ${name}`);
      }
      assert.ok(new URL(page.url()).pathname === '/events' && new URL(page.url()).searchParams.get('app') === app.appId);
      // Property keys of an event, and the distribution of one key's values.
      await page.getByTestId('event-PLAYED_TRACK').click();
      await page.getByTestId('event-props').waitFor();
      const props = await api(server, app.token, app.appId, 'analytics/eventsprops', range);
      const keys = props.filter((p) => p.event === 'PLAYED_TRACK').flatMap((p) => p.keys).sort();
      assert.deepEqual(keys, ['n'], tag);
      const shownKeys = await page.locator('[data-testid^="prop-"]').evaluateAll((els) => els.map((e) => e.dataset.testid.slice(5)));
      assert.deepEqual(shownKeys.sort(), keys, tag);
      await page.getByTestId('prop-n').click();
      await page.getByTestId('bars-values').waitFor();
      const values = await api(server, app.token, app.appId, 'analytics/events/PLAYED_TRACK/n', range);
      assert.ok(values.length >= 2, tag);
      for (const { value, count } of values) {
        assert.equal(num(await page.getByTestId(`bar-values-${value}`).textContent()), count, `${tag} value ${value}`);
      }
      assert.equal(new URL(page.url()).searchParams.get('attr'), 'n', 'the picked key is in the URL');
      await page.screenshot({ path: path.join(SHOTS, `events-${tag}.png`), fullPage: true });

      await page.getByTestId('nav-errors').click();
      await page.getByTestId('errors-table').waitFor();
      const errors = await api(server, app.token, app.appId, 'analytics/errors', range);
      assert.ok(Object.keys(errors).length > 0, tag);
      for (const [name, days] of Object.entries(errors)) {
        assert.equal(num(await page.getByTestId(`error-total-${name}`).textContent()), sum(days), `${tag} error ${name}`);
      }
      // Per error: users, first and last seen, and the latest one's message and stack.
      const groups = await api(server, app.token, app.appId, 'analytics/errors/groups', range);
      assert.deepEqual(groups.map((g) => g.name).sort(), Object.keys(errors).sort(), tag);
      for (const g of groups) {
        assert.equal(g.count, sum(errors[g.name]), `${tag} ${g.name}: the extension agrees with API v1`);
        assert.equal(num(await page.getByTestId(`error-users-${g.name}`).textContent()), g.users, `${tag} users of ${g.name}`);
        assert.equal(await page.getByTestId(`error-first-${g.name}`).getAttribute('title'), g.firstSeen, tag);
        assert.equal(await page.getByTestId(`error-last-${g.name}`).getAttribute('title'), g.lastSeen, tag);
      }
      const top = groups[0];
      assert.equal(top.sample.message, 'x is undefined');
      assert.equal(await page.getByTestId('error-sample-message').textContent(), top.sample.message, tag);
      assert.equal(await page.getByTestId('error-sample-stack').textContent(), top.sample.stack, tag);
      assert.equal(await page.getByTestId('error-sample-user').textContent(), top.sample.userId, tag);
      await page.screenshot({ path: path.join(SHOTS, `errors-${tag}.png`), fullPage: true });
      await ctx.close();
    }

    // A link opens the same view: a custom range in the URL.
    {
      const ctx = await browser.newContext({ storageState: state, timezoneId: 'UTC' });
      const page = await ctx.newPage();
      const to = new Date().toISOString().slice(0, 10);
      const from = new Date(Date.now() - 2 * DAY).toISOString().slice(0, 10);
      await page.goto(`${base}/?app=${app.appId}&from=${from}&to=${to}`);
      await page.getByTestId('card-users-value').waitFor();
      const start = Number(await page.locator('main').getAttribute('data-start'));
      assert.equal(start, Date.parse(from + 'T00:00:00Z') / 1000);
      const cur = await api(server, app.token, app.appId, 'analytics', { start, end: start + 3 * 86400 - 1, utcOffset: 0 });
      assert.equal(num(await page.getByTestId('card-users-value').textContent()), cur.totalNumbers.users);

      // An app without data teaches how to point an SDK at this server.
      await page.goto(`${base}/?app=${empty.appId}`);
      await page.getByTestId('empty-state').waitFor();
      assert.match(await page.getByTestId('sdk-snippet').textContent(), new RegExp(`${empty.appId}.*ws://127\\.0\\.0\\.1:${server.port}`, 's'));
      await page.screenshot({ path: path.join(SHOTS, 'empty-state.png'), fullPage: true });
      await ctx.close();
    }

    // Live: updates by itself when a WebSocket client sends events.
    {
      const ctx = await browser.newContext({ storageState: state, viewport: { width: 1440, height: 900 } });
      const page = await ctx.newPage();
      await page.goto(`${base}/live?app=${app.appId}`);
      await page.getByTestId('card-live-users-value').waitFor();
      assert.equal(num(await page.getByTestId('card-live-users-value').textContent()), 0);
      const ws = new WebSocket(`ws://127.0.0.1:${server.port}/app/${app.appId}/track`);
      await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
      const acked = new Promise((resolve) => ws.once('message', resolve));
      const base4 = { deviceId: 'dev-live', userId: 'live-user', sessionId: 'live-1', platform: 'linux', version: '2.0.0' };
      ws.send(JSON.stringify({ data: [{ ...base4, type: 'init', id: 'l1', date: Date.now() },
        { ...base4, type: 'event', name: 'LIVE_CLICK', id: 'l2', date: Date.now() }] }));
      await acked;
      await page.locator('.live-name', { hasText: 'LIVE_CLICK' }).first().waitFor({ timeout: scaled(15000) });
      const count = await api(server, app.token, app.appId, 'live/users/count');
      assert.ok(count >= 1);
      await page.waitForFunction((want) => document.querySelector('[data-testid="card-live-users-value"]')?.textContent === String(want), count, { timeout: scaled(15000) });
      const liveEvents = await api(server, app.token, app.appId, 'live/events', { limit: 50 });
      assert.equal(await page.locator('table[data-testid="live-events"] tbody tr').count(), liveEvents.length);
      await page.screenshot({ path: path.join(SHOTS, 'live-1440-light.png'), fullPage: true });
      ws.close();

      // Users: the list equals the API's page; an admin deletes after confirming.
      await page.getByTestId('nav-users').click();
      await page.getByTestId('users-table').waitFor();
      const users = (await server.request('GET', `/api/v1/apps/${app.appId}/users?page=1&limit=50`, { headers: { authorization: app.token } })).json;
      assert.equal(num(await page.getByTestId('users-total').textContent()), users.total);
      assert.deepEqual(await page.locator('[data-testid="users-table"] tbody th').allTextContents(), users.data.map((u) => u.userId));
      // Search on the server: part of the id, either case.
      await page.getByTestId('users-search').fill('D');
      await page.getByTestId('users-search-go').click();
      const found = (await server.request('GET', `/api/v1/apps/${app.appId}/users?page=1&limit=50&search=D`, { headers: { authorization: app.token } })).json;
      assert.deepEqual(found.data.map((u) => u.userId).sort(), ['ada', 'dee', 'old']);
      await page.waitForFunction((want) => document.querySelector('[data-testid="users-total"]')?.textContent === String(want), found.total);
      assert.deepEqual(await page.locator('[data-testid="users-table"] tbody th').allTextContents(), found.data.map((u) => u.userId));
      assert.equal(new URL(page.url()).searchParams.get('search'), 'D');
      // A user's devices and sessions, then a session's events.
      await page.getByTestId('open-user-ada').click();
      await page.getByTestId('user-details').waitFor();
      const ada = (await server.request('GET', `/api/v1/apps/${app.appId}/users/ada`, { headers: { authorization: app.token } })).json;
      assert.deepEqual(await page.locator('[data-testid="user-devices"] tbody th').allTextContents(), ada.user.devices.map((d) => d._id));
      assert.deepEqual(await page.locator('[data-testid="user-sessions"] tbody th').allTextContents(), ada.sessions.map((s) => s.session));
      for (const s of ada.sessions) {
        assert.equal(num(await page.getByTestId(`session-actions-${s.session}`).textContent()), s.actions, s.session);
        assert.equal(num(await page.getByTestId(`session-errors-${s.session}`).textContent()), s.errors, s.session);
      }
      const ses = ada.sessions[0];
      await page.getByTestId(`open-session-${ses.session}`).click();
      await page.getByTestId('session-timeline').waitFor();
      const timeline = await api(server, app.token, app.appId, `users/ada/session/${ses.session}`, { device: ses.device });
      assert.equal(await page.getByTestId('timeline-event').count(), timeline.length);
      assert.deepEqual(await page.locator('[data-testid="timeline-event"] .tl-type').allTextContents(), timeline.map((e) => e.type));
      // The link opens the same view.
      await page.goto(page.url());
      await page.getByTestId('session-timeline').waitFor();
      assert.equal(await page.getByTestId('timeline-event').count(), timeline.length);
      await page.screenshot({ path: path.join(SHOTS, 'users-1440-light.png'), fullPage: true });
      {
        const narrow = await browser.newContext({ storageState: state, viewport: { width: 375, height: 800 }, colorScheme: 'dark' });
        const p2 = await narrow.newPage();
        await p2.goto(page.url());
        await p2.getByTestId('session-timeline').waitFor();
        // Nothing wider than the window (tables scroll inside their own box).
        const layout = await p2.evaluate(() => ({
          scrollWidth: document.documentElement.scrollWidth,
          wide: [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 &&
            !e.parentElement.closest('.table-wrap, pre'))
            .map((e) => `${e.tagName.toLowerCase()}.${e.className}[${e.getAttribute('data-testid') ?? ''}] ${Math.round(e.getBoundingClientRect().right)}`),
        }));
        assert.ok(layout.scrollWidth <= 375, `users at 375 px: no sideways scrolling ${JSON.stringify(layout)}`);
        await p2.screenshot({ path: path.join(SHOTS, 'users-375-dark.png'), fullPage: true });
        await narrow.close();
      }
      await page.getByTestId('nav-users').click();
      await page.getByTestId('users-table').waitFor();
      await page.waitForFunction((want) => document.querySelector('[data-testid="users-total"]')?.textContent === String(want), users.total);
      page.once('dialog', (d) => d.dismiss());
      await page.getByTestId('delete-cy').click();
      assert.equal((await server.request('GET', `/api/v1/apps/${app.appId}/users/cy`, { headers: { authorization: app.token } })).status, 200);
      page.once('dialog', (d) => d.accept());
      await page.getByTestId('delete-cy').click();
      await page.getByTestId('users-message').filter({ hasText: 'Deleted cy' }).waitFor();
      assert.equal((await server.request('GET', `/api/v1/apps/${app.appId}/users/cy`, { headers: { authorization: app.token } })).status, 404);
      await page.waitForFunction((want) => document.querySelector('[data-testid="users-total"]')?.textContent === String(want), users.total - 1);

      await page.getByTestId('nav-settings').click();
      await page.getByTestId('settings').waitFor();
      // Create an app: its token is shown once and works at once.
      await page.getByTestId('new-app-name').fill('Made in Settings');
      await page.getByTestId('create-app').click();
      const madeToken = (await page.getByTestId('new-token-value').textContent()).trim();
      const madeApp = cli(dataDir, ['app', 'list']).trim().split('\n').map((l) => JSON.parse(l)).find((a) => a.name === 'Made in Settings');
      assert.ok(madeApp, 'the app is in the catalog');
      assert.equal((await server.request('GET', `/api/v1/apps/${madeApp.appId}/analytics/quickglance`, { headers: { authorization: madeToken } })).status, 200);
      await page.getByTestId('app-picker').locator('option', { hasText: 'Made in Settings' }).waitFor({ state: 'attached' });
      assert.match(await page.getByTestId('sdk-snippet').textContent(), new RegExp(madeApp.appId));
      // A second token, then revoke the first: refused from then on.
      await page.getByTestId('create-token').click();
      await page.getByTestId('new-token-value').filter({ hasNotText: madeToken }).waitFor();
      const second = (await page.getByTestId('new-token-value').textContent()).trim();
      await page.getByTestId(`token-${second.slice(0, 12)}`).waitFor();
      assert.equal(await page.locator('[data-testid="tokens-table"] tbody tr').count(), 2);
      page.once('dialog', (d) => d.accept());
      await page.getByTestId(`revoke-${madeToken.slice(0, 12)}`).click();
      await page.getByTestId(`token-${madeToken.slice(0, 12)}`).filter({ hasText: 'revoked' }).waitFor();
      assert.equal((await server.request('GET', `/api/v1/apps/${madeApp.appId}/analytics/quickglance`, { headers: { authorization: madeToken } })).status, 401);
      assert.equal((await server.request('GET', `/api/v1/apps/${madeApp.appId}/analytics/quickglance`, { headers: { authorization: second } })).status, 200);
      assert.equal(num(await page.getByTestId(`app-tokens-${madeApp.appId}`).textContent()), 1);
      // Accounts: add a viewer of one app, make them an admin, remove them.
      const accounts = () => cli(dataDir, ['user', 'list']).trim().split('\n').map((l) => JSON.parse(l));
      await page.getByTestId('new-account-email').fill('new@example.com');
      await page.getByTestId('new-account-password').fill('another-password');
      await page.getByTestId('accounts').locator('form').getByLabel('Fixture app').check();
      await page.getByTestId('add-account').click();
      await page.getByTestId('account-new@example.com').waitFor();
      assert.deepEqual(accounts().find((a) => a.email === 'new@example.com').apps, [app.appId]);
      await page.getByTestId('role-new@example.com').selectOption('admin');
      await page.getByTestId('save-new@example.com').click();
      await page.getByTestId('account-new@example.com').locator('td', { hasText: 'every app' }).waitFor();
      assert.equal(accounts().find((a) => a.email === 'new@example.com').role, 'admin');
      await page.screenshot({ path: path.join(SHOTS, 'settings-1440-light.png'), fullPage: true });
      page.once('dialog', (d) => d.accept());
      await page.getByTestId('remove-new@example.com').click();
      await page.getByTestId('account-new@example.com').waitFor({ state: 'detached' });
      assert.equal(accounts().some((a) => a.email === 'new@example.com'), false);
      assert.equal(await page.getByTestId('remove-admin@example.com').count(), 0, 'not one\'s own account');
      await ctx.close();
    }

    // A viewer: its app only, no Settings, no delete.
    {
      const ctx = await browser.newContext({ viewport: { width: 375, height: 800 }, colorScheme: 'dark' });
      const page = await ctx.newPage();
      await signIn(page, base, 'viewer@example.com');
      await page.getByTestId('card-users-value').waitFor();
      assert.equal(await page.getByTestId('nav-settings').count(), 0);
      const options = await page.getByTestId('app-picker').locator('option').allTextContents();
      assert.deepEqual(options.length, 1);
      assert.match(options[0], /Fixture app/);
      await page.getByTestId('nav-users').click();
      await page.getByTestId('users-table').waitFor();
      assert.equal(await page.locator('[data-testid^="delete-"]').count(), 0);
      await page.goto(`${base}/settings?app=${app.appId}`);
      await page.getByTestId('not-allowed').waitFor();
      assert.equal(await page.getByTestId('settings').count(), 0);
      const tries = await page.evaluate(async ([a, b]) => {
        const s = await (await fetch('/api/session')).json();
        const del = await fetch(`/api/v1/apps/${a}/users/old`, { method: 'DELETE', headers: { 'X-CSRF-Token': s.data.csrfToken } });
        const other = await fetch(`/api/v1/apps/${b}/analytics/quickglance`);
        const apps = await fetch('/api/admin/apps');
        const account = await fetch('/api/admin/accounts', { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': s.data.csrfToken },
          body: JSON.stringify({ email: 'sneaky@example.com', role: 'admin', password: 'password-123' }) });
        const token = await fetch(`/api/admin/apps/${a}/tokens`, { method: 'POST', headers: { 'X-CSRF-Token': s.data.csrfToken } });
        return [del.status, other.status, apps.status, account.status, token.status];
      }, [app.appId, empty.appId]);
      assert.deepEqual(tries, [403, 404, 403, 403, 403]);
      assert.doesNotMatch(cli(dataDir, ['user', 'list']), /sneaky/);
      await page.screenshot({ path: path.join(SHOTS, 'viewer-375-dark.png'), fullPage: true });
      await ctx.close();
    }
    await pA.close();
    await ctxA.close();
  } catch (e) {
    logTail(t, server);
    throw e;
  }
});

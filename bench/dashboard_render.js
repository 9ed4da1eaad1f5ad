#!/usr/bin/env node
// Dashboard first render: how long after navigation starts the Overview shows
// its real numbers, in Debian's chromium (headless, driven by playwright-core
// as the browser suite drives it) against the real server on loopback.
//
//   node bench/dashboard_render.js [--bin build/nucleon] [--compare OTHER_BIN]
//        [--events 500000] [--days 30] [--runs 9] [--out FILE] [--profile]
//
// A fresh data folder gets an app, an admin account and a generated dataset
// (bench/query_dataset.js, through the real tracking endpoint). The admin
// signs in once; each run then opens /?app=ID in a new browser context (the
// session cookie set, nothing cached) and waits until the four cards hold
// numbers and every chart of the Overview has drawn (its uPlot canvas or its
// table of bars). Times are read in the page, from its navigation start
// (performance.timeOrigin), by a MutationObserver installed before the page's
// scripts, so the driver's own overhead is not in them; each is when the first
// frame after the document held it was painted:
//   shell   the account line is in the document (/api/session answered);
//   cards   the four cards hold numbers;
//   full    the cards, their change against the previous range and every chart;
// and, from the Resource Timing entries, when the page's script arrived and
// when each API answer started and ended. The first run is reported apart
// (the server's per-day caches are cold); the median of the others is the
// number (cards / full). With --compare, a second binary (another build of
// the dashboard) serves a copy of the same data and the runs alternate between
// the two. The machine (CPU, cores, load average before and after) is printed
// with it. --profile prints, for the last run, where the page's main thread
// spent its time up to `full` (V8's CPU profile: self time by function and
// script, and the time outside scripts: compiling, layout, paint, idle).
// Ports: NUCLEON_TEST_PORTS=LO-HI as for the suites.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const repo = path.resolve(__dirname, '..');
const nodeModules = path.join(repo, 'tests', 'node', 'node_modules');
const { chromium } = require(require.resolve('playwright-core', { paths: [nodeModules] }));

function parseArgs(argv) {
  const o = { bin: path.join(repo, 'build', 'nucleon'), compare: '', events: 500000, days: 30, runs: 9, out: '' };
  for (let i = 2; i < argv.length; i++) {
    const v = () => argv[++i];
    switch (argv[i]) {
      case '--bin': o.bin = path.resolve(v()); break;
      case '--compare': o.compare = path.resolve(v()); break;
      case '--events': o.events = Number(v()); break;
      case '--days': o.days = Number(v()); break;
      case '--runs': o.runs = Number(v()); break;
      case '--out': o.out = v(); break;
      case '--profile': o.profile = true; break;
      case '--help': console.log(fs.readFileSync(__filename, 'utf8').split('\n').slice(1, 22).join('\n')); process.exit(0);
      default: throw new Error(`unknown argument ${argv[i]}`);
    }
  }
  if (!(o.runs >= 2 && o.runs <= 100)) throw new Error('--runs must be 2..100');
  return o;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const load = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');

// Installed in the page before its own scripts: watches the document and
// notes (ms from navigation start) when the shell (the account line), the
// four cards' numbers, and then everything were first painted; and the main-thread
// tasks over 50 ms (script compilation, rendering).
function watch() {
  const marks = (window.__marks = {});
  window.__longTasks = [];
  new PerformanceObserver((l) => {
    for (const e of l.getEntries()) window.__longTasks.push([Math.round(e.startTime), Math.round(e.duration)]);
  }).observe({ type: 'longtask', buffered: true });
  // A mark is the end of the first frame painted after the document held it
  // (a timer queued from that frame's animation callback runs after its paint).
  const seen = {};
  const mark = (name) => {
    if (seen[name]) return;
    seen[name] = true;
    requestAnimationFrame(() => setTimeout(() => { marks[name] = performance.now(); }));
  };
  const check = () => {
    if (!seen.shell && document.querySelector('[data-testid="whoami"]')) mark('shell');
    const values = [...document.querySelectorAll('[data-testid$="-value"]')].filter((e) => /\d/.test(e.textContent));
    if (!seen.cards && values.length >= 4) mark('cards');
    const panels = [...document.querySelectorAll('section.panel[data-testid^="panel-"]')];
    const drawn = panels.length > 0 && panels.every((p) => p.querySelector('canvas, .bars, .heatmap, p.muted'));
    if (!seen.full && seen.cards && drawn && document.querySelectorAll('.card-change').length >= 4 &&
        !document.querySelector('[aria-busy="true"]')) mark('full');
  };
  new MutationObserver(check).observe(document, { childList: true, subtree: true, characterData: true, attributes: true });
}

// Resolves with the marks once everything showed (at most 60 s).
async function measure(page) {
  await page.waitForFunction(() => window.__marks && window.__marks.full, null, { timeout: 60000, polling: 100 });
  return page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const res = performance.getEntriesByType('resource').map((e) => ({
      name: e.name.replace(location.origin, ''), start: e.startTime, end: e.responseEnd,
    }));
    return { ...window.__marks, html: nav ? nav.responseEnd : 0, dcl: nav ? nav.domContentLoadedEventEnd : 0,
      res, longTasks: window.__longTasks };
  });
}

// Self time per function (and per script) of a V8 CPU profile, the largest first.
function printProfile(label, profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const scripts = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    const n = byId.get(profile.samples[i]);
    const dt = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    const f = n.callFrame;
    const where = f.url ? f.url.replace(/^.*\//, '') : '';
    const key = `${f.functionName || '(anonymous)'} ${where}${f.url ? ':' + (f.lineNumber + 1) : ''}`;
    self.set(key, (self.get(key) || 0) + dt);
    scripts.set(where || f.functionName, (scripts.get(where || f.functionName) || 0) + dt);
  }
  const top = (m, k) => [...m].sort((a, b) => b[1] - a[1]).slice(0, k).map(([name, ms]) => `  ${ms.toFixed(1).padStart(7)} ms  ${name}`).join('\n');
  console.error(`profile${label}, by script:\n${top(scripts, 8)}\nby function:\n${top(self, 20)}`);
}

function summarise(runs) {
  const warm = runs.slice(1);
  const stat = (f) => Math.round(f(warm.map((r) => r.cards))) + ' / ' + Math.round(f(warm.map((r) => r.full)));
  return {
    first: `${Math.round(runs[0].cards)} / ${Math.round(runs[0].full)}`,
    median: stat(median), min: stat((xs) => Math.min(...xs)), max: stat((xs) => Math.max(...xs)),
  };
}

function describe(i, label, r) {
  const api = r.res.filter((e) => e.name.startsWith('/api/'));
  const scripts = r.res.filter((e) => e.name.endsWith('.js'));
  const script = scripts[scripts.length - 1];
  return `run ${i + 1}${label}: shell ${r.shell.toFixed(0)}, cards ${r.cards.toFixed(0)}, full ${r.full.toFixed(0)} ms; html ${r.html.toFixed(0)}, ` +
    `scripts in ${script ? script.end.toFixed(0) : '?'}, DOMContentLoaded ${r.dcl.toFixed(0)}; ` +
    `long tasks ${r.longTasks.map(([at, d]) => `${at}+${d}`).join(' ') || 'none'}; ` +
    api.map((e) => `${e.name.split('?')[0].replace(/^\/api\/(v1\/apps\/[^/]+\/)?/, '')} ${e.start.toFixed(0)}-${e.end.toFixed(0)}`).join(', ');
}

async function main() {
  const o = parseArgs(process.argv);
  process.env.NUCLEON_BIN = o.bin;
  const { Server, cli, createApp, tempDir } = require(path.join(repo, 'tests', 'node', 'lib', 'server.js'));
  const dataDir = tempDir('render');
  const dirs = [dataDir];
  const servers = [];
  let browser;
  try {
    const app = createApp(dataDir, 'Render bench');
    process.env.NUCLEON_PASSWORD = 'render-bench-password';
    cli(dataDir, ['user', 'add', 'bench@example.com', '--role', 'admin']);
    delete process.env.NUCLEON_PASSWORD;
    const loader = await new Server({ dataDir }).start();
    servers.push(loader);
    const started = Date.now();
    const gen = spawnSync(process.execPath, [path.join(__dirname, 'query_dataset.js'), '--url', loader.httpBase,
      '--app', app.appId, '--events', String(o.events), '--days', String(o.days)], { encoding: 'utf8', timeout: 1800000 });
    if (gen.status !== 0) throw new Error(`query_dataset.js failed:\n${gen.stderr}`);
    console.error(`dataset: ${o.events} events over ${o.days} days loaded in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    // With --compare, the other binary serves a copy of the same data, and
    // the runs alternate between the two, so that the machine's load changes
    // hit both alike.
    const targets = [{ label: '', bin: o.bin, dir: dataDir }];
    if (o.compare) {
      await loader.stop();
      servers.length = 0;
      const copy = tempDir('render-compare');
      dirs.push(copy);
      fs.cpSync(dataDir, copy, { recursive: true });
      targets.push({ label: ' (compared)', bin: o.compare, dir: copy });
    }
    for (const t of targets) {
      t.server = servers.length && t.dir === dataDir ? loader : await new Server({ dataDir: t.dir, bin: t.bin }).start();
      if (!servers.includes(t.server)) servers.push(t.server);
    }
    browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
    for (const t of targets) {
      const ctx0 = await browser.newContext();
      const p0 = await ctx0.newPage();
      await p0.goto(t.server.httpBase + '/');
      await p0.getByLabel('Email').fill('bench@example.com');
      await p0.getByLabel('Password').fill('render-bench-password');
      await p0.getByRole('button', { name: 'Sign in' }).click();
      await p0.getByTestId('whoami').waitFor();
      t.state = await ctx0.storageState();
      await ctx0.close();
      t.runs = [];
    }
    const loadBefore = load();
    for (let i = 0; i < o.runs; i++) {
      for (const t of i % 2 ? [...targets].reverse() : targets) {
        const ctx = await browser.newContext({ storageState: t.state, viewport: { width: 1440, height: 900 } });
        const page = await ctx.newPage();
        await page.addInitScript(watch);
        const profiling = o.profile && i === o.runs - 1;
        let cdp;
        if (profiling) {
          cdp = await ctx.newCDPSession(page);
          await cdp.send('Profiler.enable');
          await cdp.send('Profiler.setSamplingInterval', { interval: 200 });
          await cdp.send('Profiler.start');
        }
        await page.goto(`${t.server.httpBase}/?app=${app.appId}`, { waitUntil: 'commit' });
        const r = await measure(page);
        if (profiling) printProfile(t.label, (await cdp.send('Profiler.stop')).profile);
        await ctx.close();
        t.runs.push(r);
        console.error(describe(i, t.label, r));
      }
    }
    const summary = {
      events: o.events, days: o.days, runs: o.runs, 'cards / full ms': summarise(targets[0].runs),
      ...(o.compare ? { compared: summarise(targets[1].runs) } : {}),
      machine: { cpu: os.cpus()[0].model, cores: os.cpus().length, loadBefore, loadAfter: load() },
    };
    if (o.out) fs.writeFileSync(o.out, JSON.stringify({ summary, runs: targets.map((t) => t.runs) }, null, 1));
    console.log(JSON.stringify(summary));
  } finally {
    if (browser) await browser.close();
    for (const s of servers) await s.stop();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

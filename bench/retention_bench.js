#!/usr/bin/env node
// Retention benchmark: how long removing the older part of an app's history
// takes on the embedded store, and what tracking acknowledgements cost
// meanwhile.
//
//   node bench/retention_bench.js --url http://127.0.0.1:PORT --app APP_ID \
//        --data DIR [--retain-days 30] [--binary build/nucleon]
//
// Load the app first (bench/query_dataset.js --days 60 ...). The script then
// sends one tracking message of one event every 20 ms on its own keep-alive
// connection and measures each acknowledgement, runs `nucleon app set APP_ID
// --retain-days N`, waits until /metrics says nothing is left to remove, and
// prints JSON: the events removed, the steps, the time from the setting to
// the end, the store's own time in steps, and the acknowledgement latencies
// (p50, p99, max) during the removal and in the seconds before it.
'use strict';

const http = require('node:http');
const { spawnSync } = require('node:child_process');

function parseArgs(argv) {
  const out = { retainDays: 30, binary: 'build/nucleon' };
  for (let i = 2; i < argv.length; i++) {
    const key = argv[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    out[key] = argv[++i];
  }
  if (!out.url || !out.app || !out.data) {
    process.stderr.write('usage: retention_bench.js --url URL --app APP_ID --data DIR [--retain-days N]\n');
    process.exit(2);
  }
  return out;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function request(url, method, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, agent, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

async function metrics(url) {
  const r = await request(`${url}/metrics`, 'GET');
  return Object.fromEntries([...r.text.matchAll(/^(\w+) (\S+)$/gm)].map((m) => [m[1], Number(m[2])]));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (a, p) => (a.length ? a[Math.min(a.length - 1, Math.floor(a.length * p))] : null);
const summary = (lat) => {
  const s = lat.slice().sort((x, y) => x - y);
  return { acks: s.length, p50_ms: pct(s, 0.5), p99_ms: pct(s, 0.99), max_ms: s.length ? s[s.length - 1] : null };
};

async function main() {
  const o = parseArgs(process.argv);
  const lat = [];
  let phase = 'before';
  const byPhase = { before: [], during: [] };
  let running = true;
  let n = 0;
  const prober = (async () => {
    while (running) {
      const body = JSON.stringify({ data: [{ type: 'event', name: 'PROBE', id: ++n, date: Date.now(), deviceId: 'probe', sessionId: 1 }] });
      const t0 = process.hrtime.bigint();
      const r = await request(`${o.url}/app/${o.app}/track`, 'POST', body);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (r.status !== 200) throw new Error(`track answered ${r.status}`);
      byPhase[phase].push(ms);
      lat.push(ms);
      await sleep(20);
    }
  })();
  await sleep(5000);
  const before = await metrics(o.url);
  phase = 'during';
  const t0 = Date.now();
  const set = spawnSync(o.binary, ['app', 'set', o.app, '--retain-days', String(o.retainDays), '--data', o.data], { encoding: 'utf8' });
  if (set.status !== 0) throw new Error(set.stderr);
  let after;
  for (;;) {
    after = await metrics(o.url);
    if (after.nucleon_retention_changes_total > before.nucleon_retention_changes_total && !after.nucleon_retention_pending_apps) break;
    await sleep(100);
  }
  const elapsed = (Date.now() - t0) / 1000;
  running = false;
  await prober;
  const removed = after.nucleon_retention_events_removed_total - before.nucleon_retention_events_removed_total;
  const steps = after.nucleon_retention_steps_total - before.nucleon_retention_steps_total;
  const stepSeconds = after.nucleon_retention_seconds_total - before.nucleon_retention_seconds_total;
  process.stdout.write(`${JSON.stringify({
    retain_days: Number(o.retainDays), removed_events: removed, steps, seconds: elapsed,
    step_seconds: Number(stepSeconds.toFixed(3)), mean_step_ms: steps ? Number((stepSeconds / steps * 1000).toFixed(1)) : null,
    removed_per_second: Math.round(removed / elapsed),
    acks_before: summary(byPhase.before), acks_during: summary(byPhase.during),
  }, null, 1)}\n`);
  agent.destroy();
}

main().catch((e) => { process.stderr.write(`${e.stack}\n`); process.exit(1); });

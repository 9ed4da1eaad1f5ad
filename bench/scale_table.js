#!/usr/bin/env node
// One markdown table from the summaries of several query benchmark runs
// (run_query.sh with SUMMARY=FILE), one column per run, for the performance
// notes: start-up, memory, disk, warm and cold latency per endpoint, user
// deletes and the tracking acks while they run.
//
//   node bench/scale_table.js SUMMARY-1M.json SUMMARY-10M.json [SUMMARY-100M.json]
//
// Standard library only. Prints the table and, under it, what each row means.
'use strict';

const fs = require('node:fs');

const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write('usage: node bench/scale_table.js SUMMARY.json...\n');
  process.exit(2);
}
const runs = files.map((f) => JSON.parse(fs.readFileSync(f, 'utf8')));

const num = (x) => typeof x === 'number' && Number.isFinite(x);
// ms: one decimal under 100 ms, whole ms under 10 s, then seconds
function ms(x) {
  if (!num(x)) return '-';
  if (x < 100) return x.toFixed(1);
  if (x < 10000) return x.toFixed(0);
  return `${(x / 1000).toFixed(1)} s`;
}
const mib = (kib) => (num(kib) ? `${(kib / 1024).toFixed(0)} MiB` : '-');
const count = (n) => (n >= 1e6 && n % 1e6 === 0 ? `${n / 1e6}M` : n >= 1e3 && n % 1e3 === 0 ? `${n / 1e3}k` : String(n));
const rss = (m) => (m ? `${mib(m.rss_kib)} (anon ${mib(m.anon_kib)}, file ${mib(m.file_kib)})` : '-');

// Endpoint names that depend on the dataset, made comparable across sizes.
const canon = (name) => name
  .replace(/^users \(page \d+, last\)$/, 'users (last page)')
  .replace(/^analytics\/events\/[^/]+\/[^/]+$/, 'analytics/events/:event/:attr');

const rows = [];
const row = (label, f) => rows.push([label, ...runs.map((r) => { try { return f(r); } catch (_) { return '-'; } })]);

row('events stored by the load / users', (r) => `${count(r.load.stored)} / ${count(r.users)}`);
row('load rate (events/s, HTTP, 4 connections)', (r) => `${r.load.events_per_sec.toLocaleString('en-US')}${r.load.fromKeptFolder ? ' (earlier run)' : ''}`);
row('start-up: to listening (first HTTP answer)', (r) => ms(r.startup.listen_ms));
row('start-up: to /healthz 200', (r) => ms(r.startup.healthz_ms));
row('start-up: to ready (first 200 of the 30-day daily analytics)', (r) => ms(r.startup.ready_ms));
row('graceful stop (SIGTERM to exit)', (r) => ms(r.startup.stop_ms));
row(`RSS after the load`, (r) => (r.load.fromKeptFolder ? `${rss(r.memory.afterLoad)} (after a start)` : rss(r.memory.afterLoad)));
row('RSS after measuring (peak)', (r) => `${rss(r.memory.afterMeasure)} (${mib(r.memory.afterMeasure.hwm_kib)})`);
row('RSS after a restart, at ready', (r) => rss(r.memory.afterRestart));
row('RSS after a restart and one request per endpoint (peak)', (r) => `${rss(r.memory.afterRestartAndColdRequests)} (${mib(r.memory.afterRestartAndColdRequests.hwm_kib)})`);
row('RSS after the deletes (peak)', (r) => `${rss(r.memory.afterDeletes)} (${mib(r.memory.afterDeletes.hwm_kib)})`);
row('disk after a graceful stop (bytes/stored event)', (r) => {
  const d = r.disk[0];
  return `${(d.bytes / 2 ** 20).toFixed(0)} MiB (${num(d.bytesPerEvent) ? d.bytesPerEvent.toFixed(0) : '?'} B/event)`;
});
row('disk files (largest first)', (r) => r.disk[0].files.slice().sort((a, b) => b.bytes - a.bytes).slice(0, 4)
  .map((x) => `${x.name} ${(x.bytes / 2 ** 20).toFixed(0)} MiB`).join(', '));

const names = [];
for (const r of runs) for (const e of r.endpoints || []) if (!names.includes(canon(e.name))) names.push(canon(e.name));
for (const nm of names) {
  row(`${nm}: warm p50 / p95; cold (ms)`, (r) => {
    const e = r.endpoints.find((x) => canon(x.name) === nm);
    if (!e) return '-';
    return `${e.warm ? `${ms(e.warm.p50)} / ${ms(e.warm.p95)}` : '-'}; ${e.cold ? ms(e.cold.median) : '-'}`;
  });
}

row('user delete p50 / p95 / max (ms)', (r) => { const d = r.deletes.deletes; return `${ms(d.p50)} / ${ms(d.p95)} / ${ms(d.max)}`; });
row('deleted users (events per user)', (r) => `${r.deletes.k} (${r.deletes.events.min}-${r.deletes.events.max})`);
// with the messages that were due but not sent (the client's bound on
// requests in flight was reached while the server stalled)
const ack = (w) => `${ms(w.http.p99)} / ${ms(w.ws.p99)}` +
  ((w.http.notSent || w.ws.notSent) ? ` (${(w.http.notSent || 0) + (w.ws.notSent || 0)} not sent)` : '') +
  ((w.http.notAcked || w.ws.notAcked) ? ` (${w.http.notAcked + w.ws.notAcked} not acked)` : '');
row('ack p99 HTTP / WS during deletes (ms)', (r) => ack(r.deletes.ack.during));
row('ack p99 HTTP / WS without deletes: before; after (ms)', (r) => `${ack(r.deletes.ack.before)}; ${ack(r.deletes.ack.after)}`);
row('delete checks (204, then 404, users total)', (r) => (r.deletes.checks.every((x) => x.ok) ? 'ok' : r.deletes.checks.filter((x) => !x.ok).map((x) => `FAIL ${x.what}`).join('; ')));

const head = ['', ...runs.map((r) => `${count(r.events)} events`)];
const esc = (s) => String(s).replace(/\|/g, '\\|');
const out = [];
const machines = [...new Set(runs.map((r) => r.machine))];
const binaries = [...new Set(runs.map((r) => r.binary))];
out.push(`Machine: ${machines.join('; ')}. Server: ${binaries.join('; ')}.`);
const caches = [...new Set(runs.map((r) => r.caches))];
const restarts = [...new Set(runs.map((r) => (r.startup ? r.startup.restarts : 0)))];
const k = runs.find((r) => r.deletes);
out.push(`Start-up and cold latency: medians of ${restarts.join('/')} restarts after a graceful stop; ${caches.join('; ')}.` +
  (k ? ` Deletes: one after the other, under a tracking load of ${k.deletes.rate} events/s (HTTP and ${k.deletes.webSockets} WebSockets, two apps).` : ''));
out.push('');
out.push(`| ${head.map(esc).join(' | ')} |`);
out.push(`|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`);
for (const r of rows) out.push(`| ${r.map(esc).join(' | ')} |`);
out.push('');
out.push('Warm: after 3 unmeasured requests, sequential requests on one keep-alive connection, 30-day range ending now, with live WebSocket traffic. ' +
  'Cold: the first request to the endpoint after a restart (the daily analytics first, as the readiness probe; the others in an order rotated per restart). ' +
  'Ack latency: from sending a tracking message to its acknowledgement, by the window the message was sent in (one still waiting when the deletes start counts in "during"; "after" lasts as long as the deletes did, up to 120 s).');
process.stdout.write(out.join('\n') + '\n');

// Operating the server: every metric docs/metrics.md documents is what
// /metrics emits (and nothing else), `--log-format json` writes one JSON object
// per log line, the config file is read with its precedence (flag, then
// variable, then file, then default) and a malformed one is refused, and every
// command answers --help; --version prints the version.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { Server, binary, repoRoot, testStore, tempDir, createApp, scaled } = require('./lib/server');

// The documented metrics: {name: {type, store}} from the table in docs/metrics.md.
function documentedMetrics() {
  const doc = fs.readFileSync(path.join(repoRoot, 'docs', 'metrics.md'), 'utf8');
  const out = {};
  for (const m of doc.matchAll(/^\| `(nucleon_\w+)` \| (counter|gauge) \| (all|embedded|clickhouse) \|/gm)) {
    assert.ok(!out[m[1]], `${m[1]} is documented twice`);
    out[m[1]] = { type: m[2], store: m[3] };
  }
  return out;
}

// What /metrics emits: {name: {type, help, value}}.
function parseMetrics(text) {
  const out = {};
  for (const line of text.split('\n')) {
    let m;
    if ((m = /^# HELP (\w+) (.+)$/.exec(line))) (out[m[1]] ||= {}).help = m[2];
    else if ((m = /^# TYPE (\w+) (\w+)$/.exec(line))) (out[m[1]] ||= {}).type = m[2];
    else if ((m = /^(\w+) (\S+)$/.exec(line))) (out[m[1]] ||= {}).value = Number(m[2]);
    else assert.equal(line, '', `unexpected line in /metrics: ${line}`);
  }
  return out;
}

function run(args, env = {}) {
  return spawnSync(binary, args, { encoding: 'utf8', timeout: scaled(20000), env: { ...process.env, ...env } });
}

test('every metric in docs/metrics.md is emitted by /metrics, with its type, and nothing undocumented', { timeout: 60000 }, async (t) => {
  const server = new Server();
  const app = createApp(server.dataDir);
  await server.start();
  t.after(() => server.stop());
  const body = JSON.stringify({ data: [{ type: 'init', id: 1, sessionId: 1, deviceId: 'd1', date: Date.now() }] });
  assert.equal((await server.request('POST', `/app/${app.appId}/track`, { body })).status, 200);

  const r = await server.request('GET', '/metrics');
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  const emitted = parseMetrics(r.text);
  const store = testStore === 'clickhouse' ? 'clickhouse' : 'embedded';
  const documented = documentedMetrics();
  assert.ok(Object.keys(documented).length >= 20, 'the table in docs/metrics.md was not found');
  const expected = Object.keys(documented).filter((n) => ['all', store].includes(documented[n].store)).sort();
  assert.deepEqual(Object.keys(emitted).sort(), expected,
    `/metrics on the ${store} store and docs/metrics.md disagree`);
  for (const [name, m] of Object.entries(emitted)) {
    assert.equal(m.type, documented[name].type, `${name}: type`);
    assert.ok(m.help, `${name}: no HELP`);
    assert.ok(Number.isFinite(m.value), `${name}: value`);
  }
  assert.ok(emitted.nucleon_batches_total.value >= 1);
});

test('--log-format json and NUCLEON_LOG_FORMAT=json write one JSON object per log line', { timeout: 60000 }, async () => {
  for (const opts of [{ args: ['--log-format', 'json'] }, { env: { NUCLEON_LOG_FORMAT: 'json' } }]) {
    const server = new Server(opts);
    await server.start();
    const stopped = await server.stop();
    assert.equal(stopped.code, 0, `exit ${JSON.stringify(stopped)}:\n${server.log}`);
    const lines = server.log.split('\n').filter((l) => l !== '');
    assert.ok(lines.length >= 3, server.log);
    const records = lines.map((l) => JSON.parse(l));
    for (const r of records) {
      assert.match(r.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.ok(['debug', 'info', 'warn', 'error'].includes(r.level), r.level);
      assert.equal(typeof r.message, 'string');
    }
    const serving = records.find((r) => / serving$/.test(r.message));
    assert.ok(serving, server.log);
    assert.equal(serving.data, server.dataDir);
    assert.equal(serving.store, testStore);
    const listening = records.find((r) => r.message.startsWith('listening on '));
    assert.equal(listening.address, `127.0.0.1:${server.port}`);
    assert.equal(records.at(-1).message, 'stopped');
  }
  // The default stays text.
  const server = new Server();
  await server.start();
  await server.stop();
  assert.match(server.log, /^\d{4}-\d\d-\d\dT[\d:.]+Z info /m);
  assert.doesNotMatch(server.log, /^\{/m);
});

test('the config file: read with --config, beaten by flags and variables; a malformed or missing one is an error', { timeout: 60000 }, async () => {
  const dir = tempDir('config');
  const conf = path.join(dir, 'nucleon.conf');
  // listen is beaten by the harness's --listen flag; data by its --data.
  fs.writeFileSync(conf, '# test\nlisten = 127.0.0.1:1\nlog_format = json\ncache-mb = 64\ndata = /nonexistent\n');
  const fromFile = new Server({ args: ['--config', conf] });
  await fromFile.start();
  await fromFile.stop();
  assert.match(fromFile.log, /^\{"time":/, 'log-format from the file');
  assert.match(fromFile.log, new RegExp(`"data":${JSON.stringify(fromFile.dataDir).replace(/[/\\]/g, '\\$&')}`));

  const envWins = new Server({ args: ['--config', conf], env: { NUCLEON_LOG_FORMAT: 'text' } });
  await envWins.start();
  await envWins.stop();
  assert.doesNotMatch(envWins.log, /^\{/m, 'NUCLEON_LOG_FORMAT beats the file');

  // NUCLEON_CONFIG names the file as --config does.
  const viaEnv = new Server({ env: { NUCLEON_CONFIG: conf } });
  await viaEnv.start();
  await viaEnv.stop();
  assert.match(viaEnv.log, /^\{"time":/);

  fs.writeFileSync(conf, 'listen = 127.0.0.1:0\nlisten-port = 8080\n');
  const bad = run(['serve', '--config', conf, '--data', dir]);
  assert.equal(bad.status, 2);
  assert.equal(bad.stderr.trim(), `nucleon: ${conf}:2: unknown option "listen-port" (the options are the flags' names without --)`);
  fs.writeFileSync(conf, 'demo = perhaps\n');
  assert.match(run(['app', 'list', '--config', conf, '--data', dir]).stderr, /:1: demo takes true or false/);
  const missing = run(['serve', '--config', path.join(dir, 'missing.conf'), '--data', dir]);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /cannot read the config file .*missing\.conf: No such file or directory/);
  assert.equal(run(['stats', '--log-format', 'xml', '--data', dir]).status, 2);
});

test('--version prints the version; every command answers --help and help COMMAND', () => {
  const version = run(['--version']);
  assert.equal(version.status, 0);
  assert.match(version.stdout, /^nucleon \d+\.\d+\.\d+\n$/);

  const overview = run(['--help']);
  assert.equal(overview.status, 0);
  assert.equal(run(['help']).stdout, overview.stdout);
  const commands = [...new Set([...overview.stdout.matchAll(/^ {2}([a-z]+) /gm)].map((m) => m[1]))]
    .filter((c) => c !== 'help');
  assert.ok(commands.includes('serve') && commands.includes('migrate'), commands.join(' '));
  for (const cmd of commands) {
    const help = run([cmd, '--help']);
    assert.equal(help.status, 0, cmd);
    assert.ok(help.stdout.startsWith(`usage: nucleon ${cmd}`), `${cmd} --help has no help of its own:\n${help.stdout}`);
    assert.match(help.stdout, /--config FILE/, `${cmd} --help lists the options of every command`);
    assert.equal(run(['help', cmd]).stdout, help.stdout);
  }
  // Every serve flag is in serve's help.
  const serveHelp = run(['serve', '--help']).stdout;
  const serveUsage = overview.stdout.slice(overview.stdout.indexOf('  serve '), overview.stdout.indexOf('\n  app '));
  assert.ok(serveUsage.includes('--listen'), serveUsage);
  for (const flag of serveUsage.matchAll(/--([a-z-]+)/g)) {
    assert.ok(serveHelp.includes(`--${flag[1]}`), `--${flag[1]} is missing from serve --help`);
  }
});

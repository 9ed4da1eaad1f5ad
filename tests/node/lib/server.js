// Shared harness for the end-to-end tests: starts the real `nucleon` binary on a
// loopback port with its own data folder, drives the admin CLI, and reads back
// what was stored with `nucleon export`. Every process it starts is bounded in
// time and killed when the test ends.
//
// The same suites run against sanitizer builds (`make test-asan`,
// `make test-tsan`): every timeout here is multiplied by
// NUCLEON_TEST_TIMEOUT_SCALE, and any sanitizer report a server or CLI process
// writes fails the test, whatever its exit code and whether or not the test
// looks at it.
//
// The same suites also run against the ClickHouse backend
// (tests/node/run_on_clickhouse.js): with NUCLEON_TEST_STORE=clickhouse and
// NUCLEON_TEST_CLICKHOUSE=<url>, every server and CLI call on a data folder is
// pointed at a ClickHouse database of that folder's own (storeArgs below).
// NUCLEON_TEST_CLICKHOUSE may list several URLs (comma-separated, passed on
// as they are); with NUCLEON_TEST_CLICKHOUSE_CLUSTER=<name> the databases are
// created on that ClickHouse cluster (`run_on_clickhouse.js --cluster`).
'use strict';

const { spawn, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const { testPortRange } = require('./ports');

const repoRoot = path.resolve(__dirname, '..', '..', '..');

// Every server and CLI process reads an empty config file unless a test
// chooses one: /etc/nucleon/nucleon.conf of an installed package must not
// change what the suites run.
if (!process.env.NUCLEON_CONFIG) process.env.NUCLEON_CONFIG = '/dev/null';
const binary = process.env.NUCLEON_BIN || path.join(repoRoot, 'build', 'nucleon');

// Sanitized binaries are several times slower; waits grow, assertions do not.
const timeoutScale = Math.max(1, Number(process.env.NUCLEON_TEST_TIMEOUT_SCALE) || 1);
const scaled = (ms) => Math.ceil(ms * timeoutScale);

// The first line of an ASan, LSan, UBSan or TSan report.
const kSanitizerReport = /(?:ERROR|WARNING): \w*Sanitizer|: runtime error: |^SUMMARY: \w*Sanitizer/m;

// The report in `text` (from its first line on, bounded), or null.
function sanitizerReport(text) {
  const m = kSanitizerReport.exec(text);
  if (!m) return null;
  const from = text.lastIndexOf('\n', m.index) + 1;
  return text.slice(from, from + 16384);
}

// Reports seen in any process this harness started. A report is also thrown
// where it is noticed (stop, kill9, cli); this last check catches the ones
// whose server was never stopped through the harness, or whose error was
// swallowed by the test, by failing the whole file.
const reports = [];
function noteReport(what, report) {
  reports.push(`${what}:\n${report}`);
  return new Error(`sanitizer report from ${what}:\n${report}`);
}
process.on('exit', () => {
  if (reports.length === 0) return;
  process.stderr.write(`\n${reports.length} sanitizer report(s):\n${reports.join('\n')}\n`);
  process.exitCode = 1;
});

// The store every server and CLI call uses: the embedded one (no extra
// arguments) unless NUCLEON_TEST_STORE selects ClickHouse.
const testStore = process.env.NUCLEON_TEST_STORE || 'sqlite';
const clickhouseUrl = process.env.NUCLEON_TEST_CLICKHOUSE || '';
const clickhouseCluster = process.env.NUCLEON_TEST_CLICKHOUSE_CLUSTER || '';
if (testStore !== 'sqlite' && testStore !== 'clickhouse') {
  throw new Error(`NUCLEON_TEST_STORE must be sqlite or clickhouse, not ${testStore}`);
}
if (testStore === 'clickhouse' && !clickhouseUrl) {
  throw new Error('NUCLEON_TEST_STORE=clickhouse needs NUCLEON_TEST_CLICKHOUSE=<url>');
}

// The store arguments for a data folder. With ClickHouse, the database is named
// after the folder, so the CLI and the server on one folder share its apps and
// events while the tests' other folders (and other tests) never see them.
function storeArgs(dataDir) {
  if (testStore !== 'clickhouse') return [];
  let where = path.resolve(dataDir);
  try { where = fs.realpathSync(where); } catch (_) { /* not created yet */ }
  const db = `t_${crypto.createHash('sha256').update(where).digest('hex').slice(0, 16)}`;
  return ['--store', 'clickhouse', '--clickhouse', clickhouseUrl, '--clickhouse-database', db,
    ...(clickhouseCluster ? ['--clickhouse-cluster', clickhouseCluster] : [])];
}

function tempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `nucleon-${prefix}-`));
}

function bindFree(port) {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', (e) => (port === 0 ? reject(e) : resolve(0)));
    srv.listen(port, '127.0.0.1', () => {
      const bound = srv.address().port;
      srv.close(() => resolve(bound));
    });
  });
}

async function freePort() {
  const range = testPortRange();
  if (!range) return bindFree(0);
  for (let i = 0; i < 200; i++) {
    const port = await bindFree(range.lo + Math.floor(Math.random() * (range.hi - range.lo + 1)));
    if (port) return port;
  }
  throw new Error(`no free port in NUCLEON_TEST_PORTS ${process.env.NUCLEON_TEST_PORTS}`);
}

// Runs a CLI subcommand against `dataDir` and returns its stdout; throws (with
// `status`, `stdout` and `stderr`) when it fails or reports a sanitizer error.
function cli(dataDir, args, opts = {}) {
  const r = spawnSync(binary, [...args, '--data', dataDir, ...storeArgs(dataDir)], {
    encoding: 'utf8',
    timeout: scaled(opts.timeout || 30000),
    maxBuffer: 1 << 30,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const what = `nucleon ${args.join(' ')}`;
  const report = sanitizerReport(r.stderr || '');
  if (report) throw noteReport(what, report);
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : r.signal ? `signal ${r.signal}` : `exit ${r.status}`;
    throw Object.assign(new Error(`Command failed (${why}): ${what}\n${r.stderr}`),
      { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr });
  }
  return r.stdout;
}

function createApp(dataDir, name = 'test-app') {
  const out = cli(dataDir, ['app', 'create', name]).trim();
  return JSON.parse(out); // {appId, token}
}

// Every stored event of the app, one object per line of `nucleon export`
// (without the session ends and tombstones that follow the events).
function exportEvents(dataDir, appId) {
  const out = cli(dataDir, ['export', appId], { timeout: 120000 });
  return out.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l))
    .filter((e) => e.type !== 'heartbeat' && e.type !== 'tombstone');
}

// One HTTP request. `localAddress` (a 127.0.0.x) sends it from that address on
// a connection of its own. `timeout` is stretched under sanitizers unless
// `exactTimeout` is set (for a deadline the test itself asserts).
function httpRequest(port, method, pathName,
  { body, headers = {}, timeout = 10000, localAddress, exactTimeout = false } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1', port, method, path: pathName, headers,
        timeout: exactTimeout ? timeout : scaled(timeout),
        ...(localAddress ? { localAddress, agent: false } : {}),
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try { json = text ? JSON.parse(text) : undefined; } catch (_) { json = undefined; }
          resolve({ status: res.statusCode, headers: res.headers, text, json });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout ${method} ${pathName}`)));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Writes the tail of the server's log as test diagnostics (for a failed test).
function logTail(t, server, chars = 4000) {
  t.diagnostic('server log tail:');
  for (const line of server.log.slice(-chars).split('\n')) t.diagnostic(line);
}

class Server {
  // `bin`: another build of nucleon than NUCLEON_BIN's (a benchmark comparing two).
  constructor({ dataDir, port, env = {}, args = [], bin = binary } = {}) {
    this.bin = bin;
    this.dataDir = dataDir || tempDir('data');
    this.port = port;
    this.env = env;
    this.args = args;
    this.proc = null;
    this.log = '';
    this.stderrTail = ''; // unbounded by the log's trimming, for report scanning
    this.report = null;
  }

  get endpoint() { return `ws://127.0.0.1:${this.port}`; }
  get httpBase() { return `http://127.0.0.1:${this.port}`; }

  async start({ timeoutMs = 20000, waitReady = true } = {}) {
    if (!this.port) this.port = await freePort();
    // A test that chooses its own store (in `args`) keeps it.
    const store = this.args.some((a) => a === '--store' || a.startsWith('--store=')) ? [] : storeArgs(this.dataDir);
    this.proc = spawn(this.bin, ['serve', '--data', this.dataDir, '--listen', `127.0.0.1:${this.port}`, ...this.args, ...store], {
      env: { ...process.env, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const append = (d) => { this.log += d.toString(); if (this.log.length > 1 << 20) this.log = this.log.slice(-(1 << 19)); };
    this.proc.stdout.on('data', append);
    this.proc.stderr.on('data', append);
    this.proc.stderr.on('data', (d) => this.scanStderr(d.toString()));
    // 'close', not 'exit': every byte of stderr (the report) has arrived by then.
    this.exited = new Promise((resolve) => this.proc.on('close', (code, signal) => resolve({ code, signal })));
    const deadline = Date.now() + scaled(timeoutMs);
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) throw new Error(`nucleon exited early:\n${this.log}`);
      try {
        // Up, and its API answering (`ready`: the read side is loaded; a server
        // without that field is always ready), unless the test wants it earlier.
        const r = await httpRequest(this.port, 'GET', '/healthz', { timeout: 1000 });
        if (r.status === 200 && (!waitReady || !r.json || r.json.ready !== false)) return this;
      } catch (_) { /* not up yet */ }
      await sleep(50);
    }
    throw new Error(`nucleon did not become healthy:\n${this.log}`);
  }

  // Keeps the stderr from the first sanitizer report on (a report's first line
  // may arrive split over two chunks, hence the carried tail).
  scanStderr(chunk) {
    if (this.report !== null) {
      if (this.report.length < 65536) this.report += chunk;
      return;
    }
    this.stderrTail = (this.stderrTail + chunk).slice(-(chunk.length + 256));
    const report = sanitizerReport(this.stderrTail);
    if (report !== null) this.report = report;
  }

  // After the process is gone: throws if it wrote a sanitizer report.
  async checkReport(res) {
    if (this.report !== null && !this.reported) {
      this.reported = true;
      throw noteReport(`nucleon serve on port ${this.port} (exit ${res.code ?? res.signal})`, this.report);
    }
    return res;
  }

  // Graceful stop (SIGTERM); resolves with the exit code, rejects on a
  // sanitizer report (leaks are reported at this exit).
  async stop({ timeoutMs = 15000 } = {}) {
    if (!this.proc) return undefined;
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return this.checkReport(await this.exited);
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), scaled(timeoutMs));
    const res = await this.exited;
    clearTimeout(timer);
    return this.checkReport(res);
  }

  // Rejects on a sanitizer report written before the kill.
  async kill9() {
    if (!this.proc) return;
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
    await this.checkReport(await this.exited);
  }

  request(method, pathName, opts) { return httpRequest(this.port, method, pathName, opts); }
}

module.exports = {
  binary, repoRoot, timeoutScale, scaled, sanitizerReport, testStore, storeArgs, tempDir, freePort, cli, createApp,
  exportEvents, httpRequest, logTail, sleep, Server,
};

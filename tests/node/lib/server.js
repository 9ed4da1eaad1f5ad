// Shared harness for the end-to-end tests: starts the real `nucleon` binary on a
// loopback port with its own data folder, drives the admin CLI, and reads back
// what was stored with `nucleon export`. Every process it starts is bounded in
// time and killed when the test ends.
'use strict';

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');

const repoRoot = path.resolve(__dirname, '..', '..', '..');
const binary = process.env.NUCLEON_BIN || path.join(repoRoot, 'build', 'nucleon');

function tempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `nucleon-${prefix}-`));
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// Runs a CLI subcommand against `dataDir` and returns its stdout.
function cli(dataDir, args, opts = {}) {
  return execFileSync(binary, [...args, '--data', dataDir], {
    encoding: 'utf8',
    timeout: opts.timeout || 30000,
    maxBuffer: 1 << 30,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

function createApp(dataDir, name = 'test-app') {
  const out = cli(dataDir, ['app', 'create', name]).trim();
  return JSON.parse(out); // {appId, token}
}

// Every stored event of the app, one object per line of `nucleon export`.
function exportEvents(dataDir, appId) {
  const out = cli(dataDir, ['export', appId], { timeout: 120000 });
  return out.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l));
}

function httpRequest(port, method, pathName, { body, headers = {}, timeout = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path: pathName, headers, timeout },
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

class Server {
  constructor({ dataDir, port, env = {}, args = [] } = {}) {
    this.dataDir = dataDir || tempDir('data');
    this.port = port;
    this.env = env;
    this.args = args;
    this.proc = null;
    this.log = '';
  }

  get endpoint() { return `ws://127.0.0.1:${this.port}`; }
  get httpBase() { return `http://127.0.0.1:${this.port}`; }

  async start({ timeoutMs = 20000 } = {}) {
    if (!this.port) this.port = await freePort();
    this.proc = spawn(binary, ['serve', '--data', this.dataDir, '--listen', `127.0.0.1:${this.port}`, ...this.args], {
      env: { ...process.env, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const append = (d) => { this.log += d.toString(); if (this.log.length > 1 << 20) this.log = this.log.slice(-(1 << 19)); };
    this.proc.stdout.on('data', append);
    this.proc.stderr.on('data', append);
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) throw new Error(`nucleon exited early:\n${this.log}`);
      try {
        const r = await httpRequest(this.port, 'GET', '/healthz', { timeout: 1000 });
        if (r.status === 200) return this;
      } catch (_) { /* not up yet */ }
      await sleep(50);
    }
    throw new Error(`nucleon did not become healthy:\n${this.log}`);
  }

  // Graceful stop (SIGTERM); resolves with the exit code.
  async stop({ timeoutMs = 15000 } = {}) {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return this.exited;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), timeoutMs);
    const res = await this.exited;
    clearTimeout(timer);
    return res;
  }

  async kill9() {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }

  request(method, pathName, opts) { return httpRequest(this.port, method, pathName, opts); }
}

module.exports = { binary, repoRoot, tempDir, freePort, cli, createApp, exportEvents, httpRequest, sleep, Server };

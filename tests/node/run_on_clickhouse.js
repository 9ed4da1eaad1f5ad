// Runs one end-to-end suite against the ClickHouse backend:
//
//   node tests/node/run_on_clickhouse.js tests/node/golden.test.js [node --test options]
//
// Starts a throw-away ClickHouse server, runs `node --test SUITE` with
// NUCLEON_TEST_STORE=clickhouse and NUCLEON_TEST_CLICKHOUSE=<its url> (the
// harness, lib/server.js, then gives every server and CLI call a database of
// its data folder's own), stops the server whatever happens (failure, SIGINT,
// SIGTERM) and exits with the suite's status.
'use strict';

const { spawn } = require('node:child_process');
const path = require('node:path');
const { startClickHouse } = require('./lib/clickhouse.js');

const [suite, ...testArgs] = process.argv.slice(2);
if (!suite) {
  process.stderr.write('usage: node run_on_clickhouse.js SUITE.test.js [node --test options]\n');
  process.exit(2);
}

let clickhouse = null; // the running server, once started
let child = null; // the suite's process, once started
let signalled = null; // the signal that asked us to stop, if any

// Stops the server (its folder goes with it), then exits.
async function finish(code) {
  if (clickhouse) {
    await clickhouse.stop().catch((e) => process.stderr.write(`stopping ClickHouse: ${e.message}\n`));
  }
  process.exit(code);
}

// A signal goes on to the suite, which stops its own servers; we stop
// ClickHouse once it has exited. Before the suite runs, we stop at once.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    signalled = sig;
    if (child) child.kill(sig);
    else if (clickhouse) finish(1);
    // Otherwise the server is still starting: main() stops it when it is up.
  });
}

async function main() {
  const started = Date.now();
  try {
    clickhouse = await startClickHouse();
  } catch (e) {
    process.stderr.write(`could not start ClickHouse: ${e.message}\n`);
    return finish(1);
  }
  if (signalled) return finish(1);
  process.stderr.write(`ClickHouse ${clickhouse.url} (pid ${clickhouse.pid}) up in ${Date.now() - started} ms\n`);

  const t0 = Date.now();
  child = spawn(process.execPath, ['--test', ...testArgs, path.resolve(suite)], {
    stdio: 'inherit',
    env: { ...process.env, NUCLEON_TEST_STORE: 'clickhouse', NUCLEON_TEST_CLICKHOUSE: clickhouse.url },
  });
  child.on('error', (e) => { process.stderr.write(`could not run the suite: ${e.message}\n`); finish(1); });
  child.on('exit', (code, signal) => {
    process.stderr.write(`${path.basename(suite)} on ClickHouse: ${signal || `exit ${code}`} after ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    finish(code === null ? 1 : code);
  });
}

main();

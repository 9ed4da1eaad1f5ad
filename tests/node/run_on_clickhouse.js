// Runs one end-to-end suite against the ClickHouse backend:
//
//   node tests/node/run_on_clickhouse.js [--cluster] tests/node/golden.test.js [node --test options]
//
// Starts a throw-away ClickHouse server, runs `node --test SUITE` with
// NUCLEON_TEST_STORE=clickhouse and NUCLEON_TEST_CLICKHOUSE=<its url> (the
// harness, lib/server.js, then gives every server and CLI call a database of
// its data folder's own), stops the server whatever happens (failure, SIGINT,
// SIGTERM) and exits with the suite's status.
//
// With --cluster it starts a cluster instead (2 shards x 2 replicas and a
// ZooKeeper, tests/clickhouse/cluster.sh) and sets NUCLEON_TEST_CLICKHOUSE to
// its four URLs, comma-separated, and NUCLEON_TEST_CLICKHOUSE_CLUSTER to its
// name, so that every database is created on the cluster as replicated tables
// behind Distributed ones. The cluster is stopped the same way.
'use strict';

const { spawn } = require('node:child_process');
const path = require('node:path');
const { startClickHouse, startClickHouseCluster } = require('./lib/clickhouse.js');

const argv = process.argv.slice(2);
const onCluster = argv[0] === '--cluster';
if (onCluster) argv.shift();
const [suite, ...testArgs] = argv;
if (!suite) {
  process.stderr.write('usage: node run_on_clickhouse.js [--cluster] SUITE.test.js [node --test options]\n');
  process.exit(2);
}

let clickhouse = null; // the running server (or cluster), once started
let child = null; // the suite's process, once started
let signalled = null; // the signal that asked us to stop, if any

// Stops the server or cluster (its folder goes with it), then exits.
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
    clickhouse = onCluster ? await startClickHouseCluster() : await startClickHouse();
  } catch (e) {
    process.stderr.write(`could not start ClickHouse${onCluster ? ' cluster' : ''}: ${e.message}\n`);
    return finish(1);
  }
  if (signalled) return finish(1);
  const what = onCluster ? `cluster ${clickhouse.cluster} (${clickhouse.url})` : `${clickhouse.url} (pid ${clickhouse.pid})`;
  process.stderr.write(`ClickHouse ${what} up in ${Date.now() - started} ms\n`);

  const env = { ...process.env, NUCLEON_TEST_STORE: 'clickhouse', NUCLEON_TEST_CLICKHOUSE: clickhouse.url };
  // Set or cleared, so that an outer environment cannot put a single server's
  // run on a cluster that is not there.
  if (onCluster) env.NUCLEON_TEST_CLICKHOUSE_CLUSTER = clickhouse.cluster;
  else delete env.NUCLEON_TEST_CLICKHOUSE_CLUSTER;
  const t0 = Date.now();
  child = spawn(process.execPath, ['--test', ...testArgs, path.resolve(suite)], { stdio: 'inherit', env });
  child.on('error', (e) => { process.stderr.write(`could not run the suite: ${e.message}\n`); finish(1); });
  child.on('exit', (code, signal) => {
    process.stderr.write(`${path.basename(suite)} on ClickHouse${onCluster ? ' cluster' : ''}: ${signal || `exit ${code}`} after ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    finish(code === null ? 1 : code);
  });
}

main();

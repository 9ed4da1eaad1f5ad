// WebSocket messages beyond the limits close the socket with 1009, so a
// client learns why instead of waiting for an ack that never comes; a normal
// message on a fresh socket is still acked afterwards.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const { Server, createApp } = require('./lib/server');

function open(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

test('a message with more than 10,000 events closes the socket with 1009', { timeout: 30000 }, async (t) => {
  const server = new Server();
  const app = createApp(server.dataDir, 'ws-limits');
  await server.start();
  t.after(() => server.stop());
  const url = `${server.endpoint}/app/${app.appId}/track`;

  const ws = await open(url);
  const data = [];
  for (let i = 1; i <= 10001; i++) data.push({ type: 'event', name: 'E', id: i, sessionId: 1, deviceId: 'd' });
  const closed = new Promise((resolve) => ws.once('close', (code) => resolve(code)));
  let acked = false;
  ws.on('message', () => { acked = true; });
  ws.send(JSON.stringify({ data }));
  assert.equal(await closed, 1009);
  assert.equal(acked, false);

  const ok = await open(url);
  const ack = new Promise((resolve) => ok.once('message', (m) => resolve(JSON.parse(m.toString()))));
  ok.send(JSON.stringify({ data: data.slice(0, 10000) }));
  const answer = await ack;
  assert.equal(answer.reportedIds.length, 10000);
  ok.close();
});

// Clients for the differential test: tracking messages over WebSocket (both
// paths, text or binary frames, with or without permessage-deflate, an address
// forwarded through a trusted proxy) and HTTP, and API requests (GET, or POST
// with a JSON or form body). Every wait is bounded.
'use strict';

const WebSocket = require('ws');
const { httpRequest, scaled } = require('./server.js');

const ACK_TIMEOUT_MS = 15000;

// One tracking WebSocket: messages go out in order and the server answers each
// with one ack, in order, so acks are matched first-in first-out.
class TrackingSocket {
  constructor(ws) {
    this.ws = ws;
    this.waiters = [];
    this.closed = new Promise((resolve) => ws.once('close', resolve));
    ws.on('message', (data) => {
      const w = this.waiters.shift();
      if (w) w.resolve(data.toString('utf8'));
    });
    ws.on('error', () => {});
    ws.once('close', () => {
      for (const w of this.waiters.splice(0)) w.reject(new Error('socket closed before the ack'));
    });
  }

  static open(url, { headers, deflate }) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers, perMessageDeflate: deflate, handshakeTimeout: scaled(5000) });
      ws.once('open', () => resolve(new TrackingSocket(ws)));
      ws.once('unexpected-response', (req, res) => reject(new Error(`WebSocket upgrade refused: ${res.statusCode}`)));
      ws.once('error', reject);
    });
  }

  send(text, binary) {
    return new Promise((resolve, reject) => {
      if (this.ws.readyState !== WebSocket.OPEN) return reject(new Error('socket not open'));
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error('no ack in time'));
      }, scaled(ACK_TIMEOUT_MS));
      const w = {
        resolve: (m) => { clearTimeout(timer); resolve(m); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
      this.waiters.push(w);
      this.ws.send(binary ? Buffer.from(text, 'utf8') : text, { binary: !!binary });
    });
  }

  async close() {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close();
    const t = new Promise((r) => setTimeout(r, scaled(3000)).unref());
    await Promise.race([this.closed, t]);
    this.ws.terminate();
  }
}

class Tracker {
  // `appIds`: app index -> app id; `geo`: whether forwarded addresses are believed.
  constructor({ port, appIds, geo }) {
    this.port = port;
    this.appIds = appIds;
    this.geo = geo;
    this.sockets = new Map();
  }

  wsUrl(app, conn) {
    const id = this.appIds[app];
    const path = conn.wsPath === 'root' ? `/${id}` : conn.wsPath === 'rootSlash' ? `/${id}/` : `/app/${id}/track`;
    return `ws://127.0.0.1:${this.port}${path}`;
  }

  // The connection's socket, opened once: messages sent back to back (a queue
  // flushed before the acks came) must share it to keep their order.
  async socket(app, conn) {
    const key = `${app}/${conn.socket}`;
    const known = this.sockets.get(key);
    if (known) {
      const s = await known.catch(() => null);
      if (s && s.ws.readyState === WebSocket.OPEN) return s;
      if (this.sockets.get(key) !== known) return this.socket(app, conn); // reopened meanwhile
    }
    const headers = this.geo && conn.ip ? { 'X-Real-IP': conn.ip } : {};
    const opening = TrackingSocket.open(this.wsUrl(app, conn), { headers, deflate: conn.deflate });
    this.sockets.set(key, opening);
    return opening;
  }

  // Sends one tracking message; resolves with the ack text, rejects when no ack came.
  async send(app, conn, text) {
    if (conn.transport === 'http') {
      const headers = { 'Content-Type': 'application/json' };
      if (this.geo && conn.ip) headers['X-Forwarded-For'] = conn.ip;
      const r = await httpRequest(this.port, 'POST', `/app/${this.appIds[app]}/track`, { body: text, headers, timeout: ACK_TIMEOUT_MS });
      if (r.status !== 200) throw new Error(`tracking POST answered ${r.status}: ${r.text}`);
      return r.text;
    }
    const s = await this.socket(app, conn);
    return s.send(text, conn.binary);
  }

  async closeAll() {
    const all = [...this.sockets.values()];
    this.sockets.clear();
    await Promise.all(all.map((p) => p.then((s) => s.close(), () => {})));
  }

  setPort(port) { this.port = port; }
}

// An API request: GET with the parameters in the query string, or POST with
// them in a JSON body (numbers where they read as numbers) or a form body.
async function apiRequest(port, appId, token, segments, params, mode = 'get', method = 'GET') {
  let path = `/api/v1/apps/${encodeURIComponent(appId)}${segments.map((s) => `/${encodeURIComponent(s)}`).join('')}`;
  const headers = { Authorization: token };
  const entries = Object.entries(params);
  let body;
  if (method === 'GET' && mode !== 'get' && entries.length) {
    method = 'POST';
    if (mode === 'json') {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(Object.fromEntries(entries.map(([k, v]) => [k, /^-?\d{1,15}$/.test(v) ? Number(v) : v])));
    } else {
      headers['Content-Type'] = 'application/x-www-form-urlencoded';
      body = entries.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
    }
  } else if (entries.length) {
    path += `?${entries.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&')}`;
  }
  const r = await httpRequest(port, method, path, { headers, body, timeout: 20000 });
  return { status: r.status, text: r.text, json: r.json, method, path, body };
}

module.exports = { Tracker, apiRequest };

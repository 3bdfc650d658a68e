// Browser origins in a real browser against a real `mkondo dev`: a page served
// by another origin (a small Node server on a port of its own) calls the REST
// API with a user token, and opens the real-time WebSocket. Its fetch goes
// through when its origin is in the app's allowed_origins (set through the
// operator API) and fails (TypeError: the browser got no CORS answer) when it
// is not; a WebSocket `connect` from an origin that is not listed is refused
// with origin_not_allowed and closed with 3506.
//
// Run from the repository root after `cargo build -p mkondo-server --bin mkondo`:
//   node --test web/tests/cors.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchChromium } from './lib/browser.mjs';
import { startServer, stopServer } from './lib/server.mjs';

const operatorSecret = 'operator-secret-for-the-cors-test';

/** A blank page on 127.0.0.1, another origin than the Mkondo server's. */
function startPageServer() {
  return new Promise((resolve) => {
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!doctype html><title>another origin</title>');
    });
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

async function operator(addr, method, path, body) {
  const res = await fetch(`http://${addr}${path}`, {
    method,
    headers: { authorization: `Bearer ${operatorSecret}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  assert.ok(res.ok, `${method} ${path}: HTTP ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** In the page: GET /v1/me with the token; what fetch gave, or the error it threw. */
function fetchMe(page, addr, token) {
  return page.evaluate(async ({ addr, token }) => {
    try {
      const res = await fetch(`http://${addr}/v1/me`, { headers: { authorization: `Bearer ${token}` } });
      return { status: res.status, body: await res.json() };
    } catch (e) {
      return { threw: e.name };
    }
  }, { addr, token });
}

/** In the page: a WebSocket `connect`; its reply (or error) and the close code. */
function wsConnect(page, addr, token) {
  return page.evaluate(({ addr, token }) => new Promise((resolve) => {
    const ws = new WebSocket(`ws://${addr}/v1/realtime`);
    let reply = null;
    const timer = setTimeout(() => { ws.close(); resolve({ reply, close: 'timeout' }); }, 10_000);
    ws.onopen = () => ws.send(JSON.stringify({ id: 1, connect: { token } }));
    ws.onmessage = (event) => {
      for (const line of String(event.data).split('\n')) {
        const frame = JSON.parse(line);
        if (frame.id !== 1) continue;
        reply = frame;
        if (frame.reply) { clearTimeout(timer); ws.close(); resolve({ reply, close: null }); }
      }
    };
    ws.onclose = (event) => { clearTimeout(timer); resolve({ reply, close: event.code }); };
  }), { addr, token });
}

test('a page of another origin: fetch and WebSocket follow the app\'s allowed origins', async () => {
  const database = join(mkdtempSync(join(tmpdir(), 'mkondo-cors-')), 'cors.db');
  const server = await startServer(database, '127.0.0.1:0', ['--operator-secret', operatorSecret]);
  const pages = await startPageServer();
  const pagePort = pages.address().port;
  const listed = `http://127.0.0.1:${pagePort}`;
  // The same page server under another host name: another origin, not listed.
  const unlisted = `http://localhost:${pagePort}`;
  const browser = await launchChromium();
  try {
    // An app of its own (the demo app allows every origin, for development).
    const app = await operator(server.addr, 'POST', '/v1/admin/apps', { name: 'Shop', id: 'shop' });
    const minted = await fetch(`http://${server.addr}/v1/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${app.api_key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ user_id: 'alice' }),
    }).then((r) => r.json());
    const token = minted.token;
    assert.ok(token, JSON.stringify(minted));

    const page = await (await browser.newContext()).newPage();
    await page.goto(`${listed}/`);
    const other = await (await browser.newContext()).newPage();
    await other.goto(`${unlisted}/`);

    // A new app lists no origin: a page of another origin cannot call it.
    assert.deepEqual(await fetchMe(page, server.addr, token), { threw: 'TypeError' });

    const updated = await operator(server.addr, 'PATCH', '/v1/admin/apps/shop', { allowed_origins: [listed] });
    assert.deepEqual(updated.allowed_origins, [listed]);

    const allowed = await fetchMe(page, server.addr, token);
    assert.equal(allowed.status, 200, JSON.stringify(allowed));
    assert.equal(allowed.body.id, 'alice');
    assert.deepEqual(await fetchMe(other, server.addr, token), { threw: 'TypeError' });

    const connected = await wsConnect(page, server.addr, token);
    assert.ok(connected.reply?.reply?.connect, JSON.stringify(connected));
    const refused = await wsConnect(other, server.addr, token);
    assert.equal(refused.reply?.error?.code, 'permission_denied', JSON.stringify(refused));
    assert.equal(refused.reply?.error?.reason, 'origin_not_allowed', JSON.stringify(refused));
    assert.equal(refused.close, 3506, JSON.stringify(refused));

    // The operator API is never for another origin's pages, even a listed one.
    const admin = await page.evaluate(async ({ addr, secret }) => {
      try {
        const res = await fetch(`http://${addr}/v1/admin/apps`, { headers: { authorization: `Bearer ${secret}` } });
        return { status: res.status };
      } catch (e) {
        return { threw: e.name };
      }
    }, { addr: server.addr, secret: operatorSecret });
    assert.deepEqual(admin, { threw: 'TypeError' });
  } finally {
    await browser.close();
    pages.close();
    await stopServer(server);
  }
});

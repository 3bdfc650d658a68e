// The offline store in a real browser against a real `mkondo dev`: the demo
// opens with its history while the server is stopped (its page reloaded, the
// store in IndexedDB), keeps what is typed offline across a reload, and once
// the server is back sends it exactly once — with two tabs of the same user
// open, only one of them sends it (Web Locks), the other sees it arrive.
//
// While the server is stopped the page's files come from the test (as they
// would from a CDN or the HTTP cache); the WebSocket and the token endpoint
// find nobody.
//
// Run from the repository root after scripts/build-web.sh and
// `cargo build -p mkondo-server --bin mkondo`:  node --test web/tests/offline.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { launchChromium } from './lib/browser.mjs';
import { startServer, stopServer } from './lib/server.mjs';

const artifacts = 'target/web-tests';
const types = {
  '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css',
  '.wasm': 'application/wasm', '.json': 'application/json', '.ts': 'text/plain',
};

/** The files `mkondo dev` serves: `/sdk/…` from the package, the rest from web/demo. */
function staticFile(pathname) {
  if (pathname === '/') pathname = '/index.html';
  const file = pathname.startsWith('/sdk/')
    ? join('sdk-wasm/pkg', pathname.slice('/sdk/'.length))
    : join('web/demo', pathname);
  return existsSync(file) ? file : null;
}

/** A page of `context`, its errors and console logged. */
async function page(context) {
  const p = await context.newPage();
  p.on('pageerror', (e) => console.error('page error:', e));
  p.on('console', (m) => console.error('console:', m.text()));
  return p;
}

/** In the page: the demo store's outbox holds `n` entries (read from IndexedDB itself). */
function outboxHolds(n) {
  return new Promise((resolve) => {
    const open = indexedDB.open('mkondo-demo-alice');
    open.onsuccess = () => {
      const db = open.result;
      const count = db.transaction('outbox').objectStore('outbox').count();
      count.onsuccess = () => { db.close(); resolve(count.result === n); };
      count.onerror = () => { db.close(); resolve(false); };
    };
    open.onerror = () => resolve(false);
  });
}

const state = (p) => p.getByTestId('connection-state');
const message = (p, text) => p.getByTestId('message').filter({ hasText: text });

test('the demo works offline: history with the server stopped, sent once when it is back, from one tab of two', async () => {
  const database = join(mkdtempSync(join(tmpdir(), 'mkondo-offline-')), 'demo.db');
  let server = await startServer(database);
  // Responses the test fulfils carry no address: Chromium's Local Network
  // Access checks would take the page for a public one and block its
  // WebSocket to 127.0.0.1. Off, as for a page served from the same host.
  const browser = await launchChromium({ args: ['--disable-features=LocalNetworkAccessChecks'] });
  try {
    const context = await browser.newContext();
    // The page's own files never need the server (the API and /dev/token do).
    await context.route(`http://${server.addr}/**`, async (route) => {
      const url = new URL(route.request().url());
      const file = staticFile(url.pathname);
      if (!file) return route.continue();
      await route.fulfill({
        status: 200,
        contentType: types[extname(file)] ?? 'application/octet-stream',
        body: readFileSync(file),
      });
    });
    const alice = await page(context);
    await alice.goto(`http://${server.addr}/`);
    await state(alice).filter({ hasText: /^connected$/ }).waitFor();
    await alice.getByTestId('composer').fill('said before the outage');
    await alice.getByTestId('send').click();
    await message(alice, 'said before the outage').waitFor();

    // The server stops; the page is reloaded: the history is there at once,
    // from the store, while the client cannot connect.
    await stopServer(server);
    await state(alice).filter({ hasText: /^connecting$/ }).waitFor();
    await alice.reload();
    await message(alice, 'said before the outage').waitFor();
    assert.notEqual(await state(alice).textContent(), 'connected');

    // Typed offline, then the page reloaded again: the message waits in the
    // store's outbox, not in the page.
    await alice.getByTestId('composer').fill('typed while the server was down');
    await alice.getByTestId('send').click();
    await alice.waitForFunction(outboxHolds, 1);
    await alice.reload();
    await message(alice, 'said before the outage').waitFor();
    // A second tab of the same user opens beside it (the same IndexedDB).
    const second = await page(context);
    await second.goto(`http://${server.addr}/`);
    await message(second, 'said before the outage').waitFor();

    // The server is back: the message is sent once, by one of the two tabs,
    // and both show it once.
    server = await startServer(database, server.addr);
    for (const p of [alice, second]) {
      await state(p).filter({ hasText: /^connected$/ }).waitFor({ timeout: 30_000 });
      await message(p, 'typed while the server was down').waitFor();
    }
    await alice.evaluate(() => window.mkondo.ping());
    await second.evaluate(() => window.mkondo.ping());
    for (const p of [alice, second]) {
      assert.equal(await message(p, 'typed while the server was down').count(), 1);
    }
    // Acknowledged, so gone from the store.
    await alice.waitForFunction(outboxHolds, 0);
    const sent = [
      ...(await alice.evaluate(() => window.mkondoSent)),
      ...(await second.evaluate(() => window.mkondoSent)),
    ];
    assert.equal(sent.length, 1, `sent by exactly one tab: ${JSON.stringify(sent)}`);

    // The server holds it once: bob's page (another context) shows one copy.
    const bobContext = await browser.newContext();
    const bob = await page(bobContext);
    await bob.goto(`http://${server.addr}/index2.html`);
    await state(bob).filter({ hasText: /^connected$/ }).waitFor();
    await message(bob, 'typed while the server was down').waitFor();
    assert.equal(await message(bob, 'typed while the server was down').count(), 1);

    mkdirSync(artifacts, { recursive: true });
    await alice.screenshot({ path: join(artifacts, 'offline-alice.png') });
  } finally {
    await browser.close();
    await stopServer(server);
  }
});

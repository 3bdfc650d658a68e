// Web Push on the demo page in a real browser against a real `mkondo dev`: the
// page registers a Web Push subscription through @mkondo/sdk and the server
// lists it, and the demo's service worker (web/demo/sw.js) turns pushes in the
// format of docs/push.md ("What the app receives") into notifications — one
// per conversation, replaced by the next push with the same tag.
//
// Headless Chromium has no push service: `pushManager.subscribe()` fails, so
// the subscription is made here (a real P-256 key, an endpoint nothing
// answers), and pushes reach the worker through the DevTools protocol
// (`ServiceWorker.deliverPushMessage`), as the push service would after the
// browser decrypted them.
//
// Run from the repository root after scripts/build-web.sh and
// `cargo build -p mkondo-server --bin mkondo`:  node --test web/tests/push.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createECDH, randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { launchChromium } from './lib/browser.mjs';
import { devToken, startServer, stopServer } from './lib/server.mjs';

/** A push of a message in `conversation`, as the server sends it (preview `full`). */
function messagePush(conversation, seq, text) {
  return {
    title: 'bob',
    body: text,
    badge: seq,
    tag: `c_${conversation}`,
    mkondo: {
      type: 'message', app_id: 'demo', conversation_id: conversation, seq,
      message_id: `msg_${seq}`, sender_id: 'bob', sender_name: 'Bob', data: {},
    },
  };
}

/** The worker's notifications with `tag`, as plain objects. */
function notifications(page, tag) {
  return page.evaluate(async (tag) => {
    const shown = await (await navigator.serviceWorker.ready).getNotifications({ tag });
    return shown.map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data }));
  }, tag);
}

/**
 * Delivers `payload` with `push` and waits until a notification with `tag`
 * shows `body`; answers all those with `tag` at that moment. Polled from here:
 * `page.waitForFunction` does not await an async predicate.
 *
 * Headless Chromium now and then drops a DevTools-delivered push while it
 * starts the worker (seen on a loaded machine: no notification at all, the
 * same step passing on its own). A push service delivers again what a browser
 * did not take, so this does too, up to three times; the notifications of one
 * tag replace each other, so a repeat adds none.
 */
async function pushShown(push, payload, page, tag, body) {
  for (let attempt = 1; ; attempt++) {
    await push(payload);
    const deadline = Date.now() + 5_000;
    for (;;) {
      const all = await notifications(page, tag);
      if (all.some((n) => n.body === body)) return all;
      if (Date.now() > deadline) break;
      await delay(50);
    }
    assert.ok(attempt < 3, `no notification ${tag} shows ${JSON.stringify(body)} after ${attempt} deliveries`);
    console.error(`push to ${tag} not shown after 5 s: delivering it again`);
  }
}

test("the demo's service worker shows Web Push messages, one per conversation", async () => {
  // The endpoint is an https URL on loopback, which the server accepts only
  // with --outbound-allow-private; a name (push.example.net) would be refused
  // at registration, since the server resolves it and finds no public address.
  const server = await startServer(join(mkdtempSync(join(tmpdir(), 'mkondo-push-')), 'push.db'), '127.0.0.1:0', [
    '--outbound-allow-private',
  ]);
  const origin = `http://${server.addr}`;
  const browser = await launchChromium();
  try {
    const context = await browser.newContext();
    await context.grantPermissions(['notifications'], { origin });
    const page = await context.newPage();
    page.on('pageerror', (e) => console.error('page error:', e));
    page.on('console', (m) => console.error('console:', m.text()));

    const sw = await fetch(`${origin}/sw.js`);
    assert.equal(sw.status, 200);
    assert.match(sw.headers.get('content-type'), /^(text|application)\/javascript/, 'a service worker needs a JS content type');

    // DevTools first, so the worker's registration is reported as it happens.
    const cdp = await context.newCDPSession(page);
    const activated = new Promise((resolve) => {
      cdp.on('ServiceWorker.workerVersionUpdated', ({ versions }) => {
        const version = versions.find((v) => v.scriptURL === `${origin}/sw.js` && v.status === 'activated');
        if (version) resolve(version.registrationId);
      });
    });
    await cdp.send('ServiceWorker.enable');

    await page.goto(`${origin}/`);
    await page.getByTestId('connection-state').filter({ hasText: /^connected$/ }).waitFor();
    const registrationId = await activated;
    assert.equal(await page.evaluate(async () => (await navigator.serviceWorker.ready).active.scriptURL), `${origin}/sw.js`);

    // The subscription a push service would have handed over.
    const p256dh = createECDH('prime256v1');
    p256dh.generateKeys();
    const subscription = {
      endpoint: `https://127.0.0.1:9/send/${randomBytes(12).toString('base64url')}`,
      keys: { p256dh: p256dh.getPublicKey().toString('base64url'), auth: randomBytes(16).toString('base64url') },
    };
    const device = await page.evaluate((s) => window.mkondo.registerDevice(s), subscription);
    assert.equal(device.provider, 'webpush');
    const devices = await page.evaluate(() => window.mkondo.devices());
    assert.deepEqual(devices.map((d) => [d.id, d.provider, d.token]), [[device.id, 'webpush', subscription.endpoint]]);

    const push = (payload) => cdp.send('ServiceWorker.deliverPushMessage', { origin, registrationId, data: JSON.stringify(payload) });
    const { conversation_id: conversation } = await devToken(server.addr, 'alice', 'bob');
    const tag = `c_${conversation}`;

    const [first, ...others] = await pushShown(push, messagePush(conversation, 1, 'hello'), page, tag, 'hello');
    assert.deepEqual(others, []);
    assert.equal(first.title, 'bob');
    assert.equal(first.tag, tag);
    assert.equal(first.data.conversation_id, conversation);
    assert.equal(first.data.seq, 1);
    assert.equal(first.data.badge, 1, 'the unread count travels with the data');

    // The same conversation again: the notification is replaced, not added.
    const replaced = await pushShown(push, messagePush(conversation, 2, 'are you there?'), page, tag, 'are you there?');
    assert.deepEqual(replaced.map((n) => [n.body, n.data.seq]), [['are you there?', 2]]);

    // Preview `none`: no title or body in the push; the worker still shows one.
    const bare = messagePush('conv_other', 1, 'secret');
    delete bare.title;
    delete bare.body;
    const [none] = await pushShown(push, bare, page, 'c_conv_other', '');
    assert.equal(none.title, 'New message');
    assert.equal(none.data.conversation_id, 'conv_other');
    assert.equal((await notifications(page, tag)).length, 1, "the other conversation's notification stays");
  } finally {
    await browser.close();
    await stopServer(server);
  }
});

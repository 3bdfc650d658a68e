// The two-window demo in a real browser against a real `mkondo dev`: a message
// typed in one window appears in the other, typing shows in the other, the
// unread badge appears and clears on read, presence follows visibility, and a
// server restart shows `connecting` then
// `connected` in both windows while a message sent during the outage arrives
// exactly once. Screenshots of both windows are saved under target/web-tests/.
//
// Run from the repository root after scripts/build-web.sh and
// `cargo build -p mkondo-server --bin mkondo`:  node --test web/tests/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoWindows, launchChromium } from './lib/browser.mjs';
import { startServer, stopServer } from './lib/server.mjs';

const artifacts = 'target/web-tests';

test('two demo windows: chat, typing, unread badge, presence, read receipts, server restart', async () => {
  const database = join(mkdtempSync(join(tmpdir(), 'mkondo-web-')), 'demo.db');
  let server = await startServer(database);
  const browser = await launchChromium({ args: ['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream'] });
  try {
    const [alice, bob] = await demoWindows(browser, `http://${server.addr}`);

    // Typing in one window shows in the other.
    await alice.getByTestId('composer').pressSequentially('hel');
    await bob.getByTestId('typing').waitFor({ state: 'visible' });
    assert.match(await bob.getByTestId('typing').textContent(), /alice/);

    // A message sent in one window appears in the other, once.
    await alice.getByTestId('composer').fill('hello from alice');
    await alice.getByTestId('send').click();
    await bob.getByTestId('message').filter({ hasText: 'hello from alice' }).waitFor();
    await bob.getByTestId('typing').waitFor({ state: 'hidden' });

    // A hidden window counts unread messages (and its user shows `away`); shown
    // again, it reads them and the badge clears.
    const setVisibility = (page, state) => page.evaluate((state) => {
      Object.defineProperty(document, 'visibilityState', { value: state, configurable: true });
      document.dispatchEvent(new Event('visibilitychange'));
    }, state);
    await setVisibility(bob, 'hidden');
    await alice.getByTestId('presence').filter({ hasText: /^away$/ }).waitFor();
    await alice.getByTestId('composer').fill('are you there?');
    await alice.getByTestId('send').click();
    await bob.getByTestId('unread').filter({ hasText: /^1$/ }).waitFor();
    await setVisibility(bob, 'visible');
    await bob.getByTestId('unread').waitFor({ state: 'detached' });
    await alice.getByTestId('presence').filter({ hasText: /^online$/ }).waitFor();
    await alice.getByTestId('receipt').filter({ hasText: 'read' }).last().waitFor();

    // Stop the server: both windows show `connecting`.
    await stopServer(server);
    for (const page of [alice, bob]) {
      await page.getByTestId('connection-state').filter({ hasText: /^connecting$/ }).waitFor();
    }
    // Sent during the outage: queued, delivered once after the restart.
    await bob.getByTestId('composer').fill('sent while offline');
    await bob.getByTestId('send').click();
    server = await startServer(database, server.addr);
    for (const page of [alice, bob]) {
      await page.getByTestId('connection-state').filter({ hasText: /^connected$/ }).waitFor({ timeout: 30_000 });
    }
    await alice.getByTestId('message').filter({ hasText: 'sent while offline' }).waitFor();
    // Give a duplicate the chance to show up before counting.
    await alice.evaluate(() => window.mkondo.ping());
    assert.equal(await alice.getByTestId('message').filter({ hasText: 'sent while offline' }).count(), 1);
    assert.equal(await bob.getByTestId('message').filter({ hasText: 'sent while offline' }).count(), 1);

    mkdirSync(artifacts, { recursive: true });
    await alice.screenshot({ path: join(artifacts, 'alice.png') });
    await bob.screenshot({ path: join(artifacts, 'bob.png') });
  } finally {
    await browser.close();
    await stopServer(server);
  }
});

test('the call page sets up a WebRTC call between two windows through SDK signals', async () => {
  const database = join(mkdtempSync(join(tmpdir(), 'mkondo-call-')), 'demo.db');
  const server = await startServer(database);
  const browser = await launchChromium({ args: ['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream'] });
  try {
    const [alice, bob] = await demoWindows(browser, `http://${server.addr}`, ['/call.html', '/call.html?as=bob']);
    await alice.getByTestId('call').click();
    for (const page of [alice, bob]) {
      await page.getByTestId('call-state').filter({ hasText: /^connected$/ }).waitFor({ timeout: 20_000 });
    }
    await alice.getByTestId('hangup').click();
    await bob.getByTestId('call-state').filter({ hasText: /^idle$/ }).waitFor();
  } finally {
    await browser.close();
    await stopServer(server);
  }
});

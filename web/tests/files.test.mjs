// Files in the two-window demo, in headless Chromium against a real `mkondo
// dev`: Alice attaches a photo (its first PATCH cut, then resumed); Bob's
// window paints its BlurHash at once, then its thumbnail (through a signed
// link), then the full image on click. The message arrives once, and Alice's
// window showed the upload's progress.
//
// Run from the repository root after scripts/build-web.sh and
// `cargo build -p mkondo-server --bin mkondo`:  node --test web/tests/files.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoWindows, launchChromium } from './lib/browser.mjs';
import { startServer, stopServer } from './lib/server.mjs';

test('an image sent in one demo window appears in the other: blurhash, thumbnail, full image', async () => {
  const database = join(mkdtempSync(join(tmpdir(), 'mkondo-web-files-')), 'demo.db');
  const server = await startServer(database);
  const browser = await launchChromium();
  try {
    const [alice, bob] = await demoWindows(browser, `http://${server.addr}`);

    // A 1200×800 photo-like PNG, drawn by the browser (noise, so it is large
    // enough for progress to be seen: about 2.8 MB).
    const png = Buffer.from(await alice.evaluate(() => {
      const canvas = document.createElement('canvas');
      Object.assign(canvas, { width: 1200, height: 800 });
      const ctx = canvas.getContext('2d');
      const image = ctx.createImageData(1200, 800);
      for (let i = 0; i < image.data.length; i += 4) {
        const x = (i / 4) % 1200;
        image.data.set([x / 5, 80 + Math.random() * 60, 255 - x / 5, 255], i);
      }
      ctx.putImageData(image, 0, 0);
      return canvas.toDataURL('image/png').split(',')[1];
    }), 'base64');
    await alice.evaluate(() => {
      window.progressSeen = [];
      new MutationObserver(() => {
        const bar = document.getElementById('upload-progress');
        if (!bar.hidden) window.progressSeen.push(bar.value);
      }).observe(document.getElementById('upload-progress'), { attributes: true });
    });
    // The first PATCH is cut (a network error, as when the connection drops):
    // the SDK asks the server what it holds (HEAD) and sends again from there.
    const tus = [];
    await alice.route(/\/v1\/uploads\//, (route) => {
      const method = route.request().method();
      tus.push(method);
      return method === 'PATCH' && tus.filter((m) => m === 'PATCH').length === 1
        ? route.abort('connectionreset')
        : route.continue();
    });
    await alice.getByTestId('composer').fill('the sunset');
    await alice.getByTestId('attach').setInputFiles({ name: 'sunset.png', mimeType: 'image/png', buffer: png });

    // Bob: the message, once, painted from its BlurHash before the thumbnail.
    const message = bob.getByTestId('message').filter({ hasText: 'the sunset' });
    await message.getByTestId('thumbnail').waitFor();
    assert.equal(await bob.getByTestId('message').filter({ hasText: 'the sunset' }).count(), 1);
    const shown = await bob.evaluate(() => window.mkondoFiles.map(([what]) => what));
    assert.deepEqual(shown, ['blurhash', 'thumbnail'], 'the BlurHash first, then the thumbnail');
    const thumbnail = await message.getByTestId('thumbnail').evaluate((img) => [img.naturalWidth, img.naturalHeight]);
    assert.deepEqual(thumbnail, [320, 213], 'a thumbnail of at most 320 px, in proportion');

    // The BlurHash painted the photo's average colour (its red runs 0 to 240
    // left to right, green 80 to 140, blue 255 to 15: about 120, 110, 135).
    const [, , mean] = await bob.evaluate(() => window.mkondoFiles[0]);
    for (const [channel, expected] of [[0, 120], [1, 110], [2, 135]]) {
      assert.ok(Math.abs(mean[channel] - expected) < 30, `blurhash mean colour ${mean}`);
    }

    // A click opens the full image, as sent.
    await message.getByTestId('thumbnail').click();
    await bob.getByTestId('viewer').waitFor({ state: 'visible' });
    await bob.waitForFunction(() => document.getElementById('full-image').naturalWidth > 0);
    const full = await bob.getByTestId('full-image').evaluate((img) => [img.naturalWidth, img.naturalHeight]);
    assert.deepEqual(full, [1200, 800]);

    assert.deepEqual(tus, ['PATCH', 'HEAD', 'PATCH'], 'a cut PATCH is resumed after a HEAD');

    // Alice's window showed the upload's progress up to the end, and her
    // message carries the file too.
    const progress = await alice.evaluate(() => window.progressSeen);
    assert.ok(progress.length > 0 && progress.at(-1) === 1, `progress: ${progress}`);
    await alice.getByTestId('message').filter({ hasText: 'the sunset' }).getByTestId('thumbnail').waitFor();
  } finally {
    await browser.close();
    await stopServer(server);
  }
});

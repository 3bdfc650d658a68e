// Headless Chromium for the web tests, with the flags this machine's closed
// network needs (no background connections, no QUIC).
import { chromium } from 'playwright-core';

const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const baseArgs = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-dev-shm-usage',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

/** Launches Chromium with the base flags, `args` after them and `env` (whole) if given. */
export function launchChromium({ args = [], env } = {}) {
  return chromium.launch({ executablePath: chromiumPath, args: [...baseArgs, ...args], ...(env ? { env } : {}) });
}

/** Two pages in separate contexts (two users), their errors and console logged. */
export async function twoPages(browser) {
  const pages = [await (await browser.newContext()).newPage(), await (await browser.newContext()).newPage()];
  for (const page of pages) {
    page.on('pageerror', (e) => console.error('page error:', e));
    page.on('console', (m) => console.error('console:', m.text()));
  }
  return pages;
}

/** The two demo windows at `origin` (alice's `/`, bob's `/index2.html`, or
 * the given paths), once both show `connected`. */
export async function demoWindows(browser, origin, paths = ['/', '/index2.html']) {
  const pages = await twoPages(browser);
  await Promise.all(pages.map((page, i) => page.goto(`${origin}${paths[i]}`)));
  for (const page of pages) {
    await page.getByTestId('connection-state').filter({ hasText: /^connected$/ }).waitFor();
  }
  return pages;
}

// @mkondo/sdk in headless Chromium against a `mkondo dev` speaking TLS only. The
// browser trusts a test CA made here with openssl the way a machine's users
// trust a private CA: in the NSS database of its home directory (a temporary
// one), never by turning verification off. The two demo windows, served over
// https://, chat over wss://; from the trusted page, a client of the package
// pointed at a name the certificate does not carry, or at a server whose
// certificate comes from an unknown CA, never connects and says so in an
// `error` event (reason `connect_failed`); a browser without the CA refuses the
// page itself.
//
// Needs openssl and certutil (Debian's libnss3-tools). Run from the repository
// root after scripts/build-web.sh and `cargo build -p mkondo-server --bin mkondo`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoWindows, launchChromium } from './lib/browser.mjs';
import { startServer, stopServer } from './lib/server.mjs';


/** A CA named `name` in `dir` and a server certificate from it for DNS:localhost only. */
function makeCa(dir, name) {
  const run = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', `${name}-ca.key`, '-out', `${name}-ca.pem`, '-days', '2', '-subj', `/CN=Mkondo ${name} test CA`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  run('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', '/CN=localhost');
  writeFileSync(join(dir, `${name}.cnf`), 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n'
    + 'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n');
  run('x509', '-req', '-in', `${name}.csr`, '-CA', `${name}-ca.pem`, '-CAkey', `${name}-ca.key`,
    '-CAcreateserial', '-out', `${name}-cert.pem`, '-days', '2', '-extfile', `${name}.cnf`);
  return {
    ca: join(dir, `${name}-ca.pem`),
    args: ['--tls-cert', join(dir, `${name}-cert.pem`), '--tls-key', join(dir, `${name}-key.pem`)],
  };
}

/** A home directory whose NSS database (what Chromium on Linux trusts) holds `caFile`. */
function homeTrusting(dir, caFile) {
  const home = join(dir, 'home');
  const db = `sql:${join(home, '.pki', 'nssdb')}`;
  mkdirSync(join(home, '.pki', 'nssdb'), { recursive: true });
  execFileSync('certutil', ['-N', '-d', db, '--empty-password'], { stdio: 'pipe' });
  execFileSync('certutil', ['-A', '-d', db, '-n', 'Mkondo test CA', '-t', 'C,,', '-i', caFile], { stdio: 'pipe' });
  return home;
}

const port = (server) => server.addr.split(':').pop();

/**
 * In `page` (the demo, its package loaded): a client of `url` with a token from
 * the page's own server. Resolves with its first `error` event and its state then.
 */
function firstError(page, url) {
  return page.evaluate(async (url) => {
    const { Client } = await import('/sdk/index.js');
    const res = await fetch('/dev/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'carol' }),
    });
    const { token } = await res.json();
    const client = await Client.create({ url, token, connect: false });
    const error = new Promise((resolve) => {
      client.on('error', (e) => resolve({ code: e.code, reason: e.reason, message: e.message }));
    });
    client.connect();
    const seen = await error;
    const state = client.state;
    client.shutdown();
    return { ...seen, state };
  }, url);
}

test('the package chats over wss:// in Chromium trusting a test CA; wrong names and unknown CAs are refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mkondo-web-tls-'));
  const trusted = makeCa(dir, 'trusted');
  const unknown = makeCa(dir, 'unknown');
  const server = await startServer(join(dir, 'demo.db'), '127.0.0.1:0', trusted.args);
  const stranger = await startServer(join(dir, 'stranger.db'), '127.0.0.1:0', unknown.args);
  const origin = `https://localhost:${port(server)}`;
  const browser = await launchChromium({ env: { ...process.env, HOME: homeTrusting(dir, trusted.ca) } });
  const untrusting = await launchChromium({ env: { ...process.env, HOME: join(dir, 'empty-home') } });
  try {
    const [alice, bob] = await demoWindows(browser, origin);
    assert.equal(await alice.evaluate(() => location.protocol), 'https:');
    await alice.getByTestId('composer').fill('hello over tls');
    await alice.getByTestId('send').click();
    await bob.getByTestId('message').filter({ hasText: 'hello over tls' }).waitFor();

    // The certificate names localhost, not 127.0.0.1.
    const misnamed = await firstError(alice, `https://127.0.0.1:${port(server)}`);
    assert.equal(misnamed.reason, 'connect_failed', JSON.stringify(misnamed));
    assert.equal(misnamed.state, 'connecting', JSON.stringify(misnamed));
    // Signed by a CA the browser does not know.
    const untrusted = await firstError(alice, `https://localhost:${port(stranger)}`);
    assert.equal(untrusted.reason, 'connect_failed', JSON.stringify(untrusted));
    assert.equal(untrusted.state, 'connecting', JSON.stringify(untrusted));

    // A browser without the CA does not even load the page.
    const page = await (await untrusting.newContext()).newPage();
    await assert.rejects(page.goto(`${origin}/`), /ERR_CERT_AUTHORITY_INVALID/);
  } finally {
    await browser.close();
    await untrusting.close();
    await stopServer(server);
    await stopServer(stranger);
  }
});

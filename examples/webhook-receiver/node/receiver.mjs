// A Mkondo webhook receiver for Node 20, no dependencies.
//
// Verifies each call's Mkondo-Signature, refuses timestamps more than five
// minutes away from this machine's clock, handles each event id once, and
// prints every event it accepts as one JSON line on stdout.
//
//     MKONDO_WEBHOOK_SECRET=whsec_... node receiver.mjs [PORT]
//
// PORT (default 8000, or $PORT) on $HOST (default 127.0.0.1).

import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';

const SIGNATURE_HEADER = 'mkondo-signature'; // Node lower-cases header names
const TOLERANCE_SECONDS = 5 * 60;
const MAX_BODY_BYTES = 1024 * 1024;
// Ids remembered for de-duplication; a real receiver keeps them in its
// database, next to what processing the event changed, for at least as long
// as the server retries (a day).
const REMEMBERED_IDS = 100_000;

/**
 * Whether `header` ("t=<unix>,v1=<hex>[,v1=<hex>]") signs `body` with `secret`
 * at a time within TOLERANCE_SECONDS of `now`. Any v1 may match: while the
 * secret is being rotated the server signs with both.
 */
export function signatureValid(header, secret, body, now) {
  let timestamp = null;
  const signatures = [];
  for (const part of header.split(',')) {
    const at = part.indexOf('=');
    const key = part.slice(0, at).trim();
    const value = part.slice(at + 1).trim();
    if (key === 't') {
      if (timestamp !== null || !/^-?\d+$/.test(value)) return false;
      timestamp = Number(value);
    } else if (key === 'v1') {
      signatures.push(value);
    }
  }
  if (timestamp === null || Math.abs(now - timestamp) > TOLERANCE_SECONDS) return false;
  const expected = createHmac('sha256', secret)
    .update(`${timestamp}.`)
    .update(body)
    .digest();
  let matched = false;
  for (const candidate of signatures) {
    const given = Buffer.from(candidate, 'hex');
    // timingSafeEqual takes constant time but needs equal lengths; check every
    // candidate, not the first.
    if (given.length === expected.length && timingSafeEqual(given, expected)) matched = true;
  }
  return matched;
}

/** The event ids already handled, oldest forgotten first. */
const seen = new Set();
function firstTime(id) {
  if (seen.has(id)) return false;
  seen.add(id);
  if (seen.size > REMEMBERED_IDS) seen.delete(seen.values().next().value);
  return true;
}

function answer(res, status, text) {
  const data = JSON.stringify({ status: text });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
  res.end(data);
}

function main() {
  const secret = process.env.MKONDO_WEBHOOK_SECRET;
  if (!secret) {
    console.error("set MKONDO_WEBHOOK_SECRET to the endpoint's secret (whsec_...)");
    process.exit(1);
  }
  const port = Number(process.argv[2] ?? process.env.PORT ?? 8000);
  const host = process.env.HOST ?? '127.0.0.1';
  const server = createServer((req, res) => {
    if (req.method !== 'POST') return answer(res, 405, 'POST only');
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        answer(res, 413, 'too large');
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (res.writableEnded) return;
      const body = Buffer.concat(chunks);
      const header = req.headers[SIGNATURE_HEADER] ?? '';
      if (!signatureValid(header, secret, body, Math.floor(Date.now() / 1000))) {
        return answer(res, 400, 'bad signature or timestamp');
      }
      let event;
      try {
        event = JSON.parse(body.toString('utf8'));
      } catch {
        return answer(res, 400, 'not an event');
      }
      if (typeof event?.id !== 'string') return answer(res, 400, 'not an event');
      if (firstTime(event.id)) {
        // Processing goes here. This example prints the event. Where processing
        // can fail, record the id only once it succeeded, and keep the ids in
        // your database rather than in memory.
        process.stdout.write(`${JSON.stringify(event)}\n`);
      }
      // A repeat is answered 200 too, so the server stops sending it.
      answer(res, 200, 'ok');
    });
  });
  server.listen(port, host, () => {
    const { address, port: bound } = server.address();
    console.error(`listening on ${address}:${bound}`);
  });
}

main();

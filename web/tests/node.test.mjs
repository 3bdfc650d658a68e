// @mkondo/sdk in Node (imported by its package name, as a customer would), against
// a real `mkondo dev`: two clients chat, see each other type, read history, and
// get a MkondoError with a stable code. Node 20 needs --experimental-websocket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import init, { Client, MkondoError } from '@mkondo/sdk';
import { devToken, startServer, stopServer } from './lib/server.mjs';

/** Resolves with the first `event` payload that `accept` takes. */
function next(client, event, accept = () => true) {
  return new Promise((resolve) => {
    const off = client.on(event, (payload) => {
      if (accept(payload)) {
        off();
        resolve(payload);
      }
    });
  });
}

test('two Node clients chat through the package', async () => {
  const wasm = await readFile(new URL(import.meta.resolve('@mkondo/sdk/mkondo_bg.wasm')));
  await init({ module_or_path: wasm });
  const server = await startServer(join(mkdtempSync(join(tmpdir(), 'mkondo-node-')), 'db'));
  const url = `http://${server.addr}`;
  let providerCalls = 0;
  const { conversation_id: conv } = await devToken(server.addr, 'ana', 'ben');
  const ana = await Client.create({
    url,
    tokenProvider: async () => {
      providerCalls += 1;
      return (await devToken(server.addr, 'ana')).token;
    },
  });
  const ben = await Client.create({ url, token: (await devToken(server.addr, 'ben')).token });
  try {
    await Promise.all([ana.waitForState('connected'), ben.waitForState('connected')]);
    assert.equal(ana.state, 'connected');
    assert.equal(providerCalls, 1);
    await ben.subscribe(conv);
    assert.equal(ben.subscriptionState(conv), 'subscribed');

    const typing = next(ben, 'typing', (t) => t.typing);
    await ana.typing(conv);
    assert.deepEqual(await typing, { conversationId: conv, userId: 'ana', typing: true });

    const received = next(ben, 'message');
    const sent = await ana.sendMessage(conv, 'hello ben', { data: { mood: 'happy' } });
    assert.equal(sent.seq, 1);
    const got = await received;
    assert.equal(got.text, 'hello ben');
    assert.equal(got.senderId, 'ana');
    assert.deepEqual(got.data, { mood: 'happy' });

    const page = await ben.history(conv, { limit: 10 });
    assert.deepEqual(page.messages.map((m) => m.text), ['hello ben']);
    const read = await ben.markRead(conv, 1);
    assert.equal(read.lastReadSeq, 1);

    const err = await ana.history('no-such-conversation', {}).catch((e) => e);
    assert.ok(err instanceof MkondoError, `a MkondoError, not ${err}`);
    assert.ok(err instanceof Error);
    assert.equal(typeof err.code, 'string');
    assert.ok(['not_found', 'permission_denied'].includes(err.code), err.code);
    assert.equal(err.temporary, false);
    await assert.rejects(ana.markRead(conv, -1), (e) => e instanceof MkondoError && e.code === 'invalid_argument');
  } finally {
    ana.shutdown();
    ben.shutdown();
    await stopServer(server);
  }
});

// @mkondo/sdk in Node (imported by its package name, as a customer would), against
// a real `mkondo dev`: two clients chat, see each other type, read history, and
// get a MkondoError with a stable code. Node 20 needs --experimental-websocket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { mkdtempSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
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

test('push devices, mute, do not disturb and sign-out through the package', async () => {
  const wasm = await readFile(new URL(import.meta.resolve('@mkondo/sdk/mkondo_bg.wasm')));
  await init({ module_or_path: wasm });
  // Web Push endpoints must be https to public addresses unless the operator
  // allows private ones, as tests do (nothing is sent here).
  const server = await startServer(join(mkdtempSync(join(tmpdir(), 'mkondo-node-')), 'db'), '127.0.0.1:0', [
    '--outbound-allow-private',
  ]);
  const url = `http://${server.addr}`;
  const { conversation_id: conv } = await devToken(server.addr, 'ana', 'ben');
  const token = async () => (await devToken(server.addr, 'ana')).token;
  const phone = await Client.create({ url, tokenProvider: token });
  const laptop = await Client.create({ url, tokenProvider: token });
  const b64url = (bytes) => Buffer.from(bytes).toString('base64url');
  const key = new Uint8Array(65).fill(9);
  key[0] = 4;
  const subscription = {
    endpoint: `http://127.0.0.1:9/push/${'x'.repeat(8)}`,
    keys: { p256dh: b64url(key), auth: b64url(new Uint8Array(16).fill(3)) },
  };
  try {
    await Promise.all([phone.waitForState('connected'), laptop.waitForState('connected')]);
    const device = await phone.registerDevice(subscription);
    assert.match(device.id, /^dev_/);
    assert.equal(device.provider, 'webpush');
    assert.equal(device.token, subscription.endpoint);
    assert.equal((await phone.registerDevice(subscription)).id, device.id, 'a subscription registered again stays one device');
    await phone.registerDevice({ provider: 'fcm', token: 'node-fcm-token' });
    assert.deepEqual((await laptop.devices()).map((d) => d.provider).sort(), ['fcm', 'webpush']);
    await assert.rejects(phone.registerDevice({ provider: 'sms', token: 't' }), (e) => e instanceof MkondoError && e.code === 'invalid_argument');
    await assert.rejects(
      phone.registerDevice({ ...subscription, keys: { ...subscription.keys, auth: 'short' } }),
      (e) => e instanceof MkondoError && e.code === 'invalid_argument',
    );

    // A call invitation reaches the server: a callee not in the conversation
    // is refused like any signal.
    await assert.rejects(phone.ring(conv, 'nobody', '{"type":"offer"}'), (e) => e instanceof MkondoError && e.code === 'not_found');

    const updated = next(laptop, 'conversationUpdated', (c) => c.id === conv);
    assert.equal((await phone.mute(conv, true)).muted, true);
    assert.equal((await updated).muted, true, "the user's other client sees the mute");

    const until = new Date(Date.now() + 3_600_000);
    assert.equal(await phone.setDoNotDisturb(until), until.getTime());
    assert.equal(await phone.setDoNotDisturb(null), null);
    await assert.rejects(phone.setDoNotDisturb(1.5), (e) => e instanceof MkondoError && e.code === 'invalid_argument');

    await phone.signOut();
    assert.deepEqual(await laptop.devices(), [], "sign-out removed the phone's devices");
    await assert.rejects(phone.ping(), (e) => e instanceof MkondoError);
  } finally {
    phone.shutdown();
    laptop.shutdown();
    await stopServer(server);
  }
});

test('members, profiles, the directory, groups, blocks and unread through the package', async () => {
  const wasm = await readFile(new URL(import.meta.resolve('@mkondo/sdk/mkondo_bg.wasm')));
  await init({ module_or_path: wasm });
  const db = join(mkdtempSync(join(tmpdir(), 'mkondo-node-')), 'db');
  const server = await startServer(db);
  const url = `http://${server.addr}`;
  const { conversation_id: direct } = await devToken(server.addr, 'ana', 'ben');
  await devToken(server.addr, 'carmen', 'ana');
  const ana = await Client.create({ url, token: (await devToken(server.addr, 'ana')).token, conversationsLimit: 5 });
  const ben = await Client.create({ url, token: (await devToken(server.addr, 'ben')).token });
  const code = (c) => (e) => e instanceof MkondoError && e.code === c;
  try {
    await Promise.all([ana.waitForState('connected'), ben.waitForState('connected')]);
    assert.ok(ana.sessionId.length > 0);
    assert.equal(ana.cachedConversation(direct).id, direct);

    const group = await ana.createGroup({ name: 'crew', members: ['ben'] });
    const page = await ana.members(group.id, { limit: 1 });
    assert.deepEqual(page.items.map((m) => [m.userId, m.role, m.user.id]), [['ana', 'owner', 'ana']]);
    const rest = await ben.members(group.id, { cursor: page.nextCursor });
    assert.deepEqual(rest.items.map((m) => m.userId), ['ben']);
    assert.equal(rest.nextCursor, undefined);

    const seen = await ben.users(['ana', 'carmen']);
    assert.deepEqual(seen.users.map((u) => u.id), ['ana'], 'a stranger is left out');
    const me = await ana.updateProfile({ name: 'Ana N.', data: { city: 'Arusha' } });
    assert.equal(me.name, 'Ana N.');
    assert.equal(ana.user.name, 'Ana N.');
    await assert.rejects(ana.updateProfile({ name: 5 }), code('invalid_argument'));

    await assert.rejects(ben.updateConversation(group.id, { name: 'x' }), code('permission_denied'));
    assert.equal((await ana.setRole(group.id, 'ben', 'admin')).role, 'admin');
    const updated = next(ana, 'conversationUpdated', (c) => c.id === group.id && c.name === 'crew!');
    await ben.updateConversation(group.id, { name: 'crew!' });
    await updated;
    await assert.rejects(ben.setRole(group.id, 'ana', 'member'), code('permission_denied'));

    // The directory: off, then turned on by the operator's CLI.
    await assert.rejects(ana.searchUsers('car'), code('permission_denied'));
    execFileSync(process.env.MKONDO_BIN ?? 'target/debug/mkondo', [
      'app', 'update', '--app', 'demo', '--user-directory', 'true', '--database', db,
    ]);
    const found = await ana.searchUsers('CAR', { limit: 5 });
    assert.deepEqual(found.map((u) => u.id), ['carmen']);
    await assert.rejects(ana.searchUsers('c'), code('invalid_argument'));

    await ana.block('carmen');
    assert.deepEqual((await ana.blocks()).items.map((b) => b.userId), ['carmen']);
    assert.deepEqual(await ana.searchUsers('car'), [], 'a blocked user is not found');

    const before = await ben.unreadTotal();
    await ana.sendMessage(group.id, 'count me');
    assert.equal(await ben.unreadTotal(), before + 1);

    await assert.rejects(ben.deleteConversation(group.id), code('permission_denied'));
    const gone = next(ben, 'memberLeft', (l) => l.conversationId === group.id);
    await ana.deleteConversation(group.id);
    await gone;
    await assert.rejects(ben.members(group.id), code('not_found'));
  } finally {
    ana.shutdown();
    ben.shutdown();
    await stopServer(server);
  }
});

// Compiled (never run) by web/tests/run.sh with `tsc --strict`: the package's
// types accept typical use and reject misuse. Each `@ts-expect-error` line must
// be an error; if the types loosen (an `any`, an untyped `on`), tsc reports the
// directive as unused and the check fails.
import init, {
  Client, MkondoError,
  type ConnectionState, type Conversation, type Device, type ErrorCode, type Message, type Presence,
} from '@mkondo/sdk';

await init();
const c = await Client.create({ url: 'http://x', tokenProvider: async () => 't', transport: 'json' });

// Events: each name has its own payload type, and the remover is returned.
const off: () => void = c.on('message', (m: Message) => console.log(m.seq + 1, m.text, m.senderId));
c.on('state', (s) => { const now: ConnectionState = s.new; console.log(now, s.code, s.reason); });
c.on('typing', (t) => { const typing: boolean = t.typing; console.log(t.conversationId, t.userId, typing); });
c.on('read', (r) => console.log(r.userId, r.lastReadSeq));
c.on('presence', (p: Presence) => console.log(p.status === 'away', p.lastSeen));
c.on('messageUpdated', (u) => console.log(u.message.seq, u.change));
c.on('subscriptionState', (s) => console.log(s.new === 'subscribed', s.error?.code));
c.on('gap', (g) => console.log(g.fromSeq < g.toSeq));
c.on('signal', (s) => console.log(s.fromUserId, s.payload.length));
c.on('error', (e) => { const code: ErrorCode = e.code; console.log(code, e.temporary); });
c.on('conversationUpdated', (conv: Conversation) => console.log(conv.unreadCount));
c.off('message', console.log);
// @ts-expect-error: no such event
c.on('mesage', () => {});
// @ts-expect-error: a typing payload has no text
c.on('typing', (t) => console.log(t.text));
// @ts-expect-error: a message is not a presence
c.on('message', (p: Presence) => console.log(p.status));
// @ts-expect-error: the state is a string union, not a number
c.on('state', (s) => { const n: number = s.new; console.log(n); });

// Options objects.
const sent: Message = await c.sendMessage('conv', 'hi');
await c.sendMessage('conv', 'hi', { data: { mood: 'happy' }, clientId: 'c1', replyTo: sent.seq });
const page = await c.history('conv');
await c.history('conv', { before: 10, limit: 20 });
const list = await c.conversations({ cursor: page.more ? 'next' : undefined, limit: 5 });
await c.conversations();
const group: Conversation = await c.createGroup({ name: 'team', members: ['ben'], data: { topic: 'x' } });
await c.editMessage(group.id, 1, 'edited');
console.log(list.nextCursor, list.conversations?.[0]?.lastMessage?.text);
// @ts-expect-error: limit is a number
await c.history('conv', { limit: '10' });
// @ts-expect-error: no such option
await c.history('conv', { befor: 10 });
// @ts-expect-error: cursor is a string
await c.conversations({ cursor: 1 });
// @ts-expect-error: a name is a string
await c.createGroup({ name: 7, members: ['ben'] });
// @ts-expect-error: members is a list
await c.createGroup({ name: 'team', members: 'ben' });
// @ts-expect-error: replyTo is a seq
await c.sendMessage('conv', 'hi', { replyTo: 'first' });
// @ts-expect-error: create needs a url
await Client.create({ token: 't' });
// @ts-expect-error: the factory, not the constructor
new Client();

// States, cached values and errors.
const state: ConnectionState = c.state;
await c.waitForState('connected');
c.setAppState('background');
console.log(state, c.user?.id, c.cachedPresence('ben')?.status, c.cachedConversations()[0]?.id);
// @ts-expect-error: not a connection state
await c.waitForState('online');
// @ts-expect-error: not an app state
c.setAppState('hidden');
// @ts-expect-error: there may be no user yet
console.log(c.user.id);
// @ts-expect-error: a cached conversation has no `nam`
console.log(c.cachedConversations()[0]?.nam);
// Push: a browser subscription, or a native token; the devices come back typed.
declare const sub: PushSubscription;
const device: Device = await c.registerDevice(sub);
await c.registerDevice({ provider: 'fcm', token: 't' });
await c.registerDevice({ endpoint: 'https://push.example', keys: { p256dh: 'k', auth: 'a' } });
console.log(device.provider === 'webpush', (await c.devices())[0]?.token);
// @ts-expect-error: not a provider
await c.registerDevice({ provider: 'sms', token: 't' });
const muted: Conversation = await c.mute('x', true);
const until: number | null = await c.setDoNotDisturb(new Date());
console.log(muted.muted, until);
await c.ring('x', 'bob', '{"type":"offer"}');
// @ts-expect-error: the payload is a string
await c.ring('x', 'bob', { type: 'offer' });
await c.unregisterDevice(device.id);
await c.signOut();
try {
  await c.history('x', {});
} catch (e) {
  if (e instanceof MkondoError) {
    console.log(e.code === 'not_found', e.temporary, e.retryAfterMs);
    // @ts-expect-error: not an error code
    console.log(e.code === 'missing');
  }
}
off();

// People and groups: pages, profiles, roles.
const c2 = await Client.create({ url: 'http://x', token: 't', conversationsLimit: 50, appState: 'background' });
const members = await c2.members('conv', { limit: 10 });
console.log(members.items[0]?.user?.name, members.items[0]?.role === 'admin', members.nextCursor);
const seen = await c2.users(['ana']);
console.log(seen.users?.[0]?.name, seen.presence?.[0]?.status);
const found = await c2.searchUsers('an', { limit: 5 });
console.log(found[0]?.avatarUrl);
const me = await c2.updateProfile({ name: 'Ana', data: { city: 'Arusha' } });
console.log(me.id, c2.sessionId.length, c2.totalUnread + 1, c2.cachedConversation('conv')?.name);
const edited: Conversation = await c2.updateConversation('conv', { name: 'crew', iconUrl: 'https://i' });
console.log(edited.id, (await c2.setRole('conv', 'ben', 'admin')).userId);
await c2.deleteConversation('conv');
console.log((await c2.blocks()).items[0]?.userId, (await c2.unreadTotal()) + 1);
// @ts-expect-error: not a role
await c2.setRole('conv', 'ben', 'boss');
// @ts-expect-error: a profile's name is a string
await c2.updateProfile({ name: 5 });
// @ts-expect-error: not an app state
await Client.create({ url: 'http://x', token: 't', appState: 'hidden' });
// @ts-expect-error: a page's cursor is a string
await c2.members('conv', { cursor: 5 });
console.log((await c2.sendText('conv', 'hi')).seq);

// Files: an upload with progress, a message waiting for it, links to read it.
const upload = c2.upload('conv', new Blob(['x'], { type: 'text/plain' }), {
  name: 'x.txt', onProgress: (sent: number, total: number) => console.log(sent / total),
});
const withFile = await c2.sendMessage('conv', '', { attachmentIds: [await upload.id] });
const file = withFile.attachments?.[0];
console.log(file?.blurhash, file?.width, (await upload.done).length, upload.sent, upload.total);
const links = await c2.attachmentUrls('conv', [file?.id ?? '']);
console.log(links.urls[0]?.thumbnailUrl, links.expiresAt);
upload.cancel();
// @ts-expect-error: attachment ids are strings
await c2.sendMessage('conv', '', { attachmentIds: [5] });
// @ts-expect-error: a file is a Blob
c2.upload('conv', 'not a blob');

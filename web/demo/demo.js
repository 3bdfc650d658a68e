// The two-window demo: `/` is alice, `/index2.html` is bob. It uses the npm
// package exactly as an application would; only the token comes from the dev
// server's `/dev/token` instead of the application's own backend.
import init, { Client } from '/sdk/index.js';

const second = location.pathname.endsWith('index2.html');
const me = second ? 'bob' : 'alice';
const peer = second ? 'alice' : 'bob';
const $ = (id) => document.getElementById(id);

// The service worker shows push notifications (sw.js). Registering it asks
// the user nothing; the demo never asks for notification permission (an app
// asks from a click: a prompt on load is blocked or resented).
if ('serviceWorker' in navigator) {
  navigator.serviceWorker.register('/sw.js').catch((e) => console.error('service worker:', e));
}

// The conversation with the peer, kept for a start without the network (the
// offline store has its messages, but the token endpoint is out of reach).
const conversationKey = `mkondo-demo:${me}:conversation`;
let conversationId = localStorage.getItem(conversationKey);
async function fetchToken() {
  const res = await fetch('/dev/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: me, peer }),
  });
  if (!res.ok) throw new Error(`token: HTTP ${res.status}`);
  const body = await res.json();
  conversationId = body.conversation_id;
  localStorage.setItem(conversationKey, conversationId);
  return body.token;
}

const messages = new Map(); // seq → message
let peerReadSeq = 0;
let typingTimer = null;

function renderMessages() {
  const list = $('messages');
  list.replaceChildren();
  for (const m of [...messages.values()].sort((a, b) => Number(a.seq) - Number(b.seq))) {
    const li = document.createElement('li');
    li.dataset.testid = 'message';
    li.className = m.senderId === me ? 'mine' : '';
    li.textContent = `${m.senderId}: ${m.text ?? ''}`;
    if (m.senderId === me) {
      const r = document.createElement('span');
      r.className = 'receipt';
      r.dataset.testid = 'receipt';
      r.textContent = Number(m.seq) <= peerReadSeq ? 'read' : 'sent';
      li.append(r);
    }
    list.append(li);
  }
  list.scrollTop = list.scrollHeight;
}

function renderConversations(client) {
  const ul = $('conversations');
  ul.replaceChildren();
  for (const c of client.cachedConversations()) {
    const li = document.createElement('li');
    li.dataset.testid = 'conversation';
    li.textContent = c.peer?.name || c.peer?.id || c.name || c.id;
    const unread = Number(c.unreadCount ?? 0);
    if (unread > 0) {
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.dataset.testid = 'unread';
      badge.textContent = String(unread);
      li.append(badge);
    }
    ul.append(li);
  }
}

function renderPresence(p) {
  if (!p || p.userId !== peer) return;
  const el = $('presence');
  el.className = p.status;
  el.textContent = p.status === 'offline' && p.lastSeen
    ? `offline, last seen ${new Date(p.lastSeen).toLocaleTimeString()}`
    : p.status;
}

function add(m) {
  if (m.conversationId !== conversationId) return;
  messages.set(m.seq, m);
  renderMessages();
}

async function markRead(client) {
  const last = Math.max(0, ...[...messages.keys()].map(Number));
  if (last > 0 && document.visibilityState === 'visible') {
    await client.markRead(conversationId, last).catch(() => {});
  }
}

// Once the user has allowed notifications, the page keeps the server's copy
// of the push subscription current: on load (the browser may have replaced it
// while no page was open) and when the worker reports
// `pushsubscriptionchange`. Registering the same subscription again is a no-op.
async function registerPush(client) {
  if (!('serviceWorker' in navigator) || window.Notification?.permission !== 'granted') return;
  const key = await client.webPushKey();
  if (!key) return; // the app has no Web Push key (`mkondo app update --web-push-subject`)
  const registration = await navigator.serviceWorker.ready;
  const subscription = await registration.pushManager.getSubscription()
    ?? await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  await client.registerDevice(subscription);
}

async function main() {
  $('me').textContent = `Signed in as ${me}`;
  $('call-link').href = second ? '/call.html?as=bob' : '/call.html';
  $('peer-name').textContent = peer;
  await init();
  // The offline store (IndexedDB, one database per user of the demo): the page
  // opens with its conversation and recent messages before any network, and
  // what is typed offline is sent once the server answers, after a reload too.
  const client = await Client.create({
    url: location.origin, tokenProvider: fetchToken, connect: false,
    storeName: `mkondo-demo-${me}`, storeUserId: me,
  });
  window.mkondo = client; // for the console
  // Messages written in an earlier visit and sent now (the call that wrote
  // them is gone with that page): their outcome arrives as `sent`.
  window.mkondoSent = [];
  client.on('sent', (s) => {
    window.mkondoSent.push(s.clientId);
    if (s.message) add(s.message);
  });

  client.on('state', async (s) => {
    $('state').textContent = s.new;
    $('reconnecting').hidden = s.new !== 'connecting' || s.old !== 'connected';
    if (s.new === 'connected') {
      const page = await client.history(conversationId, { limit: 50 });
      for (const m of page.messages ?? []) messages.set(m.seq, m);
      renderMessages();
      renderConversations(client);
      markRead(client);
    }
  });
  client.on('message', (m) => {
    add(m);
    renderConversations(client);
    if (m.senderId !== me) markRead(client);
  });
  client.on('typing', (t) => {
    if (t.conversationId !== conversationId || t.userId === me) return;
    $('typing').hidden = !t.typing;
    $('typing').textContent = t.typing ? `${t.userId} is typing…` : '';
  });
  client.on('read', (r) => {
    if (r.userId === peer) {
      peerReadSeq = Math.max(peerReadSeq, Number(r.lastReadSeq ?? 0));
      renderMessages();
    }
    renderConversations(client);
  });
  client.on('presence', renderPresence);
  client.on('conversationUpdated', () => renderConversations(client));
  client.on('subscriptionState', (s) => {
    if (s.new === 'subscribed') renderPresence(client.cachedPresence(peer));
  });
  document.addEventListener('visibilitychange', () => markRead(client));

  // Learns the conversation before the first connect; without the network,
  // the one kept from the last visit, shown from the offline store.
  await fetchToken().catch((e) => {
    if (!conversationId) throw e;
  });
  for (const m of client.cachedMessages(conversationId)) messages.set(m.seq, m);
  renderMessages();
  renderConversations(client);
  client.subscribe(conversationId).then((r) => (r.presence ?? []).forEach(renderPresence)).catch(() => {});
  client.connect();
  registerPush(client).catch((e) => console.error('push:', e));
  navigator.serviceWorker?.addEventListener('message', (e) => {
    if (e.data?.type === 'mkondo:pushsubscriptionchange') registerPush(client).catch((err) => console.error('push:', err));
  });

  $('composer').addEventListener('input', () => {
    if (typingTimer) return;
    client.typing(conversationId).catch(() => {});
    typingTimer = setTimeout(() => (typingTimer = null), 3000);
  });
  $('form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = $('composer').value.trim();
    if (!text) return;
    $('composer').value = '';
    clearTimeout(typingTimer);
    typingTimer = null;
    client.typingStopped(conversationId).catch(() => {});
    add(await client.sendMessage(conversationId, text));
  });
}

main().catch((e) => {
  $('state').textContent = `error: ${e.message}`;
  console.error(e);
});

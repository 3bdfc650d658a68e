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
let client = null;

// Attachments. An image paints its BlurHash at once (it came with the
// message), then its thumbnail once loaded through a signed link, and the
// full image on click; another file is a link. What showed, in order, is
// kept in `window.mkondoFiles` for the browser test.
window.mkondoFiles = [];
const fileViews = new Map(); // message id → its files' element, kept across renders
const links = new Map(); // attachment id → its signed links (valid about an hour)

async function attachmentLink(id) {
  const known = links.get(id);
  if (known && Date.parse(known.expiresAt) > Date.now() + 60_000) return known;
  const result = await client.attachmentUrls(conversationId, [id]);
  const link = { ...result.urls[0], expiresAt: result.expiresAt };
  links.set(id, link);
  return link;
}

const DIGITS = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~';
const base83 = (s) => [...s].reduce((v, c) => v * 83 + DIGITS.indexOf(c), 0);
const toLinear = (v) => ((v /= 255) <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
const toSrgb = (v) => {
  v = Math.max(0, Math.min(1, v));
  return Math.round((v <= 0.0031308 ? v * 12.92 : 1.055 * v ** (1 / 2.4) - 0.055) * 255);
};

// The BlurHash algorithm's decoder, into a small canvas the page scales up.
function blurhashCanvas(hash, width, height) {
  const canvas = document.createElement('canvas');
  canvas.width = 32;
  canvas.height = 32;
  Object.assign(canvas.style, { width: `${width}px`, height: `${height}px`, background: '#ddd' });
  if (!hash) return canvas; // a thumbnail without a BlurHash: grey until it loads
  const size = base83(hash[0]);
  const [nx, ny] = [(size % 9) + 1, Math.floor(size / 9) + 1];
  const maxAc = (base83(hash[1]) + 1) / 166;
  const dc = base83(hash.slice(2, 6));
  const colors = [[dc >> 16, (dc >> 8) & 255, dc & 255].map(toLinear)];
  for (let i = 1; i < nx * ny; i++) {
    const v = base83(hash.slice(4 + i * 2, 6 + i * 2));
    const q = [Math.floor(v / 361), Math.floor(v / 19) % 19, v % 19];
    colors.push(q.map((c) => Math.sign(c - 9) * ((c - 9) / 9) ** 2 * maxAc));
  }
  const ctx = canvas.getContext('2d');
  const image = ctx.createImageData(32, 32);
  for (let y = 0; y < 32; y++) {
    for (let x = 0; x < 32; x++) {
      const rgb = [0, 0, 0];
      for (let j = 0; j < ny; j++) {
        for (let i = 0; i < nx; i++) {
          const basis = Math.cos((Math.PI * x * i) / 32) * Math.cos((Math.PI * y * j) / 32);
          colors[i + j * nx].forEach((c, k) => (rgb[k] += c * basis));
        }
      }
      image.data.set([...rgb.map(toSrgb), 255], 4 * (x + y * 32));
    }
  }
  ctx.putImageData(image, 0, 0);
  return canvas;
}

function meanColour(canvas) {
  const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
  const sum = [0, 0, 0];
  for (let i = 0; i < data.length; i += 4) [0, 1, 2].forEach((k) => (sum[k] += data[i + k]));
  return sum.map((v) => Math.round(v / (data.length / 4)));
}

async function showFull(id) {
  $('full-image').src = (await attachmentLink(id)).url;
  $('viewer').hidden = false;
  window.mkondoFiles.push(['full', id]);
}

function filesView(m) {
  let view = fileViews.get(m.id);
  if (view) return view;
  view = document.createElement('div');
  view.className = 'files';
  for (const a of m.attachments) {
    if (!a.blurhash && !a.thumbnail) {
      const link = document.createElement('a');
      link.href = '#';
      link.dataset.testid = 'file';
      link.textContent = `📎 ${a.name}`;
      link.onclick = async (e) => {
        e.preventDefault();
        window.open((await attachmentLink(a.id)).url);
      };
      view.append(link);
      continue;
    }
    const scale = Math.min(1, 160 / Math.max(a.width || 160, a.height || 160));
    const [w, h] = [Math.round((a.width || 160) * scale), Math.round((a.height || 160) * scale)];
    const placeholder = blurhashCanvas(a.blurhash, w, h);
    placeholder.dataset.testid = 'blurhash';
    placeholder.onclick = () => showFull(a.id);
    view.append(placeholder);
    window.mkondoFiles.push(['blurhash', a.id, meanColour(placeholder)]);
    if (!a.thumbnail) continue;
    attachmentLink(a.id).then((link) => {
      const img = new Image(w, h);
      img.alt = a.name;
      img.dataset.testid = 'thumbnail';
      img.onload = () => {
        placeholder.replaceWith(img);
        window.mkondoFiles.push(['thumbnail', a.id]);
      };
      img.onclick = () => showFull(a.id);
      img.src = link.thumbnailUrl;
    }).catch((e) => console.error('attachment:', e));
  }
  fileViews.set(m.id, view);
  return view;
}

function renderMessages() {
  const list = $('messages');
  list.replaceChildren();
  for (const m of [...messages.values()].sort((a, b) => Number(a.seq) - Number(b.seq))) {
    const li = document.createElement('li');
    li.dataset.testid = 'message';
    li.className = m.senderId === me ? 'mine' : '';
    li.textContent = `${m.senderId}: ${m.text ?? ''}`;
    if (m.attachments?.length) li.append(filesView(m));
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
  client = await Client.create({
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

  // A file goes with the text typed so far. The message is queued at once
  // and waits in the outbox until the upload finished; the bar shows the bytes.
  $('attach').addEventListener('change', async () => {
    const file = $('attach').files[0];
    $('attach').value = '';
    if (!file) return;
    const bar = $('upload-progress');
    Object.assign(bar, { hidden: false, value: 0 });
    const upload = client.upload(conversationId, file, {
      onProgress: (sent, total) => (bar.value = total ? sent / total : 1),
    });
    const text = $('composer').value.trim();
    $('composer').value = '';
    try {
      add(await client.sendMessage(conversationId, text, { attachmentIds: [await upload.id] }));
    } catch (e) {
      console.error('upload:', e);
    } finally {
      bar.hidden = true;
    }
  });
  $('viewer').addEventListener('click', () => ($('viewer').hidden = true));
}

main().catch((e) => {
  $('state').textContent = `error: ${e.message}`;
  console.error(e);
});

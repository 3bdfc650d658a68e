// The demo's service worker: shows the server's Web Push messages as
// notifications (docs/push.md, "What the app receives"). It must be served from
// the page's origin with a JavaScript content type; at `/sw.js` its scope is the
// whole demo. It has no `fetch` handler on purpose: the demo's requests and its
// WebSocket go to the network untouched.

self.addEventListener('push', (event) => {
  // A browser that gets a push and shows nothing is treated as abusing
  // `userVisibleOnly`, so even an unreadable payload shows something.
  let payload = {};
  try {
    payload = event.data?.json() ?? {};
  } catch {}
  event.waitUntil(self.registration.showNotification(payload.title ?? 'New message', {
    body: payload.body,
    // A later push of the same conversation replaces this one (its collapse id)
    // and, with `renotify`, alerts again; `renotify` without a tag is a TypeError.
    tag: payload.tag,
    renotify: Boolean(payload.tag),
    // `badge` is the user's total unread: a count, kept with the data. The
    // notification's own `badge` option is an icon URL.
    data: { ...payload.mkondo, badge: payload.badge },
  }));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const conversationId = event.notification.data?.conversation_id;
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    const open = windows.find((w) => w.focused) ?? windows[0];
    if (open) {
      // An app shows `conversationId`; the demo's window has one conversation.
      await open.focus();
      open.postMessage({ type: 'mkondo:notificationclick', conversationId });
    } else {
      await self.clients.openWindow(conversationId ? `/?conversation=${encodeURIComponent(conversationId)}` : '/');
    }
  })());
});

// The browser replaced (or dropped) the push subscription. The worker cannot
// register the new one: the SDK client, its connection and its token live in
// the page. So it tells the open pages, which subscribe again and call
// `registerDevice`; with no page open, the page does it when it next loads.
self.addEventListener('pushsubscriptionchange', (event) => {
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    for (const w of windows) w.postMessage({ type: 'mkondo:pushsubscriptionchange' });
  })());
});

// Types of @mkondo/sdk. Wire objects: camelCase fields, seqs and counts as numbers,
// timestamps as RFC 3339 strings,
// and fields at their default value (0, '', false) left out.
export * from './mkondo.js';
export { default } from './mkondo.js';

export type ErrorCode =
  | 'unauthenticated' | 'token_expired' | 'invalid_token' | 'permission_denied'
  | 'not_found' | 'already_exists' | 'invalid_argument' | 'too_large'
  | 'rate_limited' | 'blocked' | 'rejected' | 'unavailable' | 'internal';

/** The error every rejected promise carries. */
export declare class MkondoError extends Error {
  readonly name: 'MkondoError';
  readonly code: ErrorCode;
  readonly temporary: boolean;
  readonly reason: string;
  readonly retryAfterMs?: number;
}

export type ConnectionState = 'disconnected' | 'connecting' | 'connected';
export type SubscriptionState = 'unsubscribed' | 'subscribing' | 'subscribed';
export type AppState = 'foreground' | 'background';

export interface ClientOptions {
  /** `ws://host:port/v1/realtime` or `http://host:port` (`wss` / `https` for TLS). */
  url: string;
  token?: string;
  /** Asked for a token when there is none or it expires; throw `{ code: 'unauthorized' }` to stop. */
  tokenProvider?: () => string | Promise<string>;
  transport?: 'json' | 'protobuf';
  minDelayMs?: number;
  maxDelayMs?: number;
  requestTimeoutMs?: number;
  outboxLimit?: number;
  /** Start connecting at once (default true). */
  connect?: boolean;
  /** Follow online/offline, visibilitychange and pageshow (default true). */
  browserHooks?: boolean;
  /** How many recent conversations the connect reply carries into the cache (default 20, at most 100). */
  conversationsLimit?: number;
  /** The app state to connect in (default: the page's visibility with `browserHooks`, else foreground). */
  appState?: AppState;
  /**
   * The offline store: an IndexedDB database of this name, kept for `storeUserId`
   * (the user the app signs in as; give both or neither). `Client.create` then
   * resolves with the stored conversations and recent messages in the cache,
   * before any network, and what was written offline is sent once, after a
   * reload too. Tabs share it: one tab at a time sends what closed tabs left.
   */
  storeName?: string;
  storeUserId?: string;
}

export interface User { id: string; name?: string; avatarUrl?: string; data?: object; createdAt?: string; updatedAt?: string; deactivated?: boolean }
export interface Reaction { emoji: string; userIds: string[] }
export interface Message {
  id: string; conversationId: string; seq: number; senderId: string; kind?: string;
  text?: string; data?: object; clientId?: string; replyTo?: number; createdAt?: string;
  editedAt?: string; deletedAt?: string; reactions?: Reaction[];
  /** Files attached (read them through `client.attachmentUrls`). */
  attachments?: Attachment[];
}
/** A file in a message, as the server derived it: images have `width`,
 * `height`, a `blurhash` to paint at once and (`thumbnail: true`) a
 * thumbnail of at most 320 px. */
export interface Attachment {
  id: string; name: string; contentType: string; size: number;
  width?: number; height?: number; thumbnail?: boolean; blurhash?: string;
}
/** `client.upload(conversationId, file, options?)`. */
export interface UploadOptions {
  /** The name members see; the `File`'s name by default. */
  name?: string;
  /** The declared type; the `File`'s type by default. */
  contentType?: string;
  /** Told the bytes sent so far, and the file's size. */
  onProgress?: (sent: number, total: number) => void;
}
/** `client.attachmentUrls(conversationId, ids)`: absolute links, valid until `expiresAt`. */
export interface AttachmentUrls {
  urls: { id: string; url: string; thumbnailUrl?: string }[];
  expiresAt?: string;
}
export interface Presence { userId: string; status: 'online' | 'away' | 'offline'; lastSeen?: string }
export type Role = 'owner' | 'admin' | 'member';
export interface Member {
  userId: string; role?: Role; joinedAt?: string; lastReadSeq?: number; clearedSeq?: number; muted?: boolean;
  /** The member's profile, in `client.members()` pages. */
  user?: User;
}
/** A page of a list: `nextCursor` (absent on the last page) asks for the next. */
export interface Page<T> { items: T[]; nextCursor?: string }
/** `client.members(id, options?)`, `client.blocks(options?)`: `limit` 1 to 100 (default 50). */
export interface PageOptions { cursor?: string; limit?: number }
export interface UsersResult { users?: User[]; presence?: Presence[] }
export interface Block { userId: string; createdAt?: string }
/** `client.updateProfile(update)`: fields left out stay as they are. */
export interface ProfileUpdate { name?: string; avatarUrl?: string; data?: object }
/** `client.updateConversation(id, update)`: fields left out stay as they are. */
export interface ConversationUpdate { name?: string; iconUrl?: string; data?: object }
export interface Conversation {
  id: string; kind: 'group' | 'direct'; name?: string; iconUrl?: string; data?: object;
  createdAt?: string; lastSeq?: number; lastMessage?: Message; unreadCount?: number;
  lastReadSeq?: number; role?: string; muted?: boolean; memberCount?: number;
  peer?: User; peerPresence?: Presence; clearedSeq?: number; hidden?: boolean;
}
export interface HistoryResult { messages?: Message[]; more?: boolean }
export interface ConversationsResult { conversations?: Conversation[]; nextCursor?: string }
export interface ReadResult { lastReadSeq?: number; unreadCount?: number }
export interface SubscribeResult { conversation?: Conversation; presence?: Presence[]; typing?: string[] }
export interface ReadPush { conversationId: string; userId: string; lastReadSeq?: number; unreadCount?: number }
export interface MemberJoined { conversationId: string; member?: Member; user?: User; conversation?: Conversation }
export interface MemberLeft { conversationId: string; userId: string; removed?: boolean }
export interface Notification { id: string; payload?: object; createdAt?: string; expiresAt?: string }
export interface SignalPush { conversationId: string; fromUserId: string; payload: string }
/** A registered push device (`client.devices()`). */
export interface Device {
  id: string; provider: 'apns' | 'apns_voip' | 'fcm' | 'webpush'; token: string;
  p256dh?: string; auth?: string; topic?: string; sandbox?: boolean; createdAt?: string; updatedAt?: string;
}
/** `PushSubscription.toJSON()`, for `client.registerDevice()`. */
export interface PushSubscriptionJSON { endpoint: string; keys: { p256dh: string; auth: string } }
/** A native push token, for `client.registerDevice()` from a wrapper app. */
export interface PushToken { provider: 'fcm' | 'apns' | 'apns_voip'; token: string; topic?: string; sandbox?: boolean }

/** `client.sendMessage(conversationId, text, options?)`. */
export interface SendOptions {
  /** The application's own JSON, delivered as sent. */
  data?: object;
  /** Makes retries idempotent; the SDK sets one when absent. */
  clientId?: string;
  /** The seq of the message this one answers. */
  replyTo?: number;
  /** Uploads to attach (at most 10); the message waits for those still being sent. */
  attachmentIds?: string[];
}
/** `client.history(conversationId, options?)`: seqs exclusive; `limit` defaults to 50 (at most 100). */
export interface HistoryOptions { before?: number; after?: number; limit?: number }
/** `client.conversations(options?)`: `cursor` is the previous page's `nextCursor`. */
export interface ConversationsOptions { cursor?: string; limit?: number }
/** `client.createGroup(group)`. */
export interface NewGroup {
  name?: string;
  iconUrl?: string;
  data?: object;
  /** The other members (the caller joins as owner). */
  members?: string[];
}

/** What each `client.on(event, fn)` callback receives. */
export interface Events {
  state: { old: ConnectionState; new: ConnectionState; code: number; reason: string };
  message: Message;
  messageUpdated: { message: Message; change: string };
  typing: { conversationId: string; userId: string; typing: boolean };
  read: ReadPush;
  presence: Presence;
  memberJoined: MemberJoined;
  memberLeft: MemberLeft;
  conversationUpdated: Conversation;
  subscriptionState: { conversationId: string; old: SubscriptionState; new: SubscriptionState; error: MkondoError | null };
  notification: Notification;
  signal: SignalPush;
  gap: { conversationId: string; fromSeq: number; toSeq: number };
  error: MkondoError;
  /** A message written in an earlier run (kept by the offline store), sent now: its outcome. */
  sent: { clientId: string; message: Message | null; error: MkondoError | null };
}

declare module './mkondo.js' {
  interface Client {
    /**
     * Calls `callback` on every `event`; returns the function that removes it.
     * Throws a `MkondoError` (`invalid_argument`) for a name not in `Events`.
     */
    on<K extends keyof Events>(event: K, callback: (payload: Events[K]) => void): () => void;
    /** Removes a callback added with `on()`. */
    off<K extends keyof Events>(event: K, callback: (payload: Events[K]) => void): void;
  }
}

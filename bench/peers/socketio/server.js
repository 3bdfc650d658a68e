// The chat workload of the product notes, written the way those notes wrote it:
// socket.io v4 on Node. It is the peer that `mkondo-bench` measures Mkondo
// against, so it does what Mkondo does on the hot paths and nothing more:
//
// - authenticate: the handshake carries the same HS256 user token (verified
//   with the app's signing secret, `sub`, `app`, `exp`, `groups` claims);
// - join rooms: a token's `groups` puts the socket in those rooms at once
//   (Mkondo joins them on connect too), `join` adds one later;
// - broadcast a message to a room: `send` gives it the next per-room `seq`,
//   keeps it, emits `message` to the room (sender included, as Mkondo pushes
//   to every member) and acknowledges with the stored message;
// - 1:1 rooms: `start_direct` makes the pair's room and puts both in it.
//
// Messages live in memory only: a restart loses them. Mkondo writes every
// message to its SQLite file before it is delivered; that handicap is Mkondo's
// and stays in the figures.
//
// Configuration by environment: MKONDO_BENCH_SECRET (the HS256 secret),
// MKONDO_BENCH_APP (the app id tokens must name), PORT (0: any free port).
// Prints `socketio listening on HOST:PORT` once it accepts connections.
"use strict";

const crypto = require("node:crypto");
const http = require("node:http");
const { Server } = require("socket.io");

const SECRET = process.env.MKONDO_BENCH_SECRET || "";
const APP = process.env.MKONDO_BENCH_APP || "";
const PORT = Number(process.env.PORT || 0);
const HOST = process.env.HOST || "127.0.0.1";
if (!SECRET || !APP) {
  console.error("set MKONDO_BENCH_SECRET and MKONDO_BENCH_APP");
  process.exit(2);
}

/** The claims of a valid HS256 token for APP, or null. */
function verify(token) {
  if (typeof token !== "string") return null;
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  let header, claims;
  try {
    header = JSON.parse(Buffer.from(parts[0], "base64url").toString());
    claims = JSON.parse(Buffer.from(parts[1], "base64url").toString());
  } catch {
    return null;
  }
  if (header.alg !== "HS256") return null;
  const expected = crypto
    .createHmac("sha256", SECRET)
    .update(parts[0] + "." + parts[1])
    .digest();
  const given = Buffer.from(parts[2], "base64url");
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return null;
  const now = Math.floor(Date.now() / 1000);
  if (typeof claims.sub !== "string" || claims.app !== APP) return null;
  if (typeof claims.exp !== "number" || claims.exp + 30 < now) return null;
  return claims;
}

/** conversation id -> { members: Set<user>, seq, messages: [], byClientId: Map } */
const conversations = new Map();
let nextMessageId = 1;

function conversation(id) {
  let c = conversations.get(id);
  if (!c) {
    c = { members: new Set(), seq: 0, messages: [], byClientId: new Map() };
    conversations.set(id, c);
  }
  return c;
}

const httpServer = http.createServer();
const io = new Server(httpServer, {
  transports: ["websocket"],
  serveClient: false,
  // The same limit Mkondo applies to a frame.
  maxHttpBufferSize: 64 * 1024,
});

io.use((socket, next) => {
  const claims = verify(socket.handshake.auth && socket.handshake.auth.token);
  if (!claims) return next(new Error("invalid_token"));
  socket.data.user = claims.sub;
  socket.data.groups = Array.isArray(claims.groups) ? claims.groups : [];
  next();
});

io.on("connection", (socket) => {
  const user = socket.data.user;
  socket.join("user:" + user);
  for (const group of socket.data.groups) {
    conversation(group).members.add(user);
    socket.join("conv:" + group);
  }

  socket.on("join", (conversationId, ack) => {
    const c = conversations.get(conversationId);
    if (!c || !c.members.has(user)) return reply(ack, { error: "not_found" });
    socket.join("conv:" + conversationId);
    reply(ack, { ok: true });
  });

  socket.on("start_direct", (peer, ack) => {
    if (typeof peer !== "string" || peer === user) return reply(ack, { error: "invalid_argument" });
    const id = "dm:" + [user, peer].sort().join(":");
    const c = conversation(id);
    c.members.add(user);
    c.members.add(peer);
    io.in("user:" + user).socketsJoin("conv:" + id);
    io.in("user:" + peer).socketsJoin("conv:" + id);
    reply(ack, { id });
  });

  socket.on("send", (req, ack) => {
    const id = req && req.conversation_id;
    const c = typeof id === "string" && conversations.get(id);
    if (!c || !c.members.has(user)) return reply(ack, { error: "not_found" });
    if (typeof req.text !== "string" || req.text.length > 16 * 1024) {
      return reply(ack, { error: "invalid_argument" });
    }
    // A resent client_id answers the original message and delivers nothing new.
    if (req.client_id && c.byClientId.has(req.client_id)) {
      return reply(ack, { message: c.byClientId.get(req.client_id) });
    }
    const message = {
      id: String(nextMessageId++),
      conversation_id: id,
      seq: ++c.seq,
      sender_id: user,
      text: req.text,
      client_id: req.client_id || "",
      created_at: new Date().toISOString(),
    };
    c.messages.push(message);
    if (message.client_id) c.byClientId.set(message.client_id, message);
    io.to("conv:" + id).emit("message", message);
    reply(ack, { message });
  });
});

function reply(ack, value) {
  if (typeof ack === "function") ack(value);
}

httpServer.listen(PORT, HOST, () => {
  const addr = httpServer.address();
  console.log(`socketio listening on ${addr.address}:${addr.port}`);
});

process.on("SIGTERM", () => {
  io.close();
  process.exit(0);
});

// A two-party WebRTC call whose set-up travels as Mkondo `signal` frames over the
// real-time WebSocket (JSON encoding, docs/protocol.md). The server relays each
// payload to the addressed member's connected devices and stores nothing; the
// payloads here are JSON of our own choosing:
//   {"type":"offer","sdp":…}  {"type":"answer","sdp":…}
//   {"type":"candidate","candidate":{…}}  {"type":"hangup"}
// Media then flows browser to browser; the server never sees it.
"use strict";

const $ = (id) => document.getElementById(id);

let ws = null;
let nextId = 1;
const pending = new Map(); // command id → command name, to report its error
let pc = null;
let localStream = null;
let conversation = null; // the conversation the call is signaled in
let peer = null; // the user on the other end
let earlyCandidates = []; // ICE candidates that came before the remote description

function log(text) {
  const line = `${new Date().toLocaleTimeString()} ${text}\n`;
  $("log").textContent += line;
  $("log").scrollTop = $("log").scrollHeight;
}

function setState(text) {
  $("state").textContent = text;
}

function send(command, body) {
  const id = nextId++;
  pending.set(id, command);
  ws.send(JSON.stringify({ id, [command]: body }));
}

function sendSignal(message) {
  send("signal", {
    conversation_id: conversation,
    to_user_id: peer,
    payload: JSON.stringify(message),
  });
}

function connect() {
  if (ws) ws.close();
  setState("connecting");
  ws = new WebSocket($("url").value.trim(), "mkondo.v1.json");
  ws.onopen = () => send("connect", { token: $("token").value.trim() });
  ws.onmessage = (event) => {
    // One WebSocket message may carry several frames, one per line.
    for (const line of String(event.data).split("\n")) {
      if (line.trim()) onFrame(JSON.parse(line));
    }
  };
  ws.onclose = (event) => {
    setState(`disconnected (${event.code}${event.reason ? " " + event.reason : ""})`);
    $("call").disabled = true;
    endCall();
  };
}

function onFrame(frame) {
  if (frame.push) return onPush(frame.push);
  const command = pending.get(frame.id);
  pending.delete(frame.id);
  if (frame.error) {
    log(`${command} failed: ${frame.error.code}: ${frame.error.message}`);
    if (command === "signal") endCall();
    return;
  }
  const connected = frame.reply && frame.reply.connect;
  if (connected) {
    setState(`connected as ${connected.user.id}`);
    $("call").disabled = false;
  }
}

function onPush(push) {
  if (push.ping) {
    ws.send(JSON.stringify({ pong: {} }));
  } else if (push.signal) {
    onSignal(push.signal).catch((e) => {
      log(`call set-up failed: ${e}`);
      endCall();
    });
  } else if (push.disconnect) {
    log(`server closes: ${push.disconnect.code} ${push.disconnect.reason}`);
  }
}

async function onSignal({ conversation_id, from_user_id, payload }) {
  const message = JSON.parse(payload);
  if (message.type === "offer") {
    if (pc) {
      log(`${from_user_id} called while we are in a call: ignored`);
      return;
    }
    if (!confirm(`${from_user_id} is calling. Answer?`)) {
      conversation = conversation_id;
      peer = from_user_id;
      sendSignal({ type: "hangup" });
      peer = null;
      return;
    }
    conversation = conversation_id;
    peer = from_user_id;
    await startPeer();
    await pc.setRemoteDescription({ type: "offer", sdp: message.sdp });
    await addEarlyCandidates();
    await pc.setLocalDescription(await pc.createAnswer());
    sendSignal({ type: "answer", sdp: pc.localDescription.sdp });
    log(`answered ${peer}`);
    return;
  }
  if (from_user_id !== peer || conversation_id !== conversation) return;
  if (message.type === "answer" && pc) {
    await pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
    await addEarlyCandidates();
  } else if (message.type === "candidate") {
    if (pc && pc.remoteDescription) {
      await pc.addIceCandidate(message.candidate);
    } else {
      earlyCandidates.push(message.candidate);
    }
  } else if (message.type === "hangup") {
    log(`${peer} hung up`);
    endCall();
  }
}

async function addEarlyCandidates() {
  const queued = earlyCandidates;
  earlyCandidates = [];
  for (const candidate of queued) await pc.addIceCandidate(candidate);
}

async function startPeer() {
  localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  $("local").srcObject = localStream;
  const stun = $("ice").value.trim();
  pc = new RTCPeerConnection({ iceServers: stun ? [{ urls: stun }] : [] });
  for (const track of localStream.getTracks()) pc.addTrack(track, localStream);
  pc.onicecandidate = (event) => {
    if (event.candidate) sendSignal({ type: "candidate", candidate: event.candidate.toJSON() });
  };
  pc.ontrack = (event) => {
    $("remote").srcObject = event.streams[0];
  };
  pc.onconnectionstatechange = () => log(`call ${pc ? pc.connectionState : "closed"}`);
  $("call").disabled = true;
  $("hangup").disabled = false;
}

async function call() {
  conversation = $("conversation").value.trim();
  peer = $("peer").value.trim();
  if (!conversation || !peer) {
    log("give the conversation id and the user to call");
    return;
  }
  await startPeer();
  await pc.setLocalDescription(await pc.createOffer());
  sendSignal({ type: "offer", sdp: pc.localDescription.sdp });
  log(`calling ${peer}`);
}

function hangUp() {
  if (peer) sendSignal({ type: "hangup" });
  endCall();
}

function endCall() {
  if (pc) pc.close();
  pc = null;
  if (localStream) localStream.getTracks().forEach((t) => t.stop());
  localStream = null;
  $("local").srcObject = null;
  $("remote").srcObject = null;
  peer = null;
  earlyCandidates = [];
  $("hangup").disabled = true;
  $("call").disabled = !(ws && ws.readyState === WebSocket.OPEN);
}

$("connect").onclick = connect;
$("call").onclick = () => call().catch((e) => {
  log(`call failed: ${e}`);
  endCall();
});
$("hangup").onclick = hangUp;

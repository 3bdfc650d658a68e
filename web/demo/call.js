// A two-party WebRTC call whose set-up (offer, answer, ICE candidates, hang-up)
// travels as Mkondo signals through @mkondo/sdk: `sendSignal` out,
// `on('signal')` in. The server relays signals and stores nothing; media flows
// browser to browser. The callee answers at once (it is a demo).
import init, { Client } from '/sdk/index.js';

const me = new URLSearchParams(location.search).get('as') === 'bob' ? 'bob' : 'alice';
const peer = me === 'bob' ? 'alice' : 'bob';
const $ = (id) => document.getElementById(id);

let client = null;
let conversationId = null;
let pc = null;
let localStream = null;
let earlyCandidates = [];

async function fetchToken() {
  const res = await fetch('/dev/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: me, peer }),
  });
  const body = await res.json();
  conversationId = body.conversation_id;
  return body.token;
}

const signal = (message) => client.sendSignal(conversationId, peer, JSON.stringify(message));

async function startPeer() {
  localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  $('local').srcObject = localStream;
  pc = new RTCPeerConnection({ iceServers: [] });
  for (const track of localStream.getTracks()) pc.addTrack(track, localStream);
  pc.onicecandidate = (e) => e.candidate && signal({ type: 'candidate', candidate: e.candidate.toJSON() });
  pc.ontrack = (e) => ($('remote').srcObject = e.streams[0]);
  pc.onconnectionstatechange = () => ($('call-state').textContent = pc ? pc.connectionState : 'idle');
  $('call').disabled = true;
  $('hangup').disabled = false;
}

async function addEarlyCandidates() {
  const queued = earlyCandidates;
  earlyCandidates = [];
  for (const c of queued) await pc.addIceCandidate(c);
}

function endCall() {
  pc?.close();
  pc = null;
  localStream?.getTracks().forEach((t) => t.stop());
  localStream = null;
  earlyCandidates = [];
  $('call-state').textContent = 'idle';
  $('hangup').disabled = true;
  $('call').disabled = client?.state !== 'connected';
}

async function onSignal({ conversationId: conv, fromUserId, payload }) {
  if (conv !== conversationId || fromUserId !== peer) return;
  const message = JSON.parse(payload);
  if (message.type === 'offer' && !pc) {
    await startPeer();
    await pc.setRemoteDescription({ type: 'offer', sdp: message.sdp });
    await addEarlyCandidates();
    await pc.setLocalDescription(await pc.createAnswer());
    await signal({ type: 'answer', sdp: pc.localDescription.sdp });
  } else if (message.type === 'answer' && pc) {
    await pc.setRemoteDescription({ type: 'answer', sdp: message.sdp });
    await addEarlyCandidates();
  } else if (message.type === 'candidate') {
    if (pc?.remoteDescription) await pc.addIceCandidate(message.candidate);
    else earlyCandidates.push(message.candidate);
  } else if (message.type === 'hangup') {
    endCall();
  }
}

async function main() {
  $('me').textContent = `Signed in as ${me}, calling ${peer}`;
  await init();
  client = await Client.create({ url: location.origin, tokenProvider: fetchToken });
  window.mkondo = client;
  client.on('state', (s) => {
    $('state').textContent = s.new;
    $('call').disabled = s.new !== 'connected' || pc !== null;
  });
  client.on('signal', (s) => onSignal(s).catch((e) => { console.error(e); endCall(); }));
  $('call').onclick = async () => {
    await startPeer();
    await pc.setLocalDescription(await pc.createOffer());
    await signal({ type: 'offer', sdp: pc.localDescription.sdp });
  };
  $('hangup').onclick = () => {
    signal({ type: 'hangup' }).catch(() => {});
    endCall();
  };
}

main().catch((e) => {
  $('state').textContent = `error: ${e.message}`;
  console.error(e);
});

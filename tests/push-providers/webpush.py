"""A loopback Web Push service (RFC 8030), the user agent's end included.

``POST /_subscriptions`` with ``{"application_server_key": "<base64url>"}``
plays the browser's ``PushManager.subscribe``: it makes the subscription's
P-256 key pair and 16-byte auth secret with ``cryptography`` and answers
``{"id", "endpoint", "keys": {"p256dh", "auth"}}`` (``toJSON()``'s shape).

``POST /push/<id>`` then checks a push as a push service and a browser
would:

- ``Authorization: vapid t=<JWT>, k=<key>`` (RFC 8292): ``k`` is the key the
  subscription was made with, and PyJWT verifies ``t`` against it: ES256,
  ``aud`` = this service's origin, ``exp`` not past and at most 24 hours
  ahead, ``sub`` a ``mailto:`` or ``https:`` URI;
- ``TTL`` (required), ``Urgency`` and ``Topic`` (RFC 8030 sections 5.2-5.4);
- ``Content-Encoding: aes128gcm`` and a body of at most 4096 bytes, which
  ``http_ece`` decrypts with the subscription's private key and auth secret
  (RFC 8291); the plaintext is kept in the log.

A failed check gets the refusal a push service would give (400, 401, 403,
413); a passed one the next scripted answer for the subscription id (see
common.py), or 201 with a ``Location``. An unknown subscription gets 404.
"""

import json
import re
import secrets
import time

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from common import (Refusal, Server, b64url, b64url_decode, listen, respond, retry_after_header,
                    run)

PUSH = re.compile(r"^/push/([A-Za-z0-9_-]+)$")
TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
URGENCY = {"very-low", "low", "normal", "high"}


def parse_vapid(header):
    """``vapid t=..., k=...`` (RFC 8292 section 3) as a dict."""
    scheme, _, rest = (header or "").partition(" ")
    if scheme.lower() != "vapid":
        raise Refusal(401, f"authorization scheme {scheme!r} is not vapid")
    params = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise Refusal(401, f"bad vapid parameter {part!r}")
        params[name.strip().lower()] = value.strip()
    if "t" not in params or "k" not in params:
        raise Refusal(401, "vapid needs t and k")
    return params


class WebPush(Server):
    def __init__(self, origin):
        super().__init__()
        self.origin = origin
        self.subscriptions = {}
        self.delivered = 0

    async def handle(self, request, send):
        if request.path == "/_subscriptions" and request.method == "POST":
            await self.subscribe(request, send)
            return
        match = PUSH.match(request.path)
        if not match or request.method != "POST":
            await respond(send, 404, b"no such resource")
            return
        await self.push(request, send, match.group(1))

    async def subscribe(self, request, send):
        options = json.loads(request.body or b"{}")
        key = ec.generate_private_key(ec.SECP256R1())
        auth = secrets.token_bytes(16)
        sub_id = secrets.token_urlsafe(12)
        self.subscriptions[sub_id] = {"key": key, "auth": auth,
                                      "server_key": options.get("application_server_key")}
        public = key.public_key().public_bytes(serialization.Encoding.X962,
                                               serialization.PublicFormat.UncompressedPoint)
        await respond(send, 201, {"id": sub_id, "endpoint": f"{self.origin}/push/{sub_id}",
                                  "keys": {"p256dh": b64url(public), "auth": b64url(auth)}})

    async def push(self, request, send, sub_id):
        record = {"at": time.time(), "subscription": sub_id, "errors": [],
                  "headers": {k: v for k, v in request.headers.items() if k != "authorization"}}
        self.state.received.append(record)
        subscription = self.subscriptions.get(sub_id)
        try:
            if subscription is None:
                raise Refusal(404, "no such subscription")
            record["vapid"] = self.check_vapid(request, subscription)
            self.check_headers(request, record)
            record["body_length"] = len(request.body)
            if len(request.body) > 4096:
                raise Refusal(413, "payload larger than 4096 bytes")
            try:
                plaintext = http_ece.decrypt(request.body, private_key=subscription["key"],
                                             auth_secret=subscription["auth"], version="aes128gcm")
            except Exception as e:  # http_ece raises several kinds
                raise Refusal(400, f"decryption failed: {e!r}")
            record["record_size"] = int.from_bytes(request.body[16:20], "big")
            record["plaintext_b64"] = b64url(plaintext)
            try:
                record["plaintext"] = plaintext.decode()
            except UnicodeDecodeError:
                record["plaintext"] = None
        except Refusal as refusal:
            record["errors"].append(refusal.reason)
            record["answer"] = refusal.status
            await respond(send, refusal.status, refusal.reason.encode())
            return
        scripted = await self.state.take(sub_id, {"status": 201})
        status = scripted["status"]
        record["answer"] = status
        if status == 201:
            self.delivered += 1
            location = f"{self.origin}/message/{self.delivered}"
            await respond(send, 201, b"", [("location", location)])
            return
        await respond(send, status, scripted.get("body", "scripted").encode(),
                      retry_after_header(scripted))

    def check_vapid(self, request, subscription):
        params = parse_vapid(request.header("authorization"))
        try:
            raw = b64url_decode(params["k"])
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        except ValueError:
            raise Refusal(401, "k is not a P-256 point")
        if len(raw) != 65:
            raise Refusal(401, "k is not an uncompressed point")
        if subscription["server_key"] and params["k"] != subscription["server_key"]:
            raise Refusal(403, "k is not the subscription's application server key")
        try:
            header = jwt.get_unverified_header(params["t"])
            if header.get("alg") != "ES256":
                raise jwt.InvalidTokenError(f"alg {header.get('alg')!r}")
            claims = jwt.decode(params["t"], public, algorithms=["ES256"], audience=self.origin,
                                options={"require": ["aud", "exp", "sub"]})
        except jwt.PyJWTError as e:
            raise Refusal(403, f"VAPID token: {e}")
        if claims["exp"] > time.time() + 24 * 3600:
            raise Refusal(403, "VAPID token expires more than 24 hours ahead")
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            raise Refusal(403, f"VAPID sub {claims['sub']!r}")
        return {"header": header, "claims": claims, "k": params["k"]}

    def check_headers(self, request, record):
        ttl = request.header("ttl")
        if ttl is None or not ttl.isdigit():
            raise Refusal(400, f"TTL {ttl!r}")
        record["ttl"] = int(ttl)
        encoding = request.header("content-encoding")
        if encoding != "aes128gcm":
            raise Refusal(415, f"Content-Encoding {encoding!r}")
        urgency = request.header("urgency")
        if urgency is not None and urgency not in URGENCY:
            raise Refusal(400, f"Urgency {urgency!r}")
        record["urgency"] = urgency
        topic = request.header("topic")
        if topic is not None and not TOPIC.match(topic):
            raise Refusal(400, f"Topic {topic!r}")
        record["topic"] = topic


def main():
    sock = listen()
    port = sock.getsockname()[1]
    origin = f"http://127.0.0.1:{port}"
    run(WebPush(origin), sock, {"url": origin, "port": port})


if __name__ == "__main__":
    main()

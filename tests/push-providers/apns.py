"""A loopback APNs: HTTP/2 over TLS, token-based authentication.

At start it makes, with ``cryptography``, what Apple would hand out: the
app's signing key as a ``.p8`` (PKCS#8 PEM, P-256) written to ``--p8-out``,
and for the TLS connection a throw-away CA and a server certificate for
127.0.0.1 signed by it, the CA written to ``--ca-out`` so the client can
trust it. Then it checks every ``POST /3/device/<token>`` as Apple documents
("Sending notification requests to APNs"):

- HTTP/2 only (ALPN ``h2``);
- ``authorization: bearer <JWT>``: verified by PyJWT against the ``.p8``'s
  public key, ES256, header ``kid`` = the key id, claims ``iss`` = the team
  id and an ``iat`` not older than an hour;
- ``apns-topic`` (the bundle id, ``.voip`` for VoIP), ``apns-push-type``,
  ``apns-priority``, ``apns-expiration``, ``apns-collapse-id`` (64 bytes at
  most), ``apns-id`` (a UUID);
- a JSON body of at most 4 KB (5 KB for VoIP) with an ``aps`` dictionary of
  the documented keys and types.

A failed check is answered with Apple's status and reason for it. A passed
one takes the next scripted answer for its device token (see common.py),
or 200 with the ``apns-id``.

Usage: apns.py --p8-out F --ca-out F --key-id K --team-id T --bundle-id B
"""

import argparse
import datetime
import ipaddress
import json
import os
import re
import tempfile
import time
import uuid

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from common import Refusal, Server, listen, respond, retry_after_header, run

PUSH_TYPES = {"alert", "background", "voip", "location", "complication", "fileprovider", "mdm",
              "liveactivity", "pushtotalk", "widgets", "controls"}
UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
TOKEN = re.compile(r"^/3/device/([0-9a-fA-F]+)$")


def make_tls(directory):
    """A CA and a certificate for 127.0.0.1 / localhost signed by it."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loopback APNs test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True,
                          crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    certfile = os.path.join(directory, "server.pem")
    keyfile = os.path.join(directory, "server.key")
    with open(certfile, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(keyfile, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return ca.public_bytes(serialization.Encoding.PEM), certfile, keyfile


class Apns(Server):
    def __init__(self, public_key, key_id, team_id, bundle_id):
        super().__init__()
        self.public_key = public_key
        self.key_id = key_id
        self.team_id = team_id
        self.bundle_id = bundle_id

    async def handle(self, request, send):
        match = TOKEN.match(request.path)
        record = {"at": time.time(), "path": request.path, "http_version": request.http_version,
                  "headers": {k: v for k, v in request.headers.items() if k != "authorization"},
                  "errors": []}
        self.state.received.append(record)
        try:
            if request.http_version != "2":
                raise Refusal(400, "HTTP2Required")
            if request.method != "POST":
                raise Refusal(405, "MethodNotAllowed")
            if not match:
                raise Refusal(404, "BadPath")
            token = match.group(1)
            record["device_token"] = token
            if len(token) != 64:
                raise Refusal(400, "BadDeviceToken")
            self.check_provider_token(request, record)
            push_type = self.check_headers(request, record)
            record["payload"] = self.check_payload(request.body, push_type)
        except Refusal as refusal:
            record["errors"].append(refusal.reason)
            record["answer"] = refusal.status
            await respond(send, refusal.status, {"reason": refusal.reason},
                          [("apns-id", request.header("apns-id") or str(uuid.uuid4()))])
            return
        await self.answer(send, record, request)

    def check_provider_token(self, request, record):
        authorization = request.header("authorization")
        if not authorization:
            raise Refusal(403, "MissingProviderToken")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Refusal(403, "MissingProviderToken")
        record["jwt"] = token
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Refusal(403, "InvalidProviderToken")
        record["jwt_header"] = header
        if header.get("alg") != "ES256" or set(header) - {"alg", "kid", "typ"}:
            raise Refusal(403, "InvalidProviderToken")
        if header.get("kid") != self.key_id:
            raise Refusal(403, "InvalidProviderToken")
        try:
            claims = jwt.decode(token, self.public_key, algorithms=["ES256"], issuer=self.team_id,
                                options={"require": ["iss", "iat"], "verify_exp": False})
        except jwt.ImmatureSignatureError:
            raise Refusal(403, "InvalidProviderToken")
        except jwt.PyJWTError as e:
            record["errors"].append(f"jwt: {e}")
            raise Refusal(403, "InvalidProviderToken")
        record["jwt_claims"] = claims
        if not isinstance(claims["iat"], int) or claims["iat"] < time.time() - 3600:
            raise Refusal(403, "ExpiredProviderToken")

    def check_headers(self, request, record):
        for name in ("apns-topic", "apns-push-type", "apns-priority", "apns-id",
                     "apns-expiration", "apns-collapse-id"):
            if isinstance(request.headers.get(name), list):
                raise Refusal(400, "DuplicateHeaders")
        push_type = request.header("apns-push-type")
        if push_type not in PUSH_TYPES:
            raise Refusal(400, "InvalidPushType")
        topic = request.header("apns-topic")
        if topic is None:
            raise Refusal(400, "MissingTopic")
        expected = self.bundle_id + (".voip" if push_type == "voip" else "")
        if topic != expected:
            raise Refusal(400, "TopicDisallowed")
        priority = request.header("apns-priority")
        if priority is not None and priority not in ("1", "5", "10"):
            raise Refusal(400, "BadPriority")
        if push_type == "background" and priority != "5":
            raise Refusal(400, "BadPriority")
        expiration = request.header("apns-expiration")
        if expiration is not None and not expiration.isdigit():
            raise Refusal(400, "BadExpirationDate")
        collapse = request.header("apns-collapse-id")
        if collapse is not None and len(collapse.encode()) > 64:
            raise Refusal(400, "BadCollapseId")
        apns_id = request.header("apns-id")
        if apns_id is not None and not UUID.match(apns_id):
            raise Refusal(400, "BadMessageId")
        return push_type

    def check_payload(self, body, push_type):
        if not body:
            raise Refusal(400, "PayloadEmpty")
        if len(body) > (5120 if push_type == "voip" else 4096):
            raise Refusal(413, "PayloadTooLarge")
        try:
            payload = json.loads(body)
        except ValueError:
            raise Refusal(400, "BadPayload")
        aps = payload.get("aps") if isinstance(payload, dict) else None
        if not isinstance(aps, dict):
            raise Refusal(400, "BadPayload")
        kinds = {"alert": (dict, str), "badge": int, "sound": (str, dict), "thread-id": str,
                 "category": str, "content-available": int, "mutable-content": int}
        for key, value in aps.items():
            if key in kinds and not isinstance(value, kinds[key]):
                raise Refusal(400, "BadPayload")
        alert = aps.get("alert")
        if isinstance(alert, dict) and not all(isinstance(alert.get(k, ""), str) for k in ("title", "body")):
            raise Refusal(400, "BadPayload")
        for flag in ("content-available", "mutable-content"):
            if flag in aps and aps[flag] != 1:
                raise Refusal(400, "BadPayload")
        if push_type == "background":
            if aps.get("content-available") != 1 or {"alert", "badge", "sound"} & set(aps):
                raise Refusal(400, "BadPayload")
        return payload

    async def answer(self, send, record, request):
        apns_id = request.header("apns-id") or str(uuid.uuid4())
        scripted = await self.state.take(record["device_token"], {"status": 200})
        status = scripted["status"]
        record["answer"] = status
        headers = [("apns-id", apns_id)] + retry_after_header(scripted)
        if status == 200:
            await respond(send, 200, b"", headers)
            return
        body = {"reason": scripted.get("reason", {410: "Unregistered", 429: "TooManyRequests",
                                                  503: "ServiceUnavailable"}.get(status, "BadRequest"))}
        if status == 410:
            body["timestamp"] = int(time.time() * 1000)
        await respond(send, status, body, headers)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--p8-out", required=True)
    parser.add_argument("--ca-out", required=True)
    parser.add_argument("--key-id", required=True)
    parser.add_argument("--team-id", required=True)
    parser.add_argument("--bundle-id", required=True)
    args = parser.parse_args()

    signing = ec.generate_private_key(ec.SECP256R1())
    with open(args.p8_out, "wb") as f:
        f.write(signing.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    with tempfile.TemporaryDirectory(prefix="apns-") as directory:
        ca, certfile, keyfile = make_tls(directory)
        with open(args.ca_out, "wb") as f:
            f.write(ca)
        sock = listen()
        port = sock.getsockname()[1]
        app = Apns(signing.public_key(), args.key_id, args.team_id, args.bundle_id)
        run(app, sock, {"url": f"https://127.0.0.1:{port}", "port": port},
            certfile=certfile, keyfile=keyfile)


if __name__ == "__main__":
    main()

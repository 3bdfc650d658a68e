"""A loopback FCM: Google's OAuth 2.0 token endpoint and the FCM HTTP v1 API.

At start it makes, with ``cryptography``, what the Firebase console would
hand out: a service-account key file (an RSA key, ``private_key_id``,
``client_email``, ``project_id``, and ``token_uri`` pointing here), written
to ``--service-account-out``. Then:

- ``POST /token`` takes the JWT bearer grant (RFC 7523) as Google does:
  ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` and an
  ``assertion`` that PyJWT verifies against the account's public key
  (RS256, header ``kid`` = ``private_key_id``, ``iss`` = ``client_email``,
  ``aud`` = this ``token_uri``, the ``firebase.messaging`` scope, ``exp``
  at most an hour after ``iat`` and not past). It issues an access token
  valid ``--expires-in`` seconds; scripted answers under the key ``_token``
  replace that.
- ``POST /v1/projects/<project>/messages:send`` wants one of those tokens as
  ``Authorization: Bearer`` (else 401 ``UNAUTHENTICATED``) and a body of
  the v1 ``Message`` shape: exactly one target, string ``data``, the
  ``notification``, ``android`` (``collapse_key``, ``priority``, ``ttl`` as a
  duration) and ``apns`` / ``webpush`` objects, no unknown field. A checked
  message takes the next scripted answer for its token, or 200 with a name.
- ``POST /_revoke`` revokes every token issued so far (the next send gets a
  401, as after a key rotation).

Scripted send answers: ``{"status": 404, "error_code": "UNREGISTERED"}``
becomes Google's error body with an ``FcmError`` detail.

Usage: fcm.py --service-account-out F [--project-id P] [--expires-in S]
"""

import argparse
import json
import re
import secrets
import time
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from common import Server, listen, respond, retry_after_header, run

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
SEND = re.compile(r"^/v1/projects/([^/]+)/messages:send$")
DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")
MESSAGE_FIELDS = {"name", "data", "notification", "android", "webpush", "apns", "fcm_options",
                  "token", "topic", "condition"}
ANDROID_FIELDS = {"collapse_key", "priority", "ttl", "restricted_package_name", "data",
                  "notification", "fcm_options", "direct_boot_ok"}
# AndroidNotification in the FCM v1 reference.
ANDROID_NOTIFICATION_FIELDS = {
    "title", "body", "icon", "color", "sound", "tag", "click_action", "body_loc_key",
    "body_loc_args", "title_loc_key", "title_loc_args", "channel_id", "ticker", "sticky",
    "event_time", "local_only", "notification_priority", "default_sound",
    "default_vibrate_timings", "default_light_settings", "vibrate_timings", "visibility",
    "notification_count", "light_settings", "image", "bypass_proxy_notification", "proxy"}
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


class Invalid(Exception):
    pass


def google_error(status, message, error_code=None):
    error = {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}
    if error_code:
        error["details"] = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                             "errorCode": error_code}]
    return {"error": error}


class Fcm(Server):
    def __init__(self, account, public_key, expires_in):
        super().__init__()
        self.account = account
        self.public_key = public_key
        self.expires_in = expires_in
        self.tokens = {}  # access token -> expiry (Unix seconds)
        self.sent = 0

    async def handle(self, request, send):
        if request.path == "/_revoke" and request.method == "POST":
            self.tokens.clear()
            await respond(send, 204)
        elif request.path == "/token" and request.method == "POST":
            await self.token(request, send)
        elif SEND.match(request.path) and request.method == "POST":
            await self.send(request, send, SEND.match(request.path).group(1))
        else:
            await respond(send, 404, google_error(404, "not found"))

    async def token(self, request, send):
        record = {"kind": "token", "errors": []}
        self.state.received.append(record)
        try:
            form = parse_qs(request.body.decode(), strict_parsing=True)
        except ValueError:
            form = {}
        grant = form.get("grant_type", [None])[0]
        assertion = form.get("assertion", [None])[0]
        if grant != GRANT_TYPE or not assertion:
            record["errors"].append(f"grant_type {grant!r}, assertion present: {bool(assertion)}")
            record["answer"] = 400
            await respond(send, 400, {"error": "unsupported_grant_type",
                                      "error_description": "Invalid grant_type or no assertion"})
            return
        try:
            header = jwt.get_unverified_header(assertion)
            record["jwt_header"] = header
            if header.get("alg") != "RS256" or header.get("kid") != self.account["private_key_id"]:
                raise jwt.InvalidTokenError(f"header {header}")
            claims = jwt.decode(assertion, self.public_key, algorithms=["RS256"],
                                audience=self.account["token_uri"], issuer=self.account["client_email"],
                                options={"require": ["iss", "aud", "iat", "exp", "scope"]})
            record["jwt_claims"] = claims
            if SCOPE not in claims["scope"].split():
                raise jwt.InvalidTokenError(f"scope {claims['scope']!r}")
            if claims["exp"] - claims["iat"] > 3600:
                raise jwt.InvalidTokenError("exp more than an hour after iat")
        except jwt.PyJWTError as e:
            record["errors"].append(f"assertion: {e}")
            record["answer"] = 400
            await respond(send, 400, {"error": "invalid_grant", "error_description": str(e)})
            return
        scripted = self.state.next_answer("_token")
        if scripted and scripted.get("status", 200) != 200:
            record["answer"] = scripted["status"]
            await respond(send, scripted["status"], {"error": scripted.get("error", "backend_error")},
                          retry_after_header(scripted))
            return
        expires_in = (scripted or {}).get("expires_in", self.expires_in)
        token = "ya29.loopback-" + secrets.token_urlsafe(24)
        self.tokens[token] = time.time() + expires_in
        record["answer"] = 200
        record["issued"] = token
        await respond(send, 200, {"access_token": token, "expires_in": expires_in,
                                  "token_type": "Bearer"})

    async def send(self, request, send, project):
        record = {"at": time.time(), "kind": "send", "errors": []}
        self.state.received.append(record)
        authorization = request.header("authorization") or ""
        scheme, _, token = authorization.partition(" ")
        record["access_token"] = token
        if scheme != "Bearer" or self.tokens.get(token, 0) < time.time():
            record["errors"].append("no valid access token")
            record["answer"] = 401
            await respond(send, 401, google_error(
                401, "Request had invalid authentication credentials."),
                [("www-authenticate", 'Bearer realm="https://accounts.google.com/"')])
            return
        if project != self.account["project_id"]:
            record["errors"].append(f"project {project!r}")
            record["answer"] = 403
            await respond(send, 403, google_error(403, "Permission denied on the project."))
            return
        try:
            message = self.check_message(request.body)
        except Invalid as e:
            record["errors"].append(str(e))
            record["answer"] = 400
            await respond(send, 400, google_error(400, str(e), "INVALID_ARGUMENT"))
            return
        record["message"] = message
        scripted = await self.state.take(message.get("token"), {"status": 200})
        status = scripted["status"]
        record["answer"] = status
        if status == 200:
            self.sent += 1
            name = f"projects/{project}/messages/0:{self.sent}"
            record["name"] = name
            await respond(send, 200, {"name": name})
            return
        await respond(send, status, google_error(status, scripted.get("message", "scripted"),
                                                 scripted.get("error_code")),
                      retry_after_header(scripted))

    def check_message(self, body):
        try:
            root = json.loads(body)
        except ValueError:
            raise Invalid("the body is not JSON")
        if not isinstance(root, dict) or set(root) - {"message", "validate_only"}:
            raise Invalid(f"unknown top-level fields: {sorted(set(root) - {'message'})}")
        message = root.get("message")
        if not isinstance(message, dict):
            raise Invalid("no message")
        unknown = set(message) - MESSAGE_FIELDS
        if unknown:
            raise Invalid(f"Invalid JSON payload received. Unknown name {sorted(unknown)}")
        targets = [k for k in ("token", "topic", "condition") if k in message]
        if len(targets) != 1:
            raise Invalid(f"exactly one target is needed, got {targets}")
        if not isinstance(message.get("token", ""), str) or message.get("token") == "":
            raise Invalid("token is not a string")
        data = message.get("data", {})
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise Invalid("data values must be strings")
        if any(k in ("from", "notification", "message_type") or k.startswith(("google.", "gcm."))
               for k in data):
            raise Invalid("data has a reserved key")
        notification = message.get("notification")
        if notification is not None:
            if not isinstance(notification, dict) or set(notification) - {"title", "body", "image"} \
                    or not all(isinstance(v, str) for v in notification.values()):
                raise Invalid("notification must hold title/body strings")
        android = message.get("android")
        if android is not None:
            if not isinstance(android, dict) or set(android) - ANDROID_FIELDS:
                raise Invalid(f"android has unknown fields: {android}")
            if android.get("priority", "NORMAL") not in ("NORMAL", "HIGH"):
                raise Invalid(f"android.priority {android.get('priority')!r}")
            if "ttl" in android and not (isinstance(android["ttl"], str) and DURATION.match(android["ttl"])):
                raise Invalid(f"android.ttl {android['ttl']!r} is not a duration")
            if "collapse_key" in android and not isinstance(android["collapse_key"], str):
                raise Invalid("android.collapse_key is not a string")
            an = android.get("notification")
            if an is not None:
                if not isinstance(an, dict) or set(an) - ANDROID_NOTIFICATION_FIELDS:
                    raise Invalid(f"android.notification has unknown fields: {an}")
                if "tag" in an and not isinstance(an["tag"], str):
                    raise Invalid("android.notification.tag is not a string")
                if "notification_count" in an and not (
                        isinstance(an["notification_count"], int) and an["notification_count"] >= 0):
                    raise Invalid("android.notification.notification_count is not a count")
        for name in ("apns", "webpush"):
            if name in message and not isinstance(message[name], dict):
                raise Invalid(f"{name} is not an object")
        return message


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--service-account-out", required=True)
    parser.add_argument("--project-id", default="mkondo-loopback")
    parser.add_argument("--expires-in", type=int, default=3599)
    args = parser.parse_args()

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sock = listen()
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    account = {
        "type": "service_account",
        "project_id": args.project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode(),
        "client_email": f"firebase-adminsdk@{args.project_id}.iam.gserviceaccount.com",
        "client_id": str(secrets.randbelow(10**20)),
        "token_uri": f"{url}/token",
    }
    with open(args.service_account_out, "w") as f:
        json.dump(account, f, indent=2)
    run(Fcm(account, key.public_key(), args.expires_in), sock, {"url": url, "port": port})


if __name__ == "__main__":
    main()

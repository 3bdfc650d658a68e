#!/usr/bin/env python3
"""A Mkondo webhook receiver, standard library only.

Verifies each call's Mkondo-Signature, refuses timestamps more than five
minutes away from this machine's clock, handles each event id once, and prints
every event it accepts as one JSON line on stdout.

    MKONDO_WEBHOOK_SECRET=whsec_... python3 receiver.py [PORT]

PORT (default 8000, or $PORT) on $HOST (default 127.0.0.1).
"""

import hashlib
import hmac
import json
import os
import sys
import threading
import time
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIGNATURE_HEADER = "Mkondo-Signature"
TOLERANCE_SECONDS = 5 * 60
MAX_BODY_BYTES = 1024 * 1024
# Ids remembered for de-duplication; a real receiver keeps them in its database,
# next to what processing the event changed, for at least as long as the
# server retries (a day).
REMEMBERED_IDS = 100_000


def signature_valid(header, secret, body, now):
    """Whether `header` ("t=<unix>,v1=<hex>[,v1=<hex>]") signs `body` with
    `secret` at a time within TOLERANCE_SECONDS of `now`. Any v1 may match:
    while the secret is being rotated the server signs with both."""
    timestamp = None
    signatures = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and timestamp is None:
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "t":
            return False
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or abs(now - timestamp) > TOLERANCE_SECONDS:
        return False
    signed = str(timestamp).encode() + b"." + body
    expected = hmac.new(secret, signed, hashlib.sha256).hexdigest()
    # compare_digest takes constant time; check every candidate, not the first.
    matched = False
    for candidate in signatures:
        if hmac.compare_digest(expected, candidate):
            matched = True
    return matched


class Seen:
    """The event ids already handled, oldest forgotten first."""

    def __init__(self, capacity):
        self.ids = OrderedDict()
        self.capacity = capacity
        self.lock = threading.Lock()

    def first_time(self, event_id):
        with self.lock:
            if event_id in self.ids:
                return False
            self.ids[event_id] = True
            if len(self.ids) > self.capacity:
                self.ids.popitem(last=False)
            return True


def make_handler(secret, seen):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                return self.answer(413, "too large")
            body = self.rfile.read(length)
            header = self.headers.get(SIGNATURE_HEADER, "")
            if not signature_valid(header, secret, body, int(time.time())):
                return self.answer(400, "bad signature or timestamp")
            try:
                event = json.loads(body)
                event_id = event["id"]
            except (ValueError, KeyError, TypeError):
                return self.answer(400, "not an event")
            if seen.first_time(event_id):
                # Processing goes here. This example prints the event. Where
                # processing can fail, record the id only once it succeeded,
                # and keep the ids in your database rather than in memory.
                sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
                sys.stdout.flush()
            # A repeat is answered 200 too, so the server stops sending it.
            self.answer(200, "ok")

        def answer(self, status, text):
            data = json.dumps({"status": text}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):
            # Requests are logged to stderr; stdout holds the events only.
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    return Handler


def main():
    secret = os.environ.get("MKONDO_WEBHOOK_SECRET", "")
    if not secret:
        sys.exit("set MKONDO_WEBHOOK_SECRET to the endpoint's secret (whsec_...)")
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", "8000"))
    host = os.environ.get("HOST", "127.0.0.1")
    handler = make_handler(secret.encode(), Seen(REMEMBERED_IDS))
    server = ThreadingHTTPServer((host, port), handler)
    sys.stderr.write("listening on %s:%d\n" % server.server_address[:2])
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()

"""What the loopback provider servers share.

Each server is an ASGI app served by hypercorn on 127.0.0.1, port 0. Its
first stdout line is JSON naming its URL (and whatever files it wrote), so
the test that started it knows where to go. Besides the provider's own
protocol, every server has control endpoints:

- ``GET /_received``: every request it took, in order, with what it checked
  and what it answered (``errors`` lists the checks that failed);
- ``POST /_script``: ``{"<key>": [{"status": 503, "retry_after": 2}, ...]}``
  queues the next answers for a device token, registration token or
  subscription id (``"*"`` for any), taken one per request, in order; an
  answer with ``"delay": seconds`` is held that long before it is sent;
- ``POST /_reset``: forgets the log and the scripts.

A request that fails a check is answered with the provider's refusal for it,
whatever the script says: the test then sees the refusal and the log says
which check failed.
"""

import asyncio
import json
import signal
import socket
import sys
import threading
from base64 import urlsafe_b64decode, urlsafe_b64encode

from hypercorn.asyncio import serve
from hypercorn.config import Config


def b64url(data: bytes) -> str:
    return urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return urlsafe_b64decode(text + "=" * (-len(text) % 4))


class State:
    """The log of what was received and the scripted answers."""

    def __init__(self):
        self.received = []
        self.scripts = {}

    def next_answer(self, key):
        """The next scripted answer for ``key`` (then for ``"*"``), if any."""
        for k in (key, "*"):
            queue = self.scripts.get(k)
            if queue:
                return queue.pop(0)
        return None

    async def take(self, key, default):
        """The next scripted answer for ``key`` or ``default``, after its
        ``delay`` if it has one."""
        answer = self.next_answer(key) or default
        if answer.get("delay"):
            await asyncio.sleep(float(answer["delay"]))
        return answer

    def script(self, body):
        for key, answers in body.items():
            if not isinstance(answers, list):
                raise ValueError(f"the script for {key!r} is not a list")
            self.scripts.setdefault(key, []).extend(answers)

    def reset(self):
        self.received.clear()
        self.scripts.clear()


class Refusal(Exception):
    """A check failed: answer ``status`` with the provider's ``reason``."""

    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Server:
    """An ASGI app: the lifespan protocol, the control endpoints, then the
    provider's own ``handle(request, send)``."""

    def __init__(self):
        self.state = State()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        request = await read_request(scope, receive)
        if not await control(request, send, self.state):
            await self.handle(request, send)

    async def handle(self, request, send):
        raise NotImplementedError


class Request:
    """An ASGI HTTP request read whole."""

    def __init__(self, scope, body):
        self.method = scope["method"]
        self.path = scope["path"]
        self.http_version = scope.get("http_version")
        self.headers = {}
        for name, value in scope["headers"]:
            name = name.decode("latin-1").lower()
            value = value.decode("latin-1")
            # A repeated header is kept as a list, so a check can refuse it.
            if name in self.headers:
                prev = self.headers[name]
                self.headers[name] = (prev if isinstance(prev, list) else [prev]) + [value]
            else:
                self.headers[name] = value
        self.body = body

    def header(self, name):
        value = self.headers.get(name)
        return value if not isinstance(value, list) else None


async def lifespan(receive, send):
    """The ASGI lifespan protocol: nothing to start or stop."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_request(scope, receive, limit=1 << 20):
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body += message.get("body", b"")
        if len(body) > limit:
            break
        if not message.get("more_body"):
            break
    return Request(scope, body)


async def respond(send, status, body=b"", headers=()):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers = list(headers) + [("content-type", "application/json")]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(k.encode(), str(v).encode()) for k, v in headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def control(request, send, state):
    """Answers the control endpoints; False when the path is not one."""
    if request.path == "/_received" and request.method == "GET":
        await respond(send, 200, state.received)
    elif request.path == "/_script" and request.method == "POST":
        try:
            state.script(json.loads(request.body))
        except (ValueError, AttributeError) as e:
            await respond(send, 400, {"error": str(e)})
            return True
        await respond(send, 204)
    elif request.path == "/_reset" and request.method == "POST":
        state.reset()
        await respond(send, 204)
    else:
        return False
    return True


def retry_after_header(answer):
    value = answer.get("retry_after")
    return [] if value is None else [("retry-after", str(value))]


def listen():
    """A listening socket on 127.0.0.1 and a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def run(app, sock, first_line, certfile=None, keyfile=None):
    """Prints ``first_line`` (JSON) and serves ``app`` on ``sock`` until
    SIGTERM, SIGINT or the end of stdin (the parent is gone)."""
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    if certfile:
        config.certfile = certfile
        config.keyfile = keyfile
        config.alpn_protocols = ["h2", "http/1.1"]
    print(json.dumps(first_line), flush=True)

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def watch_stdin():
            # The test holds our stdin open; when it dies, stdin closes.
            sys.stdin.read()
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch_stdin, daemon=True).start()
        await serve(app, config, shutdown_trigger=stop.wait)

    asyncio.run(main())

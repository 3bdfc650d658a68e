"""A real Mkondo server for the Python binding tests: the `mkondo` binary on
127.0.0.1:0 with a fresh SQLite file, restartable on the same address."""

import json
import os
import re
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BINARY = os.environ.get("MKONDO_BIN", os.path.join(ROOT, "target", "debug", "mkondo"))
sys.path.insert(0, os.environ.get("MKONDO_BINDINGS", os.path.join(ROOT, "bindings", "python")))


class Server:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="mkondo-py-")
        self.db = os.path.join(self.dir, "mkondo.db")
        out = subprocess.run(
            [BINARY, "app", "create", "--name", "py", "--json", "--database", self.db],
            check=True, capture_output=True, text=True,
        ).stdout
        self.app = json.loads(out)
        self.app_id = self.app.get("id") or self.app.get("app_id")
        self.proc = None
        self.addr = "127.0.0.1:0"
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [BINARY, "serve", "--listen", self.addr, "--database", self.db,
             *getattr(self, "extra_args", [])],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        for line in self.proc.stdout:
            m = re.search(r"mkondo listening on (\S+)", line)
            if m:
                self.addr = m.group(1)
                break
        else:
            raise RuntimeError("the server did not start")
        self.url = "http://" + self.addr

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def cli(self, *args):
        """Runs `mkondo ARGS --database <this server's database>`."""
        subprocess.run([BINARY, *args, "--database", self.db], check=True,
                       capture_output=True, text=True)

    def token(self, user, ttl=3600):
        return subprocess.run(
            [BINARY, "token", "--app", self.app_id, "--user", user, "--ttl", str(ttl),
             "--database", self.db],
            check=True, capture_output=True, text=True,
        ).stdout.strip()


@pytest.fixture
def server():
    s = Server()
    yield s
    if s.proc.poll() is None:
        s.stop()

"""The offline store from Python, across processes: a client opened with a
store shows its conversations before any network; messages written while the
server is down survive the process being killed and land once, in order, when
a new process connects (their outcome arriving as `Sent` events)."""

import asyncio
import os
import sqlite3
import subprocess
import sys
import time

import mkondo

from test_scenario import connected

HERE = os.path.dirname(__file__)


def client_process(server, path, conversation, send, prefix):
    bindings = os.path.dirname(os.path.dirname(os.path.abspath(mkondo.__file__)))
    env = dict(os.environ, MKONDO_BINDINGS=bindings)
    return subprocess.Popen(
        [sys.executable, os.path.join(HERE, "offline_client.py"), server.url,
         server.token("alice"), "alice", path, conversation, str(send), prefix],
        stdout=subprocess.PIPE, text=True, env=env)


def waiting(path):
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]


def test_offline_messages_survive_a_killed_process(server, tmp_path):
    path = str(tmp_path / "alice.db")

    async def run():
        bob, _ = await connected(server, "bob")
        alice, _ = await connected(server, "alice")
        group = await bob.create_group(mkondo.NewGroup(name="team", members=["alice"]))
        alice.shutdown()
        await bob.send_text(group.id, "before")

        # A first process connects and keeps the conversation.
        first = client_process(server, path, group.id, 0, "none")
        assert first.stdout.readline().split() == ["cached", "0"]
        assert first.stdout.readline().strip() == "drained"
        first.wait(timeout=10)

        # No server: the cache is there before any network; three messages
        # are written, stored, and the process is killed.
        server.stop()
        offline = client_process(server, path, group.id, 3, "offline")
        assert offline.stdout.readline().split() == ["cached", "1"]
        deadline = time.monotonic() + 10
        while waiting(path) < 3:
            assert time.monotonic() < deadline, "the messages were not stored"
            time.sleep(0.02)
        offline.kill()
        offline.wait()

        # The server is back: a new process sends them, once, in order.
        server.start()
        bob.connect()
        await bob.wait_for_state(mkondo.ConnectionState.CONNECTED, 10000)
        last = client_process(server, path, group.id, 0, "none")
        lines = [line.strip() for line in last.stdout]
        last.wait(timeout=10)
        assert lines[0] == "cached 1"
        assert lines[-1] == "drained"
        assert len([line for line in lines if line.startswith("sent ")]) == 3, lines
        history = await bob.history(group.id, None, None, 50)
        texts = [m.text for m in history.messages if m.kind == "user"]
        assert texts == ["before", "offline 0", "offline 1", "offline 2"]
        assert waiting(path) == 0
        bob.shutdown()

    asyncio.run(run())

"""docs/sdk/python.md, run: its `python` examples are executed in order in one
namespace, then the functions they define are called against the real server."""

import asyncio
import os
import re

import mkondo

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "sdk", "python.md")


def examples():
    text = open(DOC, encoding="utf-8").read()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert len(blocks) >= 5, "python.md lost its examples"
    namespace = {}
    for block in blocks:
        exec(compile(block, DOC, "exec"), namespace)
    return namespace


def test_the_python_guide_runs(server):
    doc = examples()

    async def run():
        calls = []

        def fetch():
            calls.append(1)
            return server.token("alice")

        client, inbox = await doc["start"](server.url, fetch)
        assert calls, "the guide's token provider was asked"
        bob, _ = await doc["start"](server.url, lambda: server.token("bob"))
        carol, _ = await doc["start"](server.url, lambda: server.token("carol"))

        group = await doc["manage_group"](client, ["bob", "carol"])
        assert client.user().name == "Alice"
        members = await client.members(group.id, None, None)
        assert {m.user_id: m.role for m in members.members}["bob"] == "admin"

        await bob.send_text(group.id, "hello alice")
        sent = await doc["open_conversation"](client, group.id)
        assert sent.text == "on my way"
        history = await bob.history(group.id, None, None, 50)
        mine = [m for m in history.messages if m.id == sent.id][0]
        assert mine.text == "on my way!" and mine.reply_to is None

        for _ in range(200):
            if any(m.text == "hello alice" for m in inbox.messages):
                break
            await asyncio.sleep(0.02)
        assert any(m.text == "hello alice" for m in inbox.messages)

        assert await doc["send_or_explain"](client, "no-such-conversation", "x") == "not_found"
        assert (await doc["send_or_explain"](client, group.id, "fine")).text == "fine"

        doc["went_to_background"](client)
        doc["came_back"](client)
        await client.wait_for_state(mkondo.ConnectionState.CONNECTED, 10_000)
        await doc["sign_out"](client)
        try:
            await client.ping()
            raise AssertionError("a signed-out client still answers")
        except mkondo.MkondoError.Cancelled as e:
            assert e.code == "unavailable" and not e.temporary
        bob.shutdown()
        carol.shutdown()

    asyncio.run(run())

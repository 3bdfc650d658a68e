"""A client process with an offline store, for test_offline.py (which kills
it). Arguments: URL TOKEN USER STORE CONVERSATION SEND PREFIX. Prints `cached
N` (conversations in the cache before any network), `sent CLIENT_ID` per
message of an earlier run acknowledged now, `acked SEQ` per message of its own,
then `drained` once nothing waits, and exits (the test may kill it first).
With SEND 0 it first waits to be connected."""

import asyncio
import os
import sqlite3
import sys

sys.path.insert(0, os.environ["MKONDO_BINDINGS"])

import mkondo  # noqa: E402


class Printer(mkondo.EventListener):
    def on_event(self, event):
        if isinstance(event, mkondo.ClientEvent.SENT):
            print("sent", event.client_id, flush=True)


def waiting(path):
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]


async def main(url, token, user, path, conversation, send, prefix):
    config = mkondo.ClientConfig(url=url, token=token, store_path=path, store_user_id=user,
                                 min_reconnect_delay_ms=50, max_reconnect_delay_ms=300)
    client = mkondo.Client(config, Printer(), None)
    print("cached", len(client.cached_conversations()), flush=True)
    client.connect()
    if int(send) == 0:  # nothing to write: a run that waits for the server
        await client.wait_for_state(mkondo.ConnectionState.CONNECTED, 10000)
    calls = [asyncio.ensure_future(client.send_text(conversation, f"{prefix} {i}"))
             for i in range(int(send))]
    for call in calls:
        print("acked", (await call).seq, flush=True)
    while waiting(path):
        await asyncio.sleep(0.02)
    print("drained", flush=True)
    client.shutdown()


asyncio.run(main(*sys.argv[1:]))

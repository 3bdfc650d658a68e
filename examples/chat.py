"""A raw-protocol chat client in a few lines: connect, start a direct
conversation, send, and print everything the server pushes.

    pip install websockets
    python3 examples/chat.py ws://127.0.0.1:8080/v1/realtime TOKEN PEER_USER_ID "hello"
"""
import asyncio, json, sys

import websockets


async def main(url, token, peer, text):
    async with websockets.connect(url, subprotocols=["mkondo.v1.json"]) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"token": token}}))
        await ws.send(json.dumps({"id": 2, "start_direct": {"user_id": peer}}))
        conversation = None
        async for frame in ws:
            for line in frame.splitlines():  # a frame may hold a batch, one JSON per line
                msg = json.loads(line)
                print(json.dumps(msg))
                if msg.get("id") == 2 and "reply" in msg:
                    conversation = msg["reply"]["conversation"]["conversation"]["id"]
                    await ws.send(json.dumps({"id": 3, "subscribe": {"conversation_id": conversation}}))
                    await ws.send(json.dumps({"id": 4, "send": {
                        "conversation_id": conversation, "text": text, "client_id": "example-1"}}))
                if "ping" in msg.get("push", {}):
                    await ws.send(json.dumps({"pong": {}}))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))

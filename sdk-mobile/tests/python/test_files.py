"""Files from Python, against the real server: an upload from a path with its
progress, a message waiting for it, the attachment as the server derived it,
links that read it back; bytes cancelled mid-way fail the message waiting."""

import asyncio
import struct
import urllib.request
import zlib

import pytest

import mkondo
from test_scenario import Events, connected


def png(width, height):
    """An RGB PNG of a gradient."""
    rows = b"".join(
        b"\x00" + b"".join(bytes(((x * 4) & 255, (y * 5) & 255, 128)) for x in range(width))
        for y in range(height))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


async def alice_with_bob(server):
    """Alice connected, and her conversation with Bob (who exists, offline)."""
    alice, _ = await connected(server, "alice")
    bob, _ = await connected(server, "bob")
    bob.shutdown()
    return alice, await alice.start_direct("bob")


class Progress(mkondo.UploadListener):
    def __init__(self, cancel_after=None):
        self.seen = []
        self.upload = None
        self.cancel_after = cancel_after

    def on_progress(self, sent, total):
        self.seen.append((sent, total))
        if self.cancel_after is not None and sent >= self.cancel_after and self.upload:
            self.upload.cancel()


def test_a_photo_from_a_path_reaches_the_other_member(server, tmp_path):
    async def run():
        alice, _ = await connected(server, "alice")
        bob, b_events = await connected(server, "bob")
        direct = await alice.start_direct("bob")
        await bob.subscribe(direct.id)
        photo = png(640, 480)
        path = tmp_path / "gradient.png"
        path.write_bytes(photo)

        progress = Progress()
        upload = alice.upload(mkondo.NewUpload(
            conversation_id=direct.id, name="gradient.png", content_type="image/png",
            source=mkondo.FileSource.PATH(path=str(path))), progress)
        upload_id = await upload.id()
        sent = await alice.send_message(mkondo.NewMessage(
            conversation_id=direct.id, text="a gradient", attachment_ids=[upload_id]))
        assert await upload.finished() == upload_id
        assert (upload.sent(), upload.total()) == (len(photo), len(photo))
        assert progress.seen[-1] == (len(photo), len(photo))
        assert [s for s, _ in progress.seen] == sorted(s for s, _ in progress.seen)

        [attachment] = sent.attachments
        assert (attachment.id, attachment.name, attachment.content_type) == (
            upload_id, "gradient.png", "image/png")
        assert (attachment.width, attachment.height) == (640, 480)
        assert attachment.thumbnail and attachment.blurhash

        got = await b_events.wait(lambda e: isinstance(e, mkondo.ClientEvent.MESSAGE_RECEIVED)
                                  and e.message.text == "a gradient")
        assert got[0].message.attachments == [attachment]
        links = await bob.attachment_urls(direct.id, [upload_id])
        assert links.expires_at_ms and links.urls[0].id == upload_id
        with urllib.request.urlopen(links.urls[0].url) as response:
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.read().startswith(b"\x89PNG")
        with urllib.request.urlopen(links.urls[0].thumbnail_url) as response:
            assert response.status == 200
        alice.shutdown()
        bob.shutdown()

    asyncio.run(run())


def test_cancelled_bytes_fail_the_message_waiting_for_them(server):
    async def run():
        alice, direct = await alice_with_bob(server)
        progress = Progress(cancel_after=1)
        upload = alice.upload(mkondo.NewUpload(
            conversation_id=direct.id, name="big.bin", content_type="application/octet-stream",
            source=mkondo.FileSource.BYTES(bytes=bytes(24 << 20))), progress)
        progress.upload = upload
        upload_id = await upload.id()
        with pytest.raises(mkondo.MkondoError.Cancelled) as error:
            await alice.send_message(mkondo.NewMessage(
                conversation_id=direct.id, text="too big to wait", attachment_ids=[upload_id]))
        assert error.value.reason == "cancelled"
        with pytest.raises(mkondo.MkondoError.Cancelled):
            await upload.finished()
        assert upload.sent() < upload.total()
        history = await alice.history(direct.id, None, None, 10)
        assert history.messages == []
        alice.shutdown()

    asyncio.run(run())


def test_a_spoofed_image_is_refused_with_the_servers_code(server):
    async def run():
        alice, direct = await alice_with_bob(server)
        upload = alice.upload(mkondo.NewUpload(
            conversation_id=direct.id, name="fake.png", content_type="image/png",
            source=mkondo.FileSource.BYTES(bytes=b"%PDF-1.7 not a png")), None)
        with pytest.raises(mkondo.MkondoError.Server) as error:
            await upload.finished()
        assert error.value.code == "invalid_argument" and not error.value.temporary
        alice.shutdown()

    asyncio.run(run())

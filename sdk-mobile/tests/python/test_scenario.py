"""The mobile scenario (sdk-mobile/tests/scenarios.md) in Python, against the
real server: the generated `mkondo` module over the Rust library."""

import asyncio
import threading
import time

import pytest

import mkondo


class Events(mkondo.EventListener):
    """Collects events; `on_event` runs on the SDK's Rust threads."""

    def __init__(self):
        self.items = []
        self.threads = set()
        self.cond = threading.Condition()

    def on_event(self, event):
        with self.cond:
            self.items.append(event)
            self.threads.add(threading.get_ident())
            self.cond.notify_all()

    def of(self, kind):
        with self.cond:
            return [e for e in self.items if isinstance(e, kind)]

    async def wait(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.cond:
                found = [e for e in self.items if pred(e)]
            if found:
                return found
            await asyncio.sleep(0.02)
        raise AssertionError("no matching event within %.0fs" % timeout)


def texts(events, conv):
    return [e.message.text for e in events.of(mkondo.ClientEvent.MESSAGE_RECEIVED)
            if e.message.conversation_id == conv]


def config(server, token=None, transport=mkondo.Transport.GRPC):
    return mkondo.ClientConfig(url=server.url, token=token, transport=transport,
                               min_reconnect_delay_ms=50, max_reconnect_delay_ms=300)


async def connected(server, user, transport=mkondo.Transport.GRPC):
    events = Events()
    client = mkondo.Client(config(server, server.token(user), transport), events, None)
    client.connect()
    await client.wait_for_state(mkondo.ConnectionState.CONNECTED, 10000)
    return client, events


@pytest.mark.parametrize("transport", list(mkondo.Transport))
def test_two_clients_chat_typing_presence_read(server, transport):
    async def run():
        alice, a_events = await connected(server, "alice", transport)
        bob, b_events = await connected(server, "bob", transport)
        group = await alice.create_group(mkondo.NewGroup(name="team", members=["bob"]))
        sub = await bob.subscribe(group.id)
        assert sub.snapshot() is not None
        await alice.subscribe(group.id)

        for i in range(5):
            sent = await alice.send_text(group.id, "m%d" % i)
            assert sent.seq > 0 and sent.sender_id == "alice"
        await b_events.wait(lambda e: isinstance(e, mkondo.ClientEvent.MESSAGE_RECEIVED)
                            and e.message.text == "m4")
        assert texts(b_events, group.id) == ["m%d" % i for i in range(5)]
        seqs = [e.message.seq for e in b_events.of(mkondo.ClientEvent.MESSAGE_RECEIVED)]
        assert seqs == sorted(seqs)

        await alice.typing(group.id)
        await b_events.wait(lambda e: isinstance(e, mkondo.ClientEvent.TYPING)
                            and e.user_id == "alice" and e.typing)

        presence = await bob.presence(["alice"])
        assert presence[0].status == "online"
        alice.set_app_state(mkondo.AppState.BACKGROUND)
        await b_events.wait(lambda e: isinstance(e, mkondo.ClientEvent.PRESENCE_CHANGED)
                            and e.presence.user_id == "alice" and e.presence.status == "away")
        alice.set_app_state(mkondo.AppState.FOREGROUND)

        last = texts(b_events, group.id)
        read = await bob.mark_read(group.id, 5)
        assert read.unread_count == 0 and read.last_read_seq == 5 and len(last) == 5
        await a_events.wait(lambda e: isinstance(e, mkondo.ClientEvent.READ_UPDATED)
                            and e.user_id == "bob" and e.last_read_seq == 5)

        history = await bob.history(group.id, None, None, 10)
        assert [m.text for m in history.messages] == ["m%d" % i for i in range(5)]
        # Events came from the SDK's threads, not this one.
        assert threading.get_ident() not in b_events.threads
        sub.cancel()
        alice.shutdown()
        bob.shutdown()

    asyncio.run(run())


def test_typed_errors(server):
    async def run():
        alice, _ = await connected(server, "alice")
        with pytest.raises(mkondo.MkondoError.Server) as err:
            await alice.send_text("no-such-conversation", "hi")
        assert err.value.code in ("not_found", "forbidden")
        with pytest.raises(mkondo.MkondoError.InvalidArgument):
            await alice.send_message(mkondo.NewMessage(conversation_id="x", text="t", data="{nope"))
        alice.shutdown()
        with pytest.raises(mkondo.MkondoError.Cancelled):
            await alice.ping()
        with pytest.raises(mkondo.MkondoError.InvalidArgument):
            mkondo.Client(mkondo.ClientConfig(url=server.url), Events(), None)

    asyncio.run(run())


def test_concurrent_calls_with_gather(server):
    async def run():
        alice, _ = await connected(server, "alice")
        bob, b_events = await connected(server, "bob")
        group = await alice.create_group(mkondo.NewGroup(name="g", members=["bob"]))
        sent = await asyncio.gather(*(alice.send_text(group.id, "c%d" % i) for i in range(20)),
                                    alice.ping(), bob.ping())
        # Calls leave in the order they were made.
        assert [m.seq for m in sent[:20]] == sorted(m.seq for m in sent[:20])
        await b_events.wait(lambda e: isinstance(e, mkondo.ClientEvent.MESSAGE_RECEIVED)
                            and e.message.text == "c19")
        assert texts(b_events, group.id) == ["c%d" % i for i in range(20)]
        alice.shutdown()
        bob.shutdown()

    asyncio.run(run())


def test_server_restart_recovers_without_loss_or_duplicates(server):
    async def run():
        alice, a_events = await connected(server, "alice")
        bob, b_events = await connected(server, "bob")
        group = await alice.create_group(mkondo.NewGroup(name="r", members=["bob"]))
        await alice.send_text(group.id, "before")
        await b_events.wait(lambda e: isinstance(e, mkondo.ClientEvent.MESSAGE_RECEIVED)
                            and e.message.text == "before")

        server.stop()
        await b_events.wait(lambda e: isinstance(e, mkondo.ClientEvent.STATE_CHANGED)
                            and e.new == mkondo.ConnectionState.CONNECTING)
        # Sent while the server is down: queued in the outbox, sent once after.
        pending = [asyncio.ensure_future(alice.send_text(group.id, "offline%d" % i))
                   for i in range(3)]
        await asyncio.sleep(0.2)
        server.start()
        done = await asyncio.wait_for(asyncio.gather(*pending), 20)
        assert [m.text for m in done] == ["offline0", "offline1", "offline2"]
        await b_events.wait(lambda e: isinstance(e, mkondo.ClientEvent.MESSAGE_RECEIVED)
                            and e.message.text == "offline2", timeout=20)
        assert texts(b_events, group.id) == ["before", "offline0", "offline1", "offline2"]
        history = await bob.history(group.id, None, None, 50)
        assert [m.text for m in history.messages] == ["before", "offline0", "offline1", "offline2"]
        alice.shutdown()
        bob.shutdown()

    asyncio.run(run())


class Provider(mkondo.TokenProvider):
    """Mints a short-lived token first, then long ones; fails once in between."""

    def __init__(self, server):
        self.server = server
        self.calls = 0
        self.threads = set()

    def fetch_token(self):
        self.calls += 1
        self.threads.add(threading.get_ident())
        if self.calls == 1:
            return self.server.token("carol", ttl=2)
        if self.calls == 2:
            raise mkondo.TokenError.Failed("backend briefly down")
        return self.server.token("carol")


def test_token_refresh_through_python_provider(server):
    async def run():
        provider = Provider(server)
        events = Events()
        client = mkondo.Client(config(server), events, provider)
        client.connect()
        await client.wait_for_state(mkondo.ConnectionState.CONNECTED, 10000)
        deadline = time.monotonic() + 20
        while provider.calls < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert provider.calls >= 3, "the provider was not asked to refresh"
        await client.wait_for_state(mkondo.ConnectionState.CONNECTED, 10000)
        await asyncio.sleep(2.5)  # past the first token's expiry
        await client.ping()
        assert client.state() == mkondo.ConnectionState.CONNECTED
        assert threading.get_ident() not in provider.threads
        client.shutdown()

    asyncio.run(run())


def test_push_devices_mute_do_not_disturb_and_sign_out(server):
    async def run():
        phone, _ = await connected(server, "alice")
        laptop, _ = await connected(server, "alice")
        group = await phone.create_group(mkondo.NewGroup(name="team", members=[]))

        fcm = mkondo.PushCredential.FCM(token="py-fcm-token")
        device = await phone.register_device(fcm)
        assert device.id.startswith("dev_") and device.provider == "fcm"
        again = await phone.register_device(fcm)
        assert again.id == device.id, "a rotated credential registered again stays one device"
        apns = mkondo.PushCredential.APNS(token="0f" * 32, topic="com.example.chat", sandbox=True)
        await phone.register_device(apns)
        listed = await laptop.devices()
        assert sorted(d.provider for d in listed) == ["apns", "fcm"]
        with pytest.raises(mkondo.MkondoError.Server) as err:
            await phone.register_device(mkondo.PushCredential.WEB_PUSH(
                endpoint="http://127.0.0.1/push", p256dh="x", auth="y"))
        assert err.value.code == "invalid_argument"

        # A call invitation reaches the server through the binding: a callee
        # who is not in the conversation is refused like any signal.
        with pytest.raises(mkondo.MkondoError.Server) as err:
            await phone.ring(group.id, "nobody", '{"type":"offer"}')
        assert err.value.code == "not_found"

        muted = await phone.mute(group.id, True)
        assert muted.muted and muted.id == group.id
        until = int(time.time() * 1000) + 3_600_000
        assert await phone.set_do_not_disturb(until) == until
        assert await phone.set_do_not_disturb(None) is None

        await phone.sign_out()
        assert await laptop.devices() == [], "sign-out removed the phone's devices"
        with pytest.raises(mkondo.MkondoError.Cancelled):
            await phone.ping()
        laptop.shutdown()

    asyncio.run(run())


def test_people_groups_listeners_and_typed_errors(server):
    async def run():
        alice, alice_events = await connected(server, "alice")
        bob, bob_events = await connected(server, "bob")
        carol, _ = await connected(server, "carol")
        assert alice.session_id()
        group = await alice.create_group(mkondo.NewGroup(name="team", members=["bob"]))
        assert alice.cached_conversation(group.id).id == group.id
        assert alice.cached_conversation("no-such") is None

        # Several listeners, each removable; all get the same events.
        second, third = Events(), Events()
        second_id = alice.add_listener(second)
        third_id = alice.add_listener(third)
        assert alice.remove_listener(third_id)
        assert not alice.remove_listener(third_id), "removed once"
        await bob.send_text(group.id, "hello")
        for events in (alice_events, second):
            await events.wait(lambda e: isinstance(e, mkondo.ClientEvent.MESSAGE_RECEIVED)
                              and e.message.text == "hello")
        assert third.items == [], "a removed listener hears nothing"
        assert alice.remove_listener(second_id)
        assert alice.remove_listener(0), "the constructor's listener is 0"

        # Members with profiles, a page at a time; users by id.
        page = await alice.members(group.id, None, 1)
        assert [(m.user_id, m.role, m.user.id) for m in page.members] == [("alice", "owner", "alice")]
        rest = await bob.members(group.id, page.next_cursor, None)
        assert [m.user_id for m in rest.members] == ["bob"] and rest.next_cursor is None
        seen = await bob.users(["alice", "carol"])
        assert [u.id for u in seen.users] == ["alice"], "a stranger is left out"
        with pytest.raises(mkondo.MkondoError.Server) as err:
            await carol.members(group.id, None, None)
        assert (err.value.code, err.value.temporary) == ("not_found", False)

        me = await alice.update_profile(mkondo.ProfileUpdate(name="Alice A.", data='{"city":"Moshi"}'))
        assert me.name == "Alice A." and alice.user().name == "Alice A."
        with pytest.raises(mkondo.MkondoError.InvalidArgument) as err:
            await alice.update_profile(mkondo.ProfileUpdate(data="{nope"))
        assert (err.value.code, err.value.temporary) == ("invalid_argument", False)

        # Group edits and roles, refused to a member.
        with pytest.raises(mkondo.MkondoError.Server) as err:
            await bob.update_conversation(group.id, mkondo.ConversationUpdate(name="x"))
        assert err.value.code == "permission_denied"
        made = await alice.set_role(group.id, "bob", mkondo.Role.ADMIN)
        assert made.role == "admin"
        renamed = await bob.update_conversation(group.id, mkondo.ConversationUpdate(name="crew"))
        assert renamed.name == "crew"

        # The directory: off, then on.
        with pytest.raises(mkondo.MkondoError.Server) as err:
            await alice.search_users("car", None)
        assert err.value.code == "permission_denied"
        server.cli("app", "update", "--app", server.app_id, "--user-directory", "true")
        found = await alice.search_users("CAR", None)
        assert [u.id for u in found] == ["carol"] and found[0].data is None

        await alice.block("carol")
        assert [b.user_id for b in (await alice.blocks(None, None)).blocks] == ["carol"]

        before = await bob.unread_total()
        await alice.send_text(group.id, "count me")
        assert await bob.unread_total() == before + 1
        assert isinstance(bob.total_unread(), int)

        # A refused subscription: the call's error, and the event's, typed alike.
        with pytest.raises(mkondo.MkondoError.Server) as err:
            await bob.subscribe("no-such-conversation")
        assert (err.value.code, err.value.temporary) == ("not_found", False)
        changed = await bob_events.wait(
            lambda e: isinstance(e, mkondo.ClientEvent.SUBSCRIPTION_CHANGED)
            and e.conversation_id == "no-such-conversation" and e.error is not None)
        failure = changed[0].error
        assert isinstance(failure, mkondo.MkondoError.Server)
        assert (failure.code, failure.temporary) == ("not_found", False)

        sub = await bob.subscribe(group.id)
        assert bob.subscription_state(group.id) == mkondo.SubscriptionState.SUBSCRIBED
        await bob.unsubscribe(group.id)
        assert bob.subscription_state(group.id) == mkondo.SubscriptionState.UNSUBSCRIBED
        del sub

        with pytest.raises(mkondo.MkondoError.Server):
            await bob.delete_conversation(group.id)
        await alice.delete_conversation(group.id)
        with pytest.raises(mkondo.MkondoError.Server) as err:
            await bob.members(group.id, None, None)
        assert err.value.code == "not_found"
        for c in (alice, bob, carol):
            c.shutdown()

    asyncio.run(run())

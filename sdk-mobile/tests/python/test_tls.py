"""The Python binding over TLS: a server started with `--tls-cert/--tls-key`
(certificates from a test CA made here with openssl), clients given only that
CA's PEM. Every transport chats; a client without the CA, or one calling the
server by a name its certificate does not carry, never connects and says why."""

import asyncio
import os
import subprocess

import pytest

import mkondo
from conftest import Server
from test_scenario import Events, texts


def make_ca_and_cert(directory):
    """A test CA and a server certificate for localhost only (127.0.0.1 is a wrong name)."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Mkondo test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "key.pem", "-out", "server.csr", "-subj", "/CN=localhost")
    with open(os.path.join(directory, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost\n"
                "basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "cert.pem", "-days", "2", "-extfile", "ext.cnf")
    with open(os.path.join(directory, "ca.pem")) as f:
        return f.read()


class TlsServer(Server):
    def start(self):
        self.ca_pem = make_ca_and_cert(self.dir)
        self.extra_args = ["--tls-cert", os.path.join(self.dir, "cert.pem"),
                           "--tls-key", os.path.join(self.dir, "key.pem")]
        super().start()
        self.url = "https://localhost:" + self.addr.rsplit(":", 1)[1]


@pytest.fixture
def tls_server():
    s = TlsServer()
    yield s
    if s.proc.poll() is None:
        s.stop()


def config(server, user, transport, ca):
    return mkondo.ClientConfig(url=server.url, token=server.token(user), transport=transport,
                               min_reconnect_delay_ms=50, max_reconnect_delay_ms=300,
                               extra_ca_pem=ca)


@pytest.mark.parametrize("transport", list(mkondo.Transport))
def test_clients_chat_over_tls_given_only_the_ca(tls_server, transport):
    async def run():
        clients = []
        for user in ["alice", "bob"]:
            events = Events()
            client = mkondo.Client(config(tls_server, user, transport, tls_server.ca_pem),
                                   events, None)
            client.connect()
            await client.wait_for_state(mkondo.ConnectionState.CONNECTED, 10000)
            clients.append((client, events))
        (alice, _), (bob, b_events) = clients
        direct = await alice.start_direct("bob")
        await alice.send_text(direct.id, "over TLS")
        await b_events.wait(lambda e: isinstance(e, mkondo.ClientEvent.MESSAGE_RECEIVED)
                            and e.message.text == "over TLS")
        assert texts(b_events, direct.id) == ["over TLS"]

    asyncio.run(run())


async def refused(server, url, ca, transport):
    """A client of `url` never connects; resolves with its first Failed event."""
    events = Events()
    cfg = config(server, "eve", transport, ca)
    cfg.url = url
    client = mkondo.Client(cfg, events, None)
    client.connect()
    failed = (await events.wait(lambda e: isinstance(e, mkondo.ClientEvent.FAILED)))[0]
    assert client.state() == mkondo.ConnectionState.CONNECTING
    with pytest.raises(Exception):
        await client.wait_for_state(mkondo.ConnectionState.CONNECTED, 500)
    client.shutdown()
    return failed


@pytest.mark.parametrize("transport", list(mkondo.Transport))
def test_an_unknown_ca_or_a_wrong_name_is_refused_with_the_reason(tls_server, transport):
    port = tls_server.addr.rsplit(":", 1)[1]

    async def run():
        for url, ca, why in [
            (tls_server.url, None, "UnknownIssuer"),
            ("https://127.0.0.1:" + port, tls_server.ca_pem, "not valid for name"),
        ]:
            failed = await refused(tls_server, url, ca, transport)
            assert failed.code == "unavailable", failed
            assert "certificate" in failed.detail and why in failed.detail, failed.detail

    asyncio.run(run())

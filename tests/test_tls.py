"""TLS (stage 10): the wire is encrypted, the server's certificate and host name are checked,
and a plaintext client is told what is wrong without disturbing anyone else."""

import selectors
import socket
import subprocess
import threading

import pytest

from harness import DEV_CERTS, Server, json_message
from stages import BY_ID

pytestmark = pytest.mark.needs("tls")

MAKE_CERTS = DEV_CERTS / "make-dev-certs.sh"  # the openssl commands the lesson shows


def make_certs(folder, host="localhost"):
    """A new CA and a certificate for `host`, made by the stage's own script."""
    folder.mkdir()
    subprocess.run(["sh", str(MAKE_CERTS), str(folder), host], check=True, capture_output=True, timeout=30)
    return folder


def server_with(session, certs, host="localhost"):
    return session.start_server("--cert", str(certs / f"{host}.pem"), "--key", str(certs / f"{host}-key.pem"))


class Relay:
    """A man in the middle on loopback: forwards one connection to the server, and keeps every byte."""

    def __init__(self, server):
        self.server = server
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.captured = bytearray()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.forward, daemon=True)
        self.thread.start()

    def forward(self):
        self.listener.settimeout(10)
        client, _ = self.listener.accept()
        upstream = socket.create_connection((self.server.host, self.server.port))
        other = {client: upstream, upstream: client}
        with selectors.DefaultSelector() as selector, client, upstream:
            for sock in other:
                selector.register(sock, selectors.EVENT_READ)
            while not self.stopping.is_set():
                for key, _ in selector.select(0.05):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    self.captured += data
                    other[key.fileobj].sendall(data)

    def close(self):
        self.stopping.set()
        self.thread.join(timeout=5)
        self.listener.close()


@pytest.mark.no_bystander("alice talks through a relay that the check closes at its end: whether her leaving reaches the server before the proof is a race")
@pytest.mark.points(3, "the wire is encrypted: a relay in the middle never sees the chat in clear")
def test_the_wire_is_encrypted(session):
    server = session.start_server()
    relay = Relay(server)
    try:
        driver = session.stage.client_class
        alice = driver.start(session, Server(server.term, "127.0.0.1", relay.port), session.name("alice"))
        bob = session.client("bob")
        text = session.text()
        alice.say(text)
        bob.sees(bob.said(alice.name, text))
        reply = session.text()
        bob.say(reply)
        alice.sees(alice.said(bob.name, reply))
    finally:
        relay.close()
    captured = bytes(relay.captured)
    assert captured[:1] == b"\x16", "the relay saw no TLS handshake: the client did not start with TLS"
    assert len(captured) > 1000, f"the relay saw only {len(captured)} bytes: did alice's traffic go through it?"
    for secret in (text, reply, alice.name, bob.name):
        assert secret.encode() not in captured, f"{secret!r} crossed the wire in clear"


@pytest.mark.points(2, "a plaintext client gets a clear error; the server and its room go on")
def test_a_plaintext_client_is_told_and_nobody_is_disturbed(session):
    server = session.start_server()
    alice, bob = session.client("alice"), session.client("bob")
    with socket.create_connection((server.host, server.port), timeout=5) as plain:
        plain.sendall(json_message(type="hello", name=session.name("plain"), client_id="plain"))
        answer = b""
        while data := plain.recv(4096):  # until the server closes
            answer += data
    assert b"tls-required" in answer, f"a plaintext hello got {answer!r}, not an error tls-required"
    old = session.spawn("stage-09-client", "client.py", "--port", str(server.port), "--name", session.name("old"),
                        stage=BY_ID["09"])
    old.expect(session.spec("tls_error"))  # stage 09's client shows the server's error as it shows any error
    session.chat_goes_on(alice, bob)
    server.term.assert_not_seen(session.spec("traceback"))


@pytest.mark.no_observers("the server's certificate is signed by another CA, or made out to another host name: the observers trust the kit's dev CA for 127.0.0.1 alone")
@pytest.mark.points(2, "the client refuses a server whose certificate its CA did not sign")
def test_the_client_refuses_an_unknown_certificate_authority(session, tmp_path):
    other = make_certs(tmp_path / "other-ca")
    server = server_with(session, other)
    stranger = session.spawn("alice", "client.py", "--port", str(server.port), "--name", session.name("alice"))
    stranger.expect_error_exit(session.spec("port_named", port=server.port), session.spec("certificate"))
    # The certificates the stage's script made are fine for a client that trusts their CA.
    bob = session.client("bob", "--cafile", str(other / "dev-ca.pem"))
    carol = session.client("carol", "--cafile", str(other / "dev-ca.pem"))
    session.chat_goes_on(bob, carol)


@pytest.mark.no_observers("the server's certificate is signed by another CA, or made out to another host name: the observers trust the kit's dev CA for 127.0.0.1 alone")
@pytest.mark.points(2, "the client refuses a certificate made out to another host name")
def test_the_client_checks_the_host_name(session, tmp_path):
    elsewhere = make_certs(tmp_path / "elsewhere", "elsewhere.test")
    server = server_with(session, elsewhere, "elsewhere.test")
    alice = session.spawn("alice", "client.py", "--port", str(server.port), "--name", session.name("alice"),
                          "--cafile", str(elsewhere / "dev-ca.pem"))
    alice.expect_error_exit(session.spec("port_named", port=server.port), session.spec("certificate"))  # signed by the right CA, but not for 127.0.0.1


@pytest.mark.points(1, "a missing certificate file is a one-line error, exit code 1")
def test_the_server_reports_a_missing_certificate(session, tmp_path):
    missing = tmp_path / "no-such-cert.pem"
    session.spawn("server", "server.py", "--port", "0", "--cert", str(missing)).expect_error_exit(session.spec("missing_file", file=missing.name))


def test_the_development_certificate_is_labelled_and_valid_for_another_year():
    """Maintainers: when this fails, run stages/10/certs/make-dev-certs.sh and commit the new files."""
    for name in ("dev-ca.pem", "localhost.pem"):
        end = subprocess.run(["openssl", "x509", "-in", str(DEV_CERTS / name), "-noout", "-checkend",
                              str(365 * 24 * 3600)], capture_output=True, text=True)
        assert end.returncode == 0, f"{name} expires within a year: {end.stdout.strip()}"
    issuer = subprocess.run(["openssl", "x509", "-in", str(DEV_CERTS / "localhost.pem"), "-noout", "-issuer"],
                            capture_output=True, text=True, check=True).stdout
    assert "local use only" in issuer, f"the development CA must say it is for local use only: {issuer}"
    assert not list(DEV_CERTS.glob("*ca-key*")), "the CA's private key must not be shipped"
    assert "LOCAL USE ONLY" in (DEV_CERTS / "README.md").read_text()

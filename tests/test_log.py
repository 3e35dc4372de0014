"""The server's log is a consumer too: a stdout that nobody reads, that is closed, or that
cannot encode the text must never freeze the room, kill the server or drop a sender.

These servers run with stdout a pipe (not a terminal), as under `server.py | less`,
`server.py | head -1`, a supervisor, or a console that cannot show an emoji.
"""

import os
import select
import signal
import subprocess
import sys
import time

import pytest

import contract
from harness import LISTENING, TIMEOUT, JsonLine, json_message

pytestmark = pytest.mark.needs("chat")

MESSAGES = 6000  # about 600 KB of log: more than a pipe holds (64 KiB) and the 4,096 lines that may wait


class PipedServer:
    """The stage's server with stdout and stderr pipes, which the check reads only when it says."""

    def __init__(self, session, env=None):
        argv = [sys.executable, str(session.stage.program("server.py")), *session.stage.args_for("server.py"),
                "--port", "0"]
        self.process = subprocess.Popen(argv, cwd=session.workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
        self.first_line = self.read_line(session)
        match = LISTENING.search(self.first_line)
        if not match:
            raise session.failure(f"expected {contract.PROGRAMS['listening'].text!r} as the first line on stdout",
                                  repr(self.first_line))
        self.host, self.port = match.group(1), int(match.group(2))

    def read_line(self, session):
        if not select.select([self.process.stdout], [], [], TIMEOUT)[0]:
            raise session.failure("expected the server's first line on stdout", f"nothing within {TIMEOUT} s")
        return self.process.stdout.readline().decode("utf-8", "replace")

    def stop(self, session, seconds=TIMEOUT):
        """Ctrl+C; the exit code, and everything it wrote to stderr. stdout is left as the check left it."""
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            raise session.failure(f"expected the server to exit after Ctrl+C within {seconds} s, with the log "
                                  "unread", "it was still running: is it waiting for its log to be read?") from None
        return code, self.process.stderr.read().decode("utf-8", "replace")

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream and not stream.closed:
                stream.close()


@pytest.fixture
def piped(session):
    """Start piped servers for this check; every one is killed at the end, even after a failure."""
    started = []

    def start(**env):
        server = PipedServer(session, env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


def assert_clean_exit(session, server):
    __tracebackhide__ = True
    code, errors = server.stop(session)
    traceback = session.spec("traceback")
    if code != contract.EXIT_OK or traceback in errors:
        raise session.failure(f"expected exit code {contract.EXIT_OK} after Ctrl+C and no {traceback!r}",
                              f"exit code {code}, stderr:\n{errors[-2000:]}")


def room(session, server, *roles):
    return [session.raw_peer(role, port=server.port) for role in roles]


def joined(peers):
    for peer in peers:
        peer.join()
    return peers


@pytest.mark.needs("log_never_blocks")
@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(2, "a log that nobody reads never stops the chat, or new users joining")
def test_a_log_that_nobody_reads_never_stops_the_chat(session, piped):
    """stdout is a pipe that the check stops reading after the listening line, as under
    `server.py | less` left on its first page. The pipe fills within a few hundred messages."""
    server = piped()
    driver = session.stage.client_class
    talker, listener = joined(room(session, server, "talker", "listener"))
    deadline, padding = time.monotonic() + 3 * TIMEOUT, session.text() + " " + "x" * 60
    for number in range(MESSAGES):
        talker.sock.sendall(driver.wire_say(f"#{number}# {padding}"))  # not in the transcript: 6,000 lines
        if number % 500 == 250:  # keep the listener read, so it is never the one that is stuck
            listener.expect_line(driver.wire_said(talker.name, f"#{number}# {padding}"),
                                 timeout=max(0.1, deadline - time.monotonic()))
    listener.expect_line(driver.wire_said(talker.name, f"#{MESSAGES - 1}# {padding}"),
                         timeout=max(0.1, deadline - time.monotonic()))
    newcomer, = room(session, server, "newcomer")
    newcomer.join()  # new users still get in
    listener.expect_line(driver.wire_joined(newcomer.name))
    assert_clean_exit(session, server)  # and Ctrl+C still ends it, the log still unread


@pytest.mark.needs("log_never_blocks")
@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(2, "a closed log (server.py | head -1) neither kills the server nor breaks Ctrl+C")
def test_a_closed_log_neither_kills_the_server_nor_breaks_its_exit(session, piped):
    server = piped()
    server.process.stdout.close()  # `| head -1`: the reader has gone after the first line
    driver = session.stage.client_class
    alice, bob = joined(room(session, server, "alice", "bob"))
    for _ in range(3):  # the first writes after the close fail: the chat must go on through them
        text = session.text()
        alice.send(driver.wire_say(text))
        bob.expect_line(driver.wire_said(alice.name, text))
    carol, = room(session, server, "carol")
    carol.join()
    assert_clean_exit(session, server)


@pytest.mark.needs("log_never_blocks")
@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(2, "a log that cannot encode the text (PYTHONIOENCODING=ascii) drops nobody")
def test_a_log_that_cannot_encode_the_text_drops_nobody(session, piped):
    server = piped(PYTHONIOENCODING="ascii")
    driver = session.stage.client_class
    alice, bob = joined(room(session, server, "alice", "bob"))
    text = "\U0001f600 caf\u00e9 " + session.text()
    with server_log_read(server):
        alice.send(driver.wire_say(text))
        bob.expect_line(driver.wire_said(alice.name, text))
        if session.stage.has("dm"):
            alice.send(json_message(type="dm", to=bob.name, text=text))
            bob.expect_line(JsonLine(type="dm", text=text, **{"from": alice.name}))
        again = session.text()
        alice.send(driver.wire_say(again))  # the sender was not dropped
        bob.expect_line(driver.wire_said(alice.name, again))
    assert_clean_exit(session, server)


class server_log_read:
    """Keep reading the piped server's stdout in a thread (it must not fill), for a `with` block."""

    def __init__(self, server):
        import threading
        self.server, self.thread = server, threading.Thread(target=self.drain, daemon=True)

    def drain(self):
        while os.read(self.server.process.stdout.fileno(), 65536):
            pass

    def __enter__(self):
        self.thread.start()

    def __exit__(self, *exc):
        return False

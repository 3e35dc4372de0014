"""Every chat client against a scripted server: a line that arrives in pieces is shown once, whole.

The kit's servers send each line in one write, and on loopback it arrives whole: a client that
takes one recv() for one line would pass every other check. Here the test is the server. It
welcomes the client in the stage's wire protocol, then sends a long line of non-ASCII text in
two writes, cut inside a character, and waits until the client has read the first piece before
it sends the second (the kernel's receive queue, as tests/harness.py reads it).
"""

import json
import socket
import time
from datetime import datetime, timezone

import pytest

from harness import TIMEOUT, accept_client, kernel_queues

pytestmark = pytest.mark.needs("chat", "counts_online")


class ScriptedServer:
    """One connection, and what the check makes it send, in the stage's wire protocol."""

    def __init__(self, session):
        self.session = session
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conn = None

    def accept(self):
        self.conn, self.client_port = accept_client(self.session, self.listener)
        self.conn.settimeout(TIMEOUT)

    def read_line(self):
        data = b""
        while not data.endswith(b"\n"):
            piece = self.conn.recv(1)
            if not piece:
                raise self.session.failure("expected the client's first line (its name or hello)",
                                           f"the connection closed after {data!r}")
            data += piece
        return data

    def line(self, kind, **fields):
        """A whole line of the stage's wire protocol: plain text (02), or a JSON message with
        every field the stage's schema defines."""
        schema = self.session.stage.schema
        if not schema:
            term = {"welcome": "welcome_line", "said": "said"}[kind]
            return (self.session.spec(term, **{"online": 1, **fields}) + "\n").encode("utf-8")
        values = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "online": 1, "max_file_size": 1_000_000, **fields}
        message = {"type": kind, **{field: values[field] for field in schema[kind] if not field.endswith("?")}}
        return json.dumps(message, ensure_ascii=False).encode("utf-8") + b"\n"

    def send_in_two_writes(self, data, cut):
        """data[:cut], then, once the client has read it, the rest."""
        self.conn.sendall(data[:cut])
        self.wait_until_client_read()
        self.conn.sendall(data[cut:])

    def wait_until_client_read(self):
        """Until the client's receive queue is empty: it has read the first piece (a TLS
        record is read whole, so the piece is one record)."""
        ours = self.conn.getsockname()[1]
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            queues = kernel_queues(self.client_port, ours)
            if queues is None or queues[1] == 0:
                return
            time.sleep(0.001)  # polls a condition; never used as a delay before acting
        raise self.session.failure("expected the client to read what had arrived",
                                   f"still unread after {TIMEOUT:g} s")

    def close(self):
        for thing in (self.conn, self.listener):
            if thing is not None:
                thing.close()


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(2, "a line that arrives in two pieces, cut inside a character, is shown once and whole")
def test_a_line_in_two_pieces_is_shown_once_and_whole(session):
    server = ScriptedServer(session)
    try:
        name, sender = session.name("alice"), session.name("bob")
        driver = session.stage.client_class
        term = session.spawn(name, "client.py", "--host", "127.0.0.1", "--port", str(server.port),
                             *driver.name_args(name))
        server.accept()
        server.read_line()
        server.conn.sendall(server.line("welcome", name=name))
        session.gate("in", lambda: term.expect(session.spec("welcome", name=name)))
        words = session.text()
        text = " ".join(f"{words} {n}·日本語" for n in range(60))  # about 2 KB, not ASCII
        line = server.line("said", name=sender, text=text, **{"from": sender})
        middle = line.index("日".encode("utf-8")) + 1  # inside the character
        server.send_in_two_writes(line, middle)
        shown = session.spec("said", name=sender, text=text)
        term.expect(shown)
        term.drain()
        if term.output().count(shown) != 1:
            raise session.failure(f"[{name}] expected the line shown once, whole",
                                  f"shown {term.output().count(shown)} times")
    finally:
        server.close()

"""Every chat client against a scripted server: each line it gets is shown once and whole, and
nothing a server sends crashes it or hangs it.

The kit's servers send each line in one write, and on loopback it arrives whole: a client that
takes one recv() for one line would pass every other check. Here the test is the server
(tests/harness.py, accept_client()). It welcomes the client in the stage's wire protocol (plain
text, JSON Lines, TLS or IRC), then plays one case of the table CASES:

- pieces: lines cut at random points (one inside a character; in IRC, one between CR and LF),
  each piece sent once the client has read the one before (the kernel's receive queue);
- long: a line of exactly the stage's line limit, most of it not ASCII;
- odd: lines the client cannot know (an unknown type or field, not JSON, a malformed message),
  then a good one, which must be shown;
- burst: a thousand lines in one write, every one shown once, whole, in order;
- silent: nothing at all while a second client joins: the first neither exits nor spins;
- cut: a line, then a last one without its line end, then the connection closes.

Every case ends with the server hanging up: the client shows `closed` and exits 0, with no
traceback. What a client shows for a message comes from its driver (tests/stages.py).
"""

import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from harness import BLOCKED, TIMEOUT, accept_client, kernel_queues, kernel_wait

pytestmark = pytest.mark.needs("chat")

SERVER, CHANNEL = "kit", "#kit"  # stage 11: the scripted server's name, and the client's channel
NOT_ASCII = "·日本語é🙂"  # two, three and four bytes a character in UTF-8


class ScriptedServer:
    """Connections from the stage's client, and what the check makes it send, in the stage's wire
    protocol."""

    def __init__(self, session):
        self.session = session
        self.irc = session.stage.has("irc")
        self.eol = b"\r\n" if self.irc else b"\n"
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.clients = []

    def client(self, role):
        """Start the stage's client as `role`; accept it, welcome it, and wait until it shows
        the welcome."""
        name = self.session.name(role)
        driver = self.session.stage.client_class
        term = self.session.spawn(name, "client.py", "--host", "127.0.0.1", "--port", str(self.port),
                                  *driver.name_args(name))
        conn, port = accept_client(self.session, self.listener)
        conn.settimeout(TIMEOUT)
        client = Client(self.session, term, conn, port, name)
        self.clients.append(client)
        if self.irc:  # NICK and USER; 001; then its JOIN, echoed
            client.read_until(b"USER ")
            conn.sendall(self.session.stage.terms["001"](server=SERVER, nick=name, user="u", host="127.0.0.1")
                         .encode() + self.eol)
            client.read_until(b"JOIN ")
            conn.sendall(f":{name}!u@127.0.0.1 JOIN {CHANNEL}".encode() + self.eol)
        else:
            client.read_until(b"")  # its name, or its hello
            conn.sendall(self.line("welcome", name=name))
        self.session.gate("in", lambda: term.expect(driver.welcome(name)))
        return client

    def line(self, kind, **fields):
        """A whole line of the stage's wire protocol: plain text (02), or a JSON message with
        every field the stage's schema defines (and `fields` it does not)."""
        schema = self.session.stage.schema
        if not schema:
            term = {"welcome": "welcome_line", "said": "said"}[kind]
            return (self.session.spec(term, **{"online": 1, **fields}) + "\n").encode("utf-8")
        values = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "online": 1, "max_file_size": 1_000_000, **fields}
        wanted = [field for field in schema[kind] if not field.endswith("?")]
        message = {"type": kind, **{field: values[field] for field in wanted},
                   **{field: value for field, value in fields.items() if field not in schema[kind]}}
        return json.dumps(message, ensure_ascii=False).encode("utf-8") + b"\n"

    def said(self, sender, text, **more):
        """The line that brings `sender`'s message `text` (JSON: with `more` fields)."""
        if self.irc:
            return f":{sender}!u@127.0.0.1 PRIVMSG {CHANNEL} :{text}".encode() + self.eol
        return self.line("said", name=sender, text=text, **{"from": sender}, **more)

    def shown(self, sender, text):
        """What the client shows for that message (its driver's said())."""
        return self.session.stage.client_class.said(sender, text)

    def max_text(self, sender, start, end):
        """A text that makes sender's line exactly as long as the stage's limit allows (IRC: 512
        bytes with CR LF; else the limit before the line end): `start`, then characters of
        three bytes and a few x's, then `end`."""
        limit = self.session.stage.client_class.max_line - (2 if self.irc else 0)
        room = limit - len(self.said(sender, start + end)) + len(self.eol)
        middle = "日" * (room // 3)
        return start + middle + "x" * (room - len(middle.encode())) + end

    def close(self):
        for client in self.clients:
            client.conn.close()
        self.listener.close()


class Client:
    """One client under test: its terminal, and the scripted server's end of its connection."""

    def __init__(self, session, term, conn, port, name):
        self.session, self.term, self.conn, self.port, self.name = session, term, conn, port, name

    def read_until(self, command):
        """Read the client's lines until one starts with `command` (b"": its first line)."""
        while True:
            line = b""
            while not line.endswith(b"\n"):
                piece = self.conn.recv(1)
                if not piece:
                    raise self.session.failure(f"[{self.name}] expected its first lines (its name or hello)",
                                               f"the connection closed after {line!r}")
                line += piece
            if line.startswith(command):
                return line

    def send_in_pieces(self, data, cuts):
        """data, cut at `cuts`: each piece sent once the client has read the one before."""
        for start, end in zip([0, *cuts], [*cuts, len(data)]):
            self.conn.sendall(data[start:end])
            if end < len(data):
                self.wait_until_read()

    def wait_until_read(self):
        """Until the client's receive queue is empty: it has read what arrived (a TLS record is
        read whole, so a piece is one record)."""
        ours = self.conn.getsockname()[1]
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            queues = kernel_queues(self.port, ours)
            if queues is None or queues[1] == 0:
                return
            time.sleep(0.001)  # polls a condition; never used as a delay before acting
        raise self.session.failure(f"[{self.name}] expected the client to read what had arrived",
                                   f"still unread after {TIMEOUT:g} s")

    def shows_once(self, *shown):
        """Each of `shown` appears once (after the last is waited for), in this order."""
        __tracebackhide__ = True
        self.term.expect(shown[-1])
        self.term.drain()
        output, at = self.term.output(), -1
        for text in shown:
            count = output.count(text)
            if count != 1 or output.index(text) < at:
                raise self.session.failure(
                    f"[{self.name}] expected each of {len(shown)} lines shown once, whole, in order",
                    f"{text!r} is shown {count} times" + (" (out of order)" if count == 1 else ""))
            at = output.index(text)

    def hang_up(self):
        """The server closes the connection: the client shows `closed` and exits 0, no traceback."""
        __tracebackhide__ = True
        self.conn.close()
        self.term.expect(self.session.spec("closed"))
        self.term.expect_exit(0)


def texts(session, count):
    """`count` new texts, numbered, each with characters that are not ASCII; no text is a part of
    another, so each shown line is found whole or not at all."""
    words = session.text()
    return [f"{number:04} {words}{NOT_ASCII} {number:04}" for number in range(count)]


# ---------------------------------------------------------------- the cases

def pieces(session, server, client, sender):
    """Three lines in one stream, cut at random points, and at these: inside a character, right
    after the first line's end (the next piece must not bring it back), and in IRC between CR and
    LF."""
    lines = texts(session, 3)
    data = b"".join(server.said(sender, text) for text in lines)
    first_end = data.index(b"\n") + 1
    cuts = {data.index(NOT_ASCII[1].encode()) + 1, first_end, *session.words.random.sample(range(1, len(data)), 4)}
    if server.irc:
        cuts.add(data.index(b"\r\n", first_end) + 1)
    client.send_in_pieces(data, sorted(cuts))
    client.shows_once(*(server.shown(sender, text) for text in lines))


def long(session, server, client, sender):
    """A line of exactly the limit (most of it three-byte characters), then a short one."""
    text = server.max_text(sender, f"{session.text()} ", f" {session.text()}")
    after = texts(session, 1)[0]
    client.conn.sendall(server.said(sender, text) + server.said(sender, after))
    client.shows_once(server.shown(sender, text), server.shown(sender, after))


def odd_lines(session, server, name, sender):
    """Lines the client cannot know or read, in the stage's wire protocol."""
    if server.irc:
        return [line.encode() + b"\r\n" for line in (
            f":{SERVER} 999 {name} :a numeric nobody knows", f":{sender}!u@h FROBNICATE {CHANNEL} :what",
            f":{SERVER} 353 {name}", f":{sender}!u@h PART", f":{sender}!u@h NICK", f":{sender}!u@h TOPIC",
            f":{sender}!u@h PRIVMSG", f":{sender}!u@h PRIVMSG {CHANNEL}", ":", f":{sender}", "",
            f"@time=2026-01-01T00:00:00Z :{sender}!u@h PRIVMSG {CHANNEL} :tagged")] + [b"\xff\xfe\r\n"]
    if not session.stage.schema:  # stage 02: any line is text; these are not one of its kinds
        return [b"% a line of no kind\n", b"\xff\xfe not UTF-8\n", b"\n", b"   \n"]
    stamp = datetime.now(timezone.utc).isoformat()
    return [json.dumps(message).encode() + b"\n" for message in (
        {"type": "dance", "time": stamp}, {"type": ["said"], "from": sender, "text": "a list"},
        {"type": {"said": 1}}, {"type": 5}, {"no": "type"}, [1, 2, 3], "a string", None, 42,
        {"type": "said"}, {"type": "said", "from": 7, "text": ["x"], "time": 5},
        {"type": "joined", "name": {"a": 1}}, {"type": "left"}, {"type": "users", "names": "abc"},
        {"type": "users", "names": [1, None]}, {"type": "error"}, {"type": "dm", "text": 3},
        {"type": "shutdown", "time": []}, {"type": "offer"}, {"type": "chunk", "id": "x", "data": "!"},
        {"type": "done", "id": 1}, {"type": "cancelled"}, {"type": "accepted", "id": []},
    )] + [b"this is not JSON\n", b"\xff\xfe{}\n", b"{\"type\": \"said\", \n", b"   \n",
          b"[" * 3000 + b"]" * 3000 + b"\n"]  # nested deeper than Python's recursion limit


def odd(session, server, client, sender):
    """Lines the client cannot know, then good ones: shown. In JSON, a message with a field the
    protocol does not define is shown as the message it is."""
    good = texts(session, 2)
    client.conn.sendall(b"".join(odd_lines(session, server, client.name, sender)))
    client.conn.sendall(server.said(sender, good[0]))
    extra = {"colour": "teal", "mood": {"deep": [1]}} if session.stage.schema else {}
    client.conn.sendall(server.said(sender, good[1], **extra))
    client.shows_once(*(server.shown(sender, text) for text in good))


def burst(session, server, client, sender):
    """A thousand lines in one write."""
    lines = texts(session, 1000)
    client.conn.sendall(b"".join(server.said(sender, text) for text in lines))
    client.shows_once(*(server.shown(sender, text) for text in lines))


def cpu_seconds(pid):
    """CPU time the process has used so far, user and system, all threads (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def silent(session, server, client, sender):
    """The server says nothing to the client while a second client starts and joins: the first
    uses (almost) no CPU meanwhile, still runs, sleeps in a system call, and shows the next line."""
    pid, started, used = client.term.pid, time.monotonic(), cpu_seconds(client.term.pid)
    other = server.client("bob")  # what the check waits on meanwhile: real work, a program starting
    elapsed, used = time.monotonic() - started, cpu_seconds(pid) - used
    if not client.term.child.isalive():
        raise session.failure(f"[{client.name}] expected to go on waiting while the server is silent",
                              f"it ended ({client.term.describe_exit()})")
    if used > 0.02 + elapsed / 4:
        raise session.failure(f"[{client.name}] expected to sleep while the server is silent",
                              f"it used {used:.2f} s of CPU in {elapsed:.2f} s")
    client.term.wait_until_idle()  # every thread asleep at once: a loop that spins never is
    if not kernel_wait(pid).startswith(BLOCKED):
        raise session.failure(f"[{client.name}] expected to wait in a system call while the server is silent",
                              f"its main thread is in {kernel_wait(pid)!r}")
    text = texts(session, 1)[0]
    client.conn.sendall(server.said(sender, text))
    client.shows_once(server.shown(sender, text))
    other.hang_up()


def cut(session, server, client, sender):
    """A line, then all of one but its line end (IRC: its CR), and the server closes: the first
    is shown, the last is not a message (contract, `closed`)."""
    shown, unfinished = texts(session, 2)
    client.conn.sendall(server.said(sender, shown) + server.said(sender, unfinished)[:-1])
    client.shows_once(server.shown(sender, shown))
    client.wait_until_read()
    client.hang_up()
    client.term.assert_not_seen(server.shown(sender, unfinished), "its line never ended: it is not a message")


@dataclass(frozen=True)
class Case:
    id: str
    play: object  # play(session, server, client, sender)
    points: int
    description: str


CASES = [
    Case("pieces", pieces, 2, "lines cut at random points (inside a character, between CR and LF) are each "
                              "shown once and whole"),
    Case("long", long, 1, "a line as long as the line limit, not ASCII, is shown whole"),
    Case("odd", odd, 2, "lines the client cannot know (unknown types or fields, not JSON) neither crash nor "
                        "stop it: the next good line is shown"),
    Case("burst", burst, 2, "a thousand lines in one write are each shown once, whole, in order"),
    Case("silent", silent, 1, "a silent server: the client neither exits nor spins"),
    Case("cut", cut, 1, "the server closes in the middle of a line: connection closed by server, exit 0, "
                        "and the unfinished line is not shown as a message"),
]


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.parametrize("case", [pytest.param(case, id=case.id, marks=pytest.mark.points(case.points, case.description))
                                  for case in CASES])
def test_client_against_a_scripted_server(session, case):
    server = ScriptedServer(session)
    try:
        client = server.client("alice")
        case.play(session, server, client, session.name("carol"))
        if client.term.child.isalive():
            client.hang_up()
    finally:
        server.close()

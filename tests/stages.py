"""Every stage: what it can do (capabilities), and how its UI does things (its driver).

A test asks for capabilities with `@pytest.mark.needs(...)` and runs on every
selected stage that has them all. A new stage adds one `Stage(...)` line below,
usually with a driver that subclasses the previous one, and gets every earlier
test that applies to it for free.

Capabilities:
  echo          the server answers each line with "echo: <line>" (stage 01)
  one_at_a_time an iterative server: a second client waits until the first leaves
  chat          many clients in one room; a line goes to all the *others*
  join_leave    the others are told "NAME joined" and "NAME left"
  text_wire     the plain-text wire format of stage 02: first line = name, then chat lines
  many_clients  1,000 clients at once (no select.select() and its 1024-descriptor limit)
"""

import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- drivers

class EchoClient:
    """Stage 01's UI: type a line at the "> " prompt, read "echo: <line>"."""

    numbers = itertools.count(1)

    def __init__(self, session, term, name):
        self.session = session
        self.term = term
        self.name = name

    @classmethod
    def start(cls, session, server, name=None, *args, **kwargs):
        name = name or f"client{next(cls.numbers)}"
        term = session.spawn(name, "client.py", "--host", server.host, "--port", str(server.port),
                             *cls.name_args(name), *args, **kwargs)
        client = cls(session, term, name)
        client.wait_until_in()
        return client

    @staticmethod
    def name_args(name):
        return ()  # stage 01 has no names

    def wait_until_in(self):
        self.term.expect("connected to")

    # What the user does
    def say(self, text):
        self.term.send_line(text)

    def quit(self):
        """Leave the way a user normally would; the client must exit 0."""
        self.term.ctrl_d()
        self.term.expect_exit(0)

    def sync(self):
        """Return once the server has finished with everything this client did so far.

        Before a keypress such as Ctrl+C on the server: CPython runs a signal
        handler only between bytecodes, so a Ctrl+C that lands while the server is
        busy just before a blocking recv() waits there until the next network event.
        """
        self.say("sync")
        self.sees(self.echo("sync"))

    def notices_server_gone(self):
        # A blocking client only finds out when it next talks to the server.
        self.say("anyone there?")
        self.term.expect("connection closed by server")

    # What the user sees
    def sees(self, text):
        __tracebackhide__ = True
        return self.term.expect(text)

    def never_saw(self, text, why=""):
        __tracebackhide__ = True
        self.term.assert_not_seen(text, why)

    # How this stage words things
    @staticmethod
    def echo(text):
        return f"echo: {text}"

    # The same on the wire, for a raw test peer
    @staticmethod
    def wire_line(text):
        return text.encode("utf-8") + b"\n"


# --8<-- [start:room_client]
class RoomClient(EchoClient):
    """Stage 02's UI: `--name NAME`, then every line you type is a chat message."""

    @staticmethod
    def name_args(name):
        return ("--name", name)

    def wait_until_in(self):
        # Until the server has registered us, what we type could be lost: wait for its welcome.
        self.term.expect(self.welcome(self.name))

    def sync(self):
        # Logging the join is the last thing the server does for a newcomer.
        self.session.server.logs(f"{self.name} joined")

    def notices_server_gone(self):
        self.term.expect("connection closed by server")

    @staticmethod
    def welcome(name):
        return f"welcome, {name}"

    @staticmethod
    def said(name, text):
        return f"{name}: {text}"

    @staticmethod
    def joined(name):
        return f"* {name} joined"

    @staticmethod
    def left(name):
        return f"* {name} left"
    # --8<-- [end:room_client]

    @classmethod
    def wire_hello(cls, name):
        return cls.wire_line(name)

    @classmethod
    def wire_say(cls, text):
        return cls.wire_line(text)


# ---------------------------------------------------------------- the stages

@dataclass(frozen=True)
class Stage:
    id: str
    title: str
    client_class: type
    caps: frozenset
    folder: Path = field(default=None)

    def __post_init__(self):
        if self.folder is None:
            object.__setattr__(self, "folder", REPO / "stages" / self.id)

    def program(self, name):
        return self.folder / name

    def has(self, *caps):
        return set(caps) <= self.caps

    def at(self, folder):
        """The same spec, checked against the programs in another folder (a student's)."""
        return replace(self, folder=Path(folder).resolve())


# --8<-- [start:stages]
STAGES = [
    Stage("01", "blocking echo, one client at a time", EchoClient,
          frozenset({"echo", "one_at_a_time"})),
    Stage("02", "select-based chat room", RoomClient,
          frozenset({"chat", "join_leave", "text_wire", "many_clients"})),
]

# --8<-- [end:stages]

BY_ID = {stage.id: stage for stage in STAGES}

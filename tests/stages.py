"""Every stage: what it can do (capabilities), and how its UI does things (its driver).

A test asks for capabilities with `@pytest.mark.needs(...)` and runs on every
selected stage that has them all. A new stage adds one `Stage(...)` line below,
usually with a driver that subclasses the previous one, and gets every earlier
test that applies to it for free.

Capabilities are listed in CAPABILITIES below, each with what it means (the instructors'
guide shows, per stage, the ones its grade holds).

Each stage also names its wire protocol: clients and servers of stages with the
same `wire` must work together (tests/test_compat.py).
"""

import json
import re
import signal
from dataclasses import dataclass, field, replace
from pathlib import Path

import contract
from harness import DEV_CERTS, LISTENING, IrcLine, JsonLine, irc_parse


# Every capability, and what a stage that has it must do (a check's @pytest.mark.needs).
# The defences (stage 06 and every later server stage) come after "irc"; lessons 02-05
# list them in their "Not handled here" box.
CAPABILITIES = {
    "echo": "the server answers each line with \"echo: <line>\" (stage 01)",
    "one_at_a_time": "an iterative server: a second client waits until the first leaves",
    "chat": "many clients in one room; a line goes to all the *others*",
    "join_leave": "the others are told \"NAME joined\" and \"NAME left\"",
    "many_clients": "`crowd` clients at once in the default run, `full_crowd` in the slow tier: 1,000 for selectors and asyncio (no select.select() and its 1024-descriptor limit), 500 for threads",
    "drops_stuck": "a client that never reads is dropped (one cap per client); it cannot freeze the room",
    "message_log": "the server logs a line per message, with its sender and its text (not stage 11: an IRC server logs who comes and goes, not what they say)",
    "relays_whole_lines": "a line of up to the line limit is taken and relayed whole (not stage 11: "
                          "a relayed IRC line gains a prefix, and must fit in 512 bytes itself)",
    "counts_online": "the welcome counts the users in the room, you included; a connection that has not "
                     "joined is nobody (not stage 11: an IRC welcome has no count)",
    "json_wire": "JSON Lines: hello/say/bye in, welcome/joined/said/left/bye/error out (stage 03)",
    "name_rules": "a name that breaks the protocol's rule (control characters included) is refused",
    "escapes_text": "the client shows a control character from the network escaped, never raw (stage 03 on)",
    "max_clients": "--max-clients N; the next client gets error server-full",
    "dm": "direct messages: dm {to, text}; error no-such-user",
    "who": "the user list: who -> users {names}",
    "unique_names": "a taken name (any case) gets error name-taken; the client asks again",
    "commands": "stage 05's command-mode client: C PM, C DM, C LS, C EX, C HELP, D <text>",
    "exit_command": "the client has a command to leave (C EX in 05, 06 and 09, /quit in 07)",
    "shutdown_notice": "Ctrl+C on the server tells every client it is shutting down",
    "history": "a newcomer gets the last public messages (--history N, default 20), marked \"history\"",
    "slash_commands": "stage 07's client: plain text is public, /msg NAME TEXT, /list, /help, /quit; and a --plain mode, also used when there is no terminal",
    "tui": "a full-screen curses client, checked on screen through a terminal emulator (tests/screen.py)",
    "server": "a server.py and a client.py (every stage but 08, where each peer.py is both)",
    "many_idle": "5,000 idle connections at once while a few clients chat (asyncio, stage 09)",
    "p2p": "peer.py: listens and connects out; help, myip, myport, connect, list, terminate, send, exit",
    "tls": "every connection is TLS: server --cert/--key, client --cafile (the kit's dev CA in the tests); a plaintext client gets error tls-required",
    "file_transfer": "C FT NAME PATH; the recipient answers C OK or C NO; offer/accept/chunk/done on the wire; saved under --downloads with a safe, new name; --max-file-size on the server",
    "irc": "the server speaks IRC (RFC 1459 and 2812, the subset lesson 11 covers): checked on the wire by tests/test_irc.py, and with real clients (irssi)",
    "join_deadline": "a connection that never joins is dropped after --join-timeout; at the descriptor limit, they cannot lock real users out",
    "fd_exhaustion": "accept() failing for lack of descriptors (EMFILE) neither kills the server nor spins",
    "memory_share": "stuck clients cost bounded memory in total: one total split into shares, with a floor",
    "log_never_blocks": "a log that nobody reads, that is closed, or that cannot encode never stops the chat",
    "shutdown_deadline": "a stuck client cannot hold up Ctrl+C on the server",
    "hostile_text": "control characters from the network reach the server's log escaped",
    "evicts_unjoined": "at the descriptor limit, the oldest connection that has not joined is closed "
                       "(join-timeout) to make room for a newcomer at once (stages 06 and 07: 09, 10 "
                       "and 11 wait for a deadline)",
    "attacks": "stages/06/attacks/: the kit's attack scripts, one per defence, run against the server "
               "(tests/test_attacks.py); stage 06 only",
}

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- drivers

class EchoClient:
    """Stage 01's UI: type a line, read "echo: <line>".

    Every string a driver waits for comes from its `terms`, the stage's part of
    tests/contract.py: the table the lesson shows as the spec.
    """

    terms = contract.ECHO
    max_line = 8192  # the longest line a server takes (docs/protocol.md)
    drops_long_lines = True  # a longer line gets an error, then the server hangs up

    def __init__(self, session, term, name):
        self.session = session
        self.term = term
        self.name = name

    @classmethod
    def start(cls, session, server, name, *args, stage=None, **kwargs):
        term = session.spawn(name, "client.py", "--host", server.host, "--port", str(server.port),
                             *cls.name_args(name), *args, stage=stage, **kwargs)
        client = cls(session, term, name)
        client.wait_until_in()
        session.clients.append(client)
        return client

    def caused(self):
        """The public events this client's user caused (tests/harness.py, Observers): none here."""
        return []

    @staticmethod
    def name_args(name):
        return ()  # stage 01 has no names

    def wait_until_in(self):
        self.session.gate("in", lambda: self.term.expect(self.terms["connected"]()))

    # What the user does
    @staticmethod
    def lines_to_say(text):
        """The lines a user types to say `text` (also what a file given as stdin holds)."""
        return [text]

    def say(self, text):
        for line in self.lines_to_say(text):
            self.term.send_line(line)

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
        text = self.session.text()
        self.say(text)
        self.sees(self.echo(text))

    def notices_server_gone(self):
        # A blocking client only finds out when it next talks to the server.
        self.say(self.session.text())
        self.term.expect(self.terms["closed"]())

    # What the user sees
    def sees(self, text):
        __tracebackhide__ = True
        return self.term.expect(text)

    def never_saw(self, text, why=""):
        __tracebackhide__ = True
        self.term.assert_not_seen(text, why)

    # How this stage words things
    @classmethod
    def echo(cls, text):
        return cls.terms["echo"](text=text)

    # The same on the wire, for a raw test peer
    @staticmethod
    def wire_line(text):
        return text.encode("utf-8") + b"\n"

    @classmethod
    def wire_say(cls, text):
        return cls.wire_line(text)

    @classmethod
    def filler(cls, size):
        """`size` x's for a check's long messages, or fewer where the stage's lines are short:
        whatever the protocol wraps around it, a message must fit in one line."""
        return "x" * min(size, cls.max_line - 112)


# --8<-- [start:room_client]
class RoomClient(EchoClient):
    """Stage 02's UI: `--name NAME`, then every line you type is a chat message."""

    terms = contract.ROOM

    @staticmethod
    def name_args(name):
        return ("--name", name)

    @staticmethod
    def nameless_args():
        """How to start the client without a name, so that it asks for one."""
        return ()

    def say(self, text):
        super().say(text)
        self.said_texts = getattr(self, "said_texts", []) + [text]

    def caused(self):
        """Its join, what it said, and its leaving once its program has ended
        (SIGKILL: lost)."""
        said = getattr(self, "said_texts", [])
        events = [("joined", self.name)] + [("said", self.name, text) for text in said]
        if not self.term.child.isalive():
            killed = self.term.child.signalstatus == signal.SIGKILL
            reason = self.left_reason("lost") if killed else None
            events.append(("left", self.name, reason))
        return events

    def wait_until_in(self):
        # Until the server has registered us, what we type could be lost: wait for its
        # welcome.
        self.session.gate("in", lambda: self.term.expect(self.welcome(self.name)))

    def sync(self):
        # Logging the join is the last thing the server does for a newcomer.
        self.session.server_logs_join(self.name)

    def notices_server_gone(self):
        self.term.expect(self.terms["closed"]())

    @classmethod
    def welcome(cls, name):
        return cls.terms["welcome"](name=name)

    @classmethod
    def said(cls, name, text):
        return cls.terms["said"](name=name, text=text)

    @classmethod
    def joined(cls, name):
        return cls.terms["joined"](name=name)

    @classmethod
    def left(cls, name):
        return cls.terms["left"](name=name)
    # --8<-- [end:room_client]

    # The same on the wire, for raw test peers: what to send, and what a received line must match.
    @classmethod
    def wire_hello(cls, name):
        return cls.wire_line(name)

    @classmethod
    def wire_welcome(cls, name):
        return cls.welcome(name)

    @classmethod
    def wire_welcome_count(cls, name, online):
        """The whole welcome line, its count included."""
        expected = cls.terms["welcome_line"](name=name, online=online)
        return lambda line: line == expected

    @classmethod
    def wire_said(cls, name, text):
        return cls.said(name, text)

    @classmethod
    def wire_joined(cls, name):
        return cls.joined(name)

    @classmethod
    def wire_left(cls, name):
        return cls.left(name)

    @classmethod
    def wire_unfinished_hello(cls, name):
        """All of a hello but its last byte: a connection that has not joined yet."""
        return cls.wire_hello(name)[:-1]

    @staticmethod
    def wire_bad_name(name):
        """What a received line must match when the server refuses the name `name`."""
        return lambda line: "error" in line

    # What the observers (tests/harness.py, Observers) read on the wire: a line sent, parsed into
    # what it asks for, and a line received, parsed into the event it tells of.
    @staticmethod
    def wire_request(line):
        """02's plain text: any line not blank is the name (the first) or a message (the server strips it)."""
        text = line.decode("utf-8", errors="replace").strip()
        return ("line", text) if text else None

    @classmethod
    def too_long(cls, line):
        """Is this line (without its \\n) over the server's limit?"""
        return len(line) > cls.max_line

    @staticmethod
    def same_name(asked, given):
        return asked == given

    @staticmethod
    def left_reason(reason):
        """The reason a left event carries on this wire (02's "* NAME left" has none)."""
        return None

    @classmethod
    def wire_event(cls, line):
        """("welcome", name), ("joined", name), ("said", name, text), ("left", name, reason), or None."""
        for kind, pattern in cls.event_patterns():
            match = pattern.fullmatch(line)
            if match and not match["name"].startswith("* "):  # "* error: ...": the server's own words
                return {"welcome": ("welcome", match["name"]), "joined": ("joined", match["name"]),
                        "left": ("left", match["name"], None),
                        "said": ("said", match["name"], match.groupdict().get("text"))}[kind]
        return None

    @classmethod
    def event_patterns(cls):
        """The contract's lines of the room's events, as regular expressions (made once per driver)."""
        if "_event_patterns" not in cls.__dict__:
            patterns = []
            for key, kind in (("welcome_line", "welcome"), ("joined", "joined"), ("left", "left"), ("said", "said")):
                pattern = re.escape(cls.terms[key].text).replace(re.escape("{name}"), r"(?P<name>.+?)")
                pattern = pattern.replace(re.escape("{text}"), "(?P<text>.*)").replace(re.escape("{online}"), r"\d+")
                patterns.append((kind, re.compile(pattern)))
            cls._event_patterns = patterns
        return cls._event_patterns

    @classmethod
    def wire_first_reply(cls, name):
        """The first line a connection that joins gets: its welcome."""
        return lambda line: cls.wire_event(line) == ("welcome", name)

    @classmethod
    def wire_unjoined_may_get(cls, stage, stopped):
        """What the spec lets a connection that has not joined receive: nothing on 02."""
        return []

    @staticmethod
    def wire_departed(line):
        """The name in a received line that says someone left, else None."""
        if "left" not in line:
            return None
        try:
            message = json.loads(line)
        except ValueError:
            return line.removeprefix("* ").removesuffix(" left")  # stage 02's "* NAME left"
        return message.get("name") if isinstance(message, dict) and message.get("type") == "left" else None


class JsonRoomClient(RoomClient):
    """Stages 03 and 04: the same UI as 02, JSON Lines on the wire, times and reasons on screen."""

    terms = contract.JSON_ROOM
    max_line = 8192  # the longest line a server takes (docs/protocol.md)

    @classmethod
    def left_because(cls, name, reason):
        return cls.terms["left_because"](name=name, reason=reason)

    @staticmethod
    def wire_message(message):
        return json.dumps(message).encode("utf-8") + b"\n"

    @classmethod
    def wire_hello(cls, name):
        return cls.wire_message({"type": "hello", "name": name, "client_id": f"test-{name}"})

    @classmethod
    def wire_say(cls, text):
        return cls.wire_message({"type": "say", "text": text})

    @classmethod
    def wire_welcome(cls, name):
        return JsonLine(type="welcome", name=name)

    @staticmethod
    def wire_request(line):
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):  # the server answers both with an error
            return None
        if not isinstance(message, dict):
            return None
        kind = message.get("type")
        if kind == "hello" and isinstance(message.get("name"), str):
            return ("hello", message["name"])
        if kind == "say" and isinstance(message.get("text"), str):
            return ("say", message["text"])
        return ("bye",) if kind == "bye" else None

    @staticmethod
    def left_reason(reason):
        return reason

    @classmethod
    def wire_event(cls, line):
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            return None
        if not isinstance(message, dict):
            return None
        kind = message.get("type")
        if kind == "said" and message.get("history"):
            return ("history",)  # 07: an old message for a newcomer, not a broadcast
        return {"welcome": ("welcome", message.get("name")), "joined": ("joined", message.get("name")),
                "said": ("said", message.get("from"), message.get("text")),
                "left": ("left", message.get("name"), message.get("reason")),
                "shutdown": ("shutdown",)}.get(kind, (kind,))

    @classmethod
    def wire_unjoined_may_get(cls, stage, stopped):
        """Its own join-timeout (06 on), and the shutdown notice when the server stops."""
        allowed = [JsonLine(type="error", code="join-timeout")] if stage.has("join_deadline") else []
        return allowed + ([JsonLine(type="shutdown")] if stopped and stage.has("shutdown_notice") else [])

    @classmethod
    def wire_welcome_count(cls, name, online):
        return JsonLine(type="welcome", name=name, online=online)

    @classmethod
    def wire_said(cls, name, text):
        return JsonLine(type="said", text=text, **{"from": name})

    @classmethod
    def wire_joined(cls, name):
        return JsonLine(type="joined", name=name)

    @classmethod
    def wire_left(cls, name):
        return JsonLine(type="left", name=name)


class CommandClient(JsonRoomClient):
    """Stage 05's UI: commands start with "C ", message data with "D "."""

    terms = contract.COMMAND

    @staticmethod
    def lines_to_say(text):
        # Typed ahead: the terminal keeps the second line until the client reads it.
        return ["C PM", f"D {text}"]

    def dm(self, to, text):
        self.term.send_line("C DM")
        self.term.send_line(f"C {to}")
        self.term.send_line(f"D {text}")

    def exit_command(self):
        self.term.send_line("C EX")
        self.term.expect_exit(contract.EXIT_OK)


class SlashClient(JsonRoomClient):
    """Stage 07's UI in plain mode: plain text is public, "/msg NAME TEXT" is direct, "/quit" leaves.

    Its full-screen mode is checked on screen by tests/test_terminal_ui.py.
    """

    terms = contract.SLASH

    @staticmethod
    def name_args(name):
        return ("--plain", "--name", name)

    @staticmethod
    def nameless_args():
        return ("--plain",)

    def dm(self, to, text):
        self.term.send_line(f"/msg {to} {text}")

    def exit_command(self):
        self.term.send_line("/quit")
        self.term.expect_exit(contract.EXIT_OK)


class FileClient(CommandClient):
    """Stage 10's UI: stage 05's commands, and C FT (then C <name>, C <path>), C OK, C NO for files."""

    terms = contract.FILES

    max_line = 65536  # room for a file chunk

    def offer_file(self, to, path):
        self.term.send_line("C FT")
        self.term.send_line(f"C {to}")
        self.term.send_line(f"C {path}")

    def answer_offer(self, accept):
        self.term.send_line("C OK" if accept else "C NO")


class IrcClient(RoomClient):
    """Stage 11's client.py: `--name NICK`, and a line you type goes to #kit; IRC on the wire.

    The stage needs no client (irssi is one), but the shared checks drive a client in a
    terminal: stages/11/client.py is a minimal one. Raw test peers speak IRC: NICK and USER,
    then JOIN #kit, is their hello; the end of the NAMES list is their welcome.
    """

    terms = contract.IRC
    max_line = 512  # RFC 1459 2.3, CR LF included
    drops_long_lines = False  # 417, and the connection goes on (lesson 11)
    channel = "#kit"

    @staticmethod
    def wire_line(text):
        return text.encode("utf-8") + b"\r\n"

    @classmethod
    def wire_hello(cls, name):
        return cls.wire_unfinished_hello(name) + b"\r\n" + cls.wire_line(f"JOIN {cls.channel}")

    @classmethod
    def wire_unfinished_hello(cls, name):
        """NICK and USER but the USER line's end: not registered yet."""
        return cls.wire_line(f"NICK {name}") + f"USER user 0 * :{name}".encode()

    @classmethod
    def wire_say(cls, text):
        return cls.wire_line(f"PRIVMSG {cls.channel} :{text}")

    @classmethod
    def wire_welcome(cls, name):
        return IrcLine("366", name, cls.channel)  # the last reply to a JOIN

    @classmethod
    def wire_request(cls, line):
        try:
            _, command, params = irc_parse(line.decode("utf-8", errors="replace").rstrip("\r"))
        except ValueError:
            return None
        if command == "NICK" and params:
            return ("hello", params[0])
        if command == "PRIVMSG" and params[:1] == [cls.channel] and len(params) > 1:
            return ("say", params[1])
        return ("bye",) if command == "QUIT" else None

    @classmethod
    def too_long(cls, line):
        return len(line) + 1 > cls.max_line  # RFC 1459: 512 bytes, CR LF included

    @staticmethod
    def same_name(asked, given):
        fold = str.maketrans("[]\\~", "{}|^")  # rfc1459 case mapping
        return asked.lower().translate(fold) == given.lower().translate(fold)

    @classmethod
    def wire_event(cls, line):
        try:
            prefix, command, params = irc_parse(line.rstrip("\r"))
        except ValueError:
            return None
        nick = (prefix or "").split("!", 1)[0]
        if command == "366" and params:
            return ("welcome", params[0])
        if command == "JOIN" and params[:1] == [cls.channel]:
            return ("joined", nick)
        if command == "PRIVMSG" and params[:1] == [cls.channel] and len(params) > 1:
            return ("said", nick, params[1])
        if command == "QUIT":
            return ("left", nick, None)  # its reason is free text: Quit, Connection closed, ...
        return ("shutdown",) if command == "ERROR" else (command,)

    @classmethod
    def wire_first_reply(cls, name):
        return IrcLine("001", name)  # registration's first reply

    @classmethod
    def wire_unjoined_may_get(cls, stage, stopped):
        """The ERROR before the server closes it: its registration timed out, or the server stops."""
        return [IrcLine("ERROR")]

    @classmethod
    def wire_said(cls, name, text):
        return IrcLine("PRIVMSG", cls.channel, text, source=name)

    @classmethod
    def wire_joined(cls, name):
        return IrcLine("JOIN", cls.channel, source=name)

    @classmethod
    def wire_left(cls, name):
        return IrcLine("QUIT", source=name)

    @staticmethod
    def wire_bad_name(name):
        return IrcLine("432", "*", name)

    @staticmethod
    def wire_departed(line):
        if " QUIT " not in line:
            return None
        prefix, command, _ = irc_parse(line.rstrip("\r"))
        return (prefix or "").split("!", 1)[0] if command == "QUIT" else None


class Peer:
    """Stage 08's UI: one peer.py in a terminal, driven through its commands."""

    terms = contract.PEER

    def __init__(self, session, term, name, port):
        self.session, self.term, self.name, self.port = session, term, name, port

    @classmethod
    def start(cls, session, role, *args):
        """A peer listening on a free loopback port (the network rule: tests stay on 127.0.0.1)."""
        name = session.name(role)
        term = session.spawn(name, "peer.py", "--host", "127.0.0.1", "--port", "0", *args)
        port = int(term.expect_regex(LISTENING.pattern).group(2))
        term.expect(cls.terms["prompt"]())  # it reads commands from now on
        return cls(session, term, name, port)

    def type(self, line):
        self.term.send_line(line)

    def sees(self, text):
        __tracebackhide__ = True
        return self.term.expect(text)

    def connect(self, other):
        """Connect to another peer; both sides announce it. Returns our id for the connection."""
        self.type(f"connect 127.0.0.1 {other.port}")
        number = int(self.term.expect_regex(self.terms["connection"](port=other.port)).group(1))
        other.sees(self.terms["connected_from"](port=self.port))
        return number

    def connection_id(self, other):
        """Our id for the connection with `other`, as `list` shows it."""
        self.type("list")
        return int(self.term.expect_regex(self.terms["row"](port=other.port)).group(1))


# ---------------------------------------------------------------- the stages

@dataclass(frozen=True)
class Stage:
    id: str
    title: str
    client_class: type
    caps: frozenset
    wire: str  # stages with the same wire protocol can talk to each other
    crowd: int = 0  # how many clients at once the many_clients check connects
    full_crowd: int = 0  # the same in the slow tier (python -m pytest --slow -m slow)
    programs: tuple = ("server.py", "client.py")  # what a submission folder must hold
    folder: Path = field(default=None)

    def __post_init__(self):
        if self.folder is None:
            object.__setattr__(self, "folder", REPO / "stages" / self.id)

    def program(self, name):
        return self.folder / name

    def has(self, *caps):
        return set(caps) <= self.caps

    @property
    def terms(self):
        """This stage's part of the contract: its driver's terms, but those of capabilities it lacks
        (a defence that only stage 06 on has: a term's `cap`)."""
        return {key: term for key, term in self.client_class.terms.items()
                if term.cap is None or term.cap in self.caps}

    @property
    def schema(self):
        """Every server message of this stage's protocol and its fields (tests/contract.py), or None."""
        return contract.JSON_2_HISTORY if self.has("history") else contract.WIRE.get(self.wire)

    def args_for(self, program):
        """Arguments every run of `program` gets: a TLS stage's certificate, key and CA (the kit's
        development ones, so that a student's programs are checked with the same files)."""
        if not self.has("tls"):
            return ()
        return {"server.py": ("--cert", str(DEV_CERTS / "localhost.pem"), "--key", str(DEV_CERTS / "localhost-key.pem")),
                "client.py": ("--cafile", str(DEV_CERTS / "dev-ca.pem"))}.get(program, ())

    def at(self, folder):
        """The same spec, checked against the programs in another folder (a student's)."""
        return replace(self, folder=Path(folder).resolve())


# --8<-- [start:stages]
CHAT = {"server", "chat", "join_leave", "many_clients", "drops_stuck", "message_log",
        "relays_whole_lines", "counts_online"}
PROTOCOL = CHAT | {"json_wire", "max_clients", "name_rules", "escapes_text"}
COMPLETE = PROTOCOL | {"dm", "who", "unique_names", "commands", "exit_command"}
COMPLETE |= {"shutdown_notice"}
# Stage 06 teaches these, one at a time; every later server stage keeps them.
DEFENCES = {"join_deadline", "fd_exhaustion", "memory_share", "log_never_blocks",
            "shutdown_deadline", "hostile_text"}
LIMITS = COMPLETE | DEFENCES
TUI = LIMITS - {"commands"} | {"history", "slash_commands", "tui", "evicts_unjoined"}
ECHO = {"server", "echo", "one_at_a_time"}
IRC = (CHAT - {"message_log", "relays_whole_lines", "counts_online"} | DEFENCES
       | {"shutdown_notice", "irc", "name_rules", "escapes_text"})

STAGES = [
    Stage("01", "blocking echo, one client at a time", EchoClient,
          frozenset(ECHO), "echo"),
    Stage("02", "select-based chat room", RoomClient,
          frozenset(CHAT), "text", crowd=300, full_crowd=1000),
    Stage("03", "a real protocol: JSON Lines", JsonRoomClient,
          frozenset(PROTOCOL), "json-1", crowd=100, full_crowd=1000),
    # Threaded stages: two threads per client. Every join is announced to everyone,
    # and each of those deliveries wakes a writer thread, so a crowd of threads is
    # much slower to fill (compare: python -m pytest -n 0 --stage 02,04 -k crowd
    # --durations=2).
    Stage("04", "a thread per client", JsonRoomClient,
          frozenset(PROTOCOL), "json-1", crowd=100, full_crowd=500),
    Stage("05", "the complete chat", CommandClient,
          frozenset(COMPLETE), "json-2", crowd=100, full_crowd=500),
    # 05's chat, fit for strangers: each defence taught one at a time.
    Stage("06", "limits: a server that strangers can reach", CommandClient,
          frozenset(LIMITS | {"evicts_unjoined", "attacks"}), "json-2",
          crowd=100, full_crowd=500),
    Stage("07", "a terminal UI", SlashClient,
          frozenset(TUI), "json-2", crowd=100, full_crowd=500),
    Stage("08", "peer-to-peer", Peer,
          frozenset({"p2p"}), "p2p", programs=("peer.py",)),
    # asyncio: stage 05's behaviour and UI, so the same driver; 5,000 idle
    # connections in the slow tier.
    Stage("09", "asyncio", CommandClient,
          frozenset(LIMITS | {"many_idle"}), "json-2", crowd=100, full_crowd=1000),
    # 09 over TLS, plus files: every connection (and every raw test peer) does a TLS
    # handshake first.
    Stage("10", "secure chat (TLS) and file transfer", FileClient,
          frozenset(LIMITS | {"tls", "file_transfer"}), "json-2-tls",
          crowd=100, full_crowd=1000),
    # 09's design speaking IRC; its client.py is a minimal one for the shared checks.
    Stage("11", "the chat speaks IRC", IrcClient,
          frozenset(IRC), "irc", crowd=100, full_crowd=1000),
]

# --8<-- [end:stages]

BY_ID = {stage.id: stage for stage in STAGES}


def first_words(stage):
    """What a client meets first on the wire: the wires json-1 and json-2 differ only after the welcome."""
    return "tls" if stage.has("tls") else stage.wire.split("-")[0]


def strangers(stage):
    """For each kind of first words that `stage`'s client does not speak, the nearest stage whose server
    does (tests/test_compat.py): 02's client meets 01, 03, 10 and 11."""
    nearest = {}
    for other in sorted(STAGES, key=lambda other: abs(int(other.id) - int(stage.id))):
        if other.has("server") and first_words(other) != first_words(stage):
            nearest.setdefault(first_words(other), other)
    return sorted(nearest.values(), key=lambda other: other.id)

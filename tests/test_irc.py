"""Stage 11, the IRC server: checked on the wire, and with real clients (irssi, the irc package).

The wire checks compare every field of every reply: the prefix, the command or
numeric, each parameter and the trailing one. A check sends its command, then
`PING :sync-N`, and reads up to the server's PONG: the server handles one
connection's lines in order, so what came before the PONG is *all* it answered,
and the check compares that whole list (nothing missing, nothing extra).

Each command is sent three ways (the `delivery` parameter): each line in one
write, a byte per write, and all the lines with the PING in a single write.

Messages are compared parsed (RFC 1459 2.3.1): the last parameter written with or
without its colon compares equal, as it means the same. Where bytes matter (bad
bytes, colours) the raw line is compared.

The irssi checks drive two irssi processes in ptys and read their screens through
pyte (tests/screen.py). What they wait for is irssi's own wording ("has joined"):
it is in tests/contract.py too (IRSSI), as what the server must make irssi show.

Every check runs on each selected stage with the `irc` capability (stage 11), through
the kit's `session` fixture: `python -m pytest --stage 11` runs them with the shared
checks, and `--impl DIR` runs them against DIR/server.py. The words each reply ends
with are the contract's (tests/contract.py, IRC_WIRE), which lesson 11 shows.
"""

import contextlib
import fnmatch
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import pytest

import contract
from harness import LISTENING, TIMEOUT, connect
from screen import ScreenTerminal

# The kit's default run sends each command whole; --stage 11 and the slow tier also send it a
# byte per write and batched (tests/conftest.py, sampled_cases).
pytestmark = [pytest.mark.needs("irc"), pytest.mark.sampled_cases("delivery", "whole"),
              pytest.mark.no_observers("stage 11's own checks speak IRC whole (NICK, PART, NOTICE, TOPIC, MODE, WHO) through peers of their own, and compare every line each member gets; the observers model the room's joins, messages and quits alone")]

HOST = "127.0.0.1"
# The human part of each numeric reply: free in the RFCs, fixed by the kit's stage (its
# contract, tests/contract.py). 005 holds the five tokens issue 17 asks for, and
# CHANLIMIT (how many channels a user may join: the server bounds it, so it says so).
REPLIES = contract.IRC_WIRE
TEXT = {key: term.text.rpartition(" :")[2] for key, term in REPLIES.items() if " :" in term.text}


# ---------------------------------------------------------------- messages

@dataclass(frozen=True)
class Msg:
    prefix: str | None
    command: str
    params: tuple

    def __repr__(self):
        return f"<{self.prefix or ''} {self.command} {list(self.params)}>"


def parse(line):
    """One line (bytes or str, without its CR LF) as RFC 1459 2.3.1 defines it, read
    strictly: a double space (an empty middle parameter) is an error here."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", "surrogateescape")  # every byte kept, as it came
    prefix = None
    if line.startswith(":"):
        prefix, line = line[1:].split(" ", 1)
    line, colon, trailing = line.partition(" :")
    words = line.split(" ")
    assert all(words), f"an empty parameter (two spaces?) in {line!r}"
    command, *params = words
    return Msg(prefix, command, tuple(params + [trailing] * bool(colon)))


def msgs(*lines):
    """The expected replies, written as IRC lines."""
    return [parse(line) for line in lines]


def wire(*lines):
    """Lines (str or bytes) as bytes on the wire, each ended by CR LF."""
    return [(line if isinstance(line, bytes) else line.encode("utf-8", "surrogateescape"))
            + b"\r\n" for line in lines]


def is_(command):
    return lambda message: message.command == command


# ---------------------------------------------------------------- a raw client

class Peer:
    """A raw IRC connection: for what irssi would never send, and to see every byte.

    Like a real client it answers the server's PINGs (unless `answers_pings` is
    off), and leaves them out of what it reports."""

    def __init__(self, lab, nick, receive_buffer=None):
        self.lab, self.nick = lab, nick
        self.label = f"peer {nick}"
        self.user = nick.lower()[:10]
        self.sock = connect(HOST, lab.port, receive_buffer=receive_buffer)
        self.buffer = b""
        self.inbox = deque()  # raw lines received, not yet looked at
        self.transcript = StringIO()
        self.syncs = self.pinged = 0
        self.answers_pings = True

    @property
    def source(self):
        return f"{self.nick}!{self.user}@{HOST}"

    def output(self):
        return self.transcript.getvalue()

    def close(self):
        self.sock.close()

    # -- sending

    def send(self, *lines, delivery="whole"):
        """Send these lines: each in one write, a byte per write, or all in one."""
        if delivery != "whole":
            return self.send_raw(b"".join(wire(*lines)), delivery)
        for data in wire(*lines):
            self.send_raw(data)

    def send_raw(self, data, delivery="whole"):
        """Send bytes as they are: in one write, or a byte per write."""
        self.transcript.write(f"--> {data!r} ({delivery})\n")
        if delivery != "bytes":
            self.sock.sendall(data)
            return
        for byte in data:
            self.sock.sendall(bytes([byte]))
            time.sleep(0.001)  # the test's input (separate TCP segments), not a sync

    def ask(self, *lines, delivery="whole"):
        """Send the lines and a PING; return every message received before its PONG."""
        self.syncs += 1
        token = f"sync-{self.syncs}"
        if delivery == "batched":
            self.send(*lines, f"PING :{token}", delivery="batched")
        else:
            self.send(*lines, delivery=delivery)
            self.send(f"PING :{token}")
        return self.read_until(lambda m: m.command == "PONG" and m.params[-1] == token)[0]

    # -- receiving

    def read_until(self, matches, timeout=TIMEOUT):
        """(the messages before the first one that `matches`, that one)."""
        before = []
        deadline = time.monotonic() + timeout
        while True:
            while self.inbox:
                message = parse(self.inbox.popleft())
                if matches(message):
                    return before, message
                if not self.answered(message):
                    before.append(message)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.receive(remaining):
                why = "closed by the server" if remaining > 0 else f"waited {timeout:g} s"
                raise AssertionError(f"[{self.label}] {why}; before it, {len(before)} "
                                     f"other messages, the last: {before[-5:]}")

    def answered(self, message):
        """A PING from the server, answered: True. Anything else: False."""
        if message.command != "PING" or not self.answers_pings:
            return False
        self.pinged += 1
        self.send(f"PONG :{message.params[-1]}")
        return True

    def next_raw(self, timeout=TIMEOUT):
        """The next line as bytes, CR LF removed: for byte-exact checks."""
        deadline = time.monotonic() + timeout
        while not self.inbox:
            assert time.monotonic() < deadline, f"[{self.label}] no line in {timeout:g} s"
            assert self.receive(deadline - time.monotonic()), f"[{self.label}] closed"
        return self.inbox.popleft()

    def receive(self, timeout):
        """Wait up to `timeout` for data; False once the server has closed."""
        if timeout <= 0 or not self.lab.session.wait_readable(self.sock, timeout):
            return True
        try:
            data = self.sock.recv(65536)
        except ConnectionError:
            data = b""
        if not data:
            self.transcript.write("<-- (closed)\n")
            return False
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        for line in lines:
            self.transcript.write(f"<-- {line!r}\n")
            assert line.endswith(b"\r"), f"[{self.label}] a line without CR LF: {line!r}"
            assert len(line) + 1 <= 512, f"[{self.label}] a line of {len(line) + 1} bytes"
            self.inbox.append(line[:-1])
        return True

    def closed_after(self, timeout=TIMEOUT):
        """Every message until the server closes the connection."""
        received = []
        deadline = time.monotonic() + timeout
        while True:
            received += [parse(line) for line in self.inbox]
            self.inbox.clear()
            assert time.monotonic() < deadline, f"[{self.label}] still open: {received}"
            if not self.receive(deadline - time.monotonic()):
                return received


# ---------------------------------------------------------------- a test's server

class Lab:
    """One check's server and connections; the session closes them all at the end."""

    def __init__(self, session):
        self.session = session
        self.server = self.port = self.name = self.created = None

    def start(self, *options):
        """The stage's server (stages/11/server.py, or --impl's) on a free port."""
        self.server = self.session.start_server(*options).term
        self.port = self.session.server.port
        return self.server

    def peer(self, role, receive_buffer=None):
        """A connection, not registered yet, for this check's random nick for `role`."""
        if self.server is None:
            self.start()
        peer = Peer(self, self.session.name(role), receive_buffer)
        self.session.peers.append(peer)  # closed, and shown in a failure report
        return peer

    def learn(self, welcome):
        """The server's name and start time, as a client learns them from 001 and 003."""
        assert [message.command for message in welcome[:3]] == ["001", "002", "003"], welcome
        self.name = welcome[0].prefix
        self.created = welcome[2].params[-1].removeprefix(TEXT["003"].split("{")[0])

    def welcome(self, peer):
        """The whole answer to a registration: 001-005, then 422 (no MOTD)."""
        values = dict(server=self.name, nick=peer.nick, user=peer.user, host=HOST,
                      created=self.created)
        return msgs(*(REPLIES[key](**values) for key in ("001", "002", "003", "004", "005",
                                                         "422")))

    def closing(self, reason):
        """The server's last line to a connection it closes."""
        return parse(REPLIES["ERROR"](host=HOST, reason=reason))

    def register(self, peer, delivery="whole"):
        welcome = peer.ask(f"NICK {peer.nick}", f"USER {peer.user} 0 * :Real {peer.nick}",
                           delivery=delivery)
        self.learn(welcome)
        assert welcome == self.welcome(peer)
        return peer

    def user(self, role, *channels):
        """A registered peer, in these channels."""
        peer = self.register(self.peer(role))
        for channel in channels:
            assert peer.ask(f"JOIN {channel}")[0].command == "JOIN"
        return peer

    def room(self, *roles, channel="#kit"):
        """Registered peers, all in `channel`, with nothing left unread."""
        peers = [self.user(role, channel) for role in roles]
        for peer in peers:
            peer.ask()  # the JOIN lines of those who came after it
        return peers

    def numeric(self, peer, numeric, *params):
        """A numeric reply as the contract words it: from the server's name, to the
        peer's nick, its other fields filled in order with `params`."""
        term = REPLIES[numeric]
        fields = [name for name in dict.fromkeys(re.findall(r"\{(\w+)\}", term.text))
                  if name not in ("server", "nick")]
        assert len(fields) == len(params), f"{numeric} takes {fields}, not {params}"
        return parse(term(server=self.name, nick=peer.nick, **dict(zip(fields, params))))


@pytest.fixture(params=["whole", "bytes", "batched"])
def delivery(request):
    return request.param


@pytest.fixture
def lab(session):
    """The kit's session (every process killed at the end, transcripts on failure)."""
    return Lab(session)


# ---------------------------------------------------------------- registration

@pytest.mark.points(2, "NICK and USER get 001-005 and 422, every field exact")
def test_registration_without_cap(lab, delivery):
    lab.register(lab.peer("alice"), delivery)


@pytest.mark.points(1, "--name sets the server's name, the prefix of its replies")
def test_the_server_name_is_an_option(lab):
    lab.start("--name", "irc.example.org")
    alice = lab.register(lab.peer("alice"))
    assert lab.name == "irc.example.org"
    assert alice.ask("PING :x") == [Msg(lab.name, "PONG", (lab.name, "x"))]


@pytest.mark.points(2, "CAP LS 302 gets an empty list, and registration waits for CAP END")
def test_registration_waits_for_cap_end(lab, delivery):
    alice = lab.peer("alice")
    got = alice.ask("CAP LS 302", f"NICK {alice.nick}",
                    f"USER {alice.user} 0 * :Real {alice.nick}", delivery=delivery)
    assert got == msgs(f":{got[0].prefix} CAP * LS :")  # no 001: still negotiating
    welcome = alice.ask("CAP END", delivery=delivery)
    lab.learn(welcome)
    assert welcome == lab.welcome(alice)


@pytest.mark.points(1, "CAP LS, LIST and REQ (NAKed: nothing is offered)")
def test_cap_without_302_list_and_req(lab, delivery):
    alice = lab.peer("alice")
    got = alice.ask("CAP LS", "CAP LIST", "CAP REQ :multi-prefix sasl", delivery=delivery)
    name = got[0].prefix
    assert got == msgs(f":{name} CAP * LS :", f":{name} CAP * LIST :",
                       f":{name} CAP * NAK :multi-prefix sasl")
    assert alice.ask(f"NICK {alice.nick}", f"USER {alice.user} 0 * :x") == []  # held
    assert alice.ask("CAP END")[0].command == "001"


@pytest.mark.points(1, "anything but registration before it gets 451")
def test_anything_before_registration_gets_451(lab, delivery):
    alice = lab.peer("alice")
    name = alice.ask("CAP LS 302")[0].prefix
    commands = ["JOIN #kit", "PRIVMSG #kit :hi", "WHO #kit", "MODE #kit", "FROB x"]
    got = alice.ask(*commands, delivery=delivery)
    assert got == msgs(*[f":{name} 451 * :{TEXT['451']}"] * len(commands))
    got = alice.ask(f"NICK {alice.nick}", "LIST", delivery=delivery)  # a nick: not yet in
    assert got == msgs(f":{name} 451 {alice.nick} :{TEXT['451']}")


@pytest.mark.sampled_cases("taken", "{}[x]")
@pytest.mark.parametrize("taken, asked", [("{}", "{}"), ("{}[x]", "{}{{X}}"),
                                          ("{}\\", "{}|")])
@pytest.mark.points(2, "a nick in use gets 433, in rfc1459 case mapping")
def test_nick_in_use_with_rfc1459_casemapping(lab, delivery, taken, asked):
    alice, bob = lab.peer("alice"), lab.peer("bob")
    base = alice.nick
    alice.nick = taken.format(base)
    lab.register(alice)
    clash = asked.format(base.upper())  # "ADA7{X}" is "ada7[x]" in rfc1459 case
    got = bob.ask(f"NICK {clash}", delivery=delivery)
    assert got == msgs(f":{lab.name} 433 * {clash} :{TEXT['433']}")
    lab.register(bob)  # its own nick is free


@pytest.mark.sampled_cases("bad", "9lives", "caf\udce9")
@pytest.mark.parametrize("bad", ["9lives", "-dash", "no@pe", "a,b", "#chan", "x" * 31,
                                 "caf\udce9"])  # (the last: Latin-1 bytes, not UTF-8)
@pytest.mark.points(1, "a bad nick gets 432, none 431")
def test_erroneous_nickname_432_and_no_nickname_431(lab, delivery, bad):
    alice = lab.register(lab.peer("alice"))
    got = alice.ask(f"NICK {bad}", "NICK", "NICK :", delivery=delivery)
    assert got == [lab.numeric(alice, "432", bad), lab.numeric(alice, "431"),
                   lab.numeric(alice, "431")]


@pytest.mark.points(1, "USER with an empty field gets 461")
def test_user_with_an_empty_realname_or_username_gets_461(lab, delivery):
    alice = lab.peer("alice")
    got = alice.ask(f"NICK {alice.nick}", "USER x 0 * :", "USER :", "USER  0 * :x",
                    delivery=delivery)
    name = got[0].prefix
    assert got == msgs(*[f":{name} 461 {alice.nick} USER :{TEXT['461']}"] * 3)


@pytest.mark.points(1, "USER twice gets 462, too few parameters 461")
def test_user_twice_and_too_few_parameters(lab, delivery):
    alice = lab.register(lab.peer("alice"))
    short = ("USER", "JOIN", "PART", "TOPIC", "MODE")
    got = alice.ask("USER again 0 * :x", *short, delivery=delivery)
    assert got == [lab.numeric(alice, "462"),
                   *(lab.numeric(alice, "461", command) for command in short)]


@pytest.mark.points(1, "an unknown command gets 421")
def test_unknown_command_421(lab, delivery):
    alice = lab.register(lab.peer("alice"))
    got = alice.ask("FROBNICATE now", "whence x", delivery=delivery)
    assert got == [lab.numeric(alice, "421", "FROBNICATE"),
                   lab.numeric(alice, "421", "WHENCE")]


@pytest.mark.points(1, "PING gets PONG with its token, or 409 without one")
def test_ping_with_and_without_origin(lab, delivery):
    alice = lab.register(lab.peer("alice"))
    got = alice.ask("PING", "PING :two words", "PONG :unasked", delivery=delivery)
    assert got == [lab.numeric(alice, "409"), Msg(lab.name, "PONG", (lab.name, "two words"))]


# ---------------------------------------------------------------- channels

@pytest.mark.points(2, "JOIN is echoed, then the topic (332) and NAMES (353, 366)")
def test_join_echo_topic_and_names(lab, delivery):
    alice, bob = lab.user("alice"), lab.user("bob")
    name, a, b = lab.name, alice.nick, bob.nick
    assert alice.ask("JOIN #kit", delivery=delivery) == msgs(
        f":{alice.source} JOIN #kit",  # no topic: no 331 (RFC 2812 3.2.1)
        f":{name} 353 {a} = #kit :{a}", f":{name} 366 {a} #kit :{TEXT['366']}")
    assert alice.ask("TOPIC #kit :tea at five", delivery=delivery) == msgs(
        f":{alice.source} TOPIC #kit :tea at five")
    assert bob.ask("JOIN #KIT", delivery=delivery) == msgs(  # the creator's spelling
        f":{bob.source} JOIN #kit", f":{name} 332 {b} #kit :tea at five",
        f":{name} 353 {b} = #kit :{a} {b}", f":{name} 366 {b} #kit :{TEXT['366']}")
    assert alice.ask() == msgs(f":{bob.source} JOIN #kit")
    assert bob.ask("JOIN #kit", delivery=delivery) == []  # already in: nothing, for nobody
    assert alice.ask() == []


@pytest.mark.points(1, "channel names fold in rfc1459 case mapping")
def test_channel_names_fold_in_rfc1459_case_too(lab, delivery):
    alice, bob = lab.user("alice", "#Kit[~]"), lab.user("bob")
    got = bob.ask("JOIN #kIT{^}", "NAMES #KIT{~]", delivery=delivery)
    assert [(message.command, message.params[-1]) for message in got] == [
        ("JOIN", "#Kit[~]"), ("353", f"{alice.nick} {bob.nick}"),
        ("366", TEXT["366"]), ("353", f"{alice.nick} {bob.nick}"), ("366", TEXT["366"])]


@pytest.mark.points(1, "a bad channel name gets 403")
def test_join_errors(lab, delivery):
    alice = lab.user("alice")
    bad = ("kit", "#", "#a\x07b", "#" + "x" * 50)
    got = alice.ask(*(f"JOIN {name}" for name in bad), delivery=delivery)
    assert got == [lab.numeric(alice, "403", name) for name in bad]


@pytest.mark.points(1, "PART reaches the channel's members only; 442 and 403")
def test_part_is_seen_by_members_only(lab, delivery):
    alice, bob = lab.room("alice", "bob")
    carol = lab.user("carol", "#other")
    assert bob.ask("PART #kit :off to bed", delivery=delivery) == msgs(
        f":{bob.source} PART #kit :off to bed")
    assert alice.ask() == msgs(f":{bob.source} PART #kit :off to bed")
    assert carol.ask() == []
    assert bob.ask("PART #kit", "PART #nowhere", delivery=delivery) == [
        lab.numeric(bob, "442", "#kit"), lab.numeric(bob, "403", "#nowhere")]
    assert alice.ask("PART #kit") == msgs(f":{alice.source} PART #kit")
    assert carol.ask("TOPIC #kit") == [lab.numeric(carol, "403", "#kit")]  # empty: gone


@pytest.mark.points(2, "NAMES, WHO, TOPIC and LIST replies, every field exact")
def test_names_who_topic_list(lab, delivery):
    alice, bob = lab.room("alice", "bob")
    name, a, b = lab.name, alice.nick, bob.nick
    got = alice.ask("NAMES #kit", "WHO #kit", f"WHO {b}", "TOPIC #kit", "LIST",
                    "NAMES #nowhere", delivery=delivery)
    assert got == msgs(
        f":{name} 353 {a} = #kit :{a} {b}", f":{name} 366 {a} #kit :{TEXT['366']}",
        f":{name} 352 {a} #kit {alice.user} {HOST} {name} {a} H :0 Real {a}",
        f":{name} 352 {a} #kit {bob.user} {HOST} {name} {b} H :0 Real {b}",
        f":{name} 315 {a} #kit :{TEXT['315']}",
        f":{name} 352 {a} * {bob.user} {HOST} {name} {b} H :0 Real {b}",
        f":{name} 315 {a} {b} :{TEXT['315']}",
        f":{name} 331 {a} #kit :{TEXT['331']}",
        f":{name} 322 {a} #kit 2 :", f":{name} 323 {a} :{TEXT['323']}",
        f":{name} 366 {a} #nowhere :{TEXT['366']}")
    topic = "a topic: with colons  and  spaces "
    bob.ask(f"TOPIC #kit :{topic}")
    assert alice.ask("LIST #kit", delivery=delivery) == msgs(
        f":{bob.source} TOPIC #kit :{topic}",
        f":{name} 322 {a} #kit 2 :{topic}", f":{name} 323 {a} :{TEXT['323']}")


@pytest.mark.points(1, "WHO with a mask, and +i users hidden from it")
def test_who_with_a_mask_and_invisible_users(lab, delivery):
    alice, bob = lab.room("alice", "bob")
    hidden, asker = lab.user("hidden"), lab.user("asker")
    hidden.ask(f"MODE {hidden.nick} +i")  # found by its nick, never by a mask
    name, a, mask = lab.name, asker.nick, f"{alice.nick[:3].upper()}*"

    def who(*peers):  # the 352 lines for these peers, in nick order, as asker gets them
        return sorted(msgs(*(f":{name} 352 {a} * {peer.user} {HOST} {name} {peer.nick} H "
                             f":0 Real {peer.nick}" for peer in peers)),
                      key=lambda message: message.params[5])

    def end(mask):
        return msgs(f":{name} 315 {a} {mask} :{TEXT['315']}")

    def by_nick(messages):
        return sorted(messages, key=lambda message: message.params[5])

    visible = (alice, bob, asker)
    # Random nicks are letters and digits: lower() is their rfc1459 fold.
    matching = [peer for peer in visible if fnmatch.fnmatchcase(peer.nick.lower(),
                                                                mask.lower())]
    got = asker.ask("WHO *", delivery=delivery)
    assert by_nick(got[:-1]) == who(*visible) and got[-1:] == end("*")
    got = asker.ask(f"WHO {mask}", delivery=delivery)
    assert by_nick(got[:-1]) == who(*matching) and got[-1:] == end(mask)
    got = asker.ask(f"WHO {hidden.nick}", "WHO nobody?", delivery=delivery)
    assert got == who(hidden) + end(hidden.nick) + end("nobody?")


@pytest.mark.points(2, "WHOIS: 311, 319, 312 and 318; 401 and 431; WHOWAS's 406 and 369")
def test_whois_and_whowas(lab, delivery):
    alice, bob = lab.room("alice", "bob")
    bob.ask("JOIN #tea", "JOIN #Ale")
    loner = lab.user("loner")
    loner.ask(f"MODE {loner.nick} +i")  # invisible hides from WHO's masks, not from WHOIS
    name, a, b = lab.name, alice.nick, bob.nick

    def whois(peer, *channels):  # what WHOIS says of a peer, without its 318
        return msgs(f":{name} 311 {a} {peer.nick} {peer.user} {HOST} * :Real {peer.nick}",
                    *[f":{name} 319 {a} {peer.nick} :{' '.join(channels)}"] * bool(channels),
                    f":{name} 312 {a} {peer.nick} {name} :{TEXT['312']}")

    def end(mask):
        return msgs(f":{name} 318 {a} {mask} :{TEXT['318']}")

    of_bob = whois(bob, "#Ale", "#kit", "#tea")  # sorted by name, as they are spelled
    got = alice.ask(f"WHOIS {b}", f"WHOIS {loner.nick}", delivery=delivery)
    assert got == of_bob + end(b) + whois(loner) + end(loner.nick)
    # The server form (WHOIS SERVER NICK), a nick in another case, a list with one unknown.
    asked = f"{b.upper()},nobody"
    got = alice.ask(f"WHOIS {name} {b.upper()}", f"WHOIS {asked}", delivery=delivery)
    assert got == (of_bob + end(b.upper()) + of_bob + [lab.numeric(alice, "401", "nobody")]
                   + end(asked))
    got = alice.ask("WHOIS nobody", "WHOIS", "WHOWAS nobody,gone", "WHOWAS", delivery=delivery)
    assert got == [lab.numeric(alice, "401", "nobody"), *end("nobody"), lab.numeric(alice, "431"),
                   lab.numeric(alice, "406", "nobody"), lab.numeric(alice, "406", "gone"),
                   lab.numeric(alice, "369", "nobody,gone"), lab.numeric(alice, "431")]


@pytest.mark.points(1, "WHOIS of a user in many channels: 319 in lines of 512 bytes at most")
def test_whois_channels_fit_in_512_byte_lines(lab):
    alice = lab.user("alice")
    channels = sorted(f"#{index:02}{'x' * 45}" for index in range(50))  # 48 bytes each
    alice.ask(*(f"JOIN {channel}" for channel in channels))
    got = alice.ask(f"WHOIS {alice.nick}")
    lines = [message for message in got if message.command == "319"]
    assert len(lines) > 1  # Peer.receive has checked that each line fits in 512 bytes
    assert [word for line in lines for word in line.params[-1].split(" ")] == channels
    assert [message.command for message in got] == ["311", *["319"] * len(lines), "312", "318"]


@pytest.mark.points(1, "MODE replies: 324, 329, 368, 221, and +i")
def test_mode_replies(lab, delivery):
    (alice,) = lab.room("alice")
    got = alice.ask("MODE #kit", "MODE #kit b", "MODE #kit +b", f"MODE {alice.nick}",
                    f"MODE {alice.nick} +i", f"MODE {alice.nick}", delivery=delivery)
    name, a = lab.name, alice.nick
    created = got[1].params[-1]  # 329: when the channel was made, in Unix time
    assert created.isdigit() and abs(int(created) - time.time()) < 60
    assert got == msgs(
        f":{name} 324 {a} #kit +n", f":{name} 329 {a} #kit {created}",
        f":{name} 368 {a} #kit :{TEXT['368']}", f":{name} 368 {a} #kit :{TEXT['368']}",
        f":{name} 221 {a} +", f":{alice.source} MODE {a} +i", f":{name} 221 {a} +i")
    got = alice.ask("MODE #nowhere", "MODE nobody", delivery=delivery)
    assert got == [lab.numeric(alice, "403", "#nowhere"), lab.numeric(alice, "401", "nobody")]


# ---------------------------------------------------------------- messages

@pytest.mark.points(2, "a channel message reaches every other member only")
def test_channel_message_reaches_every_other_member_only(lab, delivery):
    alice, bob, carol = lab.room("alice", "bob", "carol")
    outsider = lab.user("dave", "#other")
    text = lab.session.text()
    assert alice.ask(f"PRIVMSG #kit :{text}", delivery=delivery) == []  # never back
    said = msgs(f":{alice.source} PRIVMSG #kit :{text}")
    assert bob.ask() == said and carol.ask() == said
    assert outsider.ask() == [] and alice.ask() == []


@pytest.mark.points(1, "NOTICE to a channel, PRIVMSG and NOTICE to a nick")
def test_notice_to_a_channel_and_messages_to_a_nick(lab, delivery):
    alice, bob = lab.room("alice", "bob")
    carol = lab.user("carol")
    text = lab.session.text()
    assert alice.ask(f"NOTICE #kit :{text}", f"PRIVMSG {carol.nick.upper()} :{text}",
                     f"NOTICE {bob.nick} :{text}", delivery=delivery) == []
    assert bob.ask() == msgs(f":{alice.source} NOTICE #kit :{text}",
                             f":{alice.source} NOTICE {bob.nick} :{text}")
    assert carol.ask() == msgs(f":{alice.source} PRIVMSG {carol.nick} :{text}")
    assert alice.ask() == []


@pytest.mark.points(1, "message errors: 401, 403, 404, 411, 412")
def test_message_errors_401_403_404_411_412(lab, delivery):
    alice = lab.user("alice")
    lab.user("bob", "#kit")
    got = alice.ask("PRIVMSG nobody :hi", "PRIVMSG #nowhere :hi", "PRIVMSG #kit :hi",
                    "PRIVMSG", "PRIVMSG #kit", "PRIVMSG #kit :", delivery=delivery)
    assert got == [lab.numeric(alice, "401", "nobody"), lab.numeric(alice, "403", "#nowhere"),
                   lab.numeric(alice, "404", "#kit"), lab.numeric(alice, "411", "PRIVMSG"),
                   lab.numeric(alice, "412"), lab.numeric(alice, "412")]


@pytest.mark.points(1, "a NOTICE never gets an error back")
def test_a_notice_never_gets_an_error(lab, delivery):
    alice = lab.user("alice")
    lab.user("bob", "#kit")
    assert alice.ask("NOTICE nobody :hi", "NOTICE #nowhere :hi", "NOTICE #kit :hi",
                     "NOTICE", "NOTICE #kit", delivery=delivery) == []


@pytest.mark.points(1, "a client's prefix is ignored; the trailing text and colours pass")
def test_prefix_ignored_trailing_kept_colours_passed(lab, delivery):
    alice, bob = lab.room("alice", "bob")
    text = "::-)  two  spaces \x02bold\x02 \x0304red\x03 \x01ACTION waves\x01 "
    alice.ask(f":forged!x@y PRIVMSG #kit :{text}", delivery=delivery)
    assert bob.next_raw() == f":{alice.source} PRIVMSG #kit :{text}".encode()


@pytest.mark.points(1, "lines ended by LF alone are understood")
def test_lf_only_lines_are_accepted(lab, delivery):
    alice = lab.peer("alice")
    alice.send_raw(f"NICK {alice.nick}\nUSER {alice.user} 0 * :Real {alice.nick}\n"
                   "PING :lf\n".encode(), delivery)
    welcome, _ = alice.read_until(is_("PONG"))
    lab.learn(welcome)
    assert welcome == lab.welcome(alice)


@pytest.mark.points(1, "NICK after registration reaches the user and its channels")
def test_nick_change_seen_by_channel_peers_and_the_user(lab, delivery):
    alice, bob = lab.room("alice", "bob")
    outsider = lab.user("carol", "#other")
    old_nick, old = alice.nick, alice.source
    alice.nick = lab.session.name("alice, renamed")
    assert alice.ask(f"NICK {alice.nick}", delivery=delivery) == msgs(
        f":{old} NICK {alice.nick}")
    assert bob.ask() == msgs(f":{old} NICK {alice.nick}")
    assert outsider.ask() == []
    assert bob.ask("NAMES #kit")[0].params[-1] == f"{alice.nick} {bob.nick}"
    assert outsider.ask(f"NICK {old_nick}") == msgs(  # the old nick is free again
        f":{outsider.source} NICK {old_nick}")


@pytest.mark.points(2, "QUIT reaches the channels, then ERROR and the close")
def test_quit_seen_by_peers_then_error_and_close(lab, delivery):
    alice, bob = lab.room("alice", "bob")
    outsider = lab.user("carol", "#other")
    bob.send("QUIT :see you", delivery=delivery)
    assert bob.closed_after() == [lab.closing("Quit: see you")]
    assert alice.ask() == msgs(f":{bob.source} QUIT :Quit: see you")
    assert outsider.ask() == []
    assert alice.ask(f"PRIVMSG {bob.nick} :x") == [lab.numeric(alice, "401", bob.nick)]


@pytest.mark.points(1, "a lost connection is a QUIT for the others")
def test_a_lost_connection_is_a_quit_too(lab):
    alice, bob = lab.room("alice", "bob")
    bob.sock.close()
    _, quit_ = alice.read_until(is_("QUIT"))
    assert quit_ == Msg(bob.source, "QUIT", ("Connection closed",))


# ---------------------------------------------------------------- timers

@pytest.mark.points(2, "an idle client is pinged, and dropped if it does not answer")
def test_an_idle_client_is_pinged_and_dropped_if_it_does_not_answer(lab):
    lab.start("--ping-interval", "0.3", "--ping-timeout", "0.6")
    alice, bob = lab.room("alice", "bob")
    bob.answers_pings = False
    _, quit_ = alice.read_until(is_("QUIT"))  # meanwhile alice answers every PING
    assert quit_ == Msg(bob.source, "QUIT", ("Ping timeout: 0.6 seconds",))
    assert bob.closed_after() == [*msgs(f"PING :{lab.name}"),
                                  lab.closing("Ping timeout: 0.6 seconds")]
    assert alice.pinged >= 1 and alice.ask() == []  # pinged, answered, still in


@pytest.mark.points(1, "a connection that never registers is closed")
def test_a_connection_that_never_registers_is_closed(lab):
    lab.start("--join-timeout", "0.5")
    silent, dribbling, nearly = lab.peer("silent"), lab.peer("dribbling"), lab.peer("nearly")
    nearly.send("CAP LS 302", f"NICK {nearly.nick}", "USER x 0 * :never ends CAP")
    closing = [lab.closing(lab.session.spec("join_timeout"))]
    deadline = time.monotonic() + TIMEOUT
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # closed meanwhile
        while dribbling.receive(0.05) and not dribbling.inbox:  # a byte each 50 ms...
            assert time.monotonic() < deadline, "a dribbling connection is never closed"
            dribbling.send_raw(b"N")  # (the test's input, not a sync)
    assert dribbling.closed_after() == closing  # ...never a whole line: closed in time
    assert silent.closed_after() == closing
    assert nearly.closed_after()[1:] == closing  # after its CAP * LS


# ---------------------------------------------------------------- limits, bad input

@pytest.mark.points(2, "a 512-byte line is taken, 513 bytes get 417")
def test_a_512_byte_line_is_taken_and_513_gets_417(lab, delivery):
    alice, bob = lab.room("alice", "bob")
    head = "PRIVMSG #kit :"
    fits, too_long = head + "x" * (510 - len(head)), head + "y" * (511 - len(head))
    assert alice.ask(fits, delivery=delivery) == []  # 512 bytes with its CR LF
    # Relayed with alice's prefix it would be longer: cut to 512 bytes, CR LF included.
    relayed = f":{alice.source} {fits}"[:510]
    assert bob.ask() == msgs(relayed)
    assert alice.ask(too_long, delivery=delivery) == [lab.numeric(alice, "417")]
    assert bob.ask() == []  # nothing of the long line went anywhere


@pytest.mark.points(1, "a huge line costs one 417, however it arrives")
def test_a_huge_line_costs_one_417_however_it_arrives(lab, delivery):
    alice, bob = lab.room("alice", "bob")
    huge = "PRIVMSG #kit :" + "z" * (1_500 if delivery == "bytes" else 300_000)
    assert alice.ask(huge, "PRIVMSG #kit :after", delivery=delivery) == [
        lab.numeric(alice, "417")]
    assert bob.ask() == msgs(f":{alice.source} PRIVMSG #kit :after")


@pytest.mark.points(1, "a relayed line over 512 bytes is cut between characters")
def test_relayed_lines_are_cut_between_characters(lab):
    alice, bob = lab.room("alice", "bob")
    alice.ask("PRIVMSG #kit :" + "é" * 248)  # 510 bytes: too long once prefixed
    line = bob.next_raw()
    assert len(line) + 2 <= 512 and line.decode("utf-8").endswith("é")


@pytest.mark.points(1, "bytes that are not UTF-8 pass through and harm nothing")
def test_bad_bytes_pass_through_and_harm_nothing(lab, delivery):
    alice, bob = lab.room("alice", "bob")
    text = b"caf\xe9 \xff\xfe \xed\xa0\x80 \x00 \xc3"  # Latin-1, junk, surrogate, NUL, half
    got = alice.ask(b"PRIVMSG #kit :" + text, b"\xff\xfe", delivery=delivery)
    assert got == [Msg(lab.name, "421", (alice.nick, "\udcff\udcfe", TEXT["421"]))]
    assert bob.next_raw() == f":{alice.source} PRIVMSG #kit :".encode() + text
    got = alice.ask(b"JOIN #caf\xe9", delivery=delivery)
    channel = "#caf\udce9"
    assert got == msgs(f":{alice.source} JOIN {channel}",
                       f":{lab.name} 353 {alice.nick} = {channel} :{alice.nick}",
                       f":{lab.name} 366 {alice.nick} {channel} :{TEXT['366']}")


@pytest.mark.points(1, "a bare CR ends a line: no forged server line")
def test_a_bare_cr_ends_a_line(lab, delivery):
    alice, bob = lab.room("alice", "bob")
    # Relayed whole, a client that splits on CR would read a line from the server.
    forged = f"PRIVMSG #kit :hi\r:{lab.name} 001 {bob.nick} :forged"
    assert alice.ask(forged, delivery=delivery) == [lab.numeric(alice, "421", "001")]
    assert bob.ask() == msgs(f":{alice.source} PRIVMSG #kit :hi")


@pytest.mark.points(2, "a reader that stops is dropped (Max SendQ); the others get everything")
def test_a_reader_that_stops_is_dropped_and_the_others_get_everything(lab):
    talker, listener = lab.room("talker", "listener")
    stuck = lab.register(lab.peer("stuck", receive_buffer=4096))
    stuck.ask("JOIN #kit")  # and never reads again
    talker.ask(), listener.ask()
    dropped = msgs(f":{stuck.source} QUIT :Max SendQ exceeded")[0]
    heard = []  # what the listener got besides the messages
    for batch in range(200):  # 100 lines of 450 bytes each: 9 MB at most
        talker.send(*(f"PRIVMSG #kit :{'w' * 400} {batch}-{n}" for n in range(100)),
                    delivery="batched")
        for n in range(100):  # the listener reads as it goes, as clients do
            before, said = listener.read_until(is_("PRIVMSG"))
            assert said.params[-1].endswith(f" {batch}-{n}"), said  # each, in order
            heard += before
        if dropped in heard:
            break
    # Past its share (1 MiB) and what the kernel holds for it, stuck was dropped; the
    # others got every message before, and get every one after.
    assert heard == [dropped] and 1 < batch < 199, (heard, batch)
    talker.send("PRIVMSG #kit :after")
    assert listener.ask() == msgs(f":{talker.source} PRIVMSG #kit :after")
    assert talker.ask() == [dropped]


@pytest.mark.points(1, "a log nobody reads never stops the room")
def test_a_log_nobody_reads_never_stops_the_room(lab):
    """stdout a pipe that is never read (server.py | less, left on its first page):
    past the pipe's 64 KiB and the log's own queue, log lines are dropped, not
    waited for."""
    stage = lab.session.stage
    argv = [sys.executable, str(stage.program("server.py")), *stage.args_for("server.py")]
    server = subprocess.Popen([*argv, "--port", "0"], stdout=subprocess.PIPE,
                              cwd=lab.session.workdir)
    try:
        assert select.select([server.stdout], [], [], TIMEOUT)[0], "no listening line"
        lab.port = int(LISTENING.match(server.stdout.readline().decode()).group(2))
        lab.server = server  # (from here on, nobody reads its stdout)
        alice, bob = lab.room("alice", "bob")
        for _ in range(40):  # 8,000 log lines, about 300 KB
            assert alice.ask(*["JOIN #churn", "PART #churn"] * 100)[-1].command == "PART"
        text = lab.session.text()
        alice.ask(f"PRIVMSG #kit :{text}")
        assert bob.ask() == msgs(f":{alice.source} PRIVMSG #kit :{text}")
        server.send_signal(signal.SIGINT)  # and it still stops, at once
        assert server.wait(timeout=TIMEOUT) == 0
    finally:
        server.kill()
        server.wait()
        server.stdout.close()


# ---------------------------------------------------------------- the program

@pytest.mark.points(2, "Ctrl+C sends every client ERROR, then exits 0")
def test_ctrl_c_tells_every_client_and_exits_0(lab):
    server = lab.start()
    alice, bob = lab.room("alice", "bob")
    waiting = lab.peer("unregistered")
    server.ctrl_c()
    for peer in (alice, bob, waiting):
        assert peer.closed_after() == [lab.closing(lab.session.spec("shutting_down"))]
    server.expect(lab.session.spec("stopped"))
    server.expect_exit(0)


@pytest.mark.sampled_cases("option", "--port 99999", "--name a:b")
@pytest.mark.parametrize("option", ["--port 99999", "--port x", "--ping-interval 0",
                                    "--ping-timeout -1", "--join-timeout nan",
                                    "--name a:b", "--name ."])
@pytest.mark.points(1, "a bad option gets argparse's usage error, exit code 2")
def test_a_bad_argument_is_a_usage_error_and_exit_2(lab, option):
    term = lab.session.spawn("server", "server.py", *option.split())
    term.expect_usage_exit(option.split()[0])


@pytest.mark.points(1, "a port in use is one line of error, exit code 1")
def test_a_port_in_use_is_one_line_and_exit_1(lab):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        term = lab.session.spawn("server", "server.py", "--port", port)
        term.expect_error_exit(port)


# ---------------------------------------------------------------- irssi, a real client

IRSSI = shutil.which("irssi")
needs_irssi = pytest.mark.skipif(IRSSI is None, reason="irssi is not installed (Debian: "
                                 "apt-get install irssi, as .ci/run does)")
# irssi's throwaway settings: its names for the user, and nothing else of its defaults
# changed. Its flood control stays on, as every user has it: five commands at once, then
# one per 2.2 s until it has been quiet a while. Registration spends the five (CAP LS,
# JOIN :, CAP END, NICK, USER), so what is typed next waits its turn, and a join typed
# at once syncs some 10 s later (its MODE, WHO and MODE b queue up too): a real server
# (ngIRCd) gets the same pace. A wait on irssi's screen allows for the queue.
IRSSI_CONFIG = """settings = {
  core = { settings_autosave = "no"; real_name = "Real {nick}"; user_name = "{user}"; };
};
"""
IRSSI_WAIT = 30  # seconds: a few commands queued at 2.2 s each, on a busy machine


class Irssi:
    """irssi in a pty of its own, with a throwaway --home, its screen read by pyte."""

    def __init__(self, lab, role):
        self.lab, self.nick = lab, lab.session.name(role)
        home = Path(lab.session.workdir) / f"irssi-{self.nick}"
        home.mkdir()
        user = self.nick.lower()[:10]
        (home / "config").write_text(IRSSI_CONFIG.replace("{nick}", self.nick)
                                     .replace("{user}", user))
        self.userhost = f"{user}@{HOST}"  # what irssi shows in brackets: [user@host]
        self.term = ScreenTerminal(lab.session, f"irssi {self.nick}",
                                   [IRSSI, "--home", str(home), "--noconnect", "-n", self.nick])
        lab.session.terminals.append(self.term)  # killed at the end, shown on failure

    def type(self, line):
        self.term.type(line + "\r")

    def wait_for_screen(self, pattern):
        """Wait until a row of irssi's screen matches `pattern`: irssi's own words, from
        the contract (IRSSI)."""
        regex = re.compile(pattern)
        self.term.wait_for(lambda: any(regex.search(row) for row in self.term.lines()),
                           repr(pattern), timeout=IRSSI_WAIT)

    def connect(self):
        self.type(f"/connect {HOST} {self.lab.port}")
        self.wait_for_screen(self.lab.session.spec("irssi_registered"))  # our 422

    def join(self, channel, members):
        """Join, and wait until irssi says the join is synced: it has had the end of
        each answer it asked for (324 to MODE, 315 to WHO, 368 to MODE b)."""
        self.type(f"/join {channel}")
        spec = self.lab.session.spec
        self.wait_for_screen(spec("irssi_names", channel=channel, count=members))
        self.wait_for_screen(spec("irssi_synced", channel=channel))


def irssi_pair(lab):
    lab.start()
    alice, bob = Irssi(lab, "alice"), Irssi(lab, "bob")
    for irssi in (alice, bob):
        irssi.connect()
    alice.join("#kit", 1)
    bob.join("#kit", 2)
    alice.wait_for_screen(lab.session.spec("irssi_joined", name=bob.nick,
                                           userhost=bob.userhost, channel="#kit"))
    return alice, bob


@pytest.mark.starts_first  # irssi's flood control: about 20 s
@needs_irssi
@pytest.mark.points(3, "two irssi users chat in #kit and in private")
def test_two_irssi_users_chat_in_a_channel_and_in_private(lab):
    alice, bob = irssi_pair(lab)
    spec = lab.session.spec
    text, reply, secret, answer = (lab.session.text() for _ in range(4))
    alice.type(text)
    bob.wait_for_screen(spec("irssi_said", name=alice.nick, text=text))
    bob.type(reply)
    alice.wait_for_screen(spec("irssi_said", name=bob.nick, text=reply))
    # In private: each opens a query window with the other (/query), and types there.
    for me, other in ((alice, bob), (bob, alice)):
        me.type(f"/query {other.nick}")
        me.wait_for_screen(spec("irssi_query", name=other.nick))
    bob.type(secret)
    alice.wait_for_screen(spec("irssi_said", name=bob.nick, text=secret))
    alice.type(answer)
    bob.wait_for_screen(spec("irssi_said", name=alice.nick, text=answer))


@pytest.mark.waits_long  # irssi's flood control: about 28 s
@needs_irssi
@pytest.mark.points(3, "irssi users see each other's nick change, part, join and quit")
def test_irssi_users_see_each_others_nick_change_part_and_quit(lab):
    alice, bob = irssi_pair(lab)
    spec = lab.session.spec
    new_nick = lab.session.name("bob, renamed")
    bob.type(f"/nick {new_nick}")
    alice.wait_for_screen(spec("irssi_nick", name=bob.nick, new=new_nick))
    bob.wait_for_screen(spec("irssi_own_nick", new=new_nick))
    seen_as = dict(name=new_nick, userhost=bob.userhost, channel="#kit")
    bob.type("/part #kit")
    alice.wait_for_screen(spec("irssi_left", **seen_as))
    bob.join("#kit", 2)
    alice.wait_for_screen(spec("irssi_joined", **seen_as))
    bob.type("/quit off to bed")
    alice.wait_for_screen(spec("irssi_quit", name=new_nick, userhost=bob.userhost,
                               reason="Quit: off to bed"))
    bob.term.expect_exit(0)


@pytest.mark.waits_long  # irssi's flood control: about 10 s
@needs_irssi
@pytest.mark.points(2, "irssi's /whois shows a user, and says when there is no such nick")
def test_irssi_whois_shows_the_user(lab):
    bob = lab.user("bob", "#kit")  # a raw peer: irssi's flood control paces alice alone
    alice = Irssi(lab, "alice")
    alice.connect()
    spec = lab.session.spec
    alice.type(f"/whois {bob.nick}")
    alice.type("/whois nobody")
    alice.type("/window 1")  # irssi shows WHOIS in its status window
    alice.wait_for_screen(spec("irssi_whois", name=bob.nick, userhost=f"{bob.user}@{HOST}"))
    alice.wait_for_screen(spec("irssi_whois_ircname", realname=f"Real {bob.nick}"))
    alice.wait_for_screen(spec("irssi_whois_channels", channels="#kit"))
    alice.wait_for_screen(spec("irssi_whois_end"))
    alice.wait_for_screen(spec("irssi_no_such_nick", name="nobody"))


# ---------------------------------------------------------------- the irc package, a second client

try:  # jaraco's irc package from PyPI: its own parser, its own idea of each reply
    import irc.client as irc_client
except ImportError:
    irc_client = None
needs_irc_package = pytest.mark.skipif(irc_client is None, reason="the irc package is not "
                                       "installed (pip install -r requirements.txt)")


class LibraryUser:
    """A user of the `irc` package (jaraco/irc on PyPI), which nobody here wrote.

    It parses the server's lines itself and turns them into events ("welcome", "join",
    "pubmsg", "nick", "quit"...): a reply it cannot parse, or parses into the wrong
    fields, shows up as a missing or wrong event. Its events are its transcript."""

    def __init__(self, lab, reactor, role):
        self.lab, self.reactor, self.nick = lab, reactor, lab.session.name(role)
        self.label, self.events, self.seen = f"irc package {self.nick}", [], 0
        self.conn = reactor.server()
        self.conn.add_global_handler("all_events", self.record)
        self.conn.connect(HOST, lab.port, self.nick, username=self.nick.lower()[:10],
                          ircname=f"Real {self.nick}")
        lab.session.peers.append(self)  # closed, and its events shown on failure

    def record(self, connection, event):
        if connection is self.conn:
            self.events.append(event)

    def output(self):
        return "".join(f"{event.type} {event.source} {event.target} {event.arguments}\n"
                       for event in self.events)

    def close(self):
        self.conn.close()

    def wait_for(self, kind, matches=lambda event: True, timeout=TIMEOUT):
        """The next event of this kind that matches, reading the socket until it comes.
        Events before it are passed over, and stay in the transcript."""
        __tracebackhide__ = True
        deadline = time.monotonic() + timeout
        while True:
            for index in range(self.seen, len(self.events)):
                event = self.events[index]
                if event.type == kind and matches(event):
                    self.seen = index + 1
                    return event
            self.seen = len(self.events)
            if time.monotonic() > deadline:
                raise self.lab.session.failure(
                    f"[{self.label}] expected a {kind!r} event",
                    "its last events:\n" + "".join(self.output().splitlines(True)[-12:]))
            self.reactor.process_once(timeout=0.05)

    def sync(self):
        """PING the server and wait for its PONG: after it, nothing sent to us earlier is
        still on its way (the server handles one connection's lines in order)."""
        token = f"sync-{len(self.events)}"
        self.conn.ping(token)
        self.wait_for("pong", lambda event: event.arguments[-1] == token)

    def got(self, kind, text):
        return any(event.type == kind and text in event.arguments for event in self.events)


def from_(nick):
    return lambda event: event.source.nick == nick


@needs_irc_package
@pytest.mark.points(3, "users of the irc package (PyPI) register, join, chat and quit")
def test_users_of_the_irc_package_chat_in_a_channel_and_in_private(lab):
    lab.start()
    reactor = irc_client.Reactor()
    alice, bob = LibraryUser(lab, reactor, "alice"), LibraryUser(lab, reactor, "bob")
    for user in (alice, bob):
        user.wait_for("welcome")
        user.wait_for("nomotd")  # 422: registration is over
        features = user.conn.features  # the library's reading of our 005
        assert (features.chantypes, features.casemapping) == ("#", "rfc1459"), vars(features)
    for user, members in ((alice, {alice.nick}), (bob, {alice.nick, bob.nick})):
        user.conn.join("#kit")
        assert user.wait_for("join", from_(user.nick)).target == "#kit"
        names = user.wait_for("namreply").arguments  # [kind, channel, "nick nick"]
        assert len(names) == 3 and (names[1], set(names[2].split())) == ("#kit", members), \
            f"353 as the irc package read it: {names}"
        user.wait_for("endofnames")
    assert alice.wait_for("join", from_(bob.nick)).target == "#kit"
    text, secret = lab.session.text(), lab.session.text()
    alice.conn.privmsg("#kit", text)
    said = bob.wait_for("pubmsg", from_(alice.nick))
    assert (said.target, said.arguments) == ("#kit", [text])
    bob.conn.privmsg(alice.nick, secret)
    private = alice.wait_for("privmsg", from_(bob.nick))
    assert (private.target, private.arguments) == (alice.nick, [secret])
    alice.sync()
    assert not alice.got("pubmsg", text), "the sender got its own channel message back"
    new_nick = lab.session.name("bob, renamed")
    bob.conn.nick(new_nick)
    assert alice.wait_for("nick", from_(bob.nick)).target == new_nick
    bob.wait_for("nick", from_(bob.nick))
    assert bob.conn.get_nickname() == new_nick  # the library followed the change
    bob.conn.part("#kit")
    assert alice.wait_for("part", from_(new_nick)).target == "#kit"
    bob.conn.join("#kit")
    alice.wait_for("join", from_(new_nick))
    bob.conn.quit("off to bed")
    assert alice.wait_for("quit", from_(new_nick)).arguments == ["Quit: off to bed"]
    bob.wait_for("error")  # the server's last line, then the close
    bob.wait_for("disconnect")

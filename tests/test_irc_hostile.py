"""Stage 11 against hostile input: what one client can send to make the server work for
nothing, or to hurt the others (lesson 11, "Pitfalls this stage handles").

Each check is built on tests/test_irc.py's raw peers and its lab. Where the harm is
time, the check measures the server's CPU time (/proc/PID/stat), not the wall clock,
against a bound the harmful code passes a hundred times over: a busy machine slows
every process, but does not make the server's work grow.
"""

import os
import selectors
import threading
import time
from pathlib import Path

import pytest

from harness import TIMEOUT
from test_irc import TEXT, Msg, delivery, is_, lab, msgs  # noqa: F401 (fixtures: used by name)

pytestmark = [pytest.mark.needs("irc"), pytest.mark.sampled_cases("delivery", "whole"),
              pytest.mark.no_observers("stage 11's own checks speak IRC whole (NICK, PART, NOTICE, TOPIC, MODE, WHO) through peers of their own, and compare every line each member gets; the observers model the room's joins, messages and quits alone")]


class ThreadWithResult(threading.Thread):
    """function(*args) in a thread of its own, started at once; result() waits for it."""

    def __init__(self, function, *args):
        super().__init__(daemon=True)
        self.function, self.args, self.value = function, args, None
        self.start()

    def run(self):
        self.value = self.function(*self.args)

    def result(self):
        self.join()
        return self.value


def cpu_seconds(pid):
    """The CPU time a process has used so far, user and system (man 5 proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- WHO masks

@pytest.mark.points(1, "a WHO mask is matched in linear time: a hostile one freezes nobody")
def test_a_who_mask_cannot_freeze_the_server(lab, delivery):
    long = lab.peer("long nick")
    long.nick, long.user = "a" * 30, "long"  # the longest nick, all of one letter
    lab.register(long)
    asker, bystander = lab.user("asker"), lab.user("bystander")
    # Read as a regular expression, each * backtracks into every * before it: this mask
    # took about 5 s of CPU against a 30-letter nick, and each line as much again.
    hostile = "*a" * 14 + "*b"
    cpu_before = cpu_seconds(lab.server.pid)
    asker.send(*[f"WHO {hostile}"] * 20, delivery=delivery)
    assert bystander.ask() == [], "a bystander's PING waited for the WHO lines"
    end = msgs(f":{lab.name} 315 {asker.nick} {hostile} :{TEXT['315']}")
    assert asker.ask() == end * 20
    spent = cpu_seconds(lab.server.pid) - cpu_before
    assert spent < 0.5, f"20 WHO lines took {spent:.2f} s of the server's CPU"
    # ...and masks still mean what they meant: * any run of characters, ? any one.
    # (Every mask ends in "a" or "b": the other users' nicks end in digits.)
    fits, misses = ["*a", "a*a", "?" * 30, "*a" * 14 + "*", "A*?A"], ["?" * 29, "*b", "a*b*a"]
    got = asker.ask(*(f"WHO {mask}" for mask in fits + misses))
    found = [(message.command, message.params[-2 if message.command == "315" else 5])
             for message in got]
    assert found == [pair for mask in fits for pair in (("352", long.nick), ("315", mask))] + [
        ("315", mask) for mask in misses]


# ---------------------------------------------------------------- line ends

@pytest.mark.points(1, "lines ended by CR alone are understood, whole or a byte at a time")
def test_cr_only_lines_are_accepted(lab):
    """RFC 1459 2.3.1: "two characters, CR and LF, as message separators"; lesson 11
    says a bare CR ends a line. (miniircd, for one, waits for an LF.)"""
    for delivery in ("whole", "bytes"):  # both in the default run
        peer = lab.peer(f"cr {delivery}")
        hello = f"NICK {peer.nick}\rUSER {peer.user} 0 * :Real {peer.nick}\rPING :cr\r"
        peer.send_raw(hello.encode(), delivery)
        welcome, _ = peer.read_until(is_("PONG"))
        lab.learn(welcome)
        assert welcome == lab.welcome(peer), delivery


# ---------------------------------------------------------------- floods

@pytest.mark.points(1, "a client dropped for not reading: the lines it sent before are not run")
def test_the_lines_of_a_dropped_client_are_not_run(lab):
    """Each WHO #big asks for a line per member. Past its share the client is dropped;
    the WHO lines it sent after that would cost the server as much again, for nobody."""
    members = [lab.user(f"member {n}", "#big") for n in range(100)]
    flooder = lab.register(lab.peer("flooder", receive_buffer=4096))
    flooder.ask("JOIN #big")  # and never reads again
    bystander = members[0]
    bystander.ask()  # the JOIN lines of those who came after it
    # One write (one TCP segment): the server has every line before it drops the client.
    flooder.send_raw(b"WHO #big\r\n" * 3_000 + b"PRIVMSG #big :after the drop\r\n")
    heard, quit_ = bystander.read_until(is_("QUIT"))
    assert quit_ == Msg(flooder.source, "QUIT", ("Max SendQ exceeded",))
    assert heard == [], "the server went on with the lines of a client it had dropped"


def read_everything(socks, size):
    """Read each socket until `size` bytes came or it closed, as clients that keep up
    do: one thread, all sockets at once. Returns what each received, in order."""
    received = {sock: bytearray() for sock in socks}
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        while selector.get_map():
            ready = selector.select(TIMEOUT)
            if not ready:  # nothing for TIMEOUT seconds: the server stopped sending
                break
            for key, _ in ready:
                try:
                    data = key.fileobj.recv(1 << 16)
                except ConnectionError:
                    data = b""
                received[key.fileobj] += data
                if not data or len(received[key.fileobj]) >= size:
                    selector.unregister(key.fileobj)
    return [bytes(data) for data in received.values()]


@pytest.mark.points(1, "a flood in one write: the members that read get every line, none dropped")
def test_a_flood_in_one_write_drops_no_member_that_reads(lab):
    """The flood is slowed at its source: the server gives its loop a turn every few
    lines, and the writers send what those lines made before the next ones come."""
    # A crowded server: 300 more connections bring each client's share down to its
    # floor, 256 KiB (MIN_SHARE), however many of them are in the channel.
    for n in range(300):
        lab.peer(f"crowd {n}")
    flooder = lab.peer("flooder")
    flooder.nick, flooder.user = "f" * 30, "f" * 10  # the longest prefix: 68 bytes a line
    lab.register(flooder)
    members = lab.room(*(f"member {n}" for n in range(20)), channel="#f")
    flooder.ask("JOIN #f")
    for member in members:
        member.ask()  # the flooder's JOIN: from here on, only its messages come
    count = 10_000  # 130 KB in one write; relayed, 680 KB for each member
    line, last = (f":{flooder.source} PRIVMSG #f :{text}\r\n".encode() for text in "x.")
    expected = line * count + last
    reader = ThreadWithResult(read_everything, [member.sock for member in members],
                              len(expected))
    flooder.send_raw(b"PRIVMSG #f x\n" * count + b"PRIVMSG #f .\n")  # one write
    got = reader.result()
    # Handled in a row, 3,800 of these lines filled each member's share before any
    # writer ran: every member was dropped, having been sent nothing.
    assert got == [expected] * len(members), (
        f"{sum(data != expected for data in got)} of {len(members)} members cut off; "
        f"the lines each got: {[data.count(line) for data in got]}")

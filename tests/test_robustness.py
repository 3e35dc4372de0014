"""Robustness: bad bytes, hostile text, vanishing and stuck clients, floods, running out of files.

Every check here runs on each stage that has what it needs. Where a stage cannot meet
an item by design (stage 01 serves one client, so it has no "other users"), the
capability it lacks keeps the check off it, and its lesson says so.
"""

import os
import re
import resource
import select
import socket
import ssl
import statistics
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import DEV_CERTS, TIMEOUT, JsonLine, kernel_queues

pytestmark = pytest.mark.needs("server")


# ---------------------------------------------------------------- measuring the server

def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def open_files(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def too_long(line):
    return "too long" in line or "too-long" in line


def still_served(session):
    """The server still does its job for well-behaved clients (echo, or a room that chats)."""
    alice, text = session.client("alice after"), session.text()
    if session.stage.has("chat"):
        bob = session.client("bob after")
        alice.say(text)
        bob.sees(bob.said(alice.name, text))
    else:
        alice.say(text)
        alice.sees(alice.echo(text))
    alice.quit()


# ---------------------------------------------------------------- bad input on the wire

@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(2, "a huge line is cut off with bounded memory and CPU")
def test_huge_line_is_cut_off_with_bounded_memory_and_cpu(session):
    server = session.start_server()
    peer = session.raw_peer("flooder")
    before_rss, before_cpu = rss_kib(server.term.pid), cpu_seconds(server.term.pid)
    chunk = b"x" * 65536
    for _ in range(64):  # up to 4 MiB without a newline, unless the server cuts us off first
        try:
            peer.sock.sendall(chunk)
        except OSError:
            break
        if peer.has_data():
            break
    peer.expect_line(too_long)
    if session.stage.client_class.drops_long_lines:  # stage 11: 417, and the connection goes on
        peer.expect_closed()
    grown = rss_kib(server.term.pid) - before_rss
    assert grown < 8 * 1024, f"the server's memory grew by {grown} KiB for one long line: is the buffer bounded?"
    used = cpu_seconds(server.term.pid) - before_cpu
    assert used < 1.0, f"the server used {used:.2f} s of CPU on one long line: is it re-scanning the buffer?"
    still_served(session)


ODD_INPUTS = {
    "invalid-utf8": b"\xff\xfe\xfa\n",
    "nul-bytes": b"nul\x00inside\n",
    "empty-lines": b"\n\n\r\n \t\x0b\x0c\r\n",  # empty, and only whitespace (docs/protocol.md: ignored)
    "lone-cr": b"\r\n",
}


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.shares_server  # one server for every case (tests/harness.py, SharedServers)
@pytest.mark.parametrize("name", ODD_INPUTS)
@pytest.mark.points(1, "odd bytes (bad UTF-8, NUL, empty lines) do no harm")
def test_odd_bytes_do_no_harm(session, name):
    peer = session.raw_peer("odd")
    driver = session.stage.client_class
    if session.stage.has("chat"):
        peer.join()
    peer.send(ODD_INPUTS[name])
    after = session.text()
    peer.send(driver.wire_say(after))  # the same connection goes on working
    if name in ("empty-lines", "lone-cr") and session.stage.has("json_wire"):
        peer.round_trip()  # its answer comes after any answer to the blank lines
        answers = [line for line in peer.history if JsonLine(type="error")(line)]
        assert len(answers) == 1, f"a blank line is ignored, with no answer (docs/protocol.md); got {answers[:-1]}"
    if session.stage.has("chat"):
        bob = session.client("bob")
        once_more = session.text()
        peer.send(driver.wire_say(once_more))
        bob.sees(bob.said(peer.name, once_more))
    else:
        peer.expect_line(driver.echo(after))
    assert session.server.term.child.isalive(), "the server died"
    session.server.term.assert_not_seen(session.spec("traceback"))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(1, "\\r\\n line endings are understood")
def test_crlf_line_endings_are_understood(session):
    driver = session.stage.client_class
    peer, text = session.raw_peer("crlf"), session.text()
    if not session.stage.has("chat"):
        peer.send(f"{text}\r\n".encode())
        line = peer.expect_line(driver.echo(text))
        assert "\r" not in line and "\\u000d" not in line, f"the \\r was kept: {line!r}"
        return
    bob = session.client("bob")
    peer.send(driver.wire_hello(peer.name)[:-1] + b"\r\n")
    peer.expect_line(driver.wire_welcome(peer.name))
    peer.send(driver.wire_say(text)[:-1] + b"\r\n")
    bob.sees(bob.said(peer.name, text))
    if session.stage.has("escapes_text"):
        bob.never_saw(session.spec("escaped", code="000d"), "a \\r is part of the line ending, not of the message")


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(1, "a line sent one byte at a time with pauses arrives whole")
def test_a_line_sent_one_byte_at_a_time_with_pauses(session):
    driver = session.stage.client_class
    peer, text = session.raw_peer("slow"), session.text()
    if session.stage.has("chat"):
        bob = session.client("bob")
        peer.join()
        peer.send_slowly(driver.wire_say(text), pause=0.01, until_read=True)
        bob.sees(bob.said(peer.name, text))
    else:
        peer.send_slowly(f"{text}\n".encode(), pause=0.01, until_read=True)
        peer.expect_line(driver.echo(text))


def fuzz_lines(driver):
    """Random lines: well-formed messages of the stage's protocol mixed with random bytes."""
    good = st.text(max_size=40).map(driver.wire_say)
    if hasattr(driver, "wire_hello"):
        good = good | st.text(alphabet="abcxyz_-", min_size=1, max_size=12).map(driver.wire_hello)
    return st.lists(st.one_of(good, st.binary(max_size=300)), max_size=12).map(b"".join)


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.no_bystander("random bytes from peers that never read: which of them joined, as whom, and what they said, only the server knows")
@pytest.mark.points(2, "random bytes and messages never break the server")
def test_fuzzing_never_breaks_the_server(session):
    """Property: whatever bytes arrive, the server lives on and still serves a normal client."""
    server = session.start_server()
    driver = session.stage.client_class

    @settings(max_examples=25, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(stream=st.one_of(st.binary(max_size=2000), fuzz_lines(driver)))
    def throw(stream):
        with session.connect(server) as sock:
            sock.sendall(stream)
        session.pump()  # keep reading the server's log, so it never blocks on a full terminal
        assert server.term.child.isalive(), f"the server died on {stream!r}"

    throw()
    server.term.assert_not_seen(session.spec("traceback"))
    still_served(session)


# ---------------------------------------------------------------- hostile text in terminals

HOSTILE = {
    "colour": "\x1b[31mred alert\x1b[0m",
    "title": "\x1b]0;you have been hacked\x07",
    "bidi": "abc\u202edcba",
    "backspace": "secret\x08\x08\x08\x08\x08\x08public",
}


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("name_rules")
@pytest.mark.points(1, "names with escape sequences are refused")
def test_hostile_names_are_refused(session):
    driver = session.stage.client_class
    peer = session.raw_peer("mallory")
    peer.send(driver.wire_hello(f"\x1b[31m{peer.name}"))
    peer.expect_line(driver.wire_bad_name(f"\x1b[31m{peer.name}"))
    bob = session.client("bob")
    bob.say(session.text())  # sync point: the server has dealt with mallory by now
    bob.never_saw(peer.name, "a name with an escape sequence must not get in")


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.shares_server  # one server for every case (tests/harness.py, SharedServers)
@pytest.mark.needs("escapes_text")
@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.points(1, "escape sequences in messages reach terminals as harmless text")
def test_hostile_text_reaches_terminals_as_harmless_text(session, kind):
    driver = session.stage.client_class
    bob = session.client("bob")
    peer = session.joined_peer("mallory")
    end = session.text()
    peer.send(driver.wire_say(f"{HOSTILE[kind]} {end}"))
    bob.sees(end)
    terms = [bob.term]
    if session.stage.has("message_log", "hostile_text"):  # the server's console is a terminal too (stage 06)
        session.server.term.expect_spec("said_log", name=peer.name, text=end)
        terms.append(session.server.term)
    for term in terms:
        for byte in RAW_CONTROLS:
            assert byte not in term.output(), f"[{term.label}] received a raw {byte!r} from mallory"


@pytest.mark.needs("echo")
@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.points(1, "escape sequences from a client never reach the server's terminal raw")
def test_hostile_text_reaches_the_echo_servers_log_as_harmless_text(session, kind):
    """Stage 01 logs each line it echoes: its console is a terminal too (a title or a clear-screen
    sequence must not act on it)."""
    driver = session.stage.client_class
    peer, end = session.raw_peer("mallory"), session.text()
    peer.send(driver.wire_say(f"{HOSTILE[kind]} {end}"))
    peer.expect_line(end)
    session.server.term.expect_spec("echo_log", text=end)
    for byte in RAW_CONTROLS:
        assert byte not in session.server.term.output(), f"[server] received a raw {byte!r} from mallory"


# ---------------------------------------------------------------- faults

RAW_CONTROLS = ("\x1b", "\x07", "\x08", "\u202e")  # the contract's never_raw
VICTIM_READY = "victim ready"
VICTIM = """
import socket, ssl, sys
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
if len(sys.argv) > 3:  # a TLS stage: argv[3] is the CA to trust
    sock = ssl.create_default_context(cafile=sys.argv[3]).wrap_socket(sock, server_hostname="127.0.0.1")
sock.sendall(bytes.fromhex(sys.argv[2]))
while b"\\n" not in sock.recv(4096):  # the welcome: the server has registered us
    pass
sock.sendall(b"half a mess")  # no newline: killed in the middle of a message
print("victim ready", flush=True)  # VICTIM_READY: this test's own helper, not a stage program
sys.stdin.readline()  # wait here until killed
"""


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("join_leave")
@pytest.mark.points(1, "a client killed mid-message is reported gone; the room goes on")
def test_client_killed_mid_message(session):
    server = session.start_server()
    alice, bob = session.client("alice"), session.client("bob")
    name = session.name("victim")
    tls = (str(DEV_CERTS / "dev-ca.pem"),) if session.stage.has("tls") else ()
    victim = session.run(name, sys.executable, "-c", VICTIM, str(server.port),
                         session.stage.client_class.wire_hello(name).hex(), *tls)
    victim.expect(VICTIM_READY)
    alice.sees(alice.joined(name))
    victim.kill()  # SIGKILL
    alice.sees(alice.left(name))
    bob.sees(bob.left(name))
    session.chat_goes_on(alice, bob)


def holds_on_a_second_try(session, measure, within, what, causes):
    """A timing bound that a busy machine can break once, by chance: measured again before it fails.

    A correct program must not lose points to a loaded machine; a program that is slow by
    design misses the bound both times. The failure gives both figures and the usual causes."""
    __tracebackhide__ = True
    figures = []
    for _ in range(2):
        figures.append(measure())
        if within(figures[-1]):
            return
    raise session.failure(f"expected {what}",
                          f"{' then '.join(map(str, figures))} on a second try. These figures depend on the "
                          f"machine's load; on a quiet machine the kit's stages stay far inside the bound. "
                          f"Usual causes: {causes}")


def test_a_timing_bound_gets_one_second_try_and_no_more(tmp_path):
    """The retry forgives one unlucky measurement, never a program that is slow every time."""
    from harness import CheckFailed, Session
    from stages import BY_ID
    from words import Words
    session = Session(BY_ID["05"], tmp_path, Words(1, "retry"))
    figures = iter([Milliseconds(250), Milliseconds(40)])
    holds_on_a_second_try(session, lambda: next(figures), lambda ms: ms < 100, "under 100 ms", "none")
    with pytest.raises(CheckFailed, match="250 ms then 240 ms on a second try"):
        figures = iter([Milliseconds(250), Milliseconds(240)])
        holds_on_a_second_try(session, lambda: next(figures), lambda ms: ms < 100, "under 100 ms", "none")


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("drops_stuck")
@pytest.mark.no_observers("a latency measurement at 1,000 messages a second: its peers send and read on their sockets directly, to time each message, and two more readers would load the machine it measures")
@pytest.mark.points(2, "a stuck client keeps the others' p99 latency under 100 ms")
def test_stuck_client_costs_the_others_no_latency(session):
    """One client never reads (4 KiB receive buffer); the others' 99th-percentile latency stays < 100 ms,
    or, on a machine too busy for that, within twice what the same room shows with nobody stuck."""
    what = "the others' 99th-percentile latency under 100 ms with one stuck client, at 1,000 messages a second"
    causes = ("a send that waits for the stuck client, a log write (and flush) per message, or a thread "
              "woken per delivery")
    figures = []
    for _ in range(2):  # a busy machine can break the bound once, by chance
        figures.append(stuck_room_p99_ms(session))
        if figures[-1] < 100:
            return
    baseline = stuck_room_p99_ms(session, stuck=False)
    if min(figures) < 2 * baseline + 30:  # the machine is slow, not the program: nobody stuck is as slow
        return
    raise session.failure(f"expected {what}",
                          f"{' then '.join(map(str, figures))} on a second try, against {baseline} with nobody "
                          f"stuck: the stuck client costs the others the difference. Usual causes: {causes}")


def stuck_room_p99_ms(session, stuck=True):
    """A fresh room (with a stuck client, or without as a baseline); the listener's 99th-percentile latency."""
    session.server = None  # a new server for each try
    driver = session.stage.client_class
    talker, listener = session.room_with_a_stuck_client(stuck)

    count, padding, sent_at, latencies = 1000, driver.filler(1000), {}, []  # 1 s: ten samples above the 99th percentile

    def listen():  # a plain socket read in a thread: it must read while the talker talks
        pending = b""
        listener.sock.settimeout(TIMEOUT)
        while len(latencies) < count:
            data = listener.sock.recv(1 << 20)
            if not data:
                return
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                if (match := re.search(rb"#(\d+)#", line)) and int(match.group(1)) in sent_at:
                    latencies.append(time.monotonic() - sent_at.pop(int(match.group(1))))

    reader = threading.Thread(target=listen, daemon=True)
    with session.terminals_read_in_background():  # the server logs every message
        reader.start()
        for number in range(count):  # a steady 1,000 messages a second (pacing the load, not waiting)
            sent_at[number] = time.monotonic()
            talker.sock.sendall(driver.wire_say(f"#{number}# {padding}"))
            if number % 50 == 49:
                time.sleep(0.05)
        reader.join(timeout=10)
    assert len(latencies) == count, f"the listener got {len(latencies)} of {count} messages"
    return Milliseconds(statistics.quantiles(latencies, n=100)[98] * 1000)


class CpuSeconds(float):
    def __str__(self):
        return f"{self:.2f} s of CPU"


class Milliseconds(float):
    def __str__(self):
        return f"{self:.0f} ms"


def send_queue(server_port, peer_port):
    """Bytes the kernel holds, sent by the server and not yet read by the peer."""
    queues = kernel_queues(server_port, peer_port)
    return queues[0] if queues else 0


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("drops_stuck")
@pytest.mark.no_bystander("a flood of thousands of long lines to fill a slow reader: a bystander read only between the check's own reads is a slow reader too, which the server may rightly drop, and reading it doubles the work the check waits on")
@pytest.mark.points(2, "a client that falls behind, under the limit, catches up with every message")
def test_a_client_that_falls_behind_catches_up(session):
    """Past what the kernel will hold, the server must keep a client's messages (its outbox),
    watch for the moment it can send again, and send them all, in order, then go quiet."""
    driver = session.stage.client_class
    server = session.start_server()
    slow = session.raw_peer("slow", receive_buffer=4096)  # a small window: the kernel fills up soon
    slow.join()
    talker, listener = session.joined_peer("talker"), session.joined_peer("listener")
    padding, sent, held, stalled = driver.filler(4000), 0, -1, 0
    step, more = 80_000 // len(padding), 200_000 // len(padding)  # 20 and 50 messages of 4,000
    with session.terminals_read_in_background():  # the server logs every message
        # Fill what the kernel holds for the slow client: until its send queue stops growing.
        while stalled < 3 and sent * len(padding) < 8_000_000:
            for number in range(sent, sent + step):
                talker.sock.sendall(driver.wire_say(f"#{number}# {padding}"))
            sent += step
            listener_has(listener, driver, talker, sent)
            queued = send_queue(server.port, slow.sock.getsockname()[1])
            stalled, held = (stalled + 1, held) if queued <= held else (0, queued)
        for number in range(sent, sent + more):  # 200 KB more: they wait in the server's outbox
            talker.sock.sendall(driver.wire_say(f"#{number}# {padding}"))
        sent += more
        listener_has(listener, driver, talker, sent)
    for number in range(sent):  # the slow client reads at last: everything, in order
        slow.expect_line(driver.wire_said(talker.name, f"#{number}# {padding}"))

    def cpu_in_a_window():  # nothing is waiting any more: the server must not keep polling for writes
        with session.terminals_read_in_background():
            before = cpu_seconds(server.term.pid)
            time.sleep(0.3)  # a measuring window: a loop that spins would burn most of it
            return CpuSeconds(cpu_seconds(server.term.pid) - before)

    holds_on_a_second_try(session, cpu_in_a_window, lambda spent: spent < 0.1,
                          "under 0.1 s of server CPU in a 0.3 s window once the backlog is sent",
                          "still asking to be told when the socket can take more (EVENT_WRITE) with nothing "
                          "left to send")
    text = session.text()  # and it is still heard: the server still reads it
    slow.send(driver.wire_say(text))
    listener.expect_line(driver.wire_said(slow.name, text))


def listener_has(listener, driver, talker, count):
    """Read the listener's socket until message number count - 1 has come: a sync point for the
    server. Plain reads, while a thread keeps the terminals read (terminals_read_in_background)."""
    marker, seen = f"#{count - 1}#".encode(), b""
    listener.sock.settimeout(TIMEOUT)
    while marker not in seen:
        data = listener.sock.recv(1 << 20)
        assert data, "the server closed the listener's connection"
        seen = seen[-64:] + data  # keep a little: the marker may straddle two reads


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(1, "300 connects and disconnects leak no file descriptor")
def test_connection_flood_leaks_nothing(session):
    server = session.start_server()
    session.pump()
    baseline = open_files(server.term.pid)
    with session.terminals_read_in_background():  # the server logs each connection
        for _ in range(300):
            with socket.create_connection((server.host, server.port), timeout=TIMEOUT):
                pass
        deadline = time.monotonic() + 4 * TIMEOUT  # generous: a loaded machine is slow, a leak is for ever
        while (extra := open_files(server.term.pid) - baseline) > 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # the server may still be closing the last ones: poll the condition
    assert extra == 0, f"the server holds {extra} more file descriptors than before the flood"
    still_served(session)


def limit_open_files():
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("fd_exhaustion")
@pytest.mark.points(1, "running out of file descriptors neither kills nor spins the server")
def test_out_of_file_descriptors_neither_kills_nor_spins(session):
    server = session.start_server(*(("--max-clients", "500") if session.stage.has("max_clients") else ()),
                                  preexec_fn=limit_open_files)  # ulimit -n 64
    crowd = [socket.create_connection((server.host, server.port), timeout=TIMEOUT) for _ in range(100)]
    try:
        server.logs(session.spec("out_of_files"))  # more connections than it may open files: accept() fails
        def cpu_in_a_window():
            with session.terminals_read_in_background():
                before = cpu_seconds(server.term.pid)
                time.sleep(0.3)  # a measuring window: a busy loop would burn most of it
                return CpuSeconds(cpu_seconds(server.term.pid) - before)

        holds_on_a_second_try(session, cpu_in_a_window, lambda spent: spent < 0.1,
                              "under 0.1 s of server CPU in a 0.3 s window while out of file descriptors",
                              "accept() retried at once after EMFILE, for ever: a busy loop")
    finally:
        for sock in crowd:
            sock.close()
    assert server.term.child.isalive(), "the server died when it ran out of file descriptors"
    still_served(session)  # descriptors are free again: new clients get in


# ---------------------------------------------------------------- load and ordering (the slow tier)

class Reader:
    """A plain socket that collects the numbered messages m<sender>.<n> it receives, in order."""

    def __init__(self, sock, welcome):
        self.sock, self.pending, self.seen, self.total, self.welcomed = sock, b"", {}, 0, False
        self.welcome = welcome  # what the stage's welcome line matches (a text, or a matcher)

    def read_available(self):
        self.sock.setblocking(False)  # read what has arrived (and what TLS has decrypted), never wait
        try:
            while data := self.sock.recv(1 << 20):
                *lines, self.pending = (self.pending + data).split(b"\n")
                for line in lines:
                    self.welcomed = self.welcomed or self.is_welcome(line.decode("utf-8", "replace"))
                    if match := re.search(rb"m(\d+)\.(\d+)", line):
                        self.seen.setdefault(int(match.group(1)), []).append(int(match.group(2)))
                        self.total += 1
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        finally:
            self.sock.setblocking(True)

    def is_welcome(self, line):
        return self.welcome(line) if callable(self.welcome) else self.welcome in line


def wait_for(readers, done, what, timeout=30):
    deadline = time.monotonic() + timeout
    while (behind := [reader for reader in readers if not done(reader)]) and time.monotonic() < deadline:
        select.select([reader.sock for reader in behind], [], [], 1)  # sleep until data comes, then read it
        for reader in behind:
            reader.read_available()
    assert not behind, f"{len(behind)} clients still lack {what} after {timeout} s"


@pytest.mark.slow
@pytest.mark.needs("chat")
@pytest.mark.points(2, "50 x 200 messages: none lost, none reordered")
@pytest.mark.no_bystander("its clients are plain sockets of the check's own, which the harness does not record: their joins, messages and leaves would reach the bystander unexplained")
def test_no_message_lost_or_reordered(session):
    """50 clients each send 200 numbered messages; everyone gets everyone else's, once, in order.

    The rounds go in lockstep (everyone sends, then everyone reads the round) so that the
    check is about loss and order, not about how fast a stage can drain a flood.
    """
    clients, count = 50, 200
    driver = session.stage.client_class
    server = session.start_server(*(("--max-clients", "100") if session.stage.has("max_clients") else ()))
    readers = []
    with session.terminals_read_in_background():
        for number in range(clients):
            sock = session.connect(server)
            sock.settimeout(None)  # blocking: read_available() alone decides when a read may not wait
            name = session.name(f"user{number}")
            sock.sendall(driver.wire_hello(name))
            readers.append(Reader(sock, driver.wire_welcome(name)))
        wait_for(readers, lambda reader: reader.welcomed, "the welcome")  # or early messages miss late joiners
        for round_number in range(count):
            for number, reader in enumerate(readers):
                reader.sock.sendall(driver.wire_say(f"m{number}.{round_number}"))
            wanted = (round_number + 1) * (clients - 1)
            wait_for(readers, lambda reader: reader.total >= wanted, f"round {round_number}'s messages")
    for number, reader in enumerate(readers):
        assert number not in reader.seen, f"user{number} got its own messages back"
        for sender in range(clients):
            if sender != number:
                got = reader.seen.get(sender, [])
                assert got == list(range(count)), \
                    f"user{number} got user{sender}'s messages as {got[:8]}..., not 0..{count - 1} once each, in order"
        reader.sock.close()

"""Stage 08: peer-to-peer. Three peers in a triangle, every command, and the bad input a person types.

Every peer listens on 127.0.0.1 with --port 0 (tests/stages.py, Peer.start).
"""

import fcntl
import json
import os
import signal
import struct
import termios
import time

import pytest

from contract import PEER_COMMANDS
from harness import closed_port

pytestmark = pytest.mark.needs("p2p")


def peers(session, *roles):
    return [session.stage.client_class.start(session, role) for role in roles]


def triangle(session):
    alice, bob, carol = peers(session, "alice", "bob", "carol")
    alice.connect(bob)
    bob.connect(carol)
    carol.connect(alice)
    return alice, bob, carol


@pytest.mark.points(3, "three peers connect in a triangle and message each other, shown with address and port")
def test_triangle_of_peers_send_to_each_other(session):
    alice, bob, carol = triangle(session)
    for sender, receiver in ((alice, bob), (bob, carol), (carol, alice), (alice, carol)):
        text = session.text()
        sender.type(f"send {sender.connection_id(receiver)} {text}")
        receiver.sees(session.spec("message_from", port=sender.port))  # the sender's listening port, not a random one
        receiver.sees(text)


@pytest.mark.points(2, "list shows each connection's id, IP and port")
def test_list_shows_every_connection(session):
    alice, bob, carol = triangle(session)
    alice.type("list")
    for other in (bob, carol):
        alice.term.expect_regex(session.spec("row", port=other.port))


@pytest.mark.points(2, "terminate closes one connection and the other side is told")
def test_terminate_closes_one_connection_and_tells_the_other_side(session):
    alice, bob, carol = triangle(session)
    alice.type(f"terminate {alice.connection_id(bob)}")
    bob.sees(session.spec("closed_by_peer", port=alice.port))
    alice.type("list")
    rows = alice.term.expect_regex(session.spec("table")).group(1)
    assert str(carol.port) in rows and str(bob.port) not in rows, f"only carol should be left: {rows!r}"
    text = session.text()
    alice.type(f"send {alice.connection_id(carol)} {text}")  # the other connection still works
    carol.sees(text)


@pytest.mark.points(2, "exit tells every peer, then exits 0")
def test_exit_tells_every_peer(session):
    alice, bob, carol = triangle(session)
    carol.type("exit")
    carol.term.expect_exit(0)
    for other in (alice, bob):
        other.sees(session.spec("closed_by_peer", port=carol.port))


@pytest.mark.points(2, "a peer that vanishes is reported by every peer it was connected to")
def test_a_killed_peer_is_reported_by_every_peer_it_knew(session):
    alice, bob, carol = triangle(session)
    carol.term.kill()  # no goodbye: the kernel just closes its sockets
    for other in (alice, bob):
        other.sees(session.spec("dropped", port=carol.port))
    text = session.text()
    alice.type(f"send {alice.connection_id(bob)} {text}")
    bob.sees(text)


@pytest.mark.parametrize("line, answer", [
    ("send 99 hello", "no_connection"),
    ("terminate x", "no_connection"),
    ("connect 127.0.0.1 eighty", "not_a_number"),
    ("connect 127.0.0.1 70000", "not_a_number"),
    ("connect 127.0.0.1", "usage_connect"),
    ("send 1", "usage_send"),
    ("dance", "unknown"),
], ids=["unknown-id", "non-numeric-id", "non-numeric-port", "port-too-big", "missing-port", "missing-message",
        "unknown-command"])
@pytest.mark.points(1, "each input error gets a one-line explanation, and the peer goes on")
def test_input_errors_are_explained(session, line, answer):
    alice, bob = peers(session, "alice", "bob")
    alice.type(line)
    alice.sees(session.spec(answer, id=(line.split() + [""])[1]))
    alice.connect(bob)  # still working


@pytest.mark.points(1, "connecting to a closed port says the connection was refused")
def test_connect_to_a_closed_port(session):
    [alice] = peers(session, "alice")
    port = closed_port()
    alice.type(f"connect 127.0.0.1 {port}")
    alice.sees(session.spec("refused", port=port))


@pytest.mark.points(1, "self-connections and duplicate connections are refused")
def test_self_and_duplicate_connections_are_refused(session):
    alice, bob = peers(session, "alice", "bob")
    alice.type(f"connect 127.0.0.1 {alice.port}")
    alice.sees(session.spec("yourself"))
    alice.connect(bob)
    alice.type(f"connect localhost {bob.port}")
    alice.sees(session.spec("already"))
    bob.type(f"connect 127.0.0.1 {alice.port}")  # the other way round is the same connection
    bob.sees(session.spec("already"))


def local_addresses():
    """Every IPv4 address of this machine (Linux: the LOCAL entries of /proc/net/fib_trie)."""
    lines = open("/proc/net/fib_trie").read().splitlines()
    return {lines[number - 1].split()[-1] for number, line in enumerate(lines) if "/32 host LOCAL" in line}


@pytest.mark.points(1, "help lists the commands; myport and myip tell where the peer is")
def test_help_myport_and_myip(session):
    [alice] = peers(session, "alice")
    alice.type("help")
    for command in PEER_COMMANDS:
        alice.sees(command)
    alice.type("myport")
    alice.term.expect_regex(session.spec("myport", port=alice.port))
    alice.type("myip")
    ip = alice.term.expect_regex(session.spec("myip")).group(1)
    addresses = local_addresses()
    assert ip in addresses, f"myip said {ip}, which is not one of this machine's addresses {addresses}"
    # Which one is the stage's choice: the kit's shows where it listens (here 127.0.0.1), or,
    # listening everywhere, an address others can reach (tests/test_details_07_09.py).


@pytest.mark.points(2, "messages are framed: split across writes, or two in one write")
def test_messages_are_framed(session):
    [alice] = peers(session, "alice")
    peer = session.raw_peer("raw", port=alice.port)
    hello = json.dumps({"type": "hello", "port": 9}).encode() + b"\n"
    peer.send_slowly(hello, until_read=True)
    alice.sees(session.spec("connected_from", port=9))
    first, second, third = session.text(), session.text(), session.text()
    peer.send_slowly(json.dumps({"type": "message", "text": first}).encode() + b"\n",
                     until_read=True)
    alice.sees(first)
    peer.send(b"".join(json.dumps({"type": "message", "text": text}).encode() + b"\n" for text in (second, third)))
    alice.sees(second)
    alice.sees(third)


@pytest.mark.points(1, "bad bytes and escape sequences from a peer do no harm")
def test_bad_bytes_from_a_peer_do_no_harm(session):
    alice, bob = peers(session, "alice", "bob")
    peer = session.raw_peer("mallory", port=alice.port)
    peer.send(b"\xff\xfe not json\n" + json.dumps({"type": "message", "text": "\x1b[31mred"}).encode() + b"\n")
    alice.sees(session.spec("not_a_message"))
    alice.sees(session.spec("escaped", code="001b") + "[31mred")
    alice.connect(bob)  # still working
    assert "\x1b[31m" not in alice.term.output(), "a raw escape sequence reached the terminal"


@pytest.mark.parametrize("key", ["ctrl_c", "ctrl_d"])
@pytest.mark.points(1, "Ctrl+C and Ctrl+D leave cleanly (exit 0) and the other peers are told")
def test_ctrl_c_and_ctrl_d_leave_cleanly(session, key):
    alice, bob = peers(session, "alice", "bob")
    alice.connect(bob)
    getattr(alice.term, key)()
    alice.term.expect_exit(0)
    bob.sees(session.spec("closed_by_peer", port=alice.port))


@pytest.mark.parametrize("tries", [3, 20])
@pytest.mark.sampled_cases("tries", 3)  # the slow tier presses 20 times
@pytest.mark.points(1, "Ctrl+C the moment the peer says it listens leaves cleanly")
def test_ctrl_c_the_moment_it_listens(session, tries):
    """As tests/test_cli.py's server check: the key may land before the print() that showed the
    listening line has returned."""
    for attempt in range(tries):
        port = closed_port()
        peer = session.spawn(f"peer-{attempt + 1}", "peer.py", "--host", "127.0.0.1", "--port", str(port))
        peer.expect(session.spec("listening", host="127.0.0.1", port=port))  # maybe not its line end yet
        peer.ctrl_c_at_once()  # wherever the peer is (again if it was lost)
        peer.expect_exit(0)


@pytest.mark.points(1, "a bare port number works: peer.py PORT")
def test_a_bare_port_number_works(session):
    port = closed_port()
    term = session.spawn("bare", "peer.py", str(port))
    term.expect(session.spec("listening", host="0.0.0.0", port=port))


@pytest.mark.parametrize("args, words", [(["--port", "99999"], ["bad_port"]), (["eighty"], ["bad_port_argument"])],
                         ids=["port-too-big", "not-a-number"])
@pytest.mark.points(1, "a bad port gives argparse's usage error, exit code 2")
def test_bad_port_is_a_one_line_error(session, args, words):
    session.spawn("peer", "peer.py", *args).expect_usage_exit(*map(session.spec, words))


@pytest.mark.points(1, "a port in use gives a one-line error naming it, exit code 1")
def test_port_in_use_is_a_one_line_error(session):
    [alice] = peers(session, "alice")
    session.spawn("second", "peer.py", "--host", "127.0.0.1", str(alice.port)).expect_error_exit(session.spec("port_named", port=alice.port))



@pytest.mark.points(1, "a message in the same wake-up as terminate never crashes the peer")
def test_a_message_that_arrives_with_terminate(session):
    """One select() can report a connection's socket after the command that closed it:
    here the peer is stopped while `terminate` is typed and then the other side sends,
    so that both are waiting when it wakes up, in that order."""
    [alice] = peers(session, "alice")
    peer = session.raw_peer("raw", port=alice.port)
    peer.send(json.dumps({"type": "hello", "port": 9}).encode() + b"\n")
    alice.sees(session.spec("connected_from", port=9))
    alice.type("list")
    number = alice.term.expect_regex(session.spec("row", port=9)).group(1)
    os.kill(alice.term.child.pid, signal.SIGSTOP)
    try:
        alice.type(f"terminate {number}")
        wait_until_a_line_is_typed_ahead(alice.term.child.pid)  # before the message:
        peer.send(json.dumps({"type": "message", "text": session.text()}).encode() + b"\n")
    finally:
        os.kill(alice.term.child.pid, signal.SIGCONT)
    peer.expect_closed()
    alice.type("myport")  # still alive, and still answering
    alice.term.expect_regex(session.spec("myport", port=alice.port))


def wait_until_a_line_is_typed_ahead(pid, patience=5.0):
    """Wait until the terminal holds a whole line that process `pid` has not read yet
    (its input queue, as the kernel counts it), whatever the program does with echo."""
    __tracebackhide__ = True
    tty = os.open(f"/proc/{pid}/fd/0", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            waiting = fcntl.ioctl(tty, termios.FIONREAD, struct.pack("i", 0))
            if struct.unpack("i", waiting)[0] > 0:
                return
            time.sleep(0.001)
    finally:
        os.close(tty)
    raise AssertionError(f"the line typed to process {pid} never reached its terminal")

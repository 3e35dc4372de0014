"""Chat rooms (stage 02 on): broadcast, join and leave notices, and surviving clients that vanish."""

import os
import resource
import socket
import time

import pytest

from harness import TIMEOUT, JsonLine, StuckRoom, json_message

pytestmark = pytest.mark.needs("chat")


# --8<-- [start:broadcast]
@pytest.mark.points(3, "a message reaches everyone but its sender")
def test_message_goes_to_everyone_but_the_sender(session):
    alice, bob = session.client("alice"), session.client("bob")
    carol = session.client("carol")
    # Random texts, so that no program can know them in advance.
    hi_all, answer = session.text(), session.text()
    alice.say(hi_all)
    bob.sees(bob.said(alice.name, hi_all))
    carol.sees(carol.said(alice.name, hi_all))
    # Sync point: bob answers only after he has alice's line, so anything the
    # server sent alice about her own line reached her before bob's answer does.
    bob.say(answer)
    alice.sees(alice.said(bob.name, answer))
    own_line = alice.said(alice.name, hi_all)
    alice.never_saw(own_line, "a sender does not get its own message back")
# --8<-- [end:broadcast]


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("join_leave")
@pytest.mark.points(2, "the others are told who joins and leaves")
def test_others_are_told_who_joins_and_leaves(session):
    alice = session.client("alice")
    bob = session.client("bob")
    alice.sees(alice.joined(bob.name))
    bob.quit()
    alice.sees(alice.left(bob.name))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("join_leave", "counts_online")
@pytest.mark.no_bystander("it counts who is online (1, then 2), and has observers of its own")
@pytest.mark.points(2, "a connection that has not joined is nobody: it gets nothing, counts for nothing, "
                       "and nobody is told when it goes")
def test_a_connection_that_has_not_joined_is_not_in_the_room(session):
    """Observers: `lurker` connects and says nothing but a blank line while the others join, talk
    and leave; `ghost` connects and goes without joining. When the lurker joins at last, its first
    line is its welcome (TCP keeps order: anything sent to it before would have come first), and
    the bystander has seen exactly the room's events, in order: nothing for the ghost."""
    driver = session.stage.client_class
    session.start_server()
    lurker = session.raw_peer("lurker")
    lurker.send(b"  \n")  # a blank line is ignored, even before the name
    bystander = session.raw_peer("bystander")
    bystander.send(driver.wire_hello(bystander.name))
    bystander.expect_line(driver.wire_welcome_count(bystander.name, 1))
    ghost = session.raw_peer("ghost")
    alice = session.raw_peer("alice")
    alice.send(driver.wire_hello(alice.name))
    alice.expect_line(driver.wire_welcome_count(alice.name, 2))
    ghost.close()
    text = session.text()
    alice.send(driver.wire_say(text))
    alice.close()
    bystander.expect_line(driver.wire_left(alice.name))  # the room is two again: bystander, lurker
    lurker.send(driver.wire_hello(lurker.name))
    lurker.expect_line(driver.wire_welcome_count(lurker.name, 2))
    if len(lurker.history) != 1:
        raise session.failure("[lurker] expected its welcome as the first line it ever got",
                              "\n".join(lurker.history))
    bystander.expect_line(driver.wire_joined(lurker.name))
    expected = [driver.wire_joined(alice.name), driver.wire_said(alice.name, text),
                driver.wire_left(alice.name), driver.wire_joined(lurker.name)]
    seen = bystander.history[1:]  # after its welcome
    matching = len(seen) == len(expected) and all(
        (wanted(line) if callable(wanted) else wanted in line) for wanted, line in zip(expected, seen))
    if not matching:
        raise session.failure(
            "[bystander] expected exactly: alice joined, alice's message, alice left, lurker joined",
            "\n".join(seen))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("join_leave")
@pytest.mark.points(1, "the server logs joins, messages and departures")
def test_server_logs_one_line_per_event(session):
    alice = session.client("alice")
    session.server.logs(session.spec("join_log", name=alice.name))
    bob = session.client("bob")
    session.server.logs(session.spec("join_log", name=bob.name))
    text = session.chat_goes_on(bob, alice)
    if session.stage.has("message_log"):  # stage 11 logs who comes and goes, not what they say
        session.server.term.expect_spec("said_log", name=bob.name, text=text)
    bob.quit()
    session.server.logs(session.spec("left_log", name=bob.name))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.parametrize("first", ["a name", "an empty line"])
@pytest.mark.points(1, "started without --name, the client asks for one, again after an empty line")
def test_a_client_without_a_name_asks_for_one(session, first):
    alice = session.client("alice")
    term = session.spawn("nameless", "client.py", "--port", str(session.server.port),
                         *session.stage.client_class.nameless_args())
    term.expect(session.spec("name_prompt"))
    if first == "an empty line":
        term.send_line("")
        term.expect(session.spec("name_prompt"))
    name = session.name("bob")
    term.send_line(name)
    session.gate("in", lambda: term.expect(session.spec("welcome", name=name)))
    alice.sees(alice.joined(name))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("join_leave")
@pytest.mark.points(2, "a killed client is reported as gone and the room goes on")
def test_killed_client_is_reported_left_and_the_room_goes_on(session):
    alice, bob, carol = session.client("alice"), session.client("bob"), session.client("carol")
    carol.term.kill()  # SIGKILL: no goodbye, the kernel just closes its socket
    alice.sees(alice.left(carol.name))
    bob.sees(bob.left(carol.name))
    session.chat_goes_on(alice, bob)


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(2, "lines split across writes, or sharing one, are framed right")
def test_lines_split_across_writes_are_framed(session):
    alice = session.client("alice")
    peer = session.raw_peer("raw")
    peer.send_slowly(alice.wire_hello(peer.name), until_read=True)
    peer.expect_line(alice.wire_welcome(peer.name))
    slow, first, second, back = (session.text() for _ in range(4))
    peer.send_slowly(alice.wire_say(slow), until_read=True)  # a byte a write
    alice.sees(alice.said(peer.name, slow))
    peer.send(alice.wire_say(first) + alice.wire_say(second))  # two lines, one write
    alice.sees(alice.said(peer.name, first))
    alice.sees(alice.said(peer.name, second))
    alice.say(back)
    peer.expect_line(alice.wire_said(alice.name, back))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("drops_stuck")
@pytest.mark.no_bystander("a flood of thousands of long lines to fill a slow reader: a bystander read only between the check's own reads is a slow reader too, which the server may rightly drop, and reading it doubles the work the check waits on")
@pytest.mark.points(2, "a client that never reads is dropped; the others get every message")
def test_a_client_that_never_reads_is_dropped_and_the_room_goes_on(session):
    driver = session.stage.client_class
    talker, listener = session.room_with_a_stuck_client()
    stuck, padding, sent = session.name("stuck"), driver.filler(4000), 0  # big lines: fewer to send
    # Talk until the server gives up on the stuck client: every stage bounds what it keeps for one
    # client (a buffer or a queue), and the kernel's own buffers come on top. Bounded: at most 16 MB.
    while not listener.has_seen(driver.wire_left(stuck)) and sent * len(padding) < 16_000_000:
        for number in range(sent, sent + 200):
            talker.send(driver.wire_say(f"{number} {padding}"))
        for number in range(sent, sent + 200):  # every message, in order, none lost
            listener.expect_line(driver.wire_said(talker.name, f"{number} {padding}"))
        sent += 200
    if not listener.has_seen(driver.wire_left(stuck)):
        listener.expect_line(driver.wire_left(stuck))
    text = session.text()
    talker.send(driver.wire_say(text))
    listener.expect_line(driver.wire_said(talker.name, text))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("drops_stuck", "dm", "who")
@pytest.mark.points(1, "a client that never reads is dropped, whatever waits for it: direct messages too")
def test_a_client_that_never_reads_its_direct_messages_is_dropped(session):
    """The bound on what waits for one client holds for every kind of line sent to it: here
    only direct messages, nothing public (a public line would meet the bound on its own
    way). After each 200 of them, the talker's `who` is the sync point: its answer comes
    once the server has handled the dms before it."""
    driver = session.stage.client_class
    talker, _ = session.room_with_a_stuck_client()
    stuck, padding, sent = session.name("stuck"), driver.filler(4000), 0
    while not talker.has_seen(driver.wire_left(stuck)) and sent * len(padding) < 16_000_000:
        for number in range(sent, sent + 200):
            talker.send(json_message(type="dm", to=stuck, text=f"{number} {padding}"))
        talker.send(json_message(type="who"))
        talker.expect_line(JsonLine(type="users"))
        sent += 200
    if not talker.has_seen(driver.wire_left(stuck)):
        talker.expect_line(driver.wire_left(stuck))


@pytest.mark.sampled  # the default run: on the first stage with the deadline (07)
@pytest.mark.needs("shutdown_deadline")
@pytest.mark.no_bystander("a flood of thousands of long lines to fill a slow reader: a bystander read only between the check's own reads is a slow reader too, which the server may rightly drop, and reading it doubles the work the check waits on")
@pytest.mark.points(1, "Ctrl+C stops the server even while a stuck client has output waiting")
def test_a_stuck_client_cannot_hold_up_the_shutdown(session):
    """The stuck client's share is not full yet, but the kernel's buffers for it are: a thread
    that sends to it waits for ever, and a server that waits for that thread never stops."""
    talker, listener = session.room_with_a_stuck_client()
    stuck = next(peer for peer in session.peers if peer.name == session.name("stuck"))
    # The kernel holds what it will for the stuck client, and 256 KiB more wait in the server.
    if StuckRoom(session, stuck, talker, listener).fill_until(256 * 1024):
        pytest.skip("the stuck client was dropped before 256 KiB waited for it")  # not a bug: a small share
    session.server.term.ctrl_c()
    session.server.term.expect(session.spec("stopped"), timeout=SHUTDOWN)
    session.server.term.expect_exit(0, timeout=SHUTDOWN)


SHUTDOWN = 15  # seconds from Ctrl+C to exit, however stuck a client is (docs/protocol.md)


def raise_descriptor_limit(wanted=4096):
    """Let this process (and so the server it starts) open a few thousand sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("many_clients")
@pytest.mark.points(2, "a crowd of clients connect, get a broadcast and leave cleanly")
def test_a_crowd_of_clients_at_once(session, stage):
    crowd(session, stage.crowd)


@pytest.mark.slow
@pytest.mark.needs("many_clients")
@pytest.mark.points(1, "the full crowd (1,000 or 500 clients) is served")
def test_the_full_crowd_of_clients_at_once(session, stage):
    """1,000 clients on the select-based stages, 500 on the threaded ones (issue targets)."""
    if stage.full_crowd == stage.crowd:
        pytest.skip(f"the default run already connects {stage.crowd} clients to stage {stage.id}")
    crowd(session, stage.full_crowd)


def crowd(session, count):
    stage = session.stage
    if raise_descriptor_limit() < count + 64:
        pytest.fail(f"this machine allows too few open files for {count} clients (ulimit -n)")
    room_size = ("--max-clients", str(count + 10)) if stage.has("max_clients") else ()
    session.start_server(*room_size, preexec_fn=raise_descriptor_limit)
    alice = session.client("alice")
    pid = session.server.term.pid
    baseline, threads = len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task"))
    peers = [session.raw_peer(f"user{number}") for number in range(count)]
    for peer in peers:  # all connected at once; now they all join the room
        peer.send(alice.wire_hello(peer.name))
    # Each join is announced to everyone already in: N joins cost N^2/2 deliveries, so the wait
    # for the last welcome grows with N (a threaded stage on a busy 2-core machine needs it).
    # A TLS handshake costs milliseconds of CPU on both sides, on the same cores: more again.
    patience = TIMEOUT + count * (0.03 if stage.has("tls") else 0.01)
    session.everyone_gets(peers, lambda peer: alice.wire_welcome(peer.name), patience)
    hello = session.text()
    alice.say(hello)
    for peer in peers:  # one line each now: read in turn (reading all at once costs more under TLS)
        peer.expect_line(alice.wire_said(alice.name, hello), timeout=patience)
    for peer in peers:  # and all leave
        peer.close()
    with session.terminals_read_in_background():  # the server logs every departure
        deadline = time.monotonic() + 30
        while ((left_open := len(os.listdir(f"/proc/{pid}/fd")) - baseline) > 0
               or (left_running := len(os.listdir(f"/proc/{pid}/task")) - threads) > 0) \
                and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the condition: the server is still closing connections
    assert left_open <= 0, f"{left_open} connections still open on the server after every client left"
    # A thread per client (stages 04-06) must end with its client, or a long-running server runs out.
    assert left_running <= 0, f"{left_running} more threads in the server than before the crowd came and went"
    alice.say(session.text())  # and the room still works
    alice.term.assert_not_seen(session.spec("traceback"))


@pytest.mark.slow
@pytest.mark.needs("many_idle")
@pytest.mark.points(2, "5,000 idle connections at once, while a few clients chat")
@pytest.mark.no_bystander("its clients are plain sockets of the check's own, which the harness does not record: their joins, messages and leaves would reach the bystander unexplained")
def test_thousands_of_idle_connections_while_a_few_chat(session):
    count, wanted = 5000, 5300
    if raise_descriptor_limit(wanted) < wanted:
        pytest.fail(f"this machine allows too few open files for {count} connections (ulimit -n)")
    server = session.start_server(preexec_fn=lambda: raise_descriptor_limit(wanted))
    alice, bob = session.client("alice"), session.client("bob")
    baseline = len(os.listdir(f"/proc/{server.term.pid}/fd"))
    idle = [socket.create_connection((server.host, server.port), timeout=10) for _ in range(count)]
    try:
        deadline = time.monotonic() + 30
        while (held := len(os.listdir(f"/proc/{server.term.pid}/fd")) - baseline) < count \
                and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the condition: the server is still accepting
        assert held >= count, f"the server holds {held} of {count} idle connections"
        for _ in range(3):  # the live chat is not slowed down by the crowd
            started = time.monotonic()
            session.chat_goes_on(alice, bob)
            assert time.monotonic() - started < 1, "a message took over a second with 5,000 idle connections"
        idle[-1].sendall(alice.wire_hello(session.name("the last one")))  # the last one is served too
        assert b"welcome" in idle[-1].recv(4096)
    finally:
        for sock in idle:
            sock.close()

"""Limits that hold however the bytes arrive, and input that cannot break a connection.

Each rule is checked on every stage with the capability, so a student's copy is held
to it too: the line limit on every line (one write, two writes, a byte at a time),
hostile JSON, text that Python cannot encode, connections that never join, and the
total memory that stuck clients may cost.
"""

import json
import select
import socket
import threading
import time

import pytest

from harness import TIMEOUT, JsonLine, StuckRoom, json_message, loopback_queues
from test_robustness import limit_open_files

pytestmark = pytest.mark.needs("chat")


def max_line(session):
    return getattr(session.stage.client_class, "max_line", 8192)  # 02's limit is 8 KiB too


def refused_as_too_long(session):
    """What the server sends before it closes a connection over the line limit."""
    if session.stage.has("json_wire"):
        return JsonLine(type="error", code="line-too-long")
    return session.spec("too_long")


def dropped_for_join_timeout(session):
    """What the server sends before it closes a connection that never joined."""
    if session.stage.has("json_wire"):
        return JsonLine(type="error", code=session.spec("join_timeout"))
    return session.spec("join_timeout")


# ---------------------------------------------------------------- the line limit, on every line

WAYS = {
    "one write": lambda peer, data: peer.send(data),
    "two writes": lambda peer, data: (peer.send(data[:len(data) // 2]), peer.send(data[len(data) // 2:])),
    "a byte at a time": lambda peer, data: peer.send_slowly(data, pause=0),
}


def send_until_refused(way, peer, data):
    try:
        WAYS[way](peer, data)
    except OSError:
        pass  # the server may refuse the line before its end has arrived: that is the point


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.parametrize("way", WAYS)
@pytest.mark.points(2, "a line over the limit is refused however it arrives, and reaches nobody")
def test_a_line_over_the_limit_is_refused_however_it_arrives(session, way):
    """A complete line over the limit, with its newline: in one write (one recv() on the server),
    in two writes each under the limit, and a byte at a time. The limit holds on each."""
    driver = session.stage.client_class
    listener, flooder = session.joined_peer("listener"), session.joined_peer("flooder")
    marker = session.text()
    line = driver.wire_say(marker + " " + "x" * max_line(session))  # past the limit, newline included
    send_until_refused(way, flooder, line)
    flooder.expect_line(refused_as_too_long(session))
    if driver.drops_long_lines:
        flooder.expect_closed()
        listener.expect_line(driver.wire_left(flooder.name))  # after anything the server relayed from it
    else:  # stage 11: 417, the line is dropped, and the connection goes on
        after = session.text()
        flooder.send(driver.wire_say(after))
        listener.expect_line(driver.wire_said(flooder.name, after))
    why = "the line was over the limit: the server must refuse it, not relay it"
    if session.stage.has("json_wire"):
        session.joined_peer("newcomer")  # stage 07 replays its history: the line must not be in it
        session.nobody_else_got(marker, flooder, why=why)
    elif listener.received(marker):
        raise session.failure(f"[{listener.label}] expected NOT to receive {marker!r} ({why})", "it was received")


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("relays_whole_lines")
@pytest.mark.parametrize("way", ["one write", "the newline later"])
@pytest.mark.points(1, "a line of exactly the limit is taken, however its end arrives")
def test_a_line_of_exactly_the_limit_is_taken(session, way):
    """The boundary (docs/protocol.md): 8,192 bytes before the newline are taken (64 KiB in stage
    10). In "the newline later", the server has read the whole line but its end before the end
    comes: a partial line of exactly the limit must wait, not be refused."""
    driver = session.stage.client_class
    listener, talker = session.joined_peer("listener"), session.joined_peer("talker")
    end = len(driver.wire_line(""))  # the newline
    counted = max_line(session) + end
    head = session.text() + " "
    text = head + "x" * (counted - len(driver.wire_say(head)))
    line = driver.wire_say(text)
    assert len(line) == counted, (len(line), counted)
    if way == "one write":
        talker.send(line)
    else:
        talker.send(line[:-end])
        talker.wait_until_server_read()
        talker.send(line[-end:])
    listener.expect_line(driver.wire_said(talker.name, text))


# ---------------------------------------------------------------- hostile JSON

NESTED = {
    "2,000 [": b"[" * 2000 + b"\n",
    "a say whose text is a 3,000-deep list":
        b'{"type": "say", "text": ' + b"[" * 3000 + b"]" * 3000 + b"}\n",
}


@pytest.mark.needs("json_wire")
@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.parametrize("case", NESTED)
@pytest.mark.points(2, "deeply nested JSON gets an error and the connection goes on, no ghost")
def test_deeply_nested_json_gets_an_error_and_the_connection_goes_on(session, case):
    """json.loads raises RecursionError on deep nesting: that is bad input like any other,
    answered with an error, and never a dead handler that leaves its user in the room."""
    driver = session.stage.client_class
    listener, peer = session.joined_peer("listener"), session.joined_peer("nested")
    peer.send(NESTED[case])
    reply = json.loads(peer.expect_line(JsonLine(type="error")))
    allowed = ("bad-json",) if case == "2,000 [" else ("bad-json", "bad-message")
    assert reply["code"] in allowed, f"expected the error code {' or '.join(allowed)}, received {reply!r}"
    after = session.text()
    peer.send(driver.wire_say(after))  # the same connection still works...
    listener.expect_line(driver.wire_said(peer.name, after))
    peer.round_trip()  # ...and is still in the room (already-joined)
    assert not listener.has_seen(driver.wire_left(peer.name)), "the nested line made the server drop the user"


@pytest.mark.needs("dm")
@pytest.mark.points(2, "a direct message with a lone surrogate is delivered like a public one")
def test_a_direct_message_with_a_lone_surrogate_is_delivered(session):
    """"\\ud800" is legal in a JSON string but cannot be encoded as UTF-8: a server that
    measures or logs the text must not fail on it, in a dm as in a say."""
    alice, bob, carol = (session.joined_peer(role) for role in ("alice", "bob", "carol"))
    marker = session.text()
    text = "\ud800 " + marker
    alice.send(json_message(type="dm", to=bob.name, text=text))  # json.dumps writes it as the escape \ud800
    bob.expect_line(JsonLine(type="dm", text=text, **{"from": alice.name}))
    session.nobody_else_got(marker, bob)
    carol.send(json_message(type="say", text=text))  # the public path, for comparison
    bob.expect_line(JsonLine(type="said", text=text, **{"from": carol.name}))
    alice.round_trip()  # the sender's handler is alive


# ---------------------------------------------------------------- connections that never join

@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("join_deadline")
@pytest.mark.parametrize("value", ["0", "-5", "soon"])
@pytest.mark.points(1, "a bad --join-timeout gives argparse's usage error, exit code 2")
def test_a_bad_join_timeout_is_one_line_error(session, value):
    server = session.spawn("server", "server.py", "--port", "0", "--join-timeout", value)
    server.expect_usage_exit(session.spec("bad_join_timeout"))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("join_deadline")
@pytest.mark.points(2, "connections that never join are dropped after --join-timeout; users get in")
def test_connections_that_never_join_are_dropped_and_cannot_lock_users_out(session):
    """With ulimit -n 64, a crowd of silent and dribbling connections would hold every
    descriptor for ever. After --join-timeout each gets join-timeout and is closed, a real
    user still gets in, and the users who joined are never dropped, however long they idle."""
    server = session.start_server("--join-timeout", "1", *max_clients(session, 500), preexec_fn=limit_open_files)
    alice = session.client("alice")  # joined before the crowd, idle through it
    started = time.monotonic()
    silent = [socket.create_connection((server.host, server.port), timeout=TIMEOUT) for _ in range(80)]
    dribblers = [session.raw_peer(f"dribbler{number}") for number in range(10)]
    hello = session.stage.client_class.wire_unfinished_hello(session.name("dribbler"))
    try:
        bob = session.client("bob")  # queued behind the crowd: in once the timeouts have freed descriptors
        dribble(dribblers, hello)  # never the whole hello: still not joined
        for peer in dribblers:
            peer.expect_line(dropped_for_join_timeout(session), timeout=TIMEOUT + 5)
            peer.expect_closed()
        for sock in silent:
            closed_by_server(session, sock)
        assert time.monotonic() - started >= 1, "dropped before --join-timeout 1 had passed"
        session.chat_goes_on(alice, bob)  # alice idled past the timeout: she was joined, so she stays
        session.chat_goes_on(bob, alice)
    finally:
        for sock in silent:
            sock.close()


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("join_deadline", "name_rules", "json_wire")  # stage 11: its own registration deadline check
@pytest.mark.points(1, "trying name after name never resets --join-timeout: it counts from the connection's start")
def test_trying_name_after_name_never_resets_the_join_deadline(session):
    """A connection that keeps sending bad names, each answered with bad-name, has still not
    joined: --join-timeout 1 drops it about a second after it connected, not a second after
    its last try. It tries a name about every fifth of a second (a byte every 5 ms), until the
    server drops it."""
    session.start_server("--join-timeout", "1")
    trier = session.raw_peer("trier")
    bad_name = session.stage.client_class.wire_hello("x" * 40)  # longer than any name may be
    started = time.monotonic()
    dropped = dropped_for_join_timeout(session)
    while not trier.has_seen(dropped):
        if time.monotonic() - started > 1 + TIMEOUT:
            raise session.failure("[trier] expected join-timeout about 1 s after connecting (--join-timeout 1), "
                                  "though it kept trying names", f"still not dropped after {1 + TIMEOUT:g} s of bad names")
        try:
            trier.send_slowly(bad_name)
        except OSError:  # closed while it tried: the join-timeout came first
            break
        trier.expect_line(lambda line: JsonLine(type="error", code="bad-name")(line) or dropped(line))
    if not trier.has_seen(dropped):
        trier.expect_line(dropped)
    trier.expect_closed()


@pytest.mark.needs("join_deadline", "evicts_unjoined")
@pytest.mark.points(2, "at the descriptor limit, the oldest connection that has not joined makes room for a user")
def test_at_the_descriptor_limit_the_oldest_unjoined_connection_makes_room(session):
    """With ulimit -n 64, 100 silent connections hold every descriptor the server may open, and
    the rest of them wait in the kernel's queue, ahead of a real user. Their deadline is a minute
    away (--join-timeout 60): the user must not wait for it. The server closes the connections
    that have waited longest without joining, each with join-timeout, to make room."""
    server = session.start_server("--join-timeout", "60", *max_clients(session, 500), preexec_fn=limit_open_files)
    silent = [socket.create_connection((server.host, server.port), timeout=TIMEOUT) for _ in range(100)]
    try:
        server.logs(session.spec("out_of_files"))  # every descriptor is taken
        started = time.monotonic()
        newcomer = session.raw_peer("newcomer")  # queued behind the silent connections
        newcomer.join()  # welcomed within TIMEOUT seconds, not the 60 of the deadline
        assert time.monotonic() - started < 60 / 4, "the newcomer waited for the silent connections' deadline"
        closed_by_server(session, silent[0])  # the oldest made room: join-timeout, then closed
        peer = session.joined_peer("another")  # another newcomer gets in too, and the two chat
        text = session.text()
        newcomer.send(session.stage.client_class.wire_say(text))
        peer.expect_line(session.stage.client_class.wire_said(newcomer.name, text))
    finally:
        for sock in silent:
            sock.close()


def dribble(peers, data):
    """Send `data` to each peer a byte at a time, about five bytes a second (the test's input: a
    client that is slow, not silent), until the server has answered or closed every one."""
    waiting = list(peers)
    for byte in data:
        waiting = [peer for peer in waiting if not peer.has_data()]
        if not waiting:
            return
        for peer in list(waiting):
            try:
                peer.sock.sendall(bytes([byte]))
            except ConnectionError:  # closed by the server since has_data(): what it
                waiting.remove(peer)  # said before the close is read and checked next
        select.select([peer.sock for peer in waiting], [], [], 0.2)  # an answer ends the pause early


def max_clients(session, count):
    return ("--max-clients", str(count)) if session.stage.has("max_clients") else ()


def closed_by_server(session, sock):
    """Read whatever the server sends until it closes the connection."""
    __tracebackhide__ = True
    deadline = time.monotonic() + TIMEOUT + 5
    received = b""
    while time.monotonic() < deadline:
        if not session.wait_readable(sock, deadline - time.monotonic()):
            break
        try:
            data = sock.recv(65536)
        except ConnectionError:
            return
        if not data:
            if session.stage.has("tls"):
                return  # a silent connection never did its TLS handshake: the error cannot be read
            expected = dropped_for_join_timeout(session)
            text = received.decode("utf-8", "replace")
            if not any(expected(line) if callable(expected) else expected in line for line in text.splitlines()):
                raise session.failure(f"expected {expected!r} before the close", repr(text[-300:]))
            return
        received += data
    raise session.failure("expected the server to close a connection that never joined (--join-timeout 1)",
                          f"still open after {TIMEOUT + 5} s")


# ---------------------------------------------------------------- memory, in total

STUCK = 150
TOTAL_MIB = 64  # docs/protocol.md: at most 64 MiB waiting for all clients together
# Slack for what is not waiting output: the interpreter's own growth, and each connection's
# state (a thread's stack, TLS buffers). A bound per client alone costs 150 MiB and more.
SLACK_MIB = 32 + STUCK / 4  # 256 KiB a connection: 69.5 MiB


def peak_growth_mib(pid, before_kib):
    """How far the server's peak resident memory (VmHWM) has risen above `before_kib`."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return (int(line.split()[1]) - before_kib) / 1024
    raise AssertionError("no VmHWM in /proc")


@pytest.mark.needs("memory_share")
@pytest.mark.slow  # the kernel holds up to 4 MiB per stuck socket first: about 700 MB go through the server
@pytest.mark.points(2, "stuck clients cost at most 64 MiB of waiting output in all, however many")
@pytest.mark.no_bystander("its clients are plain sockets of the check's own, which the harness does not record: their joins, messages and leaves would reach the bystander unexplained")
def test_stuck_clients_cost_bounded_memory_in_total(session):
    """150 clients that never read, and a sender of long messages: a bound per client alone
    (1 MiB, or 8 MiB in 10) would let the server hold 150 MiB or more. Each client's share of
    64 MiB keeps the total bounded however many are stuck. Where the stage has direct
    messages, each stuck client is sent its own, so that no copy can be shared between them."""
    from test_robustness import rss_kib
    driver = session.stage.client_class
    server = session.start_server(*max_clients(session, 500))
    stuck = set()
    for number in range(STUCK):
        peer = session.raw_peer(f"stuck{number}", receive_buffer=4096)
        peer.join()  # welcomed, then never reads again
        stuck.add(peer.name)
    talker, listener = session.joined_peer("talker"), session.joined_peer("listener")
    padding = "x" * (max_line(session) - 300)
    dropped = listen_for_departures(listener.sock, stuck, driver)
    # The kernel takes up to 4 MiB per socket (net.ipv4.tcp_wmem) before the server's own limit starts.
    per_client = (8 if session.stage.has("tls") else 1) * 1024 * 1024
    rounds = (4 * 1024 * 1024 + per_client) * 3 // 2 // len(padding)
    # The server reads the talker at its own pace: on a busy machine, with IRC's short lines (150
    # sends per line), a write may wait a while. That is backpressure, not a failure.
    talker.sock.settimeout(TIMEOUT * 6)
    with session.terminals_read_in_background():  # the server logs every message
        before = rss_kib(server.term.pid)
        for number in range(rounds):  # until each has had more than its per-client limit, or is gone
            if dropped.names >= stuck:
                break
            if session.stage.has("dm"):
                for name in stuck - dropped.names:
                    talker.sock.sendall(json_message(type="dm", to=name, text=f"#{number}# {padding}"))
            else:
                talker.sock.sendall(driver.wire_say(f"#{number}# {padding}"))
        dropped.join(timeout=TIMEOUT * 2)
    assert dropped.names >= stuck, f"{len(stuck - dropped.names)} of the {STUCK} stuck clients were never dropped"
    grown = peak_growth_mib(server.term.pid, before)
    assert grown < TOTAL_MIB + SLACK_MIB, (
        f"the server's peak memory grew by {grown:.0f} MiB with {STUCK} stuck clients: expected under "
        f"{TOTAL_MIB + SLACK_MIB:g} MiB ({TOTAL_MIB} MiB of waiting output in all, plus {SLACK_MIB:g} MiB of "
        "slack for the connections' own state). "
        "Is each client's limit its share of the total (MAX_PENDING_TOTAL / clients online)?")


CROWD = 300  # connections open: an even split of 64 MiB is then 218 KiB, under the 256 KiB floor
FLOOR_KIB, KEPT_KIB, DROPPED_KIB, TLS_RESERVED_KIB = 256, 240, 288, 128


@pytest.mark.sampled  # the default run: on the first stage with the share (07), the same rule in every stage
@pytest.mark.needs("memory_share")
@pytest.mark.points(2, "past 256 connections, a stuck client is dropped once it has 256 KiB waiting, not before")
def test_past_256_connections_a_share_is_256_kib(session):
    """docs/protocol.md, "Memory": a connection's share is 64 MiB divided by the connections open
    (joined or not), at most the stage's per-client limit and at least 256 KiB. With 300 open,
    the even split is 218 KiB, so the share is 256 KiB: a stuck client with 240 KiB waiting for
    it stays, and one with 288 KiB has been dropped. (A share of 218 KiB drops it too soon; a
    total with no bound, or a share of the per-client limit, keeps it.) On the TLS stage, 128 KiB
    of each share are left for what TLS buffers out of the server's sight: it stays at 112 KiB."""
    from test_chat import raise_descriptor_limit
    driver = session.stage.client_class
    raise_descriptor_limit()
    server = session.start_server(*max_clients(session, CROWD + 10), preexec_fn=raise_descriptor_limit)
    stuck = session.raw_peer("stuck", receive_buffer=4096)
    stuck.send(driver.wire_hello(stuck.name))
    session.server_logs_join(stuck.name)
    talker, listener = session.joined_peer("talker"), session.joined_peer("listener")
    crowd = [session.raw_peer(f"idle{number}") for number in range(CROWD)]
    for peer in crowd:
        peer.sock.sendall(driver.wire_unfinished_hello(peer.name)[:1])  # the start of a name, no more
    wait_until_the_server_has_read(session, server.port, crowd)
    room = StuckRoom(session, stuck, talker, listener)
    kept = (KEPT_KIB - (TLS_RESERVED_KIB if session.stage.has("tls") else 0)) * 1024
    if room.fill_until(kept):
        raise session.failure(f"[{listener.label}] expected {stuck.name} to stay: {room.held // 1024} KiB waited "
                              f"for it, with {CROWD + 3} connections open",
                              f"it was dropped; a share is never under {FLOOR_KIB} KiB (is the floor applied?)")
    if not room.fill_until(DROPPED_KIB * 1024):
        raise session.failure(f"[{listener.label}] expected {stuck.name} to be dropped: {room.held // 1024} KiB "
                              f"waited for it, with {CROWD + 3} connections open",
                              f"it stayed; its share is {FLOOR_KIB} KiB here (is the 64 MiB total divided "
                              "among the connections open?)")


def wait_until_the_server_has_read(session, port, peers, patience=TIMEOUT * 2):
    """Until the server has accepted every peer and read what it sent (its receive queue in the
    kernel is empty), in one look at /proc/net/tcp per round."""
    waiting = {peer.sock.getsockname()[1] for peer in peers}
    deadline = time.monotonic() + patience
    while waiting and time.monotonic() < deadline:
        queues = loopback_queues()
        waiting = {theirs for theirs in waiting if queues.get((port, theirs), (0, 1))[1]}
        time.sleep(0.01)  # polls the kernel's queues: the server is working through the crowd
    if waiting:
        raise session.failure(f"expected the server to accept {len(peers)} connections and read their first byte",
                              f"{len(waiting)} still unread after {patience:g} s")


def listen_for_departures(sock, names, driver):
    """A thread that reads `sock` and collects which of `names` the server has said left."""
    def listen():
        pending = b""
        sock.settimeout(None)  # quiet for a while as the stuck clients fill up: not a failure
        while not thread.names >= names:
            try:
                data = sock.recv(1 << 20)
            except OSError:
                return  # the check has ended and closed the socket
            if not data:
                return
            *lines, pending = (pending + data).split(b"\n")
            departed = (driver.wire_departed(line.decode("utf-8", "replace")) for line in lines)
            thread.names |= {name for name in departed if name in names}

    thread = threading.Thread(target=listen, daemon=True)
    thread.names = set()
    thread.start()
    return thread


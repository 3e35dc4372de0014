"""The JSON Lines protocol (stage 03 on), checked on the wire with raw peers and on screen with clients."""

import json
import os
import re
import time
from datetime import datetime

import pytest

from harness import TIMEOUT, JsonLine, json_message

pytestmark = pytest.mark.needs("json_wire")


@pytest.mark.no_bystander("it compares the welcome's count of who is online: 1, then 2")
@pytest.mark.points(2, "welcome, joined and said carry their fields and an ISO time")
def test_server_messages_carry_their_fields_and_time(session):
    alice = session.raw_peer("alice")
    alice.send(json_message(type="hello", name=alice.name, client_id="a1"))
    welcome = json.loads(alice.expect_line(JsonLine(type="welcome", name=alice.name, online=1)))
    bob = session.raw_peer("bob")
    bob.send(json_message(type="hello", name=bob.name, client_id="b1"))
    bob.expect_line(JsonLine(type="welcome", name=bob.name, online=2))  # you included
    joined = json.loads(alice.expect_line(JsonLine(type="joined", name=bob.name)))
    text = session.text()
    bob.send(json_message(type="say", text=text))
    said = json.loads(alice.expect_line(JsonLine(type="said", text=text, **{"from": bob.name})))
    for event in (welcome, joined, said):
        datetime.fromisoformat(event["time"])  # an ISO 8601 time stamp, or this raises


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.shares_server  # one server for every case (tests/harness.py, SharedServers)
@pytest.mark.parametrize("line, code", [
    (b"this is not json", "bad-json"),
    (b"\xff\xfe\xfd", "bad-json"),
    (b"[1, 2, 3]", "bad-message"),
    (b'{"text": "no type"}', "bad-message"),
    (b'{"type": "dance"}', "unknown-type"),
    (b'{"type": "say"}', "bad-message"),
    (b'{"type": "say", "text": 42}', "bad-message"),
    (b'{"type": "hello", "name": ["a"], "client_id": "x"}', "bad-message"),
    (b'{"type": "say", "text": 1e999999}', "bad-message"),
    (b'{"type": "say", "text": "x", "n": ' + b"9" * 5000 + b"}", "bad-json"),
], ids=["not-json", "not-utf8", "array", "no-type", "unknown-type", "missing-field", "wrong-type", "name-list",
        "infinite-number", "5000-digit-number"])
@pytest.mark.points(1, "a malformed message gets an error code; the connection stays open")
def test_bad_message_gets_an_error_and_the_connection_stays_open(session, line, code):
    alice, bob = session.joined_peer("alice"), session.joined_peer("bob")
    alice.send(line + b"\n")
    alice.expect_line(JsonLine(type="error", code=code))
    text = session.text()
    alice.send(json_message(type="say", text=text))
    bob.expect_line(JsonLine(type="said", text=text))


@pytest.mark.points(1, "say before hello gets error not-joined")
def test_say_before_hello_is_refused(session):
    peer = session.raw_peer()
    peer.send(json_message(type="say", text=session.text()))
    peer.expect_line(JsonLine(type="error", code="not-joined"))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("dm", "who")
@pytest.mark.parametrize("kind", ["dm", "who"])
@pytest.mark.points(1, "dm and who before hello get error not-joined, and reach nobody")
def test_every_message_before_hello_is_refused(session, kind):
    """Not only say: every message but hello (and bye, which ends the connection) needs a
    joined sender. The bystander, asked to sync after, has received nothing for it."""
    bystander = session.joined_peer("bystander")
    stranger = session.raw_peer("stranger")
    message = {"dm": {"type": "dm", "to": bystander.name, "text": session.text()}, "who": {"type": "who"}}[kind]
    stranger.send(json_message(**message))
    stranger.expect_line(JsonLine(type="error", code="not-joined"))
    if len(stranger.history) != 1:
        raise session.failure("[stranger] expected error not-joined as its only line", "\n".join(stranger.history))
    bystander.round_trip()
    if len(bystander.history) != 2:  # its welcome, and the answer to its round trip
        raise session.failure("[bystander] expected nothing from a connection that has not joined",
                              "\n".join(bystander.history[1:-1]))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.shares_server  # one server for every case (tests/harness.py, SharedServers)
@pytest.mark.parametrize("name", ["", "x" * 33, "two words", "semi;colon", "\x1b[31mred", "é"])
@pytest.mark.points(1, "a bad name gets error bad-name; a good one then works")
def test_bad_names_are_refused_and_a_good_one_then_works(session, name):
    peer = session.raw_peer()
    peer.send(json_message(type="hello", name=name, client_id="c1"))
    peer.expect_line(JsonLine(type="error", code="bad-name"))
    good = f"{session.name('good')}_-".ljust(32, "x")  # the longest name allowed, with both symbols
    peer.send(json_message(type="hello", name=good, client_id="c1"))
    peer.expect_line(JsonLine(type="welcome", name=good))


@pytest.mark.points(1, "the client asks for another name after bad-name")
def test_client_asks_again_after_a_bad_name(session):
    server = session.start_server()
    term = session.spawn("client", "client.py", "--port", str(server.port), "--name", "bad name")
    term.expect(session.spec("bad_name"))
    term.expect(session.spec("name_prompt"))
    term.send_line(session.name("alice"))
    session.gate("in", lambda: term.expect(session.spec("welcome", name=session.name("alice"))))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(2, "a line over the limit (8 KiB; 64 KiB in 10) gets line-too-long and only that client goes")
def test_too_long_line_disconnects_only_that_client(session):
    alice, bob = session.client("alice"), session.client("bob")
    bystander = session.joined_peer("bystander")
    flooder = session.joined_peer("flooder")
    flooder.send(b"x" * (session.stage.client_class.max_line + 1808))  # no newline, past the limit
    flooder.expect_line(JsonLine(type="error", code="line-too-long"))
    flooder.expect_closed()
    # The spec: "the others are told left, reason lost" (it did not say bye).
    bystander.expect_line(JsonLine(type="left", name=flooder.name, reason="lost"))
    session.chat_goes_on(alice, bob)


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("max_clients")
@pytest.mark.no_bystander("--max-clients 2: its two clients fill the room, a bystander would take a place")
@pytest.mark.points(2, "the client past --max-clients gets server-full")
def test_client_past_max_clients_gets_server_full(session):
    session.start_server("--max-clients", "2")
    session.client("alice"), session.client("bob")
    peer = session.raw_peer("carol")
    peer.send(json_message(type="hello", name=peer.name, client_id="c1"))
    peer.expect_line(JsonLine(type="error", code="server-full"))
    peer.expect_closed()
    dave = session.spawn("dave", "client.py", "--port", str(session.server.port), "--name", session.name("dave"))
    dave.expect_error_exit(session.spec("full"))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("max_clients")
@pytest.mark.parametrize("value", ["0", "-1", "2.5", "ten"])
@pytest.mark.points(1, "a bad --max-clients (0, -1, 2.5, ten) gives argparse's usage error, exit code 2")
def test_a_bad_max_clients_is_a_usage_error(session, value):
    server = session.spawn("server", "server.py", "--port", "0", "--max-clients", value)
    server.expect_usage_exit(session.spec("bad_max_clients"))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(2, "leaving shows reason quit, a dropped connection lost")
def test_leave_reasons_quit_and_lost(session):
    alice, bob, carol = session.client("alice"), session.client("bob"), session.client("carol")
    bob.quit()  # Ctrl+D: the client says bye
    alice.sees(alice.left_because(bob.name, "quit"))
    carol.term.kill()  # no bye: the connection just drops
    alice.sees(alice.left_because(carol.name, "lost"))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(1, "bye is acknowledged, then the connection closes")
def test_bye_is_acknowledged_then_closed(session):
    alice = session.client("alice")
    peer = session.joined_peer("raw")
    peer.send(json_message(type="bye"))
    peer.expect_line(JsonLine(type="bye"))
    peer.expect_closed()
    alice.sees(alice.left_because(peer.name, "quit"))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(1, "the client shows messages as [HH:MM] name: text")
def test_client_shows_the_time_of_each_message(session):
    alice, bob = session.client("alice"), session.client("bob")
    text = session.text()
    alice.say(text)
    bob.term.expect_regex(session.spec("said_time", name=alice.name, text=text))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(1, "the server logs each message's sender, size and time")
def test_server_logs_sender_size_and_time(session):
    alice, bob = session.client("alice"), session.client("bob")
    text = session.chat_goes_on(alice, bob)
    line = session.server.term.expect_regex(session.spec("said_log", name=alice.name, text=text)).group(0)
    assert re.search(session.spec("clock"), line), f"no time in the server's log line: {line!r}"
    assert re.search(session.spec("size"), line), f"no size in the server's log line: {line!r}"


@pytest.mark.points(1, "a connection that leaves without joining is never announced")
def test_a_connection_that_never_joined_leaves_unannounced(session):
    alice = session.joined_peer("alice")
    server = session.server.term.pid
    before = len(os.listdir(f"/proc/{server}/fd"))
    stranger = session.raw_peer("stranger")
    stranger.send(b'{"type": "dance"}\n')  # it talks, but never says hello
    stranger.expect_line(JsonLine(type="error", code="unknown-type"))
    stranger.close()
    session.peers.remove(stranger)
    deadline = time.monotonic() + TIMEOUT
    while len(os.listdir(f"/proc/{server}/fd")) > before and time.monotonic() < deadline:
        time.sleep(0.01)  # polls a condition: the server has closed its side once the count is back
    alice.round_trip()
    assert not alice.has_seen(JsonLine(type="left")), "a departure was announced for someone who never joined"

"""Every limit the spec states, at limit - 1, at the limit and at limit + 1.

An off-by-one hides between a check far under a limit and one far over it: a server that
refuses 8,193 bytes but also 8,192, or takes 8,193, passes both. Here each limit is held
at its three edges, on one server per check where the cases allow it:

- the line limit (docs/protocol.md: bytes, not characters), in one write and a byte at a
  time, with a two-byte character where a count of characters would be one short;
- the name's length (stages 03 on) and IRC's NICKLEN, CHANNELLEN and CHANLIMIT (stage 11);
- --max-clients, where a connection that has not joined takes no place;
- --history (stage 07) and --max-file-size (stage 10).

At the limit, the message is taken and a bystander receives it exactly; over it, the
sender gets the spec's reply, every field compared, and nobody else gets anything (each
bystander is synced on its own connection first: RawPeer.round_trip). Each check is fed
from the stage's tables (tests/stages.py, tests/contract.py), so a stage, and a student's
copy graded with --impl, inherits it.
"""

import json

import pytest

from harness import JsonLine, json_message
from test_limits import max_line, refused_as_too_long

ASCII, TWO_BYTES = "x", "\u00e9"  # é: two bytes in UTF-8, one character
EDGE = 64  # the bytes around the limit that "the edge a byte at a time" sends one per write
WAYS = {
    "one write": lambda peer, data: peer.send(data),
    # The server sees the limit pass a byte at a time, the newline last (a few tenths of a
    # second); the whole line a byte at a time takes seconds (46 s over TLS): slow tier.
    "the edge a byte at a time": lambda peer, data: (peer.send(data[:-EDGE]),
                                                     peer.send_slowly(data[-EDGE:], pause=0)),
    "a byte at a time": lambda peer, data: peer.send_slowly(data, pause=0),
}
LINE_WAYS = [pytest.param(way, marks=[pytest.mark.slow] if way == "a byte at a time" else []) for way in WAYS]


def say_line(session, text):
    """A say on the stage's wire, the text in its own UTF-8 bytes (JSON: not \\u-escaped)."""
    if session.stage.has("json_wire"):
        return json.dumps({"type": "say", "text": text}, ensure_ascii=False).encode() + b"\n"
    return session.stage.client_class.wire_say(text)


def text_of_size(session, head, size, last=ASCII):
    """A text starting with `head` and ending with `last`, whose say line is `size` bytes
    before its newline."""
    end = len(b"\n")
    pad = size - (len(say_line(session, head + last)) - end)
    text = head + ASCII * pad + last
    assert len(say_line(session, text)) - end == size
    return text


def received_exactly(session, name, text):
    """The line a bystander must receive for `name` saying `text`: every field (JSON), or
    the whole line (stage 02's NAME: text)."""
    driver = session.stage.client_class
    if session.stage.has("json_wire"):
        return driver.wire_said(name, text)
    expected = driver.said(name, text)
    return lambda line: line == expected


# ---------------------------------------------------------------- the line limit

# (bytes before the newline, relative to the limit; the line's last character)
LINE_CASES = [(-1, ASCII), (0, ASCII), (0, TWO_BYTES), (+1, ASCII), (+1, TWO_BYTES)]


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("relays_whole_lines")
@pytest.mark.parametrize("way", LINE_WAYS)
@pytest.mark.points(2, "the line limit holds at its edge: limit - 1 and limit bytes taken whole, limit + 1 refused")
def test_the_line_limit_at_its_edge(session, way):
    """docs/protocol.md: a line of 8,192 bytes or fewer before its newline is taken (64 KiB in
    stage 10), more is refused and its sender dropped. Bytes, not characters: a line whose
    last character is é is one character shorter than it is long. Each line taken reaches
    the listener exactly; each refused one costs its sender its connection and reaches
    nobody. In one write, and with the bytes around the limit one per write (the server sees
    the limit pass before the newline comes); the slow tier sends the whole line so."""
    driver = session.stage.client_class
    limit = max_line(session)
    listener, talker = session.joined_peer("listener"), session.joined_peer("talker")
    refused = []
    for offset, last in LINE_CASES:
        head = f"{session.text()} {limit + offset} bytes "
        text = text_of_size(session, head, limit + offset, last)
        if offset <= 0:
            WAYS[way](talker, say_line(session, text))
            listener.expect_line(received_exactly(session, talker.name, text))
            continue
        flooder = session.joined_peer(f"flooder{len(refused)}")
        listener.expect_line(driver.wire_joined(flooder.name))
        try:
            WAYS[way](flooder, say_line(session, text))
        except OSError:
            pass  # the server may refuse the line before its end has arrived: that is the point
        flooder.expect_line(refused_as_too_long(session))
        flooder.expect_closed()
        # Anything the server relayed from the flooder comes before its departure.
        left = driver.wire_left(flooder.name)
        listener.expect_line(JsonLine(type="left", name=flooder.name, reason="lost")
                             if session.stage.has("json_wire") else left)
        refused.append((flooder, head))
    why = "the line was over the limit: the server must refuse it, not relay it"
    for flooder, head in refused:
        if session.stage.has("json_wire"):
            session.nobody_else_got(head.strip(), *(peer for peer, _ in refused), why=why)
        elif listener.received(head.strip()) or talker.received(head.strip()):
            raise session.failure(f"expected nobody to receive {head.strip()!r} ({why})", "it was received")


@pytest.mark.needs("echo")
@pytest.mark.parametrize("way", LINE_WAYS)
@pytest.mark.points(1, "stage 01's limit at its edge: 8,192 bytes echoed whole, 8,193 without a newline refused")
def test_the_echo_limit_at_its_edge(session, way):
    """docs/protocol.md, stage 01: a line of 8,192 bytes or fewer is echoed, and one that has
    passed 8,192 bytes without its newline gets `error: line too long` before the server
    hangs up, a two-byte character straddling the limit included. One client at a time:
    each connection is closed before the next is served."""
    limit = max_line(session)
    session.start_server()
    peer = session.raw_peer("talker")
    for size, last in ((limit - 1, ASCII), (limit, ASCII), (limit, TWO_BYTES)):
        head = f"{session.text()} {size} bytes "
        text = head + ASCII * (size - len((head + last).encode())) + last
        WAYS[way](peer, text.encode() + b"\n")
        expected = session.spec("echo", text=text)
        peer.expect_line(lambda line, expected=expected: line == expected)
    peer.close()
    for number, last in enumerate((ASCII, TWO_BYTES)):
        flooder = session.raw_peer(f"flooder{number}")
        data = (ASCII * (limit + 1 - len(last.encode())) + last).encode()  # no newline yet
        try:
            WAYS[way](flooder, data)
        except OSError:
            pass  # refused as the 8,193rd byte came: that is the point
        flooder.expect_line(session.spec("too_long"))
        flooder.expect_closed()
        flooder.close()


# ---------------------------------------------------------------- names

@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("json_wire", "name_rules")
@pytest.mark.points(1, "names of 31 and 32 characters get in; 33 get bad-name, and nobody hears of it")
def test_the_name_length_at_its_edge(session):
    """docs/protocol.md: a name is 1 to 32 letters, digits, _ or -. The 33-character name is
    refused with bad-name and the connection stays (the same connection then joins with 32);
    the bystander is told of the names that got in, exactly, and of nothing else."""
    bystander = session.joined_peer("bystander")
    base = f"{session.name('edge')}_-"
    too_long, longest, shorter = (base.ljust(size, "x") for size in (33, 32, 31))
    peer = session.raw_peer("edge")
    peer.send(json_message(type="hello", name=too_long, client_id="edge"))
    peer.expect_line(JsonLine(type="error", code="bad-name"))  # every field, as the protocol has it
    session.nobody_else_got(too_long, peer, why="the name was refused: nobody joined")
    for joiner, name in ((peer, longest), (session.raw_peer("shorter"), shorter)):
        joiner.send(json_message(type="hello", name=name, client_id=name))
        joiner.expect_line(JsonLine(type="welcome", name=name))
        bystander.expect_line(JsonLine(type="joined", name=name))


# ---------------------------------------------------------------- --max-clients

@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("max_clients")
@pytest.mark.points(2, "--max-clients 2: a connection that has not joined takes no place; the third gets "
                       "server-full, and nobody hears of it; a place is free once its user has left")
@pytest.mark.no_bystander("--max-clients 2 is filled by the check's own users, and it counts who is online")
def test_max_clients_at_its_edge(session):
    """docs/protocol.md: server-full when the room already has --max-clients users, the users
    who have joined. A connection that has sent all of its hello but the newline is nobody
    yet: two users still get in past it (1 and 2 online). Its hello then completes, third:
    server-full, every field, and closed; so is another newcomer's. Nobody in the room
    hears of either. Once a user has left (the others are told), a newcomer gets its place."""
    driver = session.stage.client_class
    session.start_server("--max-clients", "2")
    early = session.raw_peer("early")
    hello = driver.wire_hello(early.name)
    early.send(hello[:-1])
    early.wait_until_server_read()
    alice, bob = session.raw_peer("alice"), session.raw_peer("bob")
    for online, peer in enumerate((alice, bob), start=1):
        peer.send(driver.wire_hello(peer.name))
        peer.expect_line(JsonLine(type="welcome", name=peer.name, online=online))
    alice.expect_line(JsonLine(type="joined", name=bob.name))
    early.send(hello[-1:])
    carol = session.raw_peer("carol")
    carol.send(driver.wire_hello(carol.name))
    for refused in (early, carol):
        refused.expect_line(JsonLine(type="error", code="server-full"))
        refused.expect_closed()
    for refused in (early, carol):
        session.nobody_else_got(refused.name, early, carol, why="it was turned away: it never joined")
    bob.send(json_message(type="bye"))
    bob.expect_line(JsonLine(type="bye"))
    alice.expect_line(JsonLine(type="left", name=bob.name, reason="quit"))
    dave = session.raw_peer("dave")
    dave.send(driver.wire_hello(dave.name))
    dave.expect_line(JsonLine(type="welcome", name=dave.name, online=2))
    alice.expect_line(JsonLine(type="joined", name=dave.name))


# ---------------------------------------------------------------- stage 11: IRC's limits

IRC_WAYS = ["whole", "bytes"]  # each line in one write, or a byte per write (tests/test_irc.py)


@pytest.fixture
def lab(session):
    from test_irc import Lab
    return Lab(session)


def relayed(source, line):
    """What a channel member receives for `line` from `source`: with its prefix, cut to 510
    bytes before the CR LF, never inside a UTF-8 character (lesson 11)."""
    return f":{source} {line}".encode()[:510].decode("utf-8", "ignore")


@pytest.mark.needs("irc")
@pytest.mark.sampled_cases("delivery", "whole")
@pytest.mark.parametrize("delivery", IRC_WAYS)
@pytest.mark.points(2, "IRC's 512 bytes at the edge: 511 and 512 taken, 513 gets 417; bytes, not characters; "
                       "LF alone ends a line of 511")
@pytest.mark.no_observers("stage 11's own checks speak IRC whole (NICK, PART, NOTICE, TOPIC, MODE, WHO) through peers of their own, and compare every line each member gets; the observers model the room's joins, messages and quits alone")
def test_the_irc_line_limit_at_its_edge(lab, delivery):
    """docs/protocol.md: lines are at most 512 bytes, CR LF included; LF alone is accepted, and
    then 511 bytes are the most. A line taken reaches the channel (cut to 512 bytes with the
    sender's prefix); a line refused gets 417 alone, and reaches nobody. A line whose last
    character is é is one character shorter than it is long: bytes count."""
    from test_irc import msgs
    alice, bob = lab.room("alice", "bob")
    head = "PRIVMSG #kit :"
    for size, last, end in ((511, ASCII, b"\r\n"), (512, ASCII, b"\r\n"), (512, TWO_BYTES, b"\r\n"),
                            (511, ASCII, b"\n"), (513, ASCII, b"\r\n"), (513, TWO_BYTES, b"\r\n"),
                            (512, ASCII, b"\n")):
        line = head + f"{size} " + ASCII * (size - len(end) - len(f"{head}{size} {last}".encode())) + last
        data = line.encode() + end
        assert len(data) == size
        alice.send_raw(data, delivery)
        got = alice.ask()  # its PING, and all the server said before the PONG
        if size > 512 or (size == 512 and end == b"\n"):
            assert got == [lab.numeric(alice, "417")], f"{size} bytes with {end!r}: {got}"
            assert bob.ask() == [], f"{size} bytes with {end!r} went to the channel"
        else:
            assert got == [], f"{size} bytes with {end!r}: {got}"
            assert bob.ask() == msgs(relayed(alice.source, line)), f"{size} bytes with {end!r}"


@pytest.mark.needs("irc")
@pytest.mark.points(2, "NICKLEN, CHANNELLEN and CHANLIMIT at their edge: 30, 50 and 50 taken, one more refused, "
                       "and nobody hears of it")
@pytest.mark.no_observers("stage 11's own checks speak IRC whole (NICK, PART, NOTICE, TOPIC, MODE, WHO) through peers of their own, and compare every line each member gets; the observers model the room's joins, messages and quits alone")
def test_the_irc_lengths_at_their_edge(lab):
    """The 005 line says NICKLEN=30 CHANNELLEN=50 CHANLIMIT=#:50, and the server holds them:
    a nick of 29 or 30 characters is taken (at registration, and as a new nick, which the
    channel sees), 31 gets 432; a channel name of 49 or 50 characters is joined, 51 gets
    403; the 50th channel is joined and the 51st gets 405. A refused NICK or JOIN reaches
    nobody: bob, in both channels alice tries, sees nothing of them."""
    from test_irc import TEXT, Peer, msgs
    alice, bob = lab.room("alice", "bob")

    def nicks(role):
        base = lab.session.name(role)
        return {size: (base + "x" * 30)[:size] for size in (29, 30, 31)}

    for size, new in sorted(nicks("newcomer").items(), reverse=True):  # at registration
        peer = Peer(lab, new)
        lab.session.peers.append(peer)
        if size > 30:  # 432, to a nick not taken yet: "*"
            assert peer.ask(f"NICK {new}") == msgs(lab.session.spec("432", server=lab.name, nick="*", nickname=new))
        else:
            lab.register(peer)  # every line of the welcome, to this nick
    for size, new in sorted(nicks("renamed").items(), reverse=True):  # a new nick, seen by the channel
        if size > 30:
            assert alice.ask(f"NICK {new}") == [lab.numeric(alice, "432", new)]
            assert bob.ask() == [], "a refused NICK reached the channel"
            continue
        old, alice.nick = alice.source, new
        assert alice.ask(f"NICK {new}") == msgs(f":{old} NICK {new}")
        assert bob.ask() == msgs(f":{old} NICK {new}")

    base, name, a = lab.session.name("channel"), lab.name, alice.nick
    channel = {size: "#" + (base + "y" * 50)[:size - 1] for size in (49, 50, 51)}
    joined = {size: msgs(f":{alice.source} JOIN {channel[size]}", f":{name} 353 {a} = {channel[size]} :{a}",
                         f":{name} 366 {a} {channel[size]} :{TEXT['366']}") for size in (49, 50)}
    for size in (49, 50):
        assert alice.ask(f"JOIN {channel[size]}") == joined[size]
    assert alice.ask(f"JOIN {channel[51]}") == [lab.numeric(alice, "403", channel[51])]
    # alice is in #kit and two more: 47 more make 50, and bob's #full is the 51st.
    assert [message.command for message in bob.ask("JOIN #full")] == ["JOIN", "353", "366"]
    alice.ask(*(f"JOIN #{base}-{number}" for number in range(46)))
    assert [message.command for message in alice.ask(f"JOIN #{base}-last")] == ["JOIN", "353", "366"]
    assert alice.ask("JOIN #full") == [lab.numeric(alice, "405", "#full")]
    assert bob.ask() == [], "a refused JOIN reached the channel"


# ---------------------------------------------------------------- --history (stage 07)

@pytest.mark.needs("history")
@pytest.mark.points(1, "--history 3: a newcomer gets 2 of 2 messages, 3 of 3, and the last 3 of 4, each exactly")
def test_history_at_its_edge(session):
    """docs/protocol.md, stage 07: right after its welcome, a newcomer gets the last public
    messages (--history N), oldest first, each marked history. With N = 3: after 2 messages
    both, after 3 all three, after 4 the last three; then the live message, and nothing
    between. Each newcomer's live message is said too, so it is in the next one's history."""
    session.start_server("--history", "3")
    alice = session.joined_peer("alice")
    said = []
    for count in (2, 3, 4):  # limit - 1, the limit, limit + 1
        while len(said) < count:
            said.append(session.text())
            alice.send(json_message(type="say", text=said[-1]))
        alice.round_trip()  # the server has taken every say before it answers
        newcomer = session.joined_peer(f"newcomer{count}")
        for text in said[-3:]:
            newcomer.expect_line(JsonLine(type="said", text=text, history=True, **{"from": alice.name}))
        said.append(session.text())
        alice.send(json_message(type="say", text=said[-1]))
        line = newcomer.expect_line(JsonLine(type="said", text=said[-1], **{"from": alice.name}))
        assert '"history"' not in line, f"a live message is not history: {line}"
        kept = min(count, 3)
        if len(newcomer.history) != kept + 2:  # its welcome, the history, the live message
            raise session.failure(f"[{newcomer.label}] expected its welcome, {kept} messages of history and "
                                  "the live one, and nothing else", "\n".join(newcomer.history))


# ---------------------------------------------------------------- --max-file-size (stage 10)

@pytest.mark.needs("file_transfer")
@pytest.mark.points(2, "--max-file-size at its edge: offers of the limit and one byte less reach the recipient, "
                       "one byte more gets file-too-big from the server and the client, and reaches nobody")
def test_the_file_size_limit_at_its_edge(session):
    """docs/protocol.md, stage 10: file-too-big for an offer over the server's --max-file-size,
    which the welcome says as max_file_size. With --max-file-size 1K: raw offers of the
    limit - 1 and the limit reach bob with every field; the limit + 1 gets file-too-big.
    alice's client offers a file of exactly the limit, and refuses one byte more itself,
    saying the limit; bob is offered nothing more."""
    from test_files import a_file, sha256
    session.start_server("--max-file-size", "1K")
    bob = session.raw_peer("bob")
    bob.send(session.stage.client_class.wire_hello(bob.name))
    limit = json.loads(bob.expect_line(JsonLine(type="welcome", name=bob.name)))["max_file_size"]
    mallory = session.joined_peer("mallory")
    for size in (limit - 1, limit, limit + 1):
        offer = {"to": bob.name, "id": f"id-{size}", "name": f"{session.name('file')}-{size}.bin",
                 "size": size, "sha256": sha256(b"x")}
        mallory.send(json_message(type="offer", **offer))
        if size > limit:
            mallory.expect_line(JsonLine(type="error", code="file-too-big"))
            session.nobody_else_got(offer["name"], mallory, why="the offer was over the limit")
        else:
            bob.expect_line(JsonLine(type="offer", **offer, **{"from": mallory.name}))
    alice = session.client("alice")
    for size in (limit, limit + 1):
        alice.offer_file(bob.name, a_file(session, f"edge-{size}.bin", size))
        if size > limit:
            alice.sees(session.spec("limit", size="1.0 KiB"))  # nothing sent
        else:
            bob.expect_line(JsonLine(type="offer", to=bob.name, size=size, **{"from": alice.name}))
    session.nobody_else_got(f"edge-{limit + 1}", why="the client must refuse a file over the limit")


# ---------------------------------------------------------------- the options' lowest values

@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("server")  # a client of a server (stage 08's peer listens: its --port 0 is a free port)
@pytest.mark.points(1, "the client's --port at its lowest: 0 is a bad argument, 1 a port to try")
def test_the_clients_lowest_port(session):
    """A client connects to its --port, so 0 (no port) is a bad argument, and 1, the lowest
    port, is one to try: refused (nobody listens there), or whatever answers there."""
    name = session.stage.client_class.name_args(session.name("alice"))
    session.spawn("client-port-0", "client.py", "--port", "0", *name).expect_usage_exit(session.spec("bad_port"))
    lowest = session.spawn("client-port-1", "client.py", "--port", "1", *name)
    lowest.expect_exit(1)  # not argparse's 2: the port was taken
    lowest.assert_not_seen(session.spec("usage"), "1 is a port: the client should try it, not refuse it")


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("max_clients")
@pytest.mark.points(1, "--max-clients 1, the least, is taken: one user gets in, the next gets server-full")
@pytest.mark.no_bystander("--max-clients 1: the one place is the check's own user's")
def test_a_room_of_one(session):
    session.start_server("--max-clients", "1")
    session.joined_peer("alice")
    second = session.raw_peer("bob")
    second.send(session.stage.client_class.wire_hello(second.name))
    second.expect_line(JsonLine(type="error", code="server-full"))

"""The complete chat (stage 05 on): direct messages, the user list, unique names, commands, clean exits.

Deliveries are checked on both sides: the recipient gets it, and after a sync point nobody
else has (session.nobody_else_got). Names are compared without regard to case wherever a
name is looked up, and a client that leaves leaves nothing behind.
"""

import json
import re
import socket

import pytest

from contract import COMMANDS, EXIT_OK
from harness import TIMEOUT, JsonLine, accept_client, json_message, kernel_wait, line_with


def first_letter_swapped(name):
    return name[0].swapcase() + name[1:]


SPELLINGS = [str, str.upper, first_letter_swapped]
SPELLING_IDS = ["same", "upper", "first-letter"]


# ---------------------------------------------------------------- on the wire

@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("dm")
@pytest.mark.parametrize("spelling", SPELLINGS, ids=SPELLING_IDS)
@pytest.mark.points(3, "a dm reaches its recipient, named in any case, and nobody else")
def test_dm_reaches_the_recipient_only(session, spelling):
    alice, bob, carol = (session.joined_peer(role) for role in ("alice", "bob", "carol"))
    session.raw_peer("lurker")  # connected, never joined: nobody_else_got() looks at it too
    secret = session.text()
    alice.send(json_message(type="dm", to=spelling(bob.name), text=secret))
    bob.expect_line(JsonLine(type="dm", text=secret, **{"from": alice.name}))
    session.nobody_else_got(secret, bob, why="a direct message goes to its recipient only")


@pytest.mark.needs("dm")
@pytest.mark.points(1, "a dm to an unknown user gets error no-such-user, and goes to nobody")
def test_dm_to_unknown_user_is_an_error(session):
    alice = session.joined_peer("alice")
    session.joined_peer("bob")
    secret = session.text()
    alice.send(json_message(type="dm", to=session.name("nobody"), text=secret))
    alice.expect_line(JsonLine(type="error", code="no-such-user"))
    session.nobody_else_got(secret, why="nobody has that name")


@pytest.mark.needs("dm")
@pytest.mark.points(1, "a dm to someone who has left gets error no-such-user")
def test_dm_to_someone_who_left_is_an_error(session):
    alice, bob = session.joined_peer("alice"), session.joined_peer("bob")
    bob.send(json_message(type="bye"))
    alice.expect_line(JsonLine(type="left", name=bob.name, reason="quit"))
    alice.send(json_message(type="dm", to=bob.name, text=session.text()))
    alice.expect_line(JsonLine(type="error", code="no-such-user"))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("commands")
@pytest.mark.points(1, "C PM, then a D with nothing after it: back to command mode, nothing sent")
def test_a_d_with_nothing_after_it_ends_the_command(session):
    alice, bob = session.client("alice"), session.client("bob")
    alice.term.send_line("C PM")
    alice.term.send_line("D")
    alice.sees(session.spec("back"))
    session.chat_goes_on(alice, bob)  # in command mode again: the next C PM is a message


@pytest.mark.needs("who")
@pytest.mark.no_bystander("it compares the list of who is online, whole")
@pytest.mark.points(2, "who is answered, to the asker only, with exactly the users online")
def test_who_lists_exactly_the_users_online(session):
    peers = [session.raw_peer(role) for role in ("alice", "bob", "carol", "dave", "erin")]
    # They join in reverse order of their names, so that a list kept in the order of joining
    # is never sorted by chance.
    for peer in sorted(peers, key=lambda peer: peer.name.lower(), reverse=True):
        peer.join()
    alice, bob, carol, dave, erin = peers
    session.raw_peer("lurker")  # connected but not joined: not a user
    carol.send(json_message(type="bye"))
    alice.expect_line(JsonLine(type="left", name=carol.name))
    alice.send(json_message(type="who"))
    line = alice.expect_line(JsonLine(type="users"))
    names = json.loads(line)["names"]
    expected = sorted([alice.name, bob.name, dave.name, erin.name], key=str.lower)
    assert names in (expected, sorted(expected)), f"expected the users online, sorted, {expected}; got {names}"
    bob.round_trip()
    assert not bob.has_seen(JsonLine(type="users")), "bob got the user list that alice asked for"


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("unique_names")
@pytest.mark.parametrize("spelling", SPELLINGS, ids=SPELLING_IDS)
@pytest.mark.points(1, "a taken name, in any case, gets error name-taken")
def test_taken_name_in_any_case_is_refused(session, spelling):
    alice = session.joined_peer("alice")
    peer = session.raw_peer("second")
    peer.send(session.stage.client_class.wire_hello(spelling(alice.name)))
    peer.expect_line(JsonLine(type="error", code="name-taken"))
    peer.join()  # with a name of its own
    alice.expect_line(JsonLine(type="joined", name=peer.name))
    assert not alice.has_seen(JsonLine(type="joined", name=spelling(alice.name))), "the refused name was announced"


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("unique_names")
@pytest.mark.parametrize("leaving", ["bye", "lost"])
@pytest.mark.points(1, "the name of someone who left is free again, in any case")
def test_a_name_is_free_again_once_its_owner_leaves(session, leaving):
    alice, bob = session.joined_peer("alice"), session.joined_peer("bob")
    if leaving == "bye":
        bob.send(json_message(type="bye"))
    else:
        bob.close()
    alice.expect_line(JsonLine(type="left", name=bob.name))
    again = session.raw_peer("bob again")
    again.name = bob.name.upper()
    again.join()


# ---------------------------------------------------------------- in the terminal

def shows_exactly(session, client, online, gone=()):
    """The client shows one line with every name in `online` and none of `gone`."""
    __tracebackhide__ = True
    line = client.term.expect_regex(line_with(*online)).group(0)
    listed = [name for name in gone if re.search(rf"\b{re.escape(name)}\b", line)]
    if any(mark in line for mark in '"{}[]'):
        raise session.failure(f"[{client.name}] expected the names as plain words, separated by spaces or commas",
                              f"{line.strip()!r}")
    if listed:
        raise session.failure(f"[{client.name}] expected the users online and nobody else: {', '.join(online)}",
                              f"the line also lists {', '.join(listed)}, who left: {line.strip()!r}")


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("commands", "dm")
@pytest.mark.points(3, "C DM reaches its recipient and nobody else")
def test_c_dm_is_seen_by_its_recipient_and_nobody_else(session):
    alice, bob, carol = session.client("alice"), session.client("bob"), session.client("carol")
    secret, public = session.text(), session.text()
    alice.dm(bob.name, secret)
    bob.sees(bob.terms["dm"](name=alice.name, text=secret))
    alice.say(public)  # sync point: bob and carol get it after anything the DM caused
    for other in (bob, carol):
        other.sees(other.said(alice.name, public))
    carol.never_saw(secret, "a DM goes to its recipient only")
    session.chat_goes_on(bob, alice)  # and alice gets bob's line after anything her DM sent her
    alice.never_saw(alice.terms["dm"](name=alice.name, text=secret), "the sender does not get its own DM back")


@pytest.mark.needs("commands", "dm")
@pytest.mark.points(1, "C DM to a name in another case reaches its owner")
def test_c_dm_to_a_name_in_another_case(session):
    alice, bob = session.client("alice"), session.client("bob")
    secret = session.text()
    alice.dm(bob.name.upper(), secret)
    bob.sees(bob.terms["dm"](name=alice.name, text=secret))


@pytest.mark.needs("commands", "dm")
@pytest.mark.points(1, "C DM shows exactly who is online before it asks for a name")
def test_c_dm_lists_the_users_before_asking_for_a_name(session):
    alice, bob, carol = session.client("alice"), session.client("bob"), session.client("carol")
    carol.quit()
    alice.sees(alice.left_because(carol.name, "quit"))
    alice.term.send_line("C DM")
    shows_exactly(session, alice, [alice.name, bob.name], gone=[carol.name])


@pytest.mark.needs("commands", "dm")
@pytest.mark.points(1, "C DM to an unknown user says no-such-user")
def test_c_dm_to_unknown_user_says_so(session):
    alice, bob = session.client("alice"), session.client("bob")
    secret = session.text()
    alice.dm(session.name("nobody"), secret)
    alice.sees(session.spec("no_such_user"))
    session.chat_goes_on(alice, bob)
    bob.never_saw(secret, "a DM to nobody goes to nobody")


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("commands", "who")
@pytest.mark.points(2, "C LS lists exactly the users online")
def test_c_ls_lists_exactly_the_users_online(session):
    alice, bob, carol, dave = (session.client(role) for role in ("alice", "bob", "carol", "dave"))
    dave.term.kill()
    alice.sees(alice.left(dave.name))
    alice.term.send_line("C LS")
    shows_exactly(session, alice, [alice.name, bob.name, carol.name], gone=[dave.name])


@pytest.mark.needs("commands", "unique_names")
@pytest.mark.points(1, "a name is free again once its owner has left")
def test_a_name_is_free_again_in_the_terminal(session):
    alice, bob = session.client("alice"), session.client("bob")
    bob.exit_command()
    alice.sees(alice.left_because(bob.name, "quit"))
    again = session.client("bob")  # the same name, again
    alice.sees(alice.joined(again.name))


@pytest.mark.needs("commands")
@pytest.mark.points(1, "C HELP lists every command")
def test_c_help_lists_every_command(session):
    alice = session.client("alice")
    alice.term.send_line("C HELP")
    for command in COMMANDS:
        alice.sees(command)


@pytest.mark.needs("exit_command")
@pytest.mark.points(2, "the leave command (C EX, /quit) exits cleanly and the others are told")
def test_the_leave_command_exits_and_the_others_are_told(session):
    alice, bob = session.client("alice"), session.client("bob")
    bob.exit_command()
    alice.sees(alice.left_because(bob.name, "quit"))


@pytest.mark.needs("unique_names")
@pytest.mark.points(1, "the client asks for another name after name-taken")
def test_client_asks_again_after_a_taken_name(session):
    alice = session.client("alice")
    term = session.spawn("second", "client.py", "--port", str(session.server.port), "--name", alice.name.upper())
    term.expect(session.spec("name_taken"))
    term.expect(session.spec("name_prompt"))
    term.send_line(session.name("bob"))
    session.gate("in", lambda: term.expect(session.spec("welcome", name=session.name("bob"))))


# ---------------------------------------------------------------- every prompt, against what people type

def at_prompt(session, prompt):
    """A client waiting at `prompt`; returns (its terminal, a client that watches the room or None)."""
    if prompt == "name":
        server = session.server or session.start_server()
        term = session.spawn("nameless", "client.py", "--port", str(server.port))
        term.expect(session.spec("name_prompt"))
        return term, None
    watcher, alice = session.client("watcher"), session.client("alice")
    lines = {"command": [], "pm": ["C PM"], "dm-name": ["C DM"], "dm-text": ["C DM", f"C {watcher.name}"]}[prompt]
    for line in lines:
        alice.term.send_line(line)
        if line == "C DM":  # its user list: it is asking for a name now. Type the name only
            # then, as a person would: typed earlier, the terminal's echo of it could land in
            # the middle of the list's line.
            alice.term.expect_regex(line_with(watcher.name, alice.name))
    return alice.term, (watcher, alice)


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("commands")
@pytest.mark.shares_server  # one server for every case (tests/harness.py, SharedServers)
@pytest.mark.parametrize("prompt", ["name", "command", "pm", "dm-name", "dm-text"])
@pytest.mark.parametrize("typed", ["empty", "junk", "ctrl_c", "ctrl_d"])
@pytest.mark.points(1, "every prompt takes an empty line, junk, Ctrl+C and Ctrl+D without a traceback")
def test_every_prompt_survives_what_people_type(session, prompt, typed):
    term, room = at_prompt(session, prompt)
    if typed in ("ctrl_c", "ctrl_d"):
        getattr(term, typed)()
        term.expect_exit(EXIT_OK)  # and no traceback
        if room is not None:  # once joined, leaving says bye
            watcher, alice = room
            watcher.sees(watcher.left_because(alice.name, "quit"))
        return
    term.forget_unread()  # what the hints look for may be on screen already (a "type C HELP" line)
    term.send_line("" if typed == "empty" else "%% junk ]]")
    if prompt == "name":  # asked again, and a good name then works
        term.expect(session.spec("name_prompt"))
        name = session.name("late")
        term.send_line(name)
        session.gate("in", lambda: term.expect(session.spec("welcome", name=name)))
    else:
        watcher, alice = room
        if prompt == "command":
            if typed == "junk":
                alice.sees(session.spec("hint"))
        elif typed == "empty":
            alice.sees(session.spec("back"))
        else:  # junk inside a command: asked again, or taken; an empty line ends either way
            term.send_line("")
        session.chat_goes_on(alice, watcher)  # in command mode again, and the room works
    term.assert_not_seen(session.spec("traceback"))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("commands")
@pytest.mark.parametrize("prompt", ["pm", "dm-text"])
@pytest.mark.parametrize("start", ["well, ", "%% "])
@pytest.mark.points(1, "inside C PM or C DM, a message typed without its D is not lost: it arrives once")
def test_a_message_without_its_d_is_not_lost(session, prompt, start):
    """What a person types who forgot the D, then again with it, once told. The client may send
    the first line after saying so (the D line then is a line in command mode, which gets a hint),
    or ask again and send the second: either way the text arrives whole, exactly once. One start
    sorts after "D ", one before, so that a prefix compared with < or > instead of == sends a
    cut line ("ll, ...") or the text twice."""
    term, (watcher, alice) = at_prompt(session, prompt)
    core = session.text()
    typed = start + core
    term.send_line(typed)
    term.send_line(f"D {typed}")  # what the person types once told
    if prompt == "pm":
        watcher.sees(watcher.said(alice.name, typed))
    else:
        watcher.sees(watcher.terms["dm"](name=alice.name, text=typed))
    session.chat_goes_on(alice, watcher)  # a sync point, and in command mode again
    received = watcher.term.output().count(core)
    assert received == 1, f"[{watcher.name}] expected {typed!r} once, got its text {received} times"
    term.assert_not_seen(session.spec("traceback"))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("commands", "dm")
@pytest.mark.points(1, "C DM, then a name without its C: never taken as the name")
def test_a_name_without_its_c_is_not_taken(session):
    """The name without its C is asked again, or ends the command: either way a D line after it
    sends nothing, and an empty line then leaves the command at the latest."""
    term, (watcher, alice) = at_prompt(session, "dm-name")
    secret = session.text()
    for line in (watcher.name, f"D {secret}", ""):
        term.send_line(line)
    alice.sees(session.spec("back"))
    session.chat_goes_on(alice, watcher)  # a sync point: anything sent before it has arrived
    watcher.never_saw(secret, "the name was typed without its C, so nobody was chosen")
    term.assert_not_seen(session.spec("traceback"))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("commands")
@pytest.mark.parametrize("wrong", ["hello", "C NOPE", "D text without a command"])
@pytest.mark.points(1, "wrong input gets a hint naming C HELP; command mode goes on")
def test_wrong_input_gets_a_hint_and_command_mode_goes_on(session, wrong):
    alice, bob = session.client("alice"), session.client("bob")
    alice.term.forget_unread()  # a "type C HELP" line at the start must not pass for the hint
    alice.term.send_line(wrong)
    alice.sees(session.spec("hint"))
    session.chat_goes_on(alice, bob)
    alice.term.assert_not_seen(COMMANDS[-1], "a wrong command gets a hint, not the help list", since_forgotten=True)


# ---------------------------------------------------------------- clean exits

@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("commands")
@pytest.mark.parametrize("key", ["ctrl_c", "ctrl_d"])
@pytest.mark.points(1, "Ctrl+C or Ctrl+D in command mode exits cleanly; the others are told")
def test_ctrl_c_or_d_in_command_mode_tells_the_others(session, key):
    alice, bob = session.client("alice"), session.client("bob")
    getattr(bob.term, key)()
    bob.term.expect_exit(EXIT_OK)
    alice.sees(alice.left_because(bob.name, "quit"))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("commands")
@pytest.mark.points(1, "Ctrl+C right after joining never shows a traceback")
def test_ctrl_c_right_after_joining_never_shows_a_traceback(session):
    """The receiver thread starts just after the welcome: Ctrl+C must be safe at that moment too."""
    session.start_server()
    for attempt in range(5):
        client = session.client(f"user{attempt}")
        client.term.ctrl_c(when_idle=False)  # at once: the thread may still be starting
        client.term.wait_until_idle()  # it is leaving (or gone), or it still waits at its prompt...
        client.term.drain()
        since_the_key = client.term.output().rsplit("^C", 1)[-1]
        if client.term.child.isalive() and "\n" not in since_the_key and kernel_wait(client.term.pid) == "wait_woken":
            # ...not even ending the line, as it does once it handles the key (at most the
            # prompt came after it), and blocked reading the terminal (not busy leaving): that
            # Ctrl+C landed as input() was starting, where CPython cannot act on it until the
            # next key (see Terminal.ctrl_c). Press again.
            client.term.ctrl_c()
        client.term.expect_exit(EXIT_OK)


class SilentServer:
    """A server that welcomes one client, then reads what it sends and never answers:
    a server that is buggy, overloaded, or half gone. Speaks TLS on a TLS stage."""

    def __init__(self, session):
        self.session = session
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]

    def welcome(self, name):
        """Accept the client, read its hello, and welcome it."""
        self.conn, _ = accept_client(self.session, self.listener)
        self.wire = self.conn.makefile("rb")
        self.expect(type="hello", timeout=TIMEOUT)
        self.conn.sendall(json_message(type="welcome", name=name, online=1))

    def expect(self, timeout, **fields):
        """The next message from the client is `fields` (every field the check names)."""
        self.conn.settimeout(timeout)
        try:
            message = json.loads(self.wire.readline() or "null")
        except TimeoutError:
            message = f"nothing within {timeout} s"
        if not (isinstance(message, dict) and all(message.get(key) == value for key, value in fields.items())):
            raise self.session.failure(f"expected the client to send {JsonLine(**fields)!r}",
                                       "the connection closed" if message is None else repr(message))

    def close(self):
        for thing in (getattr(self, "wire", None), getattr(self, "conn", None), self.listener):
            if thing is not None:
                thing.close()


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("commands", "who")
@pytest.mark.points(2, "a server that never answers C LS or bye: the client gives up, goes on, then exits")
def test_a_server_that_never_answers_cannot_hang_the_client(session):
    """The client waits for the user list, and for the answer to its bye, for a while only
    (the kit: 5 s and 2 s; the spec: 15 s at most). A receiver thread that keeps the process
    alive, or an except clause that names the wrong exception, shows only here."""
    server = SilentServer(session)
    try:
        name = session.name("alice")
        driver = session.stage.client_class
        term = session.spawn(name, "client.py", "--host", "127.0.0.1", "--port", str(server.port),
                             *driver.name_args(name))
        server.welcome(name)
        session.gate("in", lambda: term.expect(session.spec("welcome", name=name)))
        term.send_line("C LS")
        server.expect(type="who", timeout=TIMEOUT)
        text = session.text()
        for line in driver.lines_to_say(text):  # typed ahead: read once it has given up on the list
            term.send_line(line)
        server.expect(type="say", text=text, timeout=GIVE_UP)
        term.send_line("C EX")
        server.expect(type="bye", timeout=TIMEOUT)
        term.expect_exit(EXIT_OK, timeout=GIVE_UP)
        term.assert_not_seen(session.spec("traceback"))
    finally:
        server.close()


GIVE_UP = 15  # seconds a client may wait for an answer that never comes (lesson 05's checks)


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("shutdown_notice")
@pytest.mark.points(3, "server shutdown tells three clients, which exit cleanly")
def test_server_shutdown_with_three_clients(session):
    server = session.start_server()
    clients = [session.client(name) for name in ("alice", "bob", "carol")]
    clients[-1].sync()
    server.term.ctrl_c()
    server.term.expect(session.spec("stopped"))
    server.term.expect_exit(EXIT_OK)
    for client in clients:
        client.sees(session.spec("shutting_down"))
        client.notices_server_gone()
        client.term.expect_exit(EXIT_OK)
    again = session.spawn("restarted-server", "server.py", "--port", str(server.port))
    again.expect(session.spec("listening", host=server.host, port=server.port))

"""The complete chat (stage 05 on): direct messages, the user list, unique names, commands, clean exits."""

import pytest

from harness import JsonLine


def joined_peer(session, name):
    peer = session.raw_peer(name)
    peer.send(session.stage.client_class.wire_hello(name))
    peer.expect_line(JsonLine(type="welcome", name=name))
    return peer


# ---------------------------------------------------------------- on the wire

@pytest.mark.needs("dm")
@pytest.mark.points(3, "a dm reaches its recipient and nobody else")
def test_dm_reaches_the_recipient_only(session):
    alice, bob, carol = (joined_peer(session, name) for name in ("alice", "bob", "carol"))
    alice.send(b'{"type": "dm", "to": "bob", "text": "just for you"}\n')
    bob.expect_line(JsonLine(type="dm", text="just for you", **{"from": "alice"}))
    # Sync point: a public message sent after the DM reaches carol after anything the DM caused.
    alice.send(b'{"type": "say", "text": "for everyone"}\n')
    carol.expect_line(JsonLine(type="said", text="for everyone"))
    assert "just for you" not in carol.output(), "a direct message reached someone else"


@pytest.mark.needs("dm")
@pytest.mark.points(1, "a dm to an unknown user gets error no-such-user")
def test_dm_to_unknown_user_is_an_error(session):
    alice = joined_peer(session, "alice")
    alice.send(b'{"type": "dm", "to": "nobody", "text": "hello?"}\n')
    alice.expect_line(JsonLine(type="error", code="no-such-user"))


@pytest.mark.needs("who")
@pytest.mark.points(2, "who is answered with the users online")
def test_who_lists_the_users(session):
    alice = joined_peer(session, "alice")
    joined_peer(session, "bob")
    alice.send(b'{"type": "who"}\n')
    alice.expect_line(lambda line: '"users"' in line and '"alice"' in line and '"bob"' in line)


@pytest.mark.needs("unique_names")
@pytest.mark.parametrize("taken", ["alice", "ALICE", "Alice"])
@pytest.mark.points(1, "a taken name, in any case, gets error name-taken")
def test_taken_name_in_any_case_is_refused(session, taken):
    joined_peer(session, "alice")
    peer = session.raw_peer("second")
    peer.send(session.stage.client_class.wire_hello(taken))
    peer.expect_line(JsonLine(type="error", code="name-taken"))
    peer.send(session.stage.client_class.wire_hello("alice2"))
    peer.expect_line(JsonLine(type="welcome", name="alice2"))


# ---------------------------------------------------------------- in the terminal

@pytest.mark.needs("commands", "dm")
@pytest.mark.points(3, "C DM reaches its recipient and nobody else")
def test_c_dm_is_seen_by_its_recipient_and_nobody_else(session):
    alice, bob, carol = session.client("alice"), session.client("bob"), session.client("carol")
    alice.dm("bob", "a secret")
    bob.sees(bob.said("alice", "a secret"))
    alice.say("now for all")
    carol.sees(carol.said("alice", "now for all"))
    carol.never_saw("a secret", "a DM goes to its recipient only")


@pytest.mark.needs("commands", "dm")
@pytest.mark.points(1, "C DM lists the users first; Ctrl+C there exits cleanly")
def test_c_dm_lists_the_users_before_asking_for_a_name(session):
    alice, _ = session.client("alice"), session.client("bob")
    alice.term.send_line("C DM")
    alice.term.expect_regex(r"alice.*bob")
    alice.term.ctrl_c()  # halfway through C DM
    alice.term.expect_exit(0)


@pytest.mark.needs("commands", "dm")
@pytest.mark.points(1, "C DM to an unknown user says no-such-user")
def test_c_dm_to_unknown_user_says_so(session):
    alice = session.client("alice")
    alice.dm("nobody", "hello?")
    alice.sees("no-such-user")


@pytest.mark.needs("commands", "who")
@pytest.mark.points(2, "C LS lists the users online")
def test_c_ls_lists_the_users(session):
    alice = session.client("alice")
    session.client("bob"), session.client("carol")
    alice.term.send_line("C LS")
    alice.term.expect_regex(r"alice.*bob.*carol")


@pytest.mark.needs("commands")
@pytest.mark.points(1, "C HELP lists every command")
def test_c_help_lists_every_command(session):
    alice = session.client("alice")
    alice.term.send_line("C HELP")
    for command in ("C PM", "C DM", "C LS", "C EX"):
        alice.sees(command)


@pytest.mark.needs("commands")
@pytest.mark.parametrize("wrong", ["hello", "C NOPE", "D text without a command"])
@pytest.mark.points(1, "wrong input gets a hint naming C HELP; command mode goes on")
def test_wrong_input_gets_a_hint_and_command_mode_goes_on(session, wrong):
    alice, bob = session.client("alice"), session.client("bob")
    alice.term.send_line(wrong)
    alice.sees("C HELP")
    alice.say("still works")
    bob.sees(bob.said("alice", "still works"))


@pytest.mark.needs("commands")
@pytest.mark.parametrize("first, second", [("C PM", "no D here"), ("C DM", "bob")],
                         ids=["pm-without-D", "dm-name-without-C"])
@pytest.mark.points(1, "wrong input inside C PM or C DM returns to command mode")
def test_wrong_input_inside_a_command_returns_to_command_mode(session, first, second):
    alice, bob = session.client("alice"), session.client("bob")
    alice.term.send_line(first)
    alice.term.send_line(second)
    alice.sees("back to command mode")
    alice.say("back again")
    bob.sees(bob.said("alice", "back again"))


@pytest.mark.needs("commands")
@pytest.mark.points(2, "C EX leaves cleanly and the others are told")
def test_c_ex_leaves_and_the_others_are_told(session):
    alice, bob = session.client("alice"), session.client("bob")
    bob.exit_command()
    alice.sees(alice.left_because("bob", "quit"))


@pytest.mark.needs("unique_names")
@pytest.mark.points(1, "the client asks for another name after name-taken")
def test_client_asks_again_after_a_taken_name(session):
    session.client("alice")
    term = session.spawn("second", "client.py", "--port", str(session.server.port), "--name", "ALICE")
    term.expect("name-taken")
    term.expect("name:")
    term.send_line("bob")
    term.expect("welcome, bob")


# ---------------------------------------------------------------- clean exits

@pytest.mark.needs("commands")
@pytest.mark.points(1, "Ctrl+C at the name prompt exits cleanly")
def test_ctrl_c_at_the_name_prompt(session):
    server = session.start_server()
    term = session.spawn("client", "client.py", "--port", str(server.port))
    term.expect("name:")
    term.ctrl_c()
    term.expect_exit(0)


@pytest.mark.needs("commands")
@pytest.mark.parametrize("key", ["ctrl_c", "ctrl_d"])
@pytest.mark.points(1, "Ctrl+C or Ctrl+D in command mode exits cleanly; the others are told")
def test_ctrl_c_or_d_in_command_mode_tells_the_others(session, key):
    alice, bob = session.client("alice"), session.client("bob")
    getattr(bob.term, key)()
    bob.term.expect_exit(0)
    alice.sees(alice.left_because("bob", "quit"))


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
        if client.term.child.isalive() and "\n" not in since_the_key:
            # ...not even ending the line, as it does once it handles the key (at most the
            # prompt came after it): that Ctrl+C landed as input() was starting, where CPython
            # cannot act on it until the next key (see Terminal.ctrl_c). Press again.
            client.term.ctrl_c()
        client.term.expect_exit(0)


@pytest.mark.needs("shutdown_notice")
@pytest.mark.points(3, "server shutdown tells three clients, which exit cleanly")
def test_server_shutdown_with_three_clients(session):
    server = session.start_server()
    clients = [session.client(name) for name in ("alice", "bob", "carol")]
    clients[-1].sync()
    server.term.ctrl_c()
    server.term.expect("server stopped")
    server.term.expect_exit(0)
    for client in clients:
        client.sees("shutting down")
        client.notices_server_gone()
        client.term.expect_exit(0)
    again = session.spawn("restarted-server", "server.py", "--port", str(server.port))
    again.expect(f"listening on {server.host}:{server.port}")

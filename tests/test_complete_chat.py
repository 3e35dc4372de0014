"""The complete chat (stage 05 on): direct messages, the user list, unique names, commands, clean exits."""

import pytest

from harness import JsonLine, json_message, kernel_wait, line_with


# ---------------------------------------------------------------- on the wire

@pytest.mark.needs("dm")
@pytest.mark.points(3, "a dm reaches its recipient and nobody else")
def test_dm_reaches_the_recipient_only(session):
    alice, bob, carol = (session.joined_peer(role) for role in ("alice", "bob", "carol"))
    secret, public = session.text(), session.text()
    alice.send(json_message(type="dm", to=bob.name, text=secret))
    bob.expect_line(JsonLine(type="dm", text=secret, **{"from": alice.name}))
    # Sync point: a public message sent after the DM reaches carol after anything the DM caused.
    alice.send(json_message(type="say", text=public))
    carol.expect_line(JsonLine(type="said", text=public))
    assert secret not in carol.output(), "a direct message reached someone else"


@pytest.mark.needs("dm")
@pytest.mark.points(1, "a dm to an unknown user gets error no-such-user")
def test_dm_to_unknown_user_is_an_error(session):
    alice = session.joined_peer("alice")
    alice.send(json_message(type="dm", to=session.name("nobody"), text=session.text()))
    alice.expect_line(JsonLine(type="error", code="no-such-user"))


@pytest.mark.needs("who")
@pytest.mark.points(2, "who is answered with the users online")
def test_who_lists_the_users(session):
    alice, bob = session.joined_peer("alice"), session.joined_peer("bob")
    alice.send(json_message(type="who"))
    alice.expect_line(lambda line: '"users"' in line and f'"{alice.name}"' in line and f'"{bob.name}"' in line)


def first_letter_swapped(name):
    return name[0].swapcase() + name[1:]


@pytest.mark.needs("unique_names")
@pytest.mark.parametrize("spelling", [str, str.upper, first_letter_swapped], ids=["same", "upper", "first-letter"])
@pytest.mark.points(1, "a taken name, in any case, gets error name-taken")
def test_taken_name_in_any_case_is_refused(session, spelling):
    alice = session.joined_peer("alice")
    peer = session.raw_peer("second")
    peer.send(session.stage.client_class.wire_hello(spelling(alice.name)))
    peer.expect_line(JsonLine(type="error", code="name-taken"))
    peer.join()  # with a name of its own


# ---------------------------------------------------------------- in the terminal


@pytest.mark.needs("commands", "dm")
@pytest.mark.points(3, "C DM reaches its recipient and nobody else")
def test_c_dm_is_seen_by_its_recipient_and_nobody_else(session):
    alice, bob, carol = session.client("alice"), session.client("bob"), session.client("carol")
    secret, public = session.text(), session.text()
    alice.dm(bob.name, secret)
    bob.sees(bob.said(alice.name, secret))
    alice.say(public)
    carol.sees(carol.said(alice.name, public))
    carol.never_saw(secret, "a DM goes to its recipient only")


@pytest.mark.needs("commands", "dm")
@pytest.mark.points(1, "C DM lists the users first; Ctrl+C there exits cleanly")
def test_c_dm_lists_the_users_before_asking_for_a_name(session):
    alice, bob = session.client("alice"), session.client("bob")
    alice.term.send_line("C DM")
    alice.term.expect_regex(line_with(alice.name, bob.name))
    alice.term.ctrl_c()  # halfway through C DM
    alice.term.expect_exit(0)


@pytest.mark.needs("commands", "dm")
@pytest.mark.points(1, "C DM to an unknown user says no-such-user")
def test_c_dm_to_unknown_user_says_so(session):
    alice = session.client("alice")
    alice.dm(session.name("nobody"), session.text())
    alice.sees("no-such-user")


@pytest.mark.needs("commands", "who")
@pytest.mark.points(2, "C LS lists the users online")
def test_c_ls_lists_the_users(session):
    alice, bob, carol = session.client("alice"), session.client("bob"), session.client("carol")
    alice.term.send_line("C LS")
    alice.term.expect_regex(line_with(alice.name, bob.name, carol.name))


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
    session.chat_goes_on(alice, bob)


@pytest.mark.needs("commands")
@pytest.mark.parametrize("command", ["C PM", "C DM"], ids=["pm-without-D", "dm-name-without-C"])
@pytest.mark.points(1, "wrong input inside C PM or C DM returns to command mode")
def test_wrong_input_inside_a_command_returns_to_command_mode(session, command):
    alice, bob = session.client("alice"), session.client("bob")
    alice.term.send_line(command)
    alice.term.send_line(session.text() if command == "C PM" else bob.name)  # without its "D " or "C "
    alice.sees("back to command mode")
    session.chat_goes_on(alice, bob)


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
    term.expect("name-taken")
    term.expect("name:")
    term.send_line(session.name("bob"))
    term.expect(f"welcome, {session.name('bob')}")


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
    alice.sees(alice.left_because(bob.name, "quit"))


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

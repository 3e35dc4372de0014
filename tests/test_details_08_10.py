"""The small things a student notices (issue 15, items 12, 13, 15 and 16).

The peer's prompt and its Ctrl+C, myip, empty messages; the command client's hints;
files to nobody, directories and a missing CA file; the wording of a refused connection
and of a port in use; the sizes in the server's log.

Most of these are about wording or layout that the spec leaves free, so they are
kit_only: they hold the kit's own stages to it, never a student's copy. Those about the
contract wait only for tests/contract.py's terms.
"""

import ipaddress
import json
from pathlib import Path

import pytest

from contract import EXIT_OK
from harness import clean, closed_port, json_message, line_with
from test_p2p import local_addresses

# How the kit's stages word things (kit_only checks only: a student's wording is theirs)
DOUBLE_PROMPT = "> > "
FALSE_CLAIM = "start with C"  # "commands start with C", said of a line that did
OLD_EMPTY = "expected D <message>"
EMPTY_NOT_SENT = "empty message is not sent"
STILL_WAITING = "waiting for an answer"
DIRECTORY = "directory"
NO_SUCH_FILE = "no such file"
REFUSED = "Connection refused"
ASYNCIO_WORDING = "Connect call failed"
IN_USE = "in use"
BLAMED = "cannot connect"


def peers(session, *roles):
    return [session.stage.client_class.start(session, role) for role in roles]


def said_since_forgotten(term):
    """What `term` printed since its last forget_unread()."""
    return term.output()[term.forgotten_at:]


# ---------------------------------------------------------------- 13: the peer

@pytest.mark.needs("p2p")
@pytest.mark.kit_only
@pytest.mark.points(1, "terminate draws one prompt, not two")
def test_terminate_draws_one_prompt(session):
    alice, bob = peers(session, "alice", "bob")
    number = alice.connect(bob)
    alice.type(f"terminate {number}")
    bob.sees(session.spec("closed_by_peer", port=alice.port))
    alice.type("myport")  # whatever terminate printed comes before this answer
    alice.term.expect_regex(session.spec("myport", port=alice.port))
    printed = alice.term.child.before + alice.term.child.after  # everything since the connection
    assert DOUBLE_PROMPT not in printed, f"two prompts: {clean(printed)!r}"


@pytest.mark.needs("p2p")
@pytest.mark.kit_only
@pytest.mark.points(1, "Ctrl+C: the peer's goodbye goes on a line of its own, after ^C")
def test_ctrl_c_says_bye_on_a_line_of_its_own(session):
    [alice] = peers(session, "alice")
    alice.term.ctrl_c()
    alice.term.expect_exit(EXIT_OK)
    lines = clean(alice.term.output()).split("\n")
    spliced = [line for line in lines if line.startswith("> ^C") and line != "> ^C"]
    assert not spliced, f"what the peer printed ran into the terminal's ^C: {spliced}"


@pytest.mark.needs("p2p")
@pytest.mark.kit_only
@pytest.mark.points(1, "myip: the listening address if it is one, else this machine's")
def test_myip_is_where_the_peer_listens(session):
    [alice] = peers(session, "alice")  # --host 127.0.0.1: only this machine reaches it
    alice.type("myip")
    ip = alice.term.expect_regex(session.spec("myip")).group(1)
    assert ip == "127.0.0.1", f"alice listens on 127.0.0.1 only, but myip said {ip}"
    anywhere = session.spawn("anywhere", "peer.py", "--port", "0")  # every interface
    anywhere.expect(session.spec("prompt"))
    anywhere.send_line("myip")
    ip = anywhere.expect_regex(session.spec("myip")).group(1)
    addresses = local_addresses()
    assert ip in addresses, f"myip said {ip}, not one of this machine's {addresses}"
    if any(not ipaddress.ip_address(address).is_loopback for address in addresses):
        loopback = ipaddress.ip_address(ip).is_loopback
        assert not loopback, f"myip said {ip}, though this machine has a network"


@pytest.mark.needs("p2p")
@pytest.mark.kit_only
@pytest.mark.points(1, "a message with no text is neither sent nor shown as one")
def test_a_message_with_no_text_is_not_shown(session):
    [alice] = peers(session, "alice")
    peer = session.raw_peer("raw", port=alice.port)
    peer.send(json_message(type="hello", port=9))
    alice.sees(session.spec("connected_from", port=9))
    text = session.text()
    peer.send(json_message(type="message") + json_message(type="message", text="")
              + json_message(type="message", text=["a", "list"])
              + json_message(type="message", text=text))
    alice.sees(text)
    shown = alice.term.output().count(session.spec("message_from", port=9))
    assert shown == 1, f"{shown} messages shown, for the one with a text"
    alice.type("list")
    number = alice.term.expect_regex(session.spec("row", port=9)).group(1)
    alice.type(f"send {number}    ")  # a live connection, and only spaces to send
    alice.sees(session.spec("usage_send"))


# ---------------------------------------------------------------- 15: stage 10's files

@pytest.mark.needs("file_transfer")
@pytest.mark.kit_only
@pytest.mark.points(1, "a file to yourself or to nobody is refused before the path")
def test_a_file_to_yourself_or_nobody_is_refused_at_once(session):
    alice, bob = session.client("alice"), session.client("bob")
    alice.term.forget_unread()
    for to in (alice.name.upper(), session.name("nobody")):
        alice.term.send_line("C FT")
        alice.term.expect_regex(line_with(alice.name, bob.name))
        alice.term.send_line(f"C {to}")
        session.chat_goes_on(alice, bob)  # in command mode at once: no path asked for
    alice.sees(session.spec("no_such_user"))
    alice.term.assert_not_seen(STILL_WAITING, "nobody can answer", since_forgotten=True)
    bob.never_saw(session.spec("offered", name=alice.name, file=""))


@pytest.mark.needs("file_transfer")
@pytest.mark.points(1, "C FT of a directory or a missing path: no file, and no offer")
def test_a_directory_or_a_missing_path_is_no_file(session):
    alice, bob = session.client("alice"), session.client("bob")
    folder = Path(session.workdir) / "a-folder"
    folder.mkdir()
    for path in (folder, Path(session.workdir) / "missing.txt"):
        alice.offer_file(bob.name, path)
        alice.sees(session.spec("no_file"))
    session.chat_goes_on(alice, bob)
    bob.never_saw(session.spec("offered", name=alice.name, file=""))


@pytest.mark.needs("file_transfer")
@pytest.mark.kit_only
@pytest.mark.points(1, "C FT of a directory says it is one, not that it does not exist")
def test_a_directory_is_called_a_directory(session):
    alice, bob = session.client("alice"), session.client("bob")
    folder = Path(session.workdir) / "a-folder"
    folder.mkdir()
    alice.term.forget_unread()
    alice.offer_file(bob.name, folder)
    alice.sees(session.spec("no_file"))
    session.chat_goes_on(alice, bob)
    said = said_since_forgotten(alice.term)
    assert DIRECTORY in said and NO_SUCH_FILE not in said, f"a folder: {clean(said)!r}"


@pytest.mark.needs("tls")
@pytest.mark.kit_only
@pytest.mark.points(1, "a missing --cafile: one line naming it, not blaming the server")
def test_a_missing_ca_file_is_named(session):
    server = session.start_server()
    missing = Path(session.workdir) / "no-such-ca.pem"
    term = session.spawn("alice", "client.py", "--port", str(server.port),
                         "--name", session.name("alice"), "--cafile", str(missing))
    term.expect_error_exit(missing.name)
    term.assert_not_seen(BLAMED, "the server is there; the CA file is not")


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
# ---------------------------------------------------------------- 16: error wording

@pytest.mark.needs("server")
@pytest.mark.kit_only
@pytest.mark.points(1, "a refused connection is worded as every stage words it")
def test_a_refused_connection_says_connection_refused(session):
    port = closed_port()
    name = session.name("alice")
    term = session.spawn("alice", "client.py", "--port", str(port),
                         *session.stage.client_class.name_args(name))
    term.expect_error_exit(str(port), REFUSED)
    term.assert_not_seen(ASYNCIO_WORDING)


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("server")
@pytest.mark.kit_only
@pytest.mark.points(1, "a port in use is said once: one line, naming the port once")
def test_a_port_in_use_is_said_once(session):
    server = session.start_server()
    second = session.spawn("second", "server.py", "--port", str(server.port))
    second.expect_error_exit(str(server.port), IN_USE)
    line = clean(second.output()).strip()
    once = line.count(str(server.port)) == 1 and line.lower().count(IN_USE) == 1
    assert once, f"it repeats itself: {line!r}"


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("dm")
@pytest.mark.kit_only
@pytest.mark.points(1, "the log sizes a say and a dm alike: the bytes of the line")
def test_the_log_sizes_a_say_and_a_dm_alike(session):
    server = session.start_server()
    alice, bob = session.joined_peer("alice"), session.joined_peer("bob")
    text = session.text() + " é ✓"  # not ASCII: the text's bytes and the line's differ
    say = json.dumps({"type": "say", "text": text}).encode()
    dm = json.dumps({"type": "dm", "to": bob.name, "text": text}).encode()
    alice.send(say + b"\n")
    bob.expect_line(session.stage.client_class.wire_said(alice.name, text))
    alice.send(dm + b"\n")
    bob.expect_line(lambda line: '"dm"' in line)
    for line in (say, dm):  # the contract's "N bytes", with this line's N
        server.logs(session.spec("size").replace("\\d+", str(len(line))))

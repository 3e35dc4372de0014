"""Clients without a terminal: stdin a file or /dev/null (docs/protocol.md, "The stage contract").

`client.py --name alice < lines.txt` reads the file as if it were typed, then leaves
cleanly at its end; with `< /dev/null` it ends cleanly at once. epoll cannot watch a
regular file, so a client that only registers stdin with a selector fails here.
Each client's stdout is still a terminal, as when a student runs it that way.
"""

import os
import sys
from pathlib import Path

import pytest

import contract
from harness import LISTENING


def with_stdin(session, label, path, program, *args):
    """Run one of the stage's programs with stdin read from `path`, its output in a terminal."""
    argv = [sys.executable, str(session.stage.program(program)), *session.stage.args_for(program), *args]
    return session.run(label, "sh", "-c", 'exec "$@" < "$0"', str(path), *argv)


def lines_file(session, lines):
    path = Path(session.workdir) / "typed.txt"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


@pytest.mark.needs("server")
@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.no_bystander("its client reads the lines it says from a file or a pipe the check writes, not through a driver: the ledger cannot know them")
@pytest.mark.points(2, "a client whose stdin is a file reads it as typed, then leaves cleanly")
def test_a_client_reads_a_file_as_typed_then_leaves_cleanly(session):
    server = session.start_server()
    driver = session.stage.client_class
    first, second = session.text(), session.text()
    path = lines_file(session, [*driver.lines_to_say(first), *driver.lines_to_say(second)])
    if not session.stage.has("chat"):
        alice = with_stdin(session, "alice", path, "client.py", "--port", str(server.port))
        alice.expect(driver.echo(first))
        alice.expect(driver.echo(second))
        alice.expect_exit(contract.EXIT_OK)
        return
    bob = session.client("bob")
    name = session.name("alice")
    alice = with_stdin(session, name, path, "client.py", "--port", str(server.port), *driver.name_args(name))
    bob.sees(bob.joined(name))
    bob.sees(bob.said(name, first))
    bob.sees(bob.said(name, second))
    bob.sees(bob.left(name))  # at the end of the file, as after Ctrl+D
    alice.expect_exit(contract.EXIT_OK)


@pytest.mark.needs("server")
@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(1, "a client whose stdin is /dev/null ends cleanly")
def test_a_client_with_stdin_dev_null_ends_cleanly(session):
    server = session.start_server()
    driver = session.stage.client_class
    name = session.name("alice")
    names = driver.name_args(name) if session.stage.has("chat") else ()
    alice = with_stdin(session, name, "/dev/null", "client.py", "--port", str(server.port), *names)
    alice.expect_exit(contract.EXIT_OK)
    session.server.term.assert_not_seen(session.spec("traceback"))


@pytest.mark.needs("server", "chat")
@pytest.mark.sampled("02")  # the default run: on 02 alone (tests/conftest.py)
@pytest.mark.no_bystander("its client reads the lines it says from a file or a pipe the check writes, not through a driver: the ledger cannot know them")
@pytest.mark.points(1, "a client reading a pipe that stays open still ends when the server goes away")
def test_a_client_on_an_open_pipe_ends_when_the_server_goes(session):
    """`producer | client.py`, where the producer never ends (a `tail -f`, say): when the server
    stops, the client must end all the same. A thread left reading stdin that is not a daemon
    keeps the process alive for as long as the pipe stays open."""
    server = session.start_server()
    fifo = Path(session.workdir) / "typed.fifo"
    os.mkfifo(fifo)
    # Opened for reading and writing, so that opening it cannot block, and a writer stays.
    held_open = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    try:
        driver = session.stage.client_class
        bob = session.client("bob")
        name = session.name("alice")
        alice = with_stdin(session, name, fifo, "client.py", "--port", str(server.port), *driver.name_args(name))
        bob.sees(bob.joined(name))
        text = session.text()
        os.write(held_open, "".join(f"{line}\n" for line in driver.lines_to_say(text)).encode())
        bob.sees(bob.said(name, text))  # it reads the pipe as typed
        server.term.ctrl_c()
        server.term.expect_exit(contract.EXIT_OK)
        alice.expect(session.spec("closed"))
        alice.expect_exit(contract.EXIT_OK)
    finally:
        os.close(held_open)


@pytest.mark.needs("p2p")
@pytest.mark.parametrize("stdin", ["a file", "/dev/null"])
@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(1, "a peer whose stdin is a file or /dev/null runs its commands, then exits cleanly")
def test_a_peer_reads_commands_from_a_file_then_exits_cleanly(session, stdin):
    path = lines_file(session, ["myport"]) if stdin == "a file" else "/dev/null"
    peer = with_stdin(session, session.name("peer"), path, "peer.py", "--host", "127.0.0.1", "--port", "0")
    port = int(peer.expect_regex(LISTENING.pattern).group(2))
    if stdin == "a file":
        peer.expect_regex(session.spec("myport", port=port))
    peer.expect_exit(contract.EXIT_OK)

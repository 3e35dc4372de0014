"""Stages that share a wire protocol work together: any client with any server (tests/stages.py, `wire`).

The protocol is a contract between programs, not between files of one stage. These checks
run the stage's server with the partner stage's client, and the other way round; and the
stage's client with a server of each other kind, which it must recognise as such.
"""

import pytest


def chat_both_ways(session, ours, theirs):
    for speaker, listener in ((ours, theirs), (theirs, ours)):
        text = session.text()
        speaker.say(text)
        listener.sees(listener.said(speaker.name, text))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(2, "the server works with the partner stage's client")
def test_our_server_with_the_partners_client(session, partner):
    ours = session.client("alice")
    theirs = session.client("bob", stage=partner)
    ours.sees(ours.joined(theirs.name))
    chat_both_ways(session, ours, theirs)
    theirs.quit()
    ours.sees(ours.left(theirs.name))


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.points(2, "the client works with the partner stage's server")
def test_our_client_with_the_partners_server(session, partner):
    session.start_server(stage=partner)
    ours = session.client("alice")
    theirs = session.client("bob", stage=partner)
    chat_both_ways(session, ours, theirs)
    ours.quit()
    theirs.sees(theirs.left(ours.name))


@pytest.mark.sampled  # the kit's default run: the clients of stages 02 and 05 (tests/conftest.py)
@pytest.mark.needs("chat")
@pytest.mark.points(1, "the client on a server of another kind says so in one line, exit code 1")
def test_our_client_on_another_kind_of_server(session, stranger):
    """Every stage's server listens on the same default port: a client may meet a server that speaks
    another protocol. It must say so, not chat in a protocol the server does not speak. What it
    can know: the server's answer to its name or hello. A TLS client's handshake is answered too:
    its ClientHello always holds a \n byte (extension 10, supported_groups), so a server that
    reads lines takes it for one and answers."""
    server = session.start_server(stage=stranger)
    name = session.name("alice")
    client = session.spawn(name, "client.py", "--port", str(server.port),
                           *session.stage.client_class.name_args(name))
    client.expect_error_exit(session.spec("wrong_server", stage=session.stage.id), timeout=15)

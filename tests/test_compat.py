"""Stages that share a wire protocol work together: any client with any server (tests/stages.py, `wire`).

The protocol is a contract between programs, not between files of one stage. These checks
run the stage's server with the partner stage's client, and the other way round.
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

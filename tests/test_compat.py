"""Stages that share a wire protocol work together: any client with any server (tests/stages.py, `wire`).

The protocol is a contract between programs, not between files of one stage. These checks
run the stage's server with the partner stage's client, and the other way round.
"""


def chat_both_ways(ours, theirs):
    ours.say("hello from ours")
    theirs.sees(theirs.said(ours.name, "hello from ours"))
    theirs.say("hello from theirs")
    ours.sees(ours.said(theirs.name, "hello from theirs"))


def test_our_server_with_the_partners_client(session, partner):
    ours = session.client("alice")
    theirs = session.client("bob", stage=partner)
    ours.sees(ours.joined("bob"))
    chat_both_ways(ours, theirs)
    theirs.quit()
    ours.sees(ours.left("bob"))


def test_our_client_with_the_partners_server(session, partner):
    session.start_server(stage=partner)
    ours = session.client("alice")
    theirs = session.client("bob", stage=partner)
    chat_both_ways(ours, theirs)
    ours.quit()
    theirs.sees(theirs.left("alice"))

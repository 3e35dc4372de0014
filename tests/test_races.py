"""Races: checking for a place (in the room, or a name) and taking it is one atomic step.

A crowd of clients says hello at once to a server whose threads take turns between any
two lines of its code (tests/fixtures/interleave/sitecustomize.py, on its PYTHONPATH).
Without that, a check-then-claim without a lock lets exactly --max-clients in on almost
every run (lesson 04, exercise 1), and the bug hides; with it, a copy of a threaded stage
with its lock taken away lets in far more than --max-clients on nearly every run
(test_the_race_checks_catch_a_check_then_claim_without_the_lock, below). A correct server
gives the same answers either way: a lock still lets one thread in at a time.
"""

import os

import pytest

from harness import TIMEOUT, CheckFailed, JsonLine, Session, json_message
from known_bad import LOCK_TAKEN_AWAY
from stages import BY_ID, REPO
from suite import copy_of_stage
from words import Words

pytestmark = pytest.mark.needs("max_clients")

INTERLEAVE = REPO / "tests" / "fixtures" / "interleave"
CROWD = 50  # clients saying hello at once
ROOM = 10  # --max-clients: well below the crowd, so that most are turned away


def interleaved_server(session, *args):
    """The stage's server, its threads made to take turns between any two of its lines."""
    path = os.pathsep.join(filter(None, [str(INTERLEAVE), os.environ.get("PYTHONPATH")]))
    return session.start_server(*args, env={"PYTHONPATH": path})


def crowd(session, count):
    """`count` raw peers, each connection being served: each has said something before
    hello, and got not-joined back."""
    peers = [session.raw_peer(f"racer{number}") for number in range(count)]
    for peer in peers:
        peer.send(json_message(type="say", text="before hello"))
    session.everyone_gets(peers, lambda peer: JsonLine(type="error", code="not-joined"), TIMEOUT)
    return peers


def all_say_hello(session, peers, names, answers):
    """Each peer says hello with its name, all at once; return each one's answer.

    The hellos go out one right after the other, with nothing in between, so they all
    reach the server while it is still busy with the first ones. `answers`: the JsonLines
    a peer may get back (the first one that matches is its answer)."""
    for peer, name in zip(peers, names):
        peer.sock.sendall(session.stage.client_class.wire_hello(name))
    session.everyone_gets(peers, lambda peer: lambda line: any(answer(line) for answer in answers), TIMEOUT)
    return [next(line for line in reversed(peer.history) if any(answer(line) for answer in answers))
            for peer in peers]


def exactly(session, count, wanted, answers, what):
    __tracebackhide__ = True
    got = sum(1 for line in answers if wanted(line))
    if got != count:
        raise session.failure(f"expected exactly {count} of the {len(answers)} clients {what}",
                              f"{got} were ({len(answers)} said hello at once)")


def room_fills_to_exactly_its_size(session):
    welcome, full = JsonLine(type="welcome"), JsonLine(type="error", code="server-full")
    interleaved_server(session, "--max-clients", str(ROOM))
    peers = crowd(session, CROWD)
    answers = all_say_hello(session, peers, [peer.name for peer in peers], [welcome, full])
    exactly(session, ROOM, welcome, answers, f"welcomed (--max-clients {ROOM})")
    exactly(session, CROWD - ROOM, full, answers, "turned away with server-full")


def one_name_goes_to_exactly_one(session):
    welcome, taken = JsonLine(type="welcome"), JsonLine(type="error", code="name-taken")
    interleaved_server(session, "--max-clients", str(CROWD + 10))
    peers = crowd(session, CROWD)
    # Twice: those told name-taken stay, and all ask for a second name at once.
    for wanted in ("wanted", "second"):
        name = session.name(wanted)
        answers = all_say_hello(session, peers, [name] * len(peers), [welcome, taken])
        exactly(session, 1, welcome, answers, f"welcomed as {name}, the name they all asked for")
        exactly(session, len(peers) - 1, taken, answers, "told name-taken")
        peers = [peer for peer, answer in zip(peers, answers) if taken(answer)]


@pytest.mark.sampled("04")  # the kit's default run: stage 04 only (tests/conftest.py)
@pytest.mark.no_bystander("it fills the room to exactly --max-clients and counts who got in")
@pytest.mark.points(2, "50 clients join at once: exactly --max-clients are let in, however the threads interleave")
def test_a_crowd_joining_at_once_fills_the_room_to_exactly_its_size(session):
    room_fills_to_exactly_its_size(session)


@pytest.mark.sampled("05")  # the kit's default run: stage 05 only (tests/conftest.py)
@pytest.mark.needs("unique_names")
@pytest.mark.points(2, "50 clients ask for one name at once: exactly one gets it, however the threads interleave")
def test_a_crowd_asking_for_one_name_at_once_lets_exactly_one_have_it(session):
    one_name_goes_to_exactly_one(session)


# The planted bug: each threaded stage's hello() without its lock (tests/known_bad.py).
RACE_CHECKS = [(stage_id, room_fills_to_exactly_its_size) for stage_id in LOCK_TAKEN_AWAY] + \
    [(stage_id, one_name_goes_to_exactly_one) for stage_id in LOCK_TAKEN_AWAY if BY_ID[stage_id].has("unique_names")]


@pytest.mark.parametrize("stage_id, check", RACE_CHECKS,
                         ids=[f"{stage_id}-{check.__name__}" for stage_id, check in RACE_CHECKS])
def test_the_race_checks_catch_a_check_then_claim_without_the_lock(tmp_path, stage_id, check):
    """The check fails on a copy of the stage whose hello() checks and claims without the lock.
    (Measured: it failed on each of 20 runs per stage and check; the kit's stages passed 20 of 20.)"""
    folder = copy_of_stage(stage_id, tmp_path / "without-the-lock", *LOCK_TAKEN_AWAY[stage_id])
    session = Session(BY_ID[stage_id].at(folder), tmp_path, Words(0, check.__name__))
    try:
        with pytest.raises(CheckFailed, match="expected exactly|peers still waiting"):
            check(session)
    finally:
        session.close()

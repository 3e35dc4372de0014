"""Stage 06's attack scripts (stages/06/attacks/), each run against the stage's server: its last
line must say that the defence held.

Lesson 06 has the student run each script against stage 05 and watch it fail, then against stage
06 and watch it hold. The kit_only checks run the same scripts against copies of the kit's stage
06 with that one defence taken out, and wait for the failure the lesson describes: a script that
said "it held" whatever the server did would teach nothing. (The two slowest are in the slow tier.)

A script that starts its own server is given a free port for it; once the script has exited,
nothing may listen there any more: it has stopped the server it started.
"""

import socket
import sys

import pytest

from harness import TIMEOUT, closed_port
from stages import REPO
from suite import copy_with_changes
from test_limits import SLACK_MIB, STUCK, TOTAL_MIB, max_clients
from test_robustness import limit_open_files

pytestmark = pytest.mark.needs("attacks")

SCRIPTS = REPO / "stages" / "06" / "attacks"  # the kit's scripts, whatever folder --impl checks

# Each defence, taken out of a copy of the kit's stages/06/server.py: what stage 05 does instead.
WITHOUT = {
    "making room": ("        if closed := self.make_room():", "        if closed := None:"),
    "the share": ("        return max(MIN_SHARE, min(MAX_PENDING, even_split))", "        return MAX_PENDING"),
    "the log's queue": ('format="%(message)s", handlers=[lines]', 'format="%(message)s", handlers=[console]'),
    "the shutdown deadline": ("        deadline = time.monotonic() + 2\n",
                              "        deadline = time.monotonic() + 3600\n"),
    "escaping": ('        return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in line)',
                 "        return line"),
}


def without(session, tmp_path, defence):
    """The stage, checked against a copy of the kit's stage 06 with one defence taken out."""
    return session.stage.at(copy_with_changes("06", tmp_path / "without", [("server.py", *WITHOUT[defence])]))


def attack(session, script, *args):
    """Run an attack script in a terminal, as the lesson does."""
    return session.run(script, sys.executable, str(SCRIPTS / script), *args)


def against_its_own_server(session, script, *args, stage=None, server_args=()):
    """Run a script that starts the server itself (after --) on a free port: its terminal, and the port."""
    stage = stage or session.stage
    port = closed_port()
    return attack(session, script, "--port", str(port), *args, "--", sys.executable, str(stage.program("server.py")),
                  *stage.args_for("server.py"), "--port", str(port), *server_args), port


def finished(session, term, port, timeout=TIMEOUT):
    """The script exits with code 0 and no traceback, and has stopped the server it started."""
    __tracebackhide__ = True
    term.expect_exit(0, timeout=timeout)
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise session.failure(f"[{term.label}] expected to stop the server it started",
                                  f"a server still listens on port {port}")


# ---------------------------------------------------------------- connections that never join

def silent(session, patience, stage=None):
    """silent.py against a server with ulimit -n 64 and --join-timeout 60."""
    server = session.start_server("--join-timeout", "60", *max_clients(session, 500), stage=stage,
                                  preexec_fn=limit_open_files)
    return attack(session, "silent.py", "--port", str(server.port), "--count", "100", "--patience", str(patience))


@pytest.mark.no_observers("ulimit -n 64: silent.py's connections hold every descriptor the server may open; the lurker would be the oldest silent one, made room for first, and the bystander a descriptor less")
@pytest.mark.points(1, "silent.py: a newcomer gets in though silent connections hold every descriptor")
def test_silent_connections_cannot_keep_a_newcomer_out(session):
    term = silent(session, patience=TIMEOUT)
    term.expect(session.spec("newcomer_in"), timeout=TIMEOUT * 2)
    term.expect_exit(0)


@pytest.mark.kit_only
@pytest.mark.no_observers("ulimit -n 64: silent.py's connections hold every descriptor the server may open; the lurker would be the oldest silent one, made room for first, and the bystander a descriptor less")
@pytest.mark.points(1, "silent.py tells: without making room, the newcomer is kept out")
def test_silent_py_sees_the_newcomer_kept_out_by_a_server_that_does_not_make_room(session, tmp_path):
    term = silent(session, patience=1, stage=without(session, tmp_path, "making room"))
    term.expect(session.spec("newcomer_out"), timeout=TIMEOUT * 2)
    term.assert_not_seen(session.spec("newcomer_in"))
    term.expect_exit(0)


# ---------------------------------------------------------------- many stuck clients

def stuck_memory_mib(session, stage=None):
    """stuck.py's figure: how far the server's peak memory grew while STUCK stuck clients were dropped."""
    term, port = against_its_own_server(session, "stuck.py", "--clients", str(STUCK), stage=stage,
                                  server_args=max_clients(session, STUCK + 50))
    grown = int(term.expect_regex(session.spec("memory_grew"), timeout=TIMEOUT * 6).group(1))
    finished(session, term, port)
    return grown


BOUND_MIB = TOTAL_MIB + SLACK_MIB  # test_limits.py's bound for STUCK (150) stuck clients: 1 MiB each is over it


@pytest.mark.points(2, "stuck.py: 150 stuck clients cost the server 64 MiB of waiting output at most")
def test_stuck_clients_cost_a_bounded_total(session):
    grown = stuck_memory_mib(session)
    assert grown < BOUND_MIB, (
        f"stuck.py: the server's peak memory grew by {grown} MiB with {STUCK} stuck clients; expected under "
        f"{BOUND_MIB:g} MiB ({TOTAL_MIB} MiB of waiting output in all, and slack for each connection's state)")


@pytest.mark.slow  # about 5 s
@pytest.mark.kit_only
@pytest.mark.points(1, "stuck.py tells: without the share, 150 stuck clients cost 150 MiB")
def test_stuck_py_sees_the_memory_grow_without_the_share(session, tmp_path):
    grown = stuck_memory_mib(session, stage=without(session, tmp_path, "the share"))
    assert grown >= BOUND_MIB, f"stuck.py saw only {grown} MiB of growth from a server with 1 MiB per client"


# ---------------------------------------------------------------- a log that nobody reads

@pytest.mark.points(1, "unread_log.py: the chat goes on while nobody reads the server's log")
def test_a_log_nobody_reads_leaves_the_chat_going(session):
    term, port = against_its_own_server(session, "unread_log.py", "--patience", str(TIMEOUT))
    term.expect(session.spec("chat_flowed"), timeout=TIMEOUT * 3)
    finished(session, term, port)


@pytest.mark.kit_only
@pytest.mark.points(1, "unread_log.py tells: a log written by the chat's threads stops the chat")
def test_unread_log_py_sees_the_chat_stop_without_the_queue(session, tmp_path):
    term, port = against_its_own_server(session, "unread_log.py", "--patience", "1",
                                  stage=without(session, tmp_path, "the log's queue"))
    term.expect(session.spec("chat_stopped"), timeout=TIMEOUT * 2)
    term.assert_not_seen(session.spec("chat_flowed"))
    finished(session, term, port)


# ---------------------------------------------------------------- shutdown

@pytest.mark.points(1, "shutdown.py: Ctrl+C stops the server though a client is stuck")
def test_a_stuck_client_cannot_hold_up_ctrl_c(session):
    term, port = against_its_own_server(session, "shutdown.py", "--patience", "10")
    term.expect(session.spec("exited"), timeout=TIMEOUT * 4)
    finished(session, term, port)


@pytest.mark.slow  # about 5 s
@pytest.mark.kit_only
@pytest.mark.points(1, "shutdown.py tells: without the deadline, Ctrl+C waits for the stuck client")
def test_shutdown_py_sees_the_server_wait_without_the_deadline(session, tmp_path):
    term, port = against_its_own_server(session, "shutdown.py", "--patience", "3",
                                  stage=without(session, tmp_path, "the shutdown deadline"))
    term.expect(session.spec("not_exited"), timeout=TIMEOUT * 3)
    term.assert_not_seen(session.spec("exited"))
    finished(session, term, port)


# ---------------------------------------------------------------- hostile text

@pytest.mark.points(1, "hostile_text.py: escape sequences reach the server's console escaped")
def test_escape_sequences_reach_the_console_escaped(session):
    term, port = against_its_own_server(session, "hostile_text.py")
    term.expect(session.spec("escaped_log"))
    finished(session, term, port)


@pytest.mark.kit_only
@pytest.mark.points(1, "hostile_text.py tells: a log that prints text as it came gets raw escapes")
def test_hostile_text_py_sees_raw_escapes_without_escaping(session, tmp_path):
    term, port = against_its_own_server(session, "hostile_text.py", stage=without(session, tmp_path, "escaping"))
    term.expect(session.spec("raw_log"))
    term.assert_not_seen(session.spec("escaped_log"))
    finished(session, term, port)

"""The lessons' try-its work as written.

Each command of a try-it's code block runs in a terminal of its own, from the repository's
folder, as a student would type it: `python3 stages/NN/server.py` on the default port. The
failure or the answer the lesson promises must show, in the words the lesson quotes. The
default port is one resource for the whole machine, so these take the lock that the
default-port check takes.

Two kinds: the lean lessons' "Not handled here" boxes (02-05), and the try-its that talk to
a server by hand with `docs/nc.py`, the kit's stand-in for netcat (stock Debian has no `nc`).
"""

import os
import re
import shlex
import socket
import textwrap
import sys

import pexpect
import pytest

from harness import TIMEOUT, Session, last_lines, one_worker_at_a_time, port_frees_up
from stages import BY_ID, REPO
from test_docs import lesson_for, not_handled_box
from words import Words

PORT = 65432
RAW_ESC = "\x1b["  # a raw escape sequence reached the terminal

# What each try-it must show, step by step: ("run", N) starts the block's Nth command,
# ("shows", N, text) waits for it in that terminal, ("joined", N, NAME) for the server's log
# line that NAME joined (the contract's, a sync point), ("ends", N) for its exit,
# ("types", N, line) types a line of the block into terminal N, ("ctrl_c", N) presses Ctrl+C
# there, ("start", command) runs a command the box tells you in words ("start the server").
# Every text but RAW_ESC is quoted from the lesson's box (the check makes sure).
SCENARIOS = {
    "02": [("run", 0), ("shows", 0, "listening on"), ("run", 1),
           ("shows", 0, "OSError: [Errno 24] Too many open files"), ("ends", 0)],
    "03": [("run", 0), ("shows", 0, "listening on"), ("run", 1), ("joined", 0, "bob"),
           ("run", 2), ("shows", 1, "mallory: \\u001b[31mred alert"), ("shows", 0, RAW_ESC + "31m"),
           ("shows", 1, "* mallory left (lost)")],
    "04": [("run", 0), ("shows", 0, "listening on"), ("run", 1),
           ("shows", 0, "OSError: [Errno 24] Too many open files"), ("ends", 0), ("run", 2),
           ("shows", 2, "error: cannot connect to 127.0.0.1:65432: Connection refused")],
    "05": [("run", 0), ("shows", 0, "listening on"), ("run", 1), ("joined", 0, "alice"),
           ("run", 2), ("shows", 1, "mallory: \\u001b[2J\\u001b[H\\u001b[41m red alert"),
           ("shows", 0, RAW_ESC + "41m red alert")],
}


# The try-its that talk to a server by hand: (lesson or page, the box's title) -> steps.
HELLO = '{"type": "hello", "name": "carol", "client_id": "nc"}'
BY_HAND = {
    ("01", "one `recv()` is not one line"): [
        ("run", 0), ("shows", 0, "listening on"), ("run", 1), ("shows", 1, "echo: one"),
        ("shows", 1, "echo: two"), ("ends", 1), ("run", 2), ("shows", 2, "echo: hello"),
        ("ends", 2)],
    ("03", "speak the protocol by hand"): [
        ("run", 0), ("shows", 0, "listening on"), ("run", 1), ("joined", 0, "bob"), ("run", 2),
        ("types", 2, HELLO), ("shows", 2, "welcome"), ("shows", 1, "* carol joined"),
        ("types", 2, '{"type": "say", "text": "hi bob"}'), ("shows", 1, "carol: hi bob"),
        ("types", 2, "hello?"), ("shows", 2, '{"type": "error", "code": "bad-json"'),
        ("ctrl_c", 2), ("ends", 2), ("shows", 1, "* carol left (lost)")],
    ("10", "plaintext, then TLS by hand"): [
        ("run", 0), ("shows", 0, "listening on"), ("run", 1),
        ("shows", 1, '{"type": "error", "code": "tls-required"'), ("ends", 1),
        ("shows", 0, "spoke plaintext, not TLS: told it so, and closed")],
    ("11", "speak IRC by hand"): [
        ("start", "python3 stages/11/server.py"), ("shows", "start", "listening on"),
        ("run", 0), ("types", 0, "NICK ada"), ("types", 0, "USER ada 0 * :Ada Lovelace"),
        ("shows", 0, "422"), ("types", 0, "JOIN #kit"), ("shows", 0, "366"),
        ("types", 0, "PRIVMSG #kit :hello by hand"), ("types", 0, "QUIT :bye"),
        ("shows", 0, "ERROR"), ("ends", 0)],
}
BY_HAND_PORTS = {"11": 6667}


def commands(box_text):
    """The box's shell commands, one per terminal: a line that opens a quote goes on to the line
    that closes it (a multi-line `python -c '...'`)."""
    block = re.search(r"```bash\n(.*?)\n\s*```", box_text, re.DOTALL)
    assert block, "the box's try-it has no ```bash block"
    found, pending = [], ""
    for line in textwrap.dedent(block.group(1)).splitlines():  # the box's indentation
        pending = f"{pending}\n{line}" if pending else line
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on
            continue
        if pending.strip():
            found.append(pending)
        pending = ""
    assert not pending, f"an unclosed quote in the try-it: {pending!r}"
    return found


def ends(term):
    """The program in `term` is gone (the lesson's failure: the server died), whatever its exit code."""
    __tracebackhide__ = True
    try:
        term.child.expect(pexpect.EOF, timeout=TIMEOUT)
    except pexpect.TIMEOUT:
        raise term.session.failure(f"[{term.label}] expected the program to end, as the lesson says",
                                   "still running. The last lines it printed:\n" + last_lines(term.output())) from None


@pytest.mark.parametrize("stage_id", sorted(SCENARIOS))
def test_the_not_handled_here_try_it_works_as_written(stage_id, request):
    text = not_handled_box(stage_id)
    quoted = [step[2] for step in SCENARIOS[stage_id] if step[0] == "shows"]
    missing = [words for words in quoted if words not in text and words != "listening on"
               and not words.startswith(RAW_ESC)]
    assert not missing, f"lesson {stage_id}'s box does not say what the check waits for: {missing}"
    run_try_it(BY_ID[stage_id], commands(text), SCENARIOS[stage_id], request)


def try_it_box(stage_id, title):
    """The body of lesson NN's `!!! example "Try it: <title>"` box."""
    text = lesson_for(stage_id).read_text()
    match = re.search(rf'^!!! example "Try it: {re.escape(title)}"\n((?:    .*\n|\n)+)', text,
                      re.MULTILINE)
    assert match, f'lesson {stage_id} has no `!!! example "Try it: {title}"` box'
    return match.group(1)


@pytest.mark.parametrize("stage_id, title", sorted(BY_HAND), ids=[key[0] for key in sorted(BY_HAND)])
def test_a_try_it_by_hand_works_with_nothing_but_python(stage_id, title, request):
    text = try_it_box(stage_id, title)
    lines = commands(text)
    steps = BY_HAND[(stage_id, title)]
    typed = [step[2] for step in steps if step[0] == "types"]
    assert all(line in lines for line in typed), f"the box does not show every line the check types: {typed}"
    assert not any(re.search(r"(^|\|)\s*nc\s", line) for line in lines), "the try-it needs nc"
    quoted = [step[2] for step in steps if step[0] == "shows" and step[2] != "listening on"]
    missing = [words for words in quoted if words not in text]
    assert not missing, f"lesson {stage_id}'s box does not say what the check waits for: {missing}"
    run_try_it(BY_ID[stage_id], lines, steps, request, port=BY_HAND_PORTS.get(stage_id, PORT))


def run_try_it(stage, lines, steps, request, port=PORT):
    session = Session(stage, REPO, Words(0, request.node.name))
    request.node.chat_session = session  # a failure shows every terminal's transcript
    # `python3` as the lesson says: the interpreter running the suite, first on the PATH.
    env = {"PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
    terms = {}
    with one_worker_at_a_time(f"port-{port}"):
        if not port_frees_up(port):
            pytest.skip(f"port {port} is held by another program on this machine")
        try:
            for step in steps:
                if step[0] == "run":
                    terms[step[1]] = session.run(f"terminal {step[1] + 1}", "bash", "-c", lines[step[1]], env=env)
                elif step[0] == "start":
                    terms["start"] = session.run("server", "bash", "-c", step[1], env=env)
                elif step[0] == "shows":
                    terms[step[1]].expect(step[2])
                elif step[0] == "joined":
                    terms[step[1]].expect(session.spec("join_log", name=step[2]))
                elif step[0] == "types":
                    terms[step[1]].send_line(step[2])
                elif step[0] == "ctrl_c":
                    terms[step[1]].ctrl_c()
                else:
                    ends(terms[step[1]])
        finally:
            session.close()  # before another check may take the port


def test_nc_py_fails_as_every_program_of_the_kit_does(request):
    """docs/nc.py is a program students run: a refused connection is one line and exit code 1,
    a bad argument argparse's usage and exit code 2."""
    session = Session(BY_ID["01"], REPO, Words(0, request.node.name))
    request.node.chat_session = session
    nc = [sys.executable, str(REPO / "docs" / "nc.py")]
    try:
        with socket.create_server(("127.0.0.1", 0)) as closed:
            port = closed.getsockname()[1]  # a port nobody listens on once closed
        refused = session.run("refused", *nc, "127.0.0.1", str(port))
        refused.expect_error_exit(session.spec("port_named", port=port))
        session.run("bad port", *nc, "127.0.0.1", "70000").expect_usage_exit()
    finally:
        session.close()

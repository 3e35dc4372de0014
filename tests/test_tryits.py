"""The lean lessons' "Not handled here" try-its work as written (lessons 02-05).

Each command of the box's code block runs in a terminal of its own, from the repository's
folder, as a student would type it: `python stages/NN/server.py` on the default port. The
failure the lesson promises must show, in the words the lesson quotes. The default port is
one resource for the whole machine, so these take the lock that the default-port check takes.
"""

import os
import re
import shlex
import sys

import pexpect
import pytest

from harness import TIMEOUT, Session, last_lines, one_worker_at_a_time, port_frees_up
from stages import BY_ID, REPO
from test_docs import not_handled_box
from words import Words

PORT = 65432
RAW_ESC = "\x1b["  # a raw escape sequence reached the terminal

# What each try-it must show, step by step: ("run", N) starts the block's Nth command,
# ("shows", N, text) waits for it in that terminal, ("joined", N, NAME) for the server's log
# line that NAME joined (the contract's, a sync point), ("ends", N) for its exit. Every text
# but RAW_ESC is quoted from the lesson's box (the check makes sure).
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


def commands(box_text):
    """The box's shell commands, one per terminal: a line that opens a quote goes on to the line
    that closes it (a multi-line `python -c '...'`)."""
    block = re.search(r"```bash\n(.*?)\n\s*```", box_text, re.DOTALL)
    assert block, "the box's try-it has no ```bash block"
    found, pending = [], ""
    for line in block.group(1).splitlines():
        line = re.sub(r"^ {8}", "", line)  # the block's indentation inside the box
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
    lines = commands(text)
    session = Session(BY_ID[stage_id], REPO, Words(0, request.node.name))
    request.node.chat_session = session  # a failure shows every terminal's transcript
    # `python` as the lesson says: the interpreter running the suite, first on the PATH.
    env = {"PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
    terms = {}
    with one_worker_at_a_time(f"port-{PORT}"):
        if not port_frees_up(PORT):
            pytest.skip(f"port {PORT} is held by another program on this machine")
        try:
            for step in SCENARIOS[stage_id]:
                if step[0] == "run":
                    terms[step[1]] = session.run(f"terminal {step[1] + 1}", "bash", "-c", lines[step[1]], env=env)
                elif step[0] == "shows":
                    terms[step[1]].expect(step[2])
                elif step[0] == "joined":
                    terms[step[1]].expect(session.spec("join_log", name=step[2]))
                else:
                    ends(terms[step[1]])
        finally:
            session.close()  # before another check may take the port

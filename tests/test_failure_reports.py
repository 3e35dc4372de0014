"""The suite's own failure reports: one cause stated once, and reports of a bounded size.

Each runs the suite in a subprocess on a broken copy of a stage (tests/suite.py), as a
student would run it, and reads what the terminal and the --report files say.
"""

import json
import os
import re
import socket
import subprocess
import sys
import threading

import pexpect
import pytest

import report
from harness import CheckFailed, Session, gate_cause
from stages import BY_ID, REPO
from words import Words
from suite import copy_with_changes, grade

SERVER_READY_IN_OTHER_WORDS = ("server.py", 'print(f"listening on {host}:{port}", flush=True)',
                               'print(f"Server ready at {host}:{port}", flush=True)')

# Checks that all need the server's ready line; the odd_bytes cases share one server
# (SharedServers), whose failed start once left it registered: AttributeError in lend().
NEED_THE_SERVER = "odd_bytes or prints_its_real_port or port_in_use or default_port or ctrl_c_stops"


@pytest.mark.slow  # a run of the suite in a subprocess, and a gate that waits 5 s, then 10 s alone
def test_a_broken_gate_is_stated_once_and_the_checks_that_need_it_are_not_run(tmp_path):
    folder = copy_with_changes("02", tmp_path / "ready", [SERVER_READY_IN_OTHER_WORDS])
    # Two xdist workers, as the default run has: the cause must still be stated once.
    run = grade("02", folder, "-n", "2", "-ra", "-k", NEED_THE_SERVER, "--report", str(tmp_path / "report"))
    out = run.stdout + run.stderr
    assert "AttributeError" not in out and "INTERNALERROR" not in out, out[-6000:]
    assert out.count("never showed 'listening on HOST:PORT'") == 1, out[-6000:]
    assert out.count(gate_cause(BY_ID["02"], "listening")) == 1, out[-6000:]
    last = out.strip().splitlines()[-1]
    # One check found the cause: a failure, or an error if it was a shared server's start (setup).
    counts = {word: int(number) for number, word in re.findall(r"(\d+) (failed|errors?|skipped)", last)}
    assert counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0) == 1, last
    skipped = int(re.search(r"(\d+) skipped", last).group(1))
    assert skipped >= 6, last  # every check but the one that found the cause
    assert re.search(rf"SKIPPED \[{skipped}\] .*: not run: it needs the server to show 'listening on HOST:PORT'",
                     out), out[-3000:]
    # The points: a check that was not run earns nothing, and the report states the cause once too.
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    failed = [test for test in report.checks(results["tests"]) if test["status"] == "failed"]
    assert len(failed) == skipped + 1 and results["score"] == 0, [test["name"] for test in failed]
    summary = (tmp_path / "report" / "summary.txt").read_text()
    assert summary.count("CAUSE: ") == 1 and summary.count("(not run)") == skipped, summary


def fail_with_huge_output(session):
    """A check that fails on purpose with huge output: a program that prints 300 lines of 4 KB and
    a traceback, and a raw peer that receives 300 lines of 4 KB, then waits for a 4 KB line that
    never comes (the connection closes)."""
    printer = session.run("printer", sys.executable, "-c",
                          "for n in range(300):\n    print(n, 'x' * 4096)\nraise RuntimeError('planted')")
    printer.child.expect(pexpect.EOF)  # all it printed is in its transcript (no contract text:
    # the planted program is the check's own)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = session.raw_peer("raw", port=listener.getsockname()[1])
        sender, _ = listener.accept()
        lines = b"".join(b"%d %s\n" % (n, b"z" * 4096) for n in range(300))
        threading.Thread(target=lambda: (sender.sendall(lines), sender.close())).start()
        peer.expect_line("w" * 4096)  # reads all 300 lines, then the connection closes


def assert_small_and_useful(name, report):
    assert len(report) < 20_000, f"{name}: a report of {len(report):,} characters:\n{report[:2000]}"
    assert "] expected a line containing: 'wwww" in report, f"{name}: no expected line:\n{report[:3000]}"
    assert "received instead: the server closed the connection" in report, name
    assert "hint: [printer] printed a traceback" in report, name
    assert re.search(r"\[4,\d{3} characters\]", report), f"{name}: long lines not said to be shortened"
    assert "RuntimeError: planted" in report, f"{name}: the end of the printer's transcript is missing"


def test_a_failure_report_on_huge_output_is_capped_and_keeps_what_went_wrong(tmp_path):
    """In-process: the CheckFailed's message and the transcripts conftest.py adds to the report."""
    session = Session(BY_ID["02"], tmp_path, Words(1, "planted"))
    try:
        with pytest.raises(CheckFailed) as failed:
            fail_with_huge_output(session)
        report = str(failed.value) + "".join(f"\n--- {label} ---\n{text}" for label, text in session.transcripts())
    finally:
        session.close()
    assert_small_and_useful("the report", report)


PLANTED = """
import pytest

from test_failure_reports import fail_with_huge_output


@pytest.mark.points(1, "a planted failure with huge output")
def test_planted(session):
    fail_with_huge_output(session)
"""


@pytest.mark.slow  # a run of the suite in a subprocess
def test_a_failure_report_is_capped_in_the_terminal_and_in_results_json(tmp_path):
    """The whole path: the planted check run through the suite's own conftest.py (-p conftest),
    as any check is, with --report."""
    (tmp_path / "test_planted.py").write_text(PLANTED)
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-o", "addopts=", "-p", "no:cacheprovider",
                          "--stage", "02", "--rootdir", str(tmp_path), "--report", str(tmp_path / "report"),
                          "test_planted.py"], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO / "tests")},
                         capture_output=True, text=True, timeout=120)
    out = run.stdout + run.stderr
    assert "1 failed" in out, out[-3000:]
    [check] = report.checks(json.loads((tmp_path / "report" / "results.json").read_text())["tests"])
    assert_small_and_useful("the terminal", out)
    assert_small_and_useful("results.json", check["output"])

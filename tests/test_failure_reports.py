"""The suite's own failure reports: one cause stated once, and reports of a bounded size.

Each runs the suite in a subprocess on a broken copy of a stage (tests/suite.py), as a
student would run it, and reads what the terminal and the --report files say.
"""

import json
import re

import pytest

from harness import gate_cause
from stages import BY_ID
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
    assert " 1 failed" in last and "error" not in last, last
    skipped = int(re.search(r"(\d+) skipped", last).group(1))
    assert skipped >= 6, last  # every check but the one that found the cause
    assert re.search(rf"SKIPPED \[{skipped}\] .*: not run: it needs the server to show 'listening on HOST:PORT'",
                     out), out[-3000:]
    # The points: a check that was not run earns nothing, and the report states the cause once too.
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    failed = [test for test in results["tests"] if test["status"] == "failed"]
    assert len(failed) == skipped + 1 and results["score"] == 0, [test["name"] for test in failed]
    summary = (tmp_path / "report" / "summary.txt").read_text()
    assert summary.count("CAUSE: ") == 1 and summary.count("(not run)") == skipped, summary

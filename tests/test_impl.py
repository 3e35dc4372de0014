"""The suite checks any folder's server.py and client.py with --impl, and says clearly what went wrong.

These tests run the suite itself, in a subprocess, on copies of stage 02.
"""

import re
import signal

import pytest

from suite import ECHO_TO_SENDER, copy_of_stage, grade, run_suite

# Each check here runs the suite itself in a subprocess (a few seconds each): the slow tier, which CI runs.
pytestmark = pytest.mark.slow

CHECKS = "everyone_but_the_sender or connection_refused"  # the second starts no server: no observers


def grade_stage_02(tmp_path, bug=(None, None)):
    folder = copy_of_stage("02", tmp_path / "submission", *bug)
    return folder, grade("02", folder, "-k", CHECKS)


def test_impl_checks_the_given_folder(tmp_path):
    folder, result = grade_stage_02(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"stage 02 (select-based chat room): {folder}" in result.stdout
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 2 and "failed" not in result.stdout, result.stdout[-3000:]


def test_impl_failure_says_expected_received_and_shows_every_transcript(tmp_path):
    folder, result = grade_stage_02(tmp_path, ECHO_TO_SENDER)
    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 passed" in result.stdout
    # alice (a random name) was expected not to see her own line come back
    assert re.search(r"\[(\w+)\] expected NOT to see: '\1: [a-z ]+'", result.stdout), result.stdout
    labels = set(re.findall(r"transcript \[(\w+)\]", result.stdout))
    assert "server" in labels and len(labels) == 4, f"server, alice, bob and carol, but: {labels}"
    # The seed is printed, in the header and in the report; given back, it replays the same names and texts.
    seed = re.search(r"chat seed: (\d+)", result.stdout).group(1)
    assert f"add --seed {seed} to replay them" in result.stdout
    again = grade("02", folder, "-k", CHECKS, "--seed", seed)
    assert expected_line(again) == expected_line(result), "the same seed must give the same names and texts"


def expected_line(result):
    return next(line for line in result.stdout.splitlines() if "expected NOT to see" in line)


def test_impl_failure_hints_at_a_crash(tmp_path):
    crash = ("        if client.name is None:\n",  # the first chat message crashes the server
             "        if client.name is not None:\n            raise RuntimeError('boom')\n        if client.name is None:\n")
    _, result = grade_stage_02(tmp_path, crash)
    assert result.returncode == 1, result.stdout
    assert "hint: [server] printed a traceback" in result.stdout


def test_ctrl_c_checks_are_fair_when_the_grader_runs_in_the_background(tmp_path):
    """A shell starts a background job (grade.py ... &) with SIGINT ignored. The programs under
    test must not inherit that, or no Ctrl+C would ever stop them."""
    folder = copy_of_stage("01", tmp_path / "submission")
    result = grade("01", folder, "-k", "ctrl_c", preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert result.returncode == 0, result.stdout[-3000:]
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 2 and "failed" not in result.stdout, result.stdout[-3000:]


@pytest.mark.parametrize("args, message", [
    (["--impl", "nowhere"], "--impl needs --stage"),
    (["--stage", "02", "--impl", "nowhere"], "no server.py or client.py"),
    (["--stage", "08", "--impl", "nowhere"], "no peer.py"),
    (["--stage", "99"], "unknown stage 99"),
])
def test_bad_options_are_clear_usage_errors(args, message):
    result = run_suite("tests", *args)
    assert result.returncode == 4, result.stdout + result.stderr
    assert message in result.stderr

"""The suite checks any folder's server.py and client.py with --impl, and says clearly what went wrong.

These tests run the suite itself, in a subprocess, on copies of stage 02.
"""

import pytest

from suite import ECHO_TO_SENDER, copy_of_stage, grade, run_suite

CHECKS = "everyone_but_the_sender or port_in_use"


def grade_stage_02(tmp_path, bug=(None, None)):
    folder = copy_of_stage("02", tmp_path / "submission", *bug)
    return folder, grade("02", folder, "-k", CHECKS)


def test_impl_checks_the_given_folder(tmp_path):
    folder, result = grade_stage_02(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"stage 02 (select-based chat room): {folder}" in result.stdout
    assert "2 passed" in result.stdout


def test_impl_failure_says_expected_received_and_shows_every_transcript(tmp_path):
    _, result = grade_stage_02(tmp_path, ECHO_TO_SENDER)
    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 passed" in result.stdout
    assert "[alice] expected NOT to see: 'alice: hi all'" in result.stdout
    for label in ("server", "alice", "bob", "carol"):
        assert f"transcript [{label}]" in result.stdout


def test_impl_failure_hints_at_a_crash(tmp_path):
    crash = ("        if client.name is None:\n",
             "        if text == 'hi all':\n            raise RuntimeError('boom')\n        if client.name is None:\n")
    _, result = grade_stage_02(tmp_path, crash)
    assert result.returncode == 1, result.stdout
    assert "hint: [server] printed a traceback" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--impl", "nowhere"], "--impl needs --stage"),
    (["--stage", "02", "--impl", "nowhere"], "no server.py or client.py"),
    (["--stage", "99"], "unknown stage 99"),
])
def test_bad_options_are_clear_usage_errors(args, message):
    result = run_suite("tests", *args)
    assert result.returncode == 4, result.stdout + result.stderr
    assert message in result.stderr

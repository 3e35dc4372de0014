"""The suite checks any folder's server.py and client.py with --impl, and says clearly what went wrong.

These tests run the suite itself, in a subprocess, on copies of stage 02.
"""

import shutil
import subprocess
import sys

import pytest

from stages import BY_ID, REPO

CHECKS = "everyone_but_the_sender or port_in_use"


def run_suite(*args, cwd=REPO):
    # -o addopts= : one process, no xdist workers, for a run this small.
    return subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=60)


def grade(folder):
    """Run some of stage 02's checks against `folder`, as an instructor would (docs/instructors.md),
    from the folder above the submission rather than from the repo."""
    return run_suite(str(REPO / "tests"), "--stage", "02", "--impl", folder.name, "-k", CHECKS,
                     cwd=folder.parent)


def copy_of_stage_02(tmp_path, old=None, new=None):
    folder = tmp_path / "submission"
    shutil.copytree(BY_ID["02"].folder, folder)
    if old is not None:
        server = folder / "server.py"
        source = server.read_text()
        assert old in source, "the bug to plant is no longer in stages/02/server.py: update this test"
        server.write_text(source.replace(old, new))
    return folder


def test_impl_checks_the_given_folder(tmp_path):
    folder = copy_of_stage_02(tmp_path)
    result = grade(folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"stage 02 (select-based chat room): {folder}" in result.stdout
    assert "2 passed" in result.stdout


def test_impl_failure_says_expected_received_and_shows_every_transcript(tmp_path):
    # The classic bug: the sender gets its own message back.
    folder = copy_of_stage_02(tmp_path, "if other is not sender and other.name", "if other.name")
    result = grade(folder)
    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 passed" in result.stdout
    assert "[alice] expected NOT to see: 'alice: hi all'" in result.stdout
    for label in ("server", "alice", "bob", "carol"):
        assert f"transcript [{label}]" in result.stdout


def test_impl_failure_hints_at_a_crash(tmp_path):
    folder = copy_of_stage_02(tmp_path, "        if client.name is None:\n",
                              "        if text == 'hi all':\n            raise RuntimeError('boom')\n"
                              "        if client.name is None:\n")
    result = grade(folder)
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

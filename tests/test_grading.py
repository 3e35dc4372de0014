"""The suite grades fairly: known-bad implementations lose points where they should, reports are valid.

The known-bad meta-test and the full-marks check are slow (a full grading run each);
python -m pytest --slow -m slow runs them, and CI does.
"""

import csv
import json
import re
import shutil
import subprocess
import sys
import time

import pytest

import report
from known_bad import BUGS, VARIANTS
from stages import BY_ID, REPO
from suite import ECHO_TO_SENDER, copy_of_stage, copy_with_changes, grade
from words import Words


def graded(tmp_path, stage_id, bug=(None, None), program="server.py", *extra):
    folder = copy_of_stage(stage_id, tmp_path / "submission", *bug, program=program)
    result = grade(stage_id, folder, "--report", str(tmp_path / "report"), *extra)
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    return result, results


@pytest.mark.parametrize("bug", BUGS, ids=[bug.name.replace(" ", "-") for bug in BUGS])
def test_each_planted_bug_still_matches_its_stage(bug):
    """Fast: a stage edit that moves a planted bug's code should fail the default run, not only the slow tier."""
    source = (BY_ID[bug.stage].folder / bug.program).read_text()
    assert source.count(bug.old) == 1, \
        f"'{bug.name}': expected its code once in stages/{bug.stage}/{bug.program}, found it " \
        f"{source.count(bug.old)} times; update tests/known_bad.py:\n{bug.old}"


@pytest.mark.slow
@pytest.mark.parametrize("bug", BUGS, ids=[bug.name.replace(" ", "-") for bug in BUGS])
def test_known_bad_implementation_loses_points_on_its_check(tmp_path, bug):
    result, results = graded(tmp_path, bug.stage, (bug.old, bug.new), bug.program, "-k", bug.caught_by)
    failed = [test["number"] for test in results["tests"] if test["status"] == "failed"]
    assert failed, f"'{bug.name}' was not caught by '{bug.caught_by}':\n{result.stdout[-3000:]}"
    assert results["score"] < results["max_score"]


@pytest.mark.slow
@pytest.mark.parametrize("stage_id", ["01", "05"])
def test_the_kit_stage_gets_full_marks(tmp_path, stage_id):
    result, results = graded(tmp_path, stage_id)
    assert results["score"] == results["max_score"] > 0, result.stdout[-3000:]


@pytest.mark.parametrize("variant", VARIANTS, ids=[variant.name.replace(" ", "-") for variant in VARIANTS])
def test_each_variant_still_matches_its_stage(variant, tmp_path):
    """Fast: a stage edit that moves a variant's code fails the default run, not only the slow tier."""
    copy_with_changes(variant.stage, tmp_path / "variant", variant.changes)


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS, ids=[variant.name.replace(" ", "-") for variant in VARIANTS])
def test_a_variant_in_what_the_spec_leaves_free_gets_full_marks(tmp_path, variant):
    folder = copy_with_changes(variant.stage, tmp_path / "submission", variant.changes)
    result = grade(variant.stage, folder, "--report", str(tmp_path / "report"))
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    failed = [test["name"] for test in results["tests"] if test["status"] == "failed"]
    assert results["score"] == results["max_score"], f"'{variant.name}' lost points on {failed}:\n" \
                                                     f"{result.stdout[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("stage_id", ["02", "05"])
def test_a_stage_written_from_the_spec_alone_gets_full_marks(tmp_path, stage_id):
    """tests/fixtures/spec-only-NN: written from the spec pages only, by someone who never read the kit's code."""
    folder = tmp_path / f"spec-only-{stage_id}"
    shutil.copytree(REPO / "tests" / "fixtures" / f"spec-only-{stage_id}", folder)
    result = grade(stage_id, folder, "--report", str(tmp_path / "report"))
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    failed = [test["name"] for test in results["tests"] if test["status"] == "failed"]
    assert results["score"] == results["max_score"] > 0, f"lost points on {failed}:\n{result.stdout[-3000:]}"


NEVER_IN = ("client.py", "* welcome, {get('name')} ({get('online')} online)", "* Hi {get('name')}, you are in")


def graded_by_grade_py(folder, out):
    started = time.monotonic()
    run = subprocess.run([sys.executable, str(REPO / "tests" / "grade.py"), "--stage", "05", "--out", str(out),
                          str(folder)], capture_output=True, text=True, timeout=300)
    return run, time.monotonic() - started


@pytest.mark.slow
def test_a_client_that_never_shows_it_joined_is_graded_fast_with_one_cause(tmp_path):
    """One cause, reported once at the top; the checks that need it are not run and cost no time."""
    folder = copy_with_changes("05", tmp_path / "class" / "hi", [NEVER_IN])
    out = tmp_path / "grading"
    run, seconds = graded_by_grade_py(folder, out)
    assert run.returncode == 0, run.stdout + run.stderr
    if seconds >= 60:  # a slow machine, or a slow grading? Compare with the reference, graded now
        _, reference = graded_by_grade_py(copy_of_stage("05", tmp_path / "class" / "ref"), tmp_path / "ref")
        # Both share the busy machine, one after the other: 10 % apart is the same time.
        assert seconds <= 1.1 * reference, \
            f"grading took {seconds:.0f} s, and the reference stage {reference:.0f} s"
    summary = (out / "hi" / "summary.txt").read_text()
    causes = [line for line in summary.splitlines() if line.startswith("CAUSE: ")]
    assert causes == ["CAUSE: the client never showed 'welcome, NAME', which the contract says it shows once the "
                      "server has registered you, before you type: send nothing before it. Every check that needs "
                      "it is not run."], summary[:2000]
    not_run = summary.count("(not run)")
    assert not_run > 30, f"only {not_run} checks marked not run"
    row = next(csv.DictReader(open(out / "grades.csv")))
    assert row["failed"].count("CAUSE") == 1 and len(row["failed"].split(" | ")) < 5, row["failed"]


@pytest.mark.slow  # a grading run in a subprocess
def test_results_json_has_gradescopes_fields_and_points(tmp_path):
    _, results = graded(tmp_path, "02", ECHO_TO_SENDER, "server.py",
                        "-k", "everyone_but_the_sender or connection_refused")
    assert report.validate_gradescope(results) == []
    by_status = {test["status"]: test for test in report.checks(results["tests"])}
    failed = by_status["failed"]
    assert failed["score"] == failed["max_score"] == 0 and failed["extra_data"]["points"] == 3  # the category's
    assert failed["tags"] == ["delivery"] and by_status["passed"]["tags"] == ["running"]
    assert "expected NOT to see" in failed["output"]
    assert "transcript [server]" in failed["output"]
    assert "--seed" in failed["output"] and "--seed" in results["output"]
    rubric = {test["extra_data"]["category"]: test for test in results["tests"] if report.is_rubric(test)}
    assert (rubric["delivery"]["score"], rubric["delivery"]["max_score"]) == (0, 25)
    assert (rubric["running"]["score"], rubric["running"]["max_score"]) == (10, 10)
    assert results["score"] == 10 and results["max_score"] == 35
    summary = (tmp_path / "report" / "summary.txt").read_text()
    assert "FAIL  [delivery, 3] 02 · a message reaches everyone but its sender" in summary
    assert "delivery: 0 / 25 (0 of 1 checks passed)" in summary
    assert summary.endswith("score: 10 / 35\n")


@pytest.mark.slow  # a grading run in a subprocess
def test_hide_expected_says_what_failed_but_not_the_answer(tmp_path):
    _, results = graded(tmp_path, "02", ECHO_TO_SENDER, "server.py",
                        "-k", "everyone_but_the_sender", "--hide-expected")
    [failed] = report.checks(results["tests"])
    assert failed["status"] == "failed" and "everyone but its sender" in failed["name"]
    for answer in ("expected NOT to see", "received", "transcript"):
        assert answer not in failed["output"], f"--hide-expected still shows {answer!r}"


def test_random_names_are_valid_unique_and_depend_only_on_seed_and_check():
    words = Words(7, "test_chat::test_x[05]")
    names = [words.name(f"user{number}") for number in range(1000)]  # the biggest crowd
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,32}", name) for name in names), "stage 03's name rule"
    assert len({name.lower() for name in names}) == 1000, "names must differ in more than case"
    assert words.name("user0") == names[0], "one role, one name, for the whole check"
    assert len({words.text() for _ in range(200)}) == 200, "texts never repeat within a check"
    assert Words(7, "test_chat::test_x[05]").name("user0") == names[0], "same seed and check, same name"
    assert Words(8, "test_chat::test_x[05]").name("user0") != names[0]
    assert Words(7, "test_chat::test_y[05]").name("user0") != names[0]


def test_validator_rejects_what_gradescope_would(tmp_path):
    bad = {"score": 1, "tests": [{"name": "x", "score": 2, "max_score": 1, "status": "ok",
                                  "output": "", "visibility": "public"}]}
    problems = report.validate_gradescope(bad)
    assert any("status" in problem for problem in problems)
    assert any("visibility" in problem for problem in problems)
    assert any("above max_score" in problem for problem in problems)


@pytest.mark.slow
def test_grade_py_grades_a_class_in_one_command(tmp_path):
    copy_of_stage("01", tmp_path / "class" / "ada")
    copy_of_stage("01", tmp_path / "class" / "bob", "    while True:\n        conn, address = listener.accept()",
                  "    for _ in range(1):\n        conn, address = listener.accept()")
    out = tmp_path / "grading"
    run = subprocess.run([sys.executable, str(REPO / "tests" / "grade.py"), "--stage", "01", "--out", str(out),
                          str(tmp_path / "class" / "ada"), str(tmp_path / "class" / "bob")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    rows = {row["student"]: row for row in csv.DictReader(open(out / "grades.csv"))}
    assert rows["ada"]["score"] == rows["ada"]["max_score"] and rows["ada"]["failed"] == "-"
    assert int(rows["bob"]["score"]) < int(rows["bob"]["max_score"])
    assert "next client is served" in rows["bob"]["failed"]
    for student in ("ada", "bob"):
        for name in ("summary.txt", "results.json", "junit.xml"):
            assert (out / student / name).is_file(), f"no {name} for {student}"
    assert "ada" in run.stdout and "bob" in run.stdout
    seed = re.search(r"seed (\d+)", run.stdout).group(1)  # one seed for the class, printed...
    for student in ("ada", "bob"):  # ...and used for every student
        assert f"seed {seed}" in (out / student / "summary.txt").read_text()


def test_a_shared_server_is_reused_until_a_case_fails(tmp_path):
    """SharedServers: the cases of one check reuse one server; after a failure the next case gets a fresh one."""
    from harness import Session, SharedServers
    from stages import BY_ID

    shared, key = SharedServers(), ("stage 03", "a check")
    first, second, third = (Session(BY_ID["03"], tmp_path, Words(1, str(case))) for case in range(3))
    try:
        shared.lend(first, key)
        shared.lend(second, key)
        assert second.server is first.server, "the second case must reuse the first case's server"
        first.close()
        assert second.server.term.child.isalive(), "a case's end must not stop the shared server"
        retired = second.server.term
        shared.retire(key)  # what conftest does after a failed case
        assert not retired.child.isalive(), "a retired server is stopped"
        shared.lend(third, key)
        assert third.server.term is not retired and third.server.term.child.isalive()
    finally:
        for session in (first, second, third):
            session.close()
        shared.retire_all()


SLOW_START = ("server.py", '        print(f"listening on {host}:{port}", flush=True)',
              '        __import__("time").sleep(7)  # planted: ready later than the 5 s a check waits\n'
              '        print(f"listening on {host}:{port}", flush=True)')


@pytest.mark.slow  # a grading run in a subprocess
def test_a_server_slow_to_start_loses_no_points(tmp_path):
    """A busy machine can make a correct server late with its ready line. The gate tries it
    alone with twice the patience, finds it works, and then waits once more: no points lost."""
    folder = copy_with_changes("02", tmp_path / "slow", [SLOW_START])
    run = grade("02", folder, "-k", "test_server_prints_its_real_port")
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]

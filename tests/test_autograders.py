"""Grading where instructors grade (tests/autograders.py) and class-scale grading (tests/grade.py).

Gradescope's autograder is built by one command and run in a simulated /autograder tree;
the GitHub Classroom step is run with the command its workflow template holds, and its
output decoded the way the grading reporter decodes it. The runs that grade a whole stage
are in the slow tier; the rest here is fast.
"""

import base64
import contextlib
import csv
import json
import os
import re
import signal
import subprocess
import sys
import zipfile
from xml.etree import ElementTree

import pytest
import yaml

import autograders
import integrity
import report
from harness import as_in_a_terminal
from known_bad import BUGS
from stages import REPO
from suite import ECHO_TO_SENDER, copy_of_stage

GRADE = [sys.executable, str(REPO / "tests" / "grade.py")]
WORKFLOW = REPO / ".github" / "classroom" / "classroom.yml"
ENV_LIMIT = 128 * 1024  # Linux: the most one environment variable may hold (MAX_ARG_STRLEN)
LOST_CONNECTION_BUG = next(bug for bug in BUGS if bug.name == "a server that stops after its first client")


def run(*argv, timeout=900, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


# ---------------------------------------------------------------- Gradescope

def unpacked_autograder(tmp_path, stage, *options):
    """Build the zip as an instructor does, and unpack it as Gradescope does: /autograder/source."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    archive = tmp_path / f"autograder-{stage}.zip"
    built = run(*GRADE, "--gradescope-zip", stage, "--out", str(archive), *options)
    assert built.returncode == 0, built.stdout + built.stderr
    root = tmp_path / "autograder"
    with zipfile.ZipFile(archive) as unzipped:
        unzipped.extractall(root / "source")
    for script in ("setup.sh", "run_autograder"):  # zipfile does not restore the mode bits
        (root / "source" / script).chmod(0o755)
    (root / "submission").mkdir()
    return archive, root


def run_autograder(root):
    """Gradescope's step for one submission, in the simulated tree, with this Python."""
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable}
    ran = run(str(root / "source" / "run_autograder"), env=env)
    assert (root / "results" / "results.json").is_file(), ran.stdout + ran.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    assert report.validate_gradescope(results) == [], results
    return results, ran


def test_the_gradescope_zip_holds_the_two_scripts_and_the_pinned_kit(tmp_path):
    archive, root = unpacked_autograder(tmp_path, "05", "--after-due-date", "highest")
    with zipfile.ZipFile(archive) as unzipped:
        modes = {info.filename: info.external_attr >> 16 for info in unzipped.infolist()}
    for script in ("setup.sh", "run_autograder"):  # at the top of the zip, executable
        assert modes[script] & 0o111, f"{script} is not executable in the zip"
        checked = run("bash", "-n", str(root / "source" / script))
        assert checked.returncode == 0, checked.stderr
    for name in ("kit/tests/grade.py", "kit/tests/conftest.py", "kit/stages/05/server.py", "kit/requirements.txt"):
        assert name in modes, f"{name} is not in the zip"
    assert not any("/__pycache__/" in name or name.startswith("kit/.git/") for name in modes)
    config = json.loads((root / "source" / "kit" / "autograder.json").read_text())
    assert config["stage"] == "05" and config["after_due_date"] == ["highest"] and isinstance(config["seed"], int)
    assert "kit/requirements.txt" in (root / "source" / "setup.sh").read_text()
    for line in (root / "source" / "kit" / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert "==" in line, f"requirements.txt: {line!r} is not pinned"


def test_a_gradescope_submission_without_its_programs_scores_0_with_a_line(tmp_path):
    _, root = unpacked_autograder(tmp_path, "05")
    (root / "submission" / "chat.py").write_text("print('hello')\n")
    results, _ = run_autograder(root)
    assert results["score"] == 0 and results["tests"] == []
    assert "needs server.py and client.py" in results["output"] and "chat.py" in results["output"]
    assert isinstance(results["execution_time"], int)


def test_the_programs_may_sit_in_one_folder_of_the_submission(tmp_path):
    inner = copy_of_stage("02", tmp_path / "submission" / "chat-main")
    assert autograders.submitted_folder(tmp_path / "submission") == inner
    (tmp_path / "submission" / "other").mkdir()  # two folders: which one? Neither.
    assert autograders.submitted_folder(tmp_path / "submission") is None


@pytest.mark.slow  # two gradings of stage 02
def test_gradescope_gives_the_reference_full_marks_and_a_known_bad_one_less(tmp_path):
    pattern = "highest"
    _, root = unpacked_autograder(tmp_path / "ref", "02", "--after-due-date", pattern)
    copy_of_stage("02", root / "submission" / "stage")
    results, ran = run_autograder(root)
    assert results["score"] == results["max_score"] > 0, [t["name"] for t in results["tests"] if t["score"] == 0]
    assert results["stdout_visibility"] == "hidden" and isinstance(results["execution_time"], int)
    hidden = {test["name"] for test in results["tests"] if test["visibility"] == "after_due_date"}
    assert hidden and all(pattern in name for name in hidden)
    assert all(test["visibility"] == "visible" for test in results["tests"]
               if test["name"] not in hidden and "integrity" not in test["name"])
    # A copy of the kit's own stage is flagged, for the instructor only.
    flagged = [test for test in results["tests"] if "integrity" in test["name"]]
    assert flagged and flagged[0]["visibility"] == "hidden" and flagged[0]["max_score"] == 0
    assert "FLAGGED" in ran.stdout

    weights = tmp_path / "rubric.txt"  # the instructor's rubric, fixed in the zip
    weights.write_text("delivery = 40\n")
    _, root = unpacked_autograder(tmp_path / "bad", "02", "--weights", str(weights))
    copy_of_stage("02", root / "submission" / "bad", *ECHO_TO_SENDER)
    results, _ = run_autograder(root)
    assert sum(test["score"] for test in results["tests"]) == results["score"]  # the categories carry it
    assert "delivery: " in results["output"] and "/ 40 (" in results["output"], results["output"]
    failed = [test["name"] for test in report.checks(results["tests"]) if test["status"] == "failed"]
    assert results["score"] < results["max_score"]
    assert "02 · a message reaches everyone but its sender" in failed, failed  # the bug's own check
    delivery = next(test for test in results["tests"] if test["name"].startswith("category: delivery"))
    assert delivery["score"] < delivery["max_score"] == 40 and "reaches everyone but its sender" in delivery["output"]


# ---------------------------------------------------------------- GitHub Classroom

def workflow_job():
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]["run-autograding-tests"]


def workflow_steps():
    return workflow_job()["steps"]


def test_the_classroom_workflow_feeds_the_reporter_the_kit_step_output():
    """The reporter reads each runner's result from the variable RUNNER_RESULTS (upper case), and
    writes the points on the check run named "Autograding Tests"."""
    assert workflow_job()["name"] == "Autograding Tests"
    steps = workflow_steps()
    kit_checkout = next(step for step in steps if step.get("with", {}).get("path") == ".kit")
    assert kit_checkout["with"]["ref"] == "${{ env.KIT_REF }}"  # pinned: every student, the same checks
    grading = next(step for step in steps if step.get("id") == "kit")
    assert ".kit/tests/grade.py --classroom" in grading["run"]
    reporter = next(step for step in steps if "autograding-grading-reporter" in step.get("uses", ""))
    runners = [runner.strip() for runner in reporter["with"]["runners"].split(",")]
    for runner in runners:
        assert reporter["env"][f"{runner.upper()}_RESULTS"] == f"${{{{ steps.{runner}.outputs.result }}}}"
    assert steps.index(grading) < steps.index(reporter)


def classroom_run(tmp_path, submission, stage):
    """The workflow's grading step, run as Actions runs it: in the student's repository, with the
    kit checked out in .kit, and GITHUB_OUTPUT a file. Returns the payload, decoded as the
    reporter decodes it, the encoded length, and the step's log."""
    step = next(step for step in workflow_steps() if step.get("id") == "kit")
    (submission / ".kit").symlink_to(REPO)
    outputs = tmp_path / "github_output"
    # `python` in the workflow is the one the requirements went into: here, the suite's own.
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    env = {**os.environ, "GITHUB_OUTPUT": str(outputs), "STAGE": stage, "PATH": path}
    ran = run("bash", "-c", step["run"], cwd=submission, env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    encoded = re.search(r"^result=(.*)$", outputs.read_text(), re.M).group(1)
    return json.loads(base64.b64decode(encoded)), len(encoded), ran.stdout


def points(payload):
    """As the reporter's NotifyClassroom adds them up."""
    return sum(test["score"] for test in payload["tests"]), payload["max_score"]


@pytest.mark.slow  # two gradings of stage 02
def test_the_classroom_step_gives_the_reference_full_marks_and_a_known_bad_one_less(tmp_path):
    payload, size, log = classroom_run(tmp_path / "ref", copy_of_stage("02", tmp_path / "ref" / "repo"), "02")
    assert payload["version"] == 1 and payload["status"] == "pass"
    total, maximum = points(payload)
    assert total == maximum > 0 and size < ENV_LIMIT
    assert f"{total} / {maximum} points" in log
    payload, size, _ = classroom_run(tmp_path / "bad", copy_of_stage("02", tmp_path / "bad" / "repo", *ECHO_TO_SENDER),
                                     "02")
    total, maximum = points(payload)
    assert payload["status"] == "fail" and total < maximum and size < ENV_LIMIT
    failed = [test for test in payload["tests"] if test["status"] == "fail"]
    assert "02 · a message reaches everyone but its sender" in [test["name"] for test in failed]
    checks = [test for test in failed if not test["name"].startswith("category: ")]
    assert all(test["score"] == 0 and test["message"] for test in checks)  # no points, and a report each
    delivery = next(test for test in failed if test["name"].startswith("category: delivery"))
    assert 0 <= delivery["score"] < 25  # the category's weight, less what the bug cost
    assert "reaches everyone but its sender" in delivery["message"]  # the category lost it, and says where
    assert sum(test["score"] for test in payload["tests"] if test["name"].startswith("category: ")) == total


@pytest.mark.slow  # a grading of stage 01 (every check fails, but each runs)
def test_a_repository_without_its_client_scores_0_of_the_stages_points(tmp_path):
    """The reporter only posts points when max_score is above 0: a missing program still has the
    stage's maximum, every check failing, and the reason first."""
    repo = copy_of_stage("01", tmp_path / "repo")
    (repo / "client.py").unlink()
    payload, _, _ = classroom_run(tmp_path, repo, "01")
    total, maximum = points(payload)
    assert total == 0 and maximum > 0 and payload["status"] == "error"
    assert payload["tests"][0]["status"] == "error" and "no client.py" in payload["tests"][0]["message"]


def test_the_classroom_payload_fits_one_environment_variable_however_much_fails():
    tests = [{"name": f"05 · check {number}", "number": f"test_{number}", "score": 0, "max_score": 1,
              "status": "failed", "output": "x" * 50_000, "tags": ["delivery"]} for number in range(200)]
    payload = autograders.classroom_payload(tests)
    assert len(base64.b64encode(json.dumps(payload).encode())) < ENV_LIMIT
    assert points(payload) == (0, 200) and all(test["message"] for test in payload["tests"])


# ---------------------------------------------------------------- integrity

def test_integrity_flags_what_leans_on_the_kit(tmp_path):
    leaning = copy_of_stage("02", tmp_path / "leaning")
    source = (leaning / "client.py").read_text()
    (leaning / "client.py").write_text(source + "\nimport sys\n\nsys.path.insert(0, '../tests')\nimport contract\n")
    (leaning / "server.py").write_text("import subprocess\n\nsubprocess.run(['python', 'stages/02/server.py'])\n")
    found = integrity.flags(leaning, "02")
    assert any("imports contract" in flag for flag in found), found
    assert any("'../tests'" in flag for flag in found) and any("stages/02/server.py" in flag for flag in found)

    copied = copy_of_stage("02", tmp_path / "copied")
    source = (copied / "server.py").read_text()
    (copied / "server.py").write_text("# my own server\n" + source.replace("# ", "#  "))
    assert any("same code as the kit's stages/02/server.py" in flag for flag in integrity.flags(copied, "02"))


def test_integrity_leaves_an_own_implementation_alone(tmp_path):
    own = REPO / "tests" / "fixtures" / "spec-only-05"
    assert integrity.flags(own, "05") == []
    module = copy_of_stage("02", tmp_path / "own-module")  # a contract.py of its own may be imported
    (module / "contract.py").write_text("LIMIT = 1\n")
    (module / "server.py").write_text("import contract\n\nprint(contract.LIMIT)\n")
    assert not any("imports" in flag for flag in integrity.flags(module, "02"))


# ---------------------------------------------------------------- grade.py on a class

def test_grade_py_gives_what_cannot_be_graded_a_row_of_its_own(tmp_path):
    (tmp_path / "class" / "no-client").mkdir(parents=True)
    (tmp_path / "class" / "no-client" / "server.py").write_text("print('hi')\n")
    (tmp_path / "class" / "upload.zip").write_bytes(b"PK")
    out = tmp_path / "grading"
    ran = run(*GRADE, "--stage", "05", "--out", str(out), *(str(p) for p in sorted((tmp_path / "class").iterdir())))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    rows = {row["student"]: row for row in csv.DictReader(open(out / "grades.csv"))}
    assert rows["no-client"]["score"] == "0" and rows["no-client"]["failed"] == "not graded: no client.py in it"
    assert rows["upload.zip"]["score"] == "0" and rows["upload.zip"]["failed"] == "not graded: not a folder"
    summary = (out / "class-summary.md").read_text()
    assert "| 0-9 % | 2 |" in summary and "not graded: not a folder" in summary
    ElementTree.parse(out / "scores.svg")  # well-formed: any browser draws it


@pytest.mark.slow  # 20 gradings of stage 01
def test_grade_py_on_a_class_shows_progress_resumes_and_summarises(tmp_path):
    """20 submissions: 15 copies of the reference, 5 that stop after their first client."""
    folders = [copy_of_stage("01", tmp_path / "class" / f"ok{number:02}") for number in range(15)]
    folders += [copy_of_stage("01", tmp_path / "class" / f"bad{number}", LOST_CONNECTION_BUG.old,
                              LOST_CONNECTION_BUG.new) for number in range(5)]
    out = tmp_path / "grading"
    command = [*GRADE, "--stage", "01", "--out", str(out), "--jobs", "2", *map(str, folders)]
    # As from the instructor's terminal: a runner started in the background (CI) ignores
    # SIGINT, and grade.py would inherit that and never see the Ctrl+C below.
    first = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True,
                             preexec_fn=as_in_a_terminal)
    try:
        done = []
        for line in first.stdout:  # progress: a line per finished submission, as it finishes
            if re.match(r"\[\s*\d+/20\] ", line):
                done.append(line)
                assert re.search(r"\d+/\d+ in \d+ s; \d+ not full marks so far; about [\d.]+ min left", line), line
            if len(done) == 4:
                os.killpg(first.pid, signal.SIGINT)  # Ctrl+C in the instructor's terminal
                break
        rest = first.communicate(timeout=300)[0]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)  # whatever happened, nothing of it outlives the check
    assert first.returncode == 130 and "--resume" in rest, rest
    kept = {path.parent.name: path.stat().st_mtime_ns for path in out.glob("*/row.json")}
    assert len(kept) >= 4

    again = run(*command, "--resume")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"({len(kept)} kept from the interrupted run)" in again.stdout
    regraded = re.findall(r"^\[\s*\d+/20\] (\S+):", again.stdout, re.M)
    assert len(regraded) == 20 - len(kept) and not set(regraded) & set(kept)
    assert all((out / name / "row.json").stat().st_mtime_ns == mtime for name, mtime in kept.items())
    assert json.loads((out / "class.json").read_text())["seed"] == int(re.search(r"seed (\d+)", again.stdout)[1])

    rows = {row["student"]: row for row in csv.DictReader(open(out / "grades.csv"))}
    assert len(rows) == 20
    table = "\n".join(f"{row['student']} {row['score']}/{row['max_score']} {row['failed']}" for row in rows.values())
    assert all(rows[f"ok{n:02}"]["score"] == rows[f"ok{n:02}"]["max_score"] for n in range(15)), table
    assert all(int(rows[f"bad{n}"]["score"]) < int(rows[f"bad{n}"]["max_score"]) for n in range(5)), table
    summary = (out / "class-summary.md").read_text()
    assert "| 100 % | 15 |" in summary and "Stage 01: 20 submissions" in summary
    failed_most = summary.split("## The checks failed most often", 1)[1]
    assert re.search(r"^\| the next client is served after one is killed \| 5 \|$", failed_most, re.M), summary
    counts = [int(count) for count in re.findall(r"^\| .+ \| (\d+) \|$", failed_most, re.M)]
    assert counts == sorted(counts, reverse=True) and max(counts) == 5  # most often first
    bars = [rect for rect in ElementTree.parse(out / "scores.svg").iter("{http://www.w3.org/2000/svg}rect")
            if rect.find("{http://www.w3.org/2000/svg}title") is not None]
    assert len(bars) == 11 and sum(int(bar[0].text.rsplit(": ", 1)[1]) for bar in bars) == 20

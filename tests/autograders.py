"""Grading where instructors already grade: a Gradescope autograder and a GitHub Classroom step.

    python tests/grade.py --gradescope-zip 05 --out autograder-05.zip [--after-due-date PATTERN ...]
    python tests/grade.py --classroom 05 .

Gradescope (its "autograder specifications"): the zip holds setup.sh, which Gradescope
runs once to build the grading image, and run_autograder, which it runs for each
submission. The kit itself goes in the zip too, under kit/, with the stage, the seed and
the hidden checks in kit/autograder.json. run_autograder grades /autograder/submission
and writes /autograder/results/results.json. AUTOGRADER_ROOT and AUTOGRADER_PYTHON point
it at another tree and Python, to try it out (tests/test_autograders.py does).

GitHub Classroom: a workflow in the student's repository (.github/classroom/ in the
kit is the template) checks the kit out at a pinned tag, runs `--classroom NN .`, and
hands the step's `result` output to classroom-resources/autograding-grading-reporter,
the way autograding-command-grader does: base64 of a JSON object with `version`,
`status`, `max_score` and `tests`, each with its own `score`. The reporter adds up the
tests' scores: the rubric's categories (tests/categories.py) are entries of their own that
carry the points, and the checks' entries carry none, so the total is the rubric's score.
"""

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import categories
import integrity
from grade import REPO, missing_programs, run_checks
from words import new_seed

CONFIG = "autograder.json"

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, to build the autograder's image (Ubuntu).
set -euo pipefail
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv python3-pip
python3 -m venv /autograder/venv
# The versions the kit is tested with, pinned in its requirements.txt.
/autograder/venv/bin/pip install --no-cache-dir -r /autograder/source/kit/requirements.txt
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for each submission: it grades /autograder/submission and writes
# /autograder/results/results.json. To try it elsewhere, set AUTOGRADER_ROOT (a tree laid
# out like /autograder) and AUTOGRADER_PYTHON.
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${AUTOGRADER_PYTHON:-$ROOT/venv/bin/python}"
exec "$PYTHON" "$ROOT/source/kit/tests/grade.py" --gradescope-run "$ROOT"
"""

# GitHub keeps a step's output in the reporter's environment: one variable may hold at most
# 128 KiB on Linux, and base64 adds a third. The failures' messages share what is left.
CLASSROOM_MESSAGES = 60_000


def main(args):
    if args.gradescope_zip:
        out = args.out or Path(f"autograder-{args.gradescope_zip}.zip")
        build_gradescope_zip(args.gradescope_zip, out, args.after_due_date, args.hide_expected, args.seed,
                             args.weights)
        print(f"wrote {out}: upload it as the assignment's autograder (docs/instructors.md, Gradescope)")
    elif args.gradescope_run:
        gradescope_run(args.gradescope_run)
    else:
        payload = classroom(args.classroom, Path(args.submissions[0] if args.submissions else "."), args.seed,
                            args.weights)
        print(f"{payload['total']} / {payload['max_score']} points")


# ---------------------------------------------------------------- Gradescope

def kit_files():
    """The kit as git sees it (tracked files, and new ones not ignored): the suite, the stages (for
    the checks that compare with the reference), the spec. Without git: every file but caches."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        listed = [str(path.relative_to(REPO)) for path in REPO.rglob("*")
                  if not {".git", "__pycache__", "site"} & set(path.relative_to(REPO).parts)]
    return sorted(name for name in listed if name and (REPO / name).is_file())


def build_gradescope_zip(stage, out, after_due_date=(), hide_expected=False, seed=None, weights=None):
    config = {"stage": stage, "seed": new_seed() if seed is None else seed,
              "after_due_date": list(after_due_date), "hide_expected": hide_expected,
              "weights": categories.weights(weights)}  # the rubric, fixed when the zip is built
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = 0o100755 << 16  # executable, as Gradescope runs them
            archive.writestr(info, text)
        for name in kit_files():
            archive.write(REPO / name, f"kit/{name}")
        archive.writestr(f"kit/{CONFIG}", json.dumps(config, indent=1) + "\n")
    return config


def submitted_folder(submission):
    """Where the student's server.py and client.py are: the submission itself, or the one folder
    in it (an upload of a folder, or of a GitHub repository, adds one level)."""
    if missing_programs(submission) is None:
        return submission
    inner = [path for path in submission.iterdir() if path.is_dir() and not path.name.startswith(".")] \
        if submission.is_dir() else []
    if len(inner) == 1 and missing_programs(inner[0]) is None:
        return inner[0]
    return None


def gradescope_run(root):
    """Grade ROOT/submission; write ROOT/results/results.json, Gradescope's format."""
    root = Path(root)
    config = json.loads((REPO / CONFIG).read_text())
    started = time.monotonic()
    folder = submitted_folder(root / "submission")
    if folder is None:
        found = sorted(path.name for path in (root / "submission").iterdir()) if (root / "submission").is_dir() else []
        results = {"score": 0, "tests": [],
                   "output": "Not graded: the submission needs server.py and client.py, at its top level or in "
                             f"one folder. It holds: {', '.join(found) or 'nothing'}."}
    else:
        with tempfile.TemporaryDirectory(prefix="chat-kit-grade-") as out:
            weights = Path(out) / "weights.txt"
            weights.write_text("".join(f"{name} = {weight}\n" for name, weight in config["weights"].items()))
            results, problem = run_checks(folder, config["stage"], Path(out) / "report", config["seed"],
                                          config["hide_expected"], timeout=3000, workers="auto", weights=weights)
        if results is None:
            results = {"score": 0, "tests": [], "output": f"Not graded: {problem}"}
        flags = integrity.flags(folder, config["stage"])
        if flags:  # for the instructor: stdout and a hidden test, which students do not see
            print("FLAGGED:", *flags, sep="\n")
            results["tests"].append({"name": "integrity (for the instructor)", "number": "zz-integrity",
                                     "score": 0, "max_score": 0, "status": "failed",
                                     "output": "\n".join(flags), "visibility": "hidden"})
    for test in results["tests"]:
        if any(pattern in test["name"] for pattern in config["after_due_date"]):
            test["visibility"] = "after_due_date"
    results.setdefault("visibility", "visible")
    results.setdefault("stdout_visibility", "hidden")
    results["execution_time"] = round(time.monotonic() - started)
    (root / "results").mkdir(parents=True, exist_ok=True)
    (root / "results" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


# ---------------------------------------------------------------- GitHub Classroom

def classroom(stage, folder, seed=None, weights=None):
    """Grade the student's repository; write the reporter's payload to the step's `result` output
    ($GITHUB_OUTPUT), and a summary of each check to the log. Always exits 0: the reporter
    says whether the checks passed."""
    seed = new_seed() if seed is None else seed
    with tempfile.TemporaryDirectory(prefix="chat-kit-grade-") as out:
        out = Path(out)
        problem = missing_programs(folder)
        graded = folder if problem is None else with_placeholders(folder, out / "submission")
        results, error = run_checks(graded, stage, out / "report", seed, workers="auto", timeout=3000,
                                    weights=weights)
        if results:
            print((out / "report" / "summary.txt").read_text())
    tests = results["tests"] if results else []
    if problem:  # a program is missing: no points, though some checks need only the other one
        tests = [{**test, "score": 0, "status": "failed"} for test in tests]
    payload = classroom_payload(tests, problem or error)
    for flag in integrity.flags(folder, stage) if folder.is_dir() else []:
        print(f"FLAGGED: {flag}")
    encoded = base64.b64encode(json.dumps(payload).encode()).decode()
    if os.environ.get("GITHUB_OUTPUT"):
        with open(os.environ["GITHUB_OUTPUT"], "a") as outputs:
            outputs.write(f"result={encoded}\n")
    else:
        print(f"result={encoded}")
    return {**payload, "total": sum(test["score"] for test in payload["tests"])}


PLACEHOLDER = 'raise SystemExit("this program is missing from the submission")\n'


def with_placeholders(folder, copy):
    """A copy of `folder` where a missing server.py or client.py is one that only says so: every
    check then fails (the first as the cause), and the reporter still learns the stage's points."""
    copy.mkdir(parents=True)
    for program in ("server.py", "client.py"):
        source = folder / program
        (copy / program).write_text(source.read_text(errors="replace") if source.is_file() else PLACEHOLDER)
    return copy


def classroom_payload(tests, problem=None):
    """The reporter's format (autograding-command-grader's): an entry per rubric category with
    its points, and one per check with its pass or fail and its report.
    `problem`: why the submission could not be graded as it is, said first."""
    failures = sum(1 for test in tests if test["status"] != "passed")
    room = CLASSROOM_MESSAGES // max(1, failures)
    entries = [{"name": test["name"], "status": "pass" if test["status"] == "passed" else "fail",
                "score": test["score"], "message": test["output"][:room], "test_code": test["number"],
                "filename": "", "line_no": 0, "duration": 0} for test in tests]
    if problem:
        entries.insert(0, {"name": "the submission", "status": "error", "score": 0, "message": f"Not graded: "
                           f"{problem}", "test_code": "", "filename": "", "line_no": 0, "duration": 0})
    status = "error" if problem else "fail" if failures else "pass"
    # The reporter adds up the entries' scores: the categories' entries carry the points
    # (tests/categories.py), the checks' none, so the total is the rubric's score.
    return {"version": 1, "status": status, "max_score": sum(test["max_score"] for test in tests),
            "tests": entries}


if __name__ == "__main__":
    sys.exit("run it as tests/grade.py --gradescope-zip NN or --classroom NN")

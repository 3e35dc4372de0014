"""Grade a whole class: run one stage's checks against every submission folder, in parallel.

    python tests/grade.py --stage 05 submissions/*
    python tests/grade.py --stage 05 submissions/* --out grading --jobs 2 --hide-expected
    python tests/grade.py --stage 05 submissions/bob --seed 123456     (replay one student's run)

Each submission folder holds the student's server.py and client.py; they are only
ever run as programs, never imported. For each student the grader writes
OUT/NAME/summary.txt, OUT/NAME/results.json (Gradescope's format) and
OUT/NAME/junit.xml, then prints one row per student: score, maximum, time, and the
checks that failed. OUT/grades.csv has the same rows for a spreadsheet.

Names and message texts are drawn from one seed for the whole class, so every
student gets the same checks; the seed is printed and written in each summary.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import report
from words import new_seed

REPO = Path(__file__).resolve().parent.parent


def parse_args():
    parser = argparse.ArgumentParser(description="Grade submissions against one stage's checks.")
    parser.add_argument("--stage", required=True, help="the stage whose spec the submissions implement, e.g. 05")
    parser.add_argument("submissions", nargs="+", type=Path, help="folders, each with server.py and client.py")
    parser.add_argument("--out", type=Path, default=Path("grading"), help="where the reports go (default: grading)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="submissions graded at once")
    parser.add_argument("--hide-expected", action="store_true",
                        help="reports say which checks failed, not what they expected")
    parser.add_argument("--timeout", type=int, default=600, help="seconds for one whole submission")
    parser.add_argument("--seed", type=int, default=None,
                        help="the seed names and texts are drawn from (default: a new one, printed)")
    return parser.parse_args()


def grade_one(folder, args):
    """Run the checks on one folder; return a row for the table."""
    out = args.out / folder.name
    command = [sys.executable, "-m", "pytest", str(REPO / "tests"), "-o", "addopts=", "-p", "no:cacheprovider",
               "-q", f"--stage={args.stage}", f"--impl={folder.resolve()}", f"--report={out}",
               f"--junitxml={out / 'junit.xml'}", f"--seed={args.seed}"]
    command += ["--hide-expected"] if args.hide_expected else []
    started = time.monotonic()
    try:
        run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=args.timeout)
        problem = "" if (out / "results.json").is_file() else (run.stderr or run.stdout).strip().splitlines()[-1:]
    except subprocess.TimeoutExpired:
        problem = [f"timed out after {args.timeout} s"]
    seconds = time.monotonic() - started
    if problem:
        return {"student": folder.name, "score": 0, "max_score": None, "seconds": seconds,
                "failed": f"not graded: {' '.join(problem)}"}
    results = json.loads((out / "results.json").read_text())
    return {"student": folder.name, "score": results["score"], "max_score": results["max_score"],
            "seconds": seconds, "failed": failures(results["tests"])}


def failures(tests):
    """The failed checks in one line; a broken gate once, as its cause, instead of a row per check."""
    found, not_run = report.causes(tests)
    failed = [test["name"].split(" · ", 1)[-1] for test in tests
              if test["status"] == "failed" and not report.extra(test, "not_run") and not report.extra(test, "cause")]
    shown = [f"CAUSE: {cause.split('. ', 1)[0]} ({not_run} checks not run)" for cause in found] + failed
    return " | ".join(shown) or "-"


def main():
    args = parse_args()
    args.out = args.out.resolve()  # pytest runs from the repo: a relative path must mean the caller's folder
    folders = [folder for folder in args.submissions if folder.is_dir()]
    missing = [str(folder) for folder in args.submissions if not folder.is_dir()]
    if missing:
        sys.exit(f"error: not a folder: {', '.join(missing)}")
    args.out.mkdir(parents=True, exist_ok=True)
    args.seed = new_seed() if args.seed is None else args.seed
    print(f"grading {len(folders)} submissions against stage {args.stage}, {args.jobs} at a time, "
          f"seed {args.seed}", flush=True)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(lambda folder: grade_one(folder, args), folders))
    width = max(len("student"), *(len(row["student"]) for row in rows))
    print(f"{'student':<{width}}  score    max   time  failed checks")
    for row in rows:
        maximum = "-" if row["max_score"] is None else row["max_score"]
        print(f"{row['student']:<{width}}  {row['score']:>5}  {maximum:>5}  {row['seconds']:>4.0f}s  {row['failed']}")
    with open(args.out / "grades.csv", "w", newline="") as table:
        writer = csv.DictWriter(table, fieldnames=["student", "score", "max_score", "seconds", "failed"])
        writer.writeheader()
        writer.writerows(rows)
    elapsed = time.monotonic() - started
    print(f"{len(rows)} submissions in {elapsed:.0f} s ({elapsed / len(rows):.1f} s each); reports in {args.out}/")


if __name__ == "__main__":
    main()

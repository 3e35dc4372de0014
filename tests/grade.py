"""Grade a whole class: run one stage's checks against every submission folder, in parallel.

    python tests/grade.py --stage 05 submissions/*
    python tests/grade.py --stage 05 submissions/* --out grading --jobs 2 --hide-expected
    python tests/grade.py --stage 05 submissions/* --out grading --resume   (after an interruption)
    python tests/grade.py --stage 05 submissions/bob --seed 123456     (replay one student's run)
    python tests/grade.py --stage 05 submissions/* --weights rubric.txt   (the rubric's weights: tests/categories.py)

    python tests/grade.py --gradescope-zip 05 --out autograder-05.zip [--after-due-date PATTERN]
    python tests/grade.py --classroom 05 .      (in a GitHub Classroom workflow: tests/autograders.py)

Each submission folder holds the student's server.py and client.py; they are only
ever run as programs, never imported. For each student the grader writes
OUT/NAME/summary.txt, OUT/NAME/results.json (Gradescope's format) and
OUT/NAME/junit.xml. While it runs it prints a line per finished submission: how many
are done, the time left, and the failures so far. At the end it prints one row per
student (score, maximum, each rubric category's points, time, the checks that failed,
integrity flags), and writes OUT/grades.csv with the same rows, OUT/class-summary.md (the
score distribution, the categories the class lost most in, and the checks failed most
often) and OUT/scores.svg (the distribution as a plot).

A path that is not a folder, or a folder without server.py or client.py, gets a row
of its own with score 0; the others are graded all the same.

Names and message texts are drawn from one seed for the whole class, so every
student gets the same checks; the seed is printed and written in each summary, and in
OUT/class.json, so that --resume grades the rest of the class with the same seed.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import categories
import class_summary
import integrity
import report
from words import new_seed

REPO = Path(__file__).resolve().parent.parent
PROGRAMS = ("server.py", "client.py")
FIELDS = ["student", "score", "max_score", "seconds", "failed", "flags"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Grade submissions against one stage's checks.")
    parser.add_argument("--stage", help="the stage whose spec the submissions implement, e.g. 05")
    parser.add_argument("submissions", nargs="*", type=Path, help="folders, each with server.py and client.py")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the reports go (default: grading); with --gradescope-zip, the zip file")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="submissions graded at once")
    parser.add_argument("--hide-expected", action="store_true",
                        help="reports say which checks failed, not what they expected")
    parser.add_argument("--timeout", type=int, default=600, help="seconds for one whole submission")
    parser.add_argument("--seed", type=int, default=None,
                        help="the seed names and texts are drawn from (default: a new one, printed)")
    parser.add_argument("--weights", type=Path, default=None, metavar="FILE",
                        help="the rubric's weights, `category = weight` lines (default: tests/categories.py's)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the students already graded in OUT, and grade the others with the same seed")
    services = parser.add_argument_group("grading services (tests/autograders.py, docs/instructors.md)")
    services.add_argument("--gradescope-zip", metavar="NN", help="build the Gradescope autograder zip for stage NN")
    services.add_argument("--after-due-date", action="append", default=[], metavar="PATTERN",
                          help="with --gradescope-zip: checks whose name holds PATTERN are shown to "
                               "students only after the due date (repeatable)")
    services.add_argument("--gradescope-run", type=Path, metavar="ROOT", help=argparse.SUPPRESS)
    services.add_argument("--classroom", metavar="NN",
                          help="grade one folder (the student's repository) for GitHub Classroom's reporter")
    args = parser.parse_args(argv)
    if args.weights:
        try:
            categories.weights(args.weights)
            args.weights = args.weights.resolve()  # pytest runs from the repo
        except (OSError, ValueError) as error:
            parser.error(f"--weights: {error}")
    if not (args.gradescope_zip or args.gradescope_run or args.classroom) and not (args.stage and args.submissions):
        parser.error("give --stage NN and the submission folders (or --gradescope-zip NN, or --classroom NN)")
    return args


# ---------------------------------------------------------------- one submission

def missing_programs(folder):
    """Why `folder` cannot be graded, or None."""
    if not folder.is_dir():
        return "not a folder"
    missing = [program for program in PROGRAMS if not (folder / program).is_file()]
    return f"no {' and no '.join(missing)} in it" if missing else None


def run_checks(folder, stage, out, seed, hide_expected=False, timeout=600, workers=None, weights=None):
    """Run the stage's checks on one folder, reports into `out`. (results.json's data, or None, and
    what went wrong if None.)"""
    command = [sys.executable, "-m", "pytest", str(REPO / "tests"), "-o", "addopts=", "-p", "no:cacheprovider",
               "-q", f"--stage={stage}", f"--impl={Path(folder).resolve()}", f"--report={out}",
               f"--junitxml={out / 'junit.xml'}", f"--seed={seed}"]
    command += ["--hide-expected"] if hide_expected else []
    command += [f"--weights={weights}"] if weights else []
    command += ["-n", str(workers)] if workers else []
    try:
        run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout} s"
    if run.returncode not in (0, 1):  # 0: all passed, 1: some failed; else interrupted, or no checks ran
        last = " ".join((run.stderr or run.stdout).strip().splitlines()[-1:])
        return None, f"the checks did not finish (pytest exit code {run.returncode}): {last}"
    if not (out / "results.json").is_file():
        return None, " ".join((run.stderr or run.stdout).strip().splitlines()[-1:]) or "pytest wrote no report"
    return json.loads((out / "results.json").read_text()), None


def grade_one(folder, args):
    """Grade one folder; return its row for the table (also kept as OUT/NAME/row.json, for --resume)."""
    out = args.out / folder.name
    started = time.monotonic()
    problem = folder_problem = missing_programs(folder)
    results = None
    if problem is None:
        results, problem = run_checks(folder, args.stage, out, args.seed, args.hide_expected, args.timeout,
                                      weights=args.weights)
    row = {"student": folder.name, "score": 0, "max_score": None, "seconds": round(time.monotonic() - started, 1),
           "failed": f"not graded: {problem}" if problem else failures(results["tests"]),
           "flags": " | ".join(integrity.flags(folder, args.stage)) if folder.is_dir() else ""}
    if results:
        row.update(score=results["score"], max_score=results["max_score"],
                   categories={test["extra_data"]["category"]: [test["score"], test["max_score"]]
                               for test in results["tests"] if report.is_rubric(test)})
    # Kept for --resume: a finished grading, or a folder that cannot be graded. Not one cut short
    # by Ctrl+C, a timeout or a crash of pytest: --resume tries those again.
    if (results is not None or folder_problem) and not INTERRUPTED.is_set():
        out.mkdir(parents=True, exist_ok=True)
        (out / "row.json").write_text(json.dumps(row) + "\n")
    return row


INTERRUPTED = threading.Event()


def failures(tests):
    """The failed checks in one line; a broken gate once, as its cause, instead of a row per check."""
    found, not_run = report.causes(tests)
    failed = [test["name"].split(" · ", 1)[-1] for test in report.checks(tests)
              if test["status"] == "failed" and not report.extra(test, "not_run") and not report.extra(test, "cause")]
    shown = [f"CAUSE: {cause.split('. ', 1)[0]} ({not_run} checks not run)" for cause in found] + failed
    return " | ".join(shown) or "-"


# ---------------------------------------------------------------- a class

def class_settings(args):
    """The seed (and stage) of this class run: new, or the interrupted run's (--resume)."""
    path = args.out / "class.json"
    if args.resume and path.is_file():
        kept = json.loads(path.read_text())
        if kept["stage"] != args.stage or (args.seed is not None and args.seed != kept["seed"]):
            sys.exit(f"error: {args.out} holds a run of stage {kept['stage']} with seed {kept['seed']}; "
                     "resume it with the same --stage (and no other --seed)")
        return kept["seed"]
    seed = new_seed() if args.seed is None else args.seed
    path.write_text(json.dumps({"stage": args.stage, "seed": seed, "hide_expected": args.hide_expected}) + "\n")
    return seed


def already_graded(args, folders):
    """The rows kept from an interrupted run, by student (--resume)."""
    rows = {}
    for folder in folders:
        kept = args.out / folder.name / "row.json"
        if args.resume and kept.is_file():
            rows[folder.name] = json.loads(kept.read_text())
    return rows


class Progress:
    """One line per finished submission: done / total, the time left, the failures so far."""

    def __init__(self, total, done):
        self.total, self.done, self.failed = total, done, 0
        self.started, self.lock = time.monotonic(), threading.Lock()
        self.graded_here = 0

    def finished(self, row):
        with self.lock:
            self.done += 1
            self.graded_here += 1
            perfect = row["max_score"] is not None and row["score"] == row["max_score"]
            self.failed += not perfect
            left = self.total - self.done
            eta = (time.monotonic() - self.started) / self.graded_here * left
            score = f"{row['score']}/{row['max_score'] if row['max_score'] is not None else '-'}"
            print(f"[{self.done:>{len(str(self.total))}}/{self.total}] {row['student']}: {score} in "
                  f"{row['seconds']:.0f} s; {self.failed} not full marks so far; "
                  f"about {eta / 60:.1f} min left", flush=True)


def grade_class(args):
    args.out = (args.out or Path("grading")).resolve()  # pytest runs from the repo: relative means the caller's
    args.out.mkdir(parents=True, exist_ok=True)
    folders = args.submissions
    names = [folder.name for folder in folders]
    if len(set(names)) != len(names):
        sys.exit("error: two submissions have the same folder name; each student needs a folder of their own")
    args.seed = class_settings(args)
    rows = already_graded(args, folders)
    todo = [folder for folder in folders if folder.name not in rows]
    print(f"grading {len(todo)} submissions against stage {args.stage}, {args.jobs} at a time, seed {args.seed}"
          + (f" ({len(rows)} kept from the interrupted run)" if rows else ""), flush=True)
    progress = Progress(len(folders), len(rows))
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(grade_one, folder, args) for folder in todo]
        try:
            for future in as_completed(futures):
                row = future.result()
                rows[row["student"]] = row
                progress.finished(row)
        except KeyboardInterrupt:  # Ctrl+C reaches the checks being run too: they stop at once
            INTERRUPTED.set()
            for future in futures:
                future.cancel()
            print(f"\ninterrupted: {progress.done} of {len(folders)} graded; the same command with "
                  "--resume grades the others", flush=True)
            sys.exit(130)
    rows = [rows[folder.name] for folder in folders]
    print_table(rows)
    write_csv(args.out / "grades.csv", rows)
    class_summary.write(args.out, rows, args.stage, args.seed)
    elapsed = time.monotonic() - started
    print(f"{len(todo)} submissions graded in {elapsed:.0f} s"
          + (f" ({elapsed / len(todo):.1f} s each)" if todo else "")
          + f"; reports in {args.out}/, the class summary in {args.out / 'class-summary.md'}")


def class_categories(rows):
    """The rubric's categories that any graded student's checks fall in, in the rubric's order."""
    found = {name for row in rows for name in row.get("categories", {})}
    return [name for name in categories.CATEGORIES if name in found]


def write_csv(path, rows):
    """grades.csv: a row per student, with a column per category (its points)."""
    names = class_categories(rows)
    with open(path, "w", newline="") as table:
        writer = csv.DictWriter(table, fieldnames=[*FIELDS[:3], *names, *FIELDS[3:]])
        writer.writeheader()
        for row in rows:
            points = {name: row.get("categories", {}).get(name, ["", ""])[0] for name in names}
            writer.writerow({**{key: row[key] for key in FIELDS}, **points})


def print_table(rows):
    """A row per student: the score, then each category's points (its weight in the header)."""
    width = max(len("student"), *(len(row["student"]) for row in rows))
    names = class_categories(rows)
    weights = {name: next(row["categories"][name][1] for row in rows if name in row.get("categories", {}))
               for name in names}
    headers = [f"{name} /{weights[name]}" for name in names]
    print(f"{'student':<{width}}  score    max  " + "".join(f"{header:>{len(header) + 2}}" for header in headers)
          + "   time  failed checks")
    for row in rows:
        maximum = "-" if row["max_score"] is None else row["max_score"]
        flags = f"  FLAGGED: {row['flags']}" if row.get("flags") else ""
        points = "".join(f"{format_points(row, name):>{len(header) + 2}}" for name, header in zip(names, headers))
        print(f"{row['student']:<{width}}  {row['score']:>5}  {maximum:>5}  {points}  {row['seconds']:>4.0f}s  "
              f"{row['failed']}{flags}")


def format_points(row, name):
    entry = row.get("categories", {}).get(name)
    return "-" if entry is None else entry[0]


def main(argv=None):
    args = parse_args(argv)
    if args.gradescope_zip or args.gradescope_run or args.classroom:
        import autograders  # only these modes need it

        return autograders.main(args)
    grade_class(args)


if __name__ == "__main__":
    main()

"""Held-out bugs: how many realistic bugs, written from the spec alone, the suite catches.

    .venv/bin/python tests/heldout.py tests/fixtures/heldout/05-a.json     # grade one batch (results: a temp folder)
    .venv/bin/python tests/heldout.py tests/fixtures/heldout/*-b.json --write-docs   # into docs/heldout/b/

A batch is a JSON file written by someone who read only the spec pages (the lessons, the
protocol reference), never tests/: a list of bugs, each {"name", "stage", "changes": [[program,
old, new], ...], "symptom"} where "symptom" is what its writer saw by hand. Each bug is planted in
a copy of its stage and graded as an instructor grades (`pytest tests --stage NN --impl DIR`):
it is caught when it loses points. Mutation testing (tests/mutation.py) measures the code's
paths; this measures the scenarios students get wrong, on bugs the suite has never seen.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from xml.etree import ElementTree

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402
from stages import REPO  # noqa: E402
from suite import copy_with_changes  # noqa: E402

DOCS = REPO / "docs" / "heldout"


def load(path):
    bugs = json.loads(Path(path).read_text())
    for bug in bugs:
        missing = {"name", "stage", "changes", "symptom"} - set(bug)
        if missing:
            raise SystemExit(f"{path}: bug {bug.get('name')!r} lacks {sorted(missing)}")
    return bugs


def grading_run(stage, work, folder, workers, every_check=False, only=()):
    """Grade `folder` (inside `work`) as an instructor does; the node ids of the checks it failed
    (by default the run stops at the first: one lost point is enough to call a bug caught)."""
    report = work / f"report-{folder.name}"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", *(only or [str(REPO / "tests")]), "--stage", stage, "--impl",
         folder.name, "-n", str(workers), "-q", "-p", "no:cacheprovider", "--report", str(report),
         "--junitxml", str(report / "junit.xml"), *([] if every_check or only else ["-x"])],
        cwd=work, capture_output=True, text=True, timeout=900)
    results_file = report / "results.json"
    if not results_file.exists():
        raise SystemExit(f"{folder}: the grading run left no results:\n{run.stdout[-3000:]}{run.stderr[-2000:]}")
    results = json.loads(results_file.read_text())
    failed = [case for case in ElementTree.parse(report / "junit.xml").iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    node_ids = [str(REPO / (case.get("classname").replace(".", "/") + ".py")) + "::" + case.get("name")
                for case in failed]
    return results, node_ids


def grade_bug(bug, work, workers, every_check):
    """Plant the bug in a copy of its stage and grade it. It is caught when it loses a point on a
    check that the stage without the bug passes, run right after: a check failed by the machine's
    load (a correct program must never lose points to it, but this is a measurement) does not
    count, and the bug is graded once more."""
    folder = copy_with_changes(bug["stage"], work / "submission", [tuple(change) for change in bug["changes"]])
    clean = copy_with_changes(bug["stage"], work / "clean", [])
    for _attempt in range(2):
        results, failed_ids = grading_run(bug["stage"], work, folder, workers, every_check)
        failed = [test["name"] for test in report.checks(results["tests"]) if test["status"] == "failed"]
        if not failed:
            break
        _, failed_clean = grading_run(bug["stage"], work, clean, workers, only=failed_ids)
        if set(failed_clean) != set(failed_ids):  # some check failed only because of the bug
            break
        shutil.rmtree(work / f"report-{folder.name}")
        shutil.rmtree(work / f"report-{clean.name}")
        failed = []  # every failure was the machine's: not caught, unless the next run says so
    return {"name": bug["name"], "stage": bug["stage"], "symptom": bug["symptom"],
            "caught": bool(failed), "failed": failed, "score": results["score"],
            "max_score": results["max_score"]}


def commit():
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "stages", "tests"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    return head.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def table(batches):
    """A markdown table per stage: each bug, caught or not, by which checks."""
    rows = ["| Batch | Stage | Bug | Caught | Lost points on (the first, unless --every-check) |",
            "| --- | --- | --- | --- | --- |"]
    for batch, results in batches.items():
        for result in results:
            checks = "; ".join(result["failed"][:3]) + (f"; and {len(result['failed']) - 3} more"
                                                        if len(result["failed"]) > 3 else "")
            rows.append(f"| {batch} | {result['stage']} | {result['name']} | "
                        f"{'yes' if result['caught'] else '**no**'} | {checks or '-'} |")
    return "\n".join(rows) + "\n"


def summary(batches):
    lines = []
    for batch, results in batches.items():
        caught = sum(result["caught"] for result in results)
        lines.append(f"- **{batch}**: {caught} of {len(results)} caught "
                     f"({100 * caught / len(results):.0f} %)")
    return "\n".join(lines) + "\n"


def batch_letter(paths):
    """The batch's letter: "b" for 02-b.json, 05-b.json... (one writer per stage each term)."""
    letters = {Path(path).stem.rsplit("-", 1)[-1] for path in paths}
    if len(letters) != 1:
        raise SystemExit(f"grade one batch at a time (02-b.json, 05-b.json...), not {sorted(letters)}")
    return letters.pop()


def main():
    parser = argparse.ArgumentParser(description="Grade batches of held-out bugs with the suite.")
    parser.add_argument("batches", nargs="+", help="JSON files of bugs (tests/fixtures/heldout/)")
    parser.add_argument("--out", type=Path, help="where the results go (default: a new temporary folder)")
    parser.add_argument("--write-docs", action="store_true", help=f"write the results into {DOCS.relative_to(REPO)}/")
    parser.add_argument("--every-check", action="store_true",
                        help="grade every check of each bug, not only until the first it fails")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)) + 1,
                        help="pytest-xdist workers per grading run")
    args = parser.parse_args()
    letter = batch_letter(args.batches)
    out = DOCS / letter if args.write_docs else (args.out or Path(tempfile.mkdtemp(prefix="heldout-")))
    out.mkdir(parents=True, exist_ok=True)
    started, graded_at = time.monotonic(), commit()  # the code the bugs are graded against
    batches = {}
    with tempfile.TemporaryDirectory() as scratch:
        for path in args.batches:
            batch = Path(path).stem
            batches[batch] = []
            for number, bug in enumerate(load(path)):
                work = Path(scratch) / f"{batch}-{number}"
                work.mkdir()
                result = grade_bug(bug, work, args.workers, args.every_check)
                batches[batch].append(result)
                print(f"{batch} {number + 1:2}: {'caught' if result['caught'] else 'MISSED'}  {bug['name']}",
                      flush=True)
    record = {"command": ".venv/bin/python tests/heldout.py " + " ".join(sys.argv[1:]),
              "date": date.today().isoformat(), "commit": graded_at,
              "machine": f"{len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}",
              "seconds": round(time.monotonic() - started), "batches": batches}
    (out / "results.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    (out / "table.md").write_text(
        f"# Held-out bugs: batch {letter}\n\nEach bug of `tests/fixtures/heldout/*-{letter}.json`, planted in a "
        "copy of its stage and graded by `tests/heldout.py` (the figures and what became of the misses: "
        "[instructors' guide](../../instructors.md#bugs-the-suite-has-never-seen)).\n\n" + table(batches))
    (out / "summary.md").write_text(
        f"Measured {record['date']}, commit {record['commit']}, with `{record['command']}` "
        f"({record['machine']}, {record['seconds']} s):\n\n" + summary(batches))
    print(summary(batches), end="")
    print(f"results in {out}")


if __name__ == "__main__":
    main()

"""Held-out bugs: how many realistic bugs, written from the spec alone, the suite catches.

    .venv/bin/python tests/heldout.py tests/fixtures/heldout/05-a.json     # grade one batch (results: a temp folder)
    .venv/bin/python tests/heldout.py tests/fixtures/heldout/*-b.json --write-docs   # the published figure

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
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
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


def grade_bug(bug, work, workers, every_check):
    """Plant the bug in a copy of its stage and grade it; the checks it failed (by default
    the run stops at the first: one lost point is enough to call it caught)."""
    folder = work / "submission"
    copy_with_changes(bug["stage"], folder, [tuple(change) for change in bug["changes"]])
    report = work / "report"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "tests"), "--stage", bug["stage"], "--impl",
         folder.name, "-n", str(workers), "-q", "-p", "no:cacheprovider", "--report", str(report),
         *([] if every_check else ["-x"])],
        cwd=work, capture_output=True, text=True, timeout=900)
    results_file = report / "results.json"
    if not results_file.exists():
        raise SystemExit(f"{bug['name']}: the grading run left no results:\n{run.stdout[-3000:]}{run.stderr[-2000:]}")
    results = json.loads(results_file.read_text())
    failed = [test["name"] for test in results["tests"] if test["status"] == "failed"]
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
    out = DOCS if args.write_docs else (args.out or Path(tempfile.mkdtemp(prefix="heldout-")))
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
        "# Held-out bugs: the first batches\n\nEach bug of `tests/fixtures/heldout/*-a.json`, planted in a "
        "copy of its stage and graded by `tests/heldout.py` (the figures and what became of the misses: "
        "[instructors' guide](../instructors.md#bugs-the-suite-has-never-seen)).\n\n" + table(batches))
    (out / "summary.md").write_text(
        f"Measured {record['date']}, commit {record['commit']}, with `{record['command']}` "
        f"({record['machine']}, {record['seconds']} s):\n\n" + summary(batches))
    print(summary(batches), end="")
    print(f"results in {out}")


if __name__ == "__main__":
    main()

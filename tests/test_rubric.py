"""The rubric (tests/categories.py): every check in a category, and every report adding up.

A category's points are its weight times the share of its checks' points that passed,
rounded down; the score is the sum of the categories' points, in every report: grade.py's
table and grades.csv, the class summary, summary.txt, Gradescope's results.json and GitHub
Classroom's payload. A weights file changes the weights as it states.
"""

import csv
import json
import re
import subprocess
import sys

import pytest

import categories
import report
from autograders import classroom_payload
from known_bad import BUGS
from stages import REPO
from suite import copy_of_stage

GRADE = [sys.executable, str(REPO / "tests" / "grade.py")]
LOST_CONNECTION_BUG = next(bug for bug in BUGS if bug.name == "a server that stops after its first client")


def check(name, category, points, passed):
    return {"name": f"05 · {name}", "number": name, "score": 0, "max_score": 0,
            "status": "passed" if passed else "failed", "output": "" if passed else f"{name} failed",
            "visibility": "visible", "tags": [category], "extra_data": {"points": points}}


def test_a_category_is_its_weight_times_the_share_passed_rounded_down():
    results = [check("a", "delivery", 3, True), check("b", "delivery", 1, False),   # 3 of 4 points
               check("c", "running", 1, True), check("d", "running", 1, True),      # all
               check("e", "limits", 1, True)]
    chosen = {**categories.weights(), "limits": 0}  # weight 0: left out of the score
    entries = report.rubric_entries(results, chosen)
    assert [(entry["extra_data"]["category"], entry["score"], entry["max_score"]) for entry in entries] == \
        [("delivery", 18, 25), ("running", 10, 10)]  # 25 * 3 / 4 = 18.75, rounded down
    assert entries[0]["status"] == "failed" and "05 · b" in entries[0]["output"]
    whole = report.gradescope(entries + results)
    assert whole["score"] == 28 and whole["max_score"] == 35
    assert "delivery: 18 / 25 (1 of 2 checks passed)" in whole["output"]
    payload = classroom_payload(entries + results)  # the reporter adds up every entry's score
    assert sum(entry["score"] for entry in payload["tests"]) == 28 and payload["max_score"] == 35


def test_any_failed_check_costs_at_least_a_point():
    """However many checks share a category, one failing loses a whole point of it."""
    for count in (5, 10, 100, 1000):
        results = [check(f"c{n}", "robustness", 1, n > 0) for n in range(count)]
        [entry] = report.rubric_entries(results, categories.weights())
        assert entry["score"] == categories.CATEGORIES["robustness"].weight - 1


def test_a_weights_file_states_whole_numbers_for_known_categories(tmp_path):
    good = tmp_path / "rubric.txt"
    good.write_text("# our course\ndelivery = 40\n\nrunning = 0  # not graded this term\n")
    chosen = categories.weights(good)
    assert chosen["delivery"] == 40 and chosen["running"] == 0 and chosen["names"] == categories.CATEGORIES["names"].weight
    for text in ("delivery: 40\n", "delivery = 2.5\n", "deliveries = 4\n"):
        good.write_text(text)
        with pytest.raises(ValueError, match="line 1"):
            categories.weights(good)
    bad = subprocess.run([*GRADE, "--stage", "01", "--weights", str(good), str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "usage:" in bad.stderr and "--weights" in bad.stderr


def test_every_category_of_a_check_is_in_the_rubric():
    for module, category in categories.BY_MODULE.items():
        assert category in categories.CATEGORIES, module
        # test_planted: the module tests/test_failure_reports.py writes into a folder of its own
        assert (REPO / "tests" / f"{module}.py").is_file() or module == "test_planted", module
    for name, category in categories.BY_CHECK.items():
        assert category in categories.CATEGORIES, name


@pytest.mark.slow  # two gradings of stage 01
def test_grade_py_shows_category_totals_that_add_up_and_a_weights_file_changes_them(tmp_path):
    folders = [copy_of_stage("01", tmp_path / "class" / "good"),
               copy_of_stage("01", tmp_path / "class" / "bad", LOST_CONNECTION_BUG.old, LOST_CONNECTION_BUG.new)]
    weights = tmp_path / "rubric.txt"
    weights.write_text("leaving = 30\nrunning = 0\n")
    out = tmp_path / "grading"
    ran = subprocess.run([*GRADE, "--stage", "01", "--out", str(out), "--weights", str(weights), *map(str, folders)],
                         capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    header = next(line for line in ran.stdout.splitlines() if line.startswith("student"))
    assert "leaving /30" in header and "delivery /25" in header and "running" not in header, header
    rows = {row["student"]: row for row in csv.DictReader(open(out / "grades.csv"))}
    for name, row in rows.items():
        results = json.loads((out / name / "results.json").read_text())
        entries = [test for test in results["tests"] if report.is_rubric(test)]
        by_category = {entry["extra_data"]["category"]: entry for entry in entries}
        assert sum(entry["score"] for entry in entries) == results["score"] == int(row["score"])
        assert sum(test["score"] for test in results["tests"]) == results["score"]  # as Gradescope adds up
        assert by_category["leaving"]["max_score"] == 30 and "running" not in by_category
        assert all(int(row[category]) == entry["score"] for category, entry in by_category.items())
        table_row = next(line for line in ran.stdout.splitlines() if line.startswith(name + " "))
        assert re.match(rf"{name}\s+{row['score']}\s+{row['max_score']}\s", table_row), table_row
    assert rows["good"]["score"] == rows["good"]["max_score"]
    assert int(rows["bad"]["leaving"]) < 30 and int(rows["bad"]["score"]) < int(rows["bad"]["max_score"])
    summary = (out / "class-summary.md").read_text()
    lost = summary.split("## Points lost by category", 1)[1]
    assert "The class lost most in **" in lost
    worst = re.search(r"lost most in \*\*(.+?)\*\*", lost).group(1)
    assert re.search(rf"^\| {worst} \| \d+ \| [\d.]+ \| [1-9]\d* % \|$", lost, re.M), lost

"""Grading reports: points per check, a plain-text summary and Gradescope's results.json.

conftest.py calls these. Each check's weight and one-line description come from its
@pytest.mark.points(weight, "description") marker, and its category from the rubric
(tests/categories.py). Each category gets an entry of its own, worth its weight times the
share of its checks' points that passed (rounded down); the score is the sum of those
entries, and the checks' entries carry no points of their own (their points, inside their
category, stay in extra_data). Partial credit comes only from separate checks.
"""

import json
from pathlib import Path

import categories
from harness import REPORT_CHARS, TRANSCRIPTS_CHARS, capped

CHECK_OUTPUT_CHARS = REPORT_CHARS + TRANSCRIPTS_CHARS + 2_000  # one check's output: under 20 KB

# The fields of a Gradescope autograder result, as Gradescope documents them.
GRADESCOPE_STATUSES = {"passed", "failed"}
GRADESCOPE_VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}


def check_result(report, hide_expected):
    """One check's entry for the reports, from a pytest report that carries user_properties."""
    props = dict(report.user_properties)
    passed = report.passed
    if passed:
        output = ""
    elif hide_expected:
        output = "This check failed. Run it yourself to see what it expected and what it got."
    else:
        said = props.get("cause_detail")  # the check that found a broken gate: the cause, then what it saw
        said = f"{props['cause']}\n{said}" if said else report.longreprtext
        output = said + "".join(f"\n--- {title} ---\n{text}" for title, text in report.sections
                                if title.startswith("transcript") or title == "replay")
    if props.get("not_run") and not passed:
        output = props["not_run"]
    output = capped(output, lines=CHECK_OUTPUT_CHARS, chars=CHECK_OUTPUT_CHARS, keep="head")
    result = {
        "name": f"{props['stage']} · {props['description']}",
        "number": report.nodeid.split("::", 1)[1],
        "score": 0,  # the points are the categories' (rubric_entries)
        "max_score": 0,
        "status": "passed" if passed else "failed",
        "output": output,
        "visibility": "visible",
        "tags": [props["category"]],  # Gradescope's field; the rubric's category (tests/categories.py)
    }
    # Gradescope keeps a test's extra_data for tools: the check's own points (its weight inside
    # its category), which check found a broken gate (harness.Session.gate), and which were
    # not run because of it.
    result["extra_data"] = {"points": props["points"],
                            **{key: props[key] for key in ("cause", "not_run") if key in props and not passed}}
    return result


def extra(result, key):
    return result.get("extra_data", {}).get(key)


def causes(results):
    """The causes found (each once), and how many checks were not run because of them."""
    found = list(dict.fromkeys(extra(result, "cause") for result in results if extra(result, "cause")))
    return found, sum(1 for result in results if extra(result, "not_run"))


def cause_lines(results):
    found, not_run = causes(results)
    lines = [f"CAUSE: {cause}" for cause in found]
    if not_run:
        lines.append(f"{not_run} checks that need it were not run (FAIL, marked 'not run' below).")
    return lines


RUBRIC = "rubric"  # the tag of the categories' own entries


def is_rubric(result):
    return result.get("tags") == [RUBRIC]


def checks(results):
    """The checks' entries, without the categories'."""
    return [result for result in results if not is_rubric(result)]


def rubric_entries(results, weights):
    """One entry per category: its points out of its weight, and the checks it lost them on."""
    entries = []
    for index, (name, points, weight, passed, count) in enumerate(categories.totals(results, weights)):
        failed = [result["name"] for result in results if result["tags"] == [name] and result["status"] != "passed"]
        entries.append({
            "name": f"category: {name} ({passed} of {count} checks passed)", "number": f"00-{index:02}",
            "score": points, "max_score": weight, "status": "passed" if points == weight else "failed",
            "output": "\n".join(["Lost on:", *failed]) if failed else "Every check passed.",
            "visibility": "visible", "tags": [RUBRIC],
            "extra_data": {"category": name, "passed": passed, "checks": count}})
    return entries


def category_lines(results):
    """The rubric: each category's points, out of its weight, and its checks passed."""
    return [f"{entry['extra_data']['category']}: {entry['score']} / {entry['max_score']} "
            f"({entry['extra_data']['passed']} of {entry['extra_data']['checks']} checks passed)"
            for entry in results if is_rubric(entry)]


def gradescope(results, seed_line=""):
    return {
        "score": sum(result["score"] for result in results),
        "max_score": sum(result["max_score"] for result in results),
        "output": "\n".join([*cause_lines(results), *category_lines(results), seed_line]).strip(),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": results,
    }


def summary(results, seed_line=""):
    lines = cause_lines(results) + ([seed_line] if seed_line else [])
    for result in checks(results):
        mark = "PASS" if result["status"] == "passed" else "FAIL"
        why = " (not run)" if extra(result, "not_run") else ""
        lines.append(f"{mark}  [{result['tags'][0]}, {result['extra_data']['points']}] {result['name']}{why}")
    lines += ["", "by category (a category's points: its weight times the share of its checks' points "
                  "passed, rounded down):", *(f"  {line}" for line in category_lines(results))]
    score = sum(result["score"] for result in results)
    total = sum(result["max_score"] for result in results)
    lines.append(f"score: {score} / {total}")
    return "\n".join(lines) + "\n"


def write(folder, results, seed_line="", weights=None):
    """summary.txt and results.json in `folder`; `weights`: the rubric's (categories.weights())."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    results = sorted(results, key=lambda result: result["number"])
    results = rubric_entries(results, weights or categories.weights()) + results
    (folder / "results.json").write_text(json.dumps(gradescope(results, seed_line), indent=2) + "\n")
    (folder / "summary.txt").write_text(summary(results, seed_line))


def validate_gradescope(data):
    """The problems with a results.json against Gradescope's documented fields (an empty list: none)."""
    problems = []
    for key, kind in (("score", (int, float)), ("tests", list)):
        if not isinstance(data.get(key), kind):
            problems.append(f"top level: '{key}' must be {kind}")
    # Optional at the top level, but typed when present.
    for key, kind in (("max_score", (int, float)), ("execution_time", (int, float)), ("output", str),
                      ("stdout_visibility", str)):
        if key in data and not isinstance(data[key], kind):
            problems.append(f"top level: '{key}' must be {kind}")
    if data.get("stdout_visibility", "hidden") not in GRADESCOPE_VISIBILITIES:
        problems.append("top level: stdout_visibility is not allowed")
    for number, test in enumerate(data.get("tests", [])):
        for key, kind in (("name", str), ("number", str), ("score", (int, float)), ("max_score", (int, float)),
                          ("status", str), ("output", str), ("visibility", str)):
            if not isinstance(test.get(key), kind):
                problems.append(f"tests[{number}]: '{key}' must be {kind}")
        if test.get("status") not in GRADESCOPE_STATUSES:
            problems.append(f"tests[{number}]: status {test.get('status')!r} is not one of {GRADESCOPE_STATUSES}")
        if test.get("visibility") not in GRADESCOPE_VISIBILITIES:
            problems.append(f"tests[{number}]: visibility {test.get('visibility')!r} is not allowed")
        if isinstance(test.get("score"), (int, float)) and test["score"] > test.get("max_score", 0):
            problems.append(f"tests[{number}]: score above max_score")
    if data.get("visibility", "visible") not in GRADESCOPE_VISIBILITIES:
        problems.append("top level: visibility is not allowed")
    return problems

"""The committed mutation-testing report (docs/mutation/) is the tool's output, and its equivalents still apply.

Fast: nothing here runs cosmic-ray or a stage. tests/mutation.py measures; these only read files.
"""

import copy
import json

import mutation
from stages import REPO

RESULTS = mutation.DOCS / "results.json"


def test_the_report_is_rendered_from_results_json():
    results = json.loads(RESULTS.read_text())
    assert (mutation.DOCS / "report.md").read_text() == mutation.render(results), \
        "docs/mutation/report.md differs from results.json: run python tests/mutation.py --report docs/mutation"


def test_the_score_in_the_instructors_guide_is_rendered_from_results_json():
    results = json.loads(RESULTS.read_text())
    assert (mutation.DOCS / "score.md").read_text() == mutation.render_score(results), \
        "docs/mutation/score.md differs from results.json: run python tests/mutation.py --report docs/mutation"
    assert '--8<-- "docs/mutation/score.md"' in (mutation.REPO / "docs" / "instructors.md").read_text()


def test_the_results_are_judged_with_the_current_equivalents_file():
    """An entry added to (or taken from) tests/mutation_equivalent.json must show in the committed report."""
    results = json.loads(RESULTS.read_text())
    rejudged = mutation.judge(copy.deepcopy(results), mutation.load_equivalents())
    assert rejudged == results, \
        "results.json was judged with another tests/mutation_equivalent.json: run python tests/mutation.py --report docs/mutation"


def test_every_equivalent_mutant_still_matches_its_source_line():
    """An edit to a stage can make a mutant judged equivalent a real one: the entry must then be looked at again.

    The entry's `before` is the mutated line as it was; it must still be in the stage, at `line` when the
    same text occurs more than once (where it is elsewhere, the entry is ambiguous)."""
    for entry in mutation.load_equivalents():
        where = f"{entry['stage']}/{entry['program']}:{entry['line']} ({entry['operator']})"
        assert entry["reason"].strip(), f"{where}: an equivalent mutant needs a reason"
        assert entry["before"] != entry["after"], f"{where}: before and after are the same"
        lines = [line.strip() for line in (REPO / "stages" / entry["stage"] / entry["program"]).read_text().splitlines()]
        wanted = entry["before"].split("\n")
        starts = [i + 1 for i in range(len(lines)) if lines[i:i + len(wanted)] == wanted]
        assert starts, (f"{where}: {entry['before']!r} is no longer in the stage. Was it changed? Judge the mutant "
                        "again, then update or remove its entry in tests/mutation_equivalent.json")
        if len(starts) > 1:
            assert entry["line"] in starts, (f"{where}: {entry['before']!r} is at lines {starts}, not at "
                                             f"{entry['line']}: which one is the entry about?")


def test_equivalent_entries_are_unique_and_complete():
    entries = mutation.load_equivalents()
    for entry in entries:
        assert set(entry) == {"stage", "program", "line", "operator", "before", "after", "reason"}, entry
    keys = [mutation.key(entry) for entry in entries]
    assert len(keys) == len(set(keys)), "an equivalent mutant is listed twice in tests/mutation_equivalent.json"

"""The held-out bug batches (tests/fixtures/heldout/, graded by tests/heldout.py) stay usable.

Each batch was written from the spec pages alone, and each bug shown misbehaving by hand
(docs/instructors.md, "Bugs the suite has never seen"). A stage edit that moves a bug's code
must fail here, in the default run, so that the batch is looked at again rather than lost.
"""

import json

import pytest

from heldout import load
from stages import BY_ID, REPO

BATCHES = sorted((REPO / "tests" / "fixtures" / "heldout").glob("*.json"))
BUGS = [(path.stem, bug) for path in BATCHES for bug in load(path)]


def test_there_are_batches_for_the_measured_stages():
    stages = {bug["stage"] for _, bug in BUGS}
    assert {"02", "05", "09"} <= stages, f"held-out batches cover only stages {sorted(stages)}"


@pytest.mark.parametrize("batch, bug", BUGS, ids=[f"{batch}-{number}" for number, (batch, _) in enumerate(BUGS)])
def test_each_held_out_bug_still_matches_its_stage(batch, bug):
    assert bug["stage"] in BY_ID and bug["symptom"].strip() and bug["breaks"].strip(), bug["name"]
    for program, old, new in bug["changes"]:
        source = (BY_ID[bug["stage"]].folder / program).read_text()
        assert old != new and source.count(old) == 1, (
            f"{batch}: '{bug['name']}': its code is in stages/{bug['stage']}/{program} "
            f"{source.count(old)} times, not once; update tests/fixtures/heldout/{batch}.json")


def test_a_batch_is_plain_json_with_one_entry_per_bug():
    for path in BATCHES:
        bugs = json.loads(path.read_text())
        names = [bug["name"] for bug in bugs]
        assert len(names) == len(set(names)), f"{path.name}: two bugs share a name"

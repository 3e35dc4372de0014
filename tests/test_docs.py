"""The site cannot drift from the code: lessons, included code, recorded transcripts, rendering."""

import html
import json
import os
import re
import subprocess
import sys

import pytest
from mkdocs.config import load_config

import bench
import contract
import known_bad
import record
import screenshot
from stages import BY_ID, REPO, STAGES

TEMPLATE = ["Goal", "Run it", "What changed", "Walk-through", "Message flow",
            "Pitfalls this stage handles", "What the tests check", "Exercises", "Check your work"]


def lesson_for(stage_id):
    found = sorted((REPO / "lessons").glob(f"{stage_id}-*.md"))
    assert found, f"stage {stage_id} has no lesson: add lessons/{stage_id}-<slug>.md"
    return found[0]


def nav_pages(nav):
    for entry in nav:
        if isinstance(entry, str):
            yield entry
        else:
            for value in entry.values():
                yield from nav_pages(value if isinstance(value, list) else [value])


def test_every_stage_has_a_lesson_in_the_nav():
    nav = list(nav_pages(load_config(str(REPO / "mkdocs.yml"))["nav"]))
    stage_ids = sorted(path.name for path in (REPO / "stages").iterdir() if path.is_dir())
    assert stage_ids == [stage.id for stage in STAGES], "every stage folder is declared in tests/stages.py"
    for stage_id in stage_ids:
        page = f"lessons/{lesson_for(stage_id).name}"
        assert page in nav, f"{page} is not in mkdocs.yml's nav, so readers cannot reach it"


@pytest.mark.parametrize("stage_id", [stage.id for stage in STAGES])
def test_lesson_follows_the_template(stage_id):
    text = lesson_for(stage_id).read_text()
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert headings == TEMPLATE, f"the lesson's sections are {headings}, the template's {TEMPLATE}"
    assert f'--8<-- "stages/{stage_id}/' in text, "the walk-through includes no code from the stage"
    assert f'--8<-- "docs/transcripts/{stage_id}/' in text, "'Run it' shows no recorded transcript"
    assert "```mermaid" in text, "no message-flow diagram"
    assert f"--stage {stage_id}" in text, "'Check your work' does not give the test command"
    before = [stage for stage in STAGES if stage.id < stage_id][-1:]
    if before and before[0].programs == BY_ID[stage_id].programs:  # a new kind of program (07's peer) has no diff
        assert f"<!-- diff stages/" in text and f"stages/{stage_id}/" in text, "'What changed' has no generated diff"


def test_no_python_is_pasted_into_the_docs():
    """Every Python block is included from a real file, so it is the code that runs and is tested."""
    pages = [*(REPO / "lessons").glob("*.md"), *(REPO / "docs").glob("*.md")]
    for page in pages:
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.DOTALL):
            lines = [line.strip() for line in block.strip().splitlines()]
            assert all(line.startswith("--8<--") for line in lines), \
                f"{page.relative_to(REPO)} pastes Python instead of including it:\n{block}"


def test_the_benchmark_figures_on_the_site_are_the_tools_output():
    """docs/measuring.md shows docs/bench/: tables rendered by tests/bench.py from its own results.json."""
    folder = REPO / "docs" / "bench"
    data = json.loads((folder / "results.json").read_text())
    assert (folder / "table.md").read_text() == bench.markdown(data), \
        "docs/bench/table.md differs from results.json: run python tests/bench.py --report docs/bench"
    assert (folder / "targets.md").read_text() == bench.targets(data), \
        "docs/bench/targets.md differs from results.json: run python tests/bench.py --report docs/bench"
    assert (folder / "models.md").read_text() == bench.models(data), \
        "docs/bench/models.md differs from results.json: run python tests/bench.py --report docs/bench"
    assert '--8<-- "docs/bench/models.md"' in (REPO / "lessons" / "08-asyncio.md").read_text(), \
        "lesson 08 should show the three models' measured figures (docs/bench/models.md)"
    page = (REPO / "docs" / "measuring.md").read_text()
    for name in ("table.md", "targets.md"):
        assert f'--8<-- "docs/bench/{name}"' in page, f"docs/measuring.md does not include docs/bench/{name}"
    for name in ("throughput", "p99", "memory"):
        assert (folder / f"{name}.svg").is_file() and f"(bench/{name}.svg)" in page, f"{name}.svg is not on the page"
    stages = {row["stage"] for row in data["results"]}
    assert {"base", "02", "03", "04", "05", "08"} <= stages, f"the committed run misses stages: {sorted(stages)}"


def test_the_kill_rate_in_the_instructors_guide_is_counted_from_known_bad():
    caught, total = len(known_bad.BUGS), len(known_bad.BUGS) + len(known_bad.NOT_CAUGHT)
    claim = f"Kill rate: {caught} of {total} known-bad implementations caught ({round(100 * caught / total)} %)"
    guide = (REPO / "docs" / "instructors.md").read_text()
    assert claim in guide, f"docs/instructors.md should say {claim!r}, as tests/known_bad.py counts it"
    table = guide[guide.index("| Planted bug | Stage | Caught by |"):].split("\n\n")[0].splitlines()[2:]
    assert sorted(row.split(" | ")[1] for row in table) == sorted(bug.stage for bug in known_bad.BUGS), \
        "the guide's table of planted bugs should have one row per Bug in tests/known_bad.py"


@pytest.mark.parametrize("stage_id", sorted(record.SCENARIOS))
def test_recorded_transcripts_match_what_the_stage_does(stage_id):
    folder = REPO / "docs" / "transcripts" / stage_id
    committed = {path.name: path.read_text() for path in folder.glob("*.txt")}
    fresh = {record.file_name(label): text for label, text in record.record(stage_id).items()}
    assert sorted(fresh) == sorted(committed), "the scenario's terminals changed: run python tests/record.py"
    for name, text in fresh.items():
        assert text == committed[name], (
            f"docs/transcripts/{stage_id}/{name} no longer matches what stage {stage_id} does.\n"
            f"If the change is intended, run: python tests/record.py {stage_id}\n"
            f"--- recorded now ---\n{text}--- committed ---\n{committed[name]}")


@pytest.mark.parametrize("stage_id", sorted(record.WIRE_SCENARIOS))
def test_recorded_wire_sessions_match_what_the_server_sends(stage_id):
    committed = (REPO / "docs" / "transcripts" / f"wire-{stage_id}.txt").read_text()
    assert record.record_wire(stage_id) == committed, (
        f"docs/transcripts/wire-{stage_id}.txt (shown in docs/protocol.md) no longer matches "
        f"what stage {stage_id}'s server sends: run python tests/record.py {stage_id}")


def skeleton(report):
    """A failure report without the terminals' lines, whose order varies with timing from run to run:
    what stays is the failing check's code, its expected/received lines and the section labels."""
    kept, in_transcript = [], False
    for line in report.splitlines():
        if line.startswith("-") and "transcript [" in line:
            in_transcript = True
            kept.append(line)
        elif not in_transcript and not line.startswith("E           |"):
            kept.append(re.sub(r"\.py:\d+:", ".py:N:", line))  # a line number moves with any edit above it
    return kept


@pytest.mark.slow  # a grading run in a subprocess
def test_recorded_failure_report_matches_what_the_suite_prints():
    committed = (REPO / "docs" / "transcripts" / "failure-report.txt").read_text()
    assert skeleton(record.failure_report()) == skeleton(committed), (
        "docs/transcripts/failure-report.txt (shown in docs/testing.md) is out of date: "
        "run python tests/record.py")


def grading_rows(table):
    """What is certain in a grading table: each student's maximum, and the full row of a clean
    submission. A buggy one fails a set of checks that can vary with timing (a missing framing
    shows only when TCP happens to split the data), so only its loss of points is kept."""
    rows = []
    for line in table.splitlines()[3:-1]:
        student, score, maximum, _, failed = line.split(None, 4)
        rows.append((student, maximum, score if failed == "-" else int(score) < int(maximum)))
    return [table.splitlines()[:3], rows, table.splitlines()[-1]]


@pytest.mark.slow
def test_recorded_grading_example_matches_what_grade_py_prints():
    table, summary = record.grading_example()
    committed = (REPO / "docs" / "transcripts" / "grading-table.txt").read_text()
    assert grading_rows(table) == grading_rows(committed), \
        "docs/transcripts/grading-table.txt is out of date: run python tests/record.py"
    assert summary.splitlines()[-1].split("/")[1] == \
        (REPO / "docs" / "transcripts" / "grading-summary.txt").read_text().splitlines()[-1].split("/")[1], \
        "docs/transcripts/grading-summary.txt is out of date: run python tests/record.py"


def test_site_builds_strictly(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                            cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr
    for stage in STAGES:  # each lesson, as built, states every term of its stage's contract
        page = (tmp_path / "site" / "lessons" / lesson_for(stage.id).stem / "index.html").read_text()
        missing = [key for key, term in stage.client_class.terms.items()
                   if html.escape(contract.shown(term.text).strip(), quote=False) not in page]
        assert not missing, f"lesson {stage.id}'s page does not show these contract terms: {missing}"


@pytest.mark.slow  # about 20 s of browser time: CI runs it in its second step, python -m pytest --slow -m slow
@pytest.mark.skipif(screenshot.chromium() is None, reason="chromium is not installed (apt-get install chromium)")
def test_pages_render_and_every_diagram_draws_in_chromium():
    results = screenshot.check_site()  # no screenshots: python tests/screenshot.py makes them
    problems = {page: problems for page, (_, _, problems) in results.items() if problems}
    assert not problems, f"pages that did not render right: {problems}"
    assert all(total >= 1 for _, total, _ in results.values()), "a page lost its diagram"

"""The site cannot drift from the code: lessons, included code, recorded transcripts, rendering."""

import fcntl
import html
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from mkdocs.config import load_config

import bench
import contract
import known_bad
import record
from stages import BY_ID, REPO, STAGES

TEMPLATE = ["Goal", "Run it", "What changed", "Walk-through", "Message flow",
            "Pitfalls this stage handles", "What the tests check", "Exercises", "Check your work",
            "Recap"]
OPTIONAL = {"Going further": "Pitfalls this stage handles"}  # an optional section, and the one it follows


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
    for optional, after in OPTIONAL.items():
        if optional in headings:
            assert headings.index(optional) == headings.index(after) + 1, \
                f"'{optional}' belongs right after '{after}': {headings}"
            headings.remove(optional)
    assert headings == TEMPLATE, f"the lesson's sections are {headings}, the template's {TEMPLATE}"
    assert f'--8<-- "stages/{stage_id}/' in text, "the walk-through includes no code from the stage"
    assert f'--8<-- "docs/transcripts/{stage_id}/' in text, "'Run it' shows no recorded transcript"
    assert "```mermaid" in text, "no message-flow diagram"
    assert f"--stage {stage_id}" in text, "'Check your work' does not give the test command"
    before = [stage for stage in STAGES if stage.id < stage_id][-1:]
    if before and before[0].programs == BY_ID[stage_id].programs:  # a new kind of program (08's peer) has no diff
        assert f"<!-- diff stages/" in text and f"stages/{stage_id}/" in text, "'What changed' has no generated diff"


def section(text, heading):
    """The body of a lesson's `## heading` section, up to the next `## `."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"no '## {heading}' section"
    return match.group(1)


LEAN = [stage.id for stage in STAGES if stage.has("chat") and not stage.has("join_deadline")]


def not_handled_box(stage_id):
    """The body of lesson NN's "Not handled here" admonition (tests/test_tryits.py runs its try-it)."""
    text = lesson_for(stage_id).read_text()
    match = re.search(r'^!!! \w+ "Not handled here"\n((?:    .*\n|\n)+)', text, re.MULTILINE)
    assert match, f'lesson {stage_id} has no `!!! warning "Not handled here"` box'
    return match.group(1)


def run_the_tests_command(path):
    """The first ```bash block under "## Run the tests" (what .ci/run runs, with awk)."""
    text = (REPO / path).read_text()
    section_text = text[text.index("## Run the tests"):]
    return re.search(r"```bash\n(.*?)```", section_text, re.DOTALL).group(1)


def test_the_readme_test_command_works_on_a_fresh_debian():
    """Stock Debian and Ubuntu have `python3`, not `python`, and refuse a system-wide pip: the
    command makes its own virtual environment. Getting started gives the same command, and
    .ci/run runs the README's own (it finds it with awk), so the three cannot drift apart."""
    command = run_the_tests_command("README.md")
    assert command == run_the_tests_command("docs/getting-started.md"), "Getting started gives another command"
    assert command.startswith("python3 -m venv .venv &&"), "the command does not make its own venv"
    programs = [part.split()[0] for part in command.replace("\\\n", " ").split("&&")]
    assert all(program in ("python3", ".venv/bin/python") for program in programs), \
        f"a fresh Debian has no bare python or pip: {programs}"
    ci = (REPO / ".ci" / "run").read_text()
    awk = re.search(r"\$\(awk '(.*?)' README.md\)", ci, re.DOTALL)
    assert awk, ".ci/run does not take its test command from the README"
    found = subprocess.run(["awk", awk.group(1), "README.md"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout
    assert found == command, f".ci/run would run {found!r}, not the README's command"
    assert "pip install" not in ci.replace(command, ""), ".ci/run installs the test packages itself"


def test_no_command_on_the_site_needs_nc():
    """Stock Debian and Ubuntu have no netcat: every command the site gives uses docs/nc.py,
    the kit's stand-in (the try-its that use it run in tests/test_tryits.py)."""
    pages = [*sorted((REPO / "lessons").glob("*.md")), *sorted((REPO / "docs").rglob("*.md"))]
    needing = [f"{page.relative_to(REPO)}: {line.strip()}" for page in pages
               for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", page.read_text(), re.DOTALL)
               for line in block.splitlines() if re.search(r"(^|[|;&(]|\$)\s*nc\s", line)]
    assert not needing, "these commands need nc:\n" + "\n".join(needing)


def test_no_command_on_the_site_needs_a_bare_python():
    """Stock Debian and Ubuntu have `python3`, not `python`: a stage runs with `python3`, and the
    tools with `.venv/bin/python`, the virtual environment the README's test command makes."""
    pages = [REPO / "README.md", *sorted((REPO / "lessons").glob("*.md")), *sorted((REPO / "docs").rglob("*.md"))]
    bare = [f"{page.relative_to(REPO)}: {line.strip()}" for page in pages
            for block in re.findall(r"```(?:bash|sh|console|text)[^\n]*\n(.*?)```", page.read_text(), re.DOTALL)
            for line in block.splitlines()
            if re.search(r"(^|[|;&(]|\$|--)\s*python\s", line)]
    assert not bare, "these commands need a bare python:\n" + "\n".join(bare)


@pytest.mark.parametrize("stage_id", LEAN)
def test_a_lean_lesson_says_what_it_leaves_out(stage_id):
    """Stages without the defences (02-05) say so in a "Not handled here" box: the attacks they do not
    survive, a link to lesson 06, and a try-it that shows a failure."""
    assert LEAN == ["02", "03", "04", "05"], LEAN
    box = not_handled_box(stage_id)
    assert "06-limits.md" in box, "the box does not link to lesson 06"
    assert "```" in box and re.search(r"\bpython3? ", box), "the box gives no try-it to run"
    assert " nc " not in box, "the try-it needs only Python (stock Debian has no nc)"


@pytest.mark.parametrize("stage_id", [stage.id for stage in STAGES])
def test_lesson_teaches_in_order(stage_id):
    """A recap of 3-5 points at the end, a step the student runs, prose in every walk-through part."""
    text = lesson_for(stage_id).read_text()
    points = re.findall(r"^[-*] ", section(text, "Recap"), re.MULTILINE)
    assert 3 <= len(points) <= 5, f"the recap has {len(points)} points, not 3 to 5"
    tries = re.findall(r'^!!! example "Try it[^"]*"\n((?:    .*\n|\n)+)', text, re.MULTILINE)
    assert tries, 'no `!!! example "Try it: ..."` step'
    assert all("```" in body or "`python " in body for body in tries), \
        "every 'Try it' step gives a command to run"
    walk = section(text, "Walk-through")
    for part in re.split(r"^### ", walk, flags=re.MULTILINE)[1:]:
        title, _, body = part.partition("\n")
        prose = re.sub(r"```.*?```", "", body, flags=re.DOTALL)
        prose = re.sub(r"^(!!!|\?\?\?).*$|^<!--.*-->$", "", prose, flags=re.MULTILINE)
        assert len(prose.split()) >= 12, f"walk-through part '{title}' is code with no prose"
    changed = section(text, "What changed")
    links = re.findall(r"^[-*] .*\]\(#[\w-]+\)", changed, re.MULTILINE)
    assert links, "'What changed' opens with no list of changes linked to the walk-through"
    if stage_id in ("01", "02"):
        assert "concepts.md" in text, "lessons 01 and 02 link to the concepts page"
    assert "https://docs.python.org/3/" in text, "the lesson links no API to the Python docs"


def test_the_concepts_page_comes_before_lesson_01():
    nav = list(nav_pages(load_config(str(REPO / "mkdocs.yml"))["nav"]))
    assert nav.index("concepts.md") == nav.index(f"lessons/{lesson_for('01').name}") - 1
    text = (REPO / "docs" / "concepts.md").read_text()
    assert text.startswith("# 00 · Sockets, ports and TCP\n")
    for topic in ("socket", "port", "localhost", "UDP", "TIME_WAIT", "backlog", "ephemeral",
                  "buffer", "nc ", "ss -tnp", "tcpdump", "Glossary", "Linux", "macOS", "WSL"):
        assert topic in text, f"the concepts page never mentions {topic!r}"
    assert "```mermaid\nsequenceDiagram" in text, "no sequence diagram of a connection's life"


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
    assert '--8<-- "docs/bench/models.md"' in (REPO / "lessons" / "09-asyncio.md").read_text(), \
        "lesson 09 should show the three models' measured figures (docs/bench/models.md)"
    page = (REPO / "docs" / "measuring.md").read_text()
    for name in ("table.md", "targets.md"):
        assert f'--8<-- "docs/bench/{name}"' in page, f"docs/measuring.md does not include docs/bench/{name}"
    for name in ("throughput", "p99", "memory"):
        assert (folder / f"{name}.svg").is_file() and f"(bench/{name}.svg)" in page, f"{name}.svg is not on the page"
    stages = {row["stage"] for row in data["results"]}
    assert {"base", "02", "03", "04", "05", "09"} <= stages, f"the committed run misses stages: {sorted(stages)}"


def test_the_kill_rate_in_the_instructors_guide_is_counted_from_known_bad():
    caught, total = len(known_bad.BUGS), len(known_bad.BUGS) + len(known_bad.NOT_CAUGHT)
    claim = f"Kill rate: {caught} of {total} known-bad implementations caught ({round(100 * caught / total)} %)"
    guide = (REPO / "docs" / "instructors.md").read_text()
    assert claim in guide, f"docs/instructors.md should say {claim!r}, as tests/known_bad.py counts it"
    table = guide[guide.index("| Planted bug | Stage | Caught by |"):].split("\n\n")[0].splitlines()[2:]
    assert sorted(row.split(" | ")[1] for row in table) == sorted(bug.stage for bug in known_bad.BUGS), \
        "the guide's table of planted bugs should have one row per Bug in tests/known_bad.py"


@pytest.mark.sampled  # the kit's default run: stages 02 and 05 (tests/conftest.py)
@pytest.mark.starts_first  # stage 11's drives irssi, at its defaults: about 20 s
@pytest.mark.parametrize("stage_id", sorted(record.SCENARIOS))
def test_recorded_transcripts_match_what_the_stage_does(stage_id):
    needed = record.NEEDS.get(stage_id)  # stage 11's scenario runs irssi
    if needed and shutil.which(needed) is None:
        pytest.skip(f"{needed} is not installed (Debian: apt-get install {needed}, as .ci/run does)")
    folder = REPO / "docs" / "transcripts" / stage_id
    committed = {path.name: path.read_text() for path in folder.glob("*.txt")}
    fresh = {record.file_name(label): text for label, text in record.record(stage_id).items()}
    assert sorted(fresh) == sorted(committed), "the scenario's terminals changed: run python tests/record.py --write-docs"
    for name, text in fresh.items():
        assert text == committed[name], (
            f"docs/transcripts/{stage_id}/{name} no longer matches what stage {stage_id} does.\n"
            f"If the change is intended, run: .venv/bin/python tests/record.py --write-docs {stage_id}\n"
            f"--- recorded now ---\n{text}--- committed ---\n{committed[name]}")


def test_irssi_keeps_its_flood_control_in_the_checks_and_the_recording():
    """irssi paces its commands (five at once, then one per 2.2 s), as every user's does: the
    lesson's recording and the irssi checks must show that pace, not a faster one of their own."""
    import test_irc  # its irssi settings; importing it runs no check

    for where, config in (("tests/record.py", record.IRSSI_CONFIG), ("tests/test_irc.py", test_irc.IRSSI_CONFIG)):
        for setting in ("cmd_queue_speed", "cmds_max_at_once"):
            assert setting not in config, f"{where}: irssi's {setting} is changed from its default"


@pytest.mark.parametrize("stage_id", sorted(record.WIRE_SCENARIOS))
def test_recorded_wire_sessions_match_what_the_server_sends(stage_id):
    committed = (REPO / "docs" / "transcripts" / f"wire-{stage_id}.txt").read_text()
    assert record.record_wire(stage_id) == committed, (
        f"docs/transcripts/wire-{stage_id}.txt (shown in docs/protocol.md) no longer matches "
        f"what stage {stage_id}'s server sends: run python tests/record.py --write-docs {stage_id}")


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
        "run python tests/record.py --write-docs")


def grading_rows(table):
    """What is certain in a grading table: each student's maximum, and the full row of a clean
    submission. A buggy one fails a set of checks that can vary with timing (a missing framing
    shows only when TCP happens to split the data), so only its loss of points is kept."""
    lines = table.splitlines()
    header = next(number for number, line in enumerate(lines) if line.startswith("student "))
    rows = []
    for line in lines[header + 1:-1]:  # student, score, max, each category's points, time, failed checks
        student, score, maximum, failed = re.match(r"(\S+) +(\d+) +(\d+) .*? \d+s  (.*)$",
                                                   line.split("  FLAGGED: ")[0]).groups()
        rows.append((student, maximum, score if failed == "-" else int(score) < int(maximum),
                     "FLAGGED" in line))
    progress = [re.sub(r"\d+/\d+ in.*", "", line) for line in lines[2:header]]  # which finished when
    return [lines[:2], progress, lines[header], rows, lines[-1]]


@pytest.mark.slow
def test_recorded_grading_example_matches_what_grade_py_prints():
    table, summary, whole_class, plot = record.grading_example()
    committed = (REPO / "docs" / "transcripts" / "grading-table.txt").read_text()
    assert grading_rows(table) == grading_rows(committed), \
        "docs/transcripts/grading-table.txt is out of date: run python tests/record.py --write-docs"
    # What is certain in the class summary: its title, and that ada alone has full marks (how many
    # points bob and cy lose varies with timing, as in the table). The plot has a bar per band.
    committed_summary = (REPO / "docs" / "transcripts" / "grading-class-summary.txt").read_text()
    certain = lambda text: (text.splitlines()[0], re.search(r"^\| 100 % \| \d+ \|$", text, re.M)[0])
    assert certain(whole_class) == certain(committed_summary), \
        "docs/transcripts/grading-class-summary.txt is out of date: run python tests/record.py --write-docs"
    bars = lambda svg: svg.count("</title></rect>")
    assert bars(plot) == bars((REPO / "docs" / "transcripts" / "grading-scores.svg").read_text()) == 11
    assert summary.splitlines()[-1].split("/")[1] == \
        (REPO / "docs" / "transcripts" / "grading-summary.txt").read_text().splitlines()[-1].split("/")[1], \
        "docs/transcripts/grading-summary.txt is out of date: run python tests/record.py --write-docs"


# The build takes about 9 s on a quiet machine of 2 cores, and several times that on a busy
# one; every check that uses it may wait for it in its setup, which pytest-timeout counts.
SITE_PATIENCE = pytest.mark.timeout(360)


@pytest.fixture(scope="session")
def site_build(tmp_path_factory):
    """`mkdocs build --strict`, once for the whole run: the xdist workers share one build (a lock
    file lets the first one build, the others wait for it and read its result)."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # every worker's basetemp sits in the run's own folder
    folder, outcome = shared / "site", shared / "site-build.json"
    with open(shared / "site-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not outcome.exists():
            result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(folder)],
                                    cwd=REPO, capture_output=True, text=True, timeout=300,
                                    env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
            outcome.write_text(json.dumps({"returncode": result.returncode, "stderr": result.stderr}))
    return folder, json.loads(outcome.read_text())


@pytest.fixture
def site(site_build):
    folder, outcome = site_build
    assert outcome["returncode"] == 0, f"the site does not build:\n{outcome['stderr']}"
    return folder


@SITE_PATIENCE
def test_site_builds_strictly(site_build):
    folder, outcome = site_build
    assert outcome["returncode"] == 0, outcome["stderr"]
    for stage in STAGES:  # each lesson, as built, states every term of its stage's contract
        page = (folder / "lessons" / lesson_for(stage.id).stem / "index.html").read_text()
        missing = [key for key, term in stage.terms.items()
                   if html.escape(contract.shown(term.text).strip(), quote=False) not in page]
        assert not missing, f"lesson {stage.id}'s page does not show these contract terms: {missing}"


def load_hook():
    """docs/hooks/lessons.py, the mkdocs hook, as a module (it is not on the import path)."""
    spec = importlib.util.spec_from_file_location("lessons_hook", REPO / "docs" / "hooks" / "lessons.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = load_hook()

# A highlighted block with a title, and each of its lines (pymdownx.highlight with line_spans, linenums).
TITLED_BLOCK = re.compile(r'<div class="highlight">(?:<table class="highlighttable"><tr><th colspan="2" '
                          r'class="filename">)?<span class="filename">(?P<title>[^<]+)</span>(?P<body>.*?)</code>',
                          re.DOTALL)
CODE_LINE = re.compile(r'<span id="__span-\d+-(?P<number>\d+)"><a id="__codelineno-\d+-(?P=number)"[^>]*></a>'
                       r'(?P<text>.*?)</span>(?=<span id="__span-|$)', re.DOTALL)
WHOLE_FILE_LINK = re.compile(r'<a class="chat-whole-file" href="(?P<href>[^"#]+)#__codelineno-0-(?P<line>\d+)">')


def shown_lines(body):
    """[(line number, text)] of a highlighted block's HTML: the numbers are the ones the reader sees."""
    return [(int(match["number"]), html.unescape(re.sub(r"<[^>]+>", "", match["text"])).rstrip("\n"))
            for match in CODE_LINE.finditer(body)]


def built_pages(site):
    return sorted(site.rglob("index.html"))


@SITE_PATIENCE
def test_every_included_snippet_names_its_file_and_shows_its_real_line_numbers(site):
    """Every included block of stage code is titled with its file, and each line it shows carries
    that line's number in the file; under it, a link to the same line of the whole file."""
    stages_shown = set()
    for page in built_pages(site):
        if page.relative_to(site).parts[0] == "code":
            continue
        text = page.read_text()
        blocks = [match for match in TITLED_BLOCK.finditer(text) if (REPO / match["title"]).is_file()]
        for block in blocks:
            path = block["title"]
            lines = (REPO / path).read_text().splitlines()
            shown = shown_lines(block["body"])
            assert shown, f"{page.relative_to(site)}: the block from {path} shows no line numbers"
            for number, line in shown:
                assert line == lines[number - 1], (
                    f"{page.relative_to(site)}: line {number} of {path} is shown as {line!r}, "
                    f"but the file's line {number} is {lines[number - 1]!r}")
            if path.startswith("stages/"):
                stages_shown.add(path.split("/")[1])
                after = text[block.end():]
                link = WHOLE_FILE_LINK.search(after[:after.find('<div class="highlight">')
                                                     if '<div class="highlight">' in after else None])
                assert link, f"{page.relative_to(site)}: no link to the whole of {path} under its snippet"
                assert int(link["line"]) == shown[0][0], "the link goes to another line than the snippet's first"
                target = (page.parent / link["href"]).resolve() / "index.html"
                assert target.is_file(), f"{page.relative_to(site)} links to {link['href']}, which was not built"
                assert f'id="__codelineno-0-{link["line"]}"' in target.read_text(), \
                    f"{target.relative_to(site)} has no anchor for line {link['line']}"
    assert stages_shown == {stage.id for stage in STAGES}, \
        f"stages with no titled, numbered snippet on the site: {sorted({s.id for s in STAGES} - stages_shown)}"


@SITE_PATIENCE
def test_each_stage_file_has_a_whole_file_page_out_of_the_nav_and_the_search(site):
    index = json.loads((site / "search" / "search_index.json").read_text())
    assert not [entry["location"] for entry in index["docs"] if entry["location"].startswith("code/")], \
        "a whole-file page is in the search index"
    nav = list(nav_pages(load_config(str(REPO / "mkdocs.yml"))["nav"]))
    for path in hook.stage_files(REPO):
        page = site / "code" / path / "index.html"
        assert page.is_file(), f"no whole-file page for {path}"
        assert hook.code_page(path) not in nav
        blocks = list(TITLED_BLOCK.finditer(page.read_text()))
        assert [block["title"] for block in blocks] == [path]
        lines = (REPO / path).read_text().splitlines()
        assert shown_lines(blocks[0]["body"]) == list(enumerate(lines, 1)), \
            f"the whole-file page of {path} does not show the file line for line (section markers included)"


def test_a_section_is_included_with_its_real_line_numbers(tmp_path):
    """The hook's line numbers for an include: a section, a section with another one inside (two
    runs: snippets leaves the inner markers out), a range, the whole file."""
    (tmp_path / "x.py").write_text(
        "import os\n"                    # 1
        "# --8<-- [start:outer]\n"       # 2
        "def f():\n"                     # 3
        "    # --8<-- [start:inner]\n"   # 4
        "    return 1\n"                 # 5
        "    # --8<-- [end:inner]\n"     # 6
        "# --8<-- [end:outer]\n"         # 7
        "x = 2\n")                       # 8
    assert hook.included_runs(tmp_path, "x.py:inner") == [(5, 5)]
    assert hook.included_runs(tmp_path, "x.py:outer") == [(3, 3), (5, 5)]
    assert hook.included_runs(tmp_path, "x.py:3:5") == [(3, 3), (5, 5)]
    assert hook.included_runs(tmp_path, "x.py") == [(1, 1), (3, 3), (5, 5), (8, 8)]
    with pytest.raises(ValueError, match="no section 'missing'"):
        hook.included_runs(tmp_path, "x.py:missing")


OLD = '''"""A module."""

import os

LIMIT = 10


def same(x):
    """Says hello."""
    # a comment
    return x + 1


def reflowed(items):
    return sorted(items, key=len)


def changed(x):
    y = x * 2
    return y


def gone():
    pass


class Box:
    size = 1

    def put(self, item):
        return item
'''

NEW = '''"""A module, now with a longer docstring.

It says more.
"""

import os

LIMIT = 10


def same(x):
    """Says hello, in other words."""

    # a comment, reworded
    return x + 1  # and a new trailing comment


def reflowed(items):
    return sorted(
        items,
        key=len,
    )


def changed(x):
    y = x * 3
    return y


def added():
    return 0


class Box:
    size = 1

    def put(self, item):
        return [item]
'''


def test_the_focused_diff_leaves_out_comment_only_changes_and_shows_changed_code():
    result = hook.focused_diff(OLD, NEW)
    changed = {part.name: hunks for _, part, hunks in result.changed}
    assert sorted(changed) == ["Box.put", "changed"], \
        "comments, docstrings, blank lines and line wrapping are not changes of the code"
    assert [part.name for part in result.added] == ["added"]
    assert [part.name for part in result.removed] == ["gone"]
    (hunk,) = changed["changed"]
    new_lines = NEW.splitlines()
    assert hunk.header() == "@@ -18,3 +25,3 @@", "the hunk's numbers are the lines in the two files"
    assert "-    y = x * 2" in hunk.lines and "+    y = x * 3" in hunk.lines
    assert new_lines[hunk.new_start - 1] == "def changed(x):"
    assert [line for line in changed["Box.put"][0].lines if line[0] in "+-"] == \
        ["-        return item", "+        return [item]"]


def test_the_focused_diff_counts_module_level_code_as_a_part():
    result = hook.focused_diff(OLD, OLD.replace("LIMIT = 10", "LIMIT = 20"))
    assert [(part.name, [line for hunk in hunks for line in hunk.lines if line[0] in "+-"])
            for _, part, hunks in result.changed] == [("module level", ["-LIMIT = 10", "+LIMIT = 20"])]
    assert not result.added and not result.removed
    assert not hook.focused_diff(OLD, OLD.replace("# a comment", "# another comment")).changed


def test_the_focused_diff_of_a_comment_only_change_has_no_part(tmp_path):
    """Rendered as a lesson gets it: two files that differ only in comments give an empty diff."""
    (tmp_path / "a.py").write_text(OLD)
    (tmp_path / "b.py").write_text(OLD.replace("# a comment", "# another comment\n    # and more"))
    block = hook.diff_block(tmp_path, "lessons/x.md", "a.py", "b.py")
    assert "no change in the code" in block and "```diff" not in block
    (tmp_path / "c.py").write_text(NEW)
    block = hook.diff_block(tmp_path, "lessons/x.md", "a.py", "c.py")
    assert "2 parts changed, 1 added, 1 removed" in block
    assert block.count("```diff") == 2 and "data-search-exclude" in block


@SITE_PATIENCE
def test_the_search_index_has_the_lessons_prose_and_no_diff(site):
    """The "What changed" diffs are on the pages but not in the search index, so a search for an
    API finds the lessons that explain it."""
    index = json.loads((site / "search" / "search_index.json").read_text())["docs"]
    diffs = []  # what only the diffs carry: their @@ lines
    for page in (site / "lessons").glob("*/index.html"):
        for block in re.findall(r'<details class="abstract chat-diff">(.*?)</details>', page.read_text(), re.DOTALL):
            diffs += [html.unescape(line) for line in re.findall(r'<span class="gu">(@@ [^<]+)</span>', block)]
    assert len(diffs) > 50, "the lessons' pages lost their diffs (or this test its way of finding them)"
    indexed = "\n".join(html.unescape(entry["text"]) for entry in index)
    assert not [line for line in diffs if line in indexed], "diff lines in the search index"
    assert "@@ -" not in indexed
    for stage in STAGES:  # the lessons' own prose is still there
        location = f"lessons/{lesson_for(stage.id).stem}/#goal"
        goal = [entry for entry in index if entry["location"] == location]
        assert goal and len(goal[0]["text"].split()) > 10, f"{location} is not in the search index"
    hits = [entry for entry in index if "sendall" in entry["text"]]
    assert hits, "no page of the site explains sendall()"
    assert all(entry["location"].startswith(("lessons/", "concepts/", "")) and "chat-diff" not in entry["text"]
               for entry in hits)
    in_prose = [entry["location"] for entry in hits
                if "sendall" in re.sub(r"<pre>.*?</pre>", "", entry["text"], flags=re.DOTALL)]
    assert any(location.startswith("lessons/01-") for location in in_prose), \
        f"lesson 01's prose, which introduces sendall(), is not among the hits: {in_prose}"


@SITE_PATIENCE
@pytest.mark.parametrize("stage_id", [stage.id for stage in STAGES])
def test_the_exercises_render_as_one_numbered_list(site, stage_id):
    """Lesson 10's exercise 4 once rendered as "a." inside exercise 3: a list broken by its
    indentation. Each lesson's exercises are one <ol>, with one item per numbered line."""
    numbered = re.findall(r"^\d+\. ", section(lesson_for(stage_id).read_text(), "Exercises"),
                          re.MULTILINE)
    page = (site / "lessons" / lesson_for(stage_id).stem / "index.html").read_text()
    built = re.search(r'<h2 id="exercises">.*?(?=<h2 )', page, re.DOTALL).group(0)
    lists, items, depth = 0, 0, 0  # top-level lists, and the items of the top-level list
    for tag in re.findall(r"</?(?:ol|ul|li)\b", built):
        if tag in ("<ol", "<ul"):
            lists += depth == 0
            depth += 1
        elif tag in ("</ol", "</ul"):
            depth -= 1
        else:
            items += tag == "<li" and depth == 1
    assert lists == 1, f"the exercises are {lists} lists, not one numbered list"
    assert items == len(numbered), f"{len(numbered)} exercises in the lesson, {items} items in its list"


@SITE_PATIENCE
def test_no_stray_pages_are_built(site):
    """Tables that pages include (docs/bench/*.md, docs/mutation/score.md) and the theme's
    templates are not pages of their own."""
    built = {path.parent.relative_to(site).as_posix() for path in site.rglob("index.html")}
    stray = sorted(path for path in built
                   if path.startswith(("bench", "overrides", "hooks")) or path == "mutation/score")
    assert not stray, f"built as pages of their own: {stray}"
    assert not list(site.glob("overrides/**/*.html")), "the theme's templates were copied into the site"

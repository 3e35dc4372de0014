"""The assignment edition of the site (docs/instructors.md): ASSIGN=NN hides stage NN's code.

    ASSIGN=04 python -m mkdocs build --strict -d site-04

For each stage, the edition is built (strictly) and searched, search index included, for every
line of that stage's Python files that a student must not find there. The default run builds
the edition of stage 04 (DEFAULT_RUN); the slow tier builds every stage's, and checks
in chromium the pages that each edition changes (tests/screenshot.py, as tests/test_browser.py
does for the kit's site). A copy of the kit with a part of stage 04 pasted into its lesson
proves that the search finds what it is meant to find.

Which lines are checked, for stage NN: the code of every .py file in stages/NN/ (server.py,
client.py, and peer.py, naive_server.py, attacks/), each line without its comment and with its
whitespace squeezed to one space, if it holds at least CHECKED_LINE_CHARS characters. Left out:
blank lines, comments, docstrings and the inside of other strings that span lines (text, such as
a help message, which the transcripts show on purpose as the program's output); a line that
only calls a named function with no arguments but numbers (`await writer.drain()`: the prose
names such calls too); and any line that the edition may show legitimately: one that is part
of a line of an earlier stage's files (the student builds on them, and the edition shows them
whole), or of the kit's code outside stages/ that the site shows (docs/nc.py, the sections of
the tests that the guides include).
"""

import ast
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tokenize
from functools import lru_cache
from pathlib import Path

import pytest

import screenshot

REPO = Path(__file__).resolve().parent.parent
STAGE_IDS = sorted(path.name for path in (REPO / "stages").iterdir() if re.fullmatch(r"\d\d", path.name))
DEFAULT_RUN = ("04",)  # the default run's edition: a threaded stage (the slow tier builds every stage's)
CHECKED_LINE_CHARS = 20  # shorter lines (`return None`, `self.lock = lock`) say little about a solution
BINARY = {".png", ".gz", ".jpg", ".ico", ".woff", ".woff2"}
TAG = re.compile(r"<[^>]*>")
SNIPPET = re.compile(r'^[ \t]*-{1,}8<-{1,}[ \t]+"([^"\n]+)"[ \t]*$', re.MULTILINE)


def squeezed(text):
    return re.sub(r"\s+", " ", text).strip()


def build_edition(stages, folder, repo=REPO):
    """Build the assignment edition of `stages` ("04" or "04,05") from `repo` into `folder`,
    strictly; returns the seconds it took. A failed build fails the test with mkdocs's output."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(folder)],
                          cwd=repo, capture_output=True, text=True,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "ASSIGN": stages})
    assert done.returncode == 0, f"ASSIGN={stages} mkdocs build --strict failed:\n{done.stdout}{done.stderr}"
    return time.monotonic() - started


def text_lines(text):
    """Line numbers that hold no code: inside a docstring, or inside a string that spans lines
    (its first and last lines hold code too, so they stay)."""
    lines = set()
    for node in ast.walk(ast.parse(text)):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.STRING and token.end[0] > token.start[0]:
            lines.update(range(token.start[0] + 1, token.end[0]))
    return lines


def code_lines(path):
    """The file's lines of code, each without its comment and squeezed, docstrings and the inside
    of strings that span lines left out."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            row, column = token.start
            lines[row - 1] = lines[row - 1][:column]
    noise = text_lines(text)
    return [squeezed(line) for number, line in enumerate(lines, 1) if number not in noise and squeezed(line)]


def stage_sources(stage):
    return sorted((REPO / "stages" / stage).rglob("*.py"))


def shown_outside_stages():
    """The kit's code outside stages/ that the site shows: docs' Python files (copied whole), and
    every section of a .py file outside stages/ that a page includes."""
    sys.path.insert(0, str(REPO / "docs" / "hooks"))
    try:
        import lessons as hook
    finally:
        sys.path.pop(0)
    shown = [path.read_text(encoding="utf-8") for path in (REPO / "docs").rglob("*.py") if "hooks" not in path.parts]
    for page in [*(REPO / "docs").rglob("*.md"), *(REPO / "lessons").glob("*.md")]:
        for spec in SNIPPET.findall(page.read_text(encoding="utf-8")):
            path = hook.split_spec(spec)[0]
            if path.endswith(".py") and not path.startswith("stages/"):
                lines = hook.source(REPO, path).split("\n")
                shown += ["\n".join(lines[first - 1:last]) for first, last in hook.included_runs(REPO, spec)]
    return shown


@lru_cache(maxsize=None)
def checked_lines(stage):
    """Stage `stage`'s lines that its edition must not show (see the module's docstring)."""
    may_show = [squeezed(line) for earlier in STAGE_IDS if earlier < stage for path in stage_sources(earlier)
                for line in path.read_text(encoding="utf-8").splitlines()]
    may_show += [squeezed(line) for text in shown_outside_stages() for line in text.splitlines()]
    visible = "\n".join(may_show)
    lines = {line for path in stage_sources(stage) for line in code_lines(path)
             if len(line) >= CHECKED_LINE_CHARS and not names_a_call(line)}
    return sorted(line for line in lines if line not in visible)


def names_a_call(line):
    """`await writer.drain()`, `await asyncio.sleep(1)`, `logging.basicConfig(`: one call of a
    named function, with no arguments but numbers, True, False or None (or with its arguments
    on the lines that follow). Such a line names an API, as the walk-through's prose does; it
    says nothing of a solution."""
    if re.fullmatch(r"[A-Za-z_][\w.]*\(", line):
        return True
    try:
        call = ast.parse(line.removeprefix("await "), mode="eval").body
    except SyntaxError:
        return False
    if not isinstance(call, ast.Call) or call.keywords:
        return False
    name = call.func
    while isinstance(name, ast.Attribute):
        name = name.value
    return isinstance(name, ast.Name) and all(
        isinstance(arg, ast.Constant) and not isinstance(arg.value, (str, bytes)) for arg in call.args)


def site_texts(site):
    """(file in the site, its text as a reader or a search finds it), for every text file: HTML
    without its tags and unescaped (and unescaped with its tags: attributes, scripts), every
    string in a JSON file (the search index) likewise, any other file as it is. Squeezed."""
    for file in sorted(Path(site).rglob("*")):
        if not file.is_file() or file.suffix in BINARY:
            continue
        text = file.read_text(encoding="utf-8", errors="replace")
        where = file.relative_to(site).as_posix()
        if file.suffix == ".json":
            strings = []

            def walk(value):
                if isinstance(value, str):
                    strings.append(value)
                elif isinstance(value, dict):
                    for key, item in value.items():
                        walk(key)
                        walk(item)
                elif isinstance(value, list):
                    for item in value:
                        walk(item)

            walk(json.loads(text))
            text = "\n".join(strings)
        if file.suffix in (".html", ".xml", ".json"):
            text = html.unescape(TAG.sub("", text)) + "\n" + html.unescape(text)
        yield where, squeezed(text)


def leaks(site, lines):
    """{line: [files of the site it appears in]} for the lines found anywhere in the site."""
    texts = list(site_texts(site))
    everything = "\0".join(text for _, text in texts)
    found = [line for line in lines if line in everything]
    return {line: [where for where, text in texts if line in text] for line in found}


def leak_report(found):
    return "\n".join(f"  {line!r} in {', '.join(where[:4])}" for line, where in sorted(found.items()))


def check_edition(stage, site):
    lines = checked_lines(stage)
    assert len(lines) >= 20, f"stage {stage}: only {len(lines)} lines to look for: {lines}"
    found = leaks(site, lines)
    assert not found, f"the edition for stage {stage} shows {len(found)} of its {len(lines)} lines:\n" \
                      + leak_report(found)
    pages = {path.parent.relative_to(site).as_posix() for path in site.rglob("index.html")}
    assert f"lessons/{lesson_name(stage)}" in pages, f"stage {stage}'s lesson is not in its edition"
    later = [stage_id for stage_id in STAGE_IDS if stage_id > stage]
    assert not [page for page in pages if re.match(rf"lessons/({'|'.join(later) or '-'})-", page)], \
        f"a later stage's lesson is in the edition for stage {stage}: {sorted(pages)}"
    assert not [page for page in pages if re.match(rf"code/stages/({'|'.join([stage, *later])})/.*\.py$", page)]


def lesson_name(stage):
    return next((REPO / "lessons").glob(f"{stage}-*.md")).stem


def slow_but(*stages):
    """Every stage as a parameter, the slow tier's but for `stages` (the default run's)."""
    return [pytest.param(stage, id=stage, marks=() if stage in stages else pytest.mark.slow) for stage in STAGE_IDS]


@pytest.fixture(scope="module")
def editions(tmp_path_factory):
    """stage -> (its edition's folder, seconds to build it): each built once per module (per worker)."""
    built = {}

    def edition(stage):
        if stage not in built:
            site = tmp_path_factory.mktemp(f"edition-{stage}") / "site"
            built[stage] = site, build_edition(stage, site)
        return built[stage]

    return edition


@pytest.mark.parametrize("assigned", slow_but(*DEFAULT_RUN))
def test_the_edition_hides_the_stages_code(assigned, editions):
    site, seconds = editions(assigned)
    check_edition(assigned, site)
    page = (site / "lessons" / lesson_name(assigned) / "index.html").read_text(encoding="utf-8")
    lesson = squeezed(html.unescape(TAG.sub("", page)))  # as the reader sees it
    # What the student needs stays: the box for the hidden code, the contract, the checks, the command.
    for needed in ("You will write this part", f"Assignment edition: you write stage {assigned}",
                   "Program Must show When", "What the tests check", "Check your work",
                   f"tests --stage {assigned} --impl path/to/your/folder"):
        assert needed in lesson, f"the edition's lesson {assigned} has no {needed!r}"
    print(f"edition {assigned}: built in {seconds:.1f} s")


def test_a_pasted_snippet_is_found_and_an_include_is_hidden_however_written(tmp_path):
    """In a copy of the kit, lesson 04 gets a part of stages/04/server.py pasted by hand, and the
    concepts page includes another part with a path the hook must still know (./stages/...).
    The search must find every checked line of the pasted part, and nothing else."""
    sys.path.insert(0, str(REPO / "docs" / "hooks"))
    try:
        import lessons as hook
    finally:
        sys.path.pop(0)
    copy = tmp_path / "kit"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".git", ".venv", "site", "__pycache__"))
    lines = (REPO / "stages/04/server.py").read_text(encoding="utf-8").split("\n")
    (first, last), = hook.included_runs(REPO, "stages/04/server.py:outbox")
    pasted = "\n".join(lines[first - 1:last])
    lesson = copy / "lessons" / f"{lesson_name('04')}.md"
    lesson.write_text(lesson.read_text(encoding="utf-8") + f"\n## Pasted\n\n```python\n{pasted}\n```\n",
                      encoding="utf-8")
    concepts = copy / "docs" / "concepts.md"
    concepts.write_text(concepts.read_text(encoding="utf-8")
                        + '\n## Included\n\n```python\n--8<-- "./stages/04/server.py:threads"\n```\n',
                        encoding="utf-8")
    site = tmp_path / "site"
    build_edition("04", site, repo=copy)
    expected = {line for line in checked_lines("04") if line in squeezed(pasted)}
    assert len(expected) >= 5, f"too few checked lines in the pasted part: {expected}"
    found = leaks(site, checked_lines("04"))
    assert set(found) == expected, f"found:\n{leak_report(found)}\nexpected: {sorted(expected)}"
    assert all(where == ["lessons/04-threads/index.html", "search/search_index.json"] for where in found.values())
    with pytest.raises(AssertionError, match=f"shows {len(expected)} of its"):
        check_edition("04", site)
    assert "You will write this part" in (site / "concepts" / "index.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_two_assigned_stages_hide_both(tmp_path):
    """ASSIGN=04,05: both lessons stay, with neither stage's code; lesson 06 on are left out."""
    site = tmp_path / "site"
    build_edition("04,05", site)
    found = leaks(site, sorted({*checked_lines("04"), *checked_lines("05")}))
    assert not found, "the edition for stages 04 and 05 shows their code:\n" + leak_report(found)
    lessons = sorted(path.name for path in (site / "lessons").iterdir())
    assert lessons == [lesson_name(stage) for stage in ("01", "02", "03", "04", "05")], lessons
    for stage in ("04", "05"):
        lesson = (site / "lessons" / lesson_name(stage) / "index.html").read_text(encoding="utf-8")
        assert "You will write this part" in lesson and f"you write stage {stage}" in lesson


def changed_pages(edition, kit):
    """The edition's pages whose article differs from the kit's site's (or that it lacks), and the
    home page: the others are the kit's own pages, which tests/test_browser.py checks."""
    article = re.compile(r'<article class="md-content__inner md-typeset">.*?</article>', re.DOTALL)

    def read(site, path):
        file = Path(site, path + "index.html" if path == "" or path.endswith("/") else path)
        return article.findall(file.read_text(encoding="utf-8")) if file.is_file() else None

    return [path for path in screenshot.pages(edition) if path == "" or read(edition, path) != read(kit, path)]


@pytest.fixture(scope="module")
def kit_site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kit") / "site"
    screenshot.build_site(folder)
    return folder


@pytest.fixture(scope="module")
def browser():
    with screenshot.Browser() as one:
        yield one


@pytest.mark.slow  # a minute of browser time per edition
@pytest.mark.timeout(600)
@pytest.mark.skipif(screenshot.chromium() is None or screenshot.chromedriver() is None,
                    reason="chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
@pytest.mark.parametrize("assigned", STAGE_IDS)
def test_the_edition_passes_the_browser_check(assigned, editions, kit_site, browser):
    site, _ = editions(assigned)
    pages = changed_pages(site, kit_site)
    assert f"lessons/{lesson_name(assigned)}/" in pages, pages
    started = time.monotonic()
    problems, checked = screenshot.check_site(site, browser, only=pages)
    print(f"edition {assigned}: {len(checked)} pages x {len(screenshot.WIDTHS)} widths x "
          f"{len(screenshot.SCHEMES)} schemes checked in {time.monotonic() - started:.0f} s: {checked}")
    assert not problems, f"{len(problems)} problems on {checked}:\n" + "\n".join(map(str, problems))

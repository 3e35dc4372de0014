"""mkdocs hook: pull the lessons (lessons/*.md, outside docs_dir) into the site.

Lessons sit beside stages/ at the top of the repo, where a reader of the code
finds them; mkdocs only looks inside docs/. This hook adds each lesson as a
page, anchors pymdownx.snippets at the repo root so the build works from any
folder, and makes `mkdocs serve` rebuild when a lesson or a stage changes.

It also rewrites three things in every page's Markdown, at build time:

- A code block that includes one file (one include line in a fenced block),

      ```python
      --8<-- "stages/04/server.py:accept"
      ```

  gets a title naming the file and the file's real line numbers, and a link to
  that line in the whole file. Each stage file has a page of its own for that
  (code/stages/NN/FILE.md: generated, out of the nav and out of the search).

- A line

      <!-- diff stages/01/server.py stages/02/server.py -->

  becomes a collapsed "What changed" for that file: only the functions, classes,
  methods and module-level code whose code changed (Python's own parse of them,
  so comments, docstrings, blank lines and line wrapping do not count), each
  with its diff, line numbers as in the files. Left out of the search index.

- A line `<!-- contract NN -->` becomes stage NN's contract: every string the
  tests wait for, from tests/contract.py.
- A line `<!-- rubric NN -->` becomes stage NN's rubric: the categories its checks are
  graded in, with their default weights (tests/categories.py).

The assignment edition. With ASSIGN set, as in

    ASSIGN=04 .venv/bin/python -m mkdocs build --strict -d site-04

the site is built for students who are to write stage 04 (or the stages
listed: ASSIGN=04,05). The Python code of the first assigned stage and of
every later one is hidden: no include of it (a box says "you will write this
part" instead), no "What changed" diff into it, no whole-file page of it, so
none of it in the search index either. The lessons of the later stages that
are not assigned are left out, with their nav entries (their code and diffs
start from the assigned stage's), and so are the instructors' pages (the
guide, the held-out bugs, the mutation report: they quote the stages' code). A
link to a page left out becomes its text. Everything else stays: the prose,
the contract, the protocol, the transcripts, the checks, and the earlier
stages' code.
"""

import ast
import copy
import functools
import difflib
import hashlib
import html
import io
import json
import logging
import os
import posixpath
import re
import subprocess
import sys
import tempfile
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, InclusionLevel

CODE_PAGES = "code"  # where the whole-file pages go in the site: code/stages/04/server.py/
CODE_SUFFIXES = {".py", ".sh"}
LANGUAGES = {".py": "python", ".sh": "bash"}
CONTEXT = 2  # lines of context around each change in a diff


LINKED = {}  # whole-file page -> the line numbers that pages link to, checked in on_post_page
SOURCES = {}  # file -> its text, read once a build: every page of it sees the same lines
STAGE_FILES = {}  # repo -> its stage files, listed once a build


def source(root, path):
    """A repo file's text as this build first read it (the line numbers must agree across pages)."""
    file = Path(root, path).resolve()
    if file not in SOURCES:
        SOURCES[file] = file.read_text()
    return SOURCES[file]


class LineAnchors(logging.Filter):
    """mkdocs cannot see the ids inside highlighted code, so it would report (at INFO) every link to
    a line of a whole-file page as a missing anchor. This hook checks those links itself."""

    FALSE_ALARM = re.compile(rf"#__codelineno-0-\d+', but the doc '{CODE_PAGES}/[^']+' does not contain an anchor")

    def filter(self, record):
        return not self.FALSE_ALARM.search(record.getMessage())


_pages_log = logging.getLogger("mkdocs.structure.pages")
if not any(type(existing).__name__ == "LineAnchors" for existing in _pages_log.filters):  # once, under serve
    _pages_log.addFilter(LineAnchors())


def repo_root(config):
    return Path(config.config_file_path).resolve().parent


def on_config(config):
    # Snippets resolve paths from the current folder by default: anchor them to the repo instead.
    snippets = config.mdx_configs.setdefault("pymdownx.snippets", {})
    snippets["base_path"] = [str(repo_root(config))]
    global EDITION
    EDITION = edition_from(os.environ.get(ASSIGN_VARIABLE, ""), repo_root(config))
    if EDITION:
        config.site_name = f"{config.site_name} · assignment: stage {', '.join(EDITION.assigned)}"
        config.nav = EDITION.kept_nav(config.nav)
    return config


# ---------------------------------------------------------------------------------------------
# The assignment edition (ASSIGN=NN[,NN...]): see the docstring at the top

ASSIGN_VARIABLE = "ASSIGN"
# Pages for instructors, left out of an assignment edition: they quote the stages' code (the
# mutants, the held-out bugs) or say what the hidden checks look for.
INSTRUCTORS_ONLY = ("instructors.md", "mutation/", "heldout/")
STAGE_PATH = re.compile(r"stages/(\d\d)/")


@dataclass(frozen=True)
class Edition:
    root: Path  # the repo
    assigned: tuple  # the stages the students write: ("04",) or ("04", "05")
    hidden: frozenset  # the stages whose Python code is hidden: the first assigned one and every later one
    dropped_lessons: frozenset  # docs paths of the lessons left out: later stages that are not assigned

    def hides(self, path):
        """Is the repo file `path` code that this edition hides? However the path is written
        (`./stages/04/server.py`, `docs/../stages/04/server.py`, a link to the file)."""
        file = Path(self.root, path).resolve()
        try:
            parts = file.relative_to(self.root.resolve() / "stages").parts
        except ValueError:
            return False
        return len(parts) > 1 and parts[0] in self.hidden and file.suffix == ".py"

    def drops(self, uri):
        """Is the page (or file) `uri`, docs-relative, left out of this edition?"""
        if uri in self.dropped_lessons or uri.startswith(INSTRUCTORS_ONLY):
            return True
        match = STAGE_PATH.match(uri.removeprefix(f"{CODE_PAGES}/"))
        return uri.startswith(f"{CODE_PAGES}/") and bool(match) and (
            match.group(1) in self.hidden and uri.endswith(".py.md")
            or match.group(1) in self.hidden - set(self.assigned))

    def kept_nav(self, nav):
        """The nav without the pages left out (and without a section left empty)."""
        kept = []
        for entry in nav or []:
            if isinstance(entry, str):
                if not self.drops(entry):
                    kept.append(entry)
                continue
            (title, value), = entry.items()
            if isinstance(value, list):
                value = self.kept_nav(value)
                if value:
                    kept.append({title: value})
            elif not self.drops(value):
                kept.append(entry)
        return kept


EDITION = None  # this build's Edition, or None for the kit's own site


def edition_from(value, root):
    """ASSIGN's value ("04", "4", "04,05") -> an Edition, or None if it is empty."""
    wanted = sorted({part.strip().zfill(2) for part in value.split(",") if part.strip()})
    if not wanted:
        return None
    stages = sorted(path.name for path in (root / "stages").iterdir() if re.fullmatch(r"\d\d", path.name))
    unknown = [stage for stage in wanted if stage not in stages]
    if unknown:
        raise PluginError(f"{ASSIGN_VARIABLE}={value}: no stage {', '.join(unknown)}; the stages are "
                          f"{', '.join(stages)}")
    hidden = frozenset(stage for stage in stages if stage >= wanted[0])
    dropped = frozenset(f"lessons/{path.name}" for path in (root / "lessons").glob("*.md")
                        if path.name[:2] in hidden - set(wanted))
    return Edition(root, tuple(wanted), hidden, dropped)


SNIPPET_LINE = re.compile(r'^(?P<indent>[ \t]*)-{1,}8<-{1,}[ \t]+"(?P<spec>[^"\n]+)"[ \t]*$', re.MULTILINE)
LINK = re.compile(r"(?<!!)\[(?P<text>[^\]\n]+)\]\((?P<target>[^)\s#]*)(?P<anchor>#[^)\s]*)?\)")


def indented(text, indent):
    return "\n".join(indent + line if line else line for line in text.split("\n"))


def hidden_part(root, spec, indent):
    """What the edition shows instead of an include of hidden code."""
    path, name, span = split_spec(spec)
    lines = sum(last - first + 1 for first, last in included_runs(root, spec))
    part = f"its part `{name}`" if name else "these lines" if span else "the whole file"
    return indented(f'!!! abstract "You will write this part"\n'
                    f"    Here the kit's own site shows `{path}`: {part}, {count(lines, 'line')}. "
                    "This edition leaves it out, since it is yours to write; the text around this "
                    "box says what it does.", indent)


def hidden_diff(old, new):
    return (f'!!! abstract "What changed in `{posixpath.basename(new)}`: you will write it"\n'
            f"    Here the kit's own site shows the code that changed from `{old}` to `{new}`. This "
            "edition leaves it out, since it is yours to write; the text says what changes.\n")


def assigned_note(stage):
    return (f'!!! info "Assignment edition: you write stage {stage}"\n'
            f"    This edition of the site leaves out stage {stage}'s code, and the stages after it. "
            "Where the kit shows a part of the code, a box says *you will write this part*; the goal, "
            "the walk-through, the contract, the protocol and the checks are all here, and the "
            "earlier stages' code too. Where the text names a function or a variable of the kit's "
            f"stage {stage}, yours may be named and built differently: only the contract and the "
            "checks bind you.\n")


def edition_markdown(markdown, page_uri, root):
    """The page's Markdown for the assignment edition: hidden code out, links to pages left out
    turned into their text, and a note at the top of an assigned stage's lesson."""

    def block(match):
        return hidden_part(root, match.group("spec"), match.group("indent")) \
            if EDITION.hides(split_spec(match.group("spec"))[0]) else match.group(0)

    markdown = INCLUDE_BLOCK.sub(block, markdown)
    markdown = SNIPPET_LINE.sub(block, markdown)  # an include outside a fenced block of its own
    markdown = DIFF.sub(lambda match: hidden_diff(*match.groups())
                        if EDITION.hides(match.group(1)) or EDITION.hides(match.group(2)) else match.group(0),
                        markdown)

    def link(match):
        target = match.group("target")
        if not target or "://" in target or target.startswith("mailto:"):
            return match.group(0)
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(page_uri), target))
        return match.group("text") if EDITION.drops(resolved) else match.group(0)

    markdown = LINK.sub(link, markdown)
    stage = re.match(r"lessons/(\d\d)-", page_uri)
    if stage and stage.group(1) in EDITION.assigned:
        markdown = re.sub(r"^# .*\n", lambda match: f"{match.group(0)}\n{assigned_note(stage.group(1))}",
                          markdown, count=1, flags=re.MULTILINE)
    return markdown


def stage_files(root):
    """Every stage source file that gets a whole-file page, as repo-relative posix paths."""
    key = Path(root).resolve()
    if key not in STAGE_FILES:
        STAGE_FILES[key] = sorted(
            path.relative_to(root).as_posix() for path in (root / "stages").rglob("*")
            if path.is_file() and path.suffix in CODE_SUFFIXES and "__pycache__" not in path.parts)
    return STAGE_FILES[key]


def code_page(path):
    """The generated page (docs-relative) that shows the whole of the repo file `path`."""
    return f"{CODE_PAGES}/{path}.md"


def on_files(files, config):
    root = repo_root(config)
    for cache in (LINKED, SOURCES, STAGE_FILES):
        cache.clear()
    if EDITION:
        for file in [file for file in files if EDITION.drops(file.src_uri)]:
            files.remove(file)
    for path in sorted((root / "lessons").glob("*.md")):
        if not (EDITION and EDITION.drops(f"lessons/{path.name}")):
            files.append(File.generated(config, f"lessons/{path.name}", abs_src_path=str(path)))
    for path in stage_files(root):
        if EDITION and EDITION.drops(code_page(path)):
            continue
        # Reached from the snippets' links, never from the nav: NOT_IN_NAV says so to mkdocs.
        files.append(File.generated(config, code_page(path), content=whole_file_page(root, path),
                                    inclusion=InclusionLevel.NOT_IN_NAV))
    return files


def on_post_page(output, page, config):
    """Every link to a line of a whole-file page must find that line's anchor there."""
    linked = LINKED.get(page.file.src_uri)
    if linked:
        present = {int(number) for number in re.findall(r'id="__codelineno-0-(\d+)"', output)}
        if linked - present:
            raise PluginError(f"{page.file.src_uri} has no line {sorted(linked - present)}, "
                              "though pages link to it")
    return output


def on_serve(server, config, builder):
    for folder in ("lessons", "stages"):
        server.watch(str(repo_root(config) / folder))
    return server


DIFF = re.compile(r"^<!-- diff (\S+) (\S+) -->$", re.MULTILINE)
CONTRACT = re.compile(r"^<!-- contract (\d\d) -->$", re.MULTILINE)
CAPABILITIES = re.compile(r"^<!-- capabilities -->$", re.MULTILINE)
RUBRIC = re.compile(r"^<!-- rubric (\d\d) -->$", re.MULTILINE)
CATEGORIES = re.compile(r"^<!-- categories -->$", re.MULTILINE)
# A fenced block whose only line includes one file: ```python / --8<-- "path[:spec]" / ```
INCLUDE_BLOCK = re.compile(
    r'^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]+)(?P<options>[^\n`]*)\n'
    r'(?P=indent)-{1,}8<-{1,}[ \t]+"(?P<spec>[^"\n]+)"\n'
    r'(?P=indent)(?P=fence)[ \t]*$', re.MULTILINE)


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri.startswith(f"{CODE_PAGES}/"):
        return markdown  # a whole-file page: already written by whole_file_page()
    root = repo_root(config)
    if EDITION:
        markdown = edition_markdown(markdown, page.file.src_uri, root)
    markdown = CONTRACT.sub(lambda match: contract_table(root, match.group(1)), markdown)
    markdown = CAPABILITIES.sub(lambda match: capabilities_table(root), markdown)
    markdown = RUBRIC.sub(lambda match: rubric_table(root, match.group(1)), markdown)
    markdown = CATEGORIES.sub(lambda match: categories_rows(root), markdown)
    markdown = INCLUDE_BLOCK.sub(lambda match: titled_include(root, page.file.src_uri, match), markdown)
    return DIFF.sub(lambda match: diff_block(root, page.file.src_uri, match.group(1), match.group(2)),
                    markdown)


def capabilities_table(root):
    """Per stage, what its grade holds: its capabilities (tests/stages.py), each with its meaning."""
    sys.path.insert(0, str(root / "tests"))
    try:
        from stages import CAPABILITIES, STAGES
    finally:
        sys.path.pop(0)
    rows = ["| Stage | What its grade checks |", "| --- | --- |"]
    for stage in STAGES:
        caps = [name for name in CAPABILITIES if name in stage.caps]
        held = "<br>".join(f"`{name}`: {CAPABILITIES[name]}" for name in caps)
        rows.append(f"| {stage.id} · {stage.title} | {held} |")
    return "\n".join(rows) + "\n"


def contract_table(root, stage_id):
    """Stage NN's contract, from the one table the tests wait on (tests/contract.py)."""
    sys.path.insert(0, str(root / "tests"))
    try:
        import contract
        from stages import BY_ID
    finally:
        sys.path.pop(0)
    rows = ["| Program | Must show | When |", "| --- | --- | --- |"]
    for term in BY_ID[stage_id].terms.values():
        shown = contract.shown(term.text).replace("|", "\\|")
        shown = f"`{shown}` (a pattern)" if term.pattern else f"`{shown}`"
        rows.append(f"| {term.who} | {shown} | {term.when} |")
    return "\n".join(rows) + f"\n\nFree, so no check depends on it: {contract.FREE}\n"


def graded_checks(root):
    """Stage id -> the names of the checks its grading runs (`pytest --collect-only --stage ...`,
    as grade.py runs them), kept in a temporary file until tests/ changes."""
    tests = sorted((root / "tests").glob("*.py"))
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in tests)).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"chat-kit-graded-checks-{digest}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    sys.path.insert(0, str(root / "tests"))
    try:
        from stages import STAGES
    finally:
        sys.path.pop(0)
    listed = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-o", "addopts=", "-p", "no:cacheprovider",
         "--stage", ",".join(stage.id for stage in STAGES)],
        cwd=root, capture_output=True, text=True, check=True).stdout
    found = {}
    for module, check, stage_id in re.findall(r"^tests/(\w+)\.py::(\w+)\[(\d\d)[^\]]*\]$", listed, re.MULTILINE):
        found.setdefault(stage_id, {})[check] = module
    cache.write_text(json.dumps(found))
    return found


def categories_rows(root):
    """The rubric's categories, as rows of a table whose header the page writes."""
    sys.path.insert(0, str(root / "tests"))
    try:
        import categories
    finally:
        sys.path.pop(0)
    return "\n".join(f"| {name} | {category.weight} | {category.covers} |"
                     for name, category in categories.CATEGORIES.items())


def rubric_table(root, stage_id):
    """Stage NN's rubric: each category it is graded in, its default weight, and its checks."""
    sys.path.insert(0, str(root / "tests"))
    try:
        import categories
    finally:
        sys.path.pop(0)
    counts = {}
    for check, module in graded_checks(root)[stage_id].items():
        name = categories.of(module, check)
        counts[name] = counts.get(name, 0) + 1
    rows = ["| Category | Weight | Checks | What it covers |", "| --- | ---: | ---: | --- |"]
    for name, category in categories.CATEGORIES.items():
        if name in counts:
            rows.append(f"| {name} | {category.weight} | {counts[name]} | {category.covers} |")
    total = sum(category.weight for name, category in categories.CATEGORIES.items() if name in counts)
    return "\n".join(rows) + f"\n\nThe stage is worth {total} points by default.\n"


# ---------------------------------------------------------------------------------------------
# Included code: the file's name, its real line numbers, a link to the whole file

SECTION_MARK = re.compile(r"-{1,}8<-{1,}[ \t]+\[[ \t]*(start|end)[ \t]*:[ \t]*([a-z][-_0-9a-z]*)[ \t]*\]",
                          re.IGNORECASE)
SNIPPET_MARK = re.compile(r"-{1,}8<-{1,}")


def is_marker(line):
    """Snippet notation in a file: pymdownx.snippets leaves these lines out of what it includes."""
    return bool(SECTION_MARK.search(line)) or bool(re.fullmatch(r"[ \t]*-{1,}8<-{1,}[ \t]*", line))


def split_spec(spec):
    """`path`, `path:name` or `path:A:B` (1-based, inclusive) -> (path, section, (A, B) or None)."""
    match = re.fullmatch(r"(?P<path>.+?)(?::(?P<start>\d*)(?::(?P<end>\d*))?|:(?P<name>[a-z][-_0-9a-z]*))?",
                         spec, re.IGNORECASE)
    if match is None:
        raise ValueError(f"snippet {spec!r}: the hook knows a whole file, a section or one line range")
    start, end = match.group("start"), match.group("end")
    lines = None if start is None else (int(start) if start else 1, int(end) if end else None)
    return match.group("path"), match.group("name"), lines


def included_runs(root, spec):
    """The lines pymdownx.snippets includes for `spec`, as runs of consecutive real line numbers
    [(first, last), ...], 1-based. Marker lines are never included, so a section with another
    section inside it is more than one run. Raises if the file or section does not exist."""
    path, name, span = split_spec(spec)
    lines = source(root, path).split("\n")
    if name is not None:
        starts = [number for number, line in enumerate(lines, 1)
                  if (m := SECTION_MARK.search(line)) and m.group(1) == "start" and m.group(2) == name]
        if not starts:
            raise ValueError(f"{path} has no section {name!r} (# --8<-- [start:{name}])")
        numbers = []
        for number in range(starts[0] + 1, len(lines) + 1):
            match = SECTION_MARK.search(lines[number - 1])
            if match and match.group(2) == name and match.group(1) == "end":
                break
            if not is_marker(lines[number - 1]):
                numbers.append(number)
    else:
        first, last = span or (1, None)
        last = len(lines) if last is None else min(last, len(lines))
        numbers = [number for number in range(first, last + 1) if not is_marker(lines[number - 1])]
    runs = []
    for number in numbers:
        if runs and runs[-1][1] == number - 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    while runs and not lines[runs[-1][1] - 1].strip() and runs[-1][1] == len(lines):  # the file's final newline
        runs[-1][1] -= 1
        if runs[-1][1] < runs[-1][0]:
            runs.pop()
    return [tuple(run) for run in runs]


def line_link(from_page, path, line):
    """A Markdown link target, relative to the page `from_page`, to `line` of the whole-file page."""
    LINKED.setdefault(code_page(path), set()).add(line)
    target = posixpath.relpath(code_page(path), posixpath.dirname(from_page) or ".")
    return f"{target}#__codelineno-0-{line}"


def titled_include(root, page_uri, match):
    """The include block again, with title="file" and linenums="N" (the file's real line numbers),
    and below it a link to the same line in the whole file. One block for each run of lines."""
    spec, indent, fence = match.group("spec"), match.group("indent"), match.group("fence")
    path = split_spec(spec)[0]
    if Path(path).suffix not in CODE_SUFFIXES or re.search(r"\b(title|linenums)=", match.group("options")):
        return match.group(0)  # transcripts, tables, pages: not code; or the author chose for this block
    runs = included_runs(root, spec)
    blocks = []
    for first, last in runs:
        include = spec if len(runs) == 1 else f"{path}:{first}:{last}"
        blocks.append(f'{indent}{fence}{match.group("lang")}{match.group("options")} title="{path}" '
                      f'linenums="{first}"\n{indent}--8<-- "{include}"\n{indent}{fence}')
    if path in stage_files(root):
        link = line_link(page_uri, path, runs[0][0])
        blocks.append(f"{indent}[The whole of {path}, from line {runs[0][0]}]({link}){{ .chat-whole-file }}")
    return "\n\n".join(blocks)


def escape_snippet_notation(line):
    """A file's line to show as it is: pymdownx.snippets would act on (and drop) a line that
    looks like snippet notation, unless it is escaped with a `;` before the scissors."""
    match = SNIPPET_MARK.search(line)
    return line if match is None else f"{line[:match.start()]};{line[match.start():]}"


def whole_file_page(root, path):
    """The page that shows the whole of a stage file with its real line numbers, for the lessons
    to link to. Out of the search index: the lessons' text is what search should find."""
    text = source(root, path)
    lines = [escape_snippet_notation(line) for line in text.splitlines()]
    fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"^\s*(`+)", text, re.MULTILINE)), default=0))
    stage = path.split("/")[1]
    about = ""
    for lesson in sorted((root / "lessons").glob(f"{stage}-*.md"))[:1]:
        back = posixpath.relpath(f"lessons/{lesson.name}", posixpath.dirname(code_page(path)))
        about = f" [Stage {stage}'s lesson]({back}) walks through it."
    language = LANGUAGES[Path(path).suffix]
    return (f"---\nsearch:\n  exclude: true\n---\n\n# {path}\n\n"
            f"The whole file, as it is in the kit, with its line numbers.{about} A comment like "
            "`# --8<-- [start:accept]` marks where a part that a lesson shows begins, and "
            "`[end:accept]` where it ends.\n\n"
            f'{fence}{language} title="{path}" linenums="1"\n' + "\n".join(lines) + f"\n{fence}\n")


# ---------------------------------------------------------------------------------------------
# "What changed": only the definitions whose code changed

@dataclass
class Part:
    """One top-level function or class, one method, a class's own lines (without its methods),
    or the module-level code: what the focused diff compares."""
    name: str  # "handle", "ChatServer.send", "ChatServer", "module level"
    kind: str  # "function", "method", "class", "module"
    lines: list = field(default_factory=list)  # [(real line number, text), ...]
    code: str = ""  # what Python parses, without docstrings: equal code means no change

    @property
    def label(self):
        return {"function": f"`{self.name}()`", "method": f"`{self.name}()`",
                "class": f"class `{self.name}`", "module": "module level"}[self.kind]


def docstring(node):
    """The node's docstring statement, if it is a module, class or function that has one."""
    body = getattr(node, "body", None)
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
            and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[0]
    return None


def drop_docstrings(tree):
    """Remove every docstring from the tree, in place: for a diff they are comments. The other
    statements keep their line numbers."""
    for node in ast.walk(tree):
        if docstring(node) is not None:
            node.body = node.body[1:] or [ast.Pass()]
    return tree


def first_line(node):
    return min([node.lineno, *(decorator.lineno for decorator in getattr(node, "decorator_list", []))])


@functools.lru_cache(maxsize=32)  # a stage's file is compared with the stage before and the one after
def parts_of(text):
    """The file's parts, in file order: the module level (every line outside the others) first,
    then each top-level function, and each class followed by its methods."""
    tree = drop_docstrings(ast.parse(text))
    lines = text.splitlines()
    parts, taken, module_nodes = [], set(), []
    defs = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if isinstance(node, defs):
            span = range(first_line(node), node.end_lineno + 1)
            parts.append(Part(node.name, "function", [(n, lines[n - 1]) for n in span], ast.dump(node)))
            taken.update(span)
        elif isinstance(node, ast.ClassDef):
            methods = [child for child in node.body if isinstance(child, defs)]
            in_methods = {n for child in methods for n in range(first_line(child), child.end_lineno + 1)}
            span = [n for n in range(first_line(node), node.end_lineno + 1) if n not in in_methods]
            own = copy.copy(node)
            own.body = [child for child in node.body if not isinstance(child, defs)] or [ast.Pass()]
            parts.append(Part(node.name, "class", [(n, lines[n - 1]) for n in span], ast.dump(own)))
            for child in methods:
                method_span = range(first_line(child), child.end_lineno + 1)
                parts.append(Part(f"{node.name}.{child.name}", "method",
                                  [(n, lines[n - 1]) for n in method_span], ast.dump(child)))
            taken.update(range(first_line(node), node.end_lineno + 1))
        else:
            module_nodes.append(node)
    module = Part("module level", "module", [(n, line) for n, line in enumerate(lines, 1) if n not in taken],
                  ast.dump(ast.Module(module_nodes, [])))
    return [module, *parts]


@functools.lru_cache(maxsize=32)
def noise_lines(text):
    """Line numbers that carry no code: blank, comment-only, or inside a docstring."""
    noise = {n for n, line in enumerate(text.splitlines(), 1) if not line.strip() or line.strip().startswith("#")}
    for node in ast.walk(ast.parse(text)):
        if (statement := docstring(node)) is not None:
            noise.update(range(statement.lineno, statement.end_lineno + 1))
    return noise


@functools.lru_cache(maxsize=32)
def code_of_lines(text):
    """Each line's code without its comment (tokenize knows a # in a string from a comment)."""
    code = {n: line for n, line in enumerate(text.splitlines(), 1)}
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            number, column = token.start
            code[number] = code[number][:column]
    return {n: "".join(line.split()) for n, line in code.items()}


@dataclass
class Hunk:
    old_start: int
    old_count: int
    new_start: int
    new_count: int
    lines: list  # "+text", "-text", " text"

    def header(self):
        return f"@@ -{self.old_start},{self.old_count} +{self.new_start},{self.new_count} @@"


def part_hunks(old, new, old_noise, new_noise, old_code, new_code):
    """The hunks of one part's diff, with real line numbers. A change that is only comments,
    docstrings, blank lines or line wrapping is left out, with the context around it."""
    matcher = difflib.SequenceMatcher(None, [text.rstrip() for _, text in old.lines],
                                      [text.rstrip() for _, text in new.lines], autojunk=False)

    def real(i1, i2, j1, j2):
        return "".join(old_code[old.lines[i][0]] for i in range(i1, i2) if old.lines[i][0] not in old_noise) != \
               "".join(new_code[new.lines[j][0]] for j in range(j1, j2) if new.lines[j][0] not in new_noise)

    hunks = []
    for group in matcher.get_grouped_opcodes(CONTEXT):
        # Cut the group around its real changes: what lies between two of them stays in one hunk
        # when it is unchanged lines only; a noise-only change between them splits the hunk.
        runs, current = [], []
        for opcode in group:
            tag = opcode[0]
            if tag == "equal":
                current.append(opcode)
            elif real(*opcode[1:]):
                current.append(("real", *opcode[1:]))
            else:
                runs.append(current)
                current = []
        runs.append(current)
        for run in runs:
            changes = [index for index, opcode in enumerate(run) if opcode[0] == "real"]
            if not changes:
                continue
            run = run[changes[0] - (changes[0] > 0):changes[-1] + 1 + (changes[-1] < len(run) - 1)]
            hunks += split_at_gaps(entries_of(run, old, new), old, new)
    return hunks


def entries_of(opcodes, old, new):
    """Each line of the opcodes as (old number, new number, line as shown, old place, new place),
    with at most CONTEXT unchanged lines at each end. A number is None on the side that lacks the
    line; a place is the line's index in the part on that side (where it would be, if it lacks it)."""
    entries = []
    for index, (tag, i1, i2, j1, j2) in enumerate(opcodes):
        if tag == "equal":
            pairs = list(zip(range(i1, i2), range(j1, j2)))
            if index == 0:
                pairs = pairs[-CONTEXT:]
            if index == len(opcodes) - 1:
                pairs = pairs[:CONTEXT]
            entries += [(old.lines[i][0], new.lines[j][0], " " + new.lines[j][1], i, j) for i, j in pairs]
        else:
            entries += [(old.lines[i][0], None, "-" + old.lines[i][1], i, j1) for i in range(i1, i2)]
            entries += [(None, new.lines[j][0], "+" + new.lines[j][1], i2, j) for j in range(j1, j2)]
    return entries


def split_at_gaps(entries, old, new):
    """Hunks of consecutive lines (module-level code has gaps where the definitions are), each
    with a header in unified diff's form: a side with no lines starts at the line before."""
    runs, last = [], [None, None]  # the last line number seen on each side, in the current run
    for entry in entries:
        if not runs or any(number is not None and seen is not None and number != seen + 1
                           for number, seen in zip(entry[:2], last)):
            runs.append([])
            last = [None, None]
        runs[-1].append(entry)
        last = [number if number is not None else seen for number, seen in zip(entry[:2], last)]
    hunks = []
    for run in runs:
        if all(entry[2].startswith(" ") for entry in run):
            continue  # context cut off from its change by a gap
        olds = [entry[0] for entry in run if entry[0] is not None]
        news = [entry[1] for entry in run if entry[1] is not None]
        hunks.append(Hunk(olds[0] if olds else before(old, run[0][3]), len(olds),
                          news[0] if news else before(new, run[0][4]), len(news),
                          [entry[2] for entry in run]))
    return hunks


def before(part, index):
    """The real number of the line before the part's line `index` (the part's first line - 1 at 0)."""
    return part.lines[index - 1][0] if index > 0 else (part.lines[0][0] - 1 if part.lines else 0)


@dataclass
class FileDiff:
    changed: list  # [(old part, new part, hunks)]
    added: list  # [new part]
    removed: list  # [old part]


def focused_diff(old_text, new_text):
    """What changed from one Python file to the next, part by part (see Part)."""
    old_parts = {part.name: part for part in parts_of(old_text)}
    new_parts = parts_of(new_text)
    noise = noise_lines(old_text), noise_lines(new_text)
    code = code_of_lines(old_text), code_of_lines(new_text)
    result = FileDiff([], [], [])
    for part in new_parts:
        was = old_parts.get(part.name)
        if was is None or was.kind != part.kind:
            result.added.append(part)
        elif was.code != part.code:
            hunks = part_hunks(was, part, noise[0], noise[1], code[0], code[1])
            if not hunks:  # the code differs, but no line's code does (say, a line split in two): show it all
                whole = [("replace", 0, len(was.lines), 0, len(part.lines))]
                hunks = split_at_gaps(entries_of(whole, was, part), was, part)
            result.changed.append((was, part, hunks))
    names = {part.name: part.kind for part in new_parts}
    result.removed = [part for part in old_parts.values() if names.get(part.name) != part.kind]
    for listed in (result.added, result.removed):  # a new class brings its methods: list the class only
        classes = {part.name for part in listed if part.kind == "class"}
        listed[:] = [part for part in listed if part.kind != "method" or part.name.split(".")[0] not in classes]
    return result


def count(number, singular, plural=None):
    return f"{number} {singular if number == 1 else plural or singular + 's'}"


def diff_block(root, page_uri, old, new):
    """A collapsed block holding the focused diff, titled with what it counts. It is left out of
    the search index (Material's data-search-exclude, on the <details> itself: the search plugin
    stops skipping at the first closing tag of the same name, so a wrapping <div> would not do)."""
    result = focused_diff(source(root, old), source(root, new))  # a missing file fails the build
    parts = old.split("/"), new.split("/")
    stages = (f"stage {parts[0][1]} to {parts[1][1]}" if all(len(p) > 2 and p[0] == "stages" for p in parts)
              else f"against {old}")
    counted = [count(len(result.changed), "part") + " changed" if result.changed else "",
               f"{len(result.added)} added" if result.added else "",
               f"{len(result.removed)} removed" if result.removed else ""]
    counted = ", ".join(text for text in counted if text) or "no change in the code"
    title = f"{posixpath.basename(new)}, {stages}: {counted} (comment-only changes not shown)"
    stage_paths = stage_files(root)

    def listed(word, parts, path, lines):
        links = [f"[{part.label}]({line_link(page_uri, path, line)})" if path in stage_paths else part.label
                 for part, line in zip(parts, lines)]
        return f"**{word}:** " + ", ".join(links) + "." if links else ""

    body = [listed("Changed", [part for _, part, _ in result.changed], new,
                   [hunks[0].new_start + (hunks[0].new_count == 0) for _, _, hunks in result.changed]),
            listed("Added", result.added, new, [part.lines[0][0] for part in result.added]),
            listed("Removed", result.removed, old, [part.lines[0][0] for part in result.removed])]
    body = [" ".join(text for text in body if text)]
    if result.changed:
        body.append(f"Each diff below goes from `{old}` (`-` lines) to `{new}` (`+` lines); an `@@` line "
                    "gives the line numbers in the two files. The names link to the whole file.")
    for _, part, hunks in result.changed:
        shown = []
        for hunk in hunks:
            shown.append(f"{hunk.header()} {part.name}")
            shown += [escape_snippet_notation(line) for line in hunk.lines]
        fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", "\n".join(shown))), default=0))
        body.append(f'{fence}diff title="{part.label.replace("`", "")}"\n' + "\n".join(shown) + f"\n{fence}")
    return (f'<details class="abstract chat-diff" markdown data-search-exclude>\n'
            f"<summary>{html.escape(title)}</summary>\n\n" + "\n\n".join(body) + "\n\n</details>\n")

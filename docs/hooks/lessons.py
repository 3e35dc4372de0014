"""mkdocs hook: pull the lessons (lessons/*.md, outside docs_dir) into the site.

Lessons sit beside stages/ at the top of the repo, where a reader of the code
finds them; mkdocs only looks inside docs/. This hook adds each lesson as a
page, anchors pymdownx.snippets at the repo root so the build works from any
folder, and makes `mkdocs serve` rebuild when a lesson or a stage changes.

It also writes the "What changed" diffs at build time: a line

    <!-- diff stages/01/server.py stages/02/server.py -->

in a page becomes a collapsible unified diff of the two files as they are now, and

    <!-- contract NN -->

becomes stage NN's contract: every string the tests wait for, from tests/contract.py.
"""

import difflib
import re
import sys
from pathlib import Path

from mkdocs.structure.files import File


def repo_root(config):
    return Path(config.config_file_path).resolve().parent


def on_config(config):
    # Snippets resolve paths from the current folder by default: anchor them to the repo instead.
    snippets = config.mdx_configs.setdefault("pymdownx.snippets", {})
    snippets["base_path"] = [str(repo_root(config))]
    return config


def on_files(files, config):
    for path in sorted((repo_root(config) / "lessons").glob("*.md")):
        files.append(File.generated(config, f"lessons/{path.name}", abs_src_path=str(path)))
    return files


def on_serve(server, config, builder):
    for folder in ("lessons", "stages"):
        server.watch(str(repo_root(config) / folder))
    return server


DIFF = re.compile(r"^<!-- diff (\S+) (\S+) -->$", re.MULTILINE)
CONTRACT = re.compile(r"^<!-- contract (\d\d) -->$", re.MULTILINE)


def on_page_markdown(markdown, page, config, files):
    markdown = CONTRACT.sub(lambda match: contract_table(repo_root(config), match.group(1)), markdown)
    return DIFF.sub(lambda match: diff_block(repo_root(config), match.group(1), match.group(2)), markdown)


def contract_table(root, stage_id):
    """Stage NN's contract, from the one table the tests wait on (tests/contract.py)."""
    sys.path.insert(0, str(root / "tests"))
    try:
        import contract
        from stages import BY_ID
    finally:
        sys.path.pop(0)
    rows = ["| Program | Must show | When |", "| --- | --- | --- |"]
    for term in BY_ID[stage_id].client_class.terms.values():
        shown = contract.shown(term.text).replace("|", "\\|")
        shown = f"`{shown}` (a pattern)" if term.pattern else f"`{shown}`"
        rows.append(f"| {term.who} | {shown} | {term.when} |")
    return "\n".join(rows) + f"\n\nFree, so no check depends on it: {contract.FREE}\n"


def diff_block(root, old, new):
    """A collapsed admonition holding the diff, titled with what it counts."""
    old_lines = (root / old).read_text().splitlines()  # a missing file fails the build, as it should
    new_lines = (root / new).read_text().splitlines()
    lines = list(difflib.unified_diff(old_lines, new_lines, old, new, lineterm="", n=2))
    added = sum(1 for line in lines if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in lines if line.startswith("-") and not line.startswith("---"))
    title = f"{new}: {added} lines added, {removed} removed, compared with {old}"
    body = "\n".join(f"    {line}" for line in lines) if lines else "    (no difference)"
    return f'??? abstract "{title}"\n\n    ```diff\n{body}\n    ```\n'

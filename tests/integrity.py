"""Integrity basics: does a submission lean on the kit's own files instead of its own code?

A flag is shown in the student's report and the class table; it never changes the score.
An instructor reads the flagged lines and decides. Flagged:

- an import of one of the kit's test modules (contract, harness, stages...) that the
  submission does not hold itself;
- a path to the kit's stage files or its tests folder in a string (`stages/05/server.py`,
  `../tests`), or the kit's own location on this machine;
- a program that is the kit's own stage file, unchanged (comments and blank lines aside).
"""

import ast
import io
import re
import tokenize
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
KIT_MODULES = {"contract", "harness", "stages", "known_bad", "suite", "conftest", "grade", "autograders"}
KIT_PATH = re.compile(r"(^|[/\\.])(stages[/\\]+\d\d|tests([/\\]|$))")


def flags(folder, stage_id):
    """Why this submission may not be the student's own work: a list of short lines (empty: none)."""
    folder = Path(folder)
    found = []
    for path in sorted(own_python_files(folder)):
        name = path.relative_to(folder)
        try:
            source = path.read_text(encoding="utf-8", errors="replace")
            tree = ast.parse(source)
        except (OSError, SyntaxError, ValueError):
            continue  # the checks will say what is wrong with it
        found += [f"{name}:{line}: {what}" for line, what in leaning_on_the_kit(tree, folder)]
    for program in ("server.py", "client.py"):
        mine, kit = folder / program, KIT / "stages" / stage_id / program
        if mine.is_file() and kit.is_file() and bare_code(mine) == bare_code(kit):
            found.append(f"{program}: the same code as the kit's stages/{stage_id}/{program}")
    return found


def own_python_files(folder):
    """The submission's .py files, not those of a hidden folder (a checkout of the kit, .git...)."""
    for path in folder.rglob("*.py"):
        parts = path.relative_to(folder).parts
        if not any(part.startswith(".") or part == "__pycache__" for part in parts):
            yield path


def leaning_on_the_kit(tree, folder):
    """(line, what) for each import of a kit module and each string naming a kit path."""
    own = {path.stem for path in own_python_files(folder)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module.split(".")[0]]
        else:
            names = []
        for name in names:
            if name in KIT_MODULES and name not in own:
                yield node.lineno, f"imports {name}, one of the kit's test modules"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if KIT_PATH.search(node.value) or str(KIT) in node.value:
                yield node.lineno, f"names a path of the kit: {node.value[:60]!r}"


def bare_code(path):
    """A program's tokens without comments, blank lines or layout: a copy with its comments
    changed is still a copy."""
    try:
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text(errors="replace")).readline)
        return [token.string for token in tokens
                if token.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE,
                                      tokenize.INDENT, tokenize.DEDENT)]
    except (tokenize.TokenError, SyntaxError, OSError):
        return None

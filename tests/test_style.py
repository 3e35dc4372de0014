"""The stages fit the page: no line over 88 columns, comments included, and ruff's format.

Students read the stages on the site, whose code column shows 88 columns, and in their
editors. ruff (pinned in requirements.txt, configured in pyproject.toml for stages/ only)
formats the code; it does not wrap comments or long strings, so the column check below
is the one that holds for every line. Fix a failure with:

    python -m ruff format stages    # then re-wrap by hand any comment or string still too long
"""

import subprocess
import sys
import unicodedata

from stages import REPO

WIDTH = 88  # pyproject.toml's [tool.ruff] line-length
STAGES = REPO / "stages"


def columns(line):
    """How wide a line shows in a terminal or a code block: East Asian wide characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)


def too_wide(paths, width=WIDTH):
    """Every line wider than `width` in these files, as "file:line: N columns" (paths relative to the repo
    when they are in it)."""
    found = []
    for path in paths:
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if columns(line) > width:
                found.append(f"{shown}:{number}: {columns(line)} columns")
    return found


def stage_files():
    """The stages' programs and scripts (the site shows both); not their READMEs' tables."""
    files = sorted([*STAGES.glob("**/*.py"), *STAGES.glob("**/*.sh")])
    assert len(files) >= 18, f"found only {len(files)} stage programs under {STAGES}"
    return files


def ruff(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def test_no_stage_line_is_over_88_columns():
    found = too_wide(stage_files())
    assert not found, f"{len(found)} stage lines are wider than {WIDTH} columns:\n" + "\n".join(found)


def test_the_column_check_finds_a_planted_long_line(tmp_path):
    planted = tmp_path / "planted.py"
    fits, over = "x = " + "1" * (WIDTH - 4), "# " + "y" * (WIDTH - 1)
    assert (columns(fits), columns(over)) == (88, 89)
    planted.write_text(f"{fits}\n{over}\n")
    assert too_wide([planted]) == [f"{planted}:2: 89 columns"]
    assert columns("# 日本") == 6, "a wide character counts as two columns"


# Lines per program, blank lines and comments included: one idea per stage, so a stage holds
# its lesson's idea and little else (the defences wait for stage 06). The stages after 06 may
# not grow past the size they had when the budgets came.
BUDGETS = {
    "01": {"server.py": 120, "client.py": 100},
    "02": {"server.py": 230, "client.py": 163},
    "03": {"server.py": 320, "client.py": 244},
    "04": {"server.py": 380, "client.py": 240},
    "05": {"server.py": 450, "client.py": 347},
    "06": {"server.py": 620, "client.py": 348},
    "07": {"server.py": 697, "client.py": 530},
    "08": {"peer.py": 383},
    "09": {"server.py": 564, "client.py": 366},
    "10": {"server.py": 898, "client.py": 725},
    "11": {"server.py": 927, "client.py": 287},
}


SCRIPT_BUDGET = 120  # any other script in a stage's folder: a failure mode shown on its own


def over_budget(stages_folder, budgets):
    """Every program over its budget, or a stage program with none, as "NN/name: N lines (budget B)"."""
    found = []
    for folder in sorted(path for path in stages_folder.iterdir() if path.is_dir()):
        budget = budgets.get(folder.name, {})
        for program in sorted(folder.rglob("*.py")):
            lines = len(program.read_text(encoding="utf-8").splitlines())
            own = program.name in ("server.py", "client.py", "peer.py") and program.parent == folder
            limit = budget.get(program.name) if own else SCRIPT_BUDGET
            if limit is None or lines > limit:
                found.append(f"{program.relative_to(stages_folder)}: {lines} lines (budget {limit})")
    return found


def test_every_stage_program_is_within_its_line_budget():
    found = over_budget(STAGES, BUDGETS)
    assert not found, "over budget (tests/test_style.py BUDGETS): " + "; ".join(found)


def test_the_budget_check_finds_a_planted_over_budget_file(tmp_path):
    (tmp_path / "02").mkdir()
    (tmp_path / "02" / "server.py").write_text("x = 1\n" * 231)
    (tmp_path / "02" / "client.py").write_text("x = 1\n" * 150)
    (tmp_path / "02" / "attacks").mkdir()
    (tmp_path / "02" / "attacks" / "small.py").write_text("x = 1\n" * SCRIPT_BUDGET)
    (tmp_path / "02" / "attacks" / "big.py").write_text("x = 1\n" * (SCRIPT_BUDGET + 1))
    (tmp_path / "99").mkdir()
    (tmp_path / "99" / "server.py").write_text("x = 1\n")
    assert over_budget(tmp_path, BUDGETS) == ["02/attacks/big.py: 121 lines (budget 120)",
                                              "02/server.py: 231 lines (budget 230)",
                                              "99/server.py: 1 lines (budget None)"]


def test_the_stages_are_formatted_with_ruff():
    result = ruff("format", "--check", "--diff", "stages")
    assert result.returncode == 0, \
        f"run python -m ruff format stages\n{result.stdout[-4000:]}{result.stderr[-2000:]}"


def test_ruff_check_with_the_line_length_rule_passes_on_the_stages():
    result = ruff("check", "--extend-select", "E501", "stages")
    assert result.returncode == 0, f"{result.stdout[-4000:]}{result.stderr[-2000:]}"


def test_ruff_uses_the_kits_settings_and_fails_on_a_planted_file(tmp_path):
    """The two ruff checks above can fail: with the kit's pyproject.toml, a list on one 89-column
    line is reported by both (ruff format would split it)."""
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    return [" + ", ".join(["1234567"] * 7 + ["1234567890123"]) + "]\n")
    assert columns(planted.read_text().splitlines()[1]) == 89
    config = str(REPO / "pyproject.toml")
    checked = ruff("check", "--config", config, "--extend-select", "E501", str(planted), cwd=tmp_path)
    assert checked.returncode == 1 and "E501" in checked.stdout, checked.stdout + checked.stderr
    formatted = ruff("format", "--config", config, "--check", str(planted), cwd=tmp_path)
    assert formatted.returncode == 1, formatted.stdout + formatted.stderr


def test_the_top_level_holds_only_the_kits_fixed_shape():
    """README.md, mkdocs.yml, stages/, lessons/, docs/, tests/, requirements.txt, pyproject.toml
    and .ci/; .github/ holds only the instructors' Classroom template (docs/instructors.md)."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    top = {name.split("/", 1)[0] for name in tracked.splitlines()}
    allowed = {"README.md", "mkdocs.yml", "stages", "lessons", "docs", "tests", "requirements.txt",
               "pyproject.toml", ".ci", ".github", ".gitignore"}
    assert top <= allowed, f"not part of the kit's shape: {sorted(top - allowed)}"
    github = {name for name in tracked.splitlines() if name.startswith(".github/")}
    assert all(name.startswith(".github/classroom/") for name in github), sorted(github)

"""The contract is complete: every check waits only for what tests/contract.py states, and the site shows it."""

import ast
import re

import pytest

import contract
from stages import BY_ID, REPO, STAGES

WAITS = {"expect", "expect_regex", "sees", "logs", "never_saw", "assert_not_seen", "expect_error_exit", "expect_usage_exit", "shows",
         "expect_line", "wait_for_screen"}
CHECK_FILES = sorted((REPO / "tests").glob("test_*.py")) + [REPO / "tests" / name for name in
                                                            ("stages.py", "harness.py", "screen.py")]


def literal_waits(path):
    """(line, source) of every wait whose first argument is written out in the check instead of taken from
    the contract: a string literal or an f-string."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WAITS
                and node.args and isinstance(node.args[0], (ast.Constant, ast.JoinedStr))
                and isinstance(getattr(node.args[0], "value", ""), str)
                and not (isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "child")):
            # (pexpect's own child.expect() is the harness's plumbing, not a check)
            yield node.lineno, ast.unparse(node)


@pytest.mark.parametrize("path", CHECK_FILES, ids=[path.name for path in CHECK_FILES])
def test_every_wait_takes_its_text_from_the_contract(path):
    found = [f"{path.name}:{line}: {source}" for line, source in literal_waits(path)]
    assert not found, ("these checks wait for text that is not taken from tests/contract.py, so the spec "
                       "may not say it:\n" + "\n".join(found))


def test_the_audit_finds_a_literal_wait(tmp_path):
    """The audit above can fail: a check written with a literal is found."""
    check = tmp_path / "test_planted.py"
    check.write_text('def test_x(alice):\n    alice.sees("welcome, " + "x")\n    alice.term.expect(f"hi {1}")\n')
    assert [line for line, _ in literal_waits(check)] == [3]  # "a" + "b" is an expression, not a literal
    check.write_text('def test_x(alice):\n    alice.sees("welcome")\n')
    assert [line for line, _ in literal_waits(check)] == [2]


@pytest.mark.parametrize("stage_id", [stage.id for stage in STAGES])
def test_every_lesson_shows_its_stages_contract(stage_id):
    lesson = next((REPO / "lessons").glob(f"{stage_id}-*.md")).read_text()
    section = lesson.split("## What the tests check", 1)[1].split("\n## ", 1)[0]
    assert f"<!-- contract {stage_id} -->" in section, \
        "'What the tests check' must include the stage's contract table (<!-- contract NN -->)"


@pytest.mark.parametrize("stage_id", [stage.id for stage in STAGES])
def test_every_term_is_a_valid_template(stage_id):
    for key, term in BY_ID[stage_id].terms.items():
        names = set(re.findall(r"\{(\w+)\}", term.text))
        text = term(**{name: "Noor41" for name in names})
        if term.pattern:
            re.compile(text)
        assert term.who in {"server", "client", "peer", "irssi", "attack", "any"} and term.when, key


def test_the_spec_names_the_default_ports():
    """The default ports are in the spec's "Defaults" rows of the server and the client (not the
    peer's: stage 08 has none of these checks), as tests/test_cli.py waits for them."""
    defaults = [line for line in (REPO / "docs" / "protocol.md").read_text().splitlines()
                if line.startswith("| Defaults |") and "peer" not in line and "0.0.0.0" not in line]
    assert len(defaults) == 2, "docs/protocol.md: expected a '| Defaults |' row for the server and the client"
    for line in defaults:
        assert f"--port {contract.DEFAULT_PORT}" in line and f"port {contract.IRC_DEFAULT_PORT}" in line, line


def test_every_capability_is_described_and_every_check_needs_known_ones():
    """The instructors' guide shows each stage's capabilities with their meaning (CAPABILITIES)."""
    from stages import CAPABILITIES
    used = set().union(*(stage.caps for stage in STAGES))
    assert used <= set(CAPABILITIES), f"capabilities with no description: {sorted(used - set(CAPABILITIES))}"
    needed = set()
    for path in sorted((REPO / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "needs"):
                needed |= {arg.value for arg in node.args if isinstance(arg, ast.Constant)}
    assert needed <= used, f"checks need capabilities no stage has: {sorted(needed - used)}"

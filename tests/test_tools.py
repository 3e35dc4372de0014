"""The kit's tools: a default run never overwrites committed results, and never leaves files to commit."""

import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import bench  # noqa: E402


def test_bench_default_run_writes_a_temporary_folder_not_the_committed_results():
    folder = bench.results_folder(Namespace(report=None, write_docs=False, out=None))
    folder.rmdir()  # made empty by results_folder: nothing to keep
    assert folder.resolve() != bench.DOCS.resolve() and REPO not in folder.resolve().parents
    assert bench.results_folder(Namespace(report=None, write_docs=True, out=None)) == bench.DOCS


def test_bench_refuses_the_committed_folder_as_out():
    with pytest.raises(SystemExit, match="--write-docs"):
        bench.results_folder(Namespace(report=None, write_docs=False, out=str(REPO / "docs" / "bench")))


@pytest.mark.parametrize("path", ["grading/alice/summary.txt", "site/index.html"])
def test_default_outputs_are_ignored_by_git(path):
    """grade.py writes grading/ by default, mkdocs site/: neither should show up in git status."""
    result = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
    assert result.returncode == 0, f"{path} is not in .gitignore"

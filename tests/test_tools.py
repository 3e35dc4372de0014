"""The kit's tools: a default run never overwrites committed results, and never leaves files to commit."""

import json
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


# ---------------------------------------------------------------- tests/bench.py --irc: stage 11 against miniircd

IRC_FIGURES = ("join_seconds", "throughput", "kib_per_client", "server_cpu_per_1000", "generator_cores")
STUCK_FIGURES = ("p99_ms", "throughput", "throughput_ratio", "rss_start_kib", "rss_max_kib", "rss_end_kib",
                 "growth_kib_per_s", "held_kib", "throughput_without", "seconds", "lost", "messages", "mib_to_each")


@pytest.fixture(scope="module")
def irc_run(tmp_path_factory):
    """The IRC workload at its smallest (what `--quick` runs too): both servers, every figure."""
    if not bench.miniircd_installed():
        pytest.skip("miniircd is not installed: pip install -r requirements.txt")
    out = tmp_path_factory.mktemp("irc")
    result = subprocess.run([sys.executable, "tests/bench.py", "--irc", "--quick", "--out", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return out, json.loads((out / "irc.json").read_text()), result.stdout


@pytest.mark.slow  # runs both IRC servers (8 s): the slow tier, as CI runs it
def test_bench_irc_measures_both_servers_with_every_figure(irc_run):
    _, data, _ = irc_run
    irc = data["irc"]
    assert irc["servers"] == ["11", "miniircd"]
    assert [(row["server"], row["clients"]) for row in irc["results"]] == [("11", 20), ("miniircd", 20)]
    for row in irc["results"]:
        assert "error" not in row, f"{row['server']}: {row['error']}"
        for figure in IRC_FIGURES:
            assert row.get(figure) is not None, f"{row['server']}: no {figure}"
        assert row["throughput"] > 0 and row["latency_50"]["p99_ms"] is not None
        stuck = row["stuck"]
        for figure in STUCK_FIGURES:
            assert stuck.get(figure) is not None, f"{row['server']} with a never-reading member: no {figure}"
        assert len(stuck["rss_kib"]) >= 2 and stuck["rounds"], "no memory over time, or no rounds"
        assert "dropped_after_s" in stuck and len(stuck["rss_between_rounds_kib"]) >= 2
    assert irc["most_clients"] == {"11": 50, "miniircd": 50}, irc["ladder"]


@pytest.mark.slow  # runs both IRC servers (8 s): the slow tier, as CI runs it
def test_bench_irc_writes_its_tables_and_plot_and_nothing_of_the_chat_run(irc_run):
    out, data, stdout = irc_run
    assert sorted(path.name for path in out.iterdir()) == ["irc-stuck.svg", "irc-table.md", "irc-targets.md",
                                                           "irc.json"]
    table, targets = (out / "irc-table.md").read_text(), (out / "irc-targets.md").read_text()
    assert table == bench.irc_markdown(data) and targets == bench.irc_targets(data)
    assert "None" not in table + targets and "failed" not in table
    assert "| 11 | 20 |" in table and "| miniircd | 20 |" in table
    for target in ("throughput ≥ miniircd's", "costs the others nothing", "memory stays bounded",
                   "5,000+ clients"):
        assert target in targets, f"no line for the target {target!r}"
    assert "most clients served within 5 s: 11 50; miniircd 50" in stdout


def test_bench_irc_targets_say_no_to_a_miss():
    """A made-up run where stage 11 misses every target: the table says so, line by line."""
    stuck = {"p99_ms": 1.0, "throughput": 10, "throughput_ratio": 0.1, "rss_start_kib": 1024, "rss_max_kib": 9000,
             "rss_end_kib": 9000, "held_kib": 7000,
             "rss_between_rounds_kib": [[0, 1024], [20, 8024]],
             "growth_kib_per_s": 400, "throughput_without": 100, "seconds": 20, "lost": 0, "others_dropped": [],
             "dropped_after_s": None, "drop_reason": None, "rss_kib": [[0, 1024], [20, 9000]], "messages": 1000,
             "mib_to_each": 4, "rounds": [{"at_s": 0, "sent": 1000, "deliveries_per_s": 10}]}
    row = {"clients": 100, "join_seconds": 1, "throughput": 100, "kib_per_client": 10, "latency_50": {"p99_ms": 1},
           "stuck": stuck}
    data = {"irc": {"servers": ["11", "miniircd"], "most_clients": {"11": 2000, "miniircd": 1000},
                    "ladder": {"11": [{"clients": 2000, "join_seconds": 9, "kib_per_client": 9},
                                      {"clients": 5000, "error": "not all joined within 240 s"}],
                               "miniircd": [{"clients": 1000, "join_seconds": 9, "kib_per_client": 2}]},
                    "results": [{**row, "server": "11"}, {**row, "server": "miniircd", "throughput": 200}]}}
    lines = bench.irc_targets(data).splitlines()[2:]
    assert [line.endswith("| **no** |") for line in lines[:4]] == [True] * 4, lines
    machine = {"cores": 2, "cpu": "x", "python": "3", "system": "x"}
    page = bench.irc_markdown({**data, "command": "x", "seconds": 1, "machine": machine})
    assert "11 2,000 (at 5,000: not all joined within 240 s)" in page


def test_the_committed_irc_figures_are_the_tools_output():
    """docs/measuring.md shows docs/bench/irc-*.md: rendered by tests/bench.py from its own irc.json."""
    folder = REPO / "docs" / "bench"
    data = json.loads((folder / "irc.json").read_text())
    assert (folder / "irc-table.md").read_text() == bench.irc_markdown(data), \
        "docs/bench/irc-table.md differs from irc.json: run python tests/bench.py --report docs/bench"
    assert (folder / "irc-targets.md").read_text() == bench.irc_targets(data), \
        "docs/bench/irc-targets.md differs from irc.json: run python tests/bench.py --report docs/bench"
    page = (REPO / "docs" / "measuring.md").read_text()
    for name in ("irc-table.md", "irc-targets.md"):
        assert f'--8<-- "docs/bench/{name}"' in page, f"docs/measuring.md does not include docs/bench/{name}"
    assert (folder / "irc-stuck.svg").is_file() and "(bench/irc-stuck.svg)" in page
    assert data["command"] in page, "docs/measuring.md does not give the command of the committed run"
    assert {row["server"] for row in data["irc"]["results"]} == {"11", "miniircd"}

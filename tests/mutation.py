"""Mutation testing of the stages with cosmic-ray: how many planted changes does the suite notice?

    python tests/mutation.py                                   # all four targets, 30 mutants each, into a temp folder
    python tests/mutation.py --stage 05 --program server.py --sample 10 --out /tmp/mut
    python tests/mutation.py --sample 30 --write-docs          # the committed run: docs/mutation/
    python tests/mutation.py --report docs/mutation            # run nothing: re-judge and redraw a run's report

Targets: stages/02 and stages/05, server.py and client.py each. For each target the tool
copies the repository's working tree (tracked and untracked, not ignored: other people's
uncommitted edits in tests/ included) into a temporary folder, so the files in the real
working tree are never rewritten. In the copy it runs `cosmic-ray init`, keeps a seeded random
sample of the work items, and runs `cosmic-ray exec`: for each mutant cosmic-ray rewrites the
stage's file on disk and runs the stage's checks (the default tier, stopping at the first
failure), which start the copy's mutated program in ptys.

Each mutant ends killed (a check failed: results.json says which), survived, or equivalent
(survived, and listed in tests/mutation_equivalent.json with a reason). A kill by a timeout, a
timing check, a check that also failed on the unmutated copy, or of a mutant listed as equivalent
may be the machine's load, not the mutant: such a mutant is tested once more, and counts as
killed only if it fails again. The kill rate is killed / (killed + survived).

The whole run is niced. It never writes docs/ unless asked (--write-docs, or --report DIR).
"""

import argparse
import datetime
import io
import json
import os
import random
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EQUIVALENTS = REPO / "tests" / "mutation_equivalent.json"
DOCS = REPO / "docs" / "mutation"
TARGETS = [("02", "server.py"), ("02", "client.py"), ("05", "server.py"), ("05", "client.py")]
DEFAULT_SAMPLE = 30
DEFAULT_SEED = 1  # fixed, so that a run without --seed draws the same mutants (and test names and texts)
NICE = 10  # the whole run is niced: other people use this machine while it runs

# Left out before sampling. "==" (or "<", "!="...) turned into "is" / "is not": every such site here
# compares with a literal (a str or a small int), where identity is either the same as equality
# (small ints, interned strings: equivalent) or always false (a str from the network or input():
# the same mutant as "the condition is False"); CPython itself flags them with a SyntaxWarning.
# "is" <-> "is not" (as in `other is not sender`) stays in.
EXCLUDED_OPERATORS = re.compile(r"core/ReplaceComparisonOperator_(Eq|NotEq|Lt|LtE|Gt|GtE)_(Is|IsNot)$")

# Checks whose verdict is a measurement of time or CPU: on a loaded machine they can fail for any code.
TIMING_CHECKS = {
    "test_huge_line_is_cut_off_with_bounded_memory_and_cpu",
    "test_stuck_client_costs_the_others_no_latency",
    "test_out_of_file_descriptors_neither_kills_nor_spins",
}
WHOLE_RUN_TIMEOUT = "(timeout: the whole run)"


# ---------------------------------------------------------------- the copy and cosmic-ray's session

def copy_working_tree(dest):
    """Copy every file git would see (tracked, plus untracked ones not ignored) as it is on disk now."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is not part of it
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def test_command(stage, workers, seed):
    """One stage's default checks, stopping at the first failure. The suite's own --seed fixes its
    random names and texts, so a rerun of a mutant replays the same check. -vv: pytest's summary
    then keeps each failure's whole first line (-q cuts it to the terminal's width)."""
    return shlex.join([sys.executable, "-m", "pytest", "tests", "--stage", stage, "-x", "-vv",
                       "-p", "no:cacheprovider", "-o", "addopts=", "-n", str(workers), "--seed", str(seed)])


def write_config(copy, program_path, command, timeout):
    config = copy / f"cr-{program_path.replace('/', '-')}.toml"
    config.write_text("[cosmic-ray]\n"
                      f"module-path = {json.dumps(program_path)}\n"
                      f"timeout = {timeout:.0f}\n"
                      "excluded-modules = []\n"
                      f"test-command = {json.dumps(command)}\n"
                      "[cosmic-ray.distributor]\n"
                      'name = "local"\n')
    return config


def cosmic_ray_command():
    """The cosmic-ray command that belongs to this Python (a venv's, when run from one)."""
    exe = Path(sys.executable).with_name("cosmic-ray")
    return str(exe) if exe.exists() else "cosmic-ray"


def all_work_items(copy, config, session):
    """cosmic-ray's own list of mutants for one file, in a stable order (job ids are random uuids)."""
    from cosmic_ray.work_db import WorkDB, use_db
    subprocess.run([cosmic_ray_command(), "init", str(config), str(session)], cwd=copy, check=True)
    with use_db(str(session), WorkDB.Mode.open) as db:
        items = db.work_items
    session.unlink()
    return sorted(items, key=lambda item: (item.mutations[0].operator_name, item.mutations[0].occurrence))


def draw_sample(items, size, seed, program_path):
    """A seeded sample per target: the same seed and the same file give the same mutants."""
    kept = [item for item in items if not EXCLUDED_OPERATORS.match(item.mutations[0].operator_name)]
    rng = random.Random(f"{seed}:{program_path}")
    chosen = rng.sample(kept, min(size, len(kept)))
    return sorted(chosen, key=lambda item: item.mutations[0].start_pos), len(items), len(kept)


def new_session(path, items):
    from cosmic_ray.work_db import use_db
    with use_db(str(path)) as db:
        db.clear()
        db.add_work_items(items)


def results_of(session):
    from cosmic_ray.work_db import WorkDB, use_db
    with use_db(str(session), WorkDB.Mode.open) as db:
        return db.completed_work_items


def progress(session):
    """(done, killed) read straight from the session while cosmic-ray writes it."""
    with sqlite3.connect(f"file:{session}?mode=ro", uri=True, timeout=5) as db:
        done, killed = db.execute("select count(*), sum(test_outcome = 'KILLED') from work_results").fetchone()
    return done, killed or 0


# ---------------------------------------------------------------- reading one mutant's result

def source_lines(diff):
    """The mutated lines, before and after, from cosmic-ray's unified diff."""
    body = [line for line in diff.splitlines() if not line.startswith(("---", "+++", "@@"))]
    before = "\n".join(line[1:].strip() for line in body if line.startswith("-"))
    after = "\n".join(line[1:].strip() for line in body if line.startswith("+"))
    return before, after


def first_failure(output):
    """Which check failed first, and its message's first line, from pytest's short summary."""
    if output.strip() == "timeout":  # cosmic-ray's word for a test command it had to kill
        return WHOLE_RUN_TIMEOUT, ""
    for line in output.splitlines():
        # A parametrized id may hold spaces ("[02-a name]"): the node id ends at its closing bracket.
        if match := re.match(r"(?:FAILED|ERROR) ([^\s\[]+(?:\[[^\]]*\])?)(?: - (.*))?$", line):
            return match.group(1), (match.group(2) or "")[:200]
    return "(no failing check named: pytest exited non-zero)", output.strip().splitlines()[-1][:200] if output.strip() else ""


def run_seconds(output):
    match = re.search(r" in ([\d.]+)s(?: \(|\s*=*$)", output, re.MULTILINE)
    return float(match.group(1)) if match else None


def suspicious(killed_by, message):
    check = killed_by.split("::")[-1].split("[")[0]
    return killed_by == WHOLE_RUN_TIMEOUT or check in TIMING_CHECKS or "Timeout" in message


def mutant_record(stage, program, item, result):
    spec = item.mutations[0]
    before, after = source_lines(result.diff or "")
    record = {"stage": stage, "program": program, "line": spec.start_pos[0],
              "operator": spec.operator_name.removeprefix("core/"), "occurrence": spec.occurrence,
              "before": before, "after": after, "outcome": (result.test_outcome or result.worker_outcome).value}
    output = result.output or ""
    if record["outcome"] == "killed":
        record["killed_by"], record["message"] = first_failure(output)
        record["suspicious"] = suspicious(record["killed_by"], record["message"])
    record["seconds"] = run_seconds(output)
    return record


# ---------------------------------------------------------------- running

class Run:
    """One measuring run: copies of the tree (one per job), cosmic-ray sessions, results."""

    def __init__(self, args, out, work):
        self.args, self.out, self.work = args, out, work
        self.lock = threading.Lock()
        self.log = (out / "run.log").open("a")
        self.flakes = []  # checks that failed on the unmutated copy (and passed on a second try)

    def say(self, text):
        with self.lock:
            print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    def copies(self):
        return [copy_working_tree(self.work / f"copy{job}") for job in range(self.args.jobs)]

    def baseline(self, copy, stage):
        """The unmutated copy must pass, or every mutant would look killed. Its time sets the timeout.
        One failure is allowed and recorded: under load a check can flake, and a flaky check then
        also "kills" mutants, which the report should say."""
        for attempt in range(2):
            started = time.monotonic()
            done = subprocess.run(shlex.split(test_command(stage, self.args.workers, self.args.seed)), cwd=copy,
                                  capture_output=True, text=True)
            seconds = time.monotonic() - started
            if done.returncode == 0:
                return seconds
            check, message = first_failure(done.stdout)
            self.flakes.append({"stage": stage, "check": check, "message": message})
            self.say(f"stage {stage}: the unmutated checks failed ({check}); trying once more")
        sys.exit(f"the suite fails twice on the unmutated copy of stage {stage}: fix that first\n{done.stdout[-3000:]}")

    def exec_shard(self, copy, config, session, label, total):
        """cosmic-ray exec on one session, with a progress line every 30 s."""
        with subprocess.Popen([cosmic_ray_command(), "exec", str(config), str(session)], cwd=copy,
                              stdout=self.log, stderr=subprocess.STDOUT) as process:
            while True:
                try:
                    process.wait(timeout=30)
                    break
                except subprocess.TimeoutExpired:
                    done, killed = progress(session)
                    self.say(f"{label}: {done}/{total} done, {killed} killed")
        if process.returncode != 0:
            raise RuntimeError(f"cosmic-ray exec failed for {label}: see {self.out / 'run.log'}")

    def target(self, copies, stage, program, timeout):
        """Sample one target's mutants, split them over the copies, run them, collect the records."""
        path = f"stages/{stage}/{program}"
        command = test_command(stage, self.args.workers, self.args.seed)
        configs = [write_config(copy, path, command, timeout) for copy in copies]
        items = all_work_items(copies[0], configs[0], self.out / "init.sqlite")
        sample, found, eligible = draw_sample(items, self.args.sample, self.args.seed, path)
        self.say(f"{path}: {found} mutants, {eligible} after excluded operators, {len(sample)} sampled")
        shards = [sample[job::len(copies)] for job in range(len(copies))]
        sessions = [self.out / f"{stage}-{program.removesuffix('.py')}-{job}.sqlite" for job in range(len(copies))]
        threads = []
        for copy, config, session, shard in zip(copies, configs, sessions, shards):
            if shard:
                new_session(session, shard)
                threads.append(threading.Thread(target=self.exec_shard,
                                                args=(copy, config, session, f"{path} [{session.stem}]", len(shard))))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        records = [mutant_record(stage, program, item, result)
                   for session in sessions if session.exists() for item, result in results_of(session)]
        return records, {"stage": stage, "program": program, "mutants": found, "eligible": eligible,
                         "sampled": len(sample), "timeout": round(timeout)}, configs[0]

    def confirm(self, copy, config, stage, program, records):
        """Test a suspicious kill (a timeout, a timing check, a check that failed on the unmutated copy,
        a mutant listed as equivalent) once more: only a second failure counts."""
        from cosmic_ray.work_item import MutationSpec, WorkItem
        flaky = {flake["check"] for flake in self.flakes}
        equivalent = {key(entry) for entry in load_equivalents()}
        for record in records:
            if record["outcome"] != "killed":
                continue
            # It failed on the unmutated copy too, or its mutant was judged unable to change anything.
            record["suspicious"] = record["suspicious"] or record["killed_by"] in flaky or key(record) in equivalent
            if not record["suspicious"]:
                continue
            spec = MutationSpec(f"stages/{stage}/{program}", f"core/{record['operator']}", record["occurrence"],
                                (record["line"], 0), (record["line"], 1))  # positions are only stored, not used
            session = self.out / "confirm.sqlite"
            new_session(session, [WorkItem.single("confirm", spec)])
            self.exec_shard(copy, config, session, f"recheck {stage}/{program}:{record['line']}", 1)
            [(_, result)] = results_of(session)
            again = mutant_record(stage, program, WorkItem.single("confirm", spec), result)
            record["rerun"] = again.get("killed_by", "passed")
            if again["outcome"] != "killed":
                record["outcome"] = "survived"  # it passed one full run of the checks: that is surviving
            session.unlink()


def measure(args, out):
    """The whole run: every selected target, one after the other (each one's jobs in parallel)."""
    os.nice(NICE)
    started = time.monotonic()
    targets = [(stage, program) for stage, program in TARGETS
               if stage in args.stage.split(",") and program in args.program.split(",")]
    if not targets:
        sys.exit(f"no target matches --stage {args.stage} --program {args.program}")
    with tempfile.TemporaryDirectory(prefix="chat-mutation-") as work:
        run = Run(args, out, Path(work))
        # What was copied: others commit and edit while the run goes on, so read it now, not at the end.
        tree = {"commit": git("rev-parse", "--short", "HEAD"),
                "uncommitted": [line[3:] for line in git("status", "--porcelain").splitlines()
                                if line[3:].startswith(("stages/", "tests/"))]}
        copies = run.copies()
        baselines = {}
        for stage in sorted({stage for stage, _ in targets}):
            baselines[stage] = run.baseline(copies[0], stage)
            run.say(f"stage {stage}: the unmutated checks pass in {baselines[stage]:.1f} s")
        mutants, summary = [], []
        for stage, program in targets:
            # Room for one check to hang until pytest-timeout's 60 s and be named, plus the rest of the run.
            timeout = 60 + 3 * baselines[stage]
            records, info, config = run.target(copies, stage, program, timeout)
            run.confirm(copies[0], config, stage, program, records)
            mutants += sorted(records, key=lambda record: (record["line"], record["operator"], record["occurrence"]))
            summary.append(info)
            run.say(f"{stage}/{program}: done, {time.monotonic() - started:.0f} s since the start")
    return {
        "command": ".venv/bin/python tests/mutation.py " + shlex.join(args.argv),
        "date": datetime.date.today().isoformat(),
        **tree,
        "cosmic_ray": cosmic_ray_version(),
        "seed": args.seed, "sample": args.sample, "workers": args.workers, "jobs": args.jobs, "nice": NICE,
        "excluded_operators": EXCLUDED_OPERATORS.pattern,
        "baseline_seconds": {stage: round(seconds, 1) for stage, seconds in baselines.items()},
        "baseline_flakes": run.flakes,
        "wall_seconds": round(time.monotonic() - started),
        "targets": summary,
        "mutants": mutants,
    }


def git(*args):
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()


def cosmic_ray_version():
    from importlib.metadata import version
    return version("cosmic-ray")


# ---------------------------------------------------------------- judging and reporting

def load_equivalents(path=EQUIVALENTS):
    return json.loads(path.read_text())


def key(entry):
    """What identifies a mutant across runs and edits elsewhere in the file: not its occurrence number,
    and not the layout of its lines (see code_only)."""
    return entry["stage"], entry["program"], entry["operator"], code_only(entry["before"]), code_only(entry["after"])


def code_only(lines):
    """Mutated lines as bare code: no comments, no whitespace, no line breaks. The stages are formatted
    with ruff, which moves a long line's comment above it, wraps a long call over several lines and
    spaces slices (`[: end + 1]`): the same mutant must stay the same entry."""
    rows = lines.split("\n")
    try:
        for token in tokenize.generate_tokens(io.StringIO(lines).readline):
            if token.type == tokenize.COMMENT:
                row, column = token.start
                rows[row - 1] = rows[row - 1][:column]
    except (tokenize.TokenError, SyntaxError):
        pass  # a statement's first or last line alone leaves a bracket open or closes one: the comments before are cut
    return re.sub(r"\s+", "", "\n".join(rows))


def judge(results, equivalents):
    """Mark the survivors listed as equivalent, with the reason; a killed one that is listed is flagged."""
    reasons = {key(entry): entry["reason"] for entry in equivalents}
    for mutant in results["mutants"]:
        if mutant["outcome"] == "equivalent":
            mutant["outcome"] = "survived"
        mutant.pop("reason", None)
        mutant.pop("listed_equivalent", None)
        if key(mutant) in reasons:
            if mutant["outcome"] == "survived":
                mutant["outcome"], mutant["reason"] = "equivalent", reasons[key(mutant)]
            elif mutant["outcome"] == "killed":
                mutant["listed_equivalent"] = True  # a wrong entry, or a flaky kill: look at it
    return results


def counts(mutants):
    found = {outcome: sum(1 for m in mutants if m["outcome"] == outcome)
             for outcome in ("killed", "survived", "equivalent")}
    found["other"] = len(mutants) - sum(found.values())  # incompetent (the mutant did not run) or no-test
    graded = found["killed"] + found["survived"]
    found["rate"] = f"{100 * found['killed'] / graded:.0f} %" if graded else "-"
    return found


def without_comments(code):
    """A mutated statement as the report shows it: its lines, each without its comment (the
    stages' comments sit on their lines, and would push the report past the page's width)."""
    rows = code.split("\n")
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type == tokenize.COMMENT:
                row, column = token.start
                rows[row - 1] = rows[row - 1][:column].rstrip()
    except (tokenize.TokenError, SyntaxError):
        pass  # part of a statement: a comment then stays
    return [row for row in rows if row.strip()]


def prose(text):
    """A reason as Markdown shows it: `__eq__` must not turn bold."""
    return re.sub(r"([\\`*_<\[\]])", r"\\\1", text)


def diff_block(mutant):
    """The mutant as a diff, indented to sit inside its list item."""
    lines = [f"- {row}" for row in without_comments(mutant["before"])]
    lines += [f"+ {row}" for row in without_comments(mutant["after"])]
    return ["    ```diff", *(f"    {line}" for line in lines), "    ```", ""]


def render(results):
    """docs/mutation/report.md: a pure function of results.json (tests/test_mutation.py checks it)."""
    lines = ["# Mutation testing", "",
             f"Measured on {results['date']} at commit {results['commit']} with cosmic-ray {results['cosmic_ray']}, "
             f"in {results['wall_seconds'] // 60} min {results['wall_seconds'] % 60} s (niced, on a copy of the tree). "
             "Reproduce it with:", "", "```bash", results["command"], "```", "",
             f"Each target's mutants are a random sample of cosmic-ray's work items (seed {results['seed']}, "
             f"{results['sample']} per target), drawn after leaving out the operators matching "
             f"`{results['excluded_operators']}`. Each mutant ran its stage's default checks "
             f"(`-x`, {results['workers']} xdist workers, names and texts from --seed {results['seed']}). "
             "Equivalent mutants are listed, with reasons, in `tests/mutation_equivalent.json`; "
             "the kill rate is killed / (killed + survived).", ""]
    for flake in results.get("baseline_flakes", []):
        lines += [f"On the unmutated stage {flake['stage']}, `{flake['check']}` failed once and passed on a second try: "
                  "a flaky check, which may also have \"killed\" some mutants.", ""]
    if results["uncommitted"]:
        lines += ["Uncommitted changes in the measured tree: " + ", ".join(f"`{p}`" for p in results["uncommitted"]), ""]
    lines += score_table(results)
    lines += section("Survivors: gaps in the suite", [m for m in results["mutants"] if m["outcome"] == "survived"],
                     lambda m: m.get("rerun") and f"killed once by `{m['killed_by']}`, passed on the rerun" or "")
    lines += section("Equivalent mutants", [m for m in results["mutants"] if m["outcome"] == "equivalent"],
                     lambda m: prose(m["reason"]))
    lines += section("Kills to look at again (a timeout, a timing check, a check that failed unmutated, "
                     "or a mutant listed as equivalent)",
                     [m for m in results["mutants"] if m["outcome"] == "killed"
                      and (m.get("suspicious") or m.get("listed_equivalent"))],
                     rerun_note)
    checks = {}
    for m in results["mutants"]:
        if m["outcome"] == "killed":
            checks[m["killed_by"]] = checks.get(m["killed_by"], 0) + 1
    lines += ["## The checks that killed them", "", "| First failing check | Mutants |", "| --- | ---: |"]
    lines += [f"| `{check}` | {n} |" for check, n in sorted(checks.items(), key=lambda kv: (-kv[1], kv[0]))]
    return "\n".join(lines) + "\n"


def rerun_note(mutant):
    """Which check killed the mutant, and which on its rerun: by test name alone, short enough for a
    table cell (tests/test_robustness.py::test_x[02] -> test_x: the row's Where gives the stage)."""
    first, again = mutant["killed_by"], mutant.get("rerun", "-")
    short = lambda check: check.rsplit("::", 1)[-1].split("[")[0]
    if again == first:
        return f"`{short(first)}`, on the first run and on the rerun"
    return f"`{short(first)}`, then on the rerun `{short(again)}`"


def score_table(results):
    lines = ["| Target | Mutants | Sampled | Killed | Survived | Equivalent | Other | Kill rate |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for target in results["targets"]:
        mine = [m for m in results["mutants"] if (m["stage"], m["program"]) == (target["stage"], target["program"])]
        c = counts(mine)
        lines.append(f"| stages/{target['stage']}/{target['program']} | {target['mutants']} | {target['sampled']} | "
                     f"{c['killed']} | {c['survived']} | {c['equivalent']} | {c['other']} | {c['rate']} |")
    c = counts(results["mutants"])
    return lines + [f"| **all** | {sum(t['mutants'] for t in results['targets'])} | {len(results['mutants'])} | "
                    f"{c['killed']} | {c['survived']} | {c['equivalent']} | {c['other']} | **{c['rate']}** |", ""]


def render_score(results):
    """docs/mutation/score.md, which the instructors' guide includes: the headline and the table."""
    c = counts(results["mutants"])
    return "\n".join([f"**Mutation score: {c['killed']} of {c['killed'] + c['survived']} non-equivalent mutants "
                      f"killed ({c['rate']})**, {c['equivalent']} more judged equivalent, in a sample of "
                      f"{len(results['mutants'])} (measured {results['date']}, commit {results['commit']}, "
                      f"`{results['command']}`):", "", *score_table(results)])


def section(title, mutants, describe):
    """One list item per mutant, with its change as a diff: long statements do not fit a table."""
    if not mutants:
        return [f"## {title}", "", "None.", ""]
    lines = [f"## {title}", ""]
    for m in mutants:
        said = describe(m)
        lines += [f"- **{m['stage']}/{m['program']}:{m['line']}**, {m['operator']}" + (f": {said}" if said else ""),
                  "", *diff_block(m)]
    return lines


def write(folder, results):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    (folder / "report.md").write_text(render(results))
    (folder / "score.md").write_text(render_score(results))


# ---------------------------------------------------------------- command line

def main():
    parser = argparse.ArgumentParser(description="Mutation testing of stages 02 and 05 with cosmic-ray.")
    parser.add_argument("--stage", default="02,05", help="02, 05 or 02,05 (default)")
    parser.add_argument("--program", default="server.py,client.py", help="server.py, client.py or both (default)")
    parser.add_argument("--sample", type=int, default=DEFAULT_SAMPLE, help=f"mutants per target (default {DEFAULT_SAMPLE})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"for the sample and the suite (default {DEFAULT_SEED})")
    parser.add_argument("--jobs", type=int, default=1, help="copies of the tree testing mutants at once (default 1: "
                                                            "one test run already keeps two cores busy)")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers per test run (default 2)")
    parser.add_argument("--out", help="folder for results.json, report.md, the sessions and run.log (default: a new temp folder)")
    parser.add_argument("--write-docs", action="store_true", help=f"also write the committed report, {DOCS.relative_to(REPO)}/")
    parser.add_argument("--report", metavar="DIR", help="run nothing: judge DIR/results.json against the equivalents "
                                                        "file again and redraw DIR/report.md")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    if args.report:
        folder = Path(args.report)
        write(folder, judge(json.loads((folder / "results.json").read_text()), load_equivalents()))
        print(f"wrote {folder / 'report.md'}")
        return
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="chat-mutation-"))
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() == DOCS.resolve():
        sys.exit(f"--out {args.out} is the committed report: use --write-docs for that")
    print(f"results go to {out}", flush=True)
    results = judge(measure(args, out), load_equivalents())
    write(out, results)
    if args.write_docs:
        write(DOCS, results)
    c = counts(results["mutants"])
    print(f"{len(results['mutants'])} mutants: {c['killed']} killed, {c['survived']} survived, "
          f"{c['equivalent']} equivalent, {c['other']} other; kill rate {c['rate']}; "
          f"{results['wall_seconds']} s. Report: {out / 'report.md'}")


if __name__ == "__main__":
    main()

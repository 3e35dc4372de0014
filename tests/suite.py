"""Running the suite itself on a copy of a stage: for --impl tests, recorded reports and grading."""

import shutil
import subprocess
import sys

from stages import BY_ID, REPO


def run_suite(*args, cwd=REPO, preexec_fn=None):
    """Run pytest in a subprocess. -o addopts= : one process, no xdist workers, for a run this small."""
    return subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120, preexec_fn=preexec_fn)


def copy_of_stage(stage_id, folder, old=None, new=None, program="server.py"):
    """Copy stages/NN/ to `folder`; with `old` and `new`, plant a bug in its server.py (or `program`)."""
    return copy_with_changes(stage_id, folder, [] if old is None else [(program, old, new)])


def copy_with_changes(stage_id, folder, changes):
    """Copy stages/NN/ to `folder` and make each (program, old, new) change in it."""
    shutil.copytree(BY_ID[stage_id].folder, folder)
    for program, old, new in changes:
        target = folder / program
        source = target.read_text()
        if source.count(old) != 1:
            raise ValueError(f"the code to replace is no longer in stages/{stage_id}/{program} "
                             f"exactly once ({source.count(old)} times): {old!r}")
        target.write_text(source.replace(old, new))
    return folder


def grade(stage_id, folder, *extra, preexec_fn=None):
    """Check `folder` against stage `stage_id`'s spec, as an instructor would (docs/instructors.md),
    from the folder above the submission rather than from the repo."""
    return run_suite(str(REPO / "tests"), "--stage", stage_id, "--impl", folder.name, *extra, cwd=folder.parent,
                     preexec_fn=preexec_fn)


# The classic bug: the sender gets its own message back.
ECHO_TO_SENDER = ("if other is not sender and other.name", "if other.name")

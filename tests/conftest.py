"""pytest wiring for the shared suite: stage selection, --impl, fixtures, failure reports.

    python -m pytest                              every stage
    python -m pytest --stage 01,02                some stages (or: -m stage02)
    python -m pytest tests --stage 02 --impl DIR  stage 02's checks, against DIR/server.py and DIR/client.py
    python -m pytest --slow -m slow               the heavy load checks, left out of the default run
"""

from pathlib import Path

import pytest

from harness import Session
from stages import BY_ID, STAGES, Stage

STAGE_PARAM = "stage"


def pytest_addoption(parser):
    group = parser.getgroup("chat kit")
    group.addoption("--stage", default=None, metavar="NN[,NN...]",
                    help="run the checks of these stages only, e.g. --stage 01,02")
    group.addoption("--impl", default=None, metavar="DIR",
                    help="check the server.py and client.py in DIR instead of stages/NN (needs one --stage)")
    group.addoption("--slow", action="store_true",
                    help="also run the heavy load checks marked slow (CI runs them as a second step)")


def selected_stages(config):
    wanted = config.getoption("--stage")
    impl = config.getoption("--impl")
    if wanted is None:
        if impl:
            raise pytest.UsageError("--impl needs --stage NN: which stage's spec should DIR be checked against?")
        return STAGES
    ids = [part.strip().zfill(2) for part in wanted.split(",") if part.strip()]
    unknown = [stage_id for stage_id in ids if stage_id not in BY_ID]
    if unknown:
        raise pytest.UsageError(f"unknown stage {', '.join(unknown)}; known: {', '.join(BY_ID)}")
    stages = [BY_ID[stage_id] for stage_id in ids]
    if impl:
        if len(stages) != 1:
            raise pytest.UsageError("--impl checks one stage at a time: give exactly one --stage")
        folder = Path(impl)
        missing = [name for name in ("server.py", "client.py") if not (folder / name).is_file()]
        if missing:
            raise pytest.UsageError(f"--impl {impl}: no {' or '.join(missing)} in that folder")
        stages = [stages[0].at(folder)]
    return stages


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(*caps): run on every selected stage that has all these capabilities")
    config.addinivalue_line("markers", "slow: a heavy load check, run only with --slow")
    for stage in STAGES:
        config.addinivalue_line("markers", f"stage{stage.id}: a check run on stage {stage.id}")
    config.chat_stages = selected_stages(config)


def pytest_report_header(config):
    return [f"stage {stage.id} ({stage.title}): {stage.folder}" for stage in config.chat_stages]


def pytest_generate_tests(metafunc):
    if STAGE_PARAM not in metafunc.fixturenames:
        return
    # The needs of the module (pytestmark) and of the test itself add up.
    caps = {cap for marker in metafunc.definition.iter_markers("needs") for cap in marker.args}
    stages = [stage for stage in metafunc.config.chat_stages if stage.has(*caps)]
    if "partner" in metafunc.fixturenames:
        # Compatibility checks: the stage against every kit stage that speaks the same wire protocol.
        metafunc.parametrize((STAGE_PARAM, "partner"), [
            pytest.param(stage, partner, id=f"{stage.id}-with-{partner.id}",
                         marks=getattr(pytest.mark, f"stage{stage.id}"))
            for stage in stages for partner in STAGES if partner.wire == stage.wire and partner.id != stage.id])
        return
    metafunc.parametrize(STAGE_PARAM, [
        pytest.param(stage, id=stage.id, marks=getattr(pytest.mark, f"stage{stage.id}")) for stage in stages])


def pytest_collection_modifyitems(config, items):
    """Leave out, rather than skip, what does not apply.

    A check whose capabilities no selected stage has is not a check of those
    stages. With --stage, the checks that are not about any stage (docs, the
    suite's own tests) are left out too: an instructor grading stage 05 wants
    stage 05's checks and nothing else.
    """
    staged = config.getoption("--stage") is not None
    slow_too = config.getoption("--slow")
    keep, drop = [], []
    for item in items:
        if item.get_closest_marker("slow") and not slow_too:
            drop.append(item)
            continue
        callspec = getattr(item, "callspec", None)
        has_stage = callspec is not None and isinstance(callspec.params.get(STAGE_PARAM), Stage)
        takes_stage = STAGE_PARAM in getattr(item, "fixturenames", ())
        if (takes_stage and not has_stage) or (staged and not has_stage):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def session(stage, tmp_path, request):
    """One test's processes. Every one of them is killed at the end, even after a failure."""
    chat = Session(stage, tmp_path)
    request.node.chat_session = chat
    yield chat
    chat.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    chat = getattr(item, "chat_session", None)
    if chat is not None and report.failed and call.when == "call":
        for label, text in chat.transcripts():
            report.sections.append((f"transcript [{label}]", text or "(no output)"))

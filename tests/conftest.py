"""pytest wiring for the shared suite: stage selection, --impl, fixtures, failure reports.

    python -m pytest                              every stage
    python -m pytest --stage 01,02                some stages (or: -m stage02)
    python -m pytest tests --stage 02 --impl DIR  stage 02's checks, against DIR/server.py and DIR/client.py
    python -m pytest --slow -m slow               the heavy load checks, left out of the default run
    ... --report DIR [--hide-expected]            also write DIR/summary.txt and DIR/results.json (Gradescope)
    ... --seed N                                  replay a run's random names and texts (its header prints N)
"""

import inspect
import os
import shutil
import tempfile
from pathlib import Path

import pytest

import categories
import report as report_module
from harness import BROKEN, REPORT_CHARS, SHARED, GateFailed, NotRun, Session, capped
from stages import BY_ID, STAGES, Stage, strangers
from words import Words, new_seed

STAGE_PARAM = "stage"


def pytest_addoption(parser):
    group = parser.getgroup("chat kit")
    group.addoption("--stage", default=None, metavar="NN[,NN...]",
                    help="run the checks of these stages only, e.g. --stage 01,02")
    group.addoption("--impl", default=None, metavar="DIR",
                    help="check the programs in DIR (server.py and client.py; peer.py for 08) "
                         "instead of stages/NN (needs one --stage)")
    group.addoption("--report", default=None, metavar="DIR",
                    help="write a points summary (summary.txt) and Gradescope's results.json to DIR")
    group.addoption("--weights", default=None, metavar="FILE",
                    help="in --report, the rubric's weights: `category = weight` lines (tests/categories.py)")
    group.addoption("--hide-expected", action="store_true",
                    help="in --report, say which checks failed but not what they expected")
    group.addoption("--seed", type=int, default=None, metavar="N",
                    help="draw names and message texts from seed N (default: a new seed, printed in the header)")
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
        missing = [name for name in stages[0].programs if not (folder / name).is_file()]
        if missing:
            raise pytest.UsageError(f"--impl {impl}: no {' or '.join(missing)} in that folder")
        stages = [stages[0].at(folder)]
    return stages


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """-n auto: one worker more than there are cores. A check spends much of its time waiting for
    programs in terminals to answer; a third worker on two cores keeps both busy (on this kit's
    2-core machine: 91 s with two workers, 81 s with three, for the same checks)."""
    return len(os.sched_getaffinity(0)) + 1


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(*caps): run on every selected stage that has all these capabilities")
    config.addinivalue_line("markers", "slow: a heavy load check, run only with --slow")
    config.addinivalue_line("markers", "waits_long: a check that spends its time waiting (irssi's flood "
                                       "control): left out of the kit's default run, run by grading (--stage) "
                                       "and the slow tier")
    config.addinivalue_line("markers", "starts_first: a long check, started before the others so that "
                                       "the workers end together")
    config.addinivalue_line("markers", "shares_server: the cases of this parametrized check share one server "
                                       "per stage; a failing case retires it (tests/harness.py, SharedServers)")
    config.addinivalue_line("markers", "points(weight, description): what a check is worth, and what it checks")
    config.addinivalue_line("markers", "no_observers(reason): this check runs without the observers, the lurker and "
                                       "the bystander (tests/harness.py, Observers), for the reason given")
    config.addinivalue_line("markers", "no_bystander(reason): this check runs with the lurker but without the "
                                       "bystander, for the reason given (a count or a list of who is online)")
    config.addinivalue_line("markers", "kit_only: a check of the kit's own stage on something the spec leaves "
                                       "free (a hint's wording, a blank line): never run with --impl, never graded")
    config.addinivalue_line("markers", "sampled(*stage_ids): a many-case check that the kit's own default run (no "
                                       "--stage, no --slow) runs on stages 02 and 05 only (or on the stages named), "
                                       "or on its first stage")
    config.addinivalue_line("markers", "sampled_cases(param, *values): the kit's own default run runs only the cases "
                                       "whose `param` is one of `values`; --stage NN and the slow tier run them all")
    config.chat_results = []
    for stage in STAGES:
        config.addinivalue_line("markers", f"stage{stage.id}: a check run on stage {stage.id}")
    config.chat_stages = selected_stages(config)
    config.chat_seed = run_seed(config)
    config.chat_weights = rubric_weights(config)
    config.chat_causes = {}  # cause -> (the check that found it, what it saw)
    config.chat_not_run = 0
    if hasattr(config, "workerinput"):
        BROKEN.share(config.workerinput["chat_gates"])
    else:  # the controller, or a plain run: one folder for the whole run's broken gates
        config.chat_gates = tempfile.mkdtemp(prefix="chat-kit-gates-")
        BROKEN.share(config.chat_gates)


def pytest_unconfigure(config):
    if hasattr(config, "chat_gates"):
        shutil.rmtree(config.chat_gates, ignore_errors=True)


def rubric_weights(config):
    """The rubric's weights: the defaults, or --weights FILE over them (a bad file stops the run at once)."""
    try:
        return categories.weights(config.getoption("--weights"))
    except (OSError, ValueError) as error:
        raise pytest.UsageError(f"--weights: {error}") from None


def run_seed(config):
    """--seed, else a new one. xdist workers get the controller's (pytest_configure_node), so one run has one seed."""
    if hasattr(config, "workerinput"):
        return config.workerinput["chat_seed"]
    seed = config.getoption("--seed")
    return new_seed() if seed is None else seed


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    node.workerinput["chat_seed"] = node.config.chat_seed
    node.workerinput["chat_gates"] = node.config.chat_gates


def pytest_report_header(config):
    return [f"chat seed: {config.chat_seed} (names and texts are drawn from it; --seed {config.chat_seed} replays them)",
            *(f"stage {stage.id} ({stage.title}): {stage.folder}" for stage in config.chat_stages)]


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
    if "stranger" in metafunc.fixturenames:
        # Cross-wire checks: the stage's client against a server of each other kind (tests/stages.py).
        metafunc.parametrize((STAGE_PARAM, "stranger"), [
            pytest.param(stage, stranger, id=f"{stage.id}-on-{stranger.id}",
                         marks=getattr(pytest.mark, f"stage{stage.id}"))
            for stage in stages for stranger in strangers(stage)])
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
    graded = config.getoption("--impl") is not None
    keep, drop = [], []
    sampled_on = sampled_stages(items) if not staged else {}
    for item in items:
        if graded and item.get_closest_marker("kit_only"):
            drop.append(item)  # free in the spec: a student's wording is theirs
            continue
        if item.originalname in sampled_on and has_stage(item) and \
                item.callspec.params[STAGE_PARAM].id not in sampled_on[item.originalname]:
            if not slow_too:
                drop.append(item)
                continue
            # The slow tier (CI: --slow -m slow) runs what the default run left out, on every stage.
            item.add_marker(pytest.mark.slow)
        if not staged and item.get_closest_marker("waits_long"):
            if not slow_too:  # the kit's default run keeps its time budget
                drop.append(item)
                continue
            item.add_marker(pytest.mark.slow)
        if not staged and not sampled_case(item):
            if not slow_too:
                drop.append(item)
                continue
            item.add_marker(pytest.mark.slow)  # the slow tier runs the other cases
        if item.get_closest_marker("slow"):
            if not slow_too:
                drop.append(item)
                continue
            item.add_marker(pytest.mark.timeout(300))  # whole grading runs and floods: more than the 60 s default
        takes_stage = STAGE_PARAM in getattr(item, "fixturenames", ())
        if (takes_stage and not has_stage(item)) or (staged and not has_stage(item)):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    # The checks that spend many seconds waiting start first, so that the workers end together.
    items.sort(key=lambda item: not item.get_closest_marker("starts_first"))
    unweighted = sorted({item.originalname for item in keep if has_stage(item) and not item.get_closest_marker("points")})
    if unweighted:
        raise pytest.UsageError("every stage check needs @pytest.mark.points(weight, \"description\"); "
                                f"these have none: {', '.join(unweighted)}")
    for item in keep:
        if has_stage(item):
            try:
                categories.of(item.module.__name__, item.originalname)
            except KeyError as error:
                raise pytest.UsageError(error.args[0]) from None


def sampled_stages(items):
    """The kit's own default run keeps its time budget: a check marked sampled runs on the core
    stages (02, 05), or on those its marker names, if it applies to them, else on its first stage. --stage NN (grading) and --slow
    run it on every stage. Returns check name -> the stage ids it runs on."""
    stages, chosen = {}, {}
    for item in items:
        marker = item.get_closest_marker("sampled")
        if marker and has_stage(item):
            stages.setdefault(item.originalname, []).append(item.callspec.params[STAGE_PARAM].id)
            chosen[item.originalname] = set(marker.args) or {"02", "05"}  # sampled("05"): that stage alone
    return {name: (chosen[name] & set(ids)) or {min(ids)} for name, ids in stages.items()}


def sampled_case(item):
    """Is this one of the cases the kit's default run keeps (@pytest.mark.sampled_cases)? Each
    marker names a parameter and the values kept: one case of many still runs by default,
    and grading (--stage) or the slow tier runs every case."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return all(params[marker.args[0]] in marker.args[1:] for marker in item.iter_markers("sampled_cases")
               if marker.args[0] in params)


def has_stage(item):
    callspec = getattr(item, "callspec", None)
    return callspec is not None and isinstance(callspec.params.get(STAGE_PARAM), Stage)


@pytest.fixture
def session(stage, tmp_path, request):
    """One test's processes. Every one of them is killed at the end, even after a failure."""
    chat = Session(stage, tmp_path, Words(request.config.chat_seed, f"{request.node.module.__name__}::{request.node.name}"))
    request.node.chat_session = chat
    chat.observe = opted_out(request.node)
    shared = (stage.folder, request.node.originalname)
    # A shared server has no observers (it is borrowed: Session.start_server is not called): the
    # cases before this one leave it as they go, and those departures reach any new bystander.
    if request.node.get_closest_marker("shares_server"):
        SHARED.lend(chat, shared)
    yield chat
    chat.close()
    if getattr(request.node, "chat_failed", False):
        SHARED.retire(shared)


def opted_out(item):
    """{"lurker": reason or None, "bystander": reason or None}: which observers this check goes without."""
    reasons = {}
    for marker, observers in (("no_observers", ("lurker", "bystander")), ("no_bystander", ("bystander",))):
        found = item.get_closest_marker(marker)
        if found is not None:
            if not (found.args and isinstance(found.args[0], str) and found.args[0].strip()):
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{marker} needs a reason")
            for observer in observers:
                reasons.setdefault(observer, found.args[0])
    return {"lurker": reasons.get("lurker"), "bystander": reasons.get("bystander")}


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    """Once a check has passed, its observers show what they received (Observers.prove): a failure
    there is the check's own (its call fails). A check that failed reports its own failure."""
    result = yield
    chat = getattr(pyfuncitem, "chat_session", None)
    if chat is not None and chat.observers is not None:
        chat.observers.prove()
    return result


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    result = outcome.get_result()
    chat = getattr(item, "chat_session", None)
    error = call.excinfo.value if call.excinfo is not None else None
    if isinstance(error, NotRun):  # skipped, with one line: the cause is stated once, above
        result.outcome = "skipped"
        result.longrepr = (NOT_RUN_AT[0], NOT_RUN_AT[1], f"Skipped: {error}")  # one place: -ra folds them
        result.user_properties.append(("not_run", f"not run: {error.cause}"))
    elif isinstance(error, GateFailed):  # its own section states the cause (pytest_terminal_summary)
        result.longrepr = ("this check found the cause that the section 'the cause' states below; "
                           "this check's terminals follow")
        result.user_properties += [("cause", error.cause), ("cause_detail", error.detail)]
    if result.failed:
        item.chat_failed = True
        if len(str(result.longrepr)) > REPORT_CHARS:  # a plain assert's message, or a long traceback
            result.longrepr = capped(str(result.longrepr), lines=REPORT_CHARS, chars=REPORT_CHARS)
    if chat is not None and result.failed and call.when == "call":
        for label, text in chat.transcripts():
            result.sections.append((f"transcript [{label}]", text or "(no output)"))
        seed = item.config.chat_seed
        result.sections.append(("replay", f"names and texts came from seed {seed}: add --seed {seed} to replay them"))
    points = item.get_closest_marker("points")
    if points and has_stage(item):  # travels with the report, through xdist and into JUnit XML
        result.user_properties += [("points", points.args[0]), ("description", points.args[1]),
                                   ("stage", item.callspec.params[STAGE_PARAM].id),
                                   ("category", categories.of(item.module.__name__, item.originalname))]


NOT_RUN_AT = (inspect.getsourcefile(Session), inspect.getsourcelines(Session.not_run_if_broken)[1])


def pytest_runtest_logreport(report):
    """Collect each stage check's outcome once: its call, or its setup if that did not pass. A
    check that was not run (NotRun) is skipped for pytest, and a failure for the points."""
    config = pytest_runtest_logreport.config
    props = dict(report.user_properties)
    if "cause_detail" in props:  # as many workers as found it; stated once (pytest_terminal_summary)
        config.chat_causes.setdefault(props["cause"], (report.nodeid, props["cause_detail"]))
    if "not_run" in props:
        config.chat_not_run += 1
    if ("points" in props and (not report.skipped or "not_run" in props)
            and (report.when == "call" or (report.when == "setup" and not report.passed))):
        config.chat_results.append(report_module.check_result(report, config.getoption("--hide-expected")))


def pytest_terminal_summary(terminalreporter, config):
    """A broken gate's cause, once for the whole run (every xdist worker's reports come here),
    after the failures and before the short summary: the last thing a student reads."""
    if not config.chat_causes:
        return
    terminalreporter.section("the cause", sep="=", red=True, bold=True)
    for cause, (nodeid, detail) in config.chat_causes.items():
        terminalreporter.line(f"CAUSE: {cause}")
        terminalreporter.line(f"Found by {nodeid}, which saw:\n{detail}")
    terminalreporter.line(f"{config.chat_not_run} checks that need it were not run: skipped, with 'not run' "
                          "as their reason.")


def pytest_sessionstart(session):
    pytest_runtest_logreport.config = session.config


def pytest_sessionfinish(session):
    SHARED.retire_all()
    folder = session.config.getoption("--report")
    if folder and not hasattr(session.config, "workerinput"):  # the xdist controller, or a plain run
        seed = session.config.chat_seed
        report_module.write(folder, session.config.chat_results,
                            f"names and texts came from seed {seed}; .venv/bin/python -m pytest ... --seed {seed} replays them",
                            weights=session.config.chat_weights)

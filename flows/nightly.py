"""Flow ``nightly``: every capability in order, then the one-page health report.

Steps run as subflows, in stages: backup-databases (verified by a restore) -> archive-to-s3 ->
tier-archives beside cleanup-outbox -> validate-data -> warm-cache (the steps of a stage
touch different data; see ``steward.health.NIGHTLY_STAGES`` for why each is where it is). A
failed step does not stop
the independent ones after it; the archive and the tiering do not run after a failed backup
(it is their safety net). The run ends Failed when a critical step (backup, archive,
validation) failed, ``Completed`` named "Completed with warnings" when the report needs attention
otherwise (a non-critical step failed, dead letters, a store down...), plain Completed when all
is good; the report's headline names every problem either way. The steps' runs are tagged
``steward`` (and ``nightly-step``), so the automations on Steward runs see them too.

One nightly run per database at a time, however it started (the deployment, ``steward run
nightly``, a second server): a second run waits ``wait_for_lock_seconds`` for the first, then
stops without changing anything (see ``steward.health.nightly_lock``).

Artifacts: ``nightly-health-report`` (markdown, one page; its history is the nights' history)
and ``nightly-health-figures`` (a table of the same figures, for trends).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import threading
import time
import typing
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Annotated, Any

from prefect import flow, get_run_logger, tags, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.context import SettingsContext, TagsContext, get_settings_context
from prefect.runtime import flow_run
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from steward.errors import NightlyStepsFailed
from steward.health import (
    FAILED,
    NIGHTLY_STAGES,
    NIGHTLY_STEPS,
    NOT_INSTALLED,
    NOT_RUN,
    OK,
    SKIPPED,
    NightlyStep,
    NightlyStepName,
    StepOutcome,
    blocked_by,
    build_report,
    check_skip,
    failed_critical,
    nightly_lock,
)
from steward.settings import get_settings
from tasks.health import check_stores, read_outbox_backlog

REPORT_KEY = "nightly-health-report"
FIGURES_KEY = "nightly-health-figures"
WARNINGS_STATE = "Completed with warnings"  # a nightly that finished but needs attention
STEP_TAGS = ("steward", "nightly-step")


@flow(
    name="nightly",
    description="Backup, archive, tier, clean the outbox, validate, warm the cache; then report.",
    task_runner=ThreadPoolTaskRunner(max_workers=max(len(s) for s in NIGHTLY_STAGES)),
)
def nightly(
    skip: list[NightlyStepName] | None = None,
    dry_run: bool = False,
    wait_for_lock_seconds: Annotated[float, Field(ge=0, le=86_400)] = 0.0,
) -> Any:
    """Run the nightly steps as subflows and publish the health report.

    Args:
        skip: Steps not to run this time, by name: backup-databases, archive-to-s3,
            tier-archives, cleanup-outbox, validate-data, warm-cache. Empty = run all.
        dry_run: Pass dry_run to every step that changes data (steps that cannot dry-run
            are left out); nothing changes.
        wait_for_lock_seconds: When another nightly run of the same database is under way
            (one started elsewhere, e.g. `steward run nightly`), wait this long for it
            (0-86400 s), then stop without changing anything. 0 = stop at once.
    """
    skipped = check_skip(skip)
    threading.Thread(target=_import_steps, daemon=True).start()
    logger = get_run_logger()
    logger.info(
        "nightly%s: %s",
        " (dry run)" if dry_run else "",
        " -> ".join(s.name + (" [skipped]" if s.name in skipped else "") for s in NIGHTLY_STEPS),
    )
    with ExitStack() as stack:
        if not dry_run:  # a dry run changes nothing: it may run beside a real one
            name = str(flow_run.get_name() or "steward")
            stack.enter_context(nightly_lock(get_settings(), name, wait_for_lock_seconds))
        outcomes: dict[str, StepOutcome] = {}
        for stage in NIGHTLY_STAGES:
            outcomes.update(run_stage(stage, skipped, outcomes, dry_run))
        outcomes = {step.name: outcomes[step.name] for step in NIGHTLY_STEPS}  # report order
        summary = _report(outcomes, dry_run)
    critical = failed_critical(outcomes)
    if critical:
        error = NightlyStepsFailed(
            f"nightly: critical steps failed: {', '.join(critical)} ({summary['headline']}); "
            f"the other steps ran; see the {REPORT_KEY} artifact"
        )
        error.summary = summary  # for callers in this process (`steward demo` prints it)
        raise error
    if summary["attention"]:
        # Not a plain green Completed: a state of its own an automation can match on.
        return Completed(name=WARNINGS_STATE, message=summary["headline"][:500], data=summary)
    return summary


def run_stage(
    stage: tuple[str, ...], skipped: list[str], outcomes: dict[str, StepOutcome], dry_run: bool
) -> dict[str, StepOutcome]:
    """Run a stage's steps side by side, each inside a task of this flow's thread pool.

    (Prefect runs subflows called from plain threads one after another; from tasks of a
    thread pool they overlap.) Each step's run is created once the one before it is Running:
    a Prefect server on SQLite (the test harness, a temporary server) answers one of two runs
    created at the same instant with 503 "database is locked", which its client retries only
    2 s later. On SQLite as Steward's database (the embedded default) one after another: it
    takes one writer at a time, and the steps' statistics refresh before reading writes (a
    long read beside it would make it wait, then fail with "database is locked").
    """
    steps = [step for step in NIGHTLY_STEPS if step.name in stage]
    if len(steps) == 1 or get_settings().database_url.startswith("sqlite"):
        return {step.name: run_step(step, skipped, outcomes, dry_run) for step in steps}
    futures = {}
    for step in steps:
        started = threading.Event()
        futures[step.name] = run_step_beside.with_options(name=f"run-{step.name}").submit(
            step, skipped, outcomes, dry_run, started
        )
        while not started.wait(0.05) and not futures[step.name].wrapped_future.done():
            pass  # (a task that could not even start never sets it)
    return {name: future.result() for name, future in futures.items()}


@task(name="run-nightly-step", cache_policy=NO_CACHE)
def run_step_beside(
    step: NightlyStep,
    skipped: list[str],
    outcomes: dict[str, StepOutcome],
    dry_run: bool,
    started: threading.Event,
) -> StepOutcome:
    """One step of a stage, run beside the others (see :func:`run_step`); ``started`` is set
    once its run is Running, or once it ended without one."""
    try:
        return run_step(step, skipped, outcomes, dry_run, started)
    finally:
        started.set()


def run_step(
    step: NightlyStep,
    skipped: list[str],
    outcomes: dict[str, StepOutcome],
    dry_run: bool,
    started: threading.Event | None = None,
) -> StepOutcome:
    """Run one step as a subflow (or say why not); never raises for the step's own failure."""
    outcome = StepOutcome(step.name, NOT_RUN, critical=step.critical)
    if step.name in skipped:
        outcome.state, outcome.reason = SKIPPED, "skipped by the skip parameter"
        return outcome
    outcome.reason = blocked_by(step, outcomes)
    if outcome.reason:
        get_run_logger().warning("%s not run: %s", step.name, outcome.reason)
        return outcome
    try:
        step_flow = load_step_flow(step)
    except ImportError as exc:
        outcome.state, outcome.error = FAILED, f"cannot import {step.entrypoint}: {exc}"
        return outcome
    if step_flow is None:
        outcome.state = NOT_INSTALLED
        outcome.reason = f"{step.entrypoint.split(':')[0]} is not in this checkout"
        return outcome
    try:
        arguments = step_arguments(step_flow, step, dry_run)
    except (ValueError, TypeError) as exc:  # its parameters model refused them
        outcome.state, outcome.error = FAILED, f"bad arguments for {step.name}: {exc}"[:300]
        return outcome
    if arguments is None:
        outcome.state, outcome.reason = SKIPPED, "dry run, and this step has no dry_run"
        return outcome
    return _run(step, _for_tonight(step_flow, started), arguments, outcome)


def _for_tonight(step_flow: Any, started: threading.Event | None) -> Any:
    """A copy of the step's flow whose body runs without the nightly's tags, and that sets
    ``started`` once its run is Running.

    Only the step's run needs the tags (automations match it). A tagged task run first asks
    the server for tag concurrency slots: one more write per step, which a SQLite-backed
    server answers 503 now and then, retried by the client only 2 s later.
    """
    if not hasattr(step_flow, "with_options"):
        return step_flow
    hooks = list(getattr(step_flow, "on_running_hooks", []))
    if started is not None:

        def step_run_started(*_: Any) -> None:  # named: Prefect logs the hook's name
            started.set()

        hooks.append(step_run_started)
    copy = step_flow.with_options(on_running=hooks)
    copy.fn = _untagged(step_flow.fn)
    return copy


def _untagged(body: Any) -> Any:
    """``body`` run outside any tags, with its signature's annotations resolved where it was
    written (Prefect validates the parameters against them); ``body`` itself when they cannot
    be (a name only its type checker sees: its tasks then keep the tags)."""
    try:
        hints = typing.get_type_hints(body)
    except Exception:
        return body
    signature = inspect.signature(body)

    @functools.wraps(body)
    def untagged(*args: Any, **kwargs: Any) -> Any:
        with TagsContext(current_tags=set()):
            return body(*args, **kwargs)

    untagged.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in signature.parameters.values()
        ]
    )
    return untagged


def _run(
    step: NightlyStep, step_flow: Any, arguments: dict[str, Any], outcome: StepOutcome
) -> StepOutcome:
    began = time.monotonic()
    try:
        # The step's run carries `steward`: automations on Steward runs see it.
        with _without_heartbeat(), tags(*STEP_TAGS):
            state = step_flow(**arguments, return_state=True)
    except Exception as exc:  # one step's surprise must not end the night
        outcome.state, outcome.error = FAILED, f"{type(exc).__name__}: {exc}"[:300]
        get_run_logger().error("%s could not start: %s", step.name, outcome.error)
        return outcome
    finally:
        outcome.duration_s = round(time.monotonic() - began, 2)
    outcome.work_s = _running_seconds(state.state_details.flow_run_id)
    if state.is_completed():
        result = state.result(raise_on_failure=False)
        outcome.state = OK
        outcome.summary = result if isinstance(result, dict) else {"result": repr(result)[:500]}
        if isinstance(outcome.summary.get("skipped"), str):  # e.g. no outbox: nothing to do
            outcome.state, outcome.reason = SKIPPED, outcome.summary["skipped"]
    else:
        exc = state.result(raise_on_failure=False)
        outcome.state = FAILED
        found = getattr(exc, "summary", None)  # a step may attach its summary to its error
        outcome.summary = found if isinstance(found, dict) else {}
        detail = str(exc) if isinstance(exc, BaseException) else (state.message or state.name)
        outcome.error = detail.strip().splitlines()[0][:300] if detail.strip() else state.name
        get_run_logger().error("%s failed: %s", step.name, outcome.error)
    return outcome


def _without_heartbeat() -> SettingsContext:
    """Prefect settings for a step's run: no heartbeat thread of its own.

    The step runs in the nightly's process and thread, whose run sends the heartbeats; and
    Prefect ends every run by joining its heartbeat thread, which sleeps in 1 s steps (up to
    1 s more per step, on the nightly's critical path).
    """
    current = get_settings_context()
    flows = current.settings.flows.model_copy(update={"heartbeat_frequency": None})
    settings = current.settings.model_copy(update={"flows": flows})
    return SettingsContext(profile=current.profile, settings=settings)


def _running_seconds(flow_run_id: Any) -> float | None:
    """How long the step's run was Running (its work), as Prefect recorded it."""
    try:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)
    except Exception:  # a figure of the report is not worth failing the night
        return None
    return round(run.total_run_time.total_seconds(), 2)


def _import_steps() -> None:
    """Import the later steps' modules while the first step runs, not between steps (a tenth
    of a second or more each); a module that fails is reported when its step is loaded."""
    for step in NIGHTLY_STEPS[1:]:
        try:
            importlib.import_module(step.entrypoint.split(":")[0])
        except Exception:  # load_step_flow reports it when its step is loaded
            continue


def load_step_flow(step: NightlyStep) -> Any:
    """The step's flow object, or None when its module is not part of this checkout."""
    module_name, attr = step.entrypoint.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    return getattr(module, attr, None)


def step_arguments(step_flow: Any, step: NightlyStep, dry_run: bool) -> dict[str, Any] | None:
    """Keyword arguments the step's flow accepts (None: a dry run it cannot honour)."""
    accepted = inspect.signature(step_flow.fn).parameters
    wanted = dict(step.arguments)
    if dry_run or "dry_run" in accepted:
        wanted["dry_run"] = dry_run
    if list(accepted) == ["params"]:  # a flow still taking one parameters model
        model = accepted["params"].annotation
        if isinstance(model, str):
            model = step_flow.fn.__globals__[model]
        fields = getattr(model, "model_fields", {})
        if dry_run and step.changes_data and "dry_run" not in fields:
            return None
        return {"params": model(**{k: v for k, v in wanted.items() if k in fields})}
    if dry_run and step.changes_data and "dry_run" not in accepted:
        return None
    return {k: v for k, v in wanted.items() if k in accepted}


def _report(outcomes: dict[str, StepOutcome], dry_run: bool) -> dict[str, Any]:
    health = check_stores()
    backlog = read_outbox_backlog()
    night = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    report = build_report(
        outcomes, health, backlog, title=f"Steward nightly, {night}", dry_run=dry_run
    )
    create_markdown_artifact(
        report.markdown,
        key=REPORT_KEY,
        description=f"Nightly health report: {report.headline.replace('**', '')}"[:1000],
    )
    create_table_artifact(
        report.rows,
        key=FIGURES_KEY,
        description="Nightly figures (section, figure, value): the report's numbers, for trends",
    )
    get_run_logger().info("nightly: %s", report.headline.replace("**", ""))
    return {
        "dry_run": dry_run,
        "headline": report.headline.replace("**", ""),
        "attention": report.attention,
        "steps": {name: outcome.to_dict() for name, outcome in outcomes.items()},
        "health": {"ok": health.get("ok"), "headline": health.get("headline")},
        "outbox": backlog,
        "report": report.markdown,
    }

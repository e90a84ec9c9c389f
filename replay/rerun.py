"""``ledgerflow rerun RUN --offline``: a recorded run as a test fixture for changed code.

A new run of the recorded run's workflow (the current code: ``--workflow``
overrides the one it recorded) is started for the recorded goal (or
``--goal``), with every journaled step (``ctx.step``: model calls, tool
calls, side effects) answered from RUN's recording
(:class:`~ledgerflow.machines.Recording`) and none called. A step whose
request the recording does not hold is a miss: it fails with the difference
from the closest recorded request of that name, and the command exits 1. So
a prompt, parsing or policy change is checked against last month's real
answers without paying for them again, and without acting twice.

Only ``--offline`` is built: a live rerun (calling models and tools again)
is refused until it is.

Example::

    result = await rerun_offline(store, "7b749a99864c")
    result.ok, result.run.run_id, [str(miss) for miss in result.misses]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

from ledgerflow.eventstore import EventStore
from ledgerflow.machines import (
    Orchestrator,
    Recording,
    RecordingMissError,
    RunNotFoundError,
    RunResult,
    RunStatus,
    StepView,
    Workflow,
    load_workflow,
    steps_of,
)
from ledgerflow.replay.cli_support import (
    EXIT_REFUSED,
    db_option,
    friendly,
    naming_bad_events,
    open_existing,
    run_async,
    status_line,
    with_db,
    workflow_ref,
)
from ledgerflow.replay.commands import recorded_workflow
from ledgerflow.replay.errors import RerunWorkflowNotFoundError
from ledgerflow.replay.jsonargs import parse_json_arg
from ledgerflow.replay.runids import resolve_run_id
from ledgerflow.replay.step_view import totals_line
from ledgerflow.replay.timeline import decode_log, rebuild

__all__ = ["LIVE_RERUN_NOT_BUILT", "RerunResult", "register", "rerun", "rerun_offline"]

#: Why ``rerun`` without ``--offline`` is refused (a usage error, exit 2).
LIVE_RERUN_NOT_BUILT = (
    "rerun needs --offline: a live rerun (calling models and tools again) is not built yet; "
    "add --offline to answer every step from RUN's recording.")


@dataclass(frozen=True, slots=True)
class RerunResult:
    """What an offline rerun did: the new run, its steps, every request the recording missed.

    ``recorded`` is how many answers the recording held; ``source`` names it
    (``run:ID``) in each answered step's ``detail["served_from"]``.
    """

    source_run_id: str
    source: str
    run: RunResult
    steps: Sequence[StepView]
    misses: Sequence[RecordingMissError]
    recorded: int

    @property
    def answered(self) -> int:
        """The new run's steps the recording answered."""
        return sum(1 for view in self.steps if view.detail.get("served_from") == self.source)

    @property
    def ok(self) -> bool:
        """The new run completed, and every step it asked for was in the recording."""
        return self.run.status == RunStatus.COMPLETED and not self.misses


async def rerun_offline(
    store: EventStore,
    run_id: str,
    *,
    workflow: Workflow | None = None,
    goal: dict[str, Any] | None = None,
) -> RerunResult:
    """Start a new run of ``run_id``'s workflow whose every step is answered from ``run_id``.

    ``workflow`` defaults to the one the run recorded (found by its name or
    its recorded ref, as ``resume`` finds it), ``goal`` to the recorded goal.
    The new run is appended to ``store``; nothing is called live.

    Example::

        result = await rerun_offline(store, run_id, workflow=new_wf)
        assert result.ok, "\\n".join(map(str, result.misses))
    """
    envelopes = await store.read_all(run_id)
    if not envelopes:
        raise RunNotFoundError(run_id)
    if workflow is None:
        found, why = recorded_workflow(run_id, envelopes)
        if found is None:
            raise RerunWorkflowNotFoundError(run_id, why)
        workflow = found
    if goal is None:
        goal = rebuild(run_id, envelopes).goal
    recording = Recording.from_log(
        run_id, ((env.seq, event) for env, event in decode_log(run_id, envelopes)))
    run = await Orchestrator(store, recording=recording).start(workflow, goal)
    new_log = decode_log(run.run_id, await store.read_all(run.run_id))
    return RerunResult(
        source_run_id=run_id, source=recording.source, run=run,
        steps=steps_of((env.seq, event) for env, event in new_log),
        misses=tuple(recording.misses), recorded=len(recording))


def register(group: click.Group) -> None:
    """Add ``rerun`` to ``group``."""
    group.add_command(rerun)


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--workflow", default=None, callback=workflow_ref,
              help="MODULE:WORKFLOW to run (default: the one RUN recorded): the changed code "
                   "to check against RUN's recorded answers.")
@click.option("--goal", default=None,
              help="The goal as strict JSON, or @file holding it (default: RUN's goal).")
@click.option("--offline", is_flag=True,
              help="Answer every step from RUN's recording and call nothing. Required: a live "
                   "rerun (calling models and tools again) is not built yet.")
@db_option
@friendly
def rerun(*, run_id: str, workflow: str | None, goal: str | None, offline: bool,
          db: str) -> None:
    """Run a workflow again, offline, against the steps RUN recorded.

    A NEW run of RUN's workflow (or --workflow) starts for RUN's goal (or
    --goal), and every journaled step (ctx.step: model calls, tool calls,
    side effects) is answered from RUN's log instead of being called. A step
    whose request RUN did not record misses: its difference from the closest
    recorded request is printed. Code that calls out without ctx.step is not
    covered. The new run's id is the last line printed.

    \b
    Exits 0 when the new run completed and no step missed the recording,
    1 when a step missed or the run did not complete, 2 on bad usage
    (including a missing --offline).
    """
    if not offline:
        raise click.UsageError(LIVE_RERUN_NOT_BUILT)
    goal_doc = parse_json_arg(goal, "--goal") if goal is not None else None
    if goal_doc is not None and not isinstance(goal_doc, dict):
        raise click.BadParameter("must be a JSON object.", param_hint="--goal")
    wf = load_workflow(workflow) if workflow else None

    async def go() -> RerunResult:
        async with open_existing(db) as store:
            rid = await resolve_run_id(store, run_id)
            async with naming_bad_events(store, rid):
                return await rerun_offline(store, rid, workflow=wf, goal=goal_doc)

    result = run_async(go())
    _report(result, db)
    if not result.ok:
        sys.exit(EXIT_REFUSED)


def _report(result: RerunResult, db: str) -> None:
    run, source = result.run, result.source_run_id
    click.echo(f"rerun of {source}, offline: {result.recorded} recorded step answer(s), "
               "nothing called live")
    click.echo(status_line(run.run_id, run.status, run.reason))
    click.echo(f"answered from the recording: {result.answered} step(s); missed: "
               f"{len(result.misses)}")
    for miss in result.misses:
        click.echo(f"missed the recording: {miss}")
    if result.steps:
        click.echo(totals_line(result.steps) + " (usage as recorded; nothing was spent)")
    click.echo(f"compare: {with_db(f'ledgerflow diff {source} {run.run_id}', db)}")
    click.echo(run.run_id)

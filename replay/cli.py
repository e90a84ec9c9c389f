"""The ``ledgerflow`` command line (the only module that touches click).

Every command reads the same store: ``--db`` (default ``ledgerflow.db``, or
``$LEDGERFLOW_DB``). Errors are one line on stderr and a non-zero exit code,
never a traceback: 1 for a refused operation, 2 for a usage error.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import click
import msgspec

from ledgerflow.eventstore import open_store
from ledgerflow.examples.travel import BOOKING_CALLS, TripGoal, wf
from ledgerflow.machines import (
    Orchestrator,
    RunNotFoundError,
    RunStatus,
    idempotency_key,
    load_run_state,
    load_workflow,
)
from ledgerflow.replay import commands, render
from ledgerflow.replay.cli_support import DEFAULT_DB, db_option, friendly, open_existing, run_async
from ledgerflow.replay.timeline import decision_log

__all__ = ["main"]

def _parse_json_arg(value: str, what: str) -> Any:
    text = value
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {path}: {exc.strerror}.", param_hint=what) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"is not valid JSON ({exc.msg} at line {exc.lineno} column "
                                 f"{exc.colno}).", param_hint=what) from None


def _out(renderable: Any) -> None:
    render.console().print(renderable)


def _print_log(rows: list[Any], fmt: str) -> None:
    if fmt == "table":
        _out(render.log_table(rows))
    elif fmt == "jsonl":
        for row in rows:
            click.echo(msgspec.json.encode(row.to_dict()).decode())
    else:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["seq", "at", "type", "machine", "trigger", "src", "dst", "reason"])
        for row in rows:
            writer.writerow([row.seq, row.at.isoformat(), row.type, row.machine, row.trigger,
                             row.src, row.dst, row.reason])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ledgerflow")
def main() -> None:
    """ledgerflow: deterministic, replayable, auditable orchestration of agents."""


# -- running ---------------------------------------------------------------


@main.command()
@db_option
@friendly
def demo(db: str) -> None:
    """Run the travel-planning example end to end and print its decision log."""
    async def go() -> tuple[Any, list[Any]]:
        async with await open_store(db) as store:
            run = await Orchestrator(store).start(wf, TripGoal(destination="Lisbon", passengers=2))
            return run, decision_log(await store.read_all(run.run_id))

    run, rows = run_async(go())
    _out(render.log_table(rows, title=f"decision log of run {run.run_id} (travel)"))
    click.echo(f"run {run.run_id}: {run.status} — {run.reason}")
    booked = BOOKING_CALLS.count(idempotency_key(run.run_id, "book"))
    click.echo(f"{len(rows)} events in {db}; bookings made: {booked}")
    click.echo("next:")
    for hint in (
        f"ledgerflow show {run.run_id}",
        f"ledgerflow log {run.run_id} --format jsonl",
        f"ledgerflow replay {run.run_id} --step",
        f"ledgerflow verify {run.run_id} --workflow ledgerflow.examples.travel:wf",
    ):
        click.echo(f"  {hint}" + ("" if db == DEFAULT_DB else f" --db {shlex.quote(db)}"))


@main.command("run")
@click.argument("workflow")
@click.option("--goal", "goal", required=True, help="The goal as JSON, or @file holding JSON.")
@db_option
@friendly
def run_cmd(*, workflow: str, goal: str, db: str) -> None:
    """Start a run of MODULE:WORKFLOW and drive it as far as it goes."""
    wf = load_workflow(workflow)
    goal_doc = _parse_json_arg(goal, "--goal")
    if not isinstance(goal_doc, dict):
        raise click.BadParameter("must be a JSON object.", param_hint="--goal")

    async def go() -> Any:
        async with await open_store(db) as store:
            return await Orchestrator(store).start(wf, goal_doc)

    run = run_async(go())
    click.echo(f"run {run.run_id}: {run.status} — {run.reason or 'see ledgerflow show'}")
    if run.status == RunStatus.WAITING:
        for task_id in run.escalations:
            click.echo(f"  waiting on {task_id}: ledgerflow resolve {run.run_id} {task_id} "
                       "(--output JSON | --retry | --abandon)")
    if run.status == RunStatus.FAILED:
        sys.exit(1)


# -- reading ---------------------------------------------------------------


@main.command()
@click.option("--status", type=click.Choice([s.value for s in RunStatus]), default=None,
              help="Only runs in this status.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@db_option
@friendly
def runs(*, status: str | None, limit: int, db: str) -> None:
    """List runs, most recently updated first."""

    async def go() -> list[Any]:
        async with await open_existing(db) as store:
            return await store.runs(status=status, limit=limit)

    found = run_async(go())
    if not found:
        click.echo("no runs" + (f" with status {status}" if status else ""))
        return
    _out(render.runs_table(found))


@main.command()
@click.argument("run_id", metavar="RUN")
@db_option
@friendly
def show(*, run_id: str, db: str) -> None:
    """A run's status, tasks, escalations and timeline."""

    async def go() -> tuple[Any, list[Any]]:
        async with await open_existing(db) as store:
            state = await load_run_state(store, run_id)
            return state, decision_log(await store.read_all(run_id))

    state, rows = run_async(go())
    click.echo(f"run {state.run_id} ({state.workflow}): {state.status.value}"
               + (f" — {state.reason}" if state.reason else ""))
    click.echo(f"goal: {render.summarize(state.goal, 200)}")
    click.echo(f"budget: retries {state.retries_used}/{state.max_retries}, "
               f"tokens {state.tokens}, cost {state.cost:.4g}"
               + (f" (exhausted: {state.budget_exhausted})" if state.budget_exhausted else ""))
    for table in render.state_tables(state):
        _out(table)
    _out(render.log_table(rows, title="timeline"))


@main.command("log")
@click.argument("run_id", metavar="RUN")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl", "csv"]), default="table",
              show_default=True)
@db_option
@friendly
def log_cmd(*, run_id: str, fmt: str, db: str) -> None:
    """The decision log of a run: every event, its move and its reason."""

    async def go() -> list[Any]:
        async with await open_existing(db) as store:
            envs = await store.read_all(run_id)
            if not envs:
                raise RunNotFoundError(run_id)
            return decision_log(envs)

    _print_log(run_async(go()), fmt)


@main.command()
@click.argument("run_id", metavar="RUN")
@click.argument("task_id", metavar="TASK")
@click.option("--output", help="The task's output as JSON, or @file holding JSON.")
@click.option("--retry", is_flag=True, help="Grant the task one more attempt.")
@click.option("--abandon", is_flag=True, help="Give the task up; its dependents are skipped.")
@click.option("--workflow", help="MODULE:WORKFLOW, if not the one the run recorded.")
@click.option("--by", default=lambda: f"cli:{os.environ.get('USER', 'someone')}",
              help="Who decides (recorded in the log).")
@click.option("--note", default="", help="Why (recorded in the log).")
@db_option
@friendly
def resolve(*, run_id: str, task_id: str, output: str | None, retry: bool, abandon: bool,
            workflow: str | None, by: str, note: str, db: str) -> None:
    """Settle an escalated TASK of RUN, then drive the run on."""
    chosen = [n for n, on in (("--output", output is not None), ("--retry", retry),
                              ("--abandon", abandon)) if on]
    if len(chosen) != 1:
        raise click.UsageError("Give exactly one of --output, --retry or --abandon"
                               + (f" (got {', '.join(chosen)})." if chosen else "."))
    value = _parse_json_arg(output, "--output") if output is not None else None
    wf = load_workflow(workflow) if workflow else None

    async def go() -> Any:
        async with await open_existing(db) as store:
            return await Orchestrator(store).resolve(
                run_id, task_id, output=value, retry=retry, abandon=abandon, by=by, note=note,
                workflow=wf)

    run = run_async(go())
    click.echo(f"run {run.run_id}: {run.status}" + (f" — {run.reason}" if run.reason else ""))
    for waiting in run.escalations:
        click.echo(f"  waiting on {waiting}: ledgerflow resolve {run.run_id} {waiting} "
                   "(--output JSON | --retry | --abandon)")
    if run.status == RunStatus.FAILED:
        sys.exit(1)


# The debugging-loop commands live in their own module.
commands.register(main)
if __name__ == "__main__":
    main()

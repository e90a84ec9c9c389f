"""The debugging-loop commands: replay, verify, resume, fork, diff.

Registered on the ``ledgerflow`` group by :mod:`ledgerflow.replay.cli`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import msgspec

from ledgerflow.machines import Orchestrator, RunNotFoundError, load_run_state, load_workflow
from ledgerflow.replay import render
from ledgerflow.replay.cli_support import db_option, friendly, open_existing, run_async
from ledgerflow.replay.diff import diff_runs
from ledgerflow.replay.fork import fork_run
from ledgerflow.replay.stepper import step_through
from ledgerflow.replay.verify import verify_run

__all__ = ["register"]


def register(group: click.Group) -> None:
    """Add the debugging-loop commands to ``group``."""
    for command in (replay, verify, resume, fork, diff):
        group.add_command(command)


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--to", "to", type=click.IntRange(min=1), default=None,
              help="Rebuild the state after this seq (default: the last).")
@click.option("--step", is_flag=True, help="Step through the decisions one by one.")
@click.option("--json", "as_json", is_flag=True, help="Print one machine-readable document.")
@db_option
@friendly
def replay(*, run_id: str, to: int | None, step: bool, as_json: bool, db: str) -> None:
    """The state of RUN after any event, rebuilt only from its log."""

    async def go() -> tuple[Any, list[Any]]:
        async with await open_existing(db) as store:
            envs = await store.read_all(run_id)
            if not envs:
                raise RunNotFoundError(run_id)
            last = envs[-1].seq
            if to is not None and to > last:
                raise click.BadParameter(
                    f"run '{run_id}' has {last} events; give a seq from 1 to {last}.",
                    param_hint="--to")
            if step:
                return None, envs
            return await load_run_state(store, run_id, at=to), envs

    state, envs = run_async(go())
    if step:
        step_through(run_id, envs, start=to or 1, as_json=as_json)
        return
    if as_json:
        click.echo(json.dumps(state.to_dict(), indent=2, default=str))
        return
    click.echo(f"run {run_id} after seq {state.seq} of {envs[-1].seq}: {state.status.value}"
               + (f" — {state.reason}" if state.reason else ""))
    click.echo(f"budget: retries {state.retries_used}/{state.max_retries}, tokens {state.tokens}, "
               f"cost {state.cost:.4g}"
               + (f" (exhausted: {state.budget_exhausted})" if state.budget_exhausted else ""))
    for table in render.state_tables(state):
        render.console().print(table)


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--workflow", default=None,
              help="MODULE:WORKFLOW: also check the current code makes the same decisions.")
@db_option
@friendly
def verify(*, run_id: str, workflow: str | None, db: str) -> None:
    """Check RUN's hash chain, its transitions, and (with --workflow) determinism."""
    wf = load_workflow(workflow) if workflow else None

    async def go() -> Any:
        async with await open_existing(db) as store:
            return await verify_run(store, run_id, workflow=wf)

    report = run_async(go())
    for line in report.lines():
        click.echo(line)
    for check in report.checks:
        if check.divergence is not None:
            for label, event in (("recorded", check.divergence.recorded),
                                 ("decided ", check.divergence.decided)):
                click.echo(f"  {label}: "
                           + (json.dumps(_event_doc(event), default=str) if event else "nothing"))
    if not report.ok:
        sys.exit(1)


def _event_doc(event: Any) -> dict[str, Any]:
    return msgspec.to_builtins(event)  # type: ignore[no-any-return]


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--workflow", default=None,
              help="MODULE:WORKFLOW (default: the one the run recorded).")
@db_option
@friendly
def resume(*, run_id: str, workflow: str | None, db: str) -> None:
    """Continue RUN after a crash, a kill or an escalation, doing nothing twice."""
    wf = load_workflow(workflow) if workflow else None

    async def go() -> Any:
        async with await open_existing(db) as store:
            return await Orchestrator(store).resume(run_id, wf)

    run = run_async(go())
    click.echo(f"run {run.run_id}: {run.status}" + (f" — {run.reason}" if run.reason else ""))
    for task_id in run.escalations:
        click.echo(f"  waiting on {task_id}: ledgerflow resolve {run.run_id} {task_id} "
                   "(--output JSON | --retry | --abandon)")
    if run.status == "failed":
        sys.exit(1)


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--at", "at_seq", type=click.IntRange(min=1), required=True,
              help="Copy events 1..SEQ of RUN.")
@click.option("--workflow", default=None,
              help="MODULE:WORKFLOW to continue with (default: the one the run recorded).")
@click.option("--no-continue", "stop", is_flag=True, help="Only make the copy; do not run it.")
@db_option
@friendly
def fork(*, run_id: str, at_seq: int, workflow: str | None, stop: bool, db: str) -> None:
    """A new run from a prefix of RUN's log, continued under the current code."""

    async def go() -> tuple[str, Any]:
        async with await open_existing(db) as store:
            state = await load_run_state(store, run_id)
            wf = load_workflow(workflow or state.workflow_ref, state.workflow)
            new_id = await fork_run(store, run_id, at_seq=at_seq, workflow=wf)
            if stop:
                return new_id, None
            return new_id, await Orchestrator(store).resume(new_id, wf)

    new_id, run = run_async(go())
    click.echo(f"forked run {new_id} from {run_id} at seq {at_seq}")
    if run is not None:
        click.echo(f"run {new_id}: {run.status}" + (f" — {run.reason}" if run.reason else ""))
    click.echo(f"compare: ledgerflow diff {run_id} {new_id}")
    if run is not None and run.status == "failed":
        sys.exit(1)


@click.command()
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@db_option
@friendly
def diff(*, run_a: str, run_b: str, db: str) -> None:
    """Where two runs' decisions part, and what differs per task."""

    async def go() -> Any:
        async with await open_existing(db) as store:
            envs_a = await store.read_all(run_a)
            envs_b = await store.read_all(run_b)
            for rid, envs in ((run_a, envs_a), (run_b, envs_b)):
                if not envs:
                    raise RunNotFoundError(rid)
            return diff_runs(run_a, envs_a, run_b, envs_b)

    d = run_async(go())
    if d.parted_at is None:
        click.echo(f"{run_a} and {run_b} make the same decisions.")
    else:
        sa, sb = d.parted_at
        click.echo(f"decisions part at seq {sa} of {run_a} / seq {sb} of {run_b}:")
        for label, event in ((run_a, d.first_a), (run_b, d.first_b)):
            if event is None:
                click.echo(f"  {label}: (log ends)")
            else:
                move = f" {event.src} -> {event.dst}" if event.dst else ""
                click.echo(f"  {label}: {event.type} {event.machine}{move} — {event.reason}")
    click.echo(f"status: {d.status[0]} vs {d.status[1]}")
    for t in d.task_differences:
        click.echo(f"  task {t.task_id} {t.field}: {render.summarize(t.a)} vs "
                   f"{render.summarize(t.b)}")

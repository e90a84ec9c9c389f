"""The ``ledgerflow`` command line: the group, and the commands that drive runs.

Every command reads the same store: ``--db`` (default ``ledgerflow.db``, or
``$LEDGERFLOW_DB``). Errors are one line on stderr and a non-zero exit code,
never a traceback: 1 for a refused operation, 2 for a usage error (the rule
is spelled out in ``ledgerflow --help``). The reading commands live in
:mod:`ledgerflow.replay.audit`, the debugging loop in
:mod:`ledgerflow.replay.commands`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from ledgerflow.machines import (
    Orchestrator,
    RunStatus,
    idempotency_key,
    load_workflow,
)
from ledgerflow.replay import audit, commands, diagram, pool_cli, render, rerun, secrets_cli
from ledgerflow.replay.cli_support import (
    LedgerflowGroup,
    db_option,
    friendly,
    naming_bad_events,
    open_existing,
    open_or_create,
    run_async,
    status_line,
    waiting_hints,
    with_db,
    workflow_ref,
)
from ledgerflow.replay.jsonargs import parse_json_arg
from ledgerflow.replay.progress import RunProgress, drive_or_hint, run_progress
from ledgerflow.replay.runids import resolve_run_id
from ledgerflow.replay.timeline import decision_log

__all__ = ["main"]


def _out(renderable: Any) -> None:
    render.console().print(renderable)


@click.group(cls=LedgerflowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ledgerflow")
def main() -> None:
    """ledgerflow: deterministic, replayable, auditable orchestration of agents.

    Every command takes --db (default ledgerflow.db, or $LEDGERFLOW_DB). RUN is
    a run id or any prefix of one that only one run starts with. The reading
    commands (runs, show, log, replay, verify, diff, workers) open the store
    read-only and never create one. The worker pool: submit queues a run,
    worker processes claim and drive queued runs, workers lists them, and
    db upgrade migrates a store written by an older ledgerflow. To look at a
    run: view writes its page as one HTML file, ui serves the web console
    (runs, run pages, the escalation inbox), diagram draws the state machines
    and a workflow's agents.

    \b
    Exit codes, one rule for every command:
      0  done as asked (diff: the runs make the same decisions)
      1  refused or a problem found: no such store or run, an ambiguous
         RUN, a MODULE:WORKFLOW that cannot be imported, a --to or --at
         seq past the run's last event, a resolution or goal the workflow
         refuses, a run that ends failed, verify finding a problem, diff
         finding the runs differ, rerun --offline missing the recording
      2  the command line is wrong: an unknown command or option, a missing
         argument, a value of the wrong type or shape (a seq below 1, a
         workflow that is not MODULE:WORKFLOW), --goal/--output that is
         not strict JSON a log can hold (NaN, Infinity, nested too deep,
         an integer over 4,300 digits, a lone surrogate, a key given twice)
      130  stopped by Ctrl-C (run, resume: what was recorded is kept, and a
         line says how to resume; log --follow)
    """


# -- running ---------------------------------------------------------------


@main.command()
@db_option
@friendly
def demo(db: str) -> None:
    """Run the travel-planning example end to end and print its decision log."""
    # Imported here, not at the top: every other command would otherwise hold
    # the demo's "travel" workflow in its registry, where a lookup by name
    # could find it in place of a user's own.
    from ledgerflow.examples.travel import BOOKING_CALLS, TripGoal, wf  # noqa: PLC0415

    async def go() -> tuple[Any, list[Any]]:
        async with open_or_create(db) as store:
            run = await Orchestrator(store).start(wf, TripGoal(destination="Lisbon", passengers=2))
            return run, decision_log(await store.read_all(run.run_id))

    run, rows = run_async(go())
    _out(render.log_table(rows, title=f"decision log of run {run.run_id} (travel)"))
    click.echo(status_line(run.run_id, run.status, run.reason))
    booked = BOOKING_CALLS.count(idempotency_key(run.run_id, "book"))
    click.echo(f"{len(rows)} events in {db}; bookings made: {booked}")
    click.echo("next:")
    for hint in (
        f"ledgerflow show {run.run_id}",
        f"ledgerflow log {run.run_id} --format jsonl",
        f"ledgerflow replay {run.run_id} --step",
        f"ledgerflow verify {run.run_id} --workflow ledgerflow.examples.travel:wf",
    ):
        click.echo(f"  {with_db(hint, db)}")


@main.command("run")
@click.argument("workflow", callback=workflow_ref)
@click.option("--goal", "goal", required=True,
              help="The goal as strict JSON, or @file holding it.")
@db_option
@friendly
def run_cmd(*, workflow: str, goal: str, db: str) -> None:
    """Start a run of MODULE:WORKFLOW and drive it as far as it goes.

    Progress is on stderr: the run's id as soon as it is recorded, then a live
    line on a terminal (tasks done/total, retries, escalations, cost), or at
    most one line a second elsewhere. stdout has the status line and hints.
    Ctrl-C stops the run (what was recorded is kept), says how to resume it
    and exits 130.
    """
    wf = load_workflow(workflow)
    goal_doc = parse_json_arg(goal, "--goal")
    if not isinstance(goal_doc, dict):
        raise click.BadParameter("must be a JSON object.", param_hint="--goal")

    async def go(progress: RunProgress) -> Any:
        async with open_or_create(db) as store:
            return await Orchestrator(store, observers=[progress]).start(wf, goal_doc)

    # The run's id is on stderr as soon as its first event is durable (before
    # planning); stdout keeps its status line and hints, for scripts.
    with run_progress(None) as progress:
        run = drive_or_hint(progress, go(progress), db)
    click.echo(status_line(run.run_id, run.status,
                           run.reason or f"see {with_db(f'ledgerflow show {run.run_id}', db)}"))
    if run.status == RunStatus.WAITING:
        for hint in waiting_hints(run.run_id, run.escalations, db):
            click.echo(hint)
    if run.status == RunStatus.FAILED:
        sys.exit(1)




@main.command()
@click.argument("run_id", metavar="RUN")
@click.argument("task_id", metavar="TASK")
@click.option("--output", help="The task's output as JSON, or @file holding JSON.")
@click.option("--retry", is_flag=True, help="Grant the task one more attempt.")
@click.option("--abandon", is_flag=True, help="Give the task up; its dependents are skipped.")
@click.option("--workflow", callback=workflow_ref,
              help="MODULE:WORKFLOW, if not the one the run recorded.")
@click.option("--by", default=lambda: f"cli:{os.environ.get('USER', 'someone')}",
              help="Who decides (recorded in the log).")
@click.option("--note", default="", help="Why (recorded in the log).")
@db_option
@friendly
def resolve(*, run_id: str, task_id: str, output: str | None, retry: bool, abandon: bool,
            workflow: str | None, by: str, note: str, db: str) -> None:
    """Settle an escalated TASK of RUN, then drive the run on.

    A run queued with `ledgerflow submit` is not driven here: the resolution
    is recorded, the run goes back on the queue, and the worker that claims
    it applies the resolution and drives it on.

    --output is the task's output as strict JSON (or @file); it must satisfy
    the agent's output contract, or nothing is recorded.
    """
    chosen = [n for n, on in (("--output", output is not None), ("--retry", retry),
                              ("--abandon", abandon)) if on]
    if len(chosen) != 1:
        raise click.UsageError("Give exactly one of --output, --retry or --abandon"
                               + (f" (got {', '.join(chosen)})." if chosen else "."))
    value = parse_json_arg(output, "--output") if output is not None else None
    wf = load_workflow(workflow) if workflow else None

    async def go() -> Any:
        async with open_existing(db) as store:
            rid = await resolve_run_id(store, run_id)
            async with naming_bad_events(store, rid):
                return await Orchestrator(store).resolve(
                    rid, task_id, output=value, retry=retry, abandon=abandon, by=by, note=note,
                    workflow=wf)

    run = run_async(go())
    if run.status == RunStatus.QUEUED:
        # A pool run (ledgerflow submit): the resolution waits for a worker to apply it.
        queued = ", ".join(sorted(run.state.requested)) or task_id
        click.echo(status_line(run.run_id, run.status,
                               f"the resolution of {queued} is queued for a worker of "
                               f"workflow '{run.state.workflow}' to apply"))
        ref = run.state.workflow_ref or "MODULE:WORKFLOW"
        click.echo("  a worker continues it: "
                   + with_db(f"ledgerflow worker --workflow {ref}", db))
        left = [t for t in run.escalations if t not in run.state.requested]
    else:
        click.echo(status_line(run.run_id, run.status, run.reason))
        left = run.escalations
    for hint in waiting_hints(run.run_id, left, db):
        click.echo(hint)
    if run.status == RunStatus.FAILED:
        sys.exit(1)


# The reading and the debugging-loop commands live in their own modules.
audit.register(main)
commands.register(main)
rerun.register(main)
pool_cli.register(main)
diagram.register(main)
secrets_cli.register(main)
if __name__ == "__main__":
    main()

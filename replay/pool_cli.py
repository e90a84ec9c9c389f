"""The worker pool on the command line: ``submit``, ``worker``, ``workers``, ``db upgrade``.

A service (or a person) queues runs with ``ledgerflow submit``; any number of
``ledgerflow worker`` processes on the same store (PostgreSQL, or one SQLite
file on one machine) claim and drive them; ``ledgerflow workers`` and
``ledgerflow runs`` show who holds what. Opening a store never migrates it:
``ledgerflow db upgrade`` does, explicitly. Registered on the ``ledgerflow``
group by :mod:`ledgerflow.replay.cli`.

Example (a shell)::

    ledgerflow db upgrade --db postgresql://app@db/ledger
    ledgerflow worker --db postgresql://app@db/ledger --workflow myapp.flows:travel &
    ledgerflow submit myapp.flows:travel --goal '{"destination": "Lisbon"}' \\
        --db postgresql://app@db/ledger
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Iterator
from typing import Any

import click
import msgspec

from ledgerflow.eventstore import (
    SCHEMA_VERSION,
    StoreNotFoundError,
    StoreUpgradeRequiredError,
    upgrade_store,
)
from ledgerflow.eventstore.opening import mask_password
from ledgerflow.machines import Orchestrator, Worker, load_workflow
from ledgerflow.machines.worker import WorkerStats
from ledgerflow.replay import documents, render
from ledgerflow.replay.cli_support import (
    LedgerflowGroup,
    db_option,
    friendly,
    must_not_be_a_directory,
    open_existing,
    open_for_reading,
    open_or_create,
    run_async,
    with_db,
    workflow_ref,
)
from ledgerflow.replay.jsonargs import parse_json_arg
from ledgerflow.replay.progress import WorkerProgress, worker_progress

__all__ = ["LOG_FORMAT", "register", "stats_line"]

log = logging.getLogger("ledgerflow")

#: How ``ledgerflow worker`` logs to stderr: short, one line per event.
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
#: Where a drive that ran to its end leaves a run (else it waits, or was lost or stopped).


def register(group: click.Group) -> None:
    """Add ``submit``, ``worker``, ``workers`` and ``db`` to ``group``."""
    for command in (submit, worker, workers, db_group):
        group.add_command(command)


# -- submit -----------------------------------------------------------------


def _run_id(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    # Printed alone on the last line for scripts to read, and pasted into
    # commands: no spaces or control characters.
    if value is not None and (not value or not value.isprintable() or any(
            ch.isspace() for ch in value)):
        raise click.BadParameter(
            f"{value!r} is not a run id: give a non-empty id without spaces or control "
            "characters.")
    return value


@click.command()
@click.argument("workflow", callback=workflow_ref)
@click.option("--goal", "goal", required=True,
              help="The goal as strict JSON, or @file holding it.")
@click.option("--run-id", "run_id", default=None, callback=_run_id,
              help="The new run's id (default: a fresh one). Refused if a run has it already.")
@db_option
@friendly
def submit(*, workflow: str, goal: str, run_id: str | None, db: str) -> None:
    """Queue a run of MODULE:WORKFLOW for the worker pool, without driving it here.

    The goal is checked against the workflow's goal contract first; the run
    is recorded as queued, and a `ledgerflow worker` serving the workflow
    claims and drives it. The new run's id is printed alone on the last line.
    """
    wf = load_workflow(workflow)
    goal_doc = parse_json_arg(goal, "--goal")
    if not isinstance(goal_doc, dict):
        raise click.BadParameter("must be a JSON object.", param_hint="--goal")

    async def go() -> str:
        async with open_or_create(db) as store:
            return await Orchestrator(store).submit(wf, goal_doc, run_id=run_id)

    new_id = run_async(go())
    click.echo(f"queued run {new_id} of workflow {wf.name}; start a worker: "
               + with_db(f"ledgerflow worker --workflow {workflow}", db))
    click.echo(new_id)


# -- worker -----------------------------------------------------------------


def _seconds(*, allow_zero: bool) -> Any:
    """A click callback: a finite number of seconds, > 0 (or >= 0 with ``allow_zero``)."""

    def check(_ctx: click.Context, _param: click.Parameter, value: float) -> float:
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise click.BadParameter(f"{value:g} is not a number of seconds {bound}.")
        return value

    return check


def _workflow_refs(ctx: click.Context, param: click.Parameter,
                   values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        workflow_ref(ctx, param, value)
    return values


@contextlib.contextmanager
def _logging_to_stderr() -> Iterator[None]:
    """INFO and above of ``ledgerflow`` on stderr for one command; removed after it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    previous = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(previous)


def stats_line(worker_id: str, stats: WorkerStats) -> str:
    """The line ``ledgerflow worker`` ends with: what it did.

    Example::

        >>> stats_line("h:1:ab", WorkerStats(claimed=2, finished=2))
        'worker h:1:ab stopped: claimed 2, finished 2, waiting 0, lost 0, failed 0'
    """
    return (f"worker {worker_id} stopped: claimed {stats.claimed}, finished {stats.finished}, "
            f"waiting {stats.waiting}, lost {stats.lost}, failed {stats.failed}; "
            f"tasks run {stats.tasks} ({stats.tasks_claimed} claimed from the pool), "
            f"lost {stats.tasks_lost}")


@click.command()
@click.option("--workflow", "workflow_refs", multiple=True, required=True,
              callback=_workflow_refs, metavar="MODULE:WORKFLOW",
              help="A workflow to serve; give it once per workflow. Only runs of these are "
                   "claimed.")
@click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True,
              help="Runs driven at once by this worker.")
@click.option("--task-concurrency", "task_concurrency", type=click.IntRange(min=1), default=32,
              show_default=True,
              help="Task attempts run at once by this worker, for any run of the pool.")
@click.option("--spread/--no-spread", "spread", default=True, show_default=True,
              help="Offer the attempts of the runs this worker drives to the whole pool "
                   "(--no-spread: run them in this process).")
@click.option("--lease-ttl", "lease_ttl", type=float, default=30.0, show_default=True,
              callback=_seconds(allow_zero=False), metavar="SECONDS",
              help="How long a claimed run's lease lives between heartbeats; a run whose "
                   "worker died is taken over by another after it.")
@click.option("--poll", type=float, default=1.0, show_default=True,
              callback=_seconds(allow_zero=False), metavar="SECONDS",
              help="How often an idle worker looks for work (PostgreSQL also wakes it at once "
                   "with NOTIFY).")
@click.option("--drain", type=float, default=30.0, show_default=True,
              callback=_seconds(allow_zero=True), metavar="SECONDS",
              help="On SIGTERM, how long the runs in hand may go on before they are stopped "
                   "(their leases released, another worker continues them).")
@click.option("--until-idle", is_flag=True,
              help="Stop once nothing is left to claim and nothing is in hand (scripts, tests).")
@db_option
@friendly
def worker(*, workflow_refs: tuple[str, ...], concurrency: int, task_concurrency: int,
           spread: bool, lease_ttl: float, poll: float, drain: float, until_idle: bool,
           db: str) -> None:
    """Claim queued runs (and runs whose worker died) of the given workflows and drive them.

    Runs until stopped: SIGTERM or Ctrl-C stops claiming and lets the runs in
    hand finish within --drain seconds; a second one stops at once. Logs one
    line per run claimed, finished or lost to stderr (on a terminal, a live
    line below them counts runs claimed and finished, attempts run and tasks
    done), and prints what it did when it stops. The store must exist and be at the current schema
    (ledgerflow db upgrade).

    \b
    Exits 0 after a clean stop, 1 when the store or a workflow cannot be
    used, 2 on bad usage.
    """
    wfs = [load_workflow(ref) for ref in workflow_refs]

    async def go(progress: WorkerProgress) -> tuple[str, WorkerStats]:
        async with open_existing(db) as store:
            version = getattr(store, "schema_version", SCHEMA_VERSION)
            if version < SCHEMA_VERSION:  # before the first line says it serves
                raise StoreUpgradeRequiredError(mask_password(db), version, SCHEMA_VERSION)
            pool = Worker(store, wfs, concurrency=concurrency, lease_ttl_s=lease_ttl,
                          poll_s=poll, drain_s=drain, spread_tasks=spread,
                          task_concurrency=task_concurrency, observers=[progress])
            progress.watch(pool)
            pool.stop_on_signals()
            log.info("worker %s serving %s on %s (concurrency %d, lease ttl %gs)",
                     pool.worker_id, ", ".join(sorted(wf.name for wf in wfs)),
                     mask_password(db), concurrency, lease_ttl)
            return pool.worker_id, await pool.run(until_idle=until_idle)

    # The live line (a terminal only) first: the log lines then go above it.
    with worker_progress() as progress, _logging_to_stderr():
        worker_id, stats = run_async(go(progress))
    click.echo(stats_line(worker_id, stats))


# -- workers ----------------------------------------------------------------


@click.command()
@click.option("--json", "as_json", is_flag=True,
              help='One JSON document: {"workers": [{"worker_id", "alive", "host", "pid", '
                   '"workflows", "concurrency", "started_at", "heartbeat_at", "expires_at", '
                   '"heartbeat_age_s", "runs", "info"}, ...]} (stable keys; times ISO 8601 UTC; '
                   "runs: the run ids whose lease the worker holds).")
@click.option("--gone-for", "gone_for", type=float, default=3600.0, show_default=True,
              callback=_seconds(allow_zero=True), metavar="SECONDS",
              help="Also list workers whose heartbeat lapsed less than this long ago.")
@db_option
@friendly
def workers(*, as_json: bool, gone_for: float, db: str) -> None:
    """The workers of the pool: live ones, then recently gone ones, and the runs they hold.

    A worker is alive while its heartbeat is within its lease ttl (judged by
    the store's clock); one killed or paused is listed as gone until
    --gone-for has passed.
    """

    async def go() -> tuple[list[Any], int]:
        async with open_for_reading(db) as store:
            found = await store.workers(include_gone_s=gone_for)
            return found, getattr(store, "schema_version", SCHEMA_VERSION)

    found, version = run_async(go())
    now = time.time()
    if as_json:
        click.echo(msgspec.json.encode(documents.workers_document(found, now=now)).decode())
        return
    if not found:
        click.echo("no workers" + (
            f" (the store is at schema v{version}, which has no workers registry: run "
            f"`{with_db('ledgerflow db upgrade', db)}` before starting one)"
            if version < SCHEMA_VERSION else ""))
        return
    render.console().print(render.workers_table(found, now=now))
    alive = sum(1 for w in found if w.alive)
    click.echo(f"{alive} alive, {len(found) - alive} gone; runs held: "
               f"{sum(len(w.runs) for w in found if w.alive)}")


# -- db upgrade -------------------------------------------------------------


@click.group("db", cls=LedgerflowGroup)
def db_group() -> None:
    """Manage the store itself: `ledgerflow db upgrade --db URL`."""


@db_group.command()
@click.option("--create", is_flag=True,
              help="Create the store at the current schema if it is not there yet (a new "
                   "database's first step); without it a missing store is refused.")
@db_option
@friendly
def upgrade(*, create: bool, db: str) -> None:
    """Migrate the store to this ledgerflow's schema, explicitly (opening never does).

    Runs every missing migration in one transaction (a crash leaves the old
    schema); a store already current is left untouched. A store written by a
    newer ledgerflow is refused (exit 1), and so is one that is not there,
    unless --create asks for a new one.
    """
    must_not_be_a_directory(db)
    shown = mask_password(db)
    try:
        old, new = run_async(upgrade_store(db))
    except StoreNotFoundError:
        if not create:
            raise
        _, new = run_async(upgrade_store(db, create=True))
        click.echo(f"created {shown} at schema v{new}")
        return
    if old == new:
        click.echo(f"{shown} is already at schema v{new}; nothing was changed")
    else:
        click.echo(f"upgraded {shown} from schema v{old} to v{new}")

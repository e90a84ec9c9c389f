"""The reading commands ``runs``, ``show`` and ``log``: the audit side of the CLI.

They open the store read-only (they work on a store in a folder the user
cannot write, and never create a store or schema), take a run id or any
unique prefix of one, and fit an 80-column terminal without cutting run ids
or reasons. Registered on the ``ledgerflow`` group by
:mod:`ledgerflow.replay.cli`.
"""

from __future__ import annotations

import asyncio
import csv
import sys
from collections.abc import Sequence
from typing import Any

import click
import msgspec

from ledgerflow.eventstore import EventStore, RunSummary
from ledgerflow.eventstore.chain_keys import KEY_ENV
from ledgerflow.machines import RunNotFoundError, RunStatus, decode_event, steps_of
from ledgerflow.machines.events import RunResumed, StepRecorded, StepStarted
from ledgerflow.replay import documents, render, step_view
from ledgerflow.replay.anchors import Anchor, head_anchor, keys_from_files
from ledgerflow.replay.cli_support import (
    db_option,
    friendly,
    one_line,
    open_for_reading,
    run_async,
)
from ledgerflow.replay.progress import EXIT_INTERRUPTED
from ledgerflow.replay.runids import resolve_run_id
from ledgerflow.replay.timeline import LogRow, decision_log, rebuild

__all__ = ["CSV_COLUMNS", "FOLLOW_POLL_S", "LogFollower", "follow_log", "print_head",
           "print_log", "register"]

#: The columns of ``log --format csv``: ``data`` is the event's stored JSON;
#: ``step`` is a journaled step's one-line summary (empty on other events).
CSV_COLUMNS = ("seq", "at", "type", "machine", "trigger", "src", "dst", "reason", "data",
               "prev_hash", "hash", "step")


def register(group: click.Group) -> None:
    """Add the reading commands to ``group``."""
    for command in (runs, show, log_cmd):
        group.add_command(command)


def _echo_json(doc: Any) -> None:
    # msgspec, not json: it never writes NaN (not JSON) and keeps big ints exact.
    click.echo(msgspec.json.encode(doc).decode())


#: How many events ``runs`` reads at a time, walking back from a run's end.
_REASON_WINDOW = 8


async def _last_reasons(store: EventStore, found: list[RunSummary]) -> dict[str, str]:
    """Each run's latest decision: the reason of its last event that is not bookkeeping.

    A ``RunResumed`` says who resumed, not why the run is where it is; each
    ``resume`` of a waiting run appends one, which hid the escalation the run
    waits on. One short read per run, walking back only past those.
    """
    reasons: dict[str, str] = {}
    for summary in found:
        reasons[summary.run_id] = await _last_decision(store, summary)
    return reasons


async def _last_decision(store: EventStore, summary: RunSummary) -> str:
    until = summary.last_seq
    while until > 0:
        after = max(until - _REASON_WINDOW, 0)
        window = [env async for env in store.read(summary.run_id, after=after, until=until)]
        for env in reversed(window):
            try:
                event = decode_event(env.data)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                return (f"(event seq {env.seq} cannot be decoded; run "
                        f"`ledgerflow verify {summary.run_id}`)")
            if not isinstance(event, RunResumed):
                return event.reason
        until = after
    return ""


@click.command()
@click.option("--status", type=click.Choice([s.value for s in RunStatus]), default=None,
              help="Only runs in this status.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True,
              help='One JSON document: {"runs": [{"run_id", "workflow", "status", "events", '
                   '"created_at", "updated_at", "reason", "owner"}, ...]} (stable keys; times '
                   "ISO 8601 UTC; reason is the run's last decision, RunResumed bookkeeping "
                   "skipped; owner is the worker holding the run's lease, or null).")
@db_option
@friendly
def runs(*, status: str | None, limit: int, as_json: bool, db: str) -> None:
    """List runs, most recently updated first, with each run's latest reason.

    Queued runs (ledgerflow submit) wait for a worker; a run a worker drives
    now shows the worker holding it ("held by", ledgerflow workers).
    """

    async def go() -> tuple[list[RunSummary], dict[str, str]]:
        async with open_for_reading(db) as store:
            found = await store.runs(status=status, limit=limit)
            return found, await _last_reasons(store, found)

    found, reasons = run_async(go())
    if as_json:
        _echo_json(documents.runs_document(found, reasons))
        return
    if not found:
        click.echo("no runs" + (f" with status {status}" if status else ""))
        return
    render.console().print(render.runs_table(found, reasons))
    for line in render.held_by_lines(found):
        click.echo(line)


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--json", "as_json", is_flag=True,
              help='One JSON document: {"run_id", "workflow", "workflow_ref", "status", '
                   '"reason", "events", "goal", "budget", "tasks": [{"id", "agent", "status", '
                   '"attempts", "needs", "output", "last_error", "idempotency_key", '
                   '"resolved_by"}], "escalations": [{"task_id", "kind", "reason"}], '
                   '"forked_from", "steps": [{"task_id", "attempt", "index", "name", "kind", '
                   '"model", "tool", "tokens", "cost", "duration_ms", "outcome", "error_type", '
                   '"message", "side_effect", "seq", "request_summary", "result_summary"}], '
                   '"step_totals": {"steps", "llm_calls", "tool_calls", "tokens", "cost"}} '
                   "(stable keys; requests and results cut short: log --format jsonl holds "
                   "them whole).")
@db_option
@friendly
def show(*, run_id: str, as_json: bool, db: str) -> None:
    """A run's status, tasks, escalations, steps and timeline (RUN: an id or a unique prefix).

    Each journaled step (a model or tool call made with ctx.step) is listed
    under its task's attempt with its kind, model or tool, tokens, cost,
    duration and outcome; a side effect that started and recorded nothing
    shows "outcome unknown".
    """

    async def go() -> tuple[Any, list[LogRow]]:
        async with open_for_reading(db) as store:
            rid = await resolve_run_id(store, run_id)
            envs = await store.read_all(rid)
            if not envs:
                raise RunNotFoundError(rid)
            return rebuild(rid, envs), decision_log(envs)

    state, rows = run_async(go())
    steps = steps_of((row.seq, row.event) for row in rows)
    if as_json:
        _echo_json(documents.show_document(state, steps))
        return
    out = render.console()
    # Printed through rich so that long lines wrap at the terminal's width.
    out.print(f"run {state.run_id} ({state.workflow}): {state.status.value}"
              + (f" — {one_line(state.reason)}" if state.reason else ""), markup=False)
    out.print(f"goal: {render.summarize(state.goal, 200)}", markup=False)
    out.print(f"budget: retries {state.retries_used}/{state.max_retries}, "
              f"tokens {state.tokens}, cost {state.cost:.4g}"
              + (f" (exhausted: {state.budget_exhausted})" if state.budget_exhausted else ""),
              markup=False)
    if steps:  # a run without steps prints what it always did
        out.print(step_view.totals_line(steps), markup=False)
    for table in render.state_tables(state):
        out.print(table)
    if steps:
        groups = step_view.by_attempt(steps, list(state.tasks))
        out.print(render.steps_table(step_view.step_cells(groups),
                                     title="steps (under each task's attempt)"))
    out.print(render.log_table(rows, title="timeline", notes=step_view.step_notes(rows, steps)))


def print_log(rows: list[LogRow], fmt: str, *, header: bool = True) -> None:
    """Print the decision log as a table, JSON lines (with hashes) or CSV (with data).

    A row that records a journaled step says what the step did: in the
    table's reason column, the csv's ``step`` column, and a ``step`` object
    (the keys of ``show --json``'s steps) beside the full event in jsonl.
    ``header=False`` prints more rows of a log already begun (``--follow``):
    no csv header, no table header.
    """
    steps = steps_of((row.seq, row.event) for row in rows)
    notes = step_view.step_notes(rows, steps)
    if fmt == "table":
        table = render.log_table(rows, notes=notes)
        if not header:
            table.show_header = False
        render.console().print(table)
    elif fmt == "jsonl":
        encode = msgspec.json.Encoder().encode
        views = step_view.views_by_row(rows, steps)
        for row in rows:
            doc = row.to_dict()
            if row.seq in views:
                doc["step"] = step_view.step_document(views[row.seq])
            click.echo(encode(doc).decode())
    else:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        if header:
            writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow([row.seq, row.at.isoformat(), row.type, row.machine, row.trigger,
                             row.src, row.dst, row.reason, row.raw.decode(), row.prev_hash,
                             row.hash, notes.get(row.seq, "")])


#: How often ``log --follow`` reads the store for new events.
FOLLOW_POLL_S = 0.2
#: Where a followed run stops changing: ``log --follow`` prints the rest and exits.
_OVER = frozenset({RunStatus.COMPLETED.value, RunStatus.FAILED.value,
                   RunStatus.CANCELLED.value})
_SETTLED = _OVER | {RunStatus.WAITING.value}


class LogFollower:
    """The rows of a followed log, printed as they come, as ``log`` prints them afterwards.

    A side effect's ``StepStarted`` row (and every row after it) is held
    until the step's ``StepRecorded`` comes, so that each row is printed
    once, as the whole log shows it (``log`` joins the two); rows held when
    the run settles (waiting, or over: an outcome that is unknown stays so)
    or the follow stops are printed as they stand.

    Example::

        follower = LogFollower("jsonl")
        follower.add(decision_log(new_envelopes))
    """

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        #: The run's status, from the last run move seen ("" before any).
        self.status = ""
        self._held: list[LogRow] = []
        self._open: set[tuple[str, int, int]] = set()
        self._printed = False

    @property
    def over(self) -> bool:
        """Whether the run is completed, failed or cancelled."""
        return self.status in _OVER

    def add(self, rows: Sequence[LogRow]) -> None:
        """Take new rows (in seq order); print those no later row can change."""
        for row in rows:
            event = row.event
            if isinstance(event, StepStarted):
                self._open.add((event.task_id, event.attempt, event.index))
            elif isinstance(event, StepRecorded):
                self._open.discard((event.task_id, event.attempt, event.index))
            if row.machine == "run" and row.dst:
                self.status = row.dst
            self._held.append(row)
        if not self._open or self.status in _SETTLED:
            self.flush()

    def flush(self) -> None:
        """Print every row held, as it stands."""
        if self._held:
            rows, self._held = self._held, []
            self._open.clear()
            print_log(rows, self.fmt, header=not self._printed)
            self._printed = True
            sys.stdout.flush()  # a pipe (| jq) sees each batch as it comes


async def follow_log(store: EventStore, run_id: str, fmt: str, *,
                     poll_s: float = FOLLOW_POLL_S) -> None:
    """Print ``run_id``'s log, then its new events as they are appended, until it is over.

    A waiting run is followed on (a resolution continues it). Cancelled (Ctrl-C), it
    prints what it holds and returns quietly.

    Example::

        await follow_log(store, "7b749a99864c", "jsonl")
    """
    follower = LogFollower(fmt)
    last = 0
    try:
        while True:
            envs = [env async for env in store.read(run_id, after=last)]
            if envs:
                last = envs[-1].seq
                follower.add(decision_log(envs))
            elif not last:
                raise RunNotFoundError(run_id)
            if follower.over:
                return
            await asyncio.sleep(poll_s)
    finally:
        follower.flush()


@click.command("log")
@click.argument("run_id", metavar="RUN")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl", "csv"]), default="table",
              show_default=True,
              help="jsonl: one object per event with seq, at, type, machine, trigger, src, dst, "
                   "reason, data (the stored JSON, verbatim), prev_hash and hash, and for a "
                   "journaled step a step object (its kind, model or tool, tokens, cost, "
                   "outcome); csv: the same columns, data as JSON text, then step (a one-line "
                   "summary of a journaled step).")
@click.option("--follow", "-f", "follow", is_flag=True,
              help="Print the events so far, then each new one as it is appended (the store "
                   f"is read every {FOLLOW_POLL_S:g}s), until the run is completed, failed or "
                   "cancelled; a waiting run is followed on. Ctrl-C stops (exit 130).")
@click.option("--head", "head", is_flag=True,
              help="Print only the chain head, SEQ:HASH, on one line: keep it outside the "
                   "store, and `ledgerflow verify RUN --head SEQ:HASH` later finds a log "
                   "rewritten (even with its chain recomputed) or truncated since. With "
                   "--key-file or --sign-key, SEQ:HASH:MAC or SEQ:HASH:SIG.")
@click.option("--key-file", default=None, metavar="PATH",
              help=f"With --head: seal it with the HMAC-SHA256 key in PATH (default: "
                   f"${KEY_ENV}).")
@click.option("--sign-key", default=None, metavar="PEM",
              help="With --head: sign it with this Ed25519 private key (PEM; needs the "
                   "cryptography package).")
@db_option
@friendly
def log_cmd(*, run_id: str, fmt: str, follow: bool, head: bool, key_file: str | None,
            sign_key: str | None, db: str) -> None:
    """The decision log of a run: every event, its move and its reason.

    A journaled step's event (StepStarted, StepRecorded) comes under its
    task's TaskDispatched and shows the step's attempt, index, name, kind,
    model or tool, usage and outcome, its request and result cut short.
    With --follow the lines printed are the ones `log` prints afterwards.
    With --head only the chain head is printed, to anchor the log.
    """
    if head:
        if follow:
            raise click.UsageError("--head prints one line; it cannot be used with --follow.")
        print_head(run_id, db, key_file=key_file, sign_key=sign_key)
        return
    if key_file or sign_key:
        raise click.UsageError("--key-file and --sign-key seal a --head; give --head too.")

    async def go() -> list[LogRow]:
        async with open_for_reading(db) as store:
            rid = await resolve_run_id(store, run_id)
            envs = await store.read_all(rid)
            if not envs:
                raise RunNotFoundError(rid)
            return decision_log(envs)

    async def tail() -> None:
        async with open_for_reading(db) as store:
            await follow_log(store, await resolve_run_id(store, run_id), fmt)

    if not follow:
        print_log(run_async(go()), fmt)
        return
    try:
        run_async(tail())
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


def print_head(run_id: str, db: str, *, key_file: str | None = None,
               sign_key: str | None = None) -> None:
    """Print ``SEQ:HASH`` (sealed with the keys given) of the run's last event, alone."""
    keys = keys_from_files(key_file, sign_key=sign_key)

    async def go() -> Anchor:
        async with open_for_reading(db) as store:
            return await head_anchor(store, await resolve_run_id(store, run_id), keys=keys)

    click.echo(run_async(go()).text())

"""The debugging-loop commands: replay, verify, resume, fork, diff.

Registered on the ``ledgerflow`` group by :mod:`ledgerflow.replay.cli`.
``replay``, ``verify`` and ``diff`` open the store read-only; ``resume`` and
``fork`` append to an existing store and never create one.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import msgspec

from ledgerflow.errors import LedgerflowError
from ledgerflow.eventstore import Envelope, EventStore
from ledgerflow.eventstore.chain_keys import KEY_ENV, stored_chain_problem
from ledgerflow.machines import (
    Orchestrator,
    RunNotFoundError,
    RunState,
    Workflow,
    WorkflowDefinitionError,
    load_run_state,
    load_workflow,
)
from ledgerflow.machines.errors import ChainBrokenError
from ledgerflow.machines.events import RunStarted, RunSubmitted
from ledgerflow.replay import documents, render, step_view
from ledgerflow.replay.anchors import Anchor, AnchorFormatError, keys_from_files
from ledgerflow.replay.cli_support import (
    EXIT_REFUSED,
    db_option,
    friendly,
    naming_bad_events,
    one_line,
    open_existing,
    open_for_reading,
    run_async,
    status_line,
    waiting_hints,
    with_db,
    workflow_ref,
)
from ledgerflow.replay.diff import diff_runs
from ledgerflow.replay.errors import SeqPastEndError
from ledgerflow.replay.fork import fork_run
from ledgerflow.replay.progress import RunProgress, drive_or_hint, run_progress
from ledgerflow.replay.runids import resolve_run_id
from ledgerflow.replay.stepper import step_through
from ledgerflow.replay.timeline import decode_log, rebuild
from ledgerflow.replay.verify import verify_run

__all__ = ["DEFAULT_WAIT_S", "recorded_workflow", "register"]

#: How long ``resume --wait`` (without a value) waits for a busy run's lease:
#: longer than the default lease ttl, so a crashed owner's lease lapses first.
DEFAULT_WAIT_S = 60.0


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
    """The state of RUN after any event, rebuilt only from its log.

    With --step, an event that records a journaled step (a model or tool call
    made with ctx.step) says what the step did; --json adds the run's steps
    ("steps") and their totals ("step_totals": steps, llm_calls, tool_calls,
    tokens, cost) up to that event.
    """

    async def go() -> tuple[str, list[Envelope]]:
        async with open_for_reading(db) as store:
            rid = await resolve_run_id(store, run_id)
            envs = await store.read_all(rid)
            if not envs:
                raise RunNotFoundError(rid)
            return rid, envs

    rid, envs = run_async(go())
    last = envs[-1].seq
    if to is not None and to > last:
        raise SeqPastEndError(rid, to, last, "--to")
    if step:
        step_through(rid, envs, start=to or 1, as_json=as_json)
        return
    if as_json:
        click.echo(json.dumps(documents.replay_document(rid, envs, to), indent=2))
        return
    state, steps = documents.replay_view(rid, envs, to)
    click.echo(f"run {rid} after seq {state.seq} of {last}: {state.status.value}"
               + (f" — {one_line(state.reason)}" if state.reason else ""))
    click.echo(f"budget: retries {state.retries_used}/{state.max_retries}, tokens {state.tokens}, "
               f"cost {state.cost:.4g}"
               + (f" (exhausted: {state.budget_exhausted})" if state.budget_exhausted else ""))
    if steps:  # a run without steps prints what it always did
        click.echo(step_view.totals_line(steps))
    for table in render.state_tables(state):
        render.console().print(table)
    if steps:
        groups = step_view.by_attempt(steps, list(state.tasks))
        render.console().print(render.steps_table(step_view.step_cells(groups)))


def recorded_workflow(run_id: str, envelopes: list[Envelope]) -> tuple[Workflow | None, str]:
    """The workflow a run recorded, found by its name (registry, entry points) or its ref.

    Returns ``(workflow, "")``, or ``(None, why)`` when it cannot be found.

    Example::

        wf, why = recorded_workflow(run_id, envs)
    """
    try:
        first = decode_log(run_id, envelopes[:1])
    except LedgerflowError as exc:  # the transitions check reports it in full
        return None, f"its first event cannot be decoded ({str(exc).rstrip('.')})"
    started = first[0][1] if first else None
    if not isinstance(started, RunStarted | RunSubmitted):
        return None, "the log does not start with RunStarted or RunSubmitted"
    try:
        return load_workflow(started.workflow_ref, started.workflow), ""
    except WorkflowDefinitionError as exc:
        why = str(exc).rstrip(".")
    except Exception as exc:  # the user's module failed on import: say so, and skip
        why = f"importing it raised {type(exc).__name__}: {exc}"
    return None, f"the workflow '{started.workflow}' the run recorded is not found here: {why}"


def _anchor_arg(_ctx: click.Context, _param: click.Parameter, value: str | None
                ) -> Anchor | None:
    """Click callback: a --head that is not SEQ:HASH[:SEAL] is a usage error (exit 2)."""
    if value is None:
        return None
    try:
        return Anchor.parse(value)
    except AnchorFormatError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--workflow", default=None, callback=workflow_ref,
              help="MODULE:WORKFLOW to check determinism with (default: the workflow the run "
                   "recorded, found by its name, when it can be).")
@click.option("--head", "head", default=None, callback=_anchor_arg, metavar="SEQ:HASH",
              help="Also check the log against a chain head kept outside the store (as "
                   "`ledgerflow log RUN --head` printed it): the event at SEQ must exist with "
                   "exactly that hash, so a log rewritten with its chain recomputed, or "
                   "truncated with its runs row edited, is found. SEQ:HASH:MAC or "
                   "SEQ:HASH:SIG is checked with --key-file or --verify-key.")
@click.option("--key-file", default=None, metavar="PATH",
              help=f"With --head: the HMAC-SHA256 key its MAC was made with (default: "
                   f"${KEY_ENV}).")
@click.option("--verify-key", default=None, metavar="PEM",
              help="With --head: the Ed25519 public key (PEM) its signature was made for.")
@db_option
@friendly
def verify(*, run_id: str, workflow: str | None, head: Anchor | None, key_file: str | None,
           verify_key: str | None, db: str) -> None:
    """Check RUN's hash chain, its transitions, and that the current code decides the same.

    The determinism check needs the workflow's code: given with --workflow,
    or else the one the run recorded (by its registered name, an installed
    entry point, or the module it recorded). When neither can be found it is
    SKIPPED, said so, and not counted as a pass. With --head, a fourth check:
    the log still holds the anchored head.
    """
    if head is None and (key_file or verify_key):
        raise click.UsageError("--key-file and --verify-key check a sealed --head; give "
                               "--head too.")
    # The key is read only for an anchor: a verify without one never needs it.
    keys = keys_from_files(key_file, verify_key=verify_key) if head is not None else None
    chosen = load_workflow(workflow) if workflow else None

    async def go() -> Any:
        async with open_for_reading(db) as store:
            rid = await resolve_run_id(store, run_id)
            wf, why = chosen, ""
            if wf is None:
                wf, why = recorded_workflow(rid, [e async for e in store.read(rid, until=1)])
            return wf, await verify_run(store, rid, workflow=wf, why_skipped=why,
                                        head=head, keys=keys)

    wf, report = run_async(go())
    if wf is not None:
        source = "given with --workflow" if workflow else "recorded by the run"
        click.echo(f"workflow: {wf.name} ({source})")
    for line in report.lines():
        click.echo(line)
    for check in report.checks:
        if check.divergence is not None:
            for label, event in (("recorded", check.divergence.recorded),
                                 ("decided ", check.divergence.decided)):
                click.echo(f"  {label}: "
                           + (json.dumps(_event_doc(event), default=str) if event else "nothing"))
    if not report.ok:
        sys.exit(EXIT_REFUSED)
    passed = sum(1 for c in report.checks if not c.skipped)
    skipped = report.skipped
    click.echo(f"{passed} checks passed"
               + (f"; {', '.join(skipped)} SKIPPED (not checked)" if skipped else ""))


def _where(seq: int | None, run_id: str) -> str:
    # A shorter log has no seq where the other goes on: say it ended.
    return f"seq {seq} of {run_id}" if seq is not None else f"the end of {run_id}'s decisions"


def _event_doc(event: Any) -> dict[str, Any]:
    return msgspec.to_builtins(event)  # type: ignore[no-any-return]


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--workflow", default=None, callback=workflow_ref,
              help="MODULE:WORKFLOW (default: the one the run recorded).")
@click.option("--wait", type=click.FloatRange(min=0), is_flag=False, flag_value=DEFAULT_WAIT_S,
              default=None, metavar="[SECONDS]",
              help="If another process holds the run's lease, wait for it up to SECONDS "
                   f"(default {DEFAULT_WAIT_S:g}) instead of refusing.")
@db_option
@friendly
def resume(*, run_id: str, workflow: str | None, wait: float | None, db: str) -> None:
    """Continue RUN after a crash, a kill or an escalation, doing nothing twice.

    Progress is on stderr as for `ledgerflow run`; Ctrl-C stops it again (exit 130).
    """
    wf = load_workflow(workflow) if workflow else None

    async def go(progress: RunProgress) -> Any:
        async with open_existing(db) as store:
            rid = await resolve_run_id(store, run_id)
            async with naming_bad_events(store, rid):
                # Loaded first, to name the run and count from where it stands.
                progress.resuming(await _loaded_unless_broken(store, rid))
                return await Orchestrator(store, lease_wait_s=wait or 0.0,
                                          observers=[progress]).resume(rid, wf)

    with run_progress(None) as progress:
        run = drive_or_hint(progress, go(progress), db)
    click.echo(status_line(run.run_id, run.status, run.reason))
    for hint in waiting_hints(run.run_id, run.escalations, db):
        click.echo(hint)
    if run.status == "failed":
        sys.exit(EXIT_REFUSED)


async def _loaded_unless_broken(store: EventStore, run_id: str) -> RunState:
    """The run's state; a log that does not fold because its chain is broken says that."""
    try:
        return await load_run_state(store, run_id)
    except Exception:
        # Only when the fold fails: the common path checks the chain once, in resume.
        broken = await stored_chain_problem(store, run_id)
        if broken is not None:
            raise ChainBrokenError(run_id, broken.seq, broken.message) from None
        raise


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--at", "at_seq", type=click.IntRange(min=1), required=True,
              help="Copy events 1..SEQ of RUN.")
@click.option("--workflow", default=None, callback=workflow_ref,
              help="MODULE:WORKFLOW to continue with (default: the one the run recorded).")
@click.option("--no-continue", "stop", is_flag=True, help="Only make the copy; do not run it.")
@click.option("--repeat-side-effects", "repeat", is_flag=True,
              help="Perform again a side effect the origin performed when the fork gives it a "
                   "different input (default: such a task escalates; one with the same input "
                   "always reuses the origin's outcome). Recorded in the fork's log.")
@db_option
@friendly
def fork(*, run_id: str, at_seq: int, workflow: str | None, stop: bool, repeat: bool,
         db: str) -> None:
    """A new run from a prefix of RUN's log, continued under the current code.

    The fork never repeats by accident a side effect its origin performed:
    see --repeat-side-effects.
    """

    async def go() -> tuple[str, str, Any]:
        async with open_existing(db) as store:
            rid = await resolve_run_id(store, run_id)
            envs = await store.read_all(rid)
            if not envs:
                raise RunNotFoundError(rid)
            state = rebuild(rid, envs)
            wf = load_workflow(workflow) if workflow else \
                load_workflow(state.workflow_ref, state.workflow)
            new_id = await fork_run(store, rid, at_seq=at_seq, workflow=wf,
                                    repeat_side_effects=repeat)
            if stop:
                return rid, new_id, None
            return rid, new_id, await Orchestrator(store).resume(new_id, wf)

    rid, new_id, run = run_async(go())
    click.echo(f"forked run {new_id} from {rid} at seq {at_seq}")
    if run is not None:
        click.echo(status_line(new_id, run.status, run.reason))
        for hint in waiting_hints(new_id, run.escalations, db):
            click.echo(hint)
    click.echo(f"compare: {with_db(f'ledgerflow diff {rid} {new_id}', db)}")
    if run is not None and run.status == "failed":
        sys.exit(EXIT_REFUSED)


@click.command()
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@db_option
@friendly
def diff(*, run_a: str, run_b: str, db: str) -> None:
    """Where two runs' decisions part, and what differs per task.

    Exits 0 when the runs make the same decisions and end with the same
    tasks, 1 when they differ (as diff(1) does).
    """

    async def go() -> Any:
        async with open_for_reading(db) as store:
            ids = [await resolve_run_id(store, r) for r in (run_a, run_b)]
            logs = [await store.read_all(rid) for rid in ids]
            for rid, envs in zip(ids, logs, strict=True):
                if not envs:
                    raise RunNotFoundError(rid)
            return diff_runs(ids[0], logs[0], ids[1], logs[1])

    d = run_async(go())
    a, b = d.run_a, d.run_b
    if d.parted_at is None:
        click.echo(f"{a} and {b} make the same decisions.")
    else:
        click.echo(f"decisions part at {_where(d.parted_at[0], a)} / "
                   f"{_where(d.parted_at[1], b)}:")
        for label, event in ((a, d.first_a), (b, d.first_b)):
            if event is None:
                click.echo(f"  {label}: (log ends)")
            else:
                move = f" {event.src} -> {event.dst}" if event.dst else ""
                click.echo(f"  {label}: {event.type} {event.machine}{move} — {event.reason}")
    click.echo(f"status: {d.status[0]} vs {d.status[1]}")
    for t in d.task_differences:
        click.echo(f"  task {t.task_id} {t.field}: {render.summarize(t.a)} vs "
                   f"{render.summarize(t.b)}")
    if not d.same:
        sys.exit(EXIT_REFUSED)

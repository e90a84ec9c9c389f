"""``fork``: a new run whose log starts as a copy of another's first events.

The what-if tool: after a prompt or policy fix, fork last night's run just
before the decision that went wrong and let the current code continue. The
original run is never touched.

The copy keeps the recorded events byte for byte (each re-chained under the
new run id) and then records :class:`ForkedFrom`. If the fork point falls
inside a decision batch (between a fact and the last decision taken from it),
the current code completes that batch first, provided it agrees with the
decisions already copied; otherwise the fork is refused and the seq where
the batch starts is suggested.

Example::

    new_id = await fork_run(store, run_id, at_seq=27, workflow=wf)
    await Orchestrator(store).resume(new_id, wf)
"""

from __future__ import annotations

from datetime import UTC, datetime

from ledgerflow.eventstore import EventStore, NewEvent
from ledgerflow.machines import (
    Event,
    RunNotFoundError,
    RunState,
    Workflow,
    advance,
    encode_event,
    evolve,
)
from ledgerflow.machines.events import ForkedFrom
from ledgerflow.machines.orchestrator import new_run_id as fresh_run_id
from ledgerflow.replay.batches import comparable, split_batches
from ledgerflow.replay.errors import ForkError
from ledgerflow.replay.timeline import decode_log

__all__ = ["fork_run"]

async def fork_run(
    store: EventStore,
    run_id: str,
    *,
    at_seq: int,
    workflow: Workflow | None = None,
    new_run_id: str | None = None,
    repeat_side_effects: bool = False,
) -> str:
    """Copy events 1..``at_seq`` of ``run_id`` into a new run; return its id.

    The fork shares the origin's idempotency keys, and never repeats a side
    effect the origin already performed: a side-effecting agent dispatched
    with the same input gets the origin's recorded outcome instead of being
    called; with another input it escalates, unless
    ``repeat_side_effects=True`` (recorded in the fork's ``ForkedFrom``).
    Nor does any other member of the family (the origin, sibling forks)
    repeat a non-idempotent side effect one of them performed: the origin's
    key base is registered as a fork family, and each member claims such a
    side effect before acting (:mod:`ledgerflow.machines.effect_claims`).
    """
    envelopes = await store.read_all(run_id)
    if not envelopes:
        raise RunNotFoundError(run_id)
    last = envelopes[-1].seq
    if not 1 <= at_seq <= last:
        raise ForkError(
            f"Cannot fork run '{run_id}' at seq {at_seq}: its log has seqs 1..{last}; "
            "pick one of those."
        )
    decoded = decode_log(run_id, envelopes)
    seqs = [env.seq for env, _ in decoded]
    events = [event for _, event in decoded]
    # One rule for every new run's id (generated, or checked: it names files and URLs).
    new_id = fresh_run_id(new_run_id or None)
    completion: list[Event] = []
    batch = next(
        (b for b in split_batches(seqs, events) if b.seqs[0] <= at_seq <= b.seqs[-1]), None)
    if batch is not None and batch.seqs[-1] != at_seq:
        if workflow is None:
            raise ForkError(
                f"Seq {at_seq} of run '{run_id}' falls inside the decisions taken from the fact "
                f"at seq {batch.seqs[0]}; pass the workflow so the current code can complete "
                f"them, or fork at seq {batch.seqs[0] - 1} or {batch.seqs[-1]}."
            )
        state = RunState(run_id=new_id)
        for event in events[: seqs.index(batch.seqs[0])]:
            evolve(state, event)
        decided = advance(state, batch.fact, workflow)
        copied = [e for s, e in zip(batch.seqs, batch.events, strict=True) if s <= at_seq]
        if [comparable(e) for e in decided[: len(copied)]] != [comparable(e) for e in copied]:
            raise ForkError(
                f"The current code decides differently within the batch that seq {at_seq} of "
                f"run '{run_id}' belongs to; fork at seq {batch.seqs[0] - 1} instead, before "
                "its fact, to let the current code decide it all."
            )
        completion = decided[len(copied):]
    if await store.last_seq(new_id):
        raise ForkError(f"A run '{new_id}' already exists; choose another id for the fork.")
    copy = [NewEvent(type=env.type, data=env.data) for env in envelopes if env.seq <= at_seq]
    marker = ForkedFrom(
        origin_run_id=run_id, at_seq=at_seq, started_at=datetime.now(UTC).isoformat(),
        reason=f"Forked from run '{run_id}' at seq {at_seq}; the current code continues"
        + (", repeating side effects whose input changed." if repeat_side_effects else
           "; side effects the origin performed are not repeated."),
        repeat_side_effects=repeat_side_effects,
    )
    tail = [marker, *completion]
    copy += [NewEvent(type=e.type, data=encode_event(e)) for e in tail]
    # Fold the copy to know the status the runs projection should show.
    state = RunState(run_id=new_id)
    for _, event in decoded:
        if state.seq >= at_seq:
            break
        evolve(state, event)
    for event in tail:
        evolve(state, event)
    # Before the fork exists: a member that reads "no family" after this knows
    # every side effect of the origin's it could repeat (effect_claims).
    await store.register_fork_family(state.key_base or run_id)
    await store.append(new_id, copy, expected_seq=0, status=state.status.value,
                       label=state.workflow)
    return new_id

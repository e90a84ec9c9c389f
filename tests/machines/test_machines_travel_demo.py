"""The demo workflow (ledgerflow.examples.travel) end to end, and its log folded back into state."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
from machines_helpers import assert_fold_matches, of, read_log

from ledgerflow import machines
from ledgerflow.eventstore import EventStore, check_chain
from ledgerflow.examples import travel
from ledgerflow.machines import events as ev


@pytest.fixture(autouse=True)
def fresh_booking_system() -> Iterator[None]:
    travel.BOOKINGS.clear()
    travel.BOOKING_CALLS.clear()
    yield
    travel.BOOKINGS.clear()
    travel.BOOKING_CALLS.clear()


async def _demo(orch: machines.Orchestrator) -> machines.RunResult:
    return await orch.start(travel.wf, travel.TripGoal(destination="Lisbon", passengers=2))


async def test_travel_demo_acts_out_every_story_and_completes(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    run = await _demo(orch)
    envelopes = await store.read_all(run.run_id)
    assert check_chain(run.run_id, envelopes) is None
    log = [machines.decode_event(env.data) for env in envelopes]
    assert [env.type for env in envelopes] == [e.type for e in log]

    assert run.status == "completed"
    assert isinstance(log[-1], ev.RunCompleted)
    # One stall: flight search times out once and is retried.
    [timed_out] = [f for f in of(log, ev.AgentFailed) if f.timed_out]
    assert len(of(log, ev.AgentFailed)) == 1
    assert (timed_out.task_id, timed_out.attempt) == ("flights", 1)
    assert [r.attempt for r in of(log, ev.RetryScheduled, "flights")] == [1]
    # One hallucination: hotel search's prose price is rejected, retried, never passed on.
    invalid = [r for r in of(log, ev.OutputRejected) if not r.low_confidence]
    assert [(r.task_id, r.attempt) for r in invalid] == [("hotels", 1)]
    assert [r.attempt for r in of(log, ev.RetryScheduled, "hotels")] == [1]
    price_input = of(log, ev.TaskDispatched, "price")[0].input
    assert price_input["nightly_rate"] == 118.0
    assert len(of(log, ev.RetryScheduled)) == 2
    # One low-confidence price, escalated and settled by the reviewer.
    [escalated] = of(log, ev.TaskEscalated)
    assert (escalated.task_id, escalated.kind) == ("price", "low_confidence")
    [resolved] = of(log, ev.EscalationResolved)
    assert (resolved.task_id, resolved.action, resolved.by) == (
        "price", "output", "handler:reviewer")
    # Booking happened exactly once, under the task's idempotency key.
    [booked] = of(log, ev.TaskDispatched, "book")
    assert [booked.idempotency_key] == travel.BOOKING_CALLS
    assert booked.idempotency_key == machines.idempotency_key(run.run_id, "book")
    assert set(run.outputs) == {"flights", "hotels", "price", "book"}
    booking = run.outputs["book"]
    assert isinstance(booking, travel.BookingOutput)
    assert booking.reference == "TRV-0001"
    assert run.state.workflow_ref == "ledgerflow.examples.travel:wf"


async def test_travel_demo_state_rebuilt_from_log_equals_live_state(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    run = await _demo(orch)
    await assert_fold_matches(store, run.run_id, run.state)
    assert (await orch.state(run.run_id)).to_dict() == run.state.to_dict()
    # A prefix: the state right after the price was escalated.
    log = await read_log(store, run.run_id)
    at = next(i for i, e in enumerate(log, 1) if isinstance(e, ev.TaskEscalated))
    mid = await orch.state(run.run_id, at=at)
    assert mid.seq == at
    assert mid.status is machines.RunStatus.RUNNING
    assert mid.task("price").status is machines.TaskStatus.ESCALATED
    assert mid.task("book").status is machines.TaskStatus.PENDING
    assert list(mid.escalations) == ["price"]


async def test_travel_demo_decisions_are_reproduced_by_decide(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    """Deciding each recorded fact again, on the state before it, gives the logged events."""
    run = await _demo(orch)
    log = await read_log(store, run.run_id)
    state = machines.RunState(run_id=run.run_id)
    i = 0
    facts = 0
    while i < len(log):
        fact = log[i]
        assert fact.FACT, f"seq {i + 1} ({fact.type}) is not explained by an earlier fact"
        before = copy.deepcopy(state.to_dict())
        decided = machines.decide(state, fact, travel.wf)
        assert state.to_dict() == before
        assert decided == log[i:i + len(decided)]
        assert decided == machines.advance(copy.deepcopy(state), fact, travel.wf)
        machines.fold(state, decided)
        i += len(decided)
        facts += 1
    assert facts >= 8
    assert state.to_dict() == run.state.to_dict()

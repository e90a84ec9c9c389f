"""A fork never repeats a side effect its origin already performed.

Before: ``fork --at 1`` of a run whose non-idempotent booking had happened
booked again in the fork (same idempotency key, a second line in the sink),
and a fork between a dispatch and its outcome escalated a spurious "outcome
unknown after crash". The sink here counts side effects by idempotency key,
and the origin is forked at every seq. Real SQLite files throughout.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import EventStore, open_store
from ledgerflow.machines import AgentContext, Orchestrator, Workflow, decode_event
from ledgerflow.machines import events as ev
from ledgerflow.machines.origin import index_origin, reuse_for
from ledgerflow.replay.errors import ForkError
from ledgerflow.replay.fork import fork_run
from ledgerflow.replay.verify import verify_run


class Goal(BaseModel):
    city: str = "Lisbon"


class SearchIn(BaseModel):
    city: str


class SearchOut(BaseModel):
    price: float = Field(gt=0)


class BookIn(BaseModel):
    city: str
    price: float


class BookOut(BaseModel):
    ref: str


class Sink:
    """Where bookings land: one entry per side effect actually performed."""

    def __init__(self) -> None:
        self.by_key: Counter[str] = Counter()
        self.price = 100.0


def travel(sink: Sink) -> Workflow:
    wf = Workflow("fork-travel", goal=Goal)

    @wf.planner
    async def planner(goal: Goal, ctx: AgentContext) -> Plan:
        return Plan(tasks=[
            Task(id="search", agent="search", inputs={"city": "$goal.city"}),
            Task(id="book", agent="book", needs=["search"],
                 inputs={"city": "$goal.city", "price": "$search.price"}),
        ])

    @wf.agent(input=SearchIn, output=SearchOut, name="search")
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        return SearchOut(price=sink.price)

    @wf.agent(input=BookIn, output=BookOut, name="book", side_effect=True)
    async def book(inp: BookIn, ctx: AgentContext) -> BookOut:
        sink.by_key[ctx.idempotency_key] += 1
        return BookOut(ref=f"B-{inp.price:g}")

    return wf


async def _log(store: EventStore, run_id: str) -> list[ev.Event]:
    return [decode_event(env.data) for env in await store.read_all(run_id)]


async def _origin(store: EventStore, sink: Sink) -> tuple[str, Workflow]:
    wf = travel(sink)
    run = await Orchestrator(store).start(wf, Goal(), run_id="origin")
    assert run.status == "completed"
    assert list(sink.by_key.values()) == [1]
    return run.run_id, wf


async def test_fork_at_1_does_not_book_twice(tmp_path: Path) -> None:
    sink = Sink()
    async with open_store(tmp_path / "runs.db") as store:
        origin, wf = await _origin(store, sink)
        fork = await fork_run(store, origin, at_seq=1, workflow=wf)
        run = await Orchestrator(store).resume(fork, wf)

        assert run.status == "completed"
        assert list(sink.by_key.values()) == [1]
        assert run.outputs["book"] == BookOut(ref="B-100")
        received = [e for e in await _log(store, fork)
                    if isinstance(e, ev.OutputReceived) and e.task_id == "book"]
        [reused] = received
        assert f"run '{origin}'" in reused.reason
        assert "seq" in reused.reason
        assert "not performed again" in reused.reason
        assert (await verify_run(store, fork, workflow=wf)).ok


async def test_fork_at_every_seq_never_repeats_the_side_effect(tmp_path: Path) -> None:
    sink = Sink()
    async with open_store(tmp_path / "runs.db") as store:
        origin, wf = await _origin(store, sink)
        last = await store.last_seq(origin)
        for at in range(1, last + 1):
            try:
                fork = await fork_run(store, origin, at_seq=at, workflow=wf)
            except ForkError as exc:  # pragma: no cover - the same code agrees with itself
                pytest.fail(f"fork at seq {at} refused: {exc}")
            run = await Orchestrator(store).resume(fork, wf)
            log = await _log(store, fork)

            assert run.status == "completed", (at, run.reason)
            assert list(sink.by_key.values()) == [1], f"fork at seq {at} booked again"
            unknown = [e for e in log if isinstance(e, ev.TaskEscalated)]
            assert unknown == [], f"fork at seq {at} escalated: {unknown}"
            assert (await verify_run(store, fork, workflow=wf)).ok, at


async def test_fork_between_dispatch_and_outcome_is_not_outcome_unknown(tmp_path: Path) -> None:
    sink = Sink()
    async with open_store(tmp_path / "runs.db") as store:
        origin, wf = await _origin(store, sink)
        seq_of = {e.type + getattr(e, "task_id", ""): seq
                  for seq, e in enumerate(await _log(store, origin), start=1)}
        at = seq_of["TaskDispatchedbook"]  # the dispatch is copied, its outcome is not
        fork = await fork_run(store, origin, at_seq=at, workflow=wf)
        run = await Orchestrator(store).resume(fork, wf)

        assert run.status == "completed"
        assert list(sink.by_key.values()) == [1]
        log = await _log(store, fork)
        assert not [e for e in log if isinstance(e, ev.TaskEscalated)]
        [resumed] = [e for e in log if isinstance(e, ev.RunResumed)]
        assert resumed.interrupted == []


async def test_fork_with_a_different_input_escalates_instead_of_booking_again(
    tmp_path: Path,
) -> None:
    sink = Sink()
    async with open_store(tmp_path / "runs.db") as store:
        origin, wf = await _origin(store, sink)
        sink.price = 120.0  # the fork's search answers otherwise: the booking input changes
        fork = await fork_run(store, origin, at_seq=1, workflow=wf)
        run = await Orchestrator(store).resume(fork, wf)

        assert run.status == "waiting"
        assert list(sink.by_key.values()) == [1]
        log = await _log(store, fork)
        [failed] = [e for e in log if isinstance(e, ev.AgentFailed)]
        assert failed.error_type == "ledgerflow.SideEffectInputChanged"
        assert "repeat_side_effects=True" in failed.message
        [escalated] = [e for e in log if isinstance(e, ev.TaskEscalated)]
        assert escalated.task_id == "book"


async def test_fork_with_repeat_side_effects_books_again_on_purpose(tmp_path: Path) -> None:
    if "repeat_side_effects" not in ev.ForkedFrom.__struct_fields__:
        pytest.skip("ForkedFrom cannot record repeat_side_effects yet (machines/events.py)")
    sink = Sink()
    async with open_store(tmp_path / "runs.db") as store:
        origin, wf = await _origin(store, sink)
        sink.price = 120.0
        fork = await fork_run(store, origin, at_seq=1, workflow=wf, repeat_side_effects=True)
        run = await Orchestrator(store).resume(fork, wf)

        assert run.status == "completed"
        assert list(sink.by_key.values()) == [2]
        assert run.outputs["book"] == BookOut(ref="B-120")


async def test_fork_of_a_side_effect_free_task_calls_the_agent_again(tmp_path: Path) -> None:
    """What-if forks exist to re-ask agents: only side effects are reused."""
    sink = Sink()
    calls: list[Any] = []
    async with open_store(tmp_path / "runs.db") as store:
        origin, wf = await _origin(store, sink)
        original = wf.agents["search"].fn

        async def counted(inp: SearchIn, ctx: AgentContext) -> Any:
            calls.append(ctx.run_id)
            return await original(inp, ctx)

        object.__setattr__(wf.agents["search"], "fn", counted)
        fork = await fork_run(store, origin, at_seq=1, workflow=wf)
        await Orchestrator(store).resume(fork, wf)

        assert calls == [fork]


async def test_repeat_side_effects_lets_a_changed_input_through_the_reuse_rule(
    tmp_path: Path,
) -> None:
    """The pure rule the fork's driver applies, with and without the flag."""
    sink = Sink()
    async with open_store(tmp_path / "runs.db") as store:
        origin, _ = await _origin(store, sink)
        log = list(enumerate(await _log(store, origin), start=1))
    index = index_origin(origin, log, after_seq=1)
    [booked] = [e for _, e in log if isinstance(e, ev.TaskDispatched) and e.task_id == "book"]
    changed = ev.TaskDispatched(task_id="book", attempt=1, input={"city": "Lisbon", "price": 1.0},
                                idempotency_key=booked.idempotency_key, timeout_s=60.0)

    assert reuse_for(index, changed, repeat=True, idempotent=False) is None
    refused = reuse_for(index, changed, repeat=False, idempotent=False)
    assert isinstance(refused, ev.AgentFailed)
    reused = reuse_for(index, booked, repeat=False, idempotent=False)
    assert isinstance(reused, ev.OutputReceived)
    assert reused.output == {"ref": "B-100"}


async def test_fork_of_an_unresumed_fork_does_not_book_twice(tmp_path: Path) -> None:
    """The middle fork never ran: only the origin two steps up booked."""
    sink = Sink()
    async with open_store(tmp_path / "runs.db") as store:
        origin, wf = await _origin(store, sink)
        middle = await fork_run(store, origin, at_seq=1, workflow=wf, new_run_id="middle")
        fork = await fork_run(store, middle, at_seq=await store.last_seq(middle), workflow=wf)
        run = await Orchestrator(store).resume(fork, wf)

        assert run.status == "completed", run.reason
        assert list(sink.by_key.values()) == [1], "the fork of a fork booked again"
        [reused] = [e for e in await _log(store, fork)
                    if isinstance(e, ev.OutputReceived) and e.task_id == "book"]
        assert f"run '{origin}'" in reused.reason
        assert (await verify_run(store, fork, workflow=wf)).ok


async def test_fork_of_a_fork_between_dispatch_and_outcome_is_not_outcome_unknown(
    tmp_path: Path,
) -> None:
    """The middle fork copied a dispatch with no outcome; the origin has the outcome."""
    sink = Sink()
    async with open_store(tmp_path / "runs.db") as store:
        origin, wf = await _origin(store, sink)
        seq_of = {e.type + getattr(e, "task_id", ""): seq
                  for seq, e in enumerate(await _log(store, origin), start=1)}
        middle = await fork_run(store, origin, at_seq=seq_of["TaskDispatchedbook"], workflow=wf)
        fork = await fork_run(store, middle, at_seq=await store.last_seq(middle), workflow=wf)
        run = await Orchestrator(store).resume(fork, wf)

        assert run.status == "completed", run.reason
        assert list(sink.by_key.values()) == [1]
        log = await _log(store, fork)
        assert not [e for e in log if isinstance(e, ev.TaskEscalated)]
        assert (await verify_run(store, fork, workflow=wf)).ok


async def test_fork_of_a_fork_taken_before_the_middle_forks_point_sees_the_origin(
    tmp_path: Path,
) -> None:
    """F2 forks F1 at 1 although F1 was forked at a later seq: the origin's cut is 1."""
    sink = Sink()
    async with open_store(tmp_path / "runs.db") as store:
        origin, wf = await _origin(store, sink)
        last = await store.last_seq(origin)
        middle = await fork_run(store, origin, at_seq=last - 1, workflow=wf)
        fork = await fork_run(store, middle, at_seq=1, workflow=wf)
        run = await Orchestrator(store).resume(fork, wf)

        assert run.status == "completed", run.reason
        assert list(sink.by_key.values()) == [1]
        assert (await verify_run(store, fork, workflow=wf)).ok

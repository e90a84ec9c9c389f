"""Edge cases found in review, each a story: a handler paged twice, a cancel that
broke its own run, an input too big to log, a NaN the log could not hold, a
resolve after a crash, a lease renewal that failed, a fork whose deadline had
already passed, a handler that answered nonsense."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest
from machines_helpers import FAST, Goal, SearchIn, SearchOut, of, read_log, workflow
from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import EventStore, open_store
from ledgerflow.machines import (
    AgentContext,
    Budget,
    EscalationRequest,
    Orchestrator,
    PermanentError,
    Resolution,
    RunBusyError,
    Workflow,
    load_run_state,
)
from ledgerflow.machines import events as ev
from ledgerflow.replay.fork import fork_run
from ledgerflow.replay.verify import verify_run

SEARCH = Task(id="search", agent="search", inputs={"city": "$goal.city"})


async def stall(ctx: AgentContext) -> SearchOut:
    """An agent that never answers: its run stays live until cancelled."""
    await asyncio.sleep(3600)
    raise AssertionError


async def logged_at_least(store: EventStore, run_id: str, seq: int) -> None:
    """Poll (bounded) until the run's log reaches ``seq``."""
    for _ in range(1000):
        if await store.last_seq(run_id) >= seq:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"run {run_id} never reached seq {seq}")


def search_workflow(behaviour: Any, **kwargs: Any) -> Workflow:
    wf = workflow([SEARCH], **kwargs)

    @wf.agent(input=SearchIn, output=SearchOut, name="search", retry=FAST)
    async def search(inp: SearchIn, ctx: AgentContext) -> Any:
        return await behaviour(ctx)

    return wf


async def test_handler_is_asked_once_and_only_after_the_escalation_is_durable(
    store: EventStore,
) -> None:
    """Resuming a crashed side effect escalates it; the handler must not be paged twice."""
    calls: list[tuple[str, bool]] = []
    wf = workflow([SEARCH])

    @wf.agent(input=SearchIn, output=SearchOut, name="search", side_effect=True)
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        await asyncio.sleep(3600)  # the process "dies" while this is with the agent
        raise AssertionError

    @wf.on_escalation
    async def pager(request: EscalationRequest) -> Resolution | None:
        log = await read_log(store, request.run_id)
        durable = any(isinstance(e, ev.TaskEscalated) and e.task_id == request.task_id
                      for e in log)
        calls.append((request.task_id, durable))
        return None

    first = Orchestrator(store, lease_ttl_s=0.2)
    crashed = asyncio.create_task(first.start(wf, Goal(), run_id="r1"))
    await logged_at_least(store, "r1", 5)
    crashed.cancel()  # the driver is gone; the log shows the attempt without outcome
    with pytest.raises(asyncio.CancelledError):
        await crashed
    run = await Orchestrator(store, lease_wait_s=2).resume("r1", wf)
    assert run.escalations == ["search"]
    assert calls == [("search", True)]


async def test_cancel_stops_a_live_run_of_the_same_orchestrator(store: EventStore) -> None:
    orch = Orchestrator(store)
    started = asyncio.create_task(orch.start(search_workflow(stall), Goal(), run_id="r1"))
    await logged_at_least(store, "r1", 5)
    cancelled = await orch.cancel("r1", by="operator")
    assert cancelled.status == "cancelled"
    result = await asyncio.wait_for(started, 5)
    assert result.status == "cancelled"
    assert (await verify_run(store, "r1")).ok


async def test_a_second_drive_of_a_live_run_is_refused(store: EventStore) -> None:
    wf = search_workflow(stall)
    orch = Orchestrator(store)
    started = asyncio.create_task(orch.start(wf, Goal(), run_id="r1"))
    await logged_at_least(store, "r1", 5)
    with pytest.raises(RunBusyError):
        await orch.resume("r1", wf)
    await orch.cancel("r1")
    await started


class Blob(BaseModel):
    blob: str


class Pair(BaseModel):
    left: str
    right: str


async def test_input_too_big_to_log_is_escalated_not_a_crash(tmp_path: Path) -> None:
    """Two outputs under the limit can make an input over it."""
    wf = Workflow("big", goal=Goal)

    @wf.agent(input=SearchIn, output=Blob)
    async def produce(inp: SearchIn, ctx: AgentContext) -> Blob:
        return Blob(blob="x" * 40_000)

    @wf.agent(input=Pair, output=Blob)
    async def combine(inp: Pair, ctx: AgentContext) -> Blob:
        return Blob(blob="done")

    @wf.planner
    async def plan(goal: Goal, ctx: AgentContext) -> Any:
        return Plan(tasks=[
            Task(id="a", agent="produce", inputs={"city": "$goal.city"}),
            Task(id="b", agent="produce", inputs={"city": "$goal.city"}),
            Task(id="c", agent="combine", needs=["a", "b"],
                 inputs={"left": "$a.blob", "right": "$b.blob"}),
        ])

    async with open_store(tmp_path / "small.db", max_event_bytes=64_000) as store:
        run = await Orchestrator(store).start(wf, Goal())
        assert run.status == "waiting"
        assert run.state.escalations["c"].kind == "input_too_large"
        assert (await verify_run(store, run.run_id, workflow=wf)).ok


async def test_nan_output_is_a_recorded_rejection_not_a_silent_null(store: EventStore) -> None:
    """msgspec would log NaN as null: the attempt is refused as what it is, then retried."""
    async def nan_once(ctx: AgentContext) -> dict[str, Any]:
        return {"price": math.nan if ctx.attempt == 1 else 120.0}

    wf = search_workflow(nan_once)
    run = await Orchestrator(store).start(wf, Goal())
    assert run.status == "completed"
    log = await read_log(store, run.run_id)
    [failed] = of(log, ev.AgentFailed)
    assert failed.error_type == "ledgerflow.UnloggableOutput"
    assert "NaN at $.price" in failed.message
    assert not of(log, ev.OutputRejected)
    report = await verify_run(store, run.run_id, workflow=wf)
    assert report.ok, report.lines()


async def test_resolve_after_a_crash_settles_the_lost_attempts_too(store: EventStore) -> None:
    wf = workflow([Task(id="a", agent="fails", inputs={"city": "$goal.city"}), SEARCH])

    @wf.agent(input=SearchIn, output=SearchOut, name="fails")
    async def fails(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        raise PermanentError("no such city")

    gate = asyncio.Event()

    @wf.agent(input=SearchIn, output=SearchOut, name="search")
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        if not gate.is_set():
            await asyncio.sleep(3600)
        return SearchOut(price=100.0)

    crashed = asyncio.create_task(
        Orchestrator(store, lease_ttl_s=0.2).start(wf, Goal(), run_id="r1"))
    for _ in range(1000):
        if await store.last_seq("r1") and (await load_run_state(store, "r1")).escalations:
            break
        await asyncio.sleep(0.01)
    crashed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await crashed
    gate.set()
    run = await Orchestrator(store, lease_wait_s=2).resolve(
        "r1", "a", abandon=True, by="ops", workflow=wf)
    assert run.status == "failed"  # a abandoned, search re-dispatched and succeeded
    assert run.state.tasks["search"].status == "succeeded"


class FlakyLeaseStore:
    """Delegates to a real store; the first lease renewal raises (a busy database)."""

    def __init__(self, inner: EventStore) -> None:
        self.inner = inner
        self.leases = 0

    async def take_lease(self, run_id: str, owner: str, ttl_s: float) -> int | None:
        self.leases += 1
        if self.leases == 2:
            raise OSError("database is locked")
        return await self.inner.take_lease(run_id, owner, ttl_s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_failed_lease_renewal_does_not_break_the_run(store: EventStore) -> None:
    async def slow(ctx: AgentContext) -> SearchOut:
        await asyncio.sleep(0.3)
        return SearchOut(price=1.0)

    flaky = FlakyLeaseStore(store)
    orch = Orchestrator(flaky, lease_ttl_s=0.15)
    run = await orch.start(search_workflow(slow), Goal())
    assert run.status == "completed"
    assert flaky.leases > 2


async def test_a_fork_counts_its_deadline_from_the_fork(store: EventStore) -> None:
    async def quick(ctx: AgentContext) -> SearchOut:
        return SearchOut(price=1.0)

    wf = search_workflow(quick, budget=Budget(deadline_s=0.5))
    run = await Orchestrator(store).start(wf, Goal())
    await asyncio.sleep(0.6)  # the origin's deadline has passed by now
    fork_id = await fork_run(store, run.run_id, at_seq=4, workflow=wf)
    forked = await Orchestrator(store).resume(fork_id, wf)
    assert forked.status == "completed"
    assert not any(isinstance(e, ev.BudgetExhausted) for e in await read_log(store, fork_id))


async def test_handler_answering_nonsense_leaves_the_escalation_open(store: EventStore) -> None:
    async def unsure(ctx: AgentContext) -> SearchOut:
        raise PermanentError("cannot price this")

    wf = search_workflow(unsure)

    @wf.on_escalation
    async def confused(request: EscalationRequest) -> Any:
        return {"approve": True}  # not a Resolution

    run = await Orchestrator(store).start(wf, Goal())
    assert run.status == "waiting"
    assert run.escalations == ["search"]


async def test_cancel_twice_is_recorded_once(store: EventStore) -> None:
    orch = Orchestrator(store)
    started = asyncio.create_task(orch.start(search_workflow(stall), Goal(), run_id="r1"))
    await logged_at_least(store, "r1", 5)
    first, second = await asyncio.gather(orch.cancel("r1"), orch.cancel("r1"))
    assert (first.status, second.status) == ("cancelled", "cancelled")
    assert (await asyncio.wait_for(started, 5)).status == "cancelled"
    log = await read_log(store, "r1")
    assert sum(isinstance(e, ev.RunCancelled) for e in log) == 1
    assert (await verify_run(store, "r1")).ok


async def test_cancel_after_the_run_finished_changes_nothing(store: EventStore) -> None:
    async def quick(ctx: AgentContext) -> SearchOut:
        return SearchOut(price=1.0)

    orch = Orchestrator(store)
    run = await orch.start(search_workflow(quick), Goal())
    last = await store.last_seq(run.run_id)
    assert (await orch.cancel(run.run_id)).status == "completed"
    assert await store.last_seq(run.run_id) == last


async def test_two_resumes_at_once_in_one_orchestrator_drive_the_run_once(
    store: EventStore,
) -> None:
    calls: list[int] = []

    async def slow_then_fine(ctx: AgentContext) -> SearchOut:
        calls.append(ctx.attempt)
        if len(calls) == 1:
            await asyncio.sleep(3600)  # the process "dies" during the first call
        return SearchOut(price=2.0)

    wf = search_workflow(slow_then_fine)
    crashed = asyncio.create_task(
        Orchestrator(store, lease_ttl_s=0.2).start(wf, Goal(), run_id="r1"))
    await logged_at_least(store, "r1", 5)
    crashed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await crashed
    orch = Orchestrator(store, lease_wait_s=2)
    results = await asyncio.gather(orch.resume("r1", wf), orch.resume("r1", wf),
                                   return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["RunBusyError", "RunResult"]
    done = next(r for r in results if not isinstance(r, BaseException))
    assert done.status == "completed"
    assert orch._live == {}  # the registry is empty again
    assert len(calls) == 2  # the lost call, then exactly one re-dispatch


async def test_an_agent_raising_cancelled_error_itself_is_a_recorded_failure(
    store: EventStore,
) -> None:
    async def leaky(ctx: AgentContext) -> SearchOut:
        if ctx.attempt == 1:
            raise asyncio.CancelledError("a library leaked a cancellation")
        return SearchOut(price=3.0)

    run = await Orchestrator(store).start(search_workflow(leaky), Goal())
    failures = [e for e in await read_log(store, run.run_id) if isinstance(e, ev.AgentFailed)]
    assert [f.error_type for f in failures] == ["asyncio.exceptions.CancelledError"]
    # Not an Exception, so not transient by default: escalated, never silently lost.
    assert run.status == "waiting"
    assert run.state.escalations["search"].kind == "permanent_error"

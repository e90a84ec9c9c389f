"""Attempts offered to the pool: run by any worker, journaled through the run's one owner.

In-process stories on one SQLite file, each with two store connections (as
two workers have); the multi-process ones (three workers, PostgreSQL) are in
tests/pool/test_pool_spread.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from machines_helpers import FAST, Goal, SearchIn, SearchOut, workflow

from ledgerflow.contracts import Task
from ledgerflow.eventstore import open_store
from ledgerflow.machines import (
    AgentContext,
    Orchestrator,
    RunResult,
    RunState,
    Worker,
    Workflow,
    load_run_state,
)
from ledgerflow.machines.orchestrator import utcnow
from ledgerflow.machines.task_executor import TaskExecutor
from ledgerflow.replay import verify_run


def wide(n: int) -> list[Task]:
    return [Task(id=f"t{i:02d}", agent="search", inputs={"city": "$goal.city"})
            for i in range(n)]


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(2000):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}")


async def test_tasks_of_one_run_run_on_two_workers_and_the_log_stays_one_chain(
    tmp_path: Path,
) -> None:
    wf = workflow(wide(40), name="spread-wide", max_concurrency=16)

    @wf.agent(input=SearchIn, output=SearchOut, name="search")
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        await asyncio.sleep(0.02)
        return SearchOut(price=10.0)

    db = tmp_path / "runs.db"
    async with open_store(db) as one, open_store(db) as two:
        run_id = await Orchestrator(one).submit(wf, Goal())
        workers = [Worker(one, [wf], lease_ttl_s=5, poll_s=0.02, task_concurrency=4),
                   Worker(two, [wf], lease_ttl_s=5, poll_s=0.02, task_concurrency=4)]
        serving = [asyncio.create_task(w.run()) for w in workers]

        async def completed() -> bool:
            summary = await one.run(run_id)
            return summary is not None and summary.status == "completed"

        await until(completed, "the run to complete")
        for worker in workers:
            worker.stop()
        await asyncio.gather(*serving)
        stats = [w.stats for w in workers]
        assert sorted(s.claimed for s in stats) == [0, 1]  # one owner drove the run
        assert all(s.tasks > 0 for s in stats)  # both ran some of its attempts
        assert sum(s.tasks for s in stats) == 40
        assert (await verify_run(one, run_id, workflow=wf)).ok
        assert await one.task_exchange(run_id) == []


async def test_a_step_of_a_pool_attempt_is_in_the_log_before_the_agent_goes_on(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    seen_before_second: list[list[str]] = []
    wf = workflow(wide(1), name="spread-steps")

    @wf.agent(input=SearchIn, output=SearchOut, name="search")
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        first = await ctx.step("quote", lambda city: {"price": 12.5}, inp.city)

        async def look() -> str:
            async with open_store(db, read_only=True) as reader:
                seen_before_second.append([e.type async for e in reader.read(ctx.run_id)])
            return "ok"

        await ctx.step("look", look)
        return SearchOut(price=first["price"])

    async with open_store(db) as store:
        run_id = await Orchestrator(store).submit(wf, Goal())
        await Worker(store, [wf], poll_s=0.02).run(until_idle=True)
        state = await load_run_state(store, run_id)
    assert state.status.value == "completed"
    assert state.tasks["t00"].output == {"price": 12.5, "confidence": 1.0}
    # The first step was recorded, by the owner, before the second one was called.
    assert seen_before_second[0][-1] == "StepRecorded"


async def _abandoned_claim(store_path: Path, wf: Workflow, run_id: str,
                           reached: asyncio.Event) -> None:
    """A worker claims the run's one attempt, gets as far as ``reached``, then dies."""
    async with open_store(store_path) as store:
        doomed = TaskExecutor(store, {wf.name: wf}, owner="doomed:1", ttl_s=0.4, clock=utcnow)
        claim = None
        while claim is None:
            claim = await doomed.claim()
            await asyncio.sleep(0.01)
        assert claim.run_id == run_id
        assert claim.token == 1
        running = asyncio.create_task(doomed.execute(claim))
        await reached.wait()
        running.cancel()  # no outcome, no more renewals: as if SIGKILLed
        await asyncio.gather(running, return_exceptions=True)


async def _rescued(db: Path, wf: Workflow, reached: asyncio.Event
                   ) -> tuple[RunResult, RunState, Worker]:
    """A run whose one attempt's worker died mid-way; another worker takes the attempt up."""
    async with open_store(db) as store:
        run_id = await Orchestrator(store).submit(wf, Goal())
        owner = Orchestrator(store, spread_tasks=True)
        driving = asyncio.create_task(owner.resume(run_id, wf))
        await _abandoned_claim(db, wf, run_id, reached)
        # Another worker finds the lapsed claim and continues the same attempt.
        rescuer = Worker(store, [wf], lease_ttl_s=0.4, poll_s=0.02)
        rescuing = asyncio.create_task(rescuer.run())
        result = await driving
        rescuer.stop()
        await rescuing
        return result, await load_run_state(store, run_id), rescuer


async def test_an_attempt_whose_worker_died_is_continued_by_another_with_its_steps_served(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    quotes: list[str] = []
    reached = asyncio.Event()
    wf = workflow(wide(1), name="spread-orphan")

    @wf.agent(input=SearchIn, output=SearchOut, name="search", retry=FAST)
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        def quote(city: str) -> dict[str, float]:
            quotes.append(city)
            return {"price": 9.0}

        fare = await ctx.step("quote", quote, inp.city)
        if not reached.is_set():
            reached.set()
            await asyncio.sleep(3600)  # the first worker dies here
        return SearchOut(price=fare["price"])

    result, state, rescuer = await _rescued(db, wf, reached)
    assert result.status == "completed"
    assert quotes == ["Lisbon"]  # the journaled step was served, not called again
    assert state.tasks["t00"].attempt == 1  # the same attempt, continued
    assert rescuer.stats.tasks == 1
    async with open_store(db) as store:
        assert (await verify_run(store, state.run_id, workflow=wf)).ok


async def test_a_non_idempotent_side_effect_whose_worker_died_escalates_not_repeats(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    bookings: list[str] = []
    reached = asyncio.Event()
    wf = workflow(wide(1), name="spread-effect")

    @wf.agent(input=SearchIn, output=SearchOut, name="search", side_effect=True)
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        bookings.append(ctx.idempotency_key)
        reached.set()
        await asyncio.sleep(3600)  # dies before answering
        return SearchOut(price=1.0)

    result, state, _rescuer = await _rescued(db, wf, reached)
    assert result.status == "waiting"
    assert len(bookings) == 1  # never performed again
    escalation = state.escalations["t00"]
    assert escalation.kind == "outcome_unknown"
    assert "not idempotent" in escalation.reason


async def test_a_cancelled_run_withdraws_what_it_offered(tmp_path: Path) -> None:
    wf = workflow(wide(5), name="spread-cancel")

    @wf.agent(input=SearchIn, output=SearchOut, name="search")
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        return SearchOut(price=1.0)

    async with open_store(tmp_path / "runs.db") as store:
        run_id = await Orchestrator(store).submit(wf, Goal())
        owner = Orchestrator(store, spread_tasks=True)  # no worker runs its offers
        driving = asyncio.create_task(owner.resume(run_id, wf))

        async def offered() -> bool:
            return len(await store.task_exchange(run_id)) == 5

        await until(offered, "five offers")
        cancelled = await owner.cancel(run_id, by="test")
        await driving
        assert cancelled.status == "cancelled"
        assert await store.task_exchange(run_id) == []


async def test_attempts_beyond_an_agents_rate_wait_offered_not_failed(tmp_path: Path) -> None:
    wf = workflow(wide(5), name="spread-rate")

    @wf.agent(input=SearchIn, output=SearchOut, name="search", per_minute=3)
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        return SearchOut(price=1.0)

    async with open_store(tmp_path / "runs.db") as store:
        run_id = await Orchestrator(store).submit(wf, Goal())
        worker = Worker(store, [wf], poll_s=0.02)
        serving = asyncio.create_task(worker.run())

        async def three_done() -> bool:
            state = await load_run_state(store, run_id)
            return sum(t.status.value == "succeeded" for t in state.tasks.values()) == 3

        await until(three_done, "three attempts within the rate")
        await asyncio.sleep(0.3)  # room for a fourth, were the rate not held
        state = await load_run_state(store, run_id)
        waiting = await store.task_exchange(run_id)
        types = [e.type async for e in store.read(run_id)]
        worker.stop(now=True)
        await serving
    assert sum(t.status.value == "succeeded" for t in state.tasks.values()) == 3
    assert state.status.value == "running"  # waiting for the rate, not failed
    assert len(waiting) == 2
    assert all(row.claimed_by is None for row in waiting)
    assert "AgentFailed" not in types
    assert "TaskEscalated" not in types


async def test_the_fanout_example_spreads_over_two_workers_within_its_limit(
    tmp_path: Path,
) -> None:
    from ledgerflow.examples.fanout import Corpus  # noqa: PLC0415
    from ledgerflow.examples.fanout import wf as fanout  # noqa: PLC0415

    db = tmp_path / "runs.db"
    async with open_store(db) as one, open_store(db) as two:
        run_id = await Orchestrator(one).submit(fanout, Corpus(documents=30, nap_s=0.01))
        workers = [Worker(one, [fanout], poll_s=0.02, task_concurrency=4),
                   Worker(two, [fanout], poll_s=0.02, task_concurrency=4)]
        serving = [asyncio.create_task(w.run()) for w in workers]

        async def completed() -> bool:
            summary = await one.run(run_id)
            return summary is not None and summary.status == "completed"

        await until(completed, "the fan-out to complete")
        for worker in workers:
            worker.stop()
        await asyncio.gather(*serving)
        state = await load_run_state(one, run_id)
    scores = {t.id: t.output for t in state.tasks.values() if t.id.startswith("score_")}
    assert len(scores) == 30
    best = sorted(range(30), key=lambda i: -((i * 7919) % 101 / 100))[:5]
    assert state.tasks["rank"].output == {"best": best}
    assert all(w.stats.tasks_claimed > 0 for w in workers)  # every score was offered

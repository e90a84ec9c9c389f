"""Side effects start only while the lease is certainly held, and carry a fencing token that
grows with every takeover (issue 12, scenario 7)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from machines_helpers import FAST, Goal, SearchIn, SearchOut, workflow

from ledgerflow.contracts import Task
from ledgerflow.eventstore import EventStore, LeaseLostError, open_store
from ledgerflow.machines import AgentContext, Orchestrator, Worker
from ledgerflow.machines.lease_guard import (
    CLAIMS_PER_FENCE,
    HeldLease,
    fencing_token_of,
    lease_certainly_held,
    side_effect_margin_s,
)


def test_the_rules_read_as_they_are_named() -> None:
    assert lease_certainly_held(held_until=10.0, now=7.0, margin_s=2.0)
    assert not lease_certainly_held(held_until=10.0, now=8.5, margin_s=2.0)
    assert side_effect_margin_s(30.0) == 6.0
    assert side_effect_margin_s(1.0) == 0.5
    assert side_effect_margin_s(0.4) == 0.2  # never more than half the ttl
    assert fencing_token_of(run_fence=None) is None
    # A takeover of the run beats any number of re-claims under the fence before it.
    taken_over = fencing_token_of(run_fence=4)
    reclaimed = fencing_token_of(run_fence=3, claim_token=CLAIMS_PER_FENCE - 1)
    assert taken_over is not None
    assert reclaimed is not None
    assert taken_over > reclaimed


async def test_a_lease_near_its_end_is_renewed_before_a_side_effect(store: EventStore) -> None:
    fence = await store.take_lease("r1", "me", 30)
    assert fence is not None
    now = asyncio.get_running_loop().time()
    held = HeldLease(store, "r1", "me", 30.0, fence, held_until=now + 1.0)  # 1 s < 6 s margin
    await held.confirm_for_side_effect()
    assert held.held_until >= now + 30.0


async def test_a_lease_lost_meanwhile_refuses_the_side_effect(store: EventStore) -> None:
    fence = await store.take_lease("r1", "me", 0.2)
    assert fence is not None
    held = HeldLease(store, "r1", "me", 0.2, fence,
                     held_until=asyncio.get_running_loop().time() + 0.2)
    await asyncio.sleep(0.3)  # the lease lapses (a pause) and another process takes the run
    assert await store.take_lease("r1", "other", 30) is not None
    with pytest.raises(LeaseLostError):
        await held.confirm_for_side_effect()


async def test_a_side_effect_does_not_start_while_the_lease_cannot_be_confirmed(
    store: EventStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = [Task(id="slow", agent="slow", inputs={"city": "$goal.city"}),
            Task(id="book", agent="book", needs=["slow"], inputs={"city": "$goal.city"})]
    wf = workflow(plan, name="guarded")
    booked: list[str] = []
    real_take = store.take_lease

    async def store_unreachable(*args: Any, **kwargs: Any) -> int | None:
        raise OSError("the lease table is unreachable")

    @wf.agent(input=SearchIn, output=SearchOut, name="slow")
    async def slow(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        # From here on no renewal gets through: the lease runs out while this works.
        monkeypatch.setattr(store, "take_lease", store_unreachable)
        await asyncio.sleep(1.1)
        return SearchOut(price=1.0)

    @wf.agent(input=SearchIn, output=SearchOut, name="book", side_effect=True, retry=FAST)
    async def book(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        booked.append(ctx.idempotency_key)
        return SearchOut(price=1.0)

    with pytest.raises(OSError, match="unreachable"):
        await Orchestrator(store, lease_ttl_s=1.5).start(wf, Goal())
    monkeypatch.setattr(store, "take_lease", real_take)
    assert booked == []  # dispatched, durable, and never called with 0.4 s of lease left
    (summary,) = await store.runs()
    types = [e.type async for e in store.read(summary.run_id)]
    assert types.count("TaskDispatched") == 2  # the booking's dispatch was durable...
    assert "OutputReceived" in types  # ...after the slow task's output


async def test_the_fencing_token_grows_with_each_takeover(tmp_path: Path) -> None:
    wf = workflow([Task(id="book", agent="book", inputs={"city": "$goal.city"})],
                  name="fenced")
    tokens: list[int | None] = []
    first = asyncio.Event()

    @wf.agent(input=SearchIn, output=SearchOut, name="book", side_effect=True,
              idempotent=True)
    async def book(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        tokens.append(ctx.fencing_token)
        if not first.is_set():
            first.set()
            await asyncio.sleep(3600)  # this process "dies" here
        return SearchOut(price=1.0)

    db = tmp_path / "runs.db"
    async with open_store(db) as store:
        starting = asyncio.create_task(
            Orchestrator(store, lease_ttl_s=0.5, take_over_dead_owners=False).start(wf, Goal()))
        await first.wait()
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        (summary,) = await store.runs()
        # Resumed in this process (a new lease, a higher fence) ...
        await Orchestrator(store).resume(summary.run_id, wf)
        # ... and, in a second run, claimed from the pool by a worker.
        pooled = await Orchestrator(store).submit(wf, Goal())
        worker = Worker(store, [wf], poll_s=0.02, task_concurrency=1)
        worker.orch.local_capacity = 0  # every attempt through the pool
        await worker.run(until_idle=True)
        assert (await store.run(pooled)) is not None
    first_token, resumed_token, pooled_token = tokens[0], tokens[1], tokens[2]
    assert first_token is not None
    assert resumed_token is not None
    assert pooled_token is not None
    assert resumed_token > first_token  # the takeover's token beats the first owner's
    assert pooled_token % CLAIMS_PER_FENCE == 1  # claim token 1

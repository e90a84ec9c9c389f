"""Workers: queued runs are claimed, driven once, and left alone once they wait.

In-process stories on one SQLite file; the multi-process ones (SIGKILL,
SIGSTOP past the lease, PostgreSQL) live with the CLI's worker tests.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from machines_helpers import SEARCH, Goal, SearchIn, SearchOut, workflow

from ledgerflow.eventstore import EventStore, LeaseLostError, NewEvent, open_store
from ledgerflow.machines import (
    AgentContext,
    Orchestrator,
    Worker,
    Workflow,
    WorkflowDefinitionError,
)
from ledgerflow.machines import events as ev
from ledgerflow.replay import verify_run


def counting_workflow(calls: list[str], name: str = "pooled") -> Workflow:
    wf = workflow([SEARCH], name=name)

    @wf.agent(input=SearchIn, output=SearchOut, name="search")
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        calls.append(ctx.run_id)
        await asyncio.sleep(0.01)
        return SearchOut(price=10.0)

    return wf


async def test_two_workers_share_the_queue_and_drive_each_run_once(tmp_path: Path) -> None:
    calls: list[str] = []
    wf = counting_workflow(calls)
    db = tmp_path / "runs.db"
    async with open_store(db) as store:
        run_ids = [await Orchestrator(store).submit(wf, Goal(city=f"c{i}")) for i in range(20)]
    async with open_store(db) as one, open_store(db) as two:
        workers = [Worker(one, [wf], concurrency=4, lease_ttl_s=5, poll_s=0.05),
                   Worker(two, [wf], concurrency=4, lease_ttl_s=5, poll_s=0.05)]
        stats = await asyncio.gather(*(w.run(until_idle=True) for w in workers))
    assert sorted(calls) == sorted(run_ids)  # every run's agent ran once
    # Which worker got how many is up to the race for claims; none is driven twice.
    assert sum(s.finished for s in stats) == 20
    assert sum(s.claimed for s in stats) == 20
    async with open_store(db) as store:
        for run_id in run_ids:
            summary = await store.run(run_id)
            assert summary is not None
            assert summary.status == "completed"
            assert (await verify_run(store, run_id, workflow=wf)).ok


async def test_a_waiting_run_holds_no_worker(store: EventStore) -> None:
    wf = workflow([SEARCH], name="pooled-waiting")

    @wf.agent(input=SearchIn, output=SearchOut, name="search", min_confidence=0.5)
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        return SearchOut(price=10.0, confidence=0.1)  # held back for a person
    run_id = await Orchestrator(store).submit(wf, Goal())
    stats = await Worker(store, [wf], poll_s=0.05).run(until_idle=True)
    assert stats.waiting == 1
    summary = await store.run(run_id)
    assert summary is not None
    assert summary.status == "waiting"
    assert summary.owner is None  # no lease held while it waits on a person


async def test_a_worker_only_claims_runs_of_its_own_workflows(store: EventStore) -> None:
    ours = counting_workflow([], name="ours")
    theirs = counting_workflow([], name="theirs")
    mine = await Orchestrator(store).submit(ours, Goal())
    other = await Orchestrator(store).submit(theirs, Goal())
    stats = await Worker(store, [ours], poll_s=0.05).run(until_idle=True)
    assert stats.finished == 1
    assert (await store.run(mine)).status == "completed"  # type: ignore[union-attr]
    assert (await store.run(other)).status == "queued"  # type: ignore[union-attr]


async def test_an_append_after_the_lease_passed_to_another_worker_is_refused(
    store: EventStore,
) -> None:
    wf = counting_workflow([])
    run_id = await Orchestrator(store).submit(wf, Goal())
    claim = await store.claim_run("vm:1:aaaaaaaa", 0.05, statuses=["queued"])
    assert claim is not None
    await asyncio.sleep(0.1)  # the first claimer stalls past its lease
    later = await store.claim_run("vm:2:bbbbbbbb", 5, statuses=["queued"])
    assert later is not None
    assert later.fence > claim.fence
    late = ev.RunCancelled(by="stale", src="queued", dst="cancelled")
    with pytest.raises(LeaseLostError):
        await store.append(run_id, [_new(late)], expected_seq=1, fence=claim.fence)
    assert await store.last_seq(run_id) == 1


def _new(event: ev.Event) -> NewEvent:
    return NewEvent(type=event.type, data=ev.encode_event(event))


def test_a_worker_needs_a_workflow() -> None:
    with pytest.raises(WorkflowDefinitionError, match="at least one workflow"):
        Worker(None, [])  # type: ignore[arg-type]


async def test_resolve_puts_a_waiting_pool_run_back_on_the_queue(store: EventStore) -> None:
    wf = workflow([SEARCH], name="pooled-resolve")
    calls: list[int] = []

    @wf.agent(input=SearchIn, output=SearchOut, name="search", min_confidence=0.5)
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        calls.append(ctx.attempt)
        return SearchOut(price=10.0, confidence=0.1 if len(calls) == 1 else 0.9)

    run_id = await Orchestrator(store).submit(wf, Goal())
    await Worker(store, [wf], poll_s=0.05).run(until_idle=True)
    assert calls == [1]
    # The person's resolve drives nothing itself: it queues the run again.
    queued = await Orchestrator(store).resolve(run_id, "search", retry=True, by="alice",
                                               workflow=wf)
    assert queued.status == "queued"
    assert calls == [1]
    stats = await Worker(store, [wf], poll_s=0.05).run(until_idle=True)
    assert stats.finished == 1
    assert calls == [1, 2]
    state = await Orchestrator(store).state(run_id)
    assert state.status.value == "completed"
    assert state.tasks["search"].resolved_by == "alice"
    assert (await verify_run(store, run_id, workflow=wf)).ok

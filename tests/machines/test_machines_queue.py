"""Queued runs: ``submit`` records a run for the worker pool and drives nothing.

A web request that queues a run must not run its agents; whoever picks the
run up starts it once, under the same rules as ``resume``.
"""

from __future__ import annotations

from typing import Any

import pytest
from machines_helpers import SEARCH, Goal, SearchIn, SearchOut, read_log, workflow

from ledgerflow.eventstore import EventStore
from ledgerflow.machines import AgentContext, Orchestrator, Workflow, WorkflowDefinitionError
from ledgerflow.machines import events as ev
from ledgerflow.replay import verify_run


def counted_workflow(calls: list[str], name: str = "queued") -> Workflow:
    wf = workflow([SEARCH], name=name)
    planner = wf.planner_fn
    assert planner is not None

    async def counting_planner(goal: Goal, ctx: AgentContext) -> Any:
        calls.append("plan")
        return await planner(goal, ctx)

    wf.planner_fn = counting_planner

    @wf.agent(input=SearchIn, output=SearchOut, name="search")
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        calls.append("search")
        return SearchOut(price=99.0)

    return wf


async def test_submit_records_a_queued_run_and_runs_no_agent(store: EventStore) -> None:
    calls: list[str] = []
    wf = counted_workflow(calls)
    run_id = await Orchestrator(store).submit(wf, Goal(city="Porto"))
    assert calls == []
    summary = await store.run(run_id)
    assert summary is not None
    assert summary.status == "queued"
    log = await read_log(store, run_id)
    assert [e.type for e in log] == ["RunSubmitted"]
    submitted = log[0]
    assert isinstance(submitted, ev.RunSubmitted)
    assert submitted.goal == {"city": "Porto", "passengers": 2}


async def test_a_queued_run_is_started_once_by_whoever_picks_it_up(store: EventStore) -> None:
    calls: list[str] = []
    wf = counted_workflow(calls)
    run_id = await Orchestrator(store).submit(wf, Goal())
    run = await Orchestrator(store).resume(run_id, wf)
    assert run.status == "completed"
    assert calls == ["plan", "search"]  # the planner is asked once, not re-armed as well
    log = await read_log(store, run_id)
    assert [e.type for e in log[:3]] == ["RunSubmitted", "RunStarted", "PlanProposed"]
    assert (await verify_run(store, run_id, workflow=wf)).ok


async def test_a_bad_goal_is_refused_at_submit_and_nothing_is_queued(store: EventStore) -> None:
    wf = counted_workflow([])
    with pytest.raises(WorkflowDefinitionError, match="does not satisfy Goal"):
        await Orchestrator(store).submit(wf, {"city": 3})
    assert await store.runs() == []


async def test_a_queued_run_can_be_cancelled_before_any_worker_starts_it(
    store: EventStore,
) -> None:
    calls: list[str] = []
    wf = counted_workflow(calls)
    orch = Orchestrator(store)
    run_id = await orch.submit(wf, Goal())
    run = await orch.cancel(run_id, by="ops")
    assert run.status == "cancelled"
    assert (await orch.resume(run_id, wf)).status == "cancelled"
    assert calls == []

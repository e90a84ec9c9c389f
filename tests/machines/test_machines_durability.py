"""Durability of dispatches: a side effect never starts before the log says it
was dispatched; with durable_dispatch=True no agent does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import EventStore, open_store
from ledgerflow.machines import AgentContext, Orchestrator, Workflow, decode_event


class Goal(BaseModel):
    n: int


class Num(BaseModel):
    x: int


def chain_workflow(store_box: dict[str, EventStore], seen: list[tuple[str, bool]],
                   *, side_effect: bool) -> Workflow:
    wf = Workflow("durability", goal=Goal, max_concurrency=4)

    async def in_log(ctx: AgentContext) -> bool:
        envs = await store_box["store"].read_all(ctx.run_id)
        for env in envs:
            event: Any = decode_event(env.data)
            if (env.type == "TaskDispatched" and event.task_id == ctx.task_id
                    and event.attempt == ctx.attempt):
                return True
        return False

    @wf.agent(input=Num, output=Num, side_effect=side_effect, idempotent=side_effect)
    async def step(inp: Num, ctx: AgentContext) -> Num:
        seen.append((ctx.task_id, await in_log(ctx)))
        return Num(x=inp.x + 1)

    @wf.planner
    async def plan(goal: Goal, ctx: AgentContext) -> Plan:
        tasks = [Task(id="t0", agent="step", inputs={"x": 0})]
        tasks += [Task(id=f"t{i}", agent="step", needs=[f"t{i - 1}"],
                       inputs={"x": f"$t{i - 1}.x"}) for i in range(1, goal.n)]
        return Plan(tasks=tasks)

    return wf


class CountingStore:
    def __init__(self, inner: EventStore) -> None:
        self.inner = inner
        self.appends = 0

    async def append(self, *args: Any, **kwargs: Any) -> Any:
        self.appends += 1
        return await self.inner.append(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_side_effecting_agent_never_runs_before_its_dispatch_is_durable(
    tmp_path: Path,
) -> None:
    seen: list[tuple[str, bool]] = []
    async with open_store(tmp_path / "runs.db") as store:
        wf = chain_workflow({"store": store}, seen, side_effect=True)
        run = await Orchestrator(store).start(wf, Goal(n=20))
    assert run.status == "completed"
    assert len(seen) == 20
    assert all(durable for _, durable in seen), seen


async def test_durable_dispatch_makes_every_agent_wait_for_its_dispatch(tmp_path: Path) -> None:
    seen: list[tuple[str, bool]] = []
    async with open_store(tmp_path / "runs.db") as store:
        counting = CountingStore(store)
        wf = chain_workflow({"store": store}, seen, side_effect=False)
        orch = Orchestrator(counting, durable_dispatch=True)
        run = await orch.start(wf, Goal(n=20))
    assert run.status == "completed"
    assert all(durable for _, durable in seen), seen
    assert counting.appends >= 20  # at least one commit per step of the chain


async def test_agents_free_of_side_effects_overlap_the_commit_by_default(tmp_path: Path) -> None:
    seen: list[tuple[str, bool]] = []
    async with open_store(tmp_path / "runs.db") as store:
        counting = CountingStore(store)
        wf = chain_workflow({"store": store}, seen, side_effect=False)
        run = await Orchestrator(counting).start(wf, Goal(n=20))
        last = await store.last_seq(run.run_id)
        events = [decode_event(e.data) for e in await store.read_all(run.run_id)]
    assert run.status == "completed"
    assert last == len(events)
    # Commits trail the agents: fewer appends than tasks, and still every
    # dispatch precedes its output in the log.
    assert counting.appends < 20
    order = [(type(e).__name__, getattr(e, "task_id", "")) for e in events]
    for i in range(20):
        assert order.index(("TaskDispatched", f"t{i}")) < order.index(("OutputReceived", f"t{i}"))

"""The workflows of the pool benchmark: a planner and K independent tasks per run.

- ``pool_noop``: each task's agent returns at once (orchestration and storage only);
- ``pool_sleep``: each task's agent awaits ``asyncio.sleep(SLEEP_S)`` (an I/O-bound
  agent, e.g. a model call), so the K tasks of a run overlap.

Both are registered by name so a worker process finds them with ``workflow_named``.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.machines import AgentContext, Workflow

__all__ = ["SLEEP_S", "WORKLOADS", "PoolGoal", "pool_noop", "pool_sleep", "workflow_named"]

#: How long one task of the ``sleep`` workload waits (50 ms).
SLEEP_S = 0.05


class PoolGoal(BaseModel):
    """One run's goal: ``k`` independent tasks."""

    k: int


class Num(BaseModel):
    x: int


def _plan(goal: PoolGoal) -> Plan:
    return Plan(tasks=[Task(id=f"t{i}", agent="work", inputs={"x": i}) for i in range(goal.k)])


pool_noop = Workflow("pool-noop", goal=PoolGoal)
pool_sleep = Workflow("pool-sleep", goal=PoolGoal)


@pool_noop.planner
async def plan_noop(goal: PoolGoal, ctx: AgentContext) -> Plan:
    return _plan(goal)


@pool_noop.agent(input=Num, output=Num, name="work")
async def work_noop(inp: Num, ctx: AgentContext) -> Num:
    return Num(x=inp.x)


@pool_sleep.planner
async def plan_sleep(goal: PoolGoal, ctx: AgentContext) -> Plan:
    return _plan(goal)


@pool_sleep.agent(input=Num, output=Num, name="work")
async def work_sleep(inp: Num, ctx: AgentContext) -> Num:
    await asyncio.sleep(SLEEP_S)
    return Num(x=inp.x)


#: workload name -> its workflow.
WORKLOADS: dict[str, Workflow] = {"noop": pool_noop, "sleep": pool_sleep}


def workflow_named(workload: str) -> Workflow:
    """The workflow of a workload (``noop`` or ``sleep``)."""
    try:
        return WORKLOADS[workload]
    except KeyError:
        raise SystemExit(f"Unknown workload {workload!r}; choose one of "
                         f"{', '.join(sorted(WORKLOADS))}.") from None

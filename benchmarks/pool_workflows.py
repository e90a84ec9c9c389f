"""The workflows of the pool benchmark: a planner and K independent tasks per run.

- ``pool_noop``: each task's agent returns at once (orchestration and storage only);
- ``pool_sleep``: each task's agent awaits ``asyncio.sleep(SLEEP_S)`` (an I/O-bound
  agent, e.g. a model call), so the K tasks of a run overlap;
- ``pool_cpu``: each task's agent computes for ``CPU_S`` without awaiting (a
  CPU-bound agent: parsing, scoring, a local model), so one process runs one at
  a time and only more processes (cores) go faster.

Both are registered by name so a worker process finds them with ``workflow_named``.
"""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.machines import AgentContext, Workflow

__all__ = ["CPU_S", "FAN_WIDTH", "SLEEP_S", "WORKLOADS", "PoolGoal", "pool_cpu", "pool_noop",
           "pool_sleep", "workflow_named"]

#: How long one task of the ``sleep`` workload waits (50 ms).
SLEEP_S = 0.05
#: How long one task of the ``cpu`` workload computes (20 ms of CPU).
CPU_S = 0.02
#: Tasks of one run with agents at once (a run of K = 4 never reaches it; a fan-out does).
FAN_WIDTH = 64


class PoolGoal(BaseModel):
    """One run's goal: ``k`` independent tasks."""

    k: int


class Num(BaseModel):
    x: int


def _plan(goal: PoolGoal) -> Plan:
    return Plan(tasks=[Task(id=f"t{i}", agent="work", inputs={"x": i}) for i in range(goal.k)])


pool_noop = Workflow("pool-noop", goal=PoolGoal, max_concurrency=FAN_WIDTH)
pool_sleep = Workflow("pool-sleep", goal=PoolGoal, max_concurrency=FAN_WIDTH)


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


pool_cpu = Workflow("pool-cpu", goal=PoolGoal, max_concurrency=FAN_WIDTH)


@pool_cpu.planner
async def plan_cpu(goal: PoolGoal, ctx: AgentContext) -> Plan:
    return _plan(goal)


@pool_cpu.agent(input=Num, output=Num, name="work")
async def work_cpu(inp: Num, ctx: AgentContext) -> Num:
    until = time.process_time() + CPU_S
    total = 0
    while time.process_time() < until:  # busy on purpose: the event loop is held
        total += 1
    return Num(x=inp.x)


#: workload name -> its workflow.
WORKLOADS: dict[str, Workflow] = {"noop": pool_noop, "sleep": pool_sleep, "cpu": pool_cpu}


def workflow_named(workload: str) -> Workflow:
    """The workflow of a workload (``noop`` or ``sleep``)."""
    try:
        return WORKLOADS[workload]
    except KeyError:
        raise SystemExit(f"Unknown workload {workload!r}; choose one of "
                         f"{', '.join(sorted(WORKLOADS))}.") from None

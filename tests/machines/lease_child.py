"""A process that starts a run and hangs inside its agent, for the kill -9 lease tests.

Run as ``python lease_child.py DB MARKER RUN_ID``: once the agent has started
it writes MARKER and waits forever (until the test kills the process). In any
process where MARKER already exists the agent returns at once, so the run
resumed after the kill completes.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import open_store
from ledgerflow.machines import AgentContext, Orchestrator, Workflow


class Goal(BaseModel):
    marker: str


class Out(BaseModel):
    done: bool


class In(BaseModel):
    marker: str


wf = Workflow("lease-child", goal=Goal)


@wf.planner
async def planner(goal: Goal, ctx: AgentContext) -> Plan:
    return Plan(tasks=[Task(id="hang", agent="hang", inputs={"marker": "$goal.marker"})])


@wf.agent(input=In, output=Out, name="hang")
async def hang(inp: In, ctx: AgentContext) -> Out:
    if await asyncio.to_thread(_first_to_start, Path(inp.marker)):
        await asyncio.Event().wait()  # until kill -9
    return Out(done=True)


def _first_to_start(marker: Path) -> bool:
    if marker.exists():
        return False
    marker.write_text("started")
    return True


async def main(db: str, marker: str, run_id: str) -> None:
    async with open_store(db) as store:
        await Orchestrator(store, lease_ttl_s=30.0, durable_dispatch=True).start(
            wf, Goal(marker=marker), run_id=run_id)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))

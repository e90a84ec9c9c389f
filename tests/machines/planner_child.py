"""A process whose planner asks a model (a journaled step) and dies with SIGKILL right after.

Run as ``python planner_child.py DB RUN_ID CALLS``: the planner's ``decompose``
step appends a line to CALLS, its result is durable, then the process kills
itself before the plan is proposed. The test resumes the run in its own
process, where the planner is asked again and must be served the step.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import open_store
from ledgerflow.machines import AgentContext, Metered, Orchestrator, Workflow


class Goal(BaseModel):
    calls: str


class In(BaseModel):
    topic: str


class Out(BaseModel):
    summary: str


wf = Workflow("planner-child", goal=Goal)


def decompose(calls: str) -> Metered:
    with Path(calls).open("a", encoding="utf-8") as out:
        out.write("decompose\n")
    return Metered({"topics": ["fares", "hotels"]}, tokens=40, cost=0.002,
                   detail={"kind": "llm", "model": "planner-model"})


@wf.planner
async def planner(goal: Goal, ctx: AgentContext) -> Plan:
    answer = await ctx.step("decompose", decompose, goal.calls)
    if os.environ.get("PLANNER_CHILD_MAY_DIE") == "1":
        os.kill(os.getpid(), signal.SIGKILL)
    return Plan(tasks=[Task(id=topic, agent="summarize", inputs={"topic": topic})
                       for topic in answer["topics"]])


@wf.agent(input=In, output=Out, name="summarize")
async def summarize(inp: In, ctx: AgentContext) -> Out:
    return Out(summary=f"all about {inp.topic}")


async def main(db: str, run_id: str, calls: str) -> None:
    async with open_store(db) as store:
        await Orchestrator(store).start(wf, Goal(calls=calls), run_id=run_id)


if __name__ == "__main__":
    os.environ["PLANNER_CHILD_MAY_DIE"] = "1"
    asyncio.run(main(*sys.argv[1:4]))

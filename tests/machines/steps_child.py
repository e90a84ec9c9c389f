"""A process that runs an agent of three journaled steps and can die with SIGKILL inside one.

Run as ``python steps_child.py DB RUN_ID CALLS KILL_AT``. The agent's steps
are ``ask`` (free of side effects), ``charge`` (``side_effect=True``) and
``confirm``; each appends ``<name>:<phase>`` to the file CALLS when it is
entered (``in``) and when it has done its work (``done``). KILL_AT names the
line after which the process kills itself (``charge:in``: mid side effect;
``confirm:in``: between steps, ``-``: never), so the test can kill it at
every point and resume the run in its own process.
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
    kill_at: str = "-"


class In(BaseModel):
    calls: str
    kill_at: str


class Out(BaseModel):
    answer: str
    receipt: str
    confirmed: bool


wf = Workflow("steps-child", goal=Goal)


@wf.planner
async def planner(goal: Goal, ctx: AgentContext) -> Plan:
    return Plan(tasks=[Task(id="pay", agent="pay",
                            inputs={"calls": "$goal.calls", "kill_at": "$goal.kill_at"})])


def _mark(calls: str, line: str, kill_at: str) -> None:
    with Path(calls).open("a", encoding="utf-8") as out:
        out.write(line + "\n")
        out.flush()
        os.fsync(out.fileno())
    if line == kill_at and os.environ.get("STEPS_CHILD_MAY_DIE") == "1":
        os.kill(os.getpid(), signal.SIGKILL)


def ask(calls: str, kill_at: str, question: str) -> Metered:
    _mark(calls, "ask:in", kill_at)
    _mark(calls, "ask:done", kill_at)
    return Metered({"answer": f"42 to {question}"}, tokens=30, cost=0.001,
                   detail={"kind": "llm", "model": "fake-1"})


async def charge(calls: str, kill_at: str, amount: int) -> Metered:
    _mark(calls, "charge:in", kill_at)
    await asyncio.sleep(0)
    _mark(calls, "charge:done", kill_at)
    return Metered({"receipt": f"R-{amount}"}, detail={"kind": "tool", "tool": "charge"})


def confirm(calls: str, kill_at: str) -> bool:
    _mark(calls, "confirm:in", kill_at)
    _mark(calls, "confirm:done", kill_at)
    return True


@wf.agent(input=In, output=Out, name="pay")
async def pay(inp: In, ctx: AgentContext) -> Out:
    answer = await ctx.step("ask", ask, inp.calls, inp.kill_at, "life")
    receipt = await ctx.step("charge", charge, inp.calls, inp.kill_at, 42, side_effect=True)
    confirmed = await ctx.step("confirm", confirm, inp.calls, inp.kill_at)
    return Out(answer=answer["answer"], receipt=receipt["receipt"], confirmed=confirmed)


async def main(db: str, run_id: str, calls: str, kill_at: str) -> None:
    async with open_store(db) as store:
        await Orchestrator(store).start(wf, Goal(calls=calls, kill_at=kill_at), run_id=run_id)


if __name__ == "__main__":
    os.environ["STEPS_CHILD_MAY_DIE"] = "1"
    asyncio.run(main(*sys.argv[1:5]))

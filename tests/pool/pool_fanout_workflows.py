"""The workflows of the spreading stories: a wide fan-out, and an agent with a pool-wide limit.

``fanout``: the planner asks for ``goal.tasks`` independent tasks of agent
``work``, each of which naps ``goal.nap_s`` and answers with the pid of the
process that ran it, so the log itself says which worker ran which task.

``limited``: ``goal.tasks`` independent tasks of agent ``limited``
(``max_concurrent=2`` across the pool); each writes its start and end
(wall-clock, one machine) to an interval sink, from which the tests read the
greatest number of attempts that overlapped.

Example::

    run_id = await Orchestrator(store).submit(fanout, FanGoal(tasks=200))
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time

from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.machines import AgentContext, Workflow

__all__ = ["LIMIT", "FanGoal", "fanout", "limited", "most_at_once"]

#: The pool-wide max_concurrent of agent ``limited``.
LIMIT = 2


class FanGoal(BaseModel):
    tasks: int = 200
    nap_s: float = 0.02
    sink: str = ""


class Work(BaseModel):
    nap_s: float
    sink: str = ""


class Ran(BaseModel):
    pid: int


# Wider than one worker's task_concurrency, so the run spills over the pool.
fanout = Workflow("pool-fanout", goal=FanGoal, max_concurrency=48)
limited = Workflow("pool-limited", goal=FanGoal)
_INPUTS = {"nap_s": "$goal.nap_s", "sink": "$goal.sink"}


@fanout.planner
async def plan_fanout(goal: FanGoal, ctx: AgentContext) -> Plan:
    return Plan(tasks=[Task(id=f"t{i:03d}", agent="work", inputs=_INPUTS)
                       for i in range(goal.tasks)])


@fanout.agent(input=Work, output=Ran)
async def work(inp: Work, ctx: AgentContext) -> Ran:
    await asyncio.sleep(inp.nap_s)
    return Ran(pid=os.getpid())


@limited.planner
async def plan_limited(goal: FanGoal, ctx: AgentContext) -> Plan:
    return Plan(tasks=[Task(id=f"t{i:03d}", agent="limited", inputs=_INPUTS)
                       for i in range(goal.tasks)])


def _note(sink: str, key: str, what: str) -> None:
    with sqlite3.connect(sink, timeout=30) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS spans (key TEXT, what TEXT, at REAL, pid INT)")
        conn.execute("INSERT INTO spans VALUES (?, ?, ?, ?)",
                     (key, what, time.time(), os.getpid()))


@limited.agent(input=Work, output=Ran, name="limited", max_concurrent=LIMIT)
async def limited_agent(inp: Work, ctx: AgentContext) -> Ran:
    key = f"{ctx.run_id}/{ctx.task_id}/{ctx.attempt}"
    await asyncio.to_thread(_note, inp.sink, key, "start")
    await asyncio.sleep(inp.nap_s)
    await asyncio.to_thread(_note, inp.sink, key, "end")
    return Ran(pid=os.getpid())



def most_at_once(sink: str) -> tuple[int, set[int]]:
    """The greatest number of ``limited`` attempts in flight together, and the pids that ran any."""
    with sqlite3.connect(sink) as conn:
        rows = conn.execute("SELECT at, what, pid FROM spans").fetchall()
    # An end sorts before a start at the same instant: touching spans do not overlap.
    marks = sorted((at, 0 if what == "end" else 1) for at, what, _pid in rows)
    now = most = 0
    for _at, start in marks:
        now += 1 if start else -1
        most = max(most, now)
    return most, {pid for _at, _what, pid in rows}

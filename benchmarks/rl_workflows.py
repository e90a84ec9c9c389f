"""The ledgerflow workflows the benchmarks run: no-op async agents, sized by the goal.

- ``chain``: task ``t{i}`` needs ``t{i-1}`` and takes its output ``x`` as input;
  each agent returns ``x + 1``, so the last output is ``n``.
- ``fanout``: ``w0 .. w{n-1}`` need nothing; ``join`` needs all of them.
"""

from __future__ import annotations

from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.machines import AgentContext, Workflow

__all__ = ["ChainGoal", "FanGoal", "chain", "fanout"]


class ChainGoal(BaseModel):
    n: int
    seed: int = 0


class FanGoal(BaseModel):
    n: int


class Num(BaseModel):
    x: int


class JoinIn(BaseModel):
    n: int


class JoinOut(BaseModel):
    done: int


chain = Workflow("bench-chain", goal=ChainGoal)


@chain.planner
async def plan_chain(goal: ChainGoal, ctx: AgentContext) -> Plan:
    tasks = [Task(id="t0", agent="step", inputs={"x": "$goal.seed"})]
    tasks += [Task(id=f"t{i}", agent="step", needs=[f"t{i - 1}"], inputs={"x": f"$t{i - 1}.x"})
              for i in range(1, goal.n)]
    return Plan(tasks=tasks)


@chain.agent(input=Num, output=Num)
async def step(inp: Num, ctx: AgentContext) -> Num:
    return Num(x=inp.x + 1)


# Every task of the fan-out may run at once, as in the peers' fan-outs.
fanout = Workflow("bench-fanout", goal=FanGoal, max_concurrency=1_000_000)


@fanout.planner
async def plan_fanout(goal: FanGoal, ctx: AgentContext) -> Plan:
    ids = [f"w{i}" for i in range(goal.n)]
    tasks = [Task(id=i, agent="work", inputs={"x": 1}) for i in ids]
    tasks.append(Task(id="join", agent="join", needs=ids, inputs={"n": "$goal.n"}))
    return Plan(tasks=tasks)


@fanout.agent(input=Num, output=Num)
async def work(inp: Num, ctx: AgentContext) -> Num:
    return Num(x=inp.x)


@fanout.agent(input=JoinIn, output=JoinOut)
async def join(inp: JoinIn, ctx: AgentContext) -> JoinOut:
    return JoinOut(done=inp.n)

"""The workflow the pool tests run in worker processes: fetch -> effect -> report.

``effect`` is the side effect (``side_effect=True, idempotent=True``): it
asks the goal's sink to perform an effect under ``ctx.idempotency_key``, then
takes a little longer to "answer", so a kill can land after the effect and
before its outcome is in the log (the resumed attempt must reuse the key).
Every agent records its call in the sink's ``attempts`` and sleeps
``goal.nap_s``, so kills and pauses land in the middle of runs.

Example::

    run_id = await Orchestrator(store).submit(wf, PoolGoal(sink="/tmp/sink.db"))
"""

from __future__ import annotations

import asyncio

from pool_sink import Sink
from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.machines import AgentContext, RetryPolicy, Workflow

__all__ = ["EFFECT_TASK", "PoolGoal", "wf"]

#: The id of the side-effecting task in every run's plan.
EFFECT_TASK = "effect"


class PoolGoal(BaseModel):
    sink: str
    sink_schema: str = ""
    nap_s: float = 0.03


class Step(BaseModel):
    sink: str
    sink_schema: str
    nap_s: float


class Done(BaseModel):
    ok: bool = True


wf = Workflow("pool-chaos", goal=PoolGoal)
_STEP = {"sink": "$goal.sink", "sink_schema": "$goal.sink_schema", "nap_s": "$goal.nap_s"}
#: Retries without waiting: a failure story should not slow the suite.
_FAST = RetryPolicy(max_attempts=3, backoff_s=0.0, jitter=0.0)


@wf.planner
async def planner(goal: PoolGoal, ctx: AgentContext) -> Plan:
    return Plan(tasks=[
        Task(id="fetch", agent="fetch", inputs=_STEP),
        Task(id=EFFECT_TASK, agent="effect", needs=["fetch"], inputs=_STEP),
        Task(id="report", agent="report", needs=[EFFECT_TASK], inputs=_STEP),
    ])


async def _called(inp: Step, ctx: AgentContext) -> Sink:
    sink = Sink(inp.sink, inp.sink_schema)
    await sink.attempt(ctx.idempotency_key, ctx.run_id, ctx.task_id)
    await asyncio.sleep(inp.nap_s)
    return sink


@wf.agent(input=Step, output=Done, name="fetch", retry=_FAST)
async def fetch(inp: Step, ctx: AgentContext) -> Done:
    await _called(inp, ctx)
    return Done()


@wf.agent(input=Step, output=Done, name="effect", side_effect=True, idempotent=True,
          retry=_FAST)
async def effect(inp: Step, ctx: AgentContext) -> Done:
    sink = await _called(inp, ctx)
    await sink.perform(ctx.idempotency_key, ctx.run_id, ctx.task_id)
    await asyncio.sleep(inp.nap_s)  # the answer takes a while: a kill may land here
    return Done()


@wf.agent(input=Step, output=Done, name="report", retry=_FAST)
async def report(inp: Step, ctx: AgentContext) -> Done:
    await _called(inp, ctx)
    return Done()

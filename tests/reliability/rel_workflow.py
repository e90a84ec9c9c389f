"""The workflow the kill -9 stories run: journaled steps, a fan-out, and three side effects.

Plan of every run (``goal.fan`` wide)::

    prep --+-- fan00 .. fanNN --+-- pay --+-- notify
                                          +-- charge

- ``prep`` (agent ``lookup``) makes two journaled steps free of side effects;
  the armed ``in_step_plain`` kill lands inside the second one's function.
- ``fanNN`` (agent ``crunch``) are independent and finish together: their
  dispatches and outputs are the big batches ``mid_batch`` kills land in.
- ``pay`` (``side_effect=True, idempotent=True``) performs at a deduplicating
  API under ``ctx.idempotency_key``, then takes a while to answer: the
  ``effect_then_outcome`` kill lands between the effect and its recorded output.
- ``notify`` (``side_effect=True``, not idempotent) performs at an API that
  does not deduplicate: resume must never call it twice; an attempt whose
  outcome is unknown escalates.
- ``charge`` (an agent free of side effects) does its effect in a journaled
  ``side_effect=True`` step; the ``in_step_effect`` kill lands inside it, after
  the performance and before the step's result is recorded.

The escalation handler is the operator: for an "outcome unknown" it looks at
the sink, accepts the effect if it was performed and retries the task if it
never was (safe: it did not happen), so every run can end completed.

Example::

    run = await Orchestrator(store).start(wf, RelGoal(sink="/tmp/sink.db"), run_id="k9-0001")
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel
from rel_killpoints import reach
from rel_sink import Sink

from ledgerflow.contracts import Plan, Task
from ledgerflow.machines import (
    AgentContext,
    EscalationRequest,
    Resolution,
    RetryPolicy,
    Workflow,
)

__all__ = ["EFFECT_TASKS", "IDEMPOTENT_TASKS", "RAW_TASKS", "RelGoal", "wf"]

#: Tasks whose agent is declared ``side_effect=True`` (their dispatch waits until durable).
EFFECT_TASKS = frozenset({"pay", "notify"})
#: Tasks that perform at the deduplicating API, and at the one that does not.
IDEMPOTENT_TASKS = frozenset({"pay"})
RAW_TASKS = frozenset({"notify", "charge"})


class RelGoal(BaseModel):
    sink: str
    sink_schema: str = ""
    fan: int = 6
    nap_s: float = 0.002


class Job(BaseModel):
    sink: str
    sink_schema: str
    nap_s: float


class Done(BaseModel):
    ok: bool = True
    value: int = 0


wf = Workflow("reliability-kill9", goal=RelGoal, max_concurrency=16)
_JOB = {"sink": "$goal.sink", "sink_schema": "$goal.sink_schema", "nap_s": "$goal.nap_s"}
#: Retries without waiting: a kill story should not slow the suite.
_FAST = RetryPolicy(max_attempts=3, backoff_s=0.0, jitter=0.0)


@wf.planner
async def planner(goal: RelGoal, ctx: AgentContext) -> Plan:
    fans = [f"fan{i:02d}" for i in range(goal.fan)]
    return Plan(tasks=[
        Task(id="prep", agent="lookup", inputs=_JOB),
        *(Task(id=f, agent="crunch", needs=["prep"], inputs=_JOB) for f in fans),
        Task(id="pay", agent="pay", needs=fans, inputs=_JOB),
        Task(id="notify", agent="notify", needs=["pay"], inputs=_JOB),
        Task(id="charge", agent="charge", needs=["pay"], inputs=_JOB),
    ])


def _quote(n: int) -> int:
    if n == 2:
        reach("in_step_plain")  # inside a step free of side effects: resume calls it again
    return n * 10


@wf.agent(input=Job, output=Done, name="lookup", retry=_FAST)
async def lookup(inp: Job, ctx: AgentContext) -> Done:
    first = await ctx.step("quote", _quote, 1)
    second = await ctx.step("quote", _quote, 2)
    return Done(value=int(first) + int(second))


@wf.agent(input=Job, output=Done, name="crunch", retry=_FAST)
async def crunch(inp: Job, ctx: AgentContext) -> Done:
    await asyncio.sleep(inp.nap_s)
    return Done(value=len(ctx.task_id))


@wf.agent(input=Job, output=Done, name="pay", side_effect=True, idempotent=True, retry=_FAST)
async def pay(inp: Job, ctx: AgentContext) -> Done:
    sink = Sink(inp.sink, inp.sink_schema)
    await sink.attempt(ctx.idempotency_key, ctx.run_id, ctx.task_id)
    await sink.perform_once(ctx.idempotency_key, ctx.run_id, ctx.task_id)
    reach("effect_then_outcome")  # performed; the answer is not in the log yet
    await asyncio.sleep(inp.nap_s)
    return Done()


@wf.agent(input=Job, output=Done, name="notify", side_effect=True, retry=_FAST)
async def notify(inp: Job, ctx: AgentContext) -> Done:
    sink = Sink(inp.sink, inp.sink_schema)
    await sink.attempt(ctx.idempotency_key, ctx.run_id, ctx.task_id)
    await sink.perform_raw(ctx.idempotency_key, ctx.run_id, ctx.task_id)
    reach("effect_then_outcome")
    await asyncio.sleep(inp.nap_s)
    return Done()


async def _charge_card(sink: str, schema: str, key: str, run_id: str, task_id: str) -> str:
    await Sink(sink, schema).perform_raw(key, run_id, task_id)
    reach("in_step_effect")  # performed inside the step; its result is not recorded yet
    return "charged"


@wf.agent(input=Job, output=Done, name="charge", retry=_FAST)
async def charge(inp: Job, ctx: AgentContext) -> Done:
    await ctx.step("quote", _quote, 3)
    await ctx.step("charge_card", _charge_card, inp.sink, inp.sink_schema,
                   ctx.idempotency_key, ctx.run_id, ctx.task_id, side_effect=True)
    return Done()


@wf.on_escalation
async def settle(esc: EscalationRequest) -> Resolution | None:
    """The operator: check the sink for the effect whose outcome is unknown."""
    if esc.kind != "outcome_unknown" or esc.input is None:
        return None  # anything else stays open: the test then fails naming it
    sink = Sink(str(esc.input["sink"]), str(esc.input["sink_schema"]))
    if await sink.performed(esc.run_id, esc.task_id):
        return Resolution.accept({"ok": True}, note="the sink shows the effect was performed")
    return Resolution.retry(note="the sink shows the effect never happened")

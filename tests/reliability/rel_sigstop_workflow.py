"""The workflow of the SIGSTOP fencing trials: one booking, performed at two sinks.

Plan of every run: one task ``book``, whose agent is side-effecting and
either idempotent (``book``: resume calls it again under the same key) or
not (``book_once``: resume must escalate "outcome unknown" instead). The
agent logs its entry at the fenced sink (with ``ctx.fencing_token``), then
"thinks" for :data:`THINK_S` (set only in the process the trial pauses,
so the pause lands mid-call), then performs the one effect at both sinks:
the token-checking :class:`~rel_sigstop_sink.FencedSink` and the naive
:class:`~rel_sink.Sink`, which counts by idempotency key.

How the call is made (``goal.mode``):

- ``thread``: a blocking client in a worker thread (``asyncio.to_thread``),
  as many SDKs are; once started nothing in the process can take it back,
  so a paused process that wakes finishes the call;
- ``async``: an asyncio client, thinking then performing in one call with
  no journaled step: the call is in flight when the process wakes, and only
  cancellation (the drive stops once its renewal finds the lease gone) can
  stop it before it performs;
- ``step``: the agent thinks in asyncio, then performs in a journaled
  ``side_effect=True`` step, which starts only while the lease is certainly
  held: a woken process is refused before the call.

No escalation handler: an "outcome unknown" stays open for the test to see.

Example::

    run = await Orchestrator(store).start(wf, SigGoal(sink="/tmp/sink.db"), run_id="ss-0001")
"""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel
from rel_sigstop_sink import FencedSink
from rel_sink import Sink

from ledgerflow.contracts import Plan, Task
from ledgerflow.machines import AgentContext, RetryPolicy, Workflow

__all__ = ["BOOK_TASK", "THINK_S", "SigGoal", "wf"]

BOOK_TASK = "book"
#: Seconds the agent thinks between its entry and its effect; the paused process sets it.
THINK_S = 0.0


class SigGoal(BaseModel):
    sink: str
    sink_schema: str = ""
    idempotent: bool = True
    mode: str = "thread"


class Job(BaseModel):
    sink: str
    sink_schema: str
    mode: str


class Booked(BaseModel):
    ok: bool = True
    applied: bool = True


wf = Workflow("reliability-sigstop", goal=SigGoal)
_JOB = {"sink": "$goal.sink", "sink_schema": "$goal.sink_schema", "mode": "$goal.mode"}
_FAST = RetryPolicy(max_attempts=2, backoff_s=0.0, jitter=0.0)


@wf.planner
async def planner(goal: SigGoal, ctx: AgentContext) -> Plan:
    agent = "book" if goal.idempotent else "book_once"
    return Plan(tasks=[Task(id=BOOK_TASK, agent=agent, inputs=_JOB)])


async def _perform(sink: str, schema: str, key: str, run_id: str, token: int) -> bool:
    """The effect, at both sinks; whether the token-checking one accepted it."""
    accepted = await FencedSink(sink, schema).write(key, run_id, token)
    await Sink(sink, schema).perform_raw(key, run_id, BOOK_TASK)
    return accepted


def _perform_blocking(sink: str, schema: str, key: str, run_id: str, token: int,
                      think_s: float) -> bool:
    """A blocking client: think, then perform (its own event loop, as a sync SDK has none)."""
    time.sleep(think_s)
    return asyncio.run(_perform(sink, schema, key, run_id, token))


async def _book(inp: Job, ctx: AgentContext) -> Booked:
    token = ctx.fencing_token
    assert token is not None, "every run here is driven under a lease"
    await FencedSink(inp.sink, inp.sink_schema).enter(ctx.idempotency_key, ctx.run_id, token)
    if inp.mode == "thread":
        applied = await asyncio.to_thread(
            _perform_blocking, inp.sink, inp.sink_schema, ctx.idempotency_key, ctx.run_id,
            token, THINK_S)
    elif inp.mode == "async":
        await asyncio.sleep(THINK_S)
        applied = await _perform(inp.sink, inp.sink_schema, ctx.idempotency_key, ctx.run_id,
                                 token)
    else:
        await asyncio.sleep(THINK_S)
        applied = bool(await ctx.step("perform", _perform, inp.sink, inp.sink_schema,
                                      ctx.idempotency_key, ctx.run_id, token,
                                      side_effect=True))
    return Booked(applied=applied)


@wf.agent(input=Job, output=Booked, name="book", side_effect=True, idempotent=True,
          retry=_FAST)
async def book(inp: Job, ctx: AgentContext) -> Booked:
    return await _book(inp, ctx)


@wf.agent(input=Job, output=Booked, name="book_once", side_effect=True, retry=_FAST)
async def book_once(inp: Job, ctx: AgentContext) -> Booked:
    return await _book(inp, ctx)

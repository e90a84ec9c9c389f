"""Pieces of the snapshot tests: a wide run that stops on a gate, a store that counts reads.

``wide_workflow(gate)``: the planner asks for ``n`` instant ``work`` tasks
and one ``wait`` task that waits on ``gate`` (so a run can be crashed with
everything else done). :class:`ReadCountingStore` counts the envelopes each
``read`` yields: how many events a load folded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import Envelope, EventStore
from ledgerflow.machines import AgentContext, RetryPolicy, Workflow

#: Big plans are one PlanProposed and one PlanAccepted event each.
BIG_EVENTS = 64 * 2**20


class Wide(BaseModel):
    n: int


class Item(BaseModel):
    i: int


class Value(BaseModel):
    v: int


def wide_workflow(gate: asyncio.Event | None = None, *, concurrency: int = 64) -> Workflow:
    """``n`` instant tasks, and a ``wait`` task held until ``gate`` is set (if given)."""
    wf = Workflow("wide", goal=Wide, max_concurrency=concurrency)

    @wf.planner
    async def plan(goal: Wide, ctx: AgentContext) -> Plan:
        tasks = [Task(id=f"t{i}", agent="work", inputs={"i": i}) for i in range(goal.n)]
        if gate is not None:
            tasks.append(Task(id="wait", agent="wait", inputs={"i": -1}))
        return Plan(tasks=tasks)

    @wf.agent(input=Item, output=Value)
    async def work(inp: Item, ctx: AgentContext) -> Value:
        return Value(v=inp.i * 7 % 11)

    @wf.agent(input=Item, output=Value)
    async def wait(inp: Item, ctx: AgentContext) -> Value:
        assert gate is not None
        await gate.wait()
        return Value(v=0)

    return wf


def events_before_the_gate(n: int) -> int:
    """The log's length once every ``work`` task is done and ``wait`` is dispatched."""
    return 3 + 5 * n + 2  # start, proposal, acceptance; 5 per task; wait ready, dispatched


def ticking_clock() -> Callable[[], datetime]:
    """A clock one microsecond later at each call: every commit has its own time."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ticks = itertools.count()
    return lambda: start + timedelta(microseconds=next(ticks))


def largest_batch(envelopes: list[Envelope], after: int = 0) -> int:
    """The most events one append wrote (past seq ``after``): they share their time."""
    sizes: dict[datetime, int] = {}
    for env in envelopes:
        if env.seq > after:
            sizes[env.at] = sizes.get(env.at, 0) + 1
    return max(sizes.values(), default=0)


async def crash_when(store: EventStore, run_id: str, seq: int,
                     drive: asyncio.Task[Any]) -> None:
    """Wait until the log of ``run_id`` reaches ``seq``, then kill ``drive`` (a crash)."""
    for _ in range(6000):
        if await store.last_seq(run_id) >= seq:
            break
        await asyncio.sleep(0.005)
    drive.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await drive


class ReadCountingStore:
    """``inner``, counting the envelopes its ``read`` streams (and nothing else changed)."""

    def __init__(self, inner: EventStore) -> None:
        self.inner = inner
        self.read_envelopes = 0

    async def read(self, run_id: str, after: int = 0,
                   until: int | None = None) -> AsyncIterator[Envelope]:
        async for env in self.inner.read(run_id, after, until):
            self.read_envelopes += 1
            yield env

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def calc(j: int) -> dict[str, Any]:
    # A tuple in, a list in the log: the snapshot must hold what the log holds.
    return {"j": j, "pair": (j, j + 1)}


def pay(amount: int) -> dict[str, Any]:
    return {"receipt": f"R-{amount}"}


def steps_workflow() -> Workflow:
    """Tasks whose agents journal steps (one side-effecting), the first attempt failing once."""
    wf = Workflow("stepping", goal=Wide, max_concurrency=3)

    @wf.planner
    async def plan(goal: Wide, ctx: AgentContext) -> Plan:
        return Plan(tasks=[Task(id=f"s{i}", agent="stepper", inputs={"i": i})
                           for i in range(goal.n)])

    @wf.agent(input=Item, output=Value, retry=RetryPolicy(max_attempts=2, backoff_s=0.0,
                                                          jitter=0.0))
    async def stepper(inp: Item, ctx: AgentContext) -> Value:
        for j in range(4):
            await ctx.step("calc", calc, j)
        paid = await ctx.step("pay", pay, inp.i, side_effect=True)
        if ctx.attempt == 1 and inp.i == 0:
            raise TimeoutError("the first attempt of s0 times out after paying")
        return Value(v=len(paid["receipt"]))

    return wf

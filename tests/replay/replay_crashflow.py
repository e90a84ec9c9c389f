"""A workflow with side effects that a crash test kills at every point it can.

Side effects go to a ledger file (one line per act): ``charge`` is idempotent
(it acts only if its key is not in the ledger yet), ``notify`` is not (it
appends unconditionally, like sending an e-mail). ``maybe_crash`` SIGKILLs the
process at the N-th crash point (``CRASH_AT``): before and after every append
to the store, inside every agent call, and around every side effect.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import open_store
from ledgerflow.machines import AgentContext, Orchestrator, RetryPolicy, Workflow

FANOUT = 20


class Goal(BaseModel):
    amount: float


class Num(BaseModel):
    value: float


class Many(BaseModel):
    values: list[float]


class Receipt(BaseModel):
    key: str


_points = [0]


def maybe_crash() -> None:
    _points[0] += 1
    if _points[0] == int(os.environ.get("CRASH_AT", "0")):
        os.kill(os.getpid(), signal.SIGKILL)


def ledger() -> Path:
    return Path(os.environ["CRASH_LEDGER"])


wf = Workflow("crashy", goal=Goal, max_concurrency=1)


@wf.agent(input=Num, output=Num, retry=RetryPolicy(max_attempts=3, backoff_s=0.0))
async def compute(inp: Num, ctx: AgentContext) -> Num:
    maybe_crash()
    if ctx.task_id == "c3" and ctx.attempt == 1:
        raise ConnectionError("flaky upstream")
    await asyncio.sleep(0.002)  # agents take time: commits land while they work
    maybe_crash()
    return Num(value=inp.value + 1)


@wf.agent(input=Many, output=Receipt, side_effect=True, idempotent=True, name="charge")
async def charge(inp: Many, ctx: AgentContext) -> Receipt:
    maybe_crash()
    lines = ledger().read_text().splitlines() if ledger().exists() else []
    if f"charge {ctx.idempotency_key}" not in lines:
        with ledger().open("a") as f:
            f.write(f"charge {ctx.idempotency_key}\n")
            f.flush()
            os.fsync(f.fileno())
    maybe_crash()
    return Receipt(key=ctx.idempotency_key)


@wf.agent(input=Receipt, output=Receipt, side_effect=True, name="notify")
async def notify(inp: Receipt, ctx: AgentContext) -> Receipt:
    maybe_crash()
    with ledger().open("a") as f:
        f.write(f"notify {ctx.idempotency_key}\n")
        f.flush()
        os.fsync(f.fileno())
    maybe_crash()
    return Receipt(key=ctx.idempotency_key)


@wf.planner
async def plan(goal: Goal, ctx: AgentContext) -> Plan:
    tasks = [Task(id=f"c{i}", agent="compute", inputs={"value": "$goal.amount"})
             for i in range(FANOUT)]
    tasks.append(Task(id="charge", agent="charge", needs=[t.id for t in tasks],
                      inputs={"values": [f"$c{i}.value" for i in range(FANOUT)]}))
    tasks.append(Task(id="notify", agent="notify", needs=["charge"], inputs={"key": "$charge.key"}))
    return Plan(tasks=tasks)


class CrashingStore:
    """Delegates to the real store, with a crash point on each side of every append."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def append(self, *args: Any, **kwargs: Any) -> Any:
        maybe_crash()
        result = await self._inner.append(*args, **kwargs)
        maybe_crash()
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def main(db: str, run_id: str) -> None:
    async with open_store(db) as store:
        orch = Orchestrator(CrashingStore(store), lease_ttl_s=0.3)
        run = await orch.start(wf, Goal(amount=1.0), run_id=run_id)
    print(f"status={run.status} points={_points[0]}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))

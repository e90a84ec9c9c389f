"""W2, ledgerflow: a planner, n independent no-op agents, then one join task that needs them all.

Durable defaults (WAL, synchronous=FULL). Steps counted as the peers count them:
planner + n tasks + join. Also reports how many commits (appends) the run took,
which shows the group commit at work.
"""

from __future__ import annotations

import asyncio
from typing import Any

from benchmarks._common import Result, Timer, cli, result
from benchmarks.rl_workflows import FanGoal, fanout
from ledgerflow.eventstore import open_store
from ledgerflow.machines import Orchestrator


class _CountingStore:
    """Counts appends (= commits) and passes everything else through."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.appends = 0

    async def append(self, *args: Any, **kwargs: Any) -> Any:
        self.appends += 1
        return await self._store.append(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def _run(n: int, db: str) -> Result:
    async with open_store(db) as raw:
        store = _CountingStore(raw)
        orch = Orchestrator(store)
        with Timer() as t:
            run = await orch.start(fanout, FanGoal(n=n))
        events = len(await raw.read_all(run.run_id))
    assert run.status == "completed", run.reason
    return result(system="ledgerflow", workload="W2", n=n, steps=n + 2, seconds=t.seconds,
                  tasks_per_s=n / t.seconds, events=events, commits=store.appends,
                  completed=len(run.outputs))


def run(n: int, db: str) -> Result:
    return asyncio.run(_run(n, db))


if __name__ == "__main__":
    cli(run)

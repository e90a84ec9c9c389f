"""W1, ledgerflow: a chain of n no-op async agents, each needing the previous one's output.

Durable defaults: one SQLite file, WAL, synchronous=FULL (``open_store``'s default).
Timed: ``Orchestrator.start`` from the goal to the completed run (planner included).
By default an agent free of side effects starts before its dispatch is durable
(commits are pipelined), so a no-op chain outruns the fsync and needs only a few
commits; ``rl_chain_strict`` runs the same chain with ``durable_dispatch=True``,
one commit per task, as the step-checkpointing peers do.
"""

from __future__ import annotations

import asyncio

from benchmarks._common import Result, Timer, cli, result
from benchmarks.rl_fanout import _CountingStore
from benchmarks.rl_workflows import ChainGoal, chain
from ledgerflow.eventstore import open_store
from ledgerflow.machines import Orchestrator


async def _run(n: int, db: str, *, durable_dispatch: bool = False) -> Result:
    async with open_store(db) as store:
        counting = _CountingStore(store)
        orch = Orchestrator(counting, durable_dispatch=durable_dispatch)
        with Timer() as t:
            run = await orch.start(chain, ChainGoal(n=n))
        events = len(await store.read_all(run.run_id))
        last = run.outputs[f"t{n - 1}"]
    assert run.status == "completed", run.reason
    return result(system="ledgerflow", workload="W1", n=n, steps=n, seconds=t.seconds,
                  events=events, commits=counting.appends, completed=len(run.outputs),
                  last_output=last.x,  # type: ignore[attr-defined]
                  store_sync=store.synchronous)  # type: ignore[attr-defined]


def run(n: int, db: str) -> Result:
    return asyncio.run(_run(n, db))


if __name__ == "__main__":
    cli(run)

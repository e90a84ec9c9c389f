"""W2, DBOS: a planner step, n async no-op steps started together, a join step.

Persistence: DBOS's SQLite system database at its default settings (each
step's output checkpointed); the fan-out is ``asyncio.gather`` over steps
inside one durable workflow.
"""

from __future__ import annotations

import asyncio

from dbos import DBOS

from benchmarks._common import Result, Timer, cli, result
from benchmarks.dbos_chain import launch


@DBOS.step()
async def planner(n: int) -> list[int]:
    return list(range(n))


@DBOS.step()
async def work(i: int) -> int:
    return i


@DBOS.step()
async def join(results: list[int]) -> int:
    return len(results)


@DBOS.workflow()
async def fanout(n: int) -> int:
    items = await planner(n)
    results = await asyncio.gather(*(work(i) for i in items))
    return await join(list(results))


async def _run(n: int, db: str) -> Result:
    launch(db)
    try:
        with Timer() as t:
            done = await fanout(n)
    finally:
        DBOS.destroy()
    assert done == n
    return result(system="DBOS (SQLite system db)", workload="W2", n=n, steps=n + 2,
                  seconds=t.seconds, tasks_per_s=n / t.seconds)


def run(n: int, db: str) -> Result:
    return asyncio.run(_run(n, db))


if __name__ == "__main__":
    cli(run)

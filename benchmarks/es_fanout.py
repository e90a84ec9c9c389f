"""W2, eventsourcing: a planner, n concurrent async no-op steps, a join, all on one event log.

No orchestration: each step's completion is recorded and saved as it arrives
(one commit per step), then a ``Joined`` event.
"""

from __future__ import annotations

import asyncio
from typing import Any

from benchmarks._common import Result, Timer, cli, result
from benchmarks.es_chain import Run, make_app


async def work(i: int) -> int:
    return i


async def _run(n: int, db: str) -> Result:
    app = make_app(db)
    with Timer() as t:
        run = Run(n)  # the planner's decision
        app.save(run)
        for done in asyncio.as_completed([work(i) for i in range(n)]):
            x = await done
            run.stepped(task=x, x=x)
            app.save(run)
        run.joined()
        app.save(run)
    stored: Any = app.repository.get(run.id)
    assert stored.done == n
    return result(system="eventsourcing (SQLite, log only)", workload="W2", n=n, steps=n + 2,
                  seconds=t.seconds, tasks_per_s=n / t.seconds, version=stored.version)


def run(n: int, db: str) -> Result:
    return asyncio.run(_run(n, db))


if __name__ == "__main__":
    cli(run)

"""W1, DBOS: one durable workflow calling n async no-op steps in a chain.

Persistence: DBOS's system database on SQLite (a file), at its default
settings; every step's output is checkpointed before the next one starts.
"""

from __future__ import annotations

import asyncio
from typing import Any

from dbos import DBOS

from benchmarks._common import Result, Timer, cli, result


@DBOS.step()
async def step(x: int) -> int:
    return x + 1


@DBOS.workflow()
async def chain(n: int) -> int:
    x = 0
    for _ in range(n):
        x = await step(x)
    return x


def launch(db: str) -> Any:
    dbos = DBOS(config={"name": "rlbench", "system_database_url": f"sqlite:///{db}",
                        "run_admin_server": False})
    DBOS.launch()
    return dbos


async def _run(n: int, db: str) -> Result:
    launch(db)
    try:
        with Timer() as t:
            x = await chain(n)
    finally:
        DBOS.destroy()
    assert x == n
    return result(system="DBOS (SQLite system db)", workload="W1", n=n, steps=n,
                  seconds=t.seconds)


def run(n: int, db: str) -> Result:
    return asyncio.run(_run(n, db))


if __name__ == "__main__":
    cli(run)

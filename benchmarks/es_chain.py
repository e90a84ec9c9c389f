"""W1, eventsourcing: a chain of n async no-op steps recorded on one aggregate's event log.

An event log only, no orchestration: after each step one ``Stepped`` event is
recorded and saved (one commit per step) with eventsourcing's SQLite
persistence at its default settings.
"""

from __future__ import annotations

import asyncio
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from benchmarks._common import Result, Timer, cli, result


class Run(Aggregate):
    def __init__(self, n: int) -> None:
        self.n = n
        self.x = 0
        self.done = 0

    @event("Stepped")
    def stepped(self, task: int, x: int) -> None:
        self.x = x
        self.done += 1

    @event("Joined")
    def joined(self) -> None:
        pass


def make_app(db: str) -> Application:
    return Application(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": db})


async def agent(x: int) -> int:
    return x + 1


async def _run(n: int, db: str) -> Result:
    app = make_app(db)
    run = Run(n)
    app.save(run)
    with Timer() as t:
        for i in range(n):
            x = await agent(run.x)
            run.stepped(task=i, x=x)
            app.save(run)
    stored: Any = app.repository.get(run.id)
    assert stored.x == n
    assert stored.done == n
    return result(system="eventsourcing (SQLite, log only)", workload="W1", n=n, steps=n,
                  seconds=t.seconds, version=stored.version)


def run(n: int, db: str) -> Result:
    return asyncio.run(_run(n, db))


if __name__ == "__main__":
    cli(run)

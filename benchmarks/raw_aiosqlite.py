"""Raw baseline, aiosqlite: a chain of n no-op async steps, 4 events per task, 1 commit per task.

WAL + synchronous=FULL, like ledgerflow's store. Per task: await the no-op
agent, then ``executemany`` 4 msgspec-JSON events and ``commit`` (two awaited
aiosqlite calls). What a chain costs when each task is durable before the next.
"""

from __future__ import annotations

import asyncio

import aiosqlite
import msgspec

from benchmarks._common import DURABLE_PRAGMAS, Result, Timer, cli, result

SCHEMA = ("CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, type TEXT NOT NULL, "
          "data TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID")
INSERT = "INSERT INTO events VALUES (?, ?, ?, ?)"
TYPES = ("OutputReceived", "TaskSucceeded", "TaskReady", "TaskDispatched")


async def agent(x: int) -> int:
    return x + 1


async def _run(n: int, db: str) -> Result:
    encode = msgspec.json.encode
    async with aiosqlite.connect(db) as conn:
        for pragma in DURABLE_PRAGMAS:
            await conn.execute(pragma)
        await conn.execute(SCHEMA)
        await conn.commit()
        seq, x = 0, 0
        with Timer() as t:
            for i in range(n):
                x = await agent(x)
                rows = []
                for type_ in TYPES:
                    seq += 1
                    rows.append(("r", seq, type_, encode({"task_id": f"t{i}", "x": x}).decode()))
                await conn.executemany(INSERT, rows)
                await conn.commit()
        async with conn.execute("SELECT count(*) FROM events") as cur:
            row = await cur.fetchone()
    assert row is not None
    assert row[0] == 4 * n
    return result(system="aiosqlite (4 ev/task, commit/task, WAL+FULL)", workload="W1",
                  n=n, steps=n, seconds=t.seconds, events=row[0])


def run(n: int, db: str) -> Result:
    return asyncio.run(_run(n, db))


if __name__ == "__main__":
    cli(run)

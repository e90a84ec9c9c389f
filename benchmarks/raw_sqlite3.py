"""Raw baseline, sqlite3: a chain of n no-op steps, 4 events per task, 1 commit per task.

WAL + synchronous=FULL. The same work as ``raw_aiosqlite`` with no thread hand-off.
"""

from __future__ import annotations

import asyncio
import sqlite3

import msgspec

from benchmarks._common import DURABLE_PRAGMAS, Result, Timer, cli, result
from benchmarks.raw_aiosqlite import INSERT, SCHEMA, TYPES, agent


async def _chain(conn: sqlite3.Connection, n: int) -> None:
    encode = msgspec.json.encode
    seq, x = 0, 0
    for i in range(n):
        x = await agent(x)
        rows = []
        for type_ in TYPES:
            seq += 1
            rows.append(("r", seq, type_, encode({"task_id": f"t{i}", "x": x}).decode()))
        conn.executemany(INSERT, rows)
        conn.commit()


def run(n: int, db: str) -> Result:
    conn = sqlite3.connect(db)
    for pragma in DURABLE_PRAGMAS:
        conn.execute(pragma)
    conn.execute(SCHEMA)
    conn.commit()
    with Timer() as t:
        asyncio.run(_chain(conn, n))
    count = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    conn.close()
    assert count == 4 * n
    return result(system="sqlite3 (4 ev/task, commit/task, WAL+FULL)", workload="W1",
                  n=n, steps=n, seconds=t.seconds, events=count)


if __name__ == "__main__":
    cli(run)

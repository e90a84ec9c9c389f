"""Raw baseline, sqlite3: n no-op steps, 4 events each, ALL in one transaction, WAL+NORMAL.

Not durable per task: the ceiling of what SQLite can take in from Python.
"""

from __future__ import annotations

import asyncio
import sqlite3

import msgspec

from benchmarks._common import Result, Timer, cli, result
from benchmarks.raw_aiosqlite import INSERT, SCHEMA, TYPES, agent


async def _chain(conn: sqlite3.Connection, n: int) -> None:
    encode = msgspec.json.encode
    seq, x = 0, 0
    conn.execute("BEGIN")
    for i in range(n):
        x = await agent(x)
        rows = []
        for type_ in TYPES:
            seq += 1
            rows.append(("r", seq, type_, encode({"task_id": f"t{i}", "x": x}).decode()))
        conn.executemany(INSERT, rows)
    conn.execute("COMMIT")


def run(n: int, db: str) -> Result:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(SCHEMA)
    with Timer() as t:
        asyncio.run(_chain(conn, n))
    count = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    conn.close()
    assert count == 4 * n
    return result(system="sqlite3 (4 ev/task, one tx, WAL+NORMAL)", workload="W1",
                  n=n, steps=n, seconds=t.seconds, events=count)


if __name__ == "__main__":
    cli(run)

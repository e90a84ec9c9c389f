"""W1, Apache Burr: a chain of n async no-op actions, each reading the previous one's output.

Persistence: Burr's ``AsyncSQLitePersister`` (aiosqlite, its default connection
settings), which saves the state after every step.
"""

from __future__ import annotations

import asyncio

from burr.core import ApplicationBuilder, State
from burr.core.action import action
from burr.integrations.persisters.b_aiosqlite import AsyncSQLitePersister

from benchmarks._common import Result, Timer, cli, result


@action(reads=["x"], writes=["x"])
async def step(state: State) -> State:
    return state.update(x=state["x"] + 1)


async def _run(n: int, db: str) -> Result:
    async with AsyncSQLitePersister.from_values(db_path=db) as persister:
        await persister.initialize()
        names = [f"t{i}" for i in range(n)]
        app = await (
            ApplicationBuilder()
            .with_actions(**dict.fromkeys(names, step))
            .with_transitions(*[(names[i], names[i + 1]) for i in range(n - 1)])
            .with_state(x=0)
            .with_entrypoint(names[0])
            .with_state_persister(persister)
            .with_identifiers(app_id="bench-chain")
            .abuild()
        )
        with Timer() as t:
            _, _, state = await app.arun(halt_after=[names[-1]])
        async with persister.connection.execute(
            f"SELECT count(*) FROM {persister.table_name}"
        ) as cur:
            row = await cur.fetchone()
    assert state["x"] == n, state["x"]
    return result(system="Burr (AsyncSQLitePersister)", workload="W1", n=n, steps=n,
                  seconds=t.seconds, rows=row[0] if row else None)


def run(n: int, db: str) -> Result:
    return asyncio.run(_run(n, db))


if __name__ == "__main__":
    cli(run)

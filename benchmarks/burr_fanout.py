"""W2, Apache Burr: a planner action, a ``MapStates`` fan-out of n async no-op actions, a join.

Persistence: ``AsyncSQLitePersister``, cascaded to the fan-out's sub-applications
(Burr's default), so every sub-step's state is saved as well.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from burr.core import ApplicationBuilder, State
from burr.core.action import action
from burr.core.parallelism import MapStates
from burr.integrations.persisters.b_aiosqlite import AsyncSQLitePersister

from benchmarks._common import Result, Timer, cli, result


@action(reads=["n"], writes=["items"])
async def planner(state: State) -> State:
    return state.update(items=list(range(state["n"])))


@action(reads=["item"], writes=["out"])
async def work(state: State) -> State:
    return state.update(out=state["item"])


class FanOut(MapStates):  # type: ignore[misc]
    def action(self, state: State, inputs: dict[str, Any]) -> Any:
        return work

    async def states(  # type: ignore[override]
        self, state: State, context: Any, inputs: dict[str, Any]
    ) -> AsyncGenerator[State, None]:
        for item in state["items"]:
            yield state.update(item=item)

    async def reduce(self, state: State, states: Any) -> State:  # type: ignore[override]
        outs = [sub["out"] async for sub in states]
        return state.update(results=outs)

    @property
    def reads(self) -> list[str]:
        return ["items"]

    @property
    def writes(self) -> list[str]:
        return ["results"]

    def is_async(self) -> bool:
        return True


@action(reads=["results"], writes=["done"])
async def join(state: State) -> State:
    return state.update(done=len(state["results"]))


async def _run(n: int, db: str) -> Result:
    async with AsyncSQLitePersister.from_values(db_path=db) as persister:
        await persister.initialize()
        app = await (
            ApplicationBuilder()
            .with_actions(planner=planner, fan_out=FanOut(), join=join)
            .with_transitions(("planner", "fan_out"), ("fan_out", "join"))
            .with_state(n=n)
            .with_entrypoint("planner")
            .with_state_persister(persister)
            .with_identifiers(app_id="bench-fanout")
            .abuild()
        )
        with Timer() as t:
            _, _, state = await app.arun(halt_after=["join"])
        async with persister.connection.execute(
            f"SELECT count(*) FROM {persister.table_name}"
        ) as cur:
            row = await cur.fetchone()
    assert state["done"] == n, state["done"]
    return result(system="Burr (AsyncSQLitePersister)", workload="W2", n=n, steps=n + 2,
                  seconds=t.seconds, tasks_per_s=n / t.seconds, rows=row[0] if row else None)


def run(n: int, db: str) -> Result:
    return asyncio.run(_run(n, db))


if __name__ == "__main__":
    cli(run)

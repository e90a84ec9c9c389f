"""W1, LangGraph: a ``StateGraph`` of n async no-op nodes in a line, each reading the last output.

Persistence: ``AsyncSqliteSaver`` (langgraph-checkpoint-sqlite) on a file, which
writes a checkpoint after every step; LangGraph's default durability mode.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TypedDict

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph

from benchmarks._common import Result, Timer, cli, result


class S(TypedDict):
    x: int


async def step(state: S) -> S:
    return {"x": state["x"] + 1}


async def _run(n: int, db: str) -> Result:
    graph = StateGraph(S)
    names = [f"t{i}" for i in range(n)]
    for name in names:
        graph.add_node(name, step)
    graph.add_edge(START, names[0])
    for a, b in itertools.pairwise(names):
        graph.add_edge(a, b)
    graph.add_edge(names[-1], END)
    async with AsyncSqliteSaver.from_conn_string(db) as saver:
        app = graph.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "bench-chain"}, "recursion_limit": n + 10}
        with Timer() as t:
            out = await app.ainvoke({"x": 0}, config)  # type: ignore[arg-type]
        async with saver.conn.execute("SELECT count(*) FROM checkpoints") as cur:
            row = await cur.fetchone()
    assert out["x"] == n, out
    return result(system="LangGraph (AsyncSqliteSaver)", workload="W1", n=n, steps=n,
                  seconds=t.seconds, checkpoints=row[0] if row else None)


def run(n: int, db: str) -> Result:
    return asyncio.run(_run(n, db))


if __name__ == "__main__":
    cli(run)

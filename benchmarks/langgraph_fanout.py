"""W2, LangGraph: a planner node, ``Send`` to n async no-op nodes, then a join node.

Persistence: ``AsyncSqliteSaver`` on a file (a checkpoint per super-step, plus
the pending writes of every task); LangGraph's default durability mode.
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from benchmarks._common import Result, Timer, cli, result


class S(TypedDict, total=False):
    n: int
    items: list[int]
    results: Annotated[list[int], operator.add]
    done: int


async def planner(state: S) -> dict[str, Any]:
    return {"items": list(range(state["n"]))}


def fan_out(state: S) -> list[Send]:
    return [Send("work", {"item": i}) for i in state["items"]]


async def work(arg: dict[str, Any]) -> dict[str, Any]:
    return {"results": [arg["item"]]}


async def join(state: S) -> dict[str, Any]:
    return {"done": len(state["results"])}


async def _run(n: int, db: str) -> Result:
    graph = StateGraph(S)
    graph.add_node("planner", planner)
    graph.add_node("work", work)  # type: ignore[arg-type]
    graph.add_node("join", join)
    graph.add_edge(START, "planner")
    graph.add_conditional_edges("planner", fan_out, ["work"])
    graph.add_edge("work", "join")
    graph.add_edge("join", END)
    async with AsyncSqliteSaver.from_conn_string(db) as saver:
        app = graph.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "bench-fanout"}, "recursion_limit": 100}
        with Timer() as t:
            out = await app.ainvoke({"n": n, "results": []}, config)  # type: ignore[arg-type]
    assert out["done"] == n, out
    return result(system="LangGraph (AsyncSqliteSaver)", workload="W2", n=n, steps=n + 2,
                  seconds=t.seconds, tasks_per_s=n / t.seconds)


def run(n: int, db: str) -> Result:
    return asyncio.run(_run(n, db))


if __name__ == "__main__":
    cli(run)

"""A run's log made by the real decider with no I/O: the facts a fan-out run would see.

``fanout_decisions(n)`` yields, fact by fact, the events ``machines.advance``
returns for a planner + n-task fan-out + join: exactly what the runtime would
append, minus the agents and the database. The replay benchmark writes them
with the store's ``append`` in big batches; the core benchmark times them.
"""

from __future__ import annotations

from collections.abc import Iterator

from benchmarks.rl_workflows import FanGoal, fanout, plan_fanout
from ledgerflow.machines import AgentContext, Event, RunState, advance
from ledgerflow.machines import events as ev

__all__ = ["fanout_decisions", "fanout_facts"]

_STARTED_AT = "2026-01-01T00:00:00+00:00"


def fanout_facts(n: int, run_id: str) -> Iterator[ev.Event]:
    """The facts of a fan-out run, in an order the runtime could have seen them."""
    yield ev.RunStarted(workflow=fanout.name, workflow_ref=fanout.ref,
                        goal={"n": n}, started_at=_STARTED_AT,
                        max_concurrency=fanout.max_concurrency)
    ctx = AgentContext(run_id=run_id, task_id="$planner", attempt=1, idempotency_key="k")
    coro = plan_fanout(FanGoal(n=n), ctx)
    try:
        coro.send(None)
    except StopIteration as stop:
        plan = stop.value
    yield ev.PlanProposed(plan=plan.model_dump(mode="json"))
    for i in range(n):
        yield ev.OutputReceived(task_id=f"w{i}", attempt=1, output={"x": 1})
    yield ev.OutputReceived(task_id="join", attempt=1, output={"done": n})


def fanout_decisions(n: int, run_id: str) -> Iterator[list[Event]]:
    """For each fact, the events the decider appends (the fact first)."""
    state = RunState(run_id=run_id)
    for fact in fanout_facts(n, run_id):
        yield advance(state, fact, fanout)
    assert state.status.value == "completed", state.reason

"""Shared pieces of the machines tests: a small domain, a workflow factory, log readers.

Not a conftest: ``from conftest import ...`` would clash with other packages'
conftest modules when the whole suite runs in one process.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from ledgerflow import machines
from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import EventStore
from ledgerflow.machines import events as ev

E = TypeVar("E", bound=machines.Event)

#: Retries without waiting, so failure stories run in milliseconds.
FAST = machines.RetryPolicy(max_attempts=3, backoff_s=0.0, jitter=0.0)


class Goal(BaseModel):
    city: str = "Lisbon"
    passengers: int = 2


class SearchIn(BaseModel):
    city: str


class SearchOut(BaseModel):
    price: float = Field(gt=0)
    confidence: float = Field(default=1.0, ge=0, le=1)


class BookIn(BaseModel):
    city: str
    price: float


class BookOut(BaseModel):
    ref: str


class TextOut(BaseModel):
    text: str


SEARCH = Task(id="search", agent="search", inputs={"city": "$goal.city"})
BOOK = Task(id="book", agent="book", needs=["search"],
            inputs={"city": "$goal.city", "price": "$search.price"})


def workflow(plan: Sequence[Task] | Any, name: str = "test", **kwargs: Any) -> machines.Workflow:
    """A workflow over :class:`Goal` whose planner returns ``plan`` (a task list, or anything)."""
    wf = machines.Workflow(name, goal=Goal, **kwargs)
    answer: Any = Plan(tasks=list(plan)) if isinstance(plan, list) else plan

    @wf.planner
    async def planner(goal: Goal, ctx: machines.AgentContext) -> Any:
        return answer

    return wf


def add_booking(wf: machines.Workflow, calls: list[str] | None = None) -> None:
    """Register a plain ``book`` agent that records its calls."""

    @wf.agent(input=BookIn, output=BookOut, name="book", retry=FAST)
    async def book(inp: BookIn, ctx: machines.AgentContext) -> BookOut:
        if calls is not None:
            calls.append(ctx.task_id)
        return BookOut(ref=f"B-{inp.price:g}")


async def read_log(store: EventStore, run_id: str) -> list[machines.Event]:
    """The run's log, decoded."""
    return [machines.decode_event(env.data) for env in await store.read_all(run_id)]


def of(events: Sequence[machines.Event], cls: type[E], task_id: str | None = None) -> list[E]:
    """The events of one class (of one task, if given), in log order."""
    return [e for e in events if isinstance(e, cls)
            and (task_id is None or getattr(e, "task_id", None) == task_id)]


def types(events: Sequence[machines.Event]) -> list[str]:
    return [e.type for e in events]


def dispatched_tasks(events: Sequence[machines.Event]) -> list[str]:
    return [e.task_id for e in of(events, ev.TaskDispatched)]


async def assert_fold_matches(store: EventStore, run_id: str, live: machines.RunState) -> None:
    """For every prefix of the log, rebuilding from the store equals folding one by one,
    and the fold of the whole log equals the orchestrator's live state."""
    events = await read_log(store, run_id)
    state = machines.RunState(run_id=run_id)
    for seq, event in enumerate(events, start=1):
        machines.evolve(state, event)
        rebuilt = await machines.load_run_state(store, run_id, at=seq)
        assert rebuilt.to_dict() == state.to_dict(), f"state differs after seq {seq}"
    assert state.seq == len(events)
    assert copy.deepcopy(state.to_dict()) == live.to_dict()

"""Decomposition failures are caught before anything is dispatched.

The article: agents stall waiting for context they were never given. Here a
plan whose context contracts do not line up, or that is not a plan at all, is
rejected with the reason, the run fails, and no agent is ever called.
"""

from __future__ import annotations

from typing import Any

from machines_helpers import (
    BOOK,
    FAST,
    SEARCH,
    BookIn,
    Goal,
    SearchIn,
    SearchOut,
    add_booking,
    of,
    read_log,
    workflow,
)

from ledgerflow import machines
from ledgerflow.contracts import Task
from ledgerflow.eventstore import EventStore
from ledgerflow.machines import events as ev


def _with_search(wf: machines.Workflow, calls: list[str]) -> None:
    @wf.agent(input=SearchIn, output=SearchOut, name="search", retry=FAST)
    async def search(inp: SearchIn, ctx: machines.AgentContext) -> SearchOut:
        calls.append(ctx.task_id)
        return SearchOut(price=100.0)


async def _run_rejected(
    orch: machines.Orchestrator, store: EventStore, wf: machines.Workflow, calls: list[str]
) -> tuple[machines.RunResult, list[machines.Event], ev.PlanRejected]:
    run = await orch.start(wf, Goal())
    log = await read_log(store, run.run_id)
    assert run.status == "failed"
    assert [e.type for e in log] == ["RunStarted", "PlanProposed", "PlanRejected"]
    assert not of(log, ev.TaskDispatched)
    assert not of(log, ev.PlanAccepted)
    assert calls == []
    rejected = of(log, ev.PlanRejected)[0]
    assert (rejected.src, rejected.dst) == ("planning", "failed")
    assert rejected.reason.startswith("Plan rejected before anything ran")
    assert run.state.status is machines.RunStatus.FAILED
    assert run.reason == rejected.reason
    return run, log, rejected


async def test_context_contract_mismatch_rejected_at_plan_time(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    calls: list[str] = []
    # "cost" is not a field of SearchOut: the booking agent would never get its price.
    book = Task(id="book", agent="book", needs=["search"],
                inputs={"city": "$goal.city", "price": "$search.cost"})
    wf = workflow([SEARCH, book])
    _with_search(wf, calls)
    add_booking(wf, calls)
    _, _, rejected = await _run_rejected(orch, store, wf, calls)
    codes = {p.code for p in rejected.problems}
    assert codes == {"unknown_field"}
    [problem] = rejected.problems
    assert problem.task_id == "book"
    assert "cost" in problem.message
    assert "cost" in rejected.reason


async def test_input_field_the_agent_does_not_declare_rejected_at_plan_time(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    calls: list[str] = []
    # Dumping more context than the contract declares is rejected too.
    search = Task(id="search", agent="search",
                  inputs={"city": "$goal.city", "passengers": "$goal.passengers"})
    wf = workflow([search])
    _with_search(wf, calls)
    _, _, rejected = await _run_rejected(orch, store, wf, calls)
    assert {p.code for p in rejected.problems} == {"undeclared_input"}


async def test_malformed_plan_rejected_before_anything_runs(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    calls: list[str] = []
    garbage: Any = {"steps": "first search, then book", "confidence": "high"}
    wf = workflow(garbage)
    _with_search(wf, calls)
    _, log, rejected = await _run_rejected(orch, store, wf, calls)
    assert of(log, ev.PlanProposed)[0].plan == garbage
    assert [p.code for p in rejected.problems] == ["malformed_plan"]
    assert "not a valid Plan" in rejected.problems[0].message


async def test_unknown_agent_rejected_at_plan_time(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    calls: list[str] = []
    wf = workflow([SEARCH, Task(id="ghost", agent="ghostwriter", inputs={})])
    _with_search(wf, calls)
    _, _, rejected = await _run_rejected(orch, store, wf, calls)
    codes = [p.code for p in rejected.problems]
    assert "unknown_agent" in codes
    assert any("ghostwriter" in p.message for p in rejected.problems)


async def test_dependency_cycle_rejected_at_plan_time(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    calls: list[str] = []
    a = Task(id="a", agent="book", needs=["b"], inputs={"city": "$goal.city", "price": "$b.ref"})
    b = Task(id="b", agent="book", needs=["a"], inputs={"city": "$goal.city", "price": "$a.ref"})
    wf = workflow([a, b])
    add_booking(wf, calls)
    _, _, rejected = await _run_rejected(orch, store, wf, calls)
    assert "dependency_cycle" in {p.code for p in rejected.problems}


async def test_planner_raising_fails_the_run_with_its_error(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    calls: list[str] = []
    wf = machines.Workflow("raising", goal=Goal)

    @wf.planner
    async def planner(goal: Goal, ctx: machines.AgentContext) -> Any:
        raise RuntimeError("the planning model is down")

    _with_search(wf, calls)
    _, log, rejected = await _run_rejected(orch, store, wf, calls)
    proposed = of(log, ev.PlanProposed)[0]
    assert proposed.plan is None
    assert proposed.error == "RuntimeError: the planning model is down"
    assert [p.code for p in rejected.problems] == ["planner_failed"]
    assert "the planning model is down" in rejected.reason


async def test_valid_plan_is_accepted_and_ready_tasks_dispatched(
    orch: machines.Orchestrator, store: EventStore
) -> None:
    calls: list[str] = []
    wf = workflow([SEARCH, BOOK])
    _with_search(wf, calls)
    add_booking(wf, calls)
    run = await orch.start(wf, Goal())
    assert run.status == "completed"
    assert calls == ["search", "book"]
    log = await read_log(store, run.run_id)
    accepted = of(log, ev.PlanAccepted)[0]
    assert [t.id for t in accepted.tasks] == ["search", "book"]
    book = of(log, ev.TaskDispatched, "book")[0]
    assert book.input == {"city": "Lisbon", "price": 100.0}
    assert BookIn.model_validate(book.input).price == 100.0

"""What a pydantic-ai agent returns is held to the ledgerflow contract, and the run's budget
bounds its model requests."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_helpers import (
    REQUEST_COST,
    Calls,
    FareIn,
    Goal,
    fare_agent,
    fare_workflow,
    read_log,
    steps_recorded,
    text_agent,
)

from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import EventStore
from ledgerflow.llm.pydantic_agents import run_agent
from ledgerflow.machines import AgentContext, Budget, Orchestrator, Workflow
from ledgerflow.machines import events as ev


async def test_an_output_that_breaks_the_contract_is_rejected_and_retried(
        tmp_path: Path, orch: Orchestrator, store: EventStore) -> None:
    # pydantic-ai accepts any price (its output type says float); ledgerflow's Fare says > 0.
    calls = Calls(tmp_path / "calls.txt")
    run = await orch.start(fare_workflow(fare_agent(calls, prices=[-3.0, 12.5])), Goal())

    assert run.status == "completed", run.reason
    assert run.outputs["fare"].model_dump() == {"city": "Lisbon", "price": 12.5}
    log = await read_log(store, run.run_id)
    (rejected,) = [e for e in log if isinstance(e, ev.OutputRejected)]
    assert "price" in rejected.reason
    # The retry is a new attempt: it asks the model again instead of being served the answer
    # that was rejected.
    assert calls.count("request 2") == 2
    attempts = [s.attempt for s in await steps_recorded(store, run.run_id)]
    assert attempts == [1, 1, 1, 2, 2, 2]


async def test_an_output_that_always_breaks_the_contract_never_reaches_the_outputs(
        tmp_path: Path, orch: Orchestrator) -> None:
    calls = Calls(tmp_path / "calls.txt")
    run = await orch.start(fare_workflow(fare_agent(calls, prices=[-3.0])), Goal())

    assert run.status != "completed"
    assert "fare" not in run.outputs
    assert calls.count("request 2") == 3  # one per attempt of FAST's three


def two_questions_workflow(calls: Calls, *, max_cost: float) -> Workflow:
    """One ledgerflow agent asking the text agent twice, under a cost budget."""
    agent = text_agent(calls)
    wf = Workflow("budgeted", goal=Goal, budget=Budget(max_cost=max_cost))

    @wf.planner
    async def plan(goal: Goal, ctx: AgentContext) -> Plan:
        return Plan(tasks=[Task(id="ask", agent="ask", inputs={"city": "$goal.city"})])

    @wf.agent(input=FareIn, output=FareIn, name="ask")
    async def ask(inp: FareIn, ctx: AgentContext) -> FareIn:
        await run_agent(ctx, agent, "First question.", prices={"fare-model": (1.0, 2.0)})
        await run_agent(ctx, agent, "Second question.", prices={"fare-model": (1.0, 2.0)})
        return inp

    return wf


async def test_a_spent_budget_stops_the_next_model_request(
        tmp_path: Path, orch: Orchestrator, store: EventStore) -> None:
    calls = Calls(tmp_path / "calls.txt")
    run = await orch.start(two_questions_workflow(calls, max_cost=REQUEST_COST), Goal())

    assert calls.lines() == ["request"]  # the second request was refused before it was made
    assert run.state.cost == pytest.approx(REQUEST_COST)
    (failed,) = [e for e in await read_log(store, run.run_id) if isinstance(e, ev.AgentFailed)]
    assert "BudgetExhaustedError" in failed.reason
    assert "'writer__model.request' of task 'ask' was not called" in failed.reason
    # A spent budget is permanent: escalated at once, not retried into more spending.
    assert run.status == "waiting"
    assert [s.name for s in await steps_recorded(store, run.run_id)] == ["writer__model.request"]


async def test_a_budget_with_room_lets_every_request_through(
        tmp_path: Path, orch: Orchestrator) -> None:
    calls = Calls(tmp_path / "calls.txt")
    run = await orch.start(two_questions_workflow(calls, max_cost=REQUEST_COST * 3), Goal())

    assert run.status == "completed", run.reason
    assert calls.lines() == ["request", "request"]
    assert run.state.cost == pytest.approx(2 * REQUEST_COST)

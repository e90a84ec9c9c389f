"""A pydantic-ai agent inside a ledgerflow run: each model request and tool call is a step.

The steps carry the request (the messages as JSON), the result (the model's
response as JSON), the usage and the audit detail; their tokens and cost are
charged to the run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessagesTypeAdapter, ModelResponse
from pydantic_ai.models.test import TestModel
from pydantic_helpers import (
    MODEL,
    REQUEST_COST,
    USAGE,
    Calls,
    FareIn,
    Goal,
    fare_agent,
    fare_workflow,
    read_log,
    steps_recorded,
    text_agent,
)

from ledgerflow.eventstore import EventStore
from ledgerflow.llm import PriceMissingError
from ledgerflow.llm.pydantic_agents import LedgerflowDurability, run_agent
from ledgerflow.machines import AgentContext, Orchestrator, PermanentError, Workflow
from ledgerflow.machines import events as ev

#: Persisted step names: a change strands every interrupted run, so it must be deliberate.
PINNED_NAMES = [
    "fares__model.request",
    "fares__function_toolset__<agent>.call_tool:lookup_fare",
    "fares__model.request",
]


async def test_model_requests_and_tool_calls_are_journaled_with_usage(
        tmp_path: Path, orch: Orchestrator, store: EventStore) -> None:
    calls = Calls(tmp_path / "calls.txt")
    run = await orch.start(fare_workflow(fare_agent(calls)), Goal())

    assert run.status == "completed", run.reason
    assert run.outputs["fare"].model_dump() == {"city": "Lisbon", "price": 12.5}
    steps = await steps_recorded(store, run.run_id)
    assert [s.name for s in steps] == PINNED_NAMES
    model_steps = [s for s in steps if s.detail["kind"] == "llm"]
    for step in model_steps:
        assert step.detail == {"kind": "llm", "model": MODEL, "input_tokens": 1_000,
                               "output_tokens": 200}
        assert step.tokens == USAGE.input_tokens + USAGE.output_tokens
        assert step.cost == pytest.approx(REQUEST_COST)
    tool = steps[1]
    assert tool.detail == {"kind": "tool", "tool": "lookup_fare"}
    assert (tool.tokens, tool.cost) == (0, 0.0)
    assert run.state.tokens == 2 * 1_200
    assert run.state.cost == pytest.approx(2 * REQUEST_COST)


async def test_a_model_step_records_the_messages_and_the_response_as_json(
        tmp_path: Path, orch: Orchestrator, store: EventStore) -> None:
    run = await orch.start(fare_workflow(fare_agent(Calls(tmp_path / "calls.txt"))), Goal())

    first, tool, second = await steps_recorded(store, run.run_id)
    (request,) = first.request["args"]
    messages = ModelMessagesTypeAdapter.validate_python(request["messages"])
    assert messages[0].parts[0].content == "What does a flight to Lisbon cost?"  # type: ignore[union-attr]
    # The clock's and the run's fresh ids are left out: a resumed attempt asks the same.
    assert "timestamp" not in request["messages"][0]
    assert "run_id" not in request["messages"][0]
    response = TypeAdapter(ModelResponse).validate_python(first.result)
    assert response.parts[0].tool_name == "lookup_fare"  # type: ignore[union-attr]
    assert tool.request["args"][0]["args"] == {"city": "Lisbon"}
    assert tool.result["result"] == {"city": "Lisbon", "base": 12.5}
    # The second request carries the first response and the tool's return.
    later = second.request["args"][0]["messages"]
    assert [m["kind"] for m in later] == ["request", "response", "request"]


async def test_a_side_effect_tool_is_durable_before_it_runs(
        tmp_path: Path, orch: Orchestrator, store: EventStore) -> None:
    calls = Calls(tmp_path / "calls.txt")
    run = await orch.start(fare_workflow(fare_agent(calls, tool_options={"side_effect": True})),
                           Goal())

    assert run.status == "completed", run.reason
    assert calls.count("tool lookup_fare") == 1
    log = await read_log(store, run.run_id)
    started = [i for i, e in enumerate(log) if isinstance(e, ev.StepStarted)]
    recorded = [i for i, e in enumerate(log)
                if isinstance(e, ev.StepRecorded) and e.detail.get("kind") == "tool"]
    assert len(started) == 1
    assert started[0] < recorded[0]
    assert log[started[0]].request["args"][0]["tool"] == "lookup_fare"  # type: ignore[attr-defined]
    assert [s.side_effect for s in await steps_recorded(store, run.run_id)] == [False, True, False]


async def test_an_agent_built_with_the_capability_journals_the_same_steps(
        tmp_path: Path, orch: Orchestrator, store: EventStore) -> None:
    calls = Calls(tmp_path / "calls.txt")
    agent = fare_agent(calls, built_durable=True)
    run = await orch.start(fare_workflow(agent), Goal())

    assert run.status == "completed", run.reason
    assert [s.name for s in await steps_recorded(store, run.run_id)] == PINNED_NAMES
    assert LedgerflowDurability.from_agent(agent) is not None


async def test_without_prices_requests_cost_nothing_but_their_tokens_count(
        tmp_path: Path, orch: Orchestrator, store: EventStore) -> None:
    agent = text_agent(Calls(tmp_path / "calls.txt"))
    wf = Workflow("free", goal=Goal)

    @wf.planner
    async def plan(goal: Goal, ctx: AgentContext) -> object:
        from ledgerflow.contracts import Plan, Task  # noqa: PLC0415
        return Plan(tasks=[Task(id="t", agent="write", inputs={"city": "$goal.city"})])

    @wf.agent(input=FareIn, output=FareIn, name="write")
    async def write(inp: FareIn, ctx: AgentContext) -> FareIn:
        return FareIn(city=await run_agent(ctx, agent, "Say ok."))

    run = await orch.start(wf, Goal())

    assert run.status == "completed", run.reason
    (step,) = await steps_recorded(store, run.run_id)
    assert (step.name, step.tokens, step.cost) == ("writer__model.request", 1_200, 0.0)
    assert run.state.tokens == 1_200


async def test_outside_a_run_the_agent_runs_as_usual_with_the_steps_called_directly() -> None:
    # A hand-built context (a unit test of a ledgerflow agent) has no journal.
    ctx = AgentContext(run_id="r", task_id="t", attempt=1, idempotency_key="k")
    agent = Agent(TestModel(custom_output_text="fine"), name="plain")

    assert await run_agent(ctx, agent, "hello") == "fine"
    assert (await agent.run("no ledgerflow here")).output == "fine"


async def test_an_unnamed_agent_is_refused_before_any_step() -> None:
    # Its name would be inferred from a variable name: renaming that would rename the steps.
    ctx = AgentContext(run_id="r", task_id="t", attempt=1, idempotency_key="k")
    unnamed = Agent(TestModel())

    with pytest.raises(PermanentError, match="needs a named pydantic-ai agent"):
        await run_agent(ctx, unnamed, "hello")
    assert unnamed.name is None


async def test_a_missing_price_fails_the_request_before_it_is_made(tmp_path: Path) -> None:
    calls = Calls(tmp_path / "calls.txt")
    ctx = AgentContext(run_id="r", task_id="t", attempt=1, idempotency_key="k")

    with pytest.raises(PriceMissingError, match="No price for model 'fare-model'"):
        await run_agent(ctx, text_agent(calls), "hi", prices={"gpt-4.1-mini": (0.4, 1.6)})
    assert calls.lines() == []

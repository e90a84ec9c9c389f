"""Tool calls of a pydantic-ai agent as ledgerflow steps: order, options, retries, nesting."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent, ModelRetry, RunContext
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_helpers import FAST, Calls, FareIn, Goal, steps_recorded

from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import EventStore
from ledgerflow.llm.pydantic_agents import run_agent
from ledgerflow.machines import AgentContext, Orchestrator, PermanentError, Workflow


def one_task_workflow(agent: Agent[None, str], name: str = "tools") -> Workflow:
    wf = Workflow(name, goal=Goal)

    @wf.planner
    async def plan(goal: Goal, ctx: AgentContext) -> Plan:
        return Plan(tasks=[Task(id="t", agent="ask", inputs={"city": "$goal.city"})])

    @wf.agent(input=FareIn, output=FareIn, name="ask")
    async def ask(inp: FareIn, ctx: AgentContext) -> FareIn:
        return FareIn(city=await run_agent(ctx, agent, f"About {inp.city}?"))

    return wf


def two_tools_at_once(calls: Calls, *, tool_metadata: Any = None) -> Agent[None, str]:
    """Request 1 asks for ``slow`` and ``fast`` in one response; request 2 answers."""

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("slow", {"n": 1}),
                                        ToolCallPart("fast", {"n": 2})])
        return ModelResponse(parts=[TextPart("done")])

    agent = Agent(FunctionModel(script), name="pair")

    @agent.tool_plain(metadata=tool_metadata)
    async def slow(n: int) -> int:
        await asyncio.sleep(0.05)  # would finish last if the calls raced
        calls.note("slow")
        return n

    @agent.tool_plain
    def fast(n: int) -> int:
        calls.note("fast")
        return n

    return agent


async def test_tool_calls_of_one_response_run_one_after_another_in_the_log_order(
        tmp_path: Path, orch: Orchestrator, store: EventStore) -> None:
    calls = Calls(tmp_path / "calls.txt")
    run = await orch.start(one_task_workflow(two_tools_at_once(calls)), Goal())

    assert run.status == "completed", run.reason
    # Racing calls would record in whichever order they finished; a resumed attempt is
    # served in recorded order, so the calls run in the model's order, one at a time.
    assert calls.lines() == ["slow", "fast"]
    assert [s.detail.get("tool") for s in await steps_recorded(store, run.run_id)] == [
        None, "slow", "fast", None]


async def test_a_tool_opted_out_runs_outside_any_step(
        tmp_path: Path, orch: Orchestrator, store: EventStore) -> None:
    calls = Calls(tmp_path / "calls.txt")
    agent = two_tools_at_once(calls, tool_metadata={"ledgerflow": False})
    run = await orch.start(one_task_workflow(agent), Goal())

    assert run.status == "completed", run.reason
    assert calls.lines() == ["slow", "fast"]
    assert [s.detail.get("tool") for s in await steps_recorded(store, run.run_id)] == [
        None, "fast", None]


async def test_tool_options_that_mean_nothing_are_refused_naming_the_tool(tmp_path: Path) -> None:
    agent = two_tools_at_once(Calls(tmp_path / "calls.txt"),
                              tool_metadata={"ledgerflow": {"side_efect": True}})
    ctx = AgentContext(run_id="r", task_id="t", attempt=1, idempotency_key="k")

    with pytest.raises(PermanentError, match="Tool 'slow' has metadata 'ledgerflow'"):
        await run_agent(ctx, agent, "hi")


async def test_a_tool_asking_the_model_to_retry_is_journaled_as_its_result(
        tmp_path: Path, orch: Orchestrator, store: EventStore) -> None:
    calls = Calls(tmp_path / "calls.txt")

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) < 5:
            return ModelResponse(parts=[ToolCallPart("check", {"code": len(messages)})])
        return ModelResponse(parts=[TextPart("checked")])

    agent = Agent(FunctionModel(script), name="checker")

    @agent.tool_plain(retries=3)
    def check(code: int) -> str:
        calls.note(f"check {code}")
        if code == 1:
            raise ModelRetry("Code 1 is not a code; try again.")
        return "valid"

    run = await orch.start(one_task_workflow(agent), Goal())

    assert run.status == "completed", run.reason
    steps = await steps_recorded(store, run.run_id)
    retried = steps[1]
    assert retried.error_type == ""  # a retry request is a value the model is shown
    assert retried.result["kind"] == "model_retry"
    assert calls.lines() == ["check 1", "check 3"]


@pytest.mark.parametrize("through_run_agent", [False, True], ids=["agent.run", "run_agent"])
async def test_an_agent_run_inside_a_tool_belongs_to_that_tools_step(
        through_run_agent: bool, store: EventStore) -> None:
    inner = Agent(TestModel(custom_output_text="inner answer"), name="inner")

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("delegate", {"question": "why?"})])
        return ModelResponse(parts=[TextPart("outer answer")])

    outer = Agent(FunctionModel(script), name="outer", deps_type=AgentContext)

    @outer.tool
    async def delegate(run: RunContext[AgentContext], question: str) -> str:
        if through_run_agent:  # the same ledgerflow ctx: its steps would nest in this one
            return await run_agent(run.deps, inner, question)
        return (await inner.run(question)).output

    wf = Workflow("nested", goal=Goal)

    @wf.planner
    async def plan(goal: Goal, ctx: AgentContext) -> Plan:
        return Plan(tasks=[Task(id="t", agent="ask", inputs={"city": "$goal.city"})])

    @wf.agent(input=FareIn, output=FareIn, name="ask")
    async def ask(inp: FareIn, ctx: AgentContext) -> FareIn:
        return FareIn(city=await run_agent(ctx, outer, "Delegate.", deps=ctx))

    run = await Orchestrator(store).start(wf, Goal())

    assert run.status == "completed", run.reason
    steps = await steps_recorded(store, run.run_id)
    assert [s.name for s in steps] == [
        "outer__model.request", "outer__function_toolset__<agent>.call_tool:delegate",
        "outer__model.request"]
    assert steps[1].result["result"] == "inner answer"


async def test_a_tool_sees_the_same_run_id_when_the_task_runs_again(
        tmp_path: Path, store: EventStore) -> None:
    calls = Calls(tmp_path / "calls.txt")

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if isinstance(messages[-1].parts[-1], ToolReturnPart):
            return ModelResponse(parts=[TextPart("noted")])
        return ModelResponse(parts=[ToolCallPart("note_run", {})])

    agent: Agent[None, str] = Agent(FunctionModel(script), name="noter")

    @agent.tool
    def note_run(run: RunContext[None]) -> str:
        calls.note(f"run {run.run_id}")  # say, the idempotency key of an API call
        return "ok"

    wf = Workflow("again", goal=Goal)

    @wf.planner
    async def plan(goal: Goal, ctx: AgentContext) -> Plan:
        return Plan(tasks=[Task(id="t", agent="ask", inputs={"city": "$goal.city"})])

    @wf.agent(input=FareIn, output=FareIn, name="ask", retry=FAST)
    async def ask(inp: FareIn, ctx: AgentContext) -> FareIn:
        first = await run_agent(ctx, agent, "Note it.")
        await run_agent(ctx, agent, "Note it again.")
        if ctx.attempt == 1:
            raise ConnectionError("flaky upstream after the agent ran")
        return FareIn(city=first)

    run = await Orchestrator(store).start(wf, Goal())

    assert run.status == "completed", run.reason
    first_attempt, second_attempt = calls.lines()[:2], calls.lines()[2:]
    assert first_attempt == second_attempt
    assert len(set(first_attempt)) == 2  # two runs in one call: two ids

"""Values the log cannot hold: recorded rejections for outputs, clear refusals for inputs.

Before: an output nested 10^5 deep, an int over 4,300 digits or a lone
surrogate escaped as a raw RecursionError / ValueError / UnicodeEncodeError;
the run stayed in ``planning`` with one event and every resume crashed the
same way. A plan over the event size limit stranded it with
EventTooLargeError. NaN was logged as null while the decision saw NaN.
Every test here uses a real SQLite file.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from machines_helpers import FAST, Goal, SearchIn, of, read_log, workflow
from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import EventStore, NewEvent, open_store
from ledgerflow.machines import (
    AgentContext,
    Orchestrator,
    PermanentError,
    ResolutionError,
    Workflow,
    encode_event,
)
from ledgerflow.machines import events as ev
from ledgerflow.machines.errors import UnloggableValueError
from ledgerflow.replay.verify import verify_run


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


BAD_VALUES = {
    "nested 10^5 deep": (_deep(100_000), "nested more than 200 levels"),
    "an int over 4,300 digits": (10**4400, "integer of more than"),
    "a lone surrogate": ("\ud800", "lone surrogate"),
    "NaN": (math.nan, "NaN"),
    "Infinity": (math.inf, "Infinity"),
}
IDS = list(BAD_VALUES)


class _Crash(BaseException):
    """Ends the drive the way 0.1's escaping errors did."""


class AnyOut(BaseModel):
    data: Any = None


Behave = Callable[[AgentContext], Awaitable[Any]]


def _agent_workflow(value: Any, behave: Behave | None = None) -> Workflow:
    """Agent ``a`` returns ``value`` on its first attempt, then a fine output."""
    wf = workflow([Task(id="a", agent="a", inputs={"city": "$goal.city"})])

    async def first_bad(ctx: AgentContext) -> Any:
        return {"data": value if ctx.attempt == 1 else "fine"}

    act = behave or first_bad

    @wf.agent(input=SearchIn, output=AnyOut, name="a", retry=FAST)
    async def agent(inp: SearchIn, ctx: AgentContext) -> Any:
        return await act(ctx)

    return wf


def _planner_workflow(value: Any) -> Workflow:
    wf = Workflow("test", goal=Goal)

    @wf.planner
    async def planner(goal: Goal, ctx: AgentContext) -> Any:
        return {"tasks": [{"id": "a", "agent": "a", "inputs": {"city": value}}]}

    @wf.agent(input=SearchIn, output=AnyOut, name="a")
    async def agent(inp: SearchIn, ctx: AgentContext) -> AnyOut:
        return AnyOut()

    return wf


@pytest.mark.parametrize("case", IDS, ids=IDS)
async def test_deep_agent_output_is_a_recorded_rejection_not_a_crash(
    store: EventStore, case: str
) -> None:
    """Every unloggable output (deep, long int, surrogate, NaN, inf) is a retried failure."""
    value, problem = BAD_VALUES[case]
    wf = _agent_workflow(value)
    run = await Orchestrator(store).start(wf, Goal())

    assert run.status == "completed", run.reason
    log = await read_log(store, run.run_id)
    [failed] = of(log, ev.AgentFailed)
    assert failed.error_type == "ledgerflow.UnloggableOutput"
    assert problem in failed.message
    assert of(log, ev.RetryScheduled)
    assert (await verify_run(store, run.run_id, workflow=wf)).ok


@pytest.mark.parametrize("case", IDS, ids=IDS)
async def test_deep_planner_output_is_a_recorded_rejection_not_a_crash(
    store: EventStore, case: str
) -> None:
    value, problem = BAD_VALUES[case]
    wf = _planner_workflow(value)
    run = await Orchestrator(store).start(wf, Goal())

    assert run.status == "failed"
    log = await read_log(store, run.run_id)
    [proposed] = of(log, ev.PlanProposed)
    assert proposed.error is not None
    assert problem in proposed.error
    [rejected] = of(log, ev.PlanRejected)
    assert rejected.problems[0].code == "planner_failed"
    assert (await verify_run(store, run.run_id, workflow=wf)).ok


async def test_plan_over_the_event_size_limit_is_rejected_not_stranded(
    store: EventStore,
) -> None:
    """20,000 tasks at the default 1 MiB: one PlanRejected, not an EventTooLargeError."""
    wf = workflow([Task(id=f"t{i}", agent="a", inputs={"city": "$goal.city"})
                   for i in range(20_000)])

    @wf.agent(input=SearchIn, output=AnyOut, name="a")
    async def agent(inp: SearchIn, ctx: AgentContext) -> AnyOut:
        return AnyOut()

    run = await Orchestrator(store).start(wf, Goal())

    assert run.status == "failed"
    log = await read_log(store, run.run_id)
    assert [e.type for e in log] == ["RunStarted", "PlanProposed", "PlanRejected"]
    [proposed] = of(log, ev.PlanProposed)
    assert proposed.error is not None
    assert "over the" in proposed.error
    assert "limit of one logged event" in proposed.error


async def test_resume_of_a_run_stranded_by_0_1_records_the_rejection(store: EventStore) -> None:
    """0.1 left such runs in planning with only their RunStarted; resume now settles them."""
    wf = _planner_workflow(_deep(100_000))
    started = ev.RunStarted(
        workflow="test", goal={"city": "Lisbon", "passengers": 2},
        started_at="2026-01-01T00:00:00+00:00", max_concurrency=1, max_event_bytes=1 << 20,
        src="created", dst="planning", reason="Goal submitted to workflow 'test'.")
    await store.append("stranded", [NewEvent(type="RunStarted", data=encode_event(started))],
                       expected_seq=0, status="planning", label="test")

    run = await Orchestrator(store).resume("stranded", wf)

    assert run.status == "failed"
    log = await read_log(store, "stranded")
    assert [e.type for e in log] == ["RunStarted", "RunResumed", "PlanProposed", "PlanRejected"]


async def test_resume_of_an_agent_output_stranded_by_0_1_records_the_rejection(
    store: EventStore,
) -> None:
    """0.1 crashed after logging the dispatch; the re-dispatch's bad output is recorded."""
    calls: list[int] = []

    async def crash_first(ctx: AgentContext) -> Any:
        calls.append(ctx.attempt)
        if len(calls) == 1:
            raise _Crash  # stands in for the crash 0.1 had here
        return {"data": _deep(100_000) if len(calls) == 2 else "fine"}

    wf = _agent_workflow(None, crash_first)
    with pytest.raises(_Crash):
        await Orchestrator(store, durable_dispatch=True).start(wf, Goal(), run_id="r1")
    run = await Orchestrator(store).resume("r1", wf)

    assert run.status == "completed", run.reason
    log = await read_log(store, "r1")
    assert [f.error_type for f in of(log, ev.AgentFailed)] == ["ledgerflow.UnloggableOutput"]


@pytest.mark.parametrize("case", IDS, ids=IDS)
async def test_unloggable_goal_is_refused_with_one_clear_error(
    tmp_path: Path, case: str
) -> None:
    value, problem = BAD_VALUES[case]

    class AnyGoal(BaseModel):
        city: Any = "Lisbon"

    wf = Workflow("test", goal=AnyGoal)

    @wf.planner
    async def planner(goal: AnyGoal, ctx: AgentContext) -> Plan:
        return Plan(tasks=[])

    async with open_store(tmp_path / "goal.db") as store:
        with pytest.raises(UnloggableValueError) as caught:
            await Orchestrator(store).start(wf, {"city": value})
        assert await store.runs() == []
    message = str(caught.value)
    assert message.startswith("The goal cannot be recorded: ")
    assert problem in message
    assert "\n" not in message
    assert caught.value.what == "the goal"


@pytest.mark.parametrize("bad", [math.nan, math.inf, _deep(100_000), "\ud800"],
                         ids=["NaN", "Infinity", "deep", "surrogate"])
async def test_unloggable_resolution_is_refused_and_appends_nothing(
    store: EventStore, bad: Any
) -> None:
    async def permanent(ctx: AgentContext) -> Any:
        raise PermanentError("nope")

    wf = _agent_workflow(None, permanent)
    run = await Orchestrator(store).start(wf, Goal())
    assert run.status == "waiting"
    before = await store.last_seq(run.run_id)

    with pytest.raises(ResolutionError, match="cannot be recorded"):
        await Orchestrator(store).resolve(run.run_id, "a", output={"data": bad})

    assert await store.last_seq(run.run_id) == before


async def test_agent_error_with_an_unprintable_message_is_recorded(store: EventStore) -> None:
    """An exception whose str() fails, or holds a lone surrogate, is still one AgentFailed."""
    messages = iter([ValueError(10**5000), ValueError("bad \ud800 text")])

    async def raises(ctx: AgentContext) -> Any:
        error = next(messages, None)
        if error is not None:
            raise error
        return AnyOut(data="ok")

    wf = _agent_workflow(None, raises)
    run = await Orchestrator(store).start(wf, Goal())

    assert run.status == "completed", run.reason
    failed = of(await read_log(store, run.run_id), ev.AgentFailed)
    assert "cannot be shown" in failed[0].message
    assert failed[1].message == "bad \\ud800 text"


class IntsOut(BaseModel):
    xs: list[int]


async def test_output_with_60000_invalid_items_is_rejected_not_stranded(
    store: EventStore,
) -> None:
    """60,000 validation errors would make an 11 MB OutputRejected; the log keeps what fits."""
    wf = workflow([Task(id="a", agent="a", inputs={"city": "$goal.city"})])

    @wf.agent(input=SearchIn, output=IntsOut, name="a", retry=FAST)
    async def agent(inp: SearchIn, ctx: AgentContext) -> dict[str, Any]:
        return {"xs": ["x"] * 60_000 if ctx.attempt == 1 else [1]}

    run = await Orchestrator(store).start(wf, Goal())

    assert run.status == "completed", run.reason
    [rejected] = of(await read_log(store, run.run_id), ev.OutputRejected)
    assert rejected.errors[-1].startswith("... and ")
    assert len(rejected.errors) < 60_000
    assert len(rejected.reason) < 1_000
    assert (await verify_run(store, run.run_id, workflow=wf)).ok


async def test_plan_with_thousands_of_problems_is_rejected_not_stranded(
    store: EventStore,
) -> None:
    """Each of 12,000 tasks names an unknown agent: one PlanRejected that fits in the log."""
    wf = workflow([Task(id=f"t{i}", agent=f"nobody_{i}") for i in range(12_000)])
    run = await Orchestrator(store).start(wf, Goal())

    assert run.status == "failed"
    [rejected] = of(await read_log(store, run.run_id), ev.PlanRejected)
    assert rejected.problems[-1].code == "more_problems"
    assert (await verify_run(store, run.run_id, workflow=wf)).ok

"""NaN, Infinity and over-deep values hidden where a JSON dump would mask them.

Before: a pydantic model's JSON dump turned NaN in an ``Any`` or
``dict[str, Any]`` field into ``null``, so a goal was logged as
``{'ratio': None}``, an agent's NaN output completed the run and a resolution
with Infinity was accepted; NaN in a set or a dataclass was not looked for;
and the depth limit was measured on the original value, so a dataclass
nested 900 deep reached the log 901 levels deep (and ``decide`` on that state
hit RecursionError). Real SQLite files throughout.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from machines_helpers import FAST, Goal, SearchIn, of, read_log, workflow
from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import EventStore
from ledgerflow.machines import (
    AgentContext,
    Orchestrator,
    PermanentError,
    ResolutionError,
    Workflow,
    decide,
)
from ledgerflow.machines import events as ev
from ledgerflow.machines.errors import UnloggableValueError
from ledgerflow.machines.values import MAX_DEPTH, encode_loggable
from ledgerflow.replay.verify import verify_run


class AnyOut(BaseModel):
    data: Any = None


class FloatOut(BaseModel):
    x: float


@dataclasses.dataclass
class Box:
    inner: Any


def _boxes(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = Box(value)
    return value


HIDDEN_NAN = {
    "NaN in a dict of a model": lambda: AnyOut(data={"score": math.nan}),
    "Infinity in a model": lambda: AnyOut(data=math.inf),
    "NaN in a set": lambda: {"data": {math.nan}},
    "NaN in a dataclass": lambda: {"data": Box(math.nan)},
    "NaN in a model in a model": lambda: AnyOut(data=AnyOut(data=[math.nan])),
}
IDS = list(HIDDEN_NAN)


def _agent(first: Any) -> Workflow:
    wf = workflow([Task(id="a", agent="a", inputs={"city": "$goal.city"})])

    @wf.agent(input=SearchIn, output=AnyOut, name="a", retry=FAST)
    async def agent(inp: SearchIn, ctx: AgentContext) -> Any:
        return first() if ctx.attempt == 1 else {"data": "fine"}

    return wf


@pytest.mark.parametrize("case", IDS, ids=IDS)
async def test_nan_hidden_in_an_agent_output_is_a_recorded_rejection_not_null(
    store: EventStore, case: str
) -> None:
    wf = _agent(HIDDEN_NAN[case])
    run = await Orchestrator(store).start(wf, Goal())

    assert run.status == "completed", run.reason
    log = await read_log(store, run.run_id)
    [failed] = of(log, ev.AgentFailed)
    assert failed.error_type == "ledgerflow.UnloggableOutput"
    assert "NaN" in failed.message or "Infinity" in failed.message
    [accepted] = of(log, ev.OutputAccepted)
    assert accepted.output == {"data": "fine"}
    assert (await verify_run(store, run.run_id, workflow=wf)).ok


async def test_output_text_parsed_to_nan_is_rejected_not_logged_as_null(
    store: EventStore,
) -> None:
    """pydantic parses "nan" and 1e400 into a float field; the log could only say null."""
    wf = workflow([Task(id="a", agent="a", inputs={"city": "$goal.city"})])
    answers = iter(['{"x": 1e400}', {"x": "nan"}, {"x": 2.5}])

    @wf.agent(input=SearchIn, output=FloatOut, name="a", retry=FAST)
    async def agent(inp: SearchIn, ctx: AgentContext) -> Any:
        return next(answers)

    run = await Orchestrator(store).start(wf, Goal())

    assert run.status == "completed", run.reason
    rejected = of(await read_log(store, run.run_id), ev.OutputRejected)
    assert [r.errors[0].split(":")[0] for r in rejected] == ["x", "x"]
    assert "Infinity cannot be recorded" in rejected[0].errors[0]
    assert "NaN cannot be recorded" in rejected[1].errors[0]
    assert run.outputs["a"] == FloatOut(x=2.5)
    assert (await verify_run(store, run.run_id, workflow=wf)).ok


class AnyGoal(BaseModel):
    city: str = "Lisbon"
    extra: Any = None


def _goal_workflow() -> Workflow:
    wf = Workflow("goal-nan", goal=AnyGoal)

    @wf.planner
    async def planner(goal: AnyGoal, ctx: AgentContext) -> Plan:
        return Plan(tasks=[])

    return wf


@pytest.mark.parametrize("extra", [{"ratio": math.nan}, {math.inf}, Box(-math.inf)],
                         ids=["dict", "set", "dataclass"])
async def test_nan_in_a_goal_models_any_field_is_refused_not_logged_as_null(
    store: EventStore, extra: Any
) -> None:
    with pytest.raises(UnloggableValueError, match="The goal cannot be recorded: it holds"):
        await Orchestrator(store).start(_goal_workflow(), AnyGoal(extra=extra))
    assert await store.runs() == []


async def test_infinity_in_a_resolution_model_is_refused_and_appends_nothing(
    store: EventStore,
) -> None:
    wf = workflow([Task(id="a", agent="a", inputs={"city": "$goal.city"})])

    @wf.agent(input=SearchIn, output=AnyOut, name="a", retry=FAST)
    async def agent(inp: SearchIn, ctx: AgentContext) -> Any:
        raise PermanentError("no")

    run = await Orchestrator(store).start(wf, Goal())
    assert run.status == "waiting"
    before = await store.last_seq(run.run_id)

    with pytest.raises(ResolutionError, match="Infinity"):
        await Orchestrator(store).resolve(run.run_id, "a", output=AnyOut(data=math.inf))
    assert await store.last_seq(run.run_id) == before


async def test_output_nested_too_deep_only_as_logged_is_rejected_and_decide_survives(
    store: EventStore,
) -> None:
    """Dataclasses nest one level per box in the log, not in the original's dicts."""
    wf = workflow([Task(id="a", agent="a", inputs={"city": "$goal.city"})])

    @wf.agent(input=SearchIn, output=AnyOut, name="a", retry=FAST)
    async def agent(inp: SearchIn, ctx: AgentContext) -> Any:
        return {"data": _boxes(900)}

    run = await Orchestrator(store).start(wf, Goal())

    assert run.status == "waiting", run.reason
    log = await read_log(store, run.run_id)
    failed = of(log, ev.AgentFailed)
    assert all(f"nested more than {MAX_DEPTH} levels deep" in f.message for f in failed)
    [escalated] = of(log, ev.TaskEscalated)
    assert escalated.candidate is None
    state = await Orchestrator(store).state(run.run_id)
    [resumed, *_] = decide(state, ev.RunResumed(by="x"), wf)
    assert isinstance(resumed, ev.RunResumed)
    assert (await verify_run(store, run.run_id, workflow=wf)).ok


def test_depth_is_measured_on_the_value_as_logged() -> None:
    encode_loggable({"data": _boxes(MAX_DEPTH - 2)})
    with pytest.raises(UnloggableValueError, match="nested more than"):
        encode_loggable({"data": _boxes(MAX_DEPTH)})


async def test_deep_goal_model_is_refused_as_too_deep_not_as_a_circular_reference(
    store: EventStore,
) -> None:
    value: Any = 1
    for _ in range(10_000):
        value = AnyOut(data=value)
    with pytest.raises(UnloggableValueError, match="nested more than") as caught:
        await Orchestrator(store).start(_goal_workflow(), AnyGoal(extra=value))
    assert "Circular" not in str(caught.value)

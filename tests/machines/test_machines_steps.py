"""Journaled steps (``ctx.step``): recorded in order, served after a crash, bounded by budget.

The article's stories: a retry after a crash pays for the same model call
again and repeats the same tool call; a side effect whose outcome is unknown
is done twice; agent A retrying agent B runs up a bill nobody bounded.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import planner_child
import pytest
import steps_child
from machines_helpers import FAST, Goal, SearchIn, SearchOut, read_log, workflow

from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import EventStore
from ledgerflow.machines import (
    AgentContext,
    Budget,
    Metered,
    Orchestrator,
    Recording,
    RecordingMissError,
    RetryPolicy,
    Workflow,
    steps_of,
)
from ledgerflow.machines import events as ev
from ledgerflow.replay import verify_run

CHILD = Path(steps_child.__file__)
ONE = [Task(id="search", agent="search", inputs={"city": "$goal.city"})]


def steps_in(log: list[ev.Event]) -> list[ev.StepRecorded]:
    return [e for e in log if isinstance(e, ev.StepRecorded)]


def run_child(db: Path, run_id: str, calls: Path, kill_at: str) -> int:
    done = subprocess.run([sys.executable, str(CHILD), str(db), run_id, str(calls), kill_at],
                          check=False, timeout=60, capture_output=True)
    return done.returncode


def run_planner_child(db: Path, run_id: str, calls: Path) -> int:
    child = Path(planner_child.__file__)
    done = subprocess.run([sys.executable, str(child), str(db), run_id, str(calls)],
                          check=False, timeout=60, capture_output=True)
    return done.returncode


def lines(calls: Path) -> list[str]:
    return calls.read_text(encoding="utf-8").split() if calls.exists() else []


async def test_steps_are_recorded_in_order_with_their_usage(store: EventStore) -> None:
    wf = workflow(ONE)

    @wf.agent(input=SearchIn, output=SearchOut, name="search")
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        first = await ctx.step("model", lambda city: Metered(
            {"price": 120.0}, tokens=50, cost=0.002, detail={"kind": "llm", "model": "m1"}),
            inp.city)
        fare = await ctx.step("fares", _fare, first["price"], currency="EUR")
        return SearchOut(price=fare)

    run = await Orchestrator(store).start(wf, Goal())
    assert run.status == "completed"
    assert run.outputs["search"] == SearchOut(price=130.0)
    steps = steps_in(await read_log(store, run.run_id))
    assert [(s.index, s.name) for s in steps] == [(0, "model"), (1, "fares")]
    assert steps[0].request == {"args": ["Lisbon"], "kwargs": {}}
    assert steps[0].result == {"price": 120.0}
    assert steps[0].detail == {"kind": "llm", "model": "m1"}
    assert steps[1].request == {"args": [120.0], "kwargs": {"currency": "EUR"}}
    assert steps[1].result == 130.0
    assert run.state is not None
    assert (run.state.tokens, run.state.cost) == (50, 0.002)


async def _fare(price: float, *, currency: str) -> float:
    assert currency == "EUR"
    return price + 10


# The kill point, then how often each step's function was entered in all.
# A call cut off before its result was durable is made again (it recorded
# nothing); a call whose result is in the log never is.
KILLS = {
    "ask:done": {"ask:in": 2, "charge:in": 1, "confirm:in": 1},
    "confirm:in": {"ask:in": 1, "charge:in": 1, "confirm:in": 2},
    "confirm:done": {"ask:in": 1, "charge:in": 1, "confirm:in": 2},
}


@pytest.mark.parametrize("kill_at", list(KILLS))
async def test_side_effect_not_repeated_after_crash(
    tmp_path: Path, store: EventStore, kill_at: str
) -> None:
    db, calls = tmp_path / "runs.db", tmp_path / "calls.txt"
    assert run_child(db, "r1", calls, kill_at) == -9
    run = await Orchestrator(store).resume("r1", steps_child.wf)
    assert run.status == "completed", run.reason
    done = lines(calls)
    assert {line: done.count(line) for line in KILLS[kill_at]} == KILLS[kill_at]
    assert run.outputs["pay"] == steps_child.Out(
        answer="42 to life", receipt="R-42", confirmed=True)
    assert (await verify_run(store, "r1", workflow=steps_child.wf)).ok


@pytest.mark.parametrize("kill_at", ["charge:in", "charge:done"])
async def test_side_effect_with_unknown_outcome_is_escalated_never_repeated(
    tmp_path: Path, store: EventStore, kill_at: str
) -> None:
    # Killed while the side effect ran, or after it acted but before its
    # result was durable: nobody knows whether it acted, so a person is asked.
    db, calls = tmp_path / "runs.db", tmp_path / "calls.txt"
    assert run_child(db, "r1", calls, kill_at) == -9
    run = await Orchestrator(store).resume("r1", steps_child.wf)
    assert run.status == "waiting"
    escalation = run.state.escalations["pay"]
    assert escalation.kind == "outcome_unknown"
    assert "'charge'" in escalation.reason
    assert lines(calls).count("charge:in") == 1
    assert lines(calls).count("confirm:in") == 0


async def test_retry_after_a_failure_starts_fresh_but_never_repeats_a_done_side_effect(
    store: EventStore,
) -> None:
    wf = workflow(ONE)
    calls: list[str] = []

    def model(attempt: int) -> Metered:
        calls.append("model")
        return Metered({"price": 99.0}, tokens=10)

    def book(city: str) -> str:
        calls.append("book")
        return f"B-{city}"

    @wf.agent(input=SearchIn, output=SearchOut, name="search", retry=FAST)
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        answer = await ctx.step("model", model, ctx.attempt)
        await ctx.step("book", book, inp.city, side_effect=True)
        if ctx.attempt == 1:
            raise ConnectionError("the fare service dropped the line")
        return SearchOut(price=answer["price"])

    run = await Orchestrator(store).start(wf, Goal())
    assert run.status == "completed"
    assert calls == ["model", "book", "model"]
    book_steps = [s for s in steps_in(await read_log(store, run.run_id)) if s.name == "book"]
    assert [s.attempt for s in book_steps] == [1, 2]
    assert book_steps[1].detail["served_from_attempt"] == 1


async def test_step_refused_once_the_cost_budget_is_spent(store: EventStore) -> None:
    wf = workflow(ONE, budget=Budget(max_cost=0.05))
    calls: list[int] = []

    def model(n: int) -> Metered:
        calls.append(n)
        return Metered(n, cost=0.03)

    @wf.agent(input=SearchIn, output=SearchOut, name="search", retry=FAST)
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        for n in range(10):
            await ctx.step("model", model, n)
        return SearchOut(price=1.0)

    run = await Orchestrator(store).start(wf, Goal())
    assert calls == [0, 1]  # 0.06 spent after two: the third is refused, not called
    assert run.status == "waiting"
    escalation = run.state.escalations["search"]
    assert escalation.kind == "permanent_error"
    assert "cost budget of 0.05 is spent" in escalation.reason
    assert run.state.cost == pytest.approx(0.06)


async def test_nested_and_cascading_retries_are_bounded_by_one_run_budget(
    store: EventStore,
) -> None:
    # Agent A asks "agent B" (a step whose function makes its own model
    # steps) again and again until it works; it never does. A second task
    # does the same at once. One run-wide budget stops them all.
    plan = [Task(id=f"t{i}", agent="search", inputs={"city": "$goal.city"}) for i in range(2)]
    wf = workflow(plan, budget=Budget(max_cost=0.1))
    calls: list[str] = []

    def model(task: str) -> Metered:
        calls.append(task)
        return Metered({"valid": False}, cost=0.02)

    async def agent_b(ctx: AgentContext) -> dict[str, Any]:
        first = await ctx.step("b.model", model, ctx.task_id)
        await ctx.step("b.model", model, ctx.task_id)
        return {"valid": first["valid"]}

    @wf.agent(input=SearchIn, output=SearchOut, name="search",
              retry=RetryPolicy(max_attempts=5, backoff_s=0.0, jitter=0.0))
    async def agent_a(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        while True:
            await ctx.step("ask_b", lambda: agent_b(ctx))

    run = await Orchestrator(store).start(wf, Goal())
    assert run.status == "waiting"
    # 0.1 buys five calls; each of the two concurrent attempts may have one
    # call in flight when the budget runs out, never more.
    assert 5 <= len(calls) <= 6
    assert run.state is not None
    assert run.state.cost == pytest.approx(0.02 * len(calls))
    log = await read_log(store, run.run_id)
    nested = [s for s in steps_in(log) if s.name == "ask_b" and not s.error_type]
    assert nested
    assert all(s.nested == 2 for s in nested)
    views = [v for v in steps_of(enumerate(log, start=1)) if v.name == "ask_b"]
    assert {v.nested for v in views if not v.error_type} == {2}
    reasons = [e.reason for e in run.state.escalations.values()]
    assert all("cost budget of 0.1 is spent" in r for r in reasons), reasons


async def test_side_effect_step_cut_off_by_a_timeout_is_escalated_not_retried(
    store: EventStore,
) -> None:
    wf = workflow(ONE)
    calls: list[str] = []

    async def send() -> None:
        calls.append("send")
        await asyncio.sleep(30)

    @wf.agent(input=SearchIn, output=SearchOut, name="search", retry=FAST, timeout_s=0.2)
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        await ctx.step("send", send, side_effect=True)
        return SearchOut(price=1.0)

    run = await Orchestrator(store).start(wf, Goal())
    assert run.status == "waiting"
    assert run.state.escalations["search"].kind == "outcome_unknown"
    assert calls == ["send"]


async def test_offline_run_answers_every_step_from_the_recording(store: EventStore) -> None:
    wf = workflow(ONE, name="offline")
    calls: list[str] = []

    def model(prompt: str) -> Metered:
        calls.append(prompt)
        return Metered({"price": 77.0}, tokens=9, cost=0.01)

    prompt = {"value": "Price a trip to {city}."}

    @wf.agent(input=SearchIn, output=SearchOut, name="search", retry=FAST)
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        answer = await ctx.step("model", model, prompt["value"].format(city=inp.city))
        return SearchOut(price=answer["price"])

    recorded = await Orchestrator(store).start(wf, Goal())
    assert calls == ["Price a trip to Lisbon."]
    rec = await Recording.from_run(store, recorded.run_id)
    replayed = await Orchestrator(store, recording=rec).start(wf, Goal())
    assert replayed.status == "completed"
    assert replayed.outputs == recorded.outputs
    assert calls == ["Price a trip to Lisbon."]  # nothing called again
    assert replayed.state is not None
    assert replayed.state.cost == pytest.approx(0.01)
    rec.check()

    prompt["value"] = "Quote a trip to {city}, cheapest fare."
    changed = await Orchestrator(store, recording=rec).start(wf, Goal())
    assert changed.status == "waiting"
    assert calls == ["Price a trip to Lisbon."]
    with pytest.raises(RecordingMissError) as missed:
        rec.check()
    assert '-  "Price a trip to Lisbon."' in missed.value.difference
    assert '+  "Quote a trip to Lisbon, cheapest fare."' in missed.value.difference
    assert "RecordingMissError" in changed.state.escalations["search"].reason


async def test_steps_of_joins_a_side_effects_start_and_outcome(
    tmp_path: Path, store: EventStore
) -> None:
    db, calls = tmp_path / "runs.db", tmp_path / "calls.txt"
    assert run_child(db, "r1", calls, "-") == 0
    log = await read_log(store, "r1")
    views = steps_of(enumerate(log, start=1))
    assert [(v.name, v.side_effect, v.outcome_unknown) for v in views] == [
        ("ask", False, False), ("charge", True, False), ("confirm", False, False)]
    assert views[1].request == {"args": [str(calls), "-", 42], "kwargs": {}}
    assert views[1].result == {"receipt": "R-42"}


async def test_a_step_outside_any_run_just_calls_its_function() -> None:
    ctx = AgentContext(run_id="r", task_id="t", attempt=1, idempotency_key="k")
    assert await ctx.step("add", lambda a, b: Metered(a + b, tokens=3), 2, 3) == 5
    assert ctx.time_left() is None


async def test_a_step_whose_result_cannot_be_logged_fails_clearly(store: EventStore) -> None:
    wf = workflow(ONE)

    @wf.agent(input=SearchIn, output=SearchOut, name="search",
              retry=RetryPolicy(max_attempts=1))
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        await ctx.step("nan", lambda: float("nan"))
        return SearchOut(price=1.0)

    run = await Orchestrator(store).start(wf, Goal())
    assert run.status == "waiting"
    step = steps_in(await read_log(store, run.run_id))[0]
    assert step.error_type == "ledgerflow.UnloggableValueError"
    assert "NaN" in step.message


async def test_planner_model_call_not_repeated_after_crash(
    tmp_path: Path, store: EventStore
) -> None:
    # An LLM planner: the decomposition it paid for is in the log, so the
    # planner asked again on resume is served it instead of calling again.
    calls = tmp_path / "calls.txt"
    assert run_planner_child(tmp_path / "runs.db", "r1", calls) == -9
    run = await Orchestrator(store).resume("r1", planner_child.wf)
    assert run.status == "completed", run.reason
    assert sorted(run.outputs) == ["fares", "hotels"]
    assert lines(calls) == ["decompose"]
    assert run.state is not None
    assert run.state.cost == pytest.approx(0.002)
    planner_steps = [s for s in steps_in(await read_log(store, "r1")) if s.task_id == "$planner"]
    assert [s.name for s in planner_steps] == ["decompose"]
    assert (await verify_run(store, "r1", workflow=planner_child.wf)).ok


async def test_offline_run_answers_the_planners_steps_and_logs_a_miss(store: EventStore) -> None:
    wf = Workflow("offline-planner", goal=Goal)
    calls: list[str] = []
    goal_word = {"value": "Lisbon"}

    def model(city: str) -> str:
        calls.append(city)
        return city

    @wf.agent(input=SearchIn, output=SearchOut, name="search", retry=FAST)
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        await ctx.step("model", model, goal_word["value"])
        return SearchOut(price=1.0)

    planned: list[str] = []

    @wf.planner
    async def planner(goal: Goal, ctx: AgentContext) -> Plan:
        planned.append(await ctx.step("plan_model", model, "plan"))
        return Plan(tasks=ONE)

    recorded = await Orchestrator(store).start(wf, Goal())
    assert calls == ["plan", "Lisbon"]
    rec = await Recording.from_run(store, recorded.run_id)
    goal_word["value"] = "Porto"
    changed = await Orchestrator(store, recording=rec).start(wf, Goal())
    assert calls == ["plan", "Lisbon"]  # the planner's step too came from the recording
    assert planned == ["plan", "plan"]
    assert changed.status == "waiting"
    missed = [s for s in steps_in(await read_log(store, changed.run_id))
              if s.error_type == "ledgerflow.RecordingMissError"]
    assert [s.name for s in missed] == ["model"]
    assert missed[0].request == {"args": ["Porto"], "kwargs": {}}

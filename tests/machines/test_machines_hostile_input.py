"""Issue 12, scenario 6: hostile input to goals, agent outputs, plans and resolutions.

Depth 10^5, 50 MB strings, 10^5-digit integers, NaN and the infinities, lone
surrogates, ids with path separators and SQL metacharacters, a 10,000-task
plan and a 5,000-task dependency cycle. Each gets a typed rejection that
names where (the goal, the task's output, ``tasks.0.id``, the cycle's path),
in bounded time and memory, and nothing is appended beyond the rejection the
design records (an ``AgentFailed``, a ``PlanRejected``; nothing at all for a
goal or a resolution). NUL characters are valid JSON text: they are recorded
exactly, on SQLite and PostgreSQL. Each case prints one figure line (time,
peak memory traced by ``tracemalloc``); the bounds asserted are generous on
purpose. Real SQLite files throughout, PostgreSQL where named.
"""

from __future__ import annotations

import math
import sqlite3
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from machines_helpers import FAST, Goal, SearchIn, of, read_log, types, workflow
from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.errors import LedgerflowError
from ledgerflow.eventstore import EventStore, NewEvent, SQLiteEventStore, open_store
from ledgerflow.machines import (
    AgentContext,
    Orchestrator,
    PermanentError,
    ResolutionError,
    RunResult,
    Workflow,
)
from ledgerflow.machines import events as ev
from ledgerflow.machines.errors import UnloggableValueError
from ledgerflow.replay.verify import verify_run


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


#: Built once, outside every measurement: the cost measured is ledgerflow's.
HOSTILE: dict[str, tuple[Any, str]] = {
    "nested 10^5 deep": (_deep(100_000), "nested more than 200 levels deep"),
    "a 10^5-digit integer": (10**100_000, "integer of more than 4,300 digits"),
    "NaN": (math.nan, "NaN at $.data"),
    "Infinity": (math.inf, "Infinity at $.data"),
    "-Infinity": (-math.inf, "-Infinity at $.data"),
    "a lone surrogate": ("ok \udc80 text", "lone surrogate"),
}
CASES = list(HOSTILE)
HUGE = "x" * 50_000_000
HOSTILE_IDS = ["../x", "a'; DROP TABLE events;--", "a/b\\c", "x\x00y", "Robert'); --"]
GiB = 2**30


@contextmanager
def bounded(label: str, *, max_s: float = 30.0) -> Iterator[None]:
    """Measure the block; print its figure, then assert generous bounds (never tight)."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"\n{label}: {elapsed:.2f}s, peak {peak / 2**20:.0f} MiB")
    assert elapsed < max_s
    assert peak < GiB


class AnyGoal(BaseModel):
    data: Any = None


class AnyOut(BaseModel):
    data: Any = None


def _goal_workflow() -> Workflow:
    wf = Workflow("hostile-goal", goal=AnyGoal)

    @wf.planner
    async def planner(goal: AnyGoal, ctx: AgentContext) -> Plan:
        return Plan(tasks=[Task(id="a", agent="a", inputs={"city": "Lisbon"})])

    @wf.agent(input=SearchIn, output=AnyOut, name="a")
    async def agent(inp: SearchIn, ctx: AgentContext) -> AnyOut:
        return AnyOut(data=inp.city)

    return wf


def _agent_workflow(first: Any) -> Workflow:
    """Agent ``a`` answers ``first`` on attempt 1, then a fine output."""
    wf = workflow([Task(id="a", agent="a", inputs={"city": "$goal.city"})], name="hostile")

    @wf.agent(input=SearchIn, output=AnyOut, name="a", retry=FAST)
    async def agent(inp: SearchIn, ctx: AgentContext) -> Any:
        return {"data": first} if ctx.attempt == 1 else {"data": "fine"}

    return wf


def _planner_workflow(plan: Any) -> Workflow:
    wf = workflow(plan, name="hostile-plan")

    @wf.agent(input=SearchIn, output=AnyOut, name="a")
    async def agent(inp: SearchIn, ctx: AgentContext) -> AnyOut:
        return AnyOut(data=inp.city)

    return wf


async def _log_bytes(store: EventStore, run_id: str) -> int:
    return sum(len(env.data) for env in await store.read_all(run_id))


# -- goals ---------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=CASES)
async def test_hostile_goal_is_refused_naming_the_goal(store: EventStore, case: str) -> None:
    value, problem = HOSTILE[case]
    with bounded(f"goal, {case}"), pytest.raises(UnloggableValueError) as caught:
        await Orchestrator(store).start(_goal_workflow(), {"data": value})
    assert caught.value.what == "the goal"
    assert str(caught.value).startswith("The goal cannot be recorded: ")
    assert problem in str(caught.value)
    assert await store.runs() == []


async def test_goal_nested_10_5_deep_names_the_field_it_is_in(store: EventStore) -> None:
    with pytest.raises(UnloggableValueError, match=r"\$\.data"):
        await Orchestrator(store).start(_goal_workflow(), {"data": HOSTILE["nested 10^5 deep"][0]})


async def test_goal_of_50_mb_is_refused_and_nothing_is_recorded(store: EventStore) -> None:
    with bounded("goal, a 50 MB string"), pytest.raises(LedgerflowError) as caught:
        await Orchestrator(store).start(_goal_workflow(), {"data": HUGE})
    assert "over the store's limit" in str(caught.value)
    assert len(str(caught.value)) < 1000
    assert await store.runs() == []


async def test_goal_of_50_mb_is_refused_as_the_goal(store: EventStore) -> None:
    with pytest.raises(UnloggableValueError) as caught:
        await Orchestrator(store).start(_goal_workflow(), {"data": HUGE})
    assert caught.value.what == "the goal"


# -- agent outputs -------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=CASES)
async def test_hostile_agent_output_is_a_recorded_agent_failed(
    store: EventStore, case: str
) -> None:
    value, problem = HOSTILE[case]
    wf = _agent_workflow(value)
    with bounded(f"agent output, {case}"):
        run = await Orchestrator(store).start(wf, Goal())
    assert run.status == "completed", run.reason
    log = await read_log(store, run.run_id)
    [failed] = of(log, ev.AgentFailed, "a")
    assert (failed.attempt, failed.error_type) == (1, "ledgerflow.UnloggableOutput")
    assert failed.message.startswith("the output cannot be recorded: ")
    assert problem in failed.message
    assert [r.attempt for r in of(log, ev.OutputReceived)] == [2]  # attempt 1 never got in
    assert await _log_bytes(store, run.run_id) < 64 * 1024
    assert (await verify_run(store, run.run_id, workflow=wf)).ok


async def test_agent_output_of_50_mb_is_a_recorded_agent_failed(store: EventStore) -> None:
    wf = _agent_workflow(HUGE)
    with bounded("agent output, a 50 MB string"):
        run = await Orchestrator(store).start(wf, Goal())
    assert run.status == "waiting"  # too large is not retried: the task escalates
    log = await read_log(store, run.run_id)
    [failed] = of(log, ev.AgentFailed, "a")
    assert failed.error_type == "ledgerflow.OutputTooLarge"
    assert "over the 1,044,480-byte limit of one logged event" in failed.message
    assert of(log, ev.OutputReceived) == []
    assert of(log, ev.TaskEscalated, "a")
    assert await _log_bytes(store, run.run_id) < 64 * 1024
    assert (await verify_run(store, run.run_id, workflow=wf)).ok


# -- planner outputs and plans ------------------------------------------


@pytest.mark.parametrize("case", [*CASES, "a 50 MB string"], ids=[*CASES, "a 50 MB string"])
async def test_hostile_value_in_a_plan_is_a_recorded_rejection(
    store: EventStore, case: str
) -> None:
    value, problem = HOSTILE.get(case, (HUGE, "over the 1,044,480-byte limit"))
    wf = _planner_workflow({"tasks": [{"id": "a", "agent": "a", "inputs": {"city": value}}]})
    with bounded(f"plan, {case}"):
        run = await Orchestrator(store).start(wf, Goal())
    assert run.status == "failed"
    log = await read_log(store, run.run_id)
    assert types(log) == ["RunStarted", "PlanProposed", "PlanRejected"]
    [proposed] = of(log, ev.PlanProposed)
    assert proposed.error is not None
    assert proposed.error.startswith(("the plan cannot be recorded: ", "the plan is "))
    assert problem.replace("$.data", "$.tasks[0].inputs.city") in proposed.error
    assert await _log_bytes(store, run.run_id) < 64 * 1024


@pytest.mark.parametrize("task_id", HOSTILE_IDS, ids=repr)
async def test_hostile_task_id_is_rejected_naming_the_field(
    store: EventStore, task_id: str
) -> None:
    wf = _planner_workflow({"tasks": [{"id": task_id, "agent": "a"}]})
    with bounded(f"plan, task id {task_id!r}"):
        run = await Orchestrator(store).start(wf, Goal())
    assert run.status == "failed"
    log = await read_log(store, run.run_id)
    assert types(log) == ["RunStarted", "PlanProposed", "PlanRejected"]
    [problem] = of(log, ev.PlanRejected)[0].problems
    assert problem.code == "malformed_plan"
    assert "tasks.0.id: String should match pattern" in problem.message
    _tables_intact(store)


@pytest.mark.parametrize("task_id", HOSTILE_IDS, ids=repr)
async def test_hostile_needs_is_rejected_naming_the_task(store: EventStore, task_id: str) -> None:
    wf = _planner_workflow({"tasks": [
        {"id": "a", "agent": "a", "needs": [task_id], "inputs": {"city": "$goal.city"}}]})
    run = await Orchestrator(store).start(wf, Goal())
    assert run.status == "failed"
    [problem] = of(await read_log(store, run.run_id), ev.PlanRejected)[0].problems
    assert (problem.code, problem.task_id) == ("unknown_task", "a")
    assert f"needs {task_id!r}" in problem.message
    _tables_intact(store)


async def test_10000_hostile_task_ids_are_one_bounded_rejection(store: EventStore) -> None:
    wf = _planner_workflow({"tasks": [{"id": f"../x{i}", "agent": "a"} for i in range(10_000)]})
    with bounded("plan, 10,000 tasks with hostile ids"):
        run = await Orchestrator(store).start(wf, Goal())
    assert run.status == "failed"
    log = await read_log(store, run.run_id)
    assert types(log) == ["RunStarted", "PlanProposed", "PlanRejected"]
    [problem] = of(log, ev.PlanRejected)[0].problems
    assert problem.code == "malformed_plan"
    assert "tasks.0.id" in problem.message
    assert len(problem.message) < 2000


async def test_5000_task_dependency_cycle_is_rejected_naming_its_path(store: EventStore) -> None:
    n = 5_000
    wf = _planner_workflow([Task(id=f"t{i}", agent="a", needs=[f"t{(i + 1) % n}"],
                                 inputs={"city": "$goal.city"}) for i in range(n)])
    with bounded("plan, a 5,000-task dependency cycle"):
        run = await Orchestrator(store).start(wf, Goal())
    assert run.status == "failed"
    log = await read_log(store, run.run_id)
    assert types(log) == ["RunStarted", "PlanProposed", "PlanRejected"]
    [problem] = of(log, ev.PlanRejected)[0].problems
    assert problem.code == "dependency_cycle"
    assert problem.message.startswith("Tasks form a dependency cycle: t0 -> t1 -> t2")
    assert "t4999 -> t0" in problem.message


@pytest.mark.slow
async def test_10000_task_plan_runs_in_bounded_time_and_memory(store: EventStore) -> None:
    """Not a rejection: a valid plan this size is within what ledgerflow runs (README)."""
    wf = _planner_workflow([Task(id=f"t{i}", agent="a", inputs={"city": "$goal.city"})
                            for i in range(10_000)])
    # Looser time bound: tracemalloc slows this one ~2x (12 s traced on this machine).
    with bounded("plan, 10,000 tasks, run to completion", max_s=120.0):
        run = await Orchestrator(store).start(wf, Goal())
    assert run.status == "completed", run.reason
    assert len(run.outputs) == 10_000


# -- resolutions ---------------------------------------------------------


async def _waiting_run(store: EventStore) -> tuple[Workflow, RunResult]:
    wf = workflow([Task(id="a", agent="a", inputs={"city": "$goal.city"})], name="hostile-res")

    @wf.agent(input=SearchIn, output=AnyOut, name="a", retry=FAST)
    async def agent(inp: SearchIn, ctx: AgentContext) -> Any:
        raise PermanentError("needs a person")

    run = await Orchestrator(store).start(wf, Goal())
    assert run.status == "waiting"
    return wf, run


@pytest.mark.parametrize("case", CASES, ids=CASES)
async def test_hostile_resolution_is_refused_and_appends_nothing(
    store: EventStore, case: str
) -> None:
    value, problem = HOSTILE[case]
    wf, run = await _waiting_run(store)
    before = await store.last_seq(run.run_id)
    with bounded(f"resolution, {case}"), pytest.raises(ResolutionError) as caught:
        await Orchestrator(store).resolve(run.run_id, "a", output={"data": value}, workflow=wf)
    assert str(caught.value).startswith("The output given for task 'a' cannot be recorded: ")
    assert problem in str(caught.value)
    assert await store.last_seq(run.run_id) == before


async def test_resolution_of_50_mb_appends_nothing(store: EventStore) -> None:
    wf, run = await _waiting_run(store)
    before = await store.last_seq(run.run_id)
    with bounded("resolution, a 50 MB string"), pytest.raises(LedgerflowError):
        await Orchestrator(store).resolve(run.run_id, "a", output={"data": HUGE}, workflow=wf)
    assert await store.last_seq(run.run_id) == before
    assert (await store.run(run.run_id)) is not None
    assert (await Orchestrator(store).state(run.run_id)).status.value == "waiting"


async def test_resolution_of_50_mb_is_a_resolution_error(store: EventStore) -> None:
    wf, run = await _waiting_run(store)
    with pytest.raises(ResolutionError, match="task 'a'"):
        await Orchestrator(store).resolve(run.run_id, "a", output={"data": HUGE}, workflow=wf)


@pytest.mark.parametrize("task_id", HOSTILE_IDS, ids=repr)
async def test_resolution_of_a_hostile_task_id_is_refused(store: EventStore, task_id: str) -> None:
    wf, run = await _waiting_run(store)
    before = await store.last_seq(run.run_id)
    with pytest.raises(ResolutionError, match="has no task"):
        await Orchestrator(store).resolve(run.run_id, task_id, output={"data": 1}, workflow=wf)
    assert await store.last_seq(run.run_id) == before
    _tables_intact(store)


# -- run ids -------------------------------------------------------------


@pytest.mark.parametrize("run_id", ["../x", "a'; DROP TABLE events;--", "a/b"], ids=repr)
async def test_hostile_run_id_is_refused_naming_the_run_id(
    store: EventStore, run_id: str
) -> None:
    with pytest.raises(LedgerflowError, match="run id"):
        await Orchestrator(store).start(_goal_workflow(), {"data": 1}, run_id=run_id)
    assert await store.runs() == []


async def test_run_id_with_a_lone_surrogate_is_a_typed_refusal(store: EventStore) -> None:
    with pytest.raises(LedgerflowError, match="run id"):
        await Orchestrator(store).start(_goal_workflow(), {"data": 1}, run_id="r\ud800")
    with pytest.raises(LedgerflowError, match="run id"):
        await store.append("r\ud800", [NewEvent("Ticked", b"{}")], 0)
    assert await store.runs() == []


@pytest.mark.parametrize("run_id", ["../x", "a'; DROP TABLE events;--", "Robert'); --", "%_"],
                         ids=repr)
async def test_store_keeps_runs_with_hostile_ids_apart_and_intact(
    store: EventStore, run_id: str
) -> None:
    """The log itself is generic: any id but NUL is data, bound as a parameter, never SQL."""
    await store.append("other", [NewEvent("Ticked", b"{}")], 0)
    await store.append(run_id, [NewEvent("Ticked", b'{"i":1}')] * 2, 0)
    assert [e.seq for e in await store.read_all(run_id)] == [1, 2]
    assert await store.match_runs(run_id) == [run_id]
    assert await store.last_seq("other") == 1
    _tables_intact(store)


# -- NUL characters: valid JSON text, recorded exactly ------------------


@pytest.fixture(params=["sqlite", "postgres"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    if request.param == "sqlite":
        async with open_store(tmp_path / "nul.db") as opened:
            yield opened
        return
    import os  # noqa: PLC0415 - only this param reads the DSN

    dsn = os.environ.get("LEDGERFLOW_TEST_PG_DSN", "")
    if not dsn:
        pytest.skip("PostgreSQL tests need LEDGERFLOW_TEST_PG_DSN")
    schema = f"rlt_{uuid.uuid4().hex[:12]}_nul"
    try:
        async with open_store(dsn, schema=schema) as opened:
            yield opened
    finally:
        import asyncpg  # noqa: PLC0415

        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def test_nul_characters_are_recorded_exactly(any_store: EventStore) -> None:
    wf = _agent_workflow("out\x00put")
    run = await Orchestrator(any_store).start(wf, Goal(city="Lis\x00bon"))
    assert run.status == "completed", run.reason
    log = await read_log(any_store, run.run_id)
    assert of(log, ev.RunStarted)[0].goal["city"] == "Lis\x00bon"
    assert [o.output for o in of(log, ev.OutputReceived)] == [{"data": "out\x00put"}]
    assert (await verify_run(any_store, run.run_id, workflow=wf)).ok


def _tables_intact(store: EventStore) -> None:
    """The store's tables are all still there (a SQL injection would have dropped one)."""
    if not isinstance(store, SQLiteEventStore):  # pragma: no cover - machines tests use SQLite
        return
    conn = sqlite3.connect(store.path)
    try:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    assert {"events", "runs", "leases"} <= names

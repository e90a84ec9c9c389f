"""Property: for random plans and random agent behaviour, the log explains the run.

For every prefix of every log, the state rebuilt from the store equals the
fold of the decoded events, and the fold of the whole log equals the
orchestrator's live state. Along the way: runs always come to rest, agents
only ever get the fields their input contract declares, and an output that
failed validation (or was not confident enough) never reaches a later task.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st
from machines_helpers import assert_fold_matches, read_log
from pydantic import BaseModel, Field

from ledgerflow import machines
from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import EventStore, open_store
from ledgerflow.machines import events as ev
from ledgerflow.replay.fork import fork_run
from ledgerflow.replay.verify import verify_run

BEHAVIOURS = ("valid", "invalid", "transient", "permanent", "low_confidence", "timeout")
AGENTS = {
    # name: (max_attempts, side_effect, idempotent)
    "alpha": (3, False, False),
    "beta": (1, False, False),
    "gamma": (2, True, True),
    "delta": (3, True, False),
}
RESOLUTIONS = ("output", "retry", "abandon")


class PGoal(BaseModel):
    seed: int = 7


class PIn(BaseModel):
    seed: int
    values: list[int]


class POut(BaseModel):
    value: int
    confidence: float = Field(ge=0, le=1)


@dataclass
class Scenario:
    needs: list[list[int]]
    agents: list[str]
    behaviour: dict[tuple[int, int], str]
    max_concurrency: int
    max_retries: int | None
    resolutions: list[str] = field(default_factory=list)
    fork_at: float = 0.5


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(1, 8))
    needs = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else []
             for i in range(n)]
    agents = [draw(st.sampled_from(sorted(AGENTS))) for _ in range(n)]
    behaviour = {(i, attempt): draw(st.sampled_from(BEHAVIOURS))
                 for i in range(n) for attempt in (1, 2, 3)}
    return Scenario(
        needs=needs, agents=agents, behaviour=behaviour,
        max_concurrency=draw(st.integers(1, 4)),
        max_retries=draw(st.none() | st.integers(0, 6)),
        resolutions=draw(st.lists(st.sampled_from(RESOLUTIONS), max_size=6)),
        fork_at=draw(st.floats(0.0, 1.0)),
    )


def _index(task_id: str) -> int:
    return int(task_id[1:])


def _valid_value(task_id: str, attempt: int) -> int:
    return 1000 * (_index(task_id) + 1) + attempt


def _resolved_value(task_id: str) -> int:
    return 500_000 + _index(task_id)


def _workflow(sc: Scenario) -> machines.Workflow:
    wf = machines.Workflow(
        "prop", goal=PGoal, max_concurrency=sc.max_concurrency,
        budget=machines.Budget(max_retries=sc.max_retries))

    @wf.planner
    async def planner(goal: PGoal, ctx: machines.AgentContext) -> Plan:
        return Plan(tasks=[
            Task(id=f"t{i}", agent=sc.agents[i], needs=[f"t{j}" for j in sc.needs[i]],
                 inputs={"seed": "$goal.seed", "values": [f"$t{j}.value" for j in sc.needs[i]]})
            for i in range(len(sc.needs))
        ])

    async def act(inp: PIn, ctx: machines.AgentContext) -> Any:
        what = sc.behaviour.get((_index(ctx.task_id), ctx.attempt), "valid")
        value = _valid_value(ctx.task_id, ctx.attempt)
        if what == "invalid":
            return {"value": f"POISON-{value}", "confidence": 0.9}
        if what == "transient":
            raise ConnectionError("flaky upstream")
        if what == "permanent":
            raise machines.PermanentError("cannot be done")
        if what == "low_confidence":
            return {"value": -value, "confidence": 0.1}
        if what == "timeout":
            await asyncio.sleep(30)
        return {"value": value, "confidence": 0.9}

    for name, (attempts, side_effect, idempotent) in AGENTS.items():
        wf.agent(
            input=PIn, output=POut, name=name, min_confidence=0.5, timeout_s=0.01,
            side_effect=side_effect, idempotent=idempotent,
            retry=machines.RetryPolicy(max_attempts=attempts, backoff_s=0.0, jitter=0.0),
        )(act)
    return wf


def _check_log(sc: Scenario, log: list[machines.Event]) -> None:
    accepted: dict[str, int] = {}
    received: dict[tuple[str, int], Any] = {}
    rejected_values: list[Any] = []
    for event in log:
        if isinstance(event, ev.OutputReceived):
            received[(event.task_id, event.attempt)] = event.output
        elif isinstance(event, ev.OutputRejected):
            rejected_values.append(received[(event.task_id, event.attempt)]["value"])
        elif isinstance(event, ev.OutputAccepted):
            accepted[event.task_id] = event.output["value"]
        elif isinstance(event, ev.EscalationResolved) and event.action == "output":
            assert event.output is not None
            accepted[event.task_id] = event.output["value"]
        elif isinstance(event, ev.TaskDispatched):
            assert set(event.input) <= set(PIn.model_fields)
            needs = [f"t{j}" for j in sc.needs[_index(event.task_id)]]
            assert event.input == {"seed": 7, "values": [accepted[n] for n in needs]}
            for value in event.input["values"]:
                assert value not in rejected_values


async def _drive(store: EventStore, sc: Scenario) -> None:
    wf = _workflow(sc)
    orch = machines.Orchestrator(store)
    run = await orch.start(wf, PGoal(), run_id=uuid.uuid4().hex[:12])
    assert run.status in ("completed", "failed", "waiting")
    resolutions = list(sc.resolutions)
    while run.status == "waiting":
        assert run.escalations
        task_id = run.escalations[0]
        action = resolutions.pop(0) if resolutions else "abandon"
        if action == "output":
            run = await orch.resolve(
                run.run_id, task_id, workflow=wf,
                output={"value": _resolved_value(task_id), "confidence": 1.0})
        elif action == "retry":
            run = await orch.resolve(run.run_id, task_id, retry=True, workflow=wf)
        else:
            run = await orch.resolve(run.run_id, task_id, abandon=True, workflow=wf)
        assert run.status in ("completed", "failed", "waiting")
    assert run.status in ("completed", "failed")
    log = await read_log(store, run.run_id)
    assert isinstance(log[-1], ev.RunCompleted | ev.RunFailed)
    _check_log(sc, log)
    note_event(f"run {run.status}")
    for kind in sorted({e.type for e in log}):
        note_event(kind)
    await assert_fold_matches(store, run.run_id, run.state)
    # The current code, fed the recorded facts, makes every recorded decision.
    report = await verify_run(store, run.run_id, workflow=wf)
    assert report.ok, report.lines()
    # A fork at any seq is a valid run that the current code can carry on.
    last = len(log)
    at = max(1, min(last, round(sc.fork_at * last)))
    fork_id = await fork_run(store, run.run_id, at_seq=at, workflow=wf)
    forked = await orch.resume(fork_id, wf)
    while forked.status == "waiting":
        forked = await orch.resolve(fork_id, forked.escalations[0], abandon=True, workflow=wf)
    assert forked.status in ("completed", "failed"), forked.reason
    fork_report = await verify_run(store, fork_id, workflow=wf)
    assert fork_report.ok, (at, fork_report.lines())
    await assert_fold_matches(store, fork_id, forked.state)


@settings(max_examples=int(os.environ.get("LEDGERFLOW_PROPERTY_EXAMPLES", "25")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sc=scenarios())
def test_state_rebuilt_from_any_prefix_equals_fold_and_live_state(
    tmp_path: Path, sc: Scenario
) -> None:
    async def main() -> None:
        async with open_store(tmp_path / "property.db") as store:
            await asyncio.wait_for(_drive(store, sc), timeout=30)

    asyncio.run(main())

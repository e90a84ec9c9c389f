"""A run killed in the middle of a pydantic-ai agent repeats none of the agent's finished calls.

The child process runs the agent (model request 1, a tool call, model request
2) and is SIGKILLed inside one of those calls; each step's result is durable
before the agent goes on. Resumed in this process, the attempt is served the
finished calls from the log and makes only the cut-off one and those after it
live; the log then verifies. A side-effecting tool cut off by the kill is
escalated instead (its outcome is unknown).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from pydantic_helpers import (
    CRASH_IN,
    REQUEST_COST,
    Calls,
    fare_agent,
    fare_workflow,
    steps_recorded,
)

from ledgerflow.eventstore import open_store
from ledgerflow.machines import Orchestrator
from ledgerflow.replay import verify_run

HERE = Path(__file__).parent


def run_child_until_killed(db: Path, calls: Calls, run_id: str, crash_in: str,
                           *mode: str) -> None:
    env = {**os.environ, CRASH_IN: crash_in}
    child = subprocess.run(
        [sys.executable, str(HERE / "pydantic_crash_child.py"), str(db), str(calls.path), run_id,
         *mode],
        env=env, capture_output=True, text=True, timeout=60, check=False)
    assert child.returncode == -signal.SIGKILL, child.stderr


@pytest.mark.parametrize(("killed_in", "calls_after_resume"), [
    # Killed in request 2: request 1 and the tool are served; request 2 is made again.
    ("request 2", {"request 1": 1, "tool lookup_fare": 1, "request 2": 2}),
    # Killed in the (repeatable) tool: request 1 is served; the cut-off tool call runs again.
    ("tool lookup_fare", {"request 1": 1, "tool lookup_fare": 2, "request 2": 1}),
], ids=["in-request-2", "in-tool"])
async def test_model_request_and_tool_call_not_repeated_after_crash(
        killed_in: str, calls_after_resume: dict[str, int], tmp_path: Path) -> None:
    db, calls = tmp_path / "runs.db", Calls(tmp_path / "calls.txt")
    run_child_until_killed(db, calls, "crashed-run", killed_in)
    assert calls.lines()[-1] == killed_in

    wf = fare_workflow(fare_agent(calls))
    async with open_store(db) as store:
        run = await Orchestrator(store).resume("crashed-run", workflow=wf)

        assert run.status == "completed", run.reason
        assert run.outputs["fare"].model_dump() == {"city": "Lisbon", "price": 12.5}
        assert dict(Counter(calls.lines())) == calls_after_resume
        served_and_live = await steps_recorded(store, "crashed-run")
        assert [s.detail["kind"] for s in served_and_live] == ["llm", "tool", "llm"]
        # Each request is charged once: a served one was charged when first recorded.
        assert run.state.cost == pytest.approx(REQUEST_COST * 2)
        report = await verify_run(store, "crashed-run", workflow=wf)
        assert report.ok, report.lines()


async def test_a_side_effect_tool_cut_off_by_a_crash_is_escalated_not_repeated(
        tmp_path: Path) -> None:
    db, calls = tmp_path / "runs.db", Calls(tmp_path / "calls.txt")
    # The child dies inside the tool, after it acted: its outcome is unknown.
    run_child_until_killed(db, calls, "cut-off", "tool lookup_fare", "side-effect-tool")
    assert calls.lines() == ["request 1", "tool lookup_fare"]

    agent = fare_agent(calls, tool_options={"side_effect": True})
    async with open_store(db) as store:
        run = await Orchestrator(store).resume("cut-off", workflow=fare_workflow(agent))

        assert run.status == "waiting", run.reason
        assert run.state.escalations["fare"].kind == "outcome_unknown"
        assert calls.count("tool lookup_fare") == 1

"""A recorded run answers a new run of the same pydantic-ai agent offline.

The steps' requests leave out what changes from run to run (clock times,
pydantic-ai's fresh run ids), so a second run asks for exactly the recorded
steps and none is called.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_helpers import Calls, Goal, fare_agent, fare_workflow, steps_recorded

from ledgerflow.eventstore import EventStore
from ledgerflow.machines import Orchestrator
from ledgerflow.machines.recording import Recording


async def test_a_recorded_run_answers_every_model_request_and_tool_call_of_a_new_run(
        tmp_path: Path, orch: Orchestrator, store: EventStore) -> None:
    calls = Calls(tmp_path / "calls.txt")
    wf = fare_workflow(fare_agent(calls))
    recorded = await orch.start(wf, Goal())
    assert calls.lines() == ["request 1", "tool lookup_fare", "request 2"]

    recording = await Recording.from_run(store, recorded.run_id)
    offline = await Orchestrator(store, recording=recording).start(wf, Goal())

    recording.check()
    assert offline.status == "completed", offline.reason
    assert offline.outputs == recorded.outputs
    assert calls.lines() == ["request 1", "tool lookup_fare", "request 2"]  # nothing called
    # The offline run is charged the recorded usage, so a budget sees the same costs.
    assert offline.state.cost == recorded.state.cost
    assert [s.name for s in await steps_recorded(store, offline.run_id)] == [
        s.name for s in await steps_recorded(store, recorded.run_id)]

"""A crash mid-agent never pays for a model call twice nor repeats a tool call.

The child process runs a real agent (``OpenAIChat`` through the real
``openai`` client against a real HTTP server on 127.0.0.1): model request 1,
the ``lookup`` tool, model request 2. It is killed with SIGKILL at each point
between those steps; the run is resumed here. The server must have seen each
model request once, the tool must have run once, and the run must complete
and verify, with as many model requests as a run that never crashed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import agent_crash_child as child
import pytest
from chat_server import Answer, ChatServer, reply

from ledgerflow.eventstore import EventStore
from ledgerflow.machines import Orchestrator
from ledgerflow.replay import verify_run

CHILD = Path(child.__file__)


def answer_for(request: dict[str, Any], number: int) -> Answer:
    """Request 1 asks for the topic; request 2 (which carries the tool's result) the answer."""
    said = json.dumps(request["messages"])
    if "lookup result" in said:
        return reply(child.FinalAnswer(answer="42, says the lookup"), prompt_tokens=30,
                     completion_tokens=8)
    return reply(child.Topic(topic="life"), prompt_tokens=20, completion_tokens=4)


def model_requests(server: ChatServer) -> list[str]:
    return [json.dumps(r["messages"], sort_keys=True) for r in server.requests]


def run_child(tmp_path: Path, server: ChatServer, kill_at: str) -> int:
    done = subprocess.run(
        [sys.executable, str(CHILD), str(tmp_path / "runs.db"), "r1", server.url,
         str(tmp_path / "tool.txt"), kill_at],
        check=False, timeout=60, capture_output=True, text=True)
    assert done.returncode in (0, -9), done.stderr
    return done.returncode


@pytest.fixture
def server() -> Any:
    with ChatServer(then=answer_for) as running:
        yield running


async def test_a_run_that_never_crashed_makes_two_model_requests(
    tmp_path: Path, server: ChatServer, store: EventStore
) -> None:
    assert run_child(tmp_path, server, "-") == 0
    assert len(server.requests) == 2
    run = await Orchestrator(store).resume("r1", child.wf)
    assert run.status == "completed"
    assert run.state is not None
    assert run.state.tokens == 20 + 4 + 30 + 8
    assert run.state.cost == pytest.approx((50 * 1.0 + 12 * 2.0) / 1e6)


@pytest.mark.parametrize("kill_at", ["tool", "after-tool", "after-model"])
async def test_model_request_not_repeated_after_crash(
    tmp_path: Path, server: ChatServer, store: EventStore, kill_at: str
) -> None:
    assert run_child(tmp_path, server, kill_at) == -9
    run = await Orchestrator(store).resume("r1", child.wf)
    assert run.status == "completed", run.reason
    assert run.outputs["answer"] == child.FinalAnswer(answer="42, says the lookup")
    requests = model_requests(server)
    assert len(requests) == 2  # as many as the run that never crashed
    assert len(set(requests)) == 2  # each model request once
    tool_runs = (tmp_path / "tool.txt").read_text(encoding="utf-8").splitlines()
    assert tool_runs == ["lookup life"]
    assert (await verify_run(store, "r1", workflow=child.wf)).ok

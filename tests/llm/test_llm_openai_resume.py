"""A process killed after a model answered is resumed without asking the model again: the
recorded raw answer is re-parsed, and only the calls that never happened are made."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import openai_resume_child as child
import pytest
from chat_server import ChatServer, reply
from llm_helpers import steps

from ledgerflow.eventstore import EventStore
from ledgerflow.machines import Orchestrator
from ledgerflow.replay import verify_run

QUOTE = child.Quote(city="Lisbon", total=236.0)
SECOND = child.Quote(city="Lisbon", total=240.0)


async def _run_child(db: Path, run_id: str, server_url: str) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable, child.__file__, str(db), run_id, server_url,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None, stderr
    return process.returncode


async def test_model_call_not_repeated_after_crash(
    tmp_path: Path, store: EventStore, chat_server: ChatServer
) -> None:
    chat_server.queue(reply(QUOTE, prompt_tokens=100, completion_tokens=20),
                      reply(SECOND, prompt_tokens=100, completion_tokens=20))
    returncode = await _run_child(tmp_path / "runs.db", "r1", chat_server.url)
    assert returncode == -9
    assert len(chat_server.requests) == 1  # the child died after its first answer

    run = await Orchestrator(store).resume("r1", child.wf)

    assert run.status == "completed", run.reason
    assert run.outputs["price"] == child.Checked(quote=QUOTE, second_opinion=SECOND)
    asked = [r["messages"][-1]["content"] for r in chat_server.requests]
    assert asked == ["Two nights in Lisbon, priced.", "Check that price again."]
    journaled = await steps(store, "r1")
    assert [(s.name, s.tokens) for s in journaled] == [("openai.chat", 120)] * 2
    # Each call charged once, though the first one's attempt ran in two processes.
    assert run.state.tokens == 240
    assert run.state.cost == pytest.approx(2 * (100 * 0.4 + 20 * 1.6) / 1_000_000)
    assert (await verify_run(store, "r1", workflow=child.wf)).ok

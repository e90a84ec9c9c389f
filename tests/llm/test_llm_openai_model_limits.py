"""The per-model concurrency limit holds across runs and instances: fifty runs at once,
max_concurrent=3, and the server never holds more than three of their requests."""

from __future__ import annotations

import asyncio

import pytest
from chat_server import ChatServer, reply
from llm_helpers import GOOD, MODEL, Goal, client_for, quote_workflow

from ledgerflow.llm import ModelLimitConflictError, OpenAIChat
from ledgerflow.machines import Orchestrator

RUNS = 50


async def test_fifty_concurrent_runs_never_exceed_the_models_limit(
    orch: Orchestrator, chat_server: ChatServer
) -> None:
    # Each answer is held a little, so the runs' requests would overlap without the limit.
    chat_server.then = reply(GOOD, delay_s=0.05)
    limited = OpenAIChat(client_for(chat_server), MODEL, max_concurrent=3)
    # A second instance (its own client) declaring no limit shares the declared one.
    sharing = OpenAIChat(client_for(chat_server), MODEL)
    assert sharing.max_concurrent == 3
    workflows = [quote_workflow(limited, name="llm-limited"),
                 quote_workflow(sharing, name="llm-sharing")]

    runs = await asyncio.gather(*(orch.start(workflows[i % 2], Goal()) for i in range(RUNS)))

    assert [run.status for run in runs] == ["completed"] * RUNS
    assert len(chat_server.requests) == RUNS
    assert chat_server.max_in_flight == 3


def test_a_limit_binds_its_model_at_its_endpoint_only(chat_server: ChatServer) -> None:
    with ChatServer() as elsewhere:
        limited = OpenAIChat(client_for(chat_server), MODEL, max_concurrent=1)
        other_model = OpenAIChat(client_for(chat_server), "another-model")
        same_model_elsewhere = OpenAIChat(client_for(elsewhere), MODEL)
        assert limited.max_concurrent == 1
        assert other_model.max_concurrent is None
        assert same_model_elsewhere.max_concurrent is None


def test_two_instances_declaring_different_limits_for_one_model_is_an_error(
    chat_server: ChatServer,
) -> None:
    first = OpenAIChat(client_for(chat_server), MODEL, max_concurrent=3)
    with pytest.raises(ModelLimitConflictError, match=f"'{MODEL}' at {chat_server.url} "
                                                      "already has max_concurrent=3"):
        OpenAIChat(client_for(chat_server), MODEL, max_concurrent=5)
    assert first.max_concurrent == 3

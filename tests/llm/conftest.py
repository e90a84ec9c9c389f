"""Fixtures of the llm tests: a real SQLite store in ``tmp_path``, an orchestrator, and a
fake OpenAI-compatible server on 127.0.0.1 (:mod:`chat_server`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from chat_server import ChatServer

from ledgerflow.eventstore import EventStore, open_store
from ledgerflow.machines import Orchestrator


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    async with open_store(tmp_path / "runs.db") as opened:
        yield opened


@pytest.fixture
def orch(store: EventStore) -> Orchestrator:
    return Orchestrator(store)


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    """A started fake chat server with an empty script: queue() its answers."""
    with ChatServer() as server:
        yield server

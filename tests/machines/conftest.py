"""Fixtures of the machines tests: a real SQLite store in ``tmp_path`` and an orchestrator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ledgerflow.eventstore import EventStore, open_store
from ledgerflow.machines import Orchestrator


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EventStore]:
    async with open_store(tmp_path / "runs.db") as opened:
        yield opened


@pytest.fixture
def orch(store: EventStore) -> Orchestrator:
    return Orchestrator(store)

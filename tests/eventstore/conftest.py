"""Fixtures of the event store tests: a backend-neutral ``store_factory``.

The contract suite (``test_eventstore_contract.py``) only uses
``store_factory`` and ``store``; a new backend joins it by adding one param
here that opens a fresh, empty store of that backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from eventstore import EventStore, NewEvent, open_store

StoreFactory = Callable[..., Awaitable[EventStore]]


def ev(type_: str = "Ticked", **data: Any) -> NewEvent:
    """A small event whose data is the keyword arguments as a JSON object."""
    return NewEvent(type_, msgspec.json.encode(data))


@pytest.fixture(params=["sqlite"])
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """Open stores of one backend; the same ``name`` opens the same database again.

    Every store it opened is closed at the end of the test.
    """
    opened: list[EventStore] = []

    async def make(name: str = "store", **options: Any) -> EventStore:
        if request.param == "sqlite":
            store = await open_store(tmp_path / f"{name}.db", **options)
        else:  # pragma: no cover - a backend param without an opener
            raise NotImplementedError(request.param)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def store(store_factory: StoreFactory) -> EventStore:
    """A fresh, empty store."""
    return await store_factory()

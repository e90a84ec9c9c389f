"""Fixtures of the event store tests: a backend-neutral ``store_factory``.

The contract suite (``test_eventstore_contract.py``) only uses
``store_factory`` and ``store``; a new backend joins it by adding one param
here that opens a fresh, empty store of that backend.

PostgreSQL runs only when ``LEDGERFLOW_TEST_PG_DSN`` names a database the
tests may create schemas in, e.g.
``LEDGERFLOW_TEST_PG_DSN=postgresql://postgres@127.0.0.1:5432/test``. Each
test gets fresh schemas (``rlt_<random>_<name>``), dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from eventstore_helpers import PG_DSN, StoreFactory, drop_schemas, needs_pg

from ledgerflow.eventstore import EventStore, open_store


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    """A fresh PostgreSQL schema name (not yet created), dropped after the test."""
    if not PG_DSN:
        pytest.skip(needs_pg.kwargs["reason"])
    schema = f"rlt_{uuid.uuid4().hex[:12]}"
    yield schema
    await drop_schemas(schema)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=needs_pg)])
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """Open stores of one backend; the same ``name`` opens the same database again.

    Every store it opened is closed at the end of the test (and, for
    PostgreSQL, every schema it created is dropped).
    """
    opened: list[EventStore] = []
    prefix = f"rlt_{uuid.uuid4().hex[:12]}"
    schemas: set[str] = set()

    async def make(name: str = "store", **options: Any) -> EventStore:
        if request.param == "sqlite":
            store = await open_store(tmp_path / f"{name}.db", **options)
        elif request.param == "postgres":
            schema = f"{prefix}_{name}"
            schemas.add(schema)
            store = await open_store(PG_DSN, schema=schema, **options)
        else:  # pragma: no cover - a backend param without an opener
            raise NotImplementedError(request.param)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()
    if schemas:
        await drop_schemas(*schemas)


@pytest.fixture
async def store(store_factory: StoreFactory) -> EventStore:
    """A fresh, empty store."""
    return await store_factory()

"""Helpers shared by the event store tests (not a conftest: ``from conftest import``
would resolve to another package's conftest when several test folders run together)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest

from ledgerflow.eventstore import EventStore, NewEvent

StoreFactory = Callable[..., Awaitable[EventStore]]

PG_DSN = os.environ.get("LEDGERFLOW_TEST_PG_DSN", "")
needs_pg = pytest.mark.skipif(
    not PG_DSN,
    reason="PostgreSQL tests need LEDGERFLOW_TEST_PG_DSN "
    "(e.g. postgresql://postgres@127.0.0.1:5432/test)",
)


def ev(type_: str = "Ticked", **data: Any) -> NewEvent:
    """A small event whose data is the keyword arguments as a JSON object."""
    return NewEvent(type_, msgspec.json.encode(data))


async def drop_schemas(*schemas: str) -> None:
    """Drop the PostgreSQL schemas a test created, with everything in them."""
    import asyncpg  # noqa: PLC0415 - only PostgreSQL tests need it

    conn = await asyncpg.connect(PG_DSN)
    try:
        for schema in schemas:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()

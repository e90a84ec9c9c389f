"""Helpers shared by the event store tests (not a conftest: ``from conftest import``
would resolve to another package's conftest when several test folders run together)."""

from __future__ import annotations

import os
import sqlite3
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


async def fill_up(store: EventStore) -> None:
    """Make the store's database refuse to grow, as a full disk does.

    SQLite: ``PRAGMA max_page_count`` at the file's current size, on the
    writer connection (a real file, the real SQLITE_FULL). PostgreSQL: a
    trigger raising SQLSTATE 53100 ``disk_full`` on every event insert, the
    error a full tablespace gives.
    """
    from ledgerflow.eventstore import PostgresEventStore, SQLiteEventStore  # noqa: PLC0415

    if isinstance(store, SQLiteEventStore):
        assert store._writer is not None
        async with store._writer.execute("PRAGMA page_count") as cursor:
            row = await cursor.fetchone()
        assert row is not None
        await store._writer.execute(f"PRAGMA max_page_count = {int(row[0])}")
    elif isinstance(store, PostgresEventStore):
        s = f'"{store.schema}"'
        await _pg(
            f"CREATE FUNCTION {s}.disk_is_full() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = 'disk_full'; END $$",
            f"CREATE TRIGGER disk_is_full BEFORE INSERT ON {s}.events "
            f"FOR EACH ROW EXECUTE FUNCTION {s}.disk_is_full()",
        )
    else:  # pragma: no cover - a backend without a way to fill it
        raise NotImplementedError(type(store).__name__)


async def make_room(store: EventStore) -> None:
    """Undo :func:`fill_up`: the disk has space again."""
    from ledgerflow.eventstore import PostgresEventStore, SQLiteEventStore  # noqa: PLC0415

    if isinstance(store, SQLiteEventStore):
        assert store._writer is not None
        await store._writer.execute("PRAGMA max_page_count = 1073741823")
    elif isinstance(store, PostgresEventStore):
        s = f'"{store.schema}"'
        await _pg(f"DROP TRIGGER disk_is_full ON {s}.events", f"DROP FUNCTION {s}.disk_is_full()")


async def _pg(*statements: str) -> None:
    import asyncpg  # noqa: PLC0415 - only PostgreSQL tests need it

    conn = await asyncpg.connect(PG_DSN)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def store_url(store: EventStore) -> str:
    """The url or path that opens ``store``'s database again (for child processes)."""
    from ledgerflow.eventstore import PostgresEventStore, SQLiteEventStore  # noqa: PLC0415

    if isinstance(store, SQLiteEventStore):
        return store.path
    if isinstance(store, PostgresEventStore):
        return f"{PG_DSN}{'&' if '?' in PG_DSN else '?'}schema={store.schema}"
    raise NotImplementedError(type(store).__name__)  # pragma: no cover


async def raw_sql(store: EventStore, *statements: str) -> None:
    """Run plain SQL on ``store``'s tables behind its back, as someone editing the file would."""
    from ledgerflow.eventstore import PostgresEventStore, SQLiteEventStore  # noqa: PLC0415

    if isinstance(store, SQLiteEventStore):
        conn = sqlite3.connect(store.path, isolation_level=None)
        try:
            for statement in statements:
                conn.execute(statement)
        finally:
            conn.close()
    elif isinstance(store, PostgresEventStore):
        await _pg(f'SET search_path = "{store.schema}"', *statements)
    else:  # pragma: no cover
        raise NotImplementedError(type(store).__name__)

"""A side-effect sink for the kill -9 stories: what was performed, counted by idempotency key.

Two kinds of remote API, as agents meet them:

- ``perform_once(key, ...)``: an API that deduplicates on a client key (an
  airline's booking with an idempotency key). It performs only if no effect
  of that key exists yet, one serialised transaction per call (``BEGIN
  IMMEDIATE`` on SQLite, an advisory lock on the key on PostgreSQL).
- ``perform_raw(key, ...)``: an API that does not (an e-mail, a card charge
  without a key). Every call is a performance; a second call of one
  (run, task) is a duplicated side effect, which is what the stories count.

``effects`` has no unique constraint on purpose, so a double performance
shows as two rows instead of being refused. Adapted from ``tests/pool/pool_sink.py``
(copied rather than imported: each test folder is its own mypy run and
imports its helpers by bare name).

Example::

    sink = Sink("/tmp/effects.db")
    await sink.create()
    assert await sink.perform_once("k1", "r1", "pay") is True    # performed now
    assert await sink.perform_once("k1", "r1", "pay") is False   # deduplicated
    await sink.perform_raw("k2", "r1", "notify")
    assert await sink.performed("r1", "notify") == 1
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = ["Effect", "Sink"]

_TABLES = (
    # kind: "once" (deduplicated by key) or "raw" (every call performs).
    "CREATE TABLE IF NOT EXISTS effects (kind TEXT NOT NULL, key TEXT NOT NULL, "
    "run_id TEXT NOT NULL, task_id TEXT NOT NULL, pid INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS attempts (key TEXT NOT NULL, run_id TEXT NOT NULL, "
    "task_id TEXT NOT NULL, pid INTEGER NOT NULL)",
)


@dataclass(frozen=True, slots=True)
class SinkStore:
    """Where a test sink keeps its tables: a SQLite file path, or a PostgreSQL DSN whose
    tables live in ``schema``. A sink subclasses it and names its ``TABLES``."""

    TABLES: ClassVar[tuple[str, ...]] = ()
    location: str
    schema: str = ""

    @property
    def on_postgres(self) -> bool:
        return self.location.startswith(("postgres://", "postgresql://"))

    def _t(self, table: str) -> str:
        return f'"{self.schema}".{table}' if self.on_postgres else table

    async def create(self) -> None:
        """Create the sink's tables (and its PostgreSQL schema)."""
        if not self.on_postgres:
            await asyncio.to_thread(self._sqlite_create)
            return
        conn = await self._pg()
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            for ddl in self.TABLES:
                await conn.execute(ddl.replace("EXISTS ", f'EXISTS "{self.schema}".', 1))
        finally:
            await conn.close()

    async def _pg(self) -> Any:
        import asyncpg  # noqa: PLC0415 - only PostgreSQL sinks need it

        return await asyncpg.connect(self.location)

    def _sqlite(self) -> sqlite3.Connection:
        # isolation_level=None: a sink's transactions are spelled out (BEGIN IMMEDIATE).
        return sqlite3.connect(self.location, timeout=60, isolation_level=None)

    def _sqlite_create(self) -> None:
        with contextlib.closing(self._sqlite()) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            for ddl in self.TABLES:
                conn.execute(ddl)


@dataclass(frozen=True, slots=True)
class Effect:
    """One performed side effect (a row of ``effects``)."""

    kind: str
    key: str
    run_id: str
    task_id: str
    pid: int


@dataclass(frozen=True, slots=True)
class Sink(SinkStore):
    """Performed side effects and agent calls, counted by idempotency key."""

    TABLES: ClassVar[tuple[str, ...]] = _TABLES

    async def attempt(self, key: str, run_id: str, task_id: str) -> None:
        """Record one call of an agent (attempts may repeat; performances may not)."""
        await self._insert("attempts", (key, run_id, task_id, os.getpid()))

    async def perform_raw(self, key: str, run_id: str, task_id: str) -> None:
        """Perform an effect no API deduplicates: every call counts."""
        await self._insert("effects", ("raw", key, run_id, task_id, os.getpid()))

    async def perform_once(self, key: str, run_id: str, task_id: str) -> bool:
        """Perform the effect of ``key`` unless it was performed already; whether it was now."""
        if not self.on_postgres:
            return await asyncio.to_thread(self._sqlite_once, key, run_id, task_id)
        conn = await self._pg()
        try:
            async with conn.transaction():
                # Serialises performers of one key: READ COMMITTED alone would let
                # two concurrent callers both see "not yet" and both insert.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", key)
                done = await conn.fetchval(
                    f"SELECT count(*) FROM {self._t('effects')} WHERE key = $1", key)
                if done:
                    return False
                await conn.execute(
                    f"INSERT INTO {self._t('effects')} VALUES ('once', $1, $2, $3, $4)",
                    key, run_id, task_id, os.getpid())
                return True
        finally:
            await conn.close()

    async def performed(self, run_id: str, task_id: str) -> int:
        """How many effects (of any kind) were performed for one task of one run."""
        rows = await self._fetch(
            f"SELECT count(*) FROM {self._t('effects')} WHERE run_id = $1 AND task_id = $2",
            run_id, task_id)
        return int(rows[0][0])

    async def effects(self) -> list[Effect]:
        """Every performed effect."""
        rows = await self._fetch(
            f"SELECT kind, key, run_id, task_id, pid FROM {self._t('effects')}")
        return [Effect(str(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4])) for r in rows]

    async def attempts(self) -> list[tuple[str, str, str]]:
        """Every recorded call, as (key, run_id, task_id)."""
        rows = await self._fetch(f"SELECT key, run_id, task_id FROM {self._t('attempts')}")
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    # -- backends ---------------------------------------------------------

    async def _insert(self, table: str, row: tuple[Any, ...]) -> None:
        marks = ", ".join(f"${i + 1}" for i in range(len(row)))
        sql = f"INSERT INTO {self._t(table)} VALUES ({marks})"
        if not self.on_postgres:
            await asyncio.to_thread(self._sqlite_run, qmarks(sql), row)
            return
        conn = await self._pg()
        try:
            await conn.execute(sql, *row)
        finally:
            await conn.close()

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        if not self.on_postgres:
            return await asyncio.to_thread(self._sqlite_run, qmarks(sql), args)
        conn = await self._pg()
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    def _sqlite_run(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        with contextlib.closing(self._sqlite()) as conn:
            return conn.execute(sql, args).fetchall()

    def _sqlite_once(self, key: str, run_id: str, task_id: str) -> bool:
        with contextlib.closing(self._sqlite()) as conn:
            conn.execute("BEGIN IMMEDIATE")  # one performer of any key at a time
            try:
                (done,) = conn.execute("SELECT count(*) FROM effects WHERE key = ?",
                                       (key,)).fetchone()
                if not done:
                    conn.execute("INSERT INTO effects VALUES ('once', ?, ?, ?, ?)",
                                 (key, run_id, task_id, os.getpid()))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return not done


def qmarks(sql: str) -> str:
    """``$1, $2`` (asyncpg) as ``?, ?`` (sqlite3)."""
    for n in range(9, 0, -1):
        sql = sql.replace(f"${n}", "?")
    return sql

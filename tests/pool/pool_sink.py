"""A side-effect sink that counts performances by idempotency key, like a real idempotent API.

Every call of an agent is an *attempt* (one row in ``attempts``). The
side-effecting agent then asks the sink to *perform* its effect under
``ctx.idempotency_key``: the sink performs it only if no effect of that key
exists yet (one serialised transaction per call: ``BEGIN IMMEDIATE`` on SQLite,
a transaction-scoped advisory lock on the key on PostgreSQL), as an airline
API deduplicating on a client key does. ``effects`` has no unique constraint,
so a double performance would show as two rows of one key, and a key that
changed between attempts as two rows of one (run, task).

A sink is named by a string: a SQLite file path, or a PostgreSQL DSN whose
tables live in ``schema``. Example::

    sink = Sink("/tmp/effects.db")
    await sink.create()
    await sink.attempt("k1", "r1", "effect")
    assert await sink.perform("k1", "r1", "effect") is True   # performed now
    assert await sink.perform("k1", "r1", "effect") is False  # deduplicated
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from dataclasses import dataclass
from typing import Any

__all__ = ["Effect", "Sink"]

_TABLES = (
    "CREATE TABLE IF NOT EXISTS attempts (key TEXT NOT NULL, run_id TEXT NOT NULL, "
    "task_id TEXT NOT NULL, pid INTEGER NOT NULL)",
    # No UNIQUE(key) on purpose: a second performance must be countable, not refused.
    "CREATE TABLE IF NOT EXISTS effects (key TEXT NOT NULL, run_id TEXT NOT NULL, "
    "task_id TEXT NOT NULL, pid INTEGER NOT NULL)",
)


@dataclass(frozen=True, slots=True)
class Effect:
    """One performed side effect (a row of ``effects``)."""

    key: str
    run_id: str
    task_id: str
    pid: int


@dataclass(frozen=True, slots=True)
class Sink:
    """Where agents record attempts and perform effects (see the module docstring)."""

    location: str
    schema: str = ""

    @property
    def on_postgres(self) -> bool:
        return self.location.startswith(("postgres://", "postgresql://"))

    def _t(self, table: str) -> str:
        return f'"{self.schema}".{table}' if self.on_postgres else table

    async def create(self) -> None:
        """Create the sink's tables (and its PostgreSQL schema)."""
        if self.on_postgres:
            conn = await self._pg()
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                for ddl in _TABLES:
                    await conn.execute(ddl.replace("EXISTS ", f'EXISTS "{self.schema}".', 1))
            finally:
                await conn.close()
        else:
            await asyncio.to_thread(self._sqlite_script, _TABLES)

    async def attempt(self, key: str, run_id: str, task_id: str) -> None:
        """Record one call of an agent."""
        sql = f"INSERT INTO {self._t('attempts')} VALUES ($1, $2, $3, $4)"
        await self._write(sql, key, run_id, task_id, os.getpid())

    async def perform(self, key: str, run_id: str, task_id: str) -> bool:
        """Perform the effect of ``key`` unless it was performed already; whether it was now."""
        if self.on_postgres:
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
                    await conn.execute(f"INSERT INTO {self._t('effects')} VALUES ($1, $2, $3, $4)",
                                       key, run_id, task_id, os.getpid())
                    return True
            finally:
                await conn.close()
        return await asyncio.to_thread(self._sqlite_perform, key, run_id, task_id)

    async def effects(self) -> list[Effect]:
        """Every performed effect."""
        rows = await self._read(f"SELECT key, run_id, task_id, pid FROM {self._t('effects')}")
        return [Effect(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]

    async def attempts(self) -> list[tuple[str, str, str]]:
        """Every recorded call, as (key, run_id, task_id)."""
        rows = await self._read(f"SELECT key, run_id, task_id FROM {self._t('attempts')}")
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    # -- backends ---------------------------------------------------------

    async def _pg(self) -> Any:
        import asyncpg  # noqa: PLC0415 - only PostgreSQL sinks need it

        return await asyncpg.connect(self.location)

    async def _write(self, sql: str, *args: Any) -> None:
        if self.on_postgres:
            conn = await self._pg()
            try:
                await conn.execute(sql, *args)
            finally:
                await conn.close()
        else:
            await asyncio.to_thread(self._sqlite_write, _qmarks(sql), args)

    async def _read(self, sql: str) -> list[Any]:
        if self.on_postgres:
            conn = await self._pg()
            try:
                return list(await conn.fetch(sql))
            finally:
                await conn.close()
        return await asyncio.to_thread(self._sqlite_read, sql)

    def _sqlite(self) -> sqlite3.Connection:
        # isolation_level=None: the transactions below are spelled out (BEGIN IMMEDIATE).
        return sqlite3.connect(self.location, timeout=60, isolation_level=None)

    def _sqlite_script(self, statements: tuple[str, ...]) -> None:
        with contextlib.closing(self._sqlite()) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            for ddl in statements:
                conn.execute(ddl)

    def _sqlite_write(self, sql: str, args: tuple[Any, ...]) -> None:
        with contextlib.closing(self._sqlite()) as conn:
            conn.execute(sql, args)

    def _sqlite_read(self, sql: str) -> list[Any]:
        with contextlib.closing(self._sqlite()) as conn:
            return conn.execute(sql).fetchall()

    def _sqlite_perform(self, key: str, run_id: str, task_id: str) -> bool:
        with contextlib.closing(self._sqlite()) as conn:
            conn.execute("BEGIN IMMEDIATE")  # one performer of any key at a time
            try:
                (done,) = conn.execute("SELECT count(*) FROM effects WHERE key = ?",
                                       (key,)).fetchone()
                if not done:
                    conn.execute("INSERT INTO effects VALUES (?, ?, ?, ?)",
                                 (key, run_id, task_id, os.getpid()))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return not done


def _qmarks(sql: str) -> str:
    """``$1, $2`` (asyncpg) as ``?, ?`` (sqlite3)."""
    for n in range(9, 0, -1):
        sql = sql.replace(f"${n}", "?")
    return sql


"""The SQLite round trips for side-effect claims of fork families (a mixin of the SQLite store).

A claim is one ``BEGIN IMMEDIATE`` transaction on the writer: SQLite lets one
writer in at a time across every process of the file, so of two members
claiming one (key, attempt) exactly one inserts the row; the other reads
the winner's. Lookups go through the reader, never queueing behind writes.

Example::

    claim = claim_effect_tx(raw_connection, "5f0c...", 1, "fork-a", "book")
"""

from __future__ import annotations

import sqlite3
import time
from typing import TypeVar

from .core_effects import EffectClaim
from .mixin_needs import SQLiteRoundTrips
from .sqlite_rows import rollback

__all__ = ["SQLiteEffectClaims", "claim_effect_tx", "effect_claims_of", "has_family"]

_T = TypeVar("_T")

_REGISTER_SQL = (
    "INSERT INTO fork_families (key_base, created_at) VALUES (?, ?) "
    "ON CONFLICT (key_base) DO NOTHING"
)
_FAMILY_SQL = "SELECT 1 FROM fork_families WHERE key_base = ?"
_CLAIM_SQL = (
    "INSERT INTO effect_claims (key, attempt, run_id, task_id, claimed_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (key, attempt) DO NOTHING"
)
_HOLDER_SQL = "SELECT run_id, task_id FROM effect_claims WHERE key = ? AND attempt = ?"
_CLAIMS_SQL = (
    "SELECT key, attempt, run_id, task_id FROM effect_claims "
    "WHERE (:key IS NULL OR key = :key) ORDER BY key, attempt"
)


def register_family(conn: sqlite3.Connection, key_base: str) -> None:
    """Add ``key_base`` to the fork families (nothing if it is there)."""
    conn.execute(_REGISTER_SQL, (key_base, time.time()))


def has_family(conn: sqlite3.Connection, key_base: str) -> bool:
    """Whether ``key_base`` is a fork family's."""
    return conn.execute(_FAMILY_SQL, (key_base,)).fetchone() is not None


def claim_effect_tx(
    conn: sqlite3.Connection, key: str, attempt: int, run_id: str, task_id: str
) -> EffectClaim:
    """Insert the claim unless one holds (key, attempt); the claim that holds it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        taken = conn.execute(_CLAIM_SQL, (key, attempt, run_id, task_id, time.time())).rowcount
        holder = conn.execute(_HOLDER_SQL, (key, attempt)).fetchone()
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return EffectClaim(key, attempt, str(holder[0]), str(holder[1]), taken=taken == 1)


def effect_claims_of(conn: sqlite3.Connection, key: str | None) -> list[EffectClaim]:
    """The claims under ``key`` (or all), by key then attempt."""
    rows = conn.execute(_CLAIMS_SQL, {"key": key}).fetchall()
    return [EffectClaim(str(r[0]), int(r[1]), str(r[2]), str(r[3])) for r in rows]


class SQLiteEffectClaims(SQLiteRoundTrips):
    """SQLite round trips for side-effect claims of fork families."""

    async def _register_fork_family(self, key_base: str) -> None:
        await self._write(register_family, key_base)

    async def _has_fork_family(self, key_base: str) -> bool:
        return await self._call(self._reader, has_family, key_base)

    async def _claim_effect(
        self, key: str, attempt: int, run_id: str, task_id: str
    ) -> EffectClaim:
        return await self._write(claim_effect_tx, key, attempt, run_id, task_id)

    async def _effect_claims(self, key: str | None) -> list[EffectClaim]:
        return await self._call(self._reader, effect_claims_of, key)

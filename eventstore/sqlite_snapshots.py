"""The SQLite round trips for state snapshots (a mixin of the SQLite store).

Writes go through the writer connection, each one autocommitted statement
(a snapshot is one row; pruning is one DELETE); reads through the reader.
Times are epoch seconds on this machine's clock.

Example::

    await store.put_snapshot("r1", 2000, env.hash, 1, payload)
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from .core_snapshots import StoredSnapshot
from .mixin_needs import SQLiteRoundTrips
from .sqlite_rows import rollback

if TYPE_CHECKING:
    pass

__all__ = ["SQLiteSnapshots"]

_T = TypeVar("_T")

_PUT_SQL = """
INSERT INTO run_snapshots (run_id, seq, hash, format, state, created_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, seq) DO UPDATE SET hash = excluded.hash, format = excluded.format,
    state = excluded.state, created_at = excluded.created_at
"""
_LATEST_SQL = """
SELECT run_id, seq, hash, format, state, created_at FROM run_snapshots
WHERE run_id = ? AND seq <= ? ORDER BY seq DESC LIMIT 1
"""
_ALL_SQL = """
SELECT run_id, seq, hash, format, state, created_at FROM run_snapshots
WHERE run_id = ? ORDER BY seq
"""
_PRUNE_SQL = """
DELETE FROM run_snapshots WHERE run_id = ?1 AND seq NOT IN (
    SELECT seq FROM run_snapshots WHERE run_id = ?1 ORDER BY seq DESC LIMIT ?2)
"""


def _snapshot(row: Any) -> StoredSnapshot:
    run_id, seq, hash_, format_, state, created_at = row
    return StoredSnapshot(run_id, int(seq), hash_, int(format_), bytes(state),
                          datetime.fromtimestamp(float(created_at), UTC))


def _put(  # noqa: PLR0917 - positional: it crosses _write as *args
    conn: sqlite3.Connection, run_id: str, seq: int, hash_: str, format_: int, state: bytes,
    keep: int | None,
) -> None:
    """Insert the snapshot (and prune to ``keep``) in one transaction: one fsync."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_PUT_SQL, (run_id, seq, hash_, format_, state, time.time()))
        if keep is not None:
            conn.execute(_PRUNE_SQL, (run_id, keep))
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def _latest(conn: sqlite3.Connection, run_id: str, at_most: int) -> StoredSnapshot | None:
    row = conn.execute(_LATEST_SQL, (run_id, at_most)).fetchone()
    return None if row is None else _snapshot(row)


def _all(conn: sqlite3.Connection, run_id: str) -> list[StoredSnapshot]:
    return [_snapshot(row) for row in conn.execute(_ALL_SQL, (run_id,)).fetchall()]


def _prune(conn: sqlite3.Connection, run_id: str, keep: int) -> int:
    return conn.execute(_PRUNE_SQL, (run_id, keep)).rowcount


class SQLiteSnapshots(SQLiteRoundTrips):
    """SQLite round trips for state snapshots."""

    async def _put_snapshot(  # noqa: PLR0917 - the row's columns, in their order
        self, run_id: str, seq: int, hash_: str, format_: int, state: bytes, keep: int | None
    ) -> None:
        await self._write(_put, run_id, seq, hash_, format_, state, keep, run_id=run_id)

    async def _latest_snapshot(self, run_id: str, at_most: int) -> StoredSnapshot | None:
        return await self._call(self._reader, _latest, run_id, at_most, run_id=run_id)

    async def _snapshots(self, run_id: str) -> list[StoredSnapshot]:
        return await self._call(self._reader, _all, run_id, run_id=run_id)

    async def _prune_snapshots(self, run_id: str, keep: int) -> int:
        return await self._write(_prune, run_id, keep, run_id=run_id)

"""The SQLite round trips for the secret vault (a mixin of the SQLite store)."""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING, TypeVar

from .mixin_needs import SQLiteRoundTrips
from .sqlite_rows import rollback

if TYPE_CHECKING:
    pass

__all__ = ["SQLiteSecrets"]

_T = TypeVar("_T")


def _put(conn: sqlite3.Connection, run_id: str, values: dict[str, bytes]) -> None:
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(
            "INSERT INTO run_secrets (ref, run_id, value, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (ref) DO NOTHING",
            [(ref, run_id, value, now) for ref, value in values.items()])
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def _get(conn: sqlite3.Connection, refs: list[str]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for at in range(0, len(refs), 500):  # under SQLite's bound on parameters
        chunk = refs[at:at + 500]
        marks = ",".join("?" * len(chunk))
        for ref, value in conn.execute(
                f"SELECT ref, value FROM run_secrets WHERE ref IN ({marks})", chunk):  # noqa: S608
            found[ref] = bytes(value)
    return found


def _of_run(conn: sqlite3.Connection, run_id: str) -> dict[str, bytes]:
    rows = conn.execute("SELECT ref, value FROM run_secrets WHERE run_id = ?", (run_id,))
    return {ref: bytes(value) for ref, value in rows}


def _erase(conn: sqlite3.Connection, run_id: str) -> int:
    return conn.execute("DELETE FROM run_secrets WHERE run_id = ?", (run_id,)).rowcount


class SQLiteSecrets(SQLiteRoundTrips):
    """SQLite round trips for the secret vault: writes on the writer, reads on the reader."""

    async def _put_secrets(self, run_id: str, values: dict[str, bytes]) -> None:
        await self._write(_put, run_id, values, run_id=run_id)

    async def _get_secrets(self, refs: list[str]) -> dict[str, bytes]:
        return await self._call(self._reader, _get, refs)

    async def _run_secrets(self, run_id: str) -> dict[str, bytes]:
        return await self._call(self._reader, _of_run, run_id)

    async def _erase_secrets(self, run_id: str) -> int:
        return await self._write(_erase, run_id, run_id=run_id)

"""The SQLite backend of the event store: the embedded default, through aiosqlite.

This module is the only one in ledgerflow that touches aiosqlite. Design:

- One writer connection per store object, guarded by an ``asyncio.Lock``,
  and a separate query-only reader connection, so reads never queue behind
  writes (WAL lets them run side by side).
- A whole write transaction (``BEGIN IMMEDIATE`` .. ``COMMIT``) runs in ONE
  hop to the connection's thread (see :func:`_one_hop`): every awaited
  aiosqlite call costs ~50 µs of thread hand-off (PERFORMANCE.md), which on
  a chain of tasks is most of the cost of an append.
- The last seq and hash of a run are read inside the transaction, never
  from a cache: another process may be writing to the same file.
- sqlite3 errors are translated into :mod:`ledgerflow.eventstore.errors` in exactly one
  place, :meth:`SQLiteEventStore._translate`.

Example::

    store = await SQLiteEventStore.open("runs.db")
    try:
        await store.append("r1", [NewEvent("RunStarted", b"{}")], expected_seq=0)
    finally:
        await store.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, NamedTuple, Self, TypeVar

import aiosqlite

from .appending import check_append
from .envelope import GENESIS_HASH, Envelope, NewEvent, RunSummary, _hash_text, format_at
from .errors import (
    ConcurrencyError,
    EventStoreError,
    NotAStoreError,
    StoreBusyError,
    StoreClosedError,
    StoreOpenError,
    StoreUrlError,
)
from .schema import SYNCHRONOUS_MODES, prepare, prepare_reader

__all__ = ["DEFAULT_BUSY_TIMEOUT_MS", "DEFAULT_MAX_EVENT_BYTES", "SQLiteEventStore"]

DEFAULT_BUSY_TIMEOUT_MS = 5000
DEFAULT_MAX_EVENT_BYTES = 1_048_576
READ_CHUNK_ROWS = 1000
_MAX_SEQ = 2**63 - 1

_T = TypeVar("_T")


async def _one_hop(conn: aiosqlite.Connection, fn: Callable[..., _T], *args: object) -> _T:
    """Run ``fn(sqlite3_connection, *args)`` on ``conn``'s worker thread, in one hand-off.

    Why a private aiosqlite API: aiosqlite offers no public way to run a
    callable on its thread, and issuing BEGIN, SELECT, executemany, upsert
    and COMMIT as separate awaits costs ~50 µs each (PERFORMANCE.md), which
    would make an append several times slower. ``Connection._execute(fn)``
    queues ``fn`` on the thread and ``Connection._conn`` is the sqlite3
    connection; this is the only place ledgerflow uses either, and
    ``test_aiosqlite_still_offers_one_hop_execute`` fails loudly if a new
    aiosqlite release drops them.
    """
    raw: sqlite3.Connection = conn._conn
    execute: Callable[..., Any] = conn._execute
    result: _T = await execute(fn, raw, *args)
    return result


# --- work done on the database thread (plain sqlite3, synchronous) -----------------------

_LAST_SQL = "SELECT seq, hash FROM events WHERE run_id = ? ORDER BY seq DESC LIMIT 1"
_INSERT_SQL = (
    "INSERT INTO events (run_id, seq, type, at, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_RUN_SQL = """
    INSERT INTO runs (run_id, status, label, created_at, updated_at, last_seq)
    VALUES (:run_id, coalesce(:status, ''), coalesce(:label, ''), :at, :at, :seq)
    ON CONFLICT (run_id) DO UPDATE SET
        status = coalesce(:status, runs.status),
        label = coalesce(:label, runs.label),
        updated_at = excluded.updated_at,
        last_seq = excluded.last_seq
"""
# CAST(... AS BLOB) hands back the stored UTF-8 bytes without a decode/encode in Python.
_READ_SQL = (
    "SELECT seq, type, at, CAST(data AS BLOB), prev_hash, hash FROM events "
    "WHERE run_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
)
_RUNS_SQL = (
    "SELECT run_id, status, label, created_at, updated_at, last_seq FROM runs "
    "ORDER BY updated_at DESC, run_id LIMIT ?"
)
_RUNS_BY_STATUS_SQL = (
    "SELECT run_id, status, label, created_at, updated_at, last_seq FROM runs "
    "WHERE status = ? ORDER BY updated_at DESC, run_id LIMIT ?"
)
_RUN_SQL = (
    "SELECT run_id, status, label, created_at, updated_at, last_seq FROM runs WHERE run_id = ?"
)


class _Batch(NamedTuple):
    """One append, ready for the database thread: validated, times formatted."""

    run_id: str
    items: list[tuple[str, bytes, str]]  # (type, data, data as text)
    expected_seq: int
    at: datetime
    at_text: str
    status: str | None
    label: str | None


def _last_of(conn: sqlite3.Connection, batch: _Batch) -> tuple[int, str]:
    row = conn.execute(_LAST_SQL, (batch.run_id,)).fetchone()
    last_seq, last_hash = (row[0], row[1]) if row is not None else (0, GENESIS_HASH)
    if last_seq != batch.expected_seq:
        raise ConcurrencyError(batch.run_id, batch.expected_seq, last_seq)
    return last_seq, last_hash


def _append_tx(conn: sqlite3.Connection, batch: _Batch) -> list[Envelope]:
    run_id, items, _, at, at_text, status, label = batch
    conn.execute("BEGIN IMMEDIATE")
    try:
        seq, prev = _last_of(conn, batch)
        rows = []
        envelopes = []
        for type_, data, text in items:
            seq += 1
            digest = _hash_text(prev, run_id, seq, type_, at_text, data)
            rows.append((run_id, seq, type_, at_text, text, prev, digest))
            envelopes.append(Envelope(run_id, seq, type_, at, data, prev, digest))
            prev = digest
        conn.executemany(_INSERT_SQL, rows)
        conn.execute(
            _UPSERT_RUN_SQL,
            {"run_id": run_id, "status": status, "label": label, "at": at_text, "seq": seq},
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return envelopes


def _fetch(
    conn: sqlite3.Connection, run_id: str, after: int, until: int, limit: int
) -> list[Envelope]:
    rows = conn.execute(_READ_SQL, (run_id, after, until, limit)).fetchall()
    # All events of one append share one time text, so parse each distinct
    # text once; fromisoformat is the costliest step of decoding a row.
    times: dict[str, datetime] = {}
    parse = datetime.fromisoformat
    out = []
    for seq, type_, at_text, data, prev, digest in rows:
        at = times.get(at_text)
        if at is None:
            at = times[at_text] = parse(at_text)
        out.append(Envelope(run_id, seq, type_, at, data, prev, digest))
    return out


def _lease_tx(conn: sqlite3.Connection, run_id: str, owner: str, ttl_s: float) -> bool:
    conn.execute("BEGIN IMMEDIATE")
    try:
        now = time.time()
        row = conn.execute(
            "SELECT owner, expires_at FROM leases WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is not None and row[0] != owner and row[1] > now:
            conn.execute("ROLLBACK")
            return False
        conn.execute(
            "INSERT INTO leases (run_id, owner, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, "
            "expires_at = excluded.expires_at",
            (run_id, owner, now + ttl_s),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return True


def _summary(row: tuple[Any, ...]) -> RunSummary:
    run_id, status, label, created_at, updated_at, last_seq = row
    return RunSummary(
        run_id,
        status,
        label,
        datetime.fromisoformat(created_at),
        datetime.fromisoformat(updated_at),
        last_seq,
    )


def _query(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


# --- the store ---------------------------------------------------------------------------



class SQLiteEventStore:
    """An :class:`~ledgerflow.eventstore.EventStore` in one SQLite file (WAL, ``synchronous=FULL``).

    Prefer :func:`ledgerflow.eventstore.open_store`; this class is its SQLite result.

    Example::

        async with await SQLiteEventStore.open("runs.db") as store:
            await store.append("r1", [NewEvent("RunStarted", b"{}")], expected_seq=0)
            assert await store.last_seq("r1") == 1
    """

    def __init__(
        self,
        path: str,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        *,
        synchronous: str,
        busy_timeout_ms: int,
        max_event_bytes: int,
    ) -> None:
        """Wrap two prepared connections; use :meth:`open` rather than calling this."""
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self.max_event_bytes = max_event_bytes
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: str,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> Self:
        """Open (creating or migrating if needed) the store at ``path``.

        Raises :class:`NotAStoreError`, :class:`SchemaVersionError`,
        :class:`StoreOpenError` or :class:`StoreBusyError`.
        """
        synchronous = synchronous.upper()
        if synchronous not in SYNCHRONOUS_MODES:
            raise StoreUrlError(
                path, f"the option synchronous must be FULL or NORMAL, not {synchronous!r}"
            )
        opened: list[aiosqlite.Connection] = []
        try:
            writer = await cls._connect(path, busy_timeout_ms, opened)
            await _one_hop(
                writer,
                functools.partial(
                    prepare, path=path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms
                ),
            )
            reader = await cls._connect(path, busy_timeout_ms, opened)
            await _one_hop(
                reader, functools.partial(prepare_reader, busy_timeout_ms=busy_timeout_ms)
            )
        except BaseException as exc:
            for conn in opened:
                await conn.close()
            if isinstance(exc, sqlite3.Error):
                raise cls._translate(exc, path, busy_timeout_ms) from exc
            raise
        return cls(
            path,
            writer,
            reader,
            synchronous=synchronous,
            busy_timeout_ms=busy_timeout_ms,
            max_event_bytes=max_event_bytes,
        )

    @staticmethod
    async def _connect(
        path: str, busy_timeout_ms: int, opened: list[aiosqlite.Connection]
    ) -> aiosqlite.Connection:
        # isolation_level=None: sqlite3 must not open transactions behind our
        # back; every BEGIN and COMMIT is ours.
        conn = aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
        try:
            await conn
        except BaseException:
            # aiosqlite stops the worker thread of a connection that failed to
            # open, but does not wait for it: wait here, while the loop still
            # runs, or the thread reports "Event loop is closed" at exit.
            worker = getattr(conn, "_thread", None)
            if worker is not None and worker.is_alive():
                with contextlib.suppress(Exception):
                    await asyncio.get_running_loop().run_in_executor(None, worker.join, 2.0)
            raise
        opened.append(conn)
        return conn

    @staticmethod
    def _translate(
        exc: sqlite3.Error,
        path: str,
        busy_timeout_ms: int,
        run_id: str | None = None,
        expected_seq: int | None = None,
    ) -> EventStoreError:
        """The one place where sqlite3 errors become event store errors."""
        name = getattr(exc, "sqlite_errorname", "")
        text = str(exc)
        if (
            isinstance(exc, sqlite3.IntegrityError)
            and run_id is not None
            and expected_seq is not None
        ):
            return ConcurrencyError(run_id, expected_seq, None)
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in text:
            return StoreBusyError(path, busy_timeout_ms)
        if name == "SQLITE_NOTADB" or "not a database" in text:
            return NotAStoreError(path, "it is not a SQLite database file")
        if name.startswith("SQLITE_CANTOPEN") or "unable to open database file" in text:
            return StoreOpenError(path, "SQLite cannot open or create the file")
        return EventStoreError(
            f"SQLite failed on the store {path!r} ({name or type(exc).__name__}: {text}); "
            "check the disk and the file, then retry."
        )

    async def _call(
        self,
        conn: aiosqlite.Connection,
        fn: Callable[..., _T],
        *args: object,
        run_id: str | None = None,
        expected_seq: int | None = None,
    ) -> _T:
        if self._closed:
            raise StoreClosedError(self.path)
        try:
            return await _one_hop(conn, fn, *args)
        except sqlite3.Error as exc:
            raise self._translate(
                exc, self.path, self.busy_timeout_ms, run_id, expected_seq
            ) from exc

    # --- writes ---

    async def append(
        self,
        run_id: str,
        events: Sequence[NewEvent],
        expected_seq: int,
        *,
        status: str | None = None,
        label: str | None = None,
        at: datetime | None = None,
    ) -> list[Envelope]:
        """Append ``events`` atomically after ``expected_seq``; see :class:`EventStore`.

        Example::

            envs = await store.append("r1", [NewEvent("RunStarted", b'{"goal":"x"}')],
                                      expected_seq=0, status="running")
            envs[0].seq   # 1

        If the calling task is cancelled while the commit is in flight, the
        append may or may not have been committed: re-read the run.
        """
        checked, at = check_append(run_id, events, expected_seq, at,
                                   max_event_bytes=self.max_event_bytes)
        items = [(type_, data, data.decode()) for type_, data in checked]
        at_text = format_at(at)
        async with self._write_lock:
            batch = _Batch(run_id, items, expected_seq, at, at_text, status, label)
            return await self._call(
                self._writer, _append_tx, batch, run_id=run_id, expected_seq=expected_seq
            )

    async def try_lease(self, run_id: str, owner: str, ttl_s: float) -> bool:
        """Take, renew, or fail to take the run's lease; True when ``owner`` now holds it.

        Example::

            if await store.try_lease("r1", owner="worker-7", ttl_s=30):
                ...  # drive the run; renew before 30 s pass
        """
        async with self._write_lock:
            return await self._call(self._writer, _lease_tx, run_id, owner, float(ttl_s))

    async def release_lease(self, run_id: str, owner: str) -> None:
        """Drop the run's lease if ``owner`` holds it."""
        async with self._write_lock:
            await self._call(
                self._writer,
                _query,
                "DELETE FROM leases WHERE run_id = ? AND owner = ?",
                (run_id, owner),
            )

    # --- reads ---

    async def read(
        self, run_id: str, after: int = 0, until: int | None = None
    ) -> AsyncIterator[Envelope]:
        """Stream the run's envelopes ``after < seq <= until`` in seq order, 1,000 per hop.

        Example::

            async for env in store.read("r1", after=10, until=20):
                print(env.seq, env.type)
        """
        upper = _MAX_SEQ if until is None else until
        while after < upper:
            chunk = await self._call(self._reader, _fetch, run_id, after, upper, READ_CHUNK_ROWS)
            for envelope in chunk:
                yield envelope
            if len(chunk) < READ_CHUNK_ROWS:
                return
            after = chunk[-1].seq

    async def read_all(
        self, run_id: str, after: int = 0, until: int | None = None
    ) -> list[Envelope]:
        """Return the run's envelopes ``after < seq <= until`` in one hop (the replay fast path).

        Example::

            envs = await store.read_all("r1")
            assert check_chain("r1", envs) is None
        """
        upper = _MAX_SEQ if until is None else until
        return await self._call(self._reader, _fetch, run_id, after, upper, -1)

    async def last_seq(self, run_id: str) -> int:
        """Return the run's last seq, 0 when it has no events."""
        rows = await self._call(self._reader, _query, _LAST_SQL, (run_id,))
        return int(rows[0][0]) if rows else 0

    async def runs(self, status: str | None = None, limit: int = 100) -> list[RunSummary]:
        """List runs from the projection, most recently updated first.

        Example::

            failed = await store.runs(status="failed", limit=20)
        """
        if status is None:
            rows = await self._call(self._reader, _query, _RUNS_SQL, (limit,))
        else:
            rows = await self._call(self._reader, _query, _RUNS_BY_STATUS_SQL, (status, limit))
        return [_summary(row) for row in rows]

    async def run(self, run_id: str) -> RunSummary | None:
        """Return the run's projection row, or None when it has no events."""
        rows = await self._call(self._reader, _query, _RUN_SQL, (run_id,))
        return _summary(rows[0]) if rows else None

    # --- lifecycle ---

    async def close(self) -> None:
        """Wait for the write in flight, then close both connections; idempotent."""
        if self._closed:
            return
        async with self._write_lock:
            self._closed = True
            try:
                await self._writer.close()
            finally:
                await self._reader.close()

    async def __aenter__(self) -> Self:
        """Return the store itself; it is closed on leaving the block."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store."""
        await self.close()

    def __repr__(self) -> str:
        """Show the path and whether the store is closed."""
        state = "closed" if self._closed else "open"
        return f"<SQLiteEventStore {self.path!r} {state}>"

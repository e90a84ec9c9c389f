"""The SQLite backend of the event store: the embedded default, through aiosqlite.

This module is the only one in ledgerflow that touches aiosqlite. What every
backend does the same way (append checks, the chain loop, read pagination,
the runs view) is in :mod:`ledgerflow.eventstore.core`; this module holds the
round trips. Design:

- One writer connection per store object, guarded by an ``asyncio.Lock``,
  and a separate query-only reader connection, so reads never queue behind
  writes (WAL lets them run side by side). A ``read_only=True`` store has
  only the reader, opened with SQLite's ``mode=ro``.
- A whole write transaction (``BEGIN IMMEDIATE`` .. ``COMMIT``) runs in ONE
  hop to the connection's thread (see :func:`_one_hop`): every awaited
  aiosqlite call costs ~50 µs of thread hand-off, whatever it does (measured:
  one WAL+NORMAL insert is 19 µs through sqlite3 but 120-165 µs through
  aiosqlite), which on a chain of tasks is most of the cost of an append. Any error inside it
  rolls the transaction back before it leaves the thread, so after a full
  disk the same connection still releases leases and appends.
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
import errno
import functools
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import aiosqlite

from .core import DEFAULT_BUSY_TIMEOUT_MS, DEFAULT_MAX_EVENT_BYTES, Batch, StoreCore, like_prefix
from .envelope import Envelope
from .errors import (
    ConcurrencyError,
    EventStoreError,
    NotAStoreError,
    StoreBusyError,
    StoreClosedError,
    StoreFileSystemReadOnlyError,
    StoreFullError,
    StoreOpenError,
    StoreUrlError,
)
from .pool import Claim, WorkerInfo
from .schema import (
    SCHEMA_VERSION,
    SYNCHRONOUS_MODES,
    prepare,
    prepare_read_only,
    prepare_reader,
    upgrade,
)
from .sqlite_features import SQLiteFeatures
from .sqlite_files import must_be_an_existing_file, must_be_writable_by_us
from .sqlite_pool import (
    claim_tx,
    heartbeat_worker,
    register_worker,
    unregister_worker,
    workers_of,
)
from .sqlite_rows import (
    LAST_SQL,
    MATCH_RUNS_SQL,
    RELEASE_SQL,
    RUN_SQL,
    RUNS_BY_STATUS_SQL,
    RUNS_SQL,
    append_tx,
    fetch_envelopes,
    lease_of,
    lease_tx,
    query,
)

__all__ = ["DEFAULT_BUSY_TIMEOUT_MS", "DEFAULT_MAX_EVENT_BYTES", "SQLiteEventStore"]

_T = TypeVar("_T")


async def _one_hop(conn: aiosqlite.Connection, fn: Callable[..., _T], *args: object) -> _T:
    """Run ``fn(sqlite3_connection, *args)`` on ``conn``'s worker thread, in one hand-off.

    Why a private aiosqlite API: aiosqlite offers no public way to run a
    callable on its thread, and issuing BEGIN, SELECT, executemany, upsert
    and COMMIT as separate awaits costs ~50 µs of thread hand-off each
    (measured: 19 µs per insert with sqlite3, 120-165 µs through aiosqlite), which
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


def _uri(path: str, query_string: str) -> str:
    # A file: URI so that SQLite's mode=rw / mode=ro apply; as_uri() escapes
    # '?', '#' and '%' in the path, which would otherwise start the query.
    return f"{Path(path).absolute().as_uri()}?{query_string}"


def _read_only_cannot_start(exc: BaseException, path: str) -> bool:
    """A WAL store with no ``-wal``/``-shm`` beside it, in a folder we cannot write.

    SQLite's ``mode=ro`` needs the ``-shm`` file to read a WAL database and
    cannot create it there (``SQLITE_READONLY_DIRECTORY``). Without a
    ``-wal`` file no committed event lives outside the main file and no
    writer is live (a WAL writer keeps both files), so reading the main file
    as ``immutable=1`` sees exactly the store.
    """
    name = getattr(exc, "sqlite_errorname", "")
    unopenable = name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN"))
    return unopenable and not Path(f"{path}-wal").exists()


def _file_system_is_read_only(path: str) -> bool:
    """Whether the file system holding ``path`` refuses writes now (what an I/O error on a
    write often means: the kernel remounted it, or aborted its journal, after a disk error).

    Asked only on the error path: the mount flags first, then a probe file, whose
    creation fails with EROFS on a file system that no longer takes writes.
    """
    folder = os.path.dirname(os.path.abspath(path)) or "."
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return True
        probe = os.path.join(folder, f".ledgerflow-probe-{os.getpid()}")
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.unlink(probe)
    except OSError as exc:
        return exc.errno == errno.EROFS
    return False


class SQLiteEventStore(SQLiteFeatures, StoreCore):
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
        writer: aiosqlite.Connection | None,
        reader: aiosqlite.Connection,
        *,
        synchronous: str,
        busy_timeout_ms: int,
        max_event_bytes: int,
        immutable: bool = False,
        schema_version: int = SCHEMA_VERSION,
    ) -> None:
        """Wrap prepared connections (no writer: read-only); use :meth:`open` instead."""
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self.max_event_bytes = max_event_bytes
        self.read_only = writer is None
        self.immutable = immutable
        """True when the read-only store had to be opened as ``immutable=1`` (see :meth:`open`)."""
        self.schema_version = schema_version
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        self._closed = False
        self._registered = {}

    @classmethod
    async def open(
        cls,
        path: str,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        create: bool = True,
        read_only: bool = False,
    ) -> Self:
        """Open the store at ``path``, created when missing and ``create``; never migrated.

        A store at an older schema opens as it is: reads work, writes raise
        :class:`StoreUpgradeRequiredError` until :func:`upgrade_store` runs.

        ``create=False`` opens an existing store only: a missing, zero-byte or
        blank file raises :class:`StoreNotFoundError` and is not touched.
        ``read_only=True`` implies ``create=False`` and writes nothing at all:
        the file is opened with ``mode=ro``; in a folder the user cannot
        write, a WAL store whose ``-wal``/``-shm`` files are absent is read as
        ``immutable=1`` (the only way SQLite reads it there; safe because no
        committed event is outside the main file then). Appends and leases on
        it raise :class:`StoreReadOnlyError`.

        Raises :class:`NotAStoreError`, :class:`SchemaVersionError`,
        :class:`StoreNotFoundError`, :class:`StoreOpenError` or
        :class:`StoreBusyError`.
        """
        synchronous = synchronous.upper()
        if synchronous not in SYNCHRONOUS_MODES:
            raise StoreUrlError(
                path, f"the option synchronous must be FULL or NORMAL, not {synchronous!r}"
            )
        if read_only or not create:
            must_be_an_existing_file(path)
        if not read_only:
            must_be_writable_by_us(path)
        opened: list[aiosqlite.Connection] = []
        try:
            if read_only:
                reader, immutable, version = await cls._open_read_only(
                    path, busy_timeout_ms, opened)
                return cls(
                    path, None, reader, synchronous=synchronous,
                    busy_timeout_ms=busy_timeout_ms, max_event_bytes=max_event_bytes,
                    immutable=immutable, schema_version=version,
                )
            # mode=rw: an existing-only open must not create the file if it
            # vanished since the check above.
            target = path if create else _uri(path, "mode=rw")
            writer = await cls._connect(target, busy_timeout_ms, opened)
            version = await _one_hop(
                writer,
                functools.partial(
                    prepare, path=path, synchronous=synchronous,
                    busy_timeout_ms=busy_timeout_ms, create=create,
                ),
            )
            reader = await cls._connect(target, busy_timeout_ms, opened)
            await _one_hop(
                reader, functools.partial(prepare_reader, busy_timeout_ms=busy_timeout_ms)
            )
        except BaseException as exc:
            for conn in opened:
                await conn.close()
            if isinstance(exc, sqlite3.Error):
                raise cls._translate(exc, path, busy_timeout_ms, opening=True) from exc
            raise
        return cls(
            path, writer, reader, synchronous=synchronous,
            busy_timeout_ms=busy_timeout_ms, max_event_bytes=max_event_bytes,
            schema_version=version,
        )

    @classmethod
    async def _open_read_only(
        cls, path: str, busy_timeout_ms: int, opened: list[aiosqlite.Connection]
    ) -> tuple[aiosqlite.Connection, bool, int]:
        check = functools.partial(prepare_read_only, path=path, busy_timeout_ms=busy_timeout_ms)
        reader = await cls._connect(_uri(path, "mode=ro"), busy_timeout_ms, opened)
        try:
            version = await _one_hop(reader, check)
        except sqlite3.Error as exc:
            if not _read_only_cannot_start(exc, path):
                raise
            opened.remove(reader)
            await reader.close()
            reader = await cls._connect(_uri(path, "mode=ro&immutable=1"), busy_timeout_ms, opened)
            return reader, True, await _one_hop(reader, check)
        return reader, False, version

    @staticmethod
    async def _connect(
        target: str, busy_timeout_ms: int, opened: list[aiosqlite.Connection]
    ) -> aiosqlite.Connection:
        # isolation_level=None: sqlite3 must not open transactions behind our
        # back; every BEGIN and COMMIT is ours.
        conn = aiosqlite.connect(
            target, isolation_level=None, timeout=busy_timeout_ms / 1000,
            uri=target.startswith("file:"),
        )
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
        *,
        opening: bool = False,
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
        if name == "SQLITE_FULL" or "database or disk is full" in text:
            return StoreFullError(path, run_id)
        if name == "SQLITE_NOTADB" or "not a database" in text:
            return NotAStoreError(path, "it is not a SQLite database file")
        if name.startswith("SQLITE_CANTOPEN") or "unable to open database file" in text:
            return StoreOpenError(path, "SQLite cannot open or create the file")
        if opening and name.startswith("SQLITE_READONLY"):
            return StoreOpenError(
                path, "the file or its folder is read-only for this user",
                read_only_would_work=True)
        if name.startswith(("SQLITE_READONLY", "SQLITE_IOERR")) and _file_system_is_read_only(path):
            return StoreFileSystemReadOnlyError(path, run_id)
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

    async def _write(self, fn: Callable[..., _T], *args: object, **kw: Any) -> _T:
        if self._writer is None:  # pragma: no cover - StoreCore refuses writes first
            raise AssertionError("a read-only store has no writer")
        async with self._write_lock:
            return await self._call(self._writer, fn, *args, **kw)

    # --- the round trips StoreCore asks for ---

    async def _write_batch(self, batch: Batch) -> list[Envelope]:
        return await self._write(
            append_tx, batch, run_id=batch.run_id, expected_seq=batch.expected_seq
        )

    async def _take_lease(self, run_id: str, owner: str, ttl_s: float) -> int | None:
        return await self._write(lease_tx, run_id, owner, ttl_s, run_id=run_id)

    async def _claim_run(
        self, owner: str, ttl_s: float, statuses: list[str], workflows: list[str] | None
    ) -> Claim | None:
        return await self._write(claim_tx, owner, ttl_s, statuses, workflows)

    async def _register_worker(self, worker_id: str, info: str, ttl_s: float) -> None:
        await self._write(register_worker, worker_id, info, ttl_s)

    async def _worker_heartbeat(self, worker_id: str, ttl_s: float) -> bool:
        return await self._write(heartbeat_worker, worker_id, ttl_s)

    async def _unregister_worker(self, worker_id: str) -> None:
        await self._write(unregister_worker, worker_id)

    async def _workers(self, include_gone_s: float) -> list[WorkerInfo]:
        return await self._call(self._reader, workers_of, include_gone_s)

    async def _notify_work(self) -> None:
        """Nothing: another process cannot be woken through a SQLite file; workers poll."""

    async def _wait_for_work(self, timeout_s: float) -> bool:
        """Sleep the timeout (polling); never woken, so always False."""
        await asyncio.sleep(timeout_s)
        return False

    async def _upgrade(self) -> tuple[int, int]:
        versions = await self._write(upgrade, self.path)
        self.schema_version = versions[1]
        return versions

    async def _release_lease(self, run_id: str, owner: str) -> None:
        await self._write(query, RELEASE_SQL, (time.time(), run_id, owner), run_id=run_id)

    async def _lease_of(self, run_id: str) -> tuple[str, float] | None:
        return await self._call(self._reader, lease_of, run_id)

    async def _fetch(
        self, run_id: str, lower: int, upper: int, limit: int | None
    ) -> list[Envelope]:
        return await self._call(
            self._reader, fetch_envelopes, self.path, run_id, lower, upper,
            -1 if limit is None else limit,
        )

    async def _last_seq(self, run_id: str) -> int:
        rows = await self._call(self._reader, query, LAST_SQL, (run_id,))
        return int(rows[0][0]) if rows else 0

    async def _runs_rows(self, status: str | None, limit: int | None) -> list[Sequence[Any]]:
        count = -1 if limit is None else limit  # LIMIT -1: no limit
        now = time.time()
        if status is None:
            return await self._call(
                self._reader, query, RUNS_SQL, {"now": now, "limit": count})
        return await self._call(
            self._reader, query, RUNS_BY_STATUS_SQL, {"now": now, "status": status, "limit": count}
        )

    async def _run_row(self, run_id: str) -> Sequence[Any] | None:
        rows = await self._call(
            self._reader, query, RUN_SQL, {"now": time.time(), "run_id": run_id})
        return rows[0] if rows else None

    async def _match_runs(self, prefix: str, limit: int) -> list[str]:
        rows = await self._call(
            self._reader, query, MATCH_RUNS_SQL, (like_prefix(prefix), len(prefix), prefix, limit)
        )
        return [row[0] for row in rows]

    async def _shutdown(self) -> None:
        async with self._write_lock:
            self._closed = True
            try:
                if self._writer is not None:
                    await self._writer.close()
            finally:
                await self._reader.close()


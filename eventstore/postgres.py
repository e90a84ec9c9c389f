"""The PostgreSQL backend of the event store: the multi-worker one, through asyncpg.

This module is the only one in ledgerflow that touches asyncpg (an optional
dependency: ``pip install ledgerflow[postgres]``). What every backend does the
same way is in :mod:`ledgerflow.eventstore.core`; the SQL and the opening
checks are in :mod:`ledgerflow.eventstore.postgres_schema`. Design:

- A small connection pool (1 to ``pool_size`` connections, default 4) per
  store object, so the tasks of one worker share connections and many
  workers or processes share one database.
- A store lives in one PostgreSQL schema (default ``ledgerflow``): tables
  ``meta`` (marker + version), ``events``, ``runs``, ``leases``, ``workers``.
  Opening checks the marker and the version and creates a new store (only
  ``upgrade_store`` migrates) under an advisory lock, so openers take turns.
  A fenced append also locks its leases row FOR SHARE. ``create=False`` never creates the schema;
  ``read_only=True`` also runs every session with
  ``default_transaction_read_only``.
- An append is two round trips and no explicit transaction: (1) read the
  run's last (seq, hash); (2) ONE statement that inserts every event (arrays
  through ``unnest``) and upserts the runs row in a data-modifying CTE, so
  it is atomic on its own. Seqs are gapless, so if another writer got in
  between, seq ``expected_seq + 1`` already exists and the primary key
  refuses the whole statement: that unique violation is the
  :class:`ConcurrencyError`. No lock is held across round trips, and a
  failed statement leaves no transaction open on the pooled connection.
- ``data`` is stored as ``json`` (the exact bytes the hash covers, key
  order and whitespace kept; ``data->>'task_id'`` works), passed through as
  bytes in asyncpg's binary format with no decode or encode in Python.
- asyncpg and socket errors are translated into :mod:`ledgerflow.eventstore.errors` in
  exactly one place, :meth:`PostgresEventStore._translate`.

Example::

    store = await PostgresEventStore.open("postgresql://app@db/runs", schema="ledgerflow")
    try:
        await store.append("r1", [NewEvent("RunStarted", b"{}")], expected_seq=0)
    finally:
        await store.close()
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, Self, TypeVar

from .core import (
    DEFAULT_BUSY_TIMEOUT_MS,
    DEFAULT_MAX_EVENT_BYTES,
    Batch,
    StoreCore,
    chain_batch,
    like_prefix,
    must_expect_the_last_seq,
)
from .envelope import GENESIS_HASH, Envelope
from .errors import (
    ConcurrencyError,
    EventStoreError,
    StoreBusyError,
    StoreClosedError,
    StoreFullError,
    StoreServerReadOnlyError,
    StoreUrlError,
)
from .pool import Claim, WorkerInfo, notify_channel
from .postgres_features import PostgresFeatures
from .postgres_listener import WorkListener
from .postgres_schema import (
    APPEND_SQL,
    CLAIM_SQL,
    DEFAULT_POOL_SIZE,
    DEFAULT_SCHEMA,
    FENCE_SQL,
    HEARTBEAT_SQL,
    LAST_SQL,
    LEASE_OF_SQL,
    LEASE_SQL,
    MATCH_RUNS_SQL,
    READ_SQL,
    REGISTER_SQL,
    RELEASE_SQL,
    RUN_SQL,
    RUNS_BY_STATUS_SQL,
    RUNS_SQL,
    UNREGISTER_SQL,
    WORKERS_SQL,
    PostgresOpenError,
    check_schema_name,
    display,
    init_connection,
    no_reset,
    prepare,
)
from .postgres_tasks import hold_fence
from .schema import SCHEMA_VERSION, SYNCHRONOUS_MODES

try:
    import asyncpg
except ImportError:  # pragma: no cover - asyncpg is the optional "postgres" extra
    asyncpg = None

__all__ = [
    "DEFAULT_APPLICATION_NAME",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_SCHEMA",
    "PostgresEventStore",
    "check_schema_name",
]

_T = TypeVar("_T")

_CLAIM_TRIES = 5
"""How often a claim re-picks after losing its pick to a concurrent claimer's commit."""

DEFAULT_APPLICATION_NAME = "ledgerflow"
"""What ``pg_stat_activity`` shows for the store's connections unless the url names another."""


class PostgresEventStore(PostgresFeatures, StoreCore):
    """An :class:`~ledgerflow.eventstore.EventStore` in one PostgreSQL schema, shared by workers.

    Prefer :func:`ledgerflow.eventstore.open_store`; this class is its PostgreSQL result.

    Example::

        async with open_store("postgresql://app@db/runs?schema=ledgerflow") as store:
            await store.append("r1", [NewEvent("RunStarted", b"{}")], expected_seq=0)
            assert await store.last_seq("r1") == 1
    """

    _forbid_nul: ClassVar[bool] = True

    def __init__(
        self,
        pool: Any,
        *,
        location: str,
        schema: str,
        synchronous: str,
        busy_timeout_ms: int,
        max_event_bytes: int,
        pool_size: int,
        read_only: bool = False,
        schema_version: int = SCHEMA_VERSION,
        listen: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        """Wrap a prepared pool; use :meth:`open` rather than calling this.

        ``listen`` opens the dedicated connection :meth:`wait_for_work` LISTENs
        on (None: waits just sleep, as on SQLite).
        """
        self.path = location
        """The store's url without its password, for messages."""
        self.schema = schema
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self.max_event_bytes = max_event_bytes
        self.pool_size = pool_size
        self.read_only = read_only
        self.schema_version = schema_version
        self._pool = pool
        self._closed = False
        self._registered = {}
        self._channel = notify_channel(schema)
        self._listener = None if listen is None else WorkListener(listen, self._channel)
        s = f'"{schema}"'
        self._last_sql = LAST_SQL.format(s=s)
        self._append_sql = APPEND_SQL.format(s=s)
        self._read_sql = READ_SQL.format(s=s)
        self._runs_sql = RUNS_SQL.format(s=s)
        self._runs_by_status_sql = RUNS_BY_STATUS_SQL.format(s=s)
        self._run_sql = RUN_SQL.format(s=s)
        self._match_runs_sql = MATCH_RUNS_SQL.format(s=s)
        self._lease_sql = LEASE_SQL.format(s=s)
        self._lease_of_sql = LEASE_OF_SQL.format(s=s)
        self._release_sql = RELEASE_SQL.format(s=s)
        self._fence_sql = FENCE_SQL.format(s=s)
        self._claim_sql = CLAIM_SQL.format(s=s)
        self._register_sql = REGISTER_SQL.format(s=s)
        self._heartbeat_sql = HEARTBEAT_SQL.format(s=s)
        self._unregister_sql = UNREGISTER_SQL.format(s=s)
        self._workers_sql = WORKERS_SQL.format(s=s)
        self._format_task_sql(s)

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        synchronous: str = "FULL",
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        pool_size: int = DEFAULT_POOL_SIZE,
        create: bool = True,
        read_only: bool = False,
        application_name: str = DEFAULT_APPLICATION_NAME,
        connect_timeout: float | None = None,
        shown: str | None = None,
    ) -> Self:
        """Open the store in ``schema`` of the database, created when missing; never migrated.

        A store at an older schema opens as it is: reads work, writes raise
        :class:`StoreUpgradeRequiredError` until :func:`upgrade_store` runs.

        ``create=False`` opens an existing store only: a missing or empty
        schema raises :class:`StoreNotFoundError` and nothing is created.
        ``read_only=True`` implies ``create=False``, writes nothing, and makes
        appends and leases raise :class:`StoreReadOnlyError`.
        ``synchronous="NORMAL"`` sets ``synchronous_commit = off``: a commit
        survives a crash of the worker, but the last ones may be lost if the
        server crashes. ``busy_timeout_ms`` becomes ``lock_timeout``.
        ``connect_timeout`` (seconds, default asyncpg's 60) bounds each
        connection attempt. ``shown`` is the location messages name (default:
        ``dsn`` without its password, with ``schema=``); :func:`open_store`
        passes the url as the user typed it.
        Raises :class:`NotAStoreError`, :class:`SchemaVersionError`,
        :class:`StoreNotFoundError` or :class:`StoreOpenError`.
        """
        problem = check_schema_name(schema)
        if problem is not None:
            raise StoreUrlError(display(dsn, str(schema)), problem)
        location = shown if shown is not None else display(dsn, schema)
        synchronous = synchronous.upper()
        if synchronous not in SYNCHRONOUS_MODES:
            raise StoreUrlError(
                location, f"the option synchronous must be FULL or NORMAL, not {synchronous!r}"
            )
        if asyncpg is None:  # pragma: no cover - the optional dependency is missing
            raise PostgresOpenError(
                location, "asyncpg is not installed; install ledgerflow[postgres]"
            )
        settings = {
            "application_name": application_name,
            "lock_timeout": f"{int(busy_timeout_ms)}ms",
        }
        if synchronous == "NORMAL":
            settings["synchronous_commit"] = "off"
        if read_only:
            settings["default_transaction_read_only"] = "on"
        pool = None
        timeout = {} if connect_timeout is None else {"timeout": connect_timeout}
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=pool_size,
                init=init_connection,
                reset=no_reset,
                server_settings=settings,
                **timeout,
            )
            async with pool.acquire() as conn:
                _, version = await prepare(
                    conn, schema, location, create=create, read_only=read_only)
        except BaseException as exc:
            if pool is not None:
                pool.terminate()
            if isinstance(exc, EventStoreError) or not isinstance(exc, Exception):
                raise
            raise cls._translate(exc, location, busy_timeout_ms, opening=True) from exc
        return cls(
            pool,
            location=location,
            schema=schema,
            synchronous=synchronous,
            busy_timeout_ms=busy_timeout_ms,
            max_event_bytes=max_event_bytes,
            pool_size=pool_size,
            read_only=read_only,
            schema_version=version,
            listen=lambda: asyncpg.connect(dsn, server_settings=settings, **timeout),
        )

    @staticmethod
    def _translate(
        exc: Exception,
        location: str,
        busy_timeout_ms: int,
        run_id: str | None = None,
        expected_seq: int | None = None,
        *,
        opening: bool = False,
        closed: bool = False,
    ) -> EventStoreError:
        """The one place where asyncpg and socket errors become event store errors."""
        text = str(exc)
        if (
            isinstance(exc, asyncpg.UniqueViolationError)
            and run_id is not None
            and expected_seq is not None
        ):
            # Seqs are gapless, so a taken seq means another writer got in first.
            return ConcurrencyError(run_id, expected_seq, None)
        if isinstance(exc, asyncpg.LockNotAvailableError):
            return StoreBusyError(location, busy_timeout_ms)
        if isinstance(exc, asyncpg.DiskFullError):
            return StoreFullError(location, run_id)
        if isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
            return StoreServerReadOnlyError(location, run_id, "the session is read-only")
        if isinstance(exc, asyncpg.InsufficientPrivilegeError):
            return StoreServerReadOnlyError(location, run_id, f"permission denied: {text}")
        if closed:
            return StoreClosedError(location)
        if isinstance(exc, asyncpg.InvalidCatalogNameError):
            return PostgresOpenError(location, f"the database does not exist ({text})")
        if isinstance(
            exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError
        ):
            return PostgresOpenError(location, f"the server refused the login ({text})")
        if isinstance(exc, OSError | TimeoutError | asyncpg.PostgresConnectionError) or (
            opening and isinstance(exc, asyncpg.InterfaceError)
        ):
            return PostgresOpenError(
                location, f"cannot reach the server ({type(exc).__name__}: {text})"
            )
        if opening:
            return PostgresOpenError(location, f"{type(exc).__name__}: {text}")
        return EventStoreError(
            f"PostgreSQL failed on the store {location!r} ({type(exc).__name__}: {text}); "
            "check the server and its log, then retry."
        )

    async def _call(
        self,
        fn: Callable[..., Awaitable[_T]],
        *args: object,
        run_id: str | None = None,
        expected_seq: int | None = None,
    ) -> _T:
        """Run ``fn(connection, *args)`` on a pooled connection, translating its errors."""
        if self._closed:
            raise StoreClosedError(self.path)
        try:
            async with self._pool.acquire() as conn:
                result: _T = await fn(conn, *args)
                return result
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise self._translate(
                exc,
                self.path,
                self.busy_timeout_ms,
                run_id,
                expected_seq,
                closed=self._closed,
            ) from exc

    # --- the round trips StoreCore asks for ---

    async def _append(self, conn: Any, batch: Batch) -> list[Envelope]:
        row = await conn.fetchrow(self._last_sql, batch.run_id)
        last_seq, last_hash = (row[0], row[1]) if row is not None else (0, GENESIS_HASH)
        must_expect_the_last_seq(batch, last_seq)
        envs = chain_batch(batch, last_seq, last_hash)
        await conn.execute(
            self._append_sql,
            batch.run_id,
            batch.at,
            [e.seq for e in envs],
            [e.type for e in envs],
            [e.data for e in envs],
            [e.prev_hash for e in envs],
            [e.hash for e in envs],
            batch.status,
            batch.label,
            envs[-1].seq,
        )
        return envs

    async def _fenced_append(self, conn: Any, batch: Batch) -> list[Envelope]:
        """The append in a transaction that first locks the leases row and checks its fence."""
        fence = batch.fence
        if fence is None:  # pragma: no cover - _write_batch sends unfenced batches to _append
            return await self._append(conn, batch)
        async with conn.transaction():
            await hold_fence(conn, self._fence_sql, batch.run_id, fence)
            return await self._append(conn, batch)

    async def _write_batch(self, batch: Batch) -> list[Envelope]:
        append = self._append if batch.fence is None else self._fenced_append
        return await self._call(
            append, batch, run_id=batch.run_id, expected_seq=batch.expected_seq
        )

    async def _take_lease(self, run_id: str, owner: str, ttl_s: float) -> int | None:
        """Take or renew the lease; expiry is judged on the database server's clock."""
        fence = await self._call(_fetchval, self._lease_sql, run_id, owner, ttl_s)
        return None if fence is None else int(fence)

    async def _claim_run(
        self, owner: str, ttl_s: float, statuses: list[str], workflows: list[str] | None
    ) -> Claim | None:
        for _ in range(_CLAIM_TRIES):
            row = await self._call(
                _fetchrow, self._claim_sql, owner, ttl_s, statuses, workflows)
            if row is None:
                return None
            if row[1] is not None:
                return Claim(str(row[0]), int(row[1]), str(row[2]), str(row[3]))
            # Our snapshot saw the run free, but a claimer that committed since holds it.
        return None

    async def _register_worker(self, worker_id: str, info: str, ttl_s: float) -> None:
        await self._call(_execute, self._register_sql, worker_id, info, ttl_s)

    async def _worker_heartbeat(self, worker_id: str, ttl_s: float) -> bool:
        return bool(await self._call(_fetchval, self._heartbeat_sql, worker_id, ttl_s))

    async def _unregister_worker(self, worker_id: str) -> None:
        await self._call(_execute, self._unregister_sql, worker_id)

    async def _workers(self, include_gone_s: float) -> list[WorkerInfo]:
        rows = await self._call(_fetch, self._workers_sql, include_gone_s)
        return [
            WorkerInfo(
                worker_id=r[0], info=json.loads(r[1]), started_at=r[2], heartbeat_at=r[3],
                expires_at=r[4], alive=r[5], runs=tuple(r[6]),
            )
            for r in rows
        ]

    async def _notify_work(self) -> None:
        await self._call(_execute, "SELECT pg_notify($1, '')", self._channel)

    async def _wait_for_work(self, timeout_s: float) -> bool:
        if self._listener is None:  # pragma: no cover - stores made by open() can listen
            await asyncio.sleep(timeout_s)
            return False
        try:
            return await self._listener.wait(timeout_s)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise self._translate(exc, self.path, self.busy_timeout_ms) from exc

    async def _upgrade(self) -> tuple[int, int]:
        async def run(conn: Any) -> tuple[int, int]:
            return await prepare(conn, self.schema, self.path, create=False, upgrade=True)

        versions = await self._call(run)
        self.schema_version = versions[1]
        return versions

    async def _release_lease(self, run_id: str, owner: str) -> None:
        await self._call(_execute, self._release_sql, run_id, owner)

    async def _lease_of(self, run_id: str) -> tuple[str, float] | None:
        row = await self._call(_fetchrow, self._lease_of_sql, run_id)
        return (str(row[0]), float(row[1])) if row is not None else None

    async def _fetch(
        self, run_id: str, lower: int, upper: int, limit: int | None
    ) -> list[Envelope]:
        rows = await self._call(_fetch, self._read_sql, run_id, lower, upper, limit)
        return [Envelope(run_id, r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    async def _last_seq(self, run_id: str) -> int:
        row = await self._call(_fetchrow, self._last_sql, run_id)
        return int(row[0]) if row is not None else 0

    async def _runs_rows(self, status: str | None, limit: int | None) -> list[Sequence[Any]]:
        if status is None:
            return await self._call(_fetch, self._runs_sql, limit)
        return await self._call(_fetch, self._runs_by_status_sql, status, limit)

    async def _run_row(self, run_id: str) -> Sequence[Any] | None:
        row: Sequence[Any] | None = await self._call(_fetchrow, self._run_sql, run_id)
        return row

    async def _match_runs(self, prefix: str, limit: int) -> list[str]:
        rows = await self._call(_fetch, self._match_runs_sql, like_prefix(prefix), limit)
        return [row[0] for row in rows]

    async def _shutdown(self) -> None:
        self._closed = True
        try:
            if self._listener is not None:
                await self._listener.close()
        finally:
            await self._pool.close()


async def _fetch(conn: Any, sql: str, *args: object) -> list[Any]:
    rows: list[Any] = await conn.fetch(sql, *args)
    return rows


async def _fetchrow(conn: Any, sql: str, *args: object) -> Any:
    return await conn.fetchrow(sql, *args)


async def _fetchval(conn: Any, sql: str, *args: object) -> Any:
    return await conn.fetchval(sql, *args)


async def _execute(conn: Any, sql: str, *args: object) -> None:
    await conn.execute(sql, *args)

"""The PostgreSQL backend of the event store: the multi-worker one, through asyncpg.

This module is the only one in ledgerflow that touches asyncpg (an optional
dependency: ``pip install ledgerflow[postgres]``). Design:

- A small connection pool (1 to ``pool_size`` connections, default 4) per
  store object, so the tasks of one worker share connections and many
  workers or processes share one database.
- A store lives in one PostgreSQL schema (default ``ledgerflow``): tables
  ``meta`` (application marker + schema version), ``events``, ``runs``,
  ``leases``. Opening checks the marker and the version, and creates or
  migrates under a transaction-level advisory lock, so processes opening at
  once do not race (see :func:`_prepare`).
- An append is two round trips and no explicit transaction: (1) read the
  run's last (seq, hash); (2) ONE statement that inserts every event (arrays
  through ``unnest``) and upserts the runs row in a data-modifying CTE, so
  it is atomic on its own. Seqs are gapless, so if another writer got in
  between, seq ``expected_seq + 1`` already exists and the primary key
  refuses the whole statement: that unique violation is the
  :class:`ConcurrencyError`. No lock is held across round trips.
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

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, NamedTuple, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .appending import check_append
from .envelope import GENESIS_HASH, Envelope, NewEvent, RunSummary, _hash_text, format_at
from .errors import (
    ConcurrencyError,
    EventStoreError,
    InvalidAppendError,
    NotAStoreError,
    SchemaVersionError,
    StoreBusyError,
    StoreClosedError,
    StoreOpenError,
    StoreUrlError,
)
from .schema import POSTGRES_APPLICATION, POSTGRES_MIGRATIONS, SCHEMA_VERSION, SYNCHRONOUS_MODES

try:
    import asyncpg
except ImportError:  # pragma: no cover - asyncpg is the optional "postgres" extra
    asyncpg = None

__all__ = [
    "DEFAULT_POOL_SIZE",
    "DEFAULT_SCHEMA",
    "PostgresEventStore",
    "check_schema_name",
]

DEFAULT_SCHEMA = "ledgerflow"
DEFAULT_POOL_SIZE = 4
DEFAULT_BUSY_TIMEOUT_MS = 5000
DEFAULT_MAX_EVENT_BYTES = 1_048_576
READ_CHUNK_ROWS = 1000
_MAX_SEQ = 2**63 - 1
_APPLICATION_LOCK = 0x524C4447  # "RLDG", as SQLite's application_id; fits an int4
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_T = TypeVar("_T")



def check_schema_name(name: str) -> str | None:
    """Return why ``name`` cannot be a store's PostgreSQL schema, or None when it can."""
    if not isinstance(name, str) or not _SCHEMA_NAME.match(name):
        return (
            f"the schema {name!r} is not a plain PostgreSQL name "
            "(lower-case letters, digits and '_', not starting with a digit, at most 63)"
        )
    if name.startswith("pg_"):
        return f"the schema {name!r} starts with 'pg_', which PostgreSQL reserves"
    return None


def _display(dsn: str, schema: str) -> str:
    """The url shown in messages: no password, and the schema."""
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}@{host}"
    query = f"{parts.query}&schema={schema}" if parts.query else f"schema={schema}"
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class _PostgresOpenError(StoreOpenError):
    """A :class:`StoreOpenError` worded for a server rather than a file."""

    def __init__(self, location: str, reason: str) -> None:
        self.path = location
        self.reason = reason
        EventStoreError.__init__(
            self,
            f"Cannot open the store {location!r}: {reason}. Check that the PostgreSQL server "
            "is running and that the url's host, port, user, password and database are right.",
        )


class _NotAPostgresStoreError(NotAStoreError):
    """A :class:`NotAStoreError` worded for a PostgreSQL schema rather than a file."""

    def __init__(self, location: str, schema: str, reason: str) -> None:
        self.path = location
        self.reason = reason
        EventStoreError.__init__(
            self,
            f"The PostgreSQL schema {schema!r} of {location!r} is not a ledgerflow store: "
            f"{reason}. It was left untouched; open the store with another schema= "
            "(a new name is created) or point ledgerflow at an existing store.",
        )


# --- SQL (the schema name is validated, then quoted into every statement) -----------------

_LAST_SQL = "SELECT seq, hash FROM {s}.events WHERE run_id = $1 ORDER BY seq DESC LIMIT 1"
# One statement, so atomic without BEGIN/COMMIT round trips. Data-modifying
# CTEs always run, so the runs upsert happens exactly when the inserts do.
_APPEND_SQL = """
WITH inserted AS (
    INSERT INTO {s}.events (run_id, seq, type, at, data, prev_hash, hash)
    SELECT $1, u.seq, u.type, $2, u.data, u.prev_hash, u.hash
    FROM unnest($3::bigint[], $4::text[], $5::json[], $6::text[], $7::text[])
        AS u(seq, type, data, prev_hash, hash)
    RETURNING 1
)
INSERT INTO {s}.runs AS r (run_id, status, label, created_at, updated_at, last_seq)
VALUES ($1, coalesce($8, ''), coalesce($9, ''), $2, $2, $10)
ON CONFLICT (run_id) DO UPDATE SET
    status = coalesce($8, r.status),
    label = coalesce($9, r.label),
    updated_at = excluded.updated_at,
    last_seq = excluded.last_seq
"""
_READ_SQL = (
    "SELECT seq, type, at, data, prev_hash, hash FROM {s}.events "
    "WHERE run_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4"
)
_RUNS_SQL = (
    "SELECT run_id, status, label, created_at, updated_at, last_seq FROM {s}.runs "
    "ORDER BY updated_at DESC, run_id LIMIT $1"
)
_RUNS_BY_STATUS_SQL = (
    "SELECT run_id, status, label, created_at, updated_at, last_seq FROM {s}.runs "
    "WHERE status = $1 ORDER BY updated_at DESC, run_id LIMIT $2"
)
_RUN_SQL = (
    "SELECT run_id, status, label, created_at, updated_at, last_seq FROM {s}.runs WHERE run_id = $1"
)
_META_SQL = "SELECT application, schema_version FROM {s}.meta"
_MARK_SQL = (
    "INSERT INTO {s}.meta (application, schema_version) VALUES ($1, $2) "
    "ON CONFLICT (singleton) DO UPDATE SET application = excluded.application, "
    "schema_version = excluded.schema_version"
)
# Expiry is judged on the database clock, the one clock every worker shares.
# ON CONFLICT DO UPDATE locks the row and re-checks the WHERE on its newest
# version, so two takers cannot both win.
_LEASE_SQL = """
INSERT INTO {s}.leases AS l (run_id, owner, expires_at)
VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))
ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
WHERE l.owner = excluded.owner OR l.expires_at <= clock_timestamp()
RETURNING true
"""
_RELEASE_SQL = "DELETE FROM {s}.leases WHERE run_id = $1 AND owner = $2"


class _Batch(NamedTuple):
    """One validated append."""

    run_id: str
    items: list[tuple[str, bytes]]  # (type, data)
    expected_seq: int
    at: datetime
    status: str | None
    label: str | None


def _summary(row: Any) -> RunSummary:
    return RunSummary(row[0], row[1], row[2], row[3], row[4], row[5])


async def _init_connection(conn: Any) -> None:
    # json travels as its raw UTF-8 bytes (binary format = the text itself):
    # the hashed bytes go in and come out untouched, with no str round trip.
    await conn.set_type_codec(
        "json", schema="pg_catalog", encoder=bytes, decoder=bytes, format="binary"
    )


async def _no_reset(conn: Any) -> None:
    # The store never changes session state (its advisory locks are
    # transaction-level), so asyncpg's reset query on every release would be
    # a wasted round trip per call.
    return None


async def _prepare(conn: Any, schema: str, location: str) -> None:
    """Check that ``schema`` is a ledgerflow store; create or migrate it if needed.

    Does exactly one of, in one transaction under an advisory lock (so two
    processes opening at once take turns, and a crash leaves the old schema):

    - no schema, or an empty one: created at :data:`SCHEMA_VERSION`;
    - our marker, an older version: the missing migrations run, in order;
    - our marker, the current version: nothing;
    - our marker, a newer version: :class:`SchemaVersionError`, nothing written;
    - objects without our marker: :class:`NotAStoreError`, nothing written.
    """
    encoding = await conn.fetchval("SHOW server_encoding")
    if encoding != "UTF8":
        raise _PostgresOpenError(
            location,
            f"the database's encoding is {encoding}, and the store needs UTF8 "
            "to keep each event's bytes exactly",
        )
    quoted = f'"{schema}"'  # check_schema_name allowed only [a-z0-9_]
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1::int4, hashtext($2))", _APPLICATION_LOCK, schema
        )
        exists = await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema)
        objects = [
            r[0]
            for r in await conn.fetch(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
                "ORDER BY c.relname",
                schema,
            )
        ]
        version = 0
        if objects:
            if "meta" not in objects:
                names = ", ".join(objects[:5]) + (", ..." if len(objects) > 5 else "")
                raise _NotAPostgresStoreError(
                    location,
                    schema,
                    f"it holds {len(objects)} tables or views of another application ({names})",
                )
            row = await conn.fetchrow(_META_SQL.format(s=quoted))
            if row is None or row[0] != POSTGRES_APPLICATION:
                found = "no marker" if row is None else f"the marker {row[0]!r}"
                raise _NotAPostgresStoreError(
                    location, schema, f"its meta table holds {found}, not ledgerflow's"
                )
            version = int(row[1])
            if version > SCHEMA_VERSION:
                raise SchemaVersionError(location, version, SCHEMA_VERSION)
            if version == SCHEMA_VERSION:
                return
        if not exists:
            await conn.execute(f"CREATE SCHEMA {quoted}")
        for migration in POSTGRES_MIGRATIONS:
            if migration.version > version:
                for statement in migration.statements:
                    await conn.execute(statement.format(schema=quoted))
        await conn.execute(_MARK_SQL.format(s=quoted), POSTGRES_APPLICATION, SCHEMA_VERSION)


class PostgresEventStore:
    """An :class:`~ledgerflow.eventstore.EventStore` in one PostgreSQL schema, shared by workers.

    Prefer :func:`ledgerflow.eventstore.open_store`; this class is its PostgreSQL result.

    Example::

        async with open_store("postgresql://app@db/runs?schema=ledgerflow") as store:
            await store.append("r1", [NewEvent("RunStarted", b"{}")], expected_seq=0)
            assert await store.last_seq("r1") == 1
    """

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
    ) -> None:
        """Wrap a prepared pool; use :meth:`open` rather than calling this."""
        self.path = location
        """The store's url without its password, for messages."""
        self.schema = schema
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self.max_event_bytes = max_event_bytes
        self.pool_size = pool_size
        self._pool = pool
        self._closed = False
        s = f'"{schema}"'
        self._last_sql = _LAST_SQL.format(s=s)
        self._append_sql = _APPEND_SQL.format(s=s)
        self._read_sql = _READ_SQL.format(s=s)
        self._runs_sql = _RUNS_SQL.format(s=s)
        self._runs_by_status_sql = _RUNS_BY_STATUS_SQL.format(s=s)
        self._run_sql = _RUN_SQL.format(s=s)
        self._lease_sql = _LEASE_SQL.format(s=s)
        self._release_sql = _RELEASE_SQL.format(s=s)

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
    ) -> Self:
        """Open (creating or migrating if needed) the store in ``schema`` of the database.

        ``synchronous="NORMAL"`` sets ``synchronous_commit = off``: a commit
        survives a crash of the worker, but the last ones may be lost if the
        server crashes. ``busy_timeout_ms`` becomes ``lock_timeout``.
        Raises :class:`NotAStoreError`, :class:`SchemaVersionError` or
        :class:`StoreOpenError`.
        """
        problem = check_schema_name(schema)
        if problem is not None:
            raise StoreUrlError(_display(dsn, str(schema)), problem)
        location = _display(dsn, schema)
        synchronous = synchronous.upper()
        if synchronous not in SYNCHRONOUS_MODES:
            raise StoreUrlError(
                location, f"the option synchronous must be FULL or NORMAL, not {synchronous!r}"
            )
        if asyncpg is None:  # pragma: no cover - the optional dependency is missing
            raise _PostgresOpenError(
                location, "asyncpg is not installed; install ledgerflow[postgres]"
            )
        settings = {
            "application_name": "ledgerflow",
            "lock_timeout": f"{int(busy_timeout_ms)}ms",
        }
        if synchronous == "NORMAL":
            settings["synchronous_commit"] = "off"
        pool = None
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=pool_size,
                init=_init_connection,
                reset=_no_reset,
                server_settings=settings,
            )
            async with pool.acquire() as conn:
                await _prepare(conn, schema, location)
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
        if closed:
            return StoreClosedError(location)
        if isinstance(exc, asyncpg.InvalidCatalogNameError):
            return _PostgresOpenError(location, f"the database does not exist ({text})")
        if isinstance(
            exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError
        ):
            return _PostgresOpenError(location, f"the server refused the login ({text})")
        if isinstance(exc, OSError | TimeoutError | asyncpg.PostgresConnectionError) or (
            opening and isinstance(exc, asyncpg.InterfaceError)
        ):
            return _PostgresOpenError(
                location, f"cannot reach the server ({type(exc).__name__}: {text})"
            )
        if opening:
            return _PostgresOpenError(location, f"{type(exc).__name__}: {text}")
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

    # --- writes ---

    async def _append(self, conn: Any, batch: _Batch) -> list[Envelope]:
        run_id, items, expected_seq, at, status, label = batch
        row = await conn.fetchrow(self._last_sql, run_id)
        seq, prev = (row[0], row[1]) if row is not None else (0, GENESIS_HASH)
        if seq != expected_seq:
            raise ConcurrencyError(run_id, expected_seq, seq)
        at_text = format_at(at)
        seqs, types, datas, prevs, hashes = [], [], [], [], []
        envelopes = []
        for type_, data in items:
            seq += 1
            digest = _hash_text(prev, run_id, seq, type_, at_text, data)
            seqs.append(seq)
            types.append(type_)
            datas.append(data)
            prevs.append(prev)
            hashes.append(digest)
            envelopes.append(Envelope(run_id, seq, type_, at, data, prev, digest))
            prev = digest
        await conn.execute(
            self._append_sql, run_id, at, seqs, types, datas, prevs, hashes, status, label, seq
        )
        return envelopes

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
        items, at = check_append(run_id, events, expected_seq, at,
                                 max_event_bytes=self.max_event_bytes, forbid_nul=True)
        if expected_seq > _MAX_SEQ - len(events):
            raise InvalidAppendError(run_id, f"expected_seq {expected_seq} is beyond the last seq")
        batch = _Batch(run_id, items, expected_seq, at, status, label)
        return await self._call(self._append, batch, run_id=run_id, expected_seq=expected_seq)

    async def try_lease(self, run_id: str, owner: str, ttl_s: float) -> bool:
        """Take, renew, or fail to take the run's lease; True when ``owner`` now holds it.

        Expiry is judged on the database server's clock.

        Example::

            if await store.try_lease("r1", owner="worker-7", ttl_s=30):
                ...  # drive the run; renew before 30 s pass
        """
        taken = await self._call(_fetchval, self._lease_sql, run_id, owner, float(ttl_s))
        return bool(taken)

    async def release_lease(self, run_id: str, owner: str) -> None:
        """Drop the run's lease if ``owner`` holds it."""
        await self._call(_execute, self._release_sql, run_id, owner)

    # --- reads ---

    async def _fetch(
        self, run_id: str, after: int, until: int | None, limit: int | None
    ) -> list[Envelope]:
        upper = _MAX_SEQ if until is None else min(until, _MAX_SEQ)
        lower = max(min(after, _MAX_SEQ), -1)
        if lower >= upper:
            if self._closed:
                raise StoreClosedError(self.path)
            return []
        rows = await self._call(_fetch, self._read_sql, run_id, lower, upper, limit)
        return [Envelope(run_id, r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    async def read(
        self, run_id: str, after: int = 0, until: int | None = None
    ) -> AsyncIterator[Envelope]:
        """Stream the run's envelopes ``after < seq <= until`` in seq order, 1,000 per query.

        Each chunk is one short query (keyset pagination on the primary key),
        so an abandoned stream holds no connection and no transaction.

        Example::

            async for env in store.read("r1", after=10, until=20):
                print(env.seq, env.type)
        """
        while True:
            chunk = await self._fetch(run_id, after, until, READ_CHUNK_ROWS)
            for envelope in chunk:
                yield envelope
            if len(chunk) < READ_CHUNK_ROWS:
                return
            after = chunk[-1].seq

    async def read_all(
        self, run_id: str, after: int = 0, until: int | None = None
    ) -> list[Envelope]:
        """Return the run's envelopes ``after < seq <= until`` in one query (replay's path).

        Example::

            envs = await store.read_all("r1")
            assert check_chain("r1", envs) is None
        """
        return await self._fetch(run_id, after, until, None)

    async def last_seq(self, run_id: str) -> int:
        """Return the run's last seq, 0 when it has no events."""
        row = await self._call(_fetchrow, self._last_sql, run_id)
        return int(row[0]) if row is not None else 0

    async def runs(self, status: str | None = None, limit: int = 100) -> list[RunSummary]:
        """List runs from the projection, most recently updated first.

        Example::

            failed = await store.runs(status="failed", limit=20)
        """
        count = None if limit < 0 else limit  # as SQLite: a negative limit means no limit
        if status is None:
            rows = await self._call(_fetch, self._runs_sql, count)
        else:
            rows = await self._call(_fetch, self._runs_by_status_sql, status, count)
        return [_summary(row) for row in rows]

    async def run(self, run_id: str) -> RunSummary | None:
        """Return the run's projection row, or None when it has no events."""
        row = await self._call(_fetchrow, self._run_sql, run_id)
        return _summary(row) if row is not None else None

    # --- lifecycle ---

    async def close(self) -> None:
        """Refuse new calls, wait for those in flight, close the pool; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._pool.close()

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
        """Show the url (without password) and whether the store is closed."""
        state = "closed" if self._closed else "open"
        return f"<PostgresEventStore {self.path!r} {state}>"


async def _fetch(conn: Any, sql: str, *args: object) -> list[Any]:
    rows: list[Any] = await conn.fetch(sql, *args)
    return rows


async def _fetchrow(conn: Any, sql: str, *args: object) -> Any:
    return await conn.fetchrow(sql, *args)


async def _fetchval(conn: Any, sql: str, *args: object) -> Any:
    return await conn.fetchval(sql, *args)


async def _execute(conn: Any, sql: str, *args: object) -> None:
    await conn.execute(sql, *args)

"""The PostgreSQL side of a store that is not the round trips: names, SQL, opening checks.

:mod:`ledgerflow.eventstore.postgres` runs these statements; keeping them
here keeps that module to the store's behaviour. The schema name is
validated by :func:`check_schema_name`, then quoted into every statement.

Example::

    async with pool.acquire() as conn:
        await prepare(conn, "ledgerflow", "postgresql://app@db/runs?schema=ledgerflow")
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .errors import EventStoreError, NotAStoreError, SchemaVersionError, StoreNotFoundError
from .errors import StoreOpenError as _StoreOpenError
from .schema import POSTGRES_APPLICATION, POSTGRES_MIGRATIONS, SCHEMA_VERSION
from .vault_tables import V4_TABLE_NAMES

__all__ = [
    "APPEND_SQL",
    "DEFAULT_POOL_SIZE",
    "DEFAULT_SCHEMA",
    "LAST_SQL",
    "LEASE_OF_SQL",
    "LEASE_SQL",
    "CLAIM_SQL",
    "FENCE_SQL",
    "HEARTBEAT_SQL",
    "REGISTER_SQL",
    "UNREGISTER_SQL",
    "WORKERS_SQL",
    "MATCH_RUNS_SQL",
    "PostgresOpenError",
    "READ_SQL",
    "RELEASE_SQL",
    "RUNS_BY_STATUS_SQL",
    "RUNS_SQL",
    "RUN_SQL",
    "check_schema_name",
    "display",
    "init_connection",
    "must_hold_every_table",
    "no_reset",
    "prepare",
]

DEFAULT_SCHEMA = "ledgerflow"
DEFAULT_POOL_SIZE = 4
_APPLICATION_LOCK = 0x524C4447  # "RLDG", as SQLite's application_id; fits an int4
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


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


def display(dsn: str, schema: str) -> str:
    """The url shown in messages: no password, and the schema."""
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}@{host}"
    query = f"{parts.query}&schema={schema}" if parts.query else f"schema={schema}"
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class PostgresOpenError(_StoreOpenError):
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


class _IncompletePostgresStoreError(NotAStoreError):
    """Our marker is there, but tables of the store are missing (dropped outside ledgerflow)."""

    def __init__(self, location: str, schema: str, missing: list[str]) -> None:
        self.path = location
        self.schema = schema
        self.missing = missing
        tables = f"table{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
        self.reason = f"the store is incomplete (missing {tables})"
        EventStoreError.__init__(
            self,
            f"The store in schema {schema!r} of {location!r} is incomplete (missing "
            f"{tables}): its meta marker is ledgerflow's but the tables were "
            "dropped outside ledgerflow, so it was left untouched; restore the schema from a "
            f"backup, or if its runs are disposable drop it (DROP SCHEMA \"{schema}\" CASCADE) "
            "and open again to create a new store.",
        )


_STORE_TABLES = {
    1: ("events", "leases", "meta", "runs"),
    2: ("events", "leases", "meta", "runs", "workers"),
    3: ("events", "flow_slots", "leases", "meta", "runs", "task_facts", "task_offers",
        "task_starts", "workers"),
}
_STORE_TABLES[4] = tuple(sorted(_STORE_TABLES[3] + V4_TABLE_NAMES))
"""The tables a ledgerflow schema holds at each version."""


def must_hold_every_table(location: str, schema: str, objects: list[str], version: int) -> None:
    """Refuse a marked schema that lacks one of its version's tables, naming what is gone.

    Without this the first query failed as a generic server error
    ('relation "x.runs" does not exist; check the server and its log').
    """
    missing = [name for name in _STORE_TABLES[version] if name not in objects]
    if missing:
        raise _IncompletePostgresStoreError(location, schema, missing)


LAST_SQL = "SELECT seq, hash FROM {s}.events WHERE run_id = $1 ORDER BY seq DESC LIMIT 1"
# One statement, so atomic without BEGIN/COMMIT round trips. Data-modifying
# CTEs always run, so the runs upsert happens exactly when the inserts do.
APPEND_SQL = """
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
READ_SQL = (
    "SELECT seq, type, at, data, prev_hash, hash FROM {s}.events "
    "WHERE run_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4"
)
# The owner column is the live lease holder, judged on the database clock.
_SUMMARY = (
    "SELECT r.run_id, r.status, r.label, r.created_at, r.updated_at, r.last_seq, "
    "CASE WHEN l.expires_at > clock_timestamp() THEN l.owner END "
    "FROM {s}.runs r LEFT JOIN {s}.leases l ON l.run_id = r.run_id "
)
RUNS_SQL = _SUMMARY + "ORDER BY r.updated_at DESC, r.run_id LIMIT $1"
RUNS_BY_STATUS_SQL = _SUMMARY + "WHERE r.status = $1 ORDER BY r.updated_at DESC, r.run_id LIMIT $2"
RUN_SQL = _SUMMARY + "WHERE r.run_id = $1"
# COLLATE "C": byte order, the same sort as SQLite's, whatever the database's collation.
MATCH_RUNS_SQL = (
    "SELECT run_id FROM {s}.runs WHERE run_id LIKE $1 ESCAPE '\\' "
    'ORDER BY run_id COLLATE "C" LIMIT $2'
)
_META_SQL = "SELECT application, schema_version FROM {s}.meta"
_MARK_SQL = (
    "INSERT INTO {s}.meta (application, schema_version) VALUES ($1, $2) "
    "ON CONFLICT (singleton) DO UPDATE SET application = excluded.application, "
    "schema_version = excluded.schema_version"
)
# Expiry is judged on the database clock, the one clock every worker shares.
# ON CONFLICT DO UPDATE locks the row and re-checks the WHERE on its newest
# version, so two takers cannot both win. The fence: 1 for a new row, kept
# by the same owner, one more for another owner.
LEASE_SQL = """
INSERT INTO {s}.leases AS l (run_id, owner, expires_at, fence)
VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3), 1)
ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at,
    fence = CASE WHEN l.owner = excluded.owner THEN l.fence ELSE l.fence + 1 END
WHERE l.owner = excluded.owner OR l.expires_at <= clock_timestamp()
RETURNING l.fence
"""
# FOR SHARE: a takeover (an UPDATE of this row) waits until the fenced append commits.
FENCE_SQL = (
    "SELECT owner, expires_at > clock_timestamp(), fence FROM {s}.leases "
    "WHERE run_id = $1 FOR SHARE"
)
# One statement: lock the oldest free run (SKIP LOCKED: concurrent claimers
# pass over each other's picks), then lease it. A pick whose lease another
# claimer took meanwhile comes back with a NULL fence, and the caller retries.
CLAIM_SQL = """
WITH picked AS (
    SELECT r.run_id, r.status, r.label FROM {s}.runs r
    WHERE r.status = ANY($3::text[])
      AND ($4::text[] IS NULL OR r.label = ANY($4::text[]))
      AND NOT EXISTS (SELECT 1 FROM {s}.leases l
                      WHERE l.run_id = r.run_id AND l.expires_at > clock_timestamp())
    ORDER BY r.updated_at, r.run_id
    LIMIT 1
    FOR UPDATE OF r SKIP LOCKED
), taken AS (
    INSERT INTO {s}.leases AS l (run_id, owner, expires_at, fence)
    SELECT run_id, $1, clock_timestamp() + make_interval(secs => $2), 1 FROM picked
    ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at,
        fence = CASE WHEN l.owner = excluded.owner THEN l.fence ELSE l.fence + 1 END
    WHERE l.owner = excluded.owner OR l.expires_at <= clock_timestamp()
    RETURNING l.run_id, l.fence
)
SELECT p.run_id, t.fence, p.status, p.label FROM picked p LEFT JOIN taken t USING (run_id)
"""
REGISTER_SQL = """
INSERT INTO {s}.workers AS w (worker_id, info, started_at, heartbeat_at, expires_at)
VALUES ($1, $2::text::jsonb, clock_timestamp(), clock_timestamp(),
        clock_timestamp() + make_interval(secs => $3))
ON CONFLICT (worker_id) DO UPDATE SET info = excluded.info, started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at
"""
HEARTBEAT_SQL = (
    "UPDATE {s}.workers SET heartbeat_at = clock_timestamp(), "
    "expires_at = clock_timestamp() + make_interval(secs => $2) WHERE worker_id = $1 "
    "RETURNING true"
)
UNREGISTER_SQL = "DELETE FROM {s}.workers WHERE worker_id = $1"
WORKERS_SQL = """
SELECT w.worker_id, w.info::text,
       extract(epoch FROM w.started_at)::float8,
       extract(epoch FROM w.heartbeat_at)::float8,
       extract(epoch FROM w.expires_at)::float8,
       w.expires_at > clock_timestamp(),
       coalesce((SELECT array_agg(l.run_id ORDER BY l.run_id) FROM {s}.leases l
                 WHERE l.owner = w.worker_id AND l.expires_at > clock_timestamp()), '{{}}')
FROM {s}.workers w
WHERE w.expires_at > clock_timestamp() - make_interval(secs => $1)
ORDER BY w.started_at, w.worker_id
"""
LEASE_OF_SQL = (
    "SELECT owner, extract(epoch FROM expires_at)::float8 FROM {s}.leases "
    "WHERE run_id = $1 AND expires_at > clock_timestamp()"
)
# Expired, not deleted: the row keeps the fence growing across owners.
RELEASE_SQL = (
    "UPDATE {s}.leases SET expires_at = least(expires_at, clock_timestamp()) "
    "WHERE run_id = $1 AND owner = $2"
)


async def init_connection(conn: Any) -> None:
    """Make json travel as its raw UTF-8 bytes, so the hashed bytes go in and out untouched."""
    await conn.set_type_codec(
        "json", schema="pg_catalog", encoder=bytes, decoder=bytes, format="binary"
    )


async def no_reset(conn: Any) -> None:
    """Skip asyncpg's reset query on release (one wasted round trip per call).

    The store never changes session state: its advisory locks are transaction-level.
    """


async def _schema_objects(conn: Any, schema: str) -> tuple[bool, list[str]]:
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
    return bool(exists), objects


async def _found_version(conn: Any, schema: str, location: str, objects: list[str]) -> int:
    if "meta" not in objects:
        names = ", ".join(objects[:5]) + (", ..." if len(objects) > 5 else "")
        raise _NotAPostgresStoreError(
            location,
            schema,
            f"it holds {len(objects)} tables or views of another application ({names})",
        )
    row = await conn.fetchrow(_META_SQL.format(s=f'"{schema}"'))
    if row is None or row[0] != POSTGRES_APPLICATION:
        found = "no marker" if row is None else f"the marker {row[0]!r}"
        raise _NotAPostgresStoreError(
            location, schema, f"its meta table holds {found}, not ledgerflow's"
        )
    version = int(row[1])
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(location, version, SCHEMA_VERSION)
    return version


async def prepare(
    conn: Any,
    schema: str,
    location: str,
    *,
    create: bool = True,
    read_only: bool = False,
    upgrade: bool = False,
) -> tuple[int, int]:
    """Check that ``schema`` is a ledgerflow store; create it, or migrate it on ``upgrade``.

    Returns ``(version_found, version_now)``. Does exactly one of, in one
    transaction under an advisory lock (so two processes opening at once
    take turns, and a crash leaves the old schema):

    - no schema, or an empty one: created at :data:`SCHEMA_VERSION` (found
      0), or :class:`StoreNotFoundError` when ``create`` is False (a
      mistyped ``?schema=`` must not become an empty store);
    - our marker, an older version: left as it is, unless ``upgrade``, which
      runs the missing migrations in order;
    - our marker, the current version: nothing, once every table is there
      (:class:`NotAStoreError` naming the missing ones otherwise);
    - our marker, a newer version: :class:`SchemaVersionError`, nothing written;
    - objects without our marker: :class:`NotAStoreError`, nothing written.

    ``read_only`` checks without the lock and without writing (so it also
    works on a read-only replica).
    """
    encoding = await conn.fetchval("SHOW server_encoding")
    if encoding != "UTF8":
        raise PostgresOpenError(
            location,
            f"the database's encoding is {encoding}, and the store needs UTF8 "
            "to keep each event's bytes exactly",
        )
    create = create and not read_only
    quoted = f'"{schema}"'  # check_schema_name allowed only [a-z0-9_]
    async with conn.transaction(readonly=read_only):
        if not read_only:
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1::int4, hashtext($2))", _APPLICATION_LOCK, schema
            )
        exists, objects = await _schema_objects(conn, schema)
        version = await _found_version(conn, schema, location, objects) if objects else 0
        if version:
            must_hold_every_table(location, schema, objects, version)
            if version == SCHEMA_VERSION or not upgrade or read_only:
                return version, version
        elif not create:
            state = "is empty" if exists else "does not exist"
            raise StoreNotFoundError(location, f"the PostgreSQL schema {schema!r} {state}")
        if not exists:
            await conn.execute(f"CREATE SCHEMA {quoted}")
        for migration in POSTGRES_MIGRATIONS:
            if migration.version > version:
                for statement in migration.statements:
                    await conn.execute(statement.format(schema=quoted))
        await conn.execute(_MARK_SQL.format(s=quoted), POSTGRES_APPLICATION, SCHEMA_VERSION)
    return version, SCHEMA_VERSION

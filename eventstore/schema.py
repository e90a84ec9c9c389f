"""The schemas of a ledgerflow store, how a store is recognised, and its migrations.

SQLite and PostgreSQL share :data:`SCHEMA_VERSION`: both migration lists are
numbered ``1..SCHEMA_VERSION``, and a change to one comes with the matching
step in the other. The PostgreSQL statements are here as text (with a
``{schema}`` placeholder for the quoted schema name); :mod:`ledgerflow.eventstore.postgres`
applies them. The rest of this docstring is about SQLite.

A store is a SQLite file whose header carries ``PRAGMA application_id =
APPLICATION_ID`` and ``PRAGMA user_version = <schema version>``. Opening a
file does exactly one of:

- an empty or new file: initialised to :data:`SCHEMA_VERSION`;
- our application id, an older schema: opened as it is (reads work; every
  write raises :class:`StoreUpgradeRequiredError`): nothing migrates a store
  at open; :func:`upgrade` (``ledgerflow db upgrade``) runs the missing
  migrations, in order, in one ``BEGIN IMMEDIATE`` transaction (a crash
  leaves the old schema);
- our application id, the current schema: nothing to do;
- our application id, a newer schema: :class:`SchemaVersionError`, and the
  file is not written to (not even its journal mode);
- another application's SQLite file, or not SQLite at all: :class:`NotAStoreError`.

Everything here is synchronous and runs on the writer connection's thread.

Example (what :class:`ledgerflow.eventstore.sqlite.SQLiteEventStore` does on open)::

    conn = sqlite3.connect(path, isolation_level=None)
    prepare(conn, path, synchronous="FULL", busy_timeout_ms=5000)
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import time
from dataclasses import dataclass
from typing import NamedTuple

from .errors import (
    EventStoreError,
    NotAStoreError,
    SchemaVersionError,
    StoreNotFoundError,
)
from .postgres_tasks import POSTGRES_TASK_TABLES
from .sqlite_tasks import SQLITE_TASK_TABLES
from .vault_tables import POSTGRES_V4_TABLES, SQLITE_V4_TABLES

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "Migration",
    "POSTGRES_APPLICATION",
    "POSTGRES_MIGRATIONS",
    "SCHEMA_VERSION",
    "SYNCHRONOUS_MODES",
    "StoreMarksLostError",
    "prepare",
    "prepare_read_only",
    "prepare_reader",
    "upgrade",
]

# WIRE FORMAT, in the header of every SQLite store since 0.1 ("RLDG" for the
# old name runledger): kept byte for byte, or existing stores stop opening.
APPLICATION_ID = 0x524C4447
"""``PRAGMA application_id`` of every ledgerflow store: the ASCII bytes "RLDG"."""

SCHEMA_VERSION = 4
"""The newest schema this version of ledgerflow reads and writes."""

SYNCHRONOUS_MODES = ("FULL", "NORMAL")
"""FULL (default): a commit survives power loss. NORMAL: survives a process
crash, but the last commits may be lost on power loss or OS crash."""

_SQLITE_MAGIC = b"SQLite format 3\x00"


class StoreMarksLostError(NotAStoreError):
    """A SQLite file holds ledgerflow's tables but not its header marks (a ``.dump`` copy).

    It is still refused (nothing proves the tables are ours, and a wrong guess
    would write to another application's file); the message gives the two
    pragmas that make it a store again.
    """

    def __init__(self, path: str, app_id: int, version: int) -> None:
        self.path = path
        self.app_id = app_id
        self.version = version
        self.reason = (
            f"it holds ledgerflow's tables but its header lost the store's marks "
            f"(application_id {app_id})"
        )
        fix = f"PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {version};"
        EventStoreError.__init__(
            self,
            f"The file {path!r} holds ledgerflow's tables (events, runs, leases) but its header "
            f"lost the store's marks (application_id {app_id}), as a copy made with the sqlite3 "
            "shell's .dump does, so it was left untouched; if it is a copy of a ledgerflow "
            f"store, restore the marks with: sqlite3 {shlex.quote(path)} '{fix}' and open it "
            "again (or copy stores with .backup or VACUUM INTO, which keep them).",
        )


@dataclass(frozen=True)
class Migration:
    """One schema step: the statements that take a store from ``version - 1`` to ``version``."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="events log, runs projection, leases",
        statements=(
            # WITHOUT ROWID clusters a run's events by (run_id, seq), so a
            # replay reads one contiguous range of the b-tree.
            """
            CREATE TABLE events (
                run_id    TEXT    NOT NULL,
                seq       INTEGER NOT NULL CHECK (seq >= 1),
                type      TEXT    NOT NULL,
                at        TEXT    NOT NULL,
                data      TEXT    NOT NULL,
                prev_hash TEXT    NOT NULL,
                hash      TEXT    NOT NULL,
                PRIMARY KEY (run_id, seq)
            ) WITHOUT ROWID
            """,
            """
            CREATE TABLE runs (
                run_id     TEXT    NOT NULL PRIMARY KEY,
                status     TEXT    NOT NULL DEFAULT '',
                label      TEXT    NOT NULL DEFAULT '',
                created_at TEXT    NOT NULL,
                updated_at TEXT    NOT NULL,
                last_seq   INTEGER NOT NULL
            )
            """,
            "CREATE INDEX runs_by_updated ON runs (updated_at DESC, run_id)",
            "CREATE INDEX runs_by_status ON runs (status, updated_at DESC, run_id)",
            """
            CREATE TABLE leases (
                run_id     TEXT NOT NULL PRIMARY KEY,
                owner      TEXT NOT NULL,
                expires_at REAL NOT NULL
            )
            """,
        ),
    ),
    Migration(
        version=2,
        description="fenced leases, workers registry",
        statements=(
            # Existing leases get fence 0; the next owner change makes it 1.
            "ALTER TABLE leases ADD COLUMN fence INTEGER NOT NULL DEFAULT 0",
            # Times are epoch seconds on this machine's clock, as leases are.
            """
            CREATE TABLE workers (
                worker_id    TEXT NOT NULL PRIMARY KEY,
                info         TEXT NOT NULL,
                started_at   REAL NOT NULL,
                heartbeat_at REAL NOT NULL,
                expires_at   REAL NOT NULL
            )
            """,
        ),
    ),
    Migration(3, "task exchange: offers, facts, starts, flow slots", SQLITE_TASK_TABLES),
    Migration(4, "secret vault, state snapshots", SQLITE_V4_TABLES),
)

# WIRE FORMAT, written into every existing PostgreSQL store since 0.1: it keeps
# the old project name on purpose. Changing it would make every store created
# before the rename look like "another application's" schema and refuse to open.
POSTGRES_APPLICATION = "runledger.eventstore"
"""The marker in the ``meta`` table of every PostgreSQL store (its application_id)."""

POSTGRES_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="meta marker, events log, runs projection, leases",
        statements=(
            # One row: which application owns this schema, at which version.
            """
            CREATE TABLE {schema}.meta (
                singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                application    text    NOT NULL,
                schema_version integer NOT NULL
            )
            """,
            # data is json, not jsonb: json keeps the exact text the hash was
            # computed over (jsonb would reorder keys and drop whitespace),
            # and still answers data->>'task_id'. at is timestamptz: it keeps
            # microseconds, so the hashed ISO text is rebuilt exactly.
            """
            CREATE TABLE {schema}.events (
                run_id    text        NOT NULL,
                seq       bigint      NOT NULL CHECK (seq >= 1),
                type      text        NOT NULL,
                at        timestamptz NOT NULL,
                data      json        NOT NULL,
                prev_hash text        NOT NULL,
                hash      text        NOT NULL,
                PRIMARY KEY (run_id, seq)
            )
            """,
            """
            CREATE TABLE {schema}.runs (
                run_id     text        NOT NULL PRIMARY KEY,
                status     text        NOT NULL DEFAULT '',
                label      text        NOT NULL DEFAULT '',
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                last_seq   bigint      NOT NULL
            )
            """,
            "CREATE INDEX runs_by_updated ON {schema}.runs (updated_at DESC, run_id)",
            "CREATE INDEX runs_by_status ON {schema}.runs (status, updated_at DESC, run_id)",
            """
            CREATE TABLE {schema}.leases (
                run_id     text        NOT NULL PRIMARY KEY,
                owner      text        NOT NULL,
                expires_at timestamptz NOT NULL
            )
            """,
        ),
    ),
    Migration(
        version=2,
        description="fenced leases, workers registry",
        statements=(
            "ALTER TABLE {schema}.leases ADD COLUMN fence bigint NOT NULL DEFAULT 0",
            # Expiry is judged on the database clock, as for leases.
            """
            CREATE TABLE {schema}.workers (
                worker_id    text        NOT NULL PRIMARY KEY,
                info         jsonb       NOT NULL,
                started_at   timestamptz NOT NULL,
                heartbeat_at timestamptz NOT NULL,
                expires_at   timestamptz NOT NULL
            )
            """,
        ),
    ),
    Migration(3, "task exchange: offers, facts, starts, flow slots", POSTGRES_TASK_TABLES),
    Migration(4, "secret vault, state snapshots", POSTGRES_V4_TABLES),
)

for _migrations in (MIGRATIONS, POSTGRES_MIGRATIONS):  # pragma: no cover
    if [m.version for m in _migrations] != list(range(1, SCHEMA_VERSION + 1)):
        raise RuntimeError("Migrations must be numbered 1..SCHEMA_VERSION without gaps.")


def _check_is_sqlite(path: str) -> None:
    # SQLite only notices a foreign file lazily and says "file is not a
    # database"; reading the 16-byte magic first gives a clearer refusal.
    try:
        size = os.path.getsize(path)
    except OSError:
        return  # a new file, or a special name SQLite will interpret itself
    if size == 0:
        return
    with open(path, "rb") as f:
        head = f.read(len(_SQLITE_MAGIC))
    if head != _SQLITE_MAGIC:
        raise NotAStoreError(path, "it is not a SQLite database file")


class _Header(NamedTuple):
    """What opening decides on: the header marks, the schema objects, the table names."""

    app_id: int
    version: int
    objects: int
    tables: frozenset[str]


_STORE_TABLES = frozenset({"events", "runs", "leases"})
"""The tables of a store at :data:`SCHEMA_VERSION` (how a copy without its marks is known)."""


def _inspect(conn: sqlite3.Connection) -> _Header:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return _Header(int(app_id), int(version), int(objects), frozenset(t[0] for t in tables))


def _snapshot(conn: sqlite3.Connection) -> _Header:
    """The header and schema objects, read in ONE read transaction.

    Three autocommit reads could straddle another process's initialising
    commit (application_id 0 before it, 5 tables after it) and call a fresh
    store "another application's" file: 10 of 240 concurrent first opens did.
    """
    # "file is not a database" propagates as sqlite3.DatabaseError: the store's
    # one translation point (SQLiteEventStore._translate) makes it NotAStoreError.
    conn.execute("BEGIN")
    try:
        return _inspect(conn)
    finally:
        conn.execute("COMMIT")


def _is_blank(found: _Header) -> bool:
    """A new or empty SQLite database: no header marks, no schema objects."""
    return found.app_id == 0 and found.version == 0 and found.objects == 0


def _lost_its_marks(found: _Header) -> bool:
    """Ledgerflow's tables under a header without our application id: a ``.dump`` copy.

    The sqlite3 shell's ``.dump`` (and most copy tools built on it) writes
    the tables and rows but not ``application_id`` nor ``user_version``.
    """
    return found.app_id != APPLICATION_ID and found.tables >= _STORE_TABLES


def _version_of_tables(found: _Header) -> int:
    """The schema version a store's tables show (for a copy that lost its header marks)."""
    if "run_secrets" in found.tables:
        return 4
    return 3 if "task_offers" in found.tables else 2 if "workers" in found.tables else 1


def _check_ours(path: str, found: _Header) -> None:
    if _lost_its_marks(found):
        raise StoreMarksLostError(path, found.app_id, found.version or _version_of_tables(found))
    if found.app_id != APPLICATION_ID and not _is_blank(found):
        raise NotAStoreError(
            path,
            f"it is a SQLite database of another application (application_id {found.app_id}, "
            f"{found.objects} schema objects)",
        )
    if found.version > SCHEMA_VERSION:
        raise SchemaVersionError(path, found.version, SCHEMA_VERSION)


def _check_openable(path: str, found: _Header, *, create: bool) -> None:
    if _is_blank(found) and not create:
        raise StoreNotFoundError(path, "the file is a blank SQLite database, not yet a store")
    _check_ours(path, found)


def _switch_to_wal(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """Put the file in WAL mode, waiting for other openers up to the busy timeout.

    SQLite answers ``PRAGMA journal_mode = WAL`` with SQLITE_BUSY at once,
    without calling the busy handler, while another connection is switching
    the same new file (measured: 2 to 7 of 240 concurrent first opens), so
    the wait is done here.
    """
    deadline = time.monotonic() + busy_timeout_ms / 1000
    pause = 0.001
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode == "wal" or conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal":
                return
            busy = "the journal mode stayed " + str(mode)
        except sqlite3.OperationalError as exc:
            if not getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY"):
                raise
            busy = str(exc)
        if time.monotonic() >= deadline:
            raise sqlite3.OperationalError(f"database is locked ({busy})")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Run the migrations after ``version`` and mark the file current (inside a transaction)."""
    for migration in MIGRATIONS:
        if migration.version > version:
            for statement in migration.statements:
                conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def prepare(
    conn: sqlite3.Connection,
    path: str,
    *,
    synchronous: str,
    busy_timeout_ms: int,
    create: bool = True,
) -> int:
    """Check that ``conn`` is a ledgerflow store, initialise a blank one, set its pragmas.

    Returns the store's schema version. A store at an older version is left
    at it (see :func:`upgrade`). ``conn`` must be in autocommit mode
    (``isolation_level=None``). With ``create=False`` a blank database raises
    :class:`StoreNotFoundError`. Raises :class:`NotAStoreError` or
    :class:`SchemaVersionError` without writing to the file.
    """
    if synchronous not in SYNCHRONOUS_MODES:  # pragma: no cover - validated by the caller
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, not {synchronous!r}.")
    _check_is_sqlite(path)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    found = _snapshot(conn)
    _check_openable(path, found, create=create)
    # Only now, once the file is known to be ours, may we write to its header.
    _switch_to_wal(conn, busy_timeout_ms)
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    if not _is_blank(found):
        return found.version
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have initialised the file since we looked:
        # decide again under the write lock, on what is there now.
        found = _inspect(conn)
        _check_openable(path, found, create=create)
        if _is_blank(found):
            _migrate(conn, 0)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION if _is_blank(found) else found.version


def upgrade(conn: sqlite3.Connection, path: str) -> tuple[int, int]:
    """Run the missing migrations of a prepared store in one ``BEGIN IMMEDIATE`` transaction.

    Returns ``(from_version, to_version)``; ``(SCHEMA_VERSION, SCHEMA_VERSION)``
    when there was nothing to do. A crash or an error leaves the old schema.

    Example::

        upgrade(conn, "runs.db")   # (1, 2)
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = _inspect(conn)  # under the write lock: another upgrader may have run
        _check_openable(path, found, create=False)
        if found.version < SCHEMA_VERSION:
            _migrate(conn, found.version)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found.version, SCHEMA_VERSION


def prepare_reader(conn: sqlite3.Connection, *, busy_timeout_ms: int) -> None:
    """Set up the read-only connection of a store already prepared by :func:`prepare`."""
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA query_only = ON")


def prepare_read_only(conn: sqlite3.Connection, path: str, *, busy_timeout_ms: int) -> int:
    """Check, without writing anything, that a read-only ``conn`` opened a store; its version.

    An older schema reads as it is. Raises :class:`StoreNotFoundError`
    (blank database), :class:`NotAStoreError`, :class:`SchemaVersionError`
    (newer), and lets SQLite's own errors (e.g. ``SQLITE_READONLY_DIRECTORY``)
    through for the caller to handle.
    """
    _check_is_sqlite(path)
    prepare_reader(conn, busy_timeout_ms=busy_timeout_ms)
    found = _snapshot(conn)
    _check_openable(path, found, create=False)
    return found.version

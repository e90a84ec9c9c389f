"""The tables of schema 4, once per backend: the secret vault, state snapshots, effect claims.

Neither is part of a run's hash chain, on purpose:

- ``run_secrets`` holds the clear values of contract fields marked secret. The
  log holds only a reference (``{"$secret": REF}``), so a vault row can be
  erased (``ledgerflow secrets erase RUN``) and the log still verifies.
- ``run_snapshots`` holds a run's folded state every N events, a cache that
  lets a long run resume and replay without folding its whole log; ``verify``
  checks each one against the fold of the log.

Both are new in schema 4: a store at schema 3 reads as before and asks for
``ledgerflow db upgrade`` before its first write.
"""

from __future__ import annotations

from .effect_tables import EFFECT_TABLE_NAMES, POSTGRES_EFFECT_TABLES, SQLITE_EFFECT_TABLES
from .snapshot_tables import POSTGRES_SNAPSHOT_TABLES, SNAPSHOT_TABLE_NAMES, SQLITE_SNAPSHOT_TABLES

__all__ = [
    "POSTGRES_V4_TABLES",
    "SQLITE_V4_TABLES",
    "V4_TABLE_NAMES",
]

SQLITE_SECRET_TABLES: tuple[str, ...] = (
    # ref is random (128 bits): unique across runs, so a fork reveals its
    # origin's references without copying them.
    """
    CREATE TABLE run_secrets (
        ref        TEXT NOT NULL PRIMARY KEY,
        run_id     TEXT NOT NULL,
        value      BLOB NOT NULL,
        created_at REAL NOT NULL
    )
    """,
    "CREATE INDEX run_secrets_by_run ON run_secrets (run_id)",
)

POSTGRES_SECRET_TABLES: tuple[str, ...] = (
    """
    CREATE TABLE {schema}.run_secrets (
        ref        text        NOT NULL PRIMARY KEY,
        run_id     text        NOT NULL,
        value      bytea       NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX run_secrets_by_run ON {schema}.run_secrets (run_id)",
)

SQLITE_V4_TABLES = SQLITE_SECRET_TABLES + SQLITE_SNAPSHOT_TABLES + SQLITE_EFFECT_TABLES
POSTGRES_V4_TABLES = POSTGRES_SECRET_TABLES + POSTGRES_SNAPSHOT_TABLES + POSTGRES_EFFECT_TABLES
V4_TABLE_NAMES = ("run_secrets", *SNAPSHOT_TABLE_NAMES, *EFFECT_TABLE_NAMES)
"""The tables schema 4 adds (how an incomplete store is named)."""

"""Schema 4's snapshot table, once per backend (see :mod:`ledgerflow.eventstore.vault_tables`)."""

from __future__ import annotations

__all__ = ["POSTGRES_SNAPSHOT_TABLES", "SNAPSHOT_TABLE_NAMES", "SQLITE_SNAPSHOT_TABLES"]

SQLITE_SNAPSHOT_TABLES: tuple[str, ...] = (
    """
    CREATE TABLE run_snapshots (
        run_id     TEXT    NOT NULL,
        seq        INTEGER NOT NULL CHECK (seq >= 1),
        hash       TEXT    NOT NULL,
        format     INTEGER NOT NULL,
        state      BLOB    NOT NULL,
        created_at REAL    NOT NULL,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID
    """,
)

POSTGRES_SNAPSHOT_TABLES: tuple[str, ...] = (
    """
    CREATE TABLE {schema}.run_snapshots (
        run_id     text        NOT NULL,
        seq        bigint      NOT NULL CHECK (seq >= 1),
        hash       text        NOT NULL,
        format     integer     NOT NULL,
        state      bytea       NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (run_id, seq)
    )
    """,
)

SNAPSHOT_TABLE_NAMES: tuple[str, ...] = ("run_snapshots",)

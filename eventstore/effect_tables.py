"""Schema 4's side-effect claim tables, once per backend (see
:mod:`ledgerflow.eventstore.vault_tables`).

- ``fork_families`` names every key base (``RunStarted.key_base``) shared by
  more than one run: ``fork_run`` adds the origin's before it creates the
  fork. A run whose key base is not in it has no fork, so its idempotency keys
  are its own and its side effects need no claim.
- ``effect_claims`` holds one row per (idempotency key, attempt) a member of
  a fork family took before performing a non-idempotent side effect: the
  primary key makes the claim atomic, and the row is never deleted, so a
  crash between the claim and the call leaves the key claimed.

Neither is part of a run's hash chain: they order runs, they record nothing a
run decided.
"""

from __future__ import annotations

__all__ = ["EFFECT_TABLE_NAMES", "POSTGRES_EFFECT_TABLES", "SQLITE_EFFECT_TABLES"]

SQLITE_EFFECT_TABLES: tuple[str, ...] = (
    """
    CREATE TABLE fork_families (
        key_base   TEXT NOT NULL PRIMARY KEY,
        created_at REAL NOT NULL
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE effect_claims (
        key        TEXT    NOT NULL,
        attempt    INTEGER NOT NULL CHECK (attempt >= 1),
        run_id     TEXT    NOT NULL,
        task_id    TEXT    NOT NULL,
        claimed_at REAL    NOT NULL,
        PRIMARY KEY (key, attempt)
    ) WITHOUT ROWID
    """,
)

POSTGRES_EFFECT_TABLES: tuple[str, ...] = (
    """
    CREATE TABLE {schema}.fork_families (
        key_base   text        NOT NULL PRIMARY KEY,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE {schema}.effect_claims (
        key        text        NOT NULL,
        attempt    bigint      NOT NULL CHECK (attempt >= 1),
        run_id     text        NOT NULL,
        task_id    text        NOT NULL,
        claimed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (key, attempt)
    )
    """,
)

EFFECT_TABLE_NAMES: tuple[str, ...] = ("fork_families", "effect_claims")

"""Schema 4's side-effect claim tables, once per backend (see
:mod:`ledgerflow.eventstore.vault_tables`). None yet."""

from __future__ import annotations

__all__ = ["EFFECT_TABLE_NAMES", "POSTGRES_EFFECT_TABLES", "SQLITE_EFFECT_TABLES"]

SQLITE_EFFECT_TABLES: tuple[str, ...] = ()
POSTGRES_EFFECT_TABLES: tuple[str, ...] = ()
EFFECT_TABLE_NAMES: tuple[str, ...] = ()

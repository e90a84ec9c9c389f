"""The SQLite round trips of every store feature beyond the log, as one mixin."""

from __future__ import annotations

from .sqlite_effects import SQLiteEffectClaims
from .sqlite_secrets import SQLiteSecrets
from .sqlite_snapshots import SQLiteSnapshots
from .sqlite_tasks import SQLiteTasks

__all__ = ["SQLiteFeatures"]


class SQLiteFeatures(SQLiteSnapshots, SQLiteEffectClaims, SQLiteSecrets, SQLiteTasks):
    """Snapshots, effect claims, the vault and the task exchange on SQLite."""

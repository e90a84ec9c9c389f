"""The SQLite round trips for state snapshots (a mixin of the SQLite store)."""

from __future__ import annotations

__all__ = ["SQLiteSnapshots"]


class SQLiteSnapshots:
    """SQLite round trips for state snapshots."""

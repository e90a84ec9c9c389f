"""The SQLite round trips for the secret vault (a mixin of the SQLite store)."""

from __future__ import annotations

__all__ = ["SQLiteSecrets"]


class SQLiteSecrets:
    """SQLite round trips for the secret vault."""

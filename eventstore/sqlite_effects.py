"""The SQLite round trips for side-effect claims of fork families (a mixin of the SQLite store)."""

from __future__ import annotations

__all__ = ["SQLiteEffectClaims"]


class SQLiteEffectClaims:
    """SQLite round trips for side-effect claims of fork families."""

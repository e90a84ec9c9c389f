"""The Postgres round trips for side-effect claims of fork families (a store mixin)."""

from __future__ import annotations

__all__ = ["PostgresEffectClaims"]


class PostgresEffectClaims:
    """Postgres round trips for side-effect claims of fork families."""

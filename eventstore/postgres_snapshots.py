"""The Postgres round trips for state snapshots (a mixin of the Postgres store)."""

from __future__ import annotations

__all__ = ["PostgresSnapshots"]


class PostgresSnapshots:
    """Postgres round trips for state snapshots."""

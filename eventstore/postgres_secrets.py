"""The Postgres round trips for the secret vault (a mixin of the Postgres store)."""

from __future__ import annotations

__all__ = ["PostgresSecrets"]


class PostgresSecrets:
    """Postgres round trips for the secret vault."""

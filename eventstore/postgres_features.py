"""The PostgreSQL round trips of every store feature beyond the log, as one mixin."""

from __future__ import annotations

from .postgres_effects import PostgresEffectClaims
from .postgres_secrets import PostgresSecrets
from .postgres_snapshots import PostgresSnapshots
from .postgres_tasks import PostgresTasks

__all__ = ["PostgresFeatures"]


class PostgresFeatures(PostgresSnapshots, PostgresEffectClaims, PostgresSecrets, PostgresTasks):
    """Snapshots, effect claims, the vault and the task exchange on PostgreSQL."""

"""The feature methods every store has beyond its log, in one base of ``StoreCore``.

Each feature keeps its argument checks in its own module (the task exchange,
the secret vault, fork families' effect claims, state snapshots); a backend
supplies their round trips through the matching mixins
(:mod:`ledgerflow.eventstore.sqlite_features`,
:mod:`ledgerflow.eventstore.postgres_features`).
"""

from __future__ import annotations

from .core_effects import EffectClaimCore
from .core_secrets import SecretCore
from .core_snapshots import SnapshotCore
from .core_tasks import TaskExchangeCore

__all__ = ["StoreFeatures"]


class StoreFeatures(SnapshotCore, EffectClaimCore, SecretCore, TaskExchangeCore):
    """Snapshots, effect claims, the vault and the task exchange (see :class:`EventStore`)."""

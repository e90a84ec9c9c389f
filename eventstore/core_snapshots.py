"""The store's public methods for state snapshots,
once for both backends.

A base of ``StoreCore``; the backends' round trips are
:mod:`ledgerflow.eventstore.sqlite_snapshots` and :mod:`ledgerflow.eventstore.postgres_snapshots`.
"""

from __future__ import annotations

__all__ = ["SnapshotCore"]


class SnapshotCore:
    """State snapshots of long runs: the store methods (see :class:`EventStore`)."""

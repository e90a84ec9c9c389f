"""What an event store offers for state snapshots (part of :class:`EventStore`).

A snapshot is a cache of a run's folded state at one seq, outside the hash
chain (:mod:`ledgerflow.eventstore.core_snapshots`).
"""

from __future__ import annotations

from typing import Protocol

from .core_snapshots import StoredSnapshot

__all__ = ["SnapshotStore"]


class SnapshotStore(Protocol):
    """The store methods for state snapshots."""

    async def put_snapshot(
        self, run_id: str, seq: int, hash: str, format: int, state: bytes, *,
        keep: int | None = None,
    ) -> None:
        """Store the run's state after event ``seq`` (``hash``: the chain hash there).

        With ``keep``, all but the ``keep`` latest are deleted in the same transaction.
        """
        ...

    async def latest_snapshot(
        self, run_id: str, at_most_seq: int | None = None
    ) -> StoredSnapshot | None:
        """The snapshot with the highest seq (``<= at_most_seq``); None before schema 4."""
        ...

    async def snapshots(self, run_id: str) -> list[StoredSnapshot]:
        """Every snapshot of the run, lowest seq first."""
        ...

    async def prune_snapshots(self, run_id: str, keep: int) -> int:
        """Delete all but the ``keep`` latest snapshots of the run; how many went."""
        ...

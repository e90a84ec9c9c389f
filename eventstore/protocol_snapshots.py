"""What an event store offers for state snapshots (part of :class:`EventStore`)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["SnapshotStore"]


class SnapshotStore(Protocol):
    """The store methods for state snapshots."""

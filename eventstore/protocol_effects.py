"""What an event store offers for fork families' side-effect claims (in :class:`EventStore`)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["EffectClaimStore"]


class EffectClaimStore(Protocol):
    """The store methods for side-effect claims of fork families."""

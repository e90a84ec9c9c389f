"""What an event store offers for the secret vault (part of :class:`EventStore`)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol

__all__ = ["SecretStore"]


class SecretStore(Protocol):
    """The store methods for the secret vault (see :mod:`ledgerflow.eventstore.core_secrets`)."""

    async def put_secrets(self, run_id: str, values: Mapping[str, bytes]) -> None:
        """Keep ``values`` (reference → bytes) for run ``run_id``, durably."""
        ...

    async def get_secrets(self, refs: Collection[str]) -> dict[str, bytes]:
        """The kept values of ``refs``; an erased or unknown one is absent."""
        ...

    async def run_secrets(self, run_id: str) -> dict[str, bytes]:
        """Every secret kept for run ``run_id``."""
        ...

    async def erase_secrets(self, run_id: str) -> int:
        """Delete every secret kept for run ``run_id``; how many were deleted."""
        ...

"""What an event store offers for the secret vault (part of :class:`EventStore`)."""

from __future__ import annotations

from typing import Protocol

__all__ = ["SecretStore"]


class SecretStore(Protocol):
    """The store methods for the secret vault."""

"""What an event store offers for fork families' side-effect claims (in :class:`EventStore`).

- ``register_fork_family`` marks a key base as shared (``fork_run`` calls it
  before it creates the fork); ``has_fork_family`` asks.
- ``claim_effect`` claims one attempt's side effect under an idempotency key,
  atomically and store wide: exactly one claimer takes each (key, attempt),
  and a claim is never released (a crash after it leaves it held).
- ``effect_claims`` lists them, for audits and tests.

A store older than schema 4 has no family and no claim; its writes raise
:class:`StoreUpgradeRequiredError`, as every write does.

Example::

    claim = await store.claim_effect(key, 1, run_id="fork-a", task_id="book")
    if claim.taken:
        ...  # perform it
"""

from __future__ import annotations

from typing import Protocol

from .core_effects import EffectClaim

__all__ = ["EffectClaimStore"]


class EffectClaimStore(Protocol):
    """The store methods for side-effect claims of fork families."""

    async def register_fork_family(self, key_base: str) -> None:
        """Record that runs with ``key_base`` share their keys (idempotent)."""
        ...

    async def has_fork_family(self, key_base: str) -> bool:
        """Whether some fork shares ``key_base``."""
        ...

    async def claim_effect(
        self, key: str, attempt: int, *, run_id: str, task_id: str
    ) -> EffectClaim:
        """Claim (key, attempt) for ``run_id``; the claim that holds it (``taken``: just now)."""
        ...

    async def effect_claims(self, key: str | None = None) -> list[EffectClaim]:
        """The claims under ``key`` (or all), by key then attempt."""
        ...

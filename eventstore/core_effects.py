"""The store's public methods for side-effect claims of fork families,
once for both backends.

A base of ``StoreCore``; the backends' round trips are
:mod:`ledgerflow.eventstore.sqlite_effects` and :mod:`ledgerflow.eventstore.postgres_effects`.
"""

from __future__ import annotations

__all__ = ["EffectClaimCore"]


class EffectClaimCore:
    """Side-effect claims of fork families: the store methods (see :class:`EventStore`)."""

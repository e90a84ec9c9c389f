"""The store's public methods for the secret vault,
once for both backends.

A base of ``StoreCore``; the backends' round trips are
:mod:`ledgerflow.eventstore.sqlite_secrets` and :mod:`ledgerflow.eventstore.postgres_secrets`.
"""

from __future__ import annotations

__all__ = ["SecretCore"]


class SecretCore:
    """The secret vault: the store methods (see :class:`EventStore`)."""

"""ledgerflow: deterministic, replayable, auditable orchestration of LLM agents.

The distribution ships four packages that import one way,
``replay -> machines -> {contracts, eventstore}``; this tiny package holds only
what all of them share: the root of the error hierarchy.
"""

from ledgerflow.errors import LedgerflowError

__all__ = ["LedgerflowError"]
__version__ = "0.1.0"

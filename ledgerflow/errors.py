"""The root of ledgerflow's error hierarchy.

Every error ledgerflow raises on purpose derives from :class:`LedgerflowError`,
so an embedding service can catch one class::

    try:
        await orch.start(wf, goal)
    except LedgerflowError as exc:
        log.error("ledgerflow refused: %s", exc)

``contracts``, ``eventstore``, ``machines`` and ``replay`` each define their
``<Thing><Problem>Error`` subclasses beside the code that raises them.
"""

__all__ = ["LedgerflowError"]


class LedgerflowError(Exception):
    """Base class of every error ledgerflow raises on purpose."""

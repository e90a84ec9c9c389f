"""The root of runledger's error hierarchy.

Every error runledger raises on purpose derives from :class:`RunledgerError`,
so an embedding service can catch one class::

    try:
        await orch.start(wf, goal)
    except RunledgerError as exc:
        log.error("runledger refused: %s", exc)

``contracts``, ``eventstore``, ``machines`` and ``replay`` each define their
``<Thing><Problem>Error`` subclasses beside the code that raises them.
"""

__all__ = ["RunledgerError"]


class RunledgerError(Exception):
    """Base class of every error runledger raises on purpose."""

"""Run ids as users type them: the whole id, or any prefix only one run starts with.

Every command that takes a RUN resolves it here first, so ``ledgerflow show
7b74`` works when one run starts with ``7b74``. An exact id always wins (a
run ``r1`` stays reachable beside ``r10``); an ambiguous prefix is refused
naming the candidates; an unknown one is :class:`RunNotFoundError`.

Example::

    run_id = await resolve_run_id(store, "7b74")     # -> "7b749a99864c"
"""

from __future__ import annotations

from ledgerflow.eventstore import EventStore
from ledgerflow.machines import RunNotFoundError
from ledgerflow.replay.errors import RunIdAmbiguousError

__all__ = ["SHOWN_CANDIDATES", "pick_run_id", "resolve_run_id"]

#: How many candidates an ambiguous prefix lists before "and more".
SHOWN_CANDIDATES = 5


def pick_run_id(prefix: str, matches: list[str]) -> str:
    """Decide which run ``prefix`` names among the ids that start with it (sorted).

    Example::

        >>> pick_run_id("7b", ["7b749a99864c"])
        '7b749a99864c'
    """
    if prefix in matches:
        return prefix
    if not matches:
        raise RunNotFoundError(prefix)
    if len(matches) > 1:
        raise RunIdAmbiguousError(
            prefix, matches[:SHOWN_CANDIDATES], more=len(matches) > SHOWN_CANDIDATES)
    return matches[0]


async def resolve_run_id(store: EventStore, prefix: str) -> str:
    """The one run id ``prefix`` names in ``store`` (see the module docstring)."""
    if not prefix:
        raise RunNotFoundError(prefix)
    if await store.run(prefix) is not None:
        return prefix
    return pick_run_id(prefix, await store.match_runs(prefix, limit=SHOWN_CANDIDATES + 1))

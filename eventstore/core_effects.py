"""The store's public methods for side-effect claims of fork families,
once for both backends.

A fork shares its origin's idempotency keys. When a non-idempotent side
effect's key may be shared (the run is a fork, or has forks), the member
about to perform it first claims the (key, attempt) here, atomically, store
wide: exactly one member of the family takes it, and the others read the
holder's log for its outcome instead of acting a second time.

A base of ``StoreCore``; the backends' round trips are
:mod:`ledgerflow.eventstore.sqlite_effects` and :mod:`ledgerflow.eventstore.postgres_effects`.

Example::

    await store.register_fork_family("r1")            # fork_run, before the fork exists
    claim = await store.claim_effect(key, 1, run_id="r1-fork", task_id="book")
    claim.taken      # True: perform it; False: claim.run_id holds it
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

from .appending import is_count
from .errors import InvalidQueryError
from .mixin_needs import StoreGuards
from .tasks import check_name

__all__ = ["EFFECTS_SCHEMA_VERSION", "EffectClaim", "EffectClaimCore"]

EFFECTS_SCHEMA_VERSION = 4
"""The first schema with the claim tables (an older store has no fork family)."""


@dataclass(frozen=True, slots=True)
class EffectClaim:
    """Who holds the claim on one attempt's side effect under a shared key.

    ``taken`` is True only for the call that took it just now; a claim held
    from before (by another run, or by the same run before a crash) is False.
    """

    key: str
    attempt: int
    run_id: str
    task_id: str
    taken: bool = False


def _check_attempt(operation: str, attempt: object) -> int:
    if is_count(attempt) and attempt >= 1:
        return attempt
    raise InvalidQueryError(operation, f"the attempt must be an int >= 1, not {attempt!r}")


class EffectClaimCore(StoreGuards):
    """Side-effect claims of fork families: the store methods (see :class:`EventStore`)."""

    # --- what a backend supplies ---

    @abstractmethod
    async def _register_fork_family(self, key_base: str) -> None: ...

    @abstractmethod
    async def _has_fork_family(self, key_base: str) -> bool: ...

    @abstractmethod
    async def _claim_effect(
        self, key: str, attempt: int, run_id: str, task_id: str
    ) -> EffectClaim: ...

    @abstractmethod
    async def _effect_claims(self, key: str | None) -> list[EffectClaim]: ...

    # --- the methods ---

    async def register_fork_family(self, key_base: str) -> None:
        """Record that runs with this key base share their keys (a fork exists or is made).

        Idempotent. Called before the fork's first append, so any member that
        asks :meth:`has_fork_family` after the fork exists is told True.

        Example::

            await store.register_fork_family(origin_state.key_base)
        """
        operation = f"register the fork family {key_base!r}"
        self._must_be_writable(operation)
        await self._register_fork_family(check_name(operation, "the key base", key_base))

    async def has_fork_family(self, key_base: str) -> bool:
        """Whether some fork shares this key base (False on a store older than schema 4).

        Example::

            if await store.has_fork_family(state.key_base): ...   # claim before acting
        """
        self._must_be_open()
        name = check_name("look up a fork family", "the key base", key_base)
        if self.schema_version < EFFECTS_SCHEMA_VERSION:
            return False
        return await self._has_fork_family(name)

    async def claim_effect(
        self, key: str, attempt: int, *, run_id: str, task_id: str
    ) -> EffectClaim:
        """Claim attempt ``attempt``'s side effect under ``key`` for ``run_id``, atomically.

        Returns the claim that holds it: ``taken`` when this call took it,
        else the holder's (another run's, or this run's from an earlier call:
        a claim is never released, so a crash after it leaves it held).

        Example::

            claim = await store.claim_effect(key, 2, run_id="fork-b", task_id="book")
            if not claim.taken:
                ...  # read claim.run_id's log for the outcome
        """
        operation = f"claim the side effect of task {task_id!r} for run {run_id!r}"
        self._must_be_writable(operation)
        name = check_name(operation, "the key", key)
        number = _check_attempt(operation, attempt)
        run = check_name(operation, "the run id", run_id)
        task = check_name(operation, "the task id", task_id)
        return await self._claim_effect(name, number, run, task)

    async def effect_claims(self, key: str | None = None) -> list[EffectClaim]:
        """The claims under ``key`` (or every claim), by key then attempt; for audits.

        Example::

            [(c.attempt, c.run_id) for c in await store.effect_claims(key)]
        """
        self._must_be_open()
        if key is not None:
            check_name("list side-effect claims", "the key", key)
        if self.schema_version < EFFECTS_SCHEMA_VERSION:
            return []
        return await self._effect_claims(key)

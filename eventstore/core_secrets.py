"""The store's public methods for the secret vault, once for both backends.

A base of ``StoreCore``; the backends' round trips are
:mod:`ledgerflow.eventstore.sqlite_secrets` and :mod:`ledgerflow.eventstore.postgres_secrets`.

The vault holds the clear values of contract fields marked secret, each under
a random reference the log holds instead (``{"$secret": REF}``). It is not
part of any hash chain, so erasing a run's secrets (:meth:`SecretCore.erase_secrets`)
leaves its log verifying. Values are opaque bytes here (the runtime stores JSON).

Example::

    await store.put_secrets("r1", {"sec_9f...": b'"sk-live-1"'})
    (await store.get_secrets(["sec_9f..."]))["sec_9f..."]   # b'"sk-live-1"'
    await store.erase_secrets("r1")                          # 1
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Collection, Mapping

from .errors import InvalidQueryError
from .mixin_needs import StoreGuards
from .tasks import check_name

__all__ = ["SECRETS_SCHEMA_VERSION", "SecretCore"]

SECRETS_SCHEMA_VERSION = 4
"""The first schema with the vault (older stores hold no secrets)."""

#: The most references one lookup asks for (a bound on one query's parameters).
_MAX_REFS = 10_000


def _check_ref(operation: str, ref: object) -> str:
    if not isinstance(ref, str) or not ref.startswith("sec_") or not 4 < len(ref) <= 100:
        raise InvalidQueryError(operation, f"a secret reference is 'sec_' and up to 96 "
                                           f"characters, not {ref!r}")
    return ref


class SecretCore(StoreGuards):
    """The secret vault: the store methods (see :class:`EventStore`)."""

    @abstractmethod
    async def _put_secrets(self, run_id: str, values: dict[str, bytes]) -> None: ...

    @abstractmethod
    async def _get_secrets(self, refs: list[str]) -> dict[str, bytes]: ...

    @abstractmethod
    async def _run_secrets(self, run_id: str) -> dict[str, bytes]: ...

    @abstractmethod
    async def _erase_secrets(self, run_id: str) -> int: ...

    async def put_secrets(self, run_id: str, values: Mapping[str, bytes]) -> None:
        """Keep ``values`` (reference → bytes) for run ``run_id``, durably, before any event
        names them. A reference already kept keeps its first value."""
        operation = f"keep secrets of run {run_id!r}"
        self._must_be_writable(operation)
        run = check_name(operation, "the run id", run_id)
        checked: dict[str, bytes] = {}
        for ref, value in values.items():
            if not isinstance(value, bytes):
                raise InvalidQueryError(operation, f"a secret's value is bytes, not "
                                                   f"{type(value).__name__}")
            checked[_check_ref(operation, ref)] = value
        if checked:
            await self._put_secrets(run, checked)

    async def get_secrets(self, refs: Collection[str]) -> dict[str, bytes]:
        """The kept values of ``refs`` (of any run); an erased or unknown one is absent."""
        self._must_be_open()
        operation = "read secrets"
        wanted = sorted({_check_ref(operation, ref) for ref in refs})
        if len(wanted) > _MAX_REFS:
            raise InvalidQueryError(operation, f"at most {_MAX_REFS:,} references at once")
        if not wanted or self.schema_version < SECRETS_SCHEMA_VERSION:
            return {}
        return await self._get_secrets(wanted)

    async def run_secrets(self, run_id: str) -> dict[str, bytes]:
        """Every secret kept for run ``run_id`` (reference → bytes)."""
        self._must_be_open()
        run = check_name(f"read the secrets of run {run_id!r}", "the run id", run_id)
        if self.schema_version < SECRETS_SCHEMA_VERSION:
            return {}
        return await self._run_secrets(run)

    async def erase_secrets(self, run_id: str) -> int:
        """Delete every secret kept for run ``run_id``; how many were deleted.

        The log is untouched and still verifies; an operation that needs an
        erased secret later (a resume dispatching it) fails naming it.
        """
        operation = f"erase the secrets of run {run_id!r}"
        self._must_be_writable(operation)
        return await self._erase_secrets(check_name(operation, "the run id", run_id))

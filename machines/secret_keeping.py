"""Keeping secret fields out of the log: the vault as one run's driver sees it.

Where a value enters a run from outside (the goal, an agent's output, a
person's resolution), each field its contract marks secret
(:mod:`ledgerflow.contracts.secrets`) is kept in the store's vault under a
fresh reference, durably, *before* the event holding the reference is
appended; the log holds only ``{"$secret": REF}``. Where a value leaves for
an agent (its input, the planner's goal), the references are revealed
again, so the agent gets the real key, not pydantic's ``**********``.

The rule: :func:`must_keep_secrets` — a value is split only when its
contract declares a secret field; every other value is logged as it is,
at no cost.

Example::

    keeper = SecretKeeper(store)
    goal = await keeper.keep("r1", {"api_key": "sk-live-1"}, Goal)
    goal                                      # {'api_key': {'$secret': 'sec_...'}}
    keeper.reveal(goal, run_id="r1", what="the goal")   # {'api_key': 'sk-live-1'}
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import msgspec
from pydantic import BaseModel

from ledgerflow.contracts.secrets import (
    blank,
    blankable,
    contract_has_secrets,
    contract_schema,
    dump_revealed,
    refs_in,
    reveal,
    split_secrets,
)
from ledgerflow.eventstore import EventStore
from ledgerflow.machines.errors import SecretErasedError
from ledgerflow.machines.state import RunState
from ledgerflow.machines.values import encode_loggable
from ledgerflow.machines.workflow import Workflow

__all__ = ["RunStepSecrets", "SecretKeeper", "as_data", "fact_values", "must_keep_secrets",
           "secret_holders"]

#: The schema of a value that is one secret as a whole.
_WHOLE: Mapping[str, Any] = {"redact": True}


def workflow_keeps_secrets(workflow: Workflow) -> bool:
    """Whether any contract of ``workflow`` (its goal, an agent's input or output) has a
    secret field: only then can a run of it make a reference."""
    return must_keep_secrets(workflow.goal) or any(
        must_keep_secrets(spec.input) or must_keep_secrets(spec.output)
        for spec in workflow.agents.values())


def must_keep_secrets(contract: type[BaseModel]) -> bool:
    """Whether values of ``contract`` go through the vault (it declares a secret field)."""
    return contract_has_secrets(contract)


def as_data(value: Any) -> Any:
    """An agent's or a caller's value as JSON data, secrets revealed (not ``**********``).

    A model is dumped with :func:`dump_revealed`; a JSON text is parsed (so
    its secret fields can be kept apart) and left as text if it is not JSON.
    """
    if isinstance(value, BaseModel):
        return dump_revealed(value)
    if isinstance(value, str | bytes | bytearray):
        try:
            return msgspec.json.decode(value)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return value
    return value


#: The fields of an event that can carry a contract's values (and so references).
_VALUE_FIELDS = ("goal", "input", "output", "candidate")


def fact_values(event: object) -> list[Any]:
    """The values an event carries that a contract describes (its goal, input, output...)."""
    return [value for name in _VALUE_FIELDS
            if (value := getattr(event, name, None)) is not None]


def secret_holders(state: RunState, facts: Iterable[object] = ()) -> Iterator[Any]:
    """Every value of a run's state (and of ``facts``) that may hold a secret's reference."""
    yield state.goal
    for task in state.tasks.values():
        yield task.input
        yield task.output
        yield [getattr(step, "result", None) for step in task.steps.values()]
        yield [step.result for step in task.done_side_effects.values()]
    yield [getattr(step, "result", None) for step in state.planner_steps.values()]
    for escalation in state.escalations.values():
        yield escalation.candidate
    for requested in state.requested.values():
        yield requested.output
    for fact in facts:
        yield from fact_values(fact)


class SecretKeeper:
    """Keeps, loads and reveals one store's secrets for the runs a process drives.

    ``known`` (reference → value) is what the decider is given to validate
    outputs that hold references; it only grows while the keeper lives.
    """

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.known: dict[str, Any] = {}
        #: Set by :meth:`settle` when no value of the run can hold a reference, so
        #: the walks on every dispatch are skipped (the common case, at no cost).
        self.inert = False

    async def keep(self, run_id: str, value: Any, contract: type[BaseModel]) -> Any:
        """``value`` with each secret of ``contract`` kept in the vault and referenced.

        A value that is not JSON data with fields (a text that is not JSON)
        is kept whole: the contract says it may hold a secret.
        """
        if not must_keep_secrets(contract):
            return value
        data = as_data(value)
        if not isinstance(data, Mapping | list):
            return await self.keep_whole(run_id, data)
        return await self._split(run_id, data, contract_schema(contract))

    async def keep_whole(self, run_id: str, value: Any) -> Any:
        """``value`` kept in the vault as one secret; its reference (``None`` stays ``None``)."""
        return await self._split(run_id, value, _WHOLE)

    async def _split(self, run_id: str, value: Any, schema: Mapping[str, Any]) -> Any:
        """``value`` with the secrets ``schema`` marks kept (durably) and referenced."""
        masked, found = split_secrets(value, schema)
        if found:
            encoded = {ref: encode_loggable(v, what="a secret value") for ref, v in found.items()}
            await self.store.put_secrets(run_id, encoded)
            self.known.update(found)
            self.inert = False  # this run holds references from now on
        return masked

    def for_steps(self, run_id: str) -> RunStepSecrets:
        """What a run's step journal keeps ``secret=True`` results with."""
        return RunStepSecrets(self, run_id)

    async def load(self, values: Iterable[Any]) -> int:
        """Fetch from the vault every reference inside ``values`` not known yet; how many
        references the values hold."""
        refs = {ref for value in values for ref in refs_in(value)}
        missing = {ref for ref in refs if ref not in self.known}
        if missing:
            found = await self.store.get_secrets(missing)
            self.known.update({ref: msgspec.json.decode(raw) for ref, raw in found.items()})
        if refs:
            self.inert = False
        return len(refs)

    async def settle(self, workflow: Workflow, values: Iterable[Any]) -> None:
        """Load the references of a run's ``values``; go inert when there are none and
        no contract of ``workflow`` can make one (:func:`workflow_keeps_secrets`)."""
        held = await self.load(values)
        self.inert = held == 0 and not workflow_keeps_secrets(workflow)

    async def load_run(self, run_ids: Iterable[str]) -> None:
        """Fetch every secret kept for ``run_ids`` (a run and the origins it was forked from)."""
        for run_id in run_ids:
            found = await self.store.run_secrets(run_id)
            self.known.update({ref: msgspec.json.decode(raw) for ref, raw in found.items()})

    def reveal(self, value: Any, *, run_id: str, what: str) -> Any:
        """``value`` with its references replaced by the secrets; :class:`SecretErasedError`
        naming the ones the vault no longer holds."""
        if self.inert:
            return value
        refs = list(dict.fromkeys(refs_in(value)))
        if not refs:
            return value
        missing = [ref for ref in refs if ref not in self.known]
        if missing:
            raise SecretErasedError(run_id, missing, what)
        return reveal(value, self.known.__getitem__)

    def scrubber(self, value: Any) -> Callable[[Any], Any] | None:
        """A function that blanks, anywhere in a JSON value, every secret string ``value``
        refers to (what a journaled step logs); None when it refers to none."""
        if self.inert:
            return None
        secrets = self._strings(value)
        return None if not secrets else functools.partial(blank, secrets=secrets)

    def _strings(self, value: Any) -> list[str]:
        return blankable(self.known.get(ref) for ref in refs_in(value))

    def scrub(self, text: str, value: Any) -> str:
        """``text`` (an agent's error message) without any secret string ``value`` refers to."""
        scrubbed: str = blank(text, self._strings(value))
        return scrubbed


class RunStepSecrets:
    """A run's vault as its step journals use it (a :class:`.steps.StepSecrets`)."""

    def __init__(self, keeper: SecretKeeper, run_id: str) -> None:
        self.keeper = keeper
        self.run_id = run_id

    async def keep(self, value: Any) -> Any:
        return await self.keeper.keep_whole(self.run_id, value)

    def reveal(self, value: Any) -> Any:
        return self.keeper.reveal(value, run_id=self.run_id, what="a secret step's result")

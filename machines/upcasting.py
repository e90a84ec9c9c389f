"""Upcasters: events recorded by earlier versions, upgraded to today's names on decode.

The hash chain covers the stored bytes, so a log is never rewritten: an old
event is upgraded after it is decoded, every time it is read, by the tables
below. Each table is data, small and named; each entry says what an earlier
version recorded and what that is called today.

- :data:`RENAMED_EVENTS`: event types renamed since, by the name a log
  recorded (format 1's ``TimerFired`` is today's ``RetryDue``).
- :data:`ERROR_NAME_MOVES`: exception names in ``AgentFailed.error_type`` and
  ``error_types``. 0.1 recorded module paths of its top-level packages
  (``machines.errors.PermanentError``), its root ``runledger.errors.RunledgerError``
  and synthetic ``runledger.X`` failures; the first 0.2 builds recorded the
  module paths under ``ledgerflow.``. Today's names are stable
  (:mod:`ledgerflow.machines.stable_names`).
- :data:`WORKFLOW_MODULE_MOVES`: the module of ``RunStarted.workflow_ref``,
  for the workflows ledgerflow ships (0.1 installed ``examples`` at the top).

Only ``AgentFailed`` and ``RunStarted`` carry names, and most of their names
are current, so :func:`ledgerflow.machines.events.decode_event` costs one
type check for every other event, and returns the decoded event itself when
no name is in a table. A renamed type costs nothing either until it is met:
today's types decode first, and only an event whose tag is unknown is looked
up in :data:`RENAMED_EVENTS` (and decoded a second time under its new name).

How to evolve an event (the rule; :data:`~ledgerflow.machines.versions.LOG_FORMATS`
lists each time it was applied):

1. **Add a field** with a default that says what every older log meant
   (``OutputReceived.duration_ms: float | None = None``: not measured). When
   the old value is derivable from what the old event carries, derive it in
   the event's ``__post_init__`` with a function here (as ``AgentFailed``
   upgrades its names): it runs as msgspec builds the event, on decode only
   for the bytes that need it. Never make a new field required: old bytes
   lack it and would stop decoding.
2. **Rename** by giving the class its new name, keeping the old Python name
   as an alias in :mod:`~ledgerflow.machines.events` (code written against it
   keeps working) and adding ``"Old": "New"`` to :data:`RENAMED_EVENTS`. Today's
   code writes the new tag; a log that recorded the old one decodes as the new
   class. Such an event keeps reporting the recorded name as its ``type``, as
   its hash-chained envelope column does (the class, which evolve and decide
   dispatch on, is today's), so the new class is declared with ``dict=True``.
3. **Bump** :data:`~ledgerflow.machines.versions.LOG_FORMAT` and say what
   changed in :data:`~ledgerflow.machines.versions.LOG_FORMATS`. Removing a
   field or changing what a value means is not an evolution an upcaster can
   undo: add a new field or event instead.
4. **Add a fixture** written by the previous format's code (before the
   change), committed under ``tests/replay/fixtures/`` with the script that
   made it; the tests open, verify, replay and resume it, and never
   regenerate it (tests/replay/test_replay_schema_evolution.py).

Example::

    >>> upcast_error_name("machines.errors.PermanentError")
    'ledgerflow.PermanentError'
    >>> upcast_workflow_ref("examples.travel:wf")
    'ledgerflow.examples.travel:wf'
    >>> upcast_event_type("TimerFired"), upcast_event_type("TaskReady")
    ('RetryDue', 'TaskReady')
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import msgspec

from ledgerflow.machines.stable_names import V01_SYNTHETIC

__all__ = [
    "ERROR_NAME_MOVES",
    "RENAMED_EVENTS",
    "WORKFLOW_MODULE_MOVES",
    "renamed_event_data",
    "upcast_error_name",
    "upcast_event_type",
    "upcast_failure_names",
    "upcast_workflow_ref",
]

#: ledgerflow's own error classes as 0.1 laid them out: module -> class names.
#: (Not derived from today's code on purpose: the point is that code moves.)
_V01_ERROR_CLASSES: Final[Mapping[str, tuple[str, ...]]] = {
    "machines.errors": (
        "IllegalTransitionError", "WorkflowDefinitionError", "RunNotFoundError",
        "RunBusyError", "ResolutionError", "PermanentError"),
    "contracts.errors": (
        "ContractError", "ReferenceSyntaxError", "ReferenceResolutionError",
        "InputContractError", "ConfidenceContractError", "PlanRejectedError"),
    "eventstore.errors": (
        "EventStoreError", "ConcurrencyError", "EventTooLargeError", "InvalidAppendError",
        "SchemaVersionError", "NotAStoreError", "StoreUrlError", "StoreOpenError",
        "StoreBusyError", "StoreClosedError"),
    "replay.errors": ("LogDecodeError", "ReplayDivergenceError", "ForkError"),
}

#: Event type as a log recorded it -> its name today (the log format that renamed it).
RENAMED_EVENTS: Final[Mapping[str, str]] = MappingProxyType({
    "TimerFired": "RetryDue",  # format 2
})


def upcast_event_type(name: str) -> str:
    """Today's name of a recorded event type (itself if it was never renamed)."""
    return RENAMED_EVENTS.get(name, name)


def renamed_event_data(data: bytes | str, new_type: str) -> bytes:
    """An event's recorded JSON with its ``type`` tag replaced by ``new_type``.

    The stored bytes are left alone (the chain covers them); this copy is
    only decoded. Every other value goes through unchanged: msgspec's JSON
    round trip keeps ints and floats exact.

    Example::

        >>> renamed_event_data(b'{"type":"TimerFired","task_id":"a"}', "RetryDue")
        b'{"type":"RetryDue","task_id":"a"}'
    """
    doc: dict[str, Any] = msgspec.json.decode(data)
    doc["type"] = new_type
    return msgspec.json.encode(doc)


def _error_moves() -> dict[str, str]:
    moves = {
        "runledger.errors.RunledgerError": "ledgerflow.LedgerflowError",
        "ledgerflow.errors.LedgerflowError": "ledgerflow.LedgerflowError",
    }
    for module, classes in _V01_ERROR_CLASSES.items():
        for cls in classes:
            moves[f"{module}.{cls}"] = f"ledgerflow.{cls}"  # 0.1: top-level packages
            moves[f"ledgerflow.{module}.{cls}"] = f"ledgerflow.{cls}"  # early 0.2: module paths
    for name in V01_SYNTHETIC:  # synthetic failures 0.1 recorded as runledger.<Name>
        moves[name.replace("ledgerflow.", "runledger.", 1)] = name
    return moves


_ERROR_MOVES: Final = _error_moves()  # a plain dict: looked up on the replay path
#: Recorded exception name -> today's stable name.
ERROR_NAME_MOVES: Final[Mapping[str, str]] = MappingProxyType(_ERROR_MOVES)

#: Recorded workflow module -> where that module lives today.
WORKFLOW_MODULE_MOVES: Final[Mapping[str, str]] = MappingProxyType({
    "examples.travel": "ledgerflow.examples.travel",
    "examples.travel_unreviewed": "ledgerflow.examples.travel_unreviewed",
})


def upcast_error_name(name: str) -> str:
    """Today's stable name for a recorded exception name (itself if it never moved)."""
    return _ERROR_MOVES.get(name, name)


def upcast_workflow_ref(ref: str) -> str:
    """Today's ``module:attribute`` for a recorded workflow reference."""
    module, sep, attr = ref.partition(":")
    moved = WORKFLOW_MODULE_MOVES.get(module)
    return f"{moved}{sep}{attr}" if moved is not None else ref


def upcast_failure_names(
    error_type: str, error_types: list[str]
) -> tuple[str, list[str]] | None:
    """An ``AgentFailed``'s names upgraded, or ``None`` when none of them moved.

    Example::

        >>> upcast_failure_names("builtins.KeyError", ["builtins.KeyError"]) is None
        True
    """
    moves = _ERROR_MOVES
    if error_type not in moves:
        # A plain loop: on the replay path a generator for any() cost more than the lookups.
        for name in error_types:
            if name in moves:
                break
        else:
            return None
    return moves.get(error_type, error_type), [moves.get(n, n) for n in error_types]


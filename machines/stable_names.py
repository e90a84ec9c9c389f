"""Stable exception names: what a log records for an error, wherever its class lives.

A run records every agent failure by name (``AgentFailed.error_type`` and
``error_types``, the class and its bases, most specific first), and retry
policies classify failures by those names, so last month's log replays
without the classes being importable. A name that is a module path breaks
the day the module moves; so the recorded name is stable:

- ledgerflow's own errors (subclasses of :class:`~ledgerflow.LedgerflowError`
  defined inside the ``ledgerflow`` package) are ``ledgerflow.<ClassName>``,
  whichever submodule defines them: ``ledgerflow.PermanentError``,
  ``ledgerflow.LedgerflowError``;
- any class may declare its own with the class attribute
  ``__ledgerflow_name__`` (the declaration is not inherited: a subclass
  records its own name, and its base's among ``error_types``);
- every other class falls back to ``module.qualname``
  (``builtins.TimeoutError``, ``billing.errors.CardDeclined``).

Example::

    >>> class CardDeclined(Exception):
    ...     __ledgerflow_name__ = "billing.CardDeclined"
    >>> exception_names(CardDeclined)
    ['billing.CardDeclined', 'builtins.Exception', 'builtins.BaseException']
    >>> from ledgerflow import PermanentError
    >>> stable_name(PermanentError)
    'ledgerflow.PermanentError'
"""

from __future__ import annotations

from typing import Final, TypeGuard

from ledgerflow.errors import LedgerflowError
from ledgerflow.machines.errors import WorkflowDefinitionError

__all__ = [
    "INPUT_CONTRACT_ERROR",
    "OUTPUT_TOO_LARGE",
    "SIDE_EFFECT_INPUT_CHANGED",
    "SIDE_EFFECT_OUTCOME_UNKNOWN",
    "STABLE_NAME_ATTRIBUTE",
    "UNLOGGABLE_OUTPUT",
    "V01_SYNTHETIC",
    "StableNameError",
    "check_stable_name",
    "exception_names",
    "must_be_recordable_name",
    "stable_name",
]

#: The class attribute a user's exception sets to choose its recorded name.
STABLE_NAME_ATTRIBUTE: Final = "__ledgerflow_name__"
_OWN_PACKAGE: Final = "ledgerflow"

# Failures the runtime records with no class of their own: the names are in
# logs, so they never change. Each is recorded before the names of the error
# it is a kind of (PermanentError, ValueError) in ``error_types``.
#: The dispatched input does not satisfy the agent's input model.
INPUT_CONTRACT_ERROR: Final = "ledgerflow.InputContractError"
#: The agent's output has no JSON form the log can hold (NaN, lone surrogate...).
UNLOGGABLE_OUTPUT: Final = "ledgerflow.UnloggableOutput"
#: The agent's output is over the size limit of one logged event.
OUTPUT_TOO_LARGE: Final = "ledgerflow.OutputTooLarge"
#: A fork would repeat its origin's side effect with a different input.
SIDE_EFFECT_INPUT_CHANGED: Final = "ledgerflow.SideEffectInputChanged"
#: A fork would repeat a side effect whose outcome its origin never recorded.
SIDE_EFFECT_OUTCOME_UNKNOWN: Final = "ledgerflow.SideEffectOutcomeUnknown"
#: The worker running a pool attempt stopped renewing its claim before an outcome.
EXECUTOR_LOST: Final = "ledgerflow.ExecutorLost"
#: The synthetic failures the 0.1 runtime already recorded (as ``runledger.<Name>``).
V01_SYNTHETIC: Final = (INPUT_CONTRACT_ERROR, UNLOGGABLE_OUTPUT, OUTPUT_TOO_LARGE)


class StableNameError(WorkflowDefinitionError):
    """An exception class declares a ``__ledgerflow_name__`` that cannot be recorded."""

    def __init__(self, cls: type[BaseException], declared: object) -> None:
        self.cls = cls
        self.declared = declared
        super().__init__(
            f"{cls.__module__}.{cls.__qualname__} declares {STABLE_NAME_ATTRIBUTE} = "
            f"{declared!r}, which cannot be recorded; use a non-empty string without "
            "spaces, such as 'billing.CardDeclined'."
        )


def _declared(cls: type[BaseException]) -> str | None:
    """The class's own ``__ledgerflow_name__`` if it is a usable name."""
    # Read from the class's own namespace: an inherited declaration would give
    # every subclass its base's name and erase what the log can tell apart.
    value = cls.__dict__.get(STABLE_NAME_ATTRIBUTE)
    if must_be_recordable_name(value):
        return value
    return None


def must_be_recordable_name(value: object) -> TypeGuard[str]:
    """Whether ``value`` can serve as a recorded name (a non-empty string, no spaces)."""
    return isinstance(value, str) and bool(value) and not any(c.isspace() for c in value)


def _is_own_error(cls: type[BaseException]) -> bool:
    module = cls.__module__
    return issubclass(cls, LedgerflowError) and (
        module == _OWN_PACKAGE or module.startswith(_OWN_PACKAGE + "."))


def stable_name(cls: type[BaseException]) -> str:
    """The name a log records for exception class ``cls`` (see the module docstring).

    Example::

        >>> stable_name(TimeoutError)
        'builtins.TimeoutError'
    """
    declared = _declared(cls)
    if declared is not None:
        return declared
    if _is_own_error(cls):
        return f"{_OWN_PACKAGE}.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def exception_names(exc_type: type[BaseException]) -> list[str]:
    """The stable names of an exception class and its bases, most specific first.

    Recorded with every agent failure, so a retry policy can be re-applied to
    last month's failures by name, without the classes being importable.
    """
    return [stable_name(cls) for cls in exc_type.__mro__ if issubclass(cls, BaseException)]


def check_stable_name(cls: type[BaseException]) -> str:
    """``stable_name(cls)``, refusing a declared ``__ledgerflow_name__`` that is unusable.

    Called where a class is declared to a policy (a typo fails at import
    time); at failure time :func:`stable_name` quietly falls back instead, so
    that recording an agent's error can never itself fail.
    """
    if STABLE_NAME_ATTRIBUTE in cls.__dict__ and _declared(cls) is None:
        raise StableNameError(cls, cls.__dict__[STABLE_NAME_ATTRIBUTE])
    return stable_name(cls)

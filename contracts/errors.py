"""Errors raised by ``contracts``.

The hierarchy::

    LedgerflowError                      (ledgerflow.errors)
    └── ContractError                   anything a contract refused
        ├── ReferenceSyntaxError        "$a..b" is not a reference
        ├── ReferenceResolutionError    a reference names data that is not there
        ├── InputContractError          a task's input fails its agent's input model
        ├── ConfidenceContractError     min_confidence asked of a model with no confidence
        └── PlanRejectedError           check_plan found problems (for callers that raise)

Each message is one sentence (what, where, why, the fix); the values are kept
as attributes so callers never parse the text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledgerflow.errors import LedgerflowError

if TYPE_CHECKING:
    from ledgerflow.contracts.problems import PlanProblem

__all__ = [
    "ConfidenceContractError",
    "ContractError",
    "InputContractError",
    "PlanRejectedError",
    "ReferenceResolutionError",
    "ReferenceSyntaxError",
]


class ContractError(LedgerflowError):
    """Base class of every error raised by ``contracts``."""


class ReferenceSyntaxError(ContractError):
    """A string starting with ``$`` is not a well-formed reference.

    >>> str(ReferenceSyntaxError("$a..b", "segment 2 is empty"))[:40]
    "Reference '$a..b' is malformed: segment "
    """

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(
            f"Reference {text!r} is malformed: {reason}; write references as "
            f"'$source.field.sub' and escape a literal dollar sign as '$$'."
        )


class ReferenceResolutionError(ContractError):
    """A reference could not be resolved against the goal and upstream outputs."""

    def __init__(self, task_id: str, field: str, reference: str, missing: str) -> None:
        self.task_id = task_id
        self.field = field
        self.reference = reference
        self.missing = missing
        super().__init__(
            f"Cannot build input {field!r} of task {task_id!r} from {reference!r}: {missing}."
        )


class InputContractError(ContractError):
    """A task's resolved input does not satisfy its agent's input model."""

    def __init__(self, task_id: str, model: str, errors: tuple[str, ...]) -> None:
        self.task_id = task_id
        self.model = model
        self.errors = errors
        super().__init__(
            f"Input of task {task_id!r} failed {model} validation: {'; '.join(errors)}."
        )


class ConfidenceContractError(ContractError):
    """A confidence threshold was asked of an output model that reports none."""

    def __init__(self, task_id: str, model: str, min_confidence: float) -> None:
        self.task_id = task_id
        self.model = model
        self.min_confidence = min_confidence
        super().__init__(
            f"Task {task_id!r} requires confidence {min_confidence}, but {model} declares "
            f"no numeric 'confidence' field; add one to the model or drop min_confidence."
        )


class PlanRejectedError(ContractError):
    """A plan failed :func:`ledgerflow.contracts.check_plan`; ``problems`` lists why."""

    def __init__(self, problems: tuple[PlanProblem, ...]) -> None:
        self.problems = problems
        count = f"{len(problems)} problem" + ("" if len(problems) == 1 else "s")
        listed = " ".join(f"({i}) {p.message}" for i, p in enumerate(problems, 1))
        super().__init__(f"The plan was rejected with {count}: {listed}")
